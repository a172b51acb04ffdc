/* Unit tests for src/auth/cidr.c: range syntax, host bits, list parsing, matching
 * IPv4, IPv6 and IPv4-mapped peers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "auth/cidr.h"
#include "common/error.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

struct parse_case {
  const char *text;
  int rc;
  unsigned prefix;
};

static const struct parse_case parse_cases[] = {
    {"127.0.0.1", 0, 32},
    {"127.0.0.1/32", 0, 32},
    {"10.0.0.0/8", 0, 8},
    {"0.0.0.0/0", 0, 0},
    {"192.168.1.128/25", 0, 25},
    {"::1", 0, 128},
    {"fd00::/8", 0, 8},
    {"2001:db8::/32", 0, 32},
    {"::/0", 0, 0},
    {"::ffff:10.0.0.0/104", 0, 104},
    {"10.1.2.3/8", TUSC_EINVALID_ARGUMENT, 0}, /* host bits set */
    {"fd00::1/8", TUSC_EINVALID_ARGUMENT, 0},
    {"10.0.0.0/33", TUSC_EINVALID_ARGUMENT, 0},
    {"::/129", TUSC_EINVALID_ARGUMENT, 0},
    {"10.0.0.0/", TUSC_EINVALID_ARGUMENT, 0},
    {"10.0.0.0/08", TUSC_EINVALID_ARGUMENT, 0},
    {"10.0.0.0/-1", TUSC_EINVALID_ARGUMENT, 0},
    {"10.0.0.0/+8", TUSC_EINVALID_ARGUMENT, 0},
    {"10.0.0/24", TUSC_EINVALID_ARGUMENT, 0},
    {"256.0.0.0", TUSC_EINVALID_ARGUMENT, 0},
    {"example.com", TUSC_EINVALID_ARGUMENT, 0},
    {"", TUSC_EINVALID_ARGUMENT, 0},
    {"/8", TUSC_EINVALID_ARGUMENT, 0},
    {"[::1]", TUSC_EINVALID_ARGUMENT, 0},
    {"fe80::1%eth0", TUSC_EINVALID_ARGUMENT, 0},
};

static void test_parse(void **state) {
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(parse_cases); i++) {
    const struct parse_case *c = &parse_cases[i];
    tusc_cidr_t out;
    memset(&out, 0xaa, sizeof(out));
    int rc = tusc_cidr_parse(c->text, strlen(c->text), &out);
    if (rc != c->rc)
      fail_msg("case %zu \"%s\": rc %d, want %d", i, c->text, rc, c->rc);
    if (rc == 0 && out.prefix != c->prefix)
      fail_msg("case %zu \"%s\": prefix %u, want %u", i, c->text, out.prefix, c->prefix);
  }
}

struct match_case {
  const char *list;
  const char *addr;
  bool match;
};

static const struct match_case match_cases[] = {
    {"127.0.0.1/32", "127.0.0.1", true},
    {"127.0.0.1/32", "127.0.0.2", false},
    {"10.0.0.0/8", "10.255.255.255", true},
    {"10.0.0.0/8", "11.0.0.0", false},
    {"192.168.1.128/25", "192.168.1.200", true},
    {"192.168.1.128/25", "192.168.1.127", false},
    {"0.0.0.0/0", "8.8.8.8", true},
    {"0.0.0.0/0", "::1", false},
    {"::1", "::1", true},
    {"::1", "127.0.0.1", false},
    {"fd00::/8", "fd12:3456::1", true},
    {"fd00::/8", "fe80::1", false},
    {"fd00::/8", "fe80::1%eth0", false},
    {"fe80::/10", "fe80::1%eth0", true},
    {"127.0.0.1", "::ffff:127.0.0.1", true},   /* dual-stack socket view of IPv4 */
    {"::ffff:10.0.0.0/104", "10.1.2.3", true}, /* mapped range, IPv4 peer */
    {"::ffff:10.0.0.0/104", "11.1.2.3", false},
    {"10.0.0.0/8, 127.0.0.1 ,::1", "127.0.0.1", true},
    {"10.0.0.0/8, 127.0.0.1 ,::1", "::1", true},
    {"10.0.0.0/8, 127.0.0.1 ,::1", "192.0.2.1", false},
    {"127.0.0.1", "", false},
    {"127.0.0.1", "not-an-ip", false},
    {"127.0.0.1", "127.0.0.1:80", false},
    {"", "127.0.0.1", false},
};

static void test_match(void **state) {
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(match_cases); i++) {
    const struct match_case *c = &match_cases[i];
    tusc_cidr_list_t list;
    assert_int_equal(tusc_cidr_list_parse(c->list, &list, NULL, NULL), 0);
    bool got = tusc_cidr_list_match(&list, c->addr);
    tusc_cidr_list_dispose(&list);
    if (got != c->match)
      fail_msg("case %zu: \"%s\" in [%s] = %d, want %d", i, c->addr, c->list, got, c->match);
  }
}

static void test_list_errors(void **state) {
  (void)state;
  tusc_cidr_list_t list;
  const char *bad = NULL;
  size_t bad_len = 0;
  const char *text = "10.0.0.0/8, 300.1.1.1 ,::1";
  assert_int_equal(tusc_cidr_list_parse(text, &list, &bad, &bad_len), TUSC_EINVALID_ARGUMENT);
  assert_non_null(bad);
  assert_int_equal(bad_len, strlen("300.1.1.1"));
  assert_memory_equal(bad, "300.1.1.1", bad_len);

  assert_int_equal(tusc_cidr_list_parse(" , ,", &list, NULL, NULL), 0);
  assert_int_equal(list.count, 0);
  assert_false(tusc_cidr_list_match(&list, "127.0.0.1"));
  tusc_cidr_list_dispose(&list);

  assert_int_equal(
      tusc_cidr_list_parse("1.1.1.1,2.2.2.2,3.3.3.3,4.4.4.4,5.5.5.5,6.6.6.6", &list, NULL, NULL),
      0);
  assert_int_equal(list.count, 6);
  assert_true(tusc_cidr_list_match(&list, "6.6.6.6"));
  tusc_cidr_list_dispose(&list);
  tusc_cidr_list_dispose(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse),
      cmocka_unit_test(test_match),
      cmocka_unit_test(test_list_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

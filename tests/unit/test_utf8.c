/* Unit tests for src/common/utf8.c: RFC 3629 boundaries, table-driven. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/utf8.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

struct seq_case {
  const char *bytes;
  size_t len;
  size_t want; /* tusc_utf8_seq's answer */
  uint32_t cp; /* when want != 0 */
  const char *why;
};

static const struct seq_case seq_cases[] = {
    {"A", 1, 1, 0x41, "ASCII"},
    {"\0", 1, 1, 0, "NUL is a character"},
    {"\x7f", 1, 1, 0x7f, "last one-byte"},
    {"\xc2\x80", 2, 2, 0x80, "first two-byte"},
    {"\xdf\xbf", 2, 2, 0x7ff, "last two-byte"},
    {"\xe0\xa0\x80", 3, 3, 0x800, "first three-byte"},
    {"\xed\x9f\xbf", 3, 3, 0xd7ff, "below the surrogates"},
    {"\xee\x80\x80", 3, 3, 0xe000, "above the surrogates"},
    {"\xe2\x80\xa8", 3, 3, 0x2028, "LINE SEPARATOR"},
    {"\xef\xbf\xbf", 3, 3, 0xffff, "last three-byte"},
    {"\xf0\x90\x80\x80", 4, 4, 0x10000, "first four-byte"},
    {"\xf4\x8f\xbf\xbf", 4, 4, 0x10ffff, "last code point"},
    {"\xc3\xa9x", 3, 2, 0xe9, "only the first sequence counts"},
    {"\x80", 1, 0, 0, "lone continuation byte"},
    {"\xc0\x80", 2, 0, 0, "overlong NUL"},
    {"\xc1\xbf", 2, 0, 0, "overlong two-byte"},
    {"\xe0\x9f\xbf", 3, 0, 0, "overlong three-byte"},
    {"\xf0\x8f\xbf\xbf", 4, 0, 0, "overlong four-byte"},
    {"\xed\xa0\x80", 3, 0, 0, "high surrogate"},
    {"\xed\xbf\xbf", 3, 0, 0, "low surrogate"},
    {"\xf4\x90\x80\x80", 4, 0, 0, "above U+10FFFF"},
    {"\xf5\x80\x80\x80", 4, 0, 0, "lead byte F5"},
    {"\xff", 1, 0, 0, "byte FF"},
    {"\xc3", 1, 0, 0, "cut short"},
    {"\xe2\x82", 2, 0, 0, "cut short"},
    {"\xe2\x82\xac", 2, 0, 0, "cut short by avail"},
    {"\xe2\x28\xac", 3, 0, 0, "bad second byte"},
    {"\xf0\x90\x28\x80", 4, 0, 0, "bad third byte"},
    {"\xf0\x90\x80\x28", 4, 0, 0, "bad fourth byte"},
    {"", 0, 0, 0, "nothing available"},
};

static void test_seq(void **state) {
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(seq_cases); i++) {
    const struct seq_case *c = &seq_cases[i];
    uint32_t cp = 0xdeadbeef;
    size_t got = tusc_utf8_seq((const unsigned char *)c->bytes, c->len, &cp);
    if (got != c->want)
      fail_msg("%s: length %zu, want %zu", c->why, got, c->want);
    if (got != 0 && cp != c->cp)
      fail_msg("%s: code point %x, want %x", c->why, (unsigned)cp, (unsigned)c->cp);
    /* The code point is optional. */
    assert_int_equal(tusc_utf8_seq((const unsigned char *)c->bytes, c->len, NULL), c->want);
  }
}

static void test_valid(void **state) {
  (void)state;
  assert_true(tusc_utf8_valid("", 0));
  assert_true(tusc_utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14));
  assert_true(tusc_utf8_valid("a\0b", 3));
  assert_false(tusc_utf8_valid("caf\xc3", 4));       /* cut at the end */
  assert_false(tusc_utf8_valid("\xed\xa0\x80z", 4)); /* surrogate */
  assert_false(tusc_utf8_valid("ab\xffz", 4));
  assert_true(tusc_utf8_valid("ab\xffz", 2)); /* honours len */
}

static void test_lossy(void **state) {
  (void)state;
  static const struct {
    const char *in;
    size_t len;
    const char *out;
    size_t out_len;
  } rows[] = {
      {"", 0, "", 0},
      {"plain", 5, "plain", 5},
      {"caf\xC3\xA9", 5, "caf\xC3\xA9", 5},       /* valid multi-byte kept */
      {"a\xFF" "b", 3, "a\xEF\xBF\xBD" "b", 5},    /* one bad byte */
      {"\xC3", 1, "\xEF\xBF\xBD", 3},              /* cut short */
      {"\xED\xA0\x80", 3, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD", 9}, /* surrogate */
      {"x\0y", 3, "x\0y", 3},                      /* NUL is valid UTF-8 */
  };
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
    size_t n = 99;
    char *got = tusc_utf8_lossy(rows[i].in, rows[i].len, &n);
    assert_non_null(got);
    size_t want = rows[i].out_len;
    assert_int_equal(n, want);
    assert_memory_equal(got, rows[i].out, want);
    assert_int_equal(got[n], '\0');
    assert_true(tusc_utf8_valid(got, n));
    free(got);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_seq),
      cmocka_unit_test(test_valid),
      cmocka_unit_test(test_lossy),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

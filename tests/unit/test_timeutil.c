/* Unit tests for src/common/timeutil.c: IMF-fixdate formatting and strict parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "common/timeutil.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

struct date_case {
  int64_t t;
  const char *text;
};

static const struct date_case known[] = {
    {0, "Thu, 01 Jan 1970 00:00:00 GMT"},
    {784111777, "Sun, 06 Nov 1994 08:49:37 GMT"}, /* RFC 9110 example */
    {951782400, "Tue, 29 Feb 2000 00:00:00 GMT"},
    {1795640400, "Wed, 25 Nov 2026 21:00:00 GMT"},
    {4102444799, "Thu, 31 Dec 2099 23:59:59 GMT"},
    {253402300799, "Fri, 31 Dec 9999 23:59:59 GMT"},
};

static void test_format_known(void **state) {
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(known); i++) {
    char out[32];
    tusc_http_date(known[i].t, out);
    if (strcmp(out, known[i].text) != 0)
      fail_msg("row %zu: \"%s\", want \"%s\"", i, out, known[i].text);
  }
}

static void test_parse_known(void **state) {
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(known); i++) {
    int64_t t = -1;
    assert_int_equal(tusc_http_date_parse(known[i].text, &t), 0);
    if (t != known[i].t)
      fail_msg("row %zu: %lld, want %lld", i, (long long)t, (long long)known[i].t);
  }
}

static void test_round_trip(void **state) {
  (void)state;
  /* A spread of instants, including month and leap-year boundaries. */
  for (int64_t t = 0; t < 4102444800; t += 86399 * 37 + 13) {
    char out[32];
    int64_t back = -1;
    tusc_http_date(t, out);
    assert_int_equal(strlen(out), 29);
    assert_int_equal(tusc_http_date_parse(out, &back), 0);
    assert_true(back == t);
  }
}

static void test_format_clamps(void **state) {
  (void)state;
  char out[32];
  tusc_http_date(-5, out);
  assert_string_equal(out, "Thu, 01 Jan 1970 00:00:00 GMT");
  tusc_http_date(INT64_MAX, out);
  assert_string_equal(out, "Fri, 31 Dec 9999 23:59:59 GMT");
}

static void test_parse_rejects(void **state) {
  (void)state;
  static const char *bad[] = {
      "",
      "Sun, 06 Nov 1994 08:49:37",
      "Sun, 06 Nov 1994 08:49:37 UTC",
      "Sun, 06 Nov 1994 08:49:37 GMT ",
      " Sun, 06 Nov 1994 08:49:37 GMT",
      "Sunday, 06-Nov-94 08:49:37 GMT", /* RFC 850 */
      "Sun Nov  6 08:49:37 1994",       /* asctime */
      "Sun, 6 Nov 1994 08:49:37 GMT",
      "Sun, 06 nov 1994 08:49:37 GMT",
      "Sun, 06 Foo 1994 08:49:37 GMT",
      "Xyz, 06 Nov 1994 08:49:37 GMT",
      "Sun, 00 Nov 1994 08:49:37 GMT",
      "Sun, 31 Nov 1994 08:49:37 GMT",
      "Sun, 29 Feb 1900 00:00:00 GMT",
      "Sun, 06 Nov 1994 24:00:00 GMT",
      "Sun, 06 Nov 1994 08:60:00 GMT",
      "Sun, 06 Nov 1994 08:49:61 GMT",
      "Sun, 06 Nov 1969 08:49:37 GMT",
      "Sun, 06 Nov 19x4 08:49:37 GMT",
      "Sun, 06 Nov 1994 08-49-37 GMT",
      "Sun,_06 Nov 1994 08:49:37 GMT",
  };
  for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
    int64_t t = 77;
    if (tusc_http_date_parse(bad[i], &t) != TUSC_EINVALID_HEADER)
      fail_msg("accepted \"%s\"", bad[i]);
    assert_true(t == 77);
  }
  int64_t t = 0;
  assert_int_equal(tusc_http_date_parse(NULL, &t), TUSC_EINVALID_HEADER);
  /* Leap years: 2000 yes, 2024 yes. */
  assert_int_equal(tusc_http_date_parse("Thu, 29 Feb 2024 12:00:00 GMT", &t), 0);
  assert_true(t == 1709208000);
}

static void test_now_ms_monotonic(void **state) {
  (void)state;
  uint64_t a = tusc_now_ms();
  uint64_t b = tusc_now_ms();
  assert_true(b >= a);
  assert_true(a > 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_format_known),  cmocka_unit_test(test_parse_known),
      cmocka_unit_test(test_round_trip),    cmocka_unit_test(test_format_clamps),
      cmocka_unit_test(test_parse_rejects), cmocka_unit_test(test_now_ms_monotonic),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

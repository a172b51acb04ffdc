/* Unit tests for src/common/id.c: the upload ID grammar and generation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "common/id.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Table checks name the failing row, so a red test says which input broke. */
#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond))                                                                                   \
      fail_msg("row %zu (\"%s\"): %s", i, case_in, #cond);                                         \
  } while (0)

/* ---- upload IDs ---- */

struct id_case {
  const char *in;
  size_t len; /* 0 = strlen */
  bool valid;
};

static void test_id_valid(void **state) {
  (void)state;
  static char long_id[TUSC_ID_MAX + 2];
  static char max_id[TUSC_ID_MAX + 1];
  static char long_seg[TUSC_ID_SEGMENT_MAX + 2];
  static char max_seg[TUSC_ID_SEGMENT_MAX + 1];
  memset(long_seg, 'a', TUSC_ID_SEGMENT_MAX + 1);
  memset(max_seg, 'a', TUSC_ID_SEGMENT_MAX);
  /* 255 bytes made of segments of 127 'a' joined by '/': "aaa…/aaa…" (127+1+127). */
  memset(max_id, 'a', TUSC_ID_MAX);
  max_id[127] = '/';
  memset(long_id, 'a', TUSC_ID_MAX + 1);
  long_id[127] = '/';
  long_id[255] = '/';

  const struct id_case cases[] = {
      {"0123456789abcdef0123456789abcdef", 0, true},
      {"a", 0, true},
      {"A-Z_a.z-09", 0, true},
      {"tenant/2026/upload.bin", 0, true},
      {"a.b", 0, true},
      {"a..b", 0, true}, /* dots inside a segment are fine; only whole-dot segments hurt */
      {"-x", 0, true},
      {max_seg, 0, true},
      {long_seg, 0, false},
      {max_id, 0, true},
      {long_id, 0, false},
      {"", 0, false},
      {"a/b", 0, true},
      {".", 0, false},
      {"..", 0, false},
      {"...", 0, false},
      {"a/../b", 0, false},
      {"a/./b", 0, false},
      {"../a", 0, false},
      {"a/..", 0, false},
      {".hidden", 0, false},
      {"trailing.", 0, false},
      {"%2e", 0, false},
      {"%2e%2e", 0, false},
      {"a%2fb", 0, false},
      {"a\\b", 0, false},
      {"..\\a", 0, false},
      {"a\0b", 3, false},
      {"ab\0", 3, false},
      {"/a", 0, false},
      {"a/", 0, false},
      {"/", 0, false},
      {"a//b", 0, false},
      {"a b", 0, false},
      {"a:b", 0, false},
      {"a\nb", 0, false},
      {"\xc3\xa9", 0, false},
      {"x.info", 0, false},
      {"x.INFO", 0, false},
      {"x.lock", 0, false},
      {"x.tmp", 0, false},
      {"d/x.info", 0, false},
      {"x.info/y", 0, false},
      {"x.information", 0, true},
      {"info", 0, true},
      {"x_info", 0, true},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    size_t len = cases[i].len ? cases[i].len : strlen(cases[i].in);
    const char *case_in = cases[i].in;
    CHECK((tusc_id_valid(cases[i].in, len)) == (cases[i].valid));
  }
}

static void test_id_generate(void **state) {
  (void)state;
  char a[33], b[33];
  assert_int_equal(tusc_id_generate(a), 0);
  assert_int_equal(tusc_id_generate(b), 0);
  assert_int_equal(strlen(a), 32);
  for (size_t i = 0; i < 32; i++)
    assert_non_null(strchr("0123456789abcdef", a[i]));
  assert_string_not_equal(a, b);
  assert_true(tusc_id_valid(a, 32));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_id_valid),
      cmocka_unit_test(test_id_generate),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* common/strbuf: growth, the cap, the sticky first failure, handing the text over. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "common/strbuf.h"

static void test_grows_and_hands_over(void **state) {
  (void)state;
  tusc_strbuf_t b = {0};
  char piece[100];
  memset(piece, 'x', sizeof(piece));
  for (int i = 0; i < 50; i++) /* past several doublings */
    tusc_strbuf_add(&b, piece, sizeof(piece));
  tusc_strbuf_str(&b, "end");
  assert_int_equal(b.len, 5003);
  char *out = NULL;
  assert_int_equal(tusc_strbuf_finish(&b, &out), 0);
  assert_int_equal(strlen(out), 5003);
  assert_memory_equal(out + 5000, "end", 4);
  assert_null(b.p);
  free(out);
}

static void test_cap_is_sticky(void **state) {
  (void)state;
  tusc_strbuf_t b = {.max = 8};
  tusc_strbuf_str(&b, "1234567"); /* 7 bytes and the NUL: exactly the cap */
  assert_int_equal(b.err, 0);
  tusc_strbuf_str(&b, "8");
  assert_int_equal(b.err, TUSC_EINVALID_ARGUMENT);
  tusc_strbuf_str(&b, ""); /* later appends do nothing */
  assert_int_equal(b.len, 7);
  char *out = (char *)&b;
  assert_int_equal(tusc_strbuf_finish(&b, &out), TUSC_EINVALID_ARGUMENT);
  assert_ptr_equal(out, (char *)&b); /* untouched on failure */
  assert_null(b.p);
}

static void test_empty_is_an_error(void **state) {
  (void)state;
  tusc_strbuf_t b = {0};
  char *out = NULL;
  assert_int_equal(tusc_strbuf_finish(&b, &out), TUSC_EINVALID_ARGUMENT);
  assert_null(out);
  tusc_strbuf_add(&b, "", 0); /* an empty append still makes a text */
  assert_int_equal(tusc_strbuf_finish(&b, &out), 0);
  assert_string_equal(out, "");
  free(out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_grows_and_hands_over),
      cmocka_unit_test(test_cap_is_sticky),
      cmocka_unit_test(test_empty_is_an_error),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

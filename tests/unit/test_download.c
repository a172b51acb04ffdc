/* Unit tests for src/tus/download.c: Range parsing, Content-Type and Content-Disposition. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "tus/download.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static void test_range(void **state) {
  (void)state;
  static const struct {
    const char *in;
    int64_t size;
    enum tusc_range_result want;
    int64_t first, last;
  } cases[] = {
      {NULL, 100, TUSC_RANGE_NONE, 0, 0},
      {"bytes=0-9", 100, TUSC_RANGE_PARTIAL, 0, 9},
      {"bytes=10-", 100, TUSC_RANGE_PARTIAL, 10, 99},
      {"bytes=-10", 100, TUSC_RANGE_PARTIAL, 90, 99},
      {"bytes=-1000", 100, TUSC_RANGE_PARTIAL, 0, 99},
      {"bytes=90-1000", 100, TUSC_RANGE_PARTIAL, 90, 99},
      {"bytes=99-99", 100, TUSC_RANGE_PARTIAL, 99, 99},
      {" bytes = 5-6 ", 100, TUSC_RANGE_PARTIAL, 5, 6},
      {"BYTES=5-6", 100, TUSC_RANGE_PARTIAL, 5, 6},
      {"bytes=0-99999999999999999999999", 100, TUSC_RANGE_PARTIAL, 0, 99},
      {"bytes=100-", 100, TUSC_RANGE_UNSATISFIABLE, 0, 0},
      {"bytes=100-200", 100, TUSC_RANGE_UNSATISFIABLE, 0, 0},
      {"bytes=99999999999999999999999-", 100, TUSC_RANGE_UNSATISFIABLE, 0, 0},
      {"bytes=-0", 100, TUSC_RANGE_UNSATISFIABLE, 0, 0},
      {"bytes=0-", 0, TUSC_RANGE_UNSATISFIABLE, 0, 0},
      {"bytes=-5", 0, TUSC_RANGE_UNSATISFIABLE, 0, 0},
      {"bytes=0-1,5-6", 100, TUSC_RANGE_NONE, 0, 0},
      {"bytes=5-4", 100, TUSC_RANGE_NONE, 0, 0},
      {"bytes=a-b", 100, TUSC_RANGE_NONE, 0, 0},
      {"bytes=-", 100, TUSC_RANGE_NONE, 0, 0},
      {"bytes=5", 100, TUSC_RANGE_NONE, 0, 0},
      {"bytes=1-2x", 100, TUSC_RANGE_NONE, 0, 0},
      {"bytes=--1", 100, TUSC_RANGE_NONE, 0, 0},
      {"items=0-1", 100, TUSC_RANGE_NONE, 0, 0},
      {"bytes 0-1", 100, TUSC_RANGE_NONE, 0, 0},
      {"", 100, TUSC_RANGE_NONE, 0, 0},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    int64_t first = -7, last = -7;
    const char *in = cases[i].in;
    enum tusc_range_result r =
        tusc_download_range(in, in != NULL ? strlen(in) : 0, cases[i].size, &first, &last);
    if (r != cases[i].want)
      fail_msg("row %zu (%s): result %d, want %d", i, in ? in : "NULL", r, cases[i].want);
    if (r == TUSC_RANGE_PARTIAL && (first != cases[i].first || last != cases[i].last))
      fail_msg("row %zu (%s): %lld-%lld", i, in, (long long)first, (long long)last);
    if (r != TUSC_RANGE_PARTIAL && (first != -7 || last != -7))
      fail_msg("row %zu: outputs written", i);
  }
}

static void test_content_type(void **state) {
  (void)state;
  static const struct {
    const char *in;
    const char *want;
    bool inline_ok;
  } cases[] = {
      {NULL, "application/octet-stream", false},
      {"", "application/octet-stream", false},
      {"image/png", "image/png", true},
      {"IMAGE/PNG", "IMAGE/PNG", true},
      {"text/plain; charset=utf-8", "text/plain; charset=utf-8", true},
      {"text/plain;charset=\"utf-8\"", "text/plain;charset=\"utf-8\"", true},
      {"text/html", "text/html", false},
      {"image/svg+xml", "image/svg+xml", false},
      {"application/pdf", "application/pdf", false},
      {"video/mp4", "video/mp4", true},
      {"image", "application/octet-stream", false},
      {"image/", "application/octet-stream", false},
      {"/png", "application/octet-stream", false},
      {"image/png\r\nX-Evil: 1", "application/octet-stream", false},
      {"text/plain; charset", "application/octet-stream", false},
      {"text/plain; charset=\"unterminated", "application/octet-stream", false},
      {"image/png extra", "application/octet-stream", false},
      {"image/p ng", "application/octet-stream", false},
      {"text/plainx", "text/plainx", false},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    char out[128];
    bool inl = !cases[i].inline_ok;
    tusc_download_content_type(cases[i].in, out, sizeof(out), &inl);
    if (strcmp(out, cases[i].want) != 0 || inl != cases[i].inline_ok)
      fail_msg("row %zu: got \"%s\" inline=%d", i, out, inl);
  }
}

static void test_disposition(void **state) {
  (void)state;
  static const struct {
    bool inline_ok;
    const char *name;
    const char *want;
  } cases[] = {
      {false, NULL, "attachment"},
      {true, NULL, "inline"},
      {true, "a.txt", "inline; filename=\"a.txt\""},
      {false, "say \"hi\".txt", "attachment; filename=\"say \\\"hi\\\".txt\""},
      {false, "back\\slash", "attachment; filename=\"back\\\\slash\""},
      {false, "evil\r\nSet-Cookie: x", "attachment; filename=\"evilSet-Cookie: x\""},
      {false, "\x01\x02", "attachment"},
      {false, "caf\xc3\xa9.txt",
       "attachment; filename=\"caf__.txt\"; filename*=UTF-8''caf%C3%A9.txt"},
      {false, "a b.txt", "attachment; filename=\"a b.txt\""},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    char out[256];
    const char *n = cases[i].name;
    assert_int_equal(
        tusc_download_disposition(cases[i].inline_ok, n, n ? strlen(n) : 0, out, sizeof(out)), 0);
    if (strcmp(out, cases[i].want) != 0)
      fail_msg("row %zu: got [%s] want [%s]", i, out, cases[i].want);
  }
}

static void test_disposition_truncates(void **state) {
  (void)state;
  char name[600];
  memset(name, 'x', sizeof(name));
  char out[64];
  assert_int_equal(tusc_download_disposition(false, name, sizeof(name), out, sizeof(out)), 0);
  assert_true(strlen(out) < sizeof(out));
  assert_int_equal(out[strlen(out) - 1], '"');
  assert_int_equal(strncmp(out, "attachment; filename=\"xxx", 25), 0);

  char tiny[4];
  assert_int_equal(tusc_download_disposition(false, "a", 1, tiny, sizeof(tiny)) < 0, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_range),
      cmocka_unit_test(test_content_type),
      cmocka_unit_test(test_disposition),
      cmocka_unit_test(test_disposition_truncates),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

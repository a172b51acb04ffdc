/* Unit tests for the pure parts of src/tus/ietf.c: interop version, completeness per
 * version, length rules, Content-Disposition file names, Upload-Limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "tus/ietf.h"
#include "tus/sfv.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond))                                                                                   \
      fail_msg("row %zu (\"%s\"): %s", i, case_in, #cond);                                         \
  } while (0)

static void test_version(void **state) {
  (void)state;
  static const struct {
    const char *in;
    int err;
    int want;
  } cases[] = {
      {"3", 0, 3},
      {"4", 0, 4},
      {"5", 0, 5},
      {"6", 0, 6},
      {"7", 0, 7},
      {"8", 0, 8},
      {"6;x=1", 0, 6},
      {"2", TUSC_EINVALID_HEADER, 0},
      {"9", 0, 9},
      {"10", TUSC_EINVALID_HEADER, 0},
      {"0", TUSC_EINVALID_HEADER, 0},
      {"-6", TUSC_EINVALID_HEADER, 0},
      {"6.0", TUSC_EINVALID_HEADER, 0},
      {"\"6\"", TUSC_EINVALID_HEADER, 0},
      {"six", TUSC_EINVALID_HEADER, 0},
      {"", TUSC_EINVALID_HEADER, 0},
      {"6, 7", TUSC_EINVALID_HEADER, 0},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    const char *case_in = cases[i].in;
    int v = -1;
    int err = tusc_ietf_parse_version(case_in, strlen(case_in), &v);
    CHECK(err == cases[i].err);
    CHECK(v == (err == 0 ? cases[i].want : -1));
  }
}

static void test_complete(void **state) {
  (void)state;
  static const struct {
    int version;
    const char *in; /* NULL = header absent */
    int err;
    bool want;
  } cases[] = {
      {4, "?1", 0, true},
      {4, "?0", 0, false},
      {8, "?1;p", 0, true},
      {3, "?0", 0, true}, /* Upload-Incomplete: ?0 = complete */
      {3, "?1", 0, false},
      {6, NULL, TUSC_EINVALID_HEADER, false},
      {3, NULL, 0, true}, /* -01: no Upload-Incomplete = the rest of the data */
      {3, "1", TUSC_EINVALID_HEADER, false},
      {6, "1", TUSC_EINVALID_HEADER, false},
      {6, "true", TUSC_EINVALID_HEADER, false},
      {6, "?1, ?0", TUSC_EINVALID_HEADER, false},
      {6, "?", TUSC_EINVALID_HEADER, false},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    const char *case_in = cases[i].in != NULL ? cases[i].in : "(absent)";
    bool v = !cases[i].want;
    bool before = v;
    int err = tusc_ietf_parse_complete(cases[i].version, cases[i].in,
                                       cases[i].in != NULL ? strlen(cases[i].in) : 0, &v);
    CHECK(err == cases[i].err);
    CHECK(v == (err == 0 ? cases[i].want : before));
  }
  assert_string_equal(tusc_ietf_complete_name(3), "Upload-Incomplete");
  assert_string_equal(tusc_ietf_complete_name(4), "Upload-Complete");
  assert_string_equal(tusc_ietf_complete_name(8), "Upload-Complete");
  assert_string_equal(tusc_ietf_complete_value(3, true), "?0");
  assert_string_equal(tusc_ietf_complete_value(3, false), "?1");
  assert_string_equal(tusc_ietf_complete_value(6, true), "?1");
  assert_string_equal(tusc_ietf_complete_value(6, false), "?0");
}

static void test_length(void **state) {
  (void)state;
  static const struct {
    bool complete;
    const char *upload_length; /* NULL = absent */
    int64_t body;
    int64_t offset;
    int err;
    int64_t want;
  } cases[] = {
      {false, NULL, 10, 0, 0, -1},  /* incomplete, nothing declared: deferred */
      {true, NULL, 10, 0, 0, 10},   /* complete: Content-Length is the rest */
      {true, NULL, 10, 90, 0, 100}, /* append: offset + Content-Length */
      {true, NULL, -1, 0, 0, -1},   /* complete but chunked: fixed at the end */
      {false, "100", 10, 0, 0, 100},
      {true, "100", -1, 0, 0, 100},
      {true, "100", 100, 0, 0, 100},
      {true, "100", 60, 40, 0, 100},
      {true, "100", 10, 0, TUSC_EINVALID_UPLOAD_LENGTH, 0}, /* disagree */
      {false, "-1", 10, 0, TUSC_EINVALID_UPLOAD_LENGTH, 0},
      {false, "1.5", 10, 0, TUSC_EINVALID_UPLOAD_LENGTH, 0},
      {false, "abc", 10, 0, TUSC_EINVALID_UPLOAD_LENGTH, 0},
      {false, "", 10, 0, TUSC_EINVALID_UPLOAD_LENGTH, 0},
      {false, "0", 0, 0, 0, 0},
      {true, NULL, 0, 0, 0, 0},
      {true, NULL, INT64_MAX, 5, TUSC_EINVALID_UPLOAD_LENGTH, 0}, /* overflow */
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    const char *case_in = cases[i].upload_length != NULL ? cases[i].upload_length : "(absent)";
    int64_t v = -777;
    int err = tusc_ietf_request_length(cases[i].complete, cases[i].upload_length,
                                       cases[i].upload_length ? strlen(cases[i].upload_length) : 0,
                                       cases[i].body, cases[i].offset, &v);
    CHECK(err == cases[i].err);
    CHECK(v == (err == 0 ? cases[i].want : -777));
  }
}

static void test_disposition(void **state) {
  (void)state;
  static const struct {
    const char *in;
    const char *want; /* NULL = no name */
  } cases[] = {
      {"inline; filename=\"file name.jpg\"", "file name.jpg"},
      {"attachment; filename=report.pdf", "report.pdf"},
      {"inline;filename=a.txt", "a.txt"},
      {"INLINE; FileName=\"x.bin\"", "x.bin"},
      {"inline; filename=\"a\\\"b.txt\"", "a\"b.txt"},
      {"inline; filename=\"file name.jpg\"; filename*=UTF-8''file%20name.jpg", "file name.jpg"},
      {"inline; filename*=UTF-8''%e2%82%ac%20rates.txt; filename=\"rates.txt\"",
       "\xe2\x82\xac rates.txt"},
      {"inline; filename*=utf-8'en'caf%C3%A9.txt", "caf\xc3\xa9.txt"},
      {"inline; filename*=ISO-8859-1''caf%E9.txt", "caf\xc3\xa9.txt"},
      {"inline; size=10; filename=\"b.txt\"", "b.txt"},
      {"inline; filename*=UTF-8''bad%0aname; filename=ok.txt", "ok.txt"}, /* control byte */
      {"inline; filename*=KOI8-R''x; filename=ok.txt", "ok.txt"},         /* charset */
      {"inline", NULL},
      {"inline; name=\"x\"", NULL},
      {"", NULL},
      {"; filename=x", NULL},
      {"inline; filename=", NULL},
      {"inline; filename=\"unterminated", NULL},
      {"inline; filename=\"\"", NULL},
      {"inline; filename=\"a\x01b\"", NULL},
      {"inline filename=x", NULL},
      {"inline; filename*=\"UTF-8''x\"", NULL},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    const char *case_in = cases[i].in;
    char out[64];
    long n = tusc_ietf_disposition_filename(case_in, strlen(case_in), out, sizeof(out));
    if (cases[i].want == NULL) {
      CHECK(n == -1);
    } else {
      CHECK(n == (long)strlen(cases[i].want));
      CHECK(n > 0 && strcmp(out, cases[i].want) == 0);
    }
  }
  /* Too long for the buffer: no name rather than a cut one. */
  char small[4];
  const char *in = "inline; filename=\"long-name.txt\"";
  assert_int_equal(tusc_ietf_disposition_filename(in, strlen(in), small, sizeof(small)), -1);
  in = "inline; filename*=UTF-8''long-name.txt";
  assert_int_equal(tusc_ietf_disposition_filename(in, strlen(in), small, sizeof(small)), -1);
}

static void test_limit(void **state) {
  (void)state;
  char out[64];
  int n = tusc_ietf_format_limit(0, -1, out, sizeof(out));
  assert_int_equal(n, strlen("min-size=0"));
  assert_string_equal(out, "min-size=0");
  n = tusc_ietf_format_limit(1048576, -1, out, sizeof(out));
  assert_string_equal(out, "min-size=0, max-size=1048576");
  assert_int_equal(n, strlen(out));
  /* What we send must parse as the draft's dictionary. */
  tusc_sfv_member_t m[4];
  size_t count = 0;
  assert_int_equal(tusc_sfv_parse_dictionary(out, (size_t)n, m, 4, &count), 0);
  assert_int_equal(count, 2);
  const tusc_sfv_member_t *max = tusc_sfv_dict_get(m, count, "max-size");
  assert_non_null(max);
  assert_int_equal(max->item.type, TUSC_SFV_INTEGER);
  assert_int_equal(max->item.integer, 1048576);
  char tiny[8];
  assert_int_equal(tusc_ietf_format_limit(5, -1, tiny, sizeof(tiny)), -1);
  /* max-age (draft -06 on): the seconds the upload stays available, 0 included. */
  n = tusc_ietf_format_limit(0, 3600, out, sizeof(out));
  assert_string_equal(out, "min-size=0, max-age=3600");
  n = tusc_ietf_format_limit(100, 0, out, sizeof(out));
  assert_string_equal(out, "min-size=0, max-size=100, max-age=0");
  assert_int_equal(tusc_sfv_parse_dictionary(out, (size_t)n, m, 4, &count), 0);
  assert_int_equal(count, 3);
  const tusc_sfv_member_t *age = tusc_sfv_dict_get(m, count, "max-age");
  assert_non_null(age);
  assert_int_equal(age->item.type, TUSC_SFV_INTEGER);
  assert_int_equal(age->item.integer, 0);
  char small[30]; /* the max-age member does not fit */
  assert_int_equal(tusc_ietf_format_limit(100, 3600, small, sizeof(small)), -1);
}

static void test_problem(void **state) {
  (void)state;
  char out[512];
  int n = tusc_ietf_format_problem(TUSC_IETF_PROBLEM_MISMATCHING_OFFSET, 12500000, 25000000, out,
                                   sizeof(out));
  assert_int_equal(n, strlen(out));
  assert_string_equal(out, "{\"type\":\"https://iana.org/assignments/http-problem-types#"
                           "mismatching-upload-offset\",\"title\":\"offset from request does "
                           "not match offset of resource\",\"expected-offset\":12500000,"
                           "\"provided-offset\":25000000}");
  n = tusc_ietf_format_problem(TUSC_IETF_PROBLEM_MISMATCHING_OFFSET, -1, 7, out, sizeof(out));
  assert_non_null(strstr(out, "\"provided-offset\":7}"));
  assert_null(strstr(out, "expected-offset"));
  n = tusc_ietf_format_problem(TUSC_IETF_PROBLEM_INCONSISTENT_LENGTH, -1, -1, out, sizeof(out));
  assert_int_equal(n, strlen(out));
  assert_non_null(strstr(out, "#inconsistent-upload-length\""));
  char tiny[40];
  assert_int_equal(
      tusc_ietf_format_problem(TUSC_IETF_PROBLEM_MISMATCHING_OFFSET, 1, 2, tiny, sizeof(tiny)), -1);
  assert_int_equal(
      tusc_ietf_format_problem(TUSC_IETF_PROBLEM_INCONSISTENT_LENGTH, -1, -1, tiny, sizeof(tiny)),
      -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_version), cmocka_unit_test(test_complete),
      cmocka_unit_test(test_length),  cmocka_unit_test(test_disposition),
      cmocka_unit_test(test_limit),   cmocka_unit_test(test_problem),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

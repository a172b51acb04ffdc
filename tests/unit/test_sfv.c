/* Unit tests for src/tus/sfv.c: RFC 9651 items, lists and dictionaries, good and
 * malformed input, table-driven so a failure names its row. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "tus/sfv.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond))                                                                                   \
      fail_msg("row %zu (\"%s\"): %s", i, case_in, #cond);                                         \
  } while (0)

struct item_case {
  const char *in;
  int err;
  enum tusc_sfv_type type;
  int64_t integer; /* integer, decimal (thousandths), date, boolean (0/1) */
  const char *str; /* raw text for string/token/bytes/display */
  size_t params;
};

static void test_items(void **state) {
  (void)state;
  static const struct item_case cases[] = {
      /* booleans */
      {"?1", 0, TUSC_SFV_BOOLEAN, 1, NULL, 0},
      {"?0", 0, TUSC_SFV_BOOLEAN, 0, NULL, 0},
      {"  ?1  ", 0, TUSC_SFV_BOOLEAN, 1, NULL, 0},
      {"?1;a=1;b", 0, TUSC_SFV_BOOLEAN, 1, NULL, 2},
      {"?1; a=2", 0, TUSC_SFV_BOOLEAN, 1, NULL, 1},
      {"?2", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"?", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"?10", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"?1,?0", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"?1 ?0", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"?1;", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"?1;A=1", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"\t?1", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      /* integers */
      {"0", 0, TUSC_SFV_INTEGER, 0, NULL, 0},
      {"42", 0, TUSC_SFV_INTEGER, 42, NULL, 0},
      {"-42", 0, TUSC_SFV_INTEGER, -42, NULL, 0},
      {"007", 0, TUSC_SFV_INTEGER, 7, NULL, 0},
      {"999999999999999", 0, TUSC_SFV_INTEGER, 999999999999999LL, NULL, 0},
      {"-999999999999999", 0, TUSC_SFV_INTEGER, -999999999999999LL, NULL, 0},
      {"1000000000000000", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"99999999999999999999999", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"+1", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"-", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"- 1", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"1x", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"0x10", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"1e3", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      /* decimals */
      {"1.5", 0, TUSC_SFV_DECIMAL, 1500, NULL, 0},
      {"-0.125", 0, TUSC_SFV_DECIMAL, -125, NULL, 0},
      {"123456789012.123", 0, TUSC_SFV_DECIMAL, 123456789012123LL, NULL, 0},
      {"1234567890123.1", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"1.", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"1.1234", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"1..2", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      /* strings */
      {"\"hello\"", 0, TUSC_SFV_STRING, 0, "hello", 0},
      {"\"\"", 0, TUSC_SFV_STRING, 0, "", 0},
      {"\"a\\\"b\\\\c\"", 0, TUSC_SFV_STRING, 0, "a\\\"b\\\\c", 0},
      {"\"a\\nb\"", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"\"unterminated", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"\"tab\there\"", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"\"\xc3\xa9\"", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      /* tokens */
      {"foo", 0, TUSC_SFV_TOKEN, 0, "foo", 0},
      {"*foo/bar:baz", 0, TUSC_SFV_TOKEN, 0, "*foo/bar:baz", 0},
      {"application/partial-upload", 0, TUSC_SFV_TOKEN, 0, "application/partial-upload", 0},
      {"Foo123!#", 0, TUSC_SFV_TOKEN, 0, "Foo123!#", 0},
      {"1foo", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"foo bar", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"foo\"", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      /* byte sequences */
      {":aGVsbG8=:", 0, TUSC_SFV_BYTES, 0, "aGVsbG8=", 0},
      {"::", 0, TUSC_SFV_BYTES, 0, "", 0},
      {":aGVs bG8=:", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {":aGVsbG8=", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      /* dates */
      {"@1659578233", 0, TUSC_SFV_DATE, 1659578233, NULL, 0},
      {"@-1", 0, TUSC_SFV_DATE, -1, NULL, 0},
      {"@1.5", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"@", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      /* display strings */
      {"%\"f%c3%bc%c3%bc\"", 0, TUSC_SFV_DISPLAY_STRING, 0, "f%c3%bc%c3%bc", 0},
      {"%\"plain\"", 0, TUSC_SFV_DISPLAY_STRING, 0, "plain", 0},
      {"%\"%C3%BC\"", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"%\"%c3\"", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"%\"%ff\"", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"%plain", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      /* not items */
      {"", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"   ", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"(1 2)", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
      {"a=1", TUSC_EINVALID_HEADER, 0, 0, NULL, 0},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    const char *case_in = cases[i].in;
    tusc_sfv_item_t item;
    memset(&item, 0x5a, sizeof(item));
    int err = tusc_sfv_parse_item(case_in, strlen(case_in), &item);
    CHECK(err == cases[i].err);
    if (err != 0) {
      CHECK(item.type == (enum tusc_sfv_type)0x5a5a5a5a); /* untouched */
      continue;
    }
    CHECK(item.type == cases[i].type);
    CHECK(item.param_count == cases[i].params);
    switch (item.type) {
    case TUSC_SFV_BOOLEAN:
      CHECK((int64_t)item.boolean == cases[i].integer);
      break;
    case TUSC_SFV_INTEGER:
    case TUSC_SFV_DECIMAL:
    case TUSC_SFV_DATE:
      CHECK(item.integer == cases[i].integer);
      break;
    default:
      CHECK(item.str_len == strlen(cases[i].str));
      CHECK(memcmp(item.str, cases[i].str, item.str_len) == 0);
      break;
    }
  }
}

struct typed_case {
  const char *in;
  int err;
  int64_t want;
};

static void test_boolean_and_integer(void **state) {
  (void)state;
  static const struct typed_case bools[] = {
      {"?1", 0, 1},
      {"?0", 0, 0},
      {"?1;x", 0, 1},
      {"1", TUSC_EINVALID_HEADER, 0},
      {"true", TUSC_EINVALID_HEADER, 0},
      {"\"?1\"", TUSC_EINVALID_HEADER, 0},
      {"?1, ?1", TUSC_EINVALID_HEADER, 0},
      {"", TUSC_EINVALID_HEADER, 0},
  };
  for (size_t i = 0; i < ARRAY_LEN(bools); i++) {
    const char *case_in = bools[i].in;
    bool v = true;
    int err = tusc_sfv_parse_boolean(case_in, strlen(case_in), &v);
    CHECK(err == bools[i].err);
    if (err == 0)
      CHECK((int64_t)v == bools[i].want);
    else
      CHECK(v == true);
  }
  static const struct typed_case ints[] = {
      {"0", 0, 0},
      {"12", 0, 12},
      {"-3", 0, -3},
      {"5;unit=bytes", 0, 5},
      {"1.0", TUSC_EINVALID_HEADER, 0},
      {"?1", TUSC_EINVALID_HEADER, 0},
      {"1,2", TUSC_EINVALID_HEADER, 0},
      {"", TUSC_EINVALID_HEADER, 0},
      {"abc", TUSC_EINVALID_HEADER, 0},
  };
  for (size_t i = 0; i < ARRAY_LEN(ints); i++) {
    const char *case_in = ints[i].in;
    int64_t v = -777;
    int err = tusc_sfv_parse_integer(case_in, strlen(case_in), &v);
    CHECK(err == ints[i].err);
    if (err == 0)
      CHECK(v == ints[i].want);
    else
      CHECK(v == -777);
  }
  /* Not NUL-terminated: only `len` bytes count. */
  int64_t v = 0;
  assert_int_equal(tusc_sfv_parse_integer("123456", 3, &v), 0);
  assert_int_equal(v, 123);
  assert_int_equal(tusc_sfv_parse_integer(NULL, 0, &v), TUSC_EINVALID_HEADER);
}

struct dict_case {
  const char *in;
  int err;
  size_t count;
  const char *keys[4];
  enum tusc_sfv_type types[4];
  int64_t values[4];
};

static void test_dictionaries(void **state) {
  (void)state;
  static const struct dict_case cases[] = {
      {"min-size=0, max-size=1000",
       0,
       2,
       {"min-size", "max-size"},
       {TUSC_SFV_INTEGER, TUSC_SFV_INTEGER},
       {0, 1000}},
      {"max-size=1000,min-size=0",
       0,
       2,
       {"max-size", "min-size"},
       {TUSC_SFV_INTEGER, TUSC_SFV_INTEGER},
       {1000, 0}},
      {"a, b=?0, c",
       0,
       3,
       {"a", "b", "c"},
       {TUSC_SFV_BOOLEAN, TUSC_SFV_BOOLEAN, TUSC_SFV_BOOLEAN},
       {1, 0, 1}},
      {"a=1, a=2", 0, 1, {"a"}, {TUSC_SFV_INTEGER}, {2}},
      {"a=1, b=2, a=3", 0, 2, {"a", "b"}, {TUSC_SFV_INTEGER, TUSC_SFV_INTEGER}, {3, 2}},
      {"a=(1 2 \"x\");p, b=tok", 0, 2, {"a", "b"}, {TUSC_SFV_INNER_LIST, TUSC_SFV_TOKEN}, {0, 0}},
      {"a=()", 0, 1, {"a"}, {TUSC_SFV_INNER_LIST}, {0}},
      {"a;p=1", 0, 1, {"a"}, {TUSC_SFV_BOOLEAN}, {1}},
      {"*x=1.5", 0, 1, {"*x"}, {TUSC_SFV_DECIMAL}, {1500}},
      {"a=1,\tb=2", 0, 2, {"a", "b"}, {TUSC_SFV_INTEGER, TUSC_SFV_INTEGER}, {1, 2}},
      {"", 0, 0, {NULL}, {0}, {0}},
      {"a=1,", TUSC_EINVALID_HEADER, 0, {NULL}, {0}, {0}},
      {",a=1", TUSC_EINVALID_HEADER, 0, {NULL}, {0}, {0}},
      {"a=1 b=2", TUSC_EINVALID_HEADER, 0, {NULL}, {0}, {0}},
      {"A=1", TUSC_EINVALID_HEADER, 0, {NULL}, {0}, {0}},
      {"1a=1", TUSC_EINVALID_HEADER, 0, {NULL}, {0}, {0}},
      {"a=", TUSC_EINVALID_HEADER, 0, {NULL}, {0}, {0}},
      {"a=(1 2", TUSC_EINVALID_HEADER, 0, {NULL}, {0}, {0}},
      {"a=(1,2)", TUSC_EINVALID_HEADER, 0, {NULL}, {0}, {0}},
      {"a=1;", TUSC_EINVALID_HEADER, 0, {NULL}, {0}, {0}},
      {"max-size=1e3", TUSC_EINVALID_HEADER, 0, {NULL}, {0}, {0}},
      {"a=1, b=2, c=3, d=4, e=5", TUSC_EINVALID_HEADER, 0, {NULL}, {0}, {0}}, /* over cap */
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    const char *case_in = cases[i].in;
    tusc_sfv_member_t members[4];
    size_t count = 99;
    int err = tusc_sfv_parse_dictionary(case_in, strlen(case_in), members, 4, &count);
    CHECK(err == cases[i].err);
    if (err != 0) {
      CHECK(count == 99);
      continue;
    }
    CHECK(count == cases[i].count);
    for (size_t k = 0; k < count; k++) {
      CHECK(strcmp(members[k].key, cases[i].keys[k]) == 0);
      CHECK(members[k].item.type == cases[i].types[k]);
      if (members[k].item.type == TUSC_SFV_BOOLEAN)
        CHECK((int64_t)members[k].item.boolean == cases[i].values[k]);
      else if (members[k].item.type == TUSC_SFV_INTEGER || members[k].item.type == TUSC_SFV_DECIMAL)
        CHECK(members[k].item.integer == cases[i].values[k]);
      const tusc_sfv_member_t *m = tusc_sfv_dict_get(members, count, cases[i].keys[k]);
      CHECK(m == &members[k]);
    }
    CHECK(tusc_sfv_dict_get(members, count, "nope") == NULL);
  }
}

static void test_lists(void **state) {
  (void)state;
  tusc_sfv_item_t items[3];
  size_t n = 0;
  const char *in = "1, \"two\", (a b);q=?0";
  assert_int_equal(tusc_sfv_parse_list(in, strlen(in), items, 3, &n), 0);
  assert_int_equal(n, 3);
  assert_int_equal(items[0].type, TUSC_SFV_INTEGER);
  assert_int_equal(items[1].type, TUSC_SFV_STRING);
  assert_int_equal(items[2].type, TUSC_SFV_INNER_LIST);
  assert_int_equal(items[2].param_count, 1);
  in = "1, 2, 3, 4";
  assert_int_equal(tusc_sfv_parse_list(in, strlen(in), items, 3, &n), TUSC_EINVALID_HEADER);
  in = "1,,2";
  assert_int_equal(tusc_sfv_parse_list(in, strlen(in), items, 3, &n), TUSC_EINVALID_HEADER);
  assert_int_equal(tusc_sfv_parse_list("", 0, items, 3, &n), 0);
  assert_int_equal(n, 0);
}

static void test_string_value(void **state) {
  (void)state;
  tusc_sfv_item_t item;
  const char *in = "\"say \\\"hi\\\" \\\\o/\"";
  assert_int_equal(tusc_sfv_parse_item(in, strlen(in), &item), 0);
  char out[32];
  long n = tusc_sfv_string_value(&item, out, sizeof(out));
  assert_int_equal(n, strlen("say \"hi\" \\o/"));
  assert_string_equal(out, "say \"hi\" \\o/");
  char small[4];
  assert_int_equal(tusc_sfv_string_value(&item, small, sizeof(small)), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_items),        cmocka_unit_test(test_boolean_and_integer),
      cmocka_unit_test(test_dictionaries), cmocka_unit_test(test_lists),
      cmocka_unit_test(test_string_value),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

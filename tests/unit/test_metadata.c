/* Unit tests for src/common/metadata.c (Upload-Metadata): table-driven, good and hostile input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "common/metadata.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Table checks name the failing row, so a red test says which input broke. */
#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond))                                                                                   \
      fail_msg("row %zu (\"%s\"): %s", i, case_in, #cond);                                         \
  } while (0)

/* ---- Upload-Metadata ---- */

struct md_pair {
  const char *key;
  const char *value;
};

struct md_case {
  const char *in;
  int err;
  size_t count;
  struct md_pair pairs[4];
};

static void test_metadata_parse(void **state) {
  (void)state;
  static const struct md_case cases[] = {
      {"", 0, 0, {{0}}},
      {"   ", 0, 0, {{0}}},
      {"filename d29ybGQ=", 0, 1, {{"filename", "world"}}},
      {"filename d29ybGQ=,is_confidential", 0, 2, {{"filename", "world"}, {"is_confidential", ""}}},
      {"a YQ==, b YmI=,c Y2Nj", 0, 3, {{"a", "a"}, {"b", "bb"}, {"c", "ccc"}}},
      {"  a YQ==  ,  b  ", 0, 2, {{"a", "a"}, {"b", ""}}},
      {"key", 0, 1, {{"key", ""}}},
      {"k!#$%&'*+-.^_`|~\"/ YQ==", 0, 1, {{"k!#$%&'*+-.^_`|~\"/", "a"}}},
      {"CaseA YQ==,casea YQ==", 0, 2, {{"CaseA", "a"}, {"casea", "a"}}},
      /* duplicates */
      {"a YQ==,a YQ==", TUSC_EINVALID_METADATA, 0, {{0}}},
      {"a,a", TUSC_EINVALID_METADATA, 0, {{0}}},
      {"a YQ==,b,a", TUSC_EINVALID_METADATA, 0, {{0}}},
      /* bad base64 */
      {"a Y", TUSC_EINVALID_METADATA, 0, {{0}}},
      {"a YQ", TUSC_EINVALID_METADATA, 0, {{0}}}, /* unpadded */
      {"a YQ=", TUSC_EINVALID_METADATA, 0, {{0}}},
      {"a YR==", TUSC_EINVALID_METADATA, 0, {{0}}}, /* non-canonical trailing bits */
      {"a Y*==", TUSC_EINVALID_METADATA, 0, {{0}}},
      {"a YQ==YQ==", TUSC_EINVALID_METADATA, 0, {{0}}}, /* padding in the middle */
      {"a d29y bGQ=", TUSC_EINVALID_METADATA, 0, {{0}}},
      {"a d29ybGQ-", TUSC_EINVALID_METADATA, 0, {{0}}}, /* url-safe alphabet */
      /* separators */
      {"a  YQ==", TUSC_EINVALID_METADATA, 0, {{0}}}, /* two spaces */
      {"a\tYQ==", TUSC_EINVALID_METADATA, 0, {{0}}},
      {"a YQ==,", TUSC_EINVALID_METADATA, 0, {{0}}}, /* trailing comma */
      {",a YQ==", TUSC_EINVALID_METADATA, 0, {{0}}},
      {"a YQ==,,b YQ==", TUSC_EINVALID_METADATA, 0, {{0}}},
      {"a YQ==, ,b YQ==", TUSC_EINVALID_METADATA, 0, {{0}}},
      {",", TUSC_EINVALID_METADATA, 0, {{0}}},
      /* keys */
      {" YQ==", 0, 1, {{"YQ==", ""}}}, /* leading space is trimmed: the key is "YQ==" */
      {"k\xc3\xa9 YQ==", TUSC_EINVALID_METADATA, 0, {{0}}},
      {"k\x01 YQ==", TUSC_EINVALID_METADATA, 0, {{0}}},
      {"k\x7f", TUSC_EINVALID_METADATA, 0, {{0}}},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    const struct md_case *c = &cases[i];
    const char *case_in = c->in;
    tusc_metadata_t md = {(tusc_metadata_pair_t *)(uintptr_t)1, 99};
    int err = tusc_metadata_parse(c->in, strlen(c->in), &md);
    CHECK((err) == (c->err));
    if (err != 0) {
      CHECK(md.pairs == (tusc_metadata_pair_t *)(uintptr_t)1 && md.count == 99);
      continue;
    }
    CHECK((md.count) == (c->count));
    for (size_t k = 0; k < c->count; k++) {
      CHECK(strcmp(md.pairs[k].key, c->pairs[k].key) == 0);
      CHECK((md.pairs[k].value_len) == (strlen(c->pairs[k].value)));
      CHECK(memcmp(md.pairs[k].value, c->pairs[k].value, md.pairs[k].value_len) == 0);
      CHECK((md.pairs[k].value[md.pairs[k].value_len]) == ('\0'));
      const tusc_metadata_pair_t *got = tusc_metadata_get(&md, c->pairs[k].key);
      CHECK((got) == (&md.pairs[k]));
    }
    tusc_metadata_dispose(&md);
    assert_null(md.pairs);
    CHECK((md.count) == (0));
  }
}

static void test_metadata_key_with_comma_or_space(void **state) {
  (void)state;
  tusc_metadata_t md = {NULL, 0};
  /* A comma always splits; "a,b YQ==" is two pairs, not a key "a,b". */
  assert_int_equal(tusc_metadata_parse("a,b YQ==", 8, &md), 0);
  assert_int_equal(md.count, 2);
  assert_string_equal(md.pairs[0].key, "a");
  assert_string_equal(md.pairs[1].key, "b");
  tusc_metadata_dispose(&md);
  /* A key cannot contain a space: "my key YQ==" makes "key" the value and then fails. */
  assert_int_equal(tusc_metadata_parse("my key YQ==", 11, &md), TUSC_EINVALID_METADATA);
}

static void test_metadata_binary_value(void **state) {
  (void)state;
  tusc_metadata_t md = {NULL, 0};
  /* "AAEA" = 00 01 00 */
  assert_int_equal(tusc_metadata_parse("bin AAEA", 8, &md), 0);
  assert_int_equal(md.count, 1);
  assert_int_equal(md.pairs[0].value_len, 3);
  assert_memory_equal(md.pairs[0].value, "\x00\x01\x00", 3);
  tusc_metadata_dispose(&md);
  /* NUL bytes in the header itself are never accepted. */
  assert_int_equal(tusc_metadata_parse("a\0 YQ==", 7, &md), TUSC_EINVALID_METADATA);
  assert_int_equal(tusc_metadata_parse("a YQ==\0", 7, &md), TUSC_EINVALID_METADATA);
  /* Length is honoured: only "a YQ==" of the longer string is parsed. */
  assert_int_equal(tusc_metadata_parse("a YQ==,b", 6, &md), 0);
  assert_int_equal(md.count, 1);
  tusc_metadata_dispose(&md);
}

static void test_metadata_round_trip(void **state) {
  (void)state;
  static const char *inputs[] = {
      "",
      "filename d29ybGQ=",
      "filename d29ybGQ=,is_confidential",
      "a YQ==,b YmI=,c Y2Nj,empty",
      "bin AAEA,k!x YWJjZGVmZ2hp",
  };
  for (size_t i = 0; i < ARRAY_LEN(inputs); i++) {
    tusc_metadata_t md = {NULL, 0};
    assert_int_equal(tusc_metadata_parse(inputs[i], strlen(inputs[i]), &md), 0);
    char *s = tusc_metadata_format(&md);
    assert_non_null(s);
    assert_string_equal(s, inputs[i]);
    tusc_metadata_t again = {NULL, 0};
    assert_int_equal(tusc_metadata_parse(s, strlen(s), &again), 0);
    assert_int_equal(again.count, md.count);
    for (size_t k = 0; k < md.count; k++) {
      assert_string_equal(again.pairs[k].key, md.pairs[k].key);
      assert_int_equal(again.pairs[k].value_len, md.pairs[k].value_len);
      assert_memory_equal(again.pairs[k].value, md.pairs[k].value, md.pairs[k].value_len);
    }
    free(s);
    tusc_metadata_dispose(&md);
    tusc_metadata_dispose(&again);
  }
}

static void test_metadata_set_get(void **state) {
  (void)state;
  tusc_metadata_t md = {NULL, 0};
  assert_null(tusc_metadata_get(&md, "x"));
  assert_int_equal(tusc_metadata_set(&md, "filename", "a.txt", 5), 0);
  assert_int_equal(tusc_metadata_set(&md, "filetype", "text/plain", 10), 0);
  assert_int_equal(tusc_metadata_set(&md, "flag", NULL, 0), 0);
  assert_int_equal(md.count, 3);
  assert_int_equal(tusc_metadata_set(&md, "filename", "b\0c", 3), 0);
  assert_int_equal(md.count, 3);
  const tusc_metadata_pair_t *p = tusc_metadata_get(&md, "filename");
  assert_non_null(p);
  assert_int_equal(p->value_len, 3);
  assert_memory_equal(p->value, "b\0c", 4);
  p = tusc_metadata_get(&md, "flag");
  assert_non_null(p);
  assert_int_equal(p->value_len, 0);
  assert_string_equal(p->value, "");
  assert_null(tusc_metadata_get(&md, "FILENAME"));
  char *s = tusc_metadata_format(&md);
  assert_non_null(s);
  assert_string_equal(s, "filename YgBj,filetype dGV4dC9wbGFpbg==,flag");
  free(s);
  tusc_metadata_dispose(&md);
  tusc_metadata_dispose(&md); /* idempotent */
}

/* Keys that arrive through tusc_metadata_set (hooks, .info files) are not checked;
 * format must never emit a header that would not parse back. */
static void test_metadata_format_skips_bad_keys(void **state) {
  (void)state;
  tusc_metadata_t md = {NULL, 0};
  assert_int_equal(tusc_metadata_set(&md, "bad key", "x", 1), 0);
  assert_int_equal(tusc_metadata_set(&md, "good", "x", 1), 0);
  assert_int_equal(tusc_metadata_set(&md, "a,b", "x", 1), 0);
  assert_int_equal(tusc_metadata_set(&md, "crlf\r\nX-Evil: 1", "x", 1), 0);
  assert_int_equal(tusc_metadata_set(&md, "", "x", 1), 0);
  assert_int_equal(tusc_metadata_set(&md, "k\xc3\xa9", "x", 1), 0);
  assert_int_equal(tusc_metadata_set(&md, "also_good", NULL, 0), 0);
  char *s = tusc_metadata_format(&md);
  assert_non_null(s);
  assert_string_equal(s, "good eA==,also_good");
  free(s);
  tusc_metadata_dispose(&md);
  md.pairs = NULL;
  assert_int_equal(tusc_metadata_set(&md, "only bad", "x", 1), 0);
  s = tusc_metadata_format(&md);
  assert_non_null(s);
  assert_string_equal(s, "");
  free(s);
  tusc_metadata_dispose(&md);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_metadata_parse),
      cmocka_unit_test(test_metadata_key_with_comma_or_space),
      cmocka_unit_test(test_metadata_binary_value),
      cmocka_unit_test(test_metadata_round_trip),
      cmocka_unit_test(test_metadata_set_get),
      cmocka_unit_test(test_metadata_format_skips_bad_keys),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

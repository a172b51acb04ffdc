/* Unit tests for src/store/info.c: the tusd-compatible .info JSON, both directions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "store/store.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static void set_md(tusc_upload_info_t *info, const char *key, const char *value, size_t len) {
  assert_int_equal(tusc_metadata_set(&info->metadata, key, value, len), 0);
}

static void assert_md(const tusc_upload_info_t *info, const char *key, const char *value,
                      size_t len) {
  const tusc_metadata_pair_t *p = tusc_metadata_get(&info->metadata, key);
  if (p == NULL)
    fail_msg("metadata key %s missing", key);
  assert_int_equal(p->value_len, len);
  assert_memory_equal(p->value, value, len);
}

static void test_init_dispose(void **state) {
  (void)state;
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  assert_string_equal(info.id, "");
  assert_null(info.partial_uploads);
  assert_null(info.owner);
  set_md(&info, "a", "b", 1);
  info.owner = strdup("alice");
  info.partial_uploads = calloc(1, sizeof(char *));
  info.partial_uploads[0] = strdup("p");
  info.partial_count = 1;
  tusc_upload_info_dispose(&info);
  assert_int_equal(info.metadata.count, 0);
  assert_null(info.owner);
  assert_null(info.partial_uploads);
  tusc_upload_info_dispose(&info); /* twice is harmless */
}

/* Field names, order and compactness exactly as tusd writes them, then tusc's own key. */
static void test_to_json_exact(void **state) {
  (void)state;
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  snprintf(info.id, sizeof(info.id), "abc");
  info.size = 5;
  info.offset = 2;
  set_md(&info, "filename", "a.txt", 5);
  info.created_at = 1700000000;
  assert_int_equal(tusc_upload_info_set_path(&info.data_path, "/d/ab/c_/abc"), 0);
  assert_int_equal(tusc_upload_info_set_path(&info.info_path, "/d/ab/c_/abc.info"), 0);
  char *json = tusc_upload_info_to_json(&info);
  assert_non_null(json);
  assert_string_equal(
      json, "{\"ID\":\"abc\",\"Size\":5,\"SizeIsDeferred\":false,\"Offset\":2,"
            "\"MetaData\":{\"filename\":\"a.txt\"},\"IsPartial\":false,\"IsFinal\":false,"
            "\"PartialUploads\":null,\"Storage\":{\"Type\":\"filestore\",\"Path\":\"/d/ab/c_/"
            "abc\",\"InfoPath\":\"/d/ab/c_/abc.info\"},\"tusc\":{\"CreatedAt\":1700000000,"
            "\"ExpiresAt\":0,\"Owner\":null}}");
  free(json);
  tusc_upload_info_dispose(&info);
}

static void test_to_json_deferred_no_storage(void **state) {
  (void)state;
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  info.size = -1;
  info.size_is_deferred = true;
  info.is_final = true;
  info.partial_uploads = calloc(2, sizeof(char *));
  info.partial_uploads[0] = strdup("p1");
  info.partial_uploads[1] = strdup("x/p2");
  info.partial_count = 2;
  char *json = tusc_upload_info_to_json(&info);
  assert_non_null(json);
  /* tusd: Size 0 while deferred; ID "" and Storage null before the upload exists. */
  assert_non_null(strstr(json, "\"ID\":\"\",\"Size\":0,\"SizeIsDeferred\":true,"));
  assert_non_null(strstr(json, "\"IsFinal\":true,\"PartialUploads\":[\"p1\",\"x/p2\"],"
                               "\"Storage\":null"));
  free(json);
  tusc_upload_info_dispose(&info);
}

static void test_round_trip(void **state) {
  (void)state;
  tusc_upload_info_t in, out;
  tusc_upload_info_init(&in);
  tusc_upload_info_init(&out);
  snprintf(in.id, sizeof(in.id), "project-7/0123456789abcdef");
  in.size = 1234567890123;
  in.offset = 99;
  in.is_partial = true;
  set_md(&in, "filename", "r\xc3\xa9sum\xc3\xa9.pdf", 11); /* UTF-8 */
  set_md(&in, "empty", "", 0);
  set_md(&in, "nul", "a\0b", 3);                 /* NUL inside */
  set_md(&in, "binary", "\xff\xfe\x00\x80z", 5); /* not UTF-8 */
  set_md(&in, "surrogate", "\xed\xa0\x80", 3);   /* CESU surrogate: invalid */
  in.created_at = 1;
  in.expires_at = 4102444800;
  in.owner = strdup("alice@example");
  in.repr_digest = strdup("sha-256=:uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=:");
  assert_int_equal(tusc_upload_info_set_path(&in.data_path, "/up/p/01/23/x"), 0);
  assert_int_equal(tusc_upload_info_set_path(&in.info_path, "/up/p/01/23/x.info"), 0);

  char *json = tusc_upload_info_to_json(&in);
  assert_non_null(json);
  /* Readers that do not know tusc's key still see a UTF-8 (lossy) value. */
  assert_non_null(strstr(json, "\"binary\":\"\xef\xbf\xbd\xef\xbf\xbd\\u0000\xef\xbf\xbdz\""));
  assert_non_null(strstr(json, "\"MetaDataB64\":{\"binary\":\"//4AgHo=\",\"surrogate\":"));
  assert_null(strstr(json, "\"filename\":\"cmVz")); /* valid values are not doubled */

  assert_int_equal(tusc_upload_info_from_json(json, strlen(json), &out), 0);
  assert_string_equal(out.id, in.id);
  assert_int_equal(out.size, in.size);
  assert_false(out.size_is_deferred);
  assert_int_equal(out.offset, 99);
  assert_true(out.is_partial);
  assert_false(out.is_final);
  assert_null(out.partial_uploads);
  assert_int_equal(out.metadata.count, 5);
  assert_md(&out, "filename", "r\xc3\xa9sum\xc3\xa9.pdf", 11);
  assert_md(&out, "empty", "", 0);
  assert_md(&out, "nul", "a\0b", 3);
  assert_md(&out, "binary", "\xff\xfe\x00\x80z", 5);
  assert_md(&out, "surrogate", "\xed\xa0\x80", 3);
  assert_int_equal(out.created_at, 1);
  assert_int_equal(out.expires_at, 4102444800);
  assert_string_equal(out.owner, "alice@example");
  assert_string_equal(out.repr_digest, in.repr_digest);
  assert_string_equal(out.data_path, in.data_path);
  assert_string_equal(out.info_path, in.info_path);
  free(json);

  /* Parsing over a filled info replaces it without leaking. */
  const char *small = "{\"ID\":\"z\",\"Size\":1}";
  assert_int_equal(tusc_upload_info_from_json(small, strlen(small), &out), 0);
  assert_string_equal(out.id, "z");
  assert_int_equal(out.metadata.count, 0);
  assert_null(out.owner);
  assert_null(out.repr_digest);
  tusc_upload_info_dispose(&in);
  tusc_upload_info_dispose(&out);
}

/* What tusd v2 writes (Go's encoder: Size 0 while deferred; Storage filled). */
static void test_parse_tusd(void **state) {
  (void)state;
  const char *json = "{\"ID\":\"8f3e1c\",\"Size\":0,\"SizeIsDeferred\":true,\"Offset\":0,"
                     "\"MetaData\":{\"filename\":\"a \\u003c b.txt\",\"filetype\":\"text/plain\"},"
                     "\"IsPartial\":false,\"IsFinal\":true,\"PartialUploads\":[\"p1\",\"p2\"],"
                     "\"Storage\":{\"InfoPath\":\"/srv/8f3e1c.info\",\"Path\":\"/srv/8f3e1c\","
                     "\"Type\":\"filestore\"}}";
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  assert_int_equal(tusc_upload_info_from_json(json, strlen(json), &info), 0);
  assert_string_equal(info.id, "8f3e1c");
  assert_int_equal(info.size, -1);
  assert_true(info.size_is_deferred);
  assert_true(info.is_final);
  assert_int_equal(info.partial_count, 2);
  assert_string_equal(info.partial_uploads[0], "p1");
  assert_string_equal(info.partial_uploads[1], "p2");
  assert_md(&info, "filename", "a < b.txt", 9);
  assert_md(&info, "filetype", "text/plain", 10);
  assert_string_equal(info.data_path, "/srv/8f3e1c");
  assert_string_equal(info.info_path, "/srv/8f3e1c.info");
  assert_int_equal(info.created_at, 0);
  assert_null(info.owner);
  tusc_upload_info_dispose(&info);
}

struct size_case {
  const char *json;
  int64_t size;
  bool deferred;
};

/* A Storage with a Path but no InfoPath (any tusd-era or hand-made .info) loads and
 * saves again (found by fuzz_info once the paths became heap strings). */
static void test_path_without_info_path(void **state) {
  (void)state;
  const char *json = "{\"ID\":\"abc\",\"Size\":10,\"SizeIsDeferred\":false,\"Offset\":5,"
                     "\"Storage\":{\"Type\":\"filestore\",\"Path\":\"/x/abc\"}}";
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  assert_int_equal(tusc_upload_info_from_json(json, strlen(json), &info), 0);
  assert_string_equal(info.data_path, "/x/abc");
  assert_null(info.info_path);
  char *out = tusc_upload_info_to_json(&info);
  assert_non_null(out);
  assert_non_null(strstr(out, "\"Path\":\"/x/abc\""));
  free(out);
  tusc_upload_info_dispose(&info);
}

static void test_parse_sizes(void **state) {
  (void)state;
  static const struct size_case cases[] = {
      {"{\"Size\":10}", 10, false},
      {"{\"Size\":0}", 0, false},
      {"{\"Size\":0,\"SizeIsDeferred\":true}", -1, true},
      {"{\"Size\":-1}", -1, true},
      {"{}", -1, true},
      {"{\"Size\":null}", -1, true},
      {"{\"Size\":9223372036854775807}", INT64_MAX, false},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    tusc_upload_info_t info;
    tusc_upload_info_init(&info);
    int rc = tusc_upload_info_from_json(cases[i].json, strlen(cases[i].json), &info);
    if (rc != 0 || info.size != cases[i].size || info.size_is_deferred != cases[i].deferred)
      fail_msg("row %zu (%s): rc %d size %lld deferred %d", i, cases[i].json, rc,
               (long long)info.size, info.size_is_deferred);
    tusc_upload_info_dispose(&info);
  }
}

static void test_parse_malformed(void **state) {
  (void)state;
  static const char *const cases[] = {
      "",
      "not json",
      "[]",
      "\"str\"",
      "{\"ID\":5}",
      "{\"Size\":\"5\"}",
      "{\"Size\":1.5}",
      "{\"Offset\":-3}",
      "{\"SizeIsDeferred\":1}",
      "{\"MetaData\":[]}",
      "{\"MetaData\":{\"k\":1}}",
      "{\"PartialUploads\":\"a\"}",
      "{\"PartialUploads\":[1]}",
      "{\"Storage\":\"x\"}",
      "{\"tusc\":{\"Owner\":5}}",
      "{\"tusc\":{\"ReprDigest\":[]}}",
      "{\"tusc\":{\"CreatedAt\":\"x\"}}",
      "{\"tusc\":{\"MetaDataB64\":{\"k\":\"not base64!\"}}}",
      "{\"ID\":\"a\"",
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    tusc_upload_info_t info;
    tusc_upload_info_init(&info);
    snprintf(info.id, sizeof(info.id), "keep");
    int rc = tusc_upload_info_from_json(cases[i], strlen(cases[i]), &info);
    if (rc != TUSC_EINTERNAL)
      fail_msg("row %zu (%s): rc %d", i, cases[i], rc);
    if (strcmp(info.id, "keep") != 0)
      fail_msg("row %zu (%s): info changed on failure", i, cases[i]);
    tusc_upload_info_dispose(&info);
  }
  /* An ID longer than TUSC_ID_MAX is rejected, not truncated. */
  char json[TUSC_ID_MAX + 32];
  char id[TUSC_ID_MAX + 2];
  memset(id, 'a', sizeof(id) - 1);
  id[sizeof(id) - 1] = '\0';
  snprintf(json, sizeof(json), "{\"ID\":\"%s\"}", id);
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  assert_int_equal(tusc_upload_info_from_json(json, strlen(json), &info), TUSC_EINTERNAL);
  tusc_upload_info_dispose(&info);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_init_dispose),
      cmocka_unit_test(test_to_json_exact),
      cmocka_unit_test(test_to_json_deferred_no_storage),
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_parse_tusd),
      cmocka_unit_test(test_path_without_info_path),
      cmocka_unit_test(test_parse_sizes),
      cmocka_unit_test(test_parse_malformed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

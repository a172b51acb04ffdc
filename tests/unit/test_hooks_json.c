/* Unit tests for src/hooks/hook_json.c: the request JSON byte for byte as tusd (Go's
 * encoding/json) writes it, header canonicalisation, and the response parser table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "hooks/hook_json.h"
#include "hooks/hooks.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static void set_md(tusc_upload_info_t *info, const char *key, const char *value, size_t len) {
  assert_int_equal(tusc_metadata_set(&info->metadata, key, value, len), 0);
}

static void expect_json(enum tusc_hook_event ev, const tusc_upload_info_t *info,
                        const tusc_hook_http_request_t *req, const char *want) {
  char *got = NULL;
  size_t len = 0;
  /* The file store's map, in its order (the builder sorts the keys). */
  tusc_store_kv_t kv[] = {
      {"Type", "filestore"}, {"Path", info->data_path}, {"InfoPath", info->info_path}};
  size_t n = info->data_path != NULL ? 3 : 0;
  assert_int_equal(tusc_hook_json_request(ev, info, kv, n, req, &got, &len), 0);
  assert_non_null(got);
  assert_int_equal(len, strlen(got));
  if (strcmp(got, want) != 0)
    fail_msg("request JSON differs\n got: %s\nwant: %s", got, want);
  free(got);
}

static void test_request_pre_create(void **state) {
  (void)state;
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  /* Whatever the caller already holds, pre-create announces no ID and no storage. */
  snprintf(info.id, sizeof(info.id), "0123456789abcdef0123456789abcdef");
  assert_int_equal(tusc_upload_info_set_path(&info.data_path, "/data/01/23/x"), 0);
  info.size = 5;
  set_md(&info, "filetype", "text/plain", 10);
  set_md(&info, "filename", "a<b>&c.txt", 10);
  set_md(&info, "empty", "", 0);
  tusc_hook_header_t headers[] = {
      {"upload-length", "5"},
      {"Tus-Resumable", "1.0.0"},
      {"host", "localhost:1080"},
      {"X-Multi", "a"},
      {"x-multi", "b"},
      {"upload-metadata", "k dg=="},
      {"X-FORWARDED-FOR", "1.2.3.4"},
  };
  tusc_hook_http_request_t req = {
      .method = "POST",
      .uri = "/files/?x=1&y=\"2\"",
      .remote_ip = "127.0.0.1",
      .remote_port = 4321,
      .headers = headers,
      .header_count = ARRAY_LEN(headers),
  };
  expect_json(TUSC_HOOK_PRE_CREATE, &info, &req,
              "{\"Type\":\"pre-create\",\"Event\":{\"Upload\":{\"ID\":\"\",\"Size\":5,"
              "\"SizeIsDeferred\":false,\"Offset\":0,\"MetaData\":{\"empty\":\"\","
              "\"filename\":\"a\\u003cb\\u003e\\u0026c.txt\",\"filetype\":\"text/plain\"},"
              "\"IsPartial\":false,\"IsFinal\":false,\"PartialUploads\":null,\"Storage\":null},"
              "\"HTTPRequest\":{\"Method\":\"POST\",\"URI\":\"/files/?x=1\\u0026y=\\\"2\\\"\","
              "\"RemoteAddr\":\"127.0.0.1:4321\",\"Header\":{\"Host\":[\"localhost:1080\"],"
              "\"Tus-Resumable\":[\"1.0.0\"],\"Upload-Length\":[\"5\"],"
              "\"Upload-Metadata\":[\"k dg==\"],\"X-Forwarded-For\":[\"1.2.3.4\"],"
              "\"X-Multi\":[\"a\",\"b\"]}}}}");
  tusc_upload_info_dispose(&info);
}

static void test_request_post_finish(void **state) {
  (void)state;
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  snprintf(info.id, sizeof(info.id), "0123456789abcdef0123456789abcdef");
  assert_int_equal(tusc_upload_info_set_path(
                       &info.data_path, "/srv/data/01/23/0123456789abcdef0123456789abcdef"),
                   0);
  assert_int_equal(tusc_upload_info_set_path(
                       &info.info_path, "/srv/data/01/23/0123456789abcdef0123456789abcdef.info"),
                   0);
  info.size = 11;
  info.offset = 11;
  info.is_final = true;
  char *parts[] = {"aaaa", "bbbb"};
  info.partial_uploads = parts;
  info.partial_count = 2;
  /* Binary metadata: invalid UTF-8 → U+FFFD, controls escaped, U+2028 escaped, valid
   * multi-byte characters kept raw. */
  static const char odd[] = "\xff\x01\n\t\b\f\r\\\xc3\xa9\xe2\x80\xa8\xed\xa0\x80z\x7f";
  set_md(&info, "odd", odd, sizeof(odd) - 1);
  set_md(&info, "nul", "a\0b", 3);
  tusc_hook_http_request_t req = {
      .method = "PATCH",
      .uri = "/files/0123456789abcdef0123456789abcdef",
      .remote_ip = "::1",
      .remote_port = 80,
  };
  const char *want =
      "{\"Type\":\"post-finish\",\"Event\":{\"Upload\":{"
      "\"ID\":\"0123456789abcdef0123456789abcdef\",\"Size\":11,\"SizeIsDeferred\":false,"
      "\"Offset\":11,\"MetaData\":{\"nul\":\"a\\u0000b\","
      "\"odd\":\"\\ufffd\\u0001\\n\\t\\b\\f\\r\\\\\xc3\xa9\\u2028\\ufffd\\ufffd\\ufffdz\x7f\"},"
      "\"IsPartial\":false,\"IsFinal\":true,\"PartialUploads\":[\"aaaa\",\"bbbb\"],"
      "\"Storage\":{\"InfoPath\":\"/srv/data/01/23/0123456789abcdef0123456789abcdef.info\","
      "\"Path\":\"/srv/data/01/23/0123456789abcdef0123456789abcdef\",\"Type\":\"filestore\"}},"
      "\"HTTPRequest\":{\"Method\":\"PATCH\","
      "\"URI\":\"/files/0123456789abcdef0123456789abcdef\",\"RemoteAddr\":\"[::1]:80\","
      "\"Header\":{}}}}";
  expect_json(TUSC_HOOK_POST_FINISH, &info, &req, want);
  /* tusc's own keys follow HTTPRequest; RemoteAddr stays the peer. */
  req.principal = "bob";
  req.client_addr = "203.0.113.7";
  size_t base = strlen(want) - 2;
  char with_extra[2048];
  snprintf(with_extra, sizeof(with_extra),
           "%.*s,\"TuscPrincipal\":\"bob\","
           "\"TuscClientAddr\":\"203.0.113.7\"}}",
           (int)base, want);
  expect_json(TUSC_HOOK_POST_FINISH, &info, &req, with_extra);
  info.partial_uploads = NULL;
  info.partial_count = 0;
  tusc_upload_info_dispose(&info);
}

static void test_request_deferred_no_request(void **state) {
  (void)state;
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  snprintf(info.id, sizeof(info.id), "abcd");
  info.size = -1;
  info.size_is_deferred = true;
  info.offset = 3;
  info.is_partial = true;
  expect_json(TUSC_HOOK_POST_RECEIVE, &info, NULL,
              "{\"Type\":\"post-receive\",\"Event\":{\"Upload\":{\"ID\":\"abcd\",\"Size\":0,"
              "\"SizeIsDeferred\":true,\"Offset\":3,\"MetaData\":{},\"IsPartial\":true,"
              "\"IsFinal\":false,\"PartialUploads\":null,\"Storage\":null},"
              "\"HTTPRequest\":{\"Method\":\"\",\"URI\":\"\",\"RemoteAddr\":\"\","
              "\"Header\":{}}}}");
  tusc_upload_info_dispose(&info);
}

static void test_request_bad_event(void **state) {
  (void)state;
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  char *out = NULL;
  size_t len = 0;
  assert_int_equal(
      tusc_hook_json_request((enum tusc_hook_event)7, &info, NULL, 0, NULL, &out, &len),
      TUSC_EINVALID_ARGUMENT);
  assert_null(out);
  tusc_upload_info_dispose(&info);
}

static void test_canonical_header(void **state) {
  (void)state;
  static const struct {
    const char *in, *want;
  } cases[] = {
      {"upload-length", "Upload-Length"},
      {"UPLOAD-OFFSET", "Upload-Offset"},
      {"x-forwarded-for", "X-Forwarded-For"},
      {"content-md5", "Content-Md5"},
      {"www-authenticate", "Www-Authenticate"},
      {"foo_bar", "Foo_bar"},
      {"-x", "-X"},
      {"a b", "a b"},               /* not a token: unchanged */
      {"x-\xc3\xa9", "x-\xc3\xa9"}, /* non-ASCII: unchanged */
      {"", ""},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    char out[64];
    long n = tusc_hook_canonical_header(cases[i].in, out, sizeof(out));
    if (n != (long)strlen(cases[i].want) || strcmp(out, cases[i].want) != 0)
      fail_msg("row %zu (\"%s\"): got \"%s\"", i, cases[i].in, out);
  }
  char tiny[4];
  assert_int_equal(tusc_hook_canonical_header("upload", tiny, sizeof(tiny)), -1);
}

/* --- response parser ----------------------------------------------------------------- */

struct resp_case {
  const char *in;
  int rc;
  int status_code;
  const char *body; /* NULL = absent */
  size_t header_count;
  bool reject_upload, reject_termination, stop_upload;
  const char *change_id;
  int md_count; /* -1 = no MetaData change */
  const char *storage_path;
};

static void test_response_table(void **state) {
  (void)state;
  static const struct resp_case cases[] = {
      {"", 0, 0, NULL, 0, false, false, false, NULL, -1, NULL},
      {" \n\t", 0, 0, NULL, 0, false, false, false, NULL, -1, NULL},
      {"null", 0, 0, NULL, 0, false, false, false, NULL, -1, NULL},
      {"{}", 0, 0, NULL, 0, false, false, false, NULL, -1, NULL},
      {"{\"RejectUpload\":true}", 0, 0, NULL, 0, true, false, false, NULL, -1, NULL},
      {"{\"rejectupload\":true,\"REJECTTERMINATION\":true,\"stopUpload\":true}", 0, 0, NULL, 0,
       true, true, true, NULL, -1, NULL},
      {"{\"RejectUpload\":false,\"Unknown\":[1,2,{}],\"x\":null}", 0, 0, NULL, 0, false, false,
       false, NULL, -1, NULL},
      {"{\"RejectUpload\":null}", 0, 0, NULL, 0, false, false, false, NULL, -1, NULL},
      {"{\"HTTPResponse\":{\"StatusCode\":403,\"Body\":\"no\",\"Header\":{\"X-A\":\"1\","
       "\"X-B\":\"2\"}}}",
       0, 403, "no", 2, false, false, false, NULL, -1, NULL},
      {"{\"httpresponse\":{\"statuscode\":201,\"body\":\"\",\"header\":{}}}", 0, 201, "", 0, false,
       false, false, NULL, -1, NULL},
      {"{\"ChangeFileInfo\":{\"ID\":\"custom/abc-1\"}}", 0, 0, NULL, 0, false, false, false,
       "custom/abc-1", -1, NULL},
      {"{\"ChangeFileInfo\":{\"ID\":\"\"}}", 0, 0, NULL, 0, false, false, false, NULL, -1, NULL},
      {"{\"ChangeFileInfo\":{\"MetaData\":null}}", 0, 0, NULL, 0, false, false, false, NULL, -1,
       NULL},
      {"{\"ChangeFileInfo\":{\"MetaData\":{}}}", 0, 0, NULL, 0, false, false, false, NULL, 0, NULL},
      {"{\"changefileinfo\":{\"metadata\":{\"a\":\"1\",\"b\":\"\"}}}", 0, 0, NULL, 0, false, false,
       false, NULL, 2, NULL},
      {"{\"ChangeFileInfo\":{\"Storage\":{\"Path\":\"/x/y\",\"Other\":\"z\"}}}", 0, 0, NULL, 0,
       false, false, false, NULL, -1, "/x/y"},
      /* errors */
      {"{", TUSC_EINTERNAL, 0, NULL, 0, false, false, false, NULL, -1, NULL},
      {"{} x", TUSC_EINTERNAL, 0, NULL, 0, false, false, false, NULL, -1, NULL},
      {"[]", TUSC_EINTERNAL, 0, NULL, 0, false, false, false, NULL, -1, NULL},
      {"\"ok\"", TUSC_EINTERNAL, 0, NULL, 0, false, false, false, NULL, -1, NULL},
      {"{\"RejectUpload\":\"true\"}", TUSC_EINTERNAL, 0, NULL, 0, false, false, false, NULL, -1,
       NULL},
      {"{\"StopUpload\":1}", TUSC_EINTERNAL, 0, NULL, 0, false, false, false, NULL, -1, NULL},
      {"{\"HTTPResponse\":[]}", TUSC_EINTERNAL, 0, NULL, 0, false, false, false, NULL, -1, NULL},
      {"{\"HTTPResponse\":{\"StatusCode\":\"200\"}}", TUSC_EINTERNAL, 0, NULL, 0, false, false,
       false, NULL, -1, NULL},
      {"{\"HTTPResponse\":{\"StatusCode\":200.5}}", TUSC_EINTERNAL, 0, NULL, 0, false, false, false,
       NULL, -1, NULL},
      {"{\"HTTPResponse\":{\"Body\":5}}", TUSC_EINTERNAL, 0, NULL, 0, false, false, false, NULL, -1,
       NULL},
      {"{\"HTTPResponse\":{\"Header\":{\"X\":1}}}", TUSC_EINTERNAL, 0, NULL, 0, false, false, false,
       NULL, -1, NULL},
      {"{\"HTTPResponse\":{\"Header\":{\"X\":\"a\\r\\nSet-Cookie: x\"}}}", TUSC_EINTERNAL, 0, NULL,
       0, false, false, false, NULL, -1, NULL},
      {"{\"ChangeFileInfo\":{\"ID\":\"../etc/passwd\"}}", TUSC_EINTERNAL, 0, NULL, 0, false, false,
       false, NULL, -1, NULL},
      {"{\"ChangeFileInfo\":{\"ID\":\"a/\"}}", TUSC_EINTERNAL, 0, NULL, 0, false, false, false,
       NULL, -1, NULL},
      {"{\"ChangeFileInfo\":{\"ID\":7}}", TUSC_EINTERNAL, 0, NULL, 0, false, false, false, NULL, -1,
       NULL},
      {"{\"ChangeFileInfo\":{\"MetaData\":{\"a\":1}}}", TUSC_EINTERNAL, 0, NULL, 0, false, false,
       false, NULL, -1, NULL},
      {"{\"ChangeFileInfo\":{\"MetaData\":{\"a b\":\"1\"}}}", TUSC_EINTERNAL, 0, NULL, 0, false,
       false, false, NULL, -1, NULL},
      {"{\"ChangeFileInfo\":{\"MetaData\":[]}}", TUSC_EINTERNAL, 0, NULL, 0, false, false, false,
       NULL, -1, NULL},
      {"{\"ChangeFileInfo\":{\"Storage\":{\"Path\":1}}}", TUSC_EINTERNAL, 0, NULL, 0, false, false,
       false, NULL, -1, NULL},
      {"{\"ChangeFileInfo\":\"x\"}", TUSC_EINTERNAL, 0, NULL, 0, false, false, false, NULL, -1,
       NULL},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    const struct resp_case *c = &cases[i];
    tusc_hook_response_t r;
    tusc_hook_response_init(&r);
    int rc = tusc_hook_json_response(c->in, strlen(c->in), &r);
    if (rc != c->rc)
      fail_msg("row %zu (%s): rc %d, want %d (%s)", i, c->in, rc, c->rc, r.error);
    if (rc < 0) {
      if (!r.error[0])
        fail_msg("row %zu (%s): error without a reason", i, c->in);
      tusc_hook_response_dispose(&r);
      continue;
    }
    bool ok = r.status_code == c->status_code && r.header_count == c->header_count &&
              r.reject_upload == c->reject_upload &&
              r.reject_termination == c->reject_termination && r.stop_upload == c->stop_upload;
    ok = ok && (c->body ? (r.body && strcmp(r.body, c->body) == 0) : r.body == NULL);
    ok = ok && (c->change_id ? (r.change_id && strcmp(r.change_id, c->change_id) == 0)
                             : r.change_id == NULL);
    ok = ok && (c->md_count < 0 ? !r.has_metadata
                                : (r.has_metadata && r.metadata.count == (size_t)c->md_count));
    ok = ok && (c->storage_path
                    ? (r.change_storage_path && strcmp(r.change_storage_path, c->storage_path) == 0)
                    : r.change_storage_path == NULL);
    if (!ok)
      fail_msg("row %zu (%s): parsed fields differ", i, c->in);
    tusc_hook_response_dispose(&r);
  }
}

static void test_response_values(void **state) {
  (void)state;
  static const char in[] =
      "{\"HTTPResponse\":{\"Header\":{\"X-Id\":\"42\"},\"Body\":\"a\\u0000b\"},"
      "\"ChangeFileInfo\":{\"MetaData\":{\"filename\":\"x.txt\"}}}";
  tusc_hook_response_t r;
  tusc_hook_response_init(&r);
  assert_int_equal(tusc_hook_json_response(in, sizeof(in) - 1, &r), 0);
  assert_int_equal(r.header_count, 1);
  assert_string_equal(r.headers[0].name, "X-Id");
  assert_string_equal(r.headers[0].value, "42");
  assert_int_equal(r.body_len, 3);
  assert_memory_equal(r.body, "a\0b", 3);
  const tusc_metadata_pair_t *p = tusc_metadata_get(&r.metadata, "filename");
  assert_non_null(p);
  assert_string_equal(p->value, "x.txt");
  tusc_hook_response_dispose(&r);
  assert_null(r.body);
  assert_int_equal(r.header_count, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_request_pre_create),
      cmocka_unit_test(test_request_post_finish),
      cmocka_unit_test(test_request_deferred_no_request),
      cmocka_unit_test(test_request_bad_event),
      cmocka_unit_test(test_canonical_header),
      cmocka_unit_test(test_response_table),
      cmocka_unit_test(test_response_values),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

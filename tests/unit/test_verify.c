/* Unit tests for src/tus/verify.c with the stores' staged chunks: what the request head
 * asks for; a staged chunk leaves the data untouched until its digest matched; trailer
 * mode reads the staged bytes back; a mismatch, a missing digest or a broken-off body
 * drops the chunk — against the file store and the in-memory store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#include "common/error.h"
#include "store/mem.h"
#include "store/store.h"
#include "tus/verify.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* sha1("hello world"), crc32("hello world"). */
#define SHA1_HELLO "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0="
#define CRC_HELLO "crc32 DUoRhQ=="

static void make_request(tusc_http_request_t *req, tusc_http_header_t *hs, size_t n, bool chunked) {
  memset(req, 0, sizeof(*req));
  for (size_t i = 0; i < n; i++) {
    hs[i].name_len = strlen(hs[i].name);
    hs[i].value_len = strlen(hs[i].value);
  }
  req->headers = hs;
  req->header_count = n;
  req->chunked = chunked;
  req->content_length = chunked ? -1 : 11;
}

static void test_new_from_head(void **state) {
  (void)state;
  static const struct {
    const char *name1, *value1, *name2, *value2;
    bool chunked;
    int want; /* 0 with object, 1 = no object, else error */
  } cases[] = {
      {"Content-Type", "x", NULL, NULL, false, 1},
      {"Upload-Checksum", SHA1_HELLO, NULL, NULL, false, 0},
      {"upload-checksum", CRC_HELLO, NULL, NULL, true, 0},
      {"Upload-Checksum", "sha3 AAAA", NULL, NULL, false, TUSC_ECHECKSUM_ALGORITHM},
      {"Upload-Checksum", "sha1", NULL, NULL, false, TUSC_EINVALID_CHECKSUM},
      {"Upload-Checksum", SHA1_HELLO, "Upload-Checksum", SHA1_HELLO, false, TUSC_EINVALID_CHECKSUM},
      {"Trailer", "Upload-Checksum", NULL, NULL, true, 0},
      {"Trailer", "X-Foo, upload-checksum", NULL, NULL, true, 0},
      {"Trailer", "X-Upload-Checksum", NULL, NULL, true, 1},
      {"Trailer", "Upload-Checksum", NULL, NULL, false, TUSC_EINVALID_CHECKSUM},
      {"Trailer", "Upload-Checksum", "Upload-Checksum", SHA1_HELLO, true, TUSC_EINVALID_CHECKSUM},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    tusc_http_header_t hs[2];
    memset(hs, 0, sizeof(hs));
    size_t n = 1;
    hs[0].name = cases[i].name1;
    hs[0].value = cases[i].value1;
    if (cases[i].name2 != NULL) {
      hs[1].name = cases[i].name2;
      hs[1].value = cases[i].value2;
      n = 2;
    }
    tusc_http_request_t req;
    make_request(&req, hs, n, cases[i].chunked);
    tusc_verify_t *v = (tusc_verify_t *)&req; /* must be overwritten or left alone */
    int rc = tusc_verify_new(&req, &v);
    if (cases[i].want == 1) {
      assert_int_equal(rc, 0);
      assert_null(v);
    } else if (cases[i].want == 0) {
      assert_int_equal(rc, 0);
      assert_non_null(v);
      tusc_verify_free(v);
    } else if (rc != cases[i].want) {
      fail_msg("case %zu: rc %d, want %d", i, rc, cases[i].want);
    }
  }
}

/* Content-Digest (the IETF draft's digests): several field lines form one Dictionary;
 * a mismatch speaks of the digest, not of a tus checksum. */
static void test_new_digest(void **state) {
  (void)state;
  static const char sha256_hello[] = "sha-256=:uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=:";
  tusc_http_header_t hs[2];
  memset(hs, 0, sizeof(hs));
  tusc_http_request_t req;
  tusc_verify_t *v = NULL;
  /* none, and one tusc does not check */
  hs[0].name = "Content-Type";
  hs[0].value = "x";
  make_request(&req, hs, 1, false);
  assert_int_equal(tusc_verify_new_digest(&req, &v), 0);
  assert_null(v);
  hs[0].name = "Content-Digest";
  hs[0].value = "md5=:XrY7u+Ae7tCTyyK7j1rNww==:";
  make_request(&req, hs, 1, false);
  assert_int_equal(tusc_verify_new_digest(&req, &v), 0);
  assert_null(v);
  /* the sha-256 member on a second field line */
  hs[1].name = "content-digest";
  hs[1].value = sha256_hello;
  make_request(&req, hs, 2, false);
  assert_int_equal(tusc_verify_new_digest(&req, &v), 0);
  assert_non_null(v);
  assert_int_equal(tusc_verify_update(v, "hello world", 11), 0);
  tusc_verify_free(v);
  /* a trailer is not the header */
  hs[0].value = sha256_hello;
  hs[0].trailer = true;
  make_request(&req, hs, 1, true);
  assert_int_equal(tusc_verify_new_digest(&req, &v), 0);
  assert_null(v);
  hs[0].trailer = false;
  /* an empty body whose digest is not that of no bytes */
  make_request(&req, hs, 1, false);
  assert_int_equal(tusc_verify_new_digest(&req, &v), 0);
  assert_int_equal(tusc_verify_empty(v), TUSC_EDIGEST_MISMATCH);
  tusc_verify_free(v);
  /* malformed */
  hs[0].value = "sha-256=:AAAA:";
  make_request(&req, hs, 1, false);
  assert_int_equal(tusc_verify_new_digest(&req, &v), TUSC_EINVALID_DIGEST);
  hs[1].value = "(";
  hs[0].value = sha256_hello;
  make_request(&req, hs, 2, false);
  assert_int_equal(tusc_verify_new_digest(&req, &v), TUSC_EINVALID_DIGEST);
}

static size_t files_in_tree(const char *dir) {
  char cmd[256];
  snprintf(cmd, sizeof(cmd), "find '%s' -type f | wc -l", dir);
  FILE *p = popen(cmd, "r");
  size_t n = 0;
  assert_int_equal(fscanf(p, "%zu", &n), 1);
  pclose(p);
  return n;
}

/* --- a chunk through verify and the store (tusc_verify_update / tusc_verify_end) on a
 * real loop, against the file store and the in-memory store --- */

struct afix {
  char dir[128];
  bool file;
  uv_loop_t loop;
  tusc_store_t *store;
};

struct adone {
  int calls;
  int status;
  tusc_upload_t *up;
  size_t nread;
};

static void on_sreq(tusc_store_req_t *req, int status) {
  struct adone *d = req->data;
  d->calls++;
  d->status = status;
  d->up = req->upload;
}

static void on_verified(tusc_verify_t *v, int status, void *arg) {
  (void)v;
  struct adone *d = arg;
  d->calls++;
  d->status = status;
}

static int await(struct afix *f, struct adone *d, int started) {
  assert_int_equal(started, 0);
  for (int i = 0; i < 100000 && d->calls == 0; i++)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(d->calls, 1);
  return d->status;
}

static int asetup(void **state, bool file) {
  struct afix *f = calloc(1, sizeof(*f));
  f->file = file;
  assert_int_equal(uv_loop_init(&f->loop), 0);
  if (file) {
    assert_int_equal(test_tmpdir(f->dir, sizeof(f->dir), "test-averify"), 0);
    tusc_file_store_options_t opts = {
        .dir = f->dir, .dir_perms = 0775, .file_perms = 0664, .fsync = true};
    assert_int_equal(tusc_file_store_new(&opts, &f->store), 0);
  } else {
    assert_int_equal(tusc_mem_store_new(NULL, &f->store), 0);
  }
  *state = f;
  return 0;
}

static int asetup_file(void **state) {
  return asetup(state, true);
}

static int asetup_mem(void **state) {
  return asetup(state, false);
}

static int ateardown(void **state) {
  struct afix *f = *state;
  tusc_store_free(f->store);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  if (f->file)
    assert_int_equal(test_rm_rf(f->dir), 0);
  free(f);
  return 0;
}

static tusc_upload_t *aopen(struct afix *f, const char *id) {
  tusc_store_req_t req = {0};
  struct adone d = {0};
  req.data = &d;
  assert_int_equal(await(f, &d, tusc_store_open(f->store, &f->loop, &req, id, on_sreq)), 0);
  return d.up;
}

static int64_t alen(struct afix *f, const char *id) {
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  tusc_store_req_t req = {0};
  struct adone d = {0};
  req.data = &d;
  assert_int_equal(await(f, &d, tusc_store_get_info(f->store, &f->loop, &req, id, &info, on_sreq)),
                   0);
  int64_t n = info.offset;
  tusc_upload_info_dispose(&info);
  return n;
}

static void on_drain_never(void *arg) {
  (void)arg;
}

/* One chunk: `ok` false stands for a body that broke off. */
static int arun_chunk(struct afix *f, const char *id, const char *value, bool trailer,
                      const char *body, bool ok) {
  tusc_http_header_t hs[2];
  memset(hs, 0, sizeof(hs));
  hs[0].name = trailer ? "Trailer" : "Upload-Checksum";
  hs[0].value = trailer ? "Upload-Checksum" : value;
  hs[1].name = "Upload-Checksum";
  hs[1].value = value;
  hs[1].trailer = true;
  tusc_http_request_t req;
  make_request(&req, hs, trailer ? 2 : 1, trailer);
  tusc_verify_t *v = NULL;
  assert_int_equal(tusc_verify_new(&req, &v), 0);
  tusc_upload_t *up = aopen(f, id);
  int64_t before = tusc_store_info(up)->offset;
  assert_int_equal(tusc_store_chunk_begin(up, tusc_verify_chunk_flags(v)), 0);
  size_t len = strlen(body);
  /* In two pieces, as a body arrives. */
  assert_int_equal(tusc_store_append(up, body, 5, on_drain_never, NULL), 0);
  assert_int_equal(tusc_verify_update(v, body, 5), 0);
  assert_int_equal(tusc_store_append(up, body + 5, len - 5, on_drain_never, NULL), 0);
  assert_int_equal(tusc_verify_update(v, body + 5, len - 5), 0);
  int rc = ok ? tusc_verify_body_end(v, &req) : 0;
  struct adone e = {0};
  int st = await(f, &e, tusc_verify_end(v, up, before, ok && rc == 0, on_verified, &e));
  if (rc == 0)
    rc = st;
  assert_int_equal(alen(f, id), rc == 0 && ok ? before + (int64_t)len : before);
  assert_int_equal(tusc_store_info(up)->offset, rc == 0 && ok ? before + (int64_t)len : before);
  tusc_store_close(up);
  tusc_verify_free(v);
  return rc;
}

static void test_async_verify(void **state) {
  struct afix *f = *state;
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  snprintf(info.id, sizeof(info.id), "averify");
  info.size = 100;
  tusc_store_req_t req = {0};
  struct adone d = {0};
  req.data = &d;
  assert_int_equal(await(f, &d, tusc_store_create(f->store, &f->loop, &req, &info, on_sreq)), 0);
  tusc_upload_info_dispose(&info);
  for (int trailer = 0; trailer < 2; trailer++) {
    assert_int_equal(arun_chunk(f, "averify", SHA1_HELLO, trailer, "hello worle", true),
                     TUSC_ECHECKSUM_MISMATCH);
    assert_int_equal(arun_chunk(f, "averify", CRC_HELLO, trailer, "hello world", true), 0);
    /* Broken off: dropped, whatever the digest. */
    assert_int_equal(arun_chunk(f, "averify", CRC_HELLO, trailer, "hello world", false), 0);
  }
  assert_int_equal(arun_chunk(f, "averify", "sha1 nope", true, "hello world", true),
                   TUSC_EINVALID_CHECKSUM);
  assert_int_equal(alen(f, "averify"), 22);
  if (f->file)
    assert_int_equal(files_in_tree(f->dir), 2); /* no side file left: data + .info */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_new_from_head),
      cmocka_unit_test(test_new_digest),
      cmocka_unit_test_setup_teardown(test_async_verify, asetup_file, ateardown),
      cmocka_unit_test_setup_teardown(test_async_verify, asetup_mem, ateardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

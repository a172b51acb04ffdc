/* Unit tests for the asynchronous store interface (store/store.h), run against every
 * implementation — the file store (store/file.c, on libuv's thread pool), the in-memory
 * store (store/mem.c) and, when TUSC_S3_ENDPOINT names a real S3 server (ctest's
 * test_store_async_s3 starts Ceph RGW with tests/s3/rgw.py), the S3 store — on a real
 * uv loop: round trips, chunks kept and
 * discarded (plain and staged), reading staged bytes back, size limits, "full" answers
 * and their drain callback, concatenation, waiting notes, listing, cancellation, and that
 * no callback ever runs before its call returned. */
#include <errno.h>
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
#include <curl/curl.h>

#include "testutil.h"

#include "common/error.h"
#include "store/mem.h"
#include "store/s3.h"
#include "store/store.h"

/* FILE_NOSYNC_STORE: the file store without fsync, which ends small chunks on the loop
 * (file.c INLINE_TAIL_MAX): its callbacks must still come later. */
/* S3_STORE: 1 MiB parts, memory for two of them (so that appends answer full);
 * S3_SMALL: parts of 64 KiB, RGW's lowered minimum, so that every chunk spans parts. */
enum kind { FILE_STORE, FILE_NOSYNC_STORE, MEM_STORE, MEM_FULL_STORE, S3_STORE, S3_SMALL };

static bool is_s3(int kind) {
  return kind == S3_STORE || kind == S3_SMALL;
}

typedef struct fixture_s {
  enum kind kind;
  char dir[64];
  uv_loop_t loop;
  tusc_store_t *store;
  char prefix[64]; /* S3: every test gets objects of its own */
} fixture_t;

/* One request and what its callback saw. */
struct call {
  tusc_store_req_t req;
  bool returned; /* the starting call has returned */
  int calls;
  int status;
  bool inline_cb;
};

/* The loop of the running test. Callbacks stop the loop's current run: a callback that
 * comes in the timer phase (libcurl finishing a transfer from a timeout action) would
 * otherwise leave uv_run(UV_RUN_ONCE) to block in poll on the S3 store's idle
 * keep-alive connections, with nothing left to wake it. */
static uv_loop_t *test_loop;

static void on_cb(tusc_store_req_t *req, int status) {
  struct call *c = req->data;
  uv_stop(test_loop);
  c->calls++;
  c->status = status;
  if (!c->returned)
    c->inline_cb = true;
}

static void call_init(struct call *c) {
  memset(c, 0, sizeof(*c));
  c->req.data = c;
}

/* Runs the loop until the call's callback ran (fails after ~10 s of loop turns). */
static int wait_call(fixture_t *f, struct call *c, int started) {
  assert_int_equal(started, 0);
  c->returned = true;
  for (int i = 0; i < 100000 && c->calls == 0; i++)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(c->calls, 1);
  assert_false(c->inline_cb);
  return c->status;
}

static int setup_kind(void **state, enum kind kind) {
  fixture_t *f = calloc(1, sizeof(*f));
  f->kind = kind;
  if (uv_loop_init(&f->loop) != 0)
    return -1;
  test_loop = &f->loop;
  int rc;
  if (kind == FILE_STORE || kind == FILE_NOSYNC_STORE) {
    if (test_tmpdir(f->dir, sizeof(f->dir), "astore") != 0)
      return -1;
    tusc_file_store_options_t opts = {
        .dir = f->dir, .dir_perms = 0750, .file_perms = 0640, .fsync = kind == FILE_STORE};
    rc = tusc_file_store_new(&opts, &f->store);
  } else if (is_s3(kind)) {
    static int serial;
    snprintf(f->prefix, sizeof(f->prefix), "t%ld-%d/", (long)getpid(), ++serial);
    int64_t P = kind == S3_SMALL ? 64 * 1024 : 1024 * 1024;
    tusc_s3_store_options_t opts = {
        .bucket = getenv("TUSC_S3_BUCKET"),
        .endpoint = getenv("TUSC_S3_ENDPOINT"),
        .path_style = true,
        .prefix = f->prefix,
        .part_size = P,
        .min_part_size = 64 * 1024,
        .max_buffer_memory = 2 * P + TUSC_STORE_APPEND_MAX,
        .concurrent_part_uploads = 2,
    };
    const char *why = NULL;
    rc = tusc_s3_store_new(&opts, &f->store, &why);
    if (rc != 0) {
      fprintf(stderr, "S3 store: %s\n", why != NULL ? why : tusc_strerror(rc));
      return -1;
    }
    if (tusc_store_attach_loop(f->store, &f->loop) != 0)
      return -1;
  } else {
    tusc_mem_store_options_t opts = {0};
    if (kind == MEM_FULL_STORE) {
      opts.full_every = 100 * 1000;
      opts.drain_delay_ms = 1;
    }
    rc = tusc_mem_store_new(&opts, &f->store);
  }
  if (rc != 0)
    return -1;
  *state = f;
  return 0;
}

static int setup_file(void **state) {
  return setup_kind(state, FILE_STORE);
}
static int setup_file_nosync(void **state) {
  return setup_kind(state, FILE_NOSYNC_STORE);
}
static int setup_mem(void **state) {
  return setup_kind(state, MEM_STORE);
}
static int setup_mem_full(void **state) {
  return setup_kind(state, MEM_FULL_STORE);
}

static int setup_s3(void **state) {
  return setup_kind(state, S3_STORE);
}
static int setup_s3_small(void **state) {
  return setup_kind(state, S3_SMALL);
}

static int teardown(void **state) {
  fixture_t *f = *state;
  if (is_s3(f->kind)) {
    /* Every buffer given back once idle. */
    assert_int_equal(tusc_s3_store_buffer_used(f->store), 0);
    tusc_store_detach_loop(f->store, &f->loop);
    while (uv_run(&f->loop, UV_RUN_DEFAULT) != 0) /* its curl handles close */
      ;
  }
  tusc_store_free(f->store);
  while (uv_run(&f->loop, UV_RUN_DEFAULT) != 0) /* close callbacks (a uv_stop ends a run early) */
    ;
  assert_int_equal(uv_loop_close(&f->loop), 0);
  if (f->kind == FILE_STORE || f->kind == FILE_NOSYNC_STORE)
    test_rm_rf(f->dir);
  free(f);
  return 0;
}

static void new_info(tusc_upload_info_t *info, const char *id, int64_t size) {
  tusc_upload_info_init(info);
  snprintf(info->id, sizeof(info->id), "%s", id);
  info->size = size;
  info->size_is_deferred = size < 0;
}

static void create(fixture_t *f, const char *id, int64_t size) {
  tusc_upload_info_t info;
  new_info(&info, id, size);
  struct call c;
  call_init(&c);
  int rc = wait_call(f, &c, tusc_store_create(f->store, &f->loop, &c.req, &info, on_cb));
  if (rc != 0)
    fail_msg("create %s: %s", id, tusc_strerror(rc));
  assert_int_equal(info.offset, 0);
  tusc_upload_info_dispose(&info);
}

static tusc_upload_t *open_upload(fixture_t *f, const char *id) {
  struct call c;
  call_init(&c);
  int rc = wait_call(f, &c, tusc_store_open(f->store, &f->loop, &c.req, id, on_cb));
  assert_int_equal(rc, 0);
  assert_non_null(c.req.upload);
  return c.req.upload;
}

static int64_t stored_offset(fixture_t *f, const char *id) {
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  struct call c;
  call_init(&c);
  int rc = wait_call(f, &c, tusc_store_get_info(f->store, &f->loop, &c.req, id, &info, on_cb));
  int64_t off = rc == 0 ? info.offset : rc;
  tusc_upload_info_dispose(&info);
  return off;
}

struct drain {
  fixture_t *f;
  int calls;
};

static void on_drain(void *arg) {
  struct drain *d = arg;
  uv_stop(test_loop);
  d->calls++;
}

/* Appends `len` bytes of a pattern starting at pattern position `pos` in pieces of
 * `piece`, running the loop whenever the store answers full. Returns 0 or the error. */
static int append_pattern(fixture_t *f, tusc_upload_t *up, size_t pos, size_t len, size_t piece,
                          int *fulls) {
  char *buf = malloc(piece);
  size_t done = 0;
  int rc = 0;
  struct drain d = {.f = f};
  while (done < len) {
    size_t n = len - done < piece ? len - done : piece;
    for (size_t i = 0; i < n; i++)
      buf[i] = (char)((pos + done + i) * 7 % 251);
    rc = tusc_store_append(up, buf, n, on_drain, &d);
    if (rc == TUSC_ESTORE_FULL) {
      if (fulls != NULL)
        (*fulls)++;
      int before = d.calls;
      for (int i = 0; i < 100000 && d.calls == before; i++)
        uv_run(&f->loop, UV_RUN_ONCE);
      assert_int_equal(d.calls, before + 1);
      continue;
    }
    if (rc != 0)
      break;
    done += n;
  }
  free(buf);
  return rc;
}

static void check_pattern(fixture_t *f, tusc_upload_t *up, int64_t offset, size_t pos, size_t len) {
  char *buf = malloc(len + 16);
  size_t got = 0;
  while (got < len + 16) {
    struct call c;
    call_init(&c);
    int rc = wait_call(
        f, &c,
        tusc_store_read(up, &c.req, offset + (int64_t)got, buf + got, len + 16 - got, on_cb));
    assert_int_equal(rc, 0);
    if (c.req.nread == 0)
      break;
    got += c.req.nread;
  }
  assert_int_equal(got, len);
  for (size_t i = 0; i < len; i++)
    if (buf[i] != (char)((pos + i) * 7 % 251))
      fail_msg("byte %zu differs", i);
  free(buf);
}

static int chunk(fixture_t *f, tusc_upload_t *up, int flags) {
  (void)f;
  return tusc_store_chunk_begin(up, flags);
}

static int chunk_end(fixture_t *f, tusc_upload_t *up, enum tusc_store_chunk_end how) {
  struct call c;
  call_init(&c);
  return wait_call(f, &c, tusc_store_chunk_end(up, &c.req, how, on_cb));
}

static void close_upload(fixture_t *f, tusc_upload_t *up) {
  tusc_store_close(up);
  uv_run(&f->loop, UV_RUN_NOWAIT);
}

/* ---- tests ---- */

static void test_round_trip(void **state) {
  fixture_t *f = *state;
  enum { LEN = 3 * 1024 * 1024 + 17 };
  create(f, "round", LEN);
  assert_int_equal(stored_offset(f, "round"), 0);
  tusc_upload_t *up = open_upload(f, "round");
  assert_string_equal(tusc_store_info(up)->id, "round");
  /* Ending and beginning chunks mid-body is cheap except on S3 (its tail is an object). */
  assert_int_equal(tusc_store_cheap_chunk_checkpoint(up), !is_s3(f->kind));
  assert_false(tusc_store_cheap_chunk_checkpoint(NULL));
  assert_int_equal(chunk(f, up, 0), 0);
  assert_int_equal(append_pattern(f, up, 0, 1000000, 65536, NULL), 0);
  assert_int_equal(chunk_end(f, up, TUSC_STORE_KEEP), 0);
  assert_int_equal(tusc_store_info(up)->offset, 1000000);
  assert_int_equal(stored_offset(f, "round"), 1000000);
  /* A second chunk continues where the first ended. */
  assert_int_equal(chunk(f, up, 0), 0);
  assert_int_equal(append_pattern(f, up, 1000000, LEN - 1000000, 100000, NULL), 0);
  assert_int_equal(chunk_end(f, up, TUSC_STORE_KEEP), 0);
  assert_int_equal(tusc_store_info(up)->offset, LEN);
  check_pattern(f, up, 0, 0, LEN);
  close_upload(f, up);
  assert_int_equal(stored_offset(f, "round"), LEN);
}

static void test_size_exceeded(void **state) {
  fixture_t *f = *state;
  create(f, "small", 10);
  tusc_upload_t *up = open_upload(f, "small");
  assert_int_equal(chunk(f, up, 0), 0);
  struct drain d = {.f = f};
  assert_int_equal(tusc_store_append(up, "0123456", 7, on_drain, &d), 0);
  assert_int_equal(tusc_store_append(up, "abcd", 4, on_drain, &d), TUSC_EUPLOAD_SIZE_EXCEEDED);
  assert_int_equal(tusc_store_append(up, "abc", 3, on_drain, &d), 0);
  assert_int_equal(chunk_end(f, up, TUSC_STORE_KEEP), 0);
  assert_int_equal(tusc_store_info(up)->offset, 10);
  close_upload(f, up);
}

static void test_discard(void **state) {
  fixture_t *f = *state;
  create(f, "disc", -1);
  tusc_upload_t *up = open_upload(f, "disc");
  assert_int_equal(chunk(f, up, 0), 0);
  assert_int_equal(append_pattern(f, up, 0, 5000, 1000, NULL), 0);
  assert_int_equal(chunk_end(f, up, TUSC_STORE_KEEP), 0);
  for (int flags = 0; flags <= TUSC_STORE_CHUNK_STAGED; flags += TUSC_STORE_CHUNK_STAGED) {
    assert_int_equal(chunk(f, up, flags), 0);
    assert_int_equal(append_pattern(f, up, 7, 300000, 65536, NULL), 0);
    /* The chunk's bytes read back before it ends (checksum-trailer). S3 reads back
     * staged chunks only: an unfinished upload's bytes are not readable there. */
    if (!is_s3(f->kind) || flags == TUSC_STORE_CHUNK_STAGED)
      check_pattern(f, up, 5000, 7, 300000);
    assert_int_equal(chunk_end(f, up, TUSC_STORE_DISCARD), 0);
    assert_int_equal(tusc_store_info(up)->offset, 5000);
    assert_int_equal(stored_offset(f, "disc"), 5000);
    if (!is_s3(f->kind))
      check_pattern(f, up, 0, 0, 5000);
  }
  close_upload(f, up);
}

static void test_staged_keep(void **state) {
  fixture_t *f = *state;
  create(f, "staged", 700000);
  tusc_upload_t *up = open_upload(f, "staged");
  assert_int_equal(chunk(f, up, TUSC_STORE_CHUNK_STAGED), 0);
  assert_int_equal(append_pattern(f, up, 0, 600000, 65536, NULL), 0);
  /* Nothing reaches the data before the chunk is kept. */
  assert_int_equal(stored_offset(f, "staged"), 0);
  assert_int_equal(chunk_end(f, up, TUSC_STORE_KEEP), 0);
  assert_int_equal(tusc_store_info(up)->offset, 600000);
  assert_int_equal(stored_offset(f, "staged"), 600000);
  if (is_s3(f->kind)) {
    /* Readable once complete. */
    assert_int_equal(chunk(f, up, TUSC_STORE_CHUNK_STAGED), 0);
    assert_int_equal(append_pattern(f, up, 600000, 100000, 65536, NULL), 0);
    assert_int_equal(chunk_end(f, up, TUSC_STORE_KEEP), 0);
    assert_int_equal(stored_offset(f, "staged"), 700000);
    check_pattern(f, up, 0, 0, 700000);
  } else {
    check_pattern(f, up, 0, 0, 600000);
  }
  close_upload(f, up);
}

/* Appends faster than the store writes: it must answer full (took nothing), call drain
 * later, and lose or duplicate no byte. */
static void test_full_and_drain(void **state) {
  fixture_t *f = *state;
  enum { LEN = 8 * 1024 * 1024 };
  create(f, "full", LEN);
  tusc_upload_t *up = open_upload(f, "full");
  assert_int_equal(chunk(f, up, 0), 0);
  int fulls = 0;
  assert_int_equal(append_pattern(f, up, 0, LEN, 65536, &fulls), 0);
  assert_int_equal(chunk_end(f, up, TUSC_STORE_KEEP), 0);
  if (f->kind != MEM_STORE)
    assert_true(fulls > 0);
  if (f->kind == MEM_FULL_STORE)
    assert_true(tusc_mem_store_full_count(f->store) >= LEN / (2 * 65536) - 1);
  assert_int_equal(tusc_store_info(up)->offset, LEN);
  check_pattern(f, up, 0, 0, LEN);
  close_upload(f, up);
}

static void test_not_found_and_terminate(void **state) {
  fixture_t *f = *state;
  assert_int_equal(stored_offset(f, "nope"), TUSC_ENOT_FOUND);
  struct call c;
  call_init(&c);
  assert_int_equal(wait_call(f, &c, tusc_store_open(f->store, &f->loop, &c.req, "nope", on_cb)),
                   TUSC_ENOT_FOUND);
  assert_null(c.req.upload);
  create(f, "gone", 5);
  tusc_upload_info_t info;
  new_info(&info, "gone", 5);
  call_init(&c);
  assert_int_equal(wait_call(f, &c, tusc_store_create(f->store, &f->loop, &c.req, &info, on_cb)),
                   UV_EEXIST);
  tusc_upload_info_dispose(&info);
  call_init(&c);
  assert_int_equal(
      wait_call(f, &c, tusc_store_terminate(f->store, &f->loop, &c.req, "gone", on_cb)), 0);
  assert_int_equal(stored_offset(f, "gone"), TUSC_ENOT_FOUND);
  call_init(&c);
  assert_int_equal(
      wait_call(f, &c, tusc_store_terminate(f->store, &f->loop, &c.req, "gone", on_cb)),
      TUSC_ENOT_FOUND);
}

/* The fast paths answer at once or say UV_EAGAIN (and then did nothing); what they
 * answer is what the asynchronous calls report. The file store answers, the in-memory
 * one always defers (so the handler's asynchronous path stays tested on it). */
static void test_try_paths(void **state) {
  fixture_t *f = *state;
  bool answers = f->kind == FILE_STORE || f->kind == FILE_NOSYNC_STORE;
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  tusc_upload_t *up = (tusc_upload_t *)&info; /* must be reset to NULL */
  int rc = tusc_store_try_open(f->store, &f->loop, "nope", &up);
  assert_int_equal(rc, answers ? TUSC_ENOT_FOUND : UV_EAGAIN);
  assert_null(up);
  assert_int_equal(tusc_store_try_get_info(f->store, "nope", &info),
                   answers ? TUSC_ENOT_FOUND : UV_EAGAIN);
  create(f, "fast", 100);
  rc = tusc_store_try_get_info(f->store, "fast", &info);
  if (!answers) {
    assert_int_equal(rc, UV_EAGAIN);
    assert_int_equal(tusc_store_try_open(f->store, &f->loop, "fast", &up), UV_EAGAIN);
    assert_null(up);
    tusc_upload_info_dispose(&info);
    return;
  }
  assert_int_equal(rc, 0);
  assert_string_equal(info.id, "fast");
  assert_int_equal(info.size, 100);
  assert_int_equal(info.offset, 0);
  tusc_upload_info_dispose(&info);
  assert_int_equal(tusc_store_try_open(f->store, &f->loop, "fast", &up), 0);
  assert_non_null(up);
  /* The upload is usable on the loop as one from tusc_store_open. */
  assert_int_equal(chunk(f, up, 0), 0);
  assert_int_equal(append_pattern(f, up, 0, 100, 30, NULL), 0);
  assert_int_equal(chunk_end(f, up, TUSC_STORE_KEEP), 0);
  check_pattern(f, up, 0, 0, 100);
  close_upload(f, up);
  assert_int_equal(stored_offset(f, "fast"), 100);
}

static void test_save_info(void **state) {
  fixture_t *f = *state;
  create(f, "defer", -1);
  tusc_upload_t *up = open_upload(f, "defer");
  tusc_upload_info_t *info = tusc_store_info(up);
  assert_true(info->size_is_deferred);
  info->size = 42;
  info->size_is_deferred = false;
  struct call c;
  call_init(&c);
  assert_int_equal(wait_call(f, &c, tusc_store_save_info(up, &c.req, on_cb)), 0);
  close_upload(f, up);
  tusc_upload_info_t got;
  tusc_upload_info_init(&got);
  call_init(&c);
  assert_int_equal(
      wait_call(f, &c, tusc_store_get_info(f->store, &f->loop, &c.req, "defer", &got, on_cb)), 0);
  assert_false(got.size_is_deferred);
  assert_int_equal(got.size, 42);
  tusc_upload_info_dispose(&got);
}

static void fill(fixture_t *f, const char *id, size_t pos, size_t len) {
  create(f, id, (int64_t)len);
  tusc_upload_t *up = open_upload(f, id);
  assert_int_equal(chunk(f, up, 0), 0);
  assert_int_equal(append_pattern(f, up, pos, len, 65536, NULL), 0);
  assert_int_equal(chunk_end(f, up, TUSC_STORE_KEEP), 0);
  close_upload(f, up);
}

static void test_concat(void **state) {
  fixture_t *f = *state;
  fill(f, "p1", 0, 100000);
  fill(f, "p2", 100000, 250000);
  create(f, "p3", 10); /* not finished */
  create(f, "final", 350000);
  tusc_upload_t *up = open_upload(f, "final");
  const char *ids[] = {"p1", "p2"};
  struct call c;
  call_init(&c);
  assert_int_equal(wait_call(f, &c, tusc_store_concat(up, ids, 2, &c.req, on_cb)), 0);
  assert_int_equal(tusc_store_info(up)->offset, 350000);
  check_pattern(f, up, 0, 0, 350000);
  const char *bad[] = {"p1", "p3"};
  call_init(&c);
  assert_int_equal(wait_call(f, &c, tusc_store_concat(up, bad, 2, &c.req, on_cb)),
                   TUSC_EUPLOAD_NOT_FINISHED);
  assert_int_equal(tusc_store_info(up)->offset, 0);
  close_upload(f, up);
}

static void test_wait_notes(void **state) {
  fixture_t *f = *state;
  if (is_s3(f->kind)) {
    /* The S3 store keeps no waiting notes; tus copes (HEAD/GET assemble the final). */
    struct call c;
    call_init(&c);
    assert_int_equal(tusc_store_wait_add(f->store, &f->loop, &c.req, "part", "fin1", on_cb),
                     TUSC_ENOT_IMPLEMENTED);
    return;
  }
  create(f, "part", 10);
  struct call c;
  call_init(&c);
  assert_int_equal(
      wait_call(f, &c, tusc_store_wait_add(f->store, &f->loop, &c.req, "part", "fin1", on_cb)), 0);
  call_init(&c);
  assert_int_equal(
      wait_call(f, &c, tusc_store_wait_add(f->store, &f->loop, &c.req, "part", "fin2", on_cb)), 0);
  call_init(&c);
  assert_int_equal(
      wait_call(f, &c, tusc_store_wait_take(f->store, &f->loop, &c.req, "part", on_cb)), 0);
  assert_int_equal(c.req.id_count, 2);
  assert_string_equal(c.req.ids[0], "fin1");
  assert_string_equal(c.req.ids[1], "fin2");
  tusc_store_ids_free(c.req.ids, c.req.id_count);
  call_init(&c);
  assert_int_equal(
      wait_call(f, &c, tusc_store_wait_take(f->store, &f->loop, &c.req, "part", on_cb)), 0);
  assert_int_equal(c.req.id_count, 0);
}

static int count_visit(const tusc_upload_info_t *info, void *arg) {
  (void)info;
  (*(int *)arg)++;
  return 0;
}

static void test_list(void **state) {
  fixture_t *f = *state;
  create(f, "l1", 1);
  create(f, "l2", 2);
  create(f, "l3", 3);
  int n = 0;
  struct call c;
  call_init(&c);
  assert_int_equal(
      wait_call(f, &c, tusc_store_list(f->store, &f->loop, &c.req, count_visit, &n, on_cb)), 0);
  assert_int_equal(n, 3);
}

/* A cancelled request still calls back exactly once: with UV_ECANCELED when it was
 * still queued, else with its result. */
static void test_cancel(void **state) {
  fixture_t *f = *state;
  create(f, "cx", 1);
  struct call c[16];
  tusc_upload_info_t info[16];
  for (int i = 0; i < 16; i++) {
    call_init(&c[i]);
    tusc_upload_info_init(&info[i]);
    assert_int_equal(tusc_store_get_info(f->store, &f->loop, &c[i].req, "cx", &info[i], on_cb), 0);
    c[i].returned = true;
  }
  for (int i = 15; i >= 0; i--) {
    int rc = tusc_store_cancel(&c[i].req);
    assert_true(rc == 0 || rc == UV_EBUSY);
  }
  for (int i = 0; i < 16; i++) {
    for (int t = 0; t < 100000 && c[i].calls == 0; t++)
      uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(c[i].calls, 1);
    assert_true(c[i].status == 0 || c[i].status == UV_ECANCELED);
    tusc_upload_info_dispose(&info[i]);
  }
}

static void test_storage_map(void **state) {
  fixture_t *f = *state;
  create(f, "kv", 1);
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  struct call c;
  call_init(&c);
  assert_int_equal(
      wait_call(f, &c, tusc_store_get_info(f->store, &f->loop, &c.req, "kv", &info, on_cb)), 0);
  tusc_store_kv_t kv[TUSC_STORE_KV_MAX];
  size_t n = tusc_store_storage(f->store, &info, kv, TUSC_STORE_KV_MAX);
  assert_true(n >= 1);
  assert_string_equal(kv[0].key, "Type");
  if (is_s3(f->kind)) {
    assert_int_equal(n, 4);
    assert_string_equal(kv[0].value, "s3store");
    assert_string_equal(kv[1].key, "Bucket");
    assert_string_equal(kv[1].value, getenv("TUSC_S3_BUCKET"));
    assert_string_equal(kv[2].key, "Key");
    char key[128];
    snprintf(key, sizeof(key), "%skv", f->prefix);
    assert_string_equal(kv[2].value, key);
    assert_string_equal(kv[3].key, "MultipartUpload");
    assert_true(kv[3].value[0] != '\0');
  }
  if (f->kind == FILE_STORE || f->kind == FILE_NOSYNC_STORE) {
    assert_int_equal(n, 3);
    assert_string_equal(kv[0].value, "filestore");
    assert_string_equal(kv[1].key, "Path");
    assert_non_null(strstr(kv[1].value, "/kv"));
    assert_string_equal(kv[2].key, "InfoPath");
  }
  tusc_upload_info_dispose(&info);
}

/* ---- S3 only ---- */

/* A second store on the same bucket and prefix: another instance, or this one after a
 * restart, that knows only what S3 holds. */
static tusc_store_t *other_instance(fixture_t *f) {
  tusc_s3_store_options_t opts = {
      .bucket = getenv("TUSC_S3_BUCKET"),
      .endpoint = getenv("TUSC_S3_ENDPOINT"),
      .path_style = true,
      .prefix = f->prefix,
      .part_size = 64 * 1024,
      .min_part_size = 64 * 1024,
      .max_buffer_memory = 2 * 64 * 1024 + TUSC_STORE_APPEND_MAX,
  };
  tusc_store_t *st = NULL;
  assert_int_equal(tusc_s3_store_new(&opts, &st, NULL), 0);
  assert_int_equal(tusc_store_attach_loop(st, &f->loop), 0);
  return st;
}

/* Both stores leave the loop (so that running it to the end closes the other one's
 * handles), then the fixture's store comes back. */
static void other_free(fixture_t *f, tusc_store_t *st) {
  tusc_store_detach_loop(st, &f->loop);
  tusc_store_detach_loop(f->store, &f->loop);
  while (uv_run(&f->loop, UV_RUN_DEFAULT) != 0)
    ;
  tusc_store_free(st);
  assert_int_equal(tusc_store_attach_loop(f->store, &f->loop), 0);
}

/* Parts, a tail between chunks, a resume by another instance from S3 alone, an
 * interrupted chunk keeping what it stored, completion and reading back. */
static void test_s3_resume(void **state) {
  fixture_t *f = *state;
  enum { LEN = 1000000 };
  create(f, "res", LEN);
  tusc_upload_t *up = open_upload(f, "res");
  assert_int_equal(chunk(f, up, 0), 0);
  assert_int_equal(append_pattern(f, up, 0, 150000, 65536, NULL), 0); /* 2 parts + tail */
  assert_int_equal(chunk_end(f, up, TUSC_STORE_KEEP), 0);
  assert_int_equal(tusc_store_info(up)->offset, 150000);
  close_upload(f, up);

  /* The last activity comes from S3 too (expiry judges by it). */
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  struct call c;
  call_init(&c);
  assert_int_equal(
      wait_call(f, &c, tusc_store_get_info(f->store, &f->loop, &c.req, "res", &info, on_cb)), 0);
  assert_true(info.modified_ms >= (info.created_at - 1) * 1000);
  tusc_upload_info_dispose(&info);

  tusc_store_t *mine = f->store;
  f->store = other_instance(f);
  assert_int_equal(stored_offset(f, "res"), 150000);
  up = open_upload(f, "res");
  assert_int_equal(tusc_store_info(up)->offset, 150000);
  assert_int_equal(chunk(f, up, 0), 0);
  assert_int_equal(append_pattern(f, up, 150000, 200001, 10000, NULL), 0); /* odd sizes */
  assert_int_equal(chunk_end(f, up, TUSC_STORE_KEEP), 0);
  assert_int_equal(tusc_store_info(up)->offset, 350001);
  close_upload(f, up);
  tusc_store_t *other = f->store;
  f->store = mine;
  other_free(f, other);

  assert_int_equal(stored_offset(f, "res"), 350001);
  up = open_upload(f, "res");
  assert_int_equal(chunk(f, up, 0), 0);
  assert_int_equal(append_pattern(f, up, 350001, LEN - 350001, 65536, NULL), 0);
  assert_int_equal(chunk_end(f, up, TUSC_STORE_KEEP), 0);
  assert_int_equal(tusc_store_info(up)->offset, LEN);
  check_pattern(f, up, 0, 0, LEN);
  close_upload(f, up);
  assert_int_equal(stored_offset(f, "res"), LEN);
}

/* A staged chunk spanning several parts: read back from stage objects and memory,
 * discarded without a trace (also for another instance), then kept. */
static void test_s3_staged_parts(void **state) {
  fixture_t *f = *state;
  enum { LEN = 400000 };
  create(f, "stg", LEN);
  tusc_upload_t *up = open_upload(f, "stg");
  assert_int_equal(chunk(f, up, 0), 0);
  assert_int_equal(append_pattern(f, up, 0, 10000, 4096, NULL), 0);
  assert_int_equal(chunk_end(f, up, TUSC_STORE_KEEP), 0);
  assert_int_equal(chunk(f, up, TUSC_STORE_CHUNK_STAGED), 0);
  assert_int_equal(append_pattern(f, up, 10000, 200000, 65536, NULL), 0);
  check_pattern(f, up, 10000, 10000, 200000);
  assert_int_equal(stored_offset(f, "stg"), 10000);
  assert_int_equal(chunk_end(f, up, TUSC_STORE_DISCARD), 0);
  assert_int_equal(tusc_store_info(up)->offset, 10000);
  close_upload(f, up);
  tusc_store_t *other = other_instance(f);
  tusc_store_t *mine = f->store;
  f->store = other;
  assert_int_equal(stored_offset(f, "stg"), 10000);
  f->store = mine;
  other_free(f, other);

  up = open_upload(f, "stg");
  assert_int_equal(chunk(f, up, TUSC_STORE_CHUNK_STAGED), 0);
  assert_int_equal(append_pattern(f, up, 10000, 200000, 65536, NULL), 0);
  assert_int_equal(chunk_end(f, up, TUSC_STORE_KEEP), 0);
  assert_int_equal(tusc_store_info(up)->offset, 210000);
  assert_int_equal(stored_offset(f, "stg"), 210000);
  assert_int_equal(chunk(f, up, 0), 0);
  assert_int_equal(append_pattern(f, up, 210000, LEN - 210000, 65536, NULL), 0);
  assert_int_equal(chunk_end(f, up, TUSC_STORE_KEEP), 0);
  check_pattern(f, up, 0, 0, LEN);
  close_upload(f, up);
}

/* The memory budget holds one chunk's slot here: a second chunk waits (full) until the
 * first gives its memory back, then is woken and goes on. */
static void test_s3_budget(void **state) {
  fixture_t *f = *state;
  enum { LEN = 300000 };
  create(f, "ba", LEN);
  create(f, "bb", LEN);
  tusc_upload_t *a = open_upload(f, "ba");
  tusc_upload_t *b = open_upload(f, "bb");
  assert_int_equal(chunk(f, a, 0), 0);
  assert_int_equal(chunk(f, b, 0), 0);
  assert_int_equal(append_pattern(f, a, 0, 1000, 1000, NULL), 0);
  struct drain d = {.f = f};
  char byte = 0;
  assert_int_equal(tusc_store_append(b, &byte, 1, on_drain, &d), TUSC_ESTORE_FULL);
  assert_int_equal(append_pattern(f, a, 1000, LEN - 1000, 65536, NULL), 0);
  assert_int_equal(d.calls, 0);
  assert_int_equal(chunk_end(f, a, TUSC_STORE_KEEP), 0);
  for (int i = 0; i < 100000 && d.calls == 0; i++)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(d.calls, 1);
  assert_int_equal(append_pattern(f, b, 0, LEN, 65536, NULL), 0);
  assert_int_equal(chunk_end(f, b, TUSC_STORE_KEEP), 0);
  check_pattern(f, a, 0, 0, LEN);
  check_pattern(f, b, 0, 0, LEN);
  close_upload(f, a);
  close_upload(f, b);
}

#define STORE_TESTS(setup)                                                                         \
  cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),                               \
      cmocka_unit_test_setup_teardown(test_size_exceeded, setup, teardown),                        \
      cmocka_unit_test_setup_teardown(test_discard, setup, teardown),                              \
      cmocka_unit_test_setup_teardown(test_staged_keep, setup, teardown),                          \
      cmocka_unit_test_setup_teardown(test_full_and_drain, setup, teardown),                       \
      cmocka_unit_test_setup_teardown(test_not_found_and_terminate, setup, teardown),              \
      cmocka_unit_test_setup_teardown(test_save_info, setup, teardown),                            \
      cmocka_unit_test_setup_teardown(test_concat, setup, teardown),                               \
      cmocka_unit_test_setup_teardown(test_wait_notes, setup, teardown),                           \
      cmocka_unit_test_setup_teardown(test_list, setup, teardown),                                 \
      cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),                               \
      cmocka_unit_test_setup_teardown(test_storage_map, setup, teardown),                          \
      cmocka_unit_test_setup_teardown(test_try_paths, setup, teardown)

int main(int argc, char **argv) {
  /* --s3: only the S3 groups (ctest's test_store_async_s3, under tests/s3/rgw.py). */
  bool s3_only = argc > 1 && strcmp(argv[1], "--s3") == 0;
  const struct CMUnitTest file_tests[] = {STORE_TESTS(setup_file)};
  const struct CMUnitTest file_nosync_tests[] = {STORE_TESTS(setup_file_nosync)};
  const struct CMUnitTest mem_tests[] = {STORE_TESTS(setup_mem)};
  const struct CMUnitTest mem_full_tests[] = {STORE_TESTS(setup_mem_full)};
  const struct CMUnitTest s3_tests[] = {STORE_TESTS(setup_s3)};
  const struct CMUnitTest s3_small_tests[] = {
      cmocka_unit_test_setup_teardown(test_round_trip, setup_s3_small, teardown),
      cmocka_unit_test_setup_teardown(test_full_and_drain, setup_s3_small, teardown),
      cmocka_unit_test_setup_teardown(test_concat, setup_s3_small, teardown),
      cmocka_unit_test_setup_teardown(test_s3_resume, setup_s3_small, teardown),
      cmocka_unit_test_setup_teardown(test_s3_staged_parts, setup_s3_small, teardown),
      cmocka_unit_test_setup_teardown(test_s3_budget, setup_s3_small, teardown),
  };
  int failed = 0;
  if (!s3_only) {
    failed += cmocka_run_group_tests_name("file store", file_tests, NULL, NULL);
    failed +=
        cmocka_run_group_tests_name("file store, -fsync=never", file_nosync_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("mem store", mem_tests, NULL, NULL);
    failed +=
        cmocka_run_group_tests_name("mem store, full every 100 kB", mem_full_tests, NULL, NULL);
  }
  if (getenv("TUSC_S3_ENDPOINT") != NULL) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
      return 1;
    failed += cmocka_run_group_tests_name("S3 store, 1 MiB parts", s3_tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("S3 store, 64 KiB parts", s3_small_tests, NULL, NULL);
    curl_global_cleanup();
  } else if (s3_only) {
    fprintf(stderr, "TUSC_S3_ENDPOINT is not set: no S3 server to test against\n");
    return 77; /* skipped */
  }
  return failed;
}

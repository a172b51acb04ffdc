/* Unit tests for the asynchronous store interface (store/store.h), run unchanged against
 * both implementations — the file store (store/file.c, on libuv's thread pool) and the
 * in-memory store (store/mem.c) — on a real uv loop: round trips, chunks kept and
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

#include "testutil.h"

#include "common/error.h"
#include "store/mem.h"
#include "store/store.h"

/* FILE_NOSYNC_STORE: the file store without fsync, which ends small chunks on the loop
 * (file.c INLINE_TAIL_MAX): its callbacks must still come later. */
enum kind { FILE_STORE, FILE_NOSYNC_STORE, MEM_STORE, MEM_FULL_STORE };

typedef struct fixture_s {
  enum kind kind;
  char dir[64];
  uv_loop_t loop;
  tusc_store_t *store;
} fixture_t;

/* One request and what its callback saw. */
struct call {
  tusc_store_req_t req;
  bool returned; /* the starting call has returned */
  int calls;
  int status;
  bool inline_cb;
};

static void on_cb(tusc_store_req_t *req, int status) {
  struct call *c = req->data;
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
  int rc;
  if (kind == FILE_STORE || kind == FILE_NOSYNC_STORE) {
    if (test_tmpdir(f->dir, sizeof(f->dir), "astore") != 0)
      return -1;
    tusc_file_store_options_t opts = {
        .dir = f->dir, .dir_perms = 0750, .file_perms = 0640, .fsync = kind == FILE_STORE};
    rc = tusc_file_store_new(&opts, &f->store);
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

static int teardown(void **state) {
  fixture_t *f = *state;
  tusc_store_free(f->store);
  uv_run(&f->loop, UV_RUN_DEFAULT); /* close callbacks */
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
    /* The chunk's bytes read back before it ends (checksum-trailer). */
    check_pattern(f, up, 5000, 7, 300000);
    assert_int_equal(chunk_end(f, up, TUSC_STORE_DISCARD), 0);
    assert_int_equal(tusc_store_info(up)->offset, 5000);
    assert_int_equal(stored_offset(f, "disc"), 5000);
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
  check_pattern(f, up, 0, 0, 600000);
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
  if (f->kind == FILE_STORE || f->kind == FILE_NOSYNC_STORE) {
    assert_int_equal(n, 3);
    assert_string_equal(kv[0].value, "filestore");
    assert_string_equal(kv[1].key, "Path");
    assert_non_null(strstr(kv[1].value, "/kv"));
    assert_string_equal(kv[2].key, "InfoPath");
  }
  tusc_upload_info_dispose(&info);
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

int main(void) {
  const struct CMUnitTest file_tests[] = {STORE_TESTS(setup_file)};
  const struct CMUnitTest file_nosync_tests[] = {STORE_TESTS(setup_file_nosync)};
  const struct CMUnitTest mem_tests[] = {STORE_TESTS(setup_mem)};
  const struct CMUnitTest mem_full_tests[] = {STORE_TESTS(setup_mem_full)};
  int failed = cmocka_run_group_tests_name("file store", file_tests, NULL, NULL);
  failed += cmocka_run_group_tests_name("file store, -fsync=never", file_nosync_tests, NULL, NULL);
  failed += cmocka_run_group_tests_name("mem store", mem_tests, NULL, NULL);
  failed += cmocka_run_group_tests_name("mem store, full every 100 kB", mem_full_tests, NULL, NULL);
  return failed;
}

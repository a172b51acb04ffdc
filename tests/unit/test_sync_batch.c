/* Unit tests for store/sync_batch.c (group commit) on a real uv loop and real files:
 * every request completes exactly once and never inside its start; requests started in
 * one loop turn share batches (a batch at a time per loop, the rest wait for the next);
 * a directory named by a whole batch is fsynced once; a full queue runs the overflow
 * alone instead of refusing or blocking; renames happen only after their fds synced;
 * a failing step (prepare included) fails only the requests it belongs to; fds are
 * closed when asked; syncfs mode syncs a batch with one syncfs and fails requests that
 * a syncfs error may concern (the error epoch). */
#include <errno.h>
#include <fcntl.h>
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
#include "store/pool.h"
#include "store/sync_batch.h"

#define N_REQ 40

typedef struct fixture_s {
  char dir[64];
  uv_loop_t loop;
  tusc_store_pool_t pool;
  tusc_sync_batch_t batch;
} fixture_t;

/* One request and what its callback saw. */
struct call {
  tusc_sync_req_t req;
  char from[128], to[128];
  bool returned;
  int calls;
  int status;
  bool inline_cb;
  int order; /* completion rank */
};

static int completed;

static void on_synced(tusc_sync_req_t *req, int status) {
  struct call *c = req->data;
  c->calls++;
  c->status = status;
  c->inline_cb = !c->returned;
  c->order = completed++;
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  if (f == NULL || test_tmpdir(f->dir, sizeof(f->dir), "syncb") != 0 || uv_loop_init(&f->loop) != 0)
    return -1;
  tusc_store_pool_init(&f->pool, 0);
  completed = 0;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  assert_int_equal(tusc_store_pool_pending(&f->pool), 0);
  assert_int_equal(uv_loop_close(&f->loop), 0); /* no lane or handle left behind */
  test_rm_rf(f->dir);
  free(f);
  return 0;
}

/* A file with some bytes, its fd open for writing; the name is dir/name. */
static int make_file(const fixture_t *f, const char *name) {
  char path[256];
  snprintf(path, sizeof(path), "%s/%s", f->dir, name);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, name, strlen(name)), (ssize_t)strlen(name));
  return fd;
}

static bool exists(const fixture_t *f, const char *name) {
  char path[256];
  snprintf(path, sizeof(path), "%s/%s", f->dir, name);
  struct stat st;
  return stat(path, &st) == 0;
}

/* A create's shape: data fd + temp fd, temp renamed to its final name, dir fsynced. */
static void prepare(fixture_t *f, struct call *c, int i, const char *dir) {
  memset(c, 0, sizeof(*c));
  tusc_sync_req_init(&c->req);
  char name[64];
  snprintf(name, sizeof(name), "d%d", i);
  c->req.fd[0] = make_file(f, name);
  snprintf(name, sizeof(name), "i%d.tmp", i);
  c->req.fd[1] = make_file(f, name);
  c->req.close_fds = true;
  snprintf(c->from, sizeof(c->from), "%s/i%d.tmp", f->dir, i);
  snprintf(c->to, sizeof(c->to), "%s/i%d", f->dir, i);
  c->req.rename_from = c->from;
  c->req.rename_to = c->to;
  c->req.dir[0] = dir;
  c->req.data = c;
}

static void start(fixture_t *f, struct call *c) {
  assert_int_equal(tusc_sync_start(&f->batch, &f->loop, &c->req, on_synced), 0);
  c->returned = true;
  assert_int_equal(c->calls, 0);
}

static void run_until_done(fixture_t *f, struct call *calls, int n) {
  for (;;) {
    int done = 0;
    for (int i = 0; i < n; i++)
      done += calls[i].calls > 0;
    if (done == n)
      break;
    uv_run(&f->loop, UV_RUN_ONCE);
  }
  uv_run(&f->loop, UV_RUN_NOWAIT); /* lets closing handles go */
}

static void test_batches_share_directory_fsync(void **state) {
  fixture_t *f = *state;
  tusc_sync_batch_init(&f->batch, &f->pool, 0);
  static struct call calls[N_REQ];
  for (int i = 0; i < N_REQ; i++) {
    prepare(f, &calls[i], i, f->dir);
    start(f, &calls[i]);
  }
  run_until_done(f, calls, N_REQ);
  for (int i = 0; i < N_REQ; i++) {
    assert_int_equal(calls[i].calls, 1);
    assert_int_equal(calls[i].status, 0);
    assert_false(calls[i].inline_cb);
    if (i > TUSC_SYNC_JOBS) /* one batch: first come, first completed */
      assert_int_equal(calls[i].order, calls[i - 1].order + 1);
    char name[32];
    snprintf(name, sizeof(name), "i%d", i);
    assert_true(exists(f, name));
    snprintf(name, sizeof(name), "i%d.tmp", i);
    assert_false(exists(f, name));
    for (int k = 0; k < TUSC_SYNC_FDS; k++)
      assert_int_equal(calls[i].req.fd[k], -1); /* closed */
  }
  /* The first TUSC_SYNC_JOBS requests started a job each at once; the others waited
   * for the next free one, all in one batch: one directory fsync per job instead of
   * one per request. */
  assert_int_equal(atomic_load(&f->batch.batched), N_REQ);
  assert_int_equal(atomic_load(&f->batch.batches), TUSC_SYNC_JOBS + 1);
  assert_int_equal(atomic_load(&f->batch.solo), 0);
  assert_int_equal(atomic_load(&f->batch.dirs_asked), N_REQ);
  assert_int_equal(atomic_load(&f->batch.dir_fsyncs), TUSC_SYNC_JOBS + 1);
}

static void test_full_queue_runs_alone(void **state) {
  fixture_t *f = *state;
  tusc_sync_batch_init(&f->batch, &f->pool, 4);
  static struct call calls[10];
  for (int i = 0; i < 10; i++) {
    prepare(f, &calls[i], i, f->dir);
    start(f, &calls[i]);
  }
  run_until_done(f, calls, 10);
  for (int i = 0; i < 10; i++) {
    assert_int_equal(calls[i].calls, 1);
    assert_int_equal(calls[i].status, 0);
    assert_false(calls[i].inline_cb);
  }
  /* TUSC_SYNC_JOBS run at once, 4 wait (the bound), the rest run alone. */
  assert_int_equal(atomic_load(&f->batch.solo), 10 - TUSC_SYNC_JOBS - 4);
  assert_int_equal(atomic_load(&f->batch.batched), 10);
  assert_int_equal(atomic_load(&f->batch.batches), TUSC_SYNC_JOBS + 1);
}

static int prepare_calls;

static int prepare_fails(tusc_sync_req_t *req) {
  (void)req;
  prepare_calls++;
  return -ENOSPC;
}

static void test_failures_stay_with_their_request(void **state) {
  fixture_t *f = *state;
  tusc_sync_batch_init(&f->batch, &f->pool, 0);
  char missing_dir[128];
  snprintf(missing_dir, sizeof(missing_dir), "%s/no-such-dir", f->dir);
  static struct call calls[5];
  for (int i = 0; i < 4; i++)
    prepare(f, &calls[i], i, f->dir);
  /* 4: its prepare step fails: nothing else may be done for it (its rename would
   * succeed). */
  memset(&calls[4], 0, sizeof(calls[4]));
  tusc_sync_req_init(&calls[4].req);
  int fd4 = make_file(f, "i4.tmp");
  close(fd4);
  snprintf(calls[4].from, sizeof(calls[4].from), "%s/i4.tmp", f->dir);
  snprintf(calls[4].to, sizeof(calls[4].to), "%s/i4", f->dir);
  calls[4].req.rename_from = calls[4].from;
  calls[4].req.rename_to = calls[4].to;
  calls[4].req.prepare = prepare_fails;
  calls[4].req.data = &calls[4];
  prepare_calls = 0;
  /* 1: its temp file is gone, so the rename fails. */
  char tmp1[128];
  snprintf(tmp1, sizeof(tmp1), "%s/i1.tmp", f->dir);
  assert_int_equal(unlink(tmp1), 0);
  /* 2: a directory that does not exist (it shares the good one with the others). */
  calls[2].req.dir[1] = missing_dir;
  /* 3: an fd that is not open: fdatasync fails, so no rename may follow. */
  close(calls[3].req.fd[0]);
  calls[3].req.fd[0] = 1000;
  calls[3].req.close_fds = false;
  for (int i = 0; i < 5; i++)
    start(f, &calls[i]);
  run_until_done(f, calls, 5);
  assert_int_equal(calls[0].status, 0);
  assert_true(exists(f, "i0"));
  assert_int_equal(calls[1].status, -ENOENT);
  assert_int_equal(calls[2].status, -ENOENT);
  assert_true(exists(f, "i2")); /* renamed; only its directory fsync failed */
  assert_int_equal(calls[3].status, -EBADF);
  assert_false(exists(f, "i3"));
  assert_true(exists(f, "i3.tmp"));
  close(calls[3].req.fd[1]);
  assert_int_equal(calls[4].status, -ENOSPC);
  assert_int_equal(prepare_calls, 1);
  assert_false(exists(f, "i4"));
  for (int i = 0; i < 5; i++)
    assert_int_equal(calls[i].calls, 1);
}

/* Requests started from a callback join the batch after the running one. */
static struct call chained[3];
static fixture_t *chain_f;

static void on_chained(tusc_sync_req_t *req, int status) {
  on_synced(req, status);
  struct call *c = req->data;
  int next = (int)(c - chained) + 1;
  if (next < 3) {
    prepare(chain_f, &chained[next], next, chain_f->dir);
    assert_int_equal(
        tusc_sync_start(&chain_f->batch, &chain_f->loop, &chained[next].req, on_chained), 0);
    chained[next].returned = true;
  }
}

static void test_start_from_callback(void **state) {
  fixture_t *f = *state;
  chain_f = f;
  tusc_sync_batch_init(&f->batch, &f->pool, 0);
  prepare(f, &chained[0], 0, f->dir);
  assert_int_equal(tusc_sync_start(&f->batch, &f->loop, &chained[0].req, on_chained), 0);
  chained[0].returned = true;
  run_until_done(f, chained, 3);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(chained[i].calls, 1);
    assert_int_equal(chained[i].status, 0);
    assert_false(chained[i].inline_cb);
  }
  assert_int_equal(atomic_load(&f->batch.batches), 3);
}

/* syncfs mode: a batch of TUSC_SYNC_SYNCFS_MIN or more requests makes its fds durable
 * with one syncfs; smaller ones sync per fd. */
static void use_syncfs(fixture_t *f) {
  int fd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  assert_true(fd >= 0);
  if (tusc_sync_batch_use_syncfs(&f->batch, fd) != 0)
    skip(); /* a kernel before 5.8 */
}

static void test_syncfs_batch(void **state) {
  fixture_t *f = *state;
  tusc_sync_batch_init(&f->batch, &f->pool, 0);
  use_syncfs(f);
  static struct call calls[8];
  for (int i = 0; i < 8; i++) {
    prepare(f, &calls[i], i, f->dir);
    start(f, &calls[i]);
  }
  run_until_done(f, calls, 8);
  for (int i = 0; i < 8; i++) {
    assert_int_equal(calls[i].calls, 1);
    assert_int_equal(calls[i].status, 0);
    char name[32];
    snprintf(name, sizeof(name), "i%d", i);
    assert_true(exists(f, name));
    for (int k = 0; k < TUSC_SYNC_FDS; k++)
      assert_int_equal(calls[i].req.fd[k], -1);
  }
  /* The first TUSC_SYNC_JOBS batches (one request each) per fd; the last (the rest,
   * 4 or more) one syncfs, and its one directory (fewer than TUSC_SYNC_SYNCFS_MIN
   * distinct ones) one fsync. */
  assert_true(8 - TUSC_SYNC_JOBS >= TUSC_SYNC_SYNCFS_MIN);
  assert_int_equal(atomic_load(&f->batch.batches), TUSC_SYNC_JOBS + 1);
  assert_int_equal(atomic_load(&f->batch.syncfs_calls), 1);
  assert_int_equal(atomic_load(&f->batch.dir_fsyncs), TUSC_SYNC_JOBS + 1);
  tusc_sync_batch_dispose(&f->batch);
}

/* A syncfs error (the epoch moved) after a request began fails it, even though its own
 * steps succeeded: the error may have been its inodes'. Per-fd syncs do not depend on
 * syncfs and are not failed by it. */
static void test_syncfs_error_epoch(void **state) {
  fixture_t *f = *state;
  tusc_sync_batch_init(&f->batch, &f->pool, 0);
  use_syncfs(f);
  static struct call calls[8];
  for (int i = 0; i < 8; i++) {
    prepare(f, &calls[i], i, f->dir);
    calls[i].req.since = tusc_sync_batch_epoch(&f->batch);
  }
  atomic_store(&f->batch.epoch, 1); /* as if a syncfs had failed meanwhile */
  for (int i = 0; i < 8; i++)
    start(f, &calls[i]);
  run_until_done(f, calls, 8);
  for (int i = 0; i < 8; i++) /* the first ones synced per fd */
    assert_int_equal(calls[i].status, i < TUSC_SYNC_JOBS ? 0 : -EIO);
  tusc_sync_batch_dispose(&f->batch);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_batches_share_directory_fsync, setup, teardown),
      cmocka_unit_test_setup_teardown(test_full_queue_runs_alone, setup, teardown),
      cmocka_unit_test_setup_teardown(test_failures_stay_with_their_request, setup, teardown),
      cmocka_unit_test_setup_teardown(test_start_from_callback, setup, teardown),
      cmocka_unit_test_setup_teardown(test_syncfs_batch, setup, teardown),
      cmocka_unit_test_setup_teardown(test_syncfs_error_epoch, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

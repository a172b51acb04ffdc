/* Unit tests for store/sync_batch.c (group commit) on real uv loops and real files:
 * every request completes exactly once, never inside its start, on the loop that
 * started it; requests share batches (the store's batch jobs busy, the rest wait for
 * the next) also when they come from two loops on two threads;
 * a directory named by a whole batch is fsynced once; a full queue runs the overflow
 * alone instead of refusing or blocking; a failing step (prepare included) fails only
 * the requests it belongs to; fds are closed when asked; syncfs mode syncs a batch,
 * directories included, with one syncfs and fails requests that a syncfs error may
 * concern (the error epoch). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <stdatomic.h>
#include <time.h>

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
  bool batch_ready;
} fixture_t;

/* One request and what its callback saw. */
struct call {
  tusc_sync_req_t req;
  bool returned;
  int calls;
  int status;
  bool inline_cb;
  int order;          /* completion rank on its loop */
  uv_thread_t owner;  /* the thread that runs the loop it was started on */
  bool wrong_thread;  /* called back on another thread */
};

static _Thread_local int completed;

static void on_synced(tusc_sync_req_t *req, int status) {
  struct call *c = req->data;
  uv_thread_t self = uv_thread_self();
  c->wrong_thread = c->wrong_thread || !uv_thread_equal(&self, &c->owner);
  c->calls++;
  c->status = status;
  c->inline_cb = !c->returned;
  c->order = completed++;
}

static void init_batch(fixture_t *f, unsigned max) {
  assert_int_equal(tusc_sync_batch_init(&f->batch, &f->pool, max), 0);
  f->batch_ready = true;
}

/* The gate: a request whose `prepare` is gate_prepare holds its batch job (and so a
 * slot) until open_gate, so that what is started meanwhile queues, whatever the pool's
 * threads' timing: the batches are then known. A test device only: the store's pool
 * jobs never wait. */
static atomic_bool gate;

static int gate_prepare(tusc_sync_req_t *req) {
  (void)req;
  for (int i = 0; i < 10000 && !atomic_load(&gate); i++) /* 10 s deadline */
    nanosleep(&(struct timespec){0, 1000000}, NULL);
  return atomic_load(&gate) ? 0 : -ETIMEDOUT;
}

static void hold(struct call *c) {
  c->req.prepare = gate_prepare;
}

static void open_gate(void) {
  atomic_store(&gate, true);
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  if (f == NULL || test_tmpdir(f->dir, sizeof(f->dir), "syncb") != 0 || uv_loop_init(&f->loop) != 0)
    return -1;
  tusc_store_pool_init(&f->pool, 0);
  completed = 0;
  atomic_store(&gate, false);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  assert_int_equal(tusc_store_pool_pending(&f->pool), 0);
  assert_int_equal(uv_loop_close(&f->loop), 0); /* no mailbox or handle left behind */
  if (f->batch_ready)
    tusc_sync_batch_dispose(&f->batch);
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

/* A create's shape: data fd + info fd, their directory. */
static void prepare(fixture_t *f, struct call *c, int i, const char *dir) {
  memset(c, 0, sizeof(*c));
  tusc_sync_req_init(&c->req);
  char name[64];
  snprintf(name, sizeof(name), "d%d", i);
  c->req.fd[0] = make_file(f, name);
  snprintf(name, sizeof(name), "i%d", i);
  c->req.fd[1] = make_file(f, name);
  c->req.close_fds = true;
  c->req.dir[0] = dir;
  c->req.data = c;
  c->owner = uv_thread_self();
}

static void start(fixture_t *f, struct call *c) {
  assert_int_equal(tusc_sync_start(&f->batch, &f->loop, &c->req, on_synced), 0);
  c->returned = true;
  assert_int_equal(c->calls, 0);
}

/* Until every call is back and the batch jobs are done (a job's `done` may come after
 * its last request's callback). */
static void run_until_done(fixture_t *f, struct call *calls, int n) {
  for (;;) {
    int done = 0;
    for (int i = 0; i < n; i++)
      done += calls[i].calls > 0;
    if (done == n && tusc_store_pool_pending(&f->pool) == 0)
      break;
    uv_run(&f->loop, UV_RUN_ONCE);
  }
  uv_run(&f->loop, UV_RUN_NOWAIT); /* lets closing handles go */
}

static void test_batches_share_directory_fsync(void **state) {
  fixture_t *f = *state;
  init_batch(f, 0);
  static struct call calls[N_REQ];
  for (int i = 0; i < N_REQ; i++) {
    prepare(f, &calls[i], i, f->dir);
    if (i < TUSC_SYNC_JOBS)
      hold(&calls[i]);
    start(f, &calls[i]);
  }
  open_gate();
  run_until_done(f, calls, N_REQ);
  for (int i = 0; i < N_REQ; i++) {
    assert_int_equal(calls[i].calls, 1);
    assert_int_equal(calls[i].status, 0);
    assert_false(calls[i].inline_cb);
    assert_false(calls[i].wrong_thread);
    if (i > TUSC_SYNC_JOBS) /* one batch: first come, first completed */
      assert_true(calls[i].order > calls[i - 1].order);
    for (int k = 0; k < TUSC_SYNC_FDS; k++)
      assert_int_equal(calls[i].req.fd[k], -1); /* closed */
  }
  /* The first TUSC_SYNC_JOBS requests started a job each at once; the others waited
   * and the first job to finish its batch took them all as its next: one directory
   * fsync per batch instead of one per request. */
  assert_int_equal(atomic_load(&f->batch.batched), N_REQ);
  assert_int_equal(atomic_load(&f->batch.batches), TUSC_SYNC_JOBS + 1);
  assert_int_equal(atomic_load(&f->batch.solo), 0);
  assert_int_equal(atomic_load(&f->batch.dirs_asked), N_REQ);
  assert_int_equal(atomic_load(&f->batch.dir_fsyncs), TUSC_SYNC_JOBS + 1);
}

static void test_full_queue_runs_alone(void **state) {
  fixture_t *f = *state;
  init_batch(f, 4);
  static struct call calls[10];
  for (int i = 0; i < 10; i++) {
    prepare(f, &calls[i], i, f->dir);
    if (i < TUSC_SYNC_JOBS)
      hold(&calls[i]);
    start(f, &calls[i]);
  }
  open_gate();
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
  init_batch(f, 0);
  char missing_dir[128];
  snprintf(missing_dir, sizeof(missing_dir), "%s/no-such-dir", f->dir);
  static struct call calls[5];
  for (int i = 0; i < 4; i++)
    prepare(f, &calls[i], i, f->dir);
  /* 4: its prepare step fails: nothing else may be done for it. */
  memset(&calls[4], 0, sizeof(calls[4]));
  tusc_sync_req_init(&calls[4].req);
  calls[4].req.prepare = prepare_fails;
  calls[4].req.data = &calls[4];
  calls[4].owner = uv_thread_self();
  prepare_calls = 0;
  /* 1: its second fd is not open: it fails, though its first synced. */
  close(calls[1].req.fd[1]);
  calls[1].req.fd[1] = 1001;
  calls[1].req.close_fds = false;
  /* 2: a directory that does not exist (it shares the good one with the others). */
  calls[2].req.dir[1] = missing_dir;
  /* 3: an fd that is not open, not to be closed by the batch. */
  close(calls[3].req.fd[0]);
  calls[3].req.fd[0] = 1000;
  calls[3].req.close_fds = false;
  for (int i = 0; i < 5; i++)
    start(f, &calls[i]);
  run_until_done(f, calls, 5);
  assert_int_equal(calls[0].status, 0);
  assert_int_equal(calls[1].status, -EBADF);
  close(calls[1].req.fd[0]);
  assert_int_equal(calls[2].status, -ENOENT); /* only its own directory failed */
  assert_int_equal(calls[3].status, -EBADF);
  close(calls[3].req.fd[1]);
  assert_int_equal(calls[4].status, -ENOSPC);
  assert_int_equal(prepare_calls, 1);
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
  init_batch(f, 0);
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
  init_batch(f, 0);
  use_syncfs(f);
  static struct call calls[8];
  for (int i = 0; i < 8; i++) {
    prepare(f, &calls[i], i, f->dir);
    if (i < TUSC_SYNC_JOBS)
      hold(&calls[i]);
    start(f, &calls[i]);
  }
  open_gate();
  run_until_done(f, calls, 8);
  for (int i = 0; i < 8; i++) {
    assert_int_equal(calls[i].calls, 1);
    assert_int_equal(calls[i].status, 0);
    for (int k = 0; k < TUSC_SYNC_FDS; k++)
      assert_int_equal(calls[i].req.fd[k], -1);
  }
  /* The first TUSC_SYNC_JOBS batches (one request each) per fd and directory; the last
   * (the rest, 4 or more) one syncfs, which wrote their directory too. */
  assert_true(8 - TUSC_SYNC_JOBS >= TUSC_SYNC_SYNCFS_MIN);
  assert_int_equal(atomic_load(&f->batch.batches), TUSC_SYNC_JOBS + 1);
  assert_int_equal(atomic_load(&f->batch.syncfs_calls), 1);
  assert_int_equal(atomic_load(&f->batch.dirs_asked), 8);
  assert_int_equal(atomic_load(&f->batch.dir_fsyncs), TUSC_SYNC_JOBS);
}

/* A syncfs error (the epoch moved) after a request began fails it, even though its own
 * steps succeeded: the error may have been its inodes'. Per-fd syncs do not depend on
 * syncfs and are not failed by it. */
static void test_syncfs_error_epoch(void **state) {
  fixture_t *f = *state;
  init_batch(f, 0);
  use_syncfs(f);
  static struct call calls[8];
  for (int i = 0; i < 8; i++) {
    prepare(f, &calls[i], i, f->dir);
    calls[i].req.since = tusc_sync_batch_epoch(&f->batch);
    if (i < TUSC_SYNC_JOBS)
      hold(&calls[i]);
  }
  atomic_store(&f->batch.epoch, 1); /* as if a syncfs had failed meanwhile */
  for (int i = 0; i < 8; i++)
    start(f, &calls[i]);
  open_gate();
  run_until_done(f, calls, 8);
  for (int i = 0; i < 8; i++) /* the first ones synced per fd */
    assert_int_equal(calls[i].status, i < TUSC_SYNC_JOBS ? 0 : -EIO);
}

/* Two loops on two threads, one store. Loop B runs on a thread of its own: it starts
 * its requests, says so, and runs until they are all back (its mailbox closes with the
 * last, so uv_run returns and the loop closes clean). */
typedef struct side_s {
  fixture_t *f;
  uv_loop_t loop;
  struct call *calls;
  int n;
  int first; /* file names from here */
  uv_sem_t started;
  int close_rc;
  int start_rc;
  /* The chained stress: how many more times each call restarts from its callback. */
  int rounds;
  int restarts_left[16];
} side_t;

static void start_side(side_t *b) {
  b->start_rc = 0;
  for (int i = 0; i < b->n; i++) {
    prepare(b->f, &b->calls[i], b->first + i, b->f->dir);
    int rc = tusc_sync_start(&b->f->batch, &b->loop, &b->calls[i].req, on_synced);
    b->calls[i].returned = true;
    if (rc != 0 || b->calls[i].calls != 0)
      b->start_rc = rc != 0 ? rc : -1;
  }
}

static void side_b_main(void *arg) {
  side_t *b = arg;
  completed = 0;
  b->close_rc = uv_loop_init(&b->loop);
  if (b->close_rc == 0)
    start_side(b);
  uv_sem_post(&b->started);
  if (b->close_rc != 0)
    return;
  uv_run(&b->loop, UV_RUN_DEFAULT);
  b->close_rc = uv_loop_close(&b->loop);
}

static void test_two_loops_share_a_batch(void **state) {
  fixture_t *f = *state;
  init_batch(f, 0);
  enum { PER_SIDE = 6 };
  static struct call a_calls[TUSC_SYNC_JOBS + PER_SIDE], b_calls[PER_SIDE];
  /* Loop A: the first TUSC_SYNC_JOBS hold every batch job, the rest queue. */
  for (int i = 0; i < TUSC_SYNC_JOBS + PER_SIDE; i++) {
    prepare(f, &a_calls[i], i, f->dir);
    if (i < TUSC_SYNC_JOBS)
      hold(&a_calls[i]);
    start(f, &a_calls[i]);
  }
  /* Loop B queues behind them, from its own thread. */
  side_t b = {.f = f, .calls = b_calls, .n = PER_SIDE, .first = 100};
  assert_int_equal(uv_sem_init(&b.started, 0), 0);
  uv_thread_t tb;
  assert_int_equal(uv_thread_create(&tb, side_b_main, &b), 0);
  uv_sem_wait(&b.started);
  assert_int_equal(b.start_rc, 0);
  open_gate();
  run_until_done(f, a_calls, TUSC_SYNC_JOBS + PER_SIDE);
  assert_int_equal(uv_thread_join(&tb), 0);
  uv_sem_destroy(&b.started);
  assert_int_equal(b.close_rc, 0); /* B's mailbox closed with its last request */
  for (int i = 0; i < TUSC_SYNC_JOBS + PER_SIDE; i++) {
    assert_int_equal(a_calls[i].calls, 1);
    assert_int_equal(a_calls[i].status, 0);
    assert_false(a_calls[i].inline_cb);
    assert_false(a_calls[i].wrong_thread);
  }
  for (int i = 0; i < PER_SIDE; i++) {
    assert_int_equal(b_calls[i].calls, 1);
    assert_int_equal(b_calls[i].status, 0);
    assert_false(b_calls[i].inline_cb);
    assert_false(b_calls[i].wrong_thread); /* on B's thread, not A's or a pool's */
    if (i > 0)
      assert_true(b_calls[i].order > b_calls[i - 1].order);
  }
  /* The held jobs ran one request each; the first to finish took both loops' waiting
   * requests as one batch: one directory fsync for the twelve of them. */
  assert_int_equal(atomic_load(&f->batch.batches), TUSC_SYNC_JOBS + 1);
  assert_int_equal(atomic_load(&f->batch.batched), TUSC_SYNC_JOBS + 2 * PER_SIDE);
  assert_int_equal(atomic_load(&f->batch.mixed), 1);
  assert_int_equal(atomic_load(&f->batch.dir_fsyncs), TUSC_SYNC_JOBS + 1);
}

/* Stress: both loops keep 8 requests each in flight, every callback starting its
 * request again, so that batch jobs finish, restart and hand back while both loops
 * submit (the races of the queue, the slots and the mailboxes; ASan watches). */
static void on_restart(tusc_sync_req_t *req, int status);

static side_t *side_of_call(struct call *c);
static side_t *stress_sides[2];

static void restart(side_t *s, struct call *c) {
  tusc_sync_req_init(&c->req);
  c->req.dir[0] = s->f->dir;
  c->req.data = c;
  c->returned = false;
  int rc = tusc_sync_start(&s->f->batch, &s->loop, &c->req, on_restart);
  if (rc != 0)
    c->status = rc;
  c->returned = true;
}

static side_t *side_of_call(struct call *c) {
  for (int k = 0; k < 2; k++)
    if (c >= stress_sides[k]->calls && c < stress_sides[k]->calls + stress_sides[k]->n)
      return stress_sides[k];
  return NULL;
}

static void on_restart(tusc_sync_req_t *req, int status) {
  struct call *c = req->data;
  uv_thread_t self = uv_thread_self();
  c->wrong_thread = c->wrong_thread || !uv_thread_equal(&self, &c->owner);
  c->inline_cb = c->inline_cb || !c->returned;
  c->calls++;
  if (status != 0)
    c->status = status;
  side_t *s = side_of_call(c);
  int i = (int)(c - s->calls);
  if (s->restarts_left[i]-- > 0)
    restart(s, c);
}

static void stress_main(void *arg) {
  side_t *s = arg;
  s->close_rc = uv_loop_init(&s->loop);
  if (s->close_rc != 0)
    return;
  for (int i = 0; i < s->n; i++) {
    memset(&s->calls[i], 0, sizeof(s->calls[i]));
    s->calls[i].owner = uv_thread_self();
    s->restarts_left[i] = s->rounds - 1;
    restart(s, &s->calls[i]);
  }
  uv_run(&s->loop, UV_RUN_DEFAULT);
  s->close_rc = uv_loop_close(&s->loop);
}

static void test_two_loops_stress(void **state) {
  fixture_t *f = *state;
  init_batch(f, 0);
  enum { PER = 8, ROUNDS = 60 };
  static struct call calls[2][PER];
  static side_t sides[2];
  uv_thread_t t[2];
  for (int k = 0; k < 2; k++) {
    sides[k] = (side_t){.f = f, .calls = calls[k], .n = PER, .rounds = ROUNDS};
    stress_sides[k] = &sides[k];
  }
  for (int k = 0; k < 2; k++)
    assert_int_equal(uv_thread_create(&t[k], stress_main, &sides[k]), 0);
  for (int k = 0; k < 2; k++)
    assert_int_equal(uv_thread_join(&t[k]), 0);
  /* The batch jobs' last `done`s run on whichever loop submitted them, before it ends. */
  assert_int_equal(tusc_store_pool_pending(&f->pool), 0);
  for (int k = 0; k < 2; k++) {
    assert_int_equal(sides[k].close_rc, 0);
    for (int i = 0; i < PER; i++) {
      assert_int_equal(calls[k][i].calls, ROUNDS);
      assert_int_equal(calls[k][i].status, 0);
      assert_false(calls[k][i].inline_cb);
      assert_false(calls[k][i].wrong_thread);
    }
  }
  assert_int_equal(atomic_load(&f->batch.batched), 2 * PER * ROUNDS);
  assert_int_equal(atomic_load(&f->batch.solo), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_batches_share_directory_fsync, setup, teardown),
      cmocka_unit_test_setup_teardown(test_full_queue_runs_alone, setup, teardown),
      cmocka_unit_test_setup_teardown(test_failures_stay_with_their_request, setup, teardown),
      cmocka_unit_test_setup_teardown(test_start_from_callback, setup, teardown),
      cmocka_unit_test_setup_teardown(test_syncfs_batch, setup, teardown),
      cmocka_unit_test_setup_teardown(test_syncfs_error_epoch, setup, teardown),
      cmocka_unit_test_setup_teardown(test_two_loops_share_a_batch, setup, teardown),
      cmocka_unit_test_setup_teardown(test_two_loops_stress, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

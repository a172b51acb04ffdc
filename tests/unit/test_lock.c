/* Unit tests for the asynchronous lock interface (src/lock/lock.h) and its local
 * backend (src/lock/local.c) on real libuv loops: callbacks never before acquire
 * returned, hand-over to a waiter when the holder lets go, release requests delivered
 * on the holder's own loop, timeouts, cancellation, several loops in several threads,
 * and flock against another process. Run under ASan, which also catches a req touched
 * after its owner freed it. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "testutil.h"

#include "common/error.h"
#include "lock/local.h"
#include "lock/lock.h"

/* How long any wait for a condition may take before the test fails. */
#define DEADLINE_MS 10000

typedef struct fixture_s {
  char dir[64];
  tusc_lock_t *lock;
  uv_loop_t loop;
} fixture_t;

/* "<dir>/<id>.lock"; IDs starting with '!' have no lock file (TUSC_EINVALID_ID). */
static int lock_path(void *arg, const char *id, char *out, size_t cap) {
  const fixture_t *f = arg;
  if (id[0] == '!')
    return TUSC_EINVALID_ID;
  int n = snprintf(out, cap, "%s/%s.lock", f->dir, id);
  return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  if (f == NULL || test_tmpdir(f->dir, sizeof(f->dir), "lock") != 0 ||
      tusc_lock_local_new(lock_path, f, 0640, &f->lock) != 0 || uv_loop_init(&f->loop) != 0)
    return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  /* Every request ended: the loop runs out (the lock's handles are closed). */
  (void)uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  tusc_lock_free(f->lock);
  test_rm_rf(f->dir);
  free(f);
  return 0;
}

static tusc_lock_local_stats_t stats(fixture_t *f) {
  tusc_lock_local_stats_t s;
  tusc_lock_local_stats(f->lock, &s);
  return s;
}

/* One request and what happened to it. */
typedef struct probe_s {
  tusc_lock_req_t req;
  fixture_t *f;
  int calls, status;
  int asked, waited;
  bool release_when_asked; /* let go from on_release_requested */
  bool release_when_got;   /* let go from the callback */
  uv_thread_t thread;      /* where the last callback ran */
  int order;               /* when its callback ran (see `clock_tick`) */
} probe_t;

static int clock_tick;

static void on_done(tusc_lock_req_t *req, int status) {
  probe_t *p = req->data;
  p->calls++;
  p->status = status;
  p->order = ++clock_tick;
  p->thread = uv_thread_self();
  if (status == 0 && p->release_when_got)
    tusc_lock_release(req);
}

static void on_asked(tusc_lock_req_t *req) {
  probe_t *p = req->data;
  p->asked++;
  p->thread = uv_thread_self();
  if (p->release_when_asked)
    tusc_lock_release(req);
}

static void on_wait(tusc_lock_req_t *req) {
  probe_t *p = req->data;
  p->waited++;
}

static void probe_init(probe_t *p, fixture_t *f) {
  memset(p, 0, sizeof(*p));
  p->f = f;
  p->req.data = p;
  p->req.on_release_requested = on_asked;
  p->req.on_wait = on_wait;
}

static int acquire(probe_t *p, const char *id, int64_t timeout_ms) {
  return tusc_lock_acquire(p->f->lock, &p->f->loop, &p->req, id, timeout_ms, on_done);
}

/* Runs the loop until *flag is non-zero; fails the test after DEADLINE_MS. */
static void on_guard(uv_timer_t *t) {
  *(bool *)t->data = true;
}

static void run_until_count(fixture_t *f, const int *counter, int want) {
  uv_timer_t guard;
  bool expired = false;
  assert_int_equal(uv_timer_init(&f->loop, &guard), 0);
  guard.data = &expired;
  assert_int_equal(uv_timer_start(&guard, on_guard, DEADLINE_MS, 0), 0);
  while (*counter < want && !expired)
    (void)uv_run(&f->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&guard, NULL);
  (void)uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_false(expired);
}

static void run_until(fixture_t *f, const int *counter) {
  run_until_count(f, counter, 1);
}

/* Takes `id` with a fresh probe and runs the loop until it holds it. */
static void take(fixture_t *f, probe_t *p, const char *id) {
  probe_init(p, f);
  assert_int_equal(acquire(p, id, 0), 0);
  run_until(f, &p->calls);
  assert_int_equal(p->status, 0);
}

/* --- one loop ------------------------------------------------------------------------ */

static void test_acquire_release(void **state) {
  fixture_t *f = *state;
  probe_t a, b;
  probe_init(&a, f);
  mode_t old_umask = umask(077);
  assert_int_equal(acquire(&a, "a", 0), 0);
  umask(old_umask);
  assert_int_equal(a.calls, 0); /* never before acquire returned */
  run_until(f, &a.calls);
  assert_int_equal(a.status, 0);
  assert_int_equal(a.calls, 1);
  char path[128];
  snprintf(path, sizeof(path), "%s/a.lock", f->dir);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0640); /* exactly file_perms, whatever the umask */

  /* A req in use is refused; so are empty IDs and missing arguments. */
  assert_int_equal(acquire(&a, "z", 0), TUSC_EINVALID_ARGUMENT);
  probe_init(&b, f);
  assert_int_equal(acquire(&b, "", 0), TUSC_EINVALID_ARGUMENT);
  assert_int_equal(tusc_lock_acquire(f->lock, &f->loop, &b.req, "b", 0, NULL),
                   TUSC_EINVALID_ARGUMENT);
  assert_int_equal(tusc_lock_acquire(NULL, &f->loop, &b.req, "b", 0, on_done),
                   TUSC_EINVALID_ARGUMENT);

  /* Busy, tried once: a timeout, and the holder is not asked for nothing. */
  assert_int_equal(acquire(&b, "a", 0), 0);
  run_until(f, &b.calls);
  assert_int_equal(b.status, TUSC_ELOCK_TIMEOUT);
  assert_int_equal(b.waited, 0);
  assert_int_equal(a.asked, 0);
  assert_int_equal(stats(f).asks, 0);
  /* Holding one ID does not hold another; the ended req can be used again. */
  b.calls = 0;
  assert_int_equal(acquire(&b, "b", 0), 0);
  run_until(f, &b.calls);
  assert_int_equal(b.status, 0);

  assert_int_equal(tusc_lock_cancel(&a.req), UV_EINVAL); /* held: nothing to cancel */
  tusc_lock_release(&a.req);
  tusc_lock_release(&a.req);            /* no-op */
  assert_int_equal(stat(path, &st), 0); /* the lock file is kept */
  probe_t c;
  take(f, &c, "a");
  tusc_lock_release(&c.req);
  tusc_lock_release(&b.req);

  /* A zeroed req: release is a no-op, cancel has nothing to cancel. */
  tusc_lock_req_t zero;
  memset(&zero, 0, sizeof(zero));
  tusc_lock_release(&zero);
  assert_int_equal(tusc_lock_cancel(&zero), UV_EINVAL);
}

/* The fast path: a free lock taken at once, without a callback. */
static void test_try_acquire(void **state) {
  fixture_t *f = *state;
  probe_t a, b;
  probe_init(&a, f);
  assert_int_equal(tusc_lock_try_acquire(f->lock, &f->loop, &a.req, "t"), 0);
  assert_int_equal(a.calls, 0); /* held, and no callback comes */
  assert_int_equal(tusc_lock_try_acquire(f->lock, &f->loop, &a.req, "u"), TUSC_EINVALID_ARGUMENT);
  assert_int_equal(tusc_lock_cancel(&a.req), UV_EINVAL);
  probe_init(&b, f);
  assert_int_equal(tusc_lock_try_acquire(f->lock, &f->loop, &b.req, "t"), TUSC_ELOCKED);
  assert_int_equal(stats(f).asks, 0); /* a try asks nobody */
  /* Held like any other: asked by a waiter, handed over on release. */
  assert_int_equal(acquire(&b, "t", DEADLINE_MS), 0);
  run_until(f, &a.asked);
  tusc_lock_release(&a.req);
  run_until(f, &b.calls);
  assert_int_equal(b.status, 0);
  assert_int_equal(a.calls, 0);
  tusc_lock_release(&b.req);
  /* Errors come back at once, nothing is left held. */
  probe_init(&a, f);
  assert_int_equal(tusc_lock_try_acquire(f->lock, &f->loop, &a.req, "!x"), TUSC_EINVALID_ID);
  assert_int_equal(tusc_lock_try_acquire(f->lock, &f->loop, &a.req, "no-dir/x"), -ENOENT);
  assert_int_equal(tusc_lock_try_acquire(f->lock, &f->loop, &a.req, "t"), 0);
  tusc_lock_release(&a.req);
  /* A backend that cannot tell without waiting says so. */
  tusc_lock_ops_t ops = *f->lock->ops;
  const tusc_lock_ops_t *orig = f->lock->ops;
  ops.try_acquire = NULL;
  f->lock->ops = &ops;
  probe_init(&a, f);
  assert_int_equal(tusc_lock_try_acquire(f->lock, &f->loop, &a.req, "t"), UV_EAGAIN);
  f->lock->ops = orig;
}

static void test_errors_come_through_the_callback(void **state) {
  fixture_t *f = *state;
  probe_t p;
  probe_init(&p, f);
  assert_int_equal(acquire(&p, "!nope", 1000), 0); /* no lock file for it */
  run_until(f, &p.calls);
  assert_int_equal(p.status, TUSC_EINVALID_ID);
  probe_init(&p, f);
  assert_int_equal(acquire(&p, "missing-dir/x", 1000), 0); /* I/O error */
  run_until(f, &p.calls);
  assert_int_equal(p.status, -ENOENT);
  /* Nothing left behind: the ID can be taken. */
  char dir[128];
  snprintf(dir, sizeof(dir), "%s/missing-dir", f->dir);
  assert_int_equal(mkdir(dir, 0700), 0);
  take(f, &p, "missing-dir/x");
  tusc_lock_release(&p.req);
}

/* A waiter gets the lock the moment the holder lets go: handed over, not found by its
 * retry timer. The holder is asked on its loop, at once and again every
 * TUSC_LOCK_REASK_MS. */
static void test_waiter_gets_it_on_release(void **state) {
  fixture_t *f = *state;
  probe_t a, b;
  take(f, &a, "x");
  probe_init(&b, f);
  assert_int_equal(acquire(&b, "x", DEADLINE_MS), 0);
  assert_int_equal(b.waited, 1); /* counted as a wait when it began */
  assert_int_equal(stats(f).waits, 1);
  run_until(f, &a.asked);
  assert_int_equal(b.calls, 0);
  assert_true(uv_thread_equal(&a.thread, &(uv_thread_t){uv_thread_self()}));

  tusc_lock_release(&a.req);
  assert_int_equal(stats(f).handovers, 1); /* b holds it now */
  assert_int_equal(b.calls, 0);            /* and hears it from its loop */
  run_until(f, &b.calls);
  assert_int_equal(b.status, 0);
  /* Nobody else got it meanwhile. */
  probe_t c;
  probe_init(&c, f);
  assert_int_equal(acquire(&c, "x", 0), 0);
  run_until(f, &c.calls);
  assert_int_equal(c.status, TUSC_ELOCK_TIMEOUT);
  tusc_lock_release(&b.req);
}

/* Asked holders let go from inside on_release_requested; waiters are served oldest
 * first, and each asks the holder of its time. */
static void test_release_from_callbacks_and_order(void **state) {
  fixture_t *f = *state;
  probe_t a, b, c;
  take(f, &a, "q");
  a.release_when_asked = true;
  probe_init(&b, f);
  b.release_when_asked = true;
  probe_init(&c, f);
  c.release_when_got = true;
  assert_int_equal(acquire(&b, "q", DEADLINE_MS), 0);
  assert_int_equal(acquire(&c, "q", DEADLINE_MS), 0);
  run_until(f, &c.calls);
  assert_int_equal(a.asked, 1);
  assert_int_equal(b.status, 0);
  assert_int_equal(c.status, 0);
  assert_true(b.order < c.order);
  /* b got it after a, was asked (by c's re-ask or at once) and let go. */
  assert_true(stats(f).handovers >= 2);
  probe_t d;
  take(f, &d, "q"); /* c let go in its callback */
  tusc_lock_release(&d.req);
}

static void test_timeout_asks_again(void **state) {
  fixture_t *f = *state;
  probe_t a, b;
  take(f, &a, "t");
  probe_init(&b, f);
  /* Asks at once, and again after TUSC_LOCK_REASK_MS, well before the deadline. */
  assert_int_equal(acquire(&b, "t", 3 * TUSC_LOCK_REASK_MS), 0);
  uint64_t t0 = uv_now(&f->loop);
  run_until(f, &b.calls);
  uv_update_time(&f->loop);
  assert_int_equal(b.status, TUSC_ELOCK_TIMEOUT);
  assert_true(uv_now(&f->loop) - t0 >= 3 * TUSC_LOCK_REASK_MS);
  assert_true(a.asked >= 2);
  /* Still a's; once a lets go the ID is free (the waiter left no trace). */
  tusc_lock_release(&a.req);
  assert_int_equal(stats(f).handovers, 0);
  probe_t c;
  take(f, &c, "t");
  tusc_lock_release(&c.req);
}

static void test_cancel(void **state) {
  fixture_t *f = *state;
  probe_t a, b, c;
  take(f, &a, "k");
  /* A waiting acquire: its callback comes later, cancelled. */
  probe_init(&b, f);
  assert_int_equal(acquire(&b, "k", DEADLINE_MS), 0);
  assert_int_equal(tusc_lock_cancel(&b.req), 0);
  assert_int_equal(b.calls, 0);
  assert_int_equal(tusc_lock_cancel(&b.req), 0); /* still pending: same outcome */
  run_until(f, &b.calls);
  assert_int_equal(b.status, UV_ECANCELED);
  assert_int_equal(tusc_lock_cancel(&b.req), UV_EINVAL); /* ended */

  /* Handed over but not told yet: cancelled all the same, and the lock goes on to
   * the next waiter. */
  probe_init(&b, f);
  probe_init(&c, f);
  assert_int_equal(acquire(&b, "k", DEADLINE_MS), 0);
  assert_int_equal(acquire(&c, "k", DEADLINE_MS), 0);
  tusc_lock_release(&a.req);
  assert_int_equal(stats(f).handovers, 1);
  assert_int_equal(tusc_lock_cancel(&b.req), 0);
  run_until(f, &c.calls);
  if (b.calls == 0)
    run_until(f, &b.calls);
  assert_int_equal(b.status, UV_ECANCELED);
  assert_int_equal(c.status, 0);
  assert_int_equal(stats(f).handovers, 2);

  /* Granted at once, cancelled before the callback: not held. */
  tusc_lock_release(&c.req);
  probe_init(&b, f);
  assert_int_equal(acquire(&b, "k", 0), 0);
  assert_int_equal(tusc_lock_cancel(&b.req), 0);
  run_until(f, &b.calls);
  assert_int_equal(b.status, UV_ECANCELED);
  take(f, &c, "k");
  tusc_lock_release(&c.req);
}

/* The req may be freed in its callback (after release, or when it did not get the
 * lock) and right after release even while asks are queued for it. */
static void on_done_free(tusc_lock_req_t *req, int status) {
  int *ended = req->data;
  if (status == 0)
    tusc_lock_release(req);
  (*ended)++;
  free(req);
}

static void test_req_freed_early(void **state) {
  fixture_t *f = *state;
  probe_t a;
  take(f, &a, "m");
  /* Three waiters, each freed by its callback once it got the lock and let go: the
   * lock passes from one to the next inside those callbacks. */
  int ended = 0;
  for (int i = 0; i < 3; i++) {
    tusc_lock_req_t *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    r->data = &ended;
    assert_int_equal(tusc_lock_acquire(f->lock, &f->loop, r, "m", DEADLINE_MS, on_done_free), 0);
  }
  tusc_lock_release(&a.req);
  run_until_count(f, &ended, 3);
  assert_int_equal(a.asked, 0); /* asked (queued), but gone before its loop looked */

  /* A holder asked, then released and freed before its loop runs. */
  tusc_lock_req_t *held = calloc(1, sizeof(*held));
  assert_non_null(held);
  probe_t owner;
  probe_init(&owner, f);
  held->data = &owner;
  held->on_release_requested = on_asked;
  assert_int_equal(tusc_lock_acquire(f->lock, &f->loop, held, "n", 0, on_done), 0);
  run_until(f, &owner.calls);
  assert_int_equal(owner.status, 0);
  probe_t w;
  probe_init(&w, f);
  assert_int_equal(acquire(&w, "n", DEADLINE_MS), 0); /* asks `held` */
  tusc_lock_release(held);
  free(held);
  run_until(f, &w.calls);
  assert_int_equal(w.status, 0);
  assert_int_equal(owner.asked, 0);
  tusc_lock_release(&w.req);
}

/* Without a lock-file function the lock is in-process only; many IDs at once make the
 * table grow. */
static void test_many_ids_in_process(void **state) {
  fixture_t *f = *state;
  tusc_lock_t *lock = NULL;
  assert_int_equal(tusc_lock_local_new(NULL, NULL, 0600, &lock), 0);
  enum { N = 2000 };
  probe_t *ps = calloc(N, sizeof(*ps));
  assert_non_null(ps);
  int got = 0;
  for (int i = 0; i < N; i++) {
    char id[32];
    snprintf(id, sizeof(id), "upload-%d", i);
    probe_init(&ps[i], f);
    assert_int_equal(tusc_lock_acquire(lock, &f->loop, &ps[i].req, id, 0, on_done), 0);
  }
  while (got < N) {
    (void)uv_run(&f->loop, UV_RUN_ONCE);
    got = 0;
    for (int i = 0; i < N; i++)
      got += ps[i].calls;
  }
  for (int i = 0; i < N; i++)
    assert_int_equal(ps[i].status, 0);
  probe_t again;
  probe_init(&again, f);
  assert_int_equal(tusc_lock_acquire(lock, &f->loop, &again.req, "upload-1234", 0, on_done), 0);
  run_until(f, &again.calls);
  assert_int_equal(again.status, TUSC_ELOCK_TIMEOUT);
  for (int i = 0; i < N; i++)
    tusc_lock_release(&ps[i].req);
  probe_init(&again, f);
  assert_int_equal(tusc_lock_acquire(lock, &f->loop, &again.req, "upload-1234", 0, on_done), 0);
  run_until(f, &again.calls);
  assert_int_equal(again.status, 0);
  tusc_lock_release(&again.req);
  (void)uv_run(&f->loop, UV_RUN_DEFAULT);
  tusc_lock_free(lock);
  free(ps);
}

/* --- two loops in two threads --------------------------------------------------------- */

typedef struct side_s {
  fixture_t *f;
  uv_loop_t loop;
  uv_thread_t thread, self;
  tusc_lock_req_t req;
  uv_sem_t *holding; /* posted once the holder holds */
  int status;
  atomic_int asked_elsewhere; /* on_release_requested ran off this side's thread */
  atomic_int asked;
  atomic_int done;
} side_t;

static void on_side_asked(tusc_lock_req_t *req) {
  side_t *s = req->data;
  uv_thread_t self = uv_thread_self();
  if (!uv_thread_equal(&self, &s->self))
    atomic_fetch_add(&s->asked_elsewhere, 1);
  atomic_fetch_add(&s->asked, 1);
  tusc_lock_release(req);
  atomic_store(&s->done, 1);
}

static void on_side_done(tusc_lock_req_t *req, int status) {
  side_t *s = req->data;
  s->status = status;
  if (s->holding != NULL) {
    uv_sem_post(s->holding); /* holds; lets go when asked */
    return;
  }
  if (status == 0)
    tusc_lock_release(req);
  atomic_store(&s->done, 1);
}

static void side_main(void *arg) {
  side_t *s = arg;
  s->self = uv_thread_self();
  s->req.data = s;
  s->req.on_release_requested = on_side_asked;
  if (tusc_lock_acquire(s->f->lock, &s->loop, &s->req, "shared", DEADLINE_MS, on_side_done) != 0)
    s->status = -1;
  /* Runs until its request ended: the lock's handles keep the loop alive till then. */
  (void)uv_run(&s->loop, UV_RUN_DEFAULT);
}

static void test_two_loops_two_threads(void **state) {
  fixture_t *f = *state;
  side_t a, b;
  memset(&a, 0, sizeof(a));
  memset(&b, 0, sizeof(b));
  uv_sem_t holding;
  assert_int_equal(uv_sem_init(&holding, 0), 0);
  a.f = b.f = f;
  a.holding = &holding;
  assert_int_equal(uv_loop_init(&a.loop), 0);
  assert_int_equal(uv_loop_init(&b.loop), 0);
  uint64_t before = stats(f).handovers;
  assert_int_equal(uv_thread_create(&a.thread, side_main, &a), 0);
  uv_sem_wait(&holding);
  assert_int_equal(a.status, 0);
  assert_int_equal(uv_thread_create(&b.thread, side_main, &b), 0);
  assert_int_equal(uv_thread_join(&b.thread), 0);
  assert_int_equal(uv_thread_join(&a.thread), 0);
  assert_int_equal(b.status, 0);
  assert_int_equal(atomic_load(&a.asked), 1);
  assert_int_equal(atomic_load(&a.asked_elsewhere), 0); /* on the holder's own loop */
  assert_int_equal(stats(f).handovers, before + 1);
  assert_int_equal(uv_loop_close(&a.loop), 0);
  assert_int_equal(uv_loop_close(&b.loop), 0);
  uv_sem_destroy(&holding);
}

/* Many loops and threads on a few IDs: never two holders; everyone ends. */
enum { THREADS = 4, PER_THREAD = 3, ROUNDS = 150, IDS = 3 };

typedef struct hammer_s {
  fixture_t *f;
  atomic_int inside[IDS];
  atomic_int violations, acquired, ended, asked;
} hammer_t;

typedef struct hclient_s {
  hammer_t *hm;
  uv_loop_t *loop;
  tusc_lock_req_t *req; /* heap: freed as soon as it ended */
  uv_timer_t timer;     /* lets go after a moment if nobody asks */
  unsigned seed;
  int slot, round;
  bool holding;
} hclient_t;

static void hclient_next(hclient_t *c);

static void hclient_let_go(hclient_t *c) {
  if (atomic_fetch_sub(&c->hm->inside[c->slot], 1) != 1)
    atomic_fetch_add(&c->hm->violations, 1);
  c->holding = false;
  uv_timer_stop(&c->timer);
  tusc_lock_release(c->req);
  free(c->req);
  c->req = NULL;
  hclient_next(c);
}

static void on_hclient_timer(uv_timer_t *t) {
  hclient_t *c = t->data;
  if (c->holding)
    hclient_let_go(c);
  else if (c->req == NULL)
    hclient_next(c);
}

static void on_hclient_asked(tusc_lock_req_t *req) {
  hclient_t *c = req->data;
  atomic_fetch_add(&c->hm->asked, 1);
  if (!c->holding || c->req != req)
    atomic_fetch_add(&c->hm->violations, 1);
  else if (rand_r(&c->seed) % 2 == 0)
    hclient_let_go(c);
}

static void on_hclient_done(tusc_lock_req_t *req, int status) {
  hclient_t *c = req->data;
  atomic_fetch_add(&c->hm->ended, 1);
  if (status != 0) {
    if (status != UV_ECANCELED && status != TUSC_ELOCK_TIMEOUT)
      atomic_fetch_add(&c->hm->violations, 1);
    free(req);
    c->req = NULL;
    uv_timer_start(&c->timer, on_hclient_timer, 0, 0);
    return;
  }
  atomic_fetch_add(&c->hm->acquired, 1);
  if (atomic_fetch_add(&c->hm->inside[c->slot], 1) != 0)
    atomic_fetch_add(&c->hm->violations, 1);
  c->holding = true;
  if (rand_r(&c->seed) % 3 == 0)
    hclient_let_go(c); /* at once, inside the callback */
  else
    uv_timer_start(&c->timer, on_hclient_timer, rand_r(&c->seed) % 3, 0);
}

static void hclient_next(hclient_t *c) {
  if (c->round++ >= ROUNDS) {
    uv_close((uv_handle_t *)&c->timer, NULL);
    return;
  }
  c->slot = (int)(rand_r(&c->seed) % IDS);
  char id[16];
  snprintf(id, sizeof(id), "id%d", c->slot);
  c->req = calloc(1, sizeof(*c->req));
  if (c->req == NULL) {
    atomic_fetch_add(&c->hm->violations, 1);
    return;
  }
  c->req->data = c;
  c->req->on_release_requested = on_hclient_asked;
  int64_t timeout = rand_r(&c->seed) % 4 == 0 ? 0 : DEADLINE_MS;
  if (tusc_lock_acquire(c->hm->f->lock, c->loop, c->req, id, timeout, on_hclient_done) != 0) {
    atomic_fetch_add(&c->hm->violations, 1);
    return;
  }
  if (rand_r(&c->seed) % 5 == 0 && tusc_lock_cancel(c->req) != 0)
    atomic_fetch_add(&c->hm->violations, 1);
}

static void hammer_main(void *arg) {
  hclient_t *cs = arg;
  uv_loop_t loop;
  if (uv_loop_init(&loop) != 0) {
    atomic_fetch_add(&cs[0].hm->violations, 1);
    return;
  }
  for (int i = 0; i < PER_THREAD; i++) {
    cs[i].loop = &loop;
    uv_timer_init(&loop, &cs[i].timer);
    cs[i].timer.data = &cs[i];
    hclient_next(&cs[i]);
  }
  (void)uv_run(&loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop) != 0)
    atomic_fetch_add(&cs[0].hm->violations, 1);
}

static void test_threads_hammer(void **state) {
  fixture_t *f = *state;
  hammer_t hm;
  memset(&hm, 0, sizeof(hm));
  hm.f = f;
  hclient_t cs[THREADS][PER_THREAD];
  memset(cs, 0, sizeof(cs));
  uv_thread_t t[THREADS];
  for (int i = 0; i < THREADS; i++) {
    for (int j = 0; j < PER_THREAD; j++) {
      cs[i][j].hm = &hm;
      cs[i][j].seed = (unsigned)(i * PER_THREAD + j + 1);
    }
    assert_int_equal(uv_thread_create(&t[i], hammer_main, cs[i]), 0);
  }
  for (int i = 0; i < THREADS; i++)
    assert_int_equal(uv_thread_join(&t[i]), 0);
  assert_int_equal(atomic_load(&hm.violations), 0);
  assert_int_equal(atomic_load(&hm.ended), THREADS * PER_THREAD * ROUNDS);
  assert_true(atomic_load(&hm.acquired) > 0);
  assert_true(atomic_load(&hm.asked) > 0);
  /* Every ID is free again. */
  for (int i = 0; i < IDS; i++) {
    char id[16];
    snprintf(id, sizeof(id), "id%d", i);
    probe_t p;
    take(f, &p, id);
    tusc_lock_release(&p.req);
  }
}

/* --- another process ------------------------------------------------------------------ */

/* A child that flocks `path`, says so on `ready`, and lets go (exits) when a byte
 * arrives on `go`. */
static pid_t child_holding(const char *path, int *go_fd) {
  int ready[2], go[2];
  assert_int_equal(pipe(ready), 0);
  assert_int_equal(pipe(go), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(ready[0]);
    close(go[1]);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || flock(fd, LOCK_EX) != 0)
      _exit(2);
    if (write(ready[1], "r", 1) != 1)
      _exit(2);
    char c;
    (void)read(go[0], &c, 1); /* or EOF: the parent went away */
    _exit(0);
  }
  close(ready[1]);
  close(go[0]);
  char c;
  assert_int_equal(read(ready[0], &c, 1), 1);
  close(ready[0]);
  *go_fd = go[1];
  return pid;
}

static void child_end(pid_t pid, int go_fd) {
  assert_int_equal(write(go_fd, "g", 1), 1);
  close(go_fd);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

/* Exit 0: the flock is busy for another process; 1: it is free. */
static int child_probe(const char *path) {
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
      _exit(2);
    if (flock(fd, LOCK_EX | LOCK_NB) == 0)
      _exit(1);
    _exit(errno == EWOULDBLOCK ? 0 : 2);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  return WEXITSTATUS(status);
}

static void test_other_process(void **state) {
  fixture_t *f = *state;
  char path[128];
  snprintf(path, sizeof(path), "%s/shared.lock", f->dir);
  /* Held here: busy for another process; free once released. */
  probe_t a;
  take(f, &a, "shared");
  assert_int_equal(child_probe(path), 0);
  tusc_lock_release(&a.req);
  assert_int_equal(child_probe(path), 1);

  /* Held by another process: a try fails, a timeout expires. */
  int go;
  pid_t pid = child_holding(path, &go);
  probe_t b;
  probe_init(&b, f);
  assert_int_equal(acquire(&b, "shared", 0), 0);
  run_until(f, &b.calls);
  assert_int_equal(b.status, TUSC_ELOCK_TIMEOUT);
  probe_init(&b, f);
  assert_int_equal(acquire(&b, "shared", 30), 0);
  run_until(f, &b.calls);
  assert_int_equal(b.status, TUSC_ELOCK_TIMEOUT);

  /* A waiter gets it by retrying once the other process lets go. */
  uint64_t retries = stats(f).retries;
  probe_init(&b, f);
  assert_int_equal(acquire(&b, "shared", DEADLINE_MS), 0);
  assert_int_equal(b.waited, 1);
  child_end(pid, go);
  run_until(f, &b.calls);
  assert_int_equal(b.status, 0);
  assert_true(stats(f).retries > retries);
  assert_int_equal(child_probe(path), 0);
  tusc_lock_release(&b.req);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_acquire_release, setup, teardown),
      cmocka_unit_test_setup_teardown(test_try_acquire, setup, teardown),
      cmocka_unit_test_setup_teardown(test_errors_come_through_the_callback, setup, teardown),
      cmocka_unit_test_setup_teardown(test_waiter_gets_it_on_release, setup, teardown),
      cmocka_unit_test_setup_teardown(test_release_from_callbacks_and_order, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timeout_asks_again, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
      cmocka_unit_test_setup_teardown(test_req_freed_early, setup, teardown),
      cmocka_unit_test_setup_teardown(test_many_ids_in_process, setup, teardown),
      cmocka_unit_test_setup_teardown(test_two_loops_two_threads, setup, teardown),
      cmocka_unit_test_setup_teardown(test_threads_hammer, setup, teardown),
      cmocka_unit_test_setup_teardown(test_other_process, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for the Redis lock (src/lock/redis.c) against a real redis-server that each
 * test starts on a unix socket in a scratch directory and stops by PID. Two lock objects
 * stand for two tusc instances (separate connections, separate channels): acquire and
 * release, a release request delivered to the holder, timeouts, cancellation, a holder
 * that crashed (a forked process killed with SIGKILL), renewal past several leases, a
 * lease taken over (tusc_lock_check), and Redis going away and coming back. Run under
 * ASan, which also checks that detach leaves nothing behind. */
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
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <uv.h>

#include "testutil.h"

#include "common/error.h"
#include "lock/lock.h"
#include "lock/redis.h"

/* How long any wait for a condition may take before the test fails. */
#define DEADLINE_MS 10000
#define LEASE_MS 400 /* short, so that expiry and renewal tests run quickly */

typedef struct fixture_s {
  char dir[64];
  char sock[128];
  char url[160];
  pid_t redis;
  tusc_lock_t *a, *b; /* two "instances" */
  uv_loop_t loop;
} fixture_t;

static uint64_t now_ms(void) {
  return uv_hrtime() / 1000000u;
}

static void nap_ms(long ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static bool sock_answers(const char *path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return false;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
  bool ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
  close(fd);
  return ok;
}

/* Starts redis-server on f->sock (and TCP port `port`, 0 = none, with `pass`, NULL =
 * none) and waits (with a deadline) until it accepts. */
static int redis_start_with(fixture_t *f, int port, const char *pass) {
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) {
      dup2(null, 1);
      dup2(null, 2);
    }
    char port_s[16];
    snprintf(port_s, sizeof(port_s), "%d", port);
    if (pass != NULL)
      execlp("redis-server", "redis-server", "--port", port_s, "--bind", "127.0.0.1",
             "--unixsocket", f->sock, "--save", "", "--appendonly", "no", "--dir", f->dir,
             "--requirepass", pass, (char *)NULL);
    else
      execlp("redis-server", "redis-server", "--port", port_s, "--bind", "127.0.0.1",
             "--unixsocket", f->sock, "--save", "", "--appendonly", "no", "--dir", f->dir,
             (char *)NULL);
    _exit(127);
  }
  f->redis = pid;
  uint64_t end = now_ms() + DEADLINE_MS;
  while (now_ms() < end) {
    if (sock_answers(f->sock))
      return 0;
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      f->redis = 0;
      return -1;
    }
    nap_ms(5);
  }
  return -1;
}

static int redis_start(fixture_t *f) {
  return redis_start_with(f, 0, NULL);
}

static void redis_stop(fixture_t *f, int sig) {
  if (f->redis <= 0)
    return;
  kill(f->redis, sig);
  int st;
  waitpid(f->redis, &st, 0);
  f->redis = 0;
}

static int setup(void **state) {
  if (access("/usr/bin/redis-server", X_OK) != 0 && system("command -v redis-server >/dev/null") != 0)
    return -1;
  fixture_t *f = calloc(1, sizeof(*f));
  if (f == NULL || test_tmpdir(f->dir, sizeof(f->dir), "redislock") != 0)
    return -1;
  snprintf(f->sock, sizeof(f->sock), "%s/r.sock", f->dir);
  snprintf(f->url, sizeof(f->url), "unix://%s", f->sock);
  char err[256];
  tusc_lock_redis_options_t o = {.url = f->url, .lease_ms = LEASE_MS};
  if (redis_start(f) != 0 || tusc_lock_redis_new(&o, &f->a, err, sizeof(err)) != 0 ||
      tusc_lock_redis_new(&o, &f->b, err, sizeof(err)) != 0 || uv_loop_init(&f->loop) != 0)
    return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  /* Every request ended: after detach the loop runs out, nothing left open. */
  tusc_lock_detach(f->a, &f->loop);
  tusc_lock_detach(f->b, &f->loop);
  (void)uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  tusc_lock_free(f->a);
  tusc_lock_free(f->b);
  redis_stop(f, SIGTERM);
  test_rm_rf(f->dir);
  free(f);
  return 0;
}

static tusc_lock_redis_stats_t stats(tusc_lock_t *l) {
  tusc_lock_redis_stats_t s;
  tusc_lock_redis_stats(l, &s);
  return s;
}

typedef struct probe_s {
  tusc_lock_req_t req;
  fixture_t *f;
  tusc_lock_t *lock;
  int calls, status;
  int asked, waited;
  bool release_when_asked;
} probe_t;

static void on_done(tusc_lock_req_t *req, int status) {
  probe_t *p = req->data;
  p->calls++;
  p->status = status;
}

static void on_asked(tusc_lock_req_t *req) {
  probe_t *p = req->data;
  p->asked++;
  if (p->release_when_asked)
    tusc_lock_release(req);
}

static void on_wait(tusc_lock_req_t *req) {
  probe_t *p = req->data;
  p->waited++;
}

static void probe_init(probe_t *p, fixture_t *f, tusc_lock_t *lock) {
  memset(p, 0, sizeof(*p));
  p->f = f;
  p->lock = lock;
  p->req.data = p;
  p->req.on_release_requested = on_asked;
  p->req.on_wait = on_wait;
}

static int acquire(probe_t *p, const char *id, int64_t timeout_ms) {
  p->calls = 0;
  return tusc_lock_acquire(p->lock, &p->f->loop, &p->req, id, timeout_ms, on_done);
}

static void on_guard(uv_timer_t *t) {
  *(bool *)t->data = true;
}

static void on_guard_stop(uv_timer_t *t) {
  *(bool *)t->data = true;
  uv_stop(t->loop);
}

/* Runs the loop until *counter >= want; fails the test after DEADLINE_MS. */
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

/* Runs the loop for ms (other things keep happening meanwhile). */
static void run_for(fixture_t *f, uint64_t ms) {
  uv_timer_t t;
  bool done = false;
  assert_int_equal(uv_timer_init(&f->loop, &t), 0);
  t.data = &done;
  assert_int_equal(uv_timer_start(&t, on_guard, ms, 0), 0);
  while (!done)
    (void)uv_run(&f->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  (void)uv_run(&f->loop, UV_RUN_NOWAIT);
}

/* Takes `id`, waiting if needed: a release sent on another lock object's connection
 * may reach Redis after this acquire. */
static void take(fixture_t *f, probe_t *p, tusc_lock_t *lock, const char *id) {
  probe_init(p, f, lock);
  assert_int_equal(acquire(p, id, DEADLINE_MS / 2), 0);
  run_until(f, &p->calls);
  assert_int_equal(p->status, 0);
}

/* --- tests -------------------------------------------------------------------------- */

static void test_url(void **state) {
  (void)state;
  char err[256];
  static const char *good[] = {"redis://localhost",        "redis://127.0.0.1:6380/2",
                               "redis://:secret@h:1",      "redis://user:p%40ss@[::1]:7000/0",
                               "unix:///run/redis.sock",   "unix:/run/redis.sock?db=3",
                               "unix://:pw@/run/r.sock",   "unix:///r.sock?db=1&password=x"};
  static const char *bad[] = {"",          "http://h",          "redis://",
                              "redis://h:0", "redis://h:99999", "redis://h/x",
                              "rediss://h", "unix://relative",   "unix:///r.sock?foo=1",
                              "redis://[::1", "redis://h:1x"};
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    if (tusc_lock_redis_check_url(good[i], err, sizeof(err)) != 0)
      fail_msg("%s refused: %s", good[i], err);
  }
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    err[0] = '\0';
    if (tusc_lock_redis_check_url(bad[i], err, sizeof(err)) != TUSC_EINVALID_ARGUMENT)
      fail_msg("%s accepted", bad[i]);
    assert_true(err[0] != '\0');
  }
  tusc_lock_t *l;
  tusc_lock_redis_options_t o = {.url = "redis://127.0.0.1", .lease_ms = 5};
  assert_int_equal(tusc_lock_redis_new(&o, &l, err, sizeof(err)), TUSC_EINVALID_ARGUMENT);
}

static void test_acquire_release(void **state) {
  fixture_t *f = *state;
  probe_t a, b;
  probe_init(&a, f, f->a);
  assert_int_equal(acquire(&a, "u1", 0), 0);
  assert_int_equal(a.calls, 0); /* never before acquire returned */
  probe_init(&b, f, f->a);
  assert_int_equal(tusc_lock_try_acquire(f->a, &f->loop, &b.req, "u1"), UV_EAGAIN);
  run_until(f, &a.calls);
  assert_int_equal(a.status, 0);
  assert_int_equal(tusc_lock_check(&a.req), 0);
  assert_int_equal(tusc_lock_cancel(&a.req), UV_EINVAL); /* held: nothing to cancel */

  /* The other instance, tried once: busy, and nobody is asked. */
  probe_init(&b, f, f->b);
  assert_int_equal(acquire(&b, "u1", 0), 0);
  run_until(f, &b.calls);
  assert_int_equal(b.status, TUSC_ELOCK_TIMEOUT);
  assert_int_equal(b.waited, 0);
  assert_int_equal(tusc_lock_check(&b.req), UV_EINVAL); /* ended */
  /* Another ID is free; the same instance is excluded too (a second req). */
  assert_int_equal(acquire(&b, "u2", 0), 0);
  run_until(f, &b.calls);
  assert_int_equal(b.status, 0);
  probe_t c;
  probe_init(&c, f, f->a);
  assert_int_equal(acquire(&c, "u2", 0), 0);
  run_until(f, &c.calls);
  assert_int_equal(c.status, TUSC_ELOCK_TIMEOUT);

  tusc_lock_release(&a.req);
  tusc_lock_release(&a.req); /* no-op */
  tusc_lock_release(&b.req);
  take(f, &c, f->b, "u1");
  tusc_lock_release(&c.req);
  assert_true(stats(f->a).acquired >= 1);
}

/* B waits: A is asked on its own loop, lets go, and B gets the lock without waiting for
 * a timer (the release wakes it). */
static void test_release_request(void **state) {
  fixture_t *f = *state;
  probe_t a, b;
  take(f, &a, f->a, "rr");
  a.release_when_asked = true;
  probe_init(&b, f, f->b);
  assert_int_equal(acquire(&b, "rr", 5000), 0);
  run_until(f, &b.calls);
  assert_int_equal(b.status, 0);
  assert_int_equal(b.waited, 1);
  assert_true(a.asked >= 1);
  assert_true(stats(f->a).asks_heard >= 1);
  assert_true(stats(f->b).asks_sent >= 1);
  assert_true(stats(f->b).wakeups >= 1);
  assert_int_equal(tusc_lock_check(&b.req), 0);
  tusc_lock_release(&b.req);
}

static void test_timeout_and_reask(void **state) {
  fixture_t *f = *state;
  probe_t a, b;
  take(f, &a, f->a, "to");
  probe_init(&b, f, f->b);
  assert_int_equal(acquire(&b, "to", 3 * TUSC_LOCK_REASK_MS / 2), 0);
  run_until(f, &b.calls);
  assert_int_equal(b.status, TUSC_ELOCK_TIMEOUT);
  assert_int_equal(b.waited, 1);
  run_until_count(f, &a.asked, 2); /* asked at the start and again after REASK_MS */
  assert_int_equal(tusc_lock_check(&a.req), 0);
  tusc_lock_release(&a.req);
}

static void test_cancel(void **state) {
  fixture_t *f = *state;
  probe_t a, b;
  take(f, &a, f->a, "cx");
  probe_init(&b, f, f->b);
  assert_int_equal(acquire(&b, "cx", 5000), 0);
  run_until(f, &b.waited);
  assert_int_equal(tusc_lock_cancel(&b.req), 0);
  assert_int_equal(b.calls, 0); /* later, not from cancel */
  run_until(f, &b.calls);
  assert_int_equal(b.status, UV_ECANCELED);
  assert_int_equal(tusc_lock_cancel(&b.req), UV_EINVAL);
  assert_int_equal(tusc_lock_check(&a.req), 0);
  tusc_lock_release(&a.req);

  /* Cancelled while its script is in flight on a free lock: whatever it got goes back,
   * so another instance gets it (woken, or at the latest after the lease). */
  assert_int_equal(acquire(&b, "cy", 5000), 0);
  assert_int_equal(tusc_lock_cancel(&b.req), 0);
  run_until(f, &b.calls);
  assert_int_equal(b.status, UV_ECANCELED);
  probe_init(&a, f, f->a);
  assert_int_equal(acquire(&a, "cy", 5000), 0);
  run_until(f, &a.calls);
  assert_int_equal(a.status, 0);
  tusc_lock_release(&a.req);
}

/* A holder in another process dies with the lock: B gets it once the lease ran out. */
static void test_crashed_holder(void **state) {
  fixture_t *f = *state;
  int pfd[2];
  assert_int_equal(pipe(pfd), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(pfd[0]);
    uv_loop_t loop;
    tusc_lock_t *l;
    char err[256];
    tusc_lock_redis_options_t o = {.url = f->url, .lease_ms = LEASE_MS};
    probe_t p;
    if (uv_loop_init(&loop) != 0 || tusc_lock_redis_new(&o, &l, err, sizeof(err)) != 0)
      _exit(1);
    memset(&p, 0, sizeof(p));
    p.req.data = &p;
    p.f = NULL;
    if (tusc_lock_acquire(l, &loop, &p.req, "crash", 0, on_done) != 0)
      _exit(1);
    while (p.calls == 0)
      uv_run(&loop, UV_RUN_ONCE);
    char c = p.status == 0 ? 'y' : 'n';
    if (write(pfd[1], &c, 1) != 1)
      _exit(1);
    for (;;)
      uv_run(&loop, UV_RUN_ONCE); /* keeps renewing until killed */
  }
  close(pfd[1]);
  char c = 0;
  assert_int_equal(read(pfd[0], &c, 1), 1);
  close(pfd[0]);
  assert_int_equal(c, 'y');

  probe_t b;
  probe_init(&b, f, f->b);
  assert_int_equal(acquire(&b, "crash", 0), 0); /* held (renewed) by the child */
  run_until(f, &b.calls);
  assert_int_equal(b.status, TUSC_ELOCK_TIMEOUT);
  run_for(f, LEASE_MS); /* the child renews: still held after a whole lease */
  assert_int_equal(acquire(&b, "crash", 0), 0);
  run_until(f, &b.calls);
  assert_int_equal(b.status, TUSC_ELOCK_TIMEOUT);

  kill(pid, SIGKILL);
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  uint64_t t0 = now_ms();
  assert_int_equal(acquire(&b, "crash", 5000), 0);
  run_until(f, &b.calls);
  assert_int_equal(b.status, 0);
  assert_int_equal(b.waited, 1);
  /* Nobody released it: the lease had to run out. */
  assert_true(now_ms() - t0 >= LEASE_MS / 4);
  tusc_lock_release(&b.req);
}

/* Renewal keeps a long hold alive past several leases. */
static void test_renewal(void **state) {
  fixture_t *f = *state;
  probe_t a, b;
  take(f, &a, f->a, "long");
  probe_init(&b, f, f->b);
  for (int i = 0; i < 4; i++) {
    run_for(f, LEASE_MS);
    assert_int_equal(tusc_lock_check(&a.req), 0);
    assert_int_equal(acquire(&b, "long", 0), 0);
    run_until(f, &b.calls);
    assert_int_equal(b.status, TUSC_ELOCK_TIMEOUT);
  }
  assert_int_equal(a.asked, 0);
  assert_int_equal(stats(f->a).lost, 0);
  tusc_lock_release(&a.req);
  assert_int_equal(acquire(&b, "long", 5000), 0);
  run_until(f, &b.calls);
  assert_int_equal(b.status, 0);
  tusc_lock_release(&b.req);
}

/* The key is taken over behind the holder's back: the next renewal finds out, the
 * holder is asked to let go and its check fails. */
static void test_lease_lost(void **state) {
  fixture_t *f = *state;
  probe_t a;
  take(f, &a, f->a, "lost");
  redisContext *c = redisConnectUnix(f->sock);
  assert_non_null(c);
  assert_int_equal(c->err, 0);
  redisReply *r = redisCommand(c, "SET %s %s", "tusc:lock:{lost}", "elsewhere token");
  assert_non_null(r);
  freeReplyObject(r);
  redisFree(c);
  run_until(f, &a.asked);
  assert_int_equal(tusc_lock_check(&a.req), TUSC_ELOCK_LOST);
  assert_true(stats(f->a).lost >= 1);
  tusc_lock_release(&a.req); /* compare-and-delete: the other holder's key stays */
  probe_t b;
  probe_init(&b, f, f->b);
  assert_int_equal(acquire(&b, "lost", 0), 0);
  run_until(f, &b.calls);
  assert_int_equal(b.status, TUSC_ELOCK_TIMEOUT);
}

static void on_retry(uv_timer_t *t) {
  probe_t *p = t->data;
  if (p->calls > 0 && p->status != 0)
    assert_int_equal(acquire(p, "back", 0), 0);
}

/* Redis dies: holders are asked to let go, acquires fail with TUSC_ELOCK_UNAVAILABLE.
 * It comes back: the same lock objects work again, with no call from us. */
static void test_redis_down_and_back(void **state) {
  fixture_t *f = *state;
  probe_t a, b;
  take(f, &a, f->a, "down");
  take(f, &b, f->b, "other"); /* b's connections are up too */
  tusc_lock_release(&b.req);
  redis_stop(f, SIGKILL);
  run_until(f, &a.asked); /* the holder hears that its lease is in doubt */
  tusc_lock_release(&a.req);

  probe_init(&b, f, f->b);
  assert_int_equal(acquire(&b, "down", 5000), 0);
  run_until(f, &b.calls);
  assert_int_equal(b.status, TUSC_ELOCK_UNAVAILABLE);
  assert_true(stats(f->b).unavailable >= 1);
  assert_int_equal(acquire(&b, "down", 0), 0); /* again, while it reconnects */
  run_until(f, &b.calls);
  assert_int_equal(b.status, TUSC_ELOCK_UNAVAILABLE);

  unlink(f->sock); /* SIGKILL left it */
  assert_int_equal(redis_start(f), 0);
  /* Try every 20ms until a try gets through; the reconnect backoff decides when. */
  uint64_t connects = stats(f->b).connects;
  uv_timer_t t;
  assert_int_equal(uv_timer_init(&f->loop, &t), 0);
  t.data = &b;
  assert_int_equal(acquire(&b, "back", 0), 0);
  assert_int_equal(uv_timer_start(&t, on_retry, 20, 20), 0);
  int got = 0;
  uv_timer_t guard;
  bool expired = false;
  assert_int_equal(uv_timer_init(&f->loop, &guard), 0);
  guard.data = &expired;
  assert_int_equal(uv_timer_start(&guard, on_guard, DEADLINE_MS, 0), 0);
  while (!expired && !(b.calls > 0 && b.status == 0))
    (void)uv_run(&f->loop, UV_RUN_ONCE);
  got = b.calls > 0 && b.status == 0;
  uv_close((uv_handle_t *)&t, NULL);
  uv_close((uv_handle_t *)&guard, NULL);
  (void)uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_true(got);
  assert_true(stats(f->b).connects > connects);
  tusc_lock_release(&b.req);
  /* And a waiter's release request reaches a holder again. */
  take(f, &a, f->a, "back2");
  a.release_when_asked = true;
  probe_init(&b, f, f->b);
  assert_int_equal(acquire(&b, "back2", 5000), 0);
  run_until(f, &b.calls);
  assert_int_equal(b.status, 0);
  tusc_lock_release(&b.req);
}

/* --- several loops in several threads --------------------------------------------------- */

#define MT_THREADS 3
#define MT_ROUNDS 40

typedef struct mt_s {
  fixture_t *f;
  tusc_lock_t *lock;
  uv_loop_t loop;
  uv_timer_t hold;
  tusc_lock_req_t req;
  int rounds, failures;
  bool done; /* the last round released */
  atomic_int *holders;
  int overlap;
} mt_t;

static void mt_got(tusc_lock_req_t *req, int status);

static void mt_next(mt_t *m) {
  if (m->rounds == MT_ROUNDS)
    return;
  if (tusc_lock_acquire(m->lock, &m->loop, &m->req, "mt", DEADLINE_MS, mt_got) != 0)
    m->failures++;
}

static void mt_let_go(uv_timer_t *t) {
  mt_t *m = t->data;
  atomic_fetch_sub(m->holders, 1);
  tusc_lock_release(&m->req);
  m->done = m->rounds == MT_ROUNDS;
  mt_next(m);
}

static void mt_got(tusc_lock_req_t *req, int status) {
  mt_t *m = req->data;
  if (status != 0) {
    m->failures++;
    return;
  }
  m->rounds++;
  if (atomic_fetch_add(m->holders, 1) != 0)
    m->overlap++;
  uv_timer_start(&m->hold, mt_let_go, 1, 0); /* hold it a moment */
}

static void mt_main(void *arg) {
  mt_t *m = arg;
  uv_timer_init(&m->loop, &m->hold);
  m->hold.data = m;
  m->req.data = m;
  mt_next(m);
  while (!m->done && m->failures == 0)
    uv_run(&m->loop, UV_RUN_ONCE);
  tusc_lock_detach(m->lock, &m->loop);
  uv_close((uv_handle_t *)&m->hold, NULL);
  uv_run(&m->loop, UV_RUN_DEFAULT);
}

/* Three loops in three threads (two on one lock object) take turns on one ID: each gets
 * it MT_ROUNDS times, never two at once. */
static void test_threads(void **state) {
  fixture_t *f = *state;
  mt_t m[MT_THREADS];
  uv_thread_t th[MT_THREADS];
  atomic_int holders;
  atomic_init(&holders, 0);
  memset(m, 0, sizeof(m));
  for (int i = 0; i < MT_THREADS; i++) {
    m[i].f = f;
    m[i].lock = i == 2 ? f->b : f->a;
    m[i].holders = &holders;
    assert_int_equal(uv_loop_init(&m[i].loop), 0);
  }
  for (int i = 0; i < MT_THREADS; i++)
    assert_int_equal(uv_thread_create(&th[i], mt_main, &m[i]), 0);
  for (int i = 0; i < MT_THREADS; i++) {
    uv_thread_join(&th[i]);
    assert_int_equal(uv_loop_close(&m[i].loop), 0);
    assert_int_equal(m[i].failures, 0);
    assert_int_equal(m[i].rounds, MT_ROUNDS);
    assert_int_equal(m[i].overlap, 0);
  }
}

/* A free loopback port (outside Ceph's 6800-7300, which the kernel's ephemeral range
 * does not reach anyway). */
static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(sa);
  int port = -1;
  if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
      getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
    port = ntohs(sa.sin_port);
  close(fd);
  return port;
}

/* TCP with a password and a database number: AUTH and SELECT go first; a wrong
 * password makes acquires fail as unavailable. */
static void test_tcp_auth_db(void **state) {
  fixture_t *f = *state;
  redis_stop(f, SIGTERM);
  unlink(f->sock);
  int port = free_port();
  assert_true(port > 0);
  assert_int_equal(redis_start_with(f, port, "s3cr%t"), 0);

  char url[128], err[256];
  snprintf(url, sizeof(url), "redis://:s3cr%%25t@localhost:%d/3", port);
  tusc_lock_redis_options_t o = {.url = url, .lease_ms = LEASE_MS, .prefix = "t:"};
  tusc_lock_t *good, *bad;
  assert_int_equal(tusc_lock_redis_new(&o, &good, err, sizeof(err)), 0);
  snprintf(url, sizeof(url), "redis://:wrong@127.0.0.1:%d", port);
  assert_int_equal(tusc_lock_redis_new(&o, &bad, err, sizeof(err)), 0);

  probe_t a;
  take(f, &a, good, "tcp");
  redisContext *c = redisConnectUnix(f->sock);
  assert_non_null(c);
  redisReply *r = redisCommand(c, "AUTH %s", "s3cr%t");
  freeReplyObject(r);
  r = redisCommand(c, "SELECT 3");
  freeReplyObject(r);
  r = redisCommand(c, "EXISTS %s", "t:lock:{tcp}");
  assert_non_null(r);
  assert_int_equal(r->type, REDIS_REPLY_INTEGER);
  assert_int_equal(r->integer, 1); /* in database 3, under the prefix */
  freeReplyObject(r);
  tusc_lock_release(&a.req);

  probe_t b;
  probe_init(&b, f, bad);
  assert_int_equal(acquire(&b, "tcp", 1000), 0);
  run_until(f, &b.calls);
  assert_int_equal(b.status, TUSC_ELOCK_UNAVAILABLE);

  /* The lock is free again (the release was compare-and-delete on database 3). */
  r = redisCommand(c, "EXISTS %s", "t:lock:{tcp}");
  assert_non_null(r);
  assert_int_equal(r->integer, 0);
  freeReplyObject(r);
  redisFree(c);

  tusc_lock_detach(good, &f->loop);
  tusc_lock_detach(bad, &f->loop);
  (void)uv_run(&f->loop, UV_RUN_NOWAIT);
  run_for(f, 1); /* the close callbacks */
  tusc_lock_free(good);
  tusc_lock_free(bad);
}

/* Redis hangs (SIGSTOP): an acquire gets no reply and ends as unavailable after
 * TUSC_LOCK_REDIS_REPLY_TIMEOUT_MS; once Redis runs again, the lock works again (the
 * dropped connection was made again). */
static void test_redis_hangs(void **state) {
  fixture_t *f = *state;
  probe_t a;
  take(f, &a, f->a, "warm"); /* connections up */
  tusc_lock_release(&a.req);
  assert_int_equal(kill(f->redis, SIGSTOP), 0);
  probe_init(&a, f, f->a);
  assert_int_equal(acquire(&a, "hang", 0), 0);
  run_until(f, &a.calls);
  assert_int_equal(a.status, TUSC_ELOCK_UNAVAILABLE);
  assert_int_equal(kill(f->redis, SIGCONT), 0);
  /* The script sent before may still run now: "hang" can stay taken for one lease.
   * Until the connection is made again, acquires fail at once: try every 20ms. */
  probe_init(&a, f, f->a);
  uint64_t end = now_ms() + DEADLINE_MS;
  do {
    assert_int_equal(acquire(&a, "hang", 2 * LEASE_MS), 0);
    run_until(f, &a.calls);
    if (a.status == TUSC_ELOCK_UNAVAILABLE)
      run_for(f, 20);
  } while (a.status == TUSC_ELOCK_UNAVAILABLE && now_ms() < end);
  assert_int_equal(a.status, 0);
  tusc_lock_release(&a.req);

  /* A loop that ends while Redis hangs: its release gets no reply, yet after detach
   * the loop runs out (the connection is dropped after the reply timeout). */
  uv_loop_t l2;
  assert_int_equal(uv_loop_init(&l2), 0);
  probe_init(&a, f, f->a);
  assert_int_equal(tusc_lock_acquire(f->a, &l2, &a.req, "z", 0, on_done), 0);
  while (a.calls == 0)
    (void)uv_run(&l2, UV_RUN_ONCE);
  assert_int_equal(a.status, 0);
  assert_int_equal(kill(f->redis, SIGSTOP), 0);
  tusc_lock_release(&a.req);
  tusc_lock_detach(f->a, &l2);
  uv_timer_t guard;
  bool expired = false;
  assert_int_equal(uv_timer_init(&l2, &guard), 0);
  guard.data = &expired;
  assert_int_equal(uv_timer_start(&guard, on_guard_stop, DEADLINE_MS, 0), 0);
  uv_unref((uv_handle_t *)&guard); /* does not keep the loop running */
  (void)uv_run(&l2, UV_RUN_DEFAULT);
  assert_int_equal(kill(f->redis, SIGCONT), 0);
  assert_false(expired);
  uv_close((uv_handle_t *)&guard, NULL);
  (void)uv_run(&l2, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&l2), 0);
}

/* Detach while a lock is held: the loop's context stays until that req ended, then
 * closes; a later acquire on the loop works and closes again once idle (teardown's
 * uv_loop_close checks that nothing is left). */
static void test_detach(void **state) {
  fixture_t *f = *state;
  probe_t a, b;
  take(f, &a, f->a, "d");
  tusc_lock_detach(f->a, &f->loop);
  run_for(f, LEASE_MS); /* renewed meanwhile */
  assert_int_equal(tusc_lock_check(&a.req), 0);
  probe_init(&b, f, f->b);
  assert_int_equal(acquire(&b, "d", 0), 0);
  run_until(f, &b.calls);
  assert_int_equal(b.status, TUSC_ELOCK_TIMEOUT);
  tusc_lock_release(&a.req); /* the last req: the context closes (after the reply) */
  take(f, &a, f->a, "d");
  tusc_lock_release(&a.req);
  tusc_lock_detach(f->a, &f->loop); /* again: no-op */
  take(f, &b, f->b, "d");
  tusc_lock_release(&b.req);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_url),
      cmocka_unit_test_setup_teardown(test_acquire_release, setup, teardown),
      cmocka_unit_test_setup_teardown(test_release_request, setup, teardown),
      cmocka_unit_test_setup_teardown(test_timeout_and_reask, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
      cmocka_unit_test_setup_teardown(test_crashed_holder, setup, teardown),
      cmocka_unit_test_setup_teardown(test_renewal, setup, teardown),
      cmocka_unit_test_setup_teardown(test_lease_lost, setup, teardown),
      cmocka_unit_test_setup_teardown(test_redis_down_and_back, setup, teardown),
      cmocka_unit_test_setup_teardown(test_detach, setup, teardown),
      cmocka_unit_test_setup_teardown(test_redis_hangs, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tcp_auth_db, setup, teardown),
      cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

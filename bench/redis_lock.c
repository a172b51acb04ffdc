/*
 * redis_lock — Redis lock acquire/release round trips per second (bench/README.md,
 * "Redis lock"). Links libtusc and drives src/lock/redis.c directly against a
 * redis-server it starts itself on a unix socket in a scratch directory (stopped by PID).
 *
 *   redis_lock [SECONDS] [URL]
 *
 * With URL (redis://... or unix://...) it uses that server instead. Three figures, one
 * "name value unit" line each, on one loop:
 *   - sequential: acquire, callback, release, next acquire (one round trip each; the
 *     release is pipelined in front of the next acquire);
 *   - 64 in flight: 64 requests on 64 IDs, each acquiring again as soon as it released;
 *   - contended hand-over: two lock objects (two "instances") passing one ID back and
 *     forth through release requests (ask, release, wake-up, retry).
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "common/error.h"
#include "lock/lock.h"
#include "lock/redis.h"

#define INFLIGHT 64

static uv_loop_t loop;
static uint64_t end_ms;
static uint64_t done;
static int failures;

static uint64_t now_ms(void) {
  return uv_hrtime() / 1000000u;
}

typedef struct slot_s {
  tusc_lock_req_t req;
  tusc_lock_t *lock;
  char id[32];
  int64_t timeout;
  struct slot_s *peer; /* contended: the other instance's slot */
  int holding;
} slot_t;

static void on_got(tusc_lock_req_t *req, int status);

static void start(slot_t *s) {
  if (now_ms() >= end_ms)
    return;
  if (tusc_lock_acquire(s->lock, &loop, &s->req, s->id, s->timeout, on_got) != 0)
    failures++;
}

static void on_got(tusc_lock_req_t *req, int status) {
  slot_t *s = req->data;
  if (status != 0) {
    failures++;
    return;
  }
  done++;
  if (s->peer != NULL) {
    /* Contended: hold it until the peer asks, then it is the peer's turn. */
    s->holding = 1;
    if (!s->peer->holding)
      start(s->peer);
    return;
  }
  tusc_lock_release(req);
  start(s);
}

static void on_asked(tusc_lock_req_t *req) {
  slot_t *s = req->data;
  if (!s->holding)
    return;
  s->holding = 0;
  tusc_lock_release(req);
}

static pid_t redis_start(const char *dir, const char *sock) {
  pid_t pid = fork();
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", sock, "--save", "",
           "--appendonly", "no", "--dir", dir, (char *)NULL);
    _exit(127);
  }
  for (int i = 0; i < 1000; i++) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    int ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    if (ok)
      return pid;
    struct timespec ts = {0, 10 * 1000000L};
    nanosleep(&ts, NULL);
  }
  kill(pid, SIGTERM);
  return -1;
}

static double run(slot_t *slots, size_t n, double seconds) {
  done = 0;
  uint64_t t0 = now_ms();
  end_ms = t0 + (uint64_t)(seconds * 1000);
  for (size_t i = 0; i < n; i++)
    if (slots[i].peer == NULL || i == 0)
      start(&slots[i]);
  uv_run(&loop, UV_RUN_DEFAULT); /* until nothing is pending (the locks' handles stay) */
  double took = (double)(now_ms() - t0) / 1000.0;
  return (double)done / took;
}

static void on_stop(uv_timer_t *t) {
  (void)t;
  uv_stop(&loop);
}

/* Runs `slots` for `seconds`, then stops the loop (the lock keeps connections open). */
static double measure(slot_t *slots, size_t n, double seconds) {
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  uv_timer_start(&t, on_stop, (uint64_t)(seconds * 1000) + 200, 0);
  double rate = run(slots, n, seconds);
  uv_close((uv_handle_t *)&t, NULL);
  for (size_t i = 0; i < n; i++)
    tusc_lock_release(&slots[i].req);
  uv_run(&loop, UV_RUN_NOWAIT);
  return rate;
}

int main(int argc, char **argv) {
  double seconds = argc > 1 ? atof(argv[1]) : 3.0;
  const char *url = argc > 2 ? argv[2] : NULL;
  char dir[] = "/tmp/tusc-redis-bench-XXXXXX", sock[96], urlbuf[128];
  pid_t redis = -1;
  if (url == NULL) {
    if (mkdtemp(dir) == NULL)
      return 1;
    snprintf(sock, sizeof(sock), "%s/r.sock", dir);
    if ((redis = redis_start(dir, sock)) < 0) {
      fprintf(stderr, "redis_lock: cannot start redis-server\n");
      return 1;
    }
    snprintf(urlbuf, sizeof(urlbuf), "unix://%s", sock);
    url = urlbuf;
  }
  uv_loop_init(&loop);
  tusc_lock_t *a, *b;
  char err[256];
  tusc_lock_redis_options_t o = {.url = url};
  if (tusc_lock_redis_new(&o, &a, err, sizeof(err)) != 0 ||
      tusc_lock_redis_new(&o, &b, err, sizeof(err)) != 0) {
    fprintf(stderr, "redis_lock: %s\n", err);
    return 1;
  }

  static slot_t slots[INFLIGHT];
  memset(slots, 0, sizeof(slots));
  for (int i = 0; i < INFLIGHT; i++) {
    slots[i].req.data = &slots[i];
    slots[i].lock = a;
    snprintf(slots[i].id, sizeof(slots[i].id), "bench-%d", i);
  }
  printf("redis_lock_sequential %.0f acquire+release/s\n", measure(slots, 1, seconds));
  printf("redis_lock_64_in_flight %.0f acquire+release/s\n", measure(slots, INFLIGHT, seconds));

  slot_t pair[2];
  memset(pair, 0, sizeof(pair));
  for (int i = 0; i < 2; i++) {
    pair[i].req.data = &pair[i];
    pair[i].req.on_release_requested = on_asked;
    pair[i].lock = i == 0 ? a : b;
    pair[i].timeout = 5000;
    pair[i].peer = &pair[1 - i];
    snprintf(pair[i].id, sizeof(pair[i].id), "bench-pair");
  }
  printf("redis_lock_handover %.0f hand-overs/s between two instances\n",
         measure(pair, 2, seconds));
  if (failures > 0)
    printf("redis_lock_failures %d\n", failures);

  tusc_lock_detach(a, &loop);
  tusc_lock_detach(b, &loop);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  tusc_lock_free(a);
  tusc_lock_free(b);
  if (redis > 0) {
    kill(redis, SIGTERM);
    waitpid(redis, NULL, 0);
    unlink(sock);
    rmdir(dir);
  }
  return failures > 0;
}

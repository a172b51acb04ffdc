/*
 * fuzz_http — bytes in, through the server's real request path.
 *
 * Once per process: a file store in a temp dir, the local lock, the tus handler and
 * an http server on one loop, listening on a unix socket — the same objects and
 * calls src/server.c wires up, minus threads and signals. Per input: the upload dir
 * is reset to three fixture uploads (partial, deferred, complete, so PATCH / HEAD /
 * GET / DELETE on a known URL reach the store), then a client socket connects, writes
 * the input (in small steps for about a quarter of the inputs, to exercise partial
 * reads) and reads whatever the server answers. It does not half-close after the input:
 * that would turn every request still in the handler's hands (a store or lock on the
 * thread pool) into an aborted one, so those paths would never finish normally. The
 * client hangs up only once the server has read every byte and waits for more
 * (tusc_http_server_waiting: nothing of its own in flight), once the server closed, or
 * after BOUND_MS regardless. Then the run waits until the server has no connection
 * left; an input that keeps it from getting there is a hang, which libFuzzer reports
 * through -timeout.
 *
 * HTTP/2 by prior knowledge is on (-enable-h2c): an input that starts with the h2
 * preface takes h2.c's path (seeds corpus/http/h2-*), every other one h1.c's.
 *
 * Fixture URLs (also in http.dict): /files/00000000000000000000000000000001 (10 bytes
 * declared, 5 stored), ...02 (deferred length, 0 stored), ...03 (3 of 3, complete).
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/sockios.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <uv.h>

#include "common/log.h"
#include "config/config.h"
#include "http/http.h"
#include "lock/local.h"
#include "store/store.h"
#include "tus/handler.h"

static uv_loop_t loop;
static char base_dir[256];
static char upload_dir[300];
static char sock_path[300];
static tusc_config_t cfg;
static tusc_store_t *store;
static tusc_lock_t *lock;
static tusc_tus_t *tus;
static tusc_tus_worker_t *worker;
static tusc_http_server_t *http;

/* After its last byte, the client waits at most this long for the server to become
 * quiet before hanging up anyway. */
#define BOUND_MS 1000

struct client {
  uv_poll_t poll;
  uv_timer_t bound; /* only wakes the loop up to check BOUND_MS */
  int fd;
  const uint8_t *data;
  size_t left;
  size_t step;
  uint64_t sent_ms;   /* loop time the last byte went out */
  bool server_closed; /* EOF or reset from the server */
  int handles_open;
};

static int lock_path(void *arg, const char *id, char *out, size_t cap) {
  return tusc_file_store_lock_path(arg, id, out, cap);
}

static void die(const char *what, int rc) {
  fprintf(stderr, "fuzz_http setup: %s: %d (%s)\n", what, rc, strerror(rc < 0 ? -rc : rc));
  abort();
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  if (ftw->level > 0)
    remove(path);
  return 0;
}

static void on_fixture_step(tusc_store_req_t *req, int status) {
  int *done = req->data;
  *done = status < 0 ? status : 1;
}

static void on_fixture_drain(void *arg) {
  (void)arg;
}

/* Runs the loop until the store request started with `rc` calls back. */
static void fixture_wait(const char *what, int rc, int *done) {
  if (rc != 0)
    die(what, rc);
  while (*done == 0)
    uv_run(&loop, UV_RUN_ONCE);
  if (*done < 0)
    die(what, *done);
  *done = 0;
}

static void make_fixture(const char *id, int64_t size, const char *data, size_t len) {
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  snprintf(info.id, sizeof(info.id), "%s", id);
  info.size = size;
  info.size_is_deferred = size < 0;
  tusc_metadata_set(&info.metadata, "filename", "a.txt", 5);
  int done = 0;
  tusc_store_req_t req = {.data = &done};
  fixture_wait("create fixture", tusc_store_create(store, &loop, &req, &info, on_fixture_step),
               &done);
  tusc_upload_info_dispose(&info);
  if (len == 0)
    return;
  fixture_wait("open fixture", tusc_store_open(store, &loop, &req, id, on_fixture_step), &done);
  tusc_upload_t *up = req.upload;
  if (tusc_store_chunk_begin(up, 0) != 0)
    die("begin fixture", -EINVAL);
  if (tusc_store_append(up, data, len, on_fixture_drain, NULL) != 0)
    die("write fixture", -EIO);
  fixture_wait("end fixture", tusc_store_chunk_end(up, &req, TUSC_STORE_KEEP, on_fixture_step),
               &done);
  tusc_store_close(up);
}

static void reset_uploads(void) {
  nftw(upload_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  make_fixture("00000000000000000000000000000001", 10, "hello", 5);
  make_fixture("00000000000000000000000000000002", -1, "", 0);
  make_fixture("00000000000000000000000000000003", 3, "abc", 3);
}

static void remove_base_dir(void) {
  nftw(base_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  rmdir(base_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  tusc_log_setup(TUSC_LOG_ERROR, TUSC_LOG_TEXT);
  signal(SIGPIPE, SIG_IGN);
  snprintf(base_dir, sizeof(base_dir), "/tmp/tusc-fuzz-http-XXXXXX");
  if (mkdtemp(base_dir) == NULL)
    die("mkdtemp", -errno);
  atexit(remove_base_dir); /* libFuzzer leaves through exit() at the end of a run */
  snprintf(upload_dir, sizeof(upload_dir), "%s/up", base_dir);
  snprintf(sock_path, sizeof(sock_path), "%s/sock", base_dir);

  /* Flags as an operator would give them: small limits keep every input cheap. */
  char *args[] = {"tusc",  "-upload-dir",      upload_dir, "-max-size",     "65536", "-fsync",
                  "never", "-network-timeout", "2s",       "-behind-proxy", NULL};
  int rc = tusc_config_parse(&cfg, 10, args, stdout, stderr);
  if (rc != 0)
    die("config", rc);
  tusc_file_store_options_t so = {
      .dir = upload_dir, .dir_perms = 0700, .file_perms = 0600, .fsync = false};
  if ((rc = tusc_file_store_new(&so, &store)) != 0)
    die("store", rc);
  if ((rc = tusc_lock_local_new(lock_path, store, 0600, &lock)) != 0)
    die("lock", rc);
  if ((rc = tusc_tus_new(&cfg, store, lock, &tus)) != 0)
    die("tus", rc);
  if ((rc = uv_loop_init(&loop)) != 0)
    die("loop", rc);
  if ((rc = tusc_tus_worker_new(tus, &loop, &worker)) != 0)
    die("worker", rc);

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 64) != 0)
    die("listen", -errno);
  tusc_http_limits_t limits = {
      .max_header_size = 8192, .max_header_count = 64, .network_timeout_ms = 2000, .h2c = true};
  if ((rc = tusc_http_server_new(&loop, fd, &limits, tusc_tus_http_handler(), worker, &http)) != 0)
    die("http server", rc);
  return 0;
}

static void on_client(uv_poll_t *poll, int status, int events);

static void on_bound(uv_timer_t *t) {
  (void)t;
}

static void input_sent(struct client *c) {
  c->left = 0;
  c->sent_ms = uv_now(&loop);
  uv_timer_start(&c->bound, on_bound, BOUND_MS, 0);
  uv_poll_start(&c->poll, UV_READABLE | UV_DISCONNECT, on_client);
}

static void on_client(uv_poll_t *poll, int status, int events) {
  struct client *c = poll->data;
  if (status < 0) {
    c->server_closed = true;
    return;
  }
  if ((events & UV_WRITABLE) && c->left > 0) {
    size_t n = c->left < c->step ? c->left : c->step;
    ssize_t w = send(c->fd, c->data, n, MSG_NOSIGNAL);
    if (w > 0) {
      c->data += w;
      c->left -= (size_t)w;
    } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
      c->left = 0; /* the server closed on us: stop writing, still read its answer */
    }
    if (c->left == 0)
      input_sent(c);
  }
  if (events & (UV_READABLE | UV_DISCONNECT)) {
    char buf[16384];
    for (;;) {
      ssize_t r = recv(c->fd, buf, sizeof(buf), 0);
      if (r > 0)
        continue;
      if (r < 0 && (errno == EAGAIN || errno == EINTR))
        break;
      c->server_closed = true; /* 0 or ECONNRESET */
      break;
    }
  }
}

/* The server has read all we sent and has nothing of its own going on. */
static bool server_waits_for_us(const struct client *c) {
  int unread = 0;
  if (ioctl(c->fd, SIOCOUTQ, &unread) != 0 || unread > 0)
    return false;
  return tusc_http_server_waiting(http);
}

static void on_client_closed(uv_handle_t *h) {
  struct client *c = h->data;
  c->handles_open--;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  reset_uploads();
  struct client c = {.data = data, .left = size, .step = SIZE_MAX};
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < size; i++)
    h = (h ^ data[i]) * 16777619u;
  if ((h & 3) == 0)
    c.step = 1 + (h >> 2) % 61;

  c.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
  if (c.fd < 0 || connect(c.fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
    die("connect", -errno);
  uv_poll_init(&loop, &c.poll, c.fd);
  uv_timer_init(&loop, &c.bound);
  c.poll.data = c.bound.data = &c;
  c.handles_open = 2;
  uv_poll_start(&c.poll, UV_READABLE | UV_WRITABLE | UV_DISCONNECT, on_client);
  if (size == 0)
    input_sent(&c);
  while (!c.server_closed) {
    if (c.left == 0 && (server_waits_for_us(&c) || uv_now(&loop) - c.sent_ms >= BOUND_MS))
      break;
    uv_run(&loop, UV_RUN_ONCE);
  }
  /* Hang up (a reset when the server's answer was not read whole), then wait until
   * every request of this input has reached its end inside the server. */
  uv_close((uv_handle_t *)&c.poll, on_client_closed);
  uv_close((uv_handle_t *)&c.bound, on_client_closed);
  while (c.handles_open > 0)
    uv_run(&loop, UV_RUN_ONCE);
  close(c.fd);
  while (tusc_http_server_connections(http) > 0)
    uv_run(&loop, UV_RUN_ONCE);
  return 0;
}

/* Unit tests for the tus handler (src/tus/handler.c and the files of
 * handler_internal.h): the real http layer and local lock on a loopback socket, with the in-memory
 * store (store/mem.c) told to fail or to be slow — the paths (ENOSPC, EIO, final uploads, locks
 * held elsewhere, a store that answers "full") that a test against the real file store cannot
 * provoke. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"
#include <uv.h>

#include "common/error.h"
#include "common/log.h"
#include "config/config.h"
#include "lock/local.h"
#include "metrics/metrics.h"
#include "net/listener.h"
#include "store/mem.h"
#include "store/store.h"
#include "tus/handler.h"

/* --- the in-memory store (store/mem.c) with fault injection -------------------------- */

static tusc_store_t *store;
static char lock_dir[64];

/* Lock files of the local lock (lock/local.h), one flattened name per ID. */
static int test_lock_file(void *arg, const char *id, char *out, size_t cap) {
  (void)arg;
  char flat[TUSC_ID_MAX + 1];
  snprintf(flat, sizeof(flat), "%s", id);
  for (char *p = flat; *p != '\0'; p++)
    if (*p == '/')
      *p = '_';
  int n = snprintf(out, cap, "%s/%s.lock", lock_dir, flat);
  return n < 0 || (size_t)n >= cap ? UV_ENAMETOOLONG : 0;
}

static void faults_reset(void) {
  tusc_mem_store_set_faults(store, NULL);
  tusc_mem_store_set_full(store, 0, 0);
}

static void set_faults(int64_t write_budget, int sync_err, int create_err, int save_err) {
  tusc_mem_store_faults_t f = {.write_budget = write_budget,
                               .sync_err = sync_err,
                               .create_err = create_err,
                               .save_err = save_err};
  tusc_mem_store_set_faults(store, &f);
}

/* Puts an upload straight into the store (what a hook or concatenation would make). */
static void mem_put(const char *id, int64_t size, bool is_final, bool is_partial,
                    int64_t expires_at, const char *data) {
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  snprintf(info.id, sizeof(info.id), "%s", id);
  info.size = size;
  info.is_final = is_final;
  info.is_partial = is_partial;
  info.expires_at = expires_at;
  assert_int_equal(tusc_mem_store_put(store, &info, data, strlen(data)), 0);
  tusc_upload_info_dispose(&info);
}

static int64_t mem_len(const char *id) {
  return tusc_mem_store_length(store, id);
}

/* --- the server ---------------------------------------------------------------------- */

static tusc_config_t cfg;
static tusc_lock_t *lock;
static tusc_tus_t *tus;
static tusc_tus_worker_t *worker;
static uv_loop_t loop;
static uv_async_t stop_async;
static uv_thread_t server_thread;
static tusc_http_server_t *server;
static int port;

static void on_stopped(tusc_http_server_t *s, void *arg) {
  (void)arg;
  tusc_http_server_free(s);
  server = NULL;
  tusc_tus_worker_close(worker);
  uv_close((uv_handle_t *)&stop_async, NULL);
}

static void on_stop(uv_async_t *a) {
  (void)a;
  tusc_http_server_stop(server, true, on_stopped, NULL);
}

static void server_main(void *arg) {
  (void)arg;
  uv_run(&loop, UV_RUN_DEFAULT);
}

static int group_setup(void **state) {
  (void)state;
  tusc_log_setup(getenv("TUSC_TEST_VERBOSE") ? TUSC_LOG_DEBUG : TUSC_LOG_ERROR, TUSC_LOG_TEXT);
  if (test_tmpdir(lock_dir, sizeof(lock_dir), "test-handler") != 0)
    return -1;
  if (tusc_mem_store_new(NULL, &store) != 0)
    return -1;
  faults_reset();

  memset(&cfg, 0, sizeof(cfg));
  cfg.base_path = "/files/";
  cfg.show_greeting = true;
  cfg.max_metadata_size = 1024;
  cfg.cors_max_age = 86400;
  cfg.file_perms = 0600;
  /* test_lock_timeout_and_release lets go after the PATCH asked: that must fit in this
   * on a loaded machine too. */
  cfg.acquire_lock_timeout_ms = 1000;
  cfg.fsync = TUSC_FSYNC_ALWAYS;
  cfg.metrics_path = "/metrics";

  if (tusc_lock_local_new(test_lock_file, NULL, cfg.file_perms, &lock) != 0 ||
      tusc_tus_new(&cfg, store, lock, &tus) != 0)
    return -1;
  tusc_listeners_t l;
  if (tusc_listeners_open("127.0.0.1", 0, NULL, 1, &l) != 0)
    return -1;
  port = l.port;
  int fd = l.fds[0];
  l.fds[0] = -1;
  /* Inherited by accepted sockets: no receive-buffer autotuning to absorb a body that
   * the server does not read (test_full_store_pauses_the_client). */
  int rcvbuf = 256 * 1024;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) != 0)
    return -1;
  tusc_listeners_close(&l);
  if (uv_loop_init(&loop) != 0 || tusc_tus_worker_new(tus, &loop, &worker) != 0)
    return -1;
  uv_async_init(&loop, &stop_async, on_stop);
  tusc_http_limits_t limits = {
      .max_header_size = 16384, .max_header_count = 50, .network_timeout_ms = 5000};
  if (tusc_http_server_new(&loop, fd, &limits, tusc_tus_http_handler(), worker, &server) != 0)
    return -1;
  return uv_thread_create(&server_thread, server_main, NULL);
}

static int group_teardown(void **state) {
  (void)state;
  uv_async_send(&stop_async);
  uv_thread_join(&server_thread);
  assert_int_equal(uv_loop_close(&loop), 0);
  tusc_tus_free(tus);
  tusc_lock_free(lock);
  tusc_store_free(store);
  if (test_rm_rf(lock_dir) != 0)
    return -1;
  return 0;
}

/* --- the client ------------------------------------------------------------------------ */

struct response {
  int status;
  char head[4096];
  char body[4096];
};

static int client(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
  struct timeval tv = {.tv_sec = 5};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

static void send_str(int fd, const char *s) {
  size_t len = strlen(s);
  while (len > 0) {
    ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    assert_true(n > 0);
    s += n;
    len -= (size_t)n;
  }
}

static void read_response(int fd, struct response *r, bool head_only) {
  memset(r, 0, sizeof(*r));
  size_t len = 0;
  while (len < sizeof(r->head) - 1) {
    ssize_t n = recv(fd, r->head + len, 1, 0);
    assert_int_equal(n, 1);
    len++;
    if (len >= 4 && memcmp(r->head + len - 4, "\r\n\r\n", 4) == 0)
      break;
  }
  assert_int_equal(sscanf(r->head, "HTTP/1.1 %d", &r->status), 1);
  const char *cl = strcasestr(r->head, "\r\nContent-Length: ");
  long body_len = cl != NULL ? strtol(cl + 18, NULL, 10) : 0;
  if (head_only)
    body_len = 0;
  assert_true(body_len < (long)sizeof(r->body));
  size_t got = 0;
  while (got < (size_t)body_len) {
    ssize_t n = recv(fd, r->body + got, (size_t)body_len - got, 0);
    assert_true(n > 0);
    got += (size_t)n;
  }
}

/* One request on a fresh connection. */
static void request(const char *raw, struct response *r) {
  int fd = client();
  send_str(fd, raw);
  read_response(fd, r, strncmp(raw, "HEAD ", 5) == 0);
  close(fd);
}

/* The value of a response header (first match, case-insensitive), or "" */
static const char *header(const struct response *r, const char *name, char *out, size_t cap) {
  char pat[128];
  snprintf(pat, sizeof(pat), "\r\n%s: ", name);
  const char *p = strcasestr(r->head, pat);
  out[0] = '\0';
  if (p != NULL) {
    p += strlen(pat);
    const char *end = strstr(p, "\r\n");
    snprintf(out, cap, "%.*s", (int)(end - p), p);
  }
  return out;
}

static void create(const char *extra_headers, char id[64]) {
  char raw[1024];
  struct response r;
  snprintf(raw, sizeof(raw), "POST /files/ HTTP/1.1\r\nHost: h\r\nTus-Resumable: 1.0.0\r\n%s\r\n",
           extra_headers);
  request(raw, &r);
  assert_int_equal(r.status, 201);
  char loc[256];
  header(&r, "Location", loc, sizeof(loc));
  const char *slash = strrchr(loc, '/');
  assert_non_null(slash);
  snprintf(id, 64, "%s", slash + 1);
}

static void patch(const char *id, int64_t offset, const char *body, const char *extra,
                  struct response *r) {
  char raw[4096];
  snprintf(raw, sizeof(raw),
           "PATCH /files/%s HTTP/1.1\r\nHost: h\r\nTus-Resumable: 1.0.0\r\n"
           "Content-Type: application/offset+octet-stream\r\nUpload-Offset: %lld\r\n%s"
           "Content-Length: %zu\r\n\r\n%s",
           id, (long long)offset, extra, strlen(body), body);
  request(raw, r);
}

/* --- tests ----------------------------------------------------------------------------- */

static void test_enospc_keeps_written_bytes(void **state) {
  (void)state;
  char id[64], v[64];
  struct response r;
  create("Upload-Length: 20\r\n", id);
  set_faults(4, 0, 0, 0);
  patch(id, 0, "0123456789", "", &r);
  assert_int_equal(r.status, 507);
  assert_non_null(strstr(r.body, "ERR_INSUFFICIENT_STORAGE"));
  assert_int_equal(mem_len(id), 4);
  faults_reset();

  /* Once space is back the client resumes from what HEAD reports. */
  char raw[256];
  snprintf(raw, sizeof(raw), "HEAD /files/%s HTTP/1.1\r\nHost: h\r\nTus-Resumable: 1.0.0\r\n\r\n",
           id);
  request(raw, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(header(&r, "Upload-Offset", v, sizeof(v)), "4");
  patch(id, 4, "456789abcdefghij", "", &r);
  assert_int_equal(r.status, 204);
  assert_string_equal(header(&r, "Upload-Offset", v, sizeof(v)), "20");
}

static void test_sync_failure_is_500(void **state) {
  (void)state;
  char id[64];
  struct response r;
  create("Upload-Length: 5\r\n", id);
  set_faults(-1, UV_EIO, 0, 0);
  patch(id, 0, "abc", "", &r);
  faults_reset();
  assert_int_equal(r.status, 500);
  assert_non_null(strstr(r.body, "ERR_INTERNAL_SERVER_ERROR"));
}

static void test_create_failure(void **state) {
  (void)state;
  struct response r;
  set_faults(-1, 0, UV_ENOSPC, 0);
  request("POST /files/ HTTP/1.1\r\nHost: h\r\nTus-Resumable: 1.0.0\r\nUpload-Length: 5\r\n\r\n",
          &r);
  faults_reset();
  assert_int_equal(r.status, 507);
  assert_null(strcasestr(r.head, "\r\nLocation:"));
}

static void test_save_info_failure(void **state) {
  (void)state;
  char id[64], v[64];
  struct response r;
  create("Upload-Defer-Length: 1\r\n", id);
  set_faults(-1, 0, 0, UV_EIO);
  patch(id, 0, "abc", "Upload-Length: 3\r\n", &r);
  faults_reset();
  assert_int_equal(r.status, 500);
  assert_int_equal(mem_len(id), 0); /* nothing written when the length could not be saved */

  patch(id, 0, "abc", "Upload-Length: 3\r\n", &r);
  assert_int_equal(r.status, 204);
  assert_string_equal(header(&r, "Upload-Offset", v, sizeof(v)), "3");
}

static void test_modify_final(void **state) {
  (void)state;
  struct response r;
  mem_put("finalupload", 3, true, false, 0, "abc");
  patch("finalupload", 3, "", "", &r);
  assert_int_equal(r.status, 403);
  assert_non_null(strstr(r.body, "ERR_MODIFY_FINAL"));
}

static void test_head_fields(void **state) {
  (void)state;
  struct response r;
  char v[128];
  mem_put("proj/partial1", 10, false, true, 1795651200, "abcd");
  request("HEAD /files/proj%2Fpartial1 HTTP/1.1\r\nHost: h\r\n\r\n", &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(header(&r, "Upload-Offset", v, sizeof(v)), "4");
  assert_string_equal(header(&r, "Upload-Length", v, sizeof(v)), "10");
  assert_string_equal(header(&r, "Upload-Concat", v, sizeof(v)), "partial");
  /* A stored ExpiresAt is not announced unless -expire-after is on (tus/expire.h). */
  assert_string_equal(header(&r, "Upload-Expires", v, sizeof(v)), "");
  assert_string_equal(header(&r, "Cache-Control", v, sizeof(v)), "no-store");
  assert_string_equal(header(&r, "Tus-Resumable", v, sizeof(v)), "1.0.0");

  request("HEAD /files/proj/missing HTTP/1.1\r\nHost: h\r\n\r\n", &r);
  assert_int_equal(r.status, 404);
  assert_null(strcasestr(r.head, "Upload-Offset"));
}

static void test_download_partial_upload(void **state) {
  (void)state;
  struct response r;
  char v[128];
  mem_put("dl1", 100, false, false, 0, "<html>hi</html>");
  request("GET /files/dl1 HTTP/1.1\r\nHost: h\r\nRange: bytes=6-7\r\n\r\n", &r);
  assert_int_equal(r.status, 206);
  assert_string_equal(r.body, "hi");
  assert_string_equal(header(&r, "Content-Range", v, sizeof(v)), "bytes 6-7/15");
  assert_string_equal(header(&r, "Content-Type", v, sizeof(v)), "application/octet-stream");
  assert_string_equal(header(&r, "Content-Disposition", v, sizeof(v)), "attachment");

  request("GET /files/dl1 HTTP/1.1\r\nHost: h\r\nRange: bytes=15-\r\n\r\n", &r);
  assert_int_equal(r.status, 416);
  assert_string_equal(header(&r, "Content-Range", v, sizeof(v)), "bytes */15");
}

static atomic_int release_asked;
static void on_test_holder_release(tusc_lock_req_t *req) {
  (void)req;
  atomic_fetch_add(&release_asked, 1);
}

static int holder_status;
static void on_test_holder_got(tusc_lock_req_t *req, int status) {
  (void)req;
  holder_status = status;
}

static void on_guard(uv_timer_t *t) {
  *(bool *)t->data = true;
}

static void test_lock_timeout_and_release(void **state) {
  (void)state;
  char id[64], v[64];
  struct response r;
  create("Upload-Length: 6\r\n", id);

  /* Someone on another loop (this thread's) that never lets go: the PATCH asks, waits
   * -acquire-lock-timeout, gives up. */
  uv_loop_t tloop;
  assert_int_equal(uv_loop_init(&tloop), 0);
  tusc_lock_req_t holder = {.on_release_requested = on_test_holder_release};
  holder_status = 1;
  assert_int_equal(tusc_lock_acquire(lock, &tloop, &holder, id, 0, on_test_holder_got), 0);
  while (holder_status == 1)
    (void)uv_run(&tloop, UV_RUN_ONCE);
  assert_int_equal(holder_status, 0);
  atomic_store(&release_asked, 0);
  patch(id, 0, "abc", "", &r);
  assert_int_equal(r.status, 500);
  assert_non_null(strstr(r.body, "ERR_LOCK_TIMEOUT"));
  (void)uv_run(&tloop, UV_RUN_NOWAIT); /* the ask was sent to this loop meanwhile */
  assert_true(atomic_load(&release_asked) >= 1);
  assert_int_equal(mem_len(id), 0);

  /* A holder that lets go when asked: the waiting PATCH proceeds. */
  int fd = client();
  char raw[512];
  snprintf(raw, sizeof(raw),
           "PATCH /files/%s HTTP/1.1\r\nHost: h\r\nTus-Resumable: 1.0.0\r\n"
           "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
           "Content-Length: 3\r\n\r\nabc",
           id);
  send_str(fd, raw);
  /* However loaded the machine, the server thread asks in the end: a deadline, not a
   * guess at how long it takes. */
  uv_timer_t guard;
  bool expired = false;
  assert_int_equal(uv_timer_init(&tloop, &guard), 0);
  guard.data = &expired;
  assert_int_equal(uv_timer_start(&guard, on_guard, 10000, 0), 0);
  while (atomic_load(&release_asked) < 2 && !expired)
    (void)uv_run(&tloop, UV_RUN_ONCE);
  assert_true(atomic_load(&release_asked) >= 2);
  tusc_lock_release(&holder);
  read_response(fd, &r, false);
  close(fd);
  assert_int_equal(r.status, 204);
  assert_string_equal(header(&r, "Upload-Offset", v, sizeof(v)), "3");
  uv_close((uv_handle_t *)&guard, NULL);
  (void)uv_run(&tloop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&tloop), 0);
}

static void test_no_lock_file_for_unknown_ids(void **state) {
  (void)state;
  struct response r;
  patch("0123456789abcdef0123456789abcdef", 0, "x", "", &r);
  assert_int_equal(r.status, 404);
  request("DELETE /files/0123456789abcdef0123456789abcdef HTTP/1.1\r\nHost: h\r\n"
          "Tus-Resumable: 1.0.0\r\n\r\n",
          &r);
  assert_int_equal(r.status, 404);
  char path[256];
  assert_int_equal(test_lock_file(NULL, "0123456789abcdef0123456789abcdef", path, sizeof(path)), 0);
  assert_int_equal(access(path, F_OK), -1);
}

/* A counter from the metrics exposition ("name value" line). */
static uint64_t metric(const char *name) {
  char *text = NULL;
  size_t len = 0;
  assert_int_equal(tusc_metrics_render(&text, &len), 0);
  char pat[128];
  snprintf(pat, sizeof(pat), "\n%s ", name);
  const char *p = strstr(text, pat);
  assert_non_null(p);
  uint64_t v = strtoull(p + strlen(pat), NULL, 10);
  free(text);
  return v;
}

static char pattern_byte(size_t i) {
  return (char)((i * 131 + i / 251) % 256);
}

/* Back-pressure (issue 11): a store that answers "full" every 64 KiB and drains only a
 * few ms later. The PATCH must pause the body — the server stops reading the socket,
 * so the client's sends block once the kernel buffers are full — rather than buffer:
 * the bytes the handler got but the store did not take yet stay within one read
 * (64 KiB) at every moment. It resumes on each drain and ends with every byte, in
 * order, and the right offset. */
static void test_full_store_pauses_the_client(void **state) {
  (void)state;
  enum { LEN = 8 * 1024 * 1024, READ_PIECE = 64 * 1024 };
  char id[64], v[64];
  struct response r;
  create("Upload-Length: 8388608\r\n", id);
  uint64_t fulls0 = tusc_mem_store_full_count(store);
  uint64_t received0 = metric("tusd_bytes_received");
  uint64_t written0 = metric("tusc_bytes_written_total");
  tusc_mem_store_set_full(store, 64 * 1024, 5);

  int fd = client();
  /* Small kernel buffers on both ends (the server's receive buffer is set on the
   * listener): together they hold far less than the body, so a server that stops
   * reading shows as blocked sends. */
  int sndbuf = 64 * 1024;
  assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
  char head[512];
  snprintf(head, sizeof(head),
           "PATCH /files/%s HTTP/1.1\r\nHost: h\r\nTus-Resumable: 1.0.0\r\n"
           "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
           "Content-Length: %d\r\n\r\n",
           id, LEN);
  send_str(fd, head);
  int flags = fcntl(fd, F_GETFL);
  assert_int_equal(fcntl(fd, F_SETFL, flags | O_NONBLOCK), 0);
  static char chunk[32 * 1024];
  size_t sent = 0;
  unsigned blocked = 0;
  int64_t max_held = 0;
  uint64_t deadline = uv_hrtime() + UINT64_C(60000000000);
  while (sent < LEN) {
    size_t n = LEN - sent < sizeof(chunk) ? LEN - sent : sizeof(chunk);
    for (size_t i = 0; i < n; i++)
      chunk[i] = pattern_byte(sent + i);
    ssize_t w = send(fd, chunk, n, MSG_NOSIGNAL);
    int64_t held = (int64_t)(metric("tusd_bytes_received") - received0) -
                   (int64_t)(metric("tusc_bytes_written_total") - written0);
    if (held > max_held)
      max_held = held;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      /* The server is not reading: wait until it takes bytes again. */
      blocked++;
      struct pollfd pfd = {.fd = fd, .events = POLLOUT};
      assert_true(uv_hrtime() < deadline);
      (void)poll(&pfd, 1, 100);
      continue;
    }
    assert_true(w > 0);
    sent += (size_t)w;
  }
  assert_int_equal(fcntl(fd, F_SETFL, flags), 0);
  read_response(fd, &r, false);
  close(fd);
  tusc_mem_store_set_full(store, 0, 0);

  assert_int_equal(r.status, 204);
  assert_string_equal(header(&r, "Upload-Offset", v, sizeof(v)), "8388608");
  assert_int_equal(mem_len(id), LEN);
  static char back[LEN];
  assert_int_equal(tusc_mem_store_read(store, id, 0, back, LEN), LEN);
  for (size_t i = 0; i < LEN; i++)
    if (back[i] != pattern_byte(i))
      fail_msg("byte %zu differs", i);
  /* Paused and resumed over and over ... */
  assert_true(tusc_mem_store_full_count(store) - fulls0 >= LEN / (2 * 64 * 1024));
  /* ... with the client held back by the socket, not by a buffer in the server ... */
  assert_true(blocked > 0);
  /* ... which never held more than one read of the body. */
  if (max_held > READ_PIECE)
    fail_msg("the handler held %lld bytes the store had not taken", (long long)max_held);
  assert_int_equal(metric("tusd_bytes_received") - received0, LEN);
  assert_int_equal(metric("tusc_bytes_written_total") - written0, LEN);
}

/* A body cut while the store is full: the bytes the handler holds back (received but
 * not yet taken) are kept like every other byte that arrived, once the store drains,
 * as tus keeps what reached the server of an interrupted PATCH. 160 KiB in one send
 * land in the server's socket buffer at once and are read 64 KiB at a time: the store
 * takes the first two reads, answers "full" for the third, which the handler holds
 * back, and drains only after 3 s; the client hangs up as soon as the server has read
 * everything. (Should the reads split otherwise, nothing is held when the client hangs
 * up and the test still holds, it just proves less.) */
static void test_cut_body_keeps_bytes_held_while_full(void **state) {
  (void)state;
  enum { SENT = 160 * 1024 };
  char id[64], v[64];
  struct response r;
  create("Upload-Length: 1048576\r\n", id);
  uint64_t received0 = metric("tusd_bytes_received");
  uint64_t written0 = metric("tusc_bytes_written_total");
  tusc_mem_store_set_full(store, 64 * 1024, 3000);

  int fd = client();
  char head[512];
  int n = snprintf(head, sizeof(head),
                   "PATCH /files/%s HTTP/1.1\r\nHost: h\r\nTus-Resumable: 1.0.0\r\n"
                   "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
                   "Content-Length: 1048576\r\n\r\n",
                   id);
  static char raw[512 + SENT];
  memcpy(raw, head, (size_t)n);
  for (size_t i = 0; i < SENT; i++)
    raw[(size_t)n + i] = pattern_byte(i);
  size_t off = 0, total = (size_t)n + SENT;
  while (off < total) {
    ssize_t w = send(fd, raw + off, total - off, MSG_NOSIGNAL);
    assert_true(w > 0);
    off += (size_t)w;
  }
  /* Until the handler has every byte (the last read held back, in the common case). */
  uint64_t deadline = uv_hrtime() + UINT64_C(20000000000);
  while (metric("tusd_bytes_received") - received0 < SENT) {
    assert_true(uv_hrtime() < deadline);
    usleep(1000);
  }
  assert_true(metric("tusc_bytes_written_total") - written0 <= SENT);
  close(fd);

  /* Every byte that arrived lands once the store drains; HEAD says so. */
  for (;;) {
    char raw_head[256];
    snprintf(raw_head, sizeof(raw_head),
             "HEAD /files/%s HTTP/1.1\r\nHost: h\r\nTus-Resumable: 1.0.0\r\n\r\n", id);
    request(raw_head, &r);
    assert_int_equal(r.status, 200);
    if (strcmp(header(&r, "Upload-Offset", v, sizeof(v)), "163840") == 0)
      break;
    assert_true(uv_hrtime() < deadline);
    usleep(10000);
  }
  tusc_mem_store_set_full(store, 0, 0);
  assert_int_equal(mem_len(id), SENT);
  static char back[SENT];
  assert_int_equal(tusc_mem_store_read(store, id, 0, back, SENT), SENT);
  for (size_t i = 0; i < SENT; i++)
    if (back[i] != pattern_byte(i))
      fail_msg("byte %zu differs", i);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_enospc_keeps_written_bytes),
      cmocka_unit_test(test_sync_failure_is_500),
      cmocka_unit_test(test_create_failure),
      cmocka_unit_test(test_save_info_failure),
      cmocka_unit_test(test_modify_final),
      cmocka_unit_test(test_head_fields),
      cmocka_unit_test(test_download_partial_upload),
      cmocka_unit_test(test_lock_timeout_and_release),
      cmocka_unit_test(test_no_lock_file_for_unknown_ids),
      cmocka_unit_test(test_full_store_pauses_the_client),
      cmocka_unit_test(test_cut_body_keeps_bytes_held_while_full),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

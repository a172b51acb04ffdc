/* Unit tests for src/http: a real server on a 127.0.0.1 ephemeral port, its loop on
 * a second thread, a small handler, and plain blocking sockets as the client. Each
 * test speaks raw HTTP so that framing (keep-alive, pipelining, 100-continue,
 * chunked trailers, limits, closes) is checked byte for byte. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "common/error.h"
#include "common/log.h"
#include "http/http.h"
#include "net/listener.h"

/* --- the server side (runs on the server thread) ------------------------------------ */

#define TIMEOUT_MS 600

static atomic_int last_abort;        /* err of the last on_abort, 0 = none */
static atomic_int body_while_paused; /* on_body calls that arrived while paused */
static atomic_int requests_seen;
static atomic_int stream_error; /* status < 0 given to a streamed write's callback */

/* /backpressure: the handler pauses at its first body piece and resumes only when the
 * test says so (resume_async), so the test can watch what a pause does to the socket. */
static atomic_bool bp_paused;           /* the handler has paused */
static atomic_llong bp_delivered;       /* body bytes the handler has received */
static tusc_http_request_t *bp_request; /* the paused request (server thread only) */
static uv_async_t resume_async;

#define BIG_CHUNK 65536
#define BIG_CHUNKS 256
static char big_chunk[BIG_CHUNK];

struct handler_req {
  int64_t bytes;
  bool paused;
  bool resumed_once;
  uv_timer_t timer;
  tusc_http_request_t *req;
  int stream_step;
};

static void free_handler_data(uv_handle_t *h) {
  free(h->data);
}

static void release(tusc_http_request_t *req) {
  struct handler_req *hr = req->handler_data;
  req->handler_data = NULL;
  if (hr == NULL)
    return;
  hr->timer.data = hr;
  uv_close((uv_handle_t *)&hr->timer, free_handler_data);
}

static void respond_text(tusc_http_request_t *req, int status, const char *text) {
  tusc_http_response_t resp;
  tusc_http_response_init(&resp, status);
  tusc_http_response_header(&resp, "Content-Type", "text/plain");
  release(req);
  tusc_http_respond(req, &resp, text, strlen(text));
}

static bool path_is(const tusc_http_request_t *req, const char *p) {
  return strcmp(req->path, p) == 0;
}

static void on_resume_timer(uv_timer_t *t) {
  struct handler_req *hr = t->data;
  hr->paused = false;
  tusc_http_body_resume(hr->req);
}

static void stream_next(tusc_http_request_t *req, int status, void *arg) {
  (void)arg;
  struct handler_req *hr = req->handler_data;
  if (status < 0 || hr->stream_step == 2) {
    release(req);
    tusc_http_respond_end(req);
    return;
  }
  static const char *parts[] = {"hello", "world"};
  tusc_http_respond_write(req, parts[hr->stream_step++], 5, stream_next, NULL);
}

static void big_next(tusc_http_request_t *req, int status, void *arg) {
  (void)arg;
  struct handler_req *hr = req->handler_data;
  if (status < 0)
    atomic_store(&stream_error, status);
  if (status < 0 || hr->stream_step == BIG_CHUNKS) {
    release(req);
    tusc_http_respond_end(req);
    return;
  }
  hr->stream_step++;
  tusc_http_respond_write(req, big_chunk, sizeof(big_chunk), big_next, NULL);
}

static void on_later_timer(uv_timer_t *t) {
  struct handler_req *hr = t->data;
  respond_text(hr->req, 200, hr->req->target);
}

static void h_request(tusc_http_request_t *req, void *ctx) {
  (void)ctx;
  atomic_fetch_add(&requests_seen, 1);
  struct handler_req *hr = calloc(1, sizeof(*hr));
  if (hr == NULL)
    abort();
  hr->req = req;
  uv_timer_init(tusc_http_request_loop(req), &hr->timer);
  hr->timer.data = hr;
  req->handler_data = hr;

  if (path_is(req, "/hello")) {
    respond_text(req, 200, req->target);
  } else if (path_is(req, "/early")) {
    respond_text(req, 409, "no thanks\n");
  } else if (path_is(req, "/stream")) {
    tusc_http_response_t resp;
    tusc_http_response_init(&resp, 200);
    tusc_http_respond_start(req, &resp, 10);
    stream_next(req, 0, NULL);
  } else if (path_is(req, "/big")) {
    tusc_http_response_t resp;
    tusc_http_response_init(&resp, 200);
    tusc_http_respond_start(req, &resp, (int64_t)BIG_CHUNK * BIG_CHUNKS);
    big_next(req, 0, NULL);
  } else if (path_is(req, "/interim")) {
    tusc_http_response_t interim;
    tusc_http_response_init(&interim, 104);
    tusc_http_response_header(&interim, "Upload-Draft-Interop-Version", "6");
    tusc_http_send_interim(req, &interim);
    tusc_http_request_set_client(req, "203.0.113.9");
    respond_text(req, 200, "final");
  } else if (path_is(req, "/hold")) {
    /* Answered only by on_abort: the client going away must be noticed. */
  } else if (path_is(req, "/later")) {
    uv_timer_start(&hr->timer, on_later_timer, 150, 0);
  } else if (path_is(req, "/echo") || path_is(req, "/pause") || path_is(req, "/abort") ||
             path_is(req, "/stop") || path_is(req, "/backpressure")) {
    tusc_http_body_start(req);
    if (req->content_length <= 0 && !req->chunked)
      respond_text(req, 200, "len=0");
  } else {
    respond_text(req, 404, "not found\n");
  }
}

static int h_body(tusc_http_request_t *req, const char *data, size_t len, void *ctx) {
  (void)ctx;
  (void)data;
  struct handler_req *hr = req->handler_data;
  if (hr->paused)
    atomic_fetch_add(&body_while_paused, 1);
  hr->bytes += (int64_t)len;
  if (path_is(req, "/stop")) {
    /* Refuse the body midway (like a checksum or size failure) and answer at once. */
    respond_text(req, 460, "stopped\n");
    return -1;
  }
  if (path_is(req, "/pause") && !hr->paused) {
    /* Pause after every delivery, resume from a timer: the body must arrive whole
     * and in order, and never while paused. */
    hr->paused = true;
    tusc_http_body_pause(req);
    uv_timer_start(&hr->timer, on_resume_timer, 1, 0);
  }
  if (path_is(req, "/backpressure")) {
    atomic_store(&bp_delivered, hr->bytes);
    if (!hr->resumed_once && !hr->paused) {
      hr->paused = true;
      bp_request = req;
      tusc_http_body_pause(req);
      atomic_store(&bp_paused, true);
    }
  }
  return 0;
}

static void on_resume_async(uv_async_t *a) {
  (void)a;
  tusc_http_request_t *req = bp_request;
  if (req == NULL)
    return;
  bp_request = NULL;
  struct handler_req *hr = req->handler_data;
  hr->paused = false;
  hr->resumed_once = true;
  tusc_http_body_resume(req);
}

static void h_body_end(tusc_http_request_t *req, void *ctx) {
  (void)ctx;
  struct handler_req *hr = req->handler_data;
  char text[256];
  const tusc_http_header_t *t = tusc_http_trailer(req, "X-Check");
  snprintf(text, sizeof(text), "len=%lld%s%s", (long long)hr->bytes, t ? " trailer=" : "",
           t ? t->value : "");
  respond_text(req, 200, text);
}

static void h_abort(tusc_http_request_t *req, int err, void *ctx) {
  (void)ctx;
  if (req == bp_request)
    bp_request = NULL;
  atomic_store(&last_abort, err);
  char text[128];
  snprintf(text, sizeof(text), "%s: %s\n", tusc_error_code(err), tusc_strerror(err));
  respond_text(req, tusc_error_status(err), text);
}

static const tusc_http_handler_t handler = {
    .on_request = h_request,
    .on_body = h_body,
    .on_body_end = h_body_end,
    .on_abort = h_abort,
};

static uv_loop_t loop;
static uv_async_t stop_async;
static uv_async_t probe_async;  /* asks tusc_http_server_waiting on the server thread */
static atomic_int probe_result; /* its answer, -1 until then */
static uv_thread_t server_thread;
static tusc_http_server_t *server;
static int port;
static atomic_bool server_done;

static void on_probe_async(uv_async_t *a) {
  (void)a;
  atomic_store(&probe_result, tusc_http_server_waiting(server) ? 1 : 0);
}

static void on_stopped(tusc_http_server_t *s, void *arg) {
  (void)arg;
  tusc_http_server_free(s);
  server = NULL;
  uv_close((uv_handle_t *)&stop_async, NULL);
  uv_close((uv_handle_t *)&resume_async, NULL);
  uv_close((uv_handle_t *)&probe_async, NULL);
}

static void on_stop(uv_async_t *a) {
  (void)a;
  tusc_http_server_stop(server, true, on_stopped, NULL);
}

static void server_main(void *arg) {
  (void)arg;
  uv_run(&loop, UV_RUN_DEFAULT);
  atomic_store(&server_done, true);
}

static int group_setup(void **state) {
  (void)state;
  tusc_log_setup(getenv("TUSC_TEST_VERBOSE") ? TUSC_LOG_DEBUG : TUSC_LOG_WARN, TUSC_LOG_TEXT);
  tusc_listeners_t l;
  if (tusc_listeners_open("127.0.0.1", 0, NULL, 1, &l) != 0)
    return -1;
  port = l.port;
  int fd = l.fds[0];
  l.fds[0] = -1;
  tusc_listeners_close(&l);
  if (uv_loop_init(&loop) != 0)
    return -1;
  uv_async_init(&loop, &stop_async, on_stop);
  uv_async_init(&loop, &resume_async, on_resume_async);
  uv_async_init(&loop, &probe_async, on_probe_async);
  tusc_http_limits_t limits = {
      .max_header_size = 1024, .max_header_count = 10, .network_timeout_ms = TIMEOUT_MS};
  if (tusc_http_server_new(&loop, fd, &limits, &handler, NULL, &server) != 0)
    return -1;
  return uv_thread_create(&server_thread, server_main, NULL);
}

static int group_teardown(void **state) {
  (void)state;
  if (!atomic_load(&server_done))
    uv_async_send(&stop_async);
  uv_thread_join(&server_thread);
  uv_loop_close(&loop);
  return 0;
}

/* --- the client side ---------------------------------------------------------------- */

static int client(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
  struct timeval tv = {.tv_sec = 5};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

static void send_all(int fd, const char *data, size_t len) {
  while (len > 0) {
    ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    assert_true(n > 0);
    data += n;
    len -= (size_t)n;
  }
}

static void send_str(int fd, const char *s) {
  send_all(fd, s, strlen(s));
}

/* Reads exactly n bytes; returns bytes read before EOF. */
static size_t read_n(int fd, char *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = recv(fd, buf + got, n - got, 0);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  return got;
}

struct response {
  int status;
  char head[4096];
  char body[4096];
  long content_length;
};

/* Reads one response; for HEAD requests pass head_only (no body expected). */
static void read_response(int fd, struct response *r, bool head_only) {
  memset(r, 0, sizeof(*r));
  size_t len = 0;
  while (len < sizeof(r->head) - 1) {
    assert_int_equal(read_n(fd, r->head + len, 1), 1);
    len++;
    if (len >= 4 && memcmp(r->head + len - 4, "\r\n\r\n", 4) == 0)
      break;
  }
  r->head[len] = '\0';
  assert_int_equal(sscanf(r->head, "HTTP/1.1 %d", &r->status), 1);
  r->content_length = -1;
  const char *cl = strcasestr(r->head, "\r\nContent-Length: ");
  if (cl != NULL)
    r->content_length = strtol(cl + 18, NULL, 10);
  if (!head_only && r->content_length > 0) {
    assert_true(r->content_length < (long)sizeof(r->body));
    assert_int_equal(read_n(fd, r->body, (size_t)r->content_length), (size_t)r->content_length);
  }
}

/* True when the server closes the connection within a few seconds. */
static bool closed_by_server(int fd) {
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n == 0)
      return true;
    if (n < 0)
      return errno == ECONNRESET;
  }
}

/* Whether tusc_http_server_waiting gives `want` within a few seconds. */
static bool eventually_waiting(bool want) {
  for (int i = 0; i < 300; i++) {
    atomic_store(&probe_result, -1);
    uv_async_send(&probe_async);
    while (atomic_load(&probe_result) < 0)
      usleep(1000);
    if (atomic_load(&probe_result) == (want ? 1 : 0))
      return true;
    usleep(10000);
  }
  return false;
}

static bool wait_for_abort(int want) {
  for (int i = 0; i < 300; i++) {
    if (atomic_load(&last_abort) == want)
      return true;
    usleep(10000);
  }
  return false;
}

/* --- tests ---------------------------------------------------------------------------- */

static void test_keep_alive(void **state) {
  (void)state;
  int fd = client();
  struct response r;
  send_str(fd, "GET /hello?a=1 HTTP/1.1\r\nHost: x\r\n\r\n");
  read_response(fd, &r, false);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "/hello?a=1");
  assert_null(strcasestr(r.head, "Connection: close"));
  assert_non_null(strstr(r.head, "\r\nDate: "));
  send_str(fd, "GET /hello?a=2 HTTP/1.1\r\nHost: x\r\n\r\n");
  read_response(fd, &r, false);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "/hello?a=2");
  close(fd);
}

static void test_http10(void **state) {
  (void)state;
  int fd = client();
  struct response r;
  send_str(fd, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  read_response(fd, &r, false);
  assert_int_equal(r.status, 200);
  assert_non_null(strcasestr(r.head, "Connection: keep-alive"));
  send_str(fd, "GET /hello HTTP/1.0\r\n\r\n");
  read_response(fd, &r, false);
  assert_int_equal(r.status, 200);
  assert_non_null(strcasestr(r.head, "Connection: close"));
  assert_true(closed_by_server(fd));
  close(fd);
}

static void test_pipelined(void **state) {
  (void)state;
  int fd = client();
  struct response r;
  send_str(fd, "GET /hello?1 HTTP/1.1\r\nHost: x\r\n\r\n"
               "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
               "GET /hello?3 HTTP/1.1\r\nHost: x\r\n\r\n");
  read_response(fd, &r, false);
  assert_string_equal(r.body, "/hello?1");
  read_response(fd, &r, false);
  assert_string_equal(r.body, "len=3");
  read_response(fd, &r, false);
  assert_string_equal(r.body, "/hello?3");
  close(fd);
}

static void test_expect_continue(void **state) {
  (void)state;
  int fd = client();
  send_str(fd, "PATCH /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
               "Expect: 100-continue\r\n\r\n");
  char interim[sizeof("HTTP/1.1 100 Continue\r\n\r\n") - 1];
  assert_int_equal(read_n(fd, interim, sizeof(interim)), sizeof(interim));
  assert_memory_equal(interim, "HTTP/1.1 100 Continue\r\n\r\n", sizeof(interim));
  send_str(fd, "12345");
  struct response r;
  read_response(fd, &r, false);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "len=5");
  close(fd);
}

static void test_chunked_trailers(void **state) {
  (void)state;
  int fd = client();
  struct response r;
  send_str(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               "3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nX-Check: yes\r\n\r\n");
  read_response(fd, &r, false);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "len=7 trailer=yes");
  /* The connection stays usable after a chunked body. */
  send_str(fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  read_response(fd, &r, false);
  assert_string_equal(r.body, "/hello");
  close(fd);
}

/* Every byte in its own segment: parser and framing checks keep state across reads. */
static void test_chunked_byte_by_byte(void **state) {
  (void)state;
  static const char req[] = "PUT /pause HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                            "5;name=v\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\n"
                            "X-Check: bytes\r\n\r\n";
  int fd = client();
  for (size_t i = 0; i < sizeof(req) - 1; i++) {
    send_all(fd, req + i, 1);
    if (i % 16 == 0)
      usleep(1000);
  }
  struct response r;
  read_response(fd, &r, false);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "len=16 trailer=bytes");
  close(fd);
}

static void test_head_has_no_body(void **state) {
  (void)state;
  int fd = client();
  struct response r;
  send_str(fd, "HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  read_response(fd, &r, true);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.content_length, 6);
  /* If body bytes had been sent, they would now sit before the next status line. */
  send_str(fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  read_response(fd, &r, false);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "/hello");
  close(fd);
}

struct reject_case {
  const char *name;
  const char *request;
  int status;
  const char *code;
  bool in_body; /* found while the handler reads the body: on_abort, handler answers */
};

static const struct reject_case reject_cases[] = {
    {"CL and TE",
     "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
     "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     400, "ERR_BAD_REQUEST", false},
    {"duplicate CL",
     "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
     "Content-Length: 5\r\n\r\nhello",
     400, "ERR_BAD_REQUEST", false},
    {"conflicting CL",
     "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
     "Content-Length: 6\r\n\r\nhello!",
     400, "ERR_BAD_REQUEST", false},
    {"TE gzip,chunked",
     "POST /echo HTTP/1.1\r\nHost: x\r\n"
     "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
     400, "ERR_BAD_REQUEST", false},
    {"TE twice",
     "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
     "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     400, "ERR_BAD_REQUEST", false},
    {"garbage", "HELLO THERE\r\n\r\n", 400, "ERR_BAD_REQUEST", false},
    {"bare LF", "GET /hello HTTP/1.1\nHost: x\n\n", 400, "ERR_BAD_REQUEST", false},
    {"obs-fold", "GET /hello HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400, "ERR_BAD_REQUEST",
     false},
    {"space before colon", "GET /hello HTTP/1.1\r\nHost : x\r\n\r\n", 400, "ERR_BAD_REQUEST",
     false},
    {"NUL in header", "GET /hello HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n", 400, "ERR_BAD_REQUEST",
     false},
    {"missing Host", "GET /hello HTTP/1.1\r\n\r\n", 400, "ERR_BAD_REQUEST", false},
    {"two Hosts", "GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "ERR_BAD_REQUEST",
     false},
    {"bad chunk size",
     "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     "zz\r\n",
     400, "ERR_BAD_REQUEST", true},
    {"chunk without CRLF",
     "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     "3\r\nabcXY0\r\n\r\n",
     400, "ERR_BAD_REQUEST", true},
    {"head ends CR CR X", "GET /hello HTTP/1.1\r\nHost: x\r\n\rX", 400, "ERR_BAD_REQUEST", false},
    {"chunk size bare CR",
     "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     "3\rXabc\r\n0\r\n\r\n",
     400, "ERR_BAD_REQUEST", true},
    {"chunk size bare LF",
     "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     "3\nabc\r\n0\r\n\r\n",
     400, "ERR_BAD_REQUEST", true},
    {"trailer bare LF",
     "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     "3\r\nabc\r\n0\r\nX-Check: 1\n\r\n",
     400, "ERR_BAD_REQUEST", true},
    {"trailer obs-fold",
     "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     "3\r\nabc\r\n0\r\nX-Check: 1\r\n 2\r\n\r\n",
     400, "ERR_BAD_REQUEST", true},
    {"chunk ext with CTL",
     "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
     "3;a=\x01\r\nabc\r\n0\r\n\r\n",
     400, "ERR_BAD_REQUEST", true},
    {"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "ERR_BAD_REQUEST", false},
    {"HTTP/3.0", "GET /hello HTTP/3.0\r\nHost: x\r\n\r\n", 505, "ERR_BAD_REQUEST", false},
    {"negative CL", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400,
     "ERR_BAD_REQUEST", false},
};

static void test_rejects(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(reject_cases) / sizeof(reject_cases[0]); i++) {
    const struct reject_case *c = &reject_cases[i];
    print_message("case: %s\n", c->name);
    atomic_store(&last_abort, 0);
    int fd = client();
    size_t len = strlen(c->request);
    if (strcmp(c->name, "NUL in header") == 0)
      len = strlen(c->request) + 1 + strlen(c->request + strlen(c->request) + 1);
    send_all(fd, c->request, len);
    struct response r;
    read_response(fd, &r, false);
    assert_int_equal(r.status, c->status);
    assert_non_null(strstr(r.body, c->code));
    assert_non_null(strcasestr(r.head, "Connection: close"));
    if (c->in_body)
      assert_int_equal(atomic_load(&last_abort), TUSC_EBAD_REQUEST);
    else
      assert_non_null(strstr(r.head, "Tus-Resumable: 1.0.0"));
    assert_true(closed_by_server(fd));
    close(fd);
  }
}

static void test_header_limits(void **state) {
  (void)state;
  /* Bigger than max_header_size (1024). */
  char big[2048];
  int n = snprintf(big, sizeof(big), "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: ");
  memset(big + n, 'a', 1200);
  memcpy(big + n + 1200, "\r\n\r\n", 5);
  int fd = client();
  send_str(fd, big);
  struct response r;
  read_response(fd, &r, false);
  assert_int_equal(r.status, 431);
  assert_non_null(strstr(r.body, "ERR_HEADERS_TOO_LARGE"));
  assert_true(closed_by_server(fd));
  close(fd);

  /* More than max_header_count (10). */
  char many[1024];
  size_t len = (size_t)snprintf(many, sizeof(many), "GET /hello HTTP/1.1\r\nHost: x\r\n");
  for (int i = 0; i < 12; i++)
    len += (size_t)snprintf(many + len, sizeof(many) - len, "X-H%d: %d\r\n", i, i);
  snprintf(many + len, sizeof(many) - len, "\r\n");
  fd = client();
  send_str(fd, many);
  read_response(fd, &r, false);
  assert_int_equal(r.status, 431);
  assert_true(closed_by_server(fd));
  close(fd);

  /* Exactly at the limit still works: 9 headers + Host = 10. */
  len = (size_t)snprintf(many, sizeof(many), "GET /hello HTTP/1.1\r\nHost: x\r\n");
  for (int i = 0; i < 9; i++)
    len += (size_t)snprintf(many + len, sizeof(many) - len, "X-H%d: %d\r\n", i, i);
  snprintf(many + len, sizeof(many) - len, "\r\n");
  fd = client();
  send_str(fd, many);
  read_response(fd, &r, false);
  assert_int_equal(r.status, 200);
  close(fd);
}

static void test_early_response_closes(void **state) {
  (void)state;
  int fd = client();
  send_str(fd, "PATCH /early HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
  char chunk[8192];
  memset(chunk, 'z', sizeof(chunk));
  send_all(fd, chunk, sizeof(chunk));
  struct response r;
  read_response(fd, &r, false);
  assert_int_equal(r.status, 409);
  assert_string_equal(r.body, "no thanks\n");
  assert_non_null(strcasestr(r.head, "Connection: close"));
  assert_true(closed_by_server(fd));
  close(fd);
}

static void test_handler_stops_body(void **state) {
  (void)state;
  int fd = client();
  send_str(fd, "PATCH /stop HTTP/1.1\r\nHost: x\r\nContent-Length: 50000\r\n\r\n");
  char chunk[4096];
  memset(chunk, 's', sizeof(chunk));
  send_all(fd, chunk, sizeof(chunk));
  struct response r;
  read_response(fd, &r, false);
  assert_int_equal(r.status, 460);
  assert_memory_equal(r.head, "HTTP/1.1 460 Checksum Mismatch\r\n", 32);
  assert_non_null(strcasestr(r.head, "Connection: close"));
  assert_true(closed_by_server(fd));
  close(fd);
}

static void test_idle_timeout(void **state) {
  (void)state;
  int fd = client();
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  assert_true(closed_by_server(fd));
  clock_gettime(CLOCK_MONOTONIC, &b);
  long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
  assert_true(ms >= TIMEOUT_MS / 2);
  close(fd);

  /* A keep-alive connection idles out after its response, too. */
  fd = client();
  send_str(fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  struct response r;
  read_response(fd, &r, false);
  assert_true(closed_by_server(fd));
  close(fd);
}

static void test_slow_head_times_out(void **state) {
  (void)state;
  int fd = client();
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  send_str(fd, "GET /hello HTTP/1.1\r\n");
  /* One header byte every 100 ms keeps "activity" going but the head never ends. */
  bool closed = false;
  for (int i = 0; i < 40 && !closed; i++) {
    usleep(100000);
    closed = send(fd, "X", 1, MSG_NOSIGNAL) < 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (!closed && poll(&p, 1, 0) == 1)
      closed = closed_by_server(fd);
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
  assert_true(closed);
  assert_true(ms < 3 * TIMEOUT_MS);
  close(fd);
}

static void test_absolute_form(void **state) {
  (void)state;
  int fd = client();
  struct response r;
  send_str(fd, "GET http://example.com/hello?q HTTP/1.1\r\nHost: example.com\r\n\r\n");
  read_response(fd, &r, false);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "http://example.com/hello?q"); /* target stays raw */
  close(fd);
}

static void test_client_abort_mid_body(void **state) {
  (void)state;
  atomic_store(&last_abort, 0);
  int fd = client();
  send_str(fd, "PATCH /abort HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789");
  usleep(50000);
  close(fd);
  assert_true(wait_for_abort(TUSC_EUNEXPECTED_EOF));
}

static bool wait_for_any_abort(void) {
  for (int i = 0; i < 300; i++) {
    if (atomic_load(&last_abort) != 0)
      return true;
    usleep(10000);
  }
  return false;
}

/* A client that goes away while the handler works on its bodiless request (a hook, a
 * password check) is noticed at once, not when the answer is written. */
static void test_client_gone_while_held(void **state) {
  (void)state;
  atomic_store(&last_abort, 0);
  int fd = client();
  send_str(fd, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
  close(fd);
  assert_true(wait_for_abort(TUSC_EUNEXPECTED_EOF));

  /* A reset while the body is not yet wanted. */
  atomic_store(&last_abort, 0);
  fd = client();
  send_str(fd, "POST /hold HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n");
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  close(fd);
  assert_true(wait_for_any_abort());
  assert_int_not_equal(atomic_load(&last_abort), TUSC_EREAD_TIMEOUT);
}

/* Bytes of the next requests that arrive while one is being worked on are kept (the
 * socket is read to notice a disconnect), beyond the header cap too, and answered in
 * order. */
static void test_pipelined_while_held(void **state) {
  (void)state;
  int fd = client();
  char pad[700];
  memset(pad, 'a', sizeof(pad) - 1);
  pad[sizeof(pad) - 1] = '\0';
  char next[1024];
  snprintf(next, sizeof(next), "GET /hello?%s HTTP/1.1\r\nHost: x\r\n\r\n", pad);
  send_str(fd, "GET /later HTTP/1.1\r\nHost: x\r\n\r\n");
  for (int i = 0; i < 3; i++)
    send_str(fd, next);
  struct response r;
  read_response(fd, &r, false);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "/later");
  for (int i = 0; i < 3; i++) {
    read_response(fd, &r, false);
    assert_int_equal(r.status, 200);
    assert_int_equal(strlen(r.body), strlen("/hello?") + sizeof(pad) - 1);
  }
  close(fd);
}

static void test_body_read_timeout(void **state) {
  (void)state;
  atomic_store(&last_abort, 0);
  int fd = client();
  send_str(fd, "PATCH /abort HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789");
  assert_true(wait_for_abort(TUSC_EREAD_TIMEOUT));
  assert_true(closed_by_server(fd));
  close(fd);
}

static void test_pause_resume(void **state) {
  (void)state;
  atomic_store(&body_while_paused, 0);
  int fd = client();
  enum { BODY = 300000 };
  char *body = malloc(BODY);
  assert_non_null(body);
  memset(body, 'p', BODY);
  char head[128];
  snprintf(head, sizeof(head), "PUT /pause HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
           BODY);
  /* Head, body and the next request in one stream: the pause must hold the rest. */
  send_str(fd, head);
  send_all(fd, body, BODY);
  send_str(fd, "GET /hello?after HTTP/1.1\r\nHost: x\r\n\r\n");
  free(body);
  struct response r;
  read_response(fd, &r, false);
  assert_int_equal(r.status, 200);
  char want[32];
  snprintf(want, sizeof(want), "len=%d", BODY);
  assert_string_equal(r.body, want);
  read_response(fd, &r, false);
  assert_string_equal(r.body, "/hello?after");
  assert_int_equal(atomic_load(&body_while_paused), 0);
  close(fd);
}

/* Back-pressure reaches the client: while the handler has the body paused the server
 * stops reading the socket (beyond the few bytes it watches to notice a disconnect),
 * so the client's sends block once the kernel buffers are full, and the handler gets
 * no byte more until it resumes; then the rest arrives whole. */
static void test_pause_stops_reading(void **state) {
  (void)state;
  enum { TOTAL = 32 << 20, PIECE = 65536 };
  atomic_store(&bp_paused, false);
  atomic_store(&bp_delivered, 0);
  atomic_store(&body_while_paused, 0);
  int fd = client();
  int small = PIECE;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
  char head[128];
  snprintf(head, sizeof(head),
           "PUT /backpressure HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", TOTAL);
  send_str(fd, head);
  char *piece = malloc(PIECE);
  assert_non_null(piece);
  memset(piece, 'b', PIECE);
  int flags = fcntl(fd, F_GETFL);
  assert_int_equal(fcntl(fd, F_SETFL, flags | O_NONBLOCK), 0);

  /* Send until the handler has paused and the socket has stayed full for a while.
   * Were the server still reading (into memory), the whole body would go through. */
  size_t sent = 0;
  for (;;) {
    size_t n = TOTAL - sent < PIECE ? TOTAL - sent : PIECE;
    ssize_t w = send(fd, piece, n, MSG_NOSIGNAL);
    if (w > 0) {
      sent += (size_t)w;
      if (sent == TOTAL)
        fail_msg("the whole body went out while the handler had it paused");
      continue;
    }
    assert_true(w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR));
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    if (poll(&p, 1, 300) == 0 && atomic_load(&bp_paused))
      break;
  }
  long long held = atomic_load(&bp_delivered);
  assert_true(held > 0);
  /* The kernel buffers hold the difference; the handler got nothing while paused. */
  assert_true((long long)sent > held);
  assert_int_equal(atomic_load(&body_while_paused), 0);
  struct pollfd p = {.fd = fd, .events = POLLOUT};
  assert_int_equal(poll(&p, 1, 100), 0);
  assert_int_equal(atomic_load(&bp_delivered), held);

  uv_async_send(&resume_async);
  assert_int_equal(fcntl(fd, F_SETFL, flags), 0);
  while (sent < TOTAL) {
    size_t n = TOTAL - sent < PIECE ? TOTAL - sent : PIECE;
    send_all(fd, piece, n);
    sent += n;
  }
  free(piece);
  struct response r;
  read_response(fd, &r, false);
  assert_int_equal(r.status, 200);
  char want[32];
  snprintf(want, sizeof(want), "len=%d", TOTAL);
  assert_string_equal(r.body, want);
  assert_int_equal(atomic_load(&body_while_paused), 0);
  close(fd);
}

/* tusc_http_server_waiting (fuzz_http hangs up on it): true while the server waits for
 * its clients, false while a handler holds a request. */
static void test_server_waiting(void **state) {
  (void)state;
  assert_true(eventually_waiting(true));
  atomic_store(&last_abort, 0);
  int fd = client();
  send_str(fd, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
  assert_true(eventually_waiting(false));
  close(fd);
  assert_true(wait_for_abort(TUSC_EUNEXPECTED_EOF));
  assert_true(eventually_waiting(true));

  /* Half a body: the server waits for the rest. */
  int before = atomic_load(&requests_seen);
  fd = client();
  send_str(fd, "PATCH /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234");
  for (int i = 0; i < 300 && atomic_load(&requests_seen) == before; i++)
    usleep(10000);
  assert_true(atomic_load(&requests_seen) > before);
  assert_true(eventually_waiting(true));
  send_str(fd, "56789");
  struct response r;
  read_response(fd, &r, false);
  assert_string_equal(r.body, "len=10");
  close(fd);
}

static void test_streamed_response(void **state) {
  (void)state;
  int fd = client();
  struct response r;
  send_str(fd, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
  read_response(fd, &r, false);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.content_length, 10);
  assert_string_equal(r.body, "helloworld");
  send_str(fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  read_response(fd, &r, false);
  assert_string_equal(r.body, "/hello");
  close(fd);
}

/* A client that goes away during a download: the handler hears it through the write
 * callback and ends the request; nothing leaks (ASan/LSan). */
static void test_streamed_response_client_gone(void **state) {
  (void)state;
  atomic_store(&stream_error, 0);
  int fd = client();
  int small = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  send_str(fd, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
  char buf[1024];
  assert_true(recv(fd, buf, sizeof(buf), 0) > 0);
  struct linger lg = {.l_onoff = 1, .l_linger = 0}; /* RST */
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  close(fd);
  for (int i = 0; i < 300 && atomic_load(&stream_error) == 0; i++)
    usleep(10000);
  assert_true(atomic_load(&stream_error) < 0);
}

static void test_interim(void **state) {
  (void)state;
  int fd = client();
  struct response r;
  send_str(fd, "GET /interim HTTP/1.1\r\nHost: x\r\n\r\n");
  read_response(fd, &r, true);
  assert_int_equal(r.status, 104);
  assert_non_null(strstr(r.head, "Upload-Draft-Interop-Version: 6"));
  assert_null(strstr(r.head, "Content-Length"));
  read_response(fd, &r, false);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "final");
  close(fd);
}

static void test_status_reasons(void **state) {
  (void)state;
  int fd = client();
  struct response r;
  send_str(fd, "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n");
  read_response(fd, &r, false);
  assert_int_equal(r.status, 404);
  assert_memory_equal(r.head, "HTTP/1.1 404 Not Found\r\n", 24);
  close(fd);
}

/* Last: stopping the server interrupts a request in flight; the handler answers it
 * (503 here) and the connection closes. */
static void test_shutdown_aborts_in_flight(void **state) {
  (void)state;
  atomic_store(&last_abort, 0);
  int fd = client();
  send_str(fd, "PATCH /abort HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789");
  usleep(50000);
  uv_async_send(&stop_async);
  assert_true(wait_for_abort(TUSC_ESERVER_SHUTDOWN));
  struct response r;
  read_response(fd, &r, false);
  assert_int_equal(r.status, 503);
  assert_non_null(strstr(r.body, "ERR_SERVER_SHUTDOWN"));
  assert_true(closed_by_server(fd));
  close(fd);
  for (int i = 0; i < 300 && !atomic_load(&server_done); i++)
    usleep(10000);
  assert_true(atomic_load(&server_done));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_keep_alive),
      cmocka_unit_test(test_http10),
      cmocka_unit_test(test_pipelined),
      cmocka_unit_test(test_expect_continue),
      cmocka_unit_test(test_chunked_trailers),
      cmocka_unit_test(test_chunked_byte_by_byte),
      cmocka_unit_test(test_head_has_no_body),
      cmocka_unit_test(test_rejects),
      cmocka_unit_test(test_header_limits),
      cmocka_unit_test(test_early_response_closes),
      cmocka_unit_test(test_handler_stops_body),
      cmocka_unit_test(test_idle_timeout),
      cmocka_unit_test(test_slow_head_times_out),
      cmocka_unit_test(test_absolute_form),
      cmocka_unit_test(test_client_abort_mid_body),
      cmocka_unit_test(test_client_gone_while_held),
      cmocka_unit_test(test_pipelined_while_held),
      cmocka_unit_test(test_body_read_timeout),
      cmocka_unit_test(test_pause_resume),
      cmocka_unit_test(test_pause_stops_reading),
      cmocka_unit_test(test_server_waiting),
      cmocka_unit_test(test_streamed_response),
      cmocka_unit_test(test_streamed_response_client_gone),
      cmocka_unit_test(test_interim),
      cmocka_unit_test(test_status_reasons),
      cmocka_unit_test(test_shutdown_aborts_in_flight),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

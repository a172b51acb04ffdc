/* Unit tests for HTTP hooks (src/hooks/hook_http.c through the hooks.h runner),
 * against a tiny scripted HTTP server on a thread (127.0.0.1, ephemeral port). Each
 * test runs its own uv loop on the main thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "common/timeutil.h"
#include "hooks/hook_json.h"
#include "hooks/hooks.h"

#define MAX_REQUESTS 8

/* --- scripted server ---------------------------------------------------------------- */

struct reply {
  int status;        /* 0 = close the connection without answering */
  const char *ctype; /* NULL = no Content-Type */
  const char *body;
  int delay_ms;
};

struct server {
  int fd;
  int port;
  pthread_t thread;
  const struct reply *replies;
  int reply_count;
  pthread_mutex_t mu;
  int requests;
  uint64_t arrival_ms[MAX_REQUESTS];
  char head[MAX_REQUESTS][4096];
  char body[MAX_REQUESTS][8192];
  volatile int stop;
};

static ssize_t read_request(int c, char *head, size_t head_cap, char *body, size_t body_cap) {
  size_t len = 0;
  char buf[16384];
  char *end = NULL;
  while (!end) {
    if (len == sizeof(buf) - 1)
      return -1;
    ssize_t n = read(c, buf + len, sizeof(buf) - 1 - len);
    if (n <= 0)
      return -1;
    len += (size_t)n;
    buf[len] = '\0';
    end = strstr(buf, "\r\n\r\n");
  }
  size_t head_len = (size_t)(end - buf) + 4;
  snprintf(head, head_cap, "%.*s", (int)head_len, buf);
  long clen = 0;
  for (char *p = buf; p < end; p++)
    if (strncasecmp(p, "\r\ncontent-length:", 17) == 0)
      clen = strtol(p + 17, NULL, 10);
  size_t have = len - head_len;
  while ((long)have < clen) {
    if (len == sizeof(buf) - 1)
      return -1;
    ssize_t n = read(c, buf + len, sizeof(buf) - 1 - len);
    if (n <= 0)
      return -1;
    len += (size_t)n;
    have += (size_t)n;
  }
  snprintf(body, body_cap, "%.*s", (int)clen, buf + head_len);
  return clen;
}

static void *server_main(void *arg) {
  struct server *s = arg;
  while (!s->stop) {
    struct pollfd pfd = {.fd = s->fd, .events = POLLIN};
    if (poll(&pfd, 1, 50) <= 0)
      continue;
    int c = accept(s->fd, NULL, NULL);
    if (c < 0)
      continue;
    pthread_mutex_lock(&s->mu);
    int i = s->requests < MAX_REQUESTS ? s->requests : MAX_REQUESTS - 1;
    pthread_mutex_unlock(&s->mu);
    char head[4096], body[8192];
    if (read_request(c, head, sizeof(head), body, sizeof(body)) < 0) {
      close(c);
      continue;
    }
    pthread_mutex_lock(&s->mu);
    s->arrival_ms[i] = tusc_now_ms();
    memcpy(s->head[i], head, sizeof(head));
    memcpy(s->body[i], body, sizeof(body));
    s->requests++;
    pthread_mutex_unlock(&s->mu);
    const struct reply *r = &s->replies[i < s->reply_count ? i : s->reply_count - 1];
    if (r->delay_ms > 0) {
      /* Wakes early when the client gives up (EOF). */
      struct pollfd cp = {.fd = c, .events = POLLIN};
      (void)poll(&cp, 1, r->delay_ms);
    }
    if (r->status > 0) {
      char out[16384];
      const char *b = r->body ? r->body : "";
      char ct[128] = "";
      if (r->ctype)
        snprintf(ct, sizeof(ct), "Content-Type: %s\r\n", r->ctype);
      int n = snprintf(out, sizeof(out),
                       "HTTP/1.1 %d Scripted\r\n%sContent-Length: %zu\r\nConnection: close\r\n"
                       "\r\n%s",
                       r->status, ct, strlen(b), b);
      ssize_t w = write(c, out, (size_t)n);
      (void)w;
    }
    close(c);
  }
  return NULL;
}

static void server_start(struct server *s, const struct reply *replies, int count) {
  memset(s, 0, sizeof(*s));
  s->replies = replies;
  s->reply_count = count;
  pthread_mutex_init(&s->mu, NULL);
  s->fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(s->fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(listen(s->fd, 16), 0);
  socklen_t alen = sizeof(a);
  assert_int_equal(getsockname(s->fd, (struct sockaddr *)&a, &alen), 0);
  s->port = ntohs(a.sin_port);
  assert_int_equal(pthread_create(&s->thread, NULL, server_main, s), 0);
}

static void server_stop(struct server *s) {
  s->stop = 1;
  pthread_join(s->thread, NULL);
  close(s->fd);
  pthread_mutex_destroy(&s->mu);
}

static int server_requests(struct server *s) {
  pthread_mutex_lock(&s->mu);
  int n = s->requests;
  pthread_mutex_unlock(&s->mu);
  return n;
}

/* --- runner fixture ---------------------------------------------------------------------- */

struct fx {
  uv_loop_t loop;
  char url[128];
  tusc_config_t cfg;
  tusc_hooks_t *hooks;
  tusc_hooks_worker_t *worker;
};

struct result {
  int calls;
  int status;
  tusc_hook_response_t resp;
};

static void on_done(int status, tusc_hook_response_t *resp, void *arg) {
  struct result *r = arg;
  r->calls++;
  r->status = status;
  r->resp = *resp;
  tusc_hook_response_init(resp);
}

static void fx_start(struct fx *f, int port, int retry, int64_t backoff_ms, int64_t timeout_ms,
                     int64_t size_limit) {
  memset(f, 0, sizeof(*f));
  assert_int_equal(uv_loop_init(&f->loop), 0);
  snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d/hook", port);
  f->cfg.hooks_http = f->url;
  f->cfg.hooks_http_forward_headers = "X-Custom, authorization";
  f->cfg.hooks_http_retry = retry;
  f->cfg.hooks_http_backoff_ms = backoff_ms;
  f->cfg.hooks_http_timeout_ms = timeout_ms;
  f->cfg.hooks_http_size_limit = size_limit;
  f->cfg.hooks_enabled_events = "";
  assert_int_equal(tusc_hooks_new(&f->cfg, &f->hooks), 0);
  assert_int_equal(tusc_hooks_worker_new(f->hooks, &f->loop, NULL, &f->worker), 0);
}

static void fx_stop(struct fx *f) {
  tusc_hooks_worker_close(f->worker);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  tusc_hooks_free(f->hooks);
}

static const tusc_hook_header_t sample_headers[] = {
    {"x-custom", "abc"},
    {"X-Secret", "do-not-forward"},
    {"Authorization", "Bearer t0k"},
    {"Upload-Length", "11"},
};
static const tusc_hook_http_request_t sample_req = {
    .method = "POST",
    .uri = "/files/",
    .remote_ip = "127.0.0.1",
    .remote_port = 9999,
    .headers = sample_headers,
    .header_count = 4,
};

static void sample_upload(tusc_upload_info_t *info) {
  tusc_upload_info_init(info);
  info->size = 11;
  assert_int_equal(tusc_metadata_set(&info->metadata, "filename", "a.txt", 5), 0);
}

static void run_hook(struct fx *f, enum tusc_hook_event ev, struct result *r) {
  tusc_upload_info_t info;
  sample_upload(&info);
  memset(r, 0, sizeof(*r));
  assert_int_equal(tusc_hooks_invoke(f->worker, ev, &info, &sample_req, on_done, r), 0);
  tusc_upload_info_dispose(&info);
  assert_int_equal(r->calls, 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(r->calls, 1);
}

/* --- tests ------------------------------------------------------------------------------ */

static void test_retry_5xx_then_ok(void **state) {
  (void)state;
  static const struct reply replies[] = {
      {503, "text/plain", "busy", 0},
      {503, "text/plain", "busy", 0},
      {200, "application/json", "{}", 0},
  };
  struct server s;
  server_start(&s, replies, 3);
  struct fx f;
  fx_start(&f, s.port, 3, 150, 10000, 5120);
  struct result r;
  run_hook(&f, TUSC_HOOK_PRE_CREATE, &r);
  assert_int_equal(r.status, 0);
  assert_int_equal(server_requests(&s), 3);
  assert_true(s.arrival_ms[1] - s.arrival_ms[0] >= 150);
  assert_true(s.arrival_ms[2] - s.arrival_ms[1] >= 150);

  /* What arrived: a POST of exactly our JSON, typed, with the forwarded headers only. */
  tusc_upload_info_t info;
  sample_upload(&info);
  char *want = NULL;
  size_t want_len = 0;
  assert_int_equal(
      tusc_hook_json_request(TUSC_HOOK_PRE_CREATE, &info, NULL, 0, &sample_req, &want, &want_len),
      0);
  tusc_upload_info_dispose(&info);
  for (int i = 0; i < 3; i++) {
    assert_string_equal(s.body[i], want);
    assert_true(strncmp(s.head[i], "POST /hook HTTP/1.1\r\n", 21) == 0);
    assert_non_null(strcasestr(s.head[i], "\r\nContent-Type: application/json\r\n"));
    assert_non_null(strstr(s.head[i], "\r\nX-Custom: abc\r\n"));
    assert_non_null(strstr(s.head[i], "\r\nAuthorization: Bearer t0k\r\n"));
    assert_null(strcasestr(s.head[i], "X-Secret"));
    assert_null(strcasestr(s.head[i], "Expect:"));
  }
  free(want);
  fx_stop(&f);
  server_stop(&s);
}

static void test_5xx_exhausts_attempts(void **state) {
  (void)state;
  static const struct reply replies[] = {{500, "application/json", "{}", 0}};
  struct server s;
  server_start(&s, replies, 1);
  struct fx f;
  fx_start(&f, s.port, 2, 10, 10000, 5120);
  struct result r;
  run_hook(&f, TUSC_HOOK_PRE_CREATE, &r);
  assert_int_equal(r.status, TUSC_EINTERNAL);
  assert_non_null(strstr(r.resp.error, "2 attempt"));
  assert_non_null(strstr(r.resp.error, "500"));
  assert_int_equal(server_requests(&s), 2);
  tusc_hooks_stats_t st;
  tusc_hooks_stats(f.hooks, &st);
  assert_int_equal(st.invocations[TUSC_HOOK_PRE_CREATE], 1);
  assert_int_equal(st.errors[TUSC_HOOK_PRE_CREATE], 1);
  fx_stop(&f);
  server_stop(&s);
}

static void test_4xx_not_retried(void **state) {
  (void)state;
  static const struct reply replies[] = {{404, "application/json", "{}", 0}};
  struct server s;
  server_start(&s, replies, 1);
  struct fx f;
  fx_start(&f, s.port, 3, 10, 10000, 5120);
  struct result r;
  run_hook(&f, TUSC_HOOK_PRE_CREATE, &r);
  assert_int_equal(r.status, TUSC_EINTERNAL);
  assert_non_null(strstr(r.resp.error, "404"));
  assert_int_equal(server_requests(&s), 1);
  fx_stop(&f);
  server_stop(&s);
}

struct bad_case {
  struct reply reply;
  int64_t size_limit;
  const char *error_part;
};

static void test_bad_answers(void **state) {
  (void)state;
  static const struct bad_case cases[] = {
      {{200, "application/json", "", 0}, 5120, "empty body"},
      {{200, "application/json", "  \n", 0}, 5120, "empty body"},
      {{200, "text/plain", "{}", 0}, 5120, "Content-Type"},
      {{200, NULL, "{}", 0}, 5120, "Content-Type"},
      {{200, "application/jsonx", "{}", 0}, 5120, "Content-Type"},
      {{200, "application/json", "{\"RejectUpload\":1}", 0}, 5120, "RejectUpload"},
      {{200, "application/json", "not json", 0}, 5120, "not valid JSON"},
      {{200, "application/json", "{\"HTTPResponse\":{\"Body\":\"0123456789012345\"}}", 0},
       16,
       "exceeds 16 bytes"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    struct server s;
    server_start(&s, &cases[i].reply, 1);
    struct fx f;
    fx_start(&f, s.port, 3, 10, 10000, cases[i].size_limit);
    struct result r;
    run_hook(&f, TUSC_HOOK_PRE_CREATE, &r);
    if (r.status != TUSC_EINTERNAL || !strstr(r.resp.error, cases[i].error_part))
      fail_msg("row %zu: status %d, error \"%s\"", i, r.status, r.resp.error);
    if (server_requests(&s) != 1)
      fail_msg("row %zu: %d requests, want 1 (no retry)", i, server_requests(&s));
    tusc_hook_response_dispose(&r.resp);
    fx_stop(&f);
    server_stop(&s);
  }
}

static void test_answer_parsed(void **state) {
  (void)state;
  static const struct reply replies[] = {
      {201, "application/json; charset=utf-8",
       "{\"RejectUpload\":true,\"HTTPResponse\":{\"StatusCode\":418,\"Header\":{\"X-Why\":"
       "\"teapot\"}}}",
       0}};
  struct server s;
  server_start(&s, replies, 1);
  struct fx f;
  fx_start(&f, s.port, 3, 10, 10000, 5120);
  struct result r;
  run_hook(&f, TUSC_HOOK_PRE_CREATE, &r);
  assert_int_equal(r.status, 0);
  assert_true(r.resp.reject_upload);
  assert_int_equal(r.resp.status_code, 418);
  assert_int_equal(r.resp.header_count, 1);
  assert_string_equal(r.resp.headers[0].name, "X-Why");
  tusc_hook_response_dispose(&r.resp);
  fx_stop(&f);
  server_stop(&s);
}

static void test_network_error_retried(void **state) {
  (void)state;
  static const struct reply replies[] = {
      {0, NULL, NULL, 0}, /* hang up without answering */
      {200, "application/json", "{\"StopUpload\":true}", 0},
  };
  struct server s;
  server_start(&s, replies, 2);
  struct fx f;
  fx_start(&f, s.port, 3, 20, 10000, 5120);
  struct result r;
  run_hook(&f, TUSC_HOOK_POST_RECEIVE, &r);
  assert_int_equal(r.status, 0);
  assert_true(r.resp.stop_upload);
  assert_int_equal(server_requests(&s), 2);
  fx_stop(&f);
  server_stop(&s);
}

static void test_connection_refused(void **state) {
  (void)state;
  /* A port that was just free: bind, learn it, close. */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  socklen_t alen = sizeof(a);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
  close(fd);
  struct fx f;
  fx_start(&f, ntohs(a.sin_port), 2, 50, 10000, 5120);
  uint64_t t0 = tusc_now_ms();
  struct result r;
  run_hook(&f, TUSC_HOOK_PRE_TERMINATE, &r);
  assert_int_equal(r.status, TUSC_EINTERNAL);
  assert_non_null(strstr(r.resp.error, "2 attempt"));
  assert_true(tusc_now_ms() - t0 >= 50);
  fx_stop(&f);
}

static void test_overall_timeout(void **state) {
  (void)state;
  static const struct reply replies[] = {{200, "application/json", "{}", 3000}};
  struct server s;
  server_start(&s, replies, 1);
  struct fx f;
  fx_start(&f, s.port, 3, 10, 300, 5120);
  uint64_t t0 = tusc_now_ms();
  struct result r;
  run_hook(&f, TUSC_HOOK_PRE_CREATE, &r);
  uint64_t took = tusc_now_ms() - t0;
  assert_int_equal(r.status, UV_ETIMEDOUT);
  assert_true(took >= 250);
  assert_true(took < 2000);
  fx_stop(&f);
  server_stop(&s);
}

static void test_backoff_beyond_deadline(void **state) {
  (void)state;
  /* The backoff would end after the deadline: give up at once, as a timeout. */
  static const struct reply replies[] = {{502, "application/json", "{}", 0}};
  struct server s;
  server_start(&s, replies, 1);
  struct fx f;
  fx_start(&f, s.port, 5, 1000, 300, 5120);
  uint64_t t0 = tusc_now_ms();
  struct result r;
  run_hook(&f, TUSC_HOOK_PRE_CREATE, &r);
  assert_int_equal(r.status, UV_ETIMEDOUT);
  assert_true(tusc_now_ms() - t0 < 900);
  assert_int_equal(server_requests(&s), 1);
  fx_stop(&f);
  server_stop(&s);
}

static void test_close_cancels_transfer(void **state) {
  (void)state;
  static const struct reply replies[] = {{200, "application/json", "{}", 3000}};
  struct server s;
  server_start(&s, replies, 1);
  struct fx f;
  fx_start(&f, s.port, 3, 10, 10000, 5120);
  tusc_upload_info_t info;
  sample_upload(&info);
  struct result r = {0};
  assert_int_equal(
      tusc_hooks_invoke(f.worker, TUSC_HOOK_PRE_FINISH, &info, &sample_req, on_done, &r), 0);
  tusc_upload_info_dispose(&info);
  /* Let the request reach the server, then shut down. */
  uint64_t t0 = tusc_now_ms();
  while (server_requests(&s) == 0 && tusc_now_ms() - t0 < 2000)
    uv_run(&f.loop, UV_RUN_NOWAIT);
  assert_int_equal(server_requests(&s), 1);
  tusc_hooks_worker_close(f.worker);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, UV_ECANCELED);
  assert_true(tusc_now_ms() - t0 < 2500);
  assert_int_equal(uv_loop_close(&f.loop), 0);
  tusc_hooks_free(f.hooks);
  server_stop(&s);
}

/* The request behind a blocking HTTP hook has gone: the transfer is aborted at once
 * (not after the endpoint's 3 s), and the callback still comes, with UV_ECANCELED. */
static void test_cancel_aborts_transfer(void **state) {
  (void)state;
  static const struct reply replies[] = {{200, "application/json", "{}", 3000}};
  struct server s;
  server_start(&s, replies, 1);
  struct fx f;
  fx_start(&f, s.port, 3, 10, 10000, 5120);
  tusc_upload_info_t info;
  sample_upload(&info);
  struct result r = {0};
  assert_int_equal(
      tusc_hooks_invoke(f.worker, TUSC_HOOK_PRE_CREATE, &info, &sample_req, on_done, &r), 0);
  tusc_upload_info_dispose(&info);
  uint64_t t0 = tusc_now_ms();
  while (server_requests(&s) == 0 && tusc_now_ms() - t0 < 2000)
    uv_run(&f.loop, UV_RUN_NOWAIT);
  assert_int_equal(server_requests(&s), 1);
  assert_int_equal(tusc_hooks_cancel(f.worker, on_done, &r), 0);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, UV_ECANCELED);
  assert_true(tusc_now_ms() - t0 < 2500);
  tusc_hooks_stats_t st;
  tusc_hooks_stats(f.hooks, &st);
  assert_int_equal(st.cancelled, 1);
  assert_int_equal(st.errors[TUSC_HOOK_PRE_CREATE], 0);
  assert_int_equal(tusc_hooks_cancel(f.worker, on_done, &r), UV_ENOENT);
  fx_stop(&f);
  server_stop(&s);
}

static void test_fire_and_forget(void **state) {
  (void)state;
  static const struct reply replies[] = {{200, "application/json", "{}", 0}};
  struct server s;
  server_start(&s, replies, 1);
  struct fx f;
  fx_start(&f, s.port, 3, 10, 10000, 5120);
  tusc_upload_info_t info;
  sample_upload(&info);
  snprintf(info.id, sizeof(info.id), "abcd");
  for (int i = 0; i < 3; i++)
    assert_int_equal(
        tusc_hooks_invoke(f.worker, TUSC_HOOK_POST_FINISH, &info, &sample_req, NULL, NULL), 0);
  tusc_upload_info_dispose(&info);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  assert_int_equal(server_requests(&s), 3);
  assert_non_null(strstr(s.body[0], "\"Type\":\"post-finish\""));
  assert_int_equal(tusc_hooks_worker_pending(f.worker), 0);
  fx_stop(&f);
  server_stop(&s);
}

static void test_hostname_url(void **state) {
  (void)state;
  /* A name, not an address: the resolver's wake-ups go through the same loop glue. */
  static const struct reply replies[] = {
      {200, "application/json", "{\"RejectTermination\":true}", 0}};
  struct server s;
  server_start(&s, replies, 1);
  struct fx f;
  fx_start(&f, s.port, 3, 10, 10000, 5120);
  tusc_hooks_worker_close(f.worker);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  tusc_hooks_free(f.hooks);
  snprintf(f.url, sizeof(f.url), "http://localhost:%d/hook", s.port);
  f.cfg.hooks_http = f.url;
  assert_int_equal(tusc_hooks_new(&f.cfg, &f.hooks), 0);
  assert_int_equal(tusc_hooks_worker_new(f.hooks, &f.loop, NULL, &f.worker), 0);
  struct result r;
  run_hook(&f, TUSC_HOOK_PRE_TERMINATE, &r);
  assert_int_equal(r.status, 0);
  assert_true(r.resp.reject_termination);
  fx_stop(&f);
  server_stop(&s);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_retry_5xx_then_ok),       cmocka_unit_test(test_5xx_exhausts_attempts),
      cmocka_unit_test(test_4xx_not_retried),         cmocka_unit_test(test_bad_answers),
      cmocka_unit_test(test_answer_parsed),           cmocka_unit_test(test_network_error_retried),
      cmocka_unit_test(test_connection_refused),      cmocka_unit_test(test_overall_timeout),
      cmocka_unit_test(test_backoff_beyond_deadline), cmocka_unit_test(test_close_cancels_transfer),
      cmocka_unit_test(test_fire_and_forget),         cmocka_unit_test(test_hostname_url),
      cmocka_unit_test(test_cancel_aborts_transfer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

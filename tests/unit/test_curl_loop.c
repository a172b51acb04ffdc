/* Unit tests for net/curl_loop: transfers finish exactly once on the loop, a removed
 * transfer never calls back, close frees everything (LeakSanitizer), against a tiny
 * HTTP server on a thread (127.0.0.1, ephemeral port). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "net/curl_loop.h"

/* Answers every connection's first request with a small 200, except that a request
 * whose path contains "hang" gets no answer until the connection closes. */
struct server {
  int fd, port;
  pthread_t thread;
};

static void *serve_conn(void *arg) {
  int c = (int)(intptr_t)arg;
  {
    char buf[4096];
    size_t len = 0;
    while (len < sizeof(buf) - 1) {
      ssize_t n = read(c, buf + len, sizeof(buf) - 1 - len);
      if (n <= 0)
        break;
      len += (size_t)n;
      buf[len] = '\0';
      if (strstr(buf, "\r\n\r\n") != NULL)
        break;
    }
    buf[len] = '\0';
    if (strstr(buf, "hang") != NULL) {
      while (read(c, buf, sizeof(buf)) > 0) {
      }
    } else {
      static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
      (void)!write(c, resp, sizeof(resp) - 1);
    }
    close(c);
  }
  return NULL;
}

/* One thread per connection, so a hanging one holds up nobody; "/quit" ends it. */
static void *server_main(void *arg) {
  struct server *s = arg;
  for (;;) {
    int c = accept(s->fd, NULL, NULL);
    if (c < 0)
      return NULL;
    char peek[64];
    ssize_t n = recv(c, peek, sizeof(peek) - 1, MSG_PEEK);
    if (n > 0) {
      peek[n] = '\0';
      if (strstr(peek, "/quit") != NULL) {
        close(c);
        return NULL;
      }
    }
    pthread_t t;
    pthread_create(&t, NULL, serve_conn, (void *)(intptr_t)c);
    pthread_detach(t);
  }
}

static void server_start(struct server *s) {
  s->fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(s->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
  assert_int_equal(listen(s->fd, 16), 0);
  socklen_t sl = sizeof(sin);
  getsockname(s->fd, (struct sockaddr *)&sin, &sl);
  s->port = ntohs(sin.sin_port);
  pthread_create(&s->thread, NULL, server_main, s);
}

static void server_stop(struct server *s) {
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/quit", s->port);
  CURL *e = curl_easy_init();
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 2000L);
  curl_easy_perform(e);
  curl_easy_cleanup(e);
  pthread_join(s->thread, NULL);
  close(s->fd);
}

struct xfer_state {
  tusc_curl_xfer_t xfer;
  CURL *easy;
  int calls;
  CURLcode result;
};

static size_t discard(char *d, size_t size, size_t n, void *u) {
  (void)d;
  (void)u;
  return size * n;
}

static void on_done(tusc_curl_xfer_t *xfer, CURLcode result) {
  struct xfer_state *x = xfer->data;
  x->calls++;
  x->result = result;
}

static void xfer_init(struct xfer_state *x, int port, const char *path) {
  char url[96];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
  memset(x, 0, sizeof(*x));
  x->xfer.data = x;
  x->easy = curl_easy_init();
  curl_easy_setopt(x->easy, CURLOPT_URL, url);
  curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, 20000L);
}

static int closed_calls;
static void on_closed(void *arg) {
  (void)arg;
  closed_calls++;
}

static void test_transfers_finish_once_and_remove_is_silent(void **state) {
  (void)state;
  struct server srv;
  server_start(&srv);
  uv_loop_t loop;
  uv_loop_init(&loop);
  tusc_curl_loop_t *cl = NULL;
  assert_int_equal(tusc_curl_loop_new(&loop, &cl), 0);

  struct xfer_state a, b, hang;
  xfer_init(&a, srv.port, "/a");
  xfer_init(&b, srv.port, "/b");
  xfer_init(&hang, srv.port, "/hang");
  assert_int_equal(tusc_curl_loop_add(cl, &a.xfer, a.easy, on_done), 0);
  assert_int_equal(tusc_curl_loop_add(cl, &b.xfer, b.easy, on_done), 0);
  assert_int_equal(tusc_curl_loop_add(cl, &hang.xfer, hang.easy, on_done), 0);
  /* Never from inside add. */
  assert_int_equal(a.calls + b.calls + hang.calls, 0);
  assert_true(tusc_curl_xfer_active(&a.xfer));

  while (a.calls == 0 || b.calls == 0)
    uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(a.calls, 1);
  assert_int_equal(b.calls, 1);
  assert_int_equal(a.result, CURLE_OK);
  long code = 0;
  curl_easy_getinfo(a.easy, CURLINFO_RESPONSE_CODE, &code);
  assert_int_equal(code, 200);
  assert_false(tusc_curl_xfer_active(&a.xfer));

  /* The easy handle may be added again (a retry). */
  assert_int_equal(tusc_curl_loop_add(cl, &a.xfer, a.easy, on_done), 0);
  while (a.calls == 1)
    uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(a.calls, 2);

  assert_true(tusc_curl_xfer_active(&hang.xfer));
  tusc_curl_loop_remove(cl, &hang.xfer);
  assert_false(tusc_curl_xfer_active(&hang.xfer));
  tusc_curl_loop_remove(cl, &hang.xfer); /* no-op */

  closed_calls = 0;
  tusc_curl_loop_close(cl, on_closed, NULL);
  assert_int_equal(tusc_curl_loop_add(cl, &b.xfer, b.easy, on_done), UV_ECANCELED);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(closed_calls, 1);
  assert_int_equal(hang.calls, 0);
  assert_int_equal(uv_loop_close(&loop), 0);
  curl_easy_cleanup(a.easy);
  curl_easy_cleanup(b.easy);
  curl_easy_cleanup(hang.easy);
  server_stop(&srv);
}

static void test_close_idle(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  tusc_curl_loop_t *cl = NULL;
  assert_int_equal(tusc_curl_loop_new(&loop, &cl), 0);
  closed_calls = 0;
  tusc_curl_loop_close(cl, on_closed, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(closed_calls, 1);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_transfers_finish_once_and_remove_is_silent),
      cmocka_unit_test(test_close_idle),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}

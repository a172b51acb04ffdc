/*
 * endpoint — the -metrics-listen server: an http server whose handler renders
 * metrics/metrics.c's exposition for every GET/HEAD on the configured path.
 */
#include "http/metrics_endpoint.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "metrics/metrics.h"
#include "net/listener.h"

/* metrics indexes its per-method series by enum tusc_http_method values (callers pass
 * req->method); this file sees both headers, so it holds the two numberings together. */
#define SAME_SLOT(m) ((int)TUSC_HTTP_##m == (int)TUSC_METRICS_##m)
_Static_assert(SAME_SLOT(OTHER) && SAME_SLOT(GET) && SAME_SLOT(HEAD) && SAME_SLOT(POST) &&
                   SAME_SLOT(PUT) && SAME_SLOT(PATCH) && SAME_SLOT(DELETE) && SAME_SLOT(OPTIONS) &&
                   TUSC_HTTP_OPTIONS + 1 == TUSC_METRICS_METHODS,
               "enum tusc_http_method and metrics' method slots disagree");
#undef SAME_SLOT

struct tusc_metrics_server_s {
  tusc_http_server_t *http;
  char *path;
};

static void ms_respond(tusc_http_request_t *req, int status, const char *ctype, const char *body,
                       size_t len) {
  tusc_http_response_t resp;
  tusc_http_response_init(&resp, status);
  tusc_http_response_header(&resp, "Content-Type", ctype);
  if (status == 405)
    tusc_http_response_header(&resp, "Allow", "GET, HEAD");
  tusc_http_respond(req, &resp, body, len);
}

static void ms_on_request(tusc_http_request_t *req, void *ctx) {
  tusc_metrics_server_t *s = ctx;
  if (strcmp(req->path, s->path) != 0) {
    ms_respond(req, 404, "text/plain; charset=utf-8", "404 page not found\n", 19);
    return;
  }
  if (req->method != TUSC_HTTP_GET && req->method != TUSC_HTTP_HEAD) {
    ms_respond(req, 405, "text/plain; charset=utf-8", "method not allowed\n", 19);
    return;
  }
  char *text = NULL;
  size_t len = 0;
  if (tusc_metrics_render(&text, &len) != 0) {
    ms_respond(req, 503, "text/plain; charset=utf-8", "out of memory\n", 14);
    return;
  }
  ms_respond(req, 200, TUSC_METRICS_CONTENT_TYPE, text, len);
  free(text);
}

static int ms_on_body(tusc_http_request_t *req, const char *data, size_t len, void *ctx) {
  (void)req, (void)data, (void)len, (void)ctx;
  return TUSC_EBAD_REQUEST; /* never started: every request is answered at once */
}

static void ms_on_body_end(tusc_http_request_t *req, void *ctx) {
  (void)req, (void)ctx;
}

static void ms_on_abort(tusc_http_request_t *req, int err, void *ctx) {
  (void)req, (void)err, (void)ctx;
}

static const tusc_http_handler_t ms_handler = {
    .on_request = ms_on_request,
    .on_body = ms_on_body,
    .on_body_end = ms_on_body_end,
    .on_abort = ms_on_abort,
};

static int split_addr(const char *addr, char *host, size_t cap, int *port) {
  const char *colon = strrchr(addr, ':');
  if (colon == NULL || colon[1] == '\0')
    return TUSC_EINVALID_ARGUMENT;
  char *end = NULL;
  long long p = strtoll(colon + 1, &end, 10);
  if (end == colon + 1 || *end != '\0' || p < 0 || p > 65535)
    return TUSC_EINVALID_ARGUMENT;
  const char *h = addr;
  size_t hl = (size_t)(colon - addr);
  if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
    h++;
    hl -= 2;
  } else if (memchr(h, ':', hl) != NULL) {
    return TUSC_EINVALID_ARGUMENT; /* a bare IPv6 address needs brackets */
  }
  if (hl >= cap)
    return TUSC_EINVALID_ARGUMENT;
  memcpy(host, h, hl);
  host[hl] = '\0';
  *port = (int)p;
  return 0;
}

int tusc_metrics_server_start(uv_loop_t *loop, const char *addr, const char *path,
                              const tusc_http_limits_t *limits, tusc_metrics_server_t **out,
                              int *port_out) {
  char host[256];
  int port = 0;
  int rc = split_addr(addr, host, sizeof(host), &port);
  if (rc < 0)
    return rc;
  tusc_metrics_server_t *s = calloc(1, sizeof(*s));
  if (s == NULL || (s->path = strdup(path)) == NULL) {
    free(s);
    return TUSC_ENOMEM;
  }
  tusc_listeners_t l;
  rc = tusc_listeners_open(host, port, NULL, 1, &l);
  if (rc < 0) {
    free(s->path);
    free(s);
    return rc;
  }
  int bound = l.port;
  int fd = l.fds[0];
  l.fds[0] = -1;
  tusc_listeners_close(&l);
  rc = tusc_http_server_new(loop, fd, limits, &ms_handler, s, &s->http);
  if (rc < 0) {
    free(s->path);
    free(s);
    return rc;
  }
  if (port_out != NULL)
    *port_out = bound;
  *out = s;
  return 0;
}

static void ms_stopped(tusc_http_server_t *http, void *arg) {
  tusc_metrics_server_t *s = arg;
  tusc_http_server_free(http);
  free(s->path);
  free(s);
}

void tusc_metrics_server_stop(tusc_metrics_server_t *server) {
  if (server == NULL)
    return;
  tusc_http_server_stop(server->http, true, ms_stopped, server);
}

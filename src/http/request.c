/*
 * request — the request API of http.h over a protocol's tusc_http_proto_t (see
 * request.h). Invariant kept here for every protocol: a request gets exactly one final
 * response; after the response is handed over (or the connection failed) nothing more
 * reaches the wire from the handler, and every write callback still runs exactly once.
 */
#include "http/request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/timeutil.h"
#include "http/internal.h"

/* --- the protocol's side ------------------------------------------------------------ */

void tusc_http_exchange_init(tusc_http_exchange_t *x, const tusc_http_proto_t *proto,
                             const tusc_http_handler_t *handler, void *handler_ctx,
                             uv_loop_t *loop) {
  memset(x, 0, sizeof(*x));
  x->proto = proto;
  x->handler = handler;
  x->handler_ctx = handler_ctx;
  x->loop = loop;
  x->req.content_length = -1;
  x->req.method_name = "-";
  x->req.target = "";
  x->req.path = "";
  x->req.query = "";
  x->req.start_ms = tusc_now_ms();
}

void tusc_http_exchange_dispose(tusc_http_exchange_t *x) {
  free(x->client);
  free(x->user);
  free(x->method);
  x->client = x->user = x->method = NULL;
}

bool tusc_http_exchange_handler_owns(const tusc_http_exchange_t *x) {
  return x->dispatched && !x->responding;
}

void tusc_http_exchange_dispatch(tusc_http_exchange_t *x) {
  x->dispatched = true;
  x->handler->on_request(&x->req, x->handler_ctx);
}

int tusc_http_exchange_body(tusc_http_exchange_t *x, const char *data, size_t len) {
  x->req.body_received += (int64_t)len;
  if (x->handler->on_body == NULL)
    return 0;
  return x->handler->on_body(&x->req, data, len, x->handler_ctx);
}

void tusc_http_exchange_body_end(tusc_http_exchange_t *x) {
  if (x->body_end_sent || x->aborted || x->responding)
    return;
  x->body_end_sent = true;
  if (x->handler->on_body_end != NULL)
    x->handler->on_body_end(&x->req, x->handler_ctx);
}

bool tusc_http_exchange_abort(tusc_http_exchange_t *x, int err) {
  if (!tusc_http_exchange_handler_owns(x) || x->aborted)
    return false;
  x->aborted = true;
  if (x->handler->on_abort != NULL)
    x->handler->on_abort(&x->req, err, x->handler_ctx);
  return true;
}

void tusc_http_exchange_log(const tusc_http_exchange_t *x) {
  if (!tusc_log_enabled(TUSC_LOG_INFO))
    return;
  const tusc_http_request_t *req = &x->req;
  char status[16], bytes_in[24], bytes_out[24], duration[24], remote[96];
  snprintf(status, sizeof(status), "%d", x->status);
  snprintf(bytes_in, sizeof(bytes_in), "%lld", (long long)req->body_received);
  snprintf(bytes_out, sizeof(bytes_out), "%lld", (long long)x->bytes_out);
  snprintf(duration, sizeof(duration), "%llu", (unsigned long long)(tusc_now_ms() - req->start_ms));
  if (x->client != NULL)
    snprintf(remote, sizeof(remote), "%s", x->client);
  else if (req->remote_addr[0] == '\0')
    snprintf(remote, sizeof(remote), "unix");
  else if (strchr(req->remote_addr, ':') != NULL)
    snprintf(remote, sizeof(remote), "[%s]:%d", req->remote_addr, req->remote_port);
  else
    snprintf(remote, sizeof(remote), "%s:%d", req->remote_addr, req->remote_port);
  /* Optional fields packed to the front: a NULL key ends the list. */
  const char *opt[8] = {NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
  size_t n = 0;
  if (x->method != NULL) {
    opt[n++] = "orig_method";
    opt[n++] = req->method_name;
  }
  if (x->user != NULL) {
    opt[n++] = "user";
    opt[n++] = x->user;
  }
  if (strcmp(x->proto->name, "HTTP/1.1") != 0) {
    opt[n++] = "proto"; /* only for HTTP/2, so that HTTP/1.1's lines stay as they were */
    opt[n++] = x->proto->name;
  }
  if (x->aborted) {
    opt[n++] = "aborted";
    opt[n++] = "true";
  }
  tusc_log_event(TUSC_LOG_INFO, "ResponseOutgoing", "method",
                 x->method != NULL ? x->method : req->method_name, "path",
                 req->path[0] ? req->path : "-", "status", status, "bytes_in", bytes_in,
                 "bytes_out", bytes_out, "duration_ms", duration, "remote", remote, opt[0], opt[1],
                 opt[2], opt[3], opt[4], opt[5], opt[6], opt[7], NULL);
}

enum tusc_http_method tusc_http_method_of(const char *name) {
  static const struct {
    const char *name;
    enum tusc_http_method m;
  } map[] = {{"GET", TUSC_HTTP_GET},       {"HEAD", TUSC_HTTP_HEAD},     {"POST", TUSC_HTTP_POST},
             {"PUT", TUSC_HTTP_PUT},       {"PATCH", TUSC_HTTP_PATCH},   {"DELETE", TUSC_HTTP_DELETE},
             {"OPTIONS", TUSC_HTTP_OPTIONS}};
  for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
    if (strcmp(name, map[i].name) == 0)
      return map[i].m;
  return TUSC_HTTP_OTHER;
}

/* --- the handler's side: headers ----------------------------------------------------- */

static const tusc_http_header_t *find_header(const tusc_http_request_t *req, const char *name,
                                             bool trailer) {
  for (size_t i = 0; i < req->header_count; i++)
    if (req->headers[i].trailer == trailer && tusc_http_name_eq(req->headers[i].name, name))
      return &req->headers[i];
  return NULL;
}

const tusc_http_header_t *tusc_http_header(const tusc_http_request_t *req, const char *name) {
  return find_header(req, name, false);
}

const tusc_http_header_t *tusc_http_trailer(const tusc_http_request_t *req, const char *name) {
  return find_header(req, name, true);
}

size_t tusc_http_header_count(const tusc_http_request_t *req, const char *name) {
  size_t n = 0;
  for (size_t i = 0; i < req->header_count; i++)
    if (!req->headers[i].trailer && tusc_http_name_eq(req->headers[i].name, name))
      n++;
  return n;
}

/* --- the handler's side: body --------------------------------------------------------- */

void tusc_http_body_start(tusc_http_request_t *req) {
  tusc_http_exchange_t *x = tusc_http_exchange_of(req);
  if (x->responding || x->aborted)
    return;
  x->proto->body_start(x);
}

void tusc_http_body_pause(tusc_http_request_t *req) {
  tusc_http_exchange_t *x = tusc_http_exchange_of(req);
  x->proto->body_pause(x);
}

void tusc_http_body_resume(tusc_http_request_t *req) {
  tusc_http_exchange_t *x = tusc_http_exchange_of(req);
  x->proto->body_resume(x);
}

/* --- the handler's side: responses ---------------------------------------------------- */

/* The one final response: false (resp disposed) for a second one. */
static bool begin_response(tusc_http_exchange_t *x, tusc_http_response_t *resp) {
  if (x->responding) {
    TUSC_LOG(TUSC_LOG_ERROR, "second response for %s %s ignored", x->req.method_name, x->req.path);
    tusc_http_response_dispose(resp);
    return false;
  }
  x->responding = true;
  return true;
}

/* Hands the head to the protocol, or drops it when the connection is gone. */
static void start_response(tusc_http_exchange_t *x, tusc_http_response_t *resp,
                           int64_t content_length, const void *body, size_t body_len) {
  if (x->discard) {
    x->status = resp->status;
    tusc_http_response_dispose(resp);
    return;
  }
  if (resp->status < 200) {
    /* A 1xx does not end a request (tusc_http_send_interim sends those). */
    TUSC_LOG(TUSC_LOG_ERROR, "%s %s: %d is no final status; answering 500", x->req.method_name,
             x->req.path, resp->status);
    resp->status = 500;
  }
  x->status = resp->status;
  x->proto->respond_start(x, resp, content_length, body, body_len);
}

void tusc_http_respond(tusc_http_request_t *req, tusc_http_response_t *resp, const void *body,
                       size_t body_len) {
  tusc_http_exchange_t *x = tusc_http_exchange_of(req);
  if (!begin_response(x, resp))
    return;
  x->response_ended = true;
  start_response(x, resp, (int64_t)body_len, body, body_len);
  x->proto->respond_end(x);
}

void tusc_http_respond_start(tusc_http_request_t *req, tusc_http_response_t *resp,
                             int64_t content_length) {
  tusc_http_exchange_t *x = tusc_http_exchange_of(req);
  if (!begin_response(x, resp))
    return;
  x->streaming = true;
  x->stream_length = content_length;
  start_response(x, resp, content_length, NULL, 0);
}

void tusc_http_respond_write(tusc_http_request_t *req, const void *data, size_t len,
                             tusc_http_write_cb cb, void *arg) {
  tusc_http_exchange_t *x = tusc_http_exchange_of(req);
  int status = 0;
  if (!x->streaming || x->response_ended) {
    TUSC_LOG(TUSC_LOG_ERROR, "respond_write outside a streamed response");
    status = UV_EINVAL;
  } else if (x->discard) {
    status = UV_ECANCELED;
  } else if (req->method != TUSC_HTTP_HEAD && tusc_http_status_has_body(x->status) && len > 0) {
    x->bytes_out += (int64_t)len;
    x->proto->respond_write(x, data, len, cb, arg);
    return;
  }
  /* Nothing to send: the callback still comes, later. */
  if (cb != NULL)
    x->proto->complete_later(x, cb, arg, status);
}

void tusc_http_respond_end(tusc_http_request_t *req) {
  tusc_http_exchange_t *x = tusc_http_exchange_of(req);
  if (!x->streaming || x->response_ended)
    return;
  x->response_ended = true;
  x->proto->respond_end(x);
}

void tusc_http_send_interim(tusc_http_request_t *req, tusc_http_response_t *resp) {
  tusc_http_exchange_t *x = tusc_http_exchange_of(req);
  if (x->responding || x->discard || resp->status < 100 || resp->status >= 200 ||
      resp->status == 101) {
    tusc_http_response_dispose(resp);
    return;
  }
  x->proto->send_interim(x, resp);
}

/* --- the handler's side: the rest ------------------------------------------------------ */

static void replace(char **slot, const char *value) {
  free(*slot);
  *slot = value ? strdup(value) : NULL;
}

void tusc_http_request_set_client(tusc_http_request_t *req, const char *addr) {
  replace(&tusc_http_exchange_of(req)->client, addr);
}

void tusc_http_request_set_method(tusc_http_request_t *req, const char *method) {
  replace(&tusc_http_exchange_of(req)->method, method);
}

void tusc_http_request_set_user(tusc_http_request_t *req, const char *user) {
  replace(&tusc_http_exchange_of(req)->user, user);
}

uv_loop_t *tusc_http_request_loop(const tusc_http_request_t *req) {
  return ((const tusc_http_exchange_t *)req)->loop;
}

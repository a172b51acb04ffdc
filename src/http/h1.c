/*
 * h1 — HTTP/1.1 requests on a connection (see h1.h).
 *
 * Parsing stops (and with it the reading of the socket, see can_parse) after a head
 * until the handler has it, after each message until its response is written (that is
 * how pipelined requests wait), and while the handler has the body paused. Whether more
 * bytes may be parsed is decided by can_parse() alone.
 *
 * The handler is called from inside h1_feed (conn->in_feed): a request it ends
 * there is freed once the feed is over, never under the decoder's feet.
 */
#include "http/h1.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "http/h1_decoder.h"
#include "http/internal.h"
#include "http/request.h"
#include "net/tls.h"

struct tusc_h1_req_s {
  tusc_http_exchange_t x; /* first: &x.req is the handler's pointer */
  tusc_http_conn_t *conn;
  tusc_h1_decoder_t *decoder;
  uint64_t head_start_ms; /* loop time of the request's first byte */
  bool has_body;
  bool body_started;
  bool body_paused;
  bool msg_complete;     /* the decoder saw the end of the message */
  bool body_end_pending; /* ... while the body was paused: on_body_end waits */
  bool close_after;
  bool linger_after; /* unread request bytes may follow: half-close, then drain */
};

/* A write of ours: the head (+ body) of a response, a streamed chunk, an interim
 * response, or a completion without bytes. */
struct h1_write {
  tusc_http_write_t base; /* first */
  struct tusc_h1_req_s *ctx;
  tusc_http_write_cb cb; /* the handler's, for streamed chunks */
  void *arg;
};

static const char continue_line[] = "HTTP/1.1 100 Continue\r\n\r\n";
static const tusc_http_proto_t h1_proto;

static void http_error(tusc_http_conn_t *conn, int status, int err, const char *message);

static struct tusc_h1_req_s *h1_of(tusc_http_exchange_t *x) {
  return (struct tusc_h1_req_s *)x;
}

static bool handler_owns(const struct tusc_h1_req_s *ctx) {
  return tusc_http_exchange_handler_owns(&ctx->x);
}

static void req_free(struct tusc_h1_req_s *ctx) {
  tusc_h1_decoder_free(ctx->decoder);
  tusc_http_exchange_dispose(&ctx->x);
  free(ctx);
}

/* --- reading a request ------------------------------------------------------------- */

static bool can_parse(const tusc_http_conn_t *conn) {
  const struct tusc_h1_req_s *ctx = conn->req;
  if (conn->closing || conn->lingering)
    return false;
  if (ctx == NULL)
    return !conn->server->stopping && conn->writes_pending == 0;
  if (!ctx->x.dispatched)
    return !ctx->x.responding;
  if (ctx->msg_complete || ctx->x.aborted)
    return false;
  if (!ctx->has_body)
    return true; /* only the head's last byte and the message end are left */
  if (ctx->x.responding)
    return false;
  return ctx->body_started && !ctx->body_paused;
}

/* While the handler works on a request and reads nothing from it (no body, a body not
 * started yet, or paused), the socket is still read, so that a client that has gone
 * (EOF, reset) is noticed at once and the handler's on_abort can drop its work.
 * Whatever arrives meanwhile (a pipelined request, early body bytes) is kept in
 * conn->pending, at most max_header_size bytes; reading stops at that cap. Returns how
 * many more bytes may be read in this state, 0 when not watching. */
static size_t watch_room(const tusc_http_conn_t *conn) {
  const struct tusc_h1_req_s *ctx = conn->req;
  if (conn->closing || conn->lingering || ctx == NULL || !handler_owns(ctx) || ctx->x.aborted ||
      can_parse(conn))
    return 0;
  size_t held = conn->pending != NULL ? conn->pending_len - conn->pending_off : 0;
  size_t cap = conn->server->limits.max_header_size;
  return held < cap ? cap - held : 0;
}

static size_t h1_read_room(const tusc_http_conn_t *conn) {
  return can_parse(conn) ? SIZE_MAX : watch_room(conn);
}

static int on_body(void *arg, const char *at, size_t len) {
  struct tusc_h1_req_s *ctx = arg;
  if (tusc_http_exchange_body(&ctx->x, at, len) < 0) {
    /* The handler stops the body and responds; nothing more is parsed. */
    ctx->body_paused = true;
    ctx->close_after = true;
    return TUSC_H1_BODY_PAUSE;
  }
  const tusc_http_request_t *req = &ctx->x.req;
  bool body_complete = !req->chunked && req->body_received == req->content_length;
  if ((ctx->body_paused || ctx->x.aborted || ctx->x.responding) && !body_complete) {
    /* With the last byte of a sized body the decoder goes on to the message end, which
     * then waits (body_end_pending) for the resume. */
    return TUSC_H1_BODY_PAUSE;
  }
  return 0;
}

static int request_new(tusc_http_conn_t *conn) {
  tusc_http_server_t *server = conn->server;
  struct tusc_h1_req_s *ctx = calloc(1, sizeof(*ctx));
  if (ctx == NULL)
    return TUSC_ENOMEM;
  tusc_http_exchange_init(&ctx->x, &h1_proto, server->handler, server->ctx, server->loop);
  tusc_h1_limits_t limits = {.max_header_size = server->limits.max_header_size,
                             .max_header_count = server->limits.max_header_count};
  int rc = tusc_h1_decoder_new(&limits, &ctx->x.req, on_body, ctx, &ctx->decoder);
  if (rc != 0) {
    free(ctx);
    return rc;
  }
  ctx->conn = conn;
  ctx->x.req.conn = conn;
  ctx->head_start_ms = uv_now(server->loop);
  tusc_http_conn_head_started(conn);
  conn->req = ctx;
  return 0;
}

static void dispatch(struct tusc_h1_req_s *ctx) {
  tusc_http_conn_t *conn = ctx->conn;
  tusc_http_request_t *req = &ctx->x.req;
  ctx->has_body = tusc_h1_decoder_has_body(ctx->decoder);
  tusc_http_conn_peer(conn, req);
  req->tls = tusc_http_conn_secure(conn);
  conn->activity_ms = uv_now(conn->server->loop);
  TUSC_LOG(TUSC_LOG_DEBUG, "request %s %s from %s", req->method_name, req->target,
           req->remote_addr);
  tusc_http_exchange_dispatch(&ctx->x);
}

static void deliver_body_end(struct tusc_h1_req_s *ctx) {
  if (ctx->x.body_end_sent || ctx->x.aborted || ctx->x.responding)
    return;
  ctx->body_end_pending = false;
  tusc_http_exchange_body_end(&ctx->x);
}

static void message_end(struct tusc_h1_req_s *ctx) {
  ctx->msg_complete = true;
  if (!ctx->has_body)
    return;
  if (ctx->body_paused)
    ctx->body_end_pending = true;
  else
    deliver_body_end(ctx);
}

/* A failure the client should hear about, while the handler owns the request: the
 * handler is told (it answers, e.g. 400 or 503) and the connection closes after. */
static void soft_abort(struct tusc_h1_req_s *ctx, int err) {
  ctx->close_after = true;
  tusc_http_exchange_abort(&ctx->x, err);
}

static void parse_failed(tusc_http_conn_t *conn, int err) {
  struct tusc_h1_req_s *ctx = conn->req;
  TUSC_LOG(TUSC_LOG_DEBUG, "bad request: %s (%s)", tusc_strerror(err),
           tusc_h1_decoder_error_text(ctx->decoder));
  tusc_h1_rejection_t rej;
  tusc_h1_decoder_rejection(ctx->decoder, &rej);
  if (rej.status != 0) {
    /* The handler never saw this request: we answer it. */
    http_error(conn, rej.status, rej.err, rej.message);
    return;
  }
  ctx->linger_after = true;
  if (handler_owns(ctx))
    soft_abort(ctx, err == TUSC_EHEADERS_TOO_LARGE ? err : TUSC_EBAD_REQUEST);
  else
    ctx->close_after = true;
}

static void request_done(tusc_http_conn_t *conn) {
  struct tusc_h1_req_s *ctx = conn->req;
  if (!ctx->x.discard || ctx->x.status != 0)
    tusc_http_exchange_log(&ctx->x);
  bool close = ctx->close_after || ctx->x.discard || conn->server->stopping;
  bool linger = ctx->linger_after || (ctx->has_body && !ctx->msg_complete);
  conn->req = NULL;
  req_free(ctx);
  tusc_http_conn_request_ended(conn, close, linger);
}

/* Frees the current request once its response is ended and written. */
static void maybe_finish(tusc_http_conn_t *conn) {
  struct tusc_h1_req_s *ctx = conn->req;
  if (ctx != NULL && ctx->x.response_ended && conn->writes_pending == 0 && !conn->in_feed)
    request_done(conn);
}

static void feed_done(tusc_http_conn_t *conn) {
  conn->in_feed = false;
  maybe_finish(conn);
}

static size_t h1_feed(tusc_http_conn_t *conn, const char *data, size_t len) {
  size_t off = 0;
  conn->in_feed = true;
  while (off < len && can_parse(conn)) {
    if (conn->req == NULL && request_new(conn) != 0) {
      tusc_http_conn_close(conn);
      break;
    }
    struct tusc_h1_req_s *ctx = conn->req;
    size_t n = 0;
    int ev = tusc_h1_decode(ctx->decoder, data + off, len - off, &n);
    off += n;
    if (ev < 0) {
      parse_failed(conn, ev);
      break;
    }
    if (ev == TUSC_H1_HEAD)
      dispatch(ctx);
    else if (ev == TUSC_H1_END)
      message_end(ctx);
  }
  feed_done(conn);
  return off;
}

static void h1_resume(tusc_http_conn_t *conn) {
  struct tusc_h1_req_s *ctx = conn->req;
  if (ctx == NULL || !ctx->body_end_pending || ctx->body_paused)
    return;
  conn->in_feed = true;
  deliver_body_end(ctx);
  feed_done(conn);
}

/* Resumes parsing after the handler allowed it: inside a feed the loop just goes on;
 * otherwise waiting bytes are parsed from the idle callback (never inside the
 * handler's own call) and the socket is read again. */
static void continue_body(tusc_http_conn_t *conn) {
  conn->activity_ms = uv_now(conn->server->loop);
  if (conn->in_feed || conn->closing)
    return;
  if (conn->pending != NULL)
    tusc_http_conn_kick(conn);
  else
    tusc_http_conn_update_reading(conn);
}

/* --- writing ------------------------------------------------------------------------ */

static void on_write_done(tusc_http_write_t *base, int status) {
  struct h1_write *wr = (struct h1_write *)base;
  struct tusc_h1_req_s *ctx = wr->ctx;
  tusc_http_conn_t *conn = ctx->conn;
  if (wr->cb != NULL)
    wr->cb(&ctx->x.req, status, wr->arg);
  free(wr); /* the whole buffer when the write carried a head */
  if (conn->req == ctx)
    maybe_finish(conn);
}

static int queue_write(struct tusc_h1_req_s *ctx, struct h1_write *wr, const char *base,
                       size_t len) {
  wr->ctx = ctx;
  wr->base.done = on_write_done;
  return tusc_http_conn_write(ctx->conn, &wr->base, base, len);
}

/* Decides keep-alive and sends the head (and `body` unless HEAD). */
static void send_response(struct tusc_h1_req_s *ctx, tusc_http_response_t *resp, const void *body,
                          size_t body_len, int64_t content_length) {
  tusc_http_conn_t *conn = ctx->conn;
  tusc_http_server_t *server = conn->server;
  const tusc_http_request_t *req = &ctx->x.req;
  bool body_unread = ctx->has_body && !ctx->msg_complete;
  if (body_unread)
    ctx->linger_after = true;
  bool close = resp->close || !req->keep_alive || server->stopping || body_unread ||
               ctx->close_after || content_length < 0 || !ctx->x.dispatched;
  ctx->close_after = close;
  const char *hsts = req->tls ? tusc_tls_hsts(server->tls) : NULL;
  if (hsts != NULL)
    tusc_http_response_header(resp, "Strict-Transport-Security", hsts);
  bool is_head = req->method == TUSC_HTTP_HEAD;
  tusc_http_head_opts_t opts = {
      .head_request = is_head,
      .close = close,
      .keep_alive_header = !close && req->http_minor == 0,
      .content_length = content_length,
      .date = tusc_http_conn_date(conn),
  };
  /* Enforced here for every caller: a bodiless answer carries no byte after its head,
   * whatever body it was handed, or the stream's next response would start there. */
  size_t send_body = is_head || !tusc_http_status_has_body(resp->status) ? 0 : body_len;
  size_t head_len = 0;
  char *buf = tusc_http_build_head(resp, &opts, sizeof(struct h1_write), send_body, &head_len);
  tusc_http_response_dispose(resp);
  if (buf == NULL) {
    tusc_http_conn_fail(conn, UV_ENOMEM);
    return;
  }
  struct h1_write *wr = (struct h1_write *)buf;
  memset(wr, 0, sizeof(*wr));
  char *head = buf + sizeof(*wr);
  if (send_body > 0)
    memcpy(head + head_len, body, send_body);
  ctx->x.bytes_out += (int64_t)send_body;
  int rc = queue_write(ctx, wr, head, head_len + send_body);
  if (rc != 0) {
    free(buf);
    tusc_http_conn_fail(conn, rc);
  }
}

/* Answers a request the handler never saw: "ERR_CODE: message", then close. */
static void http_error(tusc_http_conn_t *conn, int status, int err, const char *message) {
  struct tusc_h1_req_s *ctx = conn->req;
  if (ctx->x.responding)
    return;
  ctx->x.responding = true;
  ctx->x.response_ended = true;
  ctx->close_after = true;
  ctx->linger_after = true;
  char body[256];
  int n = snprintf(body, sizeof(body), "%s: %s\n", tusc_error_code(err),
                   message ? message : tusc_strerror(err));
  if (n < 0 || (size_t)n >= sizeof(body))
    n = 0;
  tusc_http_response_t resp;
  tusc_http_response_init(&resp, status);
  tusc_http_response_header(&resp, "Content-Type", "text/plain; charset=utf-8");
  tusc_http_response_header(&resp, "Tus-Resumable", "1.0.0");
  tusc_http_response_header(&resp, "X-Content-Type-Options", "nosniff");
  resp.close = true;
  tusc_http_request_t *req = &ctx->x.req;
  if (req->remote_addr[0] == '\0')
    tusc_http_conn_peer(conn, req);
  /* Rejections before dispatch must still carry HSTS (send_response adds it). */
  req->tls = tusc_http_conn_secure(conn);
  char status_text[16];
  snprintf(status_text, sizeof(status_text), "%d", status);
  tusc_log_event(TUSC_LOG_INFO, "RequestRejected", "status", status_text, "reason",
                 message ? message : tusc_strerror(err), "remote", req->remote_addr, NULL);
  ctx->x.status = status;
  send_response(ctx, &resp, body, (size_t)n, n);
}

/* --- the request API's HTTP/1.1 side (tusc_http_proto_t) ------------------------------ */

static void h1_body_start(tusc_http_exchange_t *x) {
  struct tusc_h1_req_s *ctx = h1_of(x);
  tusc_http_conn_t *conn = ctx->conn;
  if (!ctx->has_body || ctx->body_started)
    return;
  ctx->body_started = true;
  if (x->req.expect_continue && !conn->closing) {
    struct h1_write *wr = calloc(1, sizeof(*wr));
    if (wr != NULL && queue_write(ctx, wr, continue_line, sizeof(continue_line) - 1) != 0)
      free(wr);
  }
  continue_body(conn);
}

static void h1_body_pause(tusc_http_exchange_t *x) {
  struct tusc_h1_req_s *ctx = h1_of(x);
  if (!ctx->has_body || ctx->msg_complete || ctx->body_paused)
    return;
  ctx->body_paused = true;
  if (!ctx->conn->in_feed)
    tusc_http_conn_update_reading(ctx->conn);
}

static void h1_body_resume(tusc_http_exchange_t *x) {
  struct tusc_h1_req_s *ctx = h1_of(x);
  if (!ctx->body_paused)
    return;
  ctx->body_paused = false;
  if (ctx->body_end_pending) {
    /* The message ended while paused; its end is all that is left to tell. */
    tusc_http_conn_kick(ctx->conn);
    return;
  }
  continue_body(ctx->conn);
}

static void h1_respond_start(tusc_http_exchange_t *x, tusc_http_response_t *resp,
                             int64_t content_length, const void *body, size_t body_len) {
  struct tusc_h1_req_s *ctx = h1_of(x);
  tusc_http_conn_t *conn = ctx->conn;
  if (conn->closing) {
    tusc_http_response_dispose(resp);
    return;
  }
  send_response(ctx, resp, body, body_len, content_length);
  /* Body bytes that arrived but were never given to the handler may wait in
   * conn->pending; reading stays off until the response is out. */
  if (!conn->in_feed)
    tusc_http_conn_update_reading(conn);
}

static void h1_complete_later(tusc_http_exchange_t *x, tusc_http_write_cb cb, void *arg,
                              int status) {
  struct tusc_h1_req_s *ctx = h1_of(x);
  struct h1_write *wr = calloc(1, sizeof(*wr));
  if (wr == NULL) {
    /* Without memory the callback runs now; the handler copes with reentry better
     * than with a lost callback. */
    cb(&x->req, status, arg);
    return;
  }
  wr->ctx = ctx;
  wr->cb = cb;
  wr->arg = arg;
  wr->base.done = on_write_done;
  tusc_http_conn_complete_later(ctx->conn, &wr->base, status);
}

static void h1_respond_write(tusc_http_exchange_t *x, const void *data, size_t len,
                             tusc_http_write_cb cb, void *arg) {
  struct tusc_h1_req_s *ctx = h1_of(x);
  tusc_http_conn_t *conn = ctx->conn;
  int rc = UV_ECANCELED;
  struct h1_write *wr = NULL;
  if (!conn->closing) {
    wr = calloc(1, sizeof(*wr));
    rc = wr == NULL ? UV_ENOMEM : 0;
  }
  if (rc == 0) {
    wr->cb = cb;
    wr->arg = arg;
    rc = queue_write(ctx, wr, data, len);
  }
  if (rc == 0)
    return;
  free(wr);
  tusc_http_conn_fail(conn, rc);
  if (cb != NULL)
    h1_complete_later(x, cb, arg, rc);
}

static void h1_respond_end(tusc_http_exchange_t *x) {
  struct tusc_h1_req_s *ctx = h1_of(x);
  if (x->streaming && x->req.method != TUSC_HTTP_HEAD && tusc_http_status_has_body(x->status) &&
      x->bytes_out != x->stream_length)
    ctx->close_after = true; /* the client cannot tell where this response ends */
  maybe_finish(ctx->conn);
}

static void h1_send_interim(tusc_http_exchange_t *x, tusc_http_response_t *resp) {
  struct tusc_h1_req_s *ctx = h1_of(x);
  if (ctx->conn->closing || x->req.http_minor == 0) {
    tusc_http_response_dispose(resp);
    return;
  }
  tusc_http_head_opts_t opts = {.content_length = -1};
  size_t head_len = 0;
  char *buf = tusc_http_build_head(resp, &opts, sizeof(struct h1_write), 0, &head_len);
  tusc_http_response_dispose(resp);
  if (buf == NULL)
    return;
  struct h1_write *wr = (struct h1_write *)buf;
  memset(wr, 0, sizeof(*wr));
  if (queue_write(ctx, wr, buf + sizeof(*wr), head_len) != 0)
    free(buf);
}

static const tusc_http_proto_t h1_proto = {
    .name = "HTTP/1.1",
    .body_start = h1_body_start,
    .body_pause = h1_body_pause,
    .body_resume = h1_body_resume,
    .respond_start = h1_respond_start,
    .respond_write = h1_respond_write,
    .respond_end = h1_respond_end,
    .send_interim = h1_send_interim,
    .complete_later = h1_complete_later,
};

/* --- what the connection asks ------------------------------------------------------- */

static enum tusc_http_wait h1_wait_state(const tusc_http_conn_t *conn, uint64_t *head_start_ms) {
  const struct tusc_h1_req_s *ctx = conn->req;
  if (ctx == NULL)
    return TUSC_HTTP_WAIT_IDLE;
  if (!ctx->x.dispatched) {
    *head_start_ms = ctx->head_start_ms;
    return TUSC_HTTP_WAIT_HEAD;
  }
  return can_parse(conn) ? TUSC_HTTP_WAIT_BODY : TUSC_HTTP_BUSY;
}

static void h1_closing(tusc_http_conn_t *conn) {
  struct tusc_h1_req_s *ctx = conn->req;
  if (ctx != NULL && !ctx->x.dispatched) {
    /* Nobody but us knows this request. */
    conn->req = NULL;
    req_free(ctx);
  }
}

static void h1_failed(tusc_http_conn_t *conn, int err) {
  struct tusc_h1_req_s *ctx = conn->req;
  if (ctx == NULL)
    return;
  ctx->x.discard = true;
  if (!handler_owns(ctx) || ctx->x.aborted)
    return;
  if (err == UV_EOF)
    err = TUSC_EUNEXPECTED_EOF; /* the client left in the middle of a request */
  TUSC_LOG(TUSC_LOG_DEBUG, "request %s %s aborted: %s", ctx->x.req.method_name, ctx->x.req.path,
           tusc_strerror(err));
  tusc_http_exchange_abort(&ctx->x, err);
}

static void h1_stopping(tusc_http_conn_t *conn) {
  struct tusc_h1_req_s *ctx = conn->req;
  if (ctx == NULL) {
    if (conn->writes_pending == 0)
      tusc_http_conn_close(conn);
    return;
  }
  if (!ctx->x.dispatched) {
    tusc_http_conn_close(conn);
    return;
  }
  ctx->close_after = true;
  if (!conn->server->abort_in_flight)
    return;
  if (handler_owns(ctx))
    soft_abort(ctx, TUSC_ESERVER_SHUTDOWN);
  else if (ctx->x.streaming && !ctx->x.response_ended)
    tusc_http_conn_fail(conn, TUSC_ESERVER_SHUTDOWN); /* a download would outlast the stop */
}

static void h1_server_init(const tusc_http_server_t *server) {
  tusc_h1_decoder_allow_head(server->limits.max_header_size);
}

const tusc_http_conn_proto_t tusc_h1_conn_proto = {
    .name = "HTTP/1.1",
    .server_init = h1_server_init,
    .feed = h1_feed,
    .resume = h1_resume,
    .read_room = h1_read_room,
    .wait_state = h1_wait_state,
    .closing = h1_closing,
    .failed = h1_failed,
    .stopping = h1_stopping,
};

/*
 * request — the protocol-neutral request: the tusc_http_request_t a handler holds, the
 * state of its exchange (who owns it, how far its response is), and the seam a protocol
 * implements (tusc_http_proto_t). The request API of http.h (body_start/pause/resume,
 * respond*, send_interim, header lookups, set_client/method/user, request_loop) lives
 * in request.c and reaches the wire only through the request's proto, so a handler
 * (tus/) never knows which protocol carries it. HTTP/1.1 is h1.c; an HTTP/2 stream
 * would be one more implementation of the same table.
 *
 * Body back-pressure is a credit of one, as in h2o's proceed_req: the handler gets one
 * piece per on_body call; after tusc_http_body_pause no piece follows until
 * tusc_http_body_resume. How the protocol holds the rest back is its own business:
 * HTTP/1.1 stops reading the socket; HTTP/2 would withhold WINDOW_UPDATE.
 *
 * Division of work: request.c checks what is the same for every protocol (one response
 * per request, nothing after the response ended or the connection failed, HEAD and
 * 204/304 carry no body bytes, 1xx only before the final response) and keeps what the
 * access log shows; a proto op is only called when there is something to put on the
 * wire. A protocol tells the handler about the request through the tusc_http_exchange_*
 * functions below, which keep the handler's side of the contract (on_abort at most
 * once and only while the handler owns the request, no body after it).
 *
 * Threads: everything runs on the loop that owns the request's connection.
 */
#ifndef TUSC_HTTP_REQUEST_H
#define TUSC_HTTP_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "http/http.h"

typedef struct tusc_http_exchange_s tusc_http_exchange_t;

/* A protocol's side of a request. Every op is called on a live exchange that has not
 * been handed back (see each op for what request.c has checked before). */
typedef struct tusc_http_proto_s {
  const char *name; /* "HTTP/1.1" */
  /* The handler wants the body (it is not answering and was not aborted): send
   * 100 Continue if the client expects it, then deliver through exchange_body. */
  void (*body_start)(tusc_http_exchange_t *x);
  /* Stop delivering (and stop taking bytes from the client) / go on. */
  void (*body_pause)(tusc_http_exchange_t *x);
  void (*body_resume)(tusc_http_exchange_t *x);
  /* Sends the final head (x->status >= 200 already set) and, for a whole response,
   * `body` (NULL for a streamed one). content_length < 0: unknown. Takes over resp's
   * memory. The connection has not failed (x->discard is false). */
  void (*respond_start)(tusc_http_exchange_t *x, tusc_http_response_t *resp, int64_t content_length,
                        const void *body, size_t body_len);
  /* Queues len > 0 bytes of a streamed body (`data` stays valid until cb). cb runs
   * exactly once, later: once the bytes are with the kernel, or with status < 0. This
   * is the back-pressure point of downloads. */
  void (*respond_write)(tusc_http_exchange_t *x, const void *data, size_t len,
                        tusc_http_write_cb cb, void *arg);
  /* The response is complete (x->response_ended is set): once its writes are done the
   * protocol logs it (exchange_log) and frees the request. */
  void (*respond_end)(tusc_http_exchange_t *x);
  /* An interim response (100..199 except 101) before the final one; takes over resp's
   * memory. May drop it (e.g. an HTTP/1.0 client). */
  void (*send_interim)(tusc_http_exchange_t *x, tusc_http_response_t *resp);
  /* Calls cb(req, status, arg) on a later loop turn without writing anything: the
   * completion of a write that had nothing to send or could not be tried. */
  void (*complete_later)(tusc_http_exchange_t *x, tusc_http_write_cb cb, void *arg, int status);
} tusc_http_proto_t;

struct tusc_http_exchange_s {
  tusc_http_request_t req; /* first: the handler's pointer is &x->req */
  const tusc_http_proto_t *proto;
  const tusc_http_handler_t *handler;
  void *handler_ctx;
  uv_loop_t *loop;

  bool dispatched;     /* on_request was called: the handler knows the request */
  bool responding;     /* a respond function was called: the handler reads no more */
  bool response_ended; /* the whole response has been handed over */
  bool streaming;      /* respond_start (not respond) */
  bool aborted;        /* on_abort was called */
  bool discard;        /* the connection failed: the response is dropped */
  bool body_end_sent;
  int status;            /* of the final response, for the access log */
  int64_t stream_length; /* announced by respond_start */
  int64_t bytes_out;     /* response body bytes handed over */
  char *client;          /* tusc_http_request_set_client */
  char *user;            /* tusc_http_request_set_user */
  char *method;          /* tusc_http_request_set_method */
};

/* Sets up a request of `proto` on `loop` for `handler`, with the request's defaults
 * (no head yet: method "-", empty target, content_length -1, start time now). */
void tusc_http_exchange_init(tusc_http_exchange_t *x, const tusc_http_proto_t *proto,
                             const tusc_http_handler_t *handler, void *handler_ctx,
                             uv_loop_t *loop);
/* Frees what the exchange holds (not x itself). */
void tusc_http_exchange_dispose(tusc_http_exchange_t *x);

static inline tusc_http_exchange_t *tusc_http_exchange_of(tusc_http_request_t *req) {
  return (tusc_http_exchange_t *)req;
}

/* The handler has the request and has not answered yet. */
bool tusc_http_exchange_handler_owns(const tusc_http_exchange_t *x);

/* The head is complete and valid: hands the request to the handler (on_request). */
void tusc_http_exchange_dispatch(tusc_http_exchange_t *x);
/* A piece of body: counts it and gives it to on_body. Returns on_body's answer (< 0:
 * the handler refuses the rest of the body and answers). */
int tusc_http_exchange_body(tusc_http_exchange_t *x, const char *data, size_t len);
/* The body ended (trailers, if any, are in the header list): on_body_end, once, unless
 * the handler is answering already or was aborted. */
void tusc_http_exchange_body_end(tusc_http_exchange_t *x);
/* The request cannot go on (`err`: TUSC_EUNEXPECTED_EOF, TUSC_EREAD_TIMEOUT,
 * TUSC_ESERVER_SHUTDOWN, TUSC_EBAD_REQUEST, a UV_E*): on_abort, at most once, and only
 * while the handler owns the request. Returns whether on_abort was called. */
bool tusc_http_exchange_abort(tusc_http_exchange_t *x, int err);
/* The access log line (ResponseOutgoing) of a finished request. */
void tusc_http_exchange_log(const tusc_http_exchange_t *x);

#endif

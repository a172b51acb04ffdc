/*
 * http — HTTP/1.1 server connections on a libuv loop, as seen by a request handler.
 *
 * One tusc_http_request_t per request. The http layer parses the request head, then
 * calls handler->on_request(). From there the handler owns the request's course:
 *
 *   - A request with a body (Content-Length > 0 or chunked) delivers it only after the
 *     handler calls tusc_http_body_start() (which sends "100 Continue" if the client
 *     asked for it). Body bytes arrive through handler->on_body (zero-copy, valid only
 *     during the call), then handler->on_body_end (trailers, if any, are then in the
 *     header list with `trailer` set). The handler may call tusc_http_body_pause() /
 *     tusc_http_body_resume() for back-pressure.
 *   - Exactly one response ends every request: tusc_http_respond() (whole response) or
 *     tusc_http_respond_start() + tusc_http_respond_write()* + tusc_http_respond_end()
 *     (streamed, e.g. downloads). After the response is handed over the request
 *     pointer is invalid to the handler. A response sent before the body was read
 *     whole makes the connection close after it (we do not drain unknown bodies).
 *   - If the connection fails (peer closed, read timeout, shutdown) while the handler
 *     owns the request, handler->on_abort(req, err) is called once (err =
 *     TUSC_EUNEXPECTED_EOF, TUSC_EREAD_TIMEOUT, TUSC_ESERVER_SHUTDOWN, or a UV_E*). No
 *     more body callbacks follow. The handler must still end the request with one
 *     respond call (it is then discarded) — that is what frees it.
 *
 * A client that goes away is noticed at once, also while no body is being read: the
 * socket is still read while the handler owns a request (bytes that arrive meanwhile
 * are kept for later, at most max_header_size of them; then reading pauses), and EOF
 * (a half-close too, as in Go's net/http) or a reset calls on_abort.
 *
 * Keep-alive and pipelining: the next request on a connection is parsed only after
 * the current response is fully written. Limits (header bytes → 431, header count →
 * 431, malformed → 400, body timeouts) are enforced here, before the handler sees
 * anything.
 *
 * Threads: everything here runs on the loop that owns the connection.
 */
#ifndef TUSC_HTTP_H
#define TUSC_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

typedef struct tusc_http_request_s tusc_http_request_t;
typedef struct tusc_http_conn_s tusc_http_conn_t;

enum tusc_http_method {
  TUSC_HTTP_OTHER = 0,
  TUSC_HTTP_GET,
  TUSC_HTTP_HEAD,
  TUSC_HTTP_POST,
  TUSC_HTTP_PUT,
  TUSC_HTTP_PATCH,
  TUSC_HTTP_DELETE,
  TUSC_HTTP_OPTIONS,
};

typedef struct tusc_http_header_s {
  const char *name;  /* as received, NUL-terminated */
  const char *value; /* NUL-terminated, surrounding whitespace trimmed */
  size_t name_len;
  size_t value_len;
  bool trailer;      /* arrived as a chunked trailer */
} tusc_http_header_t;

struct tusc_http_request_s {
  tusc_http_conn_t *conn;
  enum tusc_http_method method;
  const char *method_name;   /* "PATCH", NUL-terminated */
  const char *target;        /* raw request-target, NUL-terminated */
  const char *path;          /* target up to '?', NUL-terminated, still percent-encoded */
  const char *query;         /* after '?', or "" */
  tusc_http_header_t *headers;
  size_t header_count;
  int64_t content_length;    /* -1 when absent (chunked or no body) */
  bool chunked;
  bool expect_continue;
  bool keep_alive;           /* client wants it; the response may still close */
  int http_minor;            /* 0 or 1 */
  char remote_addr[64];      /* peer IP (v6 without brackets), "" for unix sockets */
  int remote_port;
  uint64_t start_ms;         /* monotonic, for access logs */
  int64_t body_received;     /* body bytes delivered so far */
  void *handler_data;        /* free for the handler */
  bool tls;                  /* the connection is TLS (Location then says https) */
};

/* Handler callbacks; `ctx` is the pointer given to the listener. */
typedef struct tusc_http_handler_s {
  void (*on_request)(tusc_http_request_t *req, void *ctx);
  /* Return 0 to continue, or a negative code to stop reading the body (the handler
   * then responds). */
  int (*on_body)(tusc_http_request_t *req, const char *data, size_t len, void *ctx);
  void (*on_body_end)(tusc_http_request_t *req, void *ctx);
  void (*on_abort)(tusc_http_request_t *req, int err, void *ctx);
} tusc_http_handler_t;

/* Case-insensitive lookup of the first header (not trailer) called `name`; NULL when
 * absent. tusc_http_header_count counts every occurrence (to refuse duplicates). */
const tusc_http_header_t *tusc_http_header(const tusc_http_request_t *req, const char *name);
size_t tusc_http_header_count(const tusc_http_request_t *req, const char *name);
/* Same for trailers. */
const tusc_http_header_t *tusc_http_trailer(const tusc_http_request_t *req, const char *name);

/* Starts delivering the body (sends 100 Continue when expected). No-op without body. */
void tusc_http_body_start(tusc_http_request_t *req);
void tusc_http_body_pause(tusc_http_request_t *req);
void tusc_http_body_resume(tusc_http_request_t *req);

/* --- responses ---------------------------------------------------------------- */

#define TUSC_HTTP_MAX_RESPONSE_HEADERS 40

typedef struct tusc_http_response_s {
  int status;
  size_t header_count;
  struct {
    char *name;
    char *value;
  } headers[TUSC_HTTP_MAX_RESPONSE_HEADERS];
  bool close; /* force Connection: close */
} tusc_http_response_t;

void tusc_http_response_init(tusc_http_response_t *resp, int status);
/* Adds a header (copies both). Silently ignores more than the maximum (logged). */
void tusc_http_response_header(tusc_http_response_t *resp, const char *name, const char *value);
void tusc_http_response_headerf(tusc_http_response_t *resp, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Frees header copies; called by the respond functions, so only needed for a
 * response that is never sent. */
void tusc_http_response_dispose(tusc_http_response_t *resp);

/* Sends status, headers, Content-Length = body_len and the body (copied). Adds Date,
 * Content-Length and Connection as needed; a HEAD response carries no body bytes.
 * Takes over resp's memory. Ends the request. */
void tusc_http_respond(tusc_http_request_t *req, tusc_http_response_t *resp, const void *body,
                       size_t body_len);

/* Streamed response with a known length. write_cb is called once the chunk given to
 * respond_write has been handed to the kernel (or the connection failed: status < 0)
 * — the back-pressure point for the next write. */
typedef void (*tusc_http_write_cb)(tusc_http_request_t *req, int status, void *arg);
void tusc_http_respond_start(tusc_http_request_t *req, tusc_http_response_t *resp,
                             int64_t content_length);
/* `data` must stay valid until write_cb. */
void tusc_http_respond_write(tusc_http_request_t *req, const void *data, size_t len,
                             tusc_http_write_cb cb, void *arg);
/* Ends the request (after the last write_cb). Once a streamed response has started,
 * connection failures reach the handler through write_cb (status < 0), not on_abort. */
void tusc_http_respond_end(tusc_http_request_t *req);

/* Sends a 1xx interim response (e.g. 104 Upload Resumption Supported) before the
 * final one; does not end the request. Ignored for HTTP/1.0 clients, for 101, or
 * once the final response has started. Takes over resp's memory. */
void tusc_http_send_interim(tusc_http_request_t *req, tusc_http_response_t *resp);

/* Replaces the peer address in the access log with `addr` (e.g. the client address
 * from X-Forwarded-For / Forwarded, once the handler trusts the proxy). Copied. */
void tusc_http_request_set_client(tusc_http_request_t *req, const char *addr);
/* The effective method (after X-HTTP-Method-Override) when it differs from the one on
 * the request line: the access log then shows method=<this> orig_method=<request line>.
 * Response framing still follows the request line. Copied. */
void tusc_http_request_set_method(tusc_http_request_t *req, const char *method);
/* The authenticated user (htpasswd name, JWT sub) for the access log's user= field;
 * NULL = anonymous (no field). Copied. */
void tusc_http_request_set_user(tusc_http_request_t *req, const char *user);

/* The loop the request lives on (for timers and work requests). */
uv_loop_t *tusc_http_request_loop(const tusc_http_request_t *req);

/* --- listeners ----------------------------------------------------------------- */

typedef struct tusc_http_limits_s {
  size_t max_header_size;   /* bytes of request line + headers → 431 beyond */
  size_t max_header_count;  /* → 431 beyond */
  uint64_t network_timeout_ms; /* idle keep-alive, header and body read timeout */
  /* The request line and headers (for a new connection: counted from accept) must
   * arrive whole within this; 0 = network_timeout_ms. The smaller of the two wins. */
  uint64_t header_timeout_ms;
  /* Admission of new connections (src/net/connlimit.h); NULL = unlimited. Refused ones
   * get a best-effort "503" and are closed at once. Shared by all servers. */
  struct tusc_connlimit_s *connlimit;
  /* HTTP/2 by prior knowledge on cleartext connections (-enable-h2c). Over TLS,
   * HTTP/2 follows ALPN (tusc_tls_options_t.h2). */
  bool h2c;
} tusc_http_limits_t;

typedef struct tusc_http_server_s tusc_http_server_t;

/* Creates a per-loop HTTP server on an already bound and listening socket `fd`
 * (TCP or unix; the server takes ownership of fd). Returns 0 or a negative code. */
int tusc_http_server_new(uv_loop_t *loop, int fd, const tusc_http_limits_t *limits,
                         const tusc_http_handler_t *handler, void *ctx,
                         tusc_http_server_t **out);

/* Graceful stop: close the listener and idle connections; requests in flight get
 * on_abort(TUSC_ESERVER_SHUTDOWN) when `abort_in_flight` is true (else they finish).
 * `done_cb` fires once every connection is closed; then call tusc_http_server_free. */
void tusc_http_server_stop(tusc_http_server_t *server, bool abort_in_flight,
                           void (*done_cb)(tusc_http_server_t *server, void *arg), void *arg);
void tusc_http_server_free(tusc_http_server_t *server);

/* Number of open connections (for tests / metrics). */
size_t tusc_http_server_connections(const tusc_http_server_t *server);

/* True when nothing is in flight on our side: every connection is between requests,
 * in the middle of a request head or body it is waiting for the client to send, or
 * draining before its close; no handler works on a request, no response is being
 * written, nothing is queued on the loop. A test client that has sent everything can
 * hang up then without cutting anything short (fuzz_http does). */
bool tusc_http_server_waiting(const tusc_http_server_t *server);

/* Serves every connection accepted from now on over TLS (src/net/tls.h), and adds
 * Strict-Transport-Security to their responses when `tls` has HSTS on. `tls` must
 * outlive the server. Call right after tusc_http_server_new. */
struct tusc_tls_s;
void tusc_http_server_set_tls(tusc_http_server_t *server, struct tusc_tls_s *tls);

#endif

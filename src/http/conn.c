/*
 * conn — HTTP/1.1 server connections: accept, read, parse, dispatch to the handler,
 * write responses, keep-alive, pipelining, timeouts, graceful stop.
 *
 * Memory: reads land in the server's one read buffer (per loop). Everything in it
 * is parsed before the read callback returns; whatever cannot be parsed yet (the
 * handler paused the body, or a pipelined request waits for the current response)
 * is copied into conn->pending and the socket stops being read until the pending
 * bytes are used up. A request's head storage (struct req_ctx) exists only from the
 * first byte of a request until its response is written, so an idle keep-alive
 * connection is a socket handle, a timer and this struct.
 *
 * Parser pauses: the parser is paused after the head (the handler is called outside
 * the parser), after each message (pipelining: the next request is parsed only when
 * the response is written), and in on_body when the handler asked for a pause.
 * Whether more bytes may be parsed is decided by can_parse() alone.
 *
 * Lifetime: a conn is freed only in its last close callback, and only once its
 * request (if any) has been ended by the handler and no write is outstanding. A
 * request's memory is freed when its response has been written or discarded.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "http/http.h"
#include "http/internal.h"
#include "http/parser.h"
#include "net/connlimit.h"
#include "net/tls.h"
#include "net/transport.h"
#include "metrics/metrics.h"

#define READ_BUFFER_SIZE (64 * 1024)
#define LINGER_MS 2000
#define LISTEN_BACKLOG 1024

typedef union {
  uv_handle_t handle;
  uv_stream_t stream;
  uv_tcp_t tcp;
  uv_pipe_t pipe;
} stream_u;

struct hbuf {
  char *data;
  size_t len;
  size_t cap;
};

struct hrec {
  uint32_t name_off, name_len, value_off, value_len;
};

enum hdr_state { HDR_NONE = 0, HDR_FIELD, HDR_VALUE };

/* The lenient library lets through a head ending "\r\n\rX", chunk lines ending in
 * a bare CR, any two bytes after chunk data, and bare LF / obs-fold in trailers.
 * This scanner walks the same bytes strictly (RFC 9112 section 7.1) just ahead of
 * the parser, so the parser is only ever given a valid prefix. */
enum framing_state {
  FR_ANY = 0, /* sized body or none: the parser's own checks suffice */
  FR_HEAD_LF, /* the head's last LF, which the parser reads after pausing */
  FR_SIZE_START,
  FR_SIZE,
  FR_SIZE_WS,
  FR_EXT,
  FR_SIZE_LF,
  FR_DATA,
  FR_DATA_CR,
  FR_DATA_LF,
  FR_TRAILER_START,
  FR_TRAILER_LINE,
  FR_TRAILER_LF,
  FR_FINAL_LF,
  FR_DONE,
};

struct framing {
  enum framing_state state;
  enum framing_state after_head;
  unsigned digits;
  uint64_t size;
  uint64_t left;
};
enum pause_reason { PAUSE_NONE = 0, PAUSE_HEAD, PAUSE_BODY, PAUSE_MESSAGE };

struct req_ctx {
  tusc_http_request_t req; /* first: the handler's pointer is &ctx->req */
  tusc_http_conn_t *conn;
  tusc_hparser_t *parser;

  struct hbuf head; /* target, path, header names and values, NUL-terminated */
  struct hrec *recs;
  size_t nrec, rec_cap;
  struct hbuf tail; /* trailer names and values */
  struct hrec *trecs;
  size_t ntrec, trec_cap;
  tusc_http_header_t *head_headers; /* the array before trailers were merged in */

  uint64_t head_start_ms; /* loop time of the request's first byte */
  size_t head_raw;        /* raw bytes of request line + headers seen so far */
  size_t trailer_bytes;   /* counted against the same limit */
  enum hdr_state hdr_state;
  bool url_done;
  unsigned char prev_byte; /* raw scan of the head: bare LF and obs-fold */
  bool seen_crlf;          /* prev bytes were CR LF */
  enum pause_reason pause_reason;

  struct framing framing; /* strict check of the bytes after the head */

  bool has_body;
  bool head_done; /* validated and given to the handler */
  bool body_started;
  bool body_paused;
  bool msg_complete; /* the parser saw the end of the message */
  bool body_end_pending;
  bool body_end_sent;
  bool responding; /* a respond function was called: the handler no longer reads */
  bool response_ended;
  bool streaming;
  bool aborted;
  bool discard; /* connection failed: responses are dropped */
  bool close_after;
  bool linger_after; /* unread request bytes may follow: half-close, then drain */
  int status;
  int64_t stream_length;
  int64_t bytes_out;
  char *client; /* set by tusc_http_request_set_client */
  char *user;   /* set by tusc_http_request_set_user */
  char *method; /* set by tusc_http_request_set_method */
};

struct deferred_cb {
  struct deferred_cb *next;
  struct req_ctx *ctx;
  tusc_http_write_cb cb;
  void *arg;
  int status;
};

struct tusc_http_conn_s {
  stream_u io;
  tusc_transport_t *tr; /* plain or TLS; set once accepted */
  tusc_connlimit_slot_t limit_slot; /* held while open (-max-connections*) */
  unsigned requests_done; /* responses completed; 0 = the header timeout runs from accept */
  uv_timer_t timer;
  tusc_http_server_t *server;
  tusc_http_conn_t *prev, *next; /* server's list */
  tusc_http_conn_t *kick_next;
  struct req_ctx *req;
  char *pending;
  size_t pending_off, pending_len;
  uint64_t activity_ms; /* loop time of the last progress */
  unsigned writes_pending;
  unsigned guard; /* > 0 while our code up the stack still uses the conn */
  uint8_t handles_closed;
  bool closing;
  bool failed;
  bool reading;
  bool in_feed;
  bool kicked;
  bool lingering;
  bool is_pipe;
};

struct tusc_http_server_s {
  uv_loop_t *loop;
  stream_u listener;
  uv_idle_t idle;
  bool is_pipe;
  tusc_http_limits_t limits;
  const tusc_http_handler_t *handler;
  void *ctx;
  struct tusc_tls_s *tls; /* NULL: plain HTTP */
  char *read_buf;
  tusc_http_conn_t *conns;
  size_t conn_count;
  tusc_http_conn_t *kick_head;
  struct deferred_cb *deferred_head, *deferred_tail;
  bool idle_active;
  bool stopping;
  bool abort_in_flight;
  bool listener_closed;
  bool idle_closed;
  bool idle_closing;
  bool done;
  bool free_when_done;
  void (*done_cb)(tusc_http_server_t *server, void *arg);
  void *done_arg;
  int64_t date_sec;
  int spare_fd;          /* /dev/null, given up to drop connections when out of fds */
  uint64_t emfile_log_ms; /* last "out of descriptors" warning, to keep it to 1/s */
  char date[32];
};

static const char continue_line[] = "HTTP/1.1 100 Continue\r\n\r\n";

static void conn_close(tusc_http_conn_t *conn);
static void conn_fail(tusc_http_conn_t *conn, int err);
static void update_reading(tusc_http_conn_t *conn);
static void request_done(tusc_http_conn_t *conn);
static void http_error(tusc_http_conn_t *conn, int status, int err, const char *message);
static void kick(tusc_http_conn_t *conn);
static void on_timer(uv_timer_t *timer);
static uint64_t head_timeout(const tusc_http_server_t *server);
static void conn_maybe_free(tusc_http_conn_t *conn);
static void server_check_done(tusc_http_server_t *server);

static struct req_ctx *ctx_of(tusc_http_request_t *req) {
  return (struct req_ctx *)req;
}

static bool handler_owns(const struct req_ctx *ctx) {
  return ctx->head_done && !ctx->responding;
}

static const char *server_date(tusc_http_server_t *server) {
  int64_t now = (int64_t)time(NULL);
  if (now != server->date_sec) {
    server->date_sec = now;
    tusc_http_date(now, server->date);
  }
  return server->date;
}

/* --- head storage --------------------------------------------------------------- */

static size_t head_store_cap(const tusc_http_server_t *server) {
  /* Raw head bytes are limited exactly elsewhere; the stored copy adds NULs and a
   * second copy of the path, never more than twice the raw size. */
  return 2 * server->limits.max_header_size + 2 * server->limits.max_header_count + 64;
}

static int hbuf_append(struct hbuf *b, const char *p, size_t n, size_t limit) {
  if (b->len + n + 1 > limit)
    return TUSC_EHEADERS_TOO_LARGE;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
      cap *= 2;
    if (cap > limit)
      cap = limit;
    char *d = realloc(b->data, cap);
    if (d == NULL)
      return TUSC_ENOMEM;
    b->data = d;
    b->cap = cap;
  }
  if (n > 0)
    memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

static int hbuf_nul(struct hbuf *b, size_t limit) {
  int rc = hbuf_append(b, "", 0, limit);
  if (rc == 0)
    b->data[b->len++] = '\0';
  return rc;
}

static void ctx_free(struct req_ctx *ctx) {
  if (ctx == NULL)
    return;
  tusc_hparser_free(ctx->parser);
  if (ctx->req.headers != ctx->head_headers)
    free(ctx->req.headers);
  free(ctx->head_headers);
  free(ctx->head.data);
  free(ctx->recs);
  free(ctx->tail.data);
  free(ctx->trecs);
  free(ctx->client);
  free(ctx->user);
  free(ctx->method);
  free(ctx);
}

/* --- parser callbacks ------------------------------------------------------------ */

static bool in_trailers(const struct req_ctx *ctx) {
  return ctx->head_done;
}

static int finish_header(struct req_ctx *ctx) {
  size_t limit = head_store_cap(ctx->conn->server);
  struct hbuf *b = in_trailers(ctx) ? &ctx->tail : &ctx->head;
  if (ctx->hdr_state == HDR_NONE)
    return 0;
  struct hrec *r = in_trailers(ctx) ? &ctx->trecs[ctx->ntrec - 1] : &ctx->recs[ctx->nrec - 1];
  int rc = 0;
  if (ctx->hdr_state == HDR_FIELD) {
    r->name_len = (uint32_t)(b->len - r->name_off);
    rc = hbuf_nul(b, limit);
    r->value_off = (uint32_t)b->len;
    r->value_len = 0;
    if (rc == 0)
      rc = hbuf_nul(b, limit);
  } else if (ctx->hdr_state == HDR_VALUE) {
    r->value_len = (uint32_t)(b->len - r->value_off);
    rc = hbuf_nul(b, limit);
  }
  ctx->hdr_state = HDR_NONE;
  return rc;
}

static int finish_url(struct req_ctx *ctx) {
  if (ctx->url_done)
    return 0;
  ctx->url_done = true;
  return hbuf_nul(&ctx->head, head_store_cap(ctx->conn->server));
}

static int on_url(void *ud, const char *at, size_t len) {
  struct req_ctx *ctx = ud;
  return hbuf_append(&ctx->head, at, len, head_store_cap(ctx->conn->server));
}

static int on_header_field(void *ud, const char *at, size_t len) {
  struct req_ctx *ctx = ud;
  tusc_http_server_t *server = ctx->conn->server;
  bool trailer = in_trailers(ctx);
  struct hbuf *b = trailer ? &ctx->tail : &ctx->head;
  int rc;
  if (trailer) {
    ctx->trailer_bytes += len;
    if (ctx->head_raw + ctx->trailer_bytes > server->limits.max_header_size)
      return TUSC_EHEADERS_TOO_LARGE;
  }
  if (ctx->hdr_state != HDR_FIELD) {
    if ((rc = finish_url(ctx)) != 0)
      return rc;
    if (ctx->hdr_state == HDR_VALUE && (rc = finish_header(ctx)) != 0)
      return rc;
    if (ctx->nrec + ctx->ntrec >= server->limits.max_header_count)
      return TUSC_EHEADERS_TOO_LARGE;
    struct hrec **recs = trailer ? &ctx->trecs : &ctx->recs;
    size_t *n = trailer ? &ctx->ntrec : &ctx->nrec;
    size_t *cap = trailer ? &ctx->trec_cap : &ctx->rec_cap;
    if (*n == *cap) {
      size_t ncap = *cap ? *cap * 2 : 16;
      struct hrec *nr = realloc(*recs, ncap * sizeof(**recs));
      if (nr == NULL)
        return TUSC_ENOMEM;
      *recs = nr;
      *cap = ncap;
    }
    (*recs)[*n] = (struct hrec){.name_off = (uint32_t)b->len};
    (*n)++;
    if (trailer)
      ctx->trailer_bytes += 4; /* ": " and CRLF */
    ctx->hdr_state = HDR_FIELD;
  }
  return hbuf_append(b, at, len, head_store_cap(server));
}

static int on_header_value(void *ud, const char *at, size_t len) {
  struct req_ctx *ctx = ud;
  tusc_http_server_t *server = ctx->conn->server;
  bool trailer = in_trailers(ctx);
  struct hbuf *b = trailer ? &ctx->tail : &ctx->head;
  if (trailer) {
    ctx->trailer_bytes += len;
    if (ctx->head_raw + ctx->trailer_bytes > server->limits.max_header_size)
      return TUSC_EHEADERS_TOO_LARGE;
  }
  if (ctx->hdr_state == HDR_FIELD) {
    struct hrec *r = trailer ? &ctx->trecs[ctx->ntrec - 1] : &ctx->recs[ctx->nrec - 1];
    r->name_len = (uint32_t)(b->len - r->name_off);
    int rc = hbuf_nul(b, head_store_cap(server));
    if (rc != 0)
      return rc;
    r->value_off = (uint32_t)b->len;
    ctx->hdr_state = HDR_VALUE;
  }
  return hbuf_append(b, at, len, head_store_cap(server));
}

static int on_headers_complete(void *ud) {
  struct req_ctx *ctx = ud;
  int rc = finish_url(ctx);
  if (rc == 0)
    rc = finish_header(ctx);
  if (rc != 0)
    return rc;
  ctx->pause_reason = PAUSE_HEAD;
  tusc_hparser_pause(ctx->parser);
  return 0;
}

static int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Advances over p[0..n); returns how many bytes are valid. *bad tells whether it
 * stopped at an invalid byte (else at the end of the input or of the message). */
static size_t framing_scan(struct framing *f, const char *p, size_t n, bool *bad) {
  size_t i = 0;
  *bad = false;
  while (i < n) {
    unsigned char c = (unsigned char)p[i];
    switch (f->state) {
    case FR_ANY:
      return n;
    case FR_DONE:
      return i;
    case FR_HEAD_LF:
      if (c != '\n')
        goto bad;
      f->state = f->after_head;
      break;
    case FR_SIZE_START:
    case FR_SIZE: {
      int h = hex_value(c);
      if (h >= 0) {
        if (f->digits >= 15) /* > 2^60 bytes: not a size anyone sends */
          goto bad;
        f->size = f->size * 16 + (uint64_t)h;
        f->digits++;
        f->state = FR_SIZE;
      } else if (f->state == FR_SIZE_START) {
        goto bad;
      } else if (c == ';') {
        f->state = FR_EXT;
      } else if (c == ' ' || c == '\t') {
        f->state = FR_SIZE_WS;
      } else if (c == '\r') {
        f->state = FR_SIZE_LF;
      } else {
        goto bad;
      }
      break;
    }
    case FR_SIZE_WS:
      if (c == ';')
        f->state = FR_EXT;
      else if (c == '\r')
        f->state = FR_SIZE_LF;
      else if (c != ' ' && c != '\t')
        goto bad;
      break;
    case FR_EXT:
      if (c == '\r')
        f->state = FR_SIZE_LF;
      else if ((c < 0x20 && c != '\t') || c == 0x7f)
        goto bad;
      break;
    case FR_SIZE_LF:
      if (c != '\n')
        goto bad;
      f->digits = 0;
      if (f->size == 0) {
        f->state = FR_TRAILER_START;
      } else {
        f->left = f->size;
        f->size = 0;
        f->state = FR_DATA;
      }
      break;
    case FR_DATA: {
      size_t take = f->left < n - i ? (size_t)f->left : n - i;
      f->left -= take;
      i += take;
      if (f->left == 0)
        f->state = FR_DATA_CR;
      continue;
    }
    case FR_DATA_CR:
      if (c != '\r')
        goto bad;
      f->state = FR_DATA_LF;
      break;
    case FR_DATA_LF:
      if (c != '\n')
        goto bad;
      f->state = FR_SIZE_START;
      break;
    case FR_TRAILER_START:
      if (c == '\r')
        f->state = FR_FINAL_LF;
      else if (c == ' ' || c == '\t' || c == '\n' || c == '\0')
        goto bad;
      else
        f->state = FR_TRAILER_LINE;
      break;
    case FR_TRAILER_LINE:
      if (c == '\r')
        f->state = FR_TRAILER_LF;
      else if (c == '\n' || c == '\0')
        goto bad;
      break;
    case FR_TRAILER_LF:
      if (c != '\n')
        goto bad;
      f->state = FR_TRAILER_START;
      break;
    case FR_FINAL_LF:
      if (c != '\n')
        goto bad;
      f->state = FR_DONE;
      break;
    }
    i++;
  }
  return i;
bad:
  *bad = true;
  return i;
}

static int on_chunk_header(void *ud, uint64_t size) {
  (void)ud;
  (void)size;
  return 0;
}

static int on_body(void *ud, const char *at, size_t len) {
  struct req_ctx *ctx = ud;
  tusc_http_server_t *server = ctx->conn->server;
  ctx->req.body_received += (int64_t)len;
  if (server->handler->on_body != NULL) {
    int rc = server->handler->on_body(&ctx->req, at, len, server->ctx);
    if (rc < 0) {
      /* The handler stops the body and responds; nothing more is parsed. */
      ctx->body_paused = true;
      ctx->close_after = true;
      ctx->pause_reason = PAUSE_BODY;
      tusc_hparser_pause(ctx->parser);
      return 0;
    }
  }
  bool body_complete = !ctx->req.chunked && ctx->req.body_received == ctx->req.content_length;
  if ((ctx->body_paused || ctx->aborted || ctx->responding) && !body_complete) {
    /* With the last byte of a sized body the parser goes on to the message end,
     * where it pauses anyway, so on_body_end can wait for the resume. */
    ctx->pause_reason = PAUSE_BODY;
    tusc_hparser_pause(ctx->parser);
  }
  return 0;
}

static int on_message_complete(void *ud) {
  struct req_ctx *ctx = ud;
  int rc = 0;
  if (ctx->hdr_state != HDR_NONE)
    rc = finish_header(ctx);
  ctx->pause_reason = PAUSE_MESSAGE;
  tusc_hparser_pause(ctx->parser);
  return rc;
}

static const tusc_hparser_callbacks_t parser_callbacks = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_chunk_header = on_chunk_header,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* --- request head validation ------------------------------------------------------ */

static bool is_tchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
    return true;
  return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool valid_name(const char *s, size_t n) {
  if (n == 0)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!is_tchar((unsigned char)s[i]))
      return false;
  return true;
}

static bool valid_value(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c < 0x20 && c != '\t') || c == 0x7f)
      return false;
  }
  return true;
}

static bool eq_ci(const char *a, size_t alen, const char *b) {
  size_t blen = strlen(b);
  if (alen != blen)
    return false;
  for (size_t i = 0; i < alen; i++) {
    unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
    if (x >= 'A' && x <= 'Z')
      x = (unsigned char)(x + 32);
    if (y >= 'A' && y <= 'Z')
      y = (unsigned char)(y + 32);
    if (x != y)
      return false;
  }
  return true;
}

/* Builds tusc_http_header_t entries from records, trimming trailing whitespace. */
static tusc_http_header_t *build_headers(struct hbuf *b, const struct hrec *recs, size_t n,
                                         bool trailer, tusc_http_header_t *out) {
  for (size_t i = 0; i < n; i++) {
    char *name = b->data + recs[i].name_off;
    char *value = b->data + recs[i].value_off;
    size_t vlen = recs[i].value_len;
    while (vlen > 0 && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
      value[--vlen] = '\0';
    while (vlen > 0 && (value[0] == ' ' || value[0] == '\t')) {
      value++;
      vlen--;
    }
    out[i] = (tusc_http_header_t){.name = name,
                                  .value = value,
                                  .name_len = recs[i].name_len,
                                  .value_len = vlen,
                                  .trailer = trailer};
  }
  return out;
}

/* Returns 0, or the status to refuse the request with (*message set). */
static int validate_head(struct req_ctx *ctx, const tusc_hparser_head_t *h, const char **message) {
  tusc_http_request_t *req = &ctx->req;
  if (h->http_major != 1) {
    *message = "HTTP version not supported";
    return 505;
  }
  if (h->connect) {
    *message = "CONNECT is not supported";
    return 400;
  }
  const char *t = req->target;
  if (t[0] == '\0') {
    *message = "empty request target";
    return 400;
  }
  for (const char *c = t; *c; c++) {
    unsigned char ch = (unsigned char)*c;
    if (ch <= 0x20 || ch == 0x7f) {
      *message = "invalid request target";
      return 400;
    }
  }
  size_t hosts = 0, tes = 0, cls = 0;
  for (size_t i = 0; i < req->header_count; i++) {
    const tusc_http_header_t *hd = &req->headers[i];
    if (!valid_name(hd->name, hd->name_len) || !valid_value(hd->value, hd->value_len)) {
      *message = "invalid header field";
      return 400;
    }
    if (eq_ci(hd->name, hd->name_len, "Host"))
      hosts++;
    else if (eq_ci(hd->name, hd->name_len, "Transfer-Encoding")) {
      tes++;
      if (!eq_ci(hd->value, hd->value_len, "chunked")) {
        *message = "unsupported Transfer-Encoding";
        return 400;
      }
    } else if (eq_ci(hd->name, hd->name_len, "Content-Length"))
      cls++;
  }
  if (h->http_minor >= 1 && hosts != 1) {
    *message = hosts == 0 ? "missing Host header" : "more than one Host header";
    return 400;
  }
  if (hosts > 1) {
    *message = "more than one Host header";
    return 400;
  }
  /* Both framings, or two of one: a proxy in front may read the body differently
   * from us (request smuggling). */
  if (cls > 1 || tes > 1 || (cls > 0 && tes > 0) || (tes > 0 && !h->chunked)) {
    *message = "ambiguous message framing";
    return 400;
  }
  if (tes > 0 && h->http_minor == 0) {
    *message = "Transfer-Encoding in an HTTP/1.0 request";
    return 400;
  }
  return 0;
}

static void fill_remote(tusc_http_conn_t *conn, tusc_http_request_t *req) {
  if (conn->is_pipe)
    return;
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  if (uv_tcp_getpeername(&conn->io.tcp, (struct sockaddr *)&ss, &len) != 0)
    return;
  if (ss.ss_family == AF_INET) {
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
    uv_ip4_name(sin, req->remote_addr, sizeof(req->remote_addr));
    req->remote_port = ntohs(sin->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
    uv_ip6_name(sin6, req->remote_addr, sizeof(req->remote_addr));
    /* Dual-stack sockets show IPv4 clients as ::ffff:a.b.c.d; log them as IPv4. */
    if (strncmp(req->remote_addr, "::ffff:", 7) == 0 && strchr(req->remote_addr + 7, '.'))
      memmove(req->remote_addr, req->remote_addr + 7, strlen(req->remote_addr + 7) + 1);
    req->remote_port = ntohs(sin6->sin6_port);
  }
}

static int hbuf_reserve(struct hbuf *b, size_t n, size_t limit) {
  size_t len = b->len;
  int rc = hbuf_append(b, NULL, 0, limit);
  if (rc != 0)
    return rc;
  if (len + n + 1 > limit)
    return TUSC_EHEADERS_TOO_LARGE;
  if (len + n + 1 > b->cap) {
    char *d = realloc(b->data, len + n + 1);
    if (d == NULL)
      return TUSC_ENOMEM;
    b->data = d;
    b->cap = len + n + 1;
  }
  return 0;
}

/* Splits the target into path and query. Absolute-form ("http://host/p") is
 * accepted as RFC 9112 asks; the authority part is dropped from the path. */
static int split_target(struct req_ctx *ctx) {
  size_t limit = head_store_cap(ctx->conn->server);
  const char *t = ctx->head.data;
  size_t tlen = strlen(t);
  size_t path_start = 0;
  const char *scheme_end = strstr(t, "://");
  if (t[0] != '/' && scheme_end != NULL) {
    const char *slash = strchr(scheme_end + 3, '/');
    path_start = slash ? (size_t)(slash - t) : tlen;
  }
  const char *q = strchr(t + path_start, '?');
  size_t path_len = q ? (size_t)(q - (t + path_start)) : tlen - path_start;
  size_t query_off = q ? (size_t)(q - t) + 1 : 0;
  bool has_query = q != NULL;
  size_t path_off = ctx->head.len;
  int rc = hbuf_reserve(&ctx->head, path_len + 1, limit);
  if (rc != 0)
    return rc;
  char *dst = ctx->head.data + path_off;
  if (path_len == 0) {
    dst[0] = '/';
    path_len = 1;
  } else {
    memcpy(dst, ctx->head.data + path_start, path_len);
  }
  dst[path_len] = '\0';
  ctx->head.len += path_len + 1;
  ctx->req.target = ctx->head.data;
  ctx->req.path = ctx->head.data + path_off;
  ctx->req.query = has_query ? ctx->head.data + query_off : "";
  return 0;
}

/* Expect is a list (possibly over several fields); "100-continue" is the only
 * expectation defined, so any other member cannot be met. */
static bool expectations_supported(const tusc_http_request_t *req, bool *continue_expected) {
  for (size_t i = 0; i < req->header_count; i++) {
    const tusc_http_header_t *hd = &req->headers[i];
    if (hd->trailer || !eq_ci(hd->name, hd->name_len, "Expect"))
      continue;
    const char *v = hd->value, *end = hd->value + hd->value_len;
    while (v < end) {
      const char *comma = memchr(v, ',', (size_t)(end - v));
      const char *m_end = comma ? comma : end;
      const char *m = v;
      while (m < m_end && (*m == ' ' || *m == '\t'))
        m++;
      const char *e = m_end;
      while (e > m && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
      if (e > m) {
        if (!eq_ci(m, (size_t)(e - m), "100-continue"))
          return false;
        *continue_expected = true;
      }
      v = comma ? comma + 1 : end;
    }
  }
  return true;
}

/* Returns 0 when the request went to the handler. */
static int dispatch(struct req_ctx *ctx) {
  tusc_http_conn_t *conn = ctx->conn;
  tusc_http_server_t *server = conn->server;
  tusc_http_request_t *req = &ctx->req;
  tusc_hparser_head_t h;
  tusc_hparser_head(ctx->parser, &h);

  int rc = split_target(ctx);
  if (rc == 0) {
    /* The head buffer does not grow any more: pointers into it are stable. */
    ctx->head_headers = calloc(ctx->nrec ? ctx->nrec : 1, sizeof(tusc_http_header_t));
    if (ctx->head_headers == NULL)
      rc = TUSC_ENOMEM;
  }
  if (rc != 0) {
    http_error(conn, tusc_error_status(rc), rc, NULL);
    return rc;
  }
  req->headers = build_headers(&ctx->head, ctx->recs, ctx->nrec, false, ctx->head_headers);
  req->header_count = ctx->nrec;
  req->method = h.method;
  req->method_name = h.method_name;
  req->http_minor = h.http_minor >= 1 ? 1 : 0;
  req->keep_alive = h.keep_alive;
  req->chunked = h.chunked;
  req->content_length = h.has_content_length ? (int64_t)h.content_length : -1;
  if (req->content_length < -1) {
    http_error(conn, 400, TUSC_EBAD_REQUEST, "invalid Content-Length");
    return TUSC_EBAD_REQUEST;
  }

  const char *message = NULL;
  int status = validate_head(ctx, &h, &message);
  if (status != 0) {
    http_error(conn, status, TUSC_EBAD_REQUEST, message);
    return TUSC_EBAD_REQUEST;
  }
  bool continue_expected = false;
  if (!expectations_supported(req, &continue_expected)) {
    /* RFC 9110 section 10.1.1: an expectation we cannot meet is refused, not ignored. */
    http_error(conn, 417, TUSC_EEXPECTATION_FAILED, NULL);
    return TUSC_EEXPECTATION_FAILED;
  }
  req->expect_continue = continue_expected && req->http_minor >= 1;
  ctx->has_body = req->chunked || req->content_length > 0;
  ctx->framing.after_head = req->chunked ? FR_SIZE_START : FR_ANY;
  ctx->framing.state = ctx->prev_byte == '\r' ? FR_HEAD_LF : ctx->framing.after_head;
  fill_remote(conn, req);
  req->tls = conn->tr != NULL && conn->tr->ops->secure(conn->tr);

  ctx->head_done = true;
  conn->activity_ms = uv_now(server->loop);
  TUSC_LOG(TUSC_LOG_DEBUG, "request %s %s from %s", req->method_name, req->target,
           req->remote_addr);
  server->handler->on_request(req, server->ctx);
  return 0;
}

/* Trailers join the header list in a new array; the old one stays alive (and its
 * strings never move) because the handler may still hold pointers into it. */
static int merge_trailers(struct req_ctx *ctx) {
  if (ctx->ntrec == 0)
    return 0;
  size_t total = ctx->nrec + ctx->ntrec;
  tusc_http_header_t *all = calloc(total, sizeof(*all));
  if (all == NULL)
    return TUSC_ENOMEM;
  if (ctx->nrec > 0)
    memcpy(all, ctx->req.headers, ctx->nrec * sizeof(*all));
  build_headers(&ctx->tail, ctx->trecs, ctx->ntrec, true, all + ctx->nrec);
  for (size_t i = ctx->nrec; i < total; i++) {
    if (!valid_name(all[i].name, all[i].name_len) || !valid_value(all[i].value, all[i].value_len)) {
      free(all);
      return TUSC_EBAD_REQUEST;
    }
  }
  ctx->req.headers = all;
  ctx->req.header_count = total;
  return 0;
}

static void deliver_body_end(struct req_ctx *ctx) {
  tusc_http_server_t *server = ctx->conn->server;
  if (ctx->body_end_sent || ctx->aborted || ctx->responding)
    return;
  ctx->body_end_sent = true;
  ctx->body_end_pending = false;
  if (server->handler->on_body_end != NULL)
    server->handler->on_body_end(&ctx->req, server->ctx);
}

/* A failure the client should hear about, while the handler owns the request: the
 * handler is told (it answers, e.g. 400 or 503) and the connection closes after. */
static void soft_abort(struct req_ctx *ctx, int err) {
  tusc_http_server_t *server = ctx->conn->server;
  ctx->close_after = true;
  if (!handler_owns(ctx) || ctx->aborted)
    return;
  ctx->aborted = true;
  if (server->handler->on_abort != NULL)
    server->handler->on_abort(&ctx->req, err, server->ctx);
}

/* --- feeding bytes ---------------------------------------------------------------- */

static bool can_parse(const tusc_http_conn_t *conn) {
  const struct req_ctx *ctx = conn->req;
  if (conn->closing || conn->lingering)
    return false;
  if (ctx == NULL)
    return !conn->server->stopping && conn->writes_pending == 0;
  if (!ctx->head_done)
    return !ctx->responding;
  if (ctx->msg_complete || ctx->aborted)
    return false;
  if (!ctx->has_body)
    return true; /* only the head's last byte and the message end are left */
  if (ctx->responding)
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
  const struct req_ctx *ctx = conn->req;
  if (conn->closing || conn->lingering || ctx == NULL || !handler_owns(ctx) || ctx->aborted ||
      can_parse(conn))
    return 0;
  size_t held = conn->pending != NULL ? conn->pending_len - conn->pending_off : 0;
  size_t cap = conn->server->limits.max_header_size;
  return held < cap ? cap - held : 0;
}

static int request_new(tusc_http_conn_t *conn) {
  struct req_ctx *ctx = calloc(1, sizeof(*ctx));
  if (ctx == NULL)
    return TUSC_ENOMEM;
  int rc = tusc_hparser_new(&parser_callbacks, ctx, &ctx->parser);
  if (rc != 0) {
    free(ctx);
    return rc;
  }
  ctx->conn = conn;
  ctx->req.conn = conn;
  ctx->req.content_length = -1;
  ctx->req.method_name = "-";
  ctx->req.target = "";
  ctx->req.path = "";
  ctx->req.query = "";
  ctx->req.start_ms = tusc_now_ms();
  ctx->head_start_ms = uv_now(conn->server->loop);
  uint64_t ht = head_timeout(conn->server);
  uint64_t nt = conn->server->limits.network_timeout_ms;
  if (ht != 0 && (nt == 0 || ht < nt))
    uv_timer_start(&conn->timer, on_timer, ht, 0); /* the idle timer may be due later */
  ctx->seen_crlf = true; /* a request line may not start with whitespace either */
  conn->req = ctx;
  return 0;
}

/* The lenient library accepts bare LF and obs-fold; the head's raw bytes are checked
 * here instead. */
static int scan_head(struct req_ctx *ctx, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == '\n' && ctx->prev_byte != '\r')
      return TUSC_EBAD_REQUEST;
    if (ctx->seen_crlf && (c == ' ' || c == '\t'))
      return TUSC_EBAD_REQUEST;
    if (c == '\0')
      return TUSC_EBAD_REQUEST;
    ctx->seen_crlf = ctx->prev_byte == '\r' && c == '\n';
    ctx->prev_byte = c;
  }
  return 0;
}

static void parse_failed(tusc_http_conn_t *conn, int err) {
  struct req_ctx *ctx = conn->req;
  TUSC_LOG(TUSC_LOG_DEBUG, "bad request: %s (%s)", tusc_strerror(err),
           ctx ? tusc_hparser_error_text(ctx->parser) : "");
  if (ctx == NULL || !ctx->head_done) {
    if (err == TUSC_EHEADERS_TOO_LARGE)
      http_error(conn, 431, err, NULL);
    else if (err == TUSC_ENOMEM)
      http_error(conn, 503, err, NULL);
    else
      http_error(conn, 400, TUSC_EBAD_REQUEST, NULL);
    return;
  }
  ctx->linger_after = true;
  if (handler_owns(ctx))
    soft_abort(ctx, err == TUSC_EHEADERS_TOO_LARGE ? err : TUSC_EBAD_REQUEST);
  else
    ctx->close_after = true;
}

static size_t feed(tusc_http_conn_t *conn, const char *data, size_t len) {
  tusc_http_server_t *server = conn->server;
  size_t off = 0;
  conn->in_feed = true;
  while (off < len && can_parse(conn)) {
    if (conn->req == NULL) {
      int rc = request_new(conn);
      if (rc != 0) {
        conn_close(conn);
        break;
      }
    }
    struct req_ctx *ctx = conn->req;
    size_t avail = len - off;
    bool head_phase = !ctx->head_done;
    if (head_phase) {
      static const char h2_preface[] = "PRI * HTTP/2.0\r\n";
      if (ctx->head_raw == 0 && avail >= sizeof(h2_preface) - 1 &&
          memcmp(data + off, h2_preface, sizeof(h2_preface) - 1) == 0) {
        /* Prior-knowledge HTTP/2 (e.g. h2c clients): say so rather than "malformed". */
        http_error(conn, 505, TUSC_EBAD_REQUEST, "HTTP/2 is not supported, use HTTP/1.1");
        break;
      }
      size_t allow = server->limits.max_header_size - ctx->head_raw;
      if (allow == 0) {
        parse_failed(conn, TUSC_EHEADERS_TOO_LARGE);
        break;
      }
      if (avail > allow)
        avail = allow;
    } else {
      struct framing probe = ctx->framing;
      bool bad = false;
      size_t valid = framing_scan(&probe, data + off, avail, &bad);
      if (valid == 0) {
        /* An invalid byte, or bytes past the message end the parser did not see. */
        parse_failed(conn, TUSC_EBAD_REQUEST);
        break;
      }
      avail = valid;
    }
    size_t n = 0;
    int rc = tusc_hparser_execute(ctx->parser, data + off, avail, &n);
    if (head_phase) {
      int src = scan_head(ctx, data + off, n);
      ctx->head_raw += n;
      if (src != 0 && rc >= 0)
        rc = src;
    } else {
      bool bad = false;
      framing_scan(&ctx->framing, data + off, n, &bad);
    }
    off += n;
    if (rc < 0) {
      parse_failed(conn, rc);
      break;
    }
    if (rc == TUSC_HPARSER_PAUSED) {
      tusc_hparser_resume(ctx->parser);
      enum pause_reason why = ctx->pause_reason;
      ctx->pause_reason = PAUSE_NONE;
      if (why == PAUSE_HEAD) {
        bool lf_pending = ctx->prev_byte == '\r';
        if (lf_pending && off < len && data[off] != '\n') {
          parse_failed(conn, TUSC_EBAD_REQUEST);
          break;
        }
        if (dispatch(ctx) != 0)
          break;
      } else if (why == PAUSE_MESSAGE) {
        ctx->msg_complete = true;
        if (ctx->has_body) {
          int mrc = merge_trailers(ctx);
          if (mrc != 0) {
            parse_failed(conn, mrc);
            break;
          }
          if (ctx->body_paused)
            ctx->body_end_pending = true;
          else
            deliver_body_end(ctx);
        }
      }
      continue;
    }
    if (head_phase && !ctx->head_done && ctx->head_raw >= server->limits.max_header_size) {
      parse_failed(conn, TUSC_EHEADERS_TOO_LARGE);
      break;
    }
  }
  conn->in_feed = false;
  return off;
}

static void process_pending(tusc_http_conn_t *conn) {
  struct req_ctx *ctx = conn->req;
  if (ctx != NULL && ctx->body_end_pending && !ctx->body_paused) {
    conn->in_feed = true;
    deliver_body_end(ctx);
    conn->in_feed = false;
  }
  while (conn->pending != NULL && !conn->closing) {
    size_t n = feed(conn, conn->pending + conn->pending_off, conn->pending_len - conn->pending_off);
    conn->pending_off += n;
    if (conn->pending_off == conn->pending_len) {
      free(conn->pending);
      conn->pending = NULL;
      conn->pending_off = conn->pending_len = 0;
    }
    if (n == 0)
      break;
  }
}

/* --- reading --------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  tusc_http_conn_t *conn = handle->data;
  buf->base = conn->server->read_buf;
  buf->len = READ_BUFFER_SIZE;
  size_t room = watch_room(conn);
  if (room > 0 && room < READ_BUFFER_SIZE)
    buf->len = room; /* a watched connection holds at most the cap */
}

static void read_failed(tusc_http_conn_t *conn, int err) {
  struct req_ctx *ctx = conn->req;
  if (ctx != NULL && handler_owns(ctx))
    conn_fail(conn, err == UV_EOF ? TUSC_EUNEXPECTED_EOF : err);
  else
    conn_fail(conn, err);
}

/* Plaintext from the transport (the socket's bytes themselves for plain HTTP). A TLS
 * transport may call this several times per read; what the parser cannot take yet
 * queues up in conn->pending, in order. */
static void on_plaintext(void *arg, const char *data, size_t n) {
  tusc_http_conn_t *conn = arg;
  if (conn->closing || conn->lingering || n == 0)
    return;
  conn->activity_ms = uv_now(conn->server->loop);
  if (conn->pending != NULL) {
    /* Reading stops while bytes wait, but one TLS read can decrypt to several
     * pieces; never reorder bytes. */
    char *p = realloc(conn->pending, conn->pending_len + n);
    if (p == NULL) {
      conn_fail(conn, UV_ENOMEM);
      return;
    }
    memcpy(p + conn->pending_len, data, n);
    conn->pending = p;
    conn->pending_len += n;
    return;
  }
  size_t used = feed(conn, data, n);
  if (!conn->closing && used < n && !conn->lingering) {
    conn->pending = malloc(n - used);
    if (conn->pending == NULL) {
      conn_fail(conn, UV_ENOMEM);
      return;
    }
    memcpy(conn->pending, data + used, n - used);
    conn->pending_off = 0;
    conn->pending_len = n - used;
  }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  tusc_http_conn_t *conn = stream->data;
  if (nread == 0 || conn->closing)
    return;
  if (conn->lingering) {
    if (nread < 0)
      conn_close(conn);
    return;
  }
  if (nread < 0) {
    read_failed(conn, (int)nread);
    return;
  }
  /* Handshake bytes are not progress: a handshake must finish within the timeout. */
  if (conn->tr->ops->established(conn->tr))
    conn->activity_ms = uv_now(conn->server->loop);
  int rc = conn->tr->ops->input(conn->tr, &conn->io.stream, buf->base, (size_t)nread,
                                conn->server->read_buf, READ_BUFFER_SIZE, on_plaintext, conn);
  if (conn->closing)
    return;
  if (rc < 0) {
    if (conn->lingering)
      conn_close(conn);
    else
      read_failed(conn, rc);
    return;
  }
  update_reading(conn);
}

static void update_reading(tusc_http_conn_t *conn) {
  if (conn->closing)
    return;
  if (conn->req == NULL && conn->server->stopping && conn->writes_pending == 0) {
    conn_close(conn);
    return;
  }
  bool want = conn->lingering || (conn->pending == NULL && can_parse(conn)) || watch_room(conn) > 0;
  if (want && !conn->reading) {
    if (uv_read_start(&conn->io.stream, on_alloc, on_read) == 0)
      conn->reading = true;
  } else if (!want && conn->reading) {
    uv_read_stop(&conn->io.stream);
    conn->reading = false;
  }
}

/* --- deferred work (never call the handler from inside its own call) -------------- */

static void on_idle(uv_idle_t *idle) {
  tusc_http_server_t *server = idle->data;
  while (server->deferred_head != NULL) {
    struct deferred_cb *d = server->deferred_head;
    server->deferred_head = d->next;
    if (server->deferred_head == NULL)
      server->deferred_tail = NULL;
    tusc_http_conn_t *conn = d->ctx->conn;
    struct req_ctx *ctx = d->ctx;
    conn->writes_pending--;
    conn->guard++;
    d->cb(&ctx->req, d->status, d->arg);
    conn->guard--;
    free(d);
    if (conn->writes_pending == 0 && conn->req != NULL && conn->req == ctx &&
        conn->req->response_ended)
      request_done(conn);
    else if (conn->closing)
      conn_maybe_free(conn);
  }
  while (server->kick_head != NULL) {
    tusc_http_conn_t *conn = server->kick_head;
    server->kick_head = conn->kick_next;
    conn->kick_next = NULL;
    conn->kicked = false;
    if (!conn->closing) {
      process_pending(conn);
      update_reading(conn);
    } else {
      conn_maybe_free(conn);
    }
  }
  if (server->kick_head == NULL && server->deferred_head == NULL) {
    uv_idle_stop(idle);
    server->idle_active = false;
    server_check_done(server);
  }
}

static void idle_start(tusc_http_server_t *server) {
  if (!server->idle_active && !server->idle_closing) {
    uv_idle_start(&server->idle, on_idle);
    server->idle_active = true;
  }
}

static void kick(tusc_http_conn_t *conn) {
  if (conn->kicked || conn->closing)
    return;
  conn->kicked = true;
  conn->kick_next = conn->server->kick_head;
  conn->server->kick_head = conn;
  idle_start(conn->server);
}

static void defer_write_cb(struct req_ctx *ctx, tusc_http_write_cb cb, void *arg, int status) {
  struct deferred_cb *d = calloc(1, sizeof(*d));
  if (d == NULL) {
    /* Without memory the callback runs now; the handler copes with reentry better
     * than with a lost callback. */
    cb(&ctx->req, status, arg);
    return;
  }
  d->ctx = ctx;
  d->cb = cb;
  d->arg = arg;
  d->status = status;
  tusc_http_server_t *server = ctx->conn->server;
  if (server->deferred_tail)
    server->deferred_tail->next = d;
  else
    server->deferred_head = d;
  server->deferred_tail = d;
  ctx->conn->writes_pending++;
  idle_start(server);
}

/* --- closing --------------------------------------------------------------------- */

static void conn_free(tusc_http_conn_t *conn) {
  tusc_http_server_t *server = conn->server;
  if (conn->prev)
    conn->prev->next = conn->next;
  else
    server->conns = conn->next;
  if (conn->next)
    conn->next->prev = conn->prev;
  server->conn_count--;
  tusc_connlimit_release(server->limits.connlimit, &conn->limit_slot);
  tusc_metrics_connections(-1);
  free(conn->pending);
  if (conn->tr != NULL)
    conn->tr->ops->free(conn->tr);
  free(conn);
  if (server->spare_fd < 0) /* a descriptor just came free: re-arm the spare */
    server->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  server_check_done(server);
}

static void conn_maybe_free(tusc_http_conn_t *conn) {
  if (conn->handles_closed == 2 && conn->req == NULL && conn->writes_pending == 0 &&
      !conn->kicked && conn->guard == 0 && !conn->in_feed)
    conn_free(conn);
}

static void on_conn_closed(uv_handle_t *handle) {
  tusc_http_conn_t *conn = handle->data;
  conn->handles_closed++;
  conn_maybe_free(conn);
}

static void conn_close(tusc_http_conn_t *conn) {
  if (conn->closing)
    return;
  conn->closing = true;
  conn->reading = false;
  if (conn->tr != NULL && !conn->failed && !conn->lingering)
    conn->tr->ops->close_notify(conn->tr, &conn->io.stream);
  uv_close(&conn->io.handle, on_conn_closed);
  uv_close((uv_handle_t *)&conn->timer, on_conn_closed);
  struct req_ctx *ctx = conn->req;
  if (ctx != NULL && !ctx->head_done) {
    /* Nobody but us knows this request. */
    conn->req = NULL;
    ctx_free(ctx);
  }
}

/* The connection is unusable: close it and, if the handler is working on a request,
 * tell it (it still ends the request; its response is dropped). */
static void conn_fail(tusc_http_conn_t *conn, int err) {
  if (conn->closing)
    return;
  conn->failed = true;
  struct req_ctx *ctx = conn->req;
  if (ctx != NULL)
    ctx->discard = true;
  conn_close(conn);
  ctx = conn->req;
  if (ctx != NULL && handler_owns(ctx) && !ctx->aborted) {
    ctx->aborted = true;
    tusc_http_server_t *server = conn->server;
    TUSC_LOG(TUSC_LOG_DEBUG, "request %s %s aborted: %s", ctx->req.method_name, ctx->req.path,
             tusc_strerror(err));
    if (server->handler->on_abort != NULL)
      server->handler->on_abort(&ctx->req, err, server->ctx);
  }
}

static void on_shutdown(uv_shutdown_t *sreq, int status) {
  (void)status;
  free(sreq);
}

/* After a response that leaves request bytes unread, close only our sending side
 * and drain for a moment: closing with unread data makes the kernel send RST, which
 * can destroy the response before the client reads it. */
static void conn_linger(tusc_http_conn_t *conn) {
  uv_shutdown_t *sreq = malloc(sizeof(*sreq));
  if (conn->tr != NULL)
    conn->tr->ops->close_notify(conn->tr, &conn->io.stream);
  if (sreq == NULL || uv_shutdown(sreq, &conn->io.stream, on_shutdown) != 0) {
    free(sreq);
    conn_close(conn);
    return;
  }
  conn->lingering = true;
  conn->activity_ms = uv_now(conn->server->loop);
  uint64_t t = conn->server->limits.network_timeout_ms;
  uv_timer_start(&conn->timer, on_timer, t && t < LINGER_MS ? t : LINGER_MS, 0);
  free(conn->pending);
  conn->pending = NULL;
  conn->pending_off = conn->pending_len = 0;
  update_reading(conn);
}

/* --- timers ---------------------------------------------------------------------- */

/* Time allowed for a request head: the smaller non-zero of the two timeouts. */
static uint64_t head_timeout(const tusc_http_server_t *server) {
  uint64_t n = server->limits.network_timeout_ms, h = server->limits.header_timeout_ms;
  if (h == 0 || (n != 0 && n < h))
    return n;
  return h;
}

static void on_timer(uv_timer_t *timer) {
  tusc_http_conn_t *conn = timer->data;
  tusc_http_server_t *server = conn->server;
  uint64_t timeout = server->limits.network_timeout_ms;
  if (conn->closing)
    return;
  uint64_t now = uv_now(server->loop);
  struct req_ctx *ctx = conn->req;
  uint64_t limit = timeout;
  int action = 0; /* 0 none, 1 close quietly, 2 fail */
  int err = TUSC_EREAD_TIMEOUT;
  if (conn->lingering) {
    limit = timeout && timeout < LINGER_MS ? timeout : LINGER_MS;
    action = 1;
  } else if (ctx != NULL && ctx->head_done && can_parse(conn)) {
    action = 2; /* waiting for body bytes (a 100 Continue may still be queued) */
  } else if (conn->writes_pending > 0) {
    action = 2; /* the client does not read its response */
    err = UV_ETIMEDOUT;
  } else if (ctx == NULL) {
    action = 1;
    /* A new connection owes its first request head within the header timeout, so
     * that idle sockets cannot pile up (slowloris without even a first byte). */
    if (conn->requests_done == 0)
      limit = head_timeout(server);
  } else if (!ctx->head_done) {
    /* The whole head must arrive within the timeout, not just each byte: a client
     * dribbling one byte at a time would otherwise hold the connection forever. */
    uint64_t ht = head_timeout(server);
    action = 1;
    limit = ht;
    if (ctx->head_start_ms < conn->activity_ms)
      limit = ht > conn->activity_ms - ctx->head_start_ms
                  ? ht - (conn->activity_ms - ctx->head_start_ms)
                  : 1;
  }
  if (action == 0 || limit == 0) {
    uv_timer_start(timer, on_timer, timeout ? timeout : 60000, 0);
    return;
  }
  if (now - conn->activity_ms >= limit) {
    TUSC_LOG(TUSC_LOG_DEBUG, "connection timed out (%s)", action == 1 ? "idle" : "read/write");
    if (action == 1)
      conn_close(conn);
    else
      conn_fail(conn, err);
    return;
  }
  uv_timer_start(timer, on_timer, limit - (now - conn->activity_ms), 0);
}

/* --- responses -------------------------------------------------------------------- */

struct write_req {
  uv_write_t w;
  tusc_http_conn_t *conn;
  tusc_http_write_cb cb; /* handler's callback for streamed chunks */
  void *arg;
  struct req_ctx *ctx;
};

static void log_access(struct req_ctx *ctx) {
  if (!tusc_log_enabled(TUSC_LOG_INFO))
    return;
  tusc_http_request_t *req = &ctx->req;
  char status[16], bytes_in[24], bytes_out[24], duration[24], remote[96];
  snprintf(status, sizeof(status), "%d", ctx->status);
  snprintf(bytes_in, sizeof(bytes_in), "%lld", (long long)req->body_received);
  snprintf(bytes_out, sizeof(bytes_out), "%lld", (long long)ctx->bytes_out);
  snprintf(duration, sizeof(duration), "%llu", (unsigned long long)(tusc_now_ms() - req->start_ms));
  if (ctx->client != NULL)
    snprintf(remote, sizeof(remote), "%s", ctx->client);
  else if (req->remote_addr[0] == '\0')
    snprintf(remote, sizeof(remote), "unix");
  else if (strchr(req->remote_addr, ':') != NULL)
    snprintf(remote, sizeof(remote), "[%s]:%d", req->remote_addr, req->remote_port);
  else
    snprintf(remote, sizeof(remote), "%s:%d", req->remote_addr, req->remote_port);
  /* Optional fields packed to the front: a NULL key ends the list. */
  const char *opt[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
  size_t n = 0;
  if (ctx->method != NULL) {
    opt[n++] = "orig_method";
    opt[n++] = req->method_name;
  }
  if (ctx->user != NULL) {
    opt[n++] = "user";
    opt[n++] = ctx->user;
  }
  if (ctx->aborted) {
    opt[n++] = "aborted";
    opt[n++] = "true";
  }
  tusc_log_event(TUSC_LOG_INFO, "ResponseOutgoing", "method",
                 ctx->method != NULL ? ctx->method : req->method_name, "path",
                 req->path[0] ? req->path : "-", "status", status, "bytes_in", bytes_in,
                 "bytes_out", bytes_out, "duration_ms", duration, "remote", remote, opt[0], opt[1],
                 opt[2], opt[3], opt[4], opt[5], NULL);
}

static void request_done(tusc_http_conn_t *conn) {
  struct req_ctx *ctx = conn->req;
  if (ctx == NULL)
    return;
  if (!ctx->discard || ctx->status != 0)
    log_access(ctx);
  bool close = ctx->close_after || ctx->discard || conn->server->stopping;
  bool linger = ctx->linger_after || (ctx->has_body && !ctx->msg_complete);
  conn->req = NULL;
  ctx_free(ctx);
  conn->requests_done++;
  if (conn->closing) {
    conn_maybe_free(conn);
    return;
  }
  conn->activity_ms = uv_now(conn->server->loop);
  if (close) {
    if (linger)
      conn_linger(conn);
    else
      conn_close(conn);
    return;
  }
  if (conn->pending != NULL)
    process_pending(conn);
  update_reading(conn);
}

static void on_write(uv_write_t *w, int status) {
  struct write_req *wr = (struct write_req *)w;
  tusc_http_conn_t *conn = wr->conn;
  struct req_ctx *ctx = wr->ctx;
  conn->writes_pending--;
  if (status < 0)
    conn_fail(conn, status);
  else
    conn->activity_ms = uv_now(conn->server->loop);
  if (wr->cb != NULL)
    wr->cb(&ctx->req, status, wr->arg);
  free(wr);
  if (conn->writes_pending == 0 && conn->req != NULL && conn->req->response_ended &&
      conn->req == ctx)
    request_done(conn);
  else if (conn->closing)
    conn_maybe_free(conn);
}

/* Queues `len` bytes at `base` (owned by `wr` or the caller). 0 or a negative code. */
static int queue_write(tusc_http_conn_t *conn, struct write_req *wr, char *base, size_t len) {
  wr->conn = conn;
  int rc = conn->tr->ops->write(conn->tr, &conn->io.stream, &wr->w, base, len, on_write);
  if (rc == 0)
    conn->writes_pending++;
  return rc;
}

/* Decides keep-alive and sends the head (and `body` unless HEAD). */
static void send_response(struct req_ctx *ctx, tusc_http_response_t *resp, const void *body,
                          size_t body_len, int64_t content_length) {
  tusc_http_conn_t *conn = ctx->conn;
  tusc_http_server_t *server = conn->server;
  if (resp->status < 200) {
    /* A 1xx does not end a request (tusc_http_send_interim sends those). */
    TUSC_LOG(TUSC_LOG_ERROR, "%s %s: %d is no final status; answering 500", ctx->req.method_name,
             ctx->req.path, resp->status);
    resp->status = 500;
  }
  ctx->status = resp->status;
  bool body_unread = ctx->has_body && !ctx->msg_complete;
  if (body_unread)
    ctx->linger_after = true;
  bool close = resp->close || !ctx->req.keep_alive || server->stopping || body_unread ||
               ctx->close_after || content_length < 0 || !ctx->head_done;
  ctx->close_after = close;
  const char *hsts = ctx->req.tls ? tusc_tls_hsts(server->tls) : NULL;
  if (hsts != NULL)
    tusc_http_response_header(resp, "Strict-Transport-Security", hsts);
  bool is_head = ctx->req.method == TUSC_HTTP_HEAD;
  tusc_http_head_opts_t opts = {
      .head_request = is_head,
      .close = close,
      .keep_alive_header = !close && ctx->req.http_minor == 0,
      .content_length = content_length,
      .date = server_date(server),
  };
  /* Enforced here for every caller: a bodiless answer carries no byte after its head,
   * whatever body it was handed, or the stream's next response would start there. */
  size_t send_body = is_head || !tusc_http_status_has_body(resp->status) ? 0 : body_len;
  size_t head_len = 0;
  char *buf = tusc_http_build_head(resp, &opts, sizeof(struct write_req), send_body, &head_len);
  tusc_http_response_dispose(resp);
  if (buf == NULL) {
    conn_fail(conn, UV_ENOMEM);
    return;
  }
  struct write_req *wr = (struct write_req *)buf;
  memset(wr, 0, sizeof(*wr));
  wr->ctx = ctx;
  char *head = buf + sizeof(*wr);
  if (send_body > 0)
    memcpy(head + head_len, body, send_body);
  ctx->bytes_out += (int64_t)send_body;
  int rc = queue_write(conn, wr, head, head_len + send_body);
  if (rc != 0) {
    free(buf);
    conn_fail(conn, rc);
  }
}

void tusc_http_respond(tusc_http_request_t *req, tusc_http_response_t *resp, const void *body,
                       size_t body_len) {
  struct req_ctx *ctx = ctx_of(req);
  tusc_http_conn_t *conn = ctx->conn;
  if (ctx->responding) {
    TUSC_LOG(TUSC_LOG_ERROR, "second response for %s %s ignored", req->method_name, req->path);
    tusc_http_response_dispose(resp);
    return;
  }
  ctx->responding = true;
  ctx->response_ended = true;
  if (ctx->discard || conn->closing) {
    ctx->status = resp->status;
    tusc_http_response_dispose(resp);
    if (conn->writes_pending == 0)
      request_done(conn);
    return;
  }
  send_response(ctx, resp, body, body_len, (int64_t)body_len);
  /* Body bytes that arrived but were never given to the handler may wait in
   * conn->pending; reading stays off until the response is out. */
  if (!conn->in_feed)
    update_reading(conn);
}

void tusc_http_respond_start(tusc_http_request_t *req, tusc_http_response_t *resp,
                             int64_t content_length) {
  struct req_ctx *ctx = ctx_of(req);
  tusc_http_conn_t *conn = ctx->conn;
  if (ctx->responding) {
    TUSC_LOG(TUSC_LOG_ERROR, "second response for %s %s ignored", req->method_name, req->path);
    tusc_http_response_dispose(resp);
    return;
  }
  ctx->responding = true;
  ctx->streaming = true;
  ctx->stream_length = content_length;
  if (ctx->discard || conn->closing) {
    ctx->status = resp->status;
    tusc_http_response_dispose(resp);
    return;
  }
  send_response(ctx, resp, NULL, 0, content_length);
  if (!conn->in_feed)
    update_reading(conn);
}

void tusc_http_respond_write(tusc_http_request_t *req, const void *data, size_t len,
                             tusc_http_write_cb cb, void *arg) {
  struct req_ctx *ctx = ctx_of(req);
  tusc_http_conn_t *conn = ctx->conn;
  if (!ctx->streaming || ctx->response_ended) {
    TUSC_LOG(TUSC_LOG_ERROR, "respond_write outside a streamed response");
    if (cb)
      defer_write_cb(ctx, cb, arg, UV_EINVAL);
    return;
  }
  if (ctx->discard || conn->closing) {
    if (cb)
      defer_write_cb(ctx, cb, arg, UV_ECANCELED);
    return;
  }
  if (ctx->req.method == TUSC_HTTP_HEAD || !tusc_http_status_has_body(ctx->status) || len == 0) {
    if (cb)
      defer_write_cb(ctx, cb, arg, 0);
    return;
  }
  struct write_req *wr = calloc(1, sizeof(*wr));
  if (wr == NULL) {
    conn_fail(conn, UV_ENOMEM);
    if (cb)
      defer_write_cb(ctx, cb, arg, UV_ENOMEM);
    return;
  }
  wr->ctx = ctx;
  wr->cb = cb;
  wr->arg = arg;
  ctx->bytes_out += (int64_t)len;
  int rc = queue_write(conn, wr, (char *)(uintptr_t)data, len);
  if (rc != 0) {
    free(wr);
    conn_fail(conn, rc);
    if (cb)
      defer_write_cb(ctx, cb, arg, rc);
  }
}

void tusc_http_respond_end(tusc_http_request_t *req) {
  struct req_ctx *ctx = ctx_of(req);
  tusc_http_conn_t *conn = ctx->conn;
  if (!ctx->streaming || ctx->response_ended)
    return;
  ctx->response_ended = true;
  if (ctx->req.method != TUSC_HTTP_HEAD && tusc_http_status_has_body(ctx->status) &&
      ctx->bytes_out != ctx->stream_length)
    ctx->close_after = true; /* the client cannot tell where this response ends */
  if (conn->writes_pending == 0)
    request_done(conn);
}

void tusc_http_send_interim(tusc_http_request_t *req, tusc_http_response_t *resp) {
  struct req_ctx *ctx = ctx_of(req);
  tusc_http_conn_t *conn = ctx->conn;
  if (ctx->responding || ctx->discard || conn->closing || req->http_minor == 0 ||
      resp->status < 100 || resp->status >= 200 || resp->status == 101) {
    tusc_http_response_dispose(resp);
    return;
  }
  tusc_http_head_opts_t opts = {.content_length = -1};
  size_t head_len = 0;
  char *buf = tusc_http_build_head(resp, &opts, sizeof(struct write_req), 0, &head_len);
  tusc_http_response_dispose(resp);
  if (buf == NULL)
    return;
  struct write_req *wr = (struct write_req *)buf;
  memset(wr, 0, sizeof(*wr));
  wr->ctx = ctx;
  if (queue_write(conn, wr, buf + sizeof(*wr), head_len) != 0)
    free(buf);
}

/* Answers a request the handler never saw: "ERR_CODE: message", then close. */
static void http_error(tusc_http_conn_t *conn, int status, int err, const char *message) {
  struct req_ctx *ctx = conn->req;
  if (ctx == NULL) {
    if (request_new(conn) != 0) {
      conn_close(conn);
      return;
    }
    ctx = conn->req;
  }
  if (ctx->responding)
    return;
  ctx->responding = true;
  ctx->response_ended = true;
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
  if (ctx->req.remote_addr[0] == '\0')
    fill_remote(conn, &ctx->req);
  /* Rejections before dispatch must still carry HSTS (send_response adds it). */
  ctx->req.tls = conn->tr != NULL && conn->tr->ops->secure(conn->tr);
  char status_text[16];
  snprintf(status_text, sizeof(status_text), "%d", status);
  tusc_log_event(TUSC_LOG_INFO, "RequestRejected", "status", status_text, "reason",
                 message ? message : tusc_strerror(err), "remote", ctx->req.remote_addr, NULL);
  send_response(ctx, &resp, body, (size_t)n, n);
}

/* --- request-facing API ----------------------------------------------------------- */

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

/* Resumes parsing after the handler allowed it: inside feed() the loop just goes on;
 * otherwise waiting bytes are parsed from the idle callback (never inside the
 * handler's own call) and the socket is read again. */
static void continue_body(tusc_http_conn_t *conn) {
  conn->activity_ms = uv_now(conn->server->loop);
  if (conn->in_feed || conn->closing)
    return;
  if (conn->pending != NULL)
    kick(conn);
  else
    update_reading(conn);
}

void tusc_http_body_start(tusc_http_request_t *req) {
  struct req_ctx *ctx = ctx_of(req);
  tusc_http_conn_t *conn = ctx->conn;
  if (!ctx->has_body || ctx->body_started || ctx->responding || ctx->aborted)
    return;
  ctx->body_started = true;
  if (req->expect_continue && !conn->closing) {
    struct write_req *wr = calloc(1, sizeof(*wr));
    if (wr != NULL) {
      wr->ctx = ctx;
      if (queue_write(conn, wr, (char *)(uintptr_t)continue_line, sizeof(continue_line) - 1) != 0)
        free(wr);
    }
  }
  continue_body(conn);
}

void tusc_http_body_pause(tusc_http_request_t *req) {
  struct req_ctx *ctx = ctx_of(req);
  if (!ctx->has_body || ctx->msg_complete || ctx->body_paused)
    return;
  ctx->body_paused = true;
  if (!ctx->conn->in_feed)
    update_reading(ctx->conn);
}

void tusc_http_body_resume(tusc_http_request_t *req) {
  struct req_ctx *ctx = ctx_of(req);
  tusc_http_conn_t *conn = ctx->conn;
  if (!ctx->body_paused)
    return;
  ctx->body_paused = false;
  if (ctx->body_end_pending) {
    /* The message ended while paused; its end is all that is left to tell. */
    kick(conn);
    return;
  }
  continue_body(conn);
}

uv_loop_t *tusc_http_request_loop(const tusc_http_request_t *req) {
  return req->conn->server->loop;
}

void tusc_http_request_set_client(tusc_http_request_t *req, const char *addr) {
  struct req_ctx *ctx = ctx_of(req);
  free(ctx->client);
  ctx->client = addr ? strdup(addr) : NULL;
}

void tusc_http_request_set_method(tusc_http_request_t *req, const char *method) {
  struct req_ctx *ctx = ctx_of(req);
  free(ctx->method);
  ctx->method = method ? strdup(method) : NULL;
}

void tusc_http_request_set_user(tusc_http_request_t *req, const char *user) {
  struct req_ctx *ctx = ctx_of(req);
  free(ctx->user);
  ctx->user = user ? strdup(user) : NULL;
}

/* --- server ----------------------------------------------------------------------- */

/* -max-connections / -max-connections-per-ip. A refused connection gets a 503 if the
 * socket takes it at once (never waited for: the point is to spend nothing on it) and
 * is closed; with TLS it is closed without a word, as no handshake is worth doing. */
static bool admit(tusc_http_conn_t *conn) {
  tusc_http_server_t *server = conn->server;
  struct sockaddr_storage peer;
  int len = sizeof(peer);
  const struct sockaddr *sa = NULL;
  if (!server->is_pipe && uv_tcp_getpeername(&conn->io.tcp, (struct sockaddr *)&peer, &len) == 0)
    sa = (const struct sockaddr *)&peer;
  if (tusc_connlimit_acquire(server->limits.connlimit, sa, &conn->limit_slot) == 0)
    return true;
  static const char refusal[] = "HTTP/1.1 503 Service Unavailable\r\n"
                                "Content-Type: text/plain; charset=utf-8\r\n"
                                "Content-Length: 47\r\n"
                                "Retry-After: 1\r\n"
                                "Connection: close\r\n\r\n"
                                "ERR_TOO_MANY_CONNECTIONS: too many connections\n";
  if (server->tls == NULL) {
    uv_buf_t buf = uv_buf_init((char *)refusal, sizeof(refusal) - 1);
    (void)uv_try_write(&conn->io.stream, &buf, 1);
  }
  TUSC_LOG(TUSC_LOG_DEBUG, "connection refused: connection limit reached");
  conn_close(conn);
  return false;
}

/* Out of descriptors. libuv drops waiting connections with a spare descriptor of its
 * own, but with several workers another thread can take that descriptor's number
 * while it is briefly closed. libuv then has no spare and, since Linux's accept()
 * fails with EMFILE before it even looks at the queue, calls us from a loop that
 * only ends on EAGAIN: a worker at 100% CPU until some descriptor frees up (found by
 * test_exhaustion.py). So: free a slot (our own spare, else the longest-idle
 * connection without a request), drop what is waiting (clients see a close at once,
 * not a hang), and leave the slot free so that libuv's next accept() says EAGAIN and
 * the loop goes back to sleep. The spare is re-armed when a connection closes. */
static void drop_pending(tusc_http_server_t *server, uv_stream_t *listener) {
  uint64_t now = uv_now(server->loop);
  if (server->emfile_log_ms == 0 || now - server->emfile_log_ms >= 1000) {
    server->emfile_log_ms = now;
    TUSC_LOG(TUSC_LOG_WARN, "out of file descriptors: dropping new connections until some close");
  }
  uv_os_fd_t lfd;
  if (uv_fileno((uv_handle_t *)listener, &lfd) != 0)
    return;
  if (server->spare_fd >= 0) {
    close(server->spare_fd);
    server->spare_fd = -1;
  } else {
    tusc_http_conn_t *victim = NULL;
    for (tusc_http_conn_t *c = server->conns; c != NULL; c = c->next)
      if (!c->closing && c->req == NULL && c->writes_pending == 0 &&
          (victim == NULL || c->activity_ms < victim->activity_ms))
        victim = c;
    if (victim == NULL)
      return; /* every connection is mid-request; one will end soon */
    conn_close(victim); /* uv_close closes the socket at once */
  }
  for (int i = 0; i < LISTEN_BACKLOG; i++) { /* bounded: a flood must not hold the loop */
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0)
      close(fd);
    else if (errno != EINTR && errno != ECONNABORTED)
      break;
  }
}

static void on_connection(uv_stream_t *listener, int status) {
  tusc_http_server_t *server = listener->data;
  if (status == UV_EMFILE || status == UV_ENFILE) {
    drop_pending(server, listener);
    return;
  }
  if (status < 0) {
    TUSC_LOG(TUSC_LOG_WARN, "accept failed: %s", uv_strerror(status));
    return;
  }
  if (server->stopping)
    return;
  tusc_http_conn_t *conn = calloc(1, sizeof(*conn));
  if (conn == NULL)
    return;
  conn->server = server;
  conn->is_pipe = server->is_pipe;
  int rc = server->is_pipe ? uv_pipe_init(server->loop, &conn->io.pipe, 0)
                           : uv_tcp_init(server->loop, &conn->io.tcp);
  if (rc != 0) {
    free(conn);
    return;
  }
  conn->io.handle.data = conn;
  uv_timer_init(server->loop, &conn->timer);
  conn->timer.data = conn;
  conn->next = server->conns;
  if (server->conns)
    server->conns->prev = conn;
  server->conns = conn;
  server->conn_count++;
  tusc_metrics_connections(1);
  if (uv_accept(listener, &conn->io.stream) != 0) {
    conn_close(conn);
    return;
  }
  if (!server->is_pipe)
    uv_tcp_nodelay(&conn->io.tcp, 1);
  if (server->limits.connlimit != NULL && !admit(conn))
    return;
  conn->tr = &tusc_transport_plain;
  if (server->tls != NULL && tusc_tls_transport_new(server->tls, &conn->tr) != 0) {
    conn->tr = &tusc_transport_plain; /* freed as plain: nothing to free */
    conn_close(conn);
    return;
  }
  conn->activity_ms = uv_now(server->loop);
  if (head_timeout(server) > 0)
    uv_timer_start(&conn->timer, on_timer, head_timeout(server), 0);
  update_reading(conn);
}

int tusc_http_server_new(uv_loop_t *loop, int fd, const tusc_http_limits_t *limits,
                         const tusc_http_handler_t *handler, void *ctx, tusc_http_server_t **out) {
  if (loop == NULL || fd < 0 || limits == NULL || handler == NULL || handler->on_request == NULL)
    return TUSC_EINVALID_ARGUMENT;
  tusc_http_server_t *server = calloc(1, sizeof(*server));
  if (server == NULL)
    return TUSC_ENOMEM;
  server->read_buf = malloc(READ_BUFFER_SIZE);
  if (server->read_buf == NULL) {
    free(server);
    return TUSC_ENOMEM;
  }
  server->loop = loop;
  server->limits = *limits;
  if (server->limits.max_header_size < 256)
    server->limits.max_header_size = 256;
  if (server->limits.max_header_size > (size_t)1 << 30)
    server->limits.max_header_size = (size_t)1 << 30;
  if (server->limits.max_header_count == 0)
    server->limits.max_header_count = 1;
  tusc_hparser_set_min_head_limit(server->limits.max_header_size + 1024);
  server->handler = handler;
  server->ctx = ctx;
  server->date_sec = -1;
  server->spare_fd = -1;

  int domain = 0;
  socklen_t dlen = sizeof(domain);
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dlen) != 0) {
    int rc = -errno;
    close(fd);
    free(server->read_buf);
    free(server);
    return rc;
  }
  server->is_pipe = domain == AF_UNIX;
  int rc = server->is_pipe ? uv_pipe_init(loop, &server->listener.pipe, 0)
                           : uv_tcp_init(loop, &server->listener.tcp);
  if (rc != 0) {
    close(fd);
    free(server->read_buf);
    free(server);
    return rc;
  }
  server->listener.handle.data = server;
  rc = server->is_pipe ? uv_pipe_open(&server->listener.pipe, fd)
                       : uv_tcp_open(&server->listener.tcp, fd);
  if (rc != 0)
    close(fd); /* not adopted by the handle */
  else
    rc = uv_listen(&server->listener.stream, LISTEN_BACKLOG, on_connection);
  uv_idle_init(loop, &server->idle);
  server->idle.data = server;
  if (rc != 0) {
    /* The handles exist; they are closed and the server freed via the normal path. */
    server->free_when_done = true;
    tusc_http_server_stop(server, false, NULL, NULL);
    return rc;
  }
  server->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  *out = server;
  return 0;
}

static void server_free_now(tusc_http_server_t *server) {
  if (server->spare_fd >= 0)
    close(server->spare_fd);
  free(server->read_buf);
  free(server);
}

static void on_idle_closed(uv_handle_t *handle) {
  tusc_http_server_t *server = handle->data;
  server->idle_closed = true;
  server_check_done(server);
}

static void server_check_done(tusc_http_server_t *server) {
  if (!server->stopping || server->done || server->conn_count > 0)
    return;
  if (!server->idle_closing && !server->idle_active) {
    server->idle_closing = true;
    uv_close((uv_handle_t *)&server->idle, on_idle_closed);
  }
  if (!server->listener_closed || !server->idle_closed)
    return;
  server->done = true;
  if (server->free_when_done) {
    server_free_now(server);
    return;
  }
  /* Last use of `server` here: the callback may free it. */
  if (server->done_cb)
    server->done_cb(server, server->done_arg);
}

static void on_listener_closed(uv_handle_t *handle) {
  tusc_http_server_t *server = handle->data;
  server->listener_closed = true;
  server_check_done(server);
}

void tusc_http_server_stop(tusc_http_server_t *server, bool abort_in_flight,
                           void (*done_cb)(tusc_http_server_t *server, void *arg), void *arg) {
  if (server == NULL)
    return;
  if (done_cb != NULL) {
    server->done_cb = done_cb;
    server->done_arg = arg;
  }
  if (abort_in_flight)
    server->abort_in_flight = true;
  if (!server->stopping) {
    server->stopping = true;
    uv_close(&server->listener.handle, on_listener_closed);
  }
  tusc_http_conn_t *next;
  for (tusc_http_conn_t *conn = server->conns; conn != NULL; conn = next) {
    next = conn->next;
    if (conn->closing)
      continue;
    struct req_ctx *ctx = conn->req;
    if (ctx == NULL) {
      if (conn->writes_pending == 0)
        conn_close(conn);
      continue;
    }
    if (!ctx->head_done) {
      conn_close(conn);
      continue;
    }
    ctx->close_after = true;
    if (!server->abort_in_flight)
      continue;
    if (handler_owns(ctx))
      soft_abort(ctx, TUSC_ESERVER_SHUTDOWN);
    else if (ctx->streaming && !ctx->response_ended)
      conn_fail(conn, TUSC_ESERVER_SHUTDOWN); /* a download would outlast the stop */
  }
  server_check_done(server);
}

void tusc_http_server_free(tusc_http_server_t *server) {
  if (server == NULL)
    return;
  if (server->done) {
    server_free_now(server);
    return;
  }
  server->free_when_done = true;
  server->done_cb = NULL;
  tusc_http_server_stop(server, true, NULL, NULL);
}

void tusc_http_server_set_tls(tusc_http_server_t *server, struct tusc_tls_s *tls) {
  server->tls = tls;
}

size_t tusc_http_server_connections(const tusc_http_server_t *server) {
  return server->conn_count;
}

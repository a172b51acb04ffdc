/*
 * h2 — HTTP/2 streams on a connection (see h2.h).
 *
 * Reentrancy: nghttp2 calls us from inside nghttp2_session_mem_recv / mem_send, and
 * the handler may answer from inside its on_request / on_abort. So the proto ops the
 * handler calls only submit to nghttp2 and ask for a flush on the idle turn
 * (tusc_http_conn_kick); bytes are produced (mem_send) and streams freed (reap) only
 * at the end of a feed, on the idle turn, or when a write completes — never with a
 * handler's call on the stack.
 */
#include "http/h2.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "common/error.h"
#include "common/log.h"
#include "http/internal.h"
#include "http/request.h"
#include "net/tls.h"

#define H2_MAX_STREAMS 100
/* Receive windows (see h2.h's memory bound): a stream's must keep a fast upload's
 * pipe full between WINDOW_UPDATEs (sent after half a window), the connection's lets
 * 16 paused streams hold their whole window before the others stall. */
#define H2_STREAM_WINDOW (1024 * 1024)
#define H2_CONN_WINDOW (16 * 1024 * 1024)
#define H2_HELD_PIECE (64 * 1024)
#define H2_WRITE_CHUNK (64 * 1024) /* a write is cut after this many bytes */
#define H2_WRITE_MIN 512
#define H2_WRITES_IN_FLIGHT 4
/* Rapid reset: streams the client may reset before their answer is out, beyond two
 * per answered stream. */
#define H2_RESET_BUDGET 200
#define H2_MAX_CONTINUATIONS 8

/* Held body bytes: consecutive DATA frames share a piece of at least H2_HELD_PIECE
 * bytes, so holding a window costs a few allocations, not one per frame (nor one
 * allocation's overhead per byte of a flood of tiny frames). */
struct h2_held {
  struct h2_held *next;
  size_t len, cap;
  char data[];
};

struct h2_out {
  struct h2_out *next;
  const char *data;
  size_t len, off;
  tusc_http_write_cb cb;
  void *arg;
};

struct h2_stream {
  tusc_http_exchange_t x; /* first: &x.req is the handler's pointer */
  struct h2_conn *hc;
  struct h2_stream *prev, *next;
  int32_t id;
  /* the head as it arrives */
  char *method, *path, *authority, *target;
  tusc_http_header_t *hdrs;
  size_t nhdrs, cap_hdrs;
  size_t head_bytes;
  bool bad_head;
  /* request body */
  bool has_body, body_started, paused, refused, remote_ended;
  uint64_t body_ms; /* loop time of the body's last progress (for its read timeout) */
  bool reset;       /* we reset the stream (RST_STREAM queued) */
  struct h2_held *held, *held_tail;
  /* response */
  bool submitted;
  bool local_ended; /* END_STREAM sent */
  char *body;       /* a whole response's body */
  size_t body_len, body_off;
  uint64_t send_ms; /* loop time the response body last moved (for its write timeout) */
  struct h2_out *out, *out_tail;
  unsigned later_pending; /* completions queued with conn.c, referring to x.req */
  bool closed;            /* nghttp2 is done with the stream */
};

struct h2_conn {
  tusc_http_conn_t *conn;
  nghttp2_session *s;
  struct h2_stream *streams;
  size_t nstreams;
  unsigned writes; /* our writes in flight */
  unsigned depth;  /* > 0: our code is on the stack; no freeing of streams or self */
  unsigned peer_resets, answered;
  bool in_recv;
  /* A header block is arriving (since head_start_ms): nothing else may come on the
   * connection until it is whole (RFC 9113 6.10), so it has the header timeout. */
  bool head_open;
  uint64_t head_start_ms;
  /* Loop time of the last request progress (a stream began or ended, or a write while
   * streams are open): an idle connection's clock, which PING or SETTINGS frames (and
   * their acknowledgements) do not reset. */
  uint64_t progress_ms;
  /* Emptied held pieces kept for the next ones, at most a stream window's worth (a
   * paused upload holds and drains all the time; freeing and faulting the pages in again
   * cost more than the copy); freed when the connection has no stream. */
  struct h2_held *spare;
  unsigned nspare;
  bool dead; /* the connection closed */
  bool goaway_sent;
  bool terminated; /* the last GOAWAY is queued: the session winds down */
};

struct h2_write {
  tusc_http_write_t base; /* first */
  struct h2_conn *hc;
  struct h2_stream *st; /* completions of the handler's writes */
  tusc_http_write_cb cb;
  void *arg;
  char data[];
};

static const tusc_http_proto_t h2_proto;
static void flush(struct h2_conn *hc);
static void h2_complete_later(tusc_http_exchange_t *x, tusc_http_write_cb cb, void *arg,
                              int status);
static void reap(struct h2_conn *hc);

static struct h2_stream *st_of(tusc_http_exchange_t *x) {
  return (struct h2_stream *)x;
}

static void held_free(struct h2_conn *hc, struct h2_held *h) {
  if (h->cap == H2_HELD_PIECE && hc->nspare < H2_STREAM_WINDOW / H2_HELD_PIECE) {
    h->next = hc->spare;
    hc->spare = h;
    hc->nspare++;
  } else {
    free(h);
  }
}

static void spare_free(struct h2_conn *hc) {
  while (hc->spare != NULL) {
    struct h2_held *h = hc->spare;
    hc->spare = h->next;
    free(h);
  }
  hc->nspare = 0;
}

static uint64_t loop_now(const struct h2_conn *hc) {
  return uv_now(hc->conn->server->loop);
}

static void want_flush(struct h2_conn *hc) {
  if (!hc->dead)
    tusc_http_conn_kick(hc->conn);
}

/* --- streams ------------------------------------------------------------------------- */

static struct h2_stream *stream_new(struct h2_conn *hc, int32_t id) {
  struct h2_stream *st = calloc(1, sizeof(*st));
  if (st == NULL)
    return NULL;
  tusc_http_server_t *server = hc->conn->server;
  tusc_http_exchange_init(&st->x, &h2_proto, server->handler, server->ctx, server->loop);
  st->hc = hc;
  st->id = id;
  st->x.req.conn = hc->conn;
  st->x.req.http_minor = 1;
  st->x.req.keep_alive = true;
  st->next = hc->streams;
  if (hc->streams)
    hc->streams->prev = st;
  hc->streams = st;
  hc->nstreams++;
  return st;
}

static void stream_free(struct h2_conn *hc, struct h2_stream *st) {
  if (st->prev)
    st->prev->next = st->next;
  else
    hc->streams = st->next;
  if (st->next)
    st->next->prev = st->prev;
  hc->nstreams--;
  if (st->x.dispatched && (!st->x.discard || st->x.status != 0))
    tusc_http_exchange_log(&st->x);
  if (st->x.dispatched)
    hc->conn->requests_done++;
  tusc_http_exchange_dispose(&st->x);
  for (size_t i = 0; i < st->nhdrs; i++)
    free((char *)st->hdrs[i].name); /* name and value share one allocation */
  free(st->hdrs);
  free(st->method);
  free(st->path);
  free(st->authority);
  free(st->target);
  while (st->held) {
    struct h2_held *h = st->held;
    st->held = h->next;
    held_free(hc, h);
  }
  free(st->body);
  free(st);
}

/* Both nghttp2 and the handler are done with the stream. */
static bool freeable(const struct h2_stream *st) {
  if (st->later_pending > 0 || st->out != NULL)
    return false;
  if (st->x.dispatched && !st->x.response_ended)
    return false;
  return st->closed || st->hc->dead;
}

static void conn_release(struct h2_conn *hc) {
  tusc_http_conn_t *conn = hc->conn;
  spare_free(hc);
  nghttp2_session_del(hc->s);
  conn->req = NULL;
  free(hc);
  tusc_http_conn_request_ended(conn, true, false);
}

static void reap(struct h2_conn *hc) {
  if (hc->depth > 0)
    return;
  struct h2_stream *next;
  for (struct h2_stream *st = hc->streams; st != NULL; st = next) {
    next = st->next;
    if (freeable(st)) {
      if (!st->closed && !hc->dead)
        nghttp2_session_set_stream_user_data(hc->s, st->id, NULL);
      stream_free(hc, st);
      hc->progress_ms = loop_now(hc);
    }
  }
  if (hc->streams == NULL)
    spare_free(hc); /* an idle connection holds no body memory */
  if (!hc->dead && hc->goaway_sent && !hc->terminated && hc->streams == NULL) {
    /* A graceful stop: the last stream is done, so the connection ends. */
    hc->terminated = true;
    nghttp2_session_terminate_session(hc->s, NGHTTP2_NO_ERROR);
    want_flush(hc);
  }
  if (hc->dead && hc->streams == NULL && hc->writes == 0)
    conn_release(hc);
}

/* Queued chunks of a stream that can no longer be sent: their callbacks still run. */
static void cancel_out(struct h2_stream *st, int status) {
  while (st->out) {
    struct h2_out *o = st->out;
    st->out = o->next;
    if (o->cb != NULL) {
      st->later_pending++;
      h2_complete_later(&st->x, o->cb, o->arg, status);
    }
    free(o);
  }
  st->out_tail = NULL;
}

/* --- delivering the request body ----------------------------------------------------- */

static bool deliverable(const struct h2_stream *st) {
  return st->x.dispatched && st->body_started && !st->paused && !st->x.responding &&
         !st->x.aborted && !st->refused;
}

static bool discarding(const struct h2_stream *st) {
  return st->x.responding || st->x.aborted || st->refused || st->x.discard;
}

/* The handler wants body bytes the client has not sent yet: the body read timeout runs. */
static bool waiting_body(const struct h2_stream *st) {
  return st->has_body && !st->remote_ended && !st->closed && !st->reset && deliverable(st);
}

/* The stream's body clock starts again (it waits for bytes from now on). */
static void body_progress(struct h2_conn *hc, struct h2_stream *st) {
  st->body_ms = loop_now(hc);
  if (waiting_body(st))
    tusc_http_conn_deadline(hc->conn, hc->conn->server->limits.network_timeout_ms);
}

static void consume(struct h2_conn *hc, struct h2_stream *st, size_t n) {
  if (!hc->dead && !st->closed)
    nghttp2_session_consume(hc->s, st->id, n);
  else if (!hc->dead)
    nghttp2_session_consume_connection(hc->s, n);
}

/* One piece to the handler; the window opens by what it took. */
static void deliver(struct h2_conn *hc, struct h2_stream *st, const char *data, size_t len) {
  if (tusc_http_exchange_body(&st->x, data, len) < 0)
    st->refused = true;
  consume(hc, st, len);
}

static void drop_held(struct h2_conn *hc, struct h2_stream *st) {
  while (st->held) {
    struct h2_held *h = st->held;
    st->held = h->next;
    consume(hc, st, h->len);
    held_free(hc, h);
  }
  st->held_tail = NULL;
}

/* Gives held pieces to the handler while it takes them; then the end of the body. */
static void pump(struct h2_conn *hc, struct h2_stream *st) {
  if (discarding(st)) {
    drop_held(hc, st);
    return;
  }
  while (st->held && deliverable(st)) {
    struct h2_held *h = st->held;
    st->held = h->next;
    if (st->held == NULL)
      st->held_tail = NULL;
    deliver(hc, st, h->data, h->len);
    held_free(hc, h);
  }
  if (discarding(st))
    drop_held(hc, st);
  if (st->held == NULL && st->remote_ended && st->has_body && deliverable(st))
    tusc_http_exchange_body_end(&st->x);
}

/* --- nghttp2 callbacks ---------------------------------------------------------------- */

static int on_begin_frame(nghttp2_session *s, const nghttp2_frame_hd *hd, void *arg) {
  (void)s;
  struct h2_conn *hc = arg;
  if (hd->type == NGHTTP2_HEADERS) {
    hc->head_open = true;
    hc->head_start_ms = hc->progress_ms = loop_now(hc);
    uint64_t ht = tusc_http_conn_head_timeout(hc->conn->server);
    tusc_http_conn_deadline(hc->conn, ht);
  } else if (hd->type != NGHTTP2_CONTINUATION) {
    hc->head_open = false; /* a header block nghttp2 dropped ended before this frame */
  }
  return 0;
}

/* A header block nghttp2 refused (a stream beyond the limit, invalid fields): it will
 * not reach on_frame_recv, so its end stops the header clock here. */
static int on_invalid_frame(nghttp2_session *s, const nghttp2_frame *frame, int lib_error,
                            void *arg) {
  (void)s;
  (void)lib_error;
  struct h2_conn *hc = arg;
  if (frame->hd.type == NGHTTP2_HEADERS && (frame->hd.flags & NGHTTP2_FLAG_END_HEADERS))
    hc->head_open = false;
  return 0;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *frame, void *arg) {
  struct h2_conn *hc = arg;
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  struct h2_stream *st = stream_new(hc, frame->hd.stream_id);
  if (st == NULL)
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  nghttp2_session_set_stream_user_data(s, frame->hd.stream_id, st);
  return 0;
}

/* Appends a copy of name/value (NUL-terminated, one allocation) to the stream's
 * headers: 0 or TUSC_ENOMEM. */
static int push_header(struct h2_stream *st, const char *name, size_t namelen,
                       const char *value, size_t valuelen, bool trailer) {
  if (st->nhdrs == st->cap_hdrs) {
    size_t cap = st->cap_hdrs ? st->cap_hdrs * 2 : 16;
    tusc_http_header_t *h = realloc(st->hdrs, cap * sizeof(*h));
    if (h == NULL)
      return TUSC_ENOMEM;
    st->hdrs = h;
    st->cap_hdrs = cap;
  }
  char *mem = malloc(namelen + valuelen + 2);
  if (mem == NULL)
    return TUSC_ENOMEM;
  memcpy(mem, name, namelen);
  mem[namelen] = '\0';
  memcpy(mem + namelen + 1, value, valuelen);
  mem[namelen + 1 + valuelen] = '\0';
  st->hdrs[st->nhdrs++] = (tusc_http_header_t){.name = mem,
                                               .value = mem + namelen + 1,
                                               .name_len = namelen,
                                               .value_len = valuelen,
                                               .trailer = trailer};
  st->x.req.headers = st->hdrs;
  st->x.req.header_count = st->nhdrs;
  return 0;
}

static char *dup_n(const uint8_t *p, size_t n) {
  char *s = malloc(n + 1);
  if (s != NULL) {
    memcpy(s, p, n);
    s[n] = '\0';
  }
  return s;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *arg) {
  (void)flags;
  struct h2_conn *hc = arg;
  struct h2_stream *st = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
  if (st == NULL || st->bad_head)
    return 0;
  const tusc_http_limits_t *lim = &hc->conn->server->limits;
  st->head_bytes += namelen + valuelen + 32; /* RFC 9113's accounting */
  if (st->head_bytes > lim->max_header_size || st->nhdrs >= lim->max_header_count) {
    /* The rest of the block is decoded (HPACK needs it) but not kept; the stream is
     * reset once the block is whole (on_frame_recv), so the header timeout's clock
     * (head_open) always stops there. */
    st->bad_head = true;
    return 0;
  }
  if (namelen > 0 && name[0] == ':') {
    char **slot = NULL;
    if (namelen == 7 && memcmp(name, ":method", 7) == 0)
      slot = &st->method;
    else if (namelen == 5 && memcmp(name, ":path", 5) == 0)
      slot = &st->path;
    else if (namelen == 10 && memcmp(name, ":authority", 10) == 0)
      slot = &st->authority;
    if (slot != NULL && *slot == NULL && (*slot = dup_n(value, valuelen)) == NULL)
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    return 0;
  }
  return push_header(st, (const char *)name, namelen, (const char *)value, valuelen,
                     st->x.dispatched) == 0
             ? 0
             : NGHTTP2_ERR_CALLBACK_FAILURE;
}

/* Adds Host from :authority when the client sent none (h2 clients usually don't). */
static int add_host(struct h2_stream *st) {
  if (st->authority == NULL || tusc_http_header(&st->x.req, "Host") != NULL)
    return 0;
  return push_header(st, "host", 4, st->authority, strlen(st->authority), false);
}

static void dispatch(struct h2_conn *hc, struct h2_stream *st, bool end_stream) {
  tusc_http_request_t *req = &st->x.req;
  if (st->method == NULL || st->path == NULL || add_host(st) != 0) {
    nghttp2_submit_rst_stream(hc->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_PROTOCOL_ERROR);
    return;
  }
  req->method_name = st->method;
  req->method = tusc_http_method_of(st->method);
  req->target = st->path;
  char *q = strchr(st->path, '?');
  if (q != NULL) {
    *q = '\0'; /* path and query split in place; target keeps a copy below */
    req->query = q + 1;
    char *target = malloc(strlen(st->path) + strlen(q + 1) + 2);
    if (target == NULL) {
      nghttp2_submit_rst_stream(hc->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
      return;
    }
    sprintf(target, "%s?%s", st->path, q + 1);
    st->target = target;
    req->target = target;
  }
  req->path = st->path;
  const tusc_http_header_t *cl = tusc_http_header(req, "content-length");
  if (cl != NULL) {
    char *end = NULL;
    long long v = strtoll(cl->value, &end, 10);
    if (end != cl->value && *end == '\0' && v >= 0)
      req->content_length = v;
  }
  st->has_body = !end_stream;
  st->remote_ended = end_stream;
  req->chunked = st->has_body && req->content_length < 0;
  tusc_http_conn_peer(hc->conn, req);
  req->tls = tusc_http_conn_secure(hc->conn);
  hc->conn->activity_ms = uv_now(hc->conn->server->loop);
  st->body_ms = hc->conn->activity_ms;
  TUSC_LOG(TUSC_LOG_DEBUG, "h2 stream %d: %s %s", (int)st->id, req->method_name, req->target);
  tusc_http_exchange_dispatch(&st->x);
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *arg) {
  struct h2_conn *hc = arg;
  if (frame->hd.type == NGHTTP2_RST_STREAM) {
    struct h2_stream *st = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
    if (st != NULL && !st->local_ended &&
        ++hc->peer_resets > H2_RESET_BUDGET + 2 * hc->answered) {
      TUSC_LOG(TUSC_LOG_WARN, "h2: too many streams reset by the client; GOAWAY");
      nghttp2_session_terminate_session(s, NGHTTP2_ENHANCE_YOUR_CALM);
    }
    return 0;
  }
  if (frame->hd.type == NGHTTP2_HEADERS)
    hc->head_open = false;
  if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
    return 0;
  struct h2_stream *st = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
  if (st == NULL)
    return 0;
  if (frame->hd.type == NGHTTP2_HEADERS && st->bad_head) {
    if (!st->reset) {
      st->reset = true;
      nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    }
    if (st->x.dispatched) { /* oversized trailers: the handler gets no end of body */
      st->x.discard = true;
      tusc_http_exchange_abort(&st->x, TUSC_EBAD_REQUEST);
    }
    return 0;
  }
  bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame->hd.type == NGHTTP2_HEADERS && !st->x.dispatched) {
    dispatch(hc, st, end_stream);
    return 0;
  }
  if (end_stream) {
    st->remote_ended = true;
    pump(hc, st);
  }
  return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t stream_id,
                         const uint8_t *data, size_t len, void *arg) {
  (void)flags;
  struct h2_conn *hc = arg;
  struct h2_stream *st = nghttp2_session_get_stream_user_data(s, stream_id);
  if (st == NULL) {
    nghttp2_session_consume_connection(s, len);
    return 0;
  }
  hc->conn->activity_ms = uv_now(hc->conn->server->loop);
  st->body_ms = hc->conn->activity_ms;
  if (discarding(st)) {
    consume(hc, st, len);
    return 0;
  }
  if (st->held == NULL && deliverable(st)) {
    deliver(hc, st, (const char *)data, len);
    return 0;
  }
  /* Paused or not started: held, unacknowledged; the window bounds it. */
  struct h2_held *h = st->held_tail;
  if (h == NULL || h->cap - h->len < len) {
    size_t cap = len > H2_HELD_PIECE ? len : H2_HELD_PIECE;
    if (cap == H2_HELD_PIECE && hc->spare != NULL) {
      h = hc->spare;
      hc->spare = h->next;
      hc->nspare--;
    } else if ((h = malloc(sizeof(*h) + cap)) == NULL) {
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    h->next = NULL;
    h->len = 0;
    h->cap = cap;
    if (st->held_tail)
      st->held_tail->next = h;
    else
      st->held = h;
    st->held_tail = h;
  }
  memcpy(h->data + h->len, data, len);
  h->len += len;
  return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t error_code,
                           void *arg) {
  (void)error_code;
  struct h2_conn *hc = arg;
  struct h2_stream *st = nghttp2_session_get_stream_user_data(s, stream_id);
  if (st == NULL)
    return 0;
  nghttp2_session_set_stream_user_data(s, stream_id, NULL);
  st->closed = true;
  drop_held(hc, st);
  if (!st->x.response_ended || !st->local_ended) {
    /* Reset (or the connection ends) before the answer went out: like a dropped
     * HTTP/1.1 connection, the handler keeps what it stored and its answer is dropped. */
    st->x.discard = true;
    cancel_out(st, UV_ECANCELED);
    if (tusc_http_exchange_abort(&st->x, TUSC_EUNEXPECTED_EOF))
      TUSC_LOG(TUSC_LOG_DEBUG, "h2 stream %d aborted (error %u)", (int)stream_id, error_code);
  }
  return 0;
}

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *frame, void *arg) {
  if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
      !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
    return 0;
  struct h2_stream *st = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
  if (st == NULL)
    return 0;
  st->local_ended = true;
  ((struct h2_conn *)arg)->answered++;
  /* The answer is out but the request body is not all here: tell the client to stop
   * (RFC 9113 8.1). */
  if (!st->remote_ended)
    nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
  return 0;
}

/* --- writing ---------------------------------------------------------------------- */

static void on_write_done(tusc_http_write_t *base, int status) {
  struct h2_write *wr = (struct h2_write *)base;
  struct h2_conn *hc = wr->hc;
  struct h2_stream *st = wr->st;
  hc->depth++;
  if (st != NULL) {
    /* A completion of the handler's (complete_later). */
    st->later_pending--;
    if (wr->cb != NULL)
      wr->cb(&st->x.req, status, wr->arg);
  } else {
    hc->writes--;
    if (hc->nstreams > 0)
      hc->progress_ms = loop_now(hc);
  }
  free(wr);
  flush(hc);
  hc->depth--;
  reap(hc);
}

static void flush(struct h2_conn *hc) {
  if (hc->in_recv || hc->dead)
    return;
  while (hc->writes < H2_WRITES_IN_FLIGHT && !hc->dead) {
    struct h2_write *wr = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
      const uint8_t *data = NULL;
      ssize_t n = nghttp2_session_mem_send(hc->s, &data);
      if (n < 0) {
        free(wr);
        tusc_http_conn_fail(hc->conn, UV_EPROTO);
        return;
      }
      if (n == 0)
        break;
      if (len + (size_t)n > cap) {
        /* Sized to what is sent (mostly a WINDOW_UPDATE or a small response head), so
         * that a write does not take and give back 64 KiB of heap each time. */
        size_t want = cap < H2_WRITE_MIN ? H2_WRITE_MIN : 2 * cap;
        if (want < len + (size_t)n)
          want = len + (size_t)n;
        struct h2_write *bigger = realloc(wr, sizeof(*wr) + want);
        if (bigger == NULL) {
          free(wr);
          tusc_http_conn_fail(hc->conn, UV_ENOMEM);
          return;
        }
        if (wr == NULL) {
          memset(bigger, 0, sizeof(*bigger));
          bigger->hc = hc;
          bigger->base.done = on_write_done;
        }
        wr = bigger;
        cap = want;
      }
      memcpy(wr->data + len, data, (size_t)n);
      len += (size_t)n;
      if (len >= H2_WRITE_CHUNK)
        break;
    }
    if (wr == NULL)
      break;
    int rc = tusc_http_conn_write(hc->conn, &wr->base, wr->data, len);
    if (rc != 0) {
      free(wr);
      tusc_http_conn_fail(hc->conn, rc);
      return;
    }
    hc->writes++;
  }
  if (!hc->dead && hc->writes == 0 && !nghttp2_session_want_read(hc->s) &&
      !nghttp2_session_want_write(hc->s)) {
    /* After GOAWAY (ours or the client's): requests still in the handler's hands will
     * get no more bytes, so they are aborted like on a dropped connection. */
    bool in_flight = false;
    for (struct h2_stream *st = hc->streams; st != NULL; st = st->next)
      in_flight = in_flight || tusc_http_exchange_handler_owns(&st->x);
    if (in_flight)
      tusc_http_conn_fail(hc->conn, TUSC_EUNEXPECTED_EOF);
    else
      tusc_http_conn_close(hc->conn);
  }
}

/* --- the request API's HTTP/2 side (tusc_http_proto_t) -------------------------------- */

static void h2_body_start(tusc_http_exchange_t *x) {
  struct h2_stream *st = st_of(x);
  if (!st->has_body || st->body_started)
    return;
  st->body_started = true;
  body_progress(st->hc, st);
  want_flush(st->hc); /* held bytes and the end go out on the idle turn */
}

static void h2_body_pause(tusc_http_exchange_t *x) {
  st_of(x)->paused = true;
}

static void h2_body_resume(tusc_http_exchange_t *x) {
  struct h2_stream *st = st_of(x);
  if (!st->paused)
    return;
  st->paused = false;
  st->hc->conn->activity_ms = uv_now(st->hc->conn->server->loop);
  body_progress(st->hc, st);
  want_flush(st->hc);
}

static ssize_t read_body(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *data_flags, nghttp2_data_source *source, void *arg) {
  (void)s;
  (void)stream_id;
  (void)arg;
  struct h2_stream *st = source->ptr;
  st->send_ms = loop_now(st->hc); /* the peer's window let nghttp2 ask */
  if (!st->x.streaming) {
    size_t n = st->body_len - st->body_off;
    if (n > length)
      n = length;
    memcpy(buf, st->body + st->body_off, n);
    st->body_off += n;
    if (st->body_off == st->body_len)
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
  }
  size_t n = 0;
  while (st->out != NULL && n < length) {
    struct h2_out *o = st->out;
    size_t k = o->len - o->off;
    if (k > length - n)
      k = length - n;
    memcpy(buf + n, o->data + o->off, k);
    o->off += k;
    n += k;
    if (o->off == o->len) {
      /* Framed: the handler may reuse its buffer (bounded by the writes in flight). */
      st->out = o->next;
      if (st->out == NULL)
        st->out_tail = NULL;
      if (o->cb != NULL) {
        st->later_pending++;
        h2_complete_later(&st->x, o->cb, o->arg, 0);
      }
      free(o);
    }
  }
  if (st->out == NULL && st->x.response_ended)
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  else if (n == 0)
    return NGHTTP2_ERR_DEFERRED;
  return (ssize_t)n;
}

static char *lower_dup(const char *s) {
  char *d = strdup(s);
  for (char *p = d; p != NULL && *p; p++)
    *p = (char)tolower((unsigned char)*p);
  return d;
}

/* Submits a head; with_data: a body (whole or streamed) follows. */
static int submit_head(struct h2_stream *st, tusc_http_response_t *resp, int64_t content_length,
                       bool final, bool with_data) {
  struct h2_conn *hc = st->hc;
  const tusc_http_request_t *req = &st->x.req;
  bool is_head = req->method == TUSC_HTTP_HEAD;
  nghttp2_nv nv[TUSC_HTTP_MAX_RESPONSE_HEADERS + 4];
  char *owned[TUSC_HTTP_MAX_RESPONSE_HEADERS + 4];
  size_t n = 0, nowned = 0;
  char status[8], length[24];
  snprintf(status, sizeof(status), "%d", resp->status);
#define NV(nm, val)                                                                                \
  nv[n++] = (nghttp2_nv) {                                                                          \
    (uint8_t *)(nm), (uint8_t *)(val), strlen(nm), strlen(val), NGHTTP2_NV_FLAG_NONE                \
  }
  NV(":status", status);
  bool handler_length = false;
  for (size_t i = 0; i < resp->header_count; i++) {
    const char *name = resp->headers[i].name;
    if (final && tusc_http_name_eq(name, "Content-Length") && is_head)
      handler_length = true;
    if (tusc_http_managed_header(name, final && is_head) || tusc_http_name_eq(name, "Upgrade") ||
        tusc_http_name_eq(name, "Proxy-Connection"))
      continue;
    char *lname = lower_dup(name);
    if (lname == NULL)
      continue;
    owned[nowned++] = lname;
    NV(lname, resp->headers[i].value);
  }
  if (final) {
    NV("date", tusc_http_conn_date(hc->conn));
    if (tusc_http_status_has_body(resp->status) && !handler_length && !is_head &&
        content_length >= 0) {
      snprintf(length, sizeof(length), "%lld", (long long)content_length);
      NV("content-length", length);
    }
    const char *hsts = req->tls ? tusc_tls_hsts(hc->conn->server->tls) : NULL;
    if (hsts != NULL)
      NV("strict-transport-security", hsts);
  }
#undef NV
  int rc;
  if (!final) {
    rc = nghttp2_submit_headers(hc->s, NGHTTP2_FLAG_NONE, st->id, NULL, nv, n, NULL);
  } else {
    nghttp2_data_provider dp = {.source.ptr = st, .read_callback = read_body};
    rc = nghttp2_submit_response(hc->s, st->id, nv, n, with_data ? &dp : NULL);
  }
  for (size_t i = 0; i < nowned; i++)
    free(owned[i]);
  return rc;
}

static void h2_respond_start(tusc_http_exchange_t *x, tusc_http_response_t *resp,
                             int64_t content_length, const void *body, size_t body_len) {
  struct h2_stream *st = st_of(x);
  struct h2_conn *hc = st->hc;
  if (hc->dead || st->closed) {
    tusc_http_response_dispose(resp);
    return;
  }
  bool no_body = x->req.method == TUSC_HTTP_HEAD || !tusc_http_status_has_body(resp->status);
  bool with_data = !no_body && (x->streaming || body_len > 0);
  if (with_data && !x->streaming) {
    char *copy = malloc(body_len);
    if (copy == NULL) {
      tusc_http_response_dispose(resp);
      nghttp2_submit_rst_stream(hc->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
      want_flush(hc);
      return;
    }
    memcpy(copy, body, body_len);
    st->body = copy;
    st->body_len = body_len;
    x->bytes_out += (int64_t)body_len;
  }
  st->submitted = true;
  st->send_ms = loop_now(hc);
  if (with_data)
    tusc_http_conn_deadline(hc->conn, hc->conn->server->limits.network_timeout_ms);
  if (submit_head(st, resp, content_length, true, with_data) != 0)
    nghttp2_submit_rst_stream(hc->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
  tusc_http_response_dispose(resp);
  /* The rest of the body (if any) will not be read: drop it, opening the window. */
  want_flush(hc);
}

static void h2_complete_later(tusc_http_exchange_t *x, tusc_http_write_cb cb, void *arg,
                              int status) {
  struct h2_stream *st = st_of(x);
  struct h2_write *wr = calloc(1, sizeof(*wr));
  if (wr == NULL) {
    cb(&x->req, status, arg); /* see h1_complete_later */
    return;
  }
  wr->hc = st->hc;
  wr->st = st;
  wr->cb = cb;
  wr->arg = arg;
  wr->base.done = on_write_done;
  tusc_http_conn_complete_later(st->hc->conn, &wr->base, status);
}

/* complete_later as called by request.c (not counted yet). */
static void h2_complete_later_api(tusc_http_exchange_t *x, tusc_http_write_cb cb, void *arg,
                                  int status) {
  st_of(x)->later_pending++;
  h2_complete_later(x, cb, arg, status);
}

static void h2_respond_write(tusc_http_exchange_t *x, const void *data, size_t len,
                             tusc_http_write_cb cb, void *arg) {
  struct h2_stream *st = st_of(x);
  struct h2_out *o = NULL;
  if (st->hc->dead || st->closed || (o = calloc(1, sizeof(*o))) == NULL) {
    if (cb != NULL)
      h2_complete_later_api(x, cb, arg, UV_ECANCELED);
    return;
  }
  o->data = data;
  o->len = len;
  o->cb = cb;
  o->arg = arg;
  if (st->out == NULL) { /* bytes wait for the window from now on */
    st->send_ms = loop_now(st->hc);
    tusc_http_conn_deadline(st->hc->conn, st->hc->conn->server->limits.network_timeout_ms);
  }
  if (st->out_tail)
    st->out_tail->next = o;
  else
    st->out = o;
  st->out_tail = o;
  nghttp2_session_resume_data(st->hc->s, st->id);
  want_flush(st->hc);
}

static void h2_respond_end(tusc_http_exchange_t *x) {
  struct h2_stream *st = st_of(x);
  struct h2_conn *hc = st->hc;
  if (!hc->dead && !st->closed && st->submitted && x->streaming)
    nghttp2_session_resume_data(hc->s, st->id);
  if (!hc->dead && !st->closed && !st->submitted && !st->reset) {
    /* Dropped (x->discard) or never started: nothing will end the stream otherwise. */
    st->reset = true;
    nghttp2_submit_rst_stream(hc->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
  }
  if (hc->dead)
    reap(hc); /* the handler's last touch of the request: freeing it now is safe */
  else
    want_flush(hc);
}

static void h2_send_interim(tusc_http_exchange_t *x, tusc_http_response_t *resp) {
  struct h2_stream *st = st_of(x);
  if (!st->hc->dead && !st->closed && submit_head(st, resp, -1, false, false) == 0)
    want_flush(st->hc);
  tusc_http_response_dispose(resp);
}

static const tusc_http_proto_t h2_proto = {
    .name = "HTTP/2.0",
    .body_start = h2_body_start,
    .body_pause = h2_body_pause,
    .body_resume = h2_body_resume,
    .respond_start = h2_respond_start,
    .respond_write = h2_respond_write,
    .respond_end = h2_respond_end,
    .send_interim = h2_send_interim,
    .complete_later = h2_complete_later_api,
};

/* --- the connection's side (tusc_http_conn_proto_t) ----------------------------------- */

static struct h2_conn *conn_new(tusc_http_conn_t *conn) {
  struct h2_conn *hc = calloc(1, sizeof(*hc));
  if (hc == NULL)
    return NULL;
  hc->conn = conn;
  hc->progress_ms = uv_now(conn->server->loop);
  nghttp2_session_callbacks *cbs = NULL;
  nghttp2_option *opt = NULL;
  if (nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opt) != 0) {
    nghttp2_session_callbacks_del(cbs);
    free(hc);
    return NULL;
  }
  nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, on_begin_frame);
  nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, on_invalid_frame);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_max_continuations(opt, H2_MAX_CONTINUATIONS);
  nghttp2_option_set_max_settings(opt, 32);
  nghttp2_option_set_max_outbound_ack(opt, 1000);
  nghttp2_option_set_stream_reset_rate_limit(opt, 1000, 33);
  int rc = nghttp2_session_server_new2(&hc->s, cbs, hc, opt);
  nghttp2_session_callbacks_del(cbs);
  nghttp2_option_del(opt);
  if (rc != 0) {
    free(hc);
    return NULL;
  }
  const tusc_http_limits_t *lim = &conn->server->limits;
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2_MAX_STREAMS},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)lim->max_header_size},
  };
  if (nghttp2_submit_settings(hc->s, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0 ||
      nghttp2_session_set_local_window_size(hc->s, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW) != 0) {
    nghttp2_session_del(hc->s);
    free(hc);
    return NULL;
  }
  conn->req = hc;
  return hc;
}

static size_t h2_feed(tusc_http_conn_t *conn, const char *data, size_t len) {
  struct h2_conn *hc = conn->req;
  if (hc == NULL && (hc = conn_new(conn)) == NULL) {
    tusc_http_conn_close(conn);
    return len;
  }
  if (hc->dead)
    return len;
  conn->in_feed = true;
  hc->depth++;
  hc->in_recv = true;
  ssize_t rv = nghttp2_session_mem_recv(hc->s, (const uint8_t *)data, len);
  hc->in_recv = false;
  conn->in_feed = false;
  if (rv < 0) {
    TUSC_LOG(TUSC_LOG_DEBUG, "h2: %s", nghttp2_strerror((int)rv));
    /* nghttp2 queued a GOAWAY where it could (flood, protocol error): send it, then
     * close (flush closes once nothing is left to read or write). */
    if (rv != NGHTTP2_ERR_BAD_CLIENT_MAGIC)
      nghttp2_session_terminate_session(hc->s, rv == NGHTTP2_ERR_FLOODED ||
                                                       rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS
                                                   ? NGHTTP2_ENHANCE_YOUR_CALM
                                                   : NGHTTP2_PROTOCOL_ERROR);
    else
      tusc_http_conn_close(conn);
  }
  if (!hc->dead) {
    for (struct h2_stream *st = hc->streams; st != NULL; st = st->next)
      if (st->body_started || discarding(st))
        pump(hc, st);
    flush(hc);
  }
  hc->depth--;
  reap(hc);
  return len;
}

/* The idle turn: what waited for a resume, then what is to send. */
static void h2_resume(tusc_http_conn_t *conn) {
  struct h2_conn *hc = conn->req;
  if (hc == NULL || hc->dead)
    return;
  hc->depth++;
  for (struct h2_stream *st = hc->streams; st != NULL; st = st->next)
    pump(hc, st);
  flush(hc);
  hc->depth--;
  reap(hc);
}

static size_t h2_read_room(const tusc_http_conn_t *conn) {
  const struct h2_conn *hc = conn->req;
  if (conn->closing || conn->lingering)
    return 0;
  if (hc != NULL && !nghttp2_session_want_read(hc->s))
    return 0;
  return SIZE_MAX; /* flow control, not the socket, holds bodies back */
}

static enum tusc_http_wait h2_wait_state(const tusc_http_conn_t *conn, uint64_t *head_start_ms) {
  (void)head_start_ms;
  const struct h2_conn *hc = conn->req;
  if (hc == NULL || (hc->nstreams == 0 && !hc->head_open))
    return TUSC_HTTP_WAIT_IDLE;
  /* Heads and bodies that stall time out per stream (h2_expire). */
  return TUSC_HTTP_BUSY;
}

/* Response bytes wait for the client to open the stream's window (or the connection's):
 * the write timeout runs. */
static bool waiting_window(const struct h2_stream *st) {
  if (!st->submitted || st->local_ended || st->closed || st->reset)
    return false;
  if (st->x.streaming)
    return st->out != NULL;
  return st->body != NULL && st->body_off < st->body_len;
}

/* A stream's body did not come within the read timeout: like HTTP/1.1's dropped
 * connection for this stream only (the handler keeps what it stored), and the client
 * is told with RST_STREAM (CANCEL). */
static void stream_timed_out(struct h2_conn *hc, struct h2_stream *st) {
  TUSC_LOG(TUSC_LOG_DEBUG, "h2 stream %d: request body timed out", (int)st->id);
  st->reset = true;
  st->x.discard = true;
  drop_held(hc, st);
  cancel_out(st, UV_ECANCELED);
  nghttp2_submit_rst_stream(hc->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
  tusc_http_exchange_abort(&st->x, TUSC_EREAD_TIMEOUT);
}

/* The client did not open the window for a response within the timeout: the stream is
 * reset (CANCEL) and the handler's queued writes fail, as when an HTTP/1.1 client stops
 * reading. */
static void stream_write_timed_out(struct h2_conn *hc, struct h2_stream *st) {
  TUSC_LOG(TUSC_LOG_DEBUG, "h2 stream %d: response write timed out", (int)st->id);
  st->reset = true;
  st->x.discard = true;
  cancel_out(st, UV_ETIMEDOUT);
  nghttp2_submit_rst_stream(hc->s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
}

static uint64_t h2_expire(tusc_http_conn_t *conn, uint64_t now) {
  struct h2_conn *hc = conn->req;
  if (hc == NULL || hc->dead)
    return 0;
  if (hc->nstreams == 0 && !hc->head_open && conn->writes_pending == 0 &&
      hc->progress_ms < conn->activity_ms)
    conn->activity_ms = hc->progress_ms; /* idle: frames without a request are no progress */
  uint64_t next = 0;
  uint64_t ht = tusc_http_conn_head_timeout(conn->server);
  if (hc->head_open && ht > 0) {
    if (now - hc->head_start_ms >= ht) {
      /* Nothing else can arrive before the block ends: the connection is stuck. */
      TUSC_LOG(TUSC_LOG_DEBUG, "h2: a header block stalled; closing the connection");
      tusc_http_conn_fail(conn, TUSC_EREAD_TIMEOUT);
      return 0;
    }
    next = ht - (now - hc->head_start_ms);
  }
  uint64_t bt = conn->server->limits.network_timeout_ms;
  if (bt == 0)
    return next;
  bool any = false;
  /* Streams that keep the connection's window shut (held bytes of paused streams) stop
   * every other stream's body too: that is not the client's stall. */
  bool conn_shut = nghttp2_session_get_local_window_size(hc->s) <= 0;
  hc->depth++;
  for (struct h2_stream *st = hc->streams; st != NULL && !hc->dead; st = st->next) {
    uint64_t since;
    if (waiting_body(st)) {
      if (conn_shut)
        st->body_ms = now;
      since = st->body_ms;
    } else if (waiting_window(st)) {
      since = st->send_ms;
    } else {
      continue;
    }
    if (now - since >= bt) {
      if (waiting_body(st))
        stream_timed_out(hc, st);
      else
        stream_write_timed_out(hc, st);
      any = true;
    } else if (next == 0 || bt - (now - since) < next) {
      next = bt - (now - since);
    }
  }
  hc->depth--;
  if (any) {
    /* The resets go out (and the streams are reaped) on the idle turn; the completions
     * they queued are no stalled write of the connection's. */
    conn->activity_ms = now;
    want_flush(hc);
  }
  return next;
}

static void h2_closing(tusc_http_conn_t *conn) {
  struct h2_conn *hc = conn->req;
  if (hc == NULL)
    return;
  hc->dead = true;
  hc->depth++;
  for (struct h2_stream *st = hc->streams; st != NULL; st = st->next) {
    st->x.discard = true;
    drop_held(hc, st);
    cancel_out(st, UV_ECANCELED);
  }
  hc->depth--;
}

static void h2_failed(tusc_http_conn_t *conn, int err) {
  struct h2_conn *hc = conn->req;
  if (hc == NULL)
    return;
  if (err == UV_EOF)
    err = TUSC_EUNEXPECTED_EOF;
  hc->depth++;
  for (struct h2_stream *st = hc->streams; st != NULL; st = st->next)
    tusc_http_exchange_abort(&st->x, err);
  hc->depth--;
}

/* After h2_closing: the connection is gone; free what nobody holds any more. */
static void h2_closing_reap(tusc_http_conn_t *conn) {
  struct h2_conn *hc = conn->req;
  if (hc != NULL && hc->depth == 0)
    reap(hc);
}

static void h2_closing_all(tusc_http_conn_t *conn) {
  h2_closing(conn);
  h2_closing_reap(conn);
}

static void h2_failed_all(tusc_http_conn_t *conn, int err) {
  h2_failed(conn, err);
  h2_closing_reap(conn);
}

static void h2_stopping(tusc_http_conn_t *conn) {
  struct h2_conn *hc = conn->req;
  if (hc == NULL) {
    tusc_http_conn_close(conn);
    return;
  }
  if (hc->dead)
    return;
  if (!hc->goaway_sent) {
    hc->goaway_sent = true;
    nghttp2_submit_goaway(hc->s, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(hc->s),
                          NGHTTP2_NO_ERROR, NULL, 0);
  }
  hc->depth++;
  if (conn->server->abort_in_flight) {
    for (struct h2_stream *st = hc->streams; st != NULL; st = st->next)
      tusc_http_exchange_abort(&st->x, TUSC_ESERVER_SHUTDOWN);
  }
  want_flush(hc);
  hc->depth--;
  reap(hc);
}

static void h2_server_init(const tusc_http_server_t *server) {
  (void)server;
}

const tusc_http_conn_proto_t tusc_h2_conn_proto = {
    .name = "HTTP/2.0",
    .server_init = h2_server_init,
    .feed = h2_feed,
    .resume = h2_resume,
    .read_room = h2_read_room,
    .wait_state = h2_wait_state,
    .expire = h2_expire,
    .closing = h2_closing_all,
    .failed = h2_failed_all,
    .stopping = h2_stopping,
};

/*
 * conn — the connection lifecycle, shared by conn.c (which owns it) and the protocol
 * that speaks on the connection (h1.c): accept and admission, the transport (plain or
 * TLS), reading into the server's buffer and holding what cannot be parsed yet, writes
 * and their completions, timeouts, lingering close, failure, graceful stop. Internal to
 * src/http.
 *
 * The protocol sees the structs below and calls the tusc_http_conn_* functions; the
 * connection calls the protocol only through the server's tusc_http_conn_proto_t (feed
 * bytes, ask whether to read, what the timer waits for, tell it about failure and
 * stop), so conn.c knows no protocol: http/server.c picks HTTP/1.1 (h1.h) for every server.
 *
 * Lifetime: a conn is freed only in its last close callback, and only once its request
 * (if any) has been ended by the handler, no write is outstanding and no code of ours
 * up the stack still uses it (guard, in_feed).
 *
 * Threads: the loop that owns the server.
 */
#ifndef TUSC_HTTP_CONN_H
#define TUSC_HTTP_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "http/http.h"
#include "net/connlimit.h"
#include "net/transport.h"

typedef union {
  uv_handle_t handle;
  uv_stream_t stream;
  uv_tcp_t tcp;
  uv_pipe_t pipe;
} tusc_http_stream_u;

typedef struct tusc_http_write_s tusc_http_write_t;

/* One write (or write-like completion) of the protocol's, embedded first in the
 * protocol's own struct. */
struct tusc_http_write_s {
  uv_write_t w; /* first */
  tusc_http_conn_t *conn;
  /* Runs once: when the bytes are with the kernel or failed (status < 0; the
   * connection has failed then), or on the next loop turn for
   * tusc_http_conn_complete_later. Owns the write from then on (frees it). */
  void (*done)(tusc_http_write_t *wr, int status);
  tusc_http_write_t *next_later;
  int later_status;
};

/* What a connection is waiting for, as its timer needs to know. */
enum tusc_http_wait {
  TUSC_HTTP_WAIT_IDLE, /* between requests */
  TUSC_HTTP_WAIT_HEAD, /* a request head is arriving (since *head_start_ms) */
  TUSC_HTTP_WAIT_BODY, /* body bytes are wanted (a 100 Continue may still be queued) */
  TUSC_HTTP_BUSY,      /* the handler works on a request, or its response is going out */
};

/* The protocol spoken on a server's connections, as the connection sees it. conn.c
 * calls these, on the loop, and nothing else of the protocol's. */
typedef struct tusc_http_conn_proto_s {
  const char *name;
  /* Once per server, before its first connection (any thread). */
  void (*server_init)(const tusc_http_server_t *server);
  /* Parses what it may of data[0..len) (calling the handler from inside) and returns
   * how many bytes it used; the connection keeps the rest for later. */
  size_t (*feed)(tusc_http_conn_t *conn, const char *data, size_t len);
  /* From the idle callback after tusc_http_conn_kick: tells the handler what waited
   * for its resume. The connection then feeds its waiting bytes. */
  void (*resume)(tusc_http_conn_t *conn);
  /* How many bytes may be read now: SIZE_MAX when they can be parsed, a smaller cap
   * while the socket is only watched (to notice a client going away; what arrives is
   * held), 0 for none. A paused body answers 0 (or the watch cap): back-pressure. */
  size_t (*read_room)(const tusc_http_conn_t *conn);
  enum tusc_http_wait (*wait_state)(const tusc_http_conn_t *conn, uint64_t *head_start_ms);
  /* Optional (a protocol that carries many requests at once): the connection's timer
   * fired at loop time `now`. The protocol ends those of its requests whose own head or
   * body timeout has passed (it may fail the whole connection) and returns the ms until
   * its next such deadline, 0 for none. Never called while lingering. */
  uint64_t (*expire)(tusc_http_conn_t *conn, uint64_t now);
  /* The connection closes: a request nobody but the protocol knows of is freed. */
  void (*closing)(tusc_http_conn_t *conn);
  /* The connection failed (`err`; UV_EOF: the client went away): responses are dropped
   * and a handler that works on a request gets on_abort. After `closing`. */
  void (*failed)(tusc_http_conn_t *conn, int err);
  /* The server stops: close what is idle, end what is in flight with it. */
  void (*stopping)(tusc_http_conn_t *conn);
} tusc_http_conn_proto_t;

struct tusc_http_conn_s {
  tusc_http_stream_u io;
  tusc_transport_t *tr;             /* plain or TLS; set once accepted */
  tusc_connlimit_slot_t limit_slot; /* held while open (-max-connections*) */
  unsigned requests_done; /* responses completed; 0 = the header timeout runs from accept */
  uv_timer_t timer;
  tusc_http_server_t *server;
  /* The protocol spoken: the server's until the first plaintext bytes, then the one
   * tusc_http_pick_proto chose (HTTP/2 by ALPN or prior knowledge). */
  const tusc_http_conn_proto_t *proto;
  tusc_http_conn_t *prev, *next; /* server's list */
  tusc_http_conn_t *kick_next;
  /* The protocol's request being read or answered (h1.c's struct tusc_h1_req_s); NULL
   * between requests. While set, the connection is not freed nor taken as idle. */
  void *req;
  /* Bytes read but not parsed yet (the handler paused the body, or a pipelined request
   * waits for the current response); the socket is not read while they wait. */
  char *pending;
  size_t pending_off, pending_len;
  uint64_t activity_ms;    /* loop time of the last progress */
  unsigned writes_pending; /* writes and completions not done yet */
  unsigned guard;          /* > 0 while our code up the stack still uses the conn */
  uint8_t handles_closed;
  bool closing;
  bool failed;
  bool reading;
  bool in_feed; /* the protocol is parsing: the handler is called from inside */
  bool kicked;
  bool lingering;
  bool is_pipe;
  bool proto_chosen;
};

struct tusc_http_server_s {
  uv_loop_t *loop;
  const tusc_http_conn_proto_t *proto;
  tusc_http_stream_u listener;
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
  tusc_http_write_t *later_head, *later_tail;
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
  int spare_fd;           /* /dev/null, given up to drop connections when out of fds */
  uint64_t emfile_log_ms; /* last "out of descriptors" warning, to keep it to 1/s */
  char date[32];
};

/* tusc_http_server_new for a given protocol (http/server.c picks it). */
int tusc_http_server_create(uv_loop_t *loop, int fd, const tusc_http_limits_t *limits,
                            const tusc_http_handler_t *handler, void *ctx,
                            const tusc_http_conn_proto_t *proto, tusc_http_server_t **out);

/* Queues `len` bytes at `base` (valid until wr->done). Returns 0, or a negative code
 * (then wr->done is not called). */
int tusc_http_conn_write(tusc_http_conn_t *conn, tusc_http_write_t *wr, const char *base,
                         size_t len);
/* Runs wr->done(wr, status) on a later loop turn (never inside the caller's call). */
void tusc_http_conn_complete_later(tusc_http_conn_t *conn, tusc_http_write_t *wr, int status);

/* Starts or stops reading the socket as the protocol's state now asks. */
void tusc_http_conn_update_reading(tusc_http_conn_t *conn);
/* Parses the waiting bytes from the idle callback (never inside the caller's call). */
void tusc_http_conn_kick(tusc_http_conn_t *conn);
/* A request's first byte arrived: its head must be whole within the header timeout. */
void tusc_http_conn_head_started(tusc_http_conn_t *conn);
/* The protocol has a deadline of its own (proto->expire) `ms` from now: the timer fires
 * no later than that. */
void tusc_http_conn_deadline(tusc_http_conn_t *conn, uint64_t ms);
/* Time allowed for a request head: the smaller non-zero of the header and network
 * timeouts (0: none). */
uint64_t tusc_http_conn_head_timeout(const tusc_http_server_t *server);
/* The protocol freed its request: close (after lingering, when request bytes may
 * still come), or go on with the next one. */
void tusc_http_conn_request_ended(tusc_http_conn_t *conn, bool close, bool linger);
/* Peer address and port into req (nothing for unix sockets). */
void tusc_http_conn_peer(tusc_http_conn_t *conn, tusc_http_request_t *req);
/* The protocol for a connection whose first plaintext bytes are data[0..len) (after
 * the TLS handshake, if any). Defined by http/server.c. */
const tusc_http_conn_proto_t *tusc_http_pick_proto(tusc_http_conn_t *conn, const char *data,
                                                   size_t len);
/* The Date header's value now (cached per second per server). */
const char *tusc_http_conn_date(tusc_http_conn_t *conn);
/* Whether the client talks TLS to us. */
bool tusc_http_conn_secure(const tusc_http_conn_t *conn);

/* Closes the connection. */
void tusc_http_conn_close(tusc_http_conn_t *conn);
/* The connection is unusable: close it and tell the protocol (which aborts the
 * request the handler works on, if any). */
void tusc_http_conn_fail(tusc_http_conn_t *conn, int err);

#endif

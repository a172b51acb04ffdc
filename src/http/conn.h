/*
 * conn — the connection lifecycle, shared by conn.c (which owns it) and the protocol
 * that speaks on the connection (h1.c): accept and admission, the transport (plain or
 * TLS), reading into the server's buffer and holding what cannot be parsed yet, writes
 * and their completions, timeouts, lingering close, failure, graceful stop. Internal to
 * src/http.
 *
 * The protocol sees the structs below and calls the tusc_http_conn_* functions; the
 * connection calls back into the protocol through h1.h (feed bytes, ask whether to
 * read, what the timer waits for, tell it about failure and stop).
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

struct tusc_h1_req_s; /* h1.c's request */

struct tusc_http_conn_s {
  tusc_http_stream_u io;
  tusc_transport_t *tr;             /* plain or TLS; set once accepted */
  tusc_connlimit_slot_t limit_slot; /* held while open (-max-connections*) */
  unsigned requests_done; /* responses completed; 0 = the header timeout runs from accept */
  uv_timer_t timer;
  tusc_http_server_t *server;
  tusc_http_conn_t *prev, *next; /* server's list */
  tusc_http_conn_t *kick_next;
  struct tusc_h1_req_s *req; /* the request being read or answered; NULL between requests */
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
};

struct tusc_http_server_s {
  uv_loop_t *loop;
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
/* The protocol freed its request: close (after lingering, when request bytes may
 * still come), or go on with the next one. */
void tusc_http_conn_request_ended(tusc_http_conn_t *conn, bool close, bool linger);
/* Peer address and port into req (nothing for unix sockets). */
void tusc_http_conn_peer(tusc_http_conn_t *conn, tusc_http_request_t *req);
/* Whether the client talks TLS to us. */
bool tusc_http_conn_secure(const tusc_http_conn_t *conn);

/* Closes the connection. */
void tusc_http_conn_close(tusc_http_conn_t *conn);
/* The connection is unusable: close it and tell the protocol (which aborts the
 * request the handler works on, if any). */
void tusc_http_conn_fail(tusc_http_conn_t *conn, int err);

#endif

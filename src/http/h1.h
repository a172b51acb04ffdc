/*
 * h1 — HTTP/1.1 on a connection: one request at a time, decoded by h1_decoder.c and
 * handed to the handler through request.h's exchange; responses serialized with
 * keep-alive / Connection: close decided here (status line, Date, Content-Length,
 * Connection; 100 Continue and other interim responses); pipelined requests wait
 * until the current response is written. It implements request.h's tusc_http_proto_t
 * for its requests, and the functions below are what conn.c asks of the protocol.
 *
 * Memory: a request (struct tusc_h1_req_s, with its decoder) exists only from the first
 * byte of a request until its response is written or discarded, so an idle keep-alive
 * connection is a socket handle, a timer and the conn.
 *
 * Threads: the loop that owns the connection.
 */
#ifndef TUSC_HTTP_H1_H
#define TUSC_HTTP_H1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/conn.h"

/* Parses what it may of data[0..len) (calling the handler from inside) and returns how
 * many bytes it used; conn.c keeps the rest for later. */
size_t tusc_h1_feed(tusc_http_conn_t *conn, const char *data, size_t len);
/* From the idle callback after tusc_http_conn_kick: tells the handler what waited for
 * its resume (the body's end). conn.c then feeds its waiting bytes. */
void tusc_h1_resume(tusc_http_conn_t *conn);

/* How many bytes the connection may read now: SIZE_MAX when they can be parsed, a
 * smaller cap while the handler works on a request without reading it (the socket is
 * watched so that a client going away is noticed; what arrives is held, up to
 * max_header_size), 0 for none. */
size_t tusc_h1_read_room(const tusc_http_conn_t *conn);

enum tusc_h1_wait {
  TUSC_H1_IDLE,      /* between requests */
  TUSC_H1_WAIT_HEAD, /* a request head is arriving (since *head_start_ms) */
  TUSC_H1_WAIT_BODY, /* body bytes are wanted (a 100 Continue may still be queued) */
  TUSC_H1_BUSY,      /* the handler works on the request, or its response is going out */
};
/* What the connection's timer waits for. */
enum tusc_h1_wait tusc_h1_wait_state(const tusc_http_conn_t *conn, uint64_t *head_start_ms);

/* The connection closes: a request nobody but us knows of is freed. */
void tusc_h1_conn_closing(tusc_http_conn_t *conn);
/* The connection failed (`err`; UV_EOF: the client went away): the response is dropped
 * and the handler, if it works on the request, gets on_abort. */
void tusc_h1_conn_failed(tusc_http_conn_t *conn, int err);
/* The server stops: idle connections close; requests in flight end with it (on_abort
 * with TUSC_ESERVER_SHUTDOWN when the server aborts in-flight requests). */
void tusc_h1_server_stopping(tusc_http_conn_t *conn);

#endif

/*
 * h1 — HTTP/1.1 on a connection: one request at a time, decoded by h1_decoder.c and
 * handed to the handler through request.h's exchange; responses serialized with
 * keep-alive / Connection: close decided here (status line, Date, Content-Length,
 * Connection; 100 Continue and other interim responses); pipelined requests wait
 * until the current response is written. It implements both seams: request.h's
 * tusc_http_proto_t for its requests, and conn.h's tusc_http_conn_proto_t for the
 * connection.
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

/* HTTP/1.1 as a connection sees it; http/server.c gives it to every server. */
extern const tusc_http_conn_proto_t tusc_h1_conn_proto;

#endif

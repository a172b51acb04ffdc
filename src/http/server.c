/*
 * server — where the layers of src/http meet: a server is the connection lifecycle
 * (conn.c) with a protocol on its connections, so that conn.c and h1.c need not know
 * each other. Today every connection speaks HTTP/1.1 (h1.c). HTTP/2 would be one more
 * file implementing the same two tables (conn.h's and request.h's); choosing it per
 * connection (ALPN, or the prior-knowledge preface h1 answers with 505 today) would move
 * the table pointer from the server to the conn, and the choice to here.
 */
#include "http/http.h"

#include "http/conn.h"
#include "http/h1.h"

int tusc_http_server_new(uv_loop_t *loop, int fd, const tusc_http_limits_t *limits,
                         const tusc_http_handler_t *handler, void *ctx, tusc_http_server_t **out) {
  return tusc_http_server_create(loop, fd, limits, handler, ctx, &tusc_h1_conn_proto, out);
}

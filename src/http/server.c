/*
 * server — where the layers of src/http meet: a server is the connection lifecycle
 * (conn.c) with a protocol on its connections, so that conn.c, h1.c and h2.c need not
 * know each other. A connection starts as HTTP/1.1 (h1.c); tusc_http_pick_proto moves
 * it to HTTP/2 (h2.c) when TLS's ALPN chose "h2", or, with -enable-h2c, when a
 * cleartext client starts with the HTTP/2 preface (prior knowledge; without the flag
 * h1 answers that preface with 505, as before).
 */
#include "http/http.h"

#include <string.h>

#include "http/conn.h"
#include "http/h1.h"
#include "http/h2.h"
#include "net/tls.h"

int tusc_http_server_new(uv_loop_t *loop, int fd, const tusc_http_limits_t *limits,
                         const tusc_http_handler_t *handler, void *ctx, tusc_http_server_t **out) {
  return tusc_http_server_create(loop, fd, limits, handler, ctx, &tusc_h1_conn_proto, out);
}

const tusc_http_conn_proto_t *tusc_http_pick_proto(tusc_http_conn_t *conn, const char *data,
                                                   size_t len) {
  static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  if (conn->server->proto != &tusc_h1_conn_proto)
    return conn->server->proto; /* a server of another protocol (tests) */
  if (tusc_tls_transport_is_h2(conn->tr))
    return &tusc_h2_conn_proto;
  /* "PRI" is no method h1 serves; a prefix of the preface that long is enough. */
  size_t n = len < sizeof(preface) - 1 ? len : sizeof(preface) - 1;
  if (conn->server->limits.h2c && !tusc_http_conn_secure(conn) && n >= 3 &&
      memcmp(data, preface, n) == 0)
    return &tusc_h2_conn_proto;
  return &tusc_h1_conn_proto;
}

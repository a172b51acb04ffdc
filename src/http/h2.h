/*
 * h2 — HTTP/2 on a connection, with libnghttp2's server session: many requests
 * (streams) at once, each one a request.h exchange handed to the same handler as
 * HTTP/1.1's, so routing, auth, hooks, limits, metrics and the access log (which adds
 * proto=HTTP/2.0) are shared. It implements both seams: request.h's tusc_http_proto_t
 * for its streams and conn.h's tusc_http_conn_proto_t for the connection.
 *
 * Back-pressure: request bodies are acknowledged to the peer (WINDOW_UPDATE, through
 * nghttp2_session_consume with automatic window updates off) only once the handler has
 * taken them; what arrives while a stream is paused or not started is held, at most
 * that stream's window (H2_STREAM_WINDOW, 1 MiB), so a slow store closes the window
 * instead of growing a buffer. Per connection the held bytes are at most
 * min(streams × 1 MiB, the 16 MiB connection window), plus one partly filled 64 KiB
 * piece per holding stream and, while any stream is open, up to 1 MiB of emptied
 * pieces kept for reuse (freeing and faulting them in again cost more than the copy).
 * The 1 MiB stream window keeps one upload's loopback stream full (with 256 KiB the
 * client waited on WINDOW_UPDATEs); nghttp2 sends a WINDOW_UPDATE once half a window
 * is consumed. Downloads: the connection keeps at most a few writes in flight and
 * a streamed body's chunks are completed as nghttp2 frames them.
 *
 * Timeouts: a header block that does not end within the header timeout stops the whole
 * connection (no other frame may come meanwhile), which then fails; a stream whose
 * body the handler wants and that gets no bytes within -network-timeout is reset
 * (RST_STREAM CANCEL, on_abort with TUSC_EREAD_TIMEOUT) alone, and so is one whose
 * response waits that long for the client to open its window (the handler's writes
 * fail with UV_ETIMEDOUT); a connection without
 * streams has HTTP/1.1's idle timeout, counted from its last request progress (PING
 * and SETTINGS frames do not keep it open).
 *
 * Limits per connection: 100 concurrent streams, the header list bounded by
 * -max-header-size and -max-header-count, and GOAWAY (ENHANCE_YOUR_CALM) for floods:
 * streams the client resets before their answer beyond a budget (rapid reset,
 * CVE-2023-44487), and nghttp2's own SETTINGS, CONTINUATION and outbound-ack limits.
 *
 * Memory: the connection's state (struct h2_conn) lives in conn->req from the first
 * byte until the connection closed and its last stream was freed; a stream lives until
 * both nghttp2 and the handler are done with it.
 *
 * Threads: the loop that owns the connection.
 */
#ifndef TUSC_HTTP_H2_H
#define TUSC_HTTP_H2_H

#include "http/conn.h"

/* HTTP/2 as a connection sees it; http/server.c picks it per connection. */
extern const tusc_http_conn_proto_t tusc_h2_conn_proto;

#endif

/*
 * transport — the byte layer between a connection's socket and its HTTP parser:
 * plain TCP (bytes pass through) or TLS (src/net/tls.h). The HTTP layer (src/http/conn.c)
 * keeps owning the libuv stream, reads and writes; a transport only turns socket bytes
 * into plaintext and plaintext into socket bytes, so the HTTP state machine is the same
 * for both.
 *
 *   - input(): bytes just read from the socket. Plaintext goes to `deliver` (zero or
 *     more calls, in order). A TLS transport also answers the handshake from here,
 *     writing to the stream itself. Returns 0, or a negative code when the connection
 *     is unusable (bad handshake, protocol error, peer's close_notify → UV_EOF); the
 *     caller then closes it. `data` may be the same memory as `scratch`: a transport
 *     has taken every input byte before it writes to scratch.
 *   - write(): sends one buffer; `cb(req, status)` runs once the (encrypted) bytes were
 *     handed to the kernel, or failed — always later from the loop, never inside write().
 *     `req` is only handed back, never touched, so the caller may embed it anywhere.
 *   - close_notify(): a best-effort, non-blocking goodbye before the socket closes
 *     (TLS close_notify); nothing for plain.
 *   - read_max() (may be NULL: no bound): the most bytes the next socket read may take;
 *     a TLS transport about to hand reading to the kernel stops at a record boundary.
 *   - read_error() (may be NULL): a failed socket read's code, possibly translated (a
 *     kernel-TLS socket reports the peer's close_notify as EIO; this makes it UV_EOF).
 *   - secure(): whether the peer talks TLS to us (Location uses https then).
 *   - established(): handshake finished (always true for plain).
 *   - free(): after the stream's handle has closed (its write callbacks have all run).
 *
 * tusc_transport_plain is stateless and shared by every plain connection.
 * Threads: a transport belongs to the loop of its connection.
 */
#ifndef TUSC_NET_TRANSPORT_H
#define TUSC_NET_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

typedef struct tusc_transport_s tusc_transport_t;

typedef void (*tusc_transport_deliver_fn)(void *arg, const char *data, size_t len);

typedef struct tusc_transport_ops_s {
  const char *name;
  int (*input)(tusc_transport_t *t, uv_stream_t *stream, const char *data, size_t len,
               char *scratch, size_t scratch_len, tusc_transport_deliver_fn deliver, void *arg);
  int (*write)(tusc_transport_t *t, uv_stream_t *stream, uv_write_t *req, const char *data,
               size_t len, uv_write_cb cb);
  void (*close_notify)(tusc_transport_t *t, uv_stream_t *stream);
  size_t (*read_max)(const tusc_transport_t *t);
  int (*read_error)(tusc_transport_t *t, uv_stream_t *stream, int err);
  bool (*secure)(const tusc_transport_t *t);
  bool (*established)(const tusc_transport_t *t);
  void (*free)(tusc_transport_t *t);
} tusc_transport_ops_t;

struct tusc_transport_s {
  const tusc_transport_ops_t *ops;
};

extern tusc_transport_t tusc_transport_plain;

#endif

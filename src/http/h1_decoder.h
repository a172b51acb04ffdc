/*
 * h1_decoder — decodes one HTTP/1.1 request message: the head (request line and header
 * fields), the body (Content-Length or chunked) with its trailers, and the message end.
 * Pure: no I/O, no libuv, no clock, no handler. h1.c feeds it a connection's bytes and
 * acts on what comes back; tests/fuzz/fuzz_h1_decoder.c drives it alone.
 *
 * It wraps parser.c, whose library is lenient (bare LF, obs-fold, any two bytes after
 * chunk data, "gzip, chunked"): the same bytes are walked strictly (RFC 9112) here, just
 * ahead of the parser, so the parser is only ever given a valid prefix; and the head is
 * validated before anyone sees it (one Host, field syntax, no ambiguous framing, no
 * Transfer-Encoding in HTTP/1.0, Expect).
 *
 * Memory: the request's strings (target, path, query, header names and values) live in
 * the decoder, NUL-terminated, and stay where they are until tusc_h1_decoder_free, also
 * after trailers joined the header list. What a client can grow is capped by the limits.
 *
 * Threads: a decoder belongs to one connection; no global state.
 */
#ifndef TUSC_HTTP_H1_DECODER_H
#define TUSC_HTTP_H1_DECODER_H

#include <stdbool.h>
#include <stddef.h>

#include "http/http.h"

typedef struct tusc_h1_decoder_s tusc_h1_decoder_t;

typedef struct tusc_h1_limits_s {
  size_t max_header_size;  /* request line + fields (+ trailers): 431 beyond; >= 1 */
  size_t max_header_count; /* fields + trailer fields: 431 beyond; >= 1 */
} tusc_h1_limits_t;

/* Body bytes as they are decoded (pointing into the fed bytes, valid during the call).
 * Return 0 to go on, or TUSC_H1_BODY_PAUSE to make tusc_h1_decode return
 * TUSC_H1_PAUSED right after this piece. A pause at the last byte of a Content-Length
 * body leaves the message end unseen until another byte is fed, and none may come: a
 * caller that only wants to hold back the end should go on (TUSC_H1_END follows). */
typedef int (*tusc_h1_body_cb)(void *arg, const char *data, size_t len);
#define TUSC_H1_BODY_PAUSE 1

/* What tusc_h1_decode stopped at. */
enum {
  TUSC_H1_MORE = 0, /* every byte consumed; the message goes on */
  TUSC_H1_HEAD,     /* the head is complete and valid: the request is filled in */
  TUSC_H1_PAUSED,   /* the body callback asked to pause */
  TUSC_H1_END,      /* the message is complete; trailers (if any) joined req->headers */
};

/* Lets the parser library take heads of up to `max_header_size` bytes (it has a smaller
 * limit of its own, process-wide, which then never is the one that applies). Call it
 * for each limit in use before decoding with it; any thread. */
void tusc_h1_decoder_allow_head(size_t max_header_size);

/* A new decoder for one message, which it writes into *req (borrowed; only the fields
 * the head defines: target, path, query, headers, header_count, method, method_name,
 * http_minor, keep_alive, chunked, content_length, expect_continue). Returns 0 and *out,
 * or TUSC_ENOMEM. */
int tusc_h1_decoder_new(const tusc_h1_limits_t *limits, tusc_http_request_t *req,
                        tusc_h1_body_cb on_body, void *arg, tusc_h1_decoder_t **out);
/* NULL is a no-op. */
void tusc_h1_decoder_free(tusc_h1_decoder_t *dec);

/* Decodes data[0..len) up to the first event and returns it, or a negative TUSC_E*
 * code: malformed (TUSC_EBAD_REQUEST), too large (TUSC_EHEADERS_TOO_LARGE), out of
 * memory, or what the head validation refused (see tusc_h1_decoder_rejection). Bytes
 * after *consumed (always written) were not looked at; after TUSC_H1_END they belong to
 * the next message. Do not call again after an error or TUSC_H1_END. */
int tusc_h1_decode(tusc_h1_decoder_t *dec, const char *data, size_t len, size_t *consumed);

/* How to refuse a message whose decoding failed before TUSC_H1_HEAD: the status, the
 * error to report and a message (NULL: the error's own text). status is 0 when the head
 * had been decoded (a body or trailer error: the request's handler decides). */
typedef struct tusc_h1_rejection_s {
  int status;
  int err;
  const char *message;
} tusc_h1_rejection_t;
void tusc_h1_decoder_rejection(const tusc_h1_decoder_t *dec, tusc_h1_rejection_t *out);

/* Whether the request has a body (Content-Length > 0 or chunked); valid after HEAD. */
bool tusc_h1_decoder_has_body(const tusc_h1_decoder_t *dec);

/* The parser library's description of its last error (for debug logs). */
const char *tusc_h1_decoder_error_text(const tusc_h1_decoder_t *dec);

#endif

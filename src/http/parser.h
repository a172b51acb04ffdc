/*
 * parser — the HTTP/1.x request parser behind a small interface, so that the
 * library underneath (Node's http-parser 2.9 today, llhttp later: same callback
 * shape) stays inside parser.c.
 *
 * Contract: the caller feeds bytes with tusc_hparser_execute(); callbacks run inside
 * that call with pointers into the fed bytes. A callback returns 0 to go on or a
 * negative TUSC_E* code, which execute then returns. tusc_hparser_pause() from inside
 * a callback makes execute return TUSC_HPARSER_PAUSED right after that callback, with
 * *consumed telling where to resume. The library is used in its lenient build, so
 * the caller checks what it lets through (see h1_decoder.c).
 *
 * Threads: a parser belongs to one connection on one loop.
 */
#ifndef TUSC_HTTP_PARSER_H
#define TUSC_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/http.h"

typedef struct tusc_hparser_s tusc_hparser_t;

typedef struct tusc_hparser_callbacks_s {
  int (*on_url)(void *ud, const char *at, size_t len);
  int (*on_header_field)(void *ud, const char *at, size_t len);
  int (*on_header_value)(void *ud, const char *at, size_t len);
  int (*on_headers_complete)(void *ud);
  int (*on_chunk_header)(void *ud, uint64_t size);
  int (*on_body)(void *ud, const char *at, size_t len);
  int (*on_message_complete)(void *ud);
} tusc_hparser_callbacks_t;

/* What the request head said, valid from on_headers_complete on. */
typedef struct tusc_hparser_head_s {
  enum tusc_http_method method;
  const char *method_name; /* static */
  int http_major;
  int http_minor;
  bool keep_alive;
  bool chunked;
  bool transfer_encoding; /* a Transfer-Encoding header was present */
  bool has_content_length;
  uint64_t content_length;
  bool connect; /* CONNECT: the library treats what follows as a tunnel */
} tusc_hparser_head_t;

enum { TUSC_HPARSER_PAUSED = 1 };

/* Returns 0 and *out, or TUSC_ENOMEM. `cbs` must outlive the parser. */
int tusc_hparser_new(const tusc_hparser_callbacks_t *cbs, void *ud, tusc_hparser_t **out);
void tusc_hparser_free(tusc_hparser_t *parser);

/* Raises the library's own (process-wide) head size limit to at least `bytes`, so
 * that the caller's per-server limit is the one that applies. Thread-safe. */
void tusc_hparser_set_min_head_limit(size_t bytes);

/* Parses up to `len` bytes. Returns 0 (all consumed), TUSC_HPARSER_PAUSED, a
 * callback's error, or TUSC_EBAD_REQUEST for malformed input. *consumed is always
 * written. */
int tusc_hparser_execute(tusc_hparser_t *parser, const char *data, size_t len, size_t *consumed);

void tusc_hparser_pause(tusc_hparser_t *parser);
void tusc_hparser_resume(tusc_hparser_t *parser);

void tusc_hparser_head(const tusc_hparser_t *parser, tusc_hparser_head_t *out);

/* Short description of the last library error (for debug logs). */
const char *tusc_hparser_error_text(const tusc_hparser_t *parser);

#endif

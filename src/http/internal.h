/*
 * internal — helpers shared by the files of src/http (not part of the contract).
 *
 * Threads: pure functions; any thread.
 */
#ifndef TUSC_HTTP_INTERNAL_H
#define TUSC_HTTP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/http.h"

/* Reason phrase for a status ("Checksum Mismatch" for 460); "Unknown" otherwise. */
const char *tusc_http_reason(int status);

typedef struct tusc_http_head_opts_s {
  bool head_request;      /* HEAD: keep a handler's Content-Length, send no body */
  bool close;             /* Connection: close */
  bool keep_alive_header; /* HTTP/1.0 client that asked: Connection: keep-alive */
  int64_t content_length; /* -1: none */
  const char *date;       /* IMF-fixdate, NULL = no Date header */
} tusc_http_head_opts_t;

/* Serialises status line and headers (+ blank line) into a new buffer that has
 * `prefix` free bytes before the head and `extra` free bytes after it. Returns the
 * buffer (free with free()) and *head_len, or NULL when out of memory. */
char *tusc_http_build_head(const tusc_http_response_t *resp, const tusc_http_head_opts_t *opts,
                           size_t prefix, size_t extra, size_t *head_len);

/* Whether the http layer sets this response header itself (Content-Length unless a
 * HEAD response keeps the handler's, Connection, Date, Transfer-Encoding, Keep-Alive). */
bool tusc_http_managed_header(const char *name, bool head_request);

/* The method enum of a method name (TUSC_HTTP_OTHER when not one of ours). */
enum tusc_http_method tusc_http_method_of(const char *name);

/* Whether a response with this status may carry a body: never 1xx, 204 or 304
 * (RFC 9110 6.4.1); bytes sent after such a head would be read as the next response.
 * (A HEAD request's response has no body either; that is the caller's to add.) */
bool tusc_http_status_has_body(int status);

/* A token character (RFC 9110 section 5.6.2): what a field name is made of. */
bool tusc_http_is_tchar(unsigned char c);

/* Case-insensitive ASCII compare of NUL-terminated strings. */
bool tusc_http_name_eq(const char *a, const char *b);

#endif

/*
 * download — the pure parts of serving an upload with GET: the single-range Range
 * parser, Content-Type from the `filetype` metadata, and a safe Content-Disposition.
 * No I/O, no allocation; thread-safe.
 */
#ifndef TUSC_TUS_DOWNLOAD_H
#define TUSC_TUS_DOWNLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Result of parsing a Range header against a representation of `size` bytes. */
enum tusc_range_result {
  TUSC_RANGE_NONE = 0,          /* serve everything (absent, unsupported unit, malformed,
                                 * several ranges: RFC 9110 lets us ignore those) */
  TUSC_RANGE_PARTIAL = 1,       /* serve [*first, *last] with 206 */
  TUSC_RANGE_UNSATISFIABLE = 2, /* 416 with Content-Range: bytes *\/size */
};

/* Parses "bytes=a-b", "bytes=a-", "bytes=-n" (one range; whitespace around tolerated).
 * `s` may be NULL (absent). *first and *last are written only for TUSC_RANGE_PARTIAL;
 * last is clamped to size - 1. */
enum tusc_range_result tusc_download_range(const char *s, size_t len, int64_t size, int64_t *first,
                                           int64_t *last);

/* Content-Type for a download: `filetype` (NUL-terminated metadata value, may be NULL)
 * when it is a valid media type "type/subtype" with optional ";param=value" parameters
 * made of tokens or quoted strings; otherwise "application/octet-stream". Writes into
 * out (cap bytes) and sets *inline_ok when the media type is on the allow-list browsers
 * may render without risk (plain text, common image/audio/video types — no HTML, SVG,
 * XML or scripts). */
void tusc_download_content_type(const char *filetype, char *out, size_t cap, bool *inline_ok);

/* Content-Disposition: "inline" or "attachment", plus `filename="…"` (quotes and
 * backslashes escaped, control characters dropped, non-ASCII bytes replaced by '_') and,
 * when the name has non-ASCII bytes, `filename*=UTF-8''<percent-encoded>`. `filename`
 * may be NULL. Truncates the name to fit; returns 0 or UV_ENOBUFS when cap cannot even
 * hold the disposition type. */
int tusc_download_disposition(bool inline_ok, const char *filename, size_t filename_len, char *out,
                              size_t cap);

#endif

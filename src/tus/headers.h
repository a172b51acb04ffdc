/*
 * headers — pure parsers and formatters for tus header values and upload IDs.
 * No I/O, no libuv, no allocation except where a function says it returns memory.
 * Thread-safe.
 */
#ifndef TUSC_HEADERS_H
#define TUSC_HEADERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TUSC_ID_MAX 255          /* bytes of an upload ID (hook-chosen IDs included) */
#define TUSC_ID_SEGMENT_MAX 128  /* bytes of one '/'-separated segment */

/* Upload-Offset / Upload-Length / Content-Length style number: 1+ ASCII digits only
 * (no sign, no space, no "0x"), value ≤ INT64_MAX. `s` need not be NUL-terminated.
 * Returns 0 or TUSC_EINVALID_HEADER; *out written only on success. */
int tusc_parse_size(const char *s, size_t len, int64_t *out);

/* One key/value pair of Upload-Metadata. `value` is the decoded bytes (may contain
 * NUL; value_len says how many), NUL-terminated for convenience. */
typedef struct tusc_metadata_pair_s {
  char *key;
  char *value;
  size_t value_len;
} tusc_metadata_pair_t;

typedef struct tusc_metadata_s {
  tusc_metadata_pair_t *pairs;
  size_t count;
} tusc_metadata_t;

/* Parses an Upload-Metadata header per the spec: pairs separated by ",", each pair
 * "key" or "key base64", one space between key and value; optional spaces around
 * pairs are tolerated; keys non-empty, printable ASCII without space or comma,
 * unique; values standard base64 with padding. An empty string is an empty set.
 * Returns 0 or TUSC_EINVALID_METADATA; on success *out owns heap memory
 * (tusc_metadata_dispose). On failure *out is untouched. */
int tusc_metadata_parse(const char *s, size_t len, tusc_metadata_t *out);

/* Formats metadata back into a header value ("k1 dmFs,k2"). Pairs whose key could not
 * appear in the header (empty, or with space, comma, control or non-ASCII bytes — e.g.
 * set by a hook) are left out. Returns a malloc'd NUL-terminated string (caller frees)
 * or NULL on out-of-memory. */
char *tusc_metadata_format(const tusc_metadata_t *md);

/* Value of `key`, or NULL. */
const tusc_metadata_pair_t *tusc_metadata_get(const tusc_metadata_t *md, const char *key);

/* Adds or replaces a pair (copies key and value). Returns 0 or TUSC_ENOMEM. */
int tusc_metadata_set(tusc_metadata_t *md, const char *key, const char *value, size_t value_len);

void tusc_metadata_dispose(tusc_metadata_t *md);

/* Upload-ID grammar (DESIGN.md): 1..TUSC_ID_MAX bytes, segments joined by '/', each
 * segment 1..TUSC_ID_SEGMENT_MAX bytes of [A-Za-z0-9_.-], not starting or ending with
 * '.', never only dots. Rejects "..", "%2e", NUL, backslash, empty segments, leading or
 * trailing '/'. Also rejects any segment ending in ".info", ".lock" or ".tmp" (any case):
 * the file store uses those names for side files next to each upload.
 * Returns true when valid. */
bool tusc_id_valid(const char *id, size_t len);

/* A fresh ID: 32 lowercase hex characters from 128 random bits (getrandom).
 * `out` must hold 33 bytes. Returns 0 or a negative errno. */
int tusc_id_generate(char out[33]);

/* First element of an RFC 7239 Forwarded header, values copied and NUL-terminated. */
typedef struct tusc_forwarded_s {
  char host[256];
  char proto[16];   /* lower-case; only "http" or "https" are kept, else "" */
  char for_addr[64]; /* IP (v6 without brackets), "" if absent/obfuscated */
} tusc_forwarded_t;

/* Parses `Forwarded: for=1.2.3.4;proto=https;host=a.example, for=…` (first element
 * only; token or quoted-string values; case-insensitive names). Returns 0 or
 * TUSC_EINVALID_HEADER. Missing fields are "". */
int tusc_forwarded_parse(const char *s, size_t len, tusc_forwarded_t *out);
/* Parses the element at *pos (empty elements skipped) and moves *pos past it and its
 * ',' (to len after the last one). Returns 0, or TUSC_EINVALID_HEADER for an invalid
 * element or when no element is left; *pos and *out are written only on success. */
int tusc_forwarded_parse_next(const char *s, size_t len, size_t *pos, tusc_forwarded_t *out);

/* First address in an X-Forwarded-For list ("1.2.3.4, 5.6.7.8" → "1.2.3.4"),
 * validated as an IPv4/IPv6 literal. Returns 0 or TUSC_EINVALID_HEADER. */
int tusc_xff_first(const char *s, size_t len, char out[64]);

/* True when `host` (a Host/X-Forwarded-Host value) is a syntactically valid
 * host[:port] (reg-name, IPv4 or [IPv6]) safe to place into a Location URL. */
bool tusc_host_valid(const char *host, size_t len);

/* Percent-decodes a URL path component into out (cap bytes incl. NUL). Rejects %00
 * and invalid escapes. Returns decoded length or -1. */
long tusc_url_decode(const char *in, size_t len, char *out, size_t cap);

#endif

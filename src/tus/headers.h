/*
 * headers — pure parsers for tus header values: sizes, Forwarded / X-Forwarded-For,
 * Host, percent-decoding. No I/O, no libuv, no allocation. Thread-safe.
 *
 * Upload IDs and Upload-Metadata live in common/ (the store and hooks need them too);
 * they are tus header values as well, so this header includes both for its users.
 */
#ifndef TUSC_HEADERS_H
#define TUSC_HEADERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/id.h"
#include "common/metadata.h"

/* Upload-Offset / Upload-Length / Content-Length style number: 1+ ASCII digits only
 * (no sign, no space, no "0x"), value ≤ INT64_MAX. `s` need not be NUL-terminated.
 * Returns 0 or TUSC_EINVALID_HEADER; *out written only on success. */
int tusc_parse_size(const char *s, size_t len, int64_t *out);

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

/*
 * s3_sigv4 — AWS Signature Version 4 (header-based), on OpenSSL's HMAC-SHA256 and
 * SHA-256. Written here because Debian 12's libcurl 7.88 (CURLOPT_AWS_SIGV4) signs the
 * query as written, sorts some headers wrongly and sends no x-amz-content-sha256.
 *
 * What the signer does, and what it leaves to the caller:
 *   - path: the caller passes the URI path exactly as it goes on the wire, already
 *     percent-encoded (tusc_sigv4_uri_encode with keep_slash = true); S3 wants it
 *     encoded once and not normalised, which is what we sign.
 *   - query: the caller passes raw (decoded) name/value pairs; the signer encodes them
 *     (RFC 3986 unreserved kept, everything else %XX, upper-case hex) and sorts them by
 *     encoded name, then value. tusc_sigv4_query_string() builds the same string for the
 *     URL, so what is sent is what is signed.
 *   - headers: every header passed is signed (names lower-cased and sorted; values
 *     trimmed with inner runs of spaces collapsed; repeated names joined with ",").
 *     The caller includes host and x-amz-date, and for S3 x-amz-content-sha256 and,
 *     with a session token, x-amz-security-token — the same values it sends. Never pass
 *     a header that is not sent (an empty "Expect:" is removed by curl, not sent).
 *   - payload_hash: lower-case hex SHA-256 of the body, or "UNSIGNED-PAYLOAD".
 *
 * Threads: pure functions, no state; callable from any thread. Errors: TUSC_ENOMEM,
 * TUSC_EINVALID_ARGUMENT (missing field, malformed date, output too small).
 */
#ifndef TUSC_NET_S3_SIGV4_H
#define TUSC_NET_S3_SIGV4_H

#include <stdbool.h>
#include <stddef.h>

/* "20150830T123600Z" plus NUL. */
#define TUSC_SIGV4_DATE_LEN 17
/* 64 hex digits plus NUL. */
#define TUSC_SIGV4_HASH_HEX_LEN 65
/* Room for any Authorization value tusc builds (credential scope + signed headers). */
#define TUSC_SIGV4_AUTH_MAX 1024

#define TUSC_SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
/* SHA-256 of the empty string, the payload hash of every body-less request. */
#define TUSC_SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

typedef struct {
  const char *access_key; /* required */
  const char *secret_key; /* required */
  const char *region;     /* required, e.g. "us-east-1" */
  const char *service;    /* required, "s3" for S3 */
} tusc_sigv4_key_t;

typedef struct {
  const char *name;
  const char *value;
} tusc_sigv4_pair_t;

typedef struct {
  const char *method;             /* "GET", "PUT", ... */
  const char *path;               /* encoded path as sent, starting with '/' */
  const tusc_sigv4_pair_t *query; /* raw names/values; order does not matter */
  size_t nquery;
  const tusc_sigv4_pair_t *headers; /* every header to sign, any case, any order */
  size_t nheaders;
  const char *payload_hash; /* hex SHA-256 or TUSC_SIGV4_UNSIGNED_PAYLOAD */
  const char *amz_date;     /* ISO 8601 basic, "YYYYMMDDTHHMMSSZ"; the scope's day is its date */
} tusc_sigv4_request_t;

/* Percent-encodes `len` bytes of `in` for SigV4 (A-Z a-z 0-9 - _ . ~ kept; '/' kept when
 * keep_slash) into `out` (NUL-terminated). Returns the encoded length (without the NUL),
 * or TUSC_EINVALID_ARGUMENT if `cap` is too small (at most 3 * len + 1 is needed). */
int tusc_sigv4_uri_encode(const char *in, size_t len, bool keep_slash, char *out, size_t cap);

/* The canonical query string of `query` (encoded, sorted, "a=1&b=2"; "" for none), the
 * same bytes for the URL and for signing. Returns 0 and a malloc'd string in *out
 * (caller frees), or TUSC_ENOMEM. */
int tusc_sigv4_query_string(const tusc_sigv4_pair_t *query, size_t nquery, char **out)
    __attribute__((warn_unused_result));

/* The canonical request (step 1 of SigV4), for tests and debug logs. Returns 0 and a
 * malloc'd string in *out, or an error. */
int tusc_sigv4_canonical_request(const tusc_sigv4_request_t *req, char **out)
    __attribute__((warn_unused_result));

/* The string to sign (step 2), for tests and debug logs. Returns 0 and a malloc'd
 * string in *out, or an error. */
int tusc_sigv4_string_to_sign(const tusc_sigv4_key_t *key, const tusc_sigv4_request_t *req,
                              char **out) __attribute__((warn_unused_result));

/* Signs `req`: writes the Authorization header's value ("AWS4-HMAC-SHA256
 * Credential=..., SignedHeaders=..., Signature=...") into `auth` (cap bytes, at least
 * TUSC_SIGV4_AUTH_MAX is always enough for tusc's requests). Returns 0 or an error. */
int tusc_sigv4_sign(const tusc_sigv4_key_t *key, const tusc_sigv4_request_t *req, char *auth,
                    size_t cap) __attribute__((warn_unused_result));

/* Lower-case hex SHA-256 of `len` bytes into `hex` (TUSC_SIGV4_HASH_HEX_LEN bytes). */
void tusc_sigv4_sha256_hex(const void *data, size_t len, char hex[TUSC_SIGV4_HASH_HEX_LEN]);

/* Formats a Unix time (seconds, UTC) as x-amz-date, "YYYYMMDDTHHMMSSZ". */
void tusc_sigv4_format_date(long long unix_seconds, char out[TUSC_SIGV4_DATE_LEN]);

#endif

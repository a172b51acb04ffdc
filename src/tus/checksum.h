/*
 * checksum — the tus checksum extension's algorithms: parsing an `Upload-Checksum`
 * value ("<algorithm> <base64 digest>") and hashing a chunk while it streams.
 *
 * Algorithms: sha1, md5, sha256, sha512 (OpenSSL EVP) and crc32 (zlib; the 4-byte
 * digest in network byte order, as GCS and most tools print it). Names are matched
 * case-insensitively. The header value is parsed strictly: one algorithm token, exactly
 * one space, canonical padded base64 whose decoded length is the algorithm's digest
 * length; nothing else.
 *
 * Threads: parsing is pure; a tusc_checksum_t is used by one thread at a time.
 * Ownership: tusc_checksum_new returns a heap object the caller frees with
 * tusc_checksum_free (NULL is a no-op).
 */
#ifndef TUSC_TUS_CHECKSUM_H
#define TUSC_TUS_CHECKSUM_H

#include <stdbool.h>
#include <stddef.h>

enum tusc_checksum_algo {
  TUSC_CHECKSUM_SHA1 = 0,
  TUSC_CHECKSUM_MD5,
  TUSC_CHECKSUM_SHA256,
  TUSC_CHECKSUM_SHA512,
  TUSC_CHECKSUM_CRC32,
};

/* The value of Tus-Checksum-Algorithm (sha1 first: the spec makes it mandatory). */
#define TUSC_CHECKSUM_ALGORITHMS "sha1,md5,sha256,sha512,crc32"
#define TUSC_CHECKSUM_DIGEST_MAX 64

/* What a client announced. */
typedef struct tusc_checksum_expect_s {
  enum tusc_checksum_algo algo;
  unsigned char digest[TUSC_CHECKSUM_DIGEST_MAX];
  size_t digest_len;
} tusc_checksum_expect_t;

/* Parses an Upload-Checksum value (`value` need not be NUL-terminated). Returns 0,
 * TUSC_ECHECKSUM_ALGORITHM for a well-formed but unsupported algorithm name, or
 * TUSC_EINVALID_CHECKSUM for anything malformed (both answer 400). *out is written only
 * on success. */
int tusc_checksum_parse(const char *value, size_t len, tusc_checksum_expect_t *out)
    __attribute__((warn_unused_result));

/* Parses a Content-Digest value (RFC 9530 §2: a Structured Field Dictionary whose keys
 * name algorithms and whose values are Byte Sequences). Of the algorithms RFC 9530
 * registers as active, sha-512 is preferred over sha-256; other keys (deprecated or
 * unknown algorithms) are ignored, as RFC 9530 lets a recipient ignore any digest.
 * Returns 0 with *found false when no member names sha-256 or sha-512 (nothing to
 * check), 0 with *found true and *out filled, or TUSC_EINVALID_DIGEST for a value that
 * is not a Dictionary, or a sha-256/sha-512 member that is not a Byte Sequence of the
 * algorithm's digest length (base64 "=" padding may be left out, RFC 9651 §4.2.7). */
int tusc_checksum_parse_digest_field(const char *value, size_t len, tusc_checksum_expect_t *out,
                                     bool *found) __attribute__((warn_unused_result));

/* The Content-Digest / Repr-Digest member for `e` ("sha-256=:<base64>:"; sha-256 and
 * sha-512 only). Returns its length, or -1 (another algorithm, or no room). */
int tusc_checksum_format_digest_field(const tusc_checksum_expect_t *e, char *out, size_t cap);

/* Digest length in bytes of `algo` (0 for an unknown value). */
size_t tusc_checksum_digest_len(enum tusc_checksum_algo algo);

typedef struct tusc_checksum_s tusc_checksum_t;

/* A running hash. Returns 0 and *out, TUSC_ENOMEM, or TUSC_EINTERNAL when OpenSSL
 * refuses the algorithm (e.g. md5 under a FIPS-only provider). */
int tusc_checksum_new(enum tusc_checksum_algo algo, tusc_checksum_t **out)
    __attribute__((warn_unused_result));

/* Feeds bytes. Returns 0 or TUSC_EINTERNAL. */
int tusc_checksum_update(tusc_checksum_t *c, const void *data, size_t len);

/* Ends the hash and writes the digest (TUSC_CHECKSUM_DIGEST_MAX bytes of room) and its
 * length. Only once per object. Returns 0 or TUSC_EINTERNAL. */
int tusc_checksum_final(tusc_checksum_t *c, unsigned char *out, size_t *out_len);

/* Ends the hash and compares it in constant time with `expect` (same algorithm as the
 * object was made for). Returns 0 on a match, TUSC_ECHECKSUM_MISMATCH, or
 * TUSC_EINTERNAL. */
int tusc_checksum_verify(tusc_checksum_t *c, const tusc_checksum_expect_t *expect);

void tusc_checksum_free(tusc_checksum_t *c);

#endif

/*
 * base64 — standard alphabet (RFC 4648 §4) with required padding, and the URL-safe
 * alphabet (§5) without padding as JWS uses it. Pure, thread-safe.
 */
#ifndef TUSC_BASE64_H
#define TUSC_BASE64_H

#include <stddef.h>

/* Bytes needed for the decoded / encoded (incl. NUL) form of `len` input bytes. */
#define TUSC_BASE64_DECODED_MAX(len) (((len) / 4) * 3)
#define TUSC_BASE64_ENCODED_SIZE(len) ((((len) + 2) / 3) * 4 + 1)

/* Returns the decoded length, or -1 when `in` is not canonical padded base64
 * (length not a multiple of 4, bad characters, padding in the middle). */
long tusc_base64_decode(const char *in, size_t len, unsigned char *out);

/* Strict base64url without padding. Returns the decoded length, or -1 for a bad
 * character (padding included), an impossible length (len % 4 == 1) or non-zero
 * unused bits in the last character. `out` needs len * 3 / 4 bytes. */
long tusc_base64url_decode(const char *in, size_t len, unsigned char *out);

/* Writes a NUL-terminated encoding; returns its length. */
size_t tusc_base64_encode(const unsigned char *in, size_t len, char *out);

#endif

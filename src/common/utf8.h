/*
 * utf8 — strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above
 * U+10FFFF. Used wherever bytes from a client must become a JSON string or a
 * structured-field display string. Pure, thread-safe.
 */
#ifndef TUSC_UTF8_H
#define TUSC_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Length (1..4) of the valid sequence at s, of which `avail` bytes may be read, or 0
 * when the bytes there are not one (also when it is cut short by `avail`). With
 * cp != NULL a valid sequence's code point is stored there. */
size_t tusc_utf8_seq(const unsigned char *s, size_t avail, uint32_t *cp);

/* True when all `len` bytes at s are valid UTF-8. */
bool tusc_utf8_valid(const char *s, size_t len);

/* A malloc'd, NUL-terminated copy of the `len` bytes at s in which every byte that does
 * not start a valid sequence is replaced by U+FFFD; its length goes to *out_len. NULL
 * when out of memory. The caller frees it. */
char *tusc_utf8_lossy(const char *s, size_t len, size_t *out_len);

#endif

/*
 * id — upload IDs: their grammar, limits and generation. Here rather than in tus/
 * because every layer that names an upload (store, lock, hooks) needs the same rules.
 * Pure except tusc_id_generate (getrandom). Thread-safe.
 */
#ifndef TUSC_ID_H
#define TUSC_ID_H

#include <stdbool.h>
#include <stddef.h>

#define TUSC_ID_MAX 255         /* bytes of an upload ID (hook-chosen IDs included) */
#define TUSC_ID_SEGMENT_MAX 128 /* bytes of one '/'-separated segment */

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

#endif

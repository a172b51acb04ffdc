/*
 * metadata — an upload's metadata (tus Upload-Metadata): the key/value set every layer
 * passes around (store .info files, hook JSON, tus headers) and its header form.
 * Pure, no I/O; allocation only where a function says so. Thread-safe.
 */
#ifndef TUSC_METADATA_H
#define TUSC_METADATA_H

#include <stddef.h>

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

#endif

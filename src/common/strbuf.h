/*
 * strbuf — a growable, NUL-terminated string with a size cap, for building text (hook
 * JSON, SigV4 canonical requests). The first failure sticks: later appends do nothing
 * and it is reported once, by tusc_strbuf_finish. A buffer belongs to its owner; no
 * shared state.
 *
 * Use: tusc_strbuf_t b = {.max = LIMIT}; appends; tusc_strbuf_finish(&b, &text).
 */
#ifndef TUSC_COMMON_STRBUF_H
#define TUSC_COMMON_STRBUF_H

#include <stddef.h>

typedef struct tusc_strbuf_s {
  char *p;    /* the text, NUL-terminated; NULL until the first append */
  size_t len; /* bytes in p, the NUL not counted */
  size_t cap;
  size_t max; /* most bytes p may hold, NUL included; 0 = no cap */
  int err;    /* 0, TUSC_ENOMEM, or TUSC_EINVALID_ARGUMENT once the text would pass max */
} tusc_strbuf_t;

void tusc_strbuf_add(tusc_strbuf_t *b, const char *s, size_t n);
void tusc_strbuf_str(tusc_strbuf_t *b, const char *s);

/* Hands the text over: 0 and *out (malloc'd, the caller's), or the first failure (or
 * TUSC_EINVALID_ARGUMENT when nothing was appended) with the buffer freed. */
int tusc_strbuf_finish(tusc_strbuf_t *b, char **out);

/* Frees the text (after a failure elsewhere). */
void tusc_strbuf_dispose(tusc_strbuf_t *b);

#endif

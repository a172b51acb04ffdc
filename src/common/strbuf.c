/*
 * strbuf — see strbuf.h.
 */
#include "common/strbuf.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"

void tusc_strbuf_add(tusc_strbuf_t *b, const char *s, size_t n) {
  if (b->err != 0)
    return;
  if (b->len + n + 1 > b->cap) {
    if (b->max != 0 && b->len + n + 1 > b->max) {
      b->err = TUSC_EINVALID_ARGUMENT;
      return;
    }
    size_t cap = b->cap != 0 ? b->cap : 256;
    while (cap < b->len + n + 1)
      cap *= 2;
    if (b->max != 0 && cap > b->max)
      cap = b->max;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
      b->err = TUSC_ENOMEM;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

void tusc_strbuf_str(tusc_strbuf_t *b, const char *s) {
  tusc_strbuf_add(b, s, strlen(s));
}

int tusc_strbuf_finish(tusc_strbuf_t *b, char **out) {
  int rc = b->err != 0 ? b->err : b->p == NULL ? TUSC_EINVALID_ARGUMENT : 0;
  if (rc != 0) {
    tusc_strbuf_dispose(b);
    return rc;
  }
  *out = b->p;
  b->p = NULL;
  b->len = b->cap = 0;
  return 0;
}

void tusc_strbuf_dispose(tusc_strbuf_t *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

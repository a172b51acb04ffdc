/*
 * utf8 — see utf8.h. The second byte's range is narrowed per lead byte (RFC 3629 §4),
 * which rules out overlongs, surrogates and code points above U+10FFFF without
 * decoding first.
 */
#include "common/utf8.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

size_t tusc_utf8_seq(const unsigned char *s, size_t avail, uint32_t *cp) {
  if (avail == 0)
    return 0;
  unsigned char c = s[0];
  if (c < 0x80) {
    if (cp != NULL)
      *cp = c;
    return 1;
  }
  size_t need;
  uint32_t v;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 2;
    v = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 3;
    v = c & 0x0F;
    if (c == 0xE0)
      lo = 0xA0;
    else if (c == 0xED)
      hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 4;
    v = c & 0x07;
    if (c == 0xF0)
      lo = 0x90;
    else if (c == 0xF4)
      hi = 0x8F;
  } else {
    return 0;
  }
  if (avail < need || s[1] < lo || s[1] > hi)
    return 0;
  v = (v << 6) | (s[1] & 0x3F);
  for (size_t i = 2; i < need; i++) {
    if ((s[i] & 0xC0) != 0x80)
      return 0;
    v = (v << 6) | (s[i] & 0x3F);
  }
  if (cp != NULL)
    *cp = v;
  return need;
}

bool tusc_utf8_valid(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  for (size_t i = 0; i < len;) {
    size_t n = tusc_utf8_seq(p + i, len - i, NULL);
    if (n == 0)
      return false;
    i += n;
  }
  return true;
}

char *tusc_utf8_lossy(const char *s, size_t len, size_t *out_len) {
  if (len > (SIZE_MAX - 1) / 3)
    return NULL;
  char *buf = malloc(len * 3 + 1);
  if (buf == NULL)
    return NULL;
  const unsigned char *p = (const unsigned char *)s;
  size_t o = 0;
  for (size_t i = 0; i < len;) {
    size_t n = tusc_utf8_seq(p + i, len - i, NULL);
    if (n == 0) {
      memcpy(buf + o, "\xEF\xBF\xBD", 3);
      o += 3;
      i++;
    } else {
      memcpy(buf + o, p + i, n);
      o += n;
      i += n;
    }
  }
  buf[o] = '\0';
  *out_len = o;
  return buf;
}

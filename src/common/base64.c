/*
 * base64 — RFC 4648 standard alphabet, and base64url for JWS. Decoding is strict: only
 * the canonical encoding of a byte string is accepted (padding required in the
 * standard form, none in the URL form; unused bits zero), so every value has exactly
 * one spelling and metadata round-trips byte for byte.
 */
#include "common/base64.h"

#include <stdint.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* c62 and c63 are the two characters in which the alphabets differ. */
static int sextet(unsigned char c, char c62, char c63) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == (unsigned char)c62)
    return 62;
  if (c == (unsigned char)c63)
    return 63;
  return -1;
}

long tusc_base64_decode(const char *in, size_t len, unsigned char *out) {
  if (len % 4 != 0)
    return -1;
  size_t o = 0;
  for (size_t i = 0; i < len; i += 4) {
    const unsigned char *q = (const unsigned char *)in + i;
    int last = (i + 4 == len);
    int pad = 0;
    if (last && q[3] == '=') {
      pad = (q[2] == '=') ? 2 : 1;
    }
    int v[4];
    for (int k = 0; k < 4 - pad; k++) {
      v[k] = sextet(q[k], '+', '/');
      if (v[k] < 0)
        return -1;
    }
    if (pad == 2) {
      /* The low 4 bits of the second sextet carry no data; nonzero means a
       * non-canonical spelling. */
      if (v[1] & 0x0f)
        return -1;
      out[o++] = (unsigned char)((v[0] << 2) | (v[1] >> 4));
    } else if (pad == 1) {
      if (v[2] & 0x03)
        return -1;
      out[o++] = (unsigned char)((v[0] << 2) | (v[1] >> 4));
      out[o++] = (unsigned char)(((v[1] & 0x0f) << 4) | (v[2] >> 2));
    } else {
      uint32_t n =
          ((uint32_t)v[0] << 18) | ((uint32_t)v[1] << 12) | ((uint32_t)v[2] << 6) | (uint32_t)v[3];
      out[o++] = (unsigned char)(n >> 16);
      out[o++] = (unsigned char)(n >> 8);
      out[o++] = (unsigned char)n;
    }
  }
  return (long)o;
}

long tusc_base64url_decode(const char *in, size_t len, unsigned char *out) {
  if (len % 4 == 1)
    return -1;
  size_t o = 0;
  uint32_t acc = 0;
  unsigned bits = 0;
  for (size_t i = 0; i < len; i++) {
    int v = sextet((unsigned char)in[i], '-', '_');
    if (v < 0)
      return -1;
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  /* Leftover bits must be zero, or two spellings would mean the same bytes. */
  if (acc != 0)
    return -1;
  return (long)o;
}

size_t tusc_base64_encode(const unsigned char *in, size_t len, char *out) {
  size_t o = 0;
  size_t i = 0;
  for (; i + 3 <= len; i += 3) {
    uint32_t n = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
    out[o++] = alphabet[(n >> 18) & 63];
    out[o++] = alphabet[(n >> 12) & 63];
    out[o++] = alphabet[(n >> 6) & 63];
    out[o++] = alphabet[n & 63];
  }
  size_t rest = len - i;
  if (rest > 0) {
    uint32_t n = (uint32_t)in[i] << 16;
    if (rest == 2)
      n |= (uint32_t)in[i + 1] << 8;
    out[o++] = alphabet[(n >> 18) & 63];
    out[o++] = alphabet[(n >> 12) & 63];
    out[o++] = rest == 2 ? alphabet[(n >> 6) & 63] : '=';
    out[o++] = '=';
  }
  out[o] = '\0';
  return o;
}

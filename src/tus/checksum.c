/*
 * checksum — see checksum.h. OpenSSL's EVP for the cryptographic digests, zlib's
 * crc32_z for crc32, so that no hash is written by hand here.
 */
#include "tus/checksum.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <zlib.h>

#include "common/base64.h"
#include "common/error.h"
#include "tus/sfv.h"

/* Longest algorithm token we bother to look at; longer ones are unknown by definition. */
#define ALGO_NAME_MAX 32

static const struct {
  const char *name;
  enum tusc_checksum_algo algo;
  size_t digest_len;
} algorithms[] = {
    {"sha1", TUSC_CHECKSUM_SHA1, 20},     {"md5", TUSC_CHECKSUM_MD5, 16},
    {"sha256", TUSC_CHECKSUM_SHA256, 32}, {"sha512", TUSC_CHECKSUM_SHA512, 64},
    {"crc32", TUSC_CHECKSUM_CRC32, 4},
};
#define ALGORITHM_COUNT (sizeof(algorithms) / sizeof(algorithms[0]))

struct tusc_checksum_s {
  enum tusc_checksum_algo algo;
  EVP_MD_CTX *md; /* NULL for crc32 */
  uLong crc;
  bool finished;
};

size_t tusc_checksum_digest_len(enum tusc_checksum_algo algo) {
  for (size_t i = 0; i < ALGORITHM_COUNT; i++)
    if (algorithms[i].algo == algo)
      return algorithms[i].digest_len;
  return 0;
}

/* RFC 9110 token characters: what an algorithm name may be made of. */
static bool is_tchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
    return true;
  return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

int tusc_checksum_parse(const char *value, size_t len, tusc_checksum_expect_t *out) {
  if (value == NULL)
    return TUSC_EINVALID_CHECKSUM;
  const char *sp = memchr(value, ' ', len);
  if (sp == NULL || sp == value)
    return TUSC_EINVALID_CHECKSUM;
  size_t name_len = (size_t)(sp - value);
  for (size_t i = 0; i < name_len; i++)
    if (!is_tchar((unsigned char)value[i]))
      return TUSC_EINVALID_CHECKSUM;
  const char *digest = sp + 1;
  size_t digest_chars = len - name_len - 1;
  /* Base64 has no spaces, so a second space (or an empty digest) is malformed. */
  if (digest_chars == 0 || memchr(digest, ' ', digest_chars) != NULL)
    return TUSC_EINVALID_CHECKSUM;

  size_t idx = ALGORITHM_COUNT;
  for (size_t i = 0; i < ALGORITHM_COUNT; i++) {
    if (strlen(algorithms[i].name) == name_len &&
        strncasecmp(algorithms[i].name, value, name_len) == 0) {
      idx = i;
      break;
    }
  }
  if (idx == ALGORITHM_COUNT)
    return name_len <= ALGO_NAME_MAX ? TUSC_ECHECKSUM_ALGORITHM : TUSC_EINVALID_CHECKSUM;

  /* The decoded digest has a fixed length, so its base64 form has too: anything longer
   * is refused before decoding into the fixed buffer. */
  size_t want = algorithms[idx].digest_len;
  if (digest_chars != ((want + 2) / 3) * 4)
    return TUSC_EINVALID_CHECKSUM;
  unsigned char buf[TUSC_CHECKSUM_DIGEST_MAX + 3];
  long n = tusc_base64_decode(digest, digest_chars, buf);
  if (n < 0 || (size_t)n != want)
    return TUSC_EINVALID_CHECKSUM;
  out->algo = algorithms[idx].algo;
  memcpy(out->digest, buf, want);
  out->digest_len = want;
  return 0;
}

/* Decodes a Byte Sequence's base64 (padding optional) of exactly `want` bytes. */
static bool decode_sf_bytes(const char *b64, size_t len, size_t want, unsigned char *out) {
  char padded[((TUSC_CHECKSUM_DIGEST_MAX + 2) / 3) * 4];
  if (len % 4 == 1 || len > sizeof(padded))
    return false;
  memcpy(padded, b64, len);
  while (len % 4 != 0)
    padded[len++] = '=';
  if (len != ((want + 2) / 3) * 4)
    return false;
  unsigned char buf[TUSC_CHECKSUM_DIGEST_MAX + 3];
  long n = tusc_base64_decode(padded, len, buf);
  if (n < 0 || (size_t)n != want)
    return false;
  memcpy(out, buf, want);
  return true;
}

int tusc_checksum_parse_digest_field(const char *value, size_t len, tusc_checksum_expect_t *out,
                                     bool *found) {
  /* Strongest first: the one checked when a client sends both. */
  static const struct {
    const char *key;
    enum tusc_checksum_algo algo;
  } active[] = {{"sha-512", TUSC_CHECKSUM_SHA512}, {"sha-256", TUSC_CHECKSUM_SHA256}};
  tusc_sfv_member_t members[16];
  size_t count = 0;
  *found = false;
  if (value == NULL || tusc_sfv_parse_dictionary(value, len, members, 16, &count) < 0)
    return TUSC_EINVALID_DIGEST;
  bool have = false;
  tusc_checksum_expect_t best;
  for (size_t i = 0; i < sizeof(active) / sizeof(active[0]); i++) {
    const tusc_sfv_member_t *m = tusc_sfv_dict_get(members, count, active[i].key);
    if (m == NULL)
      continue;
    size_t want = tusc_checksum_digest_len(active[i].algo);
    tusc_checksum_expect_t e;
    /* Every member we know is checked for form, even the one not verified. */
    if (m->item.type != TUSC_SFV_BYTES ||
        !decode_sf_bytes(m->item.str, m->item.str_len, want, e.digest))
      return TUSC_EINVALID_DIGEST;
    e.algo = active[i].algo;
    e.digest_len = want;
    if (!have)
      best = e;
    have = true;
  }
  if (have) {
    *out = best;
    *found = true;
  }
  return 0;
}

int tusc_checksum_format_digest_field(const tusc_checksum_expect_t *e, char *out, size_t cap) {
  const char *name = e->algo == TUSC_CHECKSUM_SHA256   ? "sha-256"
                     : e->algo == TUSC_CHECKSUM_SHA512 ? "sha-512"
                                                       : NULL;
  char b64[TUSC_BASE64_ENCODED_SIZE(TUSC_CHECKSUM_DIGEST_MAX)];
  if (name == NULL || e->digest_len != tusc_checksum_digest_len(e->algo))
    return -1;
  tusc_base64_encode(e->digest, e->digest_len, b64);
  int n = snprintf(out, cap, "%s=:%s:", name, b64);
  return n < 0 || (size_t)n >= cap ? -1 : n;
}

static const EVP_MD *evp_of(enum tusc_checksum_algo algo) {
  switch (algo) {
  case TUSC_CHECKSUM_SHA1:
    return EVP_sha1();
  case TUSC_CHECKSUM_MD5:
    return EVP_md5();
  case TUSC_CHECKSUM_SHA256:
    return EVP_sha256();
  case TUSC_CHECKSUM_SHA512:
    return EVP_sha512();
  case TUSC_CHECKSUM_CRC32:
    break;
  }
  return NULL;
}

int tusc_checksum_new(enum tusc_checksum_algo algo, tusc_checksum_t **out) {
  if (tusc_checksum_digest_len(algo) == 0)
    return TUSC_EINVALID_ARGUMENT;
  tusc_checksum_t *c = calloc(1, sizeof(*c));
  if (c == NULL)
    return TUSC_ENOMEM;
  c->algo = algo;
  if (algo == TUSC_CHECKSUM_CRC32) {
    c->crc = crc32_z(0L, Z_NULL, 0);
  } else {
    c->md = EVP_MD_CTX_new();
    if (c->md == NULL) {
      free(c);
      return TUSC_ENOMEM;
    }
    if (EVP_DigestInit_ex(c->md, evp_of(algo), NULL) != 1) {
      EVP_MD_CTX_free(c->md);
      free(c);
      return TUSC_EINTERNAL;
    }
  }
  *out = c;
  return 0;
}

int tusc_checksum_update(tusc_checksum_t *c, const void *data, size_t len) {
  if (c->finished)
    return TUSC_EINTERNAL;
  if (len == 0)
    return 0;
  if (c->md == NULL) {
    c->crc = crc32_z(c->crc, data, (z_size_t)len);
    return 0;
  }
  return EVP_DigestUpdate(c->md, data, len) == 1 ? 0 : TUSC_EINTERNAL;
}

int tusc_checksum_final(tusc_checksum_t *c, unsigned char *out, size_t *out_len) {
  if (c->finished)
    return TUSC_EINTERNAL;
  c->finished = true;
  if (c->md == NULL) {
    uint32_t v = (uint32_t)c->crc;
    out[0] = (unsigned char)(v >> 24);
    out[1] = (unsigned char)(v >> 16);
    out[2] = (unsigned char)(v >> 8);
    out[3] = (unsigned char)v;
    *out_len = 4;
    return 0;
  }
  unsigned int n = 0;
  if (EVP_DigestFinal_ex(c->md, out, &n) != 1)
    return TUSC_EINTERNAL;
  *out_len = n;
  return 0;
}

int tusc_checksum_verify(tusc_checksum_t *c, const tusc_checksum_expect_t *expect) {
  unsigned char
      got[EVP_MAX_MD_SIZE > TUSC_CHECKSUM_DIGEST_MAX ? EVP_MAX_MD_SIZE : TUSC_CHECKSUM_DIGEST_MAX];
  size_t n = 0;
  if (expect->algo != c->algo)
    return TUSC_EINVALID_ARGUMENT;
  int rc = tusc_checksum_final(c, got, &n);
  if (rc != 0)
    return rc;
  if (n != expect->digest_len || CRYPTO_memcmp(got, expect->digest, n) != 0)
    return TUSC_ECHECKSUM_MISMATCH;
  return 0;
}

void tusc_checksum_free(tusc_checksum_t *c) {
  if (c == NULL)
    return;
  EVP_MD_CTX_free(c->md);
  free(c);
}

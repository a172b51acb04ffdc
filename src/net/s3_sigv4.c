/*
 * s3_sigv4 — see s3_sigv4.h. The four steps of AWS's "Create a signed request":
 * canonical request, string to sign, signing key (an HMAC chain over date, region,
 * service, "aws4_request"), signature. Strings are built in a small growable buffer
 * with a cap, so a pathological input fails instead of growing without bound.
 */
#include "net/s3_sigv4.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "common/error.h"
#include "common/strbuf.h"

/* Cap of any string built here: a canonical request holds one key, a few headers and
 * the query of one request; 64 KiB is far beyond tusc's. */
#define SIGV4_TEXT_MAX (64u << 10)

static bool unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == '~';
}

int tusc_sigv4_uri_encode(const char *in, size_t len, bool keep_slash, char *out, size_t cap) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)in[i];
    if (unreserved(c) || (keep_slash && c == '/')) {
      if (o + 1 >= cap)
        return TUSC_EINVALID_ARGUMENT;
      out[o++] = (char)c;
    } else {
      if (o + 3 >= cap)
        return TUSC_EINVALID_ARGUMENT;
      out[o++] = '%';
      out[o++] = hex[c >> 4];
      out[o++] = hex[c & 15];
    }
  }
  if (o >= cap)
    return TUSC_EINVALID_ARGUMENT;
  out[o] = '\0';
  return (int)o;
}

/* --- query ------------------------------------------------------------------------------ */

struct enc_pair {
  char *name, *value;
};

static char *encode_dup(const char *s) {
  size_t len = strlen(s);
  if (len > SIGV4_TEXT_MAX)
    return NULL;
  char *out = malloc(3 * len + 1);
  if (out == NULL)
    return NULL;
  (void)tusc_sigv4_uri_encode(s, len, false, out, 3 * len + 1);
  return out;
}

static int cmp_enc_pair(const void *a, const void *b) {
  const struct enc_pair *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  return c != 0 ? c : strcmp(x->value, y->value);
}

int tusc_sigv4_query_string(const tusc_sigv4_pair_t *query, size_t nquery, char **out) {
  if (nquery == 0) {
    char *empty = strdup("");
    if (empty == NULL)
      return TUSC_ENOMEM;
    *out = empty;
    return 0;
  }
  int rc = TUSC_ENOMEM;
  tusc_strbuf_t b = {.max = SIGV4_TEXT_MAX};
  struct enc_pair *pairs = calloc(nquery, sizeof(*pairs));
  if (pairs == NULL)
    return TUSC_ENOMEM;
  for (size_t i = 0; i < nquery; i++) {
    pairs[i].name = encode_dup(query[i].name);
    pairs[i].value = encode_dup(query[i].value ? query[i].value : "");
    if (pairs[i].name == NULL || pairs[i].value == NULL)
      goto out;
  }
  /* Byte order of the encoded strings is what AWS means by "sort by name". */
  qsort(pairs, nquery, sizeof(*pairs), cmp_enc_pair);
  for (size_t i = 0; i < nquery; i++) {
    if (i > 0)
      tusc_strbuf_add(&b, "&", 1);
    tusc_strbuf_str(&b, pairs[i].name);
    tusc_strbuf_add(&b, "=", 1);
    tusc_strbuf_str(&b, pairs[i].value);
  }
  rc = tusc_strbuf_finish(&b, out);
  b.p = NULL;
out:
  for (size_t i = 0; i < nquery; i++) {
    free(pairs[i].name);
    free(pairs[i].value);
  }
  free(pairs);
  free(b.p);
  return rc;
}

/* --- headers ---------------------------------------------------------------------------- */

struct canon_header {
  char *name;        /* lower case */
  const char *value; /* as given */
  size_t index;      /* for a stable sort: repeated names keep their order */
};

static int cmp_header(const void *a, const void *b) {
  const struct canon_header *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  if (c != 0)
    return c;
  return x->index < y->index ? -1 : x->index > y->index;
}

/* Value trimmed, inner runs of spaces/tabs as one space (AWS's "Trimall"). */
static void add_trimmed(tusc_strbuf_t *b, const char *v) {
  while (*v == ' ' || *v == '\t')
    v++;
  bool space = false;
  for (; *v != '\0'; v++) {
    if (*v == ' ' || *v == '\t') {
      space = true;
      continue;
    }
    if (space)
      tusc_strbuf_add(b, " ", 1);
    space = false;
    tusc_strbuf_add(b, v, 1);
  }
}

/* Appends the canonical headers block (each "name:value\n") to `canon` and the
 * signed-headers list ("a;b;c") to `signed_list`. */
static int build_headers(const tusc_sigv4_request_t *req, tusc_strbuf_t *canon,
                         tusc_strbuf_t *signed_list) {
  if (req->nheaders == 0)
    return TUSC_EINVALID_ARGUMENT;
  struct canon_header *hs = calloc(req->nheaders, sizeof(*hs));
  if (hs == NULL)
    return TUSC_ENOMEM;
  int rc = TUSC_ENOMEM;
  for (size_t i = 0; i < req->nheaders; i++) {
    if (req->headers[i].name == NULL || req->headers[i].value == NULL) {
      rc = TUSC_EINVALID_ARGUMENT;
      goto out;
    }
    hs[i].name = strdup(req->headers[i].name);
    if (hs[i].name == NULL)
      goto out;
    for (char *c = hs[i].name; *c != '\0'; c++)
      if (*c >= 'A' && *c <= 'Z')
        *c = (char)(*c - 'A' + 'a');
    hs[i].value = req->headers[i].value;
    hs[i].index = i;
  }
  qsort(hs, req->nheaders, sizeof(*hs), cmp_header);
  for (size_t i = 0; i < req->nheaders; i++) {
    bool same = i > 0 && strcmp(hs[i].name, hs[i - 1].name) == 0;
    if (same) {
      tusc_strbuf_add(canon, ",", 1);
    } else {
      if (i > 0) {
        tusc_strbuf_add(canon, "\n", 1);
        tusc_strbuf_add(signed_list, ";", 1);
      }
      tusc_strbuf_str(canon, hs[i].name);
      tusc_strbuf_add(canon, ":", 1);
      tusc_strbuf_str(signed_list, hs[i].name);
    }
    add_trimmed(canon, hs[i].value);
  }
  tusc_strbuf_add(canon, "\n", 1);
  rc = canon->err != 0 || signed_list->err != 0 ? TUSC_ENOMEM : 0;
out:
  for (size_t i = 0; i < req->nheaders; i++)
    free(hs[i].name);
  free(hs);
  return rc;
}

static bool valid_date(const char *d) {
  if (d == NULL || strlen(d) != TUSC_SIGV4_DATE_LEN - 1 || d[8] != 'T' || d[15] != 'Z')
    return false;
  for (int i = 0; i < 15; i++)
    if (i != 8 && (d[i] < '0' || d[i] > '9'))
      return false;
  return true;
}

/* Canonical request, plus the signed-headers list the Authorization header repeats. */
static int canonical(const tusc_sigv4_request_t *req, char **creq, char **signed_headers) {
  if (req->method == NULL || req->path == NULL || req->path[0] != '/' ||
      req->payload_hash == NULL || (req->nquery > 0 && req->query == NULL) || req->headers == NULL)
    return TUSC_EINVALID_ARGUMENT;
  tusc_strbuf_t b = {.max = SIGV4_TEXT_MAX}, hdrs = {.max = SIGV4_TEXT_MAX},
                sl = {.max = SIGV4_TEXT_MAX};
  char *query = NULL;
  int rc = tusc_sigv4_query_string(req->query, req->nquery, &query);
  if (rc < 0)
    return rc;
  rc = build_headers(req, &hdrs, &sl);
  if (rc < 0)
    goto out;
  tusc_strbuf_str(&b, req->method);
  tusc_strbuf_add(&b, "\n", 1);
  tusc_strbuf_str(&b, req->path);
  tusc_strbuf_add(&b, "\n", 1);
  tusc_strbuf_str(&b, query);
  tusc_strbuf_add(&b, "\n", 1);
  tusc_strbuf_add(&b, hdrs.p, hdrs.len);
  tusc_strbuf_add(&b, "\n", 1);
  tusc_strbuf_add(&b, sl.p, sl.len);
  tusc_strbuf_add(&b, "\n", 1);
  tusc_strbuf_str(&b, req->payload_hash);
  if (b.err != 0 || sl.err != 0) {
    rc = TUSC_ENOMEM;
    goto out;
  }
  *creq = b.p;
  b.p = NULL;
  if (signed_headers != NULL) {
    *signed_headers = sl.p;
    sl.p = NULL;
  }
  rc = 0;
out:
  free(query);
  free(b.p);
  free(hdrs.p);
  free(sl.p);
  return rc;
}

int tusc_sigv4_canonical_request(const tusc_sigv4_request_t *req, char **out) {
  return canonical(req, out, NULL);
}

void tusc_sigv4_sha256_hex(const void *data, size_t len, char hex[TUSC_SIGV4_HASH_HEX_LEN]) {
  static const char digits[] = "0123456789abcdef";
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(data, len, md);
  for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
    hex[2 * i] = digits[md[i] >> 4];
    hex[2 * i + 1] = digits[md[i] & 15];
  }
  hex[64] = '\0';
}

static bool valid_key(const tusc_sigv4_key_t *key) {
  return key != NULL && key->access_key != NULL && key->secret_key != NULL && key->region != NULL &&
         key->service != NULL;
}

static int string_to_sign(const tusc_sigv4_key_t *key, const tusc_sigv4_request_t *req, char **sts,
                          char **signed_headers) {
  if (!valid_key(key) || !valid_date(req->amz_date))
    return TUSC_EINVALID_ARGUMENT;
  char *creq = NULL;
  int rc = canonical(req, &creq, signed_headers);
  if (rc < 0)
    return rc;
  char hash[TUSC_SIGV4_HASH_HEX_LEN];
  tusc_sigv4_sha256_hex(creq, strlen(creq), hash);
  free(creq);
  tusc_strbuf_t b = {.max = SIGV4_TEXT_MAX};
  tusc_strbuf_str(&b, "AWS4-HMAC-SHA256\n");
  tusc_strbuf_str(&b, req->amz_date);
  tusc_strbuf_add(&b, "\n", 1);
  tusc_strbuf_add(&b, req->amz_date, 8);
  tusc_strbuf_add(&b, "/", 1);
  tusc_strbuf_str(&b, key->region);
  tusc_strbuf_add(&b, "/", 1);
  tusc_strbuf_str(&b, key->service);
  tusc_strbuf_str(&b, "/aws4_request\n");
  tusc_strbuf_str(&b, hash);
  rc = tusc_strbuf_finish(&b, sts);
  if (rc < 0 && signed_headers != NULL) {
    free(*signed_headers);
    *signed_headers = NULL;
  }
  return rc;
}

int tusc_sigv4_string_to_sign(const tusc_sigv4_key_t *key, const tusc_sigv4_request_t *req,
                              char **out) {
  return string_to_sign(key, req, out, NULL);
}

static bool hmac(const void *key, size_t key_len, const void *msg, size_t msg_len,
                 unsigned char out[SHA256_DIGEST_LENGTH]) {
  unsigned int len = SHA256_DIGEST_LENGTH;
  return HMAC(EVP_sha256(), key, (int)key_len, msg, msg_len, out, &len) != NULL;
}

int tusc_sigv4_sign(const tusc_sigv4_key_t *key, const tusc_sigv4_request_t *req, char *auth,
                    size_t cap) {
  char *sts = NULL, *signed_headers = NULL;
  int rc = string_to_sign(key, req, &sts, &signed_headers);
  if (rc < 0)
    return rc;
  rc = TUSC_EINTERNAL;
  /* kSecret = "AWS4" + secret; kDate, kRegion, kService, kSigning; then the signature. */
  size_t slen = strlen(key->secret_key);
  char *k0 = malloc(slen + 5);
  if (k0 == NULL) {
    rc = TUSC_ENOMEM;
    goto out;
  }
  memcpy(k0, "AWS4", 4);
  memcpy(k0 + 4, key->secret_key, slen + 1);
  unsigned char k[SHA256_DIGEST_LENGTH], sig[SHA256_DIGEST_LENGTH];
  bool ok = hmac(k0, slen + 4, req->amz_date, 8, k) &&
            hmac(k, sizeof(k), key->region, strlen(key->region), k) &&
            hmac(k, sizeof(k), key->service, strlen(key->service), k) &&
            hmac(k, sizeof(k), "aws4_request", 12, k) && hmac(k, sizeof(k), sts, strlen(sts), sig);
  OPENSSL_cleanse(k0, slen + 4);
  OPENSSL_cleanse(k, sizeof(k));
  free(k0);
  if (!ok)
    goto out;
  char sig_hex[2 * SHA256_DIGEST_LENGTH + 1];
  for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
    snprintf(sig_hex + 2 * i, 3, "%02x", sig[i]);
  char date[9];
  memcpy(date, req->amz_date, 8);
  date[8] = '\0';
  int n = snprintf(auth, cap,
                   "AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, "
                   "Signature=%s",
                   key->access_key, date, key->region, key->service, signed_headers, sig_hex);
  rc = n < 0 || (size_t)n >= cap ? TUSC_EINVALID_ARGUMENT : 0;
out:
  free(sts);
  free(signed_headers);
  return rc;
}

void tusc_sigv4_format_date(long long unix_seconds, char out[TUSC_SIGV4_DATE_LEN]) {
  time_t t = (time_t)unix_seconds;
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, TUSC_SIGV4_DATE_LEN, "%Y%m%dT%H%M%SZ", &tm);
}

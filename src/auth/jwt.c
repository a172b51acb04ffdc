/*
 * jwt — compact JWS verification (see jwt.h).
 *
 * Order of checks matters: the header's alg is compared with the configured one before
 * any key is used, so an HS256 token can never be "verified" with an RSA public key
 * taken as an HMAC secret; claims are only read from a payload whose signature held.
 */
#include "auth/jwt.h"

#include <jansson.h>
#include <math.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64.h"
#include "common/error.h"
#include "common/fileutil.h"

#define KEY_FILE_MAX (1024 * 1024)

struct tusc_jwt_key_s {
  enum tusc_jwt_alg alg;
  unsigned char *secret; /* HS256 */
  size_t secret_len;
  EVP_PKEY *pkey; /* RS256, ES256 */
};

static const char *const alg_names[] = {"HS256", "RS256", "ES256"};

int tusc_jwt_alg_parse(const char *name, enum tusc_jwt_alg *out) {
  for (size_t i = 0; i < sizeof(alg_names) / sizeof(alg_names[0]); i++) {
    if (name != NULL && strcmp(name, alg_names[i]) == 0) {
      *out = (enum tusc_jwt_alg)i;
      return 0;
    }
  }
  return TUSC_EINVALID_ARGUMENT;
}

void tusc_jwt_key_free(tusc_jwt_key_t *key) {
  if (key == NULL)
    return;
  if (key->secret != NULL) {
    OPENSSL_cleanse(key->secret, key->secret_len);
    free(key->secret);
  }
  EVP_PKEY_free(key->pkey);
  free(key);
}

static EVP_PKEY *read_public_key(const void *data, size_t len) {
  BIO *bio = BIO_new_mem_buf(data, (int)len);
  if (bio == NULL)
    return NULL;
  EVP_PKEY *pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
  if (pkey == NULL) {
    (void)BIO_reset(bio);
    X509 *cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    if (cert != NULL) {
      pkey = X509_get_pubkey(cert);
      X509_free(cert);
    }
  }
  BIO_free(bio);
  return pkey;
}

int tusc_jwt_key_from_mem(const void *data, size_t len, enum tusc_jwt_alg alg, tusc_jwt_key_t **out,
                          char *err, size_t err_cap) {
  tusc_jwt_key_t *key = calloc(1, sizeof(*key));
  if (key == NULL)
    return TUSC_ENOMEM;
  key->alg = alg;
  int rc = TUSC_EINVALID_ARGUMENT;
  if (alg == TUSC_JWT_HS256) {
    size_t n = len;
    if (n > 0 && ((const char *)data)[n - 1] == '\n')
      n--;
    if (n > 0 && ((const char *)data)[n - 1] == '\r')
      n--;
    if (n == 0) {
      snprintf(err, err_cap, "HS256 secret is empty");
      goto out;
    }
    key->secret = malloc(n);
    if (key->secret == NULL) {
      rc = TUSC_ENOMEM;
      goto out;
    }
    memcpy(key->secret, data, n);
    key->secret_len = n;
  } else {
    if (len > INT32_MAX) {
      snprintf(err, err_cap, "key file too large");
      goto out;
    }
    key->pkey = read_public_key(data, len);
    if (key->pkey == NULL) {
      snprintf(err, err_cap, "%s needs a PEM public key (BEGIN PUBLIC KEY) or certificate",
               alg_names[alg]);
      goto out;
    }
    if (alg == TUSC_JWT_RS256) {
      if (EVP_PKEY_get_base_id(key->pkey) != EVP_PKEY_RSA) {
        snprintf(err, err_cap, "RS256 needs an RSA public key");
        goto out;
      }
      if (EVP_PKEY_get_bits(key->pkey) < 2048) {
        snprintf(err, err_cap, "RS256 key has %d bits; at least 2048 are required",
                 EVP_PKEY_get_bits(key->pkey));
        goto out;
      }
    } else {
      char group[64] = "";
      size_t glen = 0;
      if (EVP_PKEY_get_base_id(key->pkey) != EVP_PKEY_EC ||
          EVP_PKEY_get_utf8_string_param(key->pkey, "group", group, sizeof(group), &glen) != 1 ||
          strcmp(group, "prime256v1") != 0) {
        snprintf(err, err_cap, "ES256 needs an EC public key on curve P-256");
        goto out;
      }
    }
  }
  *out = key;
  key = NULL;
  rc = 0;
out:
  tusc_jwt_key_free(key);
  return rc;
}

int tusc_jwt_key_load(const char *path, enum tusc_jwt_alg alg, tusc_jwt_key_t **out, char *err,
                      size_t err_cap) {
  char *buf = NULL;
  size_t len = 0;
  int rc = tusc_fileutil_read(path, KEY_FILE_MAX, &buf, &len, err, err_cap);
  if (rc != 0)
    return rc;
  char inner[256] = "";
  rc = tusc_jwt_key_from_mem(buf, len, alg, out, inner, sizeof(inner));
  if (rc != 0)
    snprintf(err, err_cap, "%s: %s", path, inner);
  OPENSSL_cleanse(buf, len);
  free(buf);
  return rc;
}

/* --- verification ---------------------------------------------------------------- */

static bool verify_hmac(const tusc_jwt_key_t *key, const char *input, size_t input_len,
                        const unsigned char *sig, size_t sig_len) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned mac_len = 0;
  if (HMAC(EVP_sha256(), key->secret, (int)key->secret_len, (const unsigned char *)input, input_len,
           mac, &mac_len) == NULL)
    return false;
  return sig_len == mac_len && CRYPTO_memcmp(mac, sig, mac_len) == 0;
}

static bool verify_pkey(const tusc_jwt_key_t *key, const char *input, size_t input_len,
                        const unsigned char *sig, size_t sig_len) {
  bool ok = false;
  unsigned char *der = NULL;
  int der_len = 0;
  ECDSA_SIG *esig = NULL;
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  if (md == NULL)
    return false;
  if (key->alg == TUSC_JWT_ES256) {
    /* JWS carries r||s (32 bytes each); OpenSSL wants a DER SEQUENCE. */
    if (sig_len != 64)
      goto out;
    esig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
    if (esig == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(esig, r, s) != 1) {
      BN_free(r);
      BN_free(s);
      goto out;
    }
    der_len = i2d_ECDSA_SIG(esig, &der);
    if (der_len <= 0)
      goto out;
    sig = der;
    sig_len = (size_t)der_len;
  }
  if (EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key->pkey) != 1)
    goto out;
  ok = EVP_DigestVerify(md, sig, sig_len, (const unsigned char *)input, input_len) == 1;
out:
  OPENSSL_free(der);
  ECDSA_SIG_free(esig);
  EVP_MD_CTX_free(md);
  return ok;
}

static json_t *decode_json_segment(const char *seg, size_t len) {
  unsigned char *buf = malloc(len * 3 / 4 + 1);
  if (buf == NULL)
    return NULL;
  long n = tusc_base64url_decode(seg, len, buf);
  json_t *j = NULL;
  if (n > 0)
    j = json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
  free(buf);
  if (j != NULL && !json_is_object(j)) {
    json_decref(j);
    j = NULL;
  }
  return j;
}

/* NumericDate claim: absent is fine (returns true, *present false); anything but a
 * finite number is a malformed token. */
static bool numeric_claim(json_t *payload, const char *name, bool *present, double *value) {
  json_t *v = json_object_get(payload, name);
  *present = v != NULL;
  if (v == NULL)
    return true;
  if (!json_is_number(v))
    return false;
  *value = json_number_value(v);
  return isfinite(*value);
}

static bool audience_matches(json_t *aud, const char *want) {
  if (json_is_string(aud))
    return strcmp(json_string_value(aud), want) == 0;
  if (json_is_array(aud)) {
    size_t i;
    json_t *item;
    json_array_foreach(aud, i, item) {
      if (json_is_string(item) && strcmp(json_string_value(item), want) == 0)
        return true;
    }
  }
  return false;
}

int tusc_jwt_verify(const tusc_jwt_key_t *key, const char *token, size_t len,
                    const tusc_jwt_opts_t *opts, char **subject, const char **why) {
  int rc = TUSC_EUNAUTHORIZED;
  json_t *header = NULL, *payload = NULL;
  unsigned char *sig = NULL;
  *why = "malformed token";
  if (key == NULL || token == NULL || len == 0 || len > TUSC_JWT_TOKEN_MAX)
    goto out;
  const char *dot1 = memchr(token, '.', len);
  if (dot1 == NULL)
    goto out;
  const char *dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token));
  if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL)
    goto out;
  size_t hlen = (size_t)(dot1 - token);
  size_t plen = (size_t)(dot2 - dot1 - 1);
  size_t slen = len - (size_t)(dot2 + 1 - token);
  header = decode_json_segment(token, hlen);
  if (header == NULL)
    goto out;

  json_t *alg = json_object_get(header, "alg");
  if (!json_is_string(alg) || strcmp(json_string_value(alg), alg_names[key->alg]) != 0) {
    *why = "algorithm not allowed";
    goto out;
  }
  /* Extensions we do not understand must not be silently ignored (RFC 7515 §4.1.11). */
  if (json_object_get(header, "crit") != NULL) {
    *why = "unsupported critical header";
    goto out;
  }
  if (slen == 0) {
    *why = "missing signature";
    goto out;
  }
  sig = malloc(slen * 3 / 4 + 1);
  if (sig == NULL) {
    rc = TUSC_ENOMEM;
    goto out;
  }
  long sig_len = tusc_base64url_decode(dot2 + 1, slen, sig);
  if (sig_len <= 0)
    goto out;
  size_t input_len = (size_t)(dot2 - token);
  bool ok = key->alg == TUSC_JWT_HS256 ? verify_hmac(key, token, input_len, sig, (size_t)sig_len)
                                       : verify_pkey(key, token, input_len, sig, (size_t)sig_len);
  if (!ok) {
    *why = "bad signature";
    goto out;
  }

  payload = decode_json_segment(dot1 + 1, plen);
  if (payload == NULL)
    goto out;
  bool has_exp = false, has_nbf = false;
  double exp = 0, nbf = 0;
  if (!numeric_claim(payload, "exp", &has_exp, &exp) ||
      !numeric_claim(payload, "nbf", &has_nbf, &nbf))
    goto out;
  if (has_exp && (double)opts->now >= exp + (double)opts->skew_s) {
    *why = "expired";
    goto out;
  }
  if (has_nbf && (double)opts->now + (double)opts->skew_s < nbf) {
    *why = "not valid yet";
    goto out;
  }
  if (opts->audience != NULL &&
      !audience_matches(json_object_get(payload, "aud"), opts->audience)) {
    *why = "wrong audience";
    goto out;
  }
  if (opts->issuer != NULL) {
    json_t *iss = json_object_get(payload, "iss");
    if (!json_is_string(iss) || strcmp(json_string_value(iss), opts->issuer) != 0) {
      *why = "wrong issuer";
      goto out;
    }
  }
  json_t *sub = json_object_get(payload, "sub");
  if (!json_is_string(sub) || json_string_length(sub) == 0 ||
      strlen(json_string_value(sub)) != json_string_length(sub)) {
    *why = "missing subject";
    goto out;
  }
  char *copy = strdup(json_string_value(sub));
  if (copy == NULL) {
    rc = TUSC_ENOMEM;
    goto out;
  }
  *subject = copy;
  *why = NULL;
  rc = 0;
out:
  free(sig);
  json_decref(header);
  json_decref(payload);
  return rc;
}

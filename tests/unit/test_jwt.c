/* Unit tests for src/auth/jwt.c: tokens signed here (HMAC, RSA and ECDSA keys made
 * with OpenSSL) accepted or refused for signature, algorithm confusion ("none", HS256
 * against an RSA key), exp/nbf with skew, audience, issuer, subject, base64url
 * strictness, and key loading. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "auth/jwt.h"
#include "common/error.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define NOW INT64_C(1700000000)
#define SECRET "a-test-secret-of-reasonable-length!"

static EVP_PKEY *rsa_key, *ec_key, *rsa_other;

static void b64url(const unsigned char *in, size_t len, char *out) {
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  size_t o = 0;
  uint32_t acc = 0;
  unsigned bits = 0;
  for (size_t i = 0; i < len; i++) {
    acc = (acc << 8) | in[i];
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out[o++] = alphabet[(acc >> bits) & 63];
    }
  }
  if (bits > 0)
    out[o++] = alphabet[(acc << (6 - bits)) & 63];
  out[o] = '\0';
}

enum signer { SIGN_HS, SIGN_RS, SIGN_ES, SIGN_NONE, SIGN_BAD_HS, SIGN_RS_OTHER };

/* header.payload.signature with the given JSON texts. */
static char *make_token(const char *header, const char *payload, enum signer how) {
  char *tok = malloc(8192);
  char *p = tok;
  b64url((const unsigned char *)header, strlen(header), p);
  p += strlen(p);
  *p++ = '.';
  b64url((const unsigned char *)payload, strlen(payload), p);
  p += strlen(p);
  size_t input_len = (size_t)(p - tok);
  *p++ = '.';
  *p = '\0';
  unsigned char sig[1024];
  size_t sig_len = 0;
  if (how == SIGN_HS || how == SIGN_BAD_HS) {
    const char *key = how == SIGN_HS ? SECRET : "another secret";
    unsigned len = 0;
    HMAC(EVP_sha256(), key, (int)strlen(key), (unsigned char *)tok, input_len, sig, &len);
    sig_len = len;
  } else if (how == SIGN_RS || how == SIGN_RS_OTHER || how == SIGN_ES) {
    EVP_PKEY *k = how == SIGN_RS ? rsa_key : how == SIGN_RS_OTHER ? rsa_other : ec_key;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char der[1024];
    size_t der_len = sizeof(der);
    assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k), 1);
    assert_int_equal(EVP_DigestSign(md, der, &der_len, (unsigned char *)tok, input_len), 1);
    EVP_MD_CTX_free(md);
    if (how == SIGN_ES) {
      const unsigned char *q = der;
      ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &q, (long)der_len);
      assert_non_null(es);
      BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32);
      BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32);
      ECDSA_SIG_free(es);
      sig_len = 64;
    } else {
      memcpy(sig, der, der_len);
      sig_len = der_len;
    }
  }
  b64url(sig, sig_len, p);
  return tok;
}

static char *public_pem(EVP_PKEY *k) {
  BIO *bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, k);
  char *data = NULL;
  long n = BIO_get_mem_data(bio, &data);
  char *copy = strndup(data, (size_t)n);
  BIO_free(bio);
  return copy;
}

static int setup(void **state) {
  (void)state;
  rsa_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
  rsa_other = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
  ec_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
  return rsa_key && rsa_other && ec_key ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  EVP_PKEY_free(rsa_key);
  EVP_PKEY_free(rsa_other);
  EVP_PKEY_free(ec_key);
  return 0;
}

static tusc_jwt_key_t *load_key(enum tusc_jwt_alg alg) {
  tusc_jwt_key_t *key = NULL;
  char err[256];
  int rc;
  if (alg == TUSC_JWT_HS256) {
    rc = tusc_jwt_key_from_mem(SECRET "\n", strlen(SECRET) + 1, alg, &key, err, sizeof(err));
  } else {
    char *pem = public_pem(alg == TUSC_JWT_RS256 ? rsa_key : ec_key);
    rc = tusc_jwt_key_from_mem(pem, strlen(pem), alg, &key, err, sizeof(err));
    free(pem);
  }
  if (rc != 0)
    fail_msg("key load: %s", err);
  return key;
}

struct token_case {
  enum tusc_jwt_alg key_alg;
  const char *header;
  const char *payload;
  enum signer signer;
  const char *audience, *issuer;
  const char *want_sub; /* NULL = refused */
  const char *want_why;
};

#define HS "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define RS "{\"alg\":\"RS256\",\"typ\":\"JWT\"}"
#define ES "{\"alg\":\"ES256\"}"

static const struct token_case token_cases[] = {
    {TUSC_JWT_HS256, HS, "{\"sub\":\"alice\",\"exp\":1700000100}", SIGN_HS, NULL, NULL, "alice",
     NULL},
    {TUSC_JWT_HS256, HS, "{\"sub\":\"alice\"}", SIGN_HS, NULL, NULL, "alice", NULL},
    {TUSC_JWT_HS256, HS, "{\"sub\":\"alice\"}", SIGN_BAD_HS, NULL, NULL, NULL, "bad signature"},
    {TUSC_JWT_HS256, HS, "{\"sub\":\"alice\",\"exp\":1699999000}", SIGN_HS, NULL, NULL, NULL,
     "expired"},
    /* within the 30 s skew */
    {TUSC_JWT_HS256, HS, "{\"sub\":\"alice\",\"exp\":1699999980}", SIGN_HS, NULL, NULL, "alice",
     NULL},
    {TUSC_JWT_HS256, HS, "{\"sub\":\"alice\",\"exp\":1699999970}", SIGN_HS, NULL, NULL, NULL,
     "expired"},
    {TUSC_JWT_HS256, HS, "{\"sub\":\"alice\",\"nbf\":1700000020}", SIGN_HS, NULL, NULL, "alice",
     NULL},
    {TUSC_JWT_HS256, HS, "{\"sub\":\"alice\",\"nbf\":1700000100}", SIGN_HS, NULL, NULL, NULL,
     "not valid yet"},
    {TUSC_JWT_HS256, HS, "{\"sub\":\"alice\",\"exp\":\"soon\"}", SIGN_HS, NULL, NULL, NULL,
     "malformed token"},
    {TUSC_JWT_HS256, HS, "{\"sub\":\"alice\",\"aud\":\"uploads\"}", SIGN_HS, "uploads", NULL,
     "alice", NULL},
    {TUSC_JWT_HS256, HS, "{\"sub\":\"alice\",\"aud\":[\"x\",\"uploads\"]}", SIGN_HS, "uploads",
     NULL, "alice", NULL},
    {TUSC_JWT_HS256, HS, "{\"sub\":\"alice\",\"aud\":\"other\"}", SIGN_HS, "uploads", NULL, NULL,
     "wrong audience"},
    {TUSC_JWT_HS256, HS, "{\"sub\":\"alice\"}", SIGN_HS, "uploads", NULL, NULL, "wrong audience"},
    {TUSC_JWT_HS256, HS, "{\"sub\":\"alice\",\"iss\":\"idp\"}", SIGN_HS, NULL, "idp", "alice",
     NULL},
    {TUSC_JWT_HS256, HS, "{\"sub\":\"alice\",\"iss\":\"evil\"}", SIGN_HS, NULL, "idp", NULL,
     "wrong issuer"},
    {TUSC_JWT_HS256, HS, "{\"exp\":1700000100}", SIGN_HS, NULL, NULL, NULL, "missing subject"},
    {TUSC_JWT_HS256, HS, "{\"sub\":\"\"}", SIGN_HS, NULL, NULL, NULL, "missing subject"},
    {TUSC_JWT_HS256, HS, "{\"sub\":42}", SIGN_HS, NULL, NULL, NULL, "missing subject"},
    {TUSC_JWT_HS256, "{\"alg\":\"none\"}", "{\"sub\":\"alice\"}", SIGN_NONE, NULL, NULL, NULL,
     "algorithm not allowed"},
    {TUSC_JWT_HS256, "{\"alg\":\"hs256\"}", "{\"sub\":\"alice\"}", SIGN_HS, NULL, NULL, NULL,
     "algorithm not allowed"},
    {TUSC_JWT_HS256, "{\"typ\":\"JWT\"}", "{\"sub\":\"alice\"}", SIGN_HS, NULL, NULL, NULL,
     "algorithm not allowed"},
    {TUSC_JWT_HS256, "{\"alg\":\"HS256\",\"crit\":[\"x\"]}", "{\"sub\":\"a\"}", SIGN_HS, NULL, NULL,
     NULL, "unsupported critical header"},
    {TUSC_JWT_HS256, HS, "[1,2]", SIGN_HS, NULL, NULL, NULL, "malformed token"},
    {TUSC_JWT_HS256, "{\"alg\":\"HS256\",\"alg\":\"none\"}", "{\"sub\":\"a\"}", SIGN_HS, NULL, NULL,
     NULL, "malformed token"},
    {TUSC_JWT_RS256, RS, "{\"sub\":\"bob\",\"exp\":1700000100}", SIGN_RS, NULL, NULL, "bob", NULL},
    {TUSC_JWT_RS256, RS, "{\"sub\":\"bob\"}", SIGN_RS_OTHER, NULL, NULL, NULL, "bad signature"},
    {TUSC_JWT_RS256, HS, "{\"sub\":\"bob\"}", SIGN_HS, NULL, NULL, NULL, "algorithm not allowed"},
    {TUSC_JWT_RS256, "{\"alg\":\"none\"}", "{\"sub\":\"bob\"}", SIGN_NONE, NULL, NULL, NULL,
     "algorithm not allowed"},
    {TUSC_JWT_RS256, RS, "{\"sub\":\"bob\"}", SIGN_NONE, NULL, NULL, NULL, "missing signature"},
    {TUSC_JWT_ES256, ES, "{\"sub\":\"carol\"}", SIGN_ES, NULL, NULL, "carol", NULL},
    {TUSC_JWT_ES256, ES, "{\"sub\":\"carol\"}", SIGN_RS, NULL, NULL, NULL, "bad signature"},
};

static void test_tokens(void **state) {
  (void)state;
  tusc_jwt_key_t *keys[3] = {load_key(TUSC_JWT_HS256), load_key(TUSC_JWT_RS256),
                             load_key(TUSC_JWT_ES256)};
  for (size_t i = 0; i < ARRAY_LEN(token_cases); i++) {
    const struct token_case *c = &token_cases[i];
    char *tok = make_token(c->header, c->payload, c->signer);
    tusc_jwt_opts_t opts = {
        .audience = c->audience, .issuer = c->issuer, .now = NOW, .skew_s = TUSC_JWT_SKEW_S};
    char *sub = NULL;
    const char *why = NULL;
    int rc = tusc_jwt_verify(keys[c->key_alg], tok, strlen(tok), &opts, &sub, &why);
    if (c->want_sub != NULL) {
      if (rc != 0 || sub == NULL || strcmp(sub, c->want_sub) != 0)
        fail_msg("case %zu: rc %d (%s), want accepted as %s", i, rc, why ? why : "-", c->want_sub);
    } else {
      if (rc != TUSC_EUNAUTHORIZED || sub != NULL)
        fail_msg("case %zu: rc %d, want refused", i, rc);
      if (why == NULL || strcmp(why, c->want_why) != 0)
        fail_msg("case %zu: reason \"%s\", want \"%s\"", i, why ? why : "(null)", c->want_why);
    }
    free(sub);
    free(tok);
  }
  for (size_t i = 0; i < 3; i++)
    tusc_jwt_key_free(keys[i]);
}

/* HS256 with the RSA public key's PEM as HMAC secret must fail when RS256 is configured. */
static void test_alg_confusion(void **state) {
  (void)state;
  tusc_jwt_key_t *key = load_key(TUSC_JWT_RS256);
  char *pem = public_pem(rsa_key);
  char *tok = make_token(HS, "{\"sub\":\"mallory\"}", SIGN_NONE);
  /* sign with the PEM as secret */
  char *dot = strrchr(tok, '.');
  unsigned char mac[32];
  unsigned len = 0;
  HMAC(EVP_sha256(), pem, (int)strlen(pem), (unsigned char *)tok, (size_t)(dot - tok), mac, &len);
  b64url(mac, len, dot + 1);
  tusc_jwt_opts_t opts = {.now = NOW, .skew_s = TUSC_JWT_SKEW_S};
  char *sub = NULL;
  const char *why = NULL;
  assert_int_equal(tusc_jwt_verify(key, tok, strlen(tok), &opts, &sub, &why), TUSC_EUNAUTHORIZED);
  assert_null(sub);
  free(tok);
  free(pem);
  tusc_jwt_key_free(key);
}

static void test_malformed(void **state) {
  (void)state;
  tusc_jwt_key_t *key = load_key(TUSC_JWT_HS256);
  char *good = make_token(HS, "{\"sub\":\"alice\"}", SIGN_HS);
  char buf[8192];
  const char *bad[] = {"", "abc", "a.b", "a.b.c.d", "..", good /* placeholder */};
  tusc_jwt_opts_t opts = {.now = NOW, .skew_s = TUSC_JWT_SKEW_S};
  for (size_t i = 0; i + 1 < ARRAY_LEN(bad); i++) {
    char *sub = NULL;
    const char *why = NULL;
    assert_int_equal(tusc_jwt_verify(key, bad[i], strlen(bad[i]), &opts, &sub, &why),
                     TUSC_EUNAUTHORIZED);
  }
  /* padding, standard-alphabet characters and trailing garbage are refused */
  const char *mutations[] = {"=", "+", "/", " ", "A"};
  for (size_t i = 0; i < ARRAY_LEN(mutations); i++) {
    snprintf(buf, sizeof(buf), "%s%s", good, mutations[i]);
    char *sub = NULL;
    const char *why = NULL;
    if (tusc_jwt_verify(key, buf, strlen(buf), &opts, &sub, &why) != TUSC_EUNAUTHORIZED)
      fail_msg("mutation %zu accepted", i);
  }
  /* the good one is fine */
  char *sub = NULL;
  const char *why = NULL;
  assert_int_equal(tusc_jwt_verify(key, good, strlen(good), &opts, &sub, &why), 0);
  assert_string_equal(sub, "alice");
  free(sub);
  free(good);
  tusc_jwt_key_free(key);
}

static void test_key_errors(void **state) {
  (void)state;
  tusc_jwt_key_t *key = NULL;
  char err[256];
  assert_int_equal(tusc_jwt_key_from_mem("\n", 1, TUSC_JWT_HS256, &key, err, sizeof(err)),
                   TUSC_EINVALID_ARGUMENT);
  assert_int_equal(tusc_jwt_key_from_mem("secret", 6, TUSC_JWT_RS256, &key, err, sizeof(err)),
                   TUSC_EINVALID_ARGUMENT);
  char *ec_pem = public_pem(ec_key);
  assert_int_equal(
      tusc_jwt_key_from_mem(ec_pem, strlen(ec_pem), TUSC_JWT_RS256, &key, err, sizeof(err)),
      TUSC_EINVALID_ARGUMENT);
  assert_non_null(strstr(err, "RSA"));
  char *rsa_pem = public_pem(rsa_key);
  assert_int_equal(
      tusc_jwt_key_from_mem(rsa_pem, strlen(rsa_pem), TUSC_JWT_ES256, &key, err, sizeof(err)),
      TUSC_EINVALID_ARGUMENT);
  assert_null(key);
  enum tusc_jwt_alg alg;
  assert_int_equal(tusc_jwt_alg_parse("ES256", &alg), 0);
  assert_int_equal(alg, TUSC_JWT_ES256);
  assert_int_equal(tusc_jwt_alg_parse("none", &alg), TUSC_EINVALID_ARGUMENT);
  assert_true(tusc_jwt_key_load("/nonexistent/key", TUSC_JWT_HS256, &key, err, sizeof(err)) < 0);
  free(ec_pem);
  free(rsa_pem);
  tusc_jwt_key_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tokens),     cmocka_unit_test(test_alg_confusion),
      cmocka_unit_test(test_malformed),
      cmocka_unit_test(test_key_errors),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

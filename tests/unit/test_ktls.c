/* Unit tests for src/net/ktls.c: the TLS 1.3 key and IV derivation against RFC 8448's
 * trace (section 3, both application traffic secrets), and the keys of live handshakes
 * (TLS 1.3 and 1.2, each AEAD suite) checked by opening a real record that OpenSSL sealed
 * with them: a peer's first application-data record, decrypted with the derived key,
 * nonce and sequence number as the kernel would. Plus the probe's answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <uv.h>

#include "net/ktls.h"

static size_t unhex(const char *hex, unsigned char *out, size_t cap) {
  size_t n = 0;
  for (const char *p = hex; *p != '\0';) {
    if (*p == ' ') {
      p++;
      continue;
    }
    unsigned int b;
    assert_int_equal(sscanf(p, "%2x", &b), 1);
    assert_true(n < cap);
    out[n++] = (unsigned char)b;
    p += 2;
  }
  return n;
}

static void check_tls13(const char *secret_hex, const char *key_hex, const char *iv_hex) {
  unsigned char secret[32], key[16], iv[12];
  assert_int_equal(unhex(secret_hex, secret, sizeof(secret)), 32);
  assert_int_equal(unhex(key_hex, key, sizeof(key)), 16);
  assert_int_equal(unhex(iv_hex, iv, sizeof(iv)), 12);
  tusc_ktls_key_t k;
  assert_int_equal(tusc_ktls_tls13_key(TUSC_KTLS_AES_128_GCM, EVP_sha256(), secret, 32, &k), 0);
  assert_int_equal(k.version, 0x0304);
  assert_int_equal(k.key_len, 16);
  assert_int_equal(k.iv_len, 12);
  assert_memory_equal(k.key, key, 16);
  assert_memory_equal(k.iv, iv, 12);
  tusc_ktls_key_wipe(&k);
  unsigned char zero[sizeof(k)] = {0};
  assert_memory_equal(&k, zero, sizeof(k));
}

/* RFC 8448 section 3 ("Simple 1-RTT Handshake"), TLS_AES_128_GCM_SHA256. */
static void test_rfc8448_server(void **state) {
  (void)state;
  check_tls13("a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32 82 04 b4 f4 4b fb 6b 3a 4b 4f 1f "
              "3f cb 63 16 43",
              "9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56",
              "cf 78 2b 88 dd 83 54 9a ad f1 e9 84");
}

static void test_rfc8448_client(void **state) {
  (void)state;
  check_tls13("9e 40 64 6c e7 9a 7f 9d c0 5a f8 88 9b ce 65 52 87 5a fa 0b 06 df 00 87 f7 92 eb "
              "b7 c1 75 04 a5",
              "17 42 2d da 59 6e d5 d9 ac d8 90 e3 c6 3f 50 51",
              "5b 78 92 3d ee 08 57 90 33 e5 23 d9");
}

static void test_cipher_names(void **state) {
  (void)state;
  assert_int_equal(tusc_ktls_cipher_of_nid(NID_aes_128_gcm), TUSC_KTLS_AES_128_GCM);
  assert_int_equal(tusc_ktls_cipher_of_nid(NID_aes_256_gcm), TUSC_KTLS_AES_256_GCM);
  assert_int_equal(tusc_ktls_cipher_of_nid(NID_chacha20_poly1305), TUSC_KTLS_CHACHA20_POLY1305);
  assert_int_equal(tusc_ktls_cipher_of_nid(NID_aes_128_cbc), UV_ENOTSUP);
  tusc_ktls_key_t k;
  unsigned char secret[32] = {0};
  assert_int_equal(tusc_ktls_tls13_key(99, EVP_sha256(), secret, 32, &k), UV_EINVAL);
}

static void test_probe(void **state) {
  (void)state;
  int rc = tusc_ktls_probe();
  /* 0 on a kernel with the tls module, ENOENT without (this project's build machine). */
  if (rc != 0 && rc != UV_ENOENT)
    fail_msg("probe answered %s", uv_strerror(rc));
}

/* --- live handshakes ---------------------------------------------------------------- */

struct secrets {
  unsigned char client[64], server[64];
  size_t client_len, server_len;
};

static int secrets_index = -1;

static void keylog(const SSL *ssl, const char *line) {
  struct secrets *s = SSL_get_ex_data(ssl, secrets_index);
  unsigned char *to = NULL;
  size_t *len = NULL;
  if (strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0) {
    to = s->client;
    len = &s->client_len;
  } else if (strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0) {
    to = s->server;
    len = &s->server_len;
  }
  if (to != NULL)
    *len = unhex(strrchr(line, ' ') + 1, to, 64);
}

static SSL_CTX *server_ctx(void) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  EVP_PKEY *key = EVP_EC_gen("P-256");
  X509 *cert = X509_new();
  assert_non_null(ctx);
  assert_non_null(key);
  assert_non_null(cert);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, key);
  X509_NAME *name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1,
                             0);
  X509_set_issuer_name(cert, name);
  assert_true(X509_sign(cert, key, EVP_sha256()) > 0);
  assert_int_equal(SSL_CTX_use_certificate(ctx, cert), 1);
  assert_int_equal(SSL_CTX_use_PrivateKey(ctx, key), 1);
  X509_free(cert);
  EVP_PKEY_free(key);
  SSL_CTX_set_keylog_callback(ctx, keylog);
  return ctx;
}

/* Moves what one side wrote to the other. */
static void pump(BIO *from, BIO *to) {
  char buf[16384];
  int n;
  while ((n = BIO_read(from, buf, sizeof(buf))) > 0)
    assert_int_equal(BIO_write(to, buf, n), n);
}

/* Reads one whole record that `from` wrote. */
static size_t take_record(BIO *from, unsigned char *rec, size_t cap) {
  assert_int_equal(BIO_read(from, rec, 5), 5);
  size_t len = (size_t)rec[3] << 8 | rec[4];
  assert_true(5 + len <= cap);
  assert_int_equal(BIO_read(from, rec + 5, (int)len), (int)len);
  return 5 + len;
}

/* Opens a record with the derived key as the kernel does; returns the plaintext length
 * (TLS 1.3: without the inner content type, which must be application data). */
static size_t open_record(const tusc_ktls_key_t *k, uint64_t seq, const unsigned char *rec,
                          size_t rec_len, unsigned char *out) {
  bool tls13 = k->version == 0x0304;
  bool explicit_nonce = !tls13 && k->cipher != TUSC_KTLS_CHACHA20_POLY1305;
  unsigned char nonce[12];
  const unsigned char *body = rec + 5;
  size_t body_len = rec_len - 5;
  if (explicit_nonce) {
    memcpy(nonce, k->iv, 4);
    memcpy(nonce + 4, body, 8);
    body += 8;
    body_len -= 8;
  } else {
    memcpy(nonce, k->iv, 12);
    for (int i = 0; i < 8; i++)
      nonce[4 + i] ^= (unsigned char)(seq >> (56 - 8 * i));
  }
  assert_true(body_len >= 16);
  size_t ct_len = body_len - 16;
  unsigned char aad[13];
  size_t aad_len;
  if (tls13) {
    memcpy(aad, rec, 5);
    aad_len = 5;
  } else {
    for (int i = 0; i < 8; i++)
      aad[i] = (unsigned char)(seq >> (56 - 8 * i));
    memcpy(aad + 8, rec, 3);
    aad[11] = (unsigned char)(ct_len >> 8);
    aad[12] = (unsigned char)ct_len;
    aad_len = 13;
  }
  const EVP_CIPHER *c = k->cipher == TUSC_KTLS_AES_128_GCM   ? EVP_aes_128_gcm()
                        : k->cipher == TUSC_KTLS_AES_256_GCM ? EVP_aes_256_gcm()
                                                             : EVP_chacha20_poly1305();
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  int n = 0, fin = 0;
  assert_int_equal(EVP_DecryptInit_ex(ctx, c, NULL, NULL, NULL), 1);
  assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, 12, NULL), 1);
  assert_int_equal(EVP_DecryptInit_ex(ctx, NULL, NULL, k->key, nonce), 1);
  assert_int_equal(EVP_DecryptUpdate(ctx, NULL, &n, aad, (int)aad_len), 1);
  assert_int_equal(EVP_DecryptUpdate(ctx, out, &n, body, (int)ct_len), 1);
  assert_int_equal(
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, (void *)(uintptr_t)(body + ct_len)), 1);
  if (EVP_DecryptFinal_ex(ctx, out + n, &fin) != 1)
    fail_msg("the derived key does not open the record (seq %llu)", (unsigned long long)seq);
  EVP_CIPHER_CTX_free(ctx);
  size_t len = (size_t)n + (size_t)fin;
  if (tls13) {
    while (len > 0 && out[len - 1] == 0) /* padding */
      len--;
    assert_true(len > 0);
    assert_int_equal(out[len - 1], 23);
    len--;
  }
  return len;
}

static void live(int version, const char *suite) {
  SSL_CTX *sctx = server_ctx();
  SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(sctx, version);
  SSL_CTX_set_max_proto_version(sctx, version);
  if (version == TLS1_3_VERSION)
    assert_int_equal(SSL_CTX_set_ciphersuites(cctx, suite), 1);
  else
    assert_int_equal(SSL_CTX_set_cipher_list(cctx, suite), 1);
  SSL *srv = SSL_new(sctx), *cli = SSL_new(cctx);
  struct secrets sec;
  memset(&sec, 0, sizeof(sec));
  SSL_set_ex_data(srv, secrets_index, &sec);
  BIO *s_in = BIO_new(BIO_s_mem()), *s_out = BIO_new(BIO_s_mem());
  BIO *c_in = BIO_new(BIO_s_mem()), *c_out = BIO_new(BIO_s_mem());
  SSL_set_bio(srv, s_in, s_out);
  SSL_set_bio(cli, c_in, c_out);
  SSL_set_accept_state(srv);
  SSL_set_connect_state(cli);
  /* Records the server sends once its handshake is over (TLS 1.3 tickets) come first
   * under its application key: count them as they go to the client. */
  uint64_t tickets = 0;
  for (int i = 0; i < 10 && !(SSL_is_init_finished(srv) && SSL_is_init_finished(cli)); i++) {
    SSL_do_handshake(cli);
    pump(c_out, s_in);
    SSL_do_handshake(srv);
    if (!SSL_is_init_finished(srv)) {
      pump(s_out, c_in);
      continue;
    }
    unsigned char rec[20000];
    while (BIO_ctrl_pending(s_out) > 0) {
      size_t n = take_record(s_out, rec, sizeof(rec));
      assert_int_equal(BIO_write(c_in, rec, (int)n), (int)n);
      tickets++;
    }
  }
  assert_true(SSL_is_init_finished(srv));
  assert_int_equal(SSL_version(srv), version);
  ERR_clear_error();

  const SSL_CIPHER *c = SSL_get_current_cipher(srv);
  int cipher = tusc_ktls_cipher_of_nid(SSL_CIPHER_get_cipher_nid(c));
  assert_true(cipher > 0);
  const EVP_MD *md = SSL_CIPHER_get_handshake_digest(c);
  tusc_ktls_key_t ck, sk;
  uint64_t cseq, sseq;
  if (version == TLS1_3_VERSION) {
    assert_int_equal(tusc_ktls_tls13_key(cipher, md, sec.client, sec.client_len, &ck), 0);
    assert_int_equal(tusc_ktls_tls13_key(cipher, md, sec.server, sec.server_len, &sk), 0);
    cseq = 0; /* the client's first record behind its Finished */
    sseq = tickets;
    assert_true(tickets > 0);
  } else {
    unsigned char master[64], cr[32], sr[32];
    size_t mlen = SSL_SESSION_get_master_key(SSL_get_session(srv), master, sizeof(master));
    SSL_get_client_random(srv, cr, sizeof(cr));
    SSL_get_server_random(srv, sr, sizeof(sr));
    assert_int_equal(tusc_ktls_tls12_keys(cipher, md, master, mlen, cr, sr, &ck, &sk), 0);
    cseq = sseq = 1; /* behind each side's Finished */
  }
  unsigned char rec[20000], plain[20000];
  static const char hello[] = "PATCH /files/x HTTP/1.1\r\n";
  assert_int_equal(SSL_write(cli, hello, sizeof(hello) - 1), (int)sizeof(hello) - 1);
  size_t n = take_record(c_out, rec, sizeof(rec));
  assert_int_equal(open_record(&ck, cseq, rec, n, plain), sizeof(hello) - 1);
  assert_memory_equal(plain, hello, sizeof(hello) - 1);
  static const char reply[] = "HTTP/1.1 204 No Content\r\n";
  assert_int_equal(SSL_write(srv, reply, sizeof(reply) - 1), (int)sizeof(reply) - 1);
  n = take_record(s_out, rec, sizeof(rec));
  assert_int_equal(open_record(&sk, sseq, rec, n, plain), sizeof(reply) - 1);
  assert_memory_equal(plain, reply, sizeof(reply) - 1);
  tusc_ktls_key_wipe(&ck);
  tusc_ktls_key_wipe(&sk);
  SSL_free(srv);
  SSL_free(cli);
  SSL_CTX_free(sctx);
  SSL_CTX_free(cctx);
}

static void test_live_tls13_aes128(void **state) {
  (void)state;
  live(TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256");
}
static void test_live_tls13_aes256(void **state) {
  (void)state;
  live(TLS1_3_VERSION, "TLS_AES_256_GCM_SHA384");
}
static void test_live_tls13_chacha(void **state) {
  (void)state;
  live(TLS1_3_VERSION, "TLS_CHACHA20_POLY1305_SHA256");
}
static void test_live_tls12_aes128(void **state) {
  (void)state;
  live(TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256");
}
static void test_live_tls12_aes256(void **state) {
  (void)state;
  live(TLS1_2_VERSION, "ECDHE-ECDSA-AES256-GCM-SHA384");
}
static void test_live_tls12_chacha(void **state) {
  (void)state;
  live(TLS1_2_VERSION, "ECDHE-ECDSA-CHACHA20-POLY1305");
}

int main(void) {
  secrets_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rfc8448_server),    cmocka_unit_test(test_rfc8448_client),
      cmocka_unit_test(test_cipher_names),      cmocka_unit_test(test_probe),
      cmocka_unit_test(test_live_tls13_aes128), cmocka_unit_test(test_live_tls13_aes256),
      cmocka_unit_test(test_live_tls13_chacha), cmocka_unit_test(test_live_tls12_aes128),
      cmocka_unit_test(test_live_tls12_aes256), cmocka_unit_test(test_live_tls12_chacha),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

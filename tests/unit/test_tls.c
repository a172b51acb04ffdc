/* Unit tests for src/net/tls.c: context loading (good, encrypted, mismatched, missing,
 * not PEM), reload keeping or swapping the context, and the memory-BIO transport
 * driven by a client SSL over a socketpair: handshake, data both ways, write callbacks,
 * close_notify, protocol errors, tls13 mode refusing a TLS 1.2 client. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <uv.h>

#include "net/tls.h"
#include "net/transport.h"

static char dir[64];

static void path_of(char *out, size_t cap, const char *name) {
  snprintf(out, cap, "%s/%s", dir, name);
}

static EVP_PKEY *write_key(const char *name, bool encrypted) {
  EVP_PKEY *key = EVP_EC_gen("P-256");
  assert_non_null(key);
  char p[128];
  path_of(p, sizeof(p), name);
  FILE *f = fopen(p, "w");
  assert_non_null(f);
  if (encrypted)
    assert_int_equal(
        PEM_write_PrivateKey(f, key, EVP_aes_256_cbc(), (unsigned char *)"pw", 2, NULL, NULL), 1);
  else
    assert_int_equal(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
  fclose(f);
  return key;
}

static void write_cert(const char *name, EVP_PKEY *key, long serial) {
  X509 *x = X509_new();
  assert_non_null(x);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, key);
  X509_NAME *n = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
  X509_set_issuer_name(x, n);
  assert_true(X509_sign(x, key, EVP_sha256()) > 0);
  char p[128];
  path_of(p, sizeof(p), name);
  FILE *f = fopen(p, "w");
  assert_non_null(f);
  assert_int_equal(PEM_write_X509(f, x), 1);
  fclose(f);
  X509_free(x);
}

static int setup(void **state) {
  (void)state;
  if (test_tmpdir(dir, sizeof(dir), "tls-unit") != 0)
    return -1;
  EVP_PKEY *a = write_key("a.key", false);
  write_cert("a.crt", a, 0xA1);
  EVP_PKEY_free(write_key("a-enc.key", true));
  EVP_PKEY *b = write_key("b.key", false);
  write_cert("b.crt", b, 0xB2);
  EVP_PKEY_free(a);
  EVP_PKEY_free(b);
  char p[128];
  path_of(p, sizeof(p), "junk.crt");
  FILE *f = fopen(p, "w");
  fputs("not a certificate\n", f);
  fclose(f);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  return test_rm_rf(dir);
}

static int load(const char *cert, const char *key, const char *mode, tusc_tls_t **out, char *err,
                size_t errlen) {
  char c[128], k[128];
  path_of(c, sizeof(c), cert);
  path_of(k, sizeof(k), key);
  tusc_tls_options_t o = {.certificate = c, .key = k, .mode = mode, .hsts_max_age = -1};
  return tusc_tls_new(&o, out, err, errlen);
}

/* --- contexts ------------------------------------------------------------------------ */

static void test_load_errors(void **state) {
  (void)state;
  static const struct {
    const char *cert, *key, *mode, *want;
  } cases[] = {
      {"a.crt", "a-enc.key", NULL, "is encrypted with a passphrase"},
      {"a.crt", "b.key", NULL, "does not match certificate"},
      {"missing.crt", "a.key", NULL, "cannot read certificate"},
      {"a.crt", "missing.key", NULL, "cannot read private key"},
      {"junk.crt", "a.key", NULL, "cannot load certificate chain"},
      {"a.crt", "junk.crt", NULL, "cannot load private key"},
      {"a.crt", "a.key", "tls11", "unknown TLS mode"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    tusc_tls_t *tls = NULL;
    char err[512] = "";
    int rc = load(cases[i].cert, cases[i].key, cases[i].mode, &tls, err, sizeof(err));
    if (rc == 0 || strstr(err, cases[i].want) == NULL)
      print_error("case %zu: rc %d err \"%s\"\n", i, rc, err);
    assert_true(rc < 0);
    assert_null(tls);
    assert_non_null(strstr(err, cases[i].want));
  }
  assert_int_equal(ERR_peek_error(), 0); /* no stale errors left for other connections */
}

static void test_reload(void **state) {
  (void)state;
  char live_c[128], live_k[128], cmd[512], err[512], serial[64];
  path_of(live_c, sizeof(live_c), "live.crt");
  path_of(live_k, sizeof(live_k), "live.key");
  snprintf(cmd, sizeof(cmd), "cp %s/a.crt %s && cp %s/a.key %s", dir, live_c, dir, live_k);
  assert_int_equal(system(cmd), 0);
  tusc_tls_t *tls = NULL;
  assert_int_equal(load("live.crt", "live.key", "tls12", &tls, err, sizeof(err)), 0);
  tusc_tls_serial(tls, serial, sizeof(serial));
  assert_string_equal(serial, "A1");
  assert_null(tusc_tls_hsts(tls));

  /* Certificate replaced but not the key: refused, old one kept. */
  snprintf(cmd, sizeof(cmd), "cp %s/b.crt %s", dir, live_c);
  assert_int_equal(system(cmd), 0);
  assert_true(tusc_tls_reload(tls, err, sizeof(err)) < 0);
  assert_non_null(strstr(err, "does not match"));
  tusc_tls_serial(tls, serial, sizeof(serial));
  assert_string_equal(serial, "A1");

  snprintf(cmd, sizeof(cmd), "cp %s/b.key %s", dir, live_k);
  assert_int_equal(system(cmd), 0);
  assert_int_equal(tusc_tls_reload(tls, err, sizeof(err)), 0);
  tusc_tls_serial(tls, serial, sizeof(serial));
  assert_string_equal(serial, "B2");
  tusc_tls_free(tls);

  char c[128], k[128];
  path_of(c, sizeof(c), "a.crt");
  path_of(k, sizeof(k), "a.key");
  tusc_tls_options_t o = {.certificate = c, .key = k, .mode = NULL, .hsts_max_age = 600};
  assert_int_equal(tusc_tls_new(&o, &tls, err, sizeof(err)), 0);
  assert_string_equal(tusc_tls_hsts(tls), "max-age=600");
  tusc_tls_free(tls);
}

/* --- transport ----------------------------------------------------------------------- */

struct rig {
  uv_loop_t loop;
  uv_pipe_t pipe; /* server side of the socketpair */
  int client_fd;
  tusc_tls_t *tls;
  tusc_transport_t *t;
  SSL_CTX *cctx;
  SSL *client;
  BIO *crbio, *cwbio;
  char plain[65536];
  size_t plain_len;
  int writes_done;
  int write_status;
  char scratch[65536];
};

static void deliver(void *arg, const char *data, size_t len) {
  struct rig *r = arg;
  assert_true(r->plain_len + len <= sizeof(r->plain));
  memcpy(r->plain + r->plain_len, data, len);
  r->plain_len += len;
}

static void on_written(uv_write_t *req, int status) {
  struct rig *r = req->data;
  r->writes_done++;
  r->write_status = status;
}

static void rig_init(struct rig *r, const char *mode, int client_max_version) {
  memset(r, 0, sizeof(*r));
  char err[512];
  assert_int_equal(load("a.crt", "a.key", mode, &r->tls, err, sizeof(err)), 0);
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  assert_int_equal(uv_loop_init(&r->loop), 0);
  assert_int_equal(uv_pipe_init(&r->loop, &r->pipe, 0), 0);
  assert_int_equal(uv_pipe_open(&r->pipe, sv[0]), 0);
  r->client_fd = sv[1];
  assert_int_equal(tusc_tls_transport_new(r->tls, &r->t), 0);
  assert_true(r->t->ops->secure(r->t));
  assert_false(r->t->ops->established(r->t));

  r->cctx = SSL_CTX_new(TLS_client_method());
  if (client_max_version)
    SSL_CTX_set_max_proto_version(r->cctx, client_max_version);
  static const unsigned char alpn[] = "\x02h2\x08http/1.1";
  SSL_CTX_set_alpn_protos(r->cctx, alpn, sizeof(alpn) - 1);
  r->client = SSL_new(r->cctx);
  r->crbio = BIO_new(BIO_s_mem());
  r->cwbio = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(r->crbio, -1);
  SSL_set_bio(r->client, r->crbio, r->cwbio);
  SSL_set_connect_state(r->client);
}

static void rig_free(struct rig *r) {
  r->t->ops->free(r->t);
  uv_close((uv_handle_t *)&r->pipe, NULL);
  uv_run(&r->loop, UV_RUN_DEFAULT);
  uv_loop_close(&r->loop);
  close(r->client_fd);
  SSL_free(r->client);
  SSL_CTX_free(r->cctx);
  tusc_tls_free(r->tls);
  ERR_clear_error();
}

/* Client bytes → transport input. Returns its result. */
static int pump_to_server(struct rig *r) {
  char buf[65536];
  int n, rc = 0;
  while ((n = BIO_read(r->cwbio, buf, sizeof(buf))) > 0) {
    rc = r->t->ops->input(r->t, (uv_stream_t *)&r->pipe, buf, (size_t)n, r->scratch,
                          sizeof(r->scratch), deliver, r);
    if (rc != 0)
      break;
  }
  return rc;
}

/* Server's socket writes → client's read BIO. */
static void pump_to_client(struct rig *r) {
  uv_run(&r->loop, UV_RUN_NOWAIT);
  char buf[65536];
  for (;;) {
    ssize_t n = recv(r->client_fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n <= 0)
      break;
    BIO_write(r->crbio, buf, (int)n);
  }
}

static bool handshake(struct rig *r) {
  for (int i = 0; i < 10; i++) {
    int hs = SSL_do_handshake(r->client);
    /* Before any other OpenSSL call on this thread: it reads the error queue. */
    int e = hs == 1 ? SSL_ERROR_NONE : SSL_get_error(r->client, hs);
    if (pump_to_server(r) != 0)
      return false;
    pump_to_client(r);
    if (hs == 1 && r->t->ops->established(r->t))
      return true;
    if (e != SSL_ERROR_NONE && e != SSL_ERROR_WANT_READ)
      return false;
  }
  return false;
}

static void test_transport_round_trip(void **state) {
  (void)state;
  struct rig r;
  rig_init(&r, "tls12", 0);
  assert_true(handshake(&r));
  assert_string_equal(SSL_get_version(r.client), "TLSv1.3");
  const unsigned char *alpn = NULL;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(r.client, &alpn, &alpn_len);
  assert_int_equal(alpn_len, 8);
  assert_memory_equal(alpn, "http/1.1", 8);

  /* 200 KB from the client arrive whole and in order, across many records. */
  static char big[200000];
  for (size_t i = 0; i < sizeof(big); i++)
    big[i] = (char)(i * 7 + 3);
  assert_int_equal(SSL_write(r.client, big, sizeof(big)), (int)sizeof(big));
  size_t got = 0;
  char *all = malloc(sizeof(big));
  assert_non_null(all);
  while (got < sizeof(big)) {
    r.plain_len = 0;
    char chunk[20000];
    int n = BIO_read(r.cwbio, chunk, sizeof(chunk));
    assert_true(n > 0);
    assert_int_equal(r.t->ops->input(r.t, (uv_stream_t *)&r.pipe, chunk, (size_t)n, r.scratch,
                                     sizeof(r.scratch), deliver, &r),
                     0);
    memcpy(all + got, r.plain, r.plain_len);
    got += r.plain_len;
  }
  assert_memory_equal(all, big, sizeof(big));
  free(all);

  /* Server → client, with the write callback after the bytes left. */
  uv_write_t w;
  w.data = &r;
  static const char resp[] = "HTTP/1.1 204 No Content\r\n\r\n";
  assert_int_equal(
      r.t->ops->write(r.t, (uv_stream_t *)&r.pipe, &w, resp, sizeof(resp) - 1, on_written), 0);
  assert_int_equal(r.writes_done, 0); /* never from inside write() */
  pump_to_client(&r);
  assert_int_equal(r.writes_done, 1);
  assert_int_equal(r.write_status, 0);
  char in[64];
  int n = SSL_read(r.client, in, sizeof(in));
  assert_int_equal(n, (int)sizeof(resp) - 1);
  assert_memory_equal(in, resp, sizeof(resp) - 1);

  /* Our close_notify reaches the client; the client's ends the input with EOF. */
  r.t->ops->close_notify(r.t, (uv_stream_t *)&r.pipe);
  pump_to_client(&r);
  n = SSL_read(r.client, in, sizeof(in));
  assert_int_equal(n, 0);
  assert_int_equal(SSL_get_error(r.client, n), SSL_ERROR_ZERO_RETURN);
  SSL_shutdown(r.client);
  assert_int_equal(pump_to_server(&r), UV_EOF);
  rig_free(&r);
}

static void test_transport_garbage(void **state) {
  (void)state;
  struct rig r;
  rig_init(&r, "tls12", 0);
  static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  assert_int_equal(r.t->ops->input(r.t, (uv_stream_t *)&r.pipe, req, sizeof(req) - 1, r.scratch,
                                   sizeof(r.scratch), deliver, &r),
                   UV_EPROTO);
  assert_int_equal(r.plain_len, 0);
  assert_int_equal(ERR_peek_error(), 0);
  rig_free(&r);
}

static void test_transport_tls13_refuses_tls12(void **state) {
  (void)state;
  struct rig r;
  rig_init(&r, "tls13", TLS1_2_VERSION);
  assert_false(handshake(&r));
  assert_false(r.t->ops->established(r.t));
  rig_free(&r);

  /* tusd's tls12-strong: TLS 1.2 only, even for a client that prefers 1.3. */
  rig_init(&r, "tls12-strong", 0);
  assert_true(handshake(&r));
  assert_string_equal(SSL_get_version(r.client), "TLSv1.2");
  assert_string_equal(SSL_get_cipher_name(r.client), "ECDHE-ECDSA-AES256-GCM-SHA384");
  rig_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_load_errors),
      cmocka_unit_test(test_reload),
      cmocka_unit_test(test_transport_round_trip),
      cmocka_unit_test(test_transport_garbage),
      cmocka_unit_test(test_transport_tls13_refuses_tls12),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

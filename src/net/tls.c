/*
 * tls — OpenSSL server contexts and the memory-BIO TLS transport.
 *
 * Per connection: rbio is our own "borrowing" BIO: while tls_input runs, SSL_read takes
 * ciphertext straight from the buffer libuv read the socket into (no copy into a memory
 * BIO), and decrypts into that same buffer behind the bytes it has consumed; only the
 * tail of a record cut by the read (at most one record) is copied aside until the next
 * read. wbio collects what OpenSSL wants sent (handshake messages, records, alerts,
 * tickets), which is moved into a libuv write right after every OpenSSL call. So the
 * order of bytes on the wire is exactly the order of the calls, and nothing waits on
 * the socket inside OpenSSL.
 */
#include "net/tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/error.h"
#include "common/log.h"
#include "net/ktls.h"

/* tusd's TLS 1.2 suites (Mozilla "intermediate"): ECDHE key exchange, AEAD only. TLS
 * 1.3's suites are all AEAD already. */
#define TLS12_CIPHERS                                                                              \
  "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                     \
  "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                     \
  "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
/* tusd's tls12-strong: only the two AES-256-GCM suites, and TLS 1.2 only (tusd turns 1.3
 * off in this mode because TLS 1.3 requires an AES-128 suite). */
#define STRONG_TLS12_CIPHERS "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"
/* TLS 1.3: AES-128-GCM first (as tusd/Go): with AES-NI it costs ~30% less CPU per byte
 * than AES-256-GCM, which OpenSSL's default order (and so curl's) puts first. Clients
 * without AES-NI put ChaCha20 first; SSL_OP_PRIORITIZE_CHACHA then honours that. */
#define TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
/* Largest TLS record plaintext (RFC 8446 5.1). */
#define RECORD_PLAINTEXT_MAX 16384

struct tusc_tls_s {
  uv_mutex_t mu;
  SSL_CTX *ctx; /* current; guarded by mu */
  char *certificate;
  char *key;
  char *mode;
  char hsts[64];
  bool hsts_on;
  bool h2;
  bool ktls; /* -tls-ktls auto and the kernel has the tls ULP: hand records to it */
  void (*on_ktls)(void);
};

struct tls_transport {
  tusc_transport_t base;
  SSL *ssl;
  BIO *rbio; /* owned by ssl; a borrowing BIO reading `held`, then `in` */
  BIO *wbio; /* owned by ssl */
  bool established;
  const char *in; /* borrowed ciphertext, only while tls_input runs */
  size_t in_len;
  char *held; /* ciphertext the last input left over (a cut record); owned */
  size_t held_off, held_len, held_cap;

  /* kTLS (see "kernel TLS" below). */
  bool ktls_want;           /* still to hand a direction to the kernel */
  bool ktls_lost;           /* a KeyUpdate went by in user space: the logged secrets are stale */
  void (*on_ktls)(void);    /* the context's tusc_tls_options_t.on_ktls */
  bool rx_kernel;           /* the kernel decrypts: input passes bytes through */
  bool tx_kernel;           /* the kernel encrypts: writes pass bytes through */
  bool tx_counting;         /* our application-key records are being counted in tx_seq */
  bool rx_counting;         /* the peer's application-key records are counted in rx_seq */
  uint64_t tx_seq;          /* records written under the application keys so far */
  uint64_t rx_seq;          /* records read under the application keys so far */
  unsigned char rec_hdr[5]; /* framing of the ciphertext OpenSSL has taken: */
  size_t rec_hdr_got;       /* bytes of the current record's header seen */
  size_t rec_body_left;     /* bytes of the current record's body still to come */
  unsigned rx_waits;        /* inputs that ended inside a record after the handshake */
  unsigned char client_secret[EVP_MAX_MD_SIZE]; /* TLS 1.3 traffic secrets (keylog) */
  unsigned char server_secret[EVP_MAX_MD_SIZE];
  size_t client_secret_len, server_secret_len;
};

struct tls_write {
  uv_write_t w;
  uv_write_t *user; /* handed back to cb */
  uv_write_cb cb;
  char data[];
};

/* --- contexts ----------------------------------------------------------------------- */

/* Every reason in OpenSSL's error queue, first to last ("no start line; PEM lib"), and
 * whether one of them says key and certificate do not match. Clears the queue. */
static bool openssl_reason(char *out, size_t cap) {
  size_t used = 0;
  bool mismatch = false;
  out[0] = '\0';
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    if (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
      mismatch = true;
    const char *r = ERR_reason_error_string(e);
    char code[32];
    if (r == NULL) {
      snprintf(code, sizeof(code), "error %lx", e);
      r = code;
    }
    int n = snprintf(out + used, cap - used, "%s%s", used ? "; " : "", r);
    if (n < 0 || (size_t)n >= cap - used)
      break;
    used += (size_t)n;
  }
  if (out[0] == '\0')
    snprintf(out, cap, "unknown error");
  return mismatch;
}

struct pw_state {
  bool asked;
};

/* A passphrase is never available (no terminal, no prompt), so asking for one fails;
 * the flag lets the caller say "encrypted" instead of OpenSSL's generic decode error. */
static int refuse_password(char *buf, int size, int rwflag, void *userdata) {
  (void)buf;
  (void)size;
  (void)rwflag;
  struct pw_state *st = userdata;
  st->asked = true;
  return -1;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
  (void)ssl;
  const tusc_tls_t *tls = arg;
  static const unsigned char h11[] = "http/1.1";
  static const unsigned char h2[] = "h2";
  /* The server's preference: h2 whenever the client offers it (and it is on). */
  for (unsigned int i = 0; tls->h2 && i < inlen;) {
    unsigned int n = in[i];
    if (i + 1 + n > inlen)
      break;
    if (n == sizeof(h2) - 1 && memcmp(in + i + 1, h2, n) == 0) {
      *out = in + i + 1;
      *outlen = (unsigned char)n;
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + n;
  }
  for (unsigned int i = 0; i < inlen;) {
    unsigned int n = in[i];
    if (i + 1 + n > inlen)
      break;
    if (n == sizeof(h11) - 1 && memcmp(in + i + 1, h11, n) == 0) {
      *out = in + i + 1;
      *outlen = (unsigned char)n;
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + n;
  }
  /* Only h2 offered (and h2 off): go on without ALPN; such clients fall back to
   * HTTP/1.1. */
  return SSL_TLSEXT_ERR_NOACK;
}

static void on_keylog(const SSL *ssl, const char *line);

static int check_readable(const char *what, const char *path, char *err, size_t errlen) {
  if (path == NULL || path[0] == '\0') {
    snprintf(err, errlen, "no %s file given", what);
    return TUSC_EINVALID_ARGUMENT;
  }
  if (access(path, R_OK) != 0) {
    int e = errno;
    snprintf(err, errlen, "cannot read %s %s: %s", what, path, strerror(e));
    return -e;
  }
  return 0;
}

static SSL_CTX *build_ctx(const tusc_tls_t *tls, char *err, size_t errlen) {
  char reason[256];
  if (check_readable("certificate", tls->certificate, err, errlen) != 0 ||
      check_readable("private key", tls->key, err, errlen) != 0)
    return NULL;
  ERR_clear_error();
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == NULL) {
    openssl_reason(reason, sizeof(reason));
    snprintf(err, errlen, "cannot create a TLS context: %s", reason);
    return NULL;
  }
  bool tls13 = strcmp(tls->mode, "tls13") == 0;
  bool strong = strcmp(tls->mode, "tls12-strong") == 0;
  SSL_CTX_set_min_proto_version(ctx, tls13 ? TLS1_3_VERSION : TLS1_2_VERSION);
  if (strong)
    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                               SSL_OP_PRIORITIZE_CHACHA | SSL_OP_NO_COMPRESSION);
  if (!strong && SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES) != 1) {
    openssl_reason(reason, sizeof(reason));
    snprintf(err, errlen, "cannot set the TLS 1.3 suites: %s", reason);
    goto fail;
  }
  /* Idle keep-alive connections then hold no record buffers. */
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  /* Stateless tickets still resume sessions; no shared cache to lock across workers. */
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  if (!tls13 && SSL_CTX_set_cipher_list(ctx, strong ? STRONG_TLS12_CIPHERS : TLS12_CIPHERS) != 1) {
    openssl_reason(reason, sizeof(reason));
    snprintf(err, errlen, "cannot set the %s ciphers: %s", tls->mode, reason);
    goto fail;
  }
  SSL_CTX_set_alpn_select_cb(ctx, alpn_select, (void *)tls);
  if (tls->ktls)
    SSL_CTX_set_keylog_callback(ctx, on_keylog);

  if (SSL_CTX_use_certificate_chain_file(ctx, tls->certificate) != 1) {
    openssl_reason(reason, sizeof(reason));
    snprintf(err, errlen, "cannot load certificate chain %s: %s", tls->certificate, reason);
    goto fail;
  }
  struct pw_state pw = {false};
  SSL_CTX_set_default_passwd_cb(ctx, refuse_password);
  SSL_CTX_set_default_passwd_cb_userdata(ctx, &pw);
  int ok = SSL_CTX_use_PrivateKey_file(ctx, tls->key, SSL_FILETYPE_PEM);
  SSL_CTX_set_default_passwd_cb(ctx, NULL);
  SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
  if (ok != 1) {
    bool mismatch = openssl_reason(reason, sizeof(reason));
    if (mismatch)
      snprintf(err, errlen, "private key %s does not match certificate %s", tls->key,
               tls->certificate);
    else if (pw.asked)
      snprintf(err, errlen,
               "private key %s is encrypted with a passphrase; tusc needs an unencrypted key "
               "(decrypt it with `openssl pkey -in %s -out NEW.key` and protect the file with "
               "permissions instead)",
               tls->key, tls->key);
    else
      snprintf(err, errlen, "cannot load private key %s: %s", tls->key, reason);
    goto fail;
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    openssl_reason(reason, sizeof(reason));
    snprintf(err, errlen, "private key %s does not match certificate %s: %s", tls->key,
             tls->certificate, reason);
    goto fail;
  }
  X509 *leaf = SSL_CTX_get0_certificate(ctx);
  if (leaf != NULL && X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0)
    tusc_log_msg(TUSC_LOG_WARN, "certificate %s has expired; clients will refuse it",
                 tls->certificate);
  return ctx;
fail:
  SSL_CTX_free(ctx);
  return NULL;
}

static void ctx_serial(SSL_CTX *ctx, char *out, size_t cap) {
  snprintf(out, cap, "-");
  X509 *leaf = ctx ? SSL_CTX_get0_certificate(ctx) : NULL;
  if (leaf == NULL)
    return;
  BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(leaf), NULL);
  char *hex = bn ? BN_bn2hex(bn) : NULL;
  if (hex != NULL)
    snprintf(out, cap, "%s", hex);
  OPENSSL_free(hex);
  BN_free(bn);
}

int tusc_tls_new(const tusc_tls_options_t *opts, tusc_tls_t **out, char *err, size_t errlen) {
  snprintf(err, errlen, "out of memory");
  tusc_tls_t *tls = calloc(1, sizeof(*tls));
  if (tls == NULL)
    return TUSC_ENOMEM;
  const char *mode = opts->mode ? opts->mode : "tls12";
  if (strcmp(mode, "tls12") != 0 && strcmp(mode, "tls12-strong") != 0 &&
      strcmp(mode, "tls13") != 0) {
    snprintf(err, errlen, "unknown TLS mode %s", mode);
    free(tls);
    return TUSC_EINVALID_ARGUMENT;
  }
  tls->certificate = opts->certificate ? strdup(opts->certificate) : NULL;
  tls->key = opts->key ? strdup(opts->key) : NULL;
  tls->mode = strdup(mode);
  tls->h2 = opts->h2;
  tls->on_ktls = opts->on_ktls;
  if (opts->ktls) {
    int probe = tusc_ktls_probe();
    tls->ktls = probe == 0;
    if (probe == 0)
      tusc_log_msg(TUSC_LOG_INFO, "kTLS: the kernel has TLS; connections hand their records "
                                  "to it after the handshake");
    else
      tusc_log_msg(TUSC_LOG_INFO, "kTLS: not available (%s); TLS stays in user space",
                   probe == UV_ENOENT ? "this kernel has no tls module" : uv_strerror(probe));
  } else {
    tusc_log_msg(TUSC_LOG_INFO, "kTLS: off (-tls-ktls off); TLS stays in user space");
  }
  if ((opts->certificate && !tls->certificate) || (opts->key && !tls->key) || !tls->mode) {
    free(tls->certificate);
    free(tls->key);
    free(tls->mode);
    free(tls);
    return TUSC_ENOMEM;
  }
  if (opts->hsts_max_age >= 0) {
    tls->hsts_on = true;
    snprintf(tls->hsts, sizeof(tls->hsts), "max-age=%lld", (long long)opts->hsts_max_age);
  }
  tls->ctx = build_ctx(tls, err, errlen);
  if (tls->ctx == NULL || uv_mutex_init(&tls->mu) != 0) {
    SSL_CTX_free(tls->ctx);
    free(tls->certificate);
    free(tls->key);
    free(tls->mode);
    free(tls);
    return TUSC_EINVALID_ARGUMENT;
  }
  *out = tls;
  return 0;
}

int tusc_tls_reload(tusc_tls_t *tls, char *err, size_t errlen) {
  SSL_CTX *fresh = build_ctx(tls, err, errlen);
  if (fresh == NULL)
    return TUSC_EINVALID_ARGUMENT;
  uv_mutex_lock(&tls->mu);
  SSL_CTX *old = tls->ctx;
  tls->ctx = fresh;
  uv_mutex_unlock(&tls->mu);
  /* Connections still using it hold their own reference. */
  SSL_CTX_free(old);
  return 0;
}

void tusc_tls_serial(tusc_tls_t *tls, char *out, size_t cap) {
  uv_mutex_lock(&tls->mu);
  ctx_serial(tls->ctx, out, cap);
  uv_mutex_unlock(&tls->mu);
}

const char *tusc_tls_hsts(const tusc_tls_t *tls) {
  return tls != NULL && tls->hsts_on ? tls->hsts : NULL;
}

void tusc_tls_free(tusc_tls_t *tls) {
  if (tls == NULL)
    return;
  SSL_CTX_free(tls->ctx);
  uv_mutex_destroy(&tls->mu);
  free(tls->certificate);
  free(tls->key);
  free(tls->mode);
  free(tls);
}

/* --- borrowing read BIO --------------------------------------------------------------- */

/* Follows the record framing of the ciphertext handed to OpenSSL, so that the kernel
 * can take over reading exactly at a record boundary. */
static void track_records(struct tls_transport *t, const unsigned char *p, size_t n) {
  while (n > 0) {
    if (t->rec_body_left > 0) {
      size_t m = n < t->rec_body_left ? n : t->rec_body_left;
      t->rec_body_left -= m;
      p += m;
      n -= m;
      continue;
    }
    t->rec_hdr[t->rec_hdr_got++] = *p++;
    n--;
    if (t->rec_hdr_got == sizeof(t->rec_hdr)) {
      t->rec_body_left = (size_t)t->rec_hdr[3] << 8 | t->rec_hdr[4];
      t->rec_hdr_got = 0;
    }
  }
}

static int in_bio_read(BIO *bio, char *out, size_t cap, size_t *got) {
  struct tls_transport *t = BIO_get_data(bio);
  size_t n = 0;
  if (t->held_off < t->held_len) {
    n = t->held_len - t->held_off < cap ? t->held_len - t->held_off : cap;
    memcpy(out, t->held + t->held_off, n);
    t->held_off += n;
  }
  if (n < cap && t->in_len > 0) {
    size_t m = t->in_len < cap - n ? t->in_len : cap - n;
    /* memmove: `out` is OpenSSL's record buffer, never `in`, but stay safe. */
    memmove(out + n, t->in, m);
    t->in += m;
    t->in_len -= m;
    n += m;
  }
  if (t->ktls_want)
    track_records(t, (const unsigned char *)out, n);
  BIO_clear_retry_flags(bio);
  if (n == 0) {
    BIO_set_retry_read(bio); /* "wait for more", not end of file */
    *got = 0;
    return 0;
  }
  *got = n;
  return 1;
}

static int in_bio_write(BIO *bio, const char *data, size_t len, size_t *done) {
  (void)bio;
  (void)data;
  (void)len;
  *done = 0;
  return 0; /* the read side is never written by OpenSSL */
}

static long in_bio_ctrl(BIO *bio, int cmd, long num, void *ptr) {
  (void)num;
  (void)ptr;
  struct tls_transport *t = BIO_get_data(bio);
  switch (cmd) {
  case BIO_CTRL_PENDING:
    return t == NULL ? 0 : (long)(t->held_len - t->held_off + t->in_len);
  case BIO_CTRL_FLUSH:
    return 1;
  default:
    return 0;
  }
}

static int in_bio_create(BIO *bio) {
  BIO_set_init(bio, 1);
  return 1;
}

/* One method for the process, made once, never freed (OpenSSL keeps no per-method
 * state to release). */
static uv_once_t in_method_once = UV_ONCE_INIT;
static BIO_METHOD *in_method;

static void in_method_init(void) {
  BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tusc-borrow");
  if (m == NULL)
    return;
  if (BIO_meth_set_read_ex(m, in_bio_read) != 1 || BIO_meth_set_write_ex(m, in_bio_write) != 1 ||
      BIO_meth_set_ctrl(m, in_bio_ctrl) != 1 || BIO_meth_set_create(m, in_bio_create) != 1) {
    BIO_meth_free(m);
    return;
  }
  in_method = m;
}

/* Keeps what SSL_read left of the borrowed input (part of one record) for the next
 * input. */
static int hold_rest(struct tls_transport *t) {
  if (t->held_off == t->held_len)
    t->held_off = t->held_len = 0;
  if (t->in_len > 0) {
    if (t->held_off > 0) {
      memmove(t->held, t->held + t->held_off, t->held_len - t->held_off);
      t->held_len -= t->held_off;
      t->held_off = 0;
    }
    if (t->held_len + t->in_len > t->held_cap) {
      size_t cap = t->held_len + t->in_len;
      if (cap < RECORD_PLAINTEXT_MAX + 512)
        cap = RECORD_PLAINTEXT_MAX + 512;
      char *p = realloc(t->held, cap);
      if (p == NULL)
        return UV_ENOMEM;
      t->held = p;
      t->held_cap = cap;
    }
    memcpy(t->held + t->held_len, t->in, t->in_len);
    t->held_len += t->in_len;
  }
  t->in = NULL;
  t->in_len = 0;
  if (t->held_len == 0) { /* idle connections hold no buffer */
    free(t->held);
    t->held = NULL;
    t->held_cap = 0;
  }
  return 0;
}

/* --- kernel TLS ------------------------------------------------------------------------
 *
 * Once the handshake is done, the connection's records can go to the kernel (net/ktls.h):
 * the socket then carries plaintext and both directions pass through. The kernel needs
 * the keys and each direction's next record sequence number, exact:
 *   - keys: TLS 1.3 from the traffic secrets OpenSSL reports through the keylog
 *     callback; TLS 1.2 from the session's master secret and the hello randoms.
 *   - sequence numbers: the message callback sees every record header OpenSSL writes
 *     and reads. Counting starts behind each side's Finished message (TLS 1.3: the last
 *     record under the handshake keys; TLS 1.2: the first under the new keys), so our
 *     tickets (TLS 1.3) and the peer's first requests are counted.
 * RX switches only at a record boundary with nothing of the peer's left in user space
 * (no cut record in OpenSSL or in `held`); until then tls_read_max() bounds each read to
 * the end of the current record. TX switches only with RX done (OpenSSL never has to
 * write again after that, not even an alert for a bad record) and when every byte OpenSSL
 * produced has reached the socket. Any failure leaves the connection in user space: the
 * ULP alone changes nothing on the wire, and a direction is the kernel's only once its
 * setsockopt succeeded. */

static void on_keylog(const SSL *ssl, const char *line) {
  struct tls_transport *t = SSL_get_app_data(ssl);
  if (t == NULL || !t->ktls_want)
    return;
  unsigned char *to;
  size_t *to_len;
  if (strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0) {
    to = t->client_secret;
    to_len = &t->client_secret_len;
  } else if (strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0) {
    to = t->server_secret;
    to_len = &t->server_secret_len;
  } else {
    return;
  }
  const char *hex = strrchr(line, ' ') + 1;
  size_t n = strlen(hex);
  if (n % 2 != 0 || n / 2 > EVP_MAX_MD_SIZE)
    return;
  long len = 0;
  unsigned char *bin = OPENSSL_hexstr2buf(hex, &len);
  if (bin == NULL) {
    ERR_clear_error();
    return;
  }
  memcpy(to, bin, (size_t)len);
  *to_len = (size_t)len;
  OPENSSL_clear_free(bin, (size_t)len);
}

static void on_record_msg(int write_p, int version, int content_type, const void *buf, size_t len,
                          SSL *ssl, void *arg) {
  (void)version;
  struct tls_transport *t = arg;
  if (content_type == SSL3_RT_HEADER) {
    if (write_p && t->tx_counting)
      t->tx_seq++;
    else if (!write_p && t->rx_counting)
      t->rx_seq++;
    return;
  }
  const unsigned char *p = buf;
  if (content_type != SSL3_RT_HANDSHAKE || len == 0)
    return;
  if (p[0] == SSL3_MT_KEY_UPDATE) {
    /* New traffic secrets that the keylog never shows: the connection stays in user
     * space (OpenSSL calls this only before the switch). */
    t->ktls_lost = true;
    return;
  }
  if (p[0] != SSL3_MT_FINISHED)
    return;
  /* TLS 1.3: Finished is the last record under the handshake keys. TLS 1.2: it is the
   * first under the new keys (sequence number 0), alone in its record. */
  uint64_t next = SSL_version(ssl) == TLS1_3_VERSION ? 0 : 1;
  if (write_p) {
    t->tx_counting = true;
    t->tx_seq = next;
  } else {
    t->rx_counting = true;
    t->rx_seq = next;
  }
}

static void ktls_forget(struct tls_transport *t) {
  t->ktls_want = false;
  OPENSSL_cleanse(t->client_secret, sizeof(t->client_secret));
  OPENSSL_cleanse(t->server_secret, sizeof(t->server_secret));
  t->client_secret_len = t->server_secret_len = 0;
  SSL_set_msg_callback(t->ssl, NULL);
}

/* The keys of one direction (tx: ours, the server's). */
static int ktls_keys(struct tls_transport *t, bool tx, tusc_ktls_key_t *out) {
  const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);
  if (c == NULL)
    return UV_EINVAL;
  int cipher = tusc_ktls_cipher_of_nid(SSL_CIPHER_get_cipher_nid(c));
  if (cipher < 0)
    return cipher;
  const EVP_MD *md = SSL_CIPHER_get_handshake_digest(c);
  if (SSL_version(t->ssl) == TLS1_3_VERSION) {
    const unsigned char *secret = tx ? t->server_secret : t->client_secret;
    size_t len = tx ? t->server_secret_len : t->client_secret_len;
    if (len == 0)
      return UV_EINVAL;
    return tusc_ktls_tls13_key(cipher, md, secret, len, out);
  }
  if (SSL_version(t->ssl) != TLS1_2_VERSION)
    return UV_ENOTSUP;
  unsigned char master[SSL_MAX_MASTER_KEY_LENGTH], cr[32], sr[32];
  size_t mlen = SSL_SESSION_get_master_key(SSL_get_session(t->ssl), master, sizeof(master));
  if (mlen == 0 || SSL_get_client_random(t->ssl, cr, sizeof(cr)) != sizeof(cr) ||
      SSL_get_server_random(t->ssl, sr, sizeof(sr)) != sizeof(sr))
    return UV_EINVAL;
  tusc_ktls_key_t client, server;
  int rc = tusc_ktls_tls12_keys(cipher, md, master, mlen, cr, sr, &client, &server);
  OPENSSL_cleanse(master, sizeof(master));
  if (rc == 0)
    *out = tx ? server : client;
  tusc_ktls_key_wipe(&client);
  tusc_ktls_key_wipe(&server);
  return rc;
}

static int ktls_install(struct tls_transport *t, int fd, bool tx, uint64_t seq) {
  tusc_ktls_key_t k;
  int rc = ktls_keys(t, tx, &k);
  if (rc == 0) {
    rc = tusc_ktls_install(fd, tx, &k, seq);
    tusc_ktls_key_wipe(&k);
  }
  return rc;
}

/* Hands what it can to the kernel; called after every input and before every write. */
static void ktls_try(struct tls_transport *t, uv_stream_t *stream) {
  if (!t->ktls_want || !t->established)
    return;
  uv_os_fd_t fd;
  if (t->ktls_lost || uv_fileno((uv_handle_t *)stream, &fd) != 0 || stream->type != UV_TCP) {
    ktls_forget(t);
    return;
  }
  if (!t->rx_kernel) {
    bool boundary = t->rec_hdr_got == 0 && t->rec_body_left == 0 && t->in_len == 0 &&
                    t->held_off == t->held_len && !SSL_has_pending(t->ssl);
    if (!boundary || !t->rx_counting || !t->tx_counting) {
      t->rx_waits += boundary ? 0 : 1;
      return;
    }
    int rc = tusc_ktls_attach(fd);
    if (rc == 0)
      rc = ktls_install(t, fd, false, t->rx_seq);
    if (rc != 0) {
      TUSC_LOG(TUSC_LOG_DEBUG, "kTLS: receive side stays in user space: %s", uv_strerror(rc));
      ktls_forget(t);
      return;
    }
    t->rx_kernel = true;
  }
  /* Every byte OpenSSL wrote must be in the socket before the kernel encrypts. */
  if (stream->write_queue_size != 0 || BIO_ctrl_pending(t->wbio) != 0)
    return;
  int rc = ktls_install(t, fd, true, t->tx_seq);
  if (rc != 0)
    TUSC_LOG(TUSC_LOG_DEBUG, "kTLS: send side stays in user space: %s", uv_strerror(rc));
  else
    t->tx_kernel = true;
  if (t->tx_kernel && t->on_ktls != NULL)
    t->on_ktls();
  TUSC_LOG(TUSC_LOG_DEBUG, "kTLS: %s %s: receive in the kernel%s, send in %s",
           SSL_get_version(t->ssl), SSL_get_cipher_name(t->ssl),
           t->rx_waits > 0 ? " (after reading up to a record boundary)" : "",
           t->tx_kernel ? "the kernel" : "user space");
  ktls_forget(t);
}

/* --- transport ---------------------------------------------------------------------- */

static void on_tls_write(uv_write_t *w, int status) {
  struct tls_write *tw = (struct tls_write *)w;
  if (tw->cb != NULL)
    tw->cb(tw->user, status);
  free(tw);
}

/* Moves everything OpenSSL produced into one libuv write. With `user` set, a write
 * (possibly empty) is issued even when nothing is pending, so its callback runs. */
static int flush_out(struct tls_transport *t, uv_stream_t *stream, uv_write_t *user,
                     uv_write_cb cb) {
  size_t n = BIO_ctrl_pending(t->wbio);
  if (n == 0 && user == NULL)
    return 0;
  struct tls_write *tw = malloc(sizeof(*tw) + n);
  if (tw == NULL)
    return UV_ENOMEM;
  if (n > 0 && BIO_read(t->wbio, tw->data, (int)n) != (int)n) {
    free(tw);
    return UV_EPROTO;
  }
  tw->user = user;
  tw->cb = cb;
  uv_buf_t b = uv_buf_init(tw->data, (unsigned)n);
  int rc = uv_write(&tw->w, stream, &b, 1, on_tls_write);
  if (rc != 0)
    free(tw);
  return rc;
}

static void log_handshake_done(struct tls_transport *t) {
  if (!tusc_log_enabled(TUSC_LOG_DEBUG))
    return;
  const unsigned char *alpn = NULL;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(t->ssl, &alpn, &alpn_len);
  tusc_log_msg(TUSC_LOG_DEBUG, "TLS handshake done: %s %s alpn=%.*s", SSL_get_version(t->ssl),
               SSL_get_cipher_name(t->ssl), (int)alpn_len, alpn ? (const char *)alpn : "");
}

static int tls_input(tusc_transport_t *base, uv_stream_t *stream, const char *data, size_t len,
                     char *scratch, size_t scratch_len, tusc_transport_deliver_fn deliver,
                     void *arg) {
  struct tls_transport *t = (struct tls_transport *)base;
  if (t->rx_kernel) {
    if (len > 0)
      deliver(arg, data, len);
    return 0;
  }
  t->in = data;
  t->in_len = len;
  /* Plaintext goes to scratch[filled] while unread ciphertext may sit further on in the
   * same buffer. Safe because OpenSSL copies a whole record into its own buffer before
   * it writes the record's (smaller) plaintext, so filled never passes what was
   * consumed — except for a record begun before this input (OpenSSL keeps the part it
   * read, SSL_has_pending): that one decrypts into `bounce`, then delivered from there. */
  bool alias = data < scratch + scratch_len && scratch < data + len;
  char bounce[RECORD_PLAINTEXT_MAX];
  int rc = 0;
  size_t filled = 0;
  for (;;) {
    if (filled == scratch_len) {
      deliver(arg, scratch, filled);
      filled = 0;
    }
    bool bounced = alias && (t->held_off < t->held_len || SSL_has_pending(t->ssl));
    char *to = bounced ? bounce : scratch + filled;
    size_t cap = bounced ? sizeof(bounce) : scratch_len - filled;
    int room = cap > INT32_MAX ? INT32_MAX : (int)cap;
    int n = SSL_read(t->ssl, to, room);
    if (!t->established && SSL_is_init_finished(t->ssl)) {
      t->established = true;
      log_handshake_done(t);
    }
    if (n > 0) {
      if (!bounced) {
        filled += (size_t)n;
        continue;
      }
      if (filled > 0) /* keep the order of the bytes */
        deliver(arg, scratch, filled);
      filled = 0;
      deliver(arg, bounce, (size_t)n);
      continue;
    }
    int e = SSL_get_error(t->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
      break;
    if (e == SSL_ERROR_ZERO_RETURN) {
      rc = UV_EOF; /* close_notify */
    } else {
      char reason[160];
      openssl_reason(reason, sizeof(reason));
      TUSC_LOG(TUSC_LOG_DEBUG, "TLS %s failed: %s", t->established ? "read" : "handshake", reason);
      rc = UV_EPROTO;
    }
    break;
  }
  int hrc = hold_rest(t);
  if (rc == 0)
    rc = hrc;
  ERR_clear_error();
  if (filled > 0)
    deliver(arg, scratch, filled);
  /* Handshake messages, tickets or an alert explaining a failure. */
  int frc = flush_out(t, stream, NULL, NULL);
  if (rc == 0 && frc != 0 && frc != UV_EBADF)
    rc = frc;
  if (rc == 0)
    ktls_try(t, stream);
  return rc;
}

static int tls_write(tusc_transport_t *base, uv_stream_t *stream, uv_write_t *req, const char *data,
                     size_t len, uv_write_cb cb) {
  struct tls_transport *t = (struct tls_transport *)base;
  ktls_try(t, stream);
  if (t->tx_kernel) {
    uv_buf_t b = uv_buf_init((char *)(uintptr_t)data, (unsigned)len);
    return uv_write(req, stream, &b, 1, cb);
  }
  while (len > 0) {
    int chunk = len > (1 << 30) ? (1 << 30) : (int)len;
    size_t written = 0;
    if (SSL_write_ex(t->ssl, data, (size_t)chunk, &written) != 1) {
      char reason[160];
      openssl_reason(reason, sizeof(reason));
      TUSC_LOG(TUSC_LOG_DEBUG, "TLS write failed: %s", reason);
      return UV_EPROTO;
    }
    data += written;
    len -= written;
  }
  return flush_out(t, stream, req, cb);
}

static void tls_close_notify(tusc_transport_t *base, uv_stream_t *stream) {
  struct tls_transport *t = (struct tls_transport *)base;
  if (!t->established)
    return;
  if (t->tx_kernel) {
    /* Best effort as below, and never behind queued data. */
    uv_os_fd_t fd;
    if (stream->write_queue_size == 0 && uv_fileno((uv_handle_t *)stream, &fd) == 0)
      (void)tusc_ktls_send_alert(fd, 1 /* warning */, 0 /* close_notify */);
    return;
  }
  if (SSL_shutdown(t->ssl) < 0)
    ERR_clear_error();
  size_t n = BIO_ctrl_pending(t->wbio);
  char buf[256];
  if (n == 0 || n > sizeof(buf))
    return;
  if (BIO_read(t->wbio, buf, (int)n) != (int)n)
    return;
  /* Best effort: a full socket buffer just means the peer sees a plain close. */
  uv_buf_t b = uv_buf_init(buf, (unsigned)n);
  (void)uv_try_write(stream, &b, 1);
}

/* Until the kernel reads, once the handshake is done: no read past the end of the current
 * record, so that user space can stop at a record boundary. */
static size_t tls_read_max(const tusc_transport_t *base) {
  const struct tls_transport *t = (const struct tls_transport *)base;
  if (!t->ktls_want || !t->established || t->rx_kernel)
    return SIZE_MAX;
  if (t->rec_body_left > 0)
    return t->rec_body_left;
  return sizeof(t->rec_hdr) - t->rec_hdr_got;
}

/* With the kernel reading, a record that is not application data fails read() with EIO:
 * the peer's close_notify ends the connection like a close; another alert, or a
 * handshake message (a KeyUpdate, which kTLS receive cannot follow), is an error. */
static int tls_read_error(tusc_transport_t *base, uv_stream_t *stream, int err) {
  struct tls_transport *t = (struct tls_transport *)base;
  uv_os_fd_t fd;
  if (!t->rx_kernel || err != UV_EIO || uv_fileno((uv_handle_t *)stream, &fd) != 0)
    return err;
  int type = 0;
  unsigned char rec[64];
  int n = tusc_ktls_recv_control(fd, &type, rec, sizeof(rec));
  if (n < 0)
    return err;
  if (type == 21 && n >= 2 && rec[1] == 0)
    return UV_EOF;
  TUSC_LOG(TUSC_LOG_DEBUG, "kTLS: closing on a record of type %d (%s %d)", type,
           type == 21 ? "alert" : "message", n > 1 ? rec[type == 21 ? 1 : 0] : -1);
  return UV_EPROTO;
}

static bool tls_secure(const tusc_transport_t *base) {
  (void)base;
  return true;
}

static bool tls_established(const tusc_transport_t *base) {
  return ((const struct tls_transport *)base)->established;
}

static void tls_free(tusc_transport_t *base) {
  struct tls_transport *t = (struct tls_transport *)base;
  /* A connection that closed before its switch still holds the traffic secrets. */
  OPENSSL_cleanse(t->client_secret, sizeof(t->client_secret));
  OPENSSL_cleanse(t->server_secret, sizeof(t->server_secret));
  SSL_free(t->ssl);
  free(t->held);
  free(t);
}

static const tusc_transport_ops_t tls_ops;

bool tusc_tls_transport_is_h2(const tusc_transport_t *base) {
  if (base == NULL || base->ops != &tls_ops)
    return false;
  const struct tls_transport *t = (const struct tls_transport *)base;
  const unsigned char *alpn = NULL;
  unsigned int len = 0;
  SSL_get0_alpn_selected(t->ssl, &alpn, &len);
  return len == 2 && memcmp(alpn, "h2", 2) == 0;
}

static const tusc_transport_ops_t tls_ops = {
    .name = "tls",
    .input = tls_input,
    .write = tls_write,
    .close_notify = tls_close_notify,
    .read_max = tls_read_max,
    .read_error = tls_read_error,
    .secure = tls_secure,
    .established = tls_established,
    .free = tls_free,
};

int tusc_tls_transport_new(tusc_tls_t *tls, tusc_transport_t **out) {
  struct tls_transport *t = calloc(1, sizeof(*t));
  if (t == NULL)
    return TUSC_ENOMEM;
  t->base.ops = &tls_ops;
  uv_mutex_lock(&tls->mu);
  t->ssl = SSL_new(tls->ctx); /* takes its own reference on the context */
  uv_mutex_unlock(&tls->mu);
  uv_once(&in_method_once, in_method_init);
  t->rbio = in_method != NULL ? BIO_new(in_method) : NULL;
  if (t->rbio != NULL)
    BIO_set_data(t->rbio, t);
  t->wbio = BIO_new(BIO_s_mem());
  if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
    BIO_free(t->rbio);
    BIO_free(t->wbio);
    SSL_free(t->ssl);
    free(t);
    ERR_clear_error();
    return TUSC_ENOMEM;
  }
  SSL_set_bio(t->ssl, t->rbio, t->wbio);
  SSL_set_accept_state(t->ssl);
  if (tls->ktls) {
    t->ktls_want = true;
    t->on_ktls = tls->on_ktls;
    SSL_set_app_data(t->ssl, t);
    SSL_set_msg_callback(t->ssl, on_record_msg);
    SSL_set_msg_callback_arg(t->ssl, t);
  }
  *out = &t->base;
  return 0;
}

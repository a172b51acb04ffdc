/* ktls — traffic keys from OpenSSL's secrets and the Linux kTLS socket options. */
#include "net/ktls.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/tls.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <uv.h>

#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef TCP_ULP
#define TCP_ULP 31
#endif

int tusc_ktls_cipher_of_nid(int nid) {
  switch (nid) {
  case NID_aes_128_gcm:
    return TUSC_KTLS_AES_128_GCM;
  case NID_aes_256_gcm:
    return TUSC_KTLS_AES_256_GCM;
  case NID_chacha20_poly1305:
    return TUSC_KTLS_CHACHA20_POLY1305;
  default:
    return UV_ENOTSUP;
  }
}

static size_t key_len_of(int cipher) {
  return cipher == TUSC_KTLS_AES_128_GCM ? 16 : 32;
}

void tusc_ktls_key_wipe(tusc_ktls_key_t *k) {
  if (k != NULL)
    OPENSSL_cleanse(k, sizeof(*k));
}

/* HKDF-Expand(secret, HkdfLabel("tls13 " + label, empty context), len). */
static int expand_label(const EVP_MD *md, const unsigned char *secret, size_t secret_len,
                        const char *label, unsigned char *out, size_t len) {
  unsigned char info[2 + 1 + 6 + 16 + 1];
  size_t label_len = strlen(label);
  if (label_len > 16)
    return UV_EINVAL;
  size_t n = 0;
  info[n++] = (unsigned char)(len >> 8);
  info[n++] = (unsigned char)len;
  info[n++] = (unsigned char)(6 + label_len);
  memcpy(info + n, "tls13 ", 6);
  n += 6;
  memcpy(info + n, label, label_len);
  n += label_len;
  info[n++] = 0; /* no context */
  EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
  EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
  EVP_KDF_free(kdf);
  if (kctx == NULL)
    return UV_ENOMEM;
  int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
                                       (char *)(uintptr_t)EVP_MD_get0_name(md), 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)(uintptr_t)secret, secret_len),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, n),
      OSSL_PARAM_construct_end(),
  };
  int ok = EVP_KDF_derive(kctx, out, len, params);
  EVP_KDF_CTX_free(kctx);
  return ok == 1 ? 0 : UV_EINVAL;
}

int tusc_ktls_tls13_key(int cipher, const EVP_MD *md, const unsigned char *secret,
                        size_t secret_len, tusc_ktls_key_t *out) {
  if (md == NULL || cipher < TUSC_KTLS_AES_128_GCM || cipher > TUSC_KTLS_CHACHA20_POLY1305)
    return UV_EINVAL;
  tusc_ktls_key_t k;
  memset(&k, 0, sizeof(k));
  k.cipher = cipher;
  k.version = 0x0304;
  k.key_len = key_len_of(cipher);
  k.iv_len = 12;
  int rc = expand_label(md, secret, secret_len, "key", k.key, k.key_len);
  if (rc == 0)
    rc = expand_label(md, secret, secret_len, "iv", k.iv, k.iv_len);
  if (rc == 0)
    *out = k;
  tusc_ktls_key_wipe(&k);
  return rc;
}

int tusc_ktls_tls12_keys(int cipher, const EVP_MD *prf_md, const unsigned char *master,
                         size_t master_len, const unsigned char client_random[32],
                         const unsigned char server_random[32], tusc_ktls_key_t *client,
                         tusc_ktls_key_t *server) {
  if (prf_md == NULL || cipher < TUSC_KTLS_AES_128_GCM || cipher > TUSC_KTLS_CHACHA20_POLY1305)
    return UV_EINVAL;
  size_t key_len = key_len_of(cipher);
  size_t iv_len = cipher == TUSC_KTLS_CHACHA20_POLY1305 ? 12 : 4;
  /* AEAD suites have no MAC keys: client key, server key, client IV, server IV. */
  unsigned char block[2 * 32 + 2 * 12];
  size_t block_len = 2 * key_len + 2 * iv_len;
  unsigned char seed[13 + 64];
  memcpy(seed, "key expansion", 13);
  memcpy(seed + 13, server_random, 32);
  memcpy(seed + 45, client_random, 32);
  EVP_KDF *kdf = EVP_KDF_fetch(NULL, "TLS1-PRF", NULL);
  EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
  EVP_KDF_free(kdf);
  if (kctx == NULL)
    return UV_ENOMEM;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
                                       (char *)(uintptr_t)EVP_MD_get0_name(prf_md), 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, (void *)(uintptr_t)master,
                                        master_len),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SEED, seed, sizeof(seed)),
      OSSL_PARAM_construct_end(),
  };
  int ok = EVP_KDF_derive(kctx, block, block_len, params);
  EVP_KDF_CTX_free(kctx);
  if (ok != 1) {
    OPENSSL_cleanse(block, sizeof(block));
    return UV_EINVAL;
  }
  tusc_ktls_key_t c, s;
  memset(&c, 0, sizeof(c));
  memset(&s, 0, sizeof(s));
  c.cipher = s.cipher = cipher;
  c.version = s.version = 0x0303;
  c.key_len = s.key_len = key_len;
  c.iv_len = s.iv_len = iv_len;
  memcpy(c.key, block, key_len);
  memcpy(s.key, block + key_len, key_len);
  memcpy(c.iv, block + 2 * key_len, iv_len);
  memcpy(s.iv, block + 2 * key_len + iv_len, iv_len);
  OPENSSL_cleanse(block, sizeof(block));
  *client = c;
  *server = s;
  tusc_ktls_key_wipe(&c);
  tusc_ktls_key_wipe(&s);
  return 0;
}

int tusc_ktls_probe(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  int rc = 0;
  /* The kernel looks the ULP up (and may load it) before it checks the socket's
   * state: an unconnected socket answers ENOENT without kTLS, ENOTCONN with it. */
  if (setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls")) != 0)
    rc = errno == ENOTCONN ? 0 : -errno;
  close(fd);
  return rc;
}

int tusc_ktls_attach(int fd) {
  if (setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls")) != 0)
    return -errno;
  return 0;
}

static void put_seq(unsigned char *out, uint64_t seq) {
  for (int i = 7; i >= 0; i--) {
    out[i] = (unsigned char)seq;
    seq >>= 8;
  }
}

int tusc_ktls_install(int fd, bool tx, const tusc_ktls_key_t *k, uint64_t seq) {
  union {
    struct tls12_crypto_info_aes_gcm_128 g128;
    struct tls12_crypto_info_aes_gcm_256 g256;
    struct tls12_crypto_info_chacha20_poly1305 chacha;
  } ci;
  memset(&ci, 0, sizeof(ci));
  size_t len;
  bool tls13 = k->version == 0x0304;
  unsigned char seq_be[8];
  put_seq(seq_be, seq);
  switch (k->cipher) {
  case TUSC_KTLS_AES_128_GCM:
  case TUSC_KTLS_AES_256_GCM: {
    bool big = k->cipher == TUSC_KTLS_AES_256_GCM;
    /* Both structs share the layout up to the key size; fill the matching one. */
    struct tls_crypto_info *info = big ? &ci.g256.info : &ci.g128.info;
    unsigned char *iv = big ? ci.g256.iv : ci.g128.iv;
    unsigned char *salt = big ? ci.g256.salt : ci.g128.salt;
    unsigned char *key = big ? ci.g256.key : ci.g128.key;
    unsigned char *rec_seq = big ? ci.g256.rec_seq : ci.g128.rec_seq;
    info->version = tls13 ? TLS_1_3_VERSION : TLS_1_2_VERSION;
    info->cipher_type = big ? TLS_CIPHER_AES_GCM_256 : TLS_CIPHER_AES_GCM_128;
    memcpy(salt, k->iv, 4);
    /* TLS 1.3: nonce = (salt | iv) ^ seq. TLS 1.2: the explicit nonce part, which
     * the kernel sends and then counts up with the sequence number; any unique
     * value is allowed, the sequence number (as OpenSSL does) is. */
    if (tls13)
      memcpy(iv, k->iv + 4, 8);
    else
      memcpy(iv, seq_be, 8);
    memcpy(key, k->key, k->key_len);
    memcpy(rec_seq, seq_be, 8);
    len = big ? sizeof(ci.g256) : sizeof(ci.g128);
    break;
  }
  case TUSC_KTLS_CHACHA20_POLY1305:
    ci.chacha.info.version = tls13 ? TLS_1_3_VERSION : TLS_1_2_VERSION;
    ci.chacha.info.cipher_type = TLS_CIPHER_CHACHA20_POLY1305;
    memcpy(ci.chacha.iv, k->iv, 12);
    memcpy(ci.chacha.key, k->key, 32);
    memcpy(ci.chacha.rec_seq, seq_be, 8);
    len = sizeof(ci.chacha);
    break;
  default:
    return UV_ENOTSUP;
  }
  int rc = setsockopt(fd, SOL_TLS, tx ? TLS_TX : TLS_RX, &ci, (socklen_t)len) == 0 ? 0 : -errno;
  OPENSSL_cleanse(&ci, sizeof(ci));
  return rc;
}

/* One buffer plus room for one record-type control message (a byte). */
static void record_msg(struct msghdr *msg, struct iovec *iov, char *control, size_t cap) {
  memset(msg, 0, sizeof(*msg));
  memset(control, 0, cap);
  msg->msg_iov = iov;
  msg->msg_iovlen = 1;
  msg->msg_control = control;
  msg->msg_controllen = cap;
}

int tusc_ktls_recv_control(int fd, int *type, unsigned char *data, size_t cap) {
  char control[CMSG_SPACE(sizeof(unsigned char))];
  struct iovec iov = {.iov_base = data, .iov_len = cap};
  struct msghdr msg;
  record_msg(&msg, &iov, control, sizeof(control));
  ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT);
  if (n < 0)
    return -errno;
  *type = 23; /* application data, unless the kernel says otherwise */
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c))
    if (c->cmsg_level == SOL_TLS && c->cmsg_type == TLS_GET_RECORD_TYPE)
      *type = *(unsigned char *)CMSG_DATA(c);
  return (int)n;
}

int tusc_ktls_send_alert(int fd, uint8_t level, uint8_t description) {
  unsigned char alert[2] = {level, description};
  char control[CMSG_SPACE(sizeof(unsigned char))];
  struct iovec iov = {.iov_base = alert, .iov_len = sizeof(alert)};
  struct msghdr msg;
  record_msg(&msg, &iov, control, sizeof(control));
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_TLS;
  c->cmsg_type = TLS_SET_RECORD_TYPE;
  c->cmsg_len = CMSG_LEN(sizeof(unsigned char));
  *(unsigned char *)CMSG_DATA(c) = 21; /* alert */
  if (sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
    return -errno;
  return 0;
}

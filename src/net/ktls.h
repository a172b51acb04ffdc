/*
 * ktls — kernel TLS (Linux kTLS) for a TCP socket whose handshake OpenSSL did in user
 * space: the traffic keys of a finished handshake, derived here from its secrets (TLS 1.3:
 * HKDF-Expand-Label, RFC 8446 7.3; TLS 1.2: the key block of the TLS PRF, RFC 5246 6.3),
 * handed to the socket with setsockopt(TCP_ULP "tls") and setsockopt(SOL_TLS, TLS_TX /
 * TLS_RX). From then on the socket carries plaintext: the kernel encrypts what is written
 * and decrypts what is read, records are framed by the kernel, and anything that is not
 * application data (alerts, post-handshake messages) makes read() fail with EIO and is
 * read with tusc_ktls_recv_control().
 *
 * Only the AEAD suites tusc allows are known: AES-128-GCM, AES-256-GCM and
 * ChaCha20-Poly1305, over TLS 1.2 or 1.3.
 *
 * Every function is thread-safe and stateless; key structs are the caller's and hold
 * secrets: wipe them with tusc_ktls_key_wipe() once handed over. Errors are negative
 * codes (UV_* from errno; UV_ENOTSUP for a suite the kernel interface has no name for).
 */
#ifndef TUSC_NET_KTLS_H
#define TUSC_NET_KTLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

enum tusc_ktls_cipher {
  TUSC_KTLS_AES_128_GCM = 1,
  TUSC_KTLS_AES_256_GCM,
  TUSC_KTLS_CHACHA20_POLY1305,
};

/* One direction's keys. */
typedef struct tusc_ktls_key_s {
  int cipher;       /* enum tusc_ktls_cipher */
  uint16_t version; /* 0x0303 (TLS 1.2) or 0x0304 (TLS 1.3) */
  unsigned char key[32];
  size_t key_len;
  /* TLS 1.3 and ChaCha20: the whole 12-byte IV; TLS 1.2 with GCM: the 4-byte implicit
   * salt (the other 8 bytes of each nonce travel in the record). */
  unsigned char iv[12];
  size_t iv_len;
} tusc_ktls_key_t;

/* The cipher for an OpenSSL cipher NID (SSL_CIPHER_get_cipher_nid), or UV_ENOTSUP. */
int tusc_ktls_cipher_of_nid(int nid);

/* TLS 1.3: key and IV of one direction from its traffic secret (e.g.
 * SERVER_TRAFFIC_SECRET_0), with the suite's hash. */
int tusc_ktls_tls13_key(int cipher, const EVP_MD *md, const unsigned char *secret,
                        size_t secret_len, tusc_ktls_key_t *out)
    __attribute__((warn_unused_result));

/* TLS 1.2: both directions' keys from the master secret and the two hello randoms, with
 * the suite's PRF hash. */
int tusc_ktls_tls12_keys(int cipher, const EVP_MD *prf_md, const unsigned char *master,
                         size_t master_len, const unsigned char client_random[32],
                         const unsigned char server_random[32], tusc_ktls_key_t *client,
                         tusc_ktls_key_t *server) __attribute__((warn_unused_result));

void tusc_ktls_key_wipe(tusc_ktls_key_t *k);

/* Whether this kernel offers the "tls" upper-layer protocol: 0 when it does (the
 * module may get loaded by asking), UV_ENOENT when it has none, another code when the
 * question itself failed. Cheap: one unconnected socket. */
int tusc_ktls_probe(void);

/* Attaches the "tls" ULP to a connected TCP socket; nothing changes on the wire until
 * tusc_ktls_install(). UV_ENOENT: no kTLS in this kernel. */
int tusc_ktls_attach(int fd) __attribute__((warn_unused_result));

/* Programs one direction (tx: what we send; else what we receive) with the next
 * record's sequence number. Once it returns 0 the direction is the kernel's. */
int tusc_ktls_install(int fd, bool tx, const tusc_ktls_key_t *k, uint64_t seq)
    __attribute__((warn_unused_result));

/* After read() failed with EIO on a kTLS socket: reads the waiting non-data record.
 * Writes its content type (21 = alert, 22 = handshake) and up to cap bytes of it. Returns
 * the number of bytes read (>= 0) or a negative code. Never blocks. */
int tusc_ktls_recv_control(int fd, int *type, unsigned char *data, size_t cap);

/* Sends a TLS alert record (level, description) through a kTLS socket's TX; never
 * blocks. Returns 0 or a negative code (UV_EAGAIN when the socket buffer is full). */
int tusc_ktls_send_alert(int fd, uint8_t level, uint8_t description);

#endif

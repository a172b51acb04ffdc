/*
 * tls — HTTPS for tusc's listeners with OpenSSL 3: the server context (certificate
 * chain, key, protocol/cipher policy of -tls-mode, ALPN http/1.1), its reload on
 * SIGHUP, and the TLS transport (src/net/transport.h) each connection runs over.
 *
 * Modes, exactly tusd's: "tls12" = TLS 1.2 and 1.3, TLS 1.2 limited to ECDHE key
 * exchange with AEAD ciphers (AES-128/256-GCM, ChaCha20-Poly1305); "tls12-strong" =
 * TLS 1.2 only, ECDHE with AES-256-GCM only; "tls13" = TLS 1.3 only.
 *
 * Keys must be unencrypted PEM: a passphrase-protected key is refused with a message
 * saying so (tusc runs unattended; there is nobody to type the passphrase).
 *
 * Reload: tusc_tls_reload() builds a whole new SSL_CTX from the same files and swaps
 * it in under a mutex; connections already open keep the context they started with
 * (each SSL holds a reference), new ones get the new one. When the new files do not
 * load (missing, unreadable, key and certificate do not match, encrypted key), the
 * old context stays and the reason is logged.
 *
 * Records go through BIOs of ours (tls.c): conn.c keeps owning the socket through libuv, and a
 * transport only encrypts and decrypts (handshakes included) on the loop, never
 * blocking. Kernel TLS (kTLS, net/ktls.h): with opts.ktls, tusc_tls_new asks once whether
 * the kernel has the tls module (and logs the answer); if it does, each connection hands
 * its keys and record sequence numbers to the socket after the handshake, and from then
 * on the transport passes plaintext through (secure() stays true, ALPN stays). The switch
 * happens at a record boundary (read_max() bounds the reads until then) and falls back to
 * user space, per connection and silently, when the kernel refuses (cipher, version).
 * Counted through opts.on_ktls (tusc_tls_ktls_connections_total). See docs/deploy.md.
 *
 * Threads: tusc_tls_new / reload / free on the main thread; tusc_tls_transport_new
 * from any worker (the context swap is mutex-protected); a transport lives on the
 * loop of its connection.
 */
#ifndef TUSC_NET_TLS_H
#define TUSC_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/transport.h"

typedef struct tusc_tls_s tusc_tls_t;

typedef struct tusc_tls_options_s {
  const char *certificate; /* PEM: leaf first, then intermediates */
  const char *key;         /* PEM private key, unencrypted */
  const char *mode;        /* "tls12" (default when NULL), "tls12-strong", "tls13" */
  int64_t hsts_max_age;    /* seconds; < 0 = send no Strict-Transport-Security */
  bool h2;                 /* offer HTTP/2 by ALPN ("h2", preferred over "http/1.1") */
  bool ktls;               /* hand records to the kernel (kTLS) where it can: -tls-ktls auto */
  void (*on_ktls)(void);   /* NULL, or called (on the connection's loop) for each connection
                              whose both directions went to the kernel: a metric */
} tusc_tls_options_t;

/* Loads the files and builds the first context. On failure returns a negative code
 * and writes the reason (naming the file) into err. */
int tusc_tls_new(const tusc_tls_options_t *opts, tusc_tls_t **out, char *err, size_t errlen);

/* Rebuilds the context from the same paths. 0 when swapped; otherwise a negative code,
 * the old context stays, and err says why (the caller logs it). */
int tusc_tls_reload(tusc_tls_t *tls, char *err, size_t errlen);

/* Serial number (hex) of the certificate new connections get, for logs and tests. */
void tusc_tls_serial(tusc_tls_t *tls, char *out, size_t cap);

/* Value of the Strict-Transport-Security header, or NULL when HSTS is off. */
const char *tusc_tls_hsts(const tusc_tls_t *tls);

void tusc_tls_free(tusc_tls_t *tls);

/* A TLS transport for one accepted connection, using the current context. */
int tusc_tls_transport_new(tusc_tls_t *tls, tusc_transport_t **out);

/* Whether the handshake of this (TLS) transport chose "h2" by ALPN; false for any
 * other transport. */
bool tusc_tls_transport_is_h2(const tusc_transport_t *t);

#endif

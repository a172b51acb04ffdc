/*
 * jwt — verification of compact JWS bearer tokens (RFC 7515/7519) with OpenSSL:
 * HS256 (HMAC-SHA256), RS256 (RSA PKCS#1 v1.5 + SHA-256) and ES256 (ECDSA P-256 +
 * SHA-256). One algorithm is configured; a token naming any other one, "none"
 * included, is refused before its signature is looked at (the classic alg-confusion
 * attacks). Segments must be strict base64url without padding. After the signature,
 * `exp` and `nbf` are enforced with a small clock skew, `aud` and `iss` when
 * configured, and `sub` is required: it is the principal uploads are owned by.
 *
 * Threads: a key is immutable once loaded and may be used by any number of threads
 * at once. Verification is fast (no thread pool needed). Owns its memory:
 * tusc_jwt_key_free frees.
 */
#ifndef TUSC_AUTH_JWT_H
#define TUSC_AUTH_JWT_H

#include <stddef.h>
#include <stdint.h>

enum tusc_jwt_alg { TUSC_JWT_HS256 = 0, TUSC_JWT_RS256, TUSC_JWT_ES256 };

#define TUSC_JWT_TOKEN_MAX 8192 /* longer tokens are refused */
#define TUSC_JWT_SKEW_S 30      /* leeway for exp / nbf */

typedef struct tusc_jwt_key_s tusc_jwt_key_t;

/* "HS256" → TUSC_JWT_HS256 etc. Returns 0 or TUSC_EINVALID_ARGUMENT. */
int tusc_jwt_alg_parse(const char *name, enum tusc_jwt_alg *out);

/* Key material from memory: for HS256 the secret itself (one trailing newline, as
 * `echo secret > file` leaves it, is dropped); for RS256/ES256 a PEM public key
 * ("BEGIN PUBLIC KEY") or certificate. The key type must fit the algorithm (RSA of at
 * least 2048 bits, EC on P-256). On failure a one-line reason goes to err.
 * Returns 0, TUSC_EINVALID_ARGUMENT or TUSC_ENOMEM; *out only on success. */
int tusc_jwt_key_from_mem(const void *data, size_t len, enum tusc_jwt_alg alg, tusc_jwt_key_t **out,
                          char *err, size_t err_cap) __attribute__((warn_unused_result));
/* Same from a file (at most 1 MiB); I/O errors as negated errno. */
int tusc_jwt_key_load(const char *path, enum tusc_jwt_alg alg, tusc_jwt_key_t **out, char *err,
                      size_t err_cap) __attribute__((warn_unused_result));
void tusc_jwt_key_free(tusc_jwt_key_t *key);

typedef struct tusc_jwt_opts_s {
  const char *audience; /* NULL = not checked */
  const char *issuer;   /* NULL = not checked */
  int64_t now;          /* seconds since the epoch */
  int64_t skew_s;       /* leeway for exp and nbf */
} tusc_jwt_opts_t;

/* Verifies `token` (the part after "Bearer "). Returns 0 and a malloc'd copy of the
 * `sub` claim in *subject (caller frees), or TUSC_EUNAUTHORIZED with *why set to a
 * static reason for the logs ("expired", "bad signature", ...), or TUSC_ENOMEM. */
int tusc_jwt_verify(const tusc_jwt_key_t *key, const char *token, size_t len,
                    const tusc_jwt_opts_t *opts, char **subject, const char **why)
    __attribute__((warn_unused_result));

#endif

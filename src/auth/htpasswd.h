/*
 * htpasswd — an Apache-style password file ("user:hash" per line) for HTTP Basic auth.
 *
 * Accepted hashes are the ones that are still slow to brute-force and that libxcrypt's
 * crypt_r checks: bcrypt ($2y$, $2b$, $2a$), sha512-crypt ($6$) and yescrypt ($y$).
 * Plain-text, crypt(3) DES, SHA-1 ({SHA}) and md5-apr1 ($apr1$) entries are refused
 * when the file is loaded, with a message naming the line: a server must not start
 * believing it is protected by hashes anybody can reverse.
 *
 * Threads: a loaded table is immutable; tusc_htpasswd_verify may run on any thread
 * at once (it is the slow part, meant for libuv's thread pool). Load/free wherever
 * the owner likes. Owns its memory: tusc_htpasswd_free frees.
 */
#ifndef TUSC_AUTH_HTPASSWD_H
#define TUSC_AUTH_HTPASSWD_H

#include <stddef.h>

typedef struct tusc_htpasswd_s tusc_htpasswd_t;

/* Parses file contents. `source` names the file in messages. On failure writes a
 * one-line reason ("FILE:3: md5-apr1 ($apr1$) hashes are too weak; ...") into err.
 * Blank lines and lines starting with '#' are skipped; a user listed twice is an
 * error. Returns 0, TUSC_EINVALID_ARGUMENT or TUSC_ENOMEM; *out only on success. */
int tusc_htpasswd_parse(const char *text, size_t len, const char *source, tusc_htpasswd_t **out,
                        char *err, size_t err_cap) __attribute__((warn_unused_result));

/* Reads and parses `path` (at most 16 MiB). Returns as tusc_htpasswd_parse, or a
 * negated errno for I/O errors (err then says which). */
int tusc_htpasswd_load(const char *path, tusc_htpasswd_t **out, char *err, size_t err_cap)
    __attribute__((warn_unused_result));

void tusc_htpasswd_free(tusc_htpasswd_t *table);

/* Number of users (for start-up logs and tests). */
size_t tusc_htpasswd_count(const tusc_htpasswd_t *table);

/* Slow by design (crypt_r). Returns 0 when `user` exists and `password` matches,
 * TUSC_EUNAUTHORIZED otherwise. An unknown user costs about as much as a known one,
 * so response times do not reveal which names exist. */
int tusc_htpasswd_verify(const tusc_htpasswd_t *table, const char *user, const char *password);

#endif

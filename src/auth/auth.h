/*
 * auth — who may talk to tusc: authentication of requests (HTTP Basic against an
 * htpasswd file, Bearer JWTs), the principal uploads are owned by, the Host allow
 * list, and which peers' forwarding headers are believed (-trusted-proxies).
 *
 * Everything is off by default (tusd compatibility): without -auth-* flags every
 * request is anonymous (principal NULL) and tusc_auth_required() is false.
 *
 * Objects: one tusc_auth_t per process, created on the main thread before workers
 * start and freed after they stopped. Credentials (the htpasswd table, the JWT key)
 * live in a reference-counted snapshot: tusc_auth_reload (main thread, SIGHUP) swaps
 * in a new one while checks in flight keep using the old one. A bad new file keeps
 * the old snapshot and logs why.
 *
 * Threads: tusc_auth_check and the host/proxy helpers may be called from any loop
 * thread at once. bcrypt & co. are slow by design, so a password not in the small
 * cache of recent successes is verified on libuv's thread pool; the callback then
 * runs on the loop that asked. Each loop hashes one password at a time (the rest
 * wait in order, and are answered from the cache if an earlier check for the same
 * credentials succeeded), so a flood of logins cannot take every pool thread away
 * from the store's fsyncs.
 */
#ifndef TUSC_AUTH_AUTH_H
#define TUSC_AUTH_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "config/config.h"

typedef struct tusc_auth_s tusc_auth_t;
typedef struct tusc_auth_request_s tusc_auth_request_t;

/* Returned by tusc_auth_check when the answer comes later through the callback. */
#define TUSC_AUTH_PENDING 1

/* Callback of a pending check, on the loop given to tusc_auth_check. result is 0 (then
 * `principal` is a malloc'd name the callee takes over) or TUSC_EUNAUTHORIZED / an
 * error (principal NULL). */
typedef void (*tusc_auth_done_cb)(tusc_auth_request_t *areq, int result, char *principal);

/* Caller-allocated; must stay valid until the callback of a pending check ran. */
struct tusc_auth_request_s {
  void *data; /* free for the caller */
  /* private */
  uv_work_t work;
  tusc_auth_t *auth;
  struct tusc_auth_creds_s *creds;
  char *user;
  char *password;
  int result;
  tusc_auth_done_cb cb;
  uv_loop_t *loop;
  tusc_auth_request_t *next_waiting; /* FIFO of checks waiting for a hashing slot */
};

/* Reads the credential files and parses -allowed-hosts / -trusted-proxies. On
 * failure logs what is wrong (file and line) and returns TUSC_EINVALID_ARGUMENT, a
 * negated errno or TUSC_ENOMEM. Borrows cfg for its lifetime. */
int tusc_auth_new(const tusc_config_t *cfg, tusc_auth_t **out) __attribute__((warn_unused_result));
void tusc_auth_free(tusc_auth_t *auth);

/* Re-reads the credential files (SIGHUP). Returns 0, or the error of a bad new file
 * (logged; the old credentials stay in force). Clears the success cache. */
int tusc_auth_reload(tusc_auth_t *auth);

/* Whether requests must authenticate. */
bool tusc_auth_required(const tusc_auth_t *auth);

/* The WWW-Authenticate values for a 401 (one per enabled scheme); returns how many
 * (0..2) were written to out. Strings live as long as auth. */
size_t tusc_auth_challenges(const tusc_auth_t *auth, const char *out[2]);

/* Checks an Authorization header value (NULL when absent). Returns 0 with
 * *principal set (malloc'd; caller frees) when decided at once, TUSC_EUNAUTHORIZED
 * when refused at once, TUSC_ENOMEM, or TUSC_AUTH_PENDING: then `cb` fires later on
 * `loop` (never before this returns) and *principal is untouched. */
int tusc_auth_check(tusc_auth_t *auth, uv_loop_t *loop, const char *authorization, size_t len,
                    tusc_auth_request_t *areq, tusc_auth_done_cb cb, char **principal)
    __attribute__((warn_unused_result));

/* Host allow list (-allowed-hosts): true without a list. `host` is a Host header value
 * (port allowed, IPv6 in brackets); compared without the port, case-insensitively.
 * NULL/empty host is refused when a list exists. */
bool tusc_auth_host_allowed(const tusc_auth_t *auth, const char *host, size_t len);
bool tusc_auth_hosts_limited(const tusc_auth_t *auth);

/* Whether forwarding headers from the peer `remote_addr` ("" for unix sockets) are to
 * be believed: never without -behind-proxy / -trusted-proxies; with -behind-proxy and
 * no list always (tusd's behaviour); with a list only from peers inside it (unix
 * socket peers are local and trusted). */
bool tusc_auth_proxy_trusted(const tusc_auth_t *auth, const char *remote_addr);

#endif

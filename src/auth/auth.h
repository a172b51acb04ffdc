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
 *
 * Bounds, so that no client can stall the others' logins: at most
 * TUSC_AUTH_QUEUE_MAX checks wait per loop (more: TUSC_EAUTH_BUSY, 503); per client
 * address at most TUSC_AUTH_CLIENT_PENDING checks wait or hash, and after
 * TUSC_AUTH_FAIL_LIMIT failed checks within TUSC_AUTH_FAIL_WINDOW_MS (a count that
 * decays linearly) further ones are refused before any hashing (TUSC_EAUTH_THROTTLED,
 * 429) until it has decayed. Addresses live in a fixed-size hashed table, so memory
 * does not grow with the number of clients. A check whose client has gone is dropped
 * with tusc_auth_cancel.
 */
#ifndef TUSC_AUTH_AUTH_H
#define TUSC_AUTH_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"

typedef struct tusc_auth_s tusc_auth_t;
typedef struct tusc_auth_request_s tusc_auth_request_t;

/* Returned by tusc_auth_check when the answer comes later through the callback. */
#define TUSC_AUTH_PENDING 1

#define TUSC_AUTH_QUEUE_MAX 64         /* password checks waiting per loop */
#define TUSC_AUTH_CLIENT_PENDING 8     /* checks waiting or hashing per client address */
#define TUSC_AUTH_FAIL_LIMIT 10        /* failed checks per client address ... */
#define TUSC_AUTH_FAIL_WINDOW_MS 60000 /* ... within this window */

/* Callback of a pending check, on the loop given to tusc_auth_check. result is 0 (then
 * `principal` is a malloc'd name the callee takes over) or TUSC_EUNAUTHORIZED / an
 * error (principal NULL). */
typedef void (*tusc_auth_done_cb)(tusc_auth_request_t *areq, int result, char *principal);

/* Caller-allocated; must stay valid until the callback of a pending check ran. */
struct tusc_auth_request_s {
  void *data; /* free for the caller */
  /* When tusc_auth_check refused with TUSC_EAUTH_BUSY or TUSC_EAUTH_THROTTLED: seconds
   * after which a retry may succeed (for Retry-After). */
  unsigned retry_after_s;
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
  uint64_t client_key;               /* its client address's entry (holds a pending count) */
  bool waiting;                      /* in its loop's FIFO (not yet hashing) */
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

/* Checks an Authorization header value (NULL when absent) from `client` (its address
 * as the handler believes it; NULL or "" for unix sockets). Returns 0 with *principal
 * set (malloc'd; caller frees) when decided at once, TUSC_EUNAUTHORIZED when refused at
 * once, TUSC_EAUTH_BUSY / TUSC_EAUTH_THROTTLED (bounds above; areq->retry_after_s
 * set), TUSC_ENOMEM, or TUSC_AUTH_PENDING: then `cb` fires later on `loop` (never
 * before this returns) and *principal is untouched. */
int tusc_auth_check(tusc_auth_t *auth, uv_loop_t *loop, const char *client,
                    const char *authorization, size_t len, tusc_auth_request_t *areq,
                    tusc_auth_done_cb cb, char **principal) __attribute__((warn_unused_result));

/* The client of a pending check has gone (on the loop the check was made on). Returns 0
 * when the check was still waiting: it is dropped and `cb` never fires; UV_EBUSY when
 * it is already hashing on the pool: `cb` still fires (its failure still counts
 * against the address) and the caller drops the result. */
int tusc_auth_cancel(tusc_auth_request_t *areq);

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

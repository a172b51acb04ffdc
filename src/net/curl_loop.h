/*
 * curl_loop — libcurl's multi_socket interface driven by a libuv loop, shared by every
 * module that talks HTTP to somebody else (HTTP hooks today, object stores later).
 *
 * curl says which sockets to watch (one uv_poll each) and when to call it back (one
 * uv_timer); readiness goes back through curl_multi_socket_action and finished
 * transfers are collected with curl_multi_info_read. No thread ever waits on the
 * network.
 *
 * Contract (libuv's): the caller owns a tusc_curl_xfer_t and the easy handle, and
 * keeps both alive while the transfer is active. tusc_curl_loop_add() returns 0 and
 * then calls `done` exactly once, later, from the loop — or the caller cancels with
 * tusc_curl_loop_remove(), after which `done` is never called. The easy handle's
 * CURLOPT_PRIVATE belongs to this module.
 *
 * Threads: everything on the loop that owns it. curl_global_init must have run.
 */
#ifndef TUSC_NET_CURL_LOOP_H
#define TUSC_NET_CURL_LOOP_H

#include <stdbool.h>

#include <curl/curl.h>
#include <uv.h>

typedef struct tusc_curl_loop_s tusc_curl_loop_t;
typedef struct tusc_curl_xfer_s tusc_curl_xfer_t;

/* `result` is curl's outcome; the easy handle is already detached from the multi, so
 * the callback may re-add it (a retry) or free it. */
typedef void (*tusc_curl_done_cb)(tusc_curl_xfer_t *xfer, CURLcode result);

struct tusc_curl_xfer_s {
  void *data; /* free for the caller */
  /* private to curl_loop.c */
  CURL *easy;
  tusc_curl_done_cb done;
  bool active;
};

/* Returns 0 and a new driver on `loop`, or TUSC_ENOMEM. */
int tusc_curl_loop_new(uv_loop_t *loop, tusc_curl_loop_t **out)
    __attribute__((warn_unused_result));

/* Starts `easy`. Returns 0 (done follows later), or TUSC_EINTERNAL if curl refused it or
 * UV_ECANCELED once the driver is closing (done is then never called). */
int tusc_curl_loop_add(tusc_curl_loop_t *cl, tusc_curl_xfer_t *xfer, CURL *easy,
                       tusc_curl_done_cb done) __attribute__((warn_unused_result));

/* Stops an active transfer without calling its done; no-op when not active. */
void tusc_curl_loop_remove(tusc_curl_loop_t *cl, tusc_curl_xfer_t *xfer);

/* Whether `xfer` is in flight (added and neither done nor removed). */
static inline bool tusc_curl_xfer_active(const tusc_curl_xfer_t *xfer) {
  return xfer->active;
}

/* Closes the driver: every transfer must have been removed or be done. `closed_cb`
 * runs once every handle is closed; the driver is then freed. */
void tusc_curl_loop_close(tusc_curl_loop_t *cl, void (*closed_cb)(void *arg), void *arg);

#endif

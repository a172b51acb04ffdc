/*
 * handler — the tus 1.0 protocol (core, creation, creation-with-upload,
 * creation-defer-length, termination) plus downloads, CORS, the greeting page and
 * Location building, on top of the http layer, a store and a lock (lock/lock.h).
 *
 * Objects: one tusc_tus_t per process (immutable after creation: config, store,
 * lock — shared by all workers), one tusc_tus_worker_t per worker loop (its pending
 * requests). The worker is the `ctx` of the http handler table returned by
 * tusc_tus_http_handler().
 *
 * Threads: tusc_tus_new/free on the main thread; a worker's functions and callbacks
 * only on its own loop. Slow store calls (create, sync, terminate) run on libuv's
 * thread pool; the loop never waits for a disk flush.
 */
#ifndef TUSC_TUS_HANDLER_H
#define TUSC_TUS_HANDLER_H

#include <uv.h>

#include "config/config.h"
#include "hooks/hooks.h"
#include "http/http.h"
#include "lock/lock.h"
#include "store/store.h"
#include "tus/expire.h"

typedef struct tusc_tus_s tusc_tus_t;
typedef struct tusc_tus_worker_s tusc_tus_worker_t;

/* Borrows cfg, store and lock (they must outlive the tusc_tus_t). Compiles the CORS
 * origin regex (anchored). Returns 0 or a negative code. */
int tusc_tus_new(const tusc_config_t *cfg, tusc_store_t *store, tusc_lock_t *lock,
                 tusc_tus_t **out);
void tusc_tus_free(tusc_tus_t *tus);

/* Per-loop state. Returns 0 or a negative code. */
int tusc_tus_worker_new(tusc_tus_t *tus, uv_loop_t *loop, tusc_tus_worker_t **out);
/* Stops the worker; it is freed once its last request and background job ended (at
 * once when there are none; else run the loop). */
void tusc_tus_worker_close(tusc_tus_worker_t *worker);

/* Hooks (tusd v2 events), optional. Set on the main thread before workers start;
 * `hooks` (borrowed, NULL = none) must outlive the tusc_tus_t. */
void tusc_tus_set_hooks(tusc_tus_t *tus, tusc_hooks_t *hooks);
/* The worker's hook runner on its loop (borrowed). NULL detaches it (at stop, before
 * tusc_hooks_worker_close): later requests run no hooks; pending ones still call back. */
void tusc_tus_worker_set_hooks(tusc_tus_worker_t *worker, tusc_hooks_worker_t *hw);

/* Authentication, host allow list and proxy trust (src/auth), optional. Set on the main
 * thread before workers start; `auth` (borrowed, NULL = none) must outlive the tusc_tus_t. */
struct tusc_auth_s;
void tusc_tus_set_auth(tusc_tus_t *tus, struct tusc_auth_s *auth);

/* Expiration's index (tus/expire.h), optional: every upload created is filed in it.
 * Set on the main thread before workers start; borrowed, must outlive the tusc_tus_t. */
void tusc_tus_set_expire(tusc_tus_t *tus, tusc_expire_t *expire);

/* The callbacks to give to tusc_http_server_new with the worker as ctx. */
const tusc_http_handler_t *tusc_tus_http_handler(void);

#endif

/*
 * defer — calls a function on a later turn of a loop, without the thread pool: the
 * completion half of work a store did inline on the loop thread (store/pool.h, jobs
 * without `run`), so that the store's "callback later, exactly once" holds without a
 * thread hop or a handle per request.
 *
 * Per loop, one uv_idle_t delivers everything queued on that loop, in order, on the
 * loop's next turn (what is queued while it delivers waits for the turn after). The
 * handle exists only while something is queued: it is closed once the queue is empty,
 * so a loop with nothing deferred holds nothing of this module and closes cleanly.
 *
 * Threads: start and cancel on the thread that runs `loop` (the per-loop queues are
 * found through a thread-local list, the module's only mutable state). A loop torn down
 * with uv_walk/uv_close while items are queued drops them (their callbacks never run),
 * as it would drop thread-pool work.
 */
#ifndef TUSC_STORE_DEFER_H
#define TUSC_STORE_DEFER_H

#include <uv.h>

typedef struct tusc_defer_s tusc_defer_t;

/* status: 0, or UV_ECANCELED after tusc_defer_cancel. */
typedef void (*tusc_defer_cb)(tusc_defer_t *d, int status);

/* Caller-owned; untouched by the caller between start and the callback. */
struct tusc_defer_s {
  tusc_defer_t *next;
  tusc_defer_cb cb;
  int state;
};

/* Queues d: cb(d, 0) runs on a later turn of `loop`, exactly once. Returns 0, or
 * TUSC_ENOMEM / libuv's error (then cb never runs). */
int tusc_defer_start(uv_loop_t *loop, tusc_defer_t *d, tusc_defer_cb cb)
    __attribute__((warn_unused_result));

/* A queued d's callback gets UV_ECANCELED instead of 0 (still later, in its turn):
 * returns 0, or UV_EBUSY when d is not queued. */
int tusc_defer_cancel(tusc_defer_t *d);

#endif

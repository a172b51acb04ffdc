/*
 * pool — runs a store's blocking work on libuv's thread pool, bounded, with the
 * completion on the submitting loop. Stores embed one tusc_store_pool_t and submit
 * tusc_pool_job_t's (each embedding its uv_work_t); the tus handler no longer queues
 * store work itself.
 *
 * Bound: at most `max` jobs of one pool are queued or running at once; a job submitted
 * beyond that fails with TUSC_ESTORE_BUSY (the request answers 503 and the client
 * retries) instead of growing libuv's queue without end. Jobs submitted with
 * `must_run` (an upload's buffered write: at most one per open upload, so bounded by the
 * open uploads) are counted but never refused. TUSC_STORE_POOL_MAX jobs is far above
 * what the connection limit lets in at once, so in practice the bound only cuts off a
 * runaway.
 *
 * Threads: submit and cancel on the loop the job belongs to; `run` on a pool thread
 * (it must not wait on a lock, a peer or a timer); `done` on that loop, exactly once per
 * accepted job, with UV_ECANCELED when cancel came first (then `run` never ran).
 */
#ifndef TUSC_STORE_POOL_H
#define TUSC_STORE_POOL_H

#include <stdatomic.h>
#include <stdbool.h>

#include <uv.h>

#include "store/defer.h"

#define TUSC_STORE_POOL_MAX 4096

typedef struct tusc_store_pool_s {
  atomic_uint pending; /* jobs accepted and not yet done */
  unsigned max;
} tusc_store_pool_t;

typedef struct tusc_pool_job_s tusc_pool_job_t;
typedef void (*tusc_pool_run_fn)(tusc_pool_job_t *job);
typedef void (*tusc_pool_done_fn)(tusc_pool_job_t *job, int status);

struct tusc_pool_job_s {
  uv_work_t work; /* work.data is free for the job's owner */
  tusc_store_pool_t *pool;
  tusc_pool_run_fn run;
  tusc_pool_done_fn done;
  tusc_defer_t defer; /* a job without run: done comes through store/defer.h */
};

/* max 0 = TUSC_STORE_POOL_MAX. */
void tusc_store_pool_init(tusc_store_pool_t *pool, unsigned max);

/* Queues job->run on the thread pool. run may be NULL: done only, in a later loop turn,
 * without the thread pool (store/defer.h) — for work the store did on the loop itself.
 * Returns 0 (done will be called), TUSC_ESTORE_BUSY, or libuv's error. */
int tusc_store_pool_submit(tusc_store_pool_t *pool, uv_loop_t *loop, tusc_pool_job_t *job,
                           tusc_pool_run_fn run, tusc_pool_done_fn done, bool must_run)
    __attribute__((warn_unused_result));

/* Cancels a job whose run has not started (or, without run, whose done has not run):
 * 0 (done follows with UV_ECANCELED) or UV_EBUSY. */
int tusc_store_pool_cancel(tusc_pool_job_t *job);

/* Jobs accepted and not yet done (for tests and shutdown checks). */
unsigned tusc_store_pool_pending(tusc_store_pool_t *pool);

#endif

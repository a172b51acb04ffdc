/*
 * pool — see pool.h. The counter is an atomic because one store (and its pool) is
 * shared by every worker loop; each job is submitted and completed on one loop.
 */
#include "store/pool.h"

#include <stddef.h>

#include "common/error.h"

void tusc_store_pool_init(tusc_store_pool_t *pool, unsigned max) {
  atomic_init(&pool->pending, 0);
  pool->max = max != 0 ? max : TUSC_STORE_POOL_MAX;
}

static void on_work(uv_work_t *work) {
  tusc_pool_job_t *job = (tusc_pool_job_t *)work;
  if (job->run != NULL)
    job->run(job);
}

static void on_deferred(tusc_defer_t *d, int status) {
  tusc_pool_job_t *job = (tusc_pool_job_t *)(void *)((char *)d - offsetof(tusc_pool_job_t, defer));
  atomic_fetch_sub(&job->pool->pending, 1);
  job->done(job, status);
}

static void on_after_work(uv_work_t *work, int status) {
  tusc_pool_job_t *job = (tusc_pool_job_t *)work;
  atomic_fetch_sub(&job->pool->pending, 1);
  job->done(job, status);
}

int tusc_store_pool_submit(tusc_store_pool_t *pool, uv_loop_t *loop, tusc_pool_job_t *job,
                           tusc_pool_run_fn run, tusc_pool_done_fn done, bool must_run) {
  unsigned before = atomic_fetch_add(&pool->pending, 1);
  if (!must_run && before >= pool->max) {
    atomic_fetch_sub(&pool->pending, 1);
    return TUSC_ESTORE_BUSY;
  }
  job->pool = pool;
  job->run = run;
  job->done = done;
  int rc = run != NULL ? uv_queue_work(loop, &job->work, on_work, on_after_work)
                       : tusc_defer_start(loop, &job->defer, on_deferred);
  if (rc != 0)
    atomic_fetch_sub(&pool->pending, 1);
  return rc;
}

int tusc_store_pool_cancel(tusc_pool_job_t *job) {
  if (job->run == NULL)
    return tusc_defer_cancel(&job->defer);
  return uv_cancel((uv_req_t *)&job->work) == 0 ? 0 : UV_EBUSY;
}

unsigned tusc_store_pool_pending(tusc_store_pool_t *pool) {
  return atomic_load(&pool->pending);
}

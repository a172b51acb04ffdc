/*
 * lock — the calls of lock.h, dispatched to the backend that serves the req.
 */
#include "lock/lock.h"

#include <stddef.h>

#include "common/error.h"

int tusc_lock_acquire(tusc_lock_t *lock, uv_loop_t *loop, tusc_lock_req_t *req, const char *id,
                      int64_t timeout_ms, tusc_lock_cb cb) {
  if (lock == NULL || loop == NULL || req == NULL || id == NULL || id[0] == '\0' || cb == NULL ||
      req->impl != NULL)
    return TUSC_EINVALID_ARGUMENT;
  req->lock = lock;
  return lock->ops->acquire(lock, loop, req, id, timeout_ms, cb);
}

int tusc_lock_try_acquire(tusc_lock_t *lock, uv_loop_t *loop, tusc_lock_req_t *req,
                          const char *id) {
  if (lock == NULL || loop == NULL || req == NULL || id == NULL || id[0] == '\0' ||
      req->impl != NULL)
    return TUSC_EINVALID_ARGUMENT;
  if (lock->ops->try_acquire == NULL)
    return UV_EAGAIN;
  req->lock = lock;
  return lock->ops->try_acquire(lock, loop, req, id);
}

int tusc_lock_cancel(tusc_lock_req_t *req) {
  if (req == NULL || req->lock == NULL || req->impl == NULL)
    return UV_EINVAL;
  return req->lock->ops->cancel(req);
}

void tusc_lock_release(tusc_lock_req_t *req) {
  if (req != NULL && req->lock != NULL && req->impl != NULL)
    req->lock->ops->release(req);
}

int tusc_lock_check(tusc_lock_req_t *req) {
  if (req == NULL || req->lock == NULL || req->impl == NULL)
    return UV_EINVAL;
  if (req->lock->ops->check == NULL)
    return 0;
  return req->lock->ops->check(req);
}

void tusc_lock_detach(tusc_lock_t *lock, uv_loop_t *loop) {
  if (lock != NULL && loop != NULL && lock->ops->detach != NULL)
    lock->ops->detach(lock, loop);
}

void tusc_lock_free(tusc_lock_t *lock) {
  if (lock != NULL)
    lock->ops->free(lock);
}

/*
 * lock — exclusive per-upload locks behind an asynchronous interface. A backend is a
 * tusc_lock_t with an ops table (like tusc_store_t); the first one is the in-process
 * lock plus flock(2) of lock/local.h, a lease in a shared service could be the next.
 * Every caller waits the same way: on its event loop, in a callback, never on a
 * thread; no thread-pool thread ever waits for a lock.
 *
 * Requests follow libuv's contract. The caller owns a tusc_lock_req_t (zeroed before its
 * first use) and passes it to tusc_lock_acquire(); if that returns 0 the callback runs
 * exactly once, later (never before acquire returned), on the loop given to acquire:
 *   status 0                 the lock is held; let go with tusc_lock_release()
 *   TUSC_ELOCK_TIMEOUT       still busy after timeout_ms (0 = tried once)
 *   UV_ECANCELED             tusc_lock_cancel() was called before the lock was handed over
 *   other negative codes     the backend failed (I/O, or TUSC_EINVALID_ID when the ID
 *                            has no lock; with the file store: no such upload)
 * A non-zero return of acquire means nothing happened and no callback comes.
 *
 * Fast path: tusc_lock_try_acquire() takes a free lock at once, without a callback, when
 * the backend can tell without waiting (the local one can). A request handler uses it so
 * that an uncontended lock costs no trip through the loop: the bytes that came with the
 * request head go straight on instead of being set aside. On any failure the caller
 * simply acquires (which waits, and reports real errors through its callback).
 *
 * Waiting: while an acquire waits, the backend asks the current holder to let go (at
 * the start and again every TUSC_LOCK_REASK_MS, since a holder may change while we
 * wait); the holder's on_release_requested runs on the holder's own loop, so a holder
 * needs no thread-safe glue of its own. It is a request, not an order: the holder
 * finishes what it must and then releases (tusd: a PATCH being read stops, saves what
 * it got and answers 400). With timeout_ms 0 nobody is asked.
 *
 * Lifetime: the req must stay valid from acquire until its callback has run, and, for
 * status 0, until tusc_lock_release() returns. No callback ever touches a req after
 * that, even one asked to let go a moment before from another thread; the req may be
 * freed right after release returns (or inside a callback that ends it: status != 0,
 * or after calling release there). A req can be used again once it ended.
 *
 * Threads: one tusc_lock_t serves every loop of the process; acquire, cancel and
 * release of one req are called on the thread of its loop. Nothing blocks.
 *
 * Leases (optional ops; a backend without them behaves as described): a lock held in a
 * shared service (lock/redis.h) is a lease that can run out while a holder cannot
 * renew it. tusc_lock_check() tells a holder, without a loop turn, whether its lease is
 * still certainly its own; a caller checks it right before it acknowledges or completes
 * anything. A backend that keeps connections per loop needs tusc_lock_detach() on each
 * loop that used the lock, before that loop ends.
 */
#ifndef TUSC_LOCK_H
#define TUSC_LOCK_H

#include <stdint.h>
#include <uv.h>

/* How often a waiting acquire asks the holder again. */
#define TUSC_LOCK_REASK_MS 500

typedef struct tusc_lock_s tusc_lock_t;
typedef struct tusc_lock_req_s tusc_lock_req_t;

/* End of an acquire (see above). */
typedef void (*tusc_lock_cb)(tusc_lock_req_t *req, int status);
/* Notifications on the req's loop: someone wants the held lock; an acquire waits. */
typedef void (*tusc_lock_event_cb)(tusc_lock_req_t *req);

struct tusc_lock_req_s {
  void *data; /* for the caller */
  /* While held: another request wants the lock (at least once per ask; asks that come
   * close together may be delivered once). May call tusc_lock_release(req). NULL =
   * never asked. */
  tusc_lock_event_cb on_release_requested;
  /* The lock was busy and this acquire starts waiting; at most once per acquire, may
   * run before acquire returns (count it, nothing more). May be NULL. */
  tusc_lock_event_cb on_wait;
  /* private to the backend */
  tusc_lock_t *lock;
  void *impl;
};

typedef struct tusc_lock_ops_s {
  int (*acquire)(tusc_lock_t *lock, uv_loop_t *loop, tusc_lock_req_t *req, const char *id,
                 int64_t timeout_ms, tusc_lock_cb cb);
  /* May be NULL: the backend cannot tell without waiting. */
  int (*try_acquire)(tusc_lock_t *lock, uv_loop_t *loop, tusc_lock_req_t *req, const char *id);
  int (*cancel)(tusc_lock_req_t *req);
  void (*release)(tusc_lock_req_t *req);
  void (*free)(tusc_lock_t *lock);
  /* May be NULL: a held lock cannot be lost (the local lock). */
  int (*check)(tusc_lock_req_t *req);
  /* May be NULL: nothing is kept per loop. */
  void (*detach)(tusc_lock_t *lock, uv_loop_t *loop);
} tusc_lock_ops_t;

struct tusc_lock_s {
  const tusc_lock_ops_t *ops;
};

/* Starts taking the lock of upload `id` for `req`, waiting at most timeout_ms (<= 0:
 * try once). Returns 0 (cb comes later), TUSC_EINVALID_ARGUMENT (NULL arguments, an
 * empty ID, or a req still in use), TUSC_ENOMEM, or a libuv error. */
__attribute__((warn_unused_result)) int tusc_lock_acquire(tusc_lock_t *lock, uv_loop_t *loop,
                                                          tusc_lock_req_t *req, const char *id,
                                                          int64_t timeout_ms, tusc_lock_cb cb);

/* Takes the lock of `id` for `req` now if it is free, asking nobody. Returns 0: held,
 * exactly as if acquire's callback had reported 0 (release it; on_release_requested
 * applies); no callback comes. Anything else: not held and nothing pending —
 * TUSC_ELOCKED (busy), UV_EAGAIN (the backend cannot tell without waiting), or an error
 * acquire would report too; acquire to wait. */
__attribute__((warn_unused_result)) int tusc_lock_try_acquire(tusc_lock_t *lock, uv_loop_t *loop,
                                                              tusc_lock_req_t *req, const char *id);

/* The caller no longer wants the lock (its client went away): an acquire whose callback
 * has not run yet ends, and its callback runs later with UV_ECANCELED; if the lock had
 * already been handed over internally it is given back, so a cancelled request never
 * holds it. Returns 0, or UV_EINVAL when no callback is pending (never acquired, held,
 * or ended). */
int tusc_lock_cancel(tusc_lock_req_t *req);

/* Lets go of a held lock (after its callback reported 0); no-op otherwise (a zeroed req,
 * an ended one, or one not held yet: cancel that one instead). Another waiting request
 * may get the lock before this returns. */
void tusc_lock_release(tusc_lock_req_t *req);

/* Is the held lock of `req` still certainly ours? Returns 0 (yes; always, for a backend
 * that cannot lose a lock), TUSC_ELOCK_LOST (the lease ran out or was taken over, or it
 * cannot be renewed in time: the caller must not acknowledge what it did under the
 * lock), or UV_EINVAL (not held). Synchronous; on the req's loop. */
int tusc_lock_check(tusc_lock_req_t *req);

/* The loop is about to end: what the backend keeps for `loop` (connections, timers)
 * closes as soon as none of the loop's reqs is held or pending any more — at once if
 * none is; their close callbacks run in that loop's remaining turns. Reqs still held or
 * waiting go on normally until they end. Using the lock on the loop later opens what it
 * needs again, for just as long. Call on the loop's thread. No-op for backends that
 * keep nothing per loop, and for NULL. */
void tusc_lock_detach(tusc_lock_t *lock, uv_loop_t *loop);

/* Frees the backend once every req has ended and the loops that used it have run their
 * close callbacks. NULL is a no-op. */
void tusc_lock_free(tusc_lock_t *lock);

#endif

/*
 * expire — the tus expiration extension: when an unfinished upload expires, and the
 * sweeper that deletes expired uploads.
 *
 * Rule (tusd's "last activity" semantic): with -expire-after D, an unfinished upload
 * expires D after its last activity, i.e. after the later of its creation and the last
 * byte written to its data file (the data file's mtime, so a PATCH refreshes the
 * deadline without rewriting the .info). Finished uploads (offset == known length) and
 * final uploads of a concatenation never expire. Requests for an expired upload get
 * 410 before the sweeper has run; once the sweeper deleted it, 404.
 *
 * Index: an in-memory min-heap of (deadline, upload ID), 24 bytes per entry for
 * generated IDs. A deadline in the heap is a lower bound: activity only moves the real
 * deadline later, so nothing needs to update the heap on PATCH, finish or terminate.
 * A sweep pops the entries that are due, re-reads those uploads (one .info read + one
 * stat each) and deletes, re-files with the new deadline, or forgets them. So a sweep
 * with nothing due is O(1) however many uploads are stored, and every upload costs one
 * check per deadline. The heap is filled at start-up by one walk over the store (on the
 * thread pool) and by tusc_expire_track on every creation.
 *
 * Deleting: the sweeper takes the upload's lock on its loop through lock.h, trying
 * once without asking anyone to let go (a busy upload is re-filed a sweep interval
 * later), re-checks the deadline under the lock, then terminates (data, .info, .lock
 * and any chunk side file).
 *
 * Threads: the pure functions anywhere. tusc_expire_track, _due and _rebuild are
 * thread-safe (one mutex around the heap; disk work happens outside it). _sweep on the
 * thread of the loop it is given, _start and _stop on the loop given to _start; a
 * sweep's disk work and the rebuild run on libuv's thread pool, its locks are taken on
 * the loop, and no pool thread ever waits for a lock. _free after the loops have run to
 * completion after _stop.
 */
#ifndef TUSC_TUS_EXPIRE_H
#define TUSC_TUS_EXPIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "hooks/hooks.h"
#include "lock/lock.h"
#include "store/store.h"

/* Deadline of `info` in unix milliseconds, 0 when it never expires (expire_after_ms
 * <= 0, finished, or a final upload). Pure. */
int64_t tusc_expire_deadline_ms(const tusc_upload_info_t *info, int64_t expire_after_ms);

/* True when `info` has a deadline and now_ms is at or past it. Pure. */
bool tusc_expire_is_expired(const tusc_upload_info_t *info, int64_t expire_after_ms,
                            int64_t now_ms);

/* Wall-clock unix milliseconds. */
int64_t tusc_expire_now_ms(void);

/* Interval between sweeps: half of expire_after, at most 60 s, at least 1 s. */
uint64_t tusc_expire_sweep_interval_ms(int64_t expire_after_ms);

typedef struct tusc_expire_s tusc_expire_t;

typedef struct tusc_expire_stats_s {
  size_t checked;   /* due entries looked at */
  size_t deleted;   /* uploads deleted */
  size_t refiled;   /* not yet expired after all (activity), or busy: back in the heap */
  size_t forgotten; /* finished, final or gone: dropped from the heap */
  size_t failed;    /* lookups or deletions that failed with an I/O error (re-filed) */
} tusc_expire_stats_t;

/* Borrows store and lock (they must outlive it). Returns 0 and *out,
 * TUSC_EINVALID_ARGUMENT for expire_after_ms <= 0 or a NULL store or lock, or
 * TUSC_ENOMEM. */
int tusc_expire_new(tusc_store_t *store, tusc_lock_t *lock, int64_t expire_after_ms,
                    tusc_expire_t **out);
void tusc_expire_free(tusc_expire_t *exp);

/* Files `id` with `deadline_ms` (any thread; call on creation). Returns 0 or
 * TUSC_ENOMEM / TUSC_EINVALID_ID. */
int tusc_expire_track(tusc_expire_t *exp, const char *id, int64_t deadline_ms);

/* Fills the heap from the store (tusc_store_list, whose walk runs on the store's pool),
 * skipping uploads created after `created_after_s` (tracked on creation instead).
 * Returns 0 and calls cb (may be NULL) once, later, on `loop`, with 0,
 * TUSC_ESERVER_SHUTDOWN when stopped, or the walk's error, and the uploads filed; or
 * returns a negative code and no cb comes. */
typedef void (*tusc_expire_rebuild_cb)(void *arg, int status, size_t filed);
int tusc_expire_rebuild(tusc_expire_t *exp, uv_loop_t *loop, int64_t created_after_s,
                        tusc_expire_rebuild_cb cb, void *arg);

/* Whether an entry is due at now_ms: one look at the heap's top. */
bool tusc_expire_due(tusc_expire_t *exp, int64_t now_ms);

/* One sweep at `now_ms`, driven from `loop` (its thread): handles every entry due.
 * Returns 0 and calls cb (may be NULL) exactly once, later, on that loop, with status 0,
 * TUSC_ESERVER_SHUTDOWN (stopped midway) or a libuv error, and what happened; or returns
 * UV_EBUSY while another sweep of `exp` runs, or TUSC_ENOMEM / a libuv error, and no cb
 * comes. The periodic sweeps of _start use this too. */
typedef void (*tusc_expire_sweep_cb)(void *arg, int status, const tusc_expire_stats_t *stats);
int tusc_expire_sweep(tusc_expire_t *exp, uv_loop_t *loop, int64_t now_ms, tusc_expire_sweep_cb cb,
                      void *arg);

/* Entries in the heap and the bytes the index holds (entries, spare capacity, and heap
 * strings of IDs that are not 32 lowercase hex characters). */
size_t tusc_expire_index_entries(tusc_expire_t *exp, size_t *bytes);

/* Fires post-terminate (non-blocking, empty HTTPRequest) for every upload the periodic
 * sweep deletes, from a hooks worker of the loop given to _start. Call before _start;
 * `hooks` must outlive the expire object. Only the sweeps started by _start do this. */
void tusc_expire_set_hooks(tusc_expire_t *exp, tusc_hooks_t *hooks);

/* Starts the start-up rebuild and the periodic sweep: a timer on `loop` starts a sweep
 * when something is due (one at a time). Returns 0 or a libuv error. */
int tusc_expire_start(tusc_expire_t *exp, uv_loop_t *loop);

/* Stops the timer and asks running work to end early. Free after the loop ran out. */
void tusc_expire_stop(tusc_expire_t *exp);

#endif

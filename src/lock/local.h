/*
 * local — the lock.h backend for one machine: a process-wide table of held and awaited
 * upload IDs (one mutex), plus flock(2) on a per-upload lock file so that several tusc
 * processes on one directory exclude each other too.
 *
 * Waiting: an in-process holder hands the lock straight to the oldest waiter when it
 * releases (the waiter's loop is woken at once); a lock held by another process cannot
 * wake us, so a waiter that lost to a flock tries again every TUSC_LOCK_LOCAL_RETRY_MS
 * from a timer on its own loop. Asking the holder to let go reaches in-process holders
 * only (another process cannot be asked).
 *
 * Threads: any number of loops in any threads may share one lock. Each loop that has
 * requests in flight gets one uv_async_t from this module (made on first use, closed
 * once its last request ended) through which grants, asks and cancellations reach that
 * loop; every per-request callback runs there.
 */
#ifndef TUSC_LOCK_LOCAL_H
#define TUSC_LOCK_LOCAL_H

#include <stddef.h>
#include <stdint.h>

#include "lock/lock.h"

/* Retry interval while another process holds the flock. */
#define TUSC_LOCK_LOCAL_RETRY_MS 10

/* Maps an upload ID to its lock file (written into out, cap bytes). Returns 0 or a
 * negative code, which the acquire reports (e.g. TUSC_EINVALID_ID). Called on the
 * acquiring loop; must be thread-safe. */
typedef int (*tusc_lock_path_fn)(void *arg, const char *id, char *out, size_t cap);

/* A new local lock. lock_path (with `arg`) names each upload's lock file, created with
 * exactly `file_perms` when missing and never deleted here (the store deletes it with
 * the upload); NULL = in-process exclusion only. Returns 0 and *out (tusc_lock_free),
 * or TUSC_ENOMEM. */
int tusc_lock_local_new(tusc_lock_path_fn lock_path, void *arg, unsigned file_perms,
                        tusc_lock_t **out);

/* Counters, for tests: how waiting requests got on. */
typedef struct tusc_lock_local_stats_s {
  uint64_t waits;     /* acquires that found the lock busy and waited */
  uint64_t handovers; /* locks handed from a releasing holder to a waiter */
  uint64_t retries;   /* tries made by a waiter's timer */
  uint64_t asks;      /* release requests sent to in-process holders */
} tusc_lock_local_stats_t;

void tusc_lock_local_stats(tusc_lock_t *lock, tusc_lock_local_stats_t *out);

#endif

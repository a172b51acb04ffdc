/*
 * table — the synchronous lock table that lock/local.c replaces (kept until its last
 * callers move to lock.h): a process-wide table (mutex) plus flock(2) on a per-upload
 * lock file, so that several tusc processes on one directory exclude each other too.
 *
 * Lock release (tusd behaviour): a request that wants a held lock calls
 * tusc_lock_request_release(); the holder's `on_release_requested` callback runs *on
 * the requesting thread*, under no lock of this module, and must only do something
 * thread-safe and quick (e.g. set an atomic flag and uv_async_send to the holder's
 * loop): the holder is guaranteed alive during the call because tusc_lock_table_release() of
 * that holder waits until every callback in flight for it has returned. Hence the
 * callback must never call tusc_lock_table_release() on the holder it was handed (that would
 * wait for itself); other calls into this module are fine. The
 * holder then saves its bytes and calls tusc_lock_table_release(); the requester retries
 * tusc_lock_try_acquire() (e.g. from a timer) until it succeeds or its
 * -acquire-lock-timeout passes.
 *
 * Threads: all functions are thread-safe. Nothing here blocks: flock is LOCK_NB.
 * Ownership: the caller owns the tusc_lock_holder_t and keeps it alive until
 * tusc_lock_table_release() returns.
 */
#ifndef TUSC_LOCK_TABLE_H
#define TUSC_LOCK_TABLE_H

#include <stdbool.h>

typedef struct tusc_lock_table_s tusc_lock_table_t;
typedef struct tusc_lock_holder_s tusc_lock_holder_t;

typedef void (*tusc_lock_release_cb)(tusc_lock_holder_t *holder);

struct tusc_lock_holder_s {
  tusc_lock_release_cb on_release_requested; /* may be NULL */
  void *data;                                /* for the owner */
  /* private to lock.c */
  int fd;
  char *id;
  bool held;
};

/* Returns 0 and a new table, or TUSC_ENOMEM. */
int tusc_lock_table_new(tusc_lock_table_t **out);
void tusc_lock_table_free(tusc_lock_table_t *table);

/* Tries to take the lock for `id`; `lock_path` is the file to flock (created with
 * `file_perms` if missing; NULL = process-local only). Returns 0 (holder->held),
 * TUSC_ELOCKED when another holder in this process or another process has it, or a
 * negative errno for I/O errors. */
int tusc_lock_try_acquire(tusc_lock_table_t *table, const char *id, const char *lock_path,
                          unsigned file_perms, tusc_lock_holder_t *holder);

/* Asks the current holder of `id` to let go (calls its on_release_requested once per
 * call). Returns 0 if a holder in this process was asked, TUSC_ENOT_FOUND if no
 * in-process holder (the lock may be held by another process, which cannot be asked). */
int tusc_lock_request_release(tusc_lock_table_t *table, const char *id);

/* Releases a held lock (no-op if not held). Does not delete the lock file. */
void tusc_lock_table_release(tusc_lock_table_t *table, tusc_lock_holder_t *holder);

#endif

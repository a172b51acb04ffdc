/*
 * sync_batch — group commit for the file store: requests that need files or
 * directories on stable storage (fdatasync, directory fsync) join ONE queue per store
 * (shared by every event loop), and pool jobs run every request that is waiting as a
 * batch, then hand each request back to its own loop. At most TUSC_SYNC_JOBS batch
 * jobs of a store run at once; each, after its batch, takes whatever queued meanwhile
 * and runs it too, until the queue is empty. A directory named by several requests of
 * a batch is fsynced once for all.
 *
 * A batch runs in this order:
 *   0. each request's `prepare`, if it has one (the file store makes a new upload's
 *      files there, so that a create costs one pool job, shared, not two);
 *   1. sync_file_range(SYNC_FILE_RANGE_WRITE) of every fd: the data of the whole batch
 *      starts going to the disk at once;
 *   2. the fds made durable, in one of two ways:
 *      - per fd: fdatasync of each (small batches; or when the store's other batch job
 *        is in its syncfs; or without syncfs mode);
 *      - whole filesystem (syncfs mode, TUSC_SYNC_SYNCFS_MIN requests or more): each
 *        fd's data written and waited for with sync_file_range(WAIT_BEFORE | WRITE |
 *        WAIT_AFTER), which reports that file's writeback errors as fdatasync would
 *        but issues no cache flush; then ONE syncfs(2), which writes every dirty inode
 *        and metadata block (or commits the journal) and flushes the disk cache once
 *        for the whole batch. Each fdatasync costs a cache flush (about 70 us on this
 *        machine's disk even when the file is clean), which is what a batch saves.
 *   3. the directories of the requests still good: in syncfs mode nothing more (the
 *      syncfs of step 2 wrote their entries, made before it); else each distinct one
 *      fsynced once for every request that names it.
 * Nothing is ordered between one request's fds and its directories: a request whose
 * files must reach the disk before a name does (a rename) syncs them itself first.
 * So a batch costs one syncfs, or one fdatasync per fd and one fsync per directory.
 * A request's callback gets 0 only when all of its steps succeeded.
 *
 * syncfs reports a writeback error to one caller only (the errseq of the fd it is
 * given), and the error may concern another batch's inodes, written by this batch's
 * syncfs. So syncfs calls of one store never overlap (a batch job that finds the other
 * one's syncfs running syncs per fd instead: it never waits), and every syncfs error
 * bumps the store's error epoch: a request fails when the epoch moved after it began
 * dirtying (`since`, tusc_sync_batch_epoch) — possibly a false alarm, never a lost one.
 * syncfs mode is only offered on Linux 5.8 or later, where syncfs reports writeback
 * errors at all.
 *
 * Bounds: at most `max` requests wait per store (and so at most `max` run in a batch).
 * A request beyond that is not refused and does not wait: it runs alone in a pool job
 * of its own, as every request did before this module (tusc_sync_batch_stats counts
 * them). A pool thread never waits for another thread or holds a lock across I/O: the
 * store's queue is behind a mutex held only to push or take requests, and each loop's
 * mailbox behind one held to push or take finished requests (and to wake the loop).
 *
 * Threads: tusc_sync_start on a loop thread; the callback on that loop, exactly once,
 * later (never inside tusc_sync_start), iff it returned 0. Finished requests reach
 * their loop through a mailbox per (store, loop) with a uv_async_t, found through a
 * thread-local list (the module's only mutable state outside its objects), which
 * exists while the loop has requests in flight and is closed when they are all back.
 * A batch job is submitted from, and its `done` runs on, whichever loop started it;
 * that loop stays alive until it is done (the job is an active uv_work_t on it).
 */
#ifndef TUSC_STORE_SYNC_BATCH_H
#define TUSC_STORE_SYNC_BATCH_H

#include <stdatomic.h>
#include <stdbool.h>

#include <uv.h>

#include "store/pool.h"

/* Requests that may wait per store for the next batch. */
#define TUSC_SYNC_BATCH_MAX 256
/* Batch jobs per store at once: the next batch gathers while these run. One is classic
 * group commit: whatever arrives while a batch syncs waits for the next batch (one
 * syncfs for all of it); with two, the second job's batch, finding the first in its
 * syncfs, pays an fdatasync per file instead. Measured (bench/README.md, "one queue per
 * store"): one is 1.10-1.46x the per-loop batches of before on an upload filesystem of
 * its own, two 1.04-1.22x; on this machine's shared root filesystem one is 0.85-1.03x,
 * two 0.85-0.98x. -DTUSC_SYNC_JOBS=2 builds the other. */
#ifndef TUSC_SYNC_JOBS
#define TUSC_SYNC_JOBS 1
#endif
/* Fewest requests (or distinct directories) for which a batch uses syncfs. */
#define TUSC_SYNC_SYNCFS_MIN 4
#define TUSC_SYNC_FDS 2
#define TUSC_SYNC_DIRS 3

typedef struct tusc_sync_req_s tusc_sync_req_t;
typedef void (*tusc_sync_cb)(tusc_sync_req_t *req, int status);
typedef struct tusc_sync_batch_s tusc_sync_batch_t;

typedef struct tusc_sync_dir_result_s {
  const char *path;
  int rc;
} tusc_sync_dir_result_t;

/* One of a store's batch jobs (private). */
typedef struct tusc_sync_slot_s {
  tusc_pool_job_t job;
  tusc_sync_batch_t *batch;
  tusc_sync_req_t *list; /* the batch the job has */
  int state;             /* free, running, finishing (run returned, done not yet) */
  tusc_sync_dir_result_t dirs[TUSC_SYNC_BATCH_MAX * TUSC_SYNC_DIRS];
} tusc_sync_slot_t;

struct tusc_sync_batch_s {
  tusc_store_pool_t *pool; /* the store's; batch jobs count in it */
  unsigned max;
  /* The queue, behind `lock` (held only to push, take, and change a slot's state). */
  uv_mutex_t lock;
  tusc_sync_req_t *head, *tail; /* waiting for the next batch */
  unsigned n;
  tusc_sync_slot_t slots[TUSC_SYNC_JOBS];
  /* Statistics, for tests and the bench notes (relaxed atomics: several loops). */
  atomic_ulong batches;      /* batch jobs run */
  atomic_ulong batched;      /* requests run in them */
  atomic_ulong solo;         /* requests run alone: their loop's queue was full */
  atomic_ulong dir_fsyncs;   /* directory fsyncs issued */
  atomic_ulong dirs_asked;   /* directory fsyncs requested (more than issued = shared) */
  atomic_ulong syncfs_calls; /* syncfs(2) calls */
  atomic_ulong mixed;        /* batches with requests of more than one loop */
  /* syncfs mode: */
  int fs_fd;               /* on the store's filesystem, -1 = per-fd syncs only */
  atomic_bool syncfs_busy; /* a batch is in its syncfs steps */
  atomic_ulong epoch;      /* syncfs errors so far */
};

/* Caller-owned; the fields below and the strings they point to stay untouched until
 * the callback. */
struct tusc_sync_req_s {
  int fd[TUSC_SYNC_FDS];           /* fdatasync'ed; -1 = none */
  bool close_fds;                  /* the batch closes them after syncing (also on error) */
  bool other_fs;                   /* the fds may be on another filesystem than the batch's
                                    * syncfs fd: always fdatasync'ed */
  const char *dir[TUSC_SYNC_DIRS]; /* directories fsynced; NULL = none; on the batch's
                                    * filesystem (syncfs mode relies on it) */
  unsigned long since;             /* tusc_sync_batch_epoch when the caller began changing
                                    * what this request makes durable (0 = at the start) */
  void *data;                      /* for the caller */
  /* Optional, run on the pool thread first (step 0): fills in the fields above and
   * returns 0, or returns an error having left no fd open (the request then fails
   * with it and nothing else is done for it). */
  int (*prepare)(tusc_sync_req_t *req);

  /* Private. */
  tusc_sync_batch_t *batch;
  uv_loop_t *loop;
  struct tusc_sync_post_s *post; /* its loop's mailbox */
  tusc_sync_cb cb;
  tusc_sync_req_t *next;
  tusc_pool_job_t job; /* a solo run */
  int status;
};

/* pool: the store's pool, which batch jobs are submitted to (and counted in). max 0 =
 * TUSC_SYNC_BATCH_MAX. Returns 0 or libuv's error (the mutex). */
int tusc_sync_batch_init(tusc_sync_batch_t *batch, tusc_store_pool_t *pool, unsigned max)
    __attribute__((warn_unused_result));

/* Turns on syncfs mode with `fd` (any fd on the filesystem to sync; the batch owns it
 * from now on) when the kernel's syncfs reports writeback errors (Linux >= 5.8):
 * returns 0, or UV_ENOTSUP (fd closed, per-fd syncs only). Before the first start. */
int tusc_sync_batch_use_syncfs(tusc_sync_batch_t *batch, int fd);

/* Closes the syncfs fd and frees the mutex. No request or batch job may be in flight
 * (tusc_store_pool_pending of the store's pool is 0). */
void tusc_sync_batch_dispose(tusc_sync_batch_t *batch);

/* The store's error epoch now (any thread). */
unsigned long tusc_sync_batch_epoch(tusc_sync_batch_t *batch);

/* Resets req's private part and its inputs to "nothing to do" (fds -1, no paths). */
void tusc_sync_req_init(tusc_sync_req_t *req);

/* fsync of the directory `path`, here and now (any thread; blocks on the disk):
 * 0 or a negative errno. */
int tusc_sync_dir(const char *path);

/* Queues req for the store's next batch (or, when the queue is full, runs it alone).
 * Returns 0 (cb(req, status) follows on `loop`) or a negative code from the pool (then
 * nothing was done, and fds are not closed). */
int tusc_sync_start(tusc_sync_batch_t *batch, uv_loop_t *loop, tusc_sync_req_t *req,
                    tusc_sync_cb cb) __attribute__((warn_unused_result));

#endif

/*
 * sync_batch — see sync_batch.h. One lane per (batch, loop) pair that has requests in
 * flight, in a thread-local list (a worker thread runs one loop). A lane holds the
 * requests waiting for its next batch and TUSC_SYNC_JOBS slots, each the batch one job
 * took: the loop only touches `head`/`tail`/`n` and the slots' flags, a pool thread only
 * the list its slot was given, so they share nothing but the hand-over in submit and
 * done, which libuv orders. A request finding a free slot starts a job at once (light
 * load: no waiting); with every slot busy, requests gather for the next free one.
 */
#include "store/sync_batch.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "common/error.h"

typedef struct dir_result_s {
  const char *path;
  int rc;
} dir_result_t;

typedef struct lane_s lane_t;

/* One of a lane's batch jobs. */
typedef struct slot_s {
  tusc_pool_job_t job;
  lane_t *lane;
  tusc_sync_req_t *list; /* the batch the job has */
  bool busy;             /* the job is on the pool */
  dir_result_t dirs[TUSC_SYNC_BATCH_MAX * TUSC_SYNC_DIRS];
} slot_t;

struct lane_s {
  tusc_sync_batch_t *batch;
  uv_loop_t *loop;
  tusc_sync_req_t *head, *tail; /* waiting for the next batch */
  unsigned n;
  unsigned n_busy; /* slots on the pool */
  struct lane_s *next;
  slot_t slots[TUSC_SYNC_JOBS];
};

static _Thread_local lane_t *thread_lanes;

void tusc_sync_batch_init(tusc_sync_batch_t *batch, tusc_store_pool_t *pool, unsigned max) {
  batch->pool = pool;
  batch->max = max == 0 || max > TUSC_SYNC_BATCH_MAX ? TUSC_SYNC_BATCH_MAX : max;
  atomic_init(&batch->batches, 0);
  atomic_init(&batch->batched, 0);
  atomic_init(&batch->solo, 0);
  atomic_init(&batch->dir_fsyncs, 0);
  atomic_init(&batch->dirs_asked, 0);
  atomic_init(&batch->syncfs_calls, 0);
  batch->fs_fd = -1;
  atomic_init(&batch->syncfs_busy, false);
  atomic_init(&batch->epoch, 0);
}

/* syncfs reports writeback errors since Linux 5.8 (before, it returned 0 whatever
 * happened, so its callers could not tell a lost write). */
static bool syncfs_reports_errors(void) {
  struct utsname u;
  unsigned major = 0, minor = 0;
  if (uname(&u) != 0 || sscanf(u.release, "%u.%u", &major, &minor) != 2)
    return false;
  return major > 5 || (major == 5 && minor >= 8);
}

int tusc_sync_batch_use_syncfs(tusc_sync_batch_t *batch, int fd) {
  if (!syncfs_reports_errors()) {
    close(fd);
    return UV_ENOTSUP;
  }
  batch->fs_fd = fd;
  return 0;
}

void tusc_sync_batch_dispose(tusc_sync_batch_t *batch) {
  if (batch->fs_fd >= 0)
    close(batch->fs_fd);
  batch->fs_fd = -1;
}

unsigned long tusc_sync_batch_epoch(tusc_sync_batch_t *batch) {
  return atomic_load(&batch->epoch);
}

void tusc_sync_req_init(tusc_sync_req_t *req) {
  memset(req, 0, sizeof(*req));
  for (int i = 0; i < TUSC_SYNC_FDS; i++)
    req->fd[i] = -1;
}

static int err_from_errno(void) {
  return errno > 0 ? -errno : TUSC_EINTERNAL;
}

int tusc_sync_dir(const char *path) {
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return err_from_errno();
  int rc = fsync(fd) == 0 ? 0 : err_from_errno();
  close(fd);
  return rc;
}

/* One syncfs of the batch's filesystem; the caller holds syncfs_busy. An error bumps
 * the epoch (sync_batch.h: it may concern other batches' requests too). */
static int whole_fs_sync(tusc_sync_batch_t *batch) {
  atomic_fetch_add_explicit(&batch->syncfs_calls, 1, memory_order_relaxed);
  if (syncfs(batch->fs_fd) == 0)
    return 0;
  int rc = err_from_errno();
  atomic_fetch_add(&batch->epoch, 1);
  return rc;
}

/* After a syncfs step: fails the good requests of `list` when it failed or when the
 * epoch moved since they began. */
static void settle(tusc_sync_batch_t *batch, tusc_sync_req_t *list, int rc) {
  unsigned long now = atomic_load(&batch->epoch);
  for (tusc_sync_req_t *r = list; r != NULL; r = r->next)
    if (r->status == 0 && (rc != 0 || r->since != now))
      r->status = rc != 0 ? rc : -EIO;
}

/* Pool: step 2 of sync_batch.h for one fd. */
static int fd_durable(int fd, bool whole_fs) {
  if (!whole_fs)
    return fdatasync(fd) == 0 ? 0 : err_from_errno();
  unsigned flags = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER;
  return sync_file_range(fd, 0, 0, flags) == 0 ? 0 : err_from_errno();
}

/* Pool: the four steps of sync_batch.h over `list`; `dirs` has room for every
 * directory the list names. */
static void run_list(tusc_sync_batch_t *batch, tusc_sync_req_t *list, dir_result_t *dirs) {
  unsigned long n_req = 0, asked = 0, issued = 0;
  for (tusc_sync_req_t *r = list; r != NULL; r = r->next) {
    n_req++;
    r->status = r->prepare != NULL ? r->prepare(r) : 0;
    for (int i = 0; i < TUSC_SYNC_FDS; i++)
      if (r->fd[i] >= 0)
        (void)sync_file_range(r->fd[i], 0, 0, SYNC_FILE_RANGE_WRITE); /* a hint only */
  }
  bool whole_fs = false;
  if (batch->fs_fd >= 0 && n_req >= TUSC_SYNC_SYNCFS_MIN) {
    bool expected = false;
    whole_fs = atomic_compare_exchange_strong(&batch->syncfs_busy, &expected, true);
  }
  for (tusc_sync_req_t *r = list; r != NULL; r = r->next) {
    for (int i = 0; i < TUSC_SYNC_FDS; i++) {
      if (r->fd[i] < 0)
        continue;
      if (r->status == 0)
        r->status = fd_durable(r->fd[i], whole_fs && !r->other_fs);
      if (r->close_fds && !whole_fs) {
        close(r->fd[i]);
        r->fd[i] = -1;
      }
    }
  }
  if (whole_fs) {
    settle(batch, list, whole_fs_sync(batch));
    for (tusc_sync_req_t *r = list; r != NULL; r = r->next) {
      for (int i = 0; i < TUSC_SYNC_FDS && r->close_fds; i++) {
        if (r->fd[i] >= 0)
          close(r->fd[i]);
        r->fd[i] = -1;
      }
    }
  }
  for (tusc_sync_req_t *r = list; r != NULL; r = r->next)
    if (r->status == 0 && r->rename_from != NULL && rename(r->rename_from, r->rename_to) != 0)
      r->status = err_from_errno();
  /* The distinct directories of the good requests, then their syncs. */
  size_t n_dirs = 0;
  for (tusc_sync_req_t *r = list; r != NULL; r = r->next) {
    for (int i = 0; i < TUSC_SYNC_DIRS && r->status == 0; i++) {
      if (r->dir[i] == NULL)
        continue;
      asked++;
      size_t k = 0;
      while (k < n_dirs && strcmp(dirs[k].path, r->dir[i]) != 0)
        k++;
      if (k == n_dirs)
        dirs[n_dirs++] = (dir_result_t){r->dir[i], 1};
    }
  }
  if (whole_fs && n_dirs >= TUSC_SYNC_SYNCFS_MIN) {
    int rc = whole_fs_sync(batch);
    for (size_t k = 0; k < n_dirs; k++)
      dirs[k].rc = rc;
  } else {
    for (size_t k = 0; k < n_dirs; k++) {
      dirs[k].rc = tusc_sync_dir(dirs[k].path);
      issued++;
    }
  }
  if (whole_fs)
    atomic_store(&batch->syncfs_busy, false);
  unsigned long now = atomic_load(&batch->epoch);
  for (tusc_sync_req_t *r = list; r != NULL; r = r->next) {
    for (int i = 0; i < TUSC_SYNC_DIRS && r->status == 0; i++) {
      if (r->dir[i] == NULL)
        continue;
      size_t k = 0;
      while (strcmp(dirs[k].path, r->dir[i]) != 0)
        k++;
      r->status = dirs[k].rc;
    }
    if (whole_fs && r->status == 0 && r->since != now)
      r->status = -EIO; /* a syncfs error in its time: maybe its inodes */
  }
  atomic_fetch_add_explicit(&batch->batched, n_req, memory_order_relaxed);
  atomic_fetch_add_explicit(&batch->dirs_asked, asked, memory_order_relaxed);
  atomic_fetch_add_explicit(&batch->dir_fsyncs, issued, memory_order_relaxed);
}

static slot_t *slot_of_job(tusc_pool_job_t *job) {
  return (slot_t *)(void *)((char *)job - offsetof(slot_t, job));
}

static tusc_sync_req_t *req_of_job(tusc_pool_job_t *job) {
  return (tusc_sync_req_t *)(void *)((char *)job - offsetof(tusc_sync_req_t, job));
}

static void run_slot(tusc_pool_job_t *job) {
  slot_t *slot = slot_of_job(job);
  tusc_sync_batch_t *batch = slot->lane->batch; /* fixed while the lane lives */
  atomic_fetch_add_explicit(&batch->batches, 1, memory_order_relaxed);
  run_list(batch, slot->list, slot->dirs);
}

static void run_solo(tusc_pool_job_t *job) {
  tusc_sync_req_t *req = req_of_job(job);
  dir_result_t dirs[TUSC_SYNC_DIRS];
  run_list(req->batch, req, dirs);
}

/* Completes `list`, oldest first. status < 0: the job never ran (cancelled or not
 * started), so nothing was done; the fds are closed as promised. */
static void complete(tusc_sync_req_t *list, int status) {
  while (list != NULL) {
    tusc_sync_req_t *r = list;
    list = r->next;
    r->next = NULL;
    if (status < 0 && r->close_fds) {
      for (int i = 0; i < TUSC_SYNC_FDS; i++) {
        if (r->fd[i] >= 0)
          close(r->fd[i]);
        r->fd[i] = -1;
      }
    }
    r->cb(r, status < 0 ? status : r->status); /* may start another request */
  }
}

static void done_solo(tusc_pool_job_t *job, int status) {
  complete(req_of_job(job), status);
}

static void unlist(lane_t *lane) {
  for (lane_t **p = &thread_lanes; *p != NULL; p = &(*p)->next) {
    if (*p == lane) {
      *p = lane->next;
      return;
    }
  }
}

static void done_slot(tusc_pool_job_t *job, int status);

/* Hands the waiting requests to a free slot's job; the caller checked there is one. */
static int lane_submit(lane_t *lane) {
  slot_t *slot = &lane->slots[0];
  while (slot->busy)
    slot++;
  /* Handed over before the submit: the job may run before it returns. */
  slot->list = lane->head;
  int rc =
      tusc_store_pool_submit(lane->batch->pool, lane->loop, &slot->job, run_slot, done_slot, true);
  if (rc != 0) {
    slot->list = NULL;
    return rc;
  }
  lane->head = lane->tail = NULL;
  lane->n = 0;
  slot->busy = true;
  lane->n_busy++;
  return 0;
}

static void done_slot(tusc_pool_job_t *job, int status) {
  slot_t *slot = slot_of_job(job);
  lane_t *lane = slot->lane;
  tusc_sync_req_t *list = slot->list;
  slot->list = NULL;
  slot->busy = false;
  lane->n_busy--;
  /* The next batch starts before this one's callbacks run: those may queue more. */
  if (lane->head != NULL) {
    int rc = lane_submit(lane);
    if (rc != 0) {
      tusc_sync_req_t *waiting = lane->head;
      lane->head = lane->tail = NULL;
      lane->n = 0;
      complete(waiting, rc); /* later than their start: this is a completion */
    }
  }
  complete(list, status);
  if (lane->n_busy == 0 && lane->head == NULL) {
    unlist(lane);
    free(lane);
  }
}

int tusc_sync_start(tusc_sync_batch_t *batch, uv_loop_t *loop, tusc_sync_req_t *req,
                    tusc_sync_cb cb) {
  req->batch = batch;
  req->loop = loop;
  req->cb = cb;
  req->next = NULL;
  req->status = 0;
  lane_t *lane = thread_lanes;
  while (lane != NULL && (lane->batch != batch || lane->loop != loop))
    lane = lane->next;
  if (lane != NULL && lane->n >= batch->max) {
    int rc = tusc_store_pool_submit(batch->pool, loop, &req->job, run_solo, done_solo, false);
    if (rc == 0)
      atomic_fetch_add_explicit(&batch->solo, 1, memory_order_relaxed);
    return rc;
  }
  bool fresh = lane == NULL;
  if (fresh) {
    lane = malloc(sizeof(*lane));
    if (lane == NULL)
      return TUSC_ENOMEM;
    lane->batch = batch;
    lane->loop = loop;
    lane->head = lane->tail = NULL;
    lane->n = 0;
    lane->n_busy = 0;
    for (int i = 0; i < TUSC_SYNC_JOBS; i++) {
      lane->slots[i].lane = lane;
      lane->slots[i].list = NULL;
      lane->slots[i].busy = false;
    }
  }
  if (lane->tail != NULL)
    lane->tail->next = req;
  else
    lane->head = req;
  lane->tail = req;
  lane->n++;
  if (lane->n_busy < TUSC_SYNC_JOBS) {
    int rc = lane_submit(lane);
    if (rc != 0) {
      /* Only req can be waiting here: a lane with a free slot has an empty queue. */
      lane->head = lane->tail = NULL;
      lane->n = 0;
      if (fresh)
        free(lane);
      return rc;
    }
  }
  if (fresh) {
    lane->next = thread_lanes;
    thread_lanes = lane;
  }
  return 0;
}

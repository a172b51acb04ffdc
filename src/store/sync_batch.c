/*
 * sync_batch — see sync_batch.h. The store's queue (`head`/`tail`/`n`) and its slots'
 * states are behind the batch's mutex, which every holder keeps only to push, take or
 * flip a state: no I/O, no waiting, under it. A slot is FREE, RUNNING (its job is on
 * the pool with `list`, and drains the queue after it) or FINISHING (its run found the
 * queue empty and returned; its uv_work_t is in use until `done` runs on the loop that
 * submitted it). A request finding a FREE slot starts a job at once (light load: no
 * waiting); otherwise it queues, and a RUNNING job takes it after its batch — or,
 * when it queued behind a FINISHING slot, that slot's `done` restarts the job.
 *
 * Finished requests go back to their loop through its mailbox (`post_t`, one per
 * (store, loop) with requests in flight): the pool thread appends them and wakes the
 * loop with uv_async_send under the mailbox's mutex, so that once the loop has emptied
 * the mailbox under that mutex no pool thread still touches it, and the loop may close
 * it when its last request is back.
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

enum { SLOT_FREE = 0, SLOT_RUNNING, SLOT_FINISHING };

typedef struct tusc_sync_post_s post_t;
struct tusc_sync_post_s {
  uv_async_t async;
  tusc_sync_batch_t *batch;
  uv_loop_t *loop;
  uv_mutex_t lock;
  tusc_sync_req_t *head, *tail; /* finished, not yet called back (under lock) */
  unsigned inflight;            /* started and not called back (loop thread only) */
  post_t *next;                 /* thread_posts */
};

static _Thread_local post_t *thread_posts;

int tusc_sync_batch_init(tusc_sync_batch_t *batch, tusc_store_pool_t *pool, unsigned max) {
  batch->pool = pool;
  batch->max = max == 0 || max > TUSC_SYNC_BATCH_MAX ? TUSC_SYNC_BATCH_MAX : max;
  batch->head = batch->tail = NULL;
  batch->n = 0;
  for (int i = 0; i < TUSC_SYNC_JOBS; i++) {
    batch->slots[i].batch = batch;
    batch->slots[i].list = NULL;
    batch->slots[i].state = SLOT_FREE;
  }
  atomic_init(&batch->batches, 0);
  atomic_init(&batch->batched, 0);
  atomic_init(&batch->solo, 0);
  atomic_init(&batch->dir_fsyncs, 0);
  atomic_init(&batch->dirs_asked, 0);
  atomic_init(&batch->syncfs_calls, 0);
  atomic_init(&batch->mixed, 0);
  batch->fs_fd = -1;
  atomic_init(&batch->syncfs_busy, false);
  atomic_init(&batch->epoch, 0);
  return uv_mutex_init(&batch->lock);
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
  uv_mutex_destroy(&batch->lock);
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

/* Pool: the steps of sync_batch.h over `list`; `dirs` has room for every directory
 * the list names. */
static void run_list(tusc_sync_batch_t *batch, tusc_sync_req_t *list, tusc_sync_dir_result_t *dirs) {
  unsigned long n_req = 0, asked = 0, issued = 0;
  bool mixed = false;
  for (tusc_sync_req_t *r = list; r != NULL; r = r->next) {
    n_req++;
    mixed = mixed || r->post != list->post;
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
    atomic_store(&batch->syncfs_busy, false);
  }
  /* Directories: in syncfs mode the syncfs wrote their entries (made before it, in
   * step 0 or by the caller). Else each distinct one of the good requests is fsynced
   * once, for all the requests that name it. */
  size_t n_dirs = 0;
  for (tusc_sync_req_t *r = list; r != NULL; r = r->next) {
    for (int i = 0; i < TUSC_SYNC_DIRS && r->status == 0; i++) {
      if (r->dir[i] == NULL)
        continue;
      asked++;
      size_t k = 0;
      while (k < n_dirs && strcmp(dirs[k].path, r->dir[i]) != 0)
        k++;
      if (k == n_dirs && !whole_fs) {
        dirs[n_dirs++] = (tusc_sync_dir_result_t){r->dir[i], tusc_sync_dir(r->dir[i])};
        issued++;
      }
      if (k < n_dirs)
        r->status = dirs[k].rc;
    }
  }
  atomic_fetch_add_explicit(&batch->batched, n_req, memory_order_relaxed);
  if (mixed)
    atomic_fetch_add_explicit(&batch->mixed, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&batch->dirs_asked, asked, memory_order_relaxed);
  atomic_fetch_add_explicit(&batch->dir_fsyncs, issued, memory_order_relaxed);
}

/* --- back to the requests' loops ----------------------------------------------------- */

static void close_fds(tusc_sync_req_t *r) {
  for (int i = 0; i < TUSC_SYNC_FDS && r->close_fds; i++) {
    if (r->fd[i] >= 0)
      close(r->fd[i]);
    r->fd[i] = -1;
  }
}

/* Any thread: hands `list` (run, or failed with status < 0 before running: then the
 * fds are closed as promised and nothing was done) to the mailboxes of its requests'
 * loops. The requests are the loops' again as soon as they are in: nothing here
 * touches one after its push. */
static void deliver(tusc_sync_req_t *list, int status) {
  while (list != NULL) {
    tusc_sync_req_t *r = list;
    list = r->next;
    r->next = NULL;
    if (status < 0) {
      close_fds(r);
      r->status = status;
    }
    post_t *post = r->post;
    uv_mutex_lock(&post->lock);
    if (post->tail != NULL)
      post->tail->next = r;
    else
      post->head = r;
    post->tail = r;
    /* Under the lock: the loop closes the mailbox only after emptying it under the
     * lock with nothing in flight, so the handle is alive here. (No I/O: an eventfd
     * write, and none when a wake-up is pending already.) */
    (void)uv_async_send(&post->async);
    uv_mutex_unlock(&post->lock);
  }
}

static void free_post(uv_handle_t *h) {
  post_t *post = h->data;
  uv_mutex_destroy(&post->lock);
  free(post);
}

static void unlist(post_t *post) {
  for (post_t **p = &thread_posts; *p != NULL; p = &(*p)->next) {
    if (*p == post) {
      *p = post->next;
      return;
    }
  }
}

/* Loop: calls back every finished request of the mailbox, oldest first; closes it once
 * nothing of its loop is in flight. */
static void on_post(uv_async_t *async) {
  post_t *post = async->data;
  uv_mutex_lock(&post->lock);
  tusc_sync_req_t *list = post->head;
  post->head = post->tail = NULL;
  uv_mutex_unlock(&post->lock);
  while (list != NULL) {
    tusc_sync_req_t *r = list;
    list = r->next;
    r->next = NULL;
    post->inflight--;
    r->cb(r, r->status); /* may start another request (inflight goes up again) */
  }
  if (post->inflight == 0) {
    unlist(post);
    uv_close((uv_handle_t *)&post->async, free_post);
  }
}

/* Loop: the mailbox of (batch, loop), made when missing. */
static post_t *post_of(tusc_sync_batch_t *batch, uv_loop_t *loop) {
  post_t *post = thread_posts;
  while (post != NULL && (post->batch != batch || post->loop != loop))
    post = post->next;
  if (post != NULL)
    return post;
  post = malloc(sizeof(*post));
  if (post == NULL)
    return NULL;
  if (uv_mutex_init(&post->lock) != 0) {
    free(post);
    return NULL;
  }
  if (uv_async_init(loop, &post->async, on_post) != 0) {
    uv_mutex_destroy(&post->lock);
    free(post);
    return NULL;
  }
  post->async.data = post;
  post->batch = batch;
  post->loop = loop;
  post->head = post->tail = NULL;
  post->inflight = 0;
  post->next = thread_posts;
  thread_posts = post;
  return post;
}

/* --- batch jobs ------------------------------------------------------------------------ */

static tusc_sync_slot_t *slot_of_job(tusc_pool_job_t *job) {
  return (tusc_sync_slot_t *)(void *)((char *)job - offsetof(tusc_sync_slot_t, job));
}

static tusc_sync_req_t *req_of_job(tusc_pool_job_t *job) {
  return (tusc_sync_req_t *)(void *)((char *)job - offsetof(tusc_sync_req_t, job));
}

/* Under lock: the whole queue, which is left empty. */
static tusc_sync_req_t *take_queue(tusc_sync_batch_t *batch) {
  tusc_sync_req_t *list = batch->head;
  batch->head = batch->tail = NULL;
  batch->n = 0;
  return list;
}

/* Pool: the slot's batch, then every batch that queued meanwhile, until none did. */
static void run_slot(tusc_pool_job_t *job) {
  tusc_sync_slot_t *slot = slot_of_job(job);
  tusc_sync_batch_t *batch = slot->batch;
  tusc_sync_req_t *list = slot->list;
  while (list != NULL) {
    atomic_fetch_add_explicit(&batch->batches, 1, memory_order_relaxed);
    run_list(batch, list, slot->dirs);
    deliver(list, 0); /* first: their callbacks may bring more for the next batch */
    uv_mutex_lock(&batch->lock);
    list = take_queue(batch);
    slot->list = list;
    if (list == NULL)
      slot->state = SLOT_FINISHING;
    uv_mutex_unlock(&batch->lock);
  }
}

static void done_slot(tusc_pool_job_t *job, int status);

/* Loop: puts the slot's job (its list taken, state RUNNING) on the pool, done on
 * `loop`. On failure everything the slot has, and what queued behind it, fails later
 * on its loops, and the slot is free again. */
static void submit_slot(tusc_sync_slot_t *slot, uv_loop_t *loop) {
  tusc_sync_batch_t *batch = slot->batch;
  int rc = tusc_store_pool_submit(batch->pool, loop, &slot->job, run_slot, done_slot, true);
  if (rc == 0)
    return;
  uv_mutex_lock(&batch->lock);
  tusc_sync_req_t *list = slot->list, *waiting = take_queue(batch);
  slot->list = NULL;
  slot->state = SLOT_FREE;
  uv_mutex_unlock(&batch->lock);
  deliver(list, rc);
  deliver(waiting, rc);
}

/* Loop (the one that submitted the job): the slot is free again, unless requests
 * queued after its run found the queue empty: then the job starts again for them. */
static void done_slot(tusc_pool_job_t *job, int status) {
  tusc_sync_slot_t *slot = slot_of_job(job);
  tusc_sync_batch_t *batch = slot->batch;
  uv_loop_t *loop = job->work.loop;
  uv_mutex_lock(&batch->lock);
  tusc_sync_req_t *never_ran = status < 0 ? slot->list : NULL; /* cancelled */
  slot->list = take_queue(batch);
  bool again = slot->list != NULL;
  slot->state = again ? SLOT_RUNNING : SLOT_FREE; /* FREE: another loop may take it now */
  uv_mutex_unlock(&batch->lock);
  deliver(never_ran, status);
  if (again)
    submit_slot(slot, loop);
}

/* A request run alone (the queue was full): completes on its loop by the pool's done. */
static void run_solo(tusc_pool_job_t *job) {
  tusc_sync_req_t *req = req_of_job(job);
  tusc_sync_dir_result_t dirs[TUSC_SYNC_DIRS];
  run_list(req->batch, req, dirs);
}

static void done_solo(tusc_pool_job_t *job, int status) {
  tusc_sync_req_t *r = req_of_job(job);
  if (status < 0)
    close_fds(r);
  r->cb(r, status < 0 ? status : r->status);
}

int tusc_sync_start(tusc_sync_batch_t *batch, uv_loop_t *loop, tusc_sync_req_t *req,
                    tusc_sync_cb cb) {
  req->batch = batch;
  req->loop = loop;
  req->cb = cb;
  req->next = NULL;
  req->status = 0;
  post_t *post = post_of(batch, loop);
  if (post == NULL)
    return TUSC_ENOMEM;
  req->post = post;
  tusc_sync_slot_t *slot = NULL;
  bool full = false;
  uv_mutex_lock(&batch->lock);
  for (int i = 0; i < TUSC_SYNC_JOBS && slot == NULL; i++)
    if (batch->slots[i].state == SLOT_FREE)
      slot = &batch->slots[i];
  if (slot != NULL) {
    slot->state = SLOT_RUNNING;
    slot->list = req;
  } else if (batch->n >= batch->max) {
    full = true;
  } else {
    if (batch->tail != NULL)
      batch->tail->next = req;
    else
      batch->head = req;
    batch->tail = req;
    batch->n++;
  }
  uv_mutex_unlock(&batch->lock);
  if (full) {
    if (post->inflight == 0) { /* made for this request only */
      unlist(post);
      uv_close((uv_handle_t *)&post->async, free_post);
    }
    req->post = NULL;
    int rc = tusc_store_pool_submit(batch->pool, loop, &req->job, run_solo, done_solo, false);
    if (rc == 0)
      atomic_fetch_add_explicit(&batch->solo, 1, memory_order_relaxed);
    return rc;
  }
  post->inflight++; /* called back on this thread, so not before this returns */
  if (slot != NULL)
    submit_slot(slot, loop); /* a failure completes req later, with the error */
  return 0;
}

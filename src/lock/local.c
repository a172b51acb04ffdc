/*
 * local — see local.h. A chained hash table of entries, one per upload ID that is held
 * or awaited, under one mutex; each request has a private part (lreq_t) that this file
 * allocates and frees.
 *
 * Invariants (all under `mutex` unless said otherwise):
 * - An entry exists while it has a holder or a waiter. Its holder is an lreq in
 *   LS_GRANTED or LS_HELD; its waiters, oldest first, are lreqs in LS_WAITING. A lock
 *   file is flocked exactly while its entry has a holder (the holder's fd).
 * - Another thread only ever: hands a waiter the lock (LS_WAITING → LS_GRANTED), marks
 *   a waiter to poll, or sets a holder's `asked`; and then queues the lreq on its loop's
 *   context and uv_async_sends it. Every other transition, every callback and every
 *   timer call happens on the request's own loop. So a callback may run without the
 *   mutex: nothing another thread does can end the request under it.
 * - A request that ends is taken out of every entry and queue under the mutex, so no
 *   other thread can reach it any more, and then freed on its loop at once. Code here
 *   never looks at a request after calling one of its callbacks (which may end it).
 * - Only a waiting request has a timer (a separate allocation, freed in its close
 *   callback), so a held lock costs no libuv handle.
 * - A loop context lives while requests of its loop exist (refs); it is unlinked under
 *   the mutex before its uv_async_t is closed, and senders hold the mutex while they
 *   send, so no uv_async_send can race with that close.
 */
#include "lock/local.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"

#define INITIAL_BUCKETS 256

typedef struct local_s local_t;
typedef struct loop_ctx_s loop_ctx_t;
typedef struct entry_s entry_t;
typedef struct lreq_s lreq_t;

enum lstate {
  LS_WAITING, /* in its entry's waiters, timer armed */
  LS_GRANTED, /* holds the lock; the status-0 callback is queued */
  LS_HELD,    /* holds the lock; callback ran */
  LS_ENDING,  /* holds nothing; the callback with `status` is queued */
  LS_DONE     /* ended: no req, in no entry or queue; being freed */
};

struct lreq_s {
  local_t *lock;
  loop_ctx_t *ctx;
  tusc_lock_req_t *req; /* NULL once ended */
  tusc_lock_cb cb;
  uv_timer_t *timer;           /* while waiting: next retry, ask or deadline */
  char *path;                  /* lock file, NULL = none */
  int fd;                      /* the flocked lock file while holding, else -1 */
  uint64_t deadline, last_ask; /* loop time; loop thread only */
  /* under mutex */
  enum lstate state;
  int status;            /* LS_ENDING */
  bool asked;            /* holder: a release request to deliver */
  bool poll;             /* waiter: another process has the flock, retry soon */
  entry_t *entry;        /* while waiting or holding */
  lreq_t *wprev, *wnext; /* entry's waiters */
  lreq_t *qprev, *qnext; /* ctx's queue */
  bool queued;
};

struct entry_s {
  entry_t *next; /* bucket chain */
  uint64_t hash;
  lreq_t *holder; /* NULL while only waiters (behind another process's flock) */
  lreq_t *whead, *wtail;
  char id[];
};

struct loop_ctx_s {
  loop_ctx_t *next;
  local_t *lock;
  uv_loop_t *loop;
  uv_async_t async;
  size_t refs; /* lreqs of this loop not freed yet */
  lreq_t *qhead, *qtail;
  size_t queued;
};

struct local_s {
  tusc_lock_t base;
  tusc_lock_path_fn lock_path;
  void *lock_path_arg;
  unsigned file_perms;
  uv_mutex_t mutex;
  entry_t **buckets;
  size_t bucket_count; /* power of two */
  size_t count;
  loop_ctx_t *loops;
  atomic_uint_fast64_t waits, handovers, retries, asks;
};

static void on_wait_timer(uv_timer_t *timer);

static uint64_t hash_id(const char *id) {
  uint64_t h = 14695981039346656037ULL; /* FNV-1a */
  for (const unsigned char *p = (const unsigned char *)id; *p != '\0'; p++) {
    h ^= *p;
    h *= 1099511628211ULL;
  }
  return h;
}

/* --- entries ------------------------------------------------------------------------ */

static entry_t *entry_find_locked(local_t *l, const char *id, uint64_t h) {
  for (entry_t *e = l->buckets[h & (l->bucket_count - 1)]; e != NULL; e = e->next)
    if (e->hash == h && strcmp(e->id, id) == 0)
      return e;
  return NULL;
}

/* Growing is best effort: a failed allocation only makes the chains longer. */
static void maybe_grow_locked(local_t *l) {
  if (l->count < l->bucket_count)
    return;
  size_t n = l->bucket_count * 2;
  entry_t **b = calloc(n, sizeof(*b));
  if (b == NULL)
    return;
  for (size_t i = 0; i < l->bucket_count; i++) {
    entry_t *e = l->buckets[i];
    while (e != NULL) {
      entry_t *next = e->next;
      e->next = b[e->hash & (n - 1)];
      b[e->hash & (n - 1)] = e;
      e = next;
    }
  }
  free(l->buckets);
  l->buckets = b;
  l->bucket_count = n;
}

static entry_t *entry_get_locked(local_t *l, const char *id, uint64_t h) {
  entry_t *e = entry_find_locked(l, id, h);
  if (e != NULL)
    return e;
  size_t len = strlen(id);
  e = calloc(1, sizeof(*e) + len + 1);
  if (e == NULL)
    return NULL;
  memcpy(e->id, id, len + 1);
  e->hash = h;
  maybe_grow_locked(l);
  size_t b = h & (l->bucket_count - 1);
  e->next = l->buckets[b];
  l->buckets[b] = e;
  l->count++;
  return e;
}

static void entry_maybe_free_locked(local_t *l, entry_t *e) {
  if (e->holder != NULL || e->whead != NULL)
    return;
  entry_t **pp = &l->buckets[e->hash & (l->bucket_count - 1)];
  while (*pp != e)
    pp = &(*pp)->next;
  *pp = e->next;
  l->count--;
  free(e);
}

static void waiter_add_locked(entry_t *e, lreq_t *r) {
  r->entry = e;
  r->wnext = NULL;
  r->wprev = e->wtail;
  if (e->wtail != NULL)
    e->wtail->wnext = r;
  else
    e->whead = r;
  e->wtail = r;
}

static void waiter_remove_locked(entry_t *e, lreq_t *r) {
  if (r->wprev != NULL)
    r->wprev->wnext = r->wnext;
  else
    e->whead = r->wnext;
  if (r->wnext != NULL)
    r->wnext->wprev = r->wprev;
  else
    e->wtail = r->wprev;
  r->wprev = r->wnext = NULL;
}

/* --- loop contexts and their queues ---------------------------------------------------- */

static void on_ctx_async(uv_async_t *async);

static void on_ctx_closed(uv_handle_t *handle) {
  free(handle->data);
}

/* The context of `loop`, made on first use (we run on that loop's thread, so the
 * uv_async_init is allowed), with one more reference. NULL on failure. */
static loop_ctx_t *ctx_get_locked(local_t *l, uv_loop_t *loop) {
  loop_ctx_t *ctx = l->loops;
  while (ctx != NULL && ctx->loop != loop)
    ctx = ctx->next;
  if (ctx == NULL) {
    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
      return NULL;
    if (uv_async_init(loop, &ctx->async, on_ctx_async) != 0) {
      free(ctx);
      return NULL;
    }
    ctx->async.data = ctx;
    ctx->lock = l;
    ctx->loop = loop;
    ctx->next = l->loops;
    l->loops = ctx;
  }
  ctx->refs++;
  return ctx;
}

/* On the context's loop. */
static void ctx_unref(loop_ctx_t *ctx) {
  local_t *l = ctx->lock;
  bool last = false;
  uv_mutex_lock(&l->mutex);
  if (--ctx->refs == 0) {
    loop_ctx_t **pp = &l->loops;
    while (*pp != ctx)
      pp = &(*pp)->next;
    *pp = ctx->next;
    last = true;
  }
  uv_mutex_unlock(&l->mutex);
  if (last)
    uv_close((uv_handle_t *)&ctx->async, on_ctx_closed);
}

/* Has the request's loop look at it (on_ctx_async). */
static void queue_locked(lreq_t *r) {
  loop_ctx_t *ctx = r->ctx;
  if (!r->queued) {
    r->queued = true;
    r->qnext = NULL;
    r->qprev = ctx->qtail;
    if (ctx->qtail != NULL)
      ctx->qtail->qnext = r;
    else
      ctx->qhead = r;
    ctx->qtail = r;
    ctx->queued++;
  }
  uv_async_send(&ctx->async);
}

static void unqueue_locked(lreq_t *r) {
  loop_ctx_t *ctx = r->ctx;
  if (!r->queued)
    return;
  if (r->qprev != NULL)
    r->qprev->qnext = r->qnext;
  else
    ctx->qhead = r->qnext;
  if (r->qnext != NULL)
    r->qnext->qprev = r->qprev;
  else
    ctx->qtail = r->qprev;
  r->qprev = r->qnext = NULL;
  r->queued = false;
  ctx->queued--;
}

/* --- taking and handing over ------------------------------------------------------------ */

/* Opens (creating with exactly `perms`) and flocks the lock file, never blocking. */
static int flock_file(const char *path, unsigned perms, int *fd_out) {
  int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)perms);
  if (fd >= 0) {
    if (fchmod(fd, (mode_t)perms) != 0) {
      int rc = -errno;
      close(fd);
      return rc;
    }
  } else if (errno == EEXIST) {
    fd = open(path, O_RDWR | O_CLOEXEC);
  }
  if (fd < 0)
    return -errno;
  for (;;) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0)
      break;
    if (errno == EINTR)
      continue;
    int rc = errno == EWOULDBLOCK ? TUSC_ELOCKED : -errno;
    close(fd);
    return rc;
  }
  *fd_out = fd;
  return 0;
}

/* Makes r the holder of e if nobody here or elsewhere has it. Returns 0, TUSC_ELOCKED
 * (*elsewhere: another process holds the flock), or an I/O error. open and flock run
 * under the mutex: both are non-blocking, and so no second in-process taker can slip
 * in between the table check and the flock. */
static int try_take_locked(local_t *l, lreq_t *r, entry_t *e, bool *elsewhere) {
  *elsewhere = false;
  if (e->holder != NULL)
    return TUSC_ELOCKED;
  int fd = -1;
  if (r->path != NULL) {
    int rc = flock_file(r->path, l->file_perms, &fd);
    if (rc != 0) {
      *elsewhere = rc == TUSC_ELOCKED;
      return rc;
    }
  }
  e->holder = r;
  r->entry = e;
  r->fd = fd;
  return 0;
}

static void ask_locked(local_t *l, lreq_t *holder) {
  holder->asked = true;
  queue_locked(holder);
  atomic_fetch_add(&l->asks, 1);
}

/* e has no holder any more: the oldest waiter gets the lock now, on whichever thread
 * let go. If another process took the flock meanwhile, every waiter polls; a waiter
 * that cannot lock at all (e.g. the lock file's directory went with the upload) ends
 * with that error and the next one is tried. */
static void hand_over_locked(local_t *l, entry_t *e) {
  while (e->holder == NULL && e->whead != NULL) {
    lreq_t *w = e->whead;
    bool elsewhere;
    int rc = try_take_locked(l, w, e, &elsewhere);
    if (rc == 0) {
      waiter_remove_locked(e, w);
      w->state = LS_GRANTED;
      queue_locked(w);
      atomic_fetch_add(&l->handovers, 1);
      return;
    }
    if (elsewhere) {
      for (lreq_t *it = e->whead; it != NULL; it = it->wnext) {
        it->poll = true;
        queue_locked(it);
      }
      return;
    }
    waiter_remove_locked(e, w);
    w->entry = NULL;
    w->state = LS_ENDING;
    w->status = rc;
    queue_locked(w);
  }
}

/* r (GRANTED or HELD) lets go. The flock goes while the mutex is held, so an
 * in-process taker that finds no holder also finds the file unlocked. */
static void drop_holder_locked(local_t *l, lreq_t *r) {
  entry_t *e = r->entry;
  e->holder = NULL;
  if (r->fd >= 0) {
    flock(r->fd, LOCK_UN);
    close(r->fd);
    r->fd = -1;
  }
  r->entry = NULL;
  hand_over_locked(l, e);
  entry_maybe_free_locked(l, e);
}

/* r leaves the module's structures for good; returns its req (detached). */
static tusc_lock_req_t *end_locked(lreq_t *r) {
  tusc_lock_req_t *req = r->req;
  unqueue_locked(r);
  r->state = LS_DONE;
  r->req = NULL;
  r->asked = false;
  return req;
}

/* --- a request's life on its loop ----------------------------------------------------- */

static void on_timer_closed(uv_handle_t *handle) {
  free(handle);
}

static void timer_drop(lreq_t *r) {
  if (r->timer != NULL) {
    uv_close((uv_handle_t *)r->timer, on_timer_closed);
    r->timer = NULL;
  }
}

/* On r's loop, r out of every entry and queue. */
static void lreq_free(lreq_t *r) {
  loop_ctx_t *ctx = r->ctx;
  timer_drop(r);
  free(r->path);
  free(r);
  if (ctx != NULL)
    ctx_unref(ctx);
}

/* Ends a request on its loop: its req is detached and its private part freed before
 * the callback runs (which may free or reuse the req). */
static void finish(lreq_t *r, tusc_lock_req_t *req, int status) {
  tusc_lock_cb cb = r->cb;
  req->impl = NULL;
  lreq_free(r);
  cb(req, status);
}

/* Milliseconds until r's timer should look again. */
static uint64_t next_look_locked(const lreq_t *r, uint64_t now) {
  uint64_t left = r->deadline > now ? r->deadline - now : 0;
  uint64_t due;
  if (r->poll || r->entry->holder == NULL)
    due = TUSC_LOCK_LOCAL_RETRY_MS; /* no holder here that will hand it over */
  else
    due = r->last_ask + TUSC_LOCK_REASK_MS > now ? r->last_ask + TUSC_LOCK_REASK_MS - now : 0;
  return due < left ? due : left;
}

static void on_wait_timer(uv_timer_t *timer) {
  lreq_t *r = timer->data;
  local_t *l = r->lock;
  uint64_t now = uv_now(timer->loop);
  uv_mutex_lock(&l->mutex);
  if (r->state != LS_WAITING) {
    uv_mutex_unlock(&l->mutex); /* granted or cancelled: on_ctx_async has it */
    return;
  }
  entry_t *e = r->entry;
  bool elsewhere;
  atomic_fetch_add(&l->retries, 1);
  int rc = try_take_locked(l, r, e, &elsewhere);
  if (rc == 0) {
    waiter_remove_locked(e, r);
    r->state = LS_HELD;
    tusc_lock_req_t *req = r->req;
    uv_mutex_unlock(&l->mutex);
    timer_drop(r);
    r->cb(req, 0);
    return;
  }
  if (rc == TUSC_ELOCKED && now < r->deadline) {
    r->poll = elsewhere;
    if (e->holder != NULL && now - r->last_ask >= TUSC_LOCK_REASK_MS) {
      /* The holder may have changed since we last asked. */
      r->last_ask = now;
      ask_locked(l, e->holder);
    }
    uint64_t due = next_look_locked(r, now);
    uv_mutex_unlock(&l->mutex);
    uv_timer_start(timer, on_wait_timer, due, 0);
    return;
  }
  waiter_remove_locked(e, r);
  r->entry = NULL;
  entry_maybe_free_locked(l, e);
  tusc_lock_req_t *req = end_locked(r);
  uv_mutex_unlock(&l->mutex);
  finish(r, req, rc == TUSC_ELOCKED ? TUSC_ELOCK_TIMEOUT : rc);
}

/* Delivers what other threads (or this one, to stay out of the caller's stack) queued
 * for this loop's requests. Only the requests queued when it starts are looked at, so
 * a callback that leads to more queueing cannot keep it going. */
static void on_ctx_async(uv_async_t *async) {
  loop_ctx_t *ctx = async->data;
  local_t *l = ctx->lock;
  uv_mutex_lock(&l->mutex);
  size_t n = ctx->queued;
  uv_mutex_unlock(&l->mutex);
  while (n-- > 0) {
    enum { NOTHING, GRANT, ASK, END, POLL } what = NOTHING;
    int status = 0;
    uv_mutex_lock(&l->mutex);
    lreq_t *r = ctx->qhead;
    if (r == NULL) {
      uv_mutex_unlock(&l->mutex);
      break;
    }
    unqueue_locked(r);
    tusc_lock_req_t *req = r->req;
    switch (r->state) {
    case LS_GRANTED:
      r->state = LS_HELD;
      what = GRANT;
      if (r->asked)
        queue_locked(r); /* asked already: tell it once it knows it holds the lock */
      break;
    case LS_HELD:
      if (r->asked) {
        r->asked = false;
        what = ASK;
      }
      break;
    case LS_ENDING:
      status = r->status;
      end_locked(r);
      what = END;
      break;
    case LS_WAITING:
      if (r->poll)
        what = POLL;
      break;
    case LS_DONE:
      break;
    }
    uv_mutex_unlock(&l->mutex);
    switch (what) {
    case GRANT:
      timer_drop(r);
      r->cb(req, 0);
      break;
    case ASK:
      if (req->on_release_requested != NULL)
        req->on_release_requested(req);
      break;
    case END:
      finish(r, req, status);
      break;
    case POLL:
      uv_timer_start(r->timer, on_wait_timer, TUSC_LOCK_LOCAL_RETRY_MS, 0);
      break;
    case NOTHING:
      break;
    }
  }
}

/* --- the ops ------------------------------------------------------------------------- */

/* A new request's private part with its lock file; *path_rc says whether the ID has
 * one. Returns 0 or TUSC_ENOMEM. */
static int lreq_new(local_t *l, tusc_lock_req_t *req, const char *id, tusc_lock_cb cb, lreq_t **out,
                    int *path_rc) {
  lreq_t *r = calloc(1, sizeof(*r));
  if (r == NULL)
    return TUSC_ENOMEM;
  r->lock = l;
  r->req = req;
  r->cb = cb;
  r->fd = -1;
  *path_rc = 0;
  if (l->lock_path != NULL) {
    char path[PATH_MAX];
    *path_rc = l->lock_path(l->lock_path_arg, id, path, sizeof(path));
    if (*path_rc == 0 && (r->path = strdup(path)) == NULL) {
      free(r);
      return TUSC_ENOMEM;
    }
  }
  *out = r;
  return 0;
}

static int local_acquire(tusc_lock_t *base, uv_loop_t *loop, tusc_lock_req_t *req, const char *id,
                         int64_t timeout_ms, tusc_lock_cb cb) {
  local_t *l = (local_t *)base;
  lreq_t *r;
  int path_rc;
  int rc = lreq_new(l, req, id, cb, &r, &path_rc);
  if (rc < 0)
    return rc;
  /* Only needed to wait; made here, before anyone can hand the request over. */
  uv_timer_t *timer = timeout_ms > 0 ? malloc(sizeof(*timer)) : NULL;
  if (timeout_ms > 0 && (timer == NULL || uv_timer_init(loop, timer) != 0)) {
    free(timer);
    lreq_free(r);
    return TUSC_ENOMEM;
  }
  if (timer != NULL)
    timer->data = r;
  r->timer = timer;

  bool wait = false;
  uint64_t h = hash_id(id);
  uv_mutex_lock(&l->mutex);
  r->ctx = ctx_get_locked(l, loop);
  entry_t *e = r->ctx != NULL && path_rc == 0 ? entry_get_locked(l, id, h) : NULL;
  if (r->ctx == NULL || (path_rc == 0 && e == NULL)) {
    uv_mutex_unlock(&l->mutex);
    lreq_free(r);
    return TUSC_ENOMEM;
  }
  if (path_rc != 0) {
    r->state = LS_ENDING; /* no lock file for this ID: say so through the callback */
    r->status = path_rc;
    queue_locked(r);
  } else {
    bool elsewhere;
    rc = try_take_locked(l, r, e, &elsewhere);
    if (rc == 0) {
      r->state = LS_GRANTED;
      queue_locked(r);
    } else if (rc == TUSC_ELOCKED && timeout_ms > 0) {
      r->state = LS_WAITING;
      r->poll = elsewhere;
      waiter_add_locked(e, r);
      if (e->holder != NULL)
        ask_locked(l, e->holder);
      wait = true;
    } else {
      r->state = LS_ENDING;
      r->status = rc == TUSC_ELOCKED ? TUSC_ELOCK_TIMEOUT : rc;
      queue_locked(r);
      entry_maybe_free_locked(l, e);
    }
  }
  req->impl = r;
  if (wait) {
    /* Set before anyone can hand it over and on_ctx_async looks (this thread, later). */
    uint64_t now = uv_now(loop);
    r->deadline = now + (uint64_t)timeout_ms;
    r->last_ask = now;
    uv_timer_start(r->timer, on_wait_timer, next_look_locked(r, now), 0);
  }
  uv_mutex_unlock(&l->mutex);
  if (!wait)
    timer_drop(r);
  if (wait) {
    atomic_fetch_add(&l->waits, 1);
    if (req->on_wait != NULL)
      req->on_wait(req);
  }
  return 0;
}

/* acquire's first step, minus everything after a failure. */
static int local_try_acquire(tusc_lock_t *base, uv_loop_t *loop, tusc_lock_req_t *req,
                             const char *id) {
  local_t *l = (local_t *)base;
  lreq_t *r;
  int path_rc;
  int rc = lreq_new(l, req, id, NULL, &r, &path_rc);
  if (rc < 0)
    return rc;
  rc = path_rc;
  if (rc == 0) {
    uv_mutex_lock(&l->mutex);
    r->ctx = ctx_get_locked(l, loop);
    entry_t *e = r->ctx != NULL ? entry_get_locked(l, id, hash_id(id)) : NULL;
    bool elsewhere;
    rc = e == NULL ? TUSC_ENOMEM : try_take_locked(l, r, e, &elsewhere);
    if (rc == 0) {
      r->state = LS_HELD;
      req->impl = r;
    } else if (e != NULL) {
      entry_maybe_free_locked(l, e);
    }
    uv_mutex_unlock(&l->mutex);
  }
  if (rc != 0)
    lreq_free(r);
  return rc;
}

static int local_cancel(tusc_lock_req_t *req) {
  lreq_t *r = req->impl;
  local_t *l = r->lock;
  uv_mutex_lock(&l->mutex);
  switch (r->state) {
  case LS_WAITING: {
    entry_t *e = r->entry;
    waiter_remove_locked(e, r);
    r->entry = NULL;
    entry_maybe_free_locked(l, e);
    break;
  }
  case LS_GRANTED:
    drop_holder_locked(l, r); /* the next waiter gets it */
    break;
  case LS_ENDING:
    break; /* whatever it was going to report, it reports cancelled */
  case LS_HELD:
  case LS_DONE:
    uv_mutex_unlock(&l->mutex);
    return UV_EINVAL;
  }
  r->state = LS_ENDING;
  r->status = UV_ECANCELED;
  r->asked = false;
  queue_locked(r);
  uv_mutex_unlock(&l->mutex);
  timer_drop(r);
  return 0;
}

static void local_release(tusc_lock_req_t *req) {
  lreq_t *r = req->impl;
  local_t *l = r->lock;
  uv_mutex_lock(&l->mutex);
  if (r->state != LS_HELD) {
    uv_mutex_unlock(&l->mutex);
    return;
  }
  drop_holder_locked(l, r);
  end_locked(r);
  uv_mutex_unlock(&l->mutex);
  req->impl = NULL;
  lreq_free(r);
}

/* Requests and loop contexts still alive here are a caller's bug (see lock.h); their
 * entries are freed, the contexts left alone (their loops may still point at them). */
static void local_free(tusc_lock_t *base) {
  local_t *l = (local_t *)base;
  for (size_t i = 0; i < l->bucket_count; i++) {
    entry_t *e = l->buckets[i];
    while (e != NULL) {
      entry_t *next = e->next;
      free(e);
      e = next;
    }
  }
  free(l->buckets);
  uv_mutex_destroy(&l->mutex);
  free(l);
}

static const tusc_lock_ops_t local_ops = {
    .acquire = local_acquire,
    .try_acquire = local_try_acquire,
    .cancel = local_cancel,
    .release = local_release,
    .free = local_free,
};

int tusc_lock_local_new(tusc_lock_path_fn lock_path, void *arg, unsigned file_perms,
                        tusc_lock_t **out) {
  local_t *l = calloc(1, sizeof(*l));
  if (l == NULL)
    return TUSC_ENOMEM;
  l->buckets = calloc(INITIAL_BUCKETS, sizeof(*l->buckets));
  if (l->buckets == NULL || uv_mutex_init(&l->mutex) != 0) {
    free(l->buckets);
    free(l);
    return TUSC_ENOMEM;
  }
  l->base.ops = &local_ops;
  l->bucket_count = INITIAL_BUCKETS;
  l->lock_path = lock_path;
  l->lock_path_arg = arg;
  l->file_perms = file_perms;
  atomic_init(&l->waits, 0);
  atomic_init(&l->handovers, 0);
  atomic_init(&l->retries, 0);
  atomic_init(&l->asks, 0);
  *out = &l->base;
  return 0;
}

void tusc_lock_local_stats(tusc_lock_t *lock, tusc_lock_local_stats_t *out) {
  local_t *l = (local_t *)lock;
  out->waits = atomic_load(&l->waits);
  out->handovers = atomic_load(&l->handovers);
  out->retries = atomic_load(&l->retries);
  out->asks = atomic_load(&l->asks);
}

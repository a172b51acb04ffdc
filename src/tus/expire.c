/*
 * expire — see expire.h.
 *
 * Invariants: `mutex` guards the heap (and `gone`) only; no disk I/O and no lock call
 * happens while it is held, so creators (tusc_expire_track on a worker loop) never wait
 * for a disk. An entry popped by a sweep is owned by that sweep until it is re-filed or
 * freed. The rebuild and each sweep have their own uv_work_t so that sweeps go on during
 * a long start-up walk.
 *
 * A sweep works in batches of at most SWEEP_BATCH due entries, in three steps: on the
 * pool, pop and judge them (re-filing or forgetting what is not expired); on the loop,
 * try each expired one's lock once (lock.h, timeout 0: busy means someone is uploading,
 * so it is re-filed); on the pool, with those locks held, judge again and delete; then,
 * on the loop, release and go on with the next batch. So no pool thread ever touches a
 * lock.
 */
#include "tus/expire.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "metrics/metrics.h"
#include "tus/headers.h"

/* Bit 62 of an entry's key says its ID is packed as 16 bytes; deadlines (unix ms) stay
 * far below it. */
#define PACKED_FLAG (INT64_C(1) << 62)
#define KEY_DEADLINE(k) ((k) & ~PACKED_FLAG)

typedef struct entry_s {
  int64_t key; /* deadline ms | PACKED_FLAG */
  union {
    unsigned char hex[16]; /* a generated ID, 32 lowercase hex characters */
    char *str;             /* any other ID, heap copy */
  } id;
} entry_t;

struct tusc_expire_s {
  tusc_store_t *store;
  tusc_lock_t *lock;
  int64_t expire_after_ms;
  int64_t started_s;

  uv_mutex_t mutex;
  entry_t *heap;
  size_t count, cap;
  size_t str_bytes;

  atomic_bool stopping;
  uv_loop_t *loop;
  uv_timer_t timer;
  bool timer_init;
  uint64_t rebuild_t0; /* when the startup walk began (uv_hrtime) */
  bool sweep_running;  /* on the loop of the sweep */

  /* post-terminate for expired uploads: the sweep (thread pool) collects their infos,
   * its after-work callback (on `loop`) hands them to a hooks worker of that loop. */
  tusc_hooks_t *hooks;
  tusc_hooks_worker_t *hw; /* NULL unless post-terminate is enabled; on `loop` */
  bool collect;            /* set before the first sweep: hw was made */
  struct gone *gone;       /* under mutex */

  /* The store's own housekeeping (tusc_store_sweep: the S3 store aborts multipart
   * uploads no upload names), started from the timer, one at a time, on `loop`. */
  tusc_store_req_t orphans_req;
  bool orphans_running;
  bool orphans_unsupported;
};

struct gone {
  struct gone *next;
  tusc_upload_info_t info;
};

static void gone_free(struct gone *g) {
  while (g != NULL) {
    struct gone *next = g->next;
    tusc_upload_info_dispose(&g->info);
    free(g);
    g = next;
  }
}

/* --- pure rules ------------------------------------------------------------------- */

int64_t tusc_expire_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t tusc_expire_deadline_ms(const tusc_upload_info_t *info, int64_t expire_after_ms) {
  if (expire_after_ms <= 0 || info->is_final)
    return 0;
  if (!info->size_is_deferred && info->size >= 0 && info->offset >= info->size)
    return 0;
  int64_t last = info->created_at * 1000;
  if (info->modified_ms > last)
    last = info->modified_ms;
  return last + expire_after_ms;
}

bool tusc_expire_is_expired(const tusc_upload_info_t *info, int64_t expire_after_ms,
                            int64_t now_ms) {
  int64_t deadline = tusc_expire_deadline_ms(info, expire_after_ms);
  return deadline > 0 && now_ms >= deadline;
}

uint64_t tusc_expire_sweep_interval_ms(int64_t expire_after_ms) {
  int64_t ms = expire_after_ms / 2;
  if (ms > 60000)
    ms = 60000;
  if (ms < 1000)
    ms = 1000;
  return (uint64_t)ms;
}

/* --- entries and the heap ----------------------------------------------------------- */

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

static int entry_make(entry_t *e, const char *id, int64_t deadline_ms, size_t *str_bytes) {
  size_t len = strnlen(id, TUSC_ID_MAX + 1);
  if (len == 0 || len > TUSC_ID_MAX)
    return TUSC_EINVALID_ID;
  if (deadline_ms < 0)
    deadline_ms = 0;
  if (len == 32) {
    bool hex = true;
    for (size_t i = 0; i < 32 && hex; i += 2) {
      int hi = hexval(id[i]), lo = hexval(id[i + 1]);
      if (hi < 0 || lo < 0)
        hex = false;
      else
        e->id.hex[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    if (hex) {
      e->key = deadline_ms | PACKED_FLAG;
      return 0;
    }
  }
  e->id.str = strdup(id);
  if (e->id.str == NULL)
    return TUSC_ENOMEM;
  *str_bytes += len + 1;
  e->key = deadline_ms;
  return 0;
}

static void entry_id(const entry_t *e, char out[TUSC_ID_MAX + 1]) {
  static const char digits[] = "0123456789abcdef";
  if (e->key & PACKED_FLAG) {
    for (size_t i = 0; i < 16; i++) {
      out[2 * i] = digits[e->id.hex[i] >> 4];
      out[2 * i + 1] = digits[e->id.hex[i] & 15];
    }
    out[32] = '\0';
    return;
  }
  size_t len = strlen(e->id.str);
  memcpy(out, e->id.str, len + 1);
}

static void entry_dispose(entry_t *e, size_t *str_bytes) {
  if (!(e->key & PACKED_FLAG)) {
    *str_bytes -= strlen(e->id.str) + 1;
    free(e->id.str);
  }
}

static bool earlier(const entry_t *a, const entry_t *b) {
  return KEY_DEADLINE(a->key) < KEY_DEADLINE(b->key);
}

/* Caller holds the mutex. Takes over e's string. */
static int heap_push(tusc_expire_t *exp, const entry_t *e) {
  if (exp->count == exp->cap) {
    size_t cap = exp->cap ? exp->cap + exp->cap / 2 : 1024;
    entry_t *grown = realloc(exp->heap, cap * sizeof(*grown));
    if (grown == NULL)
      return TUSC_ENOMEM;
    exp->heap = grown;
    exp->cap = cap;
  }
  size_t i = exp->count++;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!earlier(e, &exp->heap[parent]))
      break;
    exp->heap[i] = exp->heap[parent];
    i = parent;
  }
  exp->heap[i] = *e;
  return 0;
}

/* Caller holds the mutex and checked count > 0. */
static entry_t heap_pop(tusc_expire_t *exp) {
  entry_t top = exp->heap[0];
  entry_t last = exp->heap[--exp->count];
  size_t i = 0, n = exp->count;
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= n)
      break;
    if (child + 1 < n && earlier(&exp->heap[child + 1], &exp->heap[child]))
      child++;
    if (!earlier(&exp->heap[child], &last))
      break;
    exp->heap[i] = exp->heap[child];
    i = child;
  }
  if (n > 0)
    exp->heap[i] = last;
  return top;
}

/* --- public: index ------------------------------------------------------------------ */

int tusc_expire_new(tusc_store_t *store, tusc_lock_t *lock, int64_t expire_after_ms,
                    tusc_expire_t **out) {
  if (expire_after_ms <= 0 || store == NULL || lock == NULL)
    return TUSC_EINVALID_ARGUMENT;
  tusc_expire_t *exp = calloc(1, sizeof(*exp));
  if (exp == NULL)
    return TUSC_ENOMEM;
  if (uv_mutex_init(&exp->mutex) != 0) {
    free(exp);
    return TUSC_ENOMEM;
  }
  exp->store = store;
  exp->lock = lock;
  exp->expire_after_ms = expire_after_ms;
  exp->started_s = (int64_t)time(NULL);
  atomic_init(&exp->stopping, false);
  *out = exp;
  return 0;
}

void tusc_expire_free(tusc_expire_t *exp) {
  if (exp == NULL)
    return;
  for (size_t i = 0; i < exp->count; i++)
    entry_dispose(&exp->heap[i], &exp->str_bytes);
  free(exp->heap);
  gone_free(exp->gone);
  uv_mutex_destroy(&exp->mutex);
  free(exp);
}

int tusc_expire_track(tusc_expire_t *exp, const char *id, int64_t deadline_ms) {
  entry_t e;
  uv_mutex_lock(&exp->mutex);
  int rc = entry_make(&e, id, deadline_ms, &exp->str_bytes);
  if (rc == 0) {
    rc = heap_push(exp, &e);
    if (rc != 0)
      entry_dispose(&e, &exp->str_bytes);
  }
  uv_mutex_unlock(&exp->mutex);
  return rc;
}

bool tusc_expire_due(tusc_expire_t *exp, int64_t now_ms) {
  uv_mutex_lock(&exp->mutex);
  bool due = exp->count > 0 && KEY_DEADLINE(exp->heap[0].key) <= now_ms;
  uv_mutex_unlock(&exp->mutex);
  return due;
}

size_t tusc_expire_index_entries(tusc_expire_t *exp, size_t *bytes) {
  uv_mutex_lock(&exp->mutex);
  size_t n = exp->count;
  if (bytes != NULL)
    *bytes = exp->cap * sizeof(entry_t) + exp->str_bytes;
  uv_mutex_unlock(&exp->mutex);
  return n;
}

struct rebuild_ctx {
  tusc_expire_t *exp;
  int64_t created_after_s;
  size_t filed;
};

static int rebuild_visit(const tusc_upload_info_t *info, void *arg) {
  struct rebuild_ctx *ctx = arg;
  tusc_expire_t *exp = ctx->exp;
  if (atomic_load(&exp->stopping))
    return TUSC_ESERVER_SHUTDOWN;
  if (info->created_at > ctx->created_after_s)
    return 0;
  int64_t deadline = tusc_expire_deadline_ms(info, exp->expire_after_ms);
  if (deadline == 0)
    return 0;
  int rc = tusc_expire_track(exp, info->id, deadline);
  if (rc == TUSC_ENOMEM)
    return rc;
  if (rc == 0)
    ctx->filed++;
  return 0;
}

struct rebuild {
  struct rebuild_ctx ctx;
  tusc_store_req_t req;
  tusc_expire_rebuild_cb cb;
  void *arg;
};

static void on_listed(tusc_store_req_t *req, int status) {
  struct rebuild *rb = req->data;
  if (rb->cb != NULL)
    rb->cb(rb->arg, status, rb->ctx.filed);
  free(rb);
}

int tusc_expire_rebuild(tusc_expire_t *exp, uv_loop_t *loop, int64_t created_after_s,
                        tusc_expire_rebuild_cb cb, void *arg) {
  struct rebuild *rb = calloc(1, sizeof(*rb));
  if (rb == NULL)
    return TUSC_ENOMEM;
  rb->ctx.exp = exp;
  rb->ctx.created_after_s = created_after_s;
  rb->cb = cb;
  rb->arg = arg;
  rb->req.data = rb;
  int rc = tusc_store_list(exp->store, loop, &rb->req, rebuild_visit, &rb->ctx, on_listed);
  if (rc != 0)
    free(rb);
  return rc;
}

/* --- sweeping ----------------------------------------------------------------------- */

enum verdict { KEEP, FORGET, DELETE };

/* What to do with an upload, given its lookup (`rc`, `info`); *deadline gets its current
 * deadline for KEEP. Returns 0, or the lookup's I/O error. */
static int judge(tusc_expire_t *exp, int rc, const tusc_upload_info_t *info, int64_t now_ms,
                 enum verdict *v, int64_t *deadline) {
  if (rc == 0) {
    *deadline = tusc_expire_deadline_ms(info, exp->expire_after_ms);
    *v = *deadline == 0 ? FORGET : now_ms >= *deadline ? DELETE : KEEP;
  } else if (rc == TUSC_ENOT_FOUND || rc == TUSC_EINVALID_ID) {
    *v = FORGET;
    rc = 0;
  }
  return rc;
}

#define SWEEP_BATCH 64

static void fire_post_terminate(tusc_expire_t *exp);

typedef struct sweep_s sweep_t;

typedef struct candidate_s {
  sweep_t *sw;
  tusc_lock_req_t lock;
  int lock_status; /* of its acquire, 1 while pending */
  char id[TUSC_ID_MAX + 1];
} candidate_t;

struct sweep_s {
  tusc_expire_t *exp;
  uv_loop_t *loop;
  uv_work_t work;        /* only to start in a later loop turn */
  tusc_store_req_t sreq; /* the store's requests, one at a time */
  tusc_upload_info_t info;
  char cur[TUSC_ID_MAX + 1]; /* judged now */
  size_t di;                 /* next candidate to delete */
  enum verdict v;
  int64_t deadline;
  int64_t now_ms;
  int64_t retry_ms;
  tusc_expire_sweep_cb cb;
  void *arg;
  tusc_expire_stats_t stats;
  int result;
  bool more;                      /* the batch was full: there may be more due */
  candidate_t cands[SWEEP_BATCH]; /* this batch's expired uploads */
  size_t count;
  size_t locking; /* acquires pending */
};

/* What happened to one due entry. An I/O error re-files it as well. */
static void settle(sweep_t *sw, const char *id, int rc, enum verdict v, int64_t deadline) {
  if (rc < 0 && rc != TUSC_ELOCK_TIMEOUT) {
    sw->stats.failed++;
    TUSC_LOG(TUSC_LOG_WARN, "expire %s: %s", id, tusc_strerror(rc));
  }
  if (rc != 0) {
    /* Busy (someone is uploading right now) or an error: look again later. */
    v = KEEP;
    deadline = sw->now_ms + sw->retry_ms;
  }
  if (v == KEEP) {
    if (tusc_expire_track(sw->exp, id, deadline) == 0)
      sw->stats.refiled++;
  } else if (v == DELETE) {
    sw->stats.deleted++;
  } else {
    sw->stats.forgotten++;
  }
}

static void sweep_batch(sweep_t *sw);
static void batch_judged(sweep_t *sw);

static void judge_next(sweep_t *sw);

static void on_judged(tusc_store_req_t *req, int status) {
  sweep_t *sw = req->data;
  enum verdict v = FORGET;
  int64_t deadline = 0;
  int rc = judge(sw->exp, status, &sw->info, sw->now_ms, &v, &deadline);
  if (rc == 0 && v == DELETE)
    memcpy(sw->cands[sw->count++].id, sw->cur, strlen(sw->cur) + 1);
  else
    settle(sw, sw->cur, rc, v, deadline);
  judge_next(sw);
}

/* Pops the due entries of one batch, one store lookup after the other, and keeps the
 * expired ones as candidates. */
static void judge_next(sweep_t *sw) {
  tusc_expire_t *exp = sw->exp;
  for (;;) {
    if (atomic_load(&exp->stopping)) {
      sw->result = TUSC_ESERVER_SHUTDOWN;
      break;
    }
    if (sw->count == SWEEP_BATCH) {
      sw->more = true;
      break;
    }
    uv_mutex_lock(&exp->mutex);
    if (exp->count == 0 || KEY_DEADLINE(exp->heap[0].key) > sw->now_ms) {
      uv_mutex_unlock(&exp->mutex);
      break;
    }
    entry_t e = heap_pop(exp);
    entry_id(&e, sw->cur);
    entry_dispose(&e, &exp->str_bytes);
    uv_mutex_unlock(&exp->mutex);

    sw->stats.checked++;
    tusc_upload_info_dispose(&sw->info);
    tusc_upload_info_init(&sw->info);
    sw->sreq.data = sw;
    int rc = tusc_store_get_info(exp->store, sw->loop, &sw->sreq, sw->cur, &sw->info, on_judged);
    if (rc == 0)
      return;
    settle(sw, sw->cur, rc, FORGET, 0);
  }
  batch_judged(sw);
}

static void batch_deleted(sweep_t *sw);
static void delete_next(sweep_t *sw);

static void on_expired_terminated(tusc_store_req_t *req, int status) {
  sweep_t *sw = req->data;
  tusc_expire_t *exp = sw->exp;
  candidate_t *c = &sw->cands[sw->di];
  int rc = 0;
  if (sw->v == DELETE && status != 0)
    rc = status == TUSC_ENOT_FOUND ? 0 : status;
  if (sw->v == DELETE && status == 0) {
    tusc_log_event(TUSC_LOG_INFO, "UploadExpired", "id", c->id, NULL);
    tusc_metrics_upload_expired();
    struct gone *g = exp->collect ? calloc(1, sizeof(*g)) : NULL;
    if (g != NULL) {
      g->info = sw->info; /* moved */
      tusc_upload_info_init(&sw->info);
      uv_mutex_lock(&exp->mutex);
      g->next = exp->gone;
      exp->gone = g;
      uv_mutex_unlock(&exp->mutex);
    }
  }
  settle(sw, c->id, rc, sw->v, sw->deadline);
  sw->di++;
  delete_next(sw);
}

/* A candidate's info, read again with its lock held: a PATCH may have finished (or
 * refreshed the upload) between the look and the lock. */
static void on_held_judged(tusc_store_req_t *req, int status) {
  sweep_t *sw = req->data;
  candidate_t *c = &sw->cands[sw->di];
  sw->v = FORGET;
  sw->deadline = 0;
  int rc = judge(sw->exp, status, &sw->info, sw->now_ms, &sw->v, &sw->deadline);
  if (rc == 0 && (sw->v == DELETE || sw->v == FORGET)) {
    /* For FORGET this removes the lock file the lock call may just have made for an
     * upload that is gone (terminate then reports not-found). */
    sw->sreq.data = sw;
    rc = tusc_store_terminate(sw->exp->store, sw->loop, &sw->sreq, c->id, on_expired_terminated);
    if (rc == 0)
      return;
    sw->v = KEEP;
  }
  settle(sw, c->id, rc, sw->v, sw->deadline);
  sw->di++;
  delete_next(sw);
}

/* Deletes the candidates whose lock the sweep holds, one after the other. */
static void delete_next(sweep_t *sw) {
  while (sw->di < sw->count) {
    candidate_t *c = &sw->cands[sw->di];
    if (c->lock_status == 0) {
      tusc_upload_info_dispose(&sw->info);
      tusc_upload_info_init(&sw->info);
      sw->sreq.data = sw;
      int rc = tusc_store_get_info(sw->exp->store, sw->loop, &sw->sreq, c->id, &sw->info,
                                   on_held_judged);
      if (rc == 0)
        return;
      settle(sw, c->id, rc, KEEP, 0);
    }
    sw->di++;
  }
  batch_deleted(sw);
}

static void sweep_end(sweep_t *sw) {
  tusc_expire_t *exp = sw->exp;
  exp->sweep_running = false;
  if (sw->cb != NULL)
    sw->cb(sw->arg, sw->result, &sw->stats);
  tusc_upload_info_dispose(&sw->info);
  free(sw);
}

/* Lets go of the batch's locks, hands deletions to post-terminate, goes on. */
static void batch_deleted(sweep_t *sw) {
  for (size_t i = 0; i < sw->count; i++)
    if (sw->cands[i].lock_status == 0)
      tusc_lock_release(&sw->cands[i].lock);
  fire_post_terminate(sw->exp);
  if (sw->more && sw->result == 0)
    sweep_batch(sw);
  else
    sweep_end(sw);
}

/* Loop: every candidate's lock was tried once. */
static void batch_locked(sweep_t *sw) {
  bool any = false;
  for (size_t i = 0; i < sw->count; i++) {
    candidate_t *c = &sw->cands[i];
    if (c->lock_status == 0)
      any = true;
    else
      settle(sw, c->id, c->lock_status, KEEP, 0); /* TUSC_ELOCK_TIMEOUT: busy */
  }
  if (any) {
    sw->di = 0;
    delete_next(sw);
    return;
  }
  if (sw->more && sw->result == 0)
    sweep_batch(sw);
  else
    sweep_end(sw);
}

static void on_candidate_lock(tusc_lock_req_t *req, int status) {
  candidate_t *c = req->data;
  c->lock_status = status;
  if (--c->sw->locking == 0)
    batch_locked(c->sw);
}

/* Tries each candidate's lock once, without asking anyone to let go. */
static void batch_judged(sweep_t *sw) {
  if (sw->count == 0) {
    sweep_end(sw);
    return;
  }
  /* Callbacks come later, on this loop: count them all before any can arrive. */
  sw->locking = sw->count;
  for (size_t i = 0; i < sw->count; i++) {
    candidate_t *c = &sw->cands[i];
    memset(&c->lock, 0, sizeof(c->lock));
    c->sw = sw;
    c->lock.data = c;
    c->lock_status = 1;
    int rc = tusc_lock_acquire(sw->exp->lock, sw->loop, &c->lock, c->id, 0, on_candidate_lock);
    if (rc < 0) {
      c->lock_status = rc;
      sw->locking--;
    }
  }
  if (sw->locking == 0)
    batch_locked(sw);
}

static void sweep_batch(sweep_t *sw) {
  sw->count = 0;
  sw->more = false;
  judge_next(sw);
}

static void on_sweep_start_work(uv_work_t *work) {
  (void)work;
}

/* In a later loop turn than tusc_expire_sweep, so that cb never runs inline. */
static void on_sweep_start(uv_work_t *work, int status) {
  sweep_t *sw = work->data;
  if (status < 0) {
    sw->result = status;
    sweep_end(sw);
    return;
  }
  sweep_batch(sw);
}

int tusc_expire_sweep(tusc_expire_t *exp, uv_loop_t *loop, int64_t now_ms, tusc_expire_sweep_cb cb,
                      void *arg) {
  if (exp->sweep_running)
    return UV_EBUSY;
  sweep_t *sw = calloc(1, sizeof(*sw));
  if (sw == NULL)
    return TUSC_ENOMEM;
  sw->exp = exp;
  sw->loop = loop;
  sw->now_ms = now_ms;
  sw->retry_ms = (int64_t)tusc_expire_sweep_interval_ms(exp->expire_after_ms);
  sw->cb = cb;
  sw->arg = arg;
  tusc_upload_info_init(&sw->info);
  sw->work.data = sw;
  int rc = uv_queue_work(loop, &sw->work, on_sweep_start_work, on_sweep_start);
  if (rc < 0) {
    free(sw);
    return rc;
  }
  exp->sweep_running = true;
  return 0;
}

/* --- on a loop ---------------------------------------------------------------------- */

static void on_rebuilt(void *arg, int status, size_t filed) {
  tusc_expire_t *exp = arg;
  if (status != 0 && status != TUSC_ESERVER_SHUTDOWN)
    tusc_log_msg(TUSC_LOG_ERROR, "expiration: walking the store failed: %s", tusc_strerror(status));
  else if (status == 0)
    tusc_log_msg(TUSC_LOG_INFO, "expiration: %zu unfinished uploads indexed in %.1f s", filed,
                 (double)(uv_hrtime() - exp->rebuild_t0) / 1e9);
}

static void on_periodic_sweep_done(void *arg, int status, const tusc_expire_stats_t *s) {
  (void)arg;
  (void)status;
  if (s->deleted > 0 || s->failed > 0)
    tusc_log_msg(TUSC_LOG_INFO, "expiration: sweep deleted %zu, checked %zu, failed %zu",
                 s->deleted, s->checked, s->failed);
}

struct hook_call {
  uint64_t start_ms;
};

static void on_hook_done(int status, tusc_hook_response_t *resp, void *arg) {
  (void)status;
  (void)resp;
  struct hook_call *call = arg;
  uint64_t now = tusc_now_ms();
  tusc_metrics_hook_done(TUSC_HOOK_POST_TERMINATE, now > call->start_ms ? now - call->start_ms : 0);
  tusc_metrics_hook_queue(-1);
  free(call);
}

/* post-terminate for what the sweep deleted, as tusd would send it for a termination
 * without a request: an empty HTTPRequest. A full queue drops (the runner logs it). */
static void fire_post_terminate(tusc_expire_t *exp) {
  uv_mutex_lock(&exp->mutex);
  struct gone *g = exp->gone;
  exp->gone = NULL;
  uv_mutex_unlock(&exp->mutex);
  for (struct gone *it = g; it != NULL && exp->hw != NULL; it = it->next) {
    struct hook_call *call = malloc(sizeof(*call));
    if (call == NULL)
      break;
    call->start_ms = tusc_now_ms();
    if (tusc_hooks_invoke(exp->hw, TUSC_HOOK_POST_TERMINATE, &it->info, NULL, on_hook_done, call) ==
        0)
      tusc_metrics_hook_queue(1);
    else
      free(call);
  }
  gone_free(g);
}

void tusc_expire_set_hooks(tusc_expire_t *exp, tusc_hooks_t *hooks) {
  exp->hooks = hooks;
}

static void on_orphans_swept(tusc_store_req_t *req, int status) {
  tusc_expire_t *exp = req->data;
  exp->orphans_running = false;
  if (status != 0)
    tusc_log_msg(TUSC_LOG_WARN, "expiration: store sweep failed: %s", tusc_strerror(status));
}

/* Storage older than the expiry that no upload names is removed as well. */
static void sweep_orphans(tusc_expire_t *exp, int64_t now_ms) {
  if (exp->orphans_running || exp->orphans_unsupported || atomic_load(&exp->stopping))
    return;
  exp->orphans_req.data = exp;
  int rc = tusc_store_sweep(exp->store, exp->loop, &exp->orphans_req,
                            (now_ms - exp->expire_after_ms) / 1000, on_orphans_swept);
  if (rc == 0)
    exp->orphans_running = true;
  else if (rc == TUSC_ENOT_IMPLEMENTED)
    exp->orphans_unsupported = true;
}

/* Nothing due (the steady state) costs one look at the heap's top. */
static void on_timer(uv_timer_t *timer) {
  tusc_expire_t *exp = timer->data;
  int64_t now = tusc_expire_now_ms();
  sweep_orphans(exp, now);
  if (exp->sweep_running || atomic_load(&exp->stopping) || !tusc_expire_due(exp, now))
    return;
  (void)tusc_expire_sweep(exp, exp->loop, now, on_periodic_sweep_done, NULL);
}

int tusc_expire_start(tusc_expire_t *exp, uv_loop_t *loop) {
  exp->loop = loop;
  int rc;
  if (exp->hooks != NULL && tusc_hooks_enabled(exp->hooks, TUSC_HOOK_POST_TERMINATE) &&
      (rc = tusc_hooks_worker_new(exp->hooks, loop, NULL, &exp->hw)) != 0)
    return rc;
  exp->collect = exp->hw != NULL;
  rc = uv_timer_init(loop, &exp->timer);
  if (rc != 0)
    return rc;
  exp->timer.data = exp;
  exp->timer_init = true;
  uint64_t every = tusc_expire_sweep_interval_ms(exp->expire_after_ms);
  rc = uv_timer_start(&exp->timer, on_timer, every, every);
  if (rc != 0)
    return rc;
  exp->rebuild_t0 = uv_hrtime();
  return tusc_expire_rebuild(exp, loop, exp->started_s, on_rebuilt, exp);
}

void tusc_expire_stop(tusc_expire_t *exp) {
  if (exp == NULL)
    return;
  atomic_store(&exp->stopping, true);
  if (exp->hw != NULL) {
    tusc_hooks_worker_close(exp->hw);
    exp->hw = NULL;
  }
  if (exp->timer_init && !uv_is_closing((uv_handle_t *)&exp->timer))
    uv_close((uv_handle_t *)&exp->timer, NULL);
}

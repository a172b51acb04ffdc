/*
 * mem — see mem.h. Every operation is done on the loop in the completion of a pool job
 * without work (so it completes in a later loop turn and can be cancelled like a file
 * store request). Uploads are a linked list: tests hold a handful.
 */
#include "store/mem.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"

struct entry {
  struct entry *next;
  tusc_upload_info_t info; /* offset = len */
  char *data;
  size_t len, cap;
  char **waits; /* finals waiting for this partial */
  size_t wait_count;
};

typedef struct mem_store_s {
  tusc_store_t base;
  uv_mutex_t mutex;
  struct entry *entries;
  tusc_store_pool_t pool;
  tusc_mem_store_options_t opts; /* full_every, drain_delay_ms under mutex */
  atomic_uint_fast64_t full_count;
  tusc_mem_store_faults_t faults; /* under mutex */
} mem_store_t;

struct tusc_upload_s {
  tusc_upload_base_t base;
  mem_store_t *store;
  uv_loop_t *loop;
  tusc_upload_info_t info;
  bool chunk_open, staged_chunk;
  int64_t chunk_start;
  char *staged;
  size_t staged_len, staged_cap;
  uint64_t since_full;
  bool timer_init, timer_armed, closing;
  uv_timer_t timer;
  tusc_store_drain_cb drain;
  void *drain_arg;
  unsigned inflight; /* requests not yet completed */
  int write_err;     /* a write "failed" (faults.write_budget): sticky for the chunk */
};

enum {
  K_GET_INFO = 1,
  K_CREATE,
  K_OPEN,
  K_TERMINATE,
  K_LIST,
  K_WAIT_ADD,
  K_WAIT_TAKE,
  K_SAVE_INFO,
  K_CHUNK_END,
  K_READ,
  K_CONCAT
};

static struct entry *find(mem_store_t *ms, const char *id) {
  for (struct entry *e = ms->entries; e != NULL; e = e->next)
    if (strcmp(e->info.id, id) == 0)
      return e;
  return NULL;
}

/* Deep copy of an info (metadata, partial IDs, owner). */
static int info_copy(tusc_upload_info_t *dst, const tusc_upload_info_t *src) {
  char *json = tusc_upload_info_to_json(src);
  if (json == NULL)
    return TUSC_ENOMEM;
  tusc_upload_info_t tmp;
  tusc_upload_info_init(&tmp);
  int rc = tusc_upload_info_from_json(json, strlen(json), &tmp);
  free(json);
  if (rc != 0) {
    tusc_upload_info_dispose(&tmp);
    return rc;
  }
  /* Fields the JSON does not carry. */
  snprintf(tmp.id, sizeof(tmp.id), "%s", src->id);
  tmp.offset = src->offset;
  tmp.modified_ms = src->modified_ms;
  tusc_upload_info_dispose(dst);
  *dst = tmp;
  return 0;
}

static int grow(char **buf, size_t *cap, size_t need) {
  if (need <= *cap)
    return 0;
  size_t n = *cap ? *cap : 4096;
  while (n < need)
    n *= 2;
  char *g = realloc(*buf, n);
  if (g == NULL)
    return TUSC_ENOMEM;
  *buf = g;
  *cap = n;
  return 0;
}

static void entry_free(struct entry *e) {
  tusc_upload_info_dispose(&e->info);
  free(e->data);
  tusc_store_ids_free(e->waits, e->wait_count);
  free(e);
}

static tusc_store_req_t *req_of(tusc_pool_job_t *job) {
  return (tusc_store_req_t *)(void *)((char *)job - offsetof(tusc_store_req_t, job));
}

static void upload_maybe_free(tusc_upload_t *up);

/* The operation itself, on the loop, mutex held. */
static int do_store_op(mem_store_t *ms, tusc_store_req_t *req) {
  struct entry *e;
  int rc = 0;
  switch (req->kind) {
  case K_GET_INFO:
    e = find(ms, req->id);
    if (e == NULL)
      return TUSC_ENOT_FOUND;
    rc = info_copy(req->info, &e->info);
    if (rc == 0)
      req->info->offset = (int64_t)e->len;
    return rc;
  case K_CREATE:
    if (ms->faults.create_err != 0)
      return ms->faults.create_err;
    if (find(ms, req->info->id) != NULL)
      return UV_EEXIST;
    e = calloc(1, sizeof(*e));
    if (e == NULL)
      return TUSC_ENOMEM;
    tusc_upload_info_init(&e->info);
    req->info->offset = 0;
    if (req->info->created_at == 0)
      req->info->created_at = (int64_t)time(NULL);
    rc = info_copy(&e->info, req->info);
    if (rc != 0) {
      entry_free(e);
      return rc;
    }
    e->next = ms->entries;
    ms->entries = e;
    return 0;
  case K_OPEN: {
    e = find(ms, req->id);
    if (e == NULL)
      return TUSC_ENOT_FOUND;
    tusc_upload_t *up = calloc(1, sizeof(*up));
    if (up == NULL)
      return TUSC_ENOMEM;
    up->base.store = &ms->base;
    up->store = ms;
    up->loop = req->loop;
    tusc_upload_info_init(&up->info);
    rc = info_copy(&up->info, &e->info);
    if (rc != 0) {
      tusc_upload_info_dispose(&up->info);
      free(up);
      return rc;
    }
    up->info.offset = (int64_t)e->len;
    req->upload = up;
    return 0;
  }
  case K_TERMINATE:
    for (struct entry **pp = &ms->entries; *pp != NULL; pp = &(*pp)->next) {
      if (strcmp((*pp)->info.id, req->id) == 0) {
        e = *pp;
        *pp = e->next;
        entry_free(e);
        return 0;
      }
    }
    return TUSC_ENOT_FOUND;
  case K_LIST:
    for (e = ms->entries; e != NULL && rc == 0; e = e->next) {
      e->info.offset = (int64_t)e->len;
      rc = req->visit(&e->info, req->visit_arg);
    }
    return rc;
  case K_WAIT_ADD: {
    e = find(ms, req->id);
    if (e == NULL)
      return TUSC_ENOT_FOUND;
    char **g = realloc(e->waits, (e->wait_count + 1) * sizeof(*g));
    if (g == NULL)
      return TUSC_ENOMEM;
    e->waits = g;
    e->waits[e->wait_count] = strdup(req->ids_in[0]);
    if (e->waits[e->wait_count] == NULL)
      return TUSC_ENOMEM;
    e->wait_count++;
    return 0;
  }
  case K_WAIT_TAKE:
    e = find(ms, req->id);
    if (e != NULL) {
      req->ids = e->waits;
      req->id_count = e->wait_count;
      e->waits = NULL;
      e->wait_count = 0;
    }
    return 0;
  default:
    return TUSC_EINTERNAL;
  }
}

/* An upload's operation, on the loop, mutex held. */
static int do_upload_op(mem_store_t *ms, tusc_store_req_t *req) {
  tusc_upload_t *up = req->up;
  struct entry *e = find(ms, up->info.id);
  if (e == NULL)
    return TUSC_ENOT_FOUND;
  switch (req->kind) {
  case K_SAVE_INFO: {
    if (ms->faults.save_err != 0)
      return ms->faults.save_err;
    int64_t off = (int64_t)e->len;
    int rc = info_copy(&e->info, &up->info);
    e->info.offset = off;
    return rc;
  }
  case K_CHUNK_END: {
    int rc = 0;
    if (up->staged_chunk && req->flags == TUSC_STORE_KEEP && up->write_err == 0) {
      rc = grow(&e->data, &e->cap, e->len + up->staged_len);
      if (rc == 0) {
        memcpy(e->data + e->len, up->staged, up->staged_len);
        e->len += up->staged_len;
      }
    } else if (!up->staged_chunk && req->flags == TUSC_STORE_DISCARD) {
      e->len = (size_t)up->chunk_start;
    }
    if (rc == 0 && req->flags == TUSC_STORE_KEEP)
      rc = up->write_err != 0 ? up->write_err : ms->faults.sync_err;
    up->chunk_open = false;
    up->staged_len = 0;
    up->info.offset = (int64_t)e->len;
    return rc;
  }
  case K_READ: {
    const char *src = e->data;
    size_t avail = e->len;
    int64_t off = req->offset;
    if (up->chunk_open && up->staged_chunk && off >= up->chunk_start) {
      src = up->staged;
      avail = up->staged_len;
      off -= up->chunk_start;
    }
    size_t n = (size_t)off >= avail ? 0 : avail - (size_t)off;
    if (n > req->len)
      n = req->len;
    if (n > 0)
      memcpy(req->buf, src + off, n);
    req->nread = n;
    return 0;
  }
  case K_CONCAT: {
    size_t total = 0;
    int rc = 0;
    e->len = 0; /* on an error the final holds no bytes, as in the file store */
    up->info.offset = 0;
    for (size_t i = 0; rc == 0 && i < req->n_in; i++) {
      struct entry *p = find(ms, req->ids_in[i]);
      if (p == NULL)
        rc = TUSC_ENOT_FOUND;
      else if (p->info.size_is_deferred || (int64_t)p->len != p->info.size)
        rc = TUSC_EUPLOAD_NOT_FINISHED;
      else
        total += p->len;
    }
    if (rc == 0 && !up->info.size_is_deferred && up->info.size >= 0 &&
        (int64_t)total > up->info.size)
      rc = TUSC_EUPLOAD_SIZE_EXCEEDED;
    if (rc == 0)
      rc = grow(&e->data, &e->cap, total);
    if (rc != 0)
      return rc;
    for (size_t i = 0; i < req->n_in; i++) {
      struct entry *p = find(ms, req->ids_in[i]);
      if (p->len > 0)
        memcpy(e->data + e->len, p->data, p->len);
      e->len += p->len;
    }
    up->info.offset = (int64_t)e->len;
    return 0;
  }
  default:
    return TUSC_EINTERNAL;
  }
}

static void on_done(tusc_pool_job_t *job, int status) {
  tusc_store_req_t *req = req_of(job);
  mem_store_t *ms = (mem_store_t *)req->store;
  int rc = status;
  if (rc == 0) {
    uv_mutex_lock(&ms->mutex);
    rc = req->up != NULL ? do_upload_op(ms, req) : do_store_op(ms, req);
    uv_mutex_unlock(&ms->mutex);
  }
  tusc_upload_t *up = req->up;
  tusc_store_req_done(req, rc); /* it may close the upload: freed below, not in there */
  if (up != NULL) {
    up->inflight--;
    upload_maybe_free(up);
  }
}

static int submit(tusc_store_req_t *req, int kind) {
  mem_store_t *ms = (mem_store_t *)req->store;
  req->kind = kind;
  req->upload = NULL;
  req->ids = NULL;
  req->id_count = 0;
  req->nread = 0;
  if (req->up != NULL) {
    if (req->up->closing)
      return TUSC_EINVALID_ARGUMENT;
    req->loop = req->up->loop;
  }
  int rc = tusc_store_pool_submit(&ms->pool, req->loop, &req->job, NULL, on_done, false);
  if (rc == 0 && req->up != NULL)
    req->up->inflight++;
  return rc;
}

static int m_get_info(tusc_store_req_t *req) {
  return submit(req, K_GET_INFO);
}
static int m_create(tusc_store_req_t *req) {
  return submit(req, K_CREATE);
}
static int m_open(tusc_store_req_t *req) {
  return submit(req, K_OPEN);
}
static int m_terminate(tusc_store_req_t *req) {
  return submit(req, K_TERMINATE);
}
static int m_list(tusc_store_req_t *req) {
  return submit(req, K_LIST);
}
static int m_wait_add(tusc_store_req_t *req) {
  return submit(req, K_WAIT_ADD);
}
static int m_wait_take(tusc_store_req_t *req) {
  return submit(req, K_WAIT_TAKE);
}
static int m_save_info(tusc_store_req_t *req) {
  return submit(req, K_SAVE_INFO);
}
static int m_chunk_begin(tusc_upload_t *up, int flags) {
  if (up->chunk_open || up->closing)
    return TUSC_EINVALID_ARGUMENT;
  mem_store_t *ms = up->store;
  uv_mutex_lock(&ms->mutex);
  struct entry *e = find(ms, up->info.id);
  int64_t len = e != NULL ? (int64_t)e->len : -1;
  uv_mutex_unlock(&ms->mutex);
  if (len < 0)
    return TUSC_ENOT_FOUND;
  up->chunk_open = true;
  up->staged_chunk = (flags & TUSC_STORE_CHUNK_STAGED) != 0;
  up->chunk_start = len;
  up->staged_len = 0;
  up->write_err = 0;
  return 0;
}
static int m_chunk_end(tusc_store_req_t *req) {
  if (!req->up->chunk_open)
    return TUSC_EINVALID_ARGUMENT;
  req->up->drain = NULL;
  return submit(req, K_CHUNK_END);
}
static int m_read(tusc_store_req_t *req) {
  return submit(req, K_READ);
}
static int m_concat(tusc_store_req_t *req) {
  return submit(req, K_CONCAT);
}

static void on_drain_timer(uv_timer_t *timer) {
  tusc_upload_t *up = timer->data;
  up->timer_armed = false;
  tusc_store_drain_cb drain = up->drain;
  up->drain = NULL;
  if (drain != NULL && !up->closing)
    drain(up->drain_arg);
}

static int m_append(tusc_upload_t *up, const void *buf, size_t len, tusc_store_drain_cb drain,
                    void *arg) {
  mem_store_t *ms = up->store;
  if (!up->chunk_open)
    return TUSC_EINVALID_ARGUMENT;
  int64_t start = up->chunk_start;
  if (up->timer_armed) {
    up->drain = drain; /* still full */
    up->drain_arg = arg;
    return TUSC_ESTORE_FULL;
  }
  uv_mutex_lock(&ms->mutex);
  uint64_t full_every = ms->opts.full_every, delay = ms->opts.drain_delay_ms;
  uv_mutex_unlock(&ms->mutex);
  if (full_every > 0 && up->since_full >= full_every) {
    if (!up->timer_init) {
      int rc = uv_timer_init(up->loop, &up->timer);
      if (rc != 0)
        return rc;
      up->timer.data = up;
      up->timer_init = true;
    }
    up->since_full = 0;
    up->drain = drain;
    up->drain_arg = arg;
    up->timer_armed = true;
    uv_timer_start(&up->timer, on_drain_timer, delay, 0);
    atomic_fetch_add(&ms->full_count, 1);
    return TUSC_ESTORE_FULL;
  }
  if (up->write_err != 0)
    return up->write_err;
  uv_mutex_lock(&ms->mutex);
  struct entry *e = find(ms, up->info.id);
  int rc = e == NULL ? TUSC_ENOT_FOUND : 0;
  size_t take = len;
  if (ms->faults.write_budget >= 0 && (int64_t)len > ms->faults.write_budget) {
    /* Like a file store write that failed on the pool: the bytes are taken, some land,
     * and the error comes with the next append or chunk_end. */
    take = (size_t)ms->faults.write_budget;
    up->write_err = UV_ENOSPC;
  }
  if (ms->faults.write_budget >= 0)
    ms->faults.write_budget -= (int64_t)take;
  size_t have = up->staged_chunk ? up->staged_len : (e != NULL ? e->len - (size_t)start : 0);
  if (rc == 0 && !up->info.size_is_deferred && up->info.size >= 0 &&
      start + (int64_t)have + (int64_t)len > up->info.size)
    rc = TUSC_EUPLOAD_SIZE_EXCEEDED;
  if (rc == 0 && up->staged_chunk) {
    rc = grow(&up->staged, &up->staged_cap, up->staged_len + take);
    if (rc == 0 && take > 0) {
      memcpy(up->staged + up->staged_len, buf, take);
      up->staged_len += take;
    }
  } else if (rc == 0) {
    rc = grow(&e->data, &e->cap, e->len + take);
    if (rc == 0 && take > 0) {
      memcpy(e->data + e->len, buf, take);
      e->len += take;
      up->info.offset = (int64_t)e->len;
    }
  }
  uv_mutex_unlock(&ms->mutex);
  if (rc == 0)
    up->since_full += len;
  return rc;
}

static int m_cancel(tusc_store_req_t *req) {
  return tusc_store_pool_cancel(&req->job);
}

static tusc_upload_info_t *m_info(tusc_upload_t *up) {
  return &up->info;
}

static void on_timer_closed(uv_handle_t *handle) {
  tusc_upload_t *up = handle->data;
  tusc_upload_info_dispose(&up->info);
  free(up->staged);
  free(up);
}

static void upload_maybe_free(tusc_upload_t *up) {
  if (!up->closing || up->inflight > 0)
    return;
  if (up->timer_init) {
    up->timer_init = false;
    uv_close((uv_handle_t *)&up->timer, on_timer_closed);
    return;
  }
  tusc_upload_info_dispose(&up->info);
  free(up->staged);
  free(up);
}

static void m_close(tusc_upload_t *up) {
  if (up == NULL || up->closing)
    return;
  up->closing = true;
  up->drain = NULL;
  upload_maybe_free(up);
}

static int m_storage(const tusc_store_t *store, const tusc_upload_info_t *info,
                     tusc_store_kv_t *out, size_t cap) {
  (void)store;
  (void)info;
  if (cap < 1)
    return 0;
  out[0] = (tusc_store_kv_t){"Type", "memstore"};
  return 1;
}

static void m_free(tusc_store_t *store) {
  mem_store_t *ms = (mem_store_t *)store;
  while (ms->entries != NULL) {
    struct entry *e = ms->entries;
    ms->entries = e->next;
    entry_free(e);
  }
  uv_mutex_destroy(&ms->mutex);
  free(ms);
}

static const tusc_store_async_ops_t mem_store_ops = {
    .get_info = m_get_info,
    .create = m_create,
    .open = m_open,
    .terminate = m_terminate,
    .list = m_list,
    .wait_add = m_wait_add,
    .wait_take = m_wait_take,
    .save_info = m_save_info,
    .chunk_begin = m_chunk_begin,
    .append = m_append,
    .chunk_end = m_chunk_end,
    .read = m_read,
    .concat = m_concat,
    .cancel = m_cancel,
    .info = m_info,
    .close = m_close,
    .storage = m_storage,
    .free = m_free,
    .cheap_chunk_checkpoint = true,
};

int tusc_mem_store_new(const tusc_mem_store_options_t *opts, tusc_store_t **out) {
  mem_store_t *ms = calloc(1, sizeof(*ms));
  if (ms == NULL)
    return TUSC_ENOMEM;
  if (uv_mutex_init(&ms->mutex) != 0) {
    free(ms);
    return TUSC_ENOMEM;
  }
  ms->base.async = &mem_store_ops;
  tusc_store_pool_init(&ms->pool, 0);
  if (opts != NULL)
    ms->opts = *opts;
  ms->faults.write_budget = -1;
  atomic_init(&ms->full_count, 0);
  *out = &ms->base;
  return 0;
}

uint64_t tusc_mem_store_full_count(tusc_store_t *store) {
  return atomic_load(&((mem_store_t *)store)->full_count);
}

void tusc_mem_store_set_faults(tusc_store_t *store, const tusc_mem_store_faults_t *faults) {
  mem_store_t *ms = (mem_store_t *)store;
  uv_mutex_lock(&ms->mutex);
  if (faults != NULL) {
    ms->faults = *faults;
  } else {
    memset(&ms->faults, 0, sizeof(ms->faults));
    ms->faults.write_budget = -1;
  }
  uv_mutex_unlock(&ms->mutex);
}

int tusc_mem_store_put(tusc_store_t *store, const tusc_upload_info_t *info, const void *data,
                       size_t len) {
  mem_store_t *ms = (mem_store_t *)store;
  struct entry *e = calloc(1, sizeof(*e));
  if (e == NULL)
    return TUSC_ENOMEM;
  tusc_upload_info_init(&e->info);
  int rc = info_copy(&e->info, info);
  if (rc == 0)
    rc = grow(&e->data, &e->cap, len);
  if (rc != 0) {
    entry_free(e);
    return rc;
  }
  if (len > 0)
    memcpy(e->data, data, len);
  e->len = len;
  e->info.offset = (int64_t)len;
  uv_mutex_lock(&ms->mutex);
  if (find(ms, info->id) != NULL) {
    uv_mutex_unlock(&ms->mutex);
    entry_free(e);
    return UV_EEXIST;
  }
  e->next = ms->entries;
  ms->entries = e;
  uv_mutex_unlock(&ms->mutex);
  return 0;
}

int64_t tusc_mem_store_length(tusc_store_t *store, const char *id) {
  mem_store_t *ms = (mem_store_t *)store;
  uv_mutex_lock(&ms->mutex);
  struct entry *e = find(ms, id);
  int64_t len = e != NULL ? (int64_t)e->len : -1;
  uv_mutex_unlock(&ms->mutex);
  return len;
}

void tusc_mem_store_set_full(tusc_store_t *store, uint64_t full_every, uint64_t drain_delay_ms) {
  mem_store_t *ms = (mem_store_t *)store;
  uv_mutex_lock(&ms->mutex);
  ms->opts.full_every = full_every;
  ms->opts.drain_delay_ms = drain_delay_ms;
  uv_mutex_unlock(&ms->mutex);
}

int64_t tusc_mem_store_read(tusc_store_t *store, const char *id, int64_t offset, void *buf,
                            size_t len) {
  mem_store_t *ms = (mem_store_t *)store;
  uv_mutex_lock(&ms->mutex);
  struct entry *e = find(ms, id);
  int64_t n = -1;
  if (e != NULL) {
    n = offset >= 0 && (size_t)offset < e->len ? (int64_t)(e->len - (size_t)offset) : 0;
    if (n > (int64_t)len)
      n = (int64_t)len;
    if (n > 0)
      memcpy(buf, e->data + offset, (size_t)n);
  }
  uv_mutex_unlock(&ms->mutex);
  return n;
}

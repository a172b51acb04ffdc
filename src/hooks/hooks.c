/*
 * hooks — the runner. Invariants:
 *   - A job is in exactly one of the worker's lists: `waiting` (non-blocking, not yet
 *     started), `blocked` (blocking, waiting for a slot), `running` (handed to the
 *     sender; holds one of the process-wide slots), `finished` (result known, callback
 *     not yet run).
 *   - Slots: hooks->running counts jobs in every worker's `running` list; it never
 *     exceeds max_running (taken with a compare-and-swap). A worker with jobs waiting
 *     sets `starved` before it tries to take a slot, and whoever frees a slot looks at
 *     every other worker's `starved` afterwards, so a freed slot is never missed.
 *   - User callbacks run only from the idle handle (or its close callback during
 *     shutdown), never from inside tusc_hooks_invoke or a sender's stack, so a
 *     callback may call tusc_hooks_invoke again.
 *   - The worker is freed only in the idle handle's close callback, which runs after
 *     the sender reported that it closed.
 */
#include "hooks/hooks.h"

#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>

#include "common/error.h"
#include "common/log.h"
#include "hooks/hook_file.h"
#include "hooks/hook_http.h"
#include "hooks/hook_json.h"
#include "hooks/hook_sender.h"

#define DEFAULT_QUEUE_MAX 1024
#define DEFAULT_CONCURRENCY 8

/* --- process-wide ----------------------------------------------------------------- */

struct tusc_hooks_s {
  bool enabled[TUSC_HOOK_EVENT_COUNT];
  const tusc_store_t *store; /* for the Storage map, or NULL */
  char *dir;      /* absolute, or NULL */
  char *http_url; /* NULL when file hooks are used */
  char **forward; /* header names to copy into HTTP hook requests */
  size_t forward_count;
  int http_retry;
  int64_t http_backoff_ms;
  int64_t http_timeout_ms;
  int64_t http_size_limit;
  int64_t progress_interval_ms;
  int64_t timeout_ms;
  bool curl_initialised;
  atomic_uint_fast64_t invocations[TUSC_HOOK_EVENT_COUNT];
  atomic_uint_fast64_t errors[TUSC_HOOK_EVENT_COUNT];
  atomic_uint_fast64_t dropped;
  atomic_uint_fast64_t busy;
  atomic_uint_fast64_t cancelled;
  int64_t max_running;         /* -hooks-max-processes; 0 = no limit */
  atomic_int_fast64_t running; /* slots taken */
  atomic_int_fast64_t waiting; /* blocking jobs in some `blocked` list */
  uv_mutex_t workers_lock;     /* the worker list, for wake-ups */
  bool workers_lock_init;
  struct tusc_hooks_worker_s *workers;
};

static bool is_space(char c) {
  return c == ' ' || c == '\t';
}

/* Calls fn for every trimmed, non-empty element of a comma list. */
static int each_csv(const char *list, int (*fn)(const char *s, size_t n, void *arg), void *arg) {
  const char *p = list;
  while (*p) {
    const char *end = strchr(p, ',');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    const char *s = p;
    while (n > 0 && is_space(*s)) {
      s++;
      n--;
    }
    while (n > 0 && is_space(s[n - 1]))
      n--;
    if (n > 0) {
      int rc = fn(s, n, arg);
      if (rc < 0)
        return rc;
    }
    if (!end)
      break;
    p = end + 1;
  }
  return 0;
}

static int enable_event(const char *s, size_t n, void *arg) {
  tusc_hooks_t *h = arg;
  enum tusc_hook_event ev;
  if (tusc_hook_event_parse(s, n, &ev) < 0) {
    tusc_log_msg(TUSC_LOG_ERROR, "-hooks-enabled-events: unknown hook event \"%.*s\"", (int)n, s);
    return TUSC_EINVALID_ARGUMENT;
  }
  h->enabled[ev] = true;
  return 0;
}

static int add_forward(const char *s, size_t n, void *arg) {
  tusc_hooks_t *h = arg;
  char **f = realloc(h->forward, (h->forward_count + 1) * sizeof(*f));
  if (!f)
    return TUSC_ENOMEM;
  h->forward = f;
  f[h->forward_count] = strndup(s, n);
  if (!f[h->forward_count])
    return TUSC_ENOMEM;
  h->forward_count++;
  return 0;
}

static char *absolute_dir(const char *dir) {
  size_t n = strlen(dir);
  while (n > 1 && dir[n - 1] == '/')
    n--;
  if (dir[0] == '/')
    return strndup(dir, n);
  char cwd[PATH_MAX];
  if (!getcwd(cwd, sizeof(cwd)))
    return NULL;
  size_t cap = strlen(cwd) + 1 + n + 1;
  char *abs = malloc(cap);
  if (abs)
    snprintf(abs, cap, "%s/%.*s", cwd, (int)n, dir);
  return abs;
}

void tusc_hooks_set_store(tusc_hooks_t *hooks, const tusc_store_t *store) {
  hooks->store = store;
}

int tusc_hooks_new(const tusc_config_t *cfg, tusc_hooks_t **out) {
  tusc_hooks_t *h = calloc(1, sizeof(*h));
  if (!h)
    return TUSC_ENOMEM;
  int rc = 0;
  if (!cfg->hooks_enabled_events) {
    h->enabled[TUSC_HOOK_PRE_CREATE] = h->enabled[TUSC_HOOK_POST_CREATE] = true;
    h->enabled[TUSC_HOOK_POST_RECEIVE] = h->enabled[TUSC_HOOK_POST_TERMINATE] = true;
    h->enabled[TUSC_HOOK_POST_FINISH] = true;
  } else if (cfg->hooks_enabled_events[strspn(cfg->hooks_enabled_events, " \t")] == '\0') {
    for (int i = 0; i < TUSC_HOOK_EVENT_COUNT; i++)
      h->enabled[i] = true;
  } else if ((rc = each_csv(cfg->hooks_enabled_events, enable_event, h)) < 0) {
    goto out;
  }

  bool has_dir = cfg->hooks_dir && cfg->hooks_dir[0];
  bool has_http = cfg->hooks_http && cfg->hooks_http[0];
  if (has_dir && has_http)
    tusc_log_msg(TUSC_LOG_WARN, "both -hooks-dir and -hooks-http given: using the file hooks");
  if (has_dir) {
    if (!(h->dir = absolute_dir(cfg->hooks_dir))) {
      rc = TUSC_ENOMEM;
      goto out;
    }
  } else if (has_http) {
    if (!(h->http_url = strdup(cfg->hooks_http))) {
      rc = TUSC_ENOMEM;
      goto out;
    }
    if (cfg->hooks_http_forward_headers &&
        (rc = each_csv(cfg->hooks_http_forward_headers, add_forward, h)) < 0)
      goto out;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
      tusc_log_msg(TUSC_LOG_ERROR, "libcurl initialisation failed");
      rc = TUSC_EINTERNAL;
      goto out;
    }
    h->curl_initialised = true;
  }
  h->http_retry = cfg->hooks_http_retry < 1 ? 1 : cfg->hooks_http_retry;
  h->http_backoff_ms = cfg->hooks_http_backoff_ms < 0 ? 0 : cfg->hooks_http_backoff_ms;
  h->http_timeout_ms = cfg->hooks_http_timeout_ms < 0 ? 0 : cfg->hooks_http_timeout_ms;
  h->http_size_limit = cfg->hooks_http_size_limit < 0 ? 0 : cfg->hooks_http_size_limit;
  h->progress_interval_ms = cfg->progress_hooks_interval_ms;
  h->timeout_ms = cfg->hooks_timeout_ms < 0 ? 0 : cfg->hooks_timeout_ms;
  h->max_running = cfg->hooks_max_processes < 0 ? 0 : cfg->hooks_max_processes;
  if (uv_mutex_init(&h->workers_lock) != 0) {
    rc = TUSC_ENOMEM;
    goto out;
  }
  h->workers_lock_init = true;
  *out = h;
  h = NULL;
out:
  tusc_hooks_free(h);
  return rc;
}

void tusc_hooks_free(tusc_hooks_t *h) {
  if (!h)
    return;
  if (h->curl_initialised)
    curl_global_cleanup();
  if (h->workers_lock_init)
    uv_mutex_destroy(&h->workers_lock);
  for (size_t i = 0; i < h->forward_count; i++)
    free(h->forward[i]);
  free(h->forward);
  free(h->dir);
  free(h->http_url);
  free(h);
}

bool tusc_hooks_active(const tusc_hooks_t *h) {
  return h && (h->dir || h->http_url);
}

bool tusc_hooks_enabled(const tusc_hooks_t *h, enum tusc_hook_event ev) {
  return tusc_hooks_active(h) && (unsigned)ev < TUSC_HOOK_EVENT_COUNT && h->enabled[ev];
}

int64_t tusc_hooks_progress_interval_ms(const tusc_hooks_t *h) {
  return h->progress_interval_ms;
}

void tusc_hooks_stats(const tusc_hooks_t *h, tusc_hooks_stats_t *out) {
  for (int i = 0; i < TUSC_HOOK_EVENT_COUNT; i++) {
    out->invocations[i] = atomic_load(&h->invocations[i]);
    out->errors[i] = atomic_load(&h->errors[i]);
  }
  out->dropped = atomic_load(&h->dropped);
  out->busy = atomic_load(&h->busy);
  out->cancelled = atomic_load(&h->cancelled);
  int_fast64_t running = atomic_load(&h->running), waiting = atomic_load(&h->waiting);
  out->running = running > 0 ? (uint64_t)running : 0;
  out->waiting = waiting > 0 ? (uint64_t)waiting : 0;
}

/* --- per-loop runner ---------------------------------------------------------------- */

struct job {
  tusc_hook_call_t call; /* first: a call pointer is a job pointer */
  tusc_hooks_worker_t *worker;
  tusc_hook_done_cb cb;
  void *arg;
  bool blocking;
  bool sent; /* handed to a sender (counts as an invocation) */
  int status;
  struct job *prev, *next;
};

struct job_list {
  struct job *head, *tail;
  size_t count;
};

struct tusc_hooks_worker_s {
  tusc_hooks_t *hooks;
  uv_loop_t *loop;
  tusc_hook_sender_t *sender; /* NULL when no hook is configured */
  uv_idle_t finisher;         /* runs callbacks of finished jobs */
  uv_async_t wake;            /* another worker freed a slot */
  struct job_list waiting, blocked, running, finished;
  size_t queue_max;
  size_t concurrency;
  size_t blocked_max;
  size_t nonblocking_running;
  atomic_bool starved;                             /* jobs wait for a slot; read by other workers */
  struct tusc_hooks_worker_s *reg_prev, *reg_next; /* hooks->workers */
  int open_handles;
  bool closing;
};

static void list_push(struct job_list *l, struct job *j) {
  j->next = NULL;
  j->prev = l->tail;
  if (l->tail)
    l->tail->next = j;
  else
    l->head = j;
  l->tail = j;
  l->count++;
}

static void list_remove(struct job_list *l, struct job *j) {
  if (j->prev)
    j->prev->next = j->next;
  else
    l->head = j->next;
  if (j->next)
    j->next->prev = j->prev;
  else
    l->tail = j->prev;
  j->prev = j->next = NULL;
  l->count--;
}

static void job_free(struct job *j) {
  tusc_hook_response_dispose(&j->call.resp);
  free(j->call.json);
  for (size_t i = 0; i < j->call.forward_count; i++)
    free(j->call.forward_headers[i]);
  free(j->call.forward_headers);
  free(j);
}

static void run_callback(struct job *j) {
  tusc_hooks_worker_t *w = j->worker;
  enum tusc_hook_event ev = j->call.event;
  if (j->sent && j->status < 0 && j->status != UV_ECANCELED) {
    atomic_fetch_add(&w->hooks->errors[ev], 1);
    tusc_log_event(TUSC_LOG_WARN, "HookFailed", "type", tusc_hook_event_name(ev), "id", j->call.id,
                   "error", j->call.resp.error[0] ? j->call.resp.error : tusc_strerror(j->status),
                   NULL);
  }
  if (j->status < 0 && !j->call.resp.error[0])
    snprintf(j->call.resp.error, sizeof(j->call.resp.error), "%s", tusc_strerror(j->status));
  if (j->status < 0) {
    /* A failed hook changes nothing: drop whatever a partial parse left behind. */
    char error[sizeof(j->call.resp.error)];
    memcpy(error, j->call.resp.error, sizeof(error));
    tusc_hook_response_dispose(&j->call.resp);
    memcpy(j->call.resp.error, error, sizeof(error));
  }
  if (j->cb)
    j->cb(j->status, &j->call.resp, j->arg);
  job_free(j);
}

static void start_job(tusc_hooks_worker_t *w, struct job *j);

static bool slot_take(tusc_hooks_t *h) {
  int_fast64_t cur = atomic_load(&h->running);
  do {
    if (h->max_running > 0 && cur >= h->max_running)
      return false;
  } while (!atomic_compare_exchange_weak(&h->running, &cur, cur + 1));
  return true;
}

/* Frees a slot and wakes the other workers that wait for one (they race for it; the
 * losers go back to waiting). */
static void slot_give(tusc_hooks_t *h, tusc_hooks_worker_t *self) {
  atomic_fetch_sub(&h->running, 1);
  if (h->max_running == 0)
    return;
  uv_mutex_lock(&h->workers_lock);
  for (tusc_hooks_worker_t *w = h->workers; w; w = w->reg_next)
    if (w != self && atomic_load(&w->starved))
      uv_async_send(&w->wake);
  uv_mutex_unlock(&h->workers_lock);
}

/* Starts what waits while slots are free: blocking jobs first (a request waits for
 * them), then non-blocking ones up to the worker's concurrency. */
static void pump(tusc_hooks_worker_t *w) {
  while (!w->closing) {
    bool blocked = w->blocked.head != NULL;
    if (!blocked && !(w->waiting.head && w->nonblocking_running < w->concurrency)) {
      atomic_store(&w->starved, false);
      return;
    }
    atomic_store(&w->starved, true); /* before trying: see the invariant above */
    if (!slot_take(w->hooks))
      return;
    struct job *j;
    if (blocked) {
      j = w->blocked.head;
      list_remove(&w->blocked, j);
      atomic_fetch_sub(&w->hooks->waiting, 1);
    } else {
      j = w->waiting.head;
      list_remove(&w->waiting, j);
    }
    start_job(w, j);
  }
}

static void on_wake(uv_async_t *async) {
  pump(async->data);
}

static void on_finisher(uv_idle_t *idle) {
  tusc_hooks_worker_t *w = idle->data;
  /* Take the whole list first: callbacks may finish or add jobs. */
  struct job_list batch = w->finished;
  memset(&w->finished, 0, sizeof(w->finished));
  uv_idle_stop(idle);
  while (batch.head) {
    struct job *j = batch.head;
    list_remove(&batch, j);
    run_callback(j);
  }
  pump(w);
}

static void finish_job(struct job *j, int status) {
  tusc_hooks_worker_t *w = j->worker;
  j->status = status;
  list_push(&w->finished, j);
  if (!uv_is_closing((uv_handle_t *)&w->finisher))
    uv_idle_start(&w->finisher, on_finisher);
}

static void on_call_done(tusc_hook_call_t *call, int status) {
  struct job *j = (struct job *)call;
  tusc_hooks_worker_t *w = j->worker;
  list_remove(&w->running, j);
  if (!j->blocking)
    w->nonblocking_running--;
  slot_give(w->hooks, w);
  finish_job(j, status);
}

static void start_job(tusc_hooks_worker_t *w, struct job *j) {
  j->sent = true;
  atomic_fetch_add(&w->hooks->invocations[j->call.event], 1);
  list_push(&w->running, j);
  if (!j->blocking)
    w->nonblocking_running++;
  int rc = w->sender->ops->start(w->sender, &j->call);
  if (rc < 0) {
    list_remove(&w->running, j);
    if (!j->blocking)
      w->nonblocking_running--;
    slot_give(w->hooks, w);
    finish_job(j, rc);
  }
}

int tusc_hooks_worker_new(tusc_hooks_t *hooks, uv_loop_t *loop,
                          const tusc_hooks_worker_options_t *opts, tusc_hooks_worker_t **out) {
  tusc_hooks_worker_t *w = calloc(1, sizeof(*w));
  if (!w)
    return TUSC_ENOMEM;
  w->hooks = hooks;
  w->loop = loop;
  w->queue_max = opts && opts->queue_max ? opts->queue_max : DEFAULT_QUEUE_MAX;
  w->concurrency = opts && opts->concurrency ? opts->concurrency : DEFAULT_CONCURRENCY;
  w->blocked_max = hooks->max_running > 0 ? (size_t)hooks->max_running : SIZE_MAX;
  atomic_init(&w->starved, false);
  int rc = 0;
  if (hooks->dir) {
    tusc_hook_file_options_t fo = {.dir = hooks->dir, .timeout_ms = hooks->timeout_ms};
    rc = tusc_hook_file_sender_new(loop, &fo, &w->sender);
  } else if (hooks->http_url) {
    tusc_hook_http_options_t ho = {.url = hooks->http_url,
                                   .retry = hooks->http_retry,
                                   .backoff_ms = hooks->http_backoff_ms,
                                   .timeout_ms = hooks->http_timeout_ms,
                                   .size_limit = hooks->http_size_limit};
    rc = tusc_hook_http_sender_new(loop, &ho, &w->sender);
  }
  if (rc < 0) {
    free(w);
    return rc;
  }
  if ((rc = uv_async_init(loop, &w->wake, on_wake)) < 0) {
    if (w->sender)
      w->sender->ops->close(w->sender, free, NULL); /* nothing runs on it yet */
    free(w);
    return rc;
  }
  w->wake.data = w;
  uv_unref((uv_handle_t *)&w->wake); /* must not keep an otherwise idle loop running */
  uv_idle_init(loop, &w->finisher);
  w->finisher.data = w;
  w->open_handles = 2;
  uv_mutex_lock(&hooks->workers_lock);
  w->reg_next = hooks->workers;
  if (hooks->workers)
    hooks->workers->reg_prev = w;
  hooks->workers = w;
  uv_mutex_unlock(&hooks->workers_lock);
  *out = w;
  return 0;
}

static void on_worker_handle_closed(uv_handle_t *handle) {
  tusc_hooks_worker_t *w = handle->data;
  if (handle == (uv_handle_t *)&w->finisher) {
    while (w->finished.head) {
      struct job *j = w->finished.head;
      list_remove(&w->finished, j);
      run_callback(j);
    }
  }
  if (--w->open_handles == 0)
    free(w);
}

static void on_sender_closed(void *arg) {
  tusc_hooks_worker_t *w = arg;
  w->sender = NULL;
  uv_close((uv_handle_t *)&w->wake, on_worker_handle_closed);
  uv_close((uv_handle_t *)&w->finisher, on_worker_handle_closed);
}

void tusc_hooks_worker_close(tusc_hooks_worker_t *w) {
  if (!w || w->closing)
    return;
  w->closing = true;
  /* Out of the list first: after this no other worker sends to w->wake. */
  tusc_hooks_t *h = w->hooks;
  uv_mutex_lock(&h->workers_lock);
  if (w->reg_prev)
    w->reg_prev->reg_next = w->reg_next;
  else
    h->workers = w->reg_next;
  if (w->reg_next)
    w->reg_next->reg_prev = w->reg_prev;
  uv_mutex_unlock(&h->workers_lock);
  atomic_store(&w->starved, false);
  while (w->waiting.head) {
    struct job *j = w->waiting.head;
    list_remove(&w->waiting, j);
    finish_job(j, UV_ECANCELED);
  }
  while (w->blocked.head) {
    struct job *j = w->blocked.head;
    list_remove(&w->blocked, j);
    atomic_fetch_sub(&h->waiting, 1);
    finish_job(j, UV_ECANCELED);
  }
  if (w->sender)
    w->sender->ops->close(w->sender, on_sender_closed, w);
  else
    on_sender_closed(w);
}

size_t tusc_hooks_worker_pending(const tusc_hooks_worker_t *w) {
  return w->waiting.count + w->nonblocking_running;
}

int tusc_hooks_cancel(tusc_hooks_worker_t *w, tusc_hook_done_cb cb, void *arg) {
  if (!w || w->closing)
    return UV_ENOENT;
  for (struct job *j = w->blocked.head; j; j = j->next) {
    if (j->cb == cb && j->arg == arg) {
      list_remove(&w->blocked, j);
      atomic_fetch_sub(&w->hooks->waiting, 1);
      atomic_fetch_add(&w->hooks->cancelled, 1);
      finish_job(j, UV_ECANCELED);
      return 0;
    }
  }
  for (struct job *j = w->running.head; j; j = j->next) {
    if (j->blocking && j->cb == cb && j->arg == arg) {
      atomic_fetch_add(&w->hooks->cancelled, 1);
      if (w->sender && w->sender->ops->cancel)
        w->sender->ops->cancel(w->sender, &j->call);
      return 0;
    }
  }
  return UV_ENOENT;
}

static int add_forwarded(const tusc_hooks_t *h, const tusc_hook_http_request_t *req,
                         tusc_hook_call_t *call) {
  if (!req || h->forward_count == 0)
    return 0;
  for (size_t i = 0; i < req->header_count; i++) {
    const tusc_hook_header_t *hdr = &req->headers[i];
    if (!hdr->name)
      continue;
    for (size_t k = 0; k < h->forward_count; k++) {
      if (strcasecmp(hdr->name, h->forward[k]) != 0)
        continue;
      char **f = realloc(call->forward_headers, (call->forward_count + 1) * sizeof(*f));
      if (!f)
        return TUSC_ENOMEM;
      call->forward_headers = f;
      char canon[256];
      if (tusc_hook_canonical_header(hdr->name, canon, sizeof(canon)) < 0)
        break;
      const char *value = hdr->value ? hdr->value : "";
      /* The value came through our HTTP parser, so it holds no CR/LF. */
      size_t cap = strlen(canon) + 2 + strlen(value) + 1;
      char *line = malloc(cap);
      if (!line)
        return TUSC_ENOMEM;
      snprintf(line, cap, "%s: %s", canon, value);
      f[call->forward_count++] = line;
      break;
    }
  }
  return 0;
}

int tusc_hooks_invoke(tusc_hooks_worker_t *w, enum tusc_hook_event ev,
                      const tusc_upload_info_t *upload, const tusc_hook_http_request_t *req,
                      tusc_hook_done_cb cb, void *arg) {
  if (!w || !upload || (unsigned)ev >= TUSC_HOOK_EVENT_COUNT)
    return TUSC_EINVALID_ARGUMENT;
  if (w->closing)
    return UV_ECANCELED;
  bool blocking = tusc_hook_event_blocking(ev);
  bool enabled = w->sender && tusc_hooks_enabled(w->hooks, ev);
  if (!enabled && !cb)
    return 0;
  if (enabled && !blocking && w->waiting.count + w->nonblocking_running >= w->queue_max) {
    atomic_fetch_add(&w->hooks->dropped, 1);
    tusc_log_msg(TUSC_LOG_WARN, "hook queue full: dropping %s hook for upload %s",
                 tusc_hook_event_name(ev), upload->id);
    return UV_EBUSY;
  }

  struct job *j = calloc(1, sizeof(*j));
  if (!j)
    return TUSC_ENOMEM;
  j->worker = w;
  j->cb = cb;
  j->arg = arg;
  j->blocking = blocking;
  j->call.event = ev;
  j->call.done = on_call_done;
  tusc_hook_response_init(&j->call.resp);
  if (!enabled) {
    finish_job(j, 0);
    return 0;
  }
  tusc_store_kv_t storage[TUSC_STORE_KV_MAX];
  size_t storage_count = tusc_store_storage(w->hooks->store, upload, storage, TUSC_STORE_KV_MAX);
  int rc = tusc_hook_json_request(ev, upload, storage, storage_count, req, &j->call.json,
                                  &j->call.json_len);
  if (rc < 0)
    goto fail;
  if ((rc = add_forwarded(w->hooks, req, &j->call)) < 0)
    goto fail;
  if (ev != TUSC_HOOK_PRE_CREATE)
    snprintf(j->call.id, sizeof(j->call.id), "%s", upload->id);
  j->call.size = upload->size_is_deferred || upload->size < 0 ? 0 : upload->size;
  j->call.offset = upload->offset < 0 ? 0 : upload->offset;

  if (blocking) {
    if (w->blocked.count >= w->blocked_max) {
      atomic_fetch_add(&w->hooks->busy, 1);
      tusc_log_msg(TUSC_LOG_WARN,
                   "hooks busy: %s hook refused (-hooks-max-processes %lld running, %zu waiting)",
                   tusc_hook_event_name(ev), (long long)w->hooks->max_running, w->blocked.count);
      rc = TUSC_EHOOKS_BUSY;
      goto fail;
    }
    list_push(&w->blocked, j);
    atomic_fetch_add(&w->hooks->waiting, 1);
  } else {
    list_push(&w->waiting, j);
  }
  pump(w);
  return 0;
fail:
  job_free(j);
  return rc;
}

/*
 * handler — the tus 1.0 protocol on top of the http layer (see handler.h).
 *
 * Every request gets a tus_request_t (req->handler_data) that lives until the one
 * respond call that ends the request; it is freed right after that call, so nothing
 * here touches `req` or the state once a response has been handed over. A request moves
 * through phases; only these wait for something outside the current callback:
 *
 *   LOCK_WAIT  the upload is locked by someone else; a timer retries every few ms
 *   WORK       a slow store call runs on libuv's thread pool (create, save_info, sync,
 *              terminate); after_work always comes back, also after an abort
 *   BODY       PATCH bytes stream from on_body straight into store->write
 *   STREAM     a GET download writes 64 KiB at a time, the next read after write_cb
 *
 * on_abort only records the failure, except where nothing else would ever wake the
 * request up again (BODY, LOCK_WAIT, STREAM without a pending write).
 *
 * Lock release: the holder's on_release_requested runs on the asking thread. It only
 * sets an atomic flag and pokes this worker's uv_async; the worker then interrupts its
 * requests that have the flag and are reading a body: they stop, make the bytes that
 * reached the file durable, release the lock and answer 400 ERR_UPLOAD_INTERRUPTED.
 */
#include "tus/handler.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "common/error.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "tus/concat.h"
#include "tus/cors.h"
#include "tus/download.h"
#include "tus/headers.h"
#include "tus/location.h"

#define TUS_VERSION "1.0.0"
#define OCTET_STREAM "application/offset+octet-stream"
#define DOWNLOAD_CHUNK (64 * 1024)
#define LOCK_RETRY_MS 10
/* A release request can be lost when the lock changes hands while we wait; ask again. */
#define LOCK_REASK_MS 500

struct tusc_tus_s {
  const tusc_config_t *cfg;
  tusc_store_t *store;
  tusc_lock_table_t *locks;
  tusc_cors_t cors;
  char extensions[256];
  bool tls;
};

typedef struct tus_request_s tus_request_t;

struct tusc_tus_worker_s {
  tusc_tus_t *tus;
  uv_loop_t *loop;
  uv_async_t release_async;
  tus_request_t *requests; /* every live request state of this worker */
  atomic_bool closing;     /* read by lock-release callbacks on other threads */
  bool async_closed;
};

enum phase { PH_RUN = 0, PH_LOCK_WAIT, PH_WORK, PH_BODY, PH_STREAM };
enum op { OP_NONE = 0, OP_POST, OP_PATCH, OP_DELETE, OP_GET };
enum work_kind {
  WORK_NOOP = 0,
  WORK_CREATE,
  WORK_SAVE_INFO,
  WORK_SYNC,
  WORK_TERMINATE,
  WORK_ASSEMBLE
};

typedef void (*step_fn)(tus_request_t *st);

struct tus_request_s {
  tusc_tus_worker_t *w;
  tusc_http_request_t *req; /* NULL once responded */
  tus_request_t *prev, *next;
  enum phase phase;
  enum op op;
  bool preflight;
  char id[TUSC_ID_MAX + 1];
  char client[64];
  char *location; /* POST: upload URL */
  tusc_concat_t concat; /* POST: parsed Upload-Concat */

  /* lock */
  tusc_lock_holder_t holder;
  bool lock_held;
  atomic_bool release_requested;
  char *lock_path;
  uv_timer_t timer;
  bool timer_init;
  uint64_t lock_deadline;
  uint64_t last_release_ask;
  step_fn after_lock;

  /* thread pool */
  uv_work_t work;
  enum work_kind work_kind;
  int work_result;
  step_fn after_work;
  tusc_upload_info_t *info; /* POST: the info being created */

  /* writing (PATCH, POST with body) */
  tusc_upload_t *upload;
  bool with_body;
  bool chunk_started;
  bool was_complete;
  int64_t client_offset;
  int64_t new_length; /* Upload-Length on PATCH, -1 when absent */
  int64_t start_offset;
  int64_t written;
  int64_t limit; /* body bytes the upload may still take, -1 = unlimited */
  int result;    /* the error to answer with once the body phase ends, 0 = success */
  bool aborted;
  int abort_err;

  /* download */
  char *buf;
  int64_t pos, end; /* next byte to send, last byte to send */
  size_t pending;
  bool write_pending;
};

static const tusc_http_handler_t http_handler;

/* --- small helpers ------------------------------------------------------------- */

static const char *header_value(const tusc_http_request_t *req, const char *name, size_t *len) {
  const tusc_http_header_t *h = tusc_http_header(req, name);
  if (h == NULL)
    return NULL;
  if (len != NULL)
    *len = h->value_len;
  return h->value;
}

/* Media type of a Content-Type value equals `type` (case-insensitive, parameters
 * ignored). */
static bool media_type_is(const char *value, size_t len, const char *type) {
  if (value == NULL)
    return false;
  const char *semi = memchr(value, ';', len);
  size_t n = semi != NULL ? (size_t)(semi - value) : len;
  while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t'))
    n--;
  return n == strlen(type) && strncasecmp(value, type, n) == 0;
}

static enum tusc_http_method method_from_name(const char *s, size_t len) {
  static const struct {
    const char *name;
    enum tusc_http_method method;
  } methods[] = {
      {"GET", TUSC_HTTP_GET},         {"HEAD", TUSC_HTTP_HEAD},   {"POST", TUSC_HTTP_POST},
      {"PUT", TUSC_HTTP_PUT},         {"PATCH", TUSC_HTTP_PATCH}, {"DELETE", TUSC_HTTP_DELETE},
      {"OPTIONS", TUSC_HTTP_OPTIONS},
  };
  for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
    if (strlen(methods[i].name) == len && memcmp(methods[i].name, s, len) == 0)
      return methods[i].method;
  return TUSC_HTTP_OTHER;
}

static void fmt_i64(char out[24], int64_t v) {
  snprintf(out, 24, "%lld", (long long)v);
}

static tusc_store_t *store_of(const tus_request_t *st) {
  return st->w->tus->store;
}
static const tusc_config_t *cfg_of(const tus_request_t *st) {
  return st->w->tus->cfg;
}

/* How concat assembles for this request; `wait` = may wait for a busy final. */
static void concat_env(const tus_request_t *st, bool wait, tusc_concat_env_t *env) {
  env->store = st->w->tus->store;
  env->locks = st->w->tus->locks;
  env->file_perms = st->w->tus->cfg->file_perms;
  env->lock_wait_ms = wait ? st->w->tus->cfg->acquire_lock_timeout_ms : 0;
}

/* --- request state lifetime ------------------------------------------------------ */

static void worker_maybe_free(tusc_tus_worker_t *w) {
  if (atomic_load(&w->closing) && w->async_closed && w->requests == NULL)
    free(w);
}

static void on_state_timer_closed(uv_handle_t *handle) {
  tus_request_t *st = handle->data;
  tusc_tus_worker_t *w = st->w;
  free(st);
  worker_maybe_free(w);
}

/* Frees the state. The lock must already be released and the request responded. */
static void state_free(tus_request_t *st) {
  tusc_tus_worker_t *w = st->w;
  if (st->lock_held) {
    tusc_lock_release(w->tus->locks, &st->holder);
    st->lock_held = false;
  }
  if (st->upload != NULL)
    store_of(st)->ops->close(st->upload);
  if (st->info != NULL) {
    tusc_upload_info_dispose(st->info);
    free(st->info);
  }
  free(st->lock_path);
  free(st->location);
  tusc_concat_dispose(&st->concat);
  free(st->buf);
  if (st->prev != NULL)
    st->prev->next = st->next;
  else
    w->requests = st->next;
  if (st->next != NULL)
    st->next->prev = st->prev;
  if (st->timer_init) {
    uv_close((uv_handle_t *)&st->timer, on_state_timer_closed);
    return;
  }
  free(st);
  worker_maybe_free(w);
}

/* --- responses ----------------------------------------------------------------- */

static void response_init(tus_request_t *st, tusc_http_response_t *resp, int status) {
  tusc_http_response_init(resp, status);
  tusc_http_response_header(resp, "Tus-Resumable", TUS_VERSION);
  tusc_http_response_header(resp, "X-Content-Type-Options", "nosniff");
  tusc_cors_header_t cors[TUSC_CORS_MAX_HEADERS];
  size_t n = 0;
  const char *origin = header_value(st->req, "Origin", NULL);
  if (tusc_cors_headers(&st->w->tus->cors, origin, st->preflight, cors, &n) == 0)
    for (size_t i = 0; i < n; i++)
      tusc_http_response_header(resp, cors[i].name, cors[i].value);
}

/* Ends the request and frees the state. */
static void finish(tus_request_t *st, tusc_http_response_t *resp, const void *body, size_t len) {
  tusc_http_request_t *req = st->req;
  st->req = NULL;
  req->handler_data = NULL;
  tusc_http_respond(req, resp, body, len);
  state_free(st);
}

static void respond_text(tus_request_t *st, tusc_http_response_t *resp, const char *text) {
  tusc_http_response_header(resp, "Content-Type", "text/plain; charset=utf-8");
  finish(st, resp, text, strlen(text));
}

static void respond_error_with(tus_request_t *st, int err, const char *allow) {
  tusc_http_response_t resp;
  char body[256];
  int status = tusc_error_status(err);
  response_init(st, &resp, status);
  if (status == 412)
    tusc_http_response_header(&resp, "Tus-Version", TUS_VERSION);
  if (allow != NULL)
    tusc_http_response_header(&resp, "Allow", allow);
  snprintf(body, sizeof(body), "%s: %s\n", tusc_error_code(err), tusc_strerror(err));
  if (status >= 500 || st->aborted)
    TUSC_LOG(TUSC_LOG_WARN, "%s %s from %s: %s", st->req->method_name, st->req->path, st->client,
             tusc_strerror(err));
  respond_text(st, &resp, body);
}

static void respond_error(tus_request_t *st, int err) {
  respond_error_with(st, err, NULL);
}

/* The "upload not found" answer for a failed store lookup. */
static void respond_store_error(tus_request_t *st, int err) {
  if (err == TUSC_EINVALID_ID)
    err = TUSC_ENOT_FOUND;
  respond_error(st, err);
}

static void respond_not_found_page(tus_request_t *st) {
  tusc_http_response_t resp;
  response_init(st, &resp, 404);
  respond_text(st, &resp, "404 page not found\n");
}

/* --- thread pool ----------------------------------------------------------------- */

static void on_work(uv_work_t *work) {
  tus_request_t *st = work->data;
  tusc_store_t *store = store_of(st);
  int rc = 0;
  switch (st->work_kind) {
  case WORK_NOOP:
    break;
  case WORK_CREATE:
    rc = store->ops->create(store, st->info);
    if (rc == 0 && st->info->is_final) {
      tusc_concat_env_t env;
      concat_env(st, true, &env);
      rc = tusc_concat_final_created(&env, st->info);
    }
    break;
  case WORK_SAVE_INFO:
    rc = store->ops->save_info(st->upload);
    break;
  case WORK_SYNC:
    rc = store->ops->sync(st->upload);
    break;
  case WORK_TERMINATE:
    rc = store->ops->terminate(store, st->id);
    break;
  case WORK_ASSEMBLE: {
    tusc_concat_env_t env;
    concat_env(st, true, &env);
    rc = tusc_concat_assemble(&env, st->id, NULL);
    break;
  }
  }
  st->work_result = rc;
}

static void on_after_work(uv_work_t *work, int status) {
  tus_request_t *st = work->data;
  if (status < 0 && st->work_result == 0)
    st->work_result = status;
  st->phase = PH_RUN;
  st->after_work(st);
}

/* Runs `kind` on the thread pool, then `next` on the loop. Never calls `next` before
 * returning, so it is also the way to leave an http callback before responding. */
static void queue_work(tus_request_t *st, enum work_kind kind, step_fn next) {
  st->work.data = st;
  st->work_kind = kind;
  st->work_result = 0;
  st->after_work = next;
  st->phase = PH_WORK;
  int rc = uv_queue_work(st->w->loop, &st->work, on_work, on_after_work);
  if (rc < 0) {
    /* Only fails for invalid arguments; run inline rather than lose the request. */
    on_work(&st->work);
    st->phase = PH_RUN;
    next(st);
  }
}

/* --- locks ----------------------------------------------------------------------- */

static void on_release_requested(tusc_lock_holder_t *holder) {
  tus_request_t *st = holder->data;
  atomic_store(&st->release_requested, true);
  if (!atomic_load(&st->w->closing))
    uv_async_send(&st->w->release_async);
}

static void lock_got(tus_request_t *st) {
  st->lock_held = true;
  st->phase = PH_RUN;
  st->after_lock(st);
}

static void on_lock_timer(uv_timer_t *timer) {
  tus_request_t *st = timer->data;
  tusc_tus_t *tus = st->w->tus;
  int rc =
      tusc_lock_try_acquire(tus->locks, st->id, st->lock_path, tus->cfg->file_perms, &st->holder);
  if (rc == 0) {
    uv_timer_stop(timer);
    lock_got(st);
    return;
  }
  uint64_t now = tusc_now_ms();
  if (rc != TUSC_ELOCKED) {
    uv_timer_stop(timer);
    st->phase = PH_RUN;
    respond_error(st, rc);
  } else if (now >= st->lock_deadline) {
    uv_timer_stop(timer);
    st->phase = PH_RUN;
    respond_error(st, TUSC_ELOCK_TIMEOUT);
  } else if (now - st->last_release_ask >= LOCK_REASK_MS) {
    st->last_release_ask = now;
    (void)tusc_lock_request_release(tus->locks, st->id);
  }
}

/* Takes the upload's exclusive lock, asking a current holder to let go, then runs
 * `next`. Answers the request itself on failure or timeout. */
static void lock_upload(tus_request_t *st, step_fn next) {
  tusc_tus_t *tus = st->w->tus;
  char path[TUSC_PATH_MAX];
  st->after_lock = next;
  if (st->lock_path == NULL) {
    int rc = tus->store->ops->lock_path(tus->store, st->id, path, sizeof(path));
    if (rc < 0) {
      respond_store_error(st, rc);
      return;
    }
    st->lock_path = strdup(path);
    if (st->lock_path == NULL) {
      respond_error(st, TUSC_ENOMEM);
      return;
    }
  }
  st->holder.on_release_requested = on_release_requested;
  st->holder.data = st;
  int rc =
      tusc_lock_try_acquire(tus->locks, st->id, st->lock_path, tus->cfg->file_perms, &st->holder);
  if (rc == 0) {
    lock_got(st);
    return;
  }
  if (rc != TUSC_ELOCKED) {
    respond_error(st, rc);
    return;
  }
  uint64_t now = tusc_now_ms();
  st->last_release_ask = now;
  st->lock_deadline =
      now +
      (uint64_t)(tus->cfg->acquire_lock_timeout_ms > 0 ? tus->cfg->acquire_lock_timeout_ms : 0);
  (void)tusc_lock_request_release(tus->locks, st->id);
  if (!st->timer_init) {
    rc = uv_timer_init(st->w->loop, &st->timer);
    if (rc < 0) {
      respond_error(st, rc);
      return;
    }
    st->timer.data = st;
    st->timer_init = true;
  }
  st->phase = PH_LOCK_WAIT;
  uv_timer_start(&st->timer, on_lock_timer, LOCK_RETRY_MS, LOCK_RETRY_MS);
}

static void release_lock(tus_request_t *st) {
  if (st->lock_held) {
    tusc_lock_release(st->w->tus->locks, &st->holder);
    st->lock_held = false;
  }
}

/* --- writing a chunk (PATCH and creation-with-upload) ----------------------------- */

static void chunk_done(tus_request_t *st) {
  tusc_store_t *store = store_of(st);
  char offset_s[24], size_s[24];

  if (st->work_kind == WORK_SYNC && st->work_result < 0 && st->result == 0)
    st->result = st->work_result;
  st->work_kind = WORK_NOOP;

  tusc_upload_info_t *info = store->ops->info(st->upload);
  int64_t offset = info->offset;
  if (st->chunk_started) {
    char written_s[24];
    fmt_i64(offset_s, st->start_offset);
    fmt_i64(written_s, st->written);
    tusc_log_event(TUSC_LOG_INFO, "ChunkWriteComplete", "id", st->id, "offset", offset_s, "size",
                   written_s, "remote", st->client, NULL);
  }
  if (!info->size_is_deferred && offset == info->size && !st->was_complete) {
    fmt_i64(size_s, info->size);
    tusc_log_event(TUSC_LOG_INFO, "UploadFinished", "id", st->id, "size", size_s, "remote",
                   st->client, NULL);
  }
  bool partial_done = info->is_partial && !info->size_is_deferred && offset == info->size &&
                      !st->was_complete;
  int64_t expires = info->expires_at;
  store->ops->close(st->upload);
  st->upload = NULL;
  /* Released before answering so that the client's next PATCH finds it free. */
  release_lock(st);
  if (partial_done) {
    /* Finals waiting for this partial (concatenation-unfinished) are assembled in the
     * background; the PATCH answers at once. */
    tusc_concat_env_t env;
    concat_env(st, true, &env);
    if (tusc_concat_queue_partial_finished(st->w->loop, &env, st->id) < 0)
      TUSC_LOG(TUSC_LOG_WARN, "concat: cannot queue the finals waiting for %s", st->id);
  }

  if (st->aborted) {
    respond_error(st, st->abort_err);
    return;
  }
  if (st->result < 0) {
    respond_error(st, st->result);
    return;
  }
  tusc_http_response_t resp;
  response_init(st, &resp, st->op == OP_POST ? 201 : 204);
  if (st->op == OP_POST)
    tusc_http_response_header(&resp, "Location", st->location);
  fmt_i64(offset_s, offset);
  tusc_http_response_header(&resp, "Upload-Offset", offset_s);
  if (expires > 0) {
    char date[32];
    tusc_http_date(expires, date);
    tusc_http_response_header(&resp, "Upload-Expires", date);
  }
  finish(st, &resp, NULL, 0);
}

/* Ends the body phase: makes the written bytes durable (thread pool), then answers.
 * With `leave_callback` the answer is never given before returning, because the caller
 * is inside an http callback that must return first. */
static void chunk_finish(tus_request_t *st, bool leave_callback) {
  st->phase = PH_RUN;
  if (st->written > 0 && cfg_of(st)->fsync != TUSC_FSYNC_NEVER)
    queue_work(st, WORK_SYNC, chunk_done);
  else if (leave_callback)
    queue_work(st, WORK_NOOP, chunk_done);
  else
    chunk_done(st);
}

/* Called with the lock held and st->upload open: starts reading the body. */
static void chunk_begin(tus_request_t *st) {
  tusc_http_request_t *req = st->req;
  const tusc_config_t *cfg = cfg_of(st);
  tusc_upload_info_t *info = store_of(st)->ops->info(st->upload);

  st->start_offset = info->offset;
  if (!info->size_is_deferred)
    st->limit = info->size - info->offset;
  else if (cfg->max_size > 0)
    st->limit = cfg->max_size > info->offset ? cfg->max_size - info->offset : 0;
  else
    st->limit = -1;

  bool has_body = req->content_length > 0 || req->chunked;
  if (st->aborted || !has_body) {
    chunk_finish(st, false);
    return;
  }
  if (atomic_load(&st->release_requested)) {
    st->result = TUSC_EUPLOAD_INTERRUPTED;
    chunk_finish(st, false);
    return;
  }
  if (req->content_length > 0 && st->limit >= 0 && req->content_length > st->limit) {
    st->result = TUSC_EUPLOAD_SIZE_EXCEEDED;
    chunk_finish(st, false);
    return;
  }
  char offset_s[24], max_s[24];
  fmt_i64(offset_s, st->start_offset);
  fmt_i64(max_s, st->limit);
  tusc_log_event(TUSC_LOG_INFO, "ChunkWriteStart", "id", st->id, "offset", offset_s, "size", max_s,
                 "remote", st->client, NULL);
  st->chunk_started = true;
  st->phase = PH_BODY;
  /* May deliver buffered bytes at once; nothing may touch st after this call. */
  tusc_http_body_start(req);
}

/* Stops the body phase because of `err` (interrupt, size, store failure). */
static int chunk_stop(tus_request_t *st, int err) {
  st->result = err;
  chunk_finish(st, true);
  return err;
}

static int on_body(tusc_http_request_t *req, const char *data, size_t len, void *ctx) {
  (void)ctx;
  tus_request_t *st = req->handler_data;
  if (st == NULL || st->phase != PH_BODY)
    return TUSC_EUPLOAD_INTERRUPTED;
  if (atomic_load(&st->release_requested))
    return chunk_stop(st, TUSC_EUPLOAD_INTERRUPTED);

  size_t take = len;
  bool over = false;
  if (st->limit >= 0 && (int64_t)len > st->limit - st->written) {
    take = (size_t)(st->limit - st->written);
    over = true;
  }
  tusc_store_t *store = store_of(st);
  size_t done = 0;
  while (done < take) {
    ssize_t n =
        store->ops->write(st->upload, st->start_offset + st->written, data + done, take - done);
    if (n <= 0)
      return chunk_stop(st, n < 0 ? (int)n : TUSC_EINTERNAL);
    done += (size_t)n;
    st->written += n;
  }
  if (over)
    return chunk_stop(st, TUSC_EUPLOAD_SIZE_EXCEEDED);
  return 0;
}

static void on_body_end(tusc_http_request_t *req, void *ctx) {
  (void)ctx;
  tus_request_t *st = req->handler_data;
  if (st == NULL || st->phase != PH_BODY)
    return;
  st->result = 0;
  chunk_finish(st, false);
}

/* --- GET: downloads -------------------------------------------------------------- */

static void download_pump(tus_request_t *st);

static void download_end(tus_request_t *st) {
  tusc_http_request_t *req = st->req;
  st->req = NULL;
  req->handler_data = NULL;
  tusc_http_respond_end(req);
  state_free(st);
}

static void on_download_written(tusc_http_request_t *req, int status, void *arg) {
  (void)req;
  tus_request_t *st = arg;
  st->write_pending = false;
  st->pos += (int64_t)st->pending;
  st->pending = 0;
  if (status < 0 || st->aborted || st->pos > st->end) {
    download_end(st);
    return;
  }
  download_pump(st);
}

static void download_pump(tus_request_t *st) {
  int64_t want = st->end - st->pos + 1;
  size_t n = want > DOWNLOAD_CHUNK ? DOWNLOAD_CHUNK : (size_t)want;
  ssize_t got = store_of(st)->ops->read(st->upload, st->pos, st->buf, n);
  if (got <= 0) {
    /* The file shrank or failed under us. The promised length cannot be kept: end the
     * response; the http layer closes a connection whose response came up short. */
    TUSC_LOG(TUSC_LOG_ERROR, "download %s: read at %lld failed: %s", st->id, (long long)st->pos,
             got < 0 ? tusc_strerror((int)got) : "unexpected end of file");
    download_end(st);
    return;
  }
  st->pending = (size_t)got;
  st->write_pending = true;
  tusc_http_respond_write(st->req, st->buf, (size_t)got, on_download_written, st);
}

static void get_open(tus_request_t *st) {
  tusc_store_t *store = store_of(st);
  int rc = store->ops->open(store, st->id, &st->upload);
  if (rc < 0) {
    st->upload = NULL;
    respond_store_error(st, rc);
    return;
  }
  tusc_upload_info_t *info = store->ops->info(st->upload);
  int64_t size = info->offset;

  char content_type[256], disposition[512];
  bool inline_ok = false;
  const tusc_metadata_pair_t *ft = tusc_metadata_get(&info->metadata, "filetype");
  const tusc_metadata_pair_t *fn = tusc_metadata_get(&info->metadata, "filename");
  tusc_download_content_type(ft != NULL && strlen(ft->value) == ft->value_len ? ft->value : NULL,
                             content_type, sizeof(content_type), &inline_ok);
  if (tusc_download_disposition(inline_ok, fn != NULL ? fn->value : NULL,
                                fn != NULL ? fn->value_len : 0, disposition,
                                sizeof(disposition)) < 0)
    snprintf(disposition, sizeof(disposition), "attachment");

  int64_t mtime = info->created_at;
  struct stat sb;
  if (info->data_path[0] != '\0' && stat(info->data_path, &sb) == 0)
    mtime = (int64_t)sb.st_mtime;

  size_t range_len = 0;
  const char *range = header_value(st->req, "Range", &range_len);
  /* An upload grows while it is downloaded: a client resuming a download with If-Range
   * gets the rest only if the data has not changed since, else the whole thing. Only
   * the date form can match (no ETags here). */
  const char *if_range = header_value(st->req, "If-Range", NULL);
  int64_t if_range_time = 0;
  if (range != NULL && if_range != NULL &&
      (tusc_http_date_parse(if_range, &if_range_time) != 0 || if_range_time != mtime))
    range = NULL;
  int64_t first = 0, last = size - 1;
  enum tusc_range_result rr = tusc_download_range(range, range_len, size, &first, &last);

  tusc_http_response_t resp;
  char buf[96];
  if (rr == TUSC_RANGE_UNSATISFIABLE) {
    response_init(st, &resp, 416);
    snprintf(buf, sizeof(buf), "bytes */%lld", (long long)size);
    tusc_http_response_header(&resp, "Content-Range", buf);
    snprintf(buf, sizeof(buf), "%s: %s\n", tusc_error_code(TUSC_EINVALID_RANGE),
             tusc_strerror(TUSC_EINVALID_RANGE));
    respond_text(st, &resp, buf);
    return;
  }
  response_init(st, &resp, rr == TUSC_RANGE_PARTIAL ? 206 : 200);
  tusc_http_response_header(&resp, "Content-Type", content_type);
  tusc_http_response_header(&resp, "Content-Disposition", disposition);
  tusc_http_response_header(&resp, "Accept-Ranges", "bytes");
  if (mtime > 0) {
    char date[32];
    tusc_http_date(mtime, date);
    tusc_http_response_header(&resp, "Last-Modified", date);
  }
  if (rr == TUSC_RANGE_PARTIAL) {
    snprintf(buf, sizeof(buf), "bytes %lld-%lld/%lld", (long long)first, (long long)last,
             (long long)size);
    tusc_http_response_header(&resp, "Content-Range", buf);
  }
  int64_t length = size > 0 ? last - first + 1 : 0;
  if (length == 0) {
    finish(st, &resp, NULL, 0);
    return;
  }
  st->buf = malloc(DOWNLOAD_CHUNK);
  if (st->buf == NULL) {
    tusc_http_response_dispose(&resp);
    respond_error(st, TUSC_ENOMEM);
    return;
  }
  st->pos = first;
  st->end = last;
  st->phase = PH_STREAM;
  tusc_http_respond_start(st->req, &resp, length);
  download_pump(st);
}

static void get_assembled(tus_request_t *st) {
  int rc = st->work_result;
  st->work_kind = WORK_NOOP;
  if (st->aborted) {
    respond_error(st, st->abort_err);
    return;
  }
  if (rc < 0) {
    respond_store_error(st, rc);
    return;
  }
  get_open(st);
}

/* A final upload whose partials are all complete is assembled (or its running assembly
 * waited for) before it is served, so GET never returns half a concatenation. */
static void do_get(tus_request_t *st) {
  tusc_store_t *store = store_of(st);
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  bool assemble =
      store->ops->get_info(store, st->id, &info) == 0 && tusc_concat_status(store, &info);
  tusc_upload_info_dispose(&info);
  if (assemble)
    queue_work(st, WORK_ASSEMBLE, get_assembled);
  else
    get_open(st);
}

/* --- HEAD ------------------------------------------------------------------------ */

static int location_input(tus_request_t *st, tusc_location_input_t *in);

/* Upload-Concat of a final upload: its partials' URLs, built like Location. */
static void head_concat_final(tus_request_t *st, tusc_http_response_t *resp,
                              const tusc_upload_info_t *info) {
  char collection[2048];
  tusc_location_input_t in;
  location_input(st, &in);
  if (tusc_location_collection(&in, cfg_of(st)->base_path, collection, sizeof(collection)) < 0)
    snprintf(collection, sizeof(collection), "%s", cfg_of(st)->base_path);
  size_t cap = sizeof("final;");
  for (size_t i = 0; i < info->partial_count; i++)
    cap += strlen(collection) + strlen(info->partial_uploads[i]) + 1;
  char *value = malloc(cap);
  if (value != NULL && tusc_concat_format_final(info, collection, value, cap) == 0)
    tusc_http_response_header(resp, "Upload-Concat", value);
  free(value);
}

static void do_head(tus_request_t *st) {
  tusc_store_t *store = store_of(st);
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  int rc = store->ops->get_info(store, st->id, &info);
  if (rc < 0) {
    tusc_upload_info_dispose(&info);
    tusc_http_response_t resp;
    if (rc == TUSC_ENOT_FOUND || rc == TUSC_EINVALID_ID || rc == TUSC_EGONE) {
      /* A HEAD answer has no body to carry the error text; status is what counts. */
      response_init(st, &resp, tusc_error_status(rc == TUSC_EGONE ? rc : TUSC_ENOT_FOUND));
      tusc_http_response_header(&resp, "Cache-Control", "no-store");
      finish(st, &resp, NULL, 0);
      return;
    }
    respond_error(st, rc);
    return;
  }
  /* Also fills in a final's length once its partials' lengths are all known. */
  bool assemble = info.is_final && tusc_concat_status(store, &info);
  tusc_http_response_t resp;
  char num[24];
  response_init(st, &resp, 200);
  tusc_http_response_header(&resp, "Cache-Control", "no-store");
  fmt_i64(num, info.offset);
  tusc_http_response_header(&resp, "Upload-Offset", num);
  if (info.size_is_deferred && info.is_final) {
    /* Known once the partials' lengths are; not the client's to declare. */
  } else if (info.size_is_deferred) {
    tusc_http_response_header(&resp, "Upload-Defer-Length", "1");
  } else {
    fmt_i64(num, info.size);
    tusc_http_response_header(&resp, "Upload-Length", num);
  }
  if (info.metadata.count > 0) {
    char *md = tusc_metadata_format(&info.metadata);
    if (md != NULL) {
      tusc_http_response_header(&resp, "Upload-Metadata", md);
      free(md);
    }
  }
  if (info.is_partial)
    tusc_http_response_header(&resp, "Upload-Concat", "partial");
  if (info.is_final)
    head_concat_final(st, &resp, &info);
  if (assemble) {
    /* Partials done but not assembled (e.g. the note was lost in a crash): assemble in
     * the background; this HEAD shows the offset so far. */
    tusc_concat_env_t env;
    concat_env(st, false, &env);
    (void)tusc_concat_queue_assemble(st->w->loop, &env, st->id);
  }
  if (info.expires_at > 0) {
    char date[32];
    tusc_http_date(info.expires_at, date);
    tusc_http_response_header(&resp, "Upload-Expires", date);
  }
  tusc_upload_info_dispose(&info);
  finish(st, &resp, NULL, 0);
}

/* --- existence check without touching the lock file ------------------------------ */

/* Answers 404 (and returns false) for an unknown upload, so that requests for IDs that
 * never existed leave no lock file behind. */
static bool upload_exists(tus_request_t *st) {
  tusc_store_t *store = store_of(st);
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  int rc = store->ops->get_info(store, st->id, &info);
  tusc_upload_info_dispose(&info);
  if (rc < 0) {
    respond_store_error(st, rc);
    return false;
  }
  return true;
}

/* --- PATCH ----------------------------------------------------------------------- */

static void patch_info_saved(tus_request_t *st) {
  if (st->work_result < 0) {
    /* The length is not durable, so it is not known: keep the upload deferred. */
    tusc_upload_info_t *info = store_of(st)->ops->info(st->upload);
    info->size = -1;
    info->size_is_deferred = true;
    st->result = st->work_result;
    st->work_kind = WORK_NOOP;
    chunk_finish(st, false);
    return;
  }
  st->work_kind = WORK_NOOP;
  chunk_begin(st);
}

static void patch_locked(tus_request_t *st) {
  tusc_store_t *store = store_of(st);
  const tusc_config_t *cfg = cfg_of(st);
  int rc = store->ops->open(store, st->id, &st->upload);
  if (rc < 0) {
    st->upload = NULL;
    release_lock(st);
    respond_store_error(st, rc);
    return;
  }
  tusc_upload_info_t *info = store->ops->info(st->upload);
  /* Taken before a deferred length is set, so that declaring a length equal to the
   * offset still counts as finishing the upload. */
  st->was_complete = !info->size_is_deferred && info->offset == info->size;
  if (info->is_final)
    rc = TUSC_EMODIFY_FINAL;
  else if (st->client_offset != info->offset)
    rc = TUSC_EMISMATCHED_OFFSET;
  else if (st->new_length >= 0 && !info->size_is_deferred && st->new_length != info->size)
    rc = TUSC_EINVALID_UPLOAD_LENGTH;
  else if (st->new_length >= 0 && info->size_is_deferred) {
    if (st->new_length < info->offset)
      rc = TUSC_EINVALID_UPLOAD_LENGTH;
    else if (cfg->max_size > 0 && st->new_length > cfg->max_size)
      rc = TUSC_EMAX_SIZE_EXCEEDED;
    else {
      info->size = st->new_length;
      info->size_is_deferred = false;
      queue_work(st, WORK_SAVE_INFO, patch_info_saved);
      return;
    }
  }
  if (rc < 0) {
    store->ops->close(st->upload);
    st->upload = NULL;
    release_lock(st);
    respond_error(st, rc);
    return;
  }
  chunk_begin(st);
}

static void do_patch(tus_request_t *st) {
  tusc_http_request_t *req = st->req;
  size_t len = 0;
  const char *ct = header_value(req, "Content-Type", &len);
  if (!media_type_is(ct, len, OCTET_STREAM)) {
    respond_error(st, TUSC_EINVALID_CONTENT_TYPE);
    return;
  }
  const char *off = header_value(req, "Upload-Offset", &len);
  if (off == NULL || tusc_http_header_count(req, "Upload-Offset") != 1 ||
      tusc_parse_size(off, len, &st->client_offset) < 0) {
    respond_error(st, TUSC_EINVALID_OFFSET);
    return;
  }
  st->new_length = -1;
  const char *ul = header_value(req, "Upload-Length", &len);
  if (ul != NULL && (tusc_http_header_count(req, "Upload-Length") != 1 ||
                     tusc_parse_size(ul, len, &st->new_length) < 0)) {
    respond_error(st, TUSC_EINVALID_UPLOAD_LENGTH);
    return;
  }
  if (!upload_exists(st))
    return;
  lock_upload(st, patch_locked);
}

/* --- POST (creation) --------------------------------------------------------------- */

static void post_locked(tus_request_t *st) {
  tusc_store_t *store = store_of(st);
  int rc = store->ops->open(store, st->id, &st->upload);
  if (rc < 0) {
    st->upload = NULL;
    release_lock(st);
    respond_error(st, rc == TUSC_ENOT_FOUND ? TUSC_EINTERNAL : rc);
    return;
  }
  /* post_created already logged UploadFinished for an empty upload. */
  tusc_upload_info_t *info = store->ops->info(st->upload);
  st->was_complete = !info->size_is_deferred && info->offset == info->size;
  chunk_begin(st);
}

static void post_created(tus_request_t *st) {
  char size_s[24];
  if (st->work_result < 0) {
    respond_error(st, st->work_result);
    return;
  }
  fmt_i64(size_s, st->info->size_is_deferred ? -1 : st->info->size);
  tusc_log_event(TUSC_LOG_INFO, "UploadCreated", "id", st->id, "size", size_s, "url", st->location,
                 "remote", st->client, NULL);
  bool empty = !st->info->size_is_deferred && st->info->size == 0;
  if (empty)
    tusc_log_event(TUSC_LOG_INFO, "UploadFinished", "id", st->id, "size", size_s, "remote",
                   st->client, NULL);
  tusc_upload_info_dispose(st->info);
  free(st->info);
  st->info = NULL;
  if (st->aborted) {
    respond_error(st, st->abort_err);
    return;
  }
  if (st->with_body) {
    lock_upload(st, post_locked);
    return;
  }
  tusc_http_response_t resp;
  response_init(st, &resp, 201);
  tusc_http_response_header(&resp, "Location", st->location);
  finish(st, &resp, NULL, 0);
}

static int location_input(tus_request_t *st, tusc_location_input_t *in) {
  tusc_http_request_t *req = st->req;
  memset(in, 0, sizeof(*in));
  in->host = header_value(req, "Host", &in->host_len);
  in->behind_proxy = cfg_of(st)->behind_proxy;
  in->tls = st->w->tus->tls;
  if (in->behind_proxy) {
    in->x_forwarded_host = header_value(req, "X-Forwarded-Host", &in->x_forwarded_host_len);
    in->x_forwarded_proto = header_value(req, "X-Forwarded-Proto", &in->x_forwarded_proto_len);
    in->x_forwarded_prefix = header_value(req, "X-Forwarded-Prefix", &in->x_forwarded_prefix_len);
    in->forwarded = header_value(req, "Forwarded", &in->forwarded_len);
  }
  return 0;
}

/* Parses Upload-Concat into st->concat. A final upload takes its length from its
 * partials and cannot carry data: Upload-Length/Upload-Defer-Length → 400
 * ERR_INVALID_CONCAT, a body → 403 ERR_MODIFY_FINAL (as tusd). */
static int post_concat(tus_request_t *st) {
  tusc_http_request_t *req = st->req;
  const tusc_config_t *cfg = cfg_of(st);
  size_t len = 0, ct_len = 0;
  const char *value = header_value(req, "Upload-Concat", &len);
  if (tusc_http_header_count(req, "Upload-Concat") != 1)
    return TUSC_EINVALID_CONCAT;
  char collection[2048];
  tusc_location_input_t in;
  location_input(st, &in);
  bool have_collection =
      tusc_location_collection(&in, cfg->base_path, collection, sizeof(collection)) == 0;
  int rc = tusc_concat_parse(value, len, have_collection ? tusc_concat_url_path(collection) : NULL,
                             cfg->base_path, &st->concat);
  if (rc < 0 || !st->concat.is_final)
    return rc;
  if (tusc_http_header(req, "Upload-Length") != NULL ||
      tusc_http_header(req, "Upload-Defer-Length") != NULL)
    return TUSC_EINVALID_CONCAT;
  const char *ct = header_value(req, "Content-Type", &ct_len);
  if (media_type_is(ct, ct_len, OCTET_STREAM) && (req->content_length > 0 || req->chunked))
    return TUSC_EMODIFY_FINAL;
  return 0;
}

static void do_post(tus_request_t *st) {
  tusc_http_request_t *req = st->req;
  const tusc_config_t *cfg = cfg_of(st);
  size_t ul_len = 0, dl_len = 0, md_len = 0, ct_len = 0;
  int64_t size = -1;
  bool deferred = false;

  if (tusc_http_header(req, "Upload-Concat") != NULL) {
    int rc = cfg->disable_concatenation ? TUSC_ECONCATENATION_UNSUPPORTED : post_concat(st);
    if (rc < 0) {
      respond_error(st, rc);
      return;
    }
  }
  const char *ul = header_value(req, "Upload-Length", &ul_len);
  const char *dl = header_value(req, "Upload-Defer-Length", &dl_len);
  if (ul != NULL && dl != NULL) {
    respond_error(st, TUSC_EAMBIGUOUS_UPLOAD_LENGTH);
    return;
  }
  if (st->concat.is_final) {
    /* The length is the partials' sum (tusc_concat_prepare_final). */
  } else if (dl != NULL) {
    if (tusc_http_header_count(req, "Upload-Defer-Length") != 1 || dl_len != 1 || dl[0] != '1') {
      respond_error(st, TUSC_EINVALID_UPLOAD_LENGTH_DEFER);
      return;
    }
    deferred = true;
  } else if (ul == NULL || tusc_http_header_count(req, "Upload-Length") != 1 ||
             tusc_parse_size(ul, ul_len, &size) < 0) {
    respond_error(st, TUSC_EINVALID_UPLOAD_LENGTH);
    return;
  }
  if (!deferred && cfg->max_size > 0 && size > cfg->max_size) {
    respond_error(st, TUSC_EMAX_SIZE_EXCEEDED);
    return;
  }

  tusc_metadata_t md = {0};
  const char *mdv = header_value(req, "Upload-Metadata", &md_len);
  if (mdv != NULL) {
    if (tusc_http_header_count(req, "Upload-Metadata") != 1) {
      respond_error(st, TUSC_EINVALID_METADATA);
      return;
    }
    if (cfg->max_metadata_size > 0 && (int64_t)md_len > cfg->max_metadata_size) {
      respond_error(st, TUSC_EMETADATA_TOO_LARGE);
      return;
    }
    int rc = tusc_metadata_parse(mdv, md_len, &md);
    if (rc < 0) {
      respond_error(st, rc);
      return;
    }
  }

  const char *ct = header_value(req, "Content-Type", &ct_len);
  st->with_body = media_type_is(ct, ct_len, OCTET_STREAM);
  if (st->with_body && req->content_length > 0) {
    int64_t cap = deferred ? cfg->max_size : size;
    if (cap >= 0 && !(deferred && cap == 0) && req->content_length > cap) {
      tusc_metadata_dispose(&md);
      respond_error(st, TUSC_EUPLOAD_SIZE_EXCEEDED);
      return;
    }
  }

  char id[33];
  char collection[2048];
  tusc_location_input_t in;
  location_input(st, &in);
  int rc = tusc_location_collection(&in, cfg->base_path, collection, sizeof(collection));
  if (rc == 0)
    rc = tusc_id_generate(id);
  if (rc < 0) {
    tusc_metadata_dispose(&md);
    respond_error(st, rc == UV_ENOBUFS ? TUSC_EINVALID_HEADER : rc);
    return;
  }
  snprintf(st->id, sizeof(st->id), "%s", id);
  size_t loc_len = strlen(collection) + strlen(id) + 1;
  st->location = malloc(loc_len);
  st->info = malloc(sizeof(*st->info));
  if (st->location == NULL || st->info == NULL) {
    tusc_metadata_dispose(&md);
    respond_error(st, TUSC_ENOMEM);
    return;
  }
  snprintf(st->location, loc_len, "%s%s", collection, id);
  tusc_upload_info_init(st->info);
  snprintf(st->info->id, sizeof(st->info->id), "%s", id);
  st->info->size = deferred ? -1 : size;
  st->info->size_is_deferred = deferred;
  st->info->offset = 0;
  st->info->metadata = md;
  st->info->created_at = (int64_t)time(NULL);
  st->info->is_partial = st->concat.is_partial;
  if (st->concat.is_final) {
    rc = tusc_concat_prepare_final(store_of(st), &st->concat, cfg->max_size, st->info);
    if (rc < 0) {
      respond_error(st, rc);
      return;
    }
  }
  st->op = OP_POST;
  queue_work(st, WORK_CREATE, post_created);
}

/* --- DELETE ---------------------------------------------------------------------- */

static void delete_done(tus_request_t *st) {
  int rc = st->work_result;
  st->work_kind = WORK_NOOP;
  release_lock(st);
  if (rc == 0)
    tusc_log_event(TUSC_LOG_INFO, "UploadTerminated", "id", st->id, "remote", st->client, NULL);
  if (st->aborted) {
    respond_error(st, st->abort_err);
    return;
  }
  if (rc < 0) {
    respond_store_error(st, rc);
    return;
  }
  tusc_http_response_t resp;
  response_init(st, &resp, 204);
  finish(st, &resp, NULL, 0);
}

static void delete_locked(tus_request_t *st) {
  queue_work(st, WORK_TERMINATE, delete_done);
}

static void do_delete(tus_request_t *st) {
  if (!upload_exists(st))
    return;
  lock_upload(st, delete_locked);
}

/* --- OPTIONS, greeting ------------------------------------------------------------ */

static void do_options(tus_request_t *st) {
  tusc_http_response_t resp;
  const tusc_config_t *cfg = cfg_of(st);
  response_init(st, &resp, 200);
  tusc_http_response_header(&resp, "Tus-Version", TUS_VERSION);
  tusc_http_response_header(&resp, "Tus-Extension", st->w->tus->extensions);
  if (cfg->max_size > 0)
    tusc_http_response_headerf(&resp, "Tus-Max-Size", "%lld", (long long)cfg->max_size);
  finish(st, &resp, NULL, 0);
}

static void do_greeting(tus_request_t *st) {
  char body[1024];
  snprintf(body, sizeof(body),
           "Welcome to tusc\n"
           "===============\n"
           "\n"
           "This is tusc %s, a server for the tus resumable upload protocol (tus.io).\n"
           "\n"
           "Uploads are accepted at the endpoint %s\n"
           "Point a tus client (tus-js-client, tuspy, Uppy, ...) at that URL to start.\n",
#ifdef TUSC_VERSION
           TUSC_VERSION,
#else
           "",
#endif
           cfg_of(st)->base_path);
  tusc_http_response_t resp;
  response_init(st, &resp, 200);
  respond_text(st, &resp, body);
}

/* --- routing --------------------------------------------------------------------- */

static bool version_ok(const tusc_http_request_t *req, enum tusc_http_method method) {
  /* Browsers and plain HTTP tools send GET/HEAD without (or with any) Tus-Resumable;
   * tusd exempts both whatever they carry, and PROTOCOL.md says to do the same. */
  if (method == TUSC_HTTP_GET || method == TUSC_HTTP_HEAD)
    return true;
  size_t len = 0;
  const char *v = header_value(req, "Tus-Resumable", &len);
  return v != NULL && len == strlen(TUS_VERSION) && memcmp(v, TUS_VERSION, len) == 0;
}

static void route_upload(tus_request_t *st, enum tusc_http_method method, const char *raw,
                         size_t raw_len) {
  const tusc_config_t *cfg = cfg_of(st);
  char allow[64];
  snprintf(allow, sizeof(allow), "OPTIONS, HEAD, PATCH%s%s", cfg->disable_download ? "" : ", GET",
           cfg->disable_termination ? "" : ", DELETE");

  bool known = method == TUSC_HTTP_HEAD || method == TUSC_HTTP_PATCH ||
               (method == TUSC_HTTP_GET && !cfg->disable_download) ||
               (method == TUSC_HTTP_DELETE && !cfg->disable_termination);
  if (!known) {
    respond_error_with(st, TUSC_EMETHOD_NOT_ALLOWED, allow);
    return;
  }
  long n = tusc_url_decode(raw, raw_len, st->id, sizeof(st->id));
  if (n <= 0 || !tusc_id_valid(st->id, (size_t)n) || strlen(st->id) != (size_t)n) {
    st->id[0] = '\0';
    if (method == TUSC_HTTP_HEAD) {
      tusc_http_response_t resp;
      response_init(st, &resp, 404);
      tusc_http_response_header(&resp, "Cache-Control", "no-store");
      finish(st, &resp, NULL, 0);
      return;
    }
    respond_error(st, TUSC_ENOT_FOUND);
    return;
  }
  switch (method) {
  case TUSC_HTTP_HEAD:
    do_head(st);
    break;
  case TUSC_HTTP_PATCH:
    st->op = OP_PATCH;
    do_patch(st);
    break;
  case TUSC_HTTP_DELETE:
    st->op = OP_DELETE;
    do_delete(st);
    break;
  case TUSC_HTTP_GET:
    st->op = OP_GET;
    do_get(st);
    break;
  default:
    respond_error_with(st, TUSC_EMETHOD_NOT_ALLOWED, allow);
    break;
  }
}

static void client_address(tus_request_t *st) {
  size_t xff_len = 0, fwd_len = 0;
  const char *xff = header_value(st->req, "X-Forwarded-For", &xff_len);
  const char *fwd = header_value(st->req, "Forwarded", &fwd_len);
  tusc_location_client_addr(cfg_of(st)->behind_proxy, xff, xff_len, fwd, fwd_len,
                            st->req->remote_addr, st->client);
  if (strcmp(st->client, st->req->remote_addr) != 0)
    tusc_http_request_set_client(st->req, st->client);
}

static void on_request(tusc_http_request_t *req, void *ctx) {
  tusc_tus_worker_t *w = ctx;
  tusc_tus_t *tus = w->tus;
  const tusc_config_t *cfg = tus->cfg;

  tus_request_t *st = calloc(1, sizeof(*st));
  if (st == NULL) {
    tusc_http_response_t resp;
    tusc_http_response_init(&resp, 503);
    resp.close = true;
    tusc_http_respond(req, &resp, NULL, 0);
    return;
  }
  st->w = w;
  st->req = req;
  st->new_length = -1;
  atomic_init(&st->release_requested, false);
  st->next = w->requests;
  if (w->requests != NULL)
    w->requests->prev = st;
  w->requests = st;
  req->handler_data = st;
  client_address(st);

  /* Old clients that can only send GET/POST name the real method here. */
  enum tusc_http_method method = req->method;
  size_t ov_len = 0;
  const char *ov = header_value(req, "X-HTTP-Method-Override", &ov_len);
  if (ov != NULL && ov_len > 0)
    method = method_from_name(ov, ov_len);
  st->preflight = method == TUSC_HTTP_OPTIONS;

  const char *origin = header_value(req, "Origin", NULL);
  if (tus->cors.enabled && origin != NULL && origin[0] != '\0' &&
      !tusc_cors_origin_allowed(&tus->cors, origin)) {
    respond_error(st, TUSC_EORIGIN_NOT_ALLOWED);
    return;
  }
  if (method == TUSC_HTTP_OPTIONS) {
    do_options(st);
    return;
  }

  const char *path = req->path;
  size_t path_len = strlen(path);
  const char *base = cfg->base_path;
  size_t base_len = strlen(base);
  bool is_collection =
      (path_len == base_len && memcmp(path, base, base_len) == 0) ||
      (base_len > 1 && path_len == base_len - 1 && memcmp(path, base, base_len - 1) == 0);
  bool is_upload = !is_collection && path_len > base_len && memcmp(path, base, base_len) == 0;
  bool is_metrics =
      cfg->expose_metrics && cfg->metrics_path != NULL && strcmp(path, cfg->metrics_path) == 0;

  /* The metrics endpoint is served elsewhere; never route it as an upload ID. */
  if (is_metrics) {
    respond_not_found_page(st);
    return;
  }
  if (!is_collection && !is_upload) {
    if (strcmp(path, "/") == 0 && cfg->show_greeting &&
        (method == TUSC_HTTP_GET || method == TUSC_HTTP_HEAD)) {
      do_greeting(st);
      return;
    }
    respond_not_found_page(st);
    return;
  }

  if (!version_ok(req, method)) {
    respond_error(st, TUSC_EUNSUPPORTED_VERSION);
    return;
  }

  if (is_collection) {
    if (method == TUSC_HTTP_POST) {
      do_post(st);
      return;
    }
    if ((method == TUSC_HTTP_GET || method == TUSC_HTTP_HEAD) && strcmp(base, "/") == 0 &&
        cfg->show_greeting) {
      do_greeting(st);
      return;
    }
    respond_error_with(st, TUSC_EMETHOD_NOT_ALLOWED, "OPTIONS, POST");
    return;
  }
  route_upload(st, method, path + base_len, path_len - base_len);
}

static void on_abort(tusc_http_request_t *req, int err, void *ctx) {
  (void)ctx;
  tus_request_t *st = req->handler_data;
  if (st == NULL)
    return;
  st->aborted = true;
  st->abort_err = err;
  switch (st->phase) {
  case PH_BODY:
    /* Keep what reached the file: make it durable, release, answer (discarded). */
    st->result = err;
    chunk_finish(st, true);
    break;
  case PH_LOCK_WAIT:
    uv_timer_stop(&st->timer);
    st->phase = PH_RUN;
    respond_error(st, err);
    break;
  case PH_STREAM:
    if (!st->write_pending)
      download_end(st);
    break;
  case PH_WORK:
  case PH_RUN:
    /* after_work comes back and sees `aborted`. PH_RUN cannot be seen here: the
     * handler never returns to the loop in it. */
    break;
  }
}

/* --- lock-release wake-ups ------------------------------------------------------- */

static void on_release_async(uv_async_t *async) {
  tusc_tus_worker_t *w = async->data;
  tus_request_t *st = w->requests;
  while (st != NULL) {
    tus_request_t *next = st->next;
    /* Only a body in flight is cut short; every other phase ends on its own soon and
     * then releases the lock. chunk_finish never frees st before returning. */
    if (st->phase == PH_BODY && atomic_load(&st->release_requested)) {
      tusc_http_body_pause(st->req);
      st->result = TUSC_EUPLOAD_INTERRUPTED;
      chunk_finish(st, true);
    }
    st = next;
  }
}

/* --- public ---------------------------------------------------------------------- */

int tusc_tus_new(const tusc_config_t *cfg, tusc_store_t *store, tusc_lock_table_t *locks,
                 tusc_tus_t **out) {
  tusc_tus_t *tus = calloc(1, sizeof(*tus));
  if (tus == NULL)
    return TUSC_ENOMEM;
  tus->cfg = cfg;
  tus->store = store;
  tus->locks = locks;
  tus->tls = cfg->tls_certificate != NULL && cfg->tls_certificate[0] != '\0';
  int rc = tusc_cors_init(&tus->cors, cfg);
  if (rc < 0) {
    free(tus);
    return rc;
  }
  snprintf(tus->extensions, sizeof(tus->extensions), "creation,creation-with-upload%s%s,%s",
           cfg->disable_termination ? "" : ",termination",
           cfg->disable_concatenation ? "" : ",concatenation,concatenation-unfinished",
           "creation-defer-length");
  *out = tus;
  return 0;
}

void tusc_tus_free(tusc_tus_t *tus) {
  if (tus == NULL)
    return;
  tusc_cors_dispose(&tus->cors);
  free(tus);
}

int tusc_tus_worker_new(tusc_tus_t *tus, uv_loop_t *loop, tusc_tus_worker_t **out) {
  tusc_tus_worker_t *w = calloc(1, sizeof(*w));
  if (w == NULL)
    return TUSC_ENOMEM;
  w->tus = tus;
  w->loop = loop;
  atomic_init(&w->closing, false);
  int rc = uv_async_init(loop, &w->release_async, on_release_async);
  if (rc < 0) {
    free(w);
    return rc;
  }
  w->release_async.data = w;
  *out = w;
  return 0;
}

static void on_worker_async_closed(uv_handle_t *handle) {
  tusc_tus_worker_t *w = handle->data;
  w->async_closed = true;
  worker_maybe_free(w);
}

void tusc_tus_worker_close(tusc_tus_worker_t *worker) {
  if (worker == NULL || atomic_load(&worker->closing))
    return;
  /* Requests still in flight (thread-pool work) keep the worker alive; the last one
   * to go frees it. */
  atomic_store(&worker->closing, true);
  uv_close((uv_handle_t *)&worker->release_async, on_worker_async_closed);
}

static const tusc_http_handler_t http_handler = {
    .on_request = on_request,
    .on_body = on_body,
    .on_body_end = on_body_end,
    .on_abort = on_abort,
};

const tusc_http_handler_t *tusc_tus_http_handler(void) {
  return &http_handler;
}

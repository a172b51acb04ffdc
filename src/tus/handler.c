/*
 * handler — the tus 1.0 protocol on top of the http layer (see handler.h): routing,
 * authentication, aborts, the tus and worker objects, the thread-pool switch and the
 * upload locks. The methods, hook glue and concatenation jobs live in the files listed
 * in handler_internal.h, which also holds the request state they share.
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
 *   AUTH       a password check waits for its loop's hashing slot or hashes (auth.h);
 *              an abort drops a waiting one, a hashing one comes back
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

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth/auth.h"
#include "common/error.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "hooks/hooks.h"
#include "metrics/metrics.h"
#include "tus/checksum.h"
#include "tus/concat.h"
#include "tus/download.h"
#include "tus/cors.h"
#include "tus/handler_internal.h"
#include "tus/headers.h"
#include "tus/ietf.h"
#include "tus/location.h"
#include "tus/verify.h"

#define LOCK_RETRY_MS 10
/* A release request can be lost when the lock changes hands while we wait; ask again. */
#define LOCK_REASK_MS 500

/* The names the thread-pool and lock sections below still use, kept so that those
 * sections stay as they were (they are being rewritten on other branches). */
static inline tusc_store_t *store_of(const tus_request_t *st) {
  return tus_store_of(st);
}
static inline void respond_error(tus_request_t *st, int err) {
  tus_respond_error(st, err);
}
static inline void respond_store_error(tus_request_t *st, int err) {
  tus_respond_store_error(st, err);
}
static inline void chunk_finish(tus_request_t *st, bool leave_callback) {
  tus_chunk_finish(st, leave_callback);
}
#define DOWNLOAD_CHUNK (64 * 1024)
static void chunk_done(tus_request_t *st);

/* --- small helpers --------------------------------------------------------------- */

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

void tus_worker_maybe_free(tusc_tus_worker_t *w) {
  if (atomic_load(&w->closing) && w->async_closed && w->requests == NULL && w->bg_jobs == 0)
    free(w);
}

static void respond_not_found_page(tus_request_t *st) {
  tusc_http_response_t resp;
  tus_response_init(st, &resp, 404);
  tus_respond_text(st, &resp, "404 page not found\n");
}

static void respond_unauthorized(tus_request_t *st) {
  tusc_http_response_t resp;
  char body[128];
  const char *challenges[2];
  size_t n = tusc_auth_challenges(st->w->tus->auth, challenges);
  tus_response_init(st, &resp, 401);
  for (size_t i = 0; i < n; i++)
    tusc_http_response_header(&resp, "WWW-Authenticate", challenges[i]);
  snprintf(body, sizeof(body), "%s: %s\n", tusc_error_code(TUSC_EUNAUTHORIZED),
           tusc_strerror(TUSC_EUNAUTHORIZED));
  tus_respond_text(st, &resp, body);
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
    if (st->principal != NULL && st->info->owner == NULL &&
        (st->info->owner = strdup(st->principal)) == NULL) {
      rc = TUSC_ENOMEM;
      break;
    }
    rc = store->ops->create(store, st->info);
    /* Assembled afterwards by a job that takes its locks on the loop (post_created). */
    if (rc == 0 && st->info->is_final)
      rc = tusc_concat_note_final(store, st->info);
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
  case WORK_VERIFY:
    rc = tusc_verify_commit(st->verify, st->w->tus->cfg->fsync != TUSC_FSYNC_NEVER);
    break;
  case WORK_DISCARD:
    rc = tusc_verify_discard(st->verify);
    break;
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
void queue_work(tus_request_t *st, enum work_kind kind, step_fn next) {
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
void lock_upload(tus_request_t *st, step_fn next) {
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
  tusc_metrics_lock_wait();
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

void release_lock(tus_request_t *st) {
  if (st->lock_held) {
    tusc_lock_release(st->w->tus->locks, &st->holder);
    st->lock_held = false;
  }
}

static void on_progress_tick(uv_timer_t *timer) {
  tus_request_t *st = timer->data;
  if (st->phase != PH_BODY || st->progress != NULL || st->upload == NULL)
    return;
  const tusc_upload_info_t *info = tus_store_of(st)->ops->info(st->upload);
  if (info->offset == st->progress_offset)
    return;
  /* UV_EBUSY (queue full) drops this one; the next tick tries again. */
  if (tus_hook_fire(st, TUSC_HOOK_POST_RECEIVE, info, true) == 0)
    st->progress_offset = info->offset;
}

/* Body phase starts: post-receive every -progress-hooks-interval while bytes arrive. */
static void progress_start(tus_request_t *st) {
  if (!st->metrics_active) {
    st->metrics_active = true;
    tusc_metrics_active_uploads(1);
  }
  st->progress_offset = st->start_offset;
  if (!tus_hook_on(st, TUSC_HOOK_POST_RECEIVE))
    return;
  if (!st->timer_init) {
    if (uv_timer_init(st->w->loop, &st->timer) < 0)
      return;
    st->timer.data = st;
    st->timer_init = true;
  }
  int64_t every = tusc_hooks_progress_interval_ms(st->w->tus->hooks);
  if (every < 1)
    every = 1;
  st->progress_timer = true;
  uv_timer_start(&st->timer, on_progress_tick, (uint64_t)every, (uint64_t)every);
}

/* Body phase ends: one last post-receive when the offset moved since the previous. */
static void progress_end(tus_request_t *st) {
  if (st->metrics_active) {
    st->metrics_active = false;
    tusc_metrics_active_uploads(-1);
  }
  if (!st->progress_timer)
    return;
  st->progress_timer = false;
  uv_timer_stop(&st->timer);
  if (st->stopped || st->upload == NULL)
    return;
  const tusc_upload_info_t *info = tus_store_of(st)->ops->info(st->upload);
  if (info->offset != st->progress_offset) {
    st->progress_offset = info->offset;
    (void)tus_hook_fire(st, TUSC_HOOK_POST_RECEIVE, info, false);
  }
}

/* --- finish hooks (pre-finish, post-finish) ----------------------------------------- */

/* Whether this request, ending with offset == size, runs the finish hooks: when it
 * completed the upload, or when an earlier attempt left them pending (a pre-finish
 * that failed, a crash in between: tusd bug #496 leaves such uploads without hooks
 * forever). Uploads from before hooks were enabled (UNKNOWN) are left alone. */
static bool finish_hooks_due(const tus_request_t *st, const tusc_upload_info_t *info) {
  if (st->finish_hooks_ran || st->result < 0 || st->aborted || st->stopped ||
      !tus_finish_hooks_on(st))
    return false;
  if (info->size_is_deferred || info->offset != info->size)
    return false;
  return !st->was_complete || info->finish_hooks == TUSC_FINISH_HOOKS_PENDING;
}

static void finish_hooks_saved(tus_request_t *st) {
  if (st->work_result < 0)
    TUSC_LOG(TUSC_LOG_WARN, "upload %s: cannot record that its finish hooks ran: %s", st->id,
             tusc_strerror(st->work_result));
  st->work_kind = WORK_NOOP;
  (void)tus_hook_fire(st, TUSC_HOOK_POST_FINISH, tus_store_of(st)->ops->info(st->upload), false);
  chunk_done(st);
}

static void finish_hooks_record(tus_request_t *st) {
  tusc_upload_info_t *info = tus_store_of(st)->ops->info(st->upload);
  info->finish_hooks = TUSC_FINISH_HOOKS_DONE;
  queue_work(st, WORK_SAVE_INFO, finish_hooks_saved);
}

static void finish_hooks_pre_done(tus_request_t *st) {
  if (st->hook_status < 0) {
    /* Stays PENDING on disk: a later PATCH at offset == size runs them again. */
    st->result = tus_hook_failure(st);
    chunk_done(st);
    return;
  }
  finish_hooks_record(st);
}

/* With the lock held and the data durable: pre-finish, record, post-finish, then back
 * to chunk_done for the answer. */
static void finish_hooks_run(tus_request_t *st) {
  st->finish_hooks_ran = true;
  if (tus_hook_on(st, TUSC_HOOK_PRE_FINISH)) {
    tus_hook_block(st, TUSC_HOOK_PRE_FINISH, tus_store_of(st)->ops->info(st->upload),
                   finish_hooks_pre_done);
    return;
  }
  finish_hooks_record(st);
}

/* An empty PATCH at the length of a complete final whose finish hooks are pending
 * (pre-finish failed in the background) runs them again, as for any upload. */
static bool final_retry(const tus_request_t *st, const tusc_upload_info_t *info) {
  return st->was_complete && info->finish_hooks == TUSC_FINISH_HOOKS_PENDING &&
         st->client_offset == info->offset && st->new_length < 0 && st->req->content_length == 0 &&
         !st->req->chunked && tus_finish_hooks_on(st);
}

/* --- metrics endpoint --------------------------------------------------------------- */

static void do_metrics(tus_request_t *st) {
  char *text = NULL;
  size_t len = 0;
  if (tusc_metrics_render(&text, &len) < 0) {
    tus_respond_error(st, TUSC_ENOMEM);
    return;
  }
  tusc_http_response_t resp;
  tusc_http_response_init(&resp, 200);
  tusc_http_response_header(&resp, "Content-Type", TUSC_METRICS_CONTENT_TYPE);
  tus_finish(st, &resp, text, len);
  free(text);
}

/* --- writing a chunk (PATCH and creation-with-upload) ----------------------------- */

static void chunk_done(tus_request_t *st) {
  tusc_store_t *store = tus_store_of(st);
  char offset_s[24], size_s[24];

  if ((st->work_kind == WORK_SYNC || st->work_kind == WORK_VERIFY) && st->work_result < 0 &&
      st->result == 0)
    st->result = st->work_result;
  st->work_kind = WORK_NOOP;

  tusc_upload_info_t *info = store->ops->info(st->upload);
  /* IETF draft: a request that completes an upload of unknown length fixes it now. */
  if (st->ietf.version > 0 &&
      tusc_ietf_chunk_end(&st->ietf, info, st->aborted, st->work_result, &st->result)) {
    queue_work(st, WORK_SAVE_INFO, chunk_done);
    return;
  }
  int64_t offset = info->offset;
  if (st->chunk_started) {
    char written_s[24];
    tus_fmt_i64(offset_s, st->start_offset);
    tus_fmt_i64(written_s, st->written);
    tusc_log_event(TUSC_LOG_INFO, "ChunkWriteComplete", "id", st->id, "offset", offset_s, "size",
                   written_s, "remote", st->client, NULL);
    st->chunk_started = false; /* once, also when the finish hooks bring us back */
  }
  if (!info->size_is_deferred && offset == info->size && !st->was_complete &&
      !st->finish_hooks_ran) {
    tus_fmt_i64(size_s, info->size);
    tusc_log_event(TUSC_LOG_INFO, "UploadFinished", "id", st->id, "size", size_s, "remote",
                   st->client, NULL);
    tusc_metrics_upload_finished();
  }
  if (finish_hooks_due(st, info)) {
    finish_hooks_run(st);
    return;
  }
  if (st->stopped) {
    tus_stop_terminate(st);
    return;
  }
  bool partial_done = info->is_partial && !info->size_is_deferred && offset == info->size &&
                      !st->was_complete;
  int64_t expires = tus_expires_s(st, info, st->written > 0);
  store->ops->close(st->upload);
  st->upload = NULL;
  /* Released before answering so that the client's next PATCH finds it free. */
  release_lock(st);
  if (partial_done) {
    /* Finals waiting for this partial (concatenation-unfinished) are assembled in the
     * background; the PATCH answers at once. */
    tus_concat_queue_bg(st, true, NULL);
  }

  if (st->aborted) {
    tus_respond_error(st, st->abort_err);
    return;
  }
  if (st->result < 0) {
    tus_respond_error(st, st->result);
    return;
  }
  tusc_http_response_t resp;
  tus_response_init(st, &resp, st->op == OP_POST ? 201 : 204);
  if (st->op == OP_POST)
    tusc_http_response_header(&resp, "Location", st->location);
  tus_fmt_i64(offset_s, offset);
  tusc_http_response_header(&resp, "Upload-Offset", offset_s);
  if (expires > 0) {
    char date[32];
    tusc_http_date(expires, date);
    tusc_http_response_header(&resp, "Upload-Expires", date);
  }
  tus_finish(st, &resp, NULL, 0);
}

/* Ends the body phase: makes the written bytes durable (thread pool), then answers.
 * With `leave_callback` the answer is never given before returning, because the caller
 * is inside an http callback that must return first. */
void tus_chunk_finish(tus_request_t *st, bool leave_callback) {
  progress_end(st);
  if (st->timer_init && tus_cfg_of(st)->min_upload_rate > 0)
    uv_timer_stop(&st->timer);
  st->phase = PH_RUN;
  if (st->verify != NULL) {
    /* A checksummed chunk reaches the data file only once its digest matched. */
    queue_work(st, st->result == 0 && !st->aborted ? WORK_VERIFY : WORK_DISCARD, chunk_done);
    return;
  }
  if (st->written > 0 && tus_cfg_of(st)->fsync != TUSC_FSYNC_NEVER)
    queue_work(st, WORK_SYNC, chunk_done);
  else if (leave_callback)
    queue_work(st, WORK_NOOP, chunk_done);
  else
    chunk_done(st);
}

/* -min-upload-rate: every window, the body must have brought rate * window bytes, or
 * it is cut like an interrupted upload: what arrived is kept and made durable, the
 * client gets 408 and may resume. The lock-wait timer is free during the body. */
static void on_rate_timer(uv_timer_t *timer) {
  tus_request_t *st = timer->data;
  const tusc_config_t *cfg = tus_cfg_of(st);
  if (st->phase != PH_BODY) {
    uv_timer_stop(timer);
    return;
  }
  int64_t need = cfg->min_upload_rate * cfg->min_upload_rate_window_ms / 1000;
  if (st->written - st->rate_mark >= need) {
    st->rate_mark = st->written;
    return;
  }
  TUSC_LOG(TUSC_LOG_INFO, "upload %s from %s: %lld bytes in %lld ms, below -min-upload-rate",
           st->id, st->client, (long long)(st->written - st->rate_mark),
           (long long)cfg->min_upload_rate_window_ms);
  uv_timer_stop(timer);
  tusc_http_body_pause(st->req);
  st->result = TUSC_EUPLOAD_TOO_SLOW;
  tus_chunk_finish(st, true);
}

static void rate_start(tus_request_t *st) {
  const tusc_config_t *cfg = tus_cfg_of(st);
  if (cfg->min_upload_rate <= 0 || cfg->min_upload_rate_window_ms <= 0)
    return;
  if (!st->timer_init) {
    if (uv_timer_init(st->w->loop, &st->timer) != 0)
      return;
    st->timer.data = st;
    st->timer_init = true;
  }
  st->rate_mark = st->written;
  uint64_t window = (uint64_t)cfg->min_upload_rate_window_ms;
  uv_timer_start(&st->timer, on_rate_timer, window, window);
}

/* Called with the lock held and st->upload open: starts reading the body. */
void tus_chunk_begin(tus_request_t *st) {
  tusc_http_request_t *req = st->req;
  const tusc_config_t *cfg = tus_cfg_of(st);
  tusc_upload_info_t *info = tus_store_of(st)->ops->info(st->upload);

  st->start_offset = info->offset;
  if (!info->size_is_deferred)
    st->limit = info->size - info->offset;
  else if (cfg->max_size > 0)
    st->limit = cfg->max_size > info->offset ? cfg->max_size - info->offset : 0;
  else
    st->limit = -1;

  bool has_body = req->content_length > 0 || req->chunked;
  if (st->aborted || !has_body) {
    tus_chunk_finish(st, false);
    return;
  }
  if (atomic_load(&st->release_requested)) {
    st->result = TUSC_EUPLOAD_INTERRUPTED;
    tus_chunk_finish(st, false);
    return;
  }
  if (req->content_length > 0 && st->limit >= 0 && req->content_length > st->limit) {
    st->result = TUSC_EUPLOAD_SIZE_EXCEEDED;
    tus_chunk_finish(st, false);
    return;
  }
  if (st->verify != NULL) {
    int vrc = tusc_verify_begin(st->verify, tus_store_of(st), st->upload);
    if (vrc < 0) {
      st->result = vrc;
      tus_chunk_finish(st, false);
      return;
    }
  }
  char offset_s[24], max_s[24];
  tus_fmt_i64(offset_s, st->start_offset);
  tus_fmt_i64(max_s, st->limit);
  tusc_log_event(TUSC_LOG_INFO, "ChunkWriteStart", "id", st->id, "offset", offset_s, "size", max_s,
                 "remote", st->client, NULL);
  st->chunk_started = true;
  progress_start(st);
  rate_start(st);
  st->phase = PH_BODY;
  /* May deliver buffered bytes at once; nothing may touch st after this call. */
  tusc_http_body_start(req);
}

/* Stops the body phase because of `err` (interrupt, size, store failure). */
static int chunk_stop(tus_request_t *st, int err) {
  st->result = err;
  tus_chunk_finish(st, true);
  return err;
}

int tus_on_body(tusc_http_request_t *req, const char *data, size_t len, void *ctx) {
  (void)ctx;
  tus_request_t *st = req->handler_data;
  if (st == NULL || st->phase != PH_BODY)
    return TUSC_EUPLOAD_INTERRUPTED;
  tusc_metrics_bytes_received(len);
  if (atomic_load(&st->release_requested))
    return chunk_stop(st, TUSC_EUPLOAD_INTERRUPTED);

  size_t take = len;
  bool over = false;
  if (st->limit >= 0 && (int64_t)len > st->limit - st->written) {
    take = (size_t)(st->limit - st->written);
    over = true;
  }
  tusc_store_t *store = tus_store_of(st);
  size_t done = 0;
  while (done < take) {
    ssize_t n = st->verify != NULL
                    ? tusc_verify_write(st->verify, data + done, take - done)
                    : store->ops->write(st->upload, st->start_offset + st->written, data + done,
                                        take - done);
    if (n <= 0)
      return chunk_stop(st, n < 0 ? (int)n : TUSC_EINTERNAL);
    done += (size_t)n;
    st->written += n;
    tusc_metrics_bytes_written((uint64_t)n);
  }
  if (over)
    return chunk_stop(st, TUSC_EUPLOAD_SIZE_EXCEEDED);
  return 0;
}

/* An Upload-Checksum trailer that `Trailer:` did not announce: the bytes went to the data
 * file unhashed and cannot be verified now, so the chunk is dropped and refused. */
static int drop_unannounced(tus_request_t *st) {
  int rc = tusc_verify_new_dropper(tus_store_of(st), st->upload, st->start_offset, &st->verify);
  return rc < 0 ? rc : TUSC_EINVALID_CHECKSUM;
}

void tus_on_body_end(tusc_http_request_t *req, void *ctx) {
  (void)ctx;
  tus_request_t *st = req->handler_data;
  if (st == NULL || st->phase != PH_BODY)
    return;
  st->result = 0;
  if (st->verify != NULL)
    st->result = tusc_verify_body_end(st->verify, req);
  else if (tusc_verify_has_trailer(req))
    st->result = drop_unannounced(st);
  tus_chunk_finish(st, false);
}

/* --- GET: downloads -------------------------------------------------------------- */

static void download_pump(tus_request_t *st);

void tus_download_end(tus_request_t *st) {
  tusc_http_request_t *req = st->req;
  st->req = NULL;
  req->handler_data = NULL;
  tusc_metrics_request_done(req->method, req->start_ms);
  tusc_http_respond_end(req);
  tus_state_free(st);
}

static void on_download_written(tusc_http_request_t *req, int status, void *arg) {
  (void)req;
  tus_request_t *st = arg;
  st->write_pending = false;
  st->pos += (int64_t)st->pending;
  st->pending = 0;
  if (status < 0 || st->aborted || st->pos > st->end) {
    tus_download_end(st);
    return;
  }
  download_pump(st);
}

static void download_pump(tus_request_t *st) {
  int64_t want = st->end - st->pos + 1;
  size_t n = want > DOWNLOAD_CHUNK ? DOWNLOAD_CHUNK : (size_t)want;
  ssize_t got = tus_store_of(st)->ops->read(st->upload, st->pos, st->buf, n);
  if (got <= 0) {
    /* The file shrank or failed under us. The promised length cannot be kept: end the
     * response; the http layer closes a connection whose response came up short. */
    TUSC_LOG(TUSC_LOG_ERROR, "download %s: read at %lld failed: %s", st->id, (long long)st->pos,
             got < 0 ? tusc_strerror((int)got) : "unexpected end of file");
    tus_download_end(st);
    return;
  }
  st->pending = (size_t)got;
  st->write_pending = true;
  tusc_http_respond_write(st->req, st->buf, (size_t)got, on_download_written, st);
}

static void get_open(tus_request_t *st) {
  tusc_store_t *store = tus_store_of(st);
  int rc = store->ops->open(store, st->id, &st->upload);
  if (rc < 0) {
    st->upload = NULL;
    tus_respond_store_error(st, rc);
    return;
  }
  tusc_upload_info_t *info = store->ops->info(st->upload);
  int64_t size = info->offset;
  if (tus_expired(st, info)) {
    tus_respond_error(st, TUSC_EGONE);
    return;
  }

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
  const char *range = tus_header_value(st->req, "Range", &range_len);
  /* An upload grows while it is downloaded: a client resuming a download with If-Range
   * gets the rest only if the data has not changed since, else the whole thing. Only
   * the date form can match (no ETags here). */
  const char *if_range = tus_header_value(st->req, "If-Range", NULL);
  int64_t if_range_time = 0;
  if (range != NULL && if_range != NULL &&
      (tusc_http_date_parse(if_range, &if_range_time) != 0 || if_range_time != mtime))
    range = NULL;
  int64_t first = 0, last = size - 1;
  enum tusc_range_result rr = tusc_download_range(range, range_len, size, &first, &last);

  tusc_http_response_t resp;
  char buf[96];
  if (rr == TUSC_RANGE_UNSATISFIABLE) {
    tus_response_init(st, &resp, 416);
    snprintf(buf, sizeof(buf), "bytes */%lld", (long long)size);
    tusc_http_response_header(&resp, "Content-Range", buf);
    snprintf(buf, sizeof(buf), "%s: %s\n", tusc_error_code(TUSC_EINVALID_RANGE),
             tusc_strerror(TUSC_EINVALID_RANGE));
    tus_respond_text(st, &resp, buf);
    return;
  }
  tus_response_init(st, &resp, rr == TUSC_RANGE_PARTIAL ? 206 : 200);
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
    tus_finish(st, &resp, NULL, 0);
    return;
  }
  st->buf = malloc(DOWNLOAD_CHUNK);
  if (st->buf == NULL) {
    tusc_http_response_dispose(&resp);
    tus_respond_error(st, TUSC_ENOMEM);
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
  if (st->aborted) {
    tus_respond_error(st, st->abort_err);
    return;
  }
  if (rc < 0) {
    tus_respond_store_error(st, rc);
    return;
  }
  if (st->concat_assembled && tus_finish_hooks_on(st)) {
    struct hook_req_copy *req = st->concat_req;
    st->concat_req = NULL;
    tus_bg_final_start(st->w, st->id, req != NULL ? req : tus_hook_req_snapshot(st));
  }
  get_open(st);
}

/* A final upload whose partials are all complete is assembled (or its running assembly
 * waited for) before it is served, so GET never returns half a concatenation. One whose
 * partials add up to more than -max-size is never assembled: 413. */
void tus_do_get(tus_request_t *st) {
  tusc_store_t *store = tus_store_of(st);
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  int info_rc = store->ops->get_info(store, st->id, &info);
  if (info_rc == 0 && !tus_owner_ok(st, &info)) {
    tusc_upload_info_dispose(&info);
    tus_respond_foreign(st);
    return;
  }
  bool assemble = info_rc == 0 && tusc_concat_status(store, &info);
  bool broken = info_rc == 0 && !assemble && tusc_concat_partial_missing(store, &info);
  bool too_big = info_rc == 0 && tusc_concat_too_big(&info, tus_cfg_of(st)->max_size) &&
                 info.offset < info.size;
  /* Should this GET complete the final, its hooks see the PATCH that completed the last
   * partial if that PATCH's job still runs (see tus_concat_queue_bg). */
  if (assemble && tus_finish_hooks_on(st))
    st->concat_req = tus_trigger_req_for(st->w->tus, &info);
  tusc_upload_info_dispose(&info);
  if (broken || too_big) {
    tus_respond_error(st, broken ? TUSC_EPARTIAL_GONE : TUSC_EMAX_SIZE_EXCEEDED);
    return;
  }
  if (assemble)
    tus_concat_request_job(st, false, get_assembled);
  else
    get_open(st);
}

/* --- HEAD ------------------------------------------------------------------------ */

/* Upload-Concat of a final upload: its partials' URLs, built like Location. */
static void head_concat_final(tus_request_t *st, tusc_http_response_t *resp,
                              const tusc_upload_info_t *info) {
  char collection[2048];
  tusc_location_input_t in;
  tus_location_input(st, &in);
  if (tusc_location_collection(&in, tus_cfg_of(st)->base_path, collection, sizeof(collection)) < 0)
    snprintf(collection, sizeof(collection), "%s", tus_cfg_of(st)->base_path);
  size_t cap = sizeof("final;");
  for (size_t i = 0; i < info->partial_count; i++)
    cap += strlen(collection) + strlen(info->partial_uploads[i]) + 1;
  char *value = malloc(cap);
  if (value != NULL && tusc_concat_format_final(info, collection, value, cap) == 0)
    tusc_http_response_header(resp, "Upload-Concat", value);
  free(value);
}

void tus_do_head(tus_request_t *st) {
  tusc_store_t *store = tus_store_of(st);
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  int rc = store->ops->get_info(store, st->id, &info);
  if (rc < 0) {
    tusc_upload_info_dispose(&info);
    tusc_http_response_t resp;
    if (rc == TUSC_ENOT_FOUND || rc == TUSC_EINVALID_ID || rc == TUSC_EGONE) {
      /* A HEAD answer has no body to carry the error text; status is what counts. */
      tus_response_init(st, &resp, tusc_error_status(rc == TUSC_EGONE ? rc : TUSC_ENOT_FOUND));
      tusc_http_response_header(&resp, "Cache-Control", "no-store");
      tus_finish(st, &resp, NULL, 0);
      return;
    }
    tus_respond_error(st, rc);
    return;
  }
  if (!tus_owner_ok(st, &info)) {
    tusc_upload_info_dispose(&info);
    tus_respond_foreign(st);
    return;
  }
  if (tus_expired(st, &info)) {
    tusc_upload_info_dispose(&info);
    tusc_http_response_t gone;
    tus_response_init(st, &gone, tusc_error_status(TUSC_EGONE));
    tusc_http_response_header(&gone, "Cache-Control", "no-store");
    tus_finish(st, &gone, NULL, 0);
    return;
  }
  /* Also fills in a final's length once its partials' lengths are all known. */
  bool assemble = info.is_final && tusc_concat_status(store, &info);
  bool broken = !assemble && info.is_final && tusc_concat_partial_missing(store, &info);
  bool too_big = tusc_concat_too_big(&info, tus_cfg_of(st)->max_size) && info.offset < info.size;
  if (broken || too_big) {
    /* A partial it waits for is gone: it can never complete (docs/protocol-support.md);
     * or its partials add up to more than -max-size: it is never assembled. */
    tusc_upload_info_dispose(&info);
    tusc_http_response_t gone;
    tus_response_init(st, &gone,
                      tusc_error_status(broken ? TUSC_EPARTIAL_GONE : TUSC_EMAX_SIZE_EXCEEDED));
    tusc_http_response_header(&gone, "Cache-Control", "no-store");
    tus_finish(st, &gone, NULL, 0);
    return;
  }
  tusc_http_response_t resp;
  char num[24];
  tus_response_init(st, &resp, 200);
  tusc_http_response_header(&resp, "Cache-Control", "no-store");
  tus_fmt_i64(num, info.offset);
  tusc_http_response_header(&resp, "Upload-Offset", num);
  if (info.size_is_deferred && info.is_final) {
    /* Known once the partials' lengths are; not the client's to declare. */
  } else if (info.size_is_deferred) {
    tusc_http_response_header(&resp, "Upload-Defer-Length", "1");
  } else {
    tus_fmt_i64(num, info.size);
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
    tus_concat_queue_bg(st, false, &info);
  }
  int64_t expires = tus_expires_s(st, &info, false);
  if (expires > 0) {
    char date[32];
    tusc_http_date(expires, date);
    tusc_http_response_header(&resp, "Upload-Expires", date);
  }
  tusc_upload_info_dispose(&info);
  tus_finish(st, &resp, NULL, 0);
}

/* --- PATCH ----------------------------------------------------------------------- */

static void patch_info_saved(tus_request_t *st) {
  if (st->work_result < 0) {
    /* The length is not durable, so it is not known: keep the upload deferred. */
    tusc_upload_info_t *info = tus_store_of(st)->ops->info(st->upload);
    info->size = -1;
    info->size_is_deferred = true;
    st->result = st->work_result;
    st->work_kind = WORK_NOOP;
    tus_chunk_finish(st, false);
    return;
  }
  st->work_kind = WORK_NOOP;
  tus_chunk_begin(st);
}

static void patch_locked(tus_request_t *st) {
  tusc_store_t *store = tus_store_of(st);
  const tusc_config_t *cfg = tus_cfg_of(st);
  int rc = store->ops->open(store, st->id, &st->upload);
  if (rc < 0) {
    st->upload = NULL;
    release_lock(st);
    tus_respond_store_error(st, rc);
    return;
  }
  tusc_upload_info_t *info = store->ops->info(st->upload);
  /* Taken before a deferred length is set, so that declaring a length equal to the
   * offset still counts as finishing the upload. */
  st->was_complete = !info->size_is_deferred && info->offset == info->size;
  if (tus_expired(st, info))
    rc = TUSC_EGONE;
  else if (info->is_final && !final_retry(st, info))
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
    tus_respond_error(st, rc);
    return;
  }
  tus_chunk_begin(st);
}

void tus_do_patch(tus_request_t *st) {
  tusc_http_request_t *req = st->req;
  size_t len = 0;
  const char *ct = tus_header_value(req, "Content-Type", &len);
  if (!tus_media_type_is(ct, len, OCTET_STREAM)) {
    tus_respond_error(st, TUSC_EINVALID_CONTENT_TYPE);
    return;
  }
  const char *off = tus_header_value(req, "Upload-Offset", &len);
  if (off == NULL || tusc_http_header_count(req, "Upload-Offset") != 1 ||
      tusc_parse_size(off, len, &st->client_offset) < 0) {
    tus_respond_error(st, TUSC_EINVALID_OFFSET);
    return;
  }
  st->new_length = -1;
  const char *ul = tus_header_value(req, "Upload-Length", &len);
  if (ul != NULL && (tusc_http_header_count(req, "Upload-Length") != 1 ||
                     tusc_parse_size(ul, len, &st->new_length) < 0)) {
    tus_respond_error(st, TUSC_EINVALID_UPLOAD_LENGTH);
    return;
  }
  int vrc = tusc_verify_new(req, &st->verify);
  if (vrc < 0) {
    tus_respond_error(st, vrc);
    return;
  }
  if (!tus_upload_exists(st))
    return;
  lock_upload(st, patch_locked);
}

/* --- OPTIONS, greeting ------------------------------------------------------------ */

static void do_options(tus_request_t *st) {
  tusc_http_response_t resp;
  const tusc_config_t *cfg = tus_cfg_of(st);
  tus_response_init(st, &resp, 200);
  tusc_http_response_header(&resp, "Tus-Version", TUS_VERSION);
  tusc_http_response_header(&resp, "Tus-Extension", st->w->tus->extensions);
  tusc_http_response_header(&resp, "Tus-Checksum-Algorithm", TUSC_CHECKSUM_ALGORITHMS);
  if (cfg->max_size > 0)
    tusc_http_response_headerf(&resp, "Tus-Max-Size", "%lld", (long long)cfg->max_size);
  if (st->ietf.version > 0)
    tusc_ietf_options(st, &resp);
  tus_finish(st, &resp, NULL, 0);
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
           tus_cfg_of(st)->base_path);
  tusc_http_response_t resp;
  tus_response_init(st, &resp, 200);
  tus_respond_text(st, &resp, body);
}

/* --- routing --------------------------------------------------------------------- */

static bool version_ok(const tusc_http_request_t *req, enum tusc_http_method method) {
  /* Browsers and plain HTTP tools send GET/HEAD without (or with any) Tus-Resumable;
   * tusd exempts both whatever they carry, and PROTOCOL.md says to do the same. */
  if (method == TUSC_HTTP_GET || method == TUSC_HTTP_HEAD)
    return true;
  size_t len = 0;
  const char *v = tus_header_value(req, "Tus-Resumable", &len);
  return v != NULL && len == strlen(TUS_VERSION) && memcmp(v, TUS_VERSION, len) == 0;
}

static void route_upload(tus_request_t *st, enum tusc_http_method method, const char *raw,
                         size_t raw_len) {
  const tusc_config_t *cfg = tus_cfg_of(st);
  char allow[64];
  snprintf(allow, sizeof(allow), "OPTIONS, HEAD, PATCH%s%s", cfg->disable_download ? "" : ", GET",
           cfg->disable_termination ? "" : ", DELETE");

  bool known = method == TUSC_HTTP_HEAD || method == TUSC_HTTP_PATCH ||
               (method == TUSC_HTTP_GET && !cfg->disable_download) ||
               (method == TUSC_HTTP_DELETE && !cfg->disable_termination);
  if (!known) {
    tus_respond_error_with(st, TUSC_EMETHOD_NOT_ALLOWED, allow);
    return;
  }
  long n = tusc_url_decode(raw, raw_len, st->id, sizeof(st->id));
  if (n <= 0 || !tusc_id_valid(st->id, (size_t)n) || strlen(st->id) != (size_t)n) {
    st->id[0] = '\0';
    if (method == TUSC_HTTP_HEAD) {
      tusc_http_response_t resp;
      tus_response_init(st, &resp, 404);
      tusc_http_response_header(&resp, "Cache-Control", "no-store");
      tus_finish(st, &resp, NULL, 0);
      return;
    }
    tus_respond_error(st, TUSC_ENOT_FOUND);
    return;
  }
  switch (method) {
  case TUSC_HTTP_HEAD:
    tus_do_head(st);
    break;
  case TUSC_HTTP_PATCH:
    st->op = OP_PATCH;
    tus_do_patch(st);
    break;
  case TUSC_HTTP_DELETE:
    st->op = OP_DELETE;
    tus_do_delete(st);
    break;
  case TUSC_HTTP_GET:
    st->op = OP_GET;
    tus_do_get(st);
    break;
  default:
    tus_respond_error_with(st, TUSC_EMETHOD_NOT_ALLOWED, allow);
    break;
  }
}

/* A list header sent as several lines is one comma-joined list (RFC 9110 5.3); a proxy
 * may append its own line after the client's, so the last line matters most. Returns
 * the value, joined into *joined (the caller frees it) when there are several lines;
 * NULL when absent or out of memory. */
static const char *list_header(const tusc_http_request_t *req, const char *name, size_t *len,
                               char **joined) {
  *joined = NULL;
  if (tusc_http_header_count(req, name) < 2)
    return tus_header_value(req, name, len);
  size_t cap = 1;
  for (size_t i = 0; i < req->header_count; i++)
    if (!req->headers[i].trailer && strcasecmp(req->headers[i].name, name) == 0)
      cap += req->headers[i].value_len + 2;
  char *out = malloc(cap);
  if (out == NULL)
    return NULL;
  size_t n = 0;
  for (size_t i = 0; i < req->header_count; i++) {
    const tusc_http_header_t *h = &req->headers[i];
    if (h->trailer || strcasecmp(h->name, name) != 0)
      continue;
    if (n > 0)
      out[n++] = ',';
    memcpy(out + n, h->value, h->value_len);
    n += h->value_len;
  }
  out[n] = '\0';
  *len = n;
  *joined = out;
  return out;
}

static bool proxy_trusted(const char *addr, void *arg) {
  return tusc_auth_proxy_trusted(arg, addr);
}

static void client_address(tus_request_t *st) {
  size_t xff_len = 0, fwd_len = 0;
  char *xff_joined = NULL, *fwd_joined = NULL;
  const char *xff = list_header(st->req, "X-Forwarded-For", &xff_len, &xff_joined);
  const char *fwd = list_header(st->req, "Forwarded", &fwd_len, &fwd_joined);
  tusc_auth_t *auth = st->w->tus->auth;
  tusc_location_client_addr(st->proxy_trusted, auth != NULL ? proxy_trusted : NULL, auth, xff,
                            xff_len, fwd, fwd_len, st->req->remote_addr, st->client);
  free(xff_joined);
  free(fwd_joined);
  if (strcmp(st->client, st->req->remote_addr) != 0)
    tusc_http_request_set_client(st->req, st->client);
}

/* Routes a request that passed the host, CORS and authentication checks. */
static void dispatch(tus_request_t *st) {
  tusc_http_request_t *req = st->req;
  const tusc_config_t *cfg = tus_cfg_of(st);
  enum tusc_http_method method = st->method;
  const char *path = req->path;
  size_t path_len = strlen(path);
  const char *base = cfg->base_path;
  size_t base_len = strlen(base);
  bool is_collection =
      (path_len == base_len && memcmp(path, base, base_len) == 0) ||
      (base_len > 1 && path_len == base_len - 1 && memcmp(path, base, base_len - 1) == 0);

  /* IETF draft requests (after authentication, like everything else). */
  if (st->ietf.version != 0 &&
      tusc_ietf_handle(st, method, is_collection, is_collection ? "" : path + base_len,
                       is_collection ? 0 : path_len - base_len))
    return;
  if (!version_ok(req, method)) {
    tus_respond_error(st, TUSC_EUNSUPPORTED_VERSION);
    return;
  }

  if (is_collection) {
    if (method == TUSC_HTTP_POST) {
      tus_do_post(st);
      return;
    }
    if ((method == TUSC_HTTP_GET || method == TUSC_HTTP_HEAD) && strcmp(base, "/") == 0 &&
        cfg->show_greeting) {
      do_greeting(st);
      return;
    }
    tus_respond_error_with(st, TUSC_EMETHOD_NOT_ALLOWED, "OPTIONS, POST");
    return;
  }
  route_upload(st, method, path + base_len, path_len - base_len);
}

static void on_auth_done(tusc_auth_request_t *areq, int result, char *principal) {
  tus_request_t *st = areq->data;
  st->phase = PH_RUN;
  if (st->aborted) {
    free(principal);
    tus_respond_error(st, st->abort_err);
    return;
  }
  if (result == 0) {
    st->principal = principal;
    if (principal != NULL)
      tusc_http_request_set_user(st->req, principal);
    dispatch(st);
  } else if (result == TUSC_EUNAUTHORIZED) {
    respond_unauthorized(st);
  } else if (result == TUSC_EAUTH_BUSY || result == TUSC_EAUTH_THROTTLED) {
    tus_respond_retry_later(st, result, areq->retry_after_s);
  } else {
    tus_respond_error(st, result);
  }
}

/* Answers 401 or continues with dispatch (now, or after a password check: PH_AUTH,
 * which an abort cancels while it waits and lets finish once it hashes). */
static void authenticate(tus_request_t *st) {
  size_t len = 0;
  const char *value = tus_header_value(st->req, "Authorization", &len);
  char *principal = NULL;
  st->areq.data = st;
  int rc = tusc_auth_check(st->w->tus->auth, st->w->loop, st->client, value, len, &st->areq,
                           on_auth_done, &principal);
  if (rc == TUSC_AUTH_PENDING) {
    st->phase = PH_AUTH;
    return;
  }
  on_auth_done(&st->areq, rc, principal);
}

/* -allowed-hosts: the Host header must name a served host, and so must the host a
 * Location would name (from a trusted proxy: X-Forwarded-Host or Forwarded host=), as
 * decided by the one function Location uses. Without a list every host is fine. */
static bool host_allowed(tus_request_t *st) {
  tusc_auth_t *auth = st->w->tus->auth;
  if (!tusc_auth_hosts_limited(auth))
    return true;
  size_t len = 0;
  const char *host = tus_header_value(st->req, "Host", &len);
  if (tusc_http_header_count(st->req, "Host") != 1 || !tusc_auth_host_allowed(auth, host, len))
    return false;
  tusc_location_input_t in;
  tusc_forwarded_t fwd;
  tus_location_input(st, &in);
  if (tusc_location_host(&in, &fwd, &host, &len) < 0)
    return false;
  return tusc_auth_host_allowed(auth, host, len);
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
  st->proxy_trusted = tus->auth != NULL ? tusc_auth_proxy_trusted(tus->auth, req->remote_addr)
                                        : cfg->behind_proxy;
  client_address(st);
  tusc_ietf_detect(st);

  /* Old clients that can only send GET/POST name the real method here. Honoured on
   * POST only, as tusd does: on OPTIONS, which proxies and authentication let through
   * without credentials, it would turn an anonymous request into a DELETE or a GET.
   * Everything below (authentication included) sees the effective method. */
  enum tusc_http_method method = req->method;
  size_t ov_len = 0;
  const char *ov = tus_header_value(req, "X-HTTP-Method-Override", &ov_len);
  st->method_name = req->method_name;
  if (req->method == TUSC_HTTP_POST && ov != NULL && ov_len > 0) {
    method = method_from_name(ov, ov_len);
    st->method_name = ov;
    if (strcmp(ov, req->method_name) != 0)
      tusc_http_request_set_method(req, ov);
  }
  st->preflight = method == TUSC_HTTP_OPTIONS;
  st->method = method;
  tusc_metrics_request(method);

  if (!host_allowed(st)) {
    tus_respond_error(st, TUSC_EMISDIRECTED);
    return;
  }
  const char *origin = tus_header_value(req, "Origin", NULL);
  if (tus->cors.enabled && origin != NULL && origin[0] != '\0' &&
      !tusc_cors_origin_allowed(&tus->cors, origin)) {
    tus_respond_error(st, TUSC_EORIGIN_NOT_ALLOWED);
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

  /* Never routed as an upload ID; with -metrics-listen it lives on that address only. */
  if (is_metrics) {
    if (cfg->metrics_listen == NULL && (method == TUSC_HTTP_GET || method == TUSC_HTTP_HEAD))
      do_metrics(st);
    else
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

  if (tusc_auth_required(tus->auth)) {
    authenticate(st);
    return;
  }
  dispatch(st);
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
    tus_chunk_finish(st, true);
    break;
  case PH_LOCK_WAIT:
    uv_timer_stop(&st->timer);
    st->phase = PH_RUN;
    tus_respond_error(st, err);
    break;
  case PH_STREAM:
    if (!st->write_pending)
      tus_download_end(st);
    break;
  case PH_AUTH:
    /* A check still waiting is dropped (no callback); one hashing comes back. */
    if (tusc_auth_cancel(&st->areq) == 0) {
      st->phase = PH_RUN;
      tus_respond_error(st, err);
    }
    break;
  case PH_HOOK:
    /* Stop the hook (kill its process group); its callback comes back and sees
     * `aborted`. */
    (void)tusc_hooks_cancel(st->w->hw, tus_on_blocking_hook_done, st);
    break;
  case PH_WORK:
    /* A concat job waiting for locks stops waiting; its callback still comes back. */
    tusc_concat_job_abandon(st->concat_job);
    break;
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
  int rc = tusc_cors_init(&tus->cors, cfg);
  if (rc < 0) {
    free(tus);
    return rc;
  }
  rc = uv_mutex_init(&tus->triggers_mu);
  if (rc < 0) {
    tusc_cors_dispose(&tus->cors);
    free(tus);
    return rc;
  }
  snprintf(tus->extensions, sizeof(tus->extensions), "creation,creation-with-upload%s%s,%s",
           cfg->disable_termination ? "" : ",termination",
           cfg->disable_concatenation ? "" : ",concatenation,concatenation-unfinished",
           "creation-defer-length");
  size_t ext_len = strlen(tus->extensions);
  snprintf(tus->extensions + ext_len, sizeof(tus->extensions) - ext_len,
           ",checksum,checksum-trailer%s", cfg->expire_after_ms > 0 ? ",expiration" : "");
  *out = tus;
  return 0;
}

void tusc_tus_free(tusc_tus_t *tus) {
  if (tus == NULL)
    return;
  tusc_cors_dispose(&tus->cors);
  uv_mutex_destroy(&tus->triggers_mu);
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
  tus_worker_maybe_free(w);
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
    .on_body = tus_on_body,
    .on_body_end = tus_on_body_end,
    .on_abort = on_abort,
};

void tusc_tus_set_expire(tusc_tus_t *tus, tusc_expire_t *expire) {
  tus->expire = expire;
}

void tusc_tus_set_hooks(tusc_tus_t *tus, tusc_hooks_t *hooks) {
  tus->hooks = hooks;
}

void tusc_tus_set_auth(tusc_tus_t *tus, tusc_auth_t *auth) {
  tus->auth = auth;
}

void tusc_tus_worker_set_hooks(tusc_tus_worker_t *worker, tusc_hooks_worker_t *hw) {
  worker->hw = hw;
}

const tusc_http_handler_t *tusc_tus_http_handler(void) {
  return &http_handler;
}

void tusc_tus_req_append(tusc_tus_req_t *st, int64_t client_offset, int64_t new_length) {
  st->op = OP_PATCH;
  st->client_offset = client_offset;
  st->new_length = new_length;
  if (!tus_upload_exists(st))
    return;
  lock_upload(st, patch_locked);
}

/*
 * patch — PATCH and the body path shared with creation-with-upload and IETF appends
 * (tusc_tus_req_append): offset and length checks under the upload's lock, streaming the
 * body into the store (or a checksum verifier), -min-upload-rate, post-receive progress,
 * the IETF draft's progress 104s (a durable checkpoint: the chunk ended and begun
 * again), making the bytes durable before the answer, the IETF draft's Repr-Digest
 * check and the finish hooks when the request completes the upload. On the request's loop; the store's requests call back here
 * (tus_store_step). Every path releases the lock and answers exactly once.
 *
 * Back-pressure: each body piece goes to tusc_store_append. When the store answers
 * "full" it took nothing: the rest of the piece is kept in st->held (the only body bytes
 * the handler ever holds, at most one piece), the body is paused (the http layer stops
 * reading the socket), and the store's drain callback offers the held bytes again and
 * resumes the body once they are taken.
 */
#include "tus/handler_internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "metrics/metrics.h"
#include "tus/headers.h"

static void chunk_done(tus_request_t *st);
static int store_feed(tus_request_t *st, const char *data, size_t len, size_t *taken);
static void send_interim(tus_request_t *st);

/* --- post-receive progress ------------------------------------------------------- */

static void on_progress_tick(uv_timer_t *timer) {
  tus_request_t *st = timer->data;
  if (st->phase != PH_BODY || st->progress != NULL || st->upload == NULL)
    return;
  const tusc_upload_info_t *info = tusc_store_info(st->upload);
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

/* Body phase ends: the timer stops; progress_report follows once the store has the
 * bytes. */
static void progress_end(tus_request_t *st) {
  if (st->metrics_active) {
    st->metrics_active = false;
    tusc_metrics_active_uploads(-1);
  }
  if (!st->progress_timer)
    return;
  st->progress_timer = false;
  st->progress_final = true;
  uv_timer_stop(&st->timer);
}

/* The chunk ended (its bytes are in the offset): one last post-receive when the offset
 * moved since the previous. */
static void progress_report(tus_request_t *st) {
  if (!st->progress_final)
    return;
  st->progress_final = false;
  if (st->stopped || st->upload == NULL)
    return;
  const tusc_upload_info_t *info = tusc_store_info(st->upload);
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
  st->work_result = 0;
  (void)tus_hook_fire(st, TUSC_HOOK_POST_FINISH, tusc_store_info(st->upload), false);
  chunk_done(st);
}

static void finish_hooks_record(tus_request_t *st) {
  tusc_upload_info_t *info = tusc_store_info(st->upload);
  info->finish_hooks = TUSC_FINISH_HOOKS_DONE;
  tus_store_started(
      st, tusc_store_save_info(st->upload, &st->sreq, tus_store_step(st, finish_hooks_saved)));
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
    tus_hook_block(st, TUSC_HOOK_PRE_FINISH, tusc_store_info(st->upload), finish_hooks_pre_done);
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

/* --- Repr-Digest (IETF draft, "Representation Digests") ---------------------------- */

/* A creation may carry the digest of the whole representation (info->repr_digest,
 * ietf_req.c). Once a request completes the upload, its bytes are read back (on the
 * store's pool, 256 KiB at a time) and hashed before the finish hooks and the answer.
 * -12: if the digests don't match, the server "SHOULD consider the upload failed, not
 * process the representation further, and signal the failure": the upload is deleted
 * (no finish hooks; a later request finds nothing) and the request answers 400
 * ERR_REPR_DIGEST_MISMATCH. On a match the expectation is dropped from the info
 * (saved durably), so "repr_digest set on a complete upload" means "not checked yet":
 * any later append to it (after a crash between the last byte and the check, or one
 * whose answer failed) checks it first. Whatever protocol the request spoke, also when
 * its client has gone. */
#define REPR_READ (256 * 1024)

static bool repr_check_due(const tus_request_t *st, const tusc_upload_info_t *info) {
  /* Not with a lease lock (Redis) that may be another instance's now: no deletion. */
  return info->repr_digest != NULL && !st->repr_checked && !st->stopped &&
         st->result != TUSC_ELOCK_LOST && !info->size_is_deferred && info->offset == info->size;
}

static void repr_saved(tus_request_t *st) {
  if (st->work_result < 0) /* still marked unchecked on disk: checked again later */
    TUSC_LOG(TUSC_LOG_WARN, "upload %s: cannot record its checked Repr-Digest: %s", st->id,
             tusc_strerror(st->work_result));
  st->work_result = 0;
  chunk_done(st);
}

static void repr_read_next(tus_request_t *st);

static void repr_checked(tus_request_t *st, int rc) {
  tusc_checksum_free(st->repr_hash);
  st->repr_hash = NULL;
  free(st->repr_buf);
  st->repr_buf = NULL;
  if (rc == TUSC_ECHECKSUM_MISMATCH) {
    tusc_log_event(TUSC_LOG_INFO, "UploadReprDigestMismatch", "id", st->id, "remote", st->client,
                   NULL);
    st->ietf.repr_failed = true;
    st->stop_err = TUSC_EREPR_DIGEST_MISMATCH;
    tus_stop_terminate(st);
    return;
  }
  if (rc != 0) {
    TUSC_LOG(TUSC_LOG_WARN, "upload %s: cannot check its Repr-Digest: %s", st->id,
             tusc_strerror(rc));
    if (st->result == 0)
      st->result = rc;
    chunk_done(st);
    return;
  }
  tusc_upload_info_t *info = tusc_store_info(st->upload);
  free(info->repr_digest);
  info->repr_digest = NULL;
  tus_store_started(st,
                    tusc_store_save_info(st->upload, &st->sreq, tus_store_step(st, repr_saved)));
}

static void repr_read_done(tus_request_t *st) {
  int rc = st->work_result;
  st->work_result = 0;
  if (rc == 0 && st->sreq.nread == 0)
    rc = TUSC_EINTERNAL; /* shorter than its length */
  if (rc == 0)
    rc = tusc_checksum_update(st->repr_hash, st->repr_buf, st->sreq.nread);
  if (rc != 0) {
    repr_checked(st, rc);
    return;
  }
  st->repr_pos += (int64_t)st->sreq.nread;
  repr_read_next(st);
}

static void repr_read_next(tus_request_t *st) {
  int64_t size = tusc_store_info(st->upload)->size;
  if (st->repr_pos >= size) {
    tusc_checksum_expect_t expect;
    bool found = false;
    int rc = tusc_checksum_parse_digest_field(tusc_store_info(st->upload)->repr_digest,
                                              strlen(tusc_store_info(st->upload)->repr_digest),
                                              &expect, &found);
    if (rc == 0 && !found)
      rc = TUSC_EINTERNAL;
    if (rc == 0)
      rc = tusc_checksum_verify(st->repr_hash, &expect);
    repr_checked(st, rc);
    return;
  }
  int64_t left = size - st->repr_pos;
  size_t want = left > REPR_READ ? REPR_READ : (size_t)left;
  tus_store_started(st, tusc_store_read(st->upload, &st->sreq, st->repr_pos, st->repr_buf, want,
                                        tus_store_step(st, repr_read_done)));
}

static void repr_check_start(tus_request_t *st) {
  st->repr_checked = true;
  tusc_checksum_expect_t expect;
  bool found = false;
  const char *want = tusc_store_info(st->upload)->repr_digest;
  int rc = tusc_checksum_parse_digest_field(want, strlen(want), &expect, &found);
  if (rc == 0 && !found)
    rc = TUSC_EINTERNAL;
  if (rc == 0)
    rc = tusc_checksum_new(expect.algo, &st->repr_hash);
  if (rc == 0 && (st->repr_buf = malloc(REPR_READ)) == NULL)
    rc = TUSC_ENOMEM;
  if (rc != 0) {
    repr_checked(st, rc);
    return;
  }
  st->repr_pos = 0;
  repr_read_next(st);
}

/* --- writing a chunk (PATCH and creation-with-upload) ----------------------------- */

static void chunk_done(tus_request_t *st) {
  char offset_s[24], size_s[24];

  tusc_upload_info_t *info = tusc_store_info(st->upload);
  /* IETF draft: a request that completes an upload of unknown length fixes it now. */
  if (st->ietf.version > 0 &&
      tusc_ietf_chunk_end(&st->ietf, info, st->aborted, st->work_result, &st->result)) {
    tus_store_started(st,
                      tusc_store_save_info(st->upload, &st->sreq, tus_store_step(st, chunk_done)));
    return;
  }
  st->work_result = 0;
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
      !st->finish_hooks_ran && !st->repr_checked) {
    tus_fmt_i64(size_s, info->size);
    tusc_log_event(TUSC_LOG_INFO, "UploadFinished", "id", st->id, "size", size_s, "remote",
                   st->client, NULL);
    tusc_metrics_upload_finished();
  }
  /* A lease lock (Redis) must still be ours before anything is acknowledged or
   * completed: otherwise another instance may have taken the upload over. */
  if (st->lock_held && st->result == 0 && !st->aborted &&
      tusc_lock_check(&st->lock_req) == TUSC_ELOCK_LOST)
    st->result = TUSC_ELOCK_LOST;
  if (repr_check_due(st, info)) {
    repr_check_start(st);
    return;
  }
  if (finish_hooks_due(st, info)) {
    finish_hooks_run(st);
    return;
  }
  if (st->stopped) {
    tus_stop_terminate(st);
    return;
  }
  bool partial_done =
      info->is_partial && !info->size_is_deferred && offset == info->size && !st->was_complete;
  int64_t expires = tus_expires_s(st, info, st->written > 0);
  tusc_store_close(st->upload);
  st->upload = NULL;
  /* Released before answering so that the client's next PATCH finds it free. */
  tus_release_lock(st);
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
  st->ietf.expires_s = expires;
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

/* The chunk's end came back: its error (a write or sync failure, a rejected checksum)
 * is the answer unless the body had already failed. */
static void chunk_ended(tus_request_t *st) {
  if (st->work_result < 0 && st->result == 0)
    st->result = st->work_result;
  st->work_result = 0;
  progress_report(st);
  chunk_done(st);
}

static void on_verified(tusc_verify_t *v, int status, void *arg) {
  (void)v;
  tus_request_t *st = arg;
  st->phase = PH_RUN;
  st->work_result = status;
  chunk_ended(st);
}

static void held_drop(tus_request_t *st) {
  free(st->held);
  st->held = NULL;
  st->held_len = st->held_off = st->held_cap = 0;
  st->held_over = false;
}

/* Ends the body phase: the store writes what it took and makes it durable (a checksummed
 * chunk is verified first), then the request answers. The answer never comes before
 * returning, so callers inside an http callback are safe; with `leave_callback` false a
 * request without a chunk may answer at once. */
void tus_chunk_finish(tus_request_t *st, bool leave_callback) {
  if (st->held != NULL && st->held_off < st->held_len && st->chunk_open) {
    /* Bytes that arrived while the store was full were received like the rest and are
     * kept like them (tus keeps what arrived of a cut body): offer them once more, and
     * if the store is still full, end the chunk from its drain callback. */
    size_t taken = 0;
    int rc = store_feed(st, st->held + st->held_off, st->held_len - st->held_off, &taken);
    st->held_off += taken;
    if (rc == TUSC_ESTORE_FULL) {
      st->phase = PH_DRAIN;
      if (st->timer_init && tus_cfg_of(st)->min_upload_rate > 0)
        uv_timer_stop(&st->timer);
      return;
    }
    if (rc != 0 && st->result == 0)
      st->result = rc;
  }
  progress_end(st);
  if (st->timer_init && tus_cfg_of(st)->min_upload_rate > 0)
    uv_timer_stop(&st->timer);
  st->phase = PH_RUN;
  held_drop(st); /* bytes the store never took do not count */
  send_interim(st);
  if (!st->chunk_open) {
    /* No body read: a checksum must still be that of no bytes. */
    if (st->verify != NULL && st->result == 0 && !st->aborted)
      st->result = tusc_verify_empty(st->verify);
    if (leave_callback)
      tus_defer(st, chunk_done);
    else
      chunk_done(st);
    return;
  }
  st->chunk_open = false;
  /* Ending the chunk stores what is still buffered and may complete the upload (the S3
   * store's last part and CompleteMultipartUpload): not with a lease lock (Redis) that
   * may already be another instance's. The lease check is conservative (lock/redis.h),
   * so nobody else holds it yet: dropping this chunk's bytes is still safe. */
  if (st->lock_held && tusc_lock_check(&st->lock_req) == TUSC_ELOCK_LOST) {
    if (st->result == 0 || st->result == TUSC_EUPLOAD_INTERRUPTED) /* asked to let go */
      st->result = TUSC_ELOCK_LOST;
    st->chunk_drop = true;
  }
  int rc;
  if (st->verify != NULL) {
    /* A checksummed chunk reaches the data only once its digest matched. */
    st->phase = PH_WORK;
    rc = tusc_verify_end(st->verify, st->upload, st->start_offset, st->result == 0 && !st->aborted,
                         on_verified, st);
    if (rc != 0) {
      tus_defer(st, chunk_ended);
      st->work_result = rc;
    }
    return;
  }
  /* Also after a failed or interrupted body: what reached the store is kept (tus). */
  tus_store_started(st, tusc_store_chunk_end(st->upload, &st->sreq,
                                             st->chunk_drop ? TUSC_STORE_DISCARD : TUSC_STORE_KEEP,
                                             tus_store_step(st, chunk_ended)));
}

/* -min-upload-rate: every window, the body must have brought rate * window bytes, or
 * it is cut like an interrupted upload: what arrived is kept and made durable, the
 * client gets 408 and may resume. The lock-wait timer is free during the body. */
static void on_rate_timer(uv_timer_t *timer) {
  tus_request_t *st = timer->data;
  const tusc_config_t *cfg = tus_cfg_of(st);
  if (st->phase != PH_BODY) {
    if (!st->checkpointing) /* a progress checkpoint: the body goes on after it */
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

/* IETF creation with a body: the 104 that tells the client where to resume goes out in
 * the same loop turn as the body starts (or just before the answer), so that bytes a
 * client sends after reading it and then breaking off are read, not lost with the
 * connection while the store opened the upload. */
static void send_interim(tus_request_t *st) {
  if (!st->interim_pending)
    return;
  st->interim_pending = false;
  if (!st->aborted && st->upload != NULL)
    tusc_ietf_created(st, tusc_store_info(st->upload));
}

/* The store's chunk has begun: the body starts. */
static void chunk_begun(tus_request_t *st) {
  st->chunk_open = true;
  char offset_s[24], max_s[24];
  tus_fmt_i64(offset_s, st->start_offset);
  tus_fmt_i64(max_s, st->limit);
  tusc_log_event(TUSC_LOG_INFO, "ChunkWriteStart", "id", st->id, "offset", offset_s, "size", max_s,
                 "remote", st->client, NULL);
  st->chunk_started = true;
  st->progress104_ms = uv_now(st->w->loop);
  st->progress104_written = st->written;
  progress_start(st);
  rate_start(st);
  st->phase = PH_BODY;
  send_interim(st);
  /* May deliver buffered bytes at once; nothing may touch st after this call. */
  tusc_http_body_start(st->req);
}

/* Called with the lock held and st->upload open: starts the store's chunk, then the
 * body. */
void tus_chunk_begin(tus_request_t *st) {
  tusc_http_request_t *req = st->req;
  const tusc_config_t *cfg = tus_cfg_of(st);
  tusc_upload_info_t *info = tusc_store_info(st->upload);

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
  int flags = st->verify != NULL ? tusc_verify_chunk_flags(st->verify) : 0;
  int rc = tusc_store_chunk_begin(st->upload, flags);
  if (rc < 0) {
    st->result = rc;
    tus_chunk_finish(st, false);
    return;
  }
  chunk_begun(st);
}

/* Stops the body phase because of `err` (interrupt, size, store failure). */
static int chunk_stop(tus_request_t *st, int err) {
  st->result = err;
  tus_chunk_finish(st, true);
  return err;
}

static void on_store_drain(void *arg);

/* Offers `len` body bytes to the store in pieces it accepts. Returns 0 when it took
 * them all, TUSC_ESTORE_FULL when it took only *taken of them (the body must pause),
 * or the store's error. */
static int store_feed(tus_request_t *st, const char *data, size_t len, size_t *taken) {
  size_t done = 0;
  int rc = 0;
  while (done < len) {
    size_t n = len - done < TUSC_STORE_APPEND_MAX ? len - done : TUSC_STORE_APPEND_MAX;
    rc = tusc_store_append(st->upload, data + done, n, on_store_drain, st);
    if (rc != 0)
      break;
    if (st->verify != NULL && (rc = tusc_verify_update(st->verify, data + done, n)) != 0)
      break;
    done += n;
    st->written += (int64_t)n;
    tusc_metrics_bytes_written((uint64_t)n);
  }
  *taken = done;
  return rc;
}

/* The store has room again: the held bytes go first, then the body resumes. */
static void on_store_drain(void *arg) {
  tus_request_t *st = arg;
  if (st->phase == PH_DRAIN) {
    /* Not inside an http callback: the chunk may end and the request answer now. */
    tus_chunk_finish(st, false);
    return;
  }
  if (st->phase != PH_BODY || st->held == NULL)
    return;
  size_t taken = 0;
  int rc = store_feed(st, st->held + st->held_off, st->held_len - st->held_off, &taken);
  st->held_off += taken;
  if (rc == TUSC_ESTORE_FULL)
    return; /* the next drain comes */
  if (rc != 0) {
    (void)chunk_stop(st, rc);
    return;
  }
  st->held_len = st->held_off = 0;
  if (st->held_over) {
    (void)chunk_stop(st, TUSC_EUPLOAD_SIZE_EXCEEDED);
    return;
  }
  tusc_http_body_resume(st->req); /* may deliver the next piece at once */
}

/* Keeps what the store did not take of this piece and pauses the body. */
static int hold_rest(tus_request_t *st, const char *rest, size_t len, bool over) {
  if (st->held_cap < len) {
    char *grown = realloc(st->held, len);
    if (grown == NULL)
      return TUSC_ENOMEM;
    st->held = grown;
    st->held_cap = len;
  }
  memcpy(st->held, rest, len);
  st->held_len = len;
  st->held_off = 0;
  st->held_over = over;
  tusc_http_body_pause(st->req);
  return 0;
}

/* IETF draft -12 (interop 9): once a body of unannounced size (chunked) brings the
 * upload to its declared length, the server completes the upload and answers at once
 * (Upload-Complete: ?1) instead of waiting for the end of the body. A checksummed body
 * is verified whole first, so it waits for its end as before. */
static bool ietf_reached_length(const tus_request_t *st) {
  if (st->ietf.version < TUSC_IETF_VERSION_PROBLEMS || !st->req->chunked || st->verify != NULL ||
      st->limit < 0 || st->written != st->limit)
    return false;
  return !tusc_store_info(st->upload)->size_is_deferred;
}

/* IETF draft -12 (interop 9): while the content of an append (SHOULD) or a creation
 * (MAY) is processed, 104 interim responses tell the client the current offset. A
 * response's Upload-Offset guarantees that those bytes never need to be sent again, so
 * the offset sent must be durable: the store's chunk is ended (KEEP: written and made
 * durable, as before a final answer) and a new one begun, with the body paused in
 * between; then the 104 goes out with the store's offset. At most once a second, only
 * when bytes arrived since the last one, never for a verified chunk (its bytes count
 * only once the digest matched at the end) and not where a checkpoint costs a copy
 * (S3: its tail is stored as an object). */
static bool progress_104_due(const tus_request_t *st) {
  return st->ietf.version >= TUSC_IETF_VERSION_PROGRESS && st->verify == NULL && !st->chunk_drop &&
         st->held_off >= st->held_len && st->written > st->progress104_written &&
         uv_now(st->w->loop) - st->progress104_ms >= TUSC_IETF_PROGRESS_MS &&
         tusc_store_cheap_chunk_checkpoint(st->upload);
}

static void checkpoint_done(tus_request_t *st) {
  int rc = st->work_result;
  st->work_result = 0;
  st->checkpointing = false;
  if (rc == 0 && !st->aborted && atomic_load(&st->release_requested))
    rc = TUSC_EUPLOAD_INTERRUPTED;
  if (rc == 0 && !st->aborted)
    rc = tusc_store_chunk_begin(st->upload, 0);
  if (rc != 0 || st->aborted) {
    /* The chunk has ended (its bytes kept, durable up to a write error): the body ends
     * as it would have, with no chunk left to end. */
    if (rc != 0 && st->result == 0)
      st->result = rc;
    tus_chunk_finish(st, false);
    return;
  }
  st->chunk_open = true;
  st->phase = PH_BODY;
  st->progress104_ms = uv_now(st->w->loop);
  st->progress104_written = st->written;
  tusc_ietf_progress(st, tusc_store_info(st->upload)->offset);
  tusc_http_body_resume(st->req); /* may deliver the next piece at once */
}

/* Ends the chunk for a progress 104 (see progress_104_due). Returns 0 (the body is
 * paused until checkpoint_done) or the store's refusal (the chunk is still open). */
static int checkpoint_start(tus_request_t *st) {
  /* A lease lock (Redis) that may be another instance's now: the body's end deals
   * with it (tus_chunk_finish drops the chunk). */
  if (st->lock_held && tusc_lock_check(&st->lock_req) == TUSC_ELOCK_LOST)
    return 0;
  int rc = tusc_store_chunk_end(st->upload, &st->sreq, TUSC_STORE_KEEP,
                                tus_store_step(st, checkpoint_done));
  if (rc != 0) {
    st->phase = PH_BODY;
    return rc;
  }
  st->chunk_open = false;
  st->checkpointing = true;
  tusc_http_body_pause(st->req);
  return 0;
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
  size_t taken = 0;
  int rc = store_feed(st, data, take, &taken);
  if (rc == TUSC_ESTORE_FULL)
    rc = hold_rest(st, data + taken, take - taken, over);
  else if (rc == 0 && over)
    rc = TUSC_EUPLOAD_SIZE_EXCEEDED;
  if (rc != 0)
    return chunk_stop(st, rc);
  if (ietf_reached_length(st)) {
    /* Completed by the server: answer now, read no more of the body (the connection
     * closes after the answer). Non-zero stops the body; it is not the result. */
    tus_chunk_finish(st, true);
    return TUSC_EUPLOAD_INTERRUPTED;
  }
  if (progress_104_due(st) && (rc = checkpoint_start(st)) != 0)
    return chunk_stop(st, rc);
  return 0;
}

void tus_on_body_end(tusc_http_request_t *req, void *ctx) {
  (void)ctx;
  tus_request_t *st = req->handler_data;
  if (st == NULL || st->phase != PH_BODY)
    return;
  st->result = 0;
  if (st->verify != NULL)
    st->result = tusc_verify_body_end(st->verify, req);
  else if (tusc_verify_has_trailer(req)) {
    /* An Upload-Checksum trailer that `Trailer:` did not announce: the bytes went in
     * unhashed and cannot be verified now, so the chunk is dropped and refused. */
    st->result = TUSC_EINVALID_CHECKSUM;
    st->chunk_drop = true;
  }
  tus_chunk_finish(st, false);
}

/* --- PATCH ----------------------------------------------------------------------- */

static void patch_info_saved(tus_request_t *st) {
  if (st->work_result < 0) {
    /* The length is not durable, so it is not known: keep the upload deferred. */
    tusc_upload_info_t *info = tusc_store_info(st->upload);
    info->size = -1;
    info->size_is_deferred = true;
    st->result = st->work_result;
    st->work_result = 0;
    tus_chunk_finish(st, false);
    return;
  }
  tus_chunk_begin(st);
}

static void patch_opened(tus_request_t *st) {
  const tusc_config_t *cfg = tus_cfg_of(st);
  int rc = st->work_result;
  st->work_result = 0;
  if (rc < 0) {
    tus_release_lock(st);
    tus_respond_store_error(st, rc);
    return;
  }
  st->upload = st->sreq.upload;
  tusc_upload_info_t *info = tusc_store_info(st->upload);
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
      tus_store_started(
          st, tusc_store_save_info(st->upload, &st->sreq, tus_store_step(st, patch_info_saved)));
      return;
    }
  }
  if (rc < 0) {
    if (rc == TUSC_EMISMATCHED_OFFSET && st->ietf.version > 0)
      tusc_ietf_note_conflict(&st->ietf, info); /* the draft's 409 says where to resume */
    tusc_store_close(st->upload);
    st->upload = NULL;
    tus_release_lock(st);
    tus_respond_error(st, rc);
    return;
  }
  tus_chunk_begin(st);
}

static void patch_locked(tus_request_t *st) {
  tusc_upload_t *up = NULL;
  int rc = tusc_store_try_open(tus_store_of(st), st->w->loop, st->id, &up);
  if (rc != UV_EAGAIN) {
    st->sreq.upload = up;
    st->work_result = rc;
    patch_opened(st);
    return;
  }
  tus_store_started(st, tusc_store_open(tus_store_of(st), st->w->loop, &st->sreq, st->id,
                                        tus_store_step(st, patch_opened)));
}

static void patch_exists(tus_request_t *st) {
  tus_lock_upload(st, patch_locked);
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
  tus_upload_exists(st, patch_exists);
}

void tusc_tus_req_append(tusc_tus_req_t *st, int64_t client_offset, int64_t new_length) {
  st->op = OP_PATCH;
  st->client_offset = client_offset;
  st->new_length = new_length;
  tus_upload_exists(st, patch_exists);
}

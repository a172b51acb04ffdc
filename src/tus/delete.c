/*
 * delete — termination: DELETE (and tusc_tus_req_terminate for other front-ends) under
 * the upload's lock with the pre-terminate hook, and the deletion a post-receive hook's
 * StopUpload asks for (tus_stop_terminate, from the body path). On the request's loop;
 * the store's requests call back here; each path releases the lock and answers exactly
 * once.
 */
#include "tus/handler_internal.h"

#include <stdlib.h>

#include "common/error.h"
#include "common/log.h"
#include "metrics/metrics.h"

/* Reads the stored info of st->id into st->info (for hooks that need it after the
 * upload is gone), then `next` with st->work_result. */
static void load_info(tus_request_t *st, step_fn next) {
  if (st->info == NULL) {
    st->info = malloc(sizeof(*st->info));
    if (st->info == NULL) {
      tus_store_step(st, next);
      tus_store_started(st, TUSC_ENOMEM);
      return;
    }
  } else {
    tusc_upload_info_dispose(st->info);
  }
  tusc_upload_info_init(st->info);
  tus_store_started(st, tusc_store_get_info(tus_store_of(st), st->w->loop, &st->sreq, st->id,
                                            st->info, tus_store_step(st, next)));
}

static void terminate(tus_request_t *st, step_fn next) {
  tus_store_started(st, tusc_store_terminate(tus_store_of(st), st->w->loop, &st->sreq, st->id,
                                             tus_store_step(st, next)));
}

/* --- StopUpload: the upload is deleted, the client gets 400 ERR_UPLOAD_STOPPED ------ */

/* An upload was deleted (DELETE, or a hook's StopUpload): log, count, post-terminate. */
static void upload_terminated(tus_request_t *st) {
  tusc_log_event(TUSC_LOG_INFO, "UploadTerminated", "id", st->id, "remote", st->client,
                 st->principal != NULL ? "user" : NULL, st->principal, NULL);
  tusc_metrics_upload_terminated();
  if (st->info != NULL)
    (void)tus_hook_fire(st, TUSC_HOOK_POST_TERMINATE, st->info, false);
}

static void stop_terminated(tus_request_t *st) {
  int rc = st->work_result;
  st->work_result = 0;
  tus_release_lock(st);
  if (rc == 0) {
    upload_terminated(st);
  } else {
    TUSC_LOG(TUSC_LOG_WARN, "upload %s: stopped but not deleted: %s", st->id, tusc_strerror(rc));
  }
  int err = st->stop_err != 0 ? st->stop_err : TUSC_EUPLOAD_STOPPED;
  tus_respond_error(st, st->aborted ? st->abort_err : err);
}

static void stop_loaded(tus_request_t *st) {
  if (st->work_result < 0 && st->info != NULL) {
    tusc_upload_info_dispose(st->info);
    free(st->info);
    st->info = NULL;
  }
  st->work_result = 0;
  tusc_store_close(st->upload);
  st->upload = NULL;
  terminate(st, stop_terminated);
}

void tus_stop_terminate(tus_request_t *st) {
  load_info(st, stop_loaded);
}

/* --- DELETE ---------------------------------------------------------------------- */

static void delete_done(tus_request_t *st) {
  int rc = st->work_result;
  st->work_result = 0;
  tus_release_lock(st);
  if (rc == 0)
    upload_terminated(st);
  if (st->aborted) {
    tus_respond_error(st, st->abort_err);
    return;
  }
  if (rc < 0) {
    tus_respond_store_error(st, rc);
    return;
  }
  tusc_http_response_t resp;
  tus_response_init(st, &resp, 204);
  tus_finish(st, &resp, NULL, 0);
}

static void delete_pre_done(tus_request_t *st) {
  int err = 0;
  if (st->aborted)
    err = st->abort_err;
  else if (st->hook_status < 0)
    err = tus_hook_failure(st);
  else if (st->hook_resp->reject_termination)
    err = TUSC_EUPLOAD_TERMINATION_REJECTED;
  else if (tusc_lock_check(&st->lock_req) == TUSC_ELOCK_LOST)
    err = TUSC_ELOCK_LOST; /* the hook took longer than the lease (Redis) */
  if (err < 0) {
    tus_release_lock(st);
    tus_respond_error(st, err);
    return;
  }
  terminate(st, delete_done);
}

static void delete_loaded(tus_request_t *st) {
  int rc = st->work_result;
  st->work_result = 0;
  if (rc < 0) {
    tus_release_lock(st);
    tus_respond_store_error(st, rc);
    return;
  }
  if (tus_hook_on(st, TUSC_HOOK_PRE_TERMINATE)) {
    tus_hook_block(st, TUSC_HOOK_PRE_TERMINATE, st->info, delete_pre_done);
    return;
  }
  terminate(st, delete_done);
}

static void delete_locked(tus_request_t *st) {
  /* The hooks describe the upload as it was: read it before it goes. */
  if (tus_hook_on(st, TUSC_HOOK_PRE_TERMINATE) || tus_hook_on(st, TUSC_HOOK_POST_TERMINATE)) {
    load_info(st, delete_loaded);
    return;
  }
  terminate(st, delete_done);
}

static void delete_exists(tus_request_t *st) {
  tus_lock_upload(st, delete_locked);
}

void tus_do_delete(tus_request_t *st) {
  tus_upload_exists(st, delete_exists);
}

void tusc_tus_req_terminate(tusc_tus_req_t *st) {
  st->op = OP_DELETE;
  tus_do_delete(st);
}

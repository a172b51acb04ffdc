/*
 * finals — concatenation jobs of the tus handler (handler_internal.h): a request's own
 * assembly job (GET of a final, POST of a final whose partials are complete), the
 * background assembly queued when a partial completes or a HEAD finds a final ready,
 * and the finish hooks of finals assembled in the background, which run without a
 * request. Jobs take their locks on the loop (concat.h); each background job counts in
 * w->bg_jobs so the worker outlives it. tus->triggers is shared by all workers under
 * triggers_mu; everything else runs on the worker's loop.
 */
#include "tus/handler_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "metrics/metrics.h"

/* --- concatenation environments -------------------------------------------------- */

/* How concat assembles for this request; `wait` = may wait for a busy final. */
static void concat_env(const tus_request_t *st, bool wait, tusc_concat_env_t *env) {
  env->store = st->w->tus->store;
  env->lock = st->w->tus->lock;
  env->lock_wait_ms = wait ? st->w->tus->cfg->acquire_lock_timeout_ms : 0;
  env->max_size = st->w->tus->cfg->max_size;
}

/* --- finish hooks of a final assembled in the background ---------------------------- */

/* A final completed by a background job (its last partial's PATCH has been answered,
 * or a HEAD noticed it) runs its finish hooks here, without a request: the hooks see
 * the request that triggered the job (for concatenation-unfinished, the PATCH that
 * completed the last partial), copied, since it has been answered meanwhile. The
 * FinishHooks state works as for any upload: pending until pre-finish succeeded, then
 * done (saved under the final's lock) and post-finish queued. A failed pre-finish
 * leaves it pending; an empty PATCH at the final's length runs them again (see
 * final_retry). Each job counts in w->bg_jobs so the worker outlives it. */

static bool w_hook_on(const tusc_tus_worker_t *w, enum tusc_hook_event ev) {
  return w->hw != NULL && !atomic_load(&w->closing) && w->tus->hooks != NULL &&
         tusc_hooks_enabled(w->tus->hooks, ev);
}

static void w_concat_env(const tusc_tus_worker_t *w, tusc_concat_env_t *env) {
  env->store = w->tus->store;
  env->lock = w->tus->lock;
  env->lock_wait_ms = w->tus->cfg->acquire_lock_timeout_ms;
  env->max_size = w->tus->cfg->max_size;
}

static void bg_job_end(tusc_tus_worker_t *w) {
  w->bg_jobs--;
  tus_worker_maybe_free(w);
}

struct bg_final {
  tusc_tus_worker_t *w;
  struct hook_req_copy *req;
  tusc_upload_info_t info;
  uint64_t start_ms;
  bool marked;
  int work_result;
  tusc_store_req_t sreq;
  char id[TUSC_ID_MAX + 1]; /* the caller's ID may go before the store calls back */
};

static void bg_final_free(struct bg_final *bf) {
  tusc_tus_worker_t *w = bf->w;
  tusc_upload_info_dispose(&bf->info);
  tus_hook_req_copy_free(bf->req);
  free(bf);
  bg_job_end(w);
}

static void bg_mark_done(void *arg, int status, char **finals, size_t count) {
  (void)finals;
  struct bg_final *bf = arg;
  bf->marked = count > 0;
  bf->work_result = status;
  if (bf->work_result < 0)
    TUSC_LOG(TUSC_LOG_WARN, "upload %s: cannot record that its finish hooks ran: %s", bf->info.id,
             tusc_strerror(bf->work_result));
  /* Not marked by us: someone else (a retrying PATCH) ran them meanwhile. */
  if ((bf->marked || bf->work_result < 0) && w_hook_on(bf->w, TUSC_HOOK_POST_FINISH)) {
    struct hook_call *call = malloc(sizeof(*call));
    if (call != NULL) {
      call->st = NULL;
      call->ev = TUSC_HOOK_POST_FINISH;
      call->start_ms = tusc_now_ms();
      if (tusc_hooks_invoke(bf->w->hw, TUSC_HOOK_POST_FINISH, &bf->info, &bf->req->hr,
                            tus_on_nonblocking_hook_done, call) == 0)
        tusc_metrics_hook_queue(1);
      else
        free(call);
    }
  }
  bg_final_free(bf);
}

/* Records "done" under the final's lock, taken on the loop (concat job). */
static void bg_mark(struct bg_final *bf) {
  tusc_concat_env_t env;
  w_concat_env(bf->w, &env);
  if (tusc_concat_queue_finish_hooks_done(bf->w->loop, &env, bf->info.id, bg_mark_done, bf) < 0)
    bg_final_free(bf);
}

static void bg_pre_done(int status, tusc_hook_response_t *resp, void *arg) {
  (void)resp; /* no client to hand an HTTPResponse to */
  struct bg_final *bf = arg;
  uint64_t now = tusc_now_ms();
  tusc_metrics_hook_done(TUSC_HOOK_PRE_FINISH, now > bf->start_ms ? now - bf->start_ms : 0);
  if (status < 0) {
    TUSC_LOG(TUSC_LOG_WARN,
             "upload %s: pre-finish failed (%s); its finish hooks stay pending (an empty "
             "PATCH at its length runs them again)",
             bf->info.id, tusc_strerror(status));
    bg_final_free(bf);
    return;
  }
  bg_mark(bf);
}

static void bg_final_loaded(tusc_store_req_t *sreq, int status) {
  struct bg_final *bf = sreq->data;
  tusc_tus_worker_t *w = bf->w;
  if (status < 0 || bf->info.finish_hooks != TUSC_FINISH_HOOKS_PENDING) {
    bg_final_free(bf);
    return;
  }
  if (!w_hook_on(w, TUSC_HOOK_PRE_FINISH)) {
    bg_mark(bf);
    return;
  }
  bf->start_ms = tusc_now_ms();
  int rc = tusc_hooks_invoke(w->hw, TUSC_HOOK_PRE_FINISH, &bf->info, &bf->req->hr, bg_pre_done, bf);
  if (rc < 0) {
    TUSC_LOG(TUSC_LOG_WARN, "upload %s: cannot run pre-finish: %s", bf->info.id, tusc_strerror(rc));
    bg_final_free(bf);
  }
}

/* Runs the finish hooks of final `id` if they are pending. Takes over `req`. */
void tus_bg_final_start(tusc_tus_worker_t *w, const char *id, struct hook_req_copy *req) {
  if (req == NULL)
    return;
  if (!w_hook_on(w, TUSC_HOOK_PRE_FINISH) && !w_hook_on(w, TUSC_HOOK_POST_FINISH)) {
    tus_hook_req_copy_free(req);
    return;
  }
  struct bg_final *bf = calloc(1, sizeof(*bf));
  if (bf == NULL) {
    tus_hook_req_copy_free(req);
    return;
  }
  bf->w = w;
  bf->req = req;
  w->bg_jobs++;
  tusc_upload_info_init(&bf->info);
  bf->sreq.data = bf;
  snprintf(bf->id, sizeof(bf->id), "%s", id);
  if (tusc_store_get_info(w->tus->store, w->loop, &bf->sreq, bf->id, &bf->info, bg_final_loaded) <
      0)
    bg_final_free(bf);
}

struct bg_trigger {
  tusc_tus_worker_t *w;
  struct hook_req_copy *req;
  char partial[TUSC_ID_MAX + 1]; /* a partial's job: listed in tus->triggers */
  bool listed;
  struct bg_trigger *next;
};

/* The completing PATCH is answered only after its job is listed, and the job is
 * unlisted only after it ended. So whoever sees a final's partials complete after that
 * answer either finds the job here or finds the final assembled. */
static void trigger_list(struct bg_trigger *t, const char *partial_id) {
  tusc_tus_t *tus = t->w->tus;
  snprintf(t->partial, sizeof(t->partial), "%s", partial_id);
  uv_mutex_lock(&tus->triggers_mu);
  t->next = tus->triggers;
  tus->triggers = t;
  t->listed = true;
  uv_mutex_unlock(&tus->triggers_mu);
}

static void trigger_unlist(struct bg_trigger *t) {
  if (!t->listed)
    return;
  tusc_tus_t *tus = t->w->tus;
  uv_mutex_lock(&tus->triggers_mu);
  struct bg_trigger **pp = &tus->triggers;
  while (*pp != NULL && *pp != t)
    pp = &(*pp)->next;
  if (*pp == t)
    *pp = t->next;
  t->listed = false;
  uv_mutex_unlock(&tus->triggers_mu);
}

/* A copy of the request that completed one of final `info`'s partials, if that
 * partial's job is still running; NULL if none is (or on ENOMEM). */
struct hook_req_copy *tus_trigger_req_for(tusc_tus_t *tus, const tusc_upload_info_t *info) {
  struct hook_req_copy *c = NULL;
  uv_mutex_lock(&tus->triggers_mu);
  for (struct bg_trigger *t = tus->triggers; t != NULL && c == NULL; t = t->next)
    for (size_t i = 0; i < info->partial_count && c == NULL; i++)
      if (strcmp(t->partial, info->partial_uploads[i]) == 0)
        c = tus_hook_req_copy_new(&t->req->hr);
  uv_mutex_unlock(&tus->triggers_mu);
  return c;
}

static void on_bg_assembled(void *arg, int status, char **finals, size_t count) {
  (void)status; /* logged by concat; a later HEAD/GET retries */
  struct bg_trigger *t = arg;
  trigger_unlist(t);
  if (t->req == NULL)
    count = 0; /* no finish hooks to run */
  for (size_t i = 0; i < count; i++)
    tus_bg_final_start(t->w, finals[i],
                       i + 1 < count ? tus_hook_req_copy_new(&t->req->hr) : t->req);
  if (count == 0)
    tus_hook_req_copy_free(t->req);
  tusc_tus_worker_t *w = t->w;
  free(t);
  bg_job_end(w);
}

/* Queues the background assembly for a partial that just finished (`partial`) or for
 * final st->id (`final` is its info), remembering the request for the finish hooks of
 * what it completes: this one, or for a final whose last partial's PATCH still has its
 * job running (the PATCH was answered before), that PATCH. */
void tus_concat_queue_bg(tus_request_t *st, bool partial, const tusc_upload_info_t *final) {
  tusc_concat_env_t env;
  concat_env(st, partial, &env);
  struct bg_trigger *t = calloc(1, sizeof(*t));
  if (t == NULL) {
    TUSC_LOG(TUSC_LOG_WARN, "concat: cannot queue the assembly for %s: out of memory", st->id);
    return;
  }
  t->w = st->w;
  if (tus_finish_hooks_on(st)) {
    t->req = final != NULL ? tus_trigger_req_for(st->w->tus, final) : NULL;
    if (t->req == NULL)
      t->req = tus_hook_req_snapshot(st);
  }
  int rc = partial
               ? tusc_concat_queue_partial_finished(st->w->loop, &env, st->id, on_bg_assembled, t)
               : tusc_concat_queue_assemble(st->w->loop, &env, st->id, on_bg_assembled, t, NULL);
  if (rc == 0) {
    st->w->bg_jobs++;
    if (partial && t->req != NULL)
      trigger_list(t, st->id);
    return;
  }
  tus_hook_req_copy_free(t->req);
  free(t);
  TUSC_LOG(TUSC_LOG_WARN, "concat: cannot queue the assembly for %s: %s", st->id,
           tusc_strerror(rc));
}

/* --- a request's own assembly job (GET, POST of a final) ------------------------- */

/* A concat job of this request ended (GET: the final's assembly; POST: a new final's). */
static void on_request_job_done(void *arg, int status, char **finals, size_t count) {
  (void)finals;
  tus_request_t *st = arg;
  st->concat_job = NULL;
  st->concat_assembled = count > 0;
  st->work_result = status;
  st->phase = PH_RUN;
  st->after_work(st);
}

/* Runs final st->id's assembly job (locks on the loop, copy on the pool), then `next`
 * with st->work_result; PH_WORK meanwhile, so that an abort abandons the job. */
void tus_concat_request_job(tus_request_t *st, bool created, step_fn next) {
  tusc_concat_env_t env;
  concat_env(st, true, &env);
  st->work_result = 0;
  st->after_work = next;
  st->phase = PH_WORK;
  int rc = created ? tusc_concat_queue_created(st->w->loop, &env, st->id, on_request_job_done, st,
                                               &st->concat_job)
                   : tusc_concat_queue_assemble(st->w->loop, &env, st->id, on_request_job_done, st,
                                                &st->concat_job);
  if (rc < 0) {
    st->phase = PH_RUN;
    st->work_result = rc;
    next(st);
  }
}

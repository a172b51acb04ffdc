/*
 * handler_internal — what the files of the tus handler share: the per-request state
 * (tus_request_t), the process and worker objects, and the functions one file calls in
 * another. Not a public API: only the handler files in src/tus include it (other
 * front-ends such as the IETF glue, ietf_req.c, use the narrow reqapi.h instead).
 *
 * The handler by concern:
 *   handler.c   routing, authentication, aborts, the tus/worker objects, the way back to
 *               the loop (tus_defer, tus_store_step) and the upload locks;
 *   req.c       request state lifetime, responses and error answers, lookups, ownership,
 *               and the reqapi.h accessors;
 *   create.c    POST (creation, pre-create, Storage.Path, concatenation finals);
 *   patch.c     PATCH and the body path of creation-with-upload (chunks, rate limit,
 *               post-receive progress, finish hooks at completion);
 *   read.c      HEAD and GET (downloads);
 *   delete.c    DELETE and StopUpload termination;
 *   hookglue.c  invoking hooks for a request and merging their HTTP answers;
 *   finals.c    concatenation jobs: background assembly and finish hooks of finals.
 *
 * Threads: everything runs on the request's worker loop: the store runs its blocking
 * work elsewhere and calls back here, and the lock's callbacks (lock.h) come on the loop
 * too. tus->triggers is shared by all workers under triggers_mu.
 *
 * Ownership: a tus_request_t lives from on_request until the one respond call that ends
 * the request (tus_finish, tus_download_end, or an error answer); it is freed right after
 * that call. A function documented as answering the request ends the caller's ownership:
 * the caller must not touch the state once it returns. A step_fn continuation is always
 * called exactly once.
 */
#ifndef TUSC_TUS_HANDLER_INTERNAL_H
#define TUSC_TUS_HANDLER_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "auth/auth.h"
#include "config/config.h"
#include "hooks/hooks.h"
#include "http/http.h"
#include "lock/lock.h"
#include "store/defer.h"
#include "store/store.h"
#include "tus/concat.h"
#include "tus/cors.h"
#include "tus/expire.h"
#include "tus/handler.h"
#include "tus/ietf.h"
#include "tus/ietf_req.h"
#include "tus/location.h"
#include "tus/reqapi.h"
#include "tus/verify.h"

#define TUS_VERSION "1.0.0"
#define OCTET_STREAM "application/offset+octet-stream"

struct tusc_tus_s {
  const tusc_config_t *cfg;
  tusc_store_t *store;
  tusc_lock_t *lock;
  tusc_cors_t cors;
  tusc_expire_t *expire; /* sweeper's index, NULL when expiration is off */
  tusc_hooks_t *hooks;   /* NULL = no hooks */
  tusc_auth_t *auth;     /* NULL = no authentication, host or proxy lists */
  char extensions[256];
  /* The partials whose background job (tus_concat_queue_bg) is still running, with the
   * request that completed each: a HEAD or GET that assembles one of their finals first
   * gives its finish hooks that request. Shared by all workers, under triggers_mu. */
  uv_mutex_t triggers_mu;
  struct bg_trigger *triggers;
};

typedef struct tus_request_s tus_request_t;

struct tusc_tus_worker_s {
  tusc_tus_t *tus;
  uv_loop_t *loop;
  tus_request_t *requests; /* every live request state of this worker */
  atomic_bool closing;
  tusc_hooks_worker_t *hw; /* NULL = no hooks (or stopping) */
  size_t bg_jobs;          /* concat jobs and background finish hooks that come back here */
};

enum phase { PH_RUN = 0, PH_LOCK_WAIT, PH_WORK, PH_BODY, PH_DRAIN, PH_STREAM, PH_HOOK, PH_AUTH };
enum op { OP_NONE = 0, OP_POST, OP_PATCH, OP_DELETE, OP_GET };

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
  char *principal;              /* authenticated user, owner of what it creates; NULL = anonymous */
  bool proxy_trusted;           /* this peer's forwarding headers are believed */
  enum tusc_http_method method; /* after X-HTTP-Method-Override */
  const char *method_name;      /* its name, as hooks see it (tusd: the overridden one) */
  tusc_auth_request_t areq;     /* a password check, waiting or on the pool (PH_AUTH) */
  int64_t rate_mark;            /* st->written at the last -min-upload-rate check */
  char *location;               /* POST: upload URL */
  tusc_ietf_req_t ietf;         /* IETF draft request state (ietf.c) */
  tusc_concat_t concat;         /* POST: parsed Upload-Concat */

  /* lock */
  tusc_lock_req_t lock_req;
  bool lock_held;
  atomic_bool release_requested; /* another request wants the lock (set on the loop) */
  uv_timer_t timer;              /* post-receive pacing and -min-upload-rate (patch.c) */
  bool timer_init;
  step_fn after_lock;

  /* store requests and deferred steps (PH_WORK) */
  tusc_defer_t defer;    /* tus_defer */
  tusc_store_req_t sreq; /* tus_store_step: one store request at a time */
  int work_result;
  step_fn after_work;
  tusc_upload_info_t *info;   /* POST: the info being created */
  tusc_upload_info_t *looked; /* tus_upload_exists / tusc_tus_req_lookup: what was read */
  step_fn after_lookup;
  tusc_tus_req_found_cb after_found;
  tusc_concat_parts_t *parts; /* HEAD/GET/POST of a final: its partials' infos (tus_parts) */
  size_t note_i;              /* POST of a final: next partial to note it with */

  /* writing (PATCH, POST with body) */
  tusc_upload_t *upload;
  bool with_body;
  bool chunk_started;
  bool was_complete;
  int64_t client_offset;
  int64_t new_length; /* Upload-Length on PATCH, -1 when absent */
  int64_t start_offset;
  int64_t written;
  int64_t limit;         /* body bytes the upload may still take, -1 = unlimited */
  tusc_verify_t *verify; /* checksum: the chunk is verified before it counts (verify.h) */
  bool chunk_open;       /* the store's chunk began and its end has not started */
  bool chunk_drop;       /* end it with DISCARD (an unannounced checksum trailer) */
  bool interim_pending;  /* IETF creation: its 104 goes out when the body starts */
  bool checkpointing;    /* IETF progress: the chunk is ended and begun again (patch.c) */
  bool repr_checked;     /* IETF Repr-Digest: the completed upload was read back (patch.c) */
  int64_t repr_pos;
  char *repr_buf;
  struct tusc_checksum_s *repr_hash;
  int stop_err;                /* tus_stop_terminate answers this (0: ERR_UPLOAD_STOPPED) */
  uint64_t progress104_ms;     /* loop time of the body's start or the last progress 104 */
  int64_t progress104_written; /* st->written then */
  char *held;            /* body bytes the store could not take yet (answered "full"):
                          * at most the rest of one body piece, the body is paused */
  size_t held_len, held_off, held_cap;
  bool held_over; /* that piece overran the upload's length: stop once taken */
  int result;     /* the error to answer with once the body phase ends, 0 = success */
  bool aborted;
  int abort_err;

  /* download */
  char *buf;
  int64_t pos, end; /* next byte to send, last byte to send */
  size_t pending;
  bool write_pending;
  bool read_pending; /* a store read is out */

  /* hooks (PH_HOOK: a blocking hook runs; its callback always comes back) */
  step_fn after_hook;
  enum tusc_hook_event hook_ev;
  uint64_t hook_start_ms;
  int hook_status;                 /* outcome of the last blocking hook */
  tusc_hook_response_t *hook_resp; /* its answer (owned) */
  tusc_hook_response_t *merge;     /* HTTPResponse parts merged into our answer */
  bool pre_create_done;
  bool finish_hooks_ran;
  bool concat_assembled;            /* this request's work completed a final (it reports it) */
  tusc_concat_job_t *concat_job;    /* PH_WORK: assembly job of a new final or a GET */
  bool concat_job_ran;              /* POST: the new final's assembly job has ended */
  struct hook_req_copy *concat_req; /* GET: the request its finish hooks see (owned) */
  bool stopped;                     /* a post-receive hook answered StopUpload */
  struct hook_call *progress;       /* outstanding post-receive */
  int64_t progress_offset;          /* offset the last post-receive reported */
  bool progress_timer;              /* st->timer paces post-receive */
  bool progress_final;              /* the last post-receive is due once the chunk ended */
  bool metrics_active;              /* counted in tusc_active_uploads */
};

/* A post-receive or fire-and-forget invocation in flight. `st` is cleared when the
 * request state goes first; the callback then only counts. */
struct hook_call {
  tus_request_t *st;
  enum tusc_hook_event ev;
  uint64_t start_ms;
};

/* tusc_hook_http_request_t with its own copies of every string. */
struct hook_req_copy {
  tusc_hook_http_request_t hr;
  tusc_hook_header_t *headers;
  char *buf;
};

static inline tusc_store_t *tus_store_of(const tus_request_t *st) {
  return st->w->tus->store;
}
static inline const tusc_config_t *tus_cfg_of(const tus_request_t *st) {
  return st->w->tus->cfg;
}

/* --- handler.c ------------------------------------------------------------------- */

/* Frees a closing worker once its last request and background job are gone. */
void tus_worker_maybe_free(tusc_tus_worker_t *w);
/* Runs `next` in a later loop turn with st->work_result 0 (PH_WORK meanwhile). Never
 * calls `next` before returning: the way to leave an http callback before responding. */
void tus_defer(tus_request_t *st, step_fn next);
/* Store requests of a request go through st->sreq:
 *   tus_store_started(st, tusc_store_xxx(..., &st->sreq, tus_store_step(st, next)));
 * tus_store_step prepares st->sreq and returns the callback, which sets
 * st->work_result to the request's status and runs `next` (PH_WORK meanwhile);
 * tus_store_started turns a refused start into the same, later. */
tusc_store_cb tus_store_step(tus_request_t *st, step_fn next);
void tus_store_started(tus_request_t *st, int rc);
/* Takes the upload's exclusive lock, asking a current holder to let go and waiting at
 * most -acquire-lock-timeout, then runs `next` (at once when the lock is free). Answers
 * the request itself on failure or timeout. */
void tus_lock_upload(tus_request_t *st, step_fn next);
void tus_release_lock(tus_request_t *st);

/* --- req.c: helpers, state, responses, lookups ------------------------------------- */

/* The value of header `name` (its length in *len unless len is NULL), NULL if absent. */
const char *tus_header_value(const tusc_http_request_t *req, const char *name, size_t *len);
/* Media type of a Content-Type value equals `type` (case-insensitive, parameters
 * ignored). */
bool tus_media_type_is(const char *value, size_t len, const char *type);
void tus_fmt_i64(char out[24], int64_t v);
/* Frees the state. The lock must already be released and the request responded. */
void tus_state_free(tus_request_t *st);
void tus_response_init(tus_request_t *st, tusc_http_response_t *resp, int status);
/* Ends the request and frees the state. */
void tus_finish(tus_request_t *st, tusc_http_response_t *resp, const void *body, size_t len);
/* text/plain answer: tus_finish with `text` as the body. */
void tus_respond_text(tus_request_t *st, tusc_http_response_t *resp, const char *text);
/* The error answer ("ERR_CODE: message"), with Allow when `allow` is not NULL. */
void tus_respond_error_with(tus_request_t *st, int err, const char *allow);
void tus_respond_error(tus_request_t *st, int err);
/* 503/429 for a bound that was hit: the client may come back after `seconds`. */
void tus_respond_retry_later(tus_request_t *st, int err, unsigned seconds);
/* The "upload not found" answer for a failed store lookup. */
void tus_respond_store_error(tus_request_t *st, int err);
/* Whether the request may touch an upload with this info (its owner, see req.c). */
bool tus_owner_ok(const tus_request_t *st, const tusc_upload_info_t *info);
/* Another principal's upload: 403, or 404 with -auth-hide-foreign. Answers. */
void tus_respond_foreign(tus_request_t *st);
/* Upload-Expires (unix seconds) of an unfinished upload, 0 for none; `touched`: bytes
 * were just written, so its last activity is now. */
int64_t tus_expires_s(const tus_request_t *st, const tusc_upload_info_t *info, bool touched);
bool tus_expired(const tus_request_t *st, const tusc_upload_info_t *info);
/* What tusc_location_* need from this request. Returns 0. */
int tus_location_input(tus_request_t *st, tusc_location_input_t *in);
/* Drops st->looked (an upload's info is 2 KiB; a request waiting for its client keeps
 * none). */
void tus_looked_free(tus_request_t *st);
/* st->parts, made on first use (NULL on ENOMEM); freed with the state. */
tusc_concat_parts_t *tus_parts(tus_request_t *st);
/* Reads the upload's info into st->looked, then `next` with st->work_result (0 or the
 * store's error) — at once when the store answers without waiting, so call it last. */
void tus_read_info(tus_request_t *st, step_fn next);
/* Reads the upload's info (st->looked) and answers 404 for an unknown upload (no lock
 * file is made for it), 403/404 for a foreign one, 410 for an expired one; else runs
 * `next` (at once when the store answers without waiting: call it last). */
void tus_upload_exists(tus_request_t *st, step_fn next);

/* --- hookglue.c -------------------------------------------------------------------- */

bool tus_hook_on(const tus_request_t *st, enum tusc_hook_event ev);
/* Pre-finish or post-finish is enabled. */
bool tus_finish_hooks_on(const tus_request_t *st);
/* Applies the hooks' merged HTTPResponse parts to the response about to be sent. */
void tus_hook_merge_apply(tus_request_t *st, tusc_http_response_t *resp, const void **body,
                          size_t *len);
/* Drops the request's hook state (outstanding post-receive, merged answers). */
void tus_hook_state_dispose(tus_request_t *st);
/* Blocking hook callback (also the key to cancel a running blocking hook). */
void tus_on_blocking_hook_done(int status, tusc_hook_response_t *resp, void *arg);
/* The error a request answers when its blocking hook failed (503 or 500). */
int tus_hook_failure(const tus_request_t *st);
/* Runs blocking hook `ev`, then `next` (always later, on the loop; st->hook_status and
 * st->hook_resp hold the outcome). */
void tus_hook_block(tus_request_t *st, enum tusc_hook_event ev, const tusc_upload_info_t *info,
                    step_fn next);
/* Callback of a non-blocking invocation; `arg` is a heap struct hook_call it frees. */
void tus_on_nonblocking_hook_done(int status, tusc_hook_response_t *resp, void *arg);
/* Queues non-blocking hook `ev`. With `track` the call is the request's outstanding
 * post-receive (its StopUpload answer is honoured). Returns 0 or the invoke error. */
int tus_hook_fire(tus_request_t *st, enum tusc_hook_event ev, const tusc_upload_info_t *info,
                  bool track);
/* Copies of the request as hooks see it (NULL on ENOMEM); free with
 * tus_hook_req_copy_free (NULL is fine). */
void tus_hook_req_copy_free(struct hook_req_copy *c);
struct hook_req_copy *tus_hook_req_copy_new(const tusc_hook_http_request_t *hr);
struct hook_req_copy *tus_hook_req_snapshot(const tus_request_t *st);

/* --- finals.c ---------------------------------------------------------------------- */

/* Runs the finish hooks of final `id` if they are pending. Takes over `req`. */
void tus_bg_final_start(tusc_tus_worker_t *w, const char *id, struct hook_req_copy *req);
/* A copy of the request that completed one of final `info`'s partials, if that
 * partial's job is still running; NULL if none is (or on ENOMEM). */
struct hook_req_copy *tus_trigger_req_for(tusc_tus_t *tus, const tusc_upload_info_t *info);
/* Queues the background assembly for a partial that just finished (`partial`) or for
 * final st->id (`final` is its info). */
void tus_concat_queue_bg(tus_request_t *st, bool partial, const tusc_upload_info_t *final);
/* Runs final st->id's assembly job, then `next` with st->work_result (PH_WORK
 * meanwhile). */
void tus_concat_request_job(tus_request_t *st, bool created, step_fn next);

/* --- the methods: create.c, patch.c, read.c, delete.c ------------------------------ */

/* Each answers the request (now or later). */
void tus_do_post(tus_request_t *st);
void tus_do_patch(tus_request_t *st);
void tus_do_head(tus_request_t *st);
void tus_do_get(tus_request_t *st);
void tus_do_delete(tus_request_t *st);

/* patch.c: the body path. Called with the lock held and st->upload open: starts reading
 * the body (or answers). */
void tus_chunk_begin(tus_request_t *st);
/* Ends the body phase: makes the written bytes durable (thread pool), then answers.
 * With `leave_callback` the answer is never given before returning. */
void tus_chunk_finish(tus_request_t *st, bool leave_callback);
/* The http handler's body callbacks. */
int tus_on_body(tusc_http_request_t *req, const char *data, size_t len, void *ctx);
void tus_on_body_end(tusc_http_request_t *req, void *ctx);

/* read.c: ends a streamed download (respond_end) and frees the state. */
void tus_download_end(tus_request_t *st);

/* delete.c: StopUpload from post-receive (or a failed Repr-Digest, patch.c): deletes the
 * upload, answers 400 ERR_UPLOAD_STOPPED (st->stop_err when set). */
void tus_stop_terminate(tus_request_t *st);

#endif

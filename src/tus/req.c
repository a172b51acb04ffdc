/*
 * req — the request state of the tus handler files (handler_internal.h): its lifetime
 * (tus_state_free), building and ending responses and the error answers, the lookups
 * and ownership checks every method shares, and the reqapi.h accessors for other
 * front-ends (ietf.c). All on the request's loop. The answering functions (tus_finish,
 * tus_respond_*) free the state: the caller must not touch it afterwards.
 */
#include "tus/handler_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/error.h"
#include "common/log.h"
#include "metrics/metrics.h"

/* --- small helpers ------------------------------------------------------------- */

const char *tus_header_value(const tusc_http_request_t *req, const char *name, size_t *len) {
  const tusc_http_header_t *h = tusc_http_header(req, name);
  if (h == NULL)
    return NULL;
  if (len != NULL)
    *len = h->value_len;
  return h->value;
}

/* Media type of a Content-Type value equals `type` (case-insensitive, parameters
 * ignored). */
bool tus_media_type_is(const char *value, size_t len, const char *type) {
  if (value == NULL)
    return false;
  const char *semi = memchr(value, ';', len);
  size_t n = semi != NULL ? (size_t)(semi - value) : len;
  while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t'))
    n--;
  return n == strlen(type) && strncasecmp(value, type, n) == 0;
}

void tus_fmt_i64(char out[24], int64_t v) {
  snprintf(out, 24, "%lld", (long long)v);
}

/* --- request state lifetime ------------------------------------------------------ */

static void on_state_timer_closed(uv_handle_t *handle) {
  tus_request_t *st = handle->data;
  tusc_tus_worker_t *w = st->w;
  free(st);
  tus_worker_maybe_free(w);
}

/* Frees the state. The lock must already be released and the request responded. */
void tus_state_free(tus_request_t *st) {
  tusc_tus_worker_t *w = st->w;
  tus_hook_state_dispose(st);
  tusc_verify_free(st->verify);
  tusc_checksum_free(st->repr_hash);
  free(st->repr_buf);
  if (st->lock_held) {
    tusc_lock_release(&st->lock_req);
    st->lock_held = false;
  }
  if (st->upload != NULL)
    tusc_store_close(st->upload);
  if (st->looked != NULL) {
    tusc_upload_info_dispose(st->looked);
    free(st->looked);
  }
  free(st->held);
  if (st->parts != NULL) {
    tusc_concat_parts_dispose(st->parts);
    free(st->parts);
  }
  if (st->info != NULL) {
    tusc_upload_info_dispose(st->info);
    free(st->info);
  }
  free(st->location);
  free(st->principal);
  tus_hook_req_copy_free(st->concat_req);
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
  tus_worker_maybe_free(w);
}

/* --- responses ----------------------------------------------------------------- */

void tus_response_init(tus_request_t *st, tusc_http_response_t *resp, int status) {
  tusc_http_response_init(resp, status);
  if (st->ietf.version != 0)
    tusc_ietf_response_headers(st, resp, status);
  else
    tusc_http_response_header(resp, "Tus-Resumable", TUS_VERSION);
  tusc_http_response_header(resp, "X-Content-Type-Options", "nosniff");
  tusc_cors_header_t cors[TUSC_CORS_MAX_HEADERS];
  size_t n = 0;
  const char *origin = tus_header_value(st->req, "Origin", NULL);
  if (tusc_cors_headers(&st->w->tus->cors, origin, st->preflight, cors, &n) == 0)
    for (size_t i = 0; i < n; i++)
      tusc_http_response_header(resp, cors[i].name, cors[i].value);
}

/* Ends the request and frees the state. */
void tus_finish(tus_request_t *st, tusc_http_response_t *resp, const void *body, size_t len) {
  tusc_http_request_t *req = st->req;
  tus_hook_merge_apply(st, resp, &body, &len);
  tusc_metrics_request_done(req->method, req->start_ms);
  st->req = NULL;
  req->handler_data = NULL;
  tusc_http_respond(req, resp, body, len);
  tus_state_free(st);
}

void tus_respond_text(tus_request_t *st, tusc_http_response_t *resp, const char *text) {
  tusc_http_response_header(resp, "Content-Type", "text/plain; charset=utf-8");
  tus_finish(st, resp, text, strlen(text));
}

/* The error answer, with one extra header (`name`: `value`) unless value is NULL. */
static void respond_error_header(tus_request_t *st, int err, const char *name, const char *value) {
  tusc_http_response_t resp;
  char body[256];
  int status = tusc_error_status(err);
  tusc_metrics_error(status, err);
  tus_response_init(st, &resp, status);
  /* A bound that was hit: the client may simply come back. */
  if ((err == TUSC_EHOOKS_BUSY || err == TUSC_EAUTH_BUSY) && value == NULL)
    tusc_http_response_header(&resp, "Retry-After", "1");
  if (status == 412)
    tusc_http_response_header(&resp, "Tus-Version", TUS_VERSION);
  if (value != NULL)
    tusc_http_response_header(&resp, name, value);
  /* creation-with-upload whose checksum failed: the upload exists (st->info is freed
   * once it is created), empty; its URL lets the client resend the chunk with PATCH. */
  if (err == TUSC_ECHECKSUM_MISMATCH && st->op == OP_POST && st->location != NULL &&
      st->info == NULL)
    tusc_http_response_header(&resp, "Location", st->location);
  if (status >= 500 || st->aborted)
    TUSC_LOG(TUSC_LOG_WARN, "%s %s from %s: %s", st->req->method_name, st->req->path, st->client,
             tusc_strerror(err));
  size_t len = st->ietf.version > 0 ? tusc_ietf_problem_body(st, err, body, sizeof(body)) : 0;
  if (len > 0) { /* the draft's problem type (interop 9 on) */
    tusc_http_response_header(&resp, "Content-Type", "application/problem+json");
    tus_finish(st, &resp, body, len);
    return;
  }
  snprintf(body, sizeof(body), "%s: %s\n", tusc_error_code(err), tusc_strerror(err));
  tus_respond_text(st, &resp, body);
}

void tus_respond_error_with(tus_request_t *st, int err, const char *allow) {
  respond_error_header(st, err, "Allow", allow);
}

void tus_respond_error(tus_request_t *st, int err) {
  tus_respond_error_with(st, err, NULL);
}

/* 503/429 for a bound that was hit: the client may come back after `seconds`. */
void tus_respond_retry_later(tus_request_t *st, int err, unsigned seconds) {
  char value[16];
  snprintf(value, sizeof(value), "%u", seconds > 0 ? seconds : 1);
  respond_error_header(st, err, "Retry-After", value);
}

/* The "upload not found" answer for a failed store lookup. */
void tus_respond_store_error(tus_request_t *st, int err) {
  if (err == TUSC_EINVALID_ID)
    err = TUSC_ENOT_FOUND;
  tus_respond_error(st, err);
}

/* --- authentication and ownership ------------------------------------------------ */

/* Whether the request may touch an upload with this info. Uploads made before
 * authentication was switched on have no owner and stay open to every authenticated
 * user; without authentication everything is open, as in tusd. */
bool tus_owner_ok(const tus_request_t *st, const tusc_upload_info_t *info) {
  if (!tusc_auth_required(st->w->tus->auth) || info->owner == NULL)
    return true;
  return st->principal != NULL && strcmp(info->owner, st->principal) == 0;
}

/* Another principal's upload: 403, or 404 (as if it did not exist) with
 * -auth-hide-foreign. HEAD answers carry no body. */
void tus_respond_foreign(tus_request_t *st) {
  bool hide = tus_cfg_of(st)->auth_hide_foreign;
  TUSC_LOG(TUSC_LOG_INFO, "%s %s from %s: upload %s belongs to another user", st->req->method_name,
           st->req->path, st->client, st->id);
  if (st->method == TUSC_HTTP_HEAD) {
    tusc_http_response_t resp;
    tus_response_init(st, &resp, hide ? 404 : 403);
    tusc_http_response_header(&resp, "Cache-Control", "no-store");
    tus_finish(st, &resp, NULL, 0);
    return;
  }
  tus_respond_error(st, hide ? TUSC_ENOT_FOUND : TUSC_EFORBIDDEN);
}

/* --- expiration ------------------------------------------------------------------ */

/* Upload-Expires (unix seconds) of an unfinished upload, 0 for none; `touched`: bytes
 * were just written, so its last activity is now. */
int64_t tus_expires_s(const tus_request_t *st, const tusc_upload_info_t *info, bool touched) {
  int64_t after = tus_cfg_of(st)->expire_after_ms;
  int64_t deadline = tusc_expire_deadline_ms(info, after);
  if (deadline > 0 && touched && tusc_expire_now_ms() + after > deadline)
    deadline = tusc_expire_now_ms() + after;
  return deadline / 1000;
}

bool tus_expired(const tus_request_t *st, const tusc_upload_info_t *info) {
  return tusc_expire_is_expired(info, tus_cfg_of(st)->expire_after_ms, tusc_expire_now_ms());
}

/* --- existence check without touching the lock file ------------------------------ */

/* The looked-up info in st->looked (made on first use). NULL on ENOMEM. */
static tusc_upload_info_t *looked_info(tus_request_t *st) {
  if (st->looked == NULL) {
    st->looked = malloc(sizeof(*st->looked));
    if (st->looked == NULL)
      return NULL;
    tusc_upload_info_init(st->looked);
  }
  return st->looked;
}

static void exists_checked(tus_request_t *st) {
  int rc = st->work_result;
  st->work_result = 0;
  /* Ownership first: another user's expired upload must not answer 410. */
  bool mine = rc < 0 || tus_owner_ok(st, st->looked);
  if (rc == 0 && mine && tus_expired(st, st->looked))
    rc = TUSC_EGONE;
  if (!mine) {
    tus_respond_foreign(st);
    return;
  }
  if (rc < 0) {
    tus_respond_store_error(st, rc);
    return;
  }
  tus_looked_free(st);
  st->after_lookup(st);
}

tusc_concat_parts_t *tus_parts(tus_request_t *st) {
  if (st->parts == NULL)
    st->parts = calloc(1, sizeof(*st->parts));
  return st->parts;
}

/* The looked-up info is not kept past its use: an upload's info is 2 KiB, and a request
 * waiting for its client should cost little. */
void tus_looked_free(tus_request_t *st) {
  if (st->looked != NULL) {
    tusc_upload_info_dispose(st->looked);
    free(st->looked);
    st->looked = NULL;
  }
}

void tus_read_info(tus_request_t *st, step_fn next) {
  tusc_upload_info_t *info = looked_info(st);
  if (info == NULL) {
    tus_respond_error(st, TUSC_ENOMEM);
    return;
  }
  int rc = tusc_store_try_get_info(tus_store_of(st), st->id, info);
  if (rc != UV_EAGAIN) {
    st->work_result = rc;
    next(st);
    return;
  }
  tus_store_started(st, tusc_store_get_info(tus_store_of(st), st->w->loop, &st->sreq, st->id, info,
                                            tus_store_step(st, next)));
}

/* Answers 404 for an unknown upload (so that requests for IDs that never existed leave
 * no lock file behind), 403/404 for a foreign one, 410 for an expired one; else runs
 * `next`, at once when the store answers without waiting (callers call this last). */
void tus_upload_exists(tus_request_t *st, step_fn next) {
  tusc_upload_info_t *info = looked_info(st);
  if (info == NULL) {
    tus_respond_error(st, TUSC_ENOMEM);
    return;
  }
  st->after_lookup = next;
  int rc = tusc_store_try_get_info(tus_store_of(st), st->id, info);
  if (rc != UV_EAGAIN) {
    st->work_result = rc;
    exists_checked(st);
    return;
  }
  tus_store_started(st, tusc_store_get_info(tus_store_of(st), st->w->loop, &st->sreq, st->id, info,
                                            tus_store_step(st, exists_checked)));
}

/* --- what Location is built from ------------------------------------------------- */

int tus_location_input(tus_request_t *st, tusc_location_input_t *in) {
  tusc_http_request_t *req = st->req;
  memset(in, 0, sizeof(*in));
  in->host = tus_header_value(req, "Host", &in->host_len);
  in->behind_proxy = st->proxy_trusted;
  in->tls = req->tls;
  if (in->behind_proxy) {
    in->x_forwarded_host = tus_header_value(req, "X-Forwarded-Host", &in->x_forwarded_host_len);
    in->x_forwarded_proto = tus_header_value(req, "X-Forwarded-Proto", &in->x_forwarded_proto_len);
    in->x_forwarded_prefix =
        tus_header_value(req, "X-Forwarded-Prefix", &in->x_forwarded_prefix_len);
    in->forwarded = tus_header_value(req, "Forwarded", &in->forwarded_len);
  }
  return 0;
}

/* --- the narrow request API for other front-ends (reqapi.h) ---------------------- */

tusc_http_request_t *tusc_tus_req_http(tusc_tus_req_t *st) {
  return st->req;
}
const tusc_config_t *tusc_tus_req_config(tusc_tus_req_t *st) {
  return tus_cfg_of(st);
}
tusc_store_t *tusc_tus_req_store(tusc_tus_req_t *st) {
  return tus_store_of(st);
}
struct tusc_ietf_req_s *tusc_tus_req_ietf(tusc_tus_req_t *st) {
  return &st->ietf;
}
const char *tusc_tus_req_id(tusc_tus_req_t *st) {
  return st->id;
}
const char *tusc_tus_req_location(tusc_tus_req_t *st) {
  return st->location;
}
int tusc_tus_req_set_id(tusc_tus_req_t *st, const char *id) {
  size_t n = strlen(id);
  if (n == 0 || n >= sizeof(st->id))
    return TUSC_EINVALID_ID;
  memcpy(st->id, id, n + 1);
  return 0;
}
void tusc_tus_req_location_input(tusc_tus_req_t *st, tusc_location_input_t *in) {
  (void)tus_location_input(st, in);
}
int tusc_tus_req_content_digest(tusc_tus_req_t *st) {
  tusc_verify_free(st->verify);
  st->verify = NULL;
  int rc = tusc_verify_new_digest(st->req, &st->verify);
  if (rc == 0 && st->verify != NULL && !st->req->chunked && st->req->content_length <= 0) {
    /* No content: the digest must be that of no bytes, checked before anything is
     * created or looked up (a creation without content reads no body). */
    rc = tusc_verify_empty(st->verify);
    tusc_verify_free(st->verify);
    st->verify = NULL;
  }
  return rc;
}
int64_t tusc_tus_req_expires_s(tusc_tus_req_t *st, const tusc_upload_info_t *info, bool touched) {
  return tus_expires_s(st, info, touched);
}
void tusc_tus_req_response_init(tusc_tus_req_t *st, tusc_http_response_t *resp, int status) {
  tus_response_init(st, resp, status);
}
void tusc_tus_req_finish(tusc_tus_req_t *st, tusc_http_response_t *resp, const void *body,
                         size_t len) {
  tus_finish(st, resp, body, len);
}
void tusc_tus_req_respond_error(tusc_tus_req_t *st, int err, const char *allow) {
  tus_respond_error_with(st, err, allow);
}

static void lookup_done(tus_request_t *st) {
  tusc_upload_info_t *info = st->looked;
  int rc = st->work_result;
  st->work_result = 0;
  if (rc == 0 && !tus_owner_ok(st, info)) {
    tus_respond_foreign(st);
    return;
  }
  if (rc == 0 && tus_expired(st, info))
    rc = TUSC_EGONE;
  if (rc == TUSC_EINVALID_ID)
    rc = TUSC_ENOT_FOUND;
  if (rc < 0 && st->method == TUSC_HTTP_HEAD && (rc == TUSC_ENOT_FOUND || rc == TUSC_EGONE)) {
    tusc_http_response_t resp;
    tus_response_init(st, &resp, tusc_error_status(rc));
    tusc_http_response_header(&resp, "Cache-Control", "no-store");
    tus_finish(st, &resp, NULL, 0);
    return;
  }
  if (rc < 0) {
    tus_respond_error(st, rc);
    return;
  }
  st->after_found(st, info);
}

void tusc_tus_req_lookup(tusc_tus_req_t *st, tusc_tus_req_found_cb found) {
  tusc_upload_info_t *info = looked_info(st);
  if (info == NULL) {
    tus_respond_error(st, TUSC_ENOMEM);
    return;
  }
  st->after_found = found;
  tus_store_started(st, tusc_store_get_info(tus_store_of(st), st->w->loop, &st->sreq, st->id, info,
                                            tus_store_step(st, lookup_done)));
}

/*
 * create — POST (creation, creation-defer-length, concatenation, creation-with-upload)
 * and the creation flow other front-ends use (tusc_tus_req_create): validation, the
 * pre-create hook and what it may change (ID, MetaData, Storage.Path), creating the
 * upload in the store (asynchronously), assembling a final whose partials are complete,
 * then the body (patch.c's chunk path) or the 201. On the request's loop; every path
 * answers the request exactly once.
 */
#include "tus/handler_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "metrics/metrics.h"
#include "tus/headers.h"

/* --- ownership of a final's partials --------------------------------------------- */

/* Checks every partial of a final upload the same way (concatenation must not
 * read another user's bytes), on the partials' infos in st->parts. Answers 403 and
 * returns false when one is foreign. With -auth-hide-foreign a foreign partial counts as
 * missing instead, inside tusc_concat_prepare_final_parts (partial_visible), so the
 * answer is the one a missing partial gets, whatever the other partials are. */
static bool partials_owned(tus_request_t *st) {
  if (!tusc_auth_required(st->w->tus->auth) || tus_cfg_of(st)->auth_hide_foreign)
    return true;
  for (size_t i = 0; i < st->parts->count; i++) {
    /* missing partials: concat answers that */
    if (st->parts->rc[i] == 0 && !tus_owner_ok(st, &st->parts->infos[i])) {
      tus_respond_foreign(st);
      return false;
    }
  }
  return true;
}

static bool partial_visible(const tusc_upload_info_t *partial, void *arg) {
  return tus_owner_ok(arg, partial);
}

/* --- pre-create -------------------------------------------------------------------- */

/* The pre-create hook's verdict: false (the request answered) when the request was
 * aborted meanwhile or the hook failed or rejected the upload; true (creation goes on). */
static bool pre_create_accepted(tus_request_t *st) {
  if (st->aborted) {
    tus_respond_error(st, st->abort_err);
    return false;
  }
  if (st->hook_status < 0) {
    tus_respond_error(st, tus_hook_failure(st));
    return false;
  }
  if (st->hook_resp->reject_upload) {
    tus_respond_error(st, TUSC_EUPLOAD_REJECTED);
    return false;
  }
  st->pre_create_done = true;
  return true;
}

static void pre_create_done(tus_request_t *st) {
  if (!pre_create_accepted(st))
    return;
  /* Validation runs again (cheap, and nothing of the first run had to be kept); the
   * hook's ChangeFileInfo is applied where the ID and info are made. */
  tusc_concat_dispose(&st->concat);
  tus_do_post(st);
}

/* Runs pre-create with what the upload would be (ID "" and no Storage). */
static void pre_create(tus_request_t *st, const tusc_metadata_t *md, int64_t size, bool deferred) {
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  info.size = deferred ? -1 : size;
  info.size_is_deferred = deferred;
  info.metadata = *md; /* borrowed: serialised during the call */
  info.is_partial = st->concat.is_partial;
  info.is_final = st->concat.is_final;
  info.partial_uploads = st->concat.ids; /* borrowed too */
  info.partial_count = st->concat.count;
  info.created_at = (int64_t)time(NULL);
  st->op = OP_POST;
  tus_hook_block(st, TUSC_HOOK_PRE_CREATE, &info, pre_create_done);
}

/* The ID a pre-create hook chose, if any, into id (TUSC_ID_MAX + 1 bytes). Returns 1
 * when one was taken, 0 when none, or TUSC_EINTERNAL for an ID the store cannot hold. */
static int pre_create_id(tus_request_t *st, char *id) {
  if (st->hook_resp == NULL || st->hook_resp->change_id == NULL)
    return 0;
  char path[TUSC_PATH_MAX];
  const char *want = st->hook_resp->change_id;
  if (strlen(want) > TUSC_ID_MAX || tusc_file_store_shard_path(want, path, sizeof(path)) < 0) {
    TUSC_LOG(TUSC_LOG_WARN, "pre-create hook chose an unusable upload ID \"%s\"", want);
    return TUSC_EINTERNAL;
  }
  snprintf(id, TUSC_ID_MAX + 1, "%s", want);
  return 1;
}

/* ChangeFileInfo.Storage.Path: handed to the store as asked for (store.h,
 * custom_data_path); the file store checks it and makes its parent directories in its
 * create job, off the loop. */
static int pre_create_storage_path(tus_request_t *st, tusc_upload_info_t *info) {
  if (tusc_upload_info_set_path(&info->data_path, st->hook_resp->change_storage_path) != 0)
    return TUSC_ENOMEM;
  info->custom_data_path = true;
  return 0;
}

/* Applies the hook's MetaData (replaces all) and Storage.Path, and marks the finish
 * hooks as pending. */
static int pre_create_apply(tus_request_t *st, tusc_upload_info_t *info) {
  if (st->hook_resp != NULL && st->hook_resp->change_storage_path != NULL) {
    int rc = pre_create_storage_path(st, info);
    if (rc < 0)
      return rc;
  }
  if (st->hook_resp != NULL && st->hook_resp->has_metadata) {
    tusc_metadata_dispose(&info->metadata);
    info->metadata = st->hook_resp->metadata;
    memset(&st->hook_resp->metadata, 0, sizeof(st->hook_resp->metadata));
    st->hook_resp->has_metadata = false;
  }
  if (tus_finish_hooks_on(st))
    info->finish_hooks = TUSC_FINISH_HOOKS_PENDING;
  return 0;
}

/* --- creating the upload in the store ---------------------------------------------- */

static void post_created(tus_request_t *st);

/* A final noted with each unfinished partial (concatenation-unfinished), one wait_add
 * after the other; failures are not fatal (HEAD/GET still assemble the final once its
 * partials are done), so they are only logged. */
static void note_next(tus_request_t *st) {
  const tusc_upload_info_t *info = st->info;
  if (st->work_result < 0 && st->note_i > 0)
    TUSC_LOG(TUSC_LOG_WARN, "concat %s: cannot note it with partial %s: %s", info->id,
             info->partial_uploads[st->note_i - 1], tusc_strerror(st->work_result));
  st->work_result = 0;
  while (st->note_i < info->partial_count) {
    size_t i = st->note_i++;
    const tusc_concat_parts_t *parts = st->parts;
    bool done = parts != NULL && i < parts->count && parts->rc[i] == 0 &&
                !parts->infos[i].size_is_deferred && parts->infos[i].offset == parts->infos[i].size;
    if (done)
      continue;
    int rc = tusc_store_wait_add(tus_store_of(st), st->w->loop, &st->sreq, info->partial_uploads[i],
                                 info->id, tus_store_step(st, note_next));
    if (rc == 0)
      return;
    if (rc == TUSC_ENOT_IMPLEMENTED)
      break;
    TUSC_LOG(TUSC_LOG_WARN, "concat %s: cannot note it with partial %s: %s", info->id,
             info->partial_uploads[i], tusc_strerror(rc));
  }
  if (st->parts != NULL)
    tusc_concat_parts_dispose(st->parts);
  tus_defer(st, post_created); /* from a store callback or post_stored: never inline */
}

static void on_partials_reread(tusc_concat_parts_t *parts, void *arg) {
  (void)parts;
  tus_request_t *st = arg;
  st->phase = PH_RUN;
  st->note_i = 0;
  st->work_result = 0;
  note_next(st);
}

static void post_stored(tus_request_t *st) {
  if (st->work_result < 0 || !st->info->is_final) {
    post_created(st);
    return;
  }
  /* Partials read again now that the final exists: one finished meanwhile needs no
   * note (the job post_created starts assembles it). */
  tusc_concat_parts_t *parts = tus_parts(st);
  if (parts == NULL) {
    st->note_i = st->info->partial_count; /* no notes: HEAD/GET assemble it later */
    note_next(st);
    return;
  }
  tusc_concat_parts_dispose(parts);
  st->phase = PH_WORK;
  int rc = tusc_concat_parts_load(parts, tus_store_of(st), st->w->loop,
                                  (const char *const *)st->info->partial_uploads,
                                  st->info->partial_count, on_partials_reread, st);
  if (rc != 0) {
    st->phase = PH_RUN;
    st->note_i = st->info->partial_count; /* no notes: HEAD/GET assemble it later */
    note_next(st);
  }
}

/* Creates st->info in the store (durable before the callback), then post_created. */
static void post_create(tus_request_t *st) {
  if (st->principal != NULL && st->info->owner == NULL &&
      (st->info->owner = strdup(st->principal)) == NULL) {
    tus_store_step(st, post_created);
    tus_store_started(st, TUSC_ENOMEM);
    return;
  }
  tus_store_started(st, tusc_store_create(tus_store_of(st), st->w->loop, &st->sreq, st->info,
                                          tus_store_step(st, post_stored)));
}

/* --- POST (creation) --------------------------------------------------------------- */

static void post_opened(tus_request_t *st) {
  int rc = st->work_result;
  st->work_result = 0;
  if (rc < 0) {
    tus_release_lock(st);
    tus_respond_error(st, rc == TUSC_ENOT_FOUND ? TUSC_EINTERNAL : rc);
    return;
  }
  st->upload = st->sreq.upload;
  /* post_created already logged UploadFinished for an empty upload. */
  tusc_upload_info_t *info = tusc_store_info(st->upload);
  st->was_complete = !info->size_is_deferred && info->offset == info->size;
  tus_chunk_begin(st);
}

static void post_locked(tus_request_t *st) {
  tus_store_started(st, tusc_store_open(tus_store_of(st), st->w->loop, &st->sreq, st->id,
                                        tus_store_step(st, post_opened)));
}

static void post_created(tus_request_t *st) {
  char size_s[24];
  if (st->work_result < 0) {
    tus_respond_error(st, st->work_result);
    return;
  }
  st->work_result = 0;
  if (st->info->is_final && !st->concat_job_ran) {
    /* Partials already complete: assemble now, locks taken on the loop. */
    st->concat_job_ran = true;
    tus_concat_request_job(st, true, post_created);
    return;
  }
  if (st->ietf.version > 0 && st->with_body)
    st->interim_pending = true; /* sent once the body can start: see tus_chunk_begin */
  else if (st->ietf.version > 0)
    tusc_ietf_created(st, st->info);
  tus_fmt_i64(size_s, st->info->size_is_deferred ? -1 : st->info->size);
  tusc_log_event(TUSC_LOG_INFO, "UploadCreated", "id", st->id, "size", size_s, "url", st->location,
                 "remote", st->client, st->principal != NULL ? "user" : NULL, st->principal, NULL);
  tusc_metrics_upload_created();
  int64_t expires = tus_expires_s(st, st->info, true);
  if (expires > 0 && st->w->tus->expire != NULL &&
      tusc_expire_track(st->w->tus->expire, st->id,
                        tusc_expire_now_ms() + tus_cfg_of(st)->expire_after_ms) < 0)
    TUSC_LOG(TUSC_LOG_WARN, "expiration: cannot index %s; it expires after a restart", st->id);
  (void)tus_hook_fire(st, TUSC_HOOK_POST_CREATE, st->info, false);
  bool empty = !st->info->size_is_deferred && st->info->size == 0;
  /* A final assembled during creation is finished at once as well (unless a partial's
   * background job completed it first: that job reports it and runs its hooks). */
  if (!empty && st->info->is_final)
    empty = st->concat_assembled;
  if (empty) {
    tusc_log_event(TUSC_LOG_INFO, "UploadFinished", "id", st->id, "size", size_s, "remote",
                   st->client, NULL);
    tusc_metrics_upload_finished();
  }
  tusc_upload_info_dispose(st->info);
  free(st->info);
  st->info = NULL;
  if (st->aborted) {
    tus_respond_error(st, st->abort_err);
    return;
  }
  /* An empty upload is finished at once: its finish hooks run on the chunk path. */
  if (st->with_body || (empty && tus_finish_hooks_on(st))) {
    tus_lock_upload(st, post_locked);
    return;
  }
  tusc_http_response_t resp;
  st->ietf.expires_s = expires;
  tus_response_init(st, &resp, 201);
  tusc_http_response_header(&resp, "Location", st->location);
  if (expires > 0) {
    char date[32];
    tusc_http_date(expires, date);
    tusc_http_response_header(&resp, "Upload-Expires", date);
  }
  tus_finish(st, &resp, NULL, 0);
}

/* Parses Upload-Concat into st->concat. A final upload takes its length from its
 * partials and cannot carry data: Upload-Length/Upload-Defer-Length → 400
 * ERR_INVALID_CONCAT, a body → 403 ERR_MODIFY_FINAL (as tusd). */
static int post_concat(tus_request_t *st) {
  tusc_http_request_t *req = st->req;
  const tusc_config_t *cfg = tus_cfg_of(st);
  size_t len = 0, ct_len = 0;
  const char *value = tus_header_value(req, "Upload-Concat", &len);
  if (tusc_http_header_count(req, "Upload-Concat") != 1)
    return TUSC_EINVALID_CONCAT;
  char collection[2048];
  tusc_location_input_t in;
  tus_location_input(st, &in);
  bool have_collection =
      tusc_location_collection(&in, cfg->base_path, collection, sizeof(collection)) == 0;
  int rc = tusc_concat_parse(value, len, have_collection ? tusc_concat_url_path(collection) : NULL,
                             cfg->base_path, &st->concat);
  if (rc < 0 || !st->concat.is_final)
    return rc;
  if (tusc_http_header(req, "Upload-Length") != NULL ||
      tusc_http_header(req, "Upload-Defer-Length") != NULL)
    return TUSC_EINVALID_CONCAT;
  const char *ct = tus_header_value(req, "Content-Type", &ct_len);
  if (tus_media_type_is(ct, ct_len, OCTET_STREAM) && (req->content_length > 0 || req->chunked))
    return TUSC_EMODIFY_FINAL;
  return 0;
}

/* A new final's partials were read: ownership, then the final's length from theirs. */
static void on_partials_read(tusc_concat_parts_t *parts, void *arg) {
  tus_request_t *st = arg;
  st->phase = PH_RUN;
  if (st->aborted) {
    tus_respond_error(st, st->abort_err);
    return;
  }
  if (!partials_owned(st))
    return;
  int rc = tusc_concat_prepare_final_parts(&st->concat, parts, tus_cfg_of(st)->max_size, st->info,
                                           partial_visible, st);
  if (rc < 0) {
    tus_respond_error(st, rc);
    return;
  }
  post_create(st);
}

void tus_do_post(tus_request_t *st) {
  tusc_http_request_t *req = st->req;
  const tusc_config_t *cfg = tus_cfg_of(st);
  size_t ul_len = 0, dl_len = 0, md_len = 0, ct_len = 0;
  int64_t size = -1;
  bool deferred = false;

  if (tusc_http_header(req, "Upload-Concat") != NULL) {
    int rc = cfg->disable_concatenation ? TUSC_ECONCATENATION_UNSUPPORTED : post_concat(st);
    if (rc < 0) {
      tus_respond_error(st, rc);
      return;
    }
  }
  const char *ul = tus_header_value(req, "Upload-Length", &ul_len);
  const char *dl = tus_header_value(req, "Upload-Defer-Length", &dl_len);
  if (ul != NULL && dl != NULL) {
    tus_respond_error(st, TUSC_EAMBIGUOUS_UPLOAD_LENGTH);
    return;
  }
  if (st->concat.is_final) {
    /* The length is the partials' sum (tusc_concat_prepare_final_parts). */
  } else if (dl != NULL) {
    if (tusc_http_header_count(req, "Upload-Defer-Length") != 1 || dl_len != 1 || dl[0] != '1') {
      tus_respond_error(st, TUSC_EINVALID_UPLOAD_LENGTH_DEFER);
      return;
    }
    deferred = true;
  } else if (ul == NULL || tusc_http_header_count(req, "Upload-Length") != 1 ||
             tusc_parse_size(ul, ul_len, &size) < 0) {
    tus_respond_error(st, TUSC_EINVALID_UPLOAD_LENGTH);
    return;
  }
  if (!deferred && cfg->max_size > 0 && size > cfg->max_size) {
    tus_respond_error(st, TUSC_EMAX_SIZE_EXCEEDED);
    return;
  }

  tusc_metadata_t md = {0};
  const char *mdv = tus_header_value(req, "Upload-Metadata", &md_len);
  if (mdv != NULL) {
    if (tusc_http_header_count(req, "Upload-Metadata") != 1) {
      tus_respond_error(st, TUSC_EINVALID_METADATA);
      return;
    }
    if (cfg->max_metadata_size > 0 && (int64_t)md_len > cfg->max_metadata_size) {
      tus_respond_error(st, TUSC_EMETADATA_TOO_LARGE);
      return;
    }
    int rc = tusc_metadata_parse(mdv, md_len, &md);
    if (rc < 0) {
      tus_respond_error(st, rc);
      return;
    }
  }

  const char *ct = tus_header_value(req, "Content-Type", &ct_len);
  st->with_body = tus_media_type_is(ct, ct_len, OCTET_STREAM);
  if (st->with_body && st->verify == NULL) {
    int vrc = tusc_verify_new(req, &st->verify);
    if (vrc < 0) {
      tusc_metadata_dispose(&md);
      tus_respond_error(st, vrc);
      return;
    }
  }
  if (st->with_body && req->content_length > 0) {
    int64_t cap = deferred ? cfg->max_size : size;
    if (cap >= 0 && !(deferred && cap == 0) && req->content_length > cap) {
      tusc_metadata_dispose(&md);
      tus_respond_error(st, TUSC_EUPLOAD_SIZE_EXCEEDED);
      return;
    }
  }

  if (!st->pre_create_done && tus_hook_on(st, TUSC_HOOK_PRE_CREATE)) {
    pre_create(st, &md, size, deferred);
    tusc_metadata_dispose(&md);
    return;
  }
  char id[TUSC_ID_MAX + 1];
  char collection[2048];
  tusc_location_input_t in;
  tus_location_input(st, &in);
  int rc = tusc_location_collection(&in, cfg->base_path, collection, sizeof(collection));
  if (rc == 0 && (rc = pre_create_id(st, id)) == 0)
    rc = tusc_id_generate(id);
  else if (rc == 1)
    rc = 0;
  if (rc < 0) {
    tusc_metadata_dispose(&md);
    tus_respond_error(st, rc == UV_ENOBUFS ? TUSC_EINVALID_HEADER : rc);
    return;
  }
  snprintf(st->id, sizeof(st->id), "%s", id);
  size_t loc_len = strlen(collection) + strlen(id) + 1;
  st->location = malloc(loc_len);
  st->info = malloc(sizeof(*st->info));
  if (st->location == NULL || st->info == NULL) {
    tusc_metadata_dispose(&md);
    tus_respond_error(st, TUSC_ENOMEM);
    return;
  }
  snprintf(st->location, loc_len, "%s%s", collection, id);
  tusc_upload_info_init(st->info);
  snprintf(st->info->id, sizeof(st->info->id), "%s", id);
  st->info->size = deferred ? -1 : size;
  st->info->size_is_deferred = deferred;
  st->info->offset = 0;
  st->info->metadata = md;
  if ((rc = pre_create_apply(st, st->info)) < 0) {
    tus_respond_error(st, rc);
    return;
  }
  st->info->created_at = (int64_t)time(NULL);
  if (cfg->expire_after_ms > 0) /* informative: the deadline follows activity (expire.h) */
    st->info->expires_at = st->info->created_at + (cfg->expire_after_ms + 999) / 1000;
  st->info->is_partial = st->concat.is_partial;
  st->op = OP_POST;
  if (st->concat.is_final) {
    st->phase = PH_WORK;
    tusc_concat_parts_t *parts = tus_parts(st);
    rc = parts == NULL ? TUSC_ENOMEM
                       : tusc_concat_parts_load(parts, tus_store_of(st), st->w->loop,
                                                (const char *const *)st->concat.ids,
                                                st->concat.count, on_partials_read, st);
    if (rc < 0) {
      st->phase = PH_RUN;
      tus_respond_error(st, rc);
    }
    return;
  }
  post_create(st);
}

static void ext_create_start(tus_request_t *st) {
  const tusc_config_t *cfg = tus_cfg_of(st);
  int rc = pre_create_apply(st, st->info);
  if (rc < 0) {
    tus_respond_error(st, rc);
    return;
  }
  if (cfg->expire_after_ms > 0) /* as tus_do_post: informative, the deadline follows activity */
    st->info->expires_at = st->info->created_at + (cfg->expire_after_ms + 999) / 1000;
  post_create(st);
}

static void ext_pre_create_done(tus_request_t *st) {
  if (!pre_create_accepted(st))
    return;
  char id[TUSC_ID_MAX + 1];
  int rc = pre_create_id(st, id);
  if (rc < 0) {
    tus_respond_error(st, rc);
    return;
  }
  if (rc == 1) {
    /* The location is the collection URL followed by the ID: swap the ID. */
    size_t base = strlen(st->location) - strlen(st->id);
    size_t id_len = strlen(id);
    char *location = malloc(base + id_len + 1);
    if (location == NULL) {
      tus_respond_error(st, TUSC_ENOMEM);
      return;
    }
    memcpy(location, st->location, base);
    memcpy(location + base, id, id_len + 1);
    free(st->location);
    st->location = location;
    snprintf(st->id, sizeof(st->id), "%s", id);
    snprintf(st->info->id, sizeof(st->info->id), "%s", id);
  }
  ext_create_start(st);
}

void tusc_tus_req_create(tusc_tus_req_t *st, tusc_upload_info_t *info, char *location,
                         bool with_body) {
  st->info = info;
  st->location = location;
  st->with_body = with_body;
  st->op = OP_POST;
  if (!st->pre_create_done && tus_hook_on(st, TUSC_HOOK_PRE_CREATE)) {
    /* As for tus: the hook sees the upload as it would be, without an ID yet. */
    tusc_upload_info_t pre;
    tusc_upload_info_init(&pre);
    pre.size = info->size;
    pre.size_is_deferred = info->size_is_deferred;
    pre.metadata = info->metadata; /* borrowed: serialised during the call */
    pre.created_at = info->created_at;
    tus_hook_block(st, TUSC_HOOK_PRE_CREATE, &pre, ext_pre_create_done);
    return;
  }
  ext_create_start(st);
}

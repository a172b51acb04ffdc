/*
 * read — HEAD (upload state) and GET (downloads, with Range and If-Range) of the tus
 * handler. A final whose partials are complete is assembled (or its assembly waited
 * for) before a GET serves it; a HEAD queues that assembly in the background. A download
 * streams DOWNLOAD_CHUNK bytes at a time (PH_STREAM), the next store read after the
 * previous write completed. On the request's loop (the store's requests call back
 * here); each request is answered exactly once.
 */
#include "tus/handler_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "metrics/metrics.h"
#include "tus/download.h"
#include "tus/headers.h"

#define DOWNLOAD_CHUNK (64 * 1024)

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

static void on_download_read(tusc_store_req_t *sreq, int status) {
  tus_request_t *st = sreq->data;
  st->read_pending = false;
  if (st->aborted) {
    tus_download_end(st);
    return;
  }
  if (status < 0 || sreq->nread == 0) {
    /* The file shrank or failed under us. The promised length cannot be kept: end the
     * response; the http layer closes a connection whose response came up short. */
    TUSC_LOG(TUSC_LOG_ERROR, "download %s: read at %lld failed: %s", st->id, (long long)st->pos,
             status < 0 ? tusc_strerror(status) : "unexpected end of file");
    tus_download_end(st);
    return;
  }
  st->pending = sreq->nread;
  st->write_pending = true;
  tusc_http_respond_write(st->req, st->buf, sreq->nread, on_download_written, st);
}

static void download_pump(tus_request_t *st) {
  int64_t want = st->end - st->pos + 1;
  size_t n = want > DOWNLOAD_CHUNK ? DOWNLOAD_CHUNK : (size_t)want;
  st->sreq.data = st;
  int rc = tusc_store_read(st->upload, &st->sreq, st->pos, st->buf, n, on_download_read);
  if (rc < 0) {
    TUSC_LOG(TUSC_LOG_ERROR, "download %s: read at %lld failed: %s", st->id, (long long)st->pos,
             tusc_strerror(rc));
    tus_download_end(st);
    return;
  }
  st->read_pending = true;
}

static void get_serve(tus_request_t *st);

/* After the probe of an unfinished upload: a store that cannot read it says so here,
 * before any header is sent. */
static void get_probed(tus_request_t *st) {
  int rc = st->work_result;
  st->work_result = 0;
  if (rc < 0) {
    tus_respond_store_error(st, rc);
    return;
  }
  get_serve(st);
}

static void get_opened(tus_request_t *st) {
  int rc = st->work_result;
  st->work_result = 0;
  if (rc < 0) {
    tus_respond_store_error(st, rc);
    return;
  }
  st->upload = st->sreq.upload;
  tusc_upload_info_t *info = tusc_store_info(st->upload);
  if (tus_expired(st, info)) {
    tus_respond_error(st, TUSC_EGONE);
    return;
  }
  /* Some stores cannot serve an unfinished upload's bytes (the S3 store: S3 has no
   * reads of a multipart upload's parts); a read of no bytes asks, so that the answer is
   * an error status rather than a body cut short. */
  if (info->offset > 0 && (info->size_is_deferred || info->offset != info->size)) {
    tus_store_started(
        st, tusc_store_read(st->upload, &st->sreq, 0, NULL, 0, tus_store_step(st, get_probed)));
    return;
  }
  get_serve(st);
}

static void get_serve(tus_request_t *st) {
  tusc_upload_info_t *info = tusc_store_info(st->upload);
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

  /* The data's last change, as the store saw it when opening (seconds, like the
   * Last-Modified it becomes). */
  int64_t mtime = info->modified_ms > 0 ? info->modified_ms / 1000 : info->created_at;

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

static void get_open(tus_request_t *st) {
  tus_store_started(st, tusc_store_open(tus_store_of(st), st->w->loop, &st->sreq, st->id,
                                        tus_store_step(st, get_opened)));
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

/* The partials read for the checks, or none (an empty set: no final, or complete). */
static const tusc_concat_parts_t *parts_of(tus_request_t *st) {
  static const tusc_concat_parts_t none;
  return st->parts != NULL ? st->parts : &none;
}

static void parts_drop(tus_request_t *st) {
  if (st->parts != NULL)
    tusc_concat_parts_dispose(st->parts);
}

/* Reads the looked-up final's partials (st->parts) when the checks need them, then
 * `next`. */
static void on_parts(tusc_concat_parts_t *parts, void *arg) {
  (void)parts;
  tus_request_t *st = arg;
  st->phase = PH_RUN;
  st->after_work(st);
}

static void load_parts(tus_request_t *st, step_fn next) {
  const tusc_upload_info_t *info = st->looked;
  if (st->work_result < 0 || !tusc_concat_needs_parts(info)) {
    next(st);
    return;
  }
  st->after_work = next;
  st->phase = PH_WORK;
  tusc_concat_parts_t *parts = tus_parts(st);
  int rc = parts == NULL ? TUSC_ENOMEM
                         : tusc_concat_parts_load(parts, tus_store_of(st), st->w->loop,
                                                  (const char *const *)info->partial_uploads,
                                                  info->partial_count, on_parts, st);
  if (rc != 0) {
    st->phase = PH_RUN;
    tus_respond_error(st, rc);
  }
}

static void get_checked(tus_request_t *st) {
  tusc_upload_info_t *info = st->looked;
  int info_rc = st->work_result;
  st->work_result = 0;
  if (info_rc == 0 && !tus_owner_ok(st, info)) {
    tus_respond_foreign(st);
    return;
  }
  bool assemble = info_rc == 0 && tusc_concat_status_parts(info, parts_of(st));
  bool broken = info_rc == 0 && !assemble && tusc_concat_partial_missing_parts(info, parts_of(st));
  bool too_big = info_rc == 0 && tusc_concat_too_big(info, tus_cfg_of(st)->max_size) &&
                 info->offset < info->size;
  parts_drop(st);
  /* Should this GET complete the final, its hooks see the PATCH that completed the last
   * partial if that PATCH's job still runs (see tus_concat_queue_bg). */
  if (assemble && tus_finish_hooks_on(st))
    st->concat_req = tus_trigger_req_for(st->w->tus, info);
  tus_looked_free(st);
  if (broken || too_big) {
    tus_respond_error(st, broken ? TUSC_EPARTIAL_GONE : TUSC_EMAX_SIZE_EXCEEDED);
    return;
  }
  if (assemble)
    tus_concat_request_job(st, false, get_assembled);
  else
    get_open(st);
}

static void get_looked(tus_request_t *st) {
  load_parts(st, get_checked);
}

/* A final upload whose partials are all complete is assembled (or its running assembly
 * waited for) before it is served, so GET never returns half a concatenation. One whose
 * partials add up to more than -max-size is never assembled: 413. */
void tus_do_get(tus_request_t *st) {
  tus_read_info(st, get_looked);
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

static void head_checked(tus_request_t *st) {
  tusc_upload_info_t *info = st->looked;
  int rc = st->work_result;
  st->work_result = 0;
  if (rc < 0) {
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
  if (!tus_owner_ok(st, info)) {
    tus_respond_foreign(st);
    return;
  }
  if (tus_expired(st, info)) {
    tusc_http_response_t gone;
    tus_response_init(st, &gone, tusc_error_status(TUSC_EGONE));
    tusc_http_response_header(&gone, "Cache-Control", "no-store");
    tus_finish(st, &gone, NULL, 0);
    return;
  }
  /* Also fills in a final's length once its partials' lengths are all known. */
  bool assemble = info->is_final && tusc_concat_status_parts(info, parts_of(st));
  bool broken =
      !assemble && info->is_final && tusc_concat_partial_missing_parts(info, parts_of(st));
  parts_drop(st);
  bool too_big = tusc_concat_too_big(info, tus_cfg_of(st)->max_size) && info->offset < info->size;
  if (broken || too_big) {
    /* A partial it waits for is gone: it can never complete (docs/protocol-support.md);
     * or its partials add up to more than -max-size: it is never assembled. */
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
  tus_fmt_i64(num, info->offset);
  tusc_http_response_header(&resp, "Upload-Offset", num);
  if (info->size_is_deferred && info->is_final) {
    /* Known once the partials' lengths are; not the client's to declare. */
  } else if (info->size_is_deferred) {
    tusc_http_response_header(&resp, "Upload-Defer-Length", "1");
  } else {
    tus_fmt_i64(num, info->size);
    tusc_http_response_header(&resp, "Upload-Length", num);
  }
  if (info->metadata.count > 0) {
    char *md = tusc_metadata_format(&info->metadata);
    if (md != NULL) {
      tusc_http_response_header(&resp, "Upload-Metadata", md);
      free(md);
    }
  }
  if (info->is_partial)
    tusc_http_response_header(&resp, "Upload-Concat", "partial");
  if (info->is_final)
    head_concat_final(st, &resp, info);
  if (assemble) {
    /* Partials done but not assembled (e.g. the note was lost in a crash): assemble in
     * the background; this HEAD shows the offset so far. */
    tus_concat_queue_bg(st, false, info);
  }
  int64_t expires = tus_expires_s(st, info, false);
  if (expires > 0) {
    char date[32];
    tusc_http_date(expires, date);
    tusc_http_response_header(&resp, "Upload-Expires", date);
  }
  tus_finish(st, &resp, NULL, 0);
}

static void head_looked(tus_request_t *st) {
  load_parts(st, head_checked);
}

void tus_do_head(tus_request_t *st) {
  tus_read_info(st, head_looked);
}

/*
 * ietf_req — the IETF draft's request glue inside the tus handler module (ietf_req.h):
 * detection, routing of draft requests to the shared creation / append / termination
 * flows, the 104 interim response and the draft's response headers. Everything here
 * runs on the request's loop and reaches the handler through reqapi.h; the draft's pure
 * parsing and formatting stay in ietf.c, which knows nothing of the handler.
 */
#include "tus/ietf_req.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "metrics/metrics.h"
#include "tus/headers.h"
#include "tus/sfv.h"
#include "tus/verify.h"

/* --- glue: responses ----------------------------------------------------------------- */

static const char *header_value(const tusc_http_request_t *req, const char *name, size_t *len) {
  const tusc_http_header_t *h = tusc_http_header(req, name);
  if (h == NULL)
    return NULL;
  *len = h->value_len;
  return h->value;
}

/* A header that must appear at most once; NULL when absent. Sets *dup when repeated. */

static const char *single_header(const tusc_http_request_t *req, const char *name, size_t *len,
                                 bool *dup) {
  const char *v = header_value(req, name, len);
  if (v != NULL && tusc_http_header_count(req, name) > 1)
    *dup = true;
  return v;
}

/* Upload-Limit. Its max-age (draft -06 on) is the upload resource's remaining lifetime
 * (draft -12, "Limits"): the seconds to the upload's expiry on answers that know the
 * upload (ietf->expires_s), the configured -expire-after on OPTIONS (the lifetime an
 * upload created now gets), and absent where the upload never expires (finished, or
 * expiration off) or is not known (most errors). Seconds are rounded down, so that the
 * end it implies is never later than the real one. */
static void limit_header(tusc_tus_req_t *st, tusc_http_response_t *resp) {
  const tusc_config_t *cfg = tusc_tus_req_config(st);
  const tusc_ietf_req_t *ietf = tusc_tus_req_ietf(st);
  int64_t max_age = -1;
  if (ietf->version >= TUSC_IETF_VERSION_MAX_AGE && cfg->expire_after_ms > 0) {
    if (tusc_tus_req_http(st)->method == TUSC_HTTP_OPTIONS) {
      max_age = cfg->expire_after_ms / 1000;
    } else if (ietf->expires_s > 0) {
      max_age = ietf->expires_s - (int64_t)time(NULL);
      if (max_age < 0)
        max_age = 0;
    }
  }
  char limit[96];
  if (tusc_ietf_format_limit(cfg->max_size, max_age, limit, sizeof(limit)) > 0)
    tusc_http_response_header(resp, "Upload-Limit", limit);
}

static bool carries_content(tusc_tus_req_t *st);

void tusc_ietf_response_headers(tusc_tus_req_t *st, tusc_http_response_t *resp, int status) {
  tusc_ietf_req_t *ietf = tusc_tus_req_ietf(st);
  if (ietf->version > 0)
    tusc_http_response_headerf(resp, "Upload-Draft-Interop-Version", "%d", ietf->version);
  limit_header(st, resp);
  if (ietf->version <= 0)
    return;
  if (status >= 200 && status < 300 && ietf->have_state) {
    if (ietf->emit_offset)
      tusc_http_response_headerf(resp, "Upload-Offset", "%lld", (long long)ietf->offset);
    tusc_http_response_header(
        resp, tusc_ietf_complete_name(ietf->version),
        tusc_ietf_complete_value(ietf->version, tusc_ietf_state_complete(ietf->offset, ietf->size)));
    if (ietf->size >= 0)
      tusc_http_response_headerf(resp, "Upload-Length", "%lld", (long long)ietf->size);
  } else if (status == 409 && ietf->have_conflict) {
    /* The draft's 409 tells the client where to resume: the state met under the lock
     * (tusc_ietf_note_conflict), the offset a retry meets. From -12 on its
     * Upload-Complete is always ?0: the answer is the protocol's, not the resource's. */
    tusc_http_response_headerf(resp, "Upload-Offset", "%lld", (long long)ietf->conflict_offset);
    bool complete = ietf->version < TUSC_IETF_VERSION_PROBLEMS && ietf->conflict_complete;
    tusc_http_response_header(resp, tusc_ietf_complete_name(ietf->version),
                              tusc_ietf_complete_value(ietf->version, complete));
  } else if (status >= 400 && ietf->version >= TUSC_IETF_VERSION_PROBLEMS && carries_content(st)) {
    /* -12: an error of the upload protocol itself (not the result of processing the
     * representation) says Upload-Complete: ?0, so that the client follows the draft's
     * retry guidance (409: resume at Upload-Offset; 413: respect Upload-Limit; 429 and
     * 5xx: retrieve the offset and resume). */
    tusc_http_response_header(resp, "Upload-Complete", ietf->repr_failed ? "?1" : "?0");
  }
}

/* Requests that create or append (the ones a client may resume). */
static bool carries_content(tusc_tus_req_t *st) {
  enum tusc_http_method m = tusc_tus_req_http(st)->method;
  return m == TUSC_HTTP_POST || m == TUSC_HTTP_PUT || m == TUSC_HTTP_PATCH;
}

size_t tusc_ietf_problem_body(tusc_tus_req_t *st, int err, char *out, size_t cap) {
  tusc_ietf_req_t *ietf = tusc_tus_req_ietf(st);
  int n = -1;
  if (ietf->version < TUSC_IETF_VERSION_PROBLEMS || ietf->plain_error)
    return 0;
  if (err == TUSC_EMISMATCHED_OFFSET)
    n = tusc_ietf_format_problem(TUSC_IETF_PROBLEM_MISMATCHING_OFFSET,
                                 ietf->have_conflict ? ietf->conflict_offset : -1,
                                 ietf->append_offset, out, cap);
  else if (err == TUSC_EINVALID_UPLOAD_LENGTH)
    n = tusc_ietf_format_problem(TUSC_IETF_PROBLEM_INCONSISTENT_LENGTH, -1, -1, out, cap);
  return n > 0 ? (size_t)n : 0;
}

void tusc_ietf_options(tusc_tus_req_t *st, tusc_http_response_t *resp) {
  if (tusc_tus_req_ietf(st)->version >= 6)
    tusc_http_response_header(resp, "Accept-Patch", TUSC_IETF_PARTIAL_UPLOAD);
}

/* An error answer with the draft's headers; `message` replaces the generic text. */

static void respond_error(tusc_tus_req_t *st, int err, const char *message) {
  if (message == NULL) {
    tusc_tus_req_respond_error(st, err, NULL);
    return;
  }
  char body[256];
  tusc_http_response_t resp;
  tusc_metrics_error(tusc_error_status(err), err);
  tusc_tus_req_response_init(st, &resp, tusc_error_status(err));
  size_t len = tusc_ietf_problem_body(st, err, body, sizeof(body));
  if (len > 0) {
    tusc_http_response_header(&resp, "Content-Type", "application/problem+json");
    tusc_tus_req_finish(st, &resp, body, len);
    return;
  }
  tusc_http_response_header(&resp, "Content-Type", "text/plain; charset=utf-8");
  int n = snprintf(body, sizeof(body), "%s: %s\n", tusc_error_code(err), message);
  tusc_tus_req_finish(st, &resp, body, n > 0 ? (size_t)n : 0);
}

void tusc_ietf_created(tusc_tus_req_t *st, const tusc_upload_info_t *info) {
  tusc_ietf_req_t *ietf = tusc_tus_req_ietf(st);
  tusc_ietf_note_state(ietf, info);
  ietf->emit_offset = true;
  ietf->expires_s = tusc_tus_req_expires_s(st, info, true);
  /* 104 Upload Resumption Supported: from here on a client that loses the connection
   * mid-body knows where to resume. */
  tusc_http_response_t interim;
  tusc_http_response_init(&interim, 104);
  tusc_http_response_header(&interim, "Location", tusc_tus_req_location(st));
  tusc_http_response_headerf(&interim, "Upload-Draft-Interop-Version", "%d", ietf->version);
  limit_header(st, &interim);
  tusc_http_send_interim(tusc_tus_req_http(st), &interim);
}

void tusc_ietf_progress(tusc_tus_req_t *st, int64_t offset) {
  tusc_http_response_t interim;
  tusc_http_response_init(&interim, 104);
  tusc_http_response_headerf(&interim, "Upload-Draft-Interop-Version", "%d",
                             tusc_tus_req_ietf(st)->version);
  tusc_http_response_headerf(&interim, "Upload-Offset", "%lld", (long long)offset);
  tusc_http_send_interim(tusc_tus_req_http(st), &interim);
}

/* --- glue: detection and routing ----------------------------------------------------- */

void tusc_ietf_detect(tusc_tus_req_t *st) {
  const tusc_config_t *cfg = tusc_tus_req_config(st);
  tusc_http_request_t *req = tusc_tus_req_http(st);
  tusc_ietf_req_t *ietf = tusc_tus_req_ietf(st);
  size_t len = 0;
  if (!cfg->enable_experimental_protocol)
    return;
  const char *v = header_value(req, "Upload-Draft-Interop-Version", &len);
  if (v == NULL)
    return;
  int version = 0;
  if (tusc_http_header_count(req, "Upload-Draft-Interop-Version") != 1 ||
      tusc_ietf_parse_version(v, len, &version) < 0)
    version = -1;
  ietf->version = version;
}

/* Body length of the request: Content-Length, 0 without a body, -1 when chunked. */

static int64_t body_length(const tusc_http_request_t *req) {
  if (req->chunked)
    return -1;
  return req->content_length > 0 ? req->content_length : 0;
}

/* Reads the completeness header of the request; answers 400 itself on failure. */

static bool read_complete(tusc_tus_req_t *st, bool *complete) {
  tusc_http_request_t *req = tusc_tus_req_http(st);
  int version = tusc_tus_req_ietf(st)->version;
  const char *name = tusc_ietf_complete_name(version);
  size_t len = 0;
  bool dup = false;
  const char *v = single_header(req, name, &len, &dup);
  if (dup || tusc_ietf_parse_complete(version, v, len, complete) < 0) {
    char msg[96];
    snprintf(msg, sizeof(msg), "missing or invalid %s header (a Structured Field boolean)", name);
    respond_error(st, TUSC_EINVALID_HEADER, msg);
    return false;
  }
  return true;
}

/* Upload-Length (optional) together with the completeness of a request at `offset`. */

static bool read_length(tusc_tus_req_t *st, bool complete, int64_t offset, int64_t *length) {
  tusc_http_request_t *req = tusc_tus_req_http(st);
  size_t len = 0;
  bool dup = false;
  const char *ul = single_header(req, "Upload-Length", &len, &dup);
  int64_t declared = 0;
  /* A malformed or repeated header is not an inconsistent length (no problem type). */
  tusc_tus_req_ietf(st)->plain_error =
      dup || (ul != NULL && (tusc_sfv_parse_integer(ul, len, &declared) < 0 || declared < 0));
  if (dup || tusc_ietf_request_length(complete, ul, len, body_length(req), offset, length) < 0) {
    respond_error(st, TUSC_EINVALID_UPLOAD_LENGTH,
                  "invalid Upload-Length, or it disagrees with the length of a completing "
                  "request");
    return false;
  }
  return true;
}

/* Content-Digest (draft -04 on, "Content Digests"): the content of a creation or an
 * append is verified against it and not appended when it does not match. Answers 400
 * itself on failure (a malformed digest, or a request without content whose digest is
 * not that of no bytes). */

static bool read_digest(tusc_tus_req_t *st) {
  if (tusc_tus_req_ietf(st)->version < TUSC_IETF_VERSION_DIGESTS)
    return true;
  int rc = tusc_tus_req_content_digest(st);
  if (rc < 0) {
    respond_error(st, rc, NULL);
    return false;
  }
  return true;
}

/* Repr-Digest on a creation (draft -04 on, "Representation Digests"): the digest of the
 * whole representation, checked once the upload is complete (patch.c). Writes the
 * member tusc checks into out (empty when none) and answers 400 itself on failure. An
 * upload complete at creation (length 0) is checked at once. */

static bool read_repr_digest(tusc_tus_req_t *st, int64_t length, char *out, size_t cap) {
  out[0] = '\0';
  if (tusc_tus_req_ietf(st)->version < TUSC_IETF_VERSION_DIGESTS)
    return true;
  tusc_checksum_expect_t expect;
  bool found = false;
  if (tusc_verify_digest_field(tusc_tus_req_http(st), "Repr-Digest", &expect, &found) < 0 ||
      (found && tusc_checksum_format_digest_field(&expect, out, cap) < 0)) {
    respond_error(st, TUSC_EINVALID_REPR_DIGEST, NULL);
    return false;
  }
  if (found && length == 0) {
    tusc_checksum_t *c = NULL;
    int rc = tusc_checksum_new(expect.algo, &c);
    if (rc == 0)
      rc = tusc_checksum_verify(c, &expect);
    tusc_checksum_free(c);
    if (rc < 0) {
      respond_error(st, rc == TUSC_ECHECKSUM_MISMATCH ? TUSC_EREPR_DIGEST_MISMATCH : rc,
                    rc == TUSC_ECHECKSUM_MISMATCH
                        ? "Repr-Digest does not match the empty representation"
                        : NULL);
      return false;
    }
    out[0] = '\0'; /* checked: nothing left to check at completion */
  }
  return true;
}

static int add_metadata(tusc_tus_req_t *st, tusc_metadata_t *md) {
  tusc_http_request_t *req = tusc_tus_req_http(st);
  size_t len = 0;
  int rc = 0;
  const char *ct = header_value(req, "Content-Type", &len);
  if (ct != NULL && len > 0)
    rc = tusc_metadata_set(md, "filetype", ct, len);
  const char *cd = header_value(req, "Content-Disposition", &len);
  if (rc == 0 && cd != NULL) {
    char name[1024];
    long n = tusc_ietf_disposition_filename(cd, len, name, sizeof(name));
    if (n > 0)
      rc = tusc_metadata_set(md, "filename", name, (size_t)n);
  }
  return rc;
}

static void do_create(tusc_tus_req_t *st) {
  tusc_http_request_t *req = tusc_tus_req_http(st);
  const tusc_config_t *cfg = tusc_tus_req_config(st);
  tusc_ietf_req_t *ietf = tusc_tus_req_ietf(st);
  bool complete = false;
  int64_t length = -1;
  if (!read_complete(st, &complete) || !read_length(st, complete, 0, &length))
    return;
  tusc_tus_req_ietf(st)->plain_error = false;
  if (!read_digest(st))
    return;
  char repr[192];
  if (!read_repr_digest(st, length, repr, sizeof(repr)))
    return;
  int64_t body = body_length(req);
  if (cfg->max_size > 0 && length > cfg->max_size) {
    respond_error(st, TUSC_EMAX_SIZE_EXCEEDED, NULL);
    return;
  }
  if (body > 0 && ((length >= 0 && body > length) || (cfg->max_size > 0 && body > cfg->max_size))) {
    respond_error(st, TUSC_EUPLOAD_SIZE_EXCEEDED, NULL);
    return;
  }

  char id[33];
  char collection[2048];
  tusc_location_input_t in;
  tusc_tus_req_location_input(st, &in);
  int rc = tusc_location_collection(&in, cfg->base_path, collection, sizeof(collection));
  if (rc == 0)
    rc = tusc_id_generate(id);
  if (rc == 0)
    rc = tusc_tus_req_set_id(st, id);
  if (rc < 0) {
    respond_error(st, rc == UV_ENOBUFS ? TUSC_EINVALID_HEADER : rc, NULL);
    return;
  }
  size_t loc_len = strlen(collection) + strlen(id) + 1;
  char *location = malloc(loc_len);
  tusc_upload_info_t *info = malloc(sizeof(*info));
  if (location == NULL || info == NULL) {
    free(location);
    free(info);
    respond_error(st, TUSC_ENOMEM, NULL);
    return;
  }
  snprintf(location, loc_len, "%s%s", collection, id);
  tusc_upload_info_init(info);
  snprintf(info->id, sizeof(info->id), "%s", id);
  info->size = length;
  info->size_is_deferred = length < 0;
  info->offset = 0;
  info->created_at = (int64_t)time(NULL);
  rc = add_metadata(st, &info->metadata);
  if (rc == 0 && repr[0] != '\0' && (info->repr_digest = strdup(repr)) == NULL)
    rc = TUSC_ENOMEM;
  if (rc < 0) {
    tusc_upload_info_dispose(info);
    free(info);
    free(location);
    respond_error(st, rc, NULL);
    return;
  }
  ietf->complete = complete;
  tusc_tus_req_create(st, info, location, body != 0);
}

static void head_found(tusc_tus_req_t *st, const tusc_upload_info_t *info) {
  tusc_ietf_req_t *ietf = tusc_tus_req_ietf(st);
  tusc_http_response_t resp;
  /* Offset retrieval reports the stored state, so it needs no per-request note. */
  ietf->have_state = false;
  ietf->expires_s = tusc_tus_req_expires_s(st, info, false);
  tusc_tus_req_response_init(st, &resp, 204);
  tusc_http_response_header(&resp, "Cache-Control", "no-store");
  tusc_http_response_headerf(&resp, "Upload-Offset", "%lld", (long long)info->offset);
  bool complete = !info->size_is_deferred && tusc_ietf_state_complete(info->offset, info->size);
  tusc_http_response_header(&resp, tusc_ietf_complete_name(ietf->version),
                            tusc_ietf_complete_value(ietf->version, complete));
  if (!info->size_is_deferred)
    tusc_http_response_headerf(&resp, "Upload-Length", "%lld", (long long)info->size);
  tusc_tus_req_finish(st, &resp, NULL, 0);
}

static void do_head(tusc_tus_req_t *st) {
  tusc_tus_req_lookup(st, head_found);
}

static void append_found(tusc_tus_req_t *st, const tusc_upload_info_t *info) {
  tusc_http_request_t *req = tusc_tus_req_http(st);
  tusc_ietf_req_t *ietf = tusc_tus_req_ietf(st);
  bool finished = !info->size_is_deferred && tusc_ietf_state_complete(info->offset, info->size);
  if (finished && body_length(req) != 0 && ietf->append_offset == info->offset) {
    respond_error(st, TUSC_EINVALID_UPLOAD_LENGTH, "upload is already complete");
    return;
  }
  ietf->complete = ietf->append_complete;
  tusc_tus_req_append(st, ietf->append_offset, ietf->append_length);
}

static void do_append(tusc_tus_req_t *st) {
  tusc_http_request_t *req = tusc_tus_req_http(st);
  tusc_ietf_req_t *ietf = tusc_tus_req_ietf(st);
  size_t len = 0;
  bool dup = false;
  int64_t offset = -1;

  const char *off = single_header(req, "Upload-Offset", &len, &dup);
  if (off == NULL || dup || tusc_sfv_parse_integer(off, len, &offset) < 0 || offset < 0) {
    respond_error(st, TUSC_EINVALID_OFFSET,
                  "missing or invalid Upload-Offset header (a non-negative Structured Field "
                  "integer)");
    return;
  }
  bool complete = false;
  if (!read_complete(st, &complete))
    return;
  if (ietf->version >= 6) {
    const char *ct = header_value(req, "Content-Type", &len);
    const char *semi = ct != NULL ? memchr(ct, ';', len) : NULL;
    size_t n = semi != NULL ? (size_t)(semi - ct) : len;
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
      n--;
    if (ct == NULL || n != strlen(TUSC_IETF_PARTIAL_UPLOAD) ||
        strncasecmp(ct, TUSC_IETF_PARTIAL_UPLOAD, n) != 0) {
      respond_error(st, TUSC_EINVALID_CONTENT_TYPE,
                    "appending requires Content-Type: " TUSC_IETF_PARTIAL_UPLOAD);
      return;
    }
  }
  int64_t length = -1;
  if (!read_length(st, complete, offset, &length))
    return;
  ietf->plain_error = false;
  if (!read_digest(st))
    return;

  /* Appending to a finished upload is refused before anything is read (the shared flow
   * would answer 413 for the bytes that do not fit). */
  ietf->append_offset = offset;
  ietf->append_length = length;
  ietf->append_complete = complete;
  tusc_tus_req_lookup(st, append_found);
}

bool tusc_ietf_handle(tusc_tus_req_t *st, enum tusc_http_method method, bool is_collection,
                      const char *raw, size_t raw_len) {
  const tusc_config_t *cfg = tusc_tus_req_config(st);
  tusc_ietf_req_t *ietf = tusc_tus_req_ietf(st);
  if (ietf->version < 0) {
    char msg[128];
    snprintf(msg, sizeof(msg),
             "missing, invalid or unsupported Upload-Draft-Interop-Version header (supported: "
             "%d to %d)",
             TUSC_IETF_VERSION_MIN, TUSC_IETF_VERSION_MAX);
    respond_error(st, TUSC_EINVALID_HEADER, msg);
    return true;
  }
  if (is_collection) {
    /* The newest drafts let any request with content start an upload. */
    bool creates = method == TUSC_HTTP_POST ||
                   (ietf->version >= 7 && (method == TUSC_HTTP_PUT || method == TUSC_HTTP_PATCH));
    if (!creates) {
      tusc_tus_req_respond_error(st, TUSC_EMETHOD_NOT_ALLOWED,
                                 ietf->version >= 7 ? "OPTIONS, POST, PUT, PATCH"
                                                    : "OPTIONS, POST");
      return true;
    }
    do_create(st);
    return true;
  }
  if (method == TUSC_HTTP_GET && !cfg->disable_download)
    return false;
  char allow[64];
  snprintf(allow, sizeof(allow), "OPTIONS, HEAD, PATCH%s%s", cfg->disable_download ? "" : ", GET",
           cfg->disable_termination ? "" : ", DELETE");
  bool known = method == TUSC_HTTP_HEAD || method == TUSC_HTTP_PATCH ||
               (method == TUSC_HTTP_DELETE && !cfg->disable_termination);
  if (!known) {
    tusc_tus_req_respond_error(st, TUSC_EMETHOD_NOT_ALLOWED, allow);
    return true;
  }
  char id[TUSC_ID_MAX + 1];
  long n = tusc_url_decode(raw, raw_len, id, sizeof(id));
  if (n <= 0 || !tusc_id_valid(id, (size_t)n) || strlen(id) != (size_t)n ||
      tusc_tus_req_set_id(st, id) < 0) {
    if (method == TUSC_HTTP_HEAD) {
      tusc_http_response_t resp;
      tusc_tus_req_response_init(st, &resp, 404);
      tusc_http_response_header(&resp, "Cache-Control", "no-store");
      tusc_tus_req_finish(st, &resp, NULL, 0);
      return true;
    }
    tusc_tus_req_respond_error(st, TUSC_ENOT_FOUND, NULL);
    return true;
  }
  switch (method) {
  case TUSC_HTTP_HEAD:
    do_head(st);
    break;
  case TUSC_HTTP_PATCH:
    do_append(st);
    break;
  default:
    tusc_tus_req_terminate(st);
    break;
  }
  return true;
}

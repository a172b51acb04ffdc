/*
 * ietf — the IETF resumable-upload draft on top of the tus handler's machinery (see
 * ietf.h). Version differences handled here:
 *
 *   3 (-01)      Upload-Incomplete (inverted) instead of Upload-Complete
 *   4 (-02)      Upload-Complete
 *   5 (-03)      as 4
 *   6 (-04,-05)  appends must be application/partial-upload; Upload-Limit; Upload-Length
 *   7 (-06..-08) as 6
 *   8 (-09..)    creation by any method with content (POST, PUT, PATCH); Accept-Patch
 *
 * Everything else is shared: an upload created here is an ordinary tus upload (a tus
 * client can HEAD it and the other way round).
 */
#include "tus/ietf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/error.h"
#include "metrics/metrics.h"
#include "tus/headers.h"
#include "tus/reqapi.h"
#include "tus/sfv.h"

/* --- pure helpers ------------------------------------------------------------------ */

int tusc_ietf_parse_version(const char *s, size_t len, int *out) {
  int64_t v = 0;
  if (tusc_sfv_parse_integer(s, len, &v) < 0 || v < TUSC_IETF_VERSION_MIN ||
      v > TUSC_IETF_VERSION_MAX)
    return TUSC_EINVALID_HEADER;
  *out = (int)v;
  return 0;
}

const char *tusc_ietf_complete_name(int version) {
  return version == 3 ? "Upload-Incomplete" : "Upload-Complete";
}

const char *tusc_ietf_complete_value(int version, bool complete) {
  if (version == 3)
    complete = !complete;
  return complete ? "?1" : "?0";
}

int tusc_ietf_parse_complete(int version, const char *s, size_t len, bool *complete) {
  bool v = false;
  /* Draft -01 names the exception (Upload-Incomplete: ?1): without it the request
   * carries the rest of the representation. Later drafts require Upload-Complete. */
  if (s == NULL && version == 3) {
    *complete = true;
    return 0;
  }
  if (s == NULL || tusc_sfv_parse_boolean(s, len, &v) < 0)
    return TUSC_EINVALID_HEADER;
  *complete = version == 3 ? !v : v;
  return 0;
}

int tusc_ietf_request_length(bool complete, const char *upload_length, size_t ul_len,
                             int64_t body_length, int64_t offset, int64_t *out) {
  int64_t declared = -1, implied = -1;
  if (upload_length != NULL &&
      (tusc_sfv_parse_integer(upload_length, ul_len, &declared) < 0 || declared < 0))
    return TUSC_EINVALID_UPLOAD_LENGTH;
  if (complete && body_length >= 0) {
    if (offset < 0 || body_length > INT64_MAX - offset)
      return TUSC_EINVALID_UPLOAD_LENGTH;
    implied = offset + body_length;
  }
  if (declared >= 0 && implied >= 0 && declared != implied)
    return TUSC_EINVALID_UPLOAD_LENGTH;
  *out = declared >= 0 ? declared : implied;
  return 0;
}

static bool is_tchar(int ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
         (ch > 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static int hex_digit(int ch) {
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  if (ch >= 'a' && ch <= 'f')
    return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F')
    return ch - 'A' + 10;
  return -1;
}

/* Appends byte b to out[*n], keeping room for the NUL. */
static bool put(char *out, size_t cap, size_t *n, unsigned char b) {
  if (*n + 1 >= cap)
    return false;
  out[(*n)++] = (char)b;
  return true;
}

/* RFC 8187 ext-value: charset "'" [language] "'" value-chars (percent-encoded). */
static long decode_ext_value(const char *v, size_t len, char *out, size_t cap) {
  const char *q1 = memchr(v, '\'', len);
  if (q1 == NULL)
    return -1;
  const char *rest = q1 + 1;
  const char *q2 = memchr(rest, '\'', len - (size_t)(rest - v));
  if (q2 == NULL)
    return -1;
  size_t cs_len = (size_t)(q1 - v);
  bool latin1;
  if (cs_len == 5 && strncasecmp(v, "UTF-8", 5) == 0)
    latin1 = false;
  else if (cs_len == 10 && strncasecmp(v, "ISO-8859-1", 10) == 0)
    latin1 = true;
  else
    return -1;
  size_t n = 0;
  for (const char *p = q2 + 1; p < v + len; p++) {
    unsigned char b = (unsigned char)*p;
    if (b == '%') {
      if (v + len - p < 3 || hex_digit((unsigned char)p[1]) < 0 ||
          hex_digit((unsigned char)p[2]) < 0)
        return -1;
      b = (unsigned char)(hex_digit((unsigned char)p[1]) * 16 + hex_digit((unsigned char)p[2]));
      p += 2;
    } else if (!is_tchar(b) || b == '*' || b == '\'' || b == '%') {
      return -1;
    }
    if (b < 0x20 || b == 0x7f)
      return -1;
    if (latin1 && b >= 0x80) {
      if (!put(out, cap, &n, (unsigned char)(0xc0 | (b >> 6))) ||
          !put(out, cap, &n, (unsigned char)(0x80 | (b & 0x3f))))
        return -1;
    } else if (!put(out, cap, &n, b)) {
      return -1;
    }
  }
  if (n == 0)
    return -1;
  out[n] = '\0';
  return (long)n;
}

long tusc_ietf_disposition_filename(const char *s, size_t len, char *out, size_t cap) {
  if (s == NULL || cap == 0)
    return -1;
  const char *p = s, *end = s + len;
  /* The disposition type (inline, attachment, ...) is a token. */
  while (p < end && is_tchar((unsigned char)*p))
    p++;
  if (p == s)
    return -1;
  char plain[1024];
  long plain_len = -1;
  long ext_len = -1;
  while (p < end) {
    while (p < end && (*p == ' ' || *p == '\t'))
      p++;
    if (p == end)
      break;
    if (*p != ';')
      return -1;
    p++;
    while (p < end && (*p == ' ' || *p == '\t'))
      p++;
    const char *name = p;
    while (p < end && is_tchar((unsigned char)*p))
      p++;
    size_t name_len = (size_t)(p - name);
    while (p < end && (*p == ' ' || *p == '\t'))
      p++;
    if (name_len == 0 || p == end || *p != '=')
      return -1;
    p++;
    while (p < end && (*p == ' ' || *p == '\t'))
      p++;
    bool is_plain = name_len == 8 && strncasecmp(name, "filename", 8) == 0;
    bool is_ext = name_len == 9 && strncasecmp(name, "filename*", 9) == 0;
    if (p < end && *p == '"') {
      /* quoted-string: qdtext or quoted-pair */
      size_t n = 0;
      bool ok = true;
      p++;
      for (;;) {
        if (p == end)
          return -1;
        unsigned char ch = (unsigned char)*p++;
        if (ch == '"')
          break;
        if (ch == '\\') {
          if (p == end)
            return -1;
          ch = (unsigned char)*p++;
        }
        if (ch < 0x20 || ch == 0x7f) {
          if (ch != '\t')
            return -1;
          ok = false;
        }
        if (is_plain && ok && !put(plain, sizeof(plain), &n, ch))
          ok = false;
      }
      if (is_plain) {
        plain_len = ok && n > 0 ? (long)n : -1;
        if (plain_len > 0)
          plain[n] = '\0';
      }
      if (is_ext) /* ext-value must be a token-like value, never quoted */
        return -1;
    } else {
      const char *v = p;
      while (p < end && (is_tchar((unsigned char)*p) || *p == '\'' || *p == '%'))
        p++;
      size_t v_len = (size_t)(p - v);
      if (v_len == 0)
        return -1;
      if (is_plain) {
        if (v_len >= sizeof(plain))
          plain_len = -1;
        else {
          memcpy(plain, v, v_len);
          plain[v_len] = '\0';
          plain_len = (long)v_len;
        }
      } else if (is_ext) {
        ext_len = decode_ext_value(v, v_len, out, cap);
      }
    }
  }
  if (ext_len > 0)
    return ext_len;
  if (plain_len <= 0 || (size_t)plain_len >= cap)
    return -1;
  memcpy(out, plain, (size_t)plain_len + 1);
  return plain_len;
}

int tusc_ietf_format_limit(int64_t max_size, char *out, size_t cap) {
  int n = max_size > 0 ? snprintf(out, cap, "min-size=0, max-size=%lld", (long long)max_size)
                       : snprintf(out, cap, "min-size=0");
  if (n < 0 || (size_t)n >= cap)
    return -1;
  return n;
}

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

static bool state_complete(int64_t offset, int64_t size) {
  return size >= 0 && offset == size;
}

static void limit_header(const tusc_config_t *cfg, tusc_http_response_t *resp) {
  char limit[64];
  if (tusc_ietf_format_limit(cfg->max_size, limit, sizeof(limit)) > 0)
    tusc_http_response_header(resp, "Upload-Limit", limit);
}

void tusc_ietf_response_headers(tusc_tus_req_t *st, tusc_http_response_t *resp, int status) {
  tusc_ietf_req_t *ietf = tusc_tus_req_ietf(st);
  if (ietf->version > 0)
    tusc_http_response_headerf(resp, "Upload-Draft-Interop-Version", "%d", ietf->version);
  limit_header(tusc_tus_req_config(st), resp);
  if (ietf->version <= 0)
    return;
  if (status >= 200 && status < 300 && ietf->have_state) {
    if (ietf->emit_offset)
      tusc_http_response_headerf(resp, "Upload-Offset", "%lld", (long long)ietf->offset);
    tusc_http_response_header(
        resp, tusc_ietf_complete_name(ietf->version),
        tusc_ietf_complete_value(ietf->version, state_complete(ietf->offset, ietf->size)));
    if (ietf->size >= 0)
      tusc_http_response_headerf(resp, "Upload-Length", "%lld", (long long)ietf->size);
  } else if (status == 409 && ietf->have_conflict) {
    /* The draft's 409 tells the client where to resume: the state met under the lock
     * (tusc_ietf_note_conflict), the offset a retry meets. */
    tusc_http_response_headerf(resp, "Upload-Offset", "%lld", (long long)ietf->conflict_offset);
    tusc_http_response_header(resp, tusc_ietf_complete_name(ietf->version),
                              tusc_ietf_complete_value(ietf->version, ietf->conflict_complete));
  }
}

void tusc_ietf_note_conflict(tusc_ietf_req_t *ietf, const tusc_upload_info_t *info) {
  ietf->have_conflict = true;
  ietf->conflict_offset = info->offset;
  ietf->conflict_complete = !info->size_is_deferred && state_complete(info->offset, info->size);
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
  tusc_http_response_header(&resp, "Content-Type", "text/plain; charset=utf-8");
  int n = snprintf(body, sizeof(body), "%s: %s\n", tusc_error_code(err), message);
  tusc_tus_req_finish(st, &resp, body, n > 0 ? (size_t)n : 0);
}

static void note_state(tusc_ietf_req_t *ietf, const tusc_upload_info_t *info) {
  ietf->have_state = true;
  ietf->offset = info->offset;
  ietf->size = info->size_is_deferred ? -1 : info->size;
}

void tusc_ietf_created(tusc_tus_req_t *st, const tusc_upload_info_t *info) {
  tusc_ietf_req_t *ietf = tusc_tus_req_ietf(st);
  note_state(ietf, info);
  ietf->emit_offset = true;
  /* 104 Upload Resumption Supported: from here on a client that loses the connection
   * mid-body knows where to resume. */
  tusc_http_response_t interim;
  tusc_http_response_init(&interim, 104);
  tusc_http_response_header(&interim, "Location", tusc_tus_req_location(st));
  tusc_http_response_headerf(&interim, "Upload-Draft-Interop-Version", "%d", ietf->version);
  limit_header(tusc_tus_req_config(st), &interim);
  tusc_http_send_interim(tusc_tus_req_http(st), &interim);
}

bool tusc_ietf_chunk_end(tusc_ietf_req_t *ietf, tusc_upload_info_t *info, bool aborted,
                         int work_result, int *result) {
  if (ietf->saving) {
    ietf->saving = false;
    if (work_result < 0) {
      /* The length is not durable, so it is not known: the upload stays open. */
      info->size = -1;
      info->size_is_deferred = true;
      if (*result == 0)
        *result = work_result;
    }
  } else if (*result == 0 && !aborted && ietf->complete) {
    if (info->size_is_deferred) {
      info->size = info->offset;
      info->size_is_deferred = false;
      ietf->saving = true;
      return true;
    }
    if (info->offset != info->size)
      *result = TUSC_EINVALID_UPLOAD_LENGTH;
  }
  note_state(ietf, info);
  ietf->emit_offset = false; /* the append/creation answer carries it already */
  return false;
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
  if (dup || tusc_ietf_request_length(complete, ul, len, body_length(req), offset, length) < 0) {
    respond_error(st, TUSC_EINVALID_UPLOAD_LENGTH,
                  "invalid Upload-Length, or it disagrees with the length of a completing "
                  "request");
    return false;
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
  tusc_tus_req_response_init(st, &resp, 204);
  tusc_http_response_header(&resp, "Cache-Control", "no-store");
  tusc_http_response_headerf(&resp, "Upload-Offset", "%lld", (long long)info->offset);
  bool complete = !info->size_is_deferred && state_complete(info->offset, info->size);
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
  bool finished = !info->size_is_deferred && state_complete(info->offset, info->size);
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

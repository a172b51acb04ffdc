/*
 * ietf — the IETF resumable-upload draft on top of the tus handler's machinery (see
 * ietf.h). Version differences handled here:
 *
 *   3 (-01)      Upload-Incomplete (inverted) instead of Upload-Complete
 *   4 (-02)      Upload-Complete
 *   5 (-03)      as 4
 *   6 (-04,-05)  appends must be application/partial-upload; Upload-Limit; Upload-Length;
 *                Content-Digest verified (tus/verify.h); Repr-Digest checked on completion
 *                (patch.c)
 *   7 (-06..-08) Upload-Limit's max-age (from -expire-after)
 *   8 (-09..-11) creation by any method with content (POST, PUT, PATCH); Accept-Patch
 *   9 (-12)      problem details for a mismatching offset and an inconsistent length;
 *                the server completes an upload when its declared length is reached and
 *                answers at once (Upload-Complete: ?1); an append to a completed upload
 *                gets the final response again when it is valid; errors of the protocol
 *                itself say Upload-Complete: ?0 (the client may resume); progress 104s
 *                with a durable Upload-Offset while a body streams (patch.c)
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
#include "tus/headers.h"
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

int tusc_ietf_format_limit(int64_t max_size, int64_t max_age, char *out, size_t cap) {
  int n = max_size > 0 ? snprintf(out, cap, "min-size=0, max-size=%lld", (long long)max_size)
                       : snprintf(out, cap, "min-size=0");
  if (n >= 0 && (size_t)n < cap && max_age >= 0)
    n += snprintf(out + n, cap - (size_t)n, ", max-age=%lld", (long long)max_age);
  if (n < 0 || (size_t)n >= cap)
    return -1;
  return n;
}

int tusc_ietf_format_problem(enum tusc_ietf_problem problem, int64_t expected_offset,
                             int64_t provided_offset, char *out, size_t cap) {
  int n;
  if (problem == TUSC_IETF_PROBLEM_MISMATCHING_OFFSET) {
    n = snprintf(out, cap,
                 "{\"type\":\"https://iana.org/assignments/http-problem-types#mismatching-upload-"
                 "offset\",\"title\":\"offset from request does not match offset of resource\"");
    if (n >= 0 && (size_t)n < cap && expected_offset >= 0)
      n += snprintf(out + n, cap - (size_t)n, ",\"expected-offset\":%lld",
                    (long long)expected_offset);
    if (n >= 0 && (size_t)n < cap && provided_offset >= 0)
      n += snprintf(out + n, cap - (size_t)n, ",\"provided-offset\":%lld",
                    (long long)provided_offset);
    if (n >= 0 && (size_t)n < cap)
      n += snprintf(out + n, cap - (size_t)n, "}");
  } else {
    n = snprintf(out, cap,
                 "{\"type\":\"https://iana.org/assignments/http-problem-types#inconsistent-upload-"
                 "length\",\"title\":\"inconsistent length values for upload\"}");
  }
  if (n < 0 || (size_t)n >= cap)
    return -1;
  return n;
}

/* --- upload state for the answers ------------------------------------------------ */

bool tusc_ietf_state_complete(int64_t offset, int64_t size) {
  return size >= 0 && offset == size;
}

void tusc_ietf_note_conflict(tusc_ietf_req_t *ietf, const tusc_upload_info_t *info) {
  ietf->have_conflict = true;
  ietf->conflict_offset = info->offset;
  ietf->conflict_complete = !info->size_is_deferred && tusc_ietf_state_complete(info->offset, info->size);
}

void tusc_ietf_note_state(tusc_ietf_req_t *ietf, const tusc_upload_info_t *info) {
  ietf->have_state = true;
  ietf->offset = info->offset;
  ietf->size = info->size_is_deferred ? -1 : info->size;
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
  tusc_ietf_note_state(ietf, info);
  ietf->emit_offset = false; /* the append/creation answer carries it already */
  return false;
}

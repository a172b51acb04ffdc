/*
 * ietf — the IETF draft "Resumable Uploads for HTTP" (draft-ietf-httpbis-resumable-
 * upload), served beside tus 1.0 on the same base path and store when
 * -enable-experimental-protocol is on. A request is a draft request when it carries
 * Upload-Draft-Interop-Version; interop versions 3 (draft -01) to 9 (draft -12) are
 * understood. Draft responses carry Upload-Draft-Interop-Version and no
 * Tus-Resumable.
 *
 This file is the draft's protocol logic: header parsing and formatting and the
 * upload state an answer reports (no I/O, no handler; thread-safe, unit-tested). The
 * request glue that drives the handler's flows the draft's way (detection, routing,
 * the 104 interim response, completing a deferred upload, extra response headers)
 * belongs to the tus handler module: tus/ietf_req.h.
 *
 * Upload state maps onto the tus store: "complete" (Upload-Complete: ?1) is a known
 * length equal to the offset. Upload-Complete: ?1 on a request whose length is not yet
 * known fixes the length to the final offset.
 */
#ifndef TUSC_TUS_IETF_H
#define TUSC_TUS_IETF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/http.h"
#include "store/store.h"

#define TUSC_IETF_VERSION_MIN 3
#define TUSC_IETF_VERSION_MAX 9
/* From this interop version on (draft -12): problem details, early completion, the
 * final response replayed, Upload-Complete: ?0 on the protocol's own errors. */
#define TUSC_IETF_VERSION_PROBLEMS 9
/* Progress 104 interim responses with Upload-Offset while a body streams: the drafts
 * have them since -03, tusc sends them to interop 9 (-12) clients only. */
#define TUSC_IETF_VERSION_PROGRESS 9
#define TUSC_IETF_PROGRESS_MS 1000 /* at most one progress 104 per second */
/* From this interop version on (draft -04): Content-Digest verified (RFC 9530). */
#define TUSC_IETF_VERSION_DIGESTS 6
/* From this interop version on (draft -06): Upload-Limit's max-age member. */
#define TUSC_IETF_VERSION_MAX_AGE 7
#define TUSC_IETF_PARTIAL_UPLOAD "application/partial-upload"

/* Per-request draft state, embedded in the handler's request state. Zeroed = not a
 * draft request. */
typedef struct tusc_ietf_req_s {
  int version;      /* interop version; 0 = tus request; -1 = unusable header */
  bool complete;    /* the request asked to complete the upload */
  bool saving;      /* a fixed length is being saved (see tusc_ietf_chunk_end) */
  bool have_state;  /* offset/size describe the upload after this request */
  bool emit_offset; /* the response still needs Upload-Offset */
  int64_t offset;
  int64_t size; /* -1 while deferred */
  bool have_conflict;     /* a 409 reports conflict_offset (tusc_ietf_note_conflict) */
  bool conflict_complete;
  int64_t conflict_offset;
  int64_t append_offset;  /* an append, between its checks and the shared flow */
  int64_t append_length;
  bool append_complete;
  bool plain_error;       /* a malformed header: text error, not a draft problem type */
  int64_t expires_s;      /* the upload's expiry (unix seconds) for max-age; 0 = none */
  bool repr_failed;       /* the completed upload's Repr-Digest did not match (deleted) */
} tusc_ietf_req_t;

/* --- pure helpers ------------------------------------------------------------------ */

/* Upload-Draft-Interop-Version: an SF Integer within [MIN, MAX]. Returns 0 and *out,
 * or TUSC_EINVALID_HEADER. */
int tusc_ietf_parse_version(const char *s, size_t len, int *out);

/* Name of the completeness header for `version` ("Upload-Incomplete" for 3, inverted). */
const char *tusc_ietf_complete_name(int version);
/* Its value meaning "complete" = `complete` ("?1"/"?0", inverted for 3). */
const char *tusc_ietf_complete_value(int version, bool complete);

/* Reads the completeness header value (s may be NULL: absent) for `version`. Returns 0
 * and *complete, or TUSC_EINVALID_HEADER when not an SF Boolean, or absent (except for
 * version 3, where an absent Upload-Incomplete means complete, as draft -01 has it). */
int tusc_ietf_parse_complete(int version, const char *s, size_t len, bool *complete);

/* The length a creation or append request declares. `upload_length` is the
 * Upload-Length value or NULL; `body_length` the request's Content-Length (-1 when
 * unknown, e.g. chunked); `offset` where the body starts. With `complete` and a known
 * body length the length is offset + body_length. *out = -1 when nothing declares it.
 * Returns 0, TUSC_EINVALID_UPLOAD_LENGTH (malformed or negative Upload-Length, or the
 * two indications disagree). */
int tusc_ietf_request_length(bool complete, const char *upload_length, size_t ul_len,
                             int64_t body_length, int64_t offset, int64_t *out);

/* The file name of a Content-Disposition value: filename* (RFC 8187, UTF-8 or
 * ISO-8859-1, converted to UTF-8) preferred over filename (token or quoted-string).
 * Writes a NUL-terminated name into out. Returns its length, or -1 when there is no
 * usable name (absent, malformed, control characters, too long). */
long tusc_ietf_disposition_filename(const char *s, size_t len, char *out, size_t cap);

/* Upload-Limit value: "min-size=0" plus ", max-size=N" when max_size > 0 and
 * ", max-age=S" when max_age >= 0 (seconds the upload resource stays available, draft
 * -06 on). Returns the length or -1 when it does not fit. */
int tusc_ietf_format_limit(int64_t max_size, int64_t max_age, char *out, size_t cap);

/* The draft's problem types (RFC 9457), draft -12 section "Problem Types". */
enum tusc_ietf_problem {
  TUSC_IETF_PROBLEM_MISMATCHING_OFFSET, /* 409: expected-offset, provided-offset */
  TUSC_IETF_PROBLEM_INCONSISTENT_LENGTH /* 400 */
};

/* An application/problem+json body for `problem`; the offsets are used (when >= 0) by
 * the mismatching-offset type. Returns the length, or -1 when it does not fit. */
int tusc_ietf_format_problem(enum tusc_ietf_problem problem, int64_t expected_offset,
                             int64_t provided_offset, char *out, size_t cap);

/* --- upload state for the answers ------------------------------------------------ */

/* An upload whose length is known and reached. */
bool tusc_ietf_state_complete(int64_t offset, int64_t size);

/* Remembers the upload's state after this request for the draft's answer headers. */
void tusc_ietf_note_state(tusc_ietf_req_t *ietf, const tusc_upload_info_t *info);

/* A request met the upload at another offset than it claimed: records the state met
 * (under the upload's lock) for the draft's 409, which tells where to resume. */
void tusc_ietf_note_conflict(tusc_ietf_req_t *ietf, const tusc_upload_info_t *info);

/* At the end of a body phase, before the answer. `result` is the request's outcome so
 * far (0 = every byte stored); `work_result` the result of the last store call.
 * Returns true when the caller must save the info (the request completed an upload of
 * unknown length: info->size was just set) and call this again afterwards; may set
 * *result (a completion that does not match the declared length). */
bool tusc_ietf_chunk_end(tusc_ietf_req_t *ietf, tusc_upload_info_t *info, bool aborted,
                         int work_result, int *result);

#endif

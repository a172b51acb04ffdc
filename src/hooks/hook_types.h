/*
 * hook_types — what a hook invocation is about and what it answered: the seven events,
 * the HTTP request facts a hook is told, and the hook's response. Shared by the runner
 * (hooks.c), the wire format (hook_json.c) and the senders, so that none of them needs
 * another's header; it includes nothing from hooks/.
 *
 * Pure data and pure functions, thread-safe. A response owns its heap members
 * (tusc_hook_response_dispose).
 */
#ifndef TUSC_HOOK_TYPES_H
#define TUSC_HOOK_TYPES_H

#include <stdbool.h>
#include <stddef.h>

#include "common/metadata.h"

enum tusc_hook_event {
  TUSC_HOOK_PRE_CREATE = 0,
  TUSC_HOOK_POST_CREATE,
  TUSC_HOOK_POST_RECEIVE,
  TUSC_HOOK_PRE_FINISH,
  TUSC_HOOK_POST_FINISH,
  TUSC_HOOK_PRE_TERMINATE,
  TUSC_HOOK_POST_TERMINATE,
};
#define TUSC_HOOK_EVENT_COUNT 7

/* "pre-create", "post-receive", ...; "" for an out-of-range value. */
const char *tusc_hook_event_name(enum tusc_hook_event ev);
/* Exact (case-sensitive, like tusd) name → event. Returns 0 or TUSC_EINVALID_ARGUMENT;
 * *out written only on success. `name` need not be NUL-terminated. */
int tusc_hook_event_parse(const char *name, size_t len, enum tusc_hook_event *out);
/* True for pre-create, pre-finish, pre-terminate: the request waits for the answer. */
bool tusc_hook_event_blocking(enum tusc_hook_event ev);

/* --- what the hook is told about the HTTP request ------------------------------ */

typedef struct tusc_hook_header_s {
  const char *name;  /* as received; canonicalised (Go textproto) in the JSON */
  const char *value; /* NUL-terminated */
} tusc_hook_header_t;

/* Borrowed for the duration of tusc_hooks_invoke only. */
typedef struct tusc_hook_http_request_s {
  const char *method;                /* "POST" */
  const char *uri;                   /* raw request-target including the query: "/files/?x=1" */
  const char *remote_ip;             /* client IP (v6 without brackets); "" or NULL if none */
  int remote_port;                   /* formatted as Go's JoinHostPort: "1.2.3.4:5", "[::1]:5" */
  const tusc_hook_header_t *headers; /* every request header (not trailers), Host too */
  size_t header_count;
  /* tusc extra: the authenticated user (htpasswd name or JWT sub), NULL = anonymous.
   * Sent as Event.TuscPrincipal, a key tusd's hook consumers ignore. */
  const char *principal;
  /* tusc extra: the client address a trusted proxy named (IP only), NULL when the
   * request came straight from the client. Sent as Event.TuscClientAddr; RemoteAddr
   * stays the TCP peer, as in tusd. */
  const char *client_addr;
} tusc_hook_http_request_t;

/* --- what the hook answered ----------------------------------------------------- */

typedef struct tusc_hook_resp_header_s {
  char *name;
  char *value;
} tusc_hook_resp_header_t;

typedef struct tusc_hook_response_s {
  /* HTTPResponse: merged into the client's response. */
  int status_code; /* 0 = keep ours */
  char *body;      /* NULL or "" = keep ours; NUL-terminated */
  size_t body_len;
  tusc_hook_resp_header_t *headers; /* added to ours */
  size_t header_count;

  bool reject_upload;      /* pre-create: answer 400 ERR_UPLOAD_REJECTED (+HTTPResponse) */
  bool reject_termination; /* pre-terminate: 400 ERR_UPLOAD_TERMINATION_REJECTED */
  bool stop_upload;        /* post-receive: stop + delete, 400 ERR_UPLOAD_STOPPED */

  /* ChangeFileInfo (pre-create). */
  char *change_id;   /* NULL = keep; else already checked with tusc_id_valid */
  bool has_metadata; /* MetaData was an object: it replaces all metadata */
  tusc_metadata_t metadata;
  char *change_storage_path; /* Storage.Path; NULL = keep. NOT validated here. */

  char error[256]; /* why the hook failed ("" on success) */
} tusc_hook_response_t;

void tusc_hook_response_init(tusc_hook_response_t *resp);
void tusc_hook_response_dispose(tusc_hook_response_t *resp);

#endif

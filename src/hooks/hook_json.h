/*
 * hook_json — the hook wire format: the request JSON a hook receives and the
 * response JSON it may answer with. Pure (no I/O, no libuv), thread-safe.
 *
 * The request is written by hand rather than with jansson so that it is byte for
 * byte what tusd (Go's encoding/json) sends: compact, struct fields in declaration
 * order, map keys (MetaData, Header, Storage) sorted bytewise, "<>&" escaped as
 * \u003c \u003e \u0026, U+2028/U+2029 escaped, invalid UTF-8 replaced by \ufffd
 * (metadata values are arbitrary decoded bytes), no trailing newline.
 */
#ifndef TUSC_HOOK_JSON_H
#define TUSC_HOOK_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "hooks/hook_types.h"
#include "store/store.h"

/* Upper bound for the request JSON (headers and metadata are already capped by the
 * http layer; this guards against a caller bug). */
#define TUSC_HOOK_JSON_MAX (4 * 1024 * 1024)

/* Go's textproto.CanonicalMIMEHeaderKey: "upload-length" → "Upload-Length"; a name
 * with a byte that is not a token character is returned unchanged. Writes at most
 * cap-1 bytes plus NUL into out. Returns the length, or -1 when it does not fit. */
long tusc_hook_canonical_header(const char *name, char *out, size_t cap);

/* Builds the request JSON for `ev`. upload must not be NULL; req may be NULL (then
 * HTTPRequest has empty Method/URI/RemoteAddr and Header {}). For pre-create, ID is
 * "" and Storage null; otherwise Storage is the store's map (`storage`, `storage_count`
 * pairs, tusc_store_storage; keys sorted like a Go map, e.g. {"InfoPath","Path",
 * "Type":"filestore"}), null when it is empty. A deferred size is sent as 0.
 * Returns 0 and a malloc'd NUL-terminated *out (+ *out_len), or TUSC_ENOMEM /
 * TUSC_EINVALID_ARGUMENT (too large). */
int tusc_hook_json_request(enum tusc_hook_event ev, const tusc_upload_info_t *upload,
                           const tusc_store_kv_t *storage, size_t storage_count,
                           const tusc_hook_http_request_t *req, char **out, size_t *out_len);

/* Parses a hook's answer into resp (initialised by the caller). Empty or only
 * whitespace, and JSON null, mean "no changes". Keys match case-insensitively,
 * unknown keys are ignored, null values count as absent; a wrong type, an invalid
 * ChangeFileInfo.ID or malformed JSON fail with TUSC_EINTERNAL and a reason in
 * resp->error (other fields then undefined; dispose anyway). TUSC_ENOMEM on OOM. */
int tusc_hook_json_response(const char *text, size_t len, tusc_hook_response_t *resp);

#endif

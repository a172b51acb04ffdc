/*
 * reqapi — the narrow request API that other protocol front-ends inside src/tus (the
 * IETF draft's glue, ietf_req.c) use to reuse the tus handler's request machinery instead of
 * copying it: building and ending responses, and the creation / append / termination
 * flows with their store calls on the thread pool, lock handling, body streaming and
 * fsync before the answer. Not a public API: only files in src/tus include it. It
 * includes no other tus handler header, so a front-end sees only what is declared here.
 *
 * A tusc_tus_req_t is the handler's per-request state (req->handler_data), opaque here.
 * Everything here runs on the request's loop. Functions that answer the request (finish,
 * respond_error) or hand it to a flow (create, append, terminate) end the caller's
 * ownership: the state must not be touched after they return.
 *
 * Implemented by the handler files: req.c (accessors, responses, lookup), create.c
 * (tusc_tus_req_create), patch.c (tusc_tus_req_append), delete.c
 * (tusc_tus_req_terminate).
 */
#ifndef TUSC_TUS_REQAPI_H
#define TUSC_TUS_REQAPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "http/http.h"
#include "store/store.h"
#include "tus/location.h"

typedef struct tus_request_s tusc_tus_req_t;
struct tusc_ietf_req_s;

tusc_http_request_t *tusc_tus_req_http(tusc_tus_req_t *st);
const tusc_config_t *tusc_tus_req_config(tusc_tus_req_t *st);
tusc_store_t *tusc_tus_req_store(tusc_tus_req_t *st);
struct tusc_ietf_req_s *tusc_tus_req_ietf(tusc_tus_req_t *st);
/* The upload ID of the request ("" until known) and the Location of a new upload (NULL
 * before creation). */
const char *tusc_tus_req_id(tusc_tus_req_t *st);
const char *tusc_tus_req_location(tusc_tus_req_t *st);
/* Sets the upload ID (already decoded and validated). Returns 0 or TUSC_EINVALID_ID. */
int tusc_tus_req_set_id(tusc_tus_req_t *st, const char *id);

/* What tusc_location_* need from this request (Host, proxy headers, TLS). */
void tusc_tus_req_location_input(tusc_tus_req_t *st, tusc_location_input_t *in);

/* The upload's expiry in unix seconds (0: it never expires, or expiration is off);
 * `touched`: bytes were just written, so its last activity is now. */
int64_t tusc_tus_req_expires_s(tusc_tus_req_t *st, const tusc_upload_info_t *info, bool touched);

/* The request's body is to be verified against its Content-Digest (IETF draft, see
 * tusc_verify_new_digest): call before create/append. A request without content is
 * checked at once. Returns 0 (also when there is no digest to check), or
 * TUSC_EINVALID_DIGEST / TUSC_EDIGEST_MISMATCH / TUSC_ENOMEM (the caller answers). */
int tusc_tus_req_content_digest(tusc_tus_req_t *st);

/* A response with the handler's common headers (protocol headers, nosniff, CORS). */
void tusc_tus_req_response_init(tusc_tus_req_t *st, tusc_http_response_t *resp, int status);
/* Sends resp (+ body) and frees the state. */
void tusc_tus_req_finish(tusc_tus_req_t *st, tusc_http_response_t *resp, const void *body,
                         size_t len);
/* The handler's error answer ("ERR_CODE: message"), with Allow when given. */
void tusc_tus_req_respond_error(tusc_tus_req_t *st, int err, const char *allow);

/* Reads the info of the upload named by the ID (on the store's pool) with the handler's
 * checks: unknown → 404, expired → 410, another principal's upload → 403/404. On failure
 * it answers (a HEAD without body); else found(st, info) runs later, `info` owned by the
 * request. */
typedef void (*tusc_tus_req_found_cb)(tusc_tus_req_t *st, const tusc_upload_info_t *info);
void tusc_tus_req_lookup(tusc_tus_req_t *st, tusc_tus_req_found_cb found);

/* Creation: takes over `info` (heap, initialised, id/size/metadata filled) and
 * `location` (heap); creates the upload on the thread pool, then reads the body into
 * it when `with_body`, and answers 201 (or an error). */
void tusc_tus_req_create(tusc_tus_req_t *st, tusc_upload_info_t *info, char *location,
                         bool with_body);
/* Append: the request's body at `client_offset` (409 on mismatch); `new_length` >= 0
 * declares the upload's length (as tus's Upload-Length on PATCH), -1 = none. The ID
 * must be set. Answers 204 with Upload-Offset (or an error). */
void tusc_tus_req_append(tusc_tus_req_t *st, int64_t client_offset, int64_t new_length);
/* Termination of the upload named by the ID: 204 or an error. */
void tusc_tus_req_terminate(tusc_tus_req_t *st);

#endif

/*
 * ietf_req — the IETF draft's request glue, part of the tus handler module (the files
 * that share handler_internal.h): called by the handler files on the request's loop,
 * it drives the shared creation / append / termination flows the draft's way and
 * reaches the handler through reqapi.h. The draft's pure logic is tus/ietf.h.
 */
#ifndef TUSC_TUS_IETF_REQ_H
#define TUSC_TUS_IETF_REQ_H

#include <stdbool.h>
#include <stddef.h>

#include "http/http.h"
#include "store/store.h"
#include "tus/ietf.h"
#include "tus/reqapi.h"

/* Marks the request as a draft request when the flag is on and it carries
 * Upload-Draft-Interop-Version (version -1 when that header is unusable). */
void tusc_ietf_detect(tusc_tus_req_t *st);

/* Answers a draft request for the collection (`is_collection`) or for the upload
 * whose percent-encoded ID is raw[0..raw_len). Returns false, without touching the
 * request, for methods the tus path serves as well (GET downloads). */
bool tusc_ietf_handle(tusc_tus_req_t *st, enum tusc_http_method method, bool is_collection,
                      const char *raw, size_t raw_len);

/* Draft headers for a response being built (called by the handler's response_init in
 * place of Tus-Resumable). */
void tusc_ietf_response_headers(tusc_tus_req_t *st, tusc_http_response_t *resp, int status);

/* The body of a draft error answer when the client's interop version has a problem type
 * for `err` (RFC 9457, application/problem+json): writes it into out and returns its
 * length; 0 when the error keeps tusc's text body. */
size_t tusc_ietf_problem_body(tusc_tus_req_t *st, int err, char *out, size_t cap);

/* Extra headers of a draft OPTIONS answer (Accept-Patch). */
void tusc_ietf_options(tusc_tus_req_t *st, tusc_http_response_t *resp);

/* The upload now exists (before any body byte is read): sends the 104 interim response
 * and remembers the state for the final answer. */
void tusc_ietf_created(tusc_tus_req_t *st, const tusc_upload_info_t *info);

/* A progress 104 (draft -12: while the content is processed, 104 with the current
 * offset; no Location) with Upload-Offset `offset`, which must be durable: a response's
 * Upload-Offset promises that those bytes never need to be sent again. */
void tusc_ietf_progress(tusc_tus_req_t *st, int64_t offset);

#endif

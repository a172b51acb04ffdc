/*
 * verify — checksum and checksum-trailer for one chunk (PATCH, or POST with a body):
 * the glue between the request's Upload-Checksum (header or announced trailer), the
 * running hash (tus/checksum.h) and the store's staged chunks.
 *
 * Crash safety: a verified chunk is staged (TUSC_STORE_CHUNK_STAGED: the file store
 * keeps it in a side file), hashed while it streams (header) or read back once through
 * the store (trailer: the algorithm is only known at the end); it reaches the upload's
 * data only with chunk_end(KEEP) once the digest matched, durable before the 204. A
 * kill -9 at any moment before that leaves the offset exactly as before the request.
 *
 * Life: _new on the loop from the request head → the caller begins the store's chunk
 * with _chunk_flags, appends each body piece itself and passes what the store took to
 * _update → _body_end (reads the trailer) → _end (verdict, then the chunk kept or
 * dropped) → _free. An interrupted body (client gone, lock release, size) ends with
 * ok = false: a chunk that cannot be verified is dropped.
 *
 * Threads: one request's object is used on its loop only.
 */
#ifndef TUSC_TUS_VERIFY_H
#define TUSC_TUS_VERIFY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "http/http.h"
#include "store/store.h"
#include "tus/checksum.h"

typedef struct tusc_verify_s tusc_verify_t;

/* Reads the request head: `Upload-Checksum: <algo> <base64>` (once), or a chunked body
 * announced with `Trailer: Upload-Checksum`. Sets *out to NULL when the request asks
 * for no verification. Errors (400): TUSC_EINVALID_CHECKSUM (malformed, repeated, both
 * header and announced trailer, trailer announced without a chunked body),
 * TUSC_ECHECKSUM_ALGORITHM; TUSC_ENOMEM. */
int tusc_verify_new(const tusc_http_request_t *req, tusc_verify_t **out)
    __attribute__((warn_unused_result));

/* The IETF draft's content digest (draft -12 "Content Digests", RFC 9530): verifies
 * the request content against its `Content-Digest` header (sha-512 or sha-256; several
 * field lines form one Dictionary) the same way as a checksum: staged, kept only on a
 * match. Sets *out to NULL when the request carries none tusc can check. A mismatch
 * ends as TUSC_EDIGEST_MISMATCH (400) instead of TUSC_ECHECKSUM_MISMATCH (460).
 * Errors: TUSC_EINVALID_DIGEST (400), TUSC_ENOMEM. */
int tusc_verify_new_digest(const tusc_http_request_t *req, tusc_verify_t **out)
    __attribute__((warn_unused_result));

/* Reads the digest field `name` (Content-Digest, Repr-Digest: its header lines joined
 * into one Dictionary) as tusc_checksum_parse_digest_field does. Returns 0 with *found
 * false when absent or nothing tusc checks, 0 with *found and *out, or
 * TUSC_EINVALID_DIGEST. */
int tusc_verify_digest_field(const tusc_http_request_t *req, const char *name,
                             tusc_checksum_expect_t *out, bool *found)
    __attribute__((warn_unused_result));

/* The body arrived whole: in trailer mode reads and parses the Upload-Checksum
 * trailer. Returns 0 or TUSC_EINVALID_CHECKSUM / TUSC_ECHECKSUM_ALGORITHM. */
int tusc_verify_body_end(tusc_verify_t *v, const tusc_http_request_t *req);

/* True when a chunked request carries an Upload-Checksum trailer (for spotting an
 * unannounced one). */
bool tusc_verify_has_trailer(const tusc_http_request_t *req);

void tusc_verify_free(tusc_verify_t *v);

/* chunk_begin flags for a verified chunk: staged, so that its bytes reach the data
 * only once the digest matched (a crash before leaves the offset as it was). */
int tusc_verify_chunk_flags(const tusc_verify_t *v);

/* Counts (and in header mode hashes) `len` body bytes the store took. 0 or
 * TUSC_EINTERNAL. */
int tusc_verify_update(tusc_verify_t *v, const void *data, size_t len);

/* A request without a body: the digest must be that of no bytes. Returns 0,
 * TUSC_ECHECKSUM_MISMATCH (TUSC_EDIGEST_MISMATCH) or TUSC_EINVALID_CHECKSUM. Pure. */
int tusc_verify_empty(tusc_verify_t *v);

typedef void (*tusc_verify_cb)(tusc_verify_t *v, int status, void *arg);

/* Ends the chunk of `up` that began at `chunk_start`. ok (the body arrived whole):
 * checks the digest — in trailer mode after reading the chunk's bytes back from the
 * store — and keeps the chunk on a match (cb status: 0, or the store's error), else
 * discards it (TUSC_ECHECKSUM_MISMATCH, TUSC_EINVALID_CHECKSUM when no digest came,
 * or the read-back error). !ok: discards the chunk (cb status: the discard's).
 * Returns 0 (cb later, once, on the upload's loop) or an error (no cb, chunk still
 * open). */
int tusc_verify_end(tusc_verify_t *v, tusc_upload_t *up, int64_t chunk_start, bool ok,
                    tusc_verify_cb cb, void *arg) __attribute__((warn_unused_result));

#endif

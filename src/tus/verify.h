/*
 * verify — checksum and checksum-trailer for one chunk (PATCH, or POST with a body):
 * the glue between the request's Upload-Checksum (header or announced trailer), the
 * running hash (tus/checksum.h) and the store's staging ops.
 *
 * Crash safety: with a store that stages (file store), the body goes to a side file,
 * hashed while it streams (header) or read back once on the thread pool (trailer: the
 * algorithm is only known at the end); the data file is appended to only after the
 * digest matched, then fdatasync'd before the 204. A kill -9 at any moment before the
 * append leaves the data file — hence the offset — exactly as before the request; one
 * during the append leaves a prefix of bytes that already matched. Without staging the
 * bytes go straight into the data file and a mismatch truncates them back (durable, but
 * a crash before the truncate keeps them).
 *
 * Life: _new on the loop from the request head → _begin once the upload is open and
 * locked → _write per body piece (loop) → _body_end (loop, reads the trailer) →
 * _commit or _discard on the thread pool → _free. An interrupted body (client gone,
 * lock release, size) goes to _discard: a chunk that cannot be verified is dropped.
 *
 * Threads: one request's object is used by one thread at a time.
 */
#ifndef TUSC_TUS_VERIFY_H
#define TUSC_TUS_VERIFY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "http/http.h"
#include "store/store.h"

typedef struct tusc_verify_s tusc_verify_t;

/* Reads the request head: `Upload-Checksum: <algo> <base64>` (once), or a chunked body
 * announced with `Trailer: Upload-Checksum`. Sets *out to NULL when the request asks
 * for no verification. Errors (400): TUSC_EINVALID_CHECKSUM (malformed, repeated, both
 * header and announced trailer, trailer announced without a chunked body),
 * TUSC_ECHECKSUM_ALGORITHM; TUSC_ENOMEM. */
int tusc_verify_new(const tusc_http_request_t *req, tusc_verify_t **out)
    __attribute__((warn_unused_result));

/* An object that only drops the chunk again (truncate `up` back to `start_offset`),
 * for a body whose Upload-Checksum trailer arrived unannounced: its bytes went straight
 * into the data file. Not to be begun. */
int tusc_verify_new_dropper(tusc_store_t *store, tusc_upload_t *up, int64_t start_offset,
                            tusc_verify_t **out) __attribute__((warn_unused_result));

/* Called with the lock held and the upload open, before the body: opens the side file
 * (or notes the offset for truncating back). Returns 0 or a store error. */
int tusc_verify_begin(tusc_verify_t *v, tusc_store_t *store, tusc_upload_t *up);

/* Takes body bytes: hashes (header mode) and stages them. Returns the bytes written
 * (short only on error) or < 0. */
ssize_t tusc_verify_write(tusc_verify_t *v, const void *data, size_t len);

/* The body arrived whole: in trailer mode reads and parses the Upload-Checksum
 * trailer. Returns 0 or TUSC_EINVALID_CHECKSUM / TUSC_ECHECKSUM_ALGORITHM. */
int tusc_verify_body_end(tusc_verify_t *v, const tusc_http_request_t *req);

/* Thread pool. Compares the digest; on a match moves the staged bytes into the data
 * file and, with `sync`, makes them durable. Returns 0, TUSC_ECHECKSUM_MISMATCH (the
 * chunk is dropped), or an error (the chunk is dropped if it had not reached the data
 * file yet). */
int tusc_verify_commit(tusc_verify_t *v, bool sync);

/* Thread pool. Drops the chunk. Returns 0 or the store's error (truncate back). */
int tusc_verify_discard(tusc_verify_t *v);

/* True when a chunked request carries an Upload-Checksum trailer (for spotting an
 * unannounced one). */
bool tusc_verify_has_trailer(const tusc_http_request_t *req);

void tusc_verify_free(tusc_verify_t *v);

/* --- with the asynchronous store: the caller begins the chunk with
 * tusc_verify_chunk_flags, appends the body itself and calls tusc_verify_update for
 * every piece the store took, then tusc_verify_end instead of ending the chunk. --- */

/* chunk_begin flags for a verified chunk: staged, so that its bytes reach the data
 * only once the digest matched (a crash before leaves the offset as it was). */
int tusc_verify_chunk_flags(const tusc_verify_t *v);

/* Counts (and in header mode hashes) `len` body bytes the store took. 0 or
 * TUSC_EINTERNAL. */
int tusc_verify_update(tusc_verify_t *v, const void *data, size_t len);

/* A request without a body: the digest must be that of no bytes. Returns 0,
 * TUSC_ECHECKSUM_MISMATCH or TUSC_EINVALID_CHECKSUM. Pure. */
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

/*
 * error — tusc's error codes, their messages, and the one mapping from an error to
 * an HTTP status and a tusd error-code name.
 *
 * Contract: functions across tusc return 0 on success or a negative code. A code is
 * either a libuv code (UV_E*, i.e. a negated errno) passed through unchanged, or one
 * of the TUSC_E* codes below, which live far below libuv's range. All functions here
 * are pure and thread-safe; returned strings are static.
 */
#ifndef TUSC_ERROR_H
#define TUSC_ERROR_H

/* X(name, http status, tusd code, message). The message is the tusd wording where
 * tusd has one; it is what the client reads after "ERR_CODE: ". */
#define TUSC_ERROR_MAP(X)                                                                   \
  X(UNSUPPORTED_VERSION, 412, "ERR_UNSUPPORTED_VERSION",                                    \
    "missing, invalid or unsupported Tus-Resumable header")                                 \
  X(NOT_FOUND, 404, "ERR_UPLOAD_NOT_FOUND", "upload not found")                             \
  X(GONE, 410, "ERR_UPLOAD_NOT_FOUND", "upload has expired or was terminated")              \
  X(MISMATCHED_OFFSET, 409, "ERR_MISMATCHED_OFFSET", "mismatched offset")                   \
  X(INVALID_OFFSET, 400, "ERR_INVALID_OFFSET", "missing or invalid Upload-Offset header")   \
  X(INVALID_CONTENT_TYPE, 415, "ERR_INVALID_CONTENT_TYPE",                                  \
    "missing or invalid Content-Type header")                                               \
  X(UPLOAD_SIZE_EXCEEDED, 413, "ERR_UPLOAD_SIZE_EXCEEDED", "upload's size exceeded")        \
  X(MAX_SIZE_EXCEEDED, 413, "ERR_MAX_SIZE_EXCEEDED", "maximum size exceeded")               \
  X(INVALID_UPLOAD_LENGTH, 400, "ERR_INVALID_UPLOAD_LENGTH",                                \
    "missing or invalid Upload-Length header")                                              \
  X(INVALID_UPLOAD_LENGTH_DEFER, 400, "ERR_INVALID_UPLOAD_LENGTH_DEFER",                    \
    "invalid Upload-Defer-Length header")                                                   \
  X(AMBIGUOUS_UPLOAD_LENGTH, 400, "ERR_AMBIGUOUS_UPLOAD_LENGTH",                            \
    "either Upload-Length or Upload-Defer-Length must be specified, not both")              \
  X(INVALID_METADATA, 400, "ERR_INVALID_METADATA", "invalid Upload-Metadata header")        \
  X(METADATA_TOO_LARGE, 400, "ERR_INVALID_METADATA", "Upload-Metadata header too large")    \
  X(INVALID_ID, 404, "ERR_UPLOAD_NOT_FOUND", "upload not found")                            \
  X(MODIFY_FINAL, 403, "ERR_MODIFY_FINAL", "modifying a final upload is not allowed")       \
  X(UPLOAD_NOT_FINISHED, 400, "ERR_UPLOAD_NOT_FINISHED",                                    \
    "one of the partial uploads is not finished")                                           \
  X(INVALID_CONCAT, 400, "ERR_INVALID_CONCAT", "invalid Upload-Concat header")              \
  X(CONCATENATION_UNSUPPORTED, 400, "ERR_CONCATENATION_UNSUPPORTED",                        \
    "concatenation is not supported")                                                       \
  X(UPLOAD_INTERRUPTED, 400, "ERR_UPLOAD_INTERRUPTED",                                      \
    "upload has been interrupted by another request for this upload resource")              \
  X(UPLOAD_REJECTED, 400, "ERR_UPLOAD_REJECTED", "upload creation has been rejected by server") \
  X(UPLOAD_TERMINATION_REJECTED, 400, "ERR_UPLOAD_TERMINATION_REJECTED",                    \
    "upload termination has been rejected by server")                                       \
  X(UPLOAD_STOPPED, 400, "ERR_UPLOAD_STOPPED", "upload has been stopped by server")         \
  X(CHECKSUM_MISMATCH, 460, "ERR_CHECKSUM_MISMATCH", "checksum mismatch")                  \
  X(CHECKSUM_ALGORITHM, 400, "ERR_UNSUPPORTED_CHECKSUM_ALGORITHM",                          \
    "unsupported checksum algorithm")                                                       \
  X(INVALID_CHECKSUM, 400, "ERR_INVALID_CHECKSUM", "invalid Upload-Checksum header")        \
  X(DIGEST_MISMATCH, 400, "ERR_DIGEST_MISMATCH",                                           \
    "Content-Digest does not match the request content")                                    \
  X(INVALID_DIGEST, 400, "ERR_INVALID_DIGEST", "invalid Content-Digest header")             \
  X(INVALID_REPR_DIGEST, 400, "ERR_INVALID_DIGEST", "invalid Repr-Digest header")           \
  X(REPR_DIGEST_MISMATCH, 400, "ERR_REPR_DIGEST_MISMATCH",                                  \
    "Repr-Digest does not match the uploaded representation; the upload was deleted")      \
  X(LOCK_TIMEOUT, 500, "ERR_LOCK_TIMEOUT", "failed to acquire lock before timeout")         \
  X(UNEXPECTED_EOF, 400, "ERR_UNEXPECTED_EOF", "server expected to receive more bytes")     \
  X(READ_TIMEOUT, 500, "ERR_READ_TIMEOUT", "timeout while reading request body")            \
  X(SERVER_SHUTDOWN, 503, "ERR_SERVER_SHUTDOWN", "request interrupted due to server shutdown") \
  X(ORIGIN_NOT_ALLOWED, 403, "ERR_ORIGIN_NOT_ALLOWED", "request origin is not allowed")     \
  X(NOT_IMPLEMENTED, 501, "ERR_NOT_IMPLEMENTED", "feature not implemented")                 \
  X(METHOD_NOT_ALLOWED, 405, "ERR_METHOD_NOT_ALLOWED", "method not allowed")                \
  X(BAD_REQUEST, 400, "ERR_BAD_REQUEST", "malformed request")                               \
  X(HEADERS_TOO_LARGE, 431, "ERR_HEADERS_TOO_LARGE", "request header fields too large")     \
  X(INVALID_HEADER, 400, "ERR_INVALID_HEADER", "invalid header value")                      \
  X(INVALID_RANGE, 416, "ERR_INVALID_RANGE", "requested range not satisfiable")             \
  X(INSUFFICIENT_STORAGE, 507, "ERR_INSUFFICIENT_STORAGE", "insufficient storage")          \
  X(INTERNAL, 500, "ERR_INTERNAL_SERVER_ERROR", "internal server error")                    \
  X(LOCKED, 423, "ERR_LOCKED", "upload is locked by another request")                       \
  X(UNAUTHORIZED, 401, "ERR_UNAUTHORIZED", "authentication required")                      \
  X(FORBIDDEN, 403, "ERR_FORBIDDEN", "upload belongs to another user")                      \
  X(MISDIRECTED, 421, "ERR_MISDIRECTED_REQUEST", "host is not served here")                 \
  X(UPLOAD_TOO_SLOW, 408, "ERR_READ_TIMEOUT", "upload slower than the minimum rate")        \
  X(TOO_MANY_CONNECTIONS, 503, "ERR_TOO_MANY_CONNECTIONS", "too many connections")          \
  X(INVALID_ARGUMENT, 500, "ERR_INTERNAL_SERVER_ERROR", "invalid argument")                 \
  X(NOMEM, 503, "ERR_INTERNAL_SERVER_ERROR", "out of memory")                              \
  X(PARTIAL_GONE, 410, "ERR_PARTIAL_UPLOAD_GONE",                                           \
    "a partial upload of this final upload was terminated or has expired; it cannot complete") \
  X(EXPECTATION_FAILED, 417, "ERR_EXPECTATION_FAILED", "unsupported expectation in Expect header") \
  X(AUTH_BUSY, 503, "ERR_AUTH_BUSY", "too many password checks waiting; retry later")        \
  X(AUTH_THROTTLED, 429, "ERR_TOO_MANY_LOGIN_FAILURES",                                     \
    "too many failed or pending logins from this address; retry later")                    \
  X(HOOKS_BUSY, 503, "ERR_HOOKS_BUSY", "too many hooks running or waiting; retry later")   \
  X(STORE_FULL, 503, "ERR_STORE_FULL", "storage cannot take more bytes yet; retry later")   \
  X(STORE_BUSY, 503, "ERR_STORE_BUSY", "too much storage work waiting; retry later")      \
  X(S3_NO_SUCH_KEY, 404, "ERR_UPLOAD_NOT_FOUND", "S3 object not found")                     \
  X(S3_NO_SUCH_UPLOAD, 404, "ERR_UPLOAD_NOT_FOUND", "S3 multipart upload not found")        \
  X(S3_NO_SUCH_BUCKET, 500, "ERR_INTERNAL_SERVER_ERROR", "S3 bucket not found")              \
  X(S3_ENTITY_TOO_SMALL, 500, "ERR_INTERNAL_SERVER_ERROR",                                  \
    "S3 part smaller than the provider's minimum part size")                                \
  X(S3_ACCESS_DENIED, 500, "ERR_INTERNAL_SERVER_ERROR",                                     \
    "S3 denied the request (credentials, signature or permissions)")                        \
  X(S3_UNAVAILABLE, 503, "ERR_STORAGE_UNAVAILABLE", "S3 storage unavailable; retry later")  \
  X(S3_ERROR, 500, "ERR_INTERNAL_SERVER_ERROR", "S3 request failed")                       \
  X(LOCK_UNAVAILABLE, 503, "ERR_LOCK_UNAVAILABLE",                                          \
    "the upload lock service (Redis) is unreachable; no bytes were written, retry later")  \
  X(LOCK_LOST, 503, "ERR_LOCK_LOST",                                                        \
    "this server lost the upload's lock lease; ask for the offset and resume")

enum tusc_error {
  TUSC_E__BASE = -20000,
#define TUSC_ERROR_ENUM(name, status, code, msg) TUSC_E##name,
  TUSC_ERROR_MAP(TUSC_ERROR_ENUM)
#undef TUSC_ERROR_ENUM
  TUSC_E__END
};

/* Human-readable message for any code (TUSC_E*, UV_E* or a negated errno). */
const char *tusc_strerror(int err);

/* HTTP status a request failing with `err` answers with. I/O errors map to 500,
 * ENOSPC/EDQUOT to 507, unknown codes to 500. */
int tusc_error_status(int err);

/* tusd error-code name for the response body ("ERR_UPLOAD_NOT_FOUND"). */
const char *tusc_error_code(int err);

#endif

/*
 * s3_client — an asynchronous S3 client on libcurl multi + libuv (net/curl_loop.h),
 * signing with net/s3_sigv4.h.
 *
 * Two objects:
 *   - tusc_s3_t: the shared configuration (endpoint, bucket, addressing, credentials,
 *     timeouts). Immutable after tusc_s3_new; any thread may use it, every loop's client
 *     points at it. Free it after every tusc_s3_loop_t using it is closed.
 *   - tusc_s3_loop_t: request execution on one libuv loop, on a curl_loop the caller
 *     owns (one per loop; its connection cache is what keeps connections alive between
 *     requests). Everything about it runs on that loop's thread.
 *
 * Contract (libuv's): every operation takes a caller-owned tusc_s3_req_t (initialised
 * with tusc_s3_req_init) and a callback. It returns 0 and then calls `cb` exactly once,
 * later (never before returning), on the loop; or it returns a negative error and never
 * calls back. The request and a body buffer (put, upload_part) must stay valid until
 * the callback; keys, ids and part lists are copied before the call returns. tusc_s3_cancel() stops
 * a request in flight: its callback is then NEVER called (like tusc_curl_loop_remove); after cancel
 * (or after the callback) the request may be reused or freed, after
 * tusc_s3_req_dispose() if it holds results.
 *
 * Results: the callback's `status` is 0 or a negative code (common/error.h):
 *   TUSC_ES3_NO_SUCH_KEY (NoSuchKey, a 404 HEAD), TUSC_ES3_NO_SUCH_UPLOAD,
 *   TUSC_ES3_NO_SUCH_BUCKET, TUSC_ES3_ENTITY_TOO_SMALL, TUSC_ES3_ACCESS_DENIED (403:
 *   AccessDenied, SignatureDoesNotMatch, InvalidAccessKeyId, ...), TUSC_EINVALID_RANGE
 *   (416), TUSC_ES3_UNAVAILABLE (5xx, SlowDown, connection refused/reset, timeouts),
 *   TUSC_ES3_ERROR (any other failure), TUSC_ENOMEM, or the error a body callback returned.
 * req->http_status, req->s3_code and req->message (S3's <Message> or curl's error text)
 * are kept for logs. Nothing is retried here; the caller decides.
 *
 * Bounds: a response body kept in memory (XML, GET into a buffer) has a cap
 * (TUSC_S3_XML_MAX, the caller's max for GET into a buffer); list results are visited
 * page by page (the client holds one page, at most 1,000 entries); ListParts into an
 * array holds at most TUSC_S3_MAX_PARTS parts. Easy handles are reused from a small
 * per-loop free list (TUSC_S3_FREE_HANDLES).
 */
#ifndef TUSC_NET_S3_CLIENT_H
#define TUSC_NET_S3_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "net/curl_loop.h"

#define TUSC_S3_MAX_PARTS 10000
#define TUSC_S3_XML_MAX (8u << 20) /* one response's XML: a 1,000-entry page fits */
#define TUSC_S3_FREE_HANDLES 16    /* idle easy handles kept per loop */
#define TUSC_S3_ETAG_MAX 128       /* an ETag with its quotes */
#define TUSC_S3_UPLOAD_ID_MAX 1024 /* AWS upload ids are ~150 bytes; room to spare */
#define TUSC_S3_CODE_MAX 64
#define TUSC_S3_MESSAGE_MAX 256

/* --- credentials ----------------------------------------------------------------------- */

typedef struct {
  char *access_key;
  char *secret_key;
  char *session_token; /* NULL when none */
  char *region;        /* NULL when unknown (the caller's default applies) */
} tusc_s3_creds_t;

/* Frees the strings of `c` and zeroes it; safe on a zeroed struct. */
void tusc_s3_creds_dispose(tusc_s3_creds_t *c);

/* Parses the text of an AWS shared credentials file (INI: "[profile]" sections,
 * "key = value" lines, '#'/';' comments) and takes aws_access_key_id,
 * aws_secret_access_key, aws_session_token and region from section `profile`. Returns 0
 * and fills *out (the caller disposes it), TUSC_ES3_NO_SUCH_KEY when the profile or its
 * key pair is missing, or TUSC_ENOMEM. */
int tusc_s3_creds_parse(const char *text, size_t len, const char *profile, tusc_s3_creds_t *out)
    __attribute__((warn_unused_result));

/* The process's credentials, like the AWS SDKs: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
 * (+ AWS_SESSION_TOKEN) when both are set, else the shared credentials file
 * (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials, profile AWS_PROFILE or "default").
 * Region: AWS_REGION, else AWS_DEFAULT_REGION, else the file's, else "us-east-1".
 * Reads the environment and a small file: call at start-up, not on a loop. Returns 0 or
 * TUSC_ES3_NO_SUCH_KEY (no credentials anywhere), TUSC_ENOMEM, a file read error. */
int tusc_s3_creds_load(tusc_s3_creds_t *out) __attribute__((warn_unused_result));

/* --- shared configuration ---------------------------------------------------------------- */

typedef struct {
  /* "http://host:port", "https://host", or "host[:port]" (then https unless
   * disable_ssl, tusd's -s3-disable-ssl). NULL: https://s3.<region>.amazonaws.com. */
  const char *endpoint;
  bool disable_ssl;
  const char *bucket; /* required */
  /* true: http://host/bucket/key (RGW, MinIO); false: http://bucket.host/key. */
  bool path_style;
  const char *access_key;    /* required */
  const char *secret_key;    /* required */
  const char *session_token; /* optional */
  const char *region;        /* NULL: "us-east-1" */
  long connect_timeout_ms;   /* 0: 10 s */
  /* A transfer moving fewer than low_speed_bytes per second for low_speed_time_s fails
   * (TUSC_ES3_UNAVAILABLE). 0: 1 byte/s for 60 s. Paused GETs are exempt (curl). */
  long low_speed_bytes;
  long low_speed_time_s;
  /* Whole-request limit; 0 = none (a big GET to a slow client may take long). */
  long timeout_ms;
  /* Sign the SHA-256 of bodies (true) or send UNSIGNED-PAYLOAD (false, the default:
   * TLS protects the body, and hashing costs a pass over every part). */
  bool sign_payload;
  /* Only for tests: verify nothing about TLS peers. */
  bool insecure_tls;
} tusc_s3_options_t;

typedef struct tusc_s3_s tusc_s3_t;

/* Copies `opts` into a new configuration. Returns 0, TUSC_EINVALID_ARGUMENT (no bucket,
 * no key pair, a malformed endpoint, a bucket unusable in a host name with virtual-host
 * addressing) or TUSC_ENOMEM. */
int tusc_s3_new(const tusc_s3_options_t *opts, tusc_s3_t **out) __attribute__((warn_unused_result));
void tusc_s3_free(tusc_s3_t *s3); /* NULL is a no-op */

const char *tusc_s3_bucket(const tusc_s3_t *s3);
const char *tusc_s3_region(const tusc_s3_t *s3);
/* The endpoint's base URL as used ("http://127.0.0.1:8000"), without the bucket. */
const char *tusc_s3_endpoint(const tusc_s3_t *s3);

/* --- per-loop client ------------------------------------------------------------------------ */

typedef struct tusc_s3_loop_s tusc_s3_loop_t;

/* A client on `loop` sending through `curl` (which must be on the same loop and outlive
 * the client). Returns 0 or TUSC_ENOMEM. */
int tusc_s3_loop_new(tusc_s3_t *s3, uv_loop_t *loop, tusc_curl_loop_t *curl, tusc_s3_loop_t **out)
    __attribute__((warn_unused_result));

/* Closes the client: every request must be done or cancelled. `closed_cb` (may be NULL)
 * runs once its handles are closed, from the loop; the client is then freed. */
void tusc_s3_loop_close(tusc_s3_loop_t *sl, void (*closed_cb)(void *arg), void *arg);

/* --- requests -------------------------------------------------------------------------------- */

typedef struct tusc_s3_req_s tusc_s3_req_t;
typedef void (*tusc_s3_cb)(tusc_s3_req_t *req, int status);

/* A GET body piece. Return TUSC_S3_BODY_CONTINUE (took all of it), TUSC_S3_BODY_PAUSE
 * (took all of it; deliver nothing more until tusc_s3_resume), TUSC_S3_BODY_AGAIN (took
 * none of it; the same bytes come again after tusc_s3_resume), or a negative error
 * (the request ends with that status). Runs on the loop, inside curl: do not cancel
 * `req` from here (return an error instead). */
typedef int (*tusc_s3_body_cb)(tusc_s3_req_t *req, const char *data, size_t len);
enum { TUSC_S3_BODY_CONTINUE = 0, TUSC_S3_BODY_PAUSE = 1, TUSC_S3_BODY_AGAIN = 2 };

typedef struct {
  int part_number;
  uint64_t size;
  char etag[TUSC_S3_ETAG_MAX];
} tusc_s3_part_t;

typedef struct {
  const char *key; /* valid during the visit only */
  uint64_t size;
  const char *etag;
  const char *last_modified; /* ISO 8601 as S3 sent it */
} tusc_s3_object_t;

typedef struct {
  const char *key; /* valid during the visit only */
  const char *upload_id;
  const char *initiated; /* ISO 8601 as S3 sent it */
} tusc_s3_upload_t;

/* Visit callbacks get one page; return 0 to go on with the next page (if any), 1 to
 * stop (the request succeeds), or a negative error (the request fails with it). */
typedef int (*tusc_s3_parts_visit_cb)(tusc_s3_req_t *req, const tusc_s3_part_t *parts, size_t n);
typedef int (*tusc_s3_objects_visit_cb)(tusc_s3_req_t *req, const tusc_s3_object_t *objs, size_t n);
typedef int (*tusc_s3_uploads_visit_cb)(tusc_s3_req_t *req, const tusc_s3_upload_t *ups, size_t n);

struct tusc_s3_op; /* private */

struct tusc_s3_req_s {
  void *data; /* free for the caller */

  /* Results, valid in the callback (and until dispose/reuse). */
  int status;
  long http_status;                      /* last response's status; 0 if none came */
  char s3_code[TUSC_S3_CODE_MAX];        /* S3's <Code>, "" if none */
  char message[TUSC_S3_MESSAGE_MAX];     /* S3's <Message> or curl's error, for logs */
  char etag[TUSC_S3_ETAG_MAX];           /* put, upload_part(_copy), complete, head, get */
  char upload_id[TUSC_S3_UPLOAD_ID_MAX]; /* create_multipart */
  uint64_t content_length;               /* head, get: the object's (or range's) length */
  uint64_t object_size;                  /* head; get with a range: from Content-Range */
  char *body;                            /* get_buf: malloc'd, NUL-terminated; req owns it */
  size_t body_len;
  tusc_s3_part_t *parts; /* list_parts without a visitor: ascending; req owns it */
  size_t nparts;

  /* private to s3_client.c */
  struct tusc_s3_op *op;
};

/* Zeroes `req`. Starting an operation on a request disposes of its previous results
 * (body, parts) and clears every result field but `data`. */
void tusc_s3_req_init(tusc_s3_req_t *req);
/* Frees results the request owns (body, parts); the request can then be reused. */
void tusc_s3_req_dispose(tusc_s3_req_t *req);

/* Stops `req` if in flight; its callback is never called. No-op otherwise. */
void tusc_s3_cancel(tusc_s3_loop_t *sl, tusc_s3_req_t *req);

/* Lets a GET paused by its body callback go on; deliveries resume on a later loop turn
 * (never from inside this call). No-op when not paused or not a GET in flight. A GET
 * paused after its last piece may complete (callback) without a resume. */
void tusc_s3_resume(tusc_s3_loop_t *sl, tusc_s3_req_t *req);

/* Keys are raw S3 keys (UTF-8, any bytes but NUL; '/' kept as a separator); the client
 * encodes them. A range is [first, last] inclusive; last = UINT64_MAX means "to the end";
 * TUSC_S3_NO_RANGE means the whole object. */
#define TUSC_S3_NO_RANGE UINT64_MAX

/* PutObject: `len` bytes at `body`. content_type may be NULL. Result: etag. */
int tusc_s3_put_object(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key, const void *body,
                       size_t len, const char *content_type, tusc_s3_cb cb)
    __attribute__((warn_unused_result));

/* GetObject streamed: on_body gets the bytes in order (may pause). first = TUSC_S3_NO_RANGE
 * for the whole object. Results: content_length, object_size (with a range), etag. */
int tusc_s3_get_object(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key, uint64_t first,
                       uint64_t last, tusc_s3_body_cb on_body, tusc_s3_cb cb)
    __attribute__((warn_unused_result));

/* GetObject into memory (small objects such as <id>.info): req->body/body_len. A body
 * longer than max_len fails with TUSC_ES3_ERROR ("too large"). */
int tusc_s3_get_object_buf(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key, size_t max_len,
                           tusc_s3_cb cb) __attribute__((warn_unused_result));

/* HeadObject. Results: content_length (= object_size), etag. A missing key:
 * TUSC_ES3_NO_SUCH_KEY (HEAD has no error body). */
int tusc_s3_head_object(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key, tusc_s3_cb cb)
    __attribute__((warn_unused_result));

/* DeleteObject. A missing key succeeds (S3 answers 204). */
int tusc_s3_delete_object(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key, tusc_s3_cb cb)
    __attribute__((warn_unused_result));

/* CreateMultipartUpload. content_type may be NULL. Result: upload_id. */
int tusc_s3_create_multipart(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key,
                             const char *content_type, tusc_s3_cb cb)
    __attribute__((warn_unused_result));

/* UploadPart number part_number (1..10000) of `len` bytes at `body`. Result: etag. */
int tusc_s3_upload_part(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key,
                        const char *upload_id, int part_number, const void *body, size_t len,
                        tusc_s3_cb cb) __attribute__((warn_unused_result));

/* UploadPartCopy from object src_key of this bucket, bytes [first, last] of it
 * (x-amz-copy-source-range) or the whole object (first = TUSC_S3_NO_RANGE). Result: etag.
 * A 200 whose body is an <Error> (S3 may fail a copy after answering) is an error. */
int tusc_s3_upload_part_copy(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key,
                             const char *upload_id, int part_number, const char *src_key,
                             uint64_t first, uint64_t last, tusc_s3_cb cb)
    __attribute__((warn_unused_result));

/* CompleteMultipartUpload with parts[0..n) (part_number and etag used; ascending).
 * Result: etag (may be empty with RGW: HEAD the object for the real one). A 200 whose
 * body is an <Error> is an error. On an aborted upload AWS answers NoSuchUpload, RGW 16
 * a 500 InternalError "This multipart completion is already in progress"
 * (TUSC_ES3_UNAVAILABLE): ListParts tells the two apart. */
int tusc_s3_complete_multipart(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key,
                               const char *upload_id, const tusc_s3_part_t *parts, size_t n,
                               tusc_s3_cb cb) __attribute__((warn_unused_result));

/* AbortMultipartUpload. */
int tusc_s3_abort_multipart(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key,
                            const char *upload_id, tusc_s3_cb cb)
    __attribute__((warn_unused_result));

/* ListParts, every page (part-number-marker), max_parts per page (0: S3's 1,000). With
 * `visit`, each page goes to it; without, parts collect in req->parts/nparts (at most
 * TUSC_S3_MAX_PARTS, more fails with TUSC_ES3_ERROR). RGW answers NoSuchKey after an
 * abort, mapped to TUSC_ES3_NO_SUCH_UPLOAD here. */
int tusc_s3_list_parts(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key,
                       const char *upload_id, int max_parts, tusc_s3_parts_visit_cb visit,
                       tusc_s3_cb cb) __attribute__((warn_unused_result));

/* ListObjectsV2 under `prefix` (NULL or "" for all), every page (continuation-token),
 * max_keys per page (0: 1,000), each page to `visit` (required). */
int tusc_s3_list_objects(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *prefix, int max_keys,
                         tusc_s3_objects_visit_cb visit, tusc_s3_cb cb)
    __attribute__((warn_unused_result));

/* ListMultipartUploads under `prefix`, every page (key-marker, upload-id-marker),
 * max_uploads per page (0: 1,000), each page to `visit` (required). */
int tusc_s3_list_multipart_uploads(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *prefix,
                                   int max_uploads, tusc_s3_uploads_visit_cb visit, tusc_s3_cb cb)
    __attribute__((warn_unused_result));

/* PutBucket (CreateBucket in the endpoint's default location); for tests and set-up
 * tools. An existing bucket we own succeeds. */
int tusc_s3_create_bucket(tusc_s3_loop_t *sl, tusc_s3_req_t *req, tusc_s3_cb cb)
    __attribute__((warn_unused_result));

#endif

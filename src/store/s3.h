/*
 * s3 — the S3 store: uploads in an S3 bucket (AWS S3, Ceph RGW, MinIO, Cloudflare R2,
 * Backblaze B2, GCS's XML API) behind store/store.h's asynchronous interface. The layout
 * of the objects, what is acknowledged when and how a crash is survived are described at
 * the top of s3.c.
 *
 * Threads: the store is shared by every loop; each loop that starts operations must be
 * attached first (tusc_store_attach_loop: a libcurl multi and an S3 client of its own)
 * and detached before it ends. An open upload belongs to the loop that opened it. The
 * part-buffer budget (-s3-max-buffer-memory) is process-wide (one mutex); a loop whose
 * upload waits for it is woken with a uv_async.
 */
#ifndef TUSC_STORE_S3_H
#define TUSC_STORE_S3_H

#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

typedef struct tusc_s3_store_options_s {
  const char *bucket;          /* required */
  const char *endpoint;        /* NULL: AWS (https://s3.<region>.amazonaws.com) */
  bool disable_ssl;            /* http:// for an endpoint without a scheme */
  bool path_style;             /* http://host/bucket/key rather than http://bucket.host/key */
  const char *prefix;          /* object name prefix; NULL = "" */
  int64_t part_size;           /* preferred; 0 = 50 MiB */
  int64_t min_part_size;       /* the provider's minimum; 0 = 5 MiB */
  int64_t max_size;            /* -max-size (0: none): parts grow so that it fits 10,000 parts */
  int64_t max_buffer_memory;   /* process-wide bytes of part buffers; 0 = 512 MiB */
  int concurrent_part_uploads; /* per upload; 0 = 10 */
  /* Credentials; access_key NULL: from the environment or the shared file
   * (tusc_s3_creds_load, at start-up). */
  const char *access_key;
  const char *secret_key;
  const char *session_token;
  const char *region;
} tusc_s3_store_options_t;

/* A new S3 store; nothing is sent until an operation runs on an attached loop.
 * Returns 0 and *out, TUSC_EINVALID_ARGUMENT (no bucket, no credentials, a buffer budget
 * below two parts: *why says which), or TUSC_ENOMEM. why may be NULL. */
int tusc_s3_store_new(const tusc_s3_store_options_t *opts, tusc_store_t **out, const char **why);

/* The part size uploads of unknown length use (after -max-size), for logs. */
int64_t tusc_s3_store_part_size(const tusc_store_t *store);

/* Bytes of the part-buffer budget in use now (tests: back to 0 once idle). */
int64_t tusc_s3_store_buffer_used(tusc_store_t *store);

#endif

/*
 * engine — tusc-upload's transfer engine: asks the server what it offers (OPTIONS),
 * walks the PATH arguments lazily, and uploads up to `jobs` files at once on one
 * libcurl multi handle (connections reused, HTTP/2 multiplexed when offered). Each file
 * is one tus upload, or `parts` partial uploads sent at once plus the final
 * (concatenation) for big files. Upload URLs go into the journal before a byte is sent,
 * so a rerun resumes from the server's offset (HEAD) and skips finished files.
 *
 * Failures are per file: connection errors, stalls, 5xx, 408, 423, 429 and checksum
 * mismatches are retried with exponential backoff and jitter (Retry-After honoured); 409
 * re-reads the offset; 404/410 starts the file again; other 4xx fail that file with the
 * server's message while the others go on.
 *
 * Single-threaded; up_engine_run() owns every resource it creates and frees it before
 * returning. SIGINT/SIGTERM stop it cleanly (the journal stays valid).
 */
#ifndef TUSC_UPLOAD_ENGINE_H
#define TUSC_UPLOAD_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "upload/report.h"

typedef struct {
  const char *url;    /* the creation URL (collection), e.g. https://host/files/ */
  char *const *paths; /* files and directories */
  int npaths;
  int jobs;                /* files at once */
  int parts;               /* partial uploads per big file (1 = off) */
  uint64_t parts_min_size; /* smaller files are sent whole */
  uint64_t chunk_size;     /* PATCH body limit; 0 = the rest of the file */
  const char *state_path;  /* journal; NULL = the XDG default */
  int retries;             /* per file, reset whenever it makes progress */
  int retry_max_time;      /* seconds a file may keep failing without progress */
  long speed_limit;        /* bytes/s below which ... */
  long speed_time;         /* ... for this many seconds a transfer is stalled */
  long connect_timeout;    /* seconds */
  const char *checksum;    /* "auto", "none" or an algorithm (sha1, sha256, ...) */
  uint64_t checksum_chunk; /* PATCH size limit when checksums are on and no chunk_size */
  bool verify;             /* GET each finished upload and compare SHA-256 */
  char *const *metadata;   /* "key=value" */
  int nmetadata;
  const char *userpwd;
  char *const *headers; /* "Name: value" */
  int nheaders;
  const char *cacert;
  bool insecure;
  uint64_t limit_rate; /* bytes/s over all transfers; 0 = none */
  bool json;
  bool dry_run;
  enum up_progress_mode progress;
  uint64_t progress_interval_ms;
  int verbose; /* 1: every retry; 2: also libcurl's trace */
} up_config_t;

/* Runs the whole upload. Returns the process exit code: 0 every file is on the server,
 * 1 some failed (or the server could not be reached), 130 interrupted by a signal. */
int up_engine_run(const up_config_t *cfg);

#endif

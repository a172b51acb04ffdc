/*
 * config — tusd-compatible command line (Go flag syntax) into an immutable
 * tusc_config_t, with validation and defaults.
 *
 * Syntax: `-name` and `--name` are equal; `-name=value` or `-name value`; booleans as
 * `-name`, `-name=false`, or `-name true|false`. Durations in Go syntax ("500ms",
 * "1m30s", "2h", "0"); a bare integer means seconds, except for the old alias
 * `-timeout` where it means milliseconds. Aliases: -dir = -upload-dir,
 * -timeout = -network-timeout.
 *
 * Threads: parse on the main thread before workers start; afterwards the struct is
 * read-only and shared by every thread. Owns its strings: tusc_config_dispose frees.
 */
#ifndef TUSC_CONFIG_H
#define TUSC_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum tusc_fsync_mode { TUSC_FSYNC_ALWAYS = 0, TUSC_FSYNC_NEVER };

typedef struct tusc_config_s {
  /* listening */
  char *host;           /* "0.0.0.0" default; dual-stack when "" or "0.0.0.0"/"::" */
  int port;             /* 1080; 0 = ephemeral (tests) */
  char *unix_sock;      /* NULL = TCP */
  char *base_path;      /* "/files/", always with leading and trailing '/' */
  bool behind_proxy;
  bool show_greeting;   /* true */
  bool enable_h2c;      /* HTTP/2 over cleartext by prior knowledge; false */
  int workers;          /* 0 = number of CPUs */
  char *port_file;      /* tusc extra: write the bound port here once listening */

  /* protocol */
  int64_t max_size;     /* 0 = no limit */
  bool disable_download;
  bool disable_termination;
  bool disable_concatenation;
  bool enable_experimental_protocol;
  int64_t max_metadata_size; /* bytes of the Upload-Metadata header; default 64 KiB */
  int64_t expire_after_ms;   /* expiration: unfinished uploads idle this long go; 0 = off */

  /* CORS */
  bool disable_cors;
  char *cors_allow_origin;      /* regex, anchored by tusc; default ".*" */
  bool cors_allow_credentials;
  char *cors_allow_methods;     /* default: "POST, HEAD, PATCH, OPTIONS, GET, DELETE" */
  char *cors_allow_headers;     /* default: tusd's list */
  int64_t cors_max_age;         /* seconds; 86400 */
  char *cors_expose_headers;    /* default: tusd's list */

  /* file store */
  char *upload_dir;     /* "./data" */
  unsigned dir_perms;   /* 0775 */
  unsigned file_perms;  /* 0664 */
  enum tusc_fsync_mode fsync;

  /* HTTP limits */
  int64_t max_header_size;  /* 64 KiB */
  int max_header_count;     /* 100 */

  /* hooks (accepted; run by a later module) */
  char *hooks_dir;
  char *hooks_http;
  char *hooks_http_forward_headers;
  int hooks_http_retry;             /* 3 */
  int64_t hooks_http_backoff_ms;    /* 1000 */
  int64_t hooks_http_timeout_ms;    /* 15000 */
  int64_t hooks_http_size_limit;    /* 5120 */
  char *hooks_enabled_events;       /* NULL = tusd default set, "" = all seven */
  int64_t progress_hooks_interval_ms; /* 1000 */
  int64_t hooks_timeout_ms;         /* 30000 */
  bool hooks_allow_absolute_path;   /* ChangeFileInfo.Storage.Path may leave -upload-dir */
  int64_t hooks_queue_size;         /* non-blocking hooks waiting + running per worker; 1024 */
  int64_t hooks_max_processes;      /* hooks running at once, all workers; 64, 0 = no limit */

  /* TLS (src/net/tls) */
  char *tls_certificate;
  char *tls_key;
  char *tls_mode;       /* "tls12" */
  char *tls_ktls;       /* "auto" (kernel TLS where the kernel has it) or "off" */
  int http_redirect_port; /* 0 = none; else a plain listener answering 308 to https */
  bool hsts;            /* send Strict-Transport-Security on TLS responses */
  int64_t hsts_max_age; /* seconds; 31536000 */

  /* privileges: switch to this user/group once the listeners are bound */
  char *run_user;
  char *run_group;

  /* metrics and logs */
  bool expose_metrics;  /* true */
  char *metrics_path;   /* "/metrics" */
  char *metrics_listen; /* "ADDR:PORT": serve metrics there only; NULL = main listener */
  bool verbose;
  char *log_format;     /* "text" | "json" */
  bool show_startup_logs;

  /* timeouts, milliseconds */
  int64_t network_timeout_ms;      /* 60000 */
  int64_t shutdown_timeout_ms;     /* 10000 */
  int64_t acquire_lock_timeout_ms; /* 20000 */

  /* S3 store (store/s3.c): -s3-bucket selects it */
  char *s3_bucket;
  char *s3_endpoint;
  char *s3_object_prefix;
  int64_t s3_part_size;           /* preferred part size; 50 MiB */
  int64_t s3_min_part_size;       /* the provider's minimum; 5 MiB */
  int64_t s3_max_buffer_memory;   /* all part buffers of the process; 512 MiB */
  int s3_concurrent_part_uploads; /* parts in flight per upload; 10 */
  bool s3_disable_ssl;            /* http:// for an endpoint given without a scheme */
  bool s3_disable_content_hashes; /* accepted for tusd; tusc sends no content hashes */
  char *s3_addressing;            /* "auto" | "path" | "virtual" */

  /* authentication and ownership (src/auth); all off by default */
  char *auth_htpasswd;     /* Basic auth against this htpasswd file */
  char *auth_jwt_key;      /* Bearer JWTs: HMAC secret or PEM public key file */
  char *auth_jwt_alg;      /* "HS256" | "RS256" | "ES256" */
  char *auth_jwt_audience; /* required "aud" when set */
  char *auth_jwt_issuer;   /* required "iss" when set */
  char *auth_realm;        /* WWW-Authenticate realm; "tusc" */
  bool auth_hide_foreign;  /* another principal's upload answers 404, not 403 */

  /* host and proxy trust */
  char *allowed_hosts;   /* comma-separated Host names; NULL = any */
  char *trusted_proxies; /* comma-separated CIDRs whose forwarding headers count */

  /* connection limits */
  int max_connections;          /* per process; 0 = unlimited */
  int max_connections_per_ip;   /* 0 = unlimited */
  int64_t header_timeout_ms;    /* whole request head must arrive within; 10000 */
  int64_t min_upload_rate;      /* body bytes/s over the window; 0 = off */
  int64_t min_upload_rate_window_ms; /* 30000 */

  /* upload locks across instances (lock/redis.h) */
  char *redis_url;             /* NULL = the local lock */
  int64_t redis_lock_lease_ms; /* 10000 */
} tusc_config_t;

/* Result of tusc_config_parse besides 0 (= run the server). */
enum { TUSC_CONFIG_EXIT_OK = 1, TUSC_CONFIG_EXIT_USAGE = 2 };

/* Fills `cfg` with defaults, then applies argv[1..argc-1].
 * Returns 0 to run; TUSC_CONFIG_EXIT_OK after printing -help/-version to `out`;
 * TUSC_CONFIG_EXIT_USAGE after writing what is wrong (the flag and the problem) and,
 * for unknown flags, the usage to `err`. On any return cfg must be disposed. */
int tusc_config_parse(tusc_config_t *cfg, int argc, char **argv, FILE *out, FILE *err);

void tusc_config_dispose(tusc_config_t *cfg);

/* Prints the man-style usage text. */
void tusc_config_usage(FILE *out);

/* Go duration ("1h2m3.5s", "500ms", "0"; a bare integer = `bare_unit_ms` ms each) into
 * milliseconds. Returns 0 or TUSC_EINVALID_ARGUMENT; *out written only on success. */
int tusc_duration_parse(const char *s, int64_t bare_unit_ms, int64_t *out_ms);

#endif

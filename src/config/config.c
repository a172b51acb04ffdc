/*
 * config — Go flag syntax into tusc_config_t. One table describes every flag (name,
 * kind, field offset, range, usage text); parsing, defaults shown in the usage page and
 * validation are all driven by it, so a flag cannot be parsed one way and documented
 * another.
 *
 * Messages follow Go's flag package wording where it has one ("flag provided but not
 * defined: -x", "flag needs an argument: -x", "invalid value \"v\" for flag -x: ...") so
 * operators coming from tusd recognise them.
 */
#include "config/config.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

#ifndef TUSC_VERSION
#define TUSC_VERSION "0.0.0-dev"
#endif

#define DEFAULT_CORS_ALLOW_METHODS "POST, HEAD, PATCH, OPTIONS, GET, DELETE"
#define DEFAULT_CORS_ALLOW_HEADERS                                                                 \
  "Authorization, Origin, X-Requested-With, X-Request-ID, X-HTTP-Method-Override, "                \
  "Content-Type, Upload-Length, Upload-Offset, Tus-Resumable, Upload-Metadata, "                   \
  "Upload-Defer-Length, Upload-Concat, Upload-Incomplete, Upload-Complete, "                       \
  "Upload-Draft-Interop-Version"
#define DEFAULT_CORS_EXPOSE_HEADERS                                                                \
  "Upload-Offset, Location, Upload-Length, Tus-Version, Tus-Resumable, Tus-Max-Size, "             \
  "Tus-Extension, Upload-Metadata, Upload-Defer-Length, Upload-Concat, Upload-Incomplete, "        \
  "Upload-Complete, Upload-Draft-Interop-Version"

#define MS_PER_S INT64_C(1000)

enum flag_kind {
  K_STRING,    /* heap copy, "" kept */
  K_OPTSTRING, /* heap copy, "" means unset (NULL) */
  K_BOOL,
  K_INT,       /* int field */
  K_INT64,     /* int64_t field */
  K_DURATION,  /* int64_t milliseconds */
  K_PERMS,     /* unsigned, octal */
  K_CHOICE,    /* heap copy of one of `choices` */
  K_FSYNC,     /* enum tusc_fsync_mode */
  K_BASE_PATH, /* normalised to /…/ */
  K_URL_PATH,  /* must start with '/' */
  K_EVENTS,    /* hook event list, normalised */
  K_HELP,
  K_VERSION
};

enum flag_group {
  G_LISTEN,
  G_TLS,
  G_PROTOCOL,
  G_CORS,
  G_FILESTORE,
  G_LIMITS,
  G_HOOKS,
  G_METRICS,
  G_TIMEOUTS,
  G_S3,
  G_AUTH,
  G_LOCKS,
  G_GENERAL,
  G__COUNT
};

static const char *const group_titles[G__COUNT] = {
    [G_LISTEN] = "Listening",
    [G_TLS] = "TLS",
    [G_PROTOCOL] = "Upload protocol",
    [G_CORS] = "CORS",
    [G_FILESTORE] = "File storage",
    [G_LIMITS] = "HTTP limits",
    [G_HOOKS] = "Hooks",
    [G_METRICS] = "Metrics and logging",
    [G_TIMEOUTS] = "Timeouts",
    [G_S3] = "S3 storage (-s3-bucket selects it instead of -upload-dir)",
    [G_AUTH] = "Authentication, hosts and proxies",
    [G_LOCKS] = "Upload locks across instances",
    [G_GENERAL] = "General",
};

static const char *const tls_modes[] = {"tls12", "tls12-strong", "tls13", NULL};
static const char *const tls_ktls_modes[] = {"auto", "off", NULL};
static const char *const jwt_algs[] = {"HS256", "RS256", "ES256", NULL};
static const char *const log_formats[] = {"text", "json", NULL};
static const char *const s3_addressings[] = {"auto", "path", "virtual", NULL};
static const char *const fsync_modes[] = {"always", "never", NULL};
static const char *const hook_events[] = {"pre-create",     "post-create", "post-receive",
                                          "pre-finish",     "post-finish", "pre-terminate",
                                          "post-terminate", NULL};

struct flag_def {
  const char *name;
  enum flag_kind kind;
  enum flag_group group;
  size_t off;
  int64_t min, max;           /* K_INT, K_INT64 */
  int64_t bare_unit_ms;       /* K_DURATION: what a bare integer counts */
  const char *const *choices; /* K_CHOICE, K_FSYNC */
  const char *arg;            /* placeholder in the usage page; NULL for booleans */
  const char *help;
  bool alias; /* listed under its main flag, not on its own */
};

#define F(field) offsetof(tusc_config_t, field)
#define NOFIELD 0

static const struct flag_def flags[] = {
    /* listening */
    {"host", K_STRING, G_LISTEN, F(host), 0, 0, 0, NULL, "HOST",
     "Address to listen on; \"\", 0.0.0.0 or :: listen on all IPv4 and IPv6 addresses.", false},
    {"port", K_INT, G_LISTEN, F(port), 0, 65535, 0, NULL, "PORT",
     "TCP port to listen on; 0 picks a free port (see -port-file).", false},
    {"unix-sock", K_OPTSTRING, G_LISTEN, F(unix_sock), 0, 0, 0, NULL, "PATH",
     "Listen on this UNIX socket instead of TCP.", false},
    {"base-path", K_BASE_PATH, G_LISTEN, F(base_path), 0, 0, 0, NULL, "PATH",
     "URL path uploads live under; a leading and trailing '/' are added when missing.", false},
    {"behind-proxy", K_BOOL, G_LISTEN, F(behind_proxy), 0, 0, 0, NULL, NULL,
     "Trust X-Forwarded-Host/-Proto/-Prefix and Forwarded headers from a reverse proxy.", false},
    {"enable-h2c", K_BOOL, G_LISTEN, F(enable_h2c), 0, 0, 0, NULL, NULL,
     "Also speak HTTP/2 over cleartext to clients that start with its preface (prior "
     "knowledge). Over TLS, HTTP/2 is offered by ALPN either way.",
     false},
    {"show-greeting", K_BOOL, G_LISTEN, F(show_greeting), 0, 0, 0, NULL, NULL,
     "Answer GET on the root path with a short greeting page.", false},
    {"workers", K_INT, G_LISTEN, F(workers), 0, 1024, 0, NULL, "N",
     "Event-loop threads, each with its own listening socket; 0 = one per CPU.", false},
    {"port-file", K_OPTSTRING, G_LISTEN, F(port_file), 0, 0, 0, NULL, "PATH",
     "Write the bound TCP port to this file once listening (for scripts and tests).", false},

    /* TLS */
    {"tls-certificate", K_OPTSTRING, G_TLS, F(tls_certificate), 0, 0, 0, NULL, "FILE",
     "PEM certificate chain; serve HTTPS (needs -tls-key).", false},
    {"tls-key", K_OPTSTRING, G_TLS, F(tls_key), 0, 0, 0, NULL, "FILE",
     "PEM private key for -tls-certificate.", false},
    {"tls-mode", K_CHOICE, G_TLS, F(tls_mode), 0, 0, 0, tls_modes, "MODE",
     "tusd's modes: tls12 (TLS 1.2 and 1.3; TLS 1.2 only with ECDHE and AES-GCM or "
     "ChaCha20-Poly1305), tls12-strong (TLS 1.2 only, ECDHE with AES-256-GCM) or tls13 (TLS 1.3 "
     "only).",
     false},
    {"tls-ktls", K_CHOICE, G_TLS, F(tls_ktls), 0, 0, 0, tls_ktls_modes, "MODE",
     "Kernel TLS: auto hands each connection's records to the kernel after the handshake "
     "when it has the tls module (Linux kTLS; logged at startup, counted in "
     "tusc_tls_ktls_connections_total), off keeps all TLS in user space.",
     false},
    {"http-redirect-port", K_INT, G_TLS, F(http_redirect_port), 0, 65535, 0, NULL, "PORT",
     "Also listen for plain HTTP on this port and answer every request with a 308 redirect "
     "to the https URL (needs -tls-certificate).",
     false},
    {"hsts", K_BOOL, G_TLS, F(hsts), 0, 0, 0, NULL, NULL,
     "Send Strict-Transport-Security on HTTPS responses (needs -tls-certificate).", false},
    {"hsts-max-age", K_INT64, G_TLS, F(hsts_max_age), 0, INT64_MAX, 0, NULL, "SECONDS",
     "max-age of the Strict-Transport-Security header.", false},
    {"user", K_OPTSTRING, G_GENERAL, F(run_user), 0, 0, 0, NULL, "NAME",
     "After binding the listening sockets (e.g. port 443) as root, switch to this user "
     "(and its primary group unless -group is given); tusc refuses to go on as root if "
     "that fails.",
     false},
    {"group", K_OPTSTRING, G_GENERAL, F(run_group), 0, 0, 0, NULL, "NAME",
     "Group to switch to with -user (or alone: only the group changes).", false},

    /* protocol */
    {"max-size", K_INT64, G_PROTOCOL, F(max_size), 0, INT64_MAX, 0, NULL, "BYTES",
     "Largest upload accepted; 0 = no limit.", false},
    {"disable-download", K_BOOL, G_PROTOCOL, F(disable_download), 0, 0, 0, NULL, NULL,
     "Do not serve GET downloads of uploads.", false},
    {"disable-termination", K_BOOL, G_PROTOCOL, F(disable_termination), 0, 0, 0, NULL, NULL,
     "Disable the termination extension (DELETE).", false},
    {"disable-concatenation", K_BOOL, G_PROTOCOL, F(disable_concatenation), 0, 0, 0, NULL, NULL,
     "Disable the concatenation extension.", false},
    {"enable-experimental-protocol", K_BOOL, G_PROTOCOL, F(enable_experimental_protocol), 0, 0, 0,
     NULL, NULL, "Also speak the IETF resumable-uploads draft (experimental).", false},
    {"max-metadata-size", K_INT64, G_PROTOCOL, F(max_metadata_size), 0, INT64_MAX, 0, NULL, "BYTES",
     "Largest Upload-Metadata header accepted.", false},
    {"expire-after", K_DURATION, G_PROTOCOL, F(expire_after_ms), 0, INT64_MAX, MS_PER_S, NULL,
     "DURATION",
     "Expiration extension: delete unfinished uploads this long after their last activity "
     "(creation or last byte written), e.g. 24h; 0 = never.",
     false},

    /* CORS */
    {"disable-cors", K_BOOL, G_CORS, F(disable_cors), 0, 0, 0, NULL, NULL, "Send no CORS headers.",
     false},
    {"cors-allow-origin", K_STRING, G_CORS, F(cors_allow_origin), 0, 0, 0, NULL, "REGEX",
     "Origins allowed, as a regular expression matched against the whole Origin header.", false},
    {"cors-allow-credentials", K_BOOL, G_CORS, F(cors_allow_credentials), 0, 0, 0, NULL, NULL,
     "Send Access-Control-Allow-Credentials: true.", false},
    {"cors-allow-methods", K_STRING, G_CORS, F(cors_allow_methods), 0, 0, 0, NULL, "LIST",
     "Access-Control-Allow-Methods value.", false},
    {"cors-allow-headers", K_STRING, G_CORS, F(cors_allow_headers), 0, 0, 0, NULL, "LIST",
     "Access-Control-Allow-Headers value.", false},
    {"cors-max-age", K_INT64, G_CORS, F(cors_max_age), 0, INT64_MAX, 0, NULL, "SECONDS",
     "Access-Control-Max-Age value.", false},
    {"cors-expose-headers", K_STRING, G_CORS, F(cors_expose_headers), 0, 0, 0, NULL, "LIST",
     "Access-Control-Expose-Headers value.", false},

    /* file store */
    {"upload-dir", K_STRING, G_FILESTORE, F(upload_dir), 0, 0, 0, NULL, "DIR",
     "Directory uploads are stored in (alias: -dir).", false},
    {"dir", K_STRING, G_FILESTORE, F(upload_dir), 0, 0, 0, NULL, "DIR", NULL, true},
    {"dir-perms", K_PERMS, G_FILESTORE, F(dir_perms), 0, 0777, 0, NULL, "OCTAL",
     "Mode of directories tusc creates (before the umask).", false},
    {"file-perms", K_PERMS, G_FILESTORE, F(file_perms), 0, 0777, 0, NULL, "OCTAL",
     "Mode of upload and .info files (before the umask).", false},
    {"fsync", K_FSYNC, G_FILESTORE, F(fsync), 0, 0, 0, fsync_modes, "MODE",
     "always: acknowledge bytes only once they are on stable storage; never: trust the "
     "page cache (faster, may lose acknowledged bytes on power loss).",
     false},

    /* HTTP limits */
    {"max-header-size", K_INT64, G_LIMITS, F(max_header_size), 1, INT64_C(1) << 30, 0, NULL,
     "BYTES", "Largest request head (request line and headers) accepted.", false},
    {"max-header-count", K_INT, G_LIMITS, F(max_header_count), 1, 100000, 0, NULL, "N",
     "Most request headers accepted.", false},
    {"max-connections", K_INT, G_LIMITS, F(max_connections), 0, 10000000, 0, NULL, "N",
     "Most open client connections in total; more are answered 503 and closed. 0 = no limit.",
     false},
    {"max-connections-per-ip", K_INT, G_LIMITS, F(max_connections_per_ip), 0, 10000000, 0, NULL,
     "N", "Most open connections from one client address; 0 = no limit.", false},
    {"header-timeout", K_DURATION, G_LIMITS, F(header_timeout_ms), 0, INT64_MAX, MS_PER_S, NULL,
     "DURATION",
     "A request line and headers must arrive whole within this time (slow clients are "
     "closed); 0 = only -network-timeout applies.",
     false},
    {"min-upload-rate", K_INT64, G_LIMITS, F(min_upload_rate), 0, INT64_MAX, 0, NULL,
     "BYTES_PER_SEC",
     "Cut a PATCH body arriving slower than this over -min-upload-rate-window (its bytes are "
     "kept); 0 = off.",
     false},
    {"min-upload-rate-window", K_DURATION, G_LIMITS, F(min_upload_rate_window_ms), 1, INT64_MAX,
     MS_PER_S, NULL, "DURATION", "Window over which -min-upload-rate is measured.", false},

    /* hooks */
    {"hooks-dir", K_OPTSTRING, G_HOOKS, F(hooks_dir), 0, 0, 0, NULL, "DIR",
     "Run executable hook files from this directory (named after the event).", false},
    {"hooks-http", K_OPTSTRING, G_HOOKS, F(hooks_http), 0, 0, 0, NULL, "URL",
     "POST hook events as JSON to this endpoint.", false},
    {"hooks-http-forward-headers", K_OPTSTRING, G_HOOKS, F(hooks_http_forward_headers), 0, 0, 0,
     NULL, "LIST", "Client request headers (comma-separated) forwarded to -hooks-http.", false},
    {"hooks-http-retry", K_INT, G_HOOKS, F(hooks_http_retry), 0, 100, 0, NULL, "N",
     "Attempts in total for an HTTP hook on network errors and 5xx answers.", false},
    {"hooks-http-backoff", K_DURATION, G_HOOKS, F(hooks_http_backoff_ms), 0, INT64_MAX, MS_PER_S,
     NULL, "DURATION", "Pause between HTTP hook attempts.", false},
    {"hooks-http-timeout", K_DURATION, G_HOOKS, F(hooks_http_timeout_ms), 0, INT64_MAX, MS_PER_S,
     NULL, "DURATION", "Time limit for an HTTP hook, all attempts included.", false},
    {"hooks-http-size-limit", K_INT64, G_HOOKS, F(hooks_http_size_limit), 0, INT64_MAX, 0, NULL,
     "BYTES", "Largest HTTP hook response body accepted.", false},
    {"hooks-enabled-events", K_EVENTS, G_HOOKS, F(hooks_enabled_events), 0, 0, 0, NULL, "LIST",
     "Comma-separated events to run hooks for (pre-create, post-create, post-receive, "
     "pre-finish, post-finish, pre-terminate, post-terminate); an empty value enables all "
     "seven. Default: pre-create,post-create,post-receive,post-terminate,post-finish.",
     false},
    {"progress-hooks-interval", K_DURATION, G_HOOKS, F(progress_hooks_interval_ms), 0, INT64_MAX,
     MS_PER_S, NULL, "DURATION", "Least time between two post-receive hooks of one request.",
     false},
    {"hooks-timeout", K_DURATION, G_HOOKS, F(hooks_timeout_ms), 0, INT64_MAX, MS_PER_S, NULL,
     "DURATION", "Time limit for a file hook; the process is killed after it.", false},
    {"hooks-allow-absolute-path", K_BOOL, G_HOOKS, F(hooks_allow_absolute_path), 0, 0, 0, NULL,
     NULL, "Let a pre-create hook's ChangeFileInfo.Storage.Path point outside -upload-dir.", false},
    {"hooks-queue-size", K_INT64, G_HOOKS, F(hooks_queue_size), 1, INT64_C(1) << 24, 0, NULL, "N",
     "Non-blocking (post-*) hooks waiting or running per worker; more are dropped and logged.",
     false},
    {"hooks-max-processes", K_INT64, G_HOOKS, F(hooks_max_processes), 0, INT64_C(1) << 20, 0, NULL,
     "N",
     "Hooks running at once in the whole server (processes for -hooks-dir, requests for "
     "-hooks-http); 0 = no limit. A blocking (pre-*) hook beyond it waits, up to N per "
     "worker; past that its request is answered 503 ERR_HOOKS_BUSY with Retry-After.",
     false},

    /* metrics and logs */
    {"expose-metrics", K_BOOL, G_METRICS, F(expose_metrics), 0, 0, 0, NULL, NULL,
     "Serve Prometheus metrics.", false},
    {"metrics-path", K_URL_PATH, G_METRICS, F(metrics_path), 0, 0, 0, NULL, "PATH",
     "URL path of the metrics endpoint.", false},
    {"metrics-listen", K_OPTSTRING, G_METRICS, F(metrics_listen), 0, 0, 0, NULL, "ADDR:PORT",
     "Serve -metrics-path on this separate address (e.g. 127.0.0.1:9100) instead of the "
     "upload listener.",
     false},
    {"verbose", K_BOOL, G_METRICS, F(verbose), 0, 0, 0, NULL, NULL,
     "Log every request and debug details.", false},
    {"log-format", K_CHOICE, G_METRICS, F(log_format), 0, 0, 0, log_formats, "FORMAT",
     "text (logfmt, like tusd) or json (one object per line).", false},
    {"show-startup-logs", K_BOOL, G_METRICS, F(show_startup_logs), 0, 0, 0, NULL, NULL,
     "Log the effective configuration at startup.", false},

    /* timeouts */
    {"network-timeout", K_DURATION, G_TIMEOUTS, F(network_timeout_ms), 0, INT64_MAX, MS_PER_S, NULL,
     "DURATION",
     "Close a connection that sends or accepts nothing for this long (alias: -timeout, "
     "where a bare number is milliseconds).",
     false},
    {"timeout", K_DURATION, G_TIMEOUTS, F(network_timeout_ms), 0, INT64_MAX, 1, NULL, "DURATION",
     NULL, true},
    {"shutdown-timeout", K_DURATION, G_TIMEOUTS, F(shutdown_timeout_ms), 0, INT64_MAX, MS_PER_S,
     NULL, "DURATION", "On SIGTERM/SIGINT, wait this long for requests in flight before exiting.",
     false},
    {"acquire-lock-timeout", K_DURATION, G_TIMEOUTS, F(acquire_lock_timeout_ms), 0, INT64_MAX,
     MS_PER_S, NULL, "DURATION",
     "How long a request waits for another request to release an upload.", false},

    /* S3 */
    {"s3-bucket", K_OPTSTRING, G_S3, F(s3_bucket), 0, 0, 0, NULL, "NAME",
     "Store uploads in this S3 bucket instead of -upload-dir. Credentials from "
     "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, else the shared "
     "credentials file (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials, profile "
     "AWS_PROFILE); region from AWS_REGION. Upload locks are then held within this "
     "process only.",
     false},
    {"s3-endpoint", K_OPTSTRING, G_S3, F(s3_endpoint), 0, 0, 0, NULL, "URL",
     "S3-compatible endpoint (MinIO, Ceph, ...); needs -s3-bucket.", false},
    {"s3-object-prefix", K_OPTSTRING, G_S3, F(s3_object_prefix), 0, 0, 0, NULL, "PREFIX",
     "Prefix for object names (e.g. uploads/).", false},
    {"s3-part-size", K_INT64, G_S3, F(s3_part_size), 1, INT64_C(5) << 30, 0, NULL, "BYTES",
     "Preferred part size. Every part but the last has the same size (Cloudflare R2 needs "
     "it); it grows when -max-size would not fit in 10,000 parts.",
     false},
    {"s3-min-part-size", K_INT64, G_S3, F(s3_min_part_size), 1, INT64_C(5) << 30, 0, NULL, "BYTES",
     "The provider's smallest part (5 MiB on AWS S3); parts are never smaller, except the "
     "last one.",
     false},
    {"s3-max-buffer-memory", K_INT64, G_S3, F(s3_max_buffer_memory), 1, INT64_MAX, 0, NULL, "BYTES",
     "Memory for part buffers in the whole process. A PATCH body streams into part "
     "buffers and full parts upload while it arrives; each PATCH in progress holds two "
     "parts and 256 KiB (less when the upload is smaller), and once this is used up, "
     "reading from further clients pauses until memory is given back. Must hold two "
     "parts and 256 KiB.",
     false},
    {"s3-concurrent-part-uploads", K_INT, G_S3, F(s3_concurrent_part_uploads), 1, 1000, 0, NULL,
     "N", "Parts of one upload sent to S3 at the same time.", false},
    {"s3-disable-ssl", K_BOOL, G_S3, F(s3_disable_ssl), 0, 0, 0, NULL, NULL,
     "Use http:// for an -s3-endpoint given without a scheme (an http:// or https:// "
     "endpoint is used as written).",
     false},
    {"s3-addressing", K_CHOICE, G_S3, F(s3_addressing), 0, 0, 0, s3_addressings, "STYLE",
     "auto: path-style URLs (http://host/bucket/key) with -s3-endpoint, as tusd, and "
     "virtual-host URLs (http://bucket.host/key) for AWS; path or virtual forces one.",
     false},
    {"s3-disable-content-hashes", K_BOOL, G_S3, F(s3_disable_content_hashes), 0, 0, 0, NULL, NULL,
     "Accepted for tusd compatibility: tusc sends no content hashes with parts anyway "
     "(UNSIGNED-PAYLOAD; TLS protects the bytes).",
     false},

    /* authentication, hosts, proxies */
    {"auth-htpasswd", K_OPTSTRING, G_AUTH, F(auth_htpasswd), 0, 0, 0, NULL, "FILE",
     "Require HTTP Basic auth against this htpasswd file (bcrypt, sha512-crypt or yescrypt "
     "entries; reloaded on SIGHUP).",
     false},
    {"auth-jwt-key", K_OPTSTRING, G_AUTH, F(auth_jwt_key), 0, 0, 0, NULL, "FILE",
     "Accept Bearer JWTs signed with this key: the HMAC secret (HS256) or a PEM public key "
     "(RS256, ES256); reloaded on SIGHUP.",
     false},
    {"auth-jwt-alg", K_CHOICE, G_AUTH, F(auth_jwt_alg), 0, 0, 0, jwt_algs, "ALG",
     "Signature algorithm JWTs must use: HS256, RS256 or ES256.", false},
    {"auth-jwt-audience", K_OPTSTRING, G_AUTH, F(auth_jwt_audience), 0, 0, 0, NULL, "AUD",
     "Refuse JWTs whose \"aud\" does not contain this value.", false},
    {"auth-jwt-issuer", K_OPTSTRING, G_AUTH, F(auth_jwt_issuer), 0, 0, 0, NULL, "ISS",
     "Refuse JWTs whose \"iss\" is not this value.", false},
    {"auth-realm", K_STRING, G_AUTH, F(auth_realm), 0, 0, 0, NULL, "REALM",
     "Realm named in the WWW-Authenticate challenge.", false},
    {"auth-hide-foreign", K_BOOL, G_AUTH, F(auth_hide_foreign), 0, 0, 0, NULL, NULL,
     "Answer uploads owned by another user exactly as missing ones (404) instead of 403.", false},
    {"allowed-hosts", K_OPTSTRING, G_AUTH, F(allowed_hosts), 0, 0, 0, NULL, "LIST",
     "Comma-separated host names accepted in the Host header (and, from a trusted proxy, "
     "in X-Forwarded-Host / Forwarded host=); others get 421.",
     false},
    {"trusted-proxies", K_OPTSTRING, G_AUTH, F(trusted_proxies), 0, 0, 0, NULL, "CIDRS",
     "Comma-separated addresses or CIDR ranges whose X-Forwarded-*/Forwarded headers are "
     "believed (with -behind-proxy); the client is the right-most X-Forwarded-For address "
     "not in this list.",
     false},

    /* upload locks across instances (lock/redis.h) */
    {"redis-url", K_OPTSTRING, G_LOCKS, F(redis_url), 0, 0, 0, NULL, "URL",
     "Lock uploads in Redis so that several tusc instances can serve them: "
     "redis://[[user]:password@]host[:port][/db] or unix:///path/to.sock[?db=N]. "
     "Unreachable Redis: requests that need a lock get 503.",
     false},
    {"redis-lock-lease", K_DURATION, G_LOCKS, F(redis_lock_lease_ms), 0, INT64_MAX, MS_PER_S,
     NULL, "DURATION",
     "How long a lock outlives an instance that died holding it (renewed every third of it "
     "while held).",
     false},

    /* general */
    {"help", K_HELP, G_GENERAL, NOFIELD, 0, 0, 0, NULL, NULL, "Print this page and exit (also -h).",
     false},
    {"h", K_HELP, G_GENERAL, NOFIELD, 0, 0, 0, NULL, NULL, NULL, true},
    {"version", K_VERSION, G_GENERAL, NOFIELD, 0, 0, 0, NULL, NULL, "Print the version and exit.",
     false},
};

#define NFLAGS (sizeof flags / sizeof flags[0])

/* tusd flags tusc recognises but will not honour. Rejecting them loudly beats ignoring
 * them: an operator who asked for gRPC hooks must not get a server that runs none. A
 * name ending in '*' matches every flag with that prefix. */
struct unsupported_def {
  const char *name;
  const char *reason;
};

static const struct unsupported_def unsupported[] = {
    {"hooks-grpc*", "gRPC hooks are not implemented; use -hooks-http or -hooks-dir"},
    {"hooks-plugin", "Go plugins cannot be loaded by a C server; use -hooks-http or -hooks-dir"},
    {"hooks-stop-code", "removed in tusd v2; use the StopUpload hook response"},
    {"gcs-*", "Google Cloud Storage is not implemented; use its S3-compatible API"},
    {"azure-*", "Azure Blob Storage is not implemented"},
    {"expose-pprof", "pprof is specific to Go programs"},
    {"pprof-*", "pprof is specific to Go programs"},
    {"s3-transfer-acceleration", "S3 transfer acceleration is not implemented"},
    {"s3-max-buffered-parts",
     "tusc buffers parts in memory, not on disk; see -s3-max-buffer-memory"},
    {"s3-use-minio-sdk", "tusc has its own S3 client; give the MinIO URL with -s3-endpoint"},
    {"filelock-*", "tusc's upload locks do not poll; see -acquire-lock-timeout"},
    {"request-completion-timeout", "tusc stops request work as soon as the client goes away"},
    {"cpuprofile", "profiling flags are specific to Go programs"},
};

/* Every heap string field, for dispose. */
static const size_t string_fields[] = {
    F(host),
    F(unix_sock),
    F(base_path),
    F(port_file),
    F(cors_allow_origin),
    F(cors_allow_methods),
    F(cors_allow_headers),
    F(cors_expose_headers),
    F(upload_dir),
    F(hooks_dir),
    F(hooks_http),
    F(hooks_http_forward_headers),
    F(hooks_enabled_events),
    F(tls_certificate),
    F(tls_key),
    F(tls_mode),
    F(tls_ktls),
    F(run_user),
    F(run_group),
    F(metrics_path),
    F(metrics_listen),
    F(log_format),
    F(s3_bucket),
    F(s3_endpoint),
    F(s3_object_prefix),
    F(s3_addressing),
    F(auth_htpasswd),
    F(auth_jwt_key),
    F(auth_jwt_alg),
    F(auth_jwt_audience),
    F(auth_jwt_issuer),
    F(auth_realm),
    F(allowed_hosts),
    F(trusted_proxies),
    F(redis_url),
};

static char **str_field(tusc_config_t *cfg, size_t off) {
  return (char **)(void *)((char *)cfg + off);
}

static void set_owned(tusc_config_t *cfg, size_t off, char *s) {
  char **slot = str_field(cfg, off);
  free(*slot);
  *slot = s;
}

static int set_copy(tusc_config_t *cfg, size_t off, const char *s) {
  char *copy = NULL;
  if (s != NULL) {
    copy = strdup(s);
    if (copy == NULL)
      return TUSC_ENOMEM;
  }
  set_owned(cfg, off, copy);
  return 0;
}

void tusc_config_dispose(tusc_config_t *cfg) {
  if (cfg == NULL)
    return;
  for (size_t i = 0; i < sizeof string_fields / sizeof string_fields[0]; i++)
    set_owned(cfg, string_fields[i], NULL);
}

static int set_defaults(tusc_config_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->port = 1080;
  cfg->show_greeting = true;
  cfg->max_metadata_size = 64 * 1024;
  cfg->cors_max_age = 86400;
  cfg->dir_perms = 0775;
  cfg->file_perms = 0664;
  cfg->fsync = TUSC_FSYNC_ALWAYS;
  cfg->max_header_size = 64 * 1024;
  cfg->max_header_count = 100;
  cfg->hooks_http_retry = 3;
  cfg->hooks_http_backoff_ms = 1000;
  cfg->hooks_http_timeout_ms = 15000;
  cfg->hooks_http_size_limit = 5120;
  cfg->progress_hooks_interval_ms = 1000;
  cfg->hooks_timeout_ms = 30000;
  cfg->hooks_queue_size = 1024;
  cfg->hooks_max_processes = 64;
  cfg->expose_metrics = true;
  cfg->network_timeout_ms = 60000;
  cfg->hsts_max_age = 31536000;
  cfg->shutdown_timeout_ms = 10000;
  cfg->acquire_lock_timeout_ms = 20000;
  cfg->header_timeout_ms = 10000;
  cfg->min_upload_rate_window_ms = 30000;
  cfg->redis_lock_lease_ms = 10000;
  cfg->s3_part_size = INT64_C(50) << 20;
  cfg->s3_min_part_size = INT64_C(5) << 20;
  cfg->s3_max_buffer_memory = INT64_C(512) << 20;
  cfg->s3_concurrent_part_uploads = 10;

  static const struct {
    size_t off;
    const char *value;
  } strings[] = {
      {F(host), "0.0.0.0"},
      {F(base_path), "/files/"},
      {F(cors_allow_origin), ".*"},
      {F(cors_allow_methods), DEFAULT_CORS_ALLOW_METHODS},
      {F(cors_allow_headers), DEFAULT_CORS_ALLOW_HEADERS},
      {F(cors_expose_headers), DEFAULT_CORS_EXPOSE_HEADERS},
      {F(upload_dir), "./data"},
      {F(tls_mode), "tls12"},
      {F(tls_ktls), "auto"},
      {F(metrics_path), "/metrics"},
      {F(log_format), "text"},
      {F(auth_jwt_alg), "HS256"},
      {F(auth_realm), "tusc"},
      {F(s3_addressing), "auto"},
  };
  for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
    int rc = set_copy(cfg, strings[i].off, strings[i].value);
    if (rc != 0)
      return rc;
  }
  return 0;
}

/* ---- durations ---------------------------------------------------------------------- */

static bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

static int64_t unit_ns(const char *u, size_t len) {
  static const struct {
    const char *name;
    int64_t ns;
  } units[] = {
      {"ns", 1},
      {"us", INT64_C(1000)},
      {"\xc2\xb5s", INT64_C(1000)}, /* U+00B5 micro sign */
      {"\xce\xbcs", INT64_C(1000)}, /* U+03BC Greek mu; Go accepts both */
      {"ms", INT64_C(1000000)},
      {"s", INT64_C(1000000000)},
      {"m", INT64_C(60000000000)},
      {"h", INT64_C(3600000000000)},
  };
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
    if (strlen(units[i].name) == len && memcmp(units[i].name, u, len) == 0)
      return units[i].ns;
  return 0;
}

/* Digits only, no sign; fails on overflow of int64. */
static bool parse_digits(const char *s, size_t len, int64_t *out) {
  int64_t v = 0;
  if (len == 0)
    return false;
  for (size_t i = 0; i < len; i++) {
    if (!is_digit(s[i]))
      return false;
    int d = s[i] - '0';
    if (v > (INT64_MAX - d) / 10)
      return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

/* Like Go's time.ParseDuration, the sum is kept in nanoseconds and limited to what an
 * int64 of nanoseconds holds (~292 years), then converted to milliseconds. */
int tusc_duration_parse(const char *s, int64_t bare_unit_ms, int64_t *out_ms) {
  if (s == NULL || out_ms == NULL)
    return TUSC_EINVALID_ARGUMENT;
  const char *p = s;
  if (*p == '+')
    p++;
  if (*p == '\0' || *p == '-')
    return TUSC_EINVALID_ARGUMENT;

  size_t len = strlen(p);
  int64_t bare;
  if (parse_digits(p, len, &bare)) {
    if (bare == 0) {
      *out_ms = 0;
      return 0;
    }
    if (bare_unit_ms <= 0 || bare > INT64_MAX / bare_unit_ms)
      return TUSC_EINVALID_ARGUMENT;
    *out_ms = bare * bare_unit_ms;
    return 0;
  }

  int64_t total_ns = 0;
  while (*p != '\0') {
    int64_t whole = 0;
    bool digits = false;
    while (is_digit(*p)) {
      int d = *p - '0';
      if (whole > (INT64_MAX - d) / 10)
        return TUSC_EINVALID_ARGUMENT;
      whole = whole * 10 + d;
      digits = true;
      p++;
    }
    /* Fraction digits beyond 18 cannot change a nanosecond sum; drop them as Go does. */
    int64_t frac = 0, scale = 1;
    if (*p == '.') {
      p++;
      while (is_digit(*p)) {
        if (scale < INT64_C(1000000000000000000)) {
          frac = frac * 10 + (*p - '0');
          scale *= 10;
        }
        digits = true;
        p++;
      }
    }
    if (!digits)
      return TUSC_EINVALID_ARGUMENT;

    const char *u = p;
    while (*p != '\0' && *p != '.' && !is_digit(*p))
      p++;
    int64_t unit = unit_ns(u, (size_t)(p - u));
    if (unit == 0)
      return TUSC_EINVALID_ARGUMENT;

    if (whole > INT64_MAX / unit)
      return TUSC_EINVALID_ARGUMENT;
    int64_t part = whole * unit;
    if (frac > 0) {
      /* frac/scale < 1, so this adds less than one unit; a double keeps ~15 significant
       * digits, far more than a millisecond result needs. */
      double extra = (double)frac * ((double)unit / (double)scale);
      if (extra >= (double)(INT64_MAX - part))
        return TUSC_EINVALID_ARGUMENT;
      part += (int64_t)extra;
    }
    if (part > INT64_MAX - total_ns)
      return TUSC_EINVALID_ARGUMENT;
    total_ns += part;
  }

  int64_t ms = total_ns / INT64_C(1000000);
  /* "500us" must not silently become "no timeout". */
  if (ms == 0 && total_ns > 0)
    ms = 1;
  *out_ms = ms;
  return 0;
}

/* ---- values ------------------------------------------------------------------------- */

/* A value error: written as Go writes it, naming the flag as the user spelled it. */
struct flag_ctx {
  FILE *err;
  const char *name; /* as written, without dashes, not NUL-terminated */
  int name_len;
  const char *value;
};

static int bad_value(const struct flag_ctx *ctx, const char *problem) {
  fprintf(ctx->err, "invalid value \"%s\" for flag -%.*s: %s\n", ctx->value, ctx->name_len,
          ctx->name, problem);
  return TUSC_CONFIG_EXIT_USAGE;
}

static int out_of_memory(FILE *err) {
  fprintf(err, "tusc: out of memory while parsing flags\n");
  return TUSC_CONFIG_EXIT_USAGE;
}

static bool parse_bool(const char *s, bool *out) {
  /* Go's strconv.ParseBool spellings. */
  static const char *const yes[] = {"1", "t", "T", "true", "TRUE", "True"};
  static const char *const no[] = {"0", "f", "F", "false", "FALSE", "False"};
  for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
    if (strcmp(s, yes[i]) == 0) {
      *out = true;
      return true;
    }
    if (strcmp(s, no[i]) == 0) {
      *out = false;
      return true;
    }
  }
  return false;
}

/* 0 and *out set, or -1 "not an integer", or -2 "out of int64 range". */
static int parse_int64(const char *s, int64_t *out) {
  const char *p = s;
  if (*p == '+' || *p == '-')
    p++;
  if (!is_digit(*p))
    return -1;
  for (const char *q = p; *q != '\0'; q++)
    if (!is_digit(*q))
      return -1;
  errno = 0;
  char *end = NULL;
  long long v = strtoll(s, &end, 10);
  if (errno == ERANGE)
    return -2;
  if (end == NULL || *end != '\0')
    return -1;
  *out = (int64_t)v;
  return 0;
}

static int apply_integer(tusc_config_t *cfg, const struct flag_def *def,
                         const struct flag_ctx *ctx) {
  int64_t v;
  int rc = parse_int64(ctx->value, &v);
  if (rc == -1)
    return bad_value(ctx, "not an integer");
  if (rc != 0 || v < def->min || v > def->max) {
    char problem[96];
    if (def->max == INT64_MAX)
      snprintf(problem, sizeof problem, "out of range (must be >= %lld)", (long long)def->min);
    else
      snprintf(problem, sizeof problem, "out of range (%lld..%lld)", (long long)def->min,
               (long long)def->max);
    return bad_value(ctx, problem);
  }
  char *field = (char *)cfg + def->off;
  if (def->kind == K_INT) {
    int iv = (int)v;
    memcpy(field, &iv, sizeof iv);
  } else {
    memcpy(field, &v, sizeof v);
  }
  return 0;
}

static int apply_duration(tusc_config_t *cfg, const struct flag_def *def,
                          const struct flag_ctx *ctx) {
  int64_t ms;
  if (ctx->value[0] == '-')
    return bad_value(ctx, "negative durations are not allowed");
  if (tusc_duration_parse(ctx->value, def->bare_unit_ms, &ms) != 0)
    return bad_value(ctx, def->bare_unit_ms == 1
                              ? "not a duration (e.g. 3000 for milliseconds, 3s, 1m30s)"
                              : "not a duration (e.g. 90s, 1m30s, 500ms, 2h; a bare number "
                                "counts seconds)");
  memcpy((char *)cfg + def->off, &ms, sizeof ms);
  return 0;
}

static int apply_perms(tusc_config_t *cfg, const struct flag_def *def, const struct flag_ctx *ctx) {
  const char *p = ctx->value;
  if (p[0] == '0' && (p[1] == 'o' || p[1] == 'O'))
    p += 2;
  if (*p == '\0')
    return bad_value(ctx, "not an octal number (e.g. 640 or 0640)");
  unsigned v = 0;
  for (; *p != '\0'; p++) {
    if (*p < '0' || *p > '7')
      return bad_value(ctx, "not an octal number (e.g. 640 or 0640)");
    v = v * 8 + (unsigned)(*p - '0');
    if (v > 0777)
      return bad_value(ctx, "out of range (at most 0777)");
  }
  memcpy((char *)cfg + def->off, &v, sizeof v);
  return 0;
}

static int find_choice(const char *const *choices, const char *value) {
  for (int i = 0; choices[i] != NULL; i++)
    if (strcmp(choices[i], value) == 0)
      return i;
  return -1;
}

static int bad_choice(const struct flag_ctx *ctx, const char *const *choices) {
  char problem[128] = "must be one of";
  size_t used = strlen(problem);
  for (int i = 0; choices[i] != NULL && used < sizeof problem; i++) {
    int n = snprintf(problem + used, sizeof problem - used, "%s %s", i == 0 ? "" : ",", choices[i]);
    if (n < 0)
      break;
    used += (size_t)n;
  }
  return bad_value(ctx, problem);
}

/* Bytes a URL path may not contain for tusc to match it against request targets. */
static bool path_char_ok(unsigned char c) {
  return c > 0x20 && c != 0x7f && c != '?' && c != '#';
}

static int apply_base_path(tusc_config_t *cfg, const struct flag_def *def,
                           const struct flag_ctx *ctx) {
  const char *v = ctx->value;
  size_t len = strlen(v);
  for (size_t i = 0; i < len; i++)
    if (!path_char_ok((unsigned char)v[i]))
      return bad_value(ctx, "a URL path must not contain spaces, control characters, '?' "
                            "or '#'");
  if (len == 0) {
    v = "/";
    len = 1;
  }
  /* In "/" the one slash is both the leading and the trailing one. */
  bool lead = v[0] == '/';
  bool trail = v[len - 1] == '/';
  size_t size = len + (lead ? 0 : 1) + (trail ? 0 : 1) + 1;
  char *path = malloc(size);
  if (path == NULL)
    return out_of_memory(ctx->err);
  snprintf(path, size, "%s%s%s", lead ? "" : "/", v, trail ? "" : "/");
  set_owned(cfg, def->off, path);
  return 0;
}

static int apply_url_path(tusc_config_t *cfg, const struct flag_def *def,
                          const struct flag_ctx *ctx) {
  const char *v = ctx->value;
  if (v[0] != '/')
    return bad_value(ctx, "must start with '/'");
  for (const char *p = v; *p != '\0'; p++)
    if (!path_char_ok((unsigned char)*p))
      return bad_value(ctx, "a URL path must not contain spaces, control characters, '?' "
                            "or '#'");
  if (set_copy(cfg, def->off, v) != 0)
    return out_of_memory(ctx->err);
  return 0;
}

static bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

/* Stores the list trimmed and comma-joined ("pre-create,post-finish"), or "" for
 * "all events" when the value is empty or blank (tusd's meaning of an empty value). */
static int apply_events(tusc_config_t *cfg, const struct flag_def *def,
                        const struct flag_ctx *ctx) {
  const char *v = ctx->value;
  size_t len = strlen(v);
  char *list = malloc(len + 1);
  if (list == NULL)
    return out_of_memory(ctx->err);
  size_t used = 0;

  const char *p = v;
  while (is_blank(*p))
    p++;
  if (*p != '\0') {
    for (;;) {
      const char *item = p;
      const char *comma = strchr(item, ',');
      const char *end = comma != NULL ? comma : item + strlen(item);
      const char *b = item, *e = end;
      while (b < e && is_blank(*b))
        b++;
      while (e > b && is_blank(e[-1]))
        e--;
      size_t n = (size_t)(e - b);
      bool known = false;
      for (int i = 0; hook_events[i] != NULL && !known; i++)
        known = strlen(hook_events[i]) == n && memcmp(hook_events[i], b, n) == 0;
      if (!known) {
        free(list);
        char problem[200];
        if (n == 0)
          snprintf(problem, sizeof problem, "empty hook event name in the list");
        else
          snprintf(problem, sizeof problem,
                   "unknown hook event \"%.*s\" (known: pre-create, post-create, "
                   "post-receive, pre-finish, post-finish, pre-terminate, post-terminate)",
                   (int)(n > 40 ? 40 : n), b);
        return bad_value(ctx, problem);
      }
      if (used > 0)
        list[used++] = ',';
      memcpy(list + used, b, n);
      used += n;
      if (comma == NULL)
        break;
      p = comma + 1;
    }
  }
  list[used] = '\0';
  set_owned(cfg, def->off, list);
  return 0;
}

static int apply_value(tusc_config_t *cfg, const struct flag_def *def, const struct flag_ctx *ctx) {
  switch (def->kind) {
  case K_STRING:
  case K_OPTSTRING: {
    const char *v = ctx->value;
    if (def->kind == K_OPTSTRING && v[0] == '\0')
      v = NULL;
    if (set_copy(cfg, def->off, v) != 0)
      return out_of_memory(ctx->err);
    return 0;
  }
  case K_BOOL: {
    bool b;
    if (!parse_bool(ctx->value, &b))
      return bad_value(ctx, "not a boolean (true, false, 1 or 0)");
    memcpy((char *)cfg + def->off, &b, sizeof b);
    return 0;
  }
  case K_INT:
  case K_INT64:
    return apply_integer(cfg, def, ctx);
  case K_DURATION:
    return apply_duration(cfg, def, ctx);
  case K_PERMS:
    return apply_perms(cfg, def, ctx);
  case K_CHOICE:
    if (find_choice(def->choices, ctx->value) < 0)
      return bad_choice(ctx, def->choices);
    if (set_copy(cfg, def->off, ctx->value) != 0)
      return out_of_memory(ctx->err);
    return 0;
  case K_FSYNC: {
    int i = find_choice(def->choices, ctx->value);
    if (i < 0)
      return bad_choice(ctx, def->choices);
    enum tusc_fsync_mode mode = i == 0 ? TUSC_FSYNC_ALWAYS : TUSC_FSYNC_NEVER;
    memcpy((char *)cfg + def->off, &mode, sizeof mode);
    return 0;
  }
  case K_BASE_PATH:
    return apply_base_path(cfg, def, ctx);
  case K_URL_PATH:
    return apply_url_path(cfg, def, ctx);
  case K_EVENTS:
    return apply_events(cfg, def, ctx);
  case K_HELP:
  case K_VERSION:
    break;
  }
  return 0;
}

/* ---- argv --------------------------------------------------------------------------- */

static const struct flag_def *find_flag(const char *name, size_t len) {
  for (size_t i = 0; i < NFLAGS; i++)
    if (strlen(flags[i].name) == len && memcmp(flags[i].name, name, len) == 0)
      return &flags[i];
  return NULL;
}

static const struct unsupported_def *find_unsupported(const char *name, size_t len) {
  for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) {
    const char *u = unsupported[i].name;
    size_t ulen = strlen(u);
    if (u[ulen - 1] == '*') {
      /* "hooks-grpc*" also matches "hooks-grpc" itself. */
      ulen--;
      if (len >= ulen && memcmp(u, name, ulen) == 0)
        return &unsupported[i];
    } else if (ulen == len && memcmp(u, name, len) == 0) {
      return &unsupported[i];
    }
  }
  return NULL;
}

static void usage_hint(FILE *err) {
  fprintf(err, "Run 'tusc -help' for the list of flags.\n");
}

/* Checks that need more than one flag. */
static int check_combinations(const tusc_config_t *cfg, FILE *err) {
  if ((cfg->tls_certificate == NULL) != (cfg->tls_key == NULL)) {
    fprintf(err, "flags -tls-certificate and -tls-key must be given together\n");
    return TUSC_CONFIG_EXIT_USAGE;
  }
  if (cfg->tls_certificate == NULL && (cfg->http_redirect_port != 0 || cfg->hsts)) {
    fprintf(err, "flags -http-redirect-port and -hsts need -tls-certificate and -tls-key\n");
    return TUSC_CONFIG_EXIT_USAGE;
  }
  if (cfg->http_redirect_port != 0 && cfg->unix_sock != NULL) {
    fprintf(err, "flag -http-redirect-port cannot be used with -unix-sock\n");
    return TUSC_CONFIG_EXIT_USAGE;
  }
  if (cfg->http_redirect_port != 0 && cfg->http_redirect_port == cfg->port) {
    fprintf(err, "flag -http-redirect-port must differ from -port\n");
    return TUSC_CONFIG_EXIT_USAGE;
  }
  if (cfg->hooks_dir != NULL && cfg->hooks_http != NULL) {
    fprintf(err, "flags -hooks-dir and -hooks-http cannot be used together; choose one\n");
    return TUSC_CONFIG_EXIT_USAGE;
  }
  if (cfg->s3_endpoint != NULL && cfg->s3_bucket == NULL) {
    fprintf(err, "flag -s3-endpoint needs -s3-bucket\n");
    return TUSC_CONFIG_EXIT_USAGE;
  }
  if (cfg->redis_url != NULL && strncmp(cfg->redis_url, "redis://", 8) != 0 &&
      strncmp(cfg->redis_url, "unix:", 5) != 0) {
    fprintf(err, "flag -redis-url must start with redis:// or unix://\n");
    return TUSC_CONFIG_EXIT_USAGE;
  }
  if (cfg->redis_lock_lease_ms < 30) {
    fprintf(err, "flag -redis-lock-lease must be at least 30ms\n");
    return TUSC_CONFIG_EXIT_USAGE;
  }
  if (cfg->s3_bucket != NULL && cfg->s3_max_buffer_memory < 2 * cfg->s3_min_part_size + 262144) {
    fprintf(err, "flag -s3-max-buffer-memory must hold two parts (-s3-min-part-size) and "
                 "256 KiB\n");
    return TUSC_CONFIG_EXIT_USAGE;
  }
  if (cfg->unix_sock != NULL && cfg->port_file != NULL) {
    fprintf(err, "flag -port-file has no meaning with -unix-sock\n");
    return TUSC_CONFIG_EXIT_USAGE;
  }
  return 0;
}

int tusc_config_parse(tusc_config_t *cfg, int argc, char **argv, FILE *out, FILE *err) {
  if (set_defaults(cfg) != 0)
    return out_of_memory(err);

  bool show_version = false;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (arg[0] != '-' || arg[1] == '\0') {
      fprintf(err, "unexpected argument \"%s\": tusc takes only flags\n", arg);
      usage_hint(err);
      return TUSC_CONFIG_EXIT_USAGE;
    }
    if (strcmp(arg, "--") == 0) {
      if (i + 1 < argc) {
        fprintf(err, "unexpected argument \"%s\" after \"--\": tusc takes only flags\n",
                argv[i + 1]);
        usage_hint(err);
        return TUSC_CONFIG_EXIT_USAGE;
      }
      break;
    }
    const char *name = arg + 1;
    if (*name == '-')
      name++;
    if (*name == '\0' || *name == '-' || *name == '=') {
      fprintf(err, "bad flag syntax: %s\n", arg);
      usage_hint(err);
      return TUSC_CONFIG_EXIT_USAGE;
    }
    const char *eq = strchr(name, '=');
    size_t name_len = eq != NULL ? (size_t)(eq - name) : strlen(name);
    int shown_len = name_len > 200 ? 200 : (int)name_len;

    const struct flag_def *def = find_flag(name, name_len);
    if (def == NULL) {
      const struct unsupported_def *u = find_unsupported(name, name_len);
      if (u != NULL) {
        fprintf(err, "flag -%.*s: not supported by tusc (%s)\n", shown_len, name, u->reason);
        return TUSC_CONFIG_EXIT_USAGE;
      }
      fprintf(err, "flag provided but not defined: -%.*s\n", shown_len, name);
      tusc_config_usage(err);
      return TUSC_CONFIG_EXIT_USAGE;
    }

    if (def->kind == K_HELP) {
      tusc_config_usage(out);
      return TUSC_CONFIG_EXIT_OK;
    }

    const char *value = eq != NULL ? eq + 1 : NULL;
    if (def->kind == K_BOOL || def->kind == K_VERSION) {
      /* Unlike Go, "-flag false" means false instead of silently ending the flags. Only
       * the exact words are taken, so "-behind-proxy 1" stays an error, not a surprise. */
      if (value == NULL && i + 1 < argc &&
          (strcmp(argv[i + 1], "true") == 0 || strcmp(argv[i + 1], "false") == 0))
        value = argv[++i];
      if (value == NULL)
        value = "true";
    } else if (value == NULL) {
      if (i + 1 >= argc) {
        fprintf(err, "flag needs an argument: -%.*s\n", shown_len, name);
        usage_hint(err);
        return TUSC_CONFIG_EXIT_USAGE;
      }
      value = argv[++i];
    }

    struct flag_ctx ctx = {err, name, shown_len, value};
    if (def->kind == K_VERSION) {
      if (!parse_bool(value, &show_version)) {
        bad_value(&ctx, "not a boolean (true, false, 1 or 0)");
        return TUSC_CONFIG_EXIT_USAGE;
      }
      continue;
    }
    int rc = apply_value(cfg, def, &ctx);
    if (rc != 0) {
      usage_hint(err);
      return TUSC_CONFIG_EXIT_USAGE;
    }
  }

  if (show_version) {
    fprintf(out, "tusc " TUSC_VERSION "\n");
    return TUSC_CONFIG_EXIT_OK;
  }
  if (check_combinations(cfg, err) != 0) {
    usage_hint(err);
    return TUSC_CONFIG_EXIT_USAGE;
  }
  return 0;
}

/* ---- usage -------------------------------------------------------------------------- */

static void format_duration(int64_t ms, char *buf, size_t size) {
  if (ms == 0)
    snprintf(buf, size, "0");
  else if (ms % 3600000 == 0)
    snprintf(buf, size, "%lldh", (long long)(ms / 3600000));
  else if (ms % 1000 == 0)
    snprintf(buf, size, "%llds", (long long)(ms / 1000));
  else
    snprintf(buf, size, "%lldms", (long long)ms);
}

/* The default as the user would type it, or "" when there is nothing worth showing. */
static void format_default(const tusc_config_t *cfg, const struct flag_def *def, char *buf,
                           size_t size) {
  const char *field = (const char *)cfg + def->off;
  buf[0] = '\0';
  switch (def->kind) {
  case K_STRING:
  case K_OPTSTRING:
  case K_CHOICE:
  case K_BASE_PATH:
  case K_URL_PATH:
  case K_EVENTS: {
    const char *s;
    memcpy(&s, field, sizeof s);
    if (s != NULL && s[0] != '\0')
      snprintf(buf, size, "%s", s);
    break;
  }
  case K_BOOL: {
    bool b;
    memcpy(&b, field, sizeof b);
    if (b)
      snprintf(buf, size, "true");
    break;
  }
  case K_INT: {
    int v;
    memcpy(&v, field, sizeof v);
    snprintf(buf, size, "%d", v);
    break;
  }
  case K_INT64: {
    int64_t v;
    memcpy(&v, field, sizeof v);
    snprintf(buf, size, "%lld", (long long)v);
    break;
  }
  case K_DURATION: {
    int64_t v;
    memcpy(&v, field, sizeof v);
    format_duration(v, buf, size);
    break;
  }
  case K_PERMS: {
    unsigned v;
    memcpy(&v, field, sizeof v);
    snprintf(buf, size, "%o", v);
    break;
  }
  case K_FSYNC: {
    enum tusc_fsync_mode m;
    memcpy(&m, field, sizeof m);
    snprintf(buf, size, "%s", m == TUSC_FSYNC_ALWAYS ? "always" : "never");
    break;
  }
  case K_HELP:
  case K_VERSION:
    break;
  }
}

/* Writes `text` wrapped to the usage page's column, indented by `indent`. */
static void print_wrapped(FILE *out, const char *text, int indent) {
  const int width = 88;
  int col = indent;
  fprintf(out, "%*s", indent, "");
  const char *p = text;
  while (*p != '\0') {
    while (*p == ' ')
      p++;
    const char *w = p;
    while (*p != '\0' && *p != ' ')
      p++;
    int wlen = (int)(p - w);
    if (wlen == 0)
      break;
    if (col > indent && col + 1 + wlen > width) {
      fprintf(out, "\n%*s", indent, "");
      col = indent;
    }
    if (col > indent) {
      fputc(' ', out);
      col++;
    }
    fprintf(out, "%.*s", wlen, w);
    col += wlen;
  }
  fputc('\n', out);
}

static const char usage_head[] =
    "NAME\n"
    "    tusc - resumable upload server for the tus protocol, a drop-in for tusd\n"
    "\n"
    "SYNOPSIS\n"
    "    tusc [-flag value | -flag=value | -bool-flag [true|false]]...\n"
    "    tusc -help | -version\n"
    "\n"
    "DESCRIPTION\n"
    "    tusc accepts uploads of any size over the tus 1.0 resumable upload protocol\n"
    "    and stores them under -upload-dir, sharded so that no directory grows large.\n"
    "    Clients resume exactly where the server last acknowledged. Flags, hook\n"
    "    scripts, the HTTP hook protocol and metric names are those of tusd v2, so\n"
    "    tusc can replace it without other changes.\n"
    "\n"
    "    Flags use Go syntax: -name and --name are the same; a value follows as\n"
    "    -name=value or -name value; a boolean is set by -name and cleared by\n"
    "    -name=false or -name false. Durations are written like 500ms, 90s, 1m30s, 2h\n"
    "    or 0; a bare number counts seconds. Permissions are octal (640 or 0640).\n"
    "    Arguments that are not flags are rejected; \"--\" ends the flags.\n"
    "\n"
    "OPTIONS\n";

static const char usage_tail[] =
    "  Not supported (rejected with an explanation)\n"
    "    -hooks-grpc*, -hooks-plugin, -gcs-*, -azure-*, -expose-pprof, -pprof-*,\n"
    "    -filelock-*, -request-completion-timeout, -s3-transfer-acceleration,\n"
    "    -s3-max-buffered-parts, -s3-use-minio-sdk.\n"
    "\n"
    "SIGNALS\n"
    "    SIGTERM, SIGINT  Stop accepting connections, let requests in flight save their\n"
    "                     offset, exit within -shutdown-timeout.\n"
    "    SIGHUP           Reload the TLS certificate and key without dropping connections.\n"
    "\n"
    "EXIT STATUS\n"
    "    0 after a clean shutdown or -help/-version; 2 for a bad command line; another\n"
    "    non-zero status when the server cannot start or fails.\n"
    "\n"
    "EXAMPLES\n"
    "    Serve http://0.0.0.0:1080/files/, storing uploads in ./data:\n"
    "        tusc\n"
    "\n"
    "    Behind HAProxy with the upload directory and hook scripts of a tusd setup:\n"
    "        tusc -dir /data/tusupload -hooks-dir /app/tusd/hooks -behind-proxy\n"
    "\n"
    "    HTTPS on port 443, uploads up to 10 GiB, JSON logs:\n"
    "        tusc -port 443 -tls-certificate cert.pem -tls-key key.pem \\\n"
    "             -max-size 10737418240 -log-format json\n"
    "\n"
    "    HTTP hooks for every event, with a short network timeout:\n"
    "        tusc -hooks-http http://127.0.0.1:8081/hooks -hooks-enabled-events= \\\n"
    "             -network-timeout 30s\n";

void tusc_config_usage(FILE *out) {
  tusc_config_t defaults;
  bool have_defaults = set_defaults(&defaults) == 0;

  fputs(usage_head, out);
  for (int g = 0; g < G__COUNT; g++) {
    fprintf(out, "  %s\n", group_titles[g]);
    for (size_t i = 0; i < NFLAGS; i++) {
      const struct flag_def *def = &flags[i];
      if ((int)def->group != g || def->alias)
        continue;
      if (def->kind == K_BOOL || def->arg == NULL)
        fprintf(out, "    -%s\n", def->name);
      else
        fprintf(out, "    -%s %s\n", def->name, def->arg);
      print_wrapped(out, def->help, 8);
      char dflt[512];
      dflt[0] = '\0';
      if (have_defaults && def->kind != K_EVENTS)
        format_default(&defaults, def, dflt, sizeof dflt);
      if (def->choices != NULL && def->kind != K_FSYNC && dflt[0] == '\0')
        snprintf(dflt, sizeof dflt, "%s", def->choices[0]);
      if (dflt[0] != '\0') {
        char line[600];
        snprintf(line, sizeof line, "Default: %s", dflt);
        print_wrapped(out, line, 8);
      }
    }
    fputc('\n', out);
  }
  fputs(usage_tail, out);
  tusc_config_dispose(&defaults);
}

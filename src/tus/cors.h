/*
 * cors — Cross-Origin Resource Sharing as tusd does it: an allowed-origin regex (tusc
 * anchors it, so "https://a\.com" does not admit "https://a.com.evil.net"), credentials,
 * and the method/header/expose/max-age lists.
 *
 * Threads: tusc_cors_init/dispose on the main thread; tusc_cors_headers is thread-safe
 * afterwards (regexec on a compiled regex_t is reentrant). The policy owns its regex and
 * borrows the config strings.
 */
#ifndef TUSC_TUS_CORS_H
#define TUSC_TUS_CORS_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

#define TUSC_CORS_DEFAULT_METHODS "POST, HEAD, PATCH, OPTIONS, GET, DELETE"
#define TUSC_CORS_DEFAULT_HEADERS                                                                  \
  "Authorization, Origin, X-Requested-With, X-Request-ID, X-HTTP-Method-Override, "                \
  "Content-Type, Upload-Length, Upload-Offset, Tus-Resumable, Upload-Metadata, "                   \
  "Upload-Defer-Length, Upload-Concat, Upload-Incomplete, Upload-Complete, "                       \
  "Upload-Draft-Interop-Version"
#define TUSC_CORS_DEFAULT_EXPOSE                                                                   \
  "Upload-Offset, Location, Upload-Length, Tus-Version, Tus-Resumable, Tus-Max-Size, "             \
  "Tus-Extension, Upload-Metadata, Upload-Defer-Length, Upload-Concat, Upload-Incomplete, "        \
  "Upload-Complete, Upload-Draft-Interop-Version"

typedef struct tusc_cors_s {
  bool enabled;
  bool allow_credentials;
  regex_t origin_re;
  bool origin_re_compiled;
  const char *allow_methods;
  const char *allow_headers;
  const char *expose_headers;
  char max_age[24];
} tusc_cors_t;

/* Builds the policy from cfg (disable_cors, cors_*). NULL config strings take tusd's
 * defaults. Returns 0 or TUSC_EINVALID_ARGUMENT when the origin regex does not compile. */
int tusc_cors_init(tusc_cors_t *cors, const tusc_config_t *cfg);
void tusc_cors_dispose(tusc_cors_t *cors);

/* True when `origin` (NUL-terminated) matches the whole allowed-origin regex. */
bool tusc_cors_origin_allowed(const tusc_cors_t *cors, const char *origin);

#define TUSC_CORS_MAX_HEADERS 6

typedef struct tusc_cors_header_s {
  const char *name;
  const char *value; /* borrowed from the policy or from `origin` */
} tusc_cors_header_t;

/* Response headers for a request with `origin` (NULL or "" = no Origin header).
 * `preflight` = an OPTIONS request. Writes up to TUSC_CORS_MAX_HEADERS entries and their
 * count. Returns 0, or TUSC_EORIGIN_NOT_ALLOWED (then *count is 0) when the origin does
 * not match. With CORS disabled: 0 and no headers. */
int tusc_cors_headers(const tusc_cors_t *cors, const char *origin, bool preflight,
                      tusc_cors_header_t out[TUSC_CORS_MAX_HEADERS], size_t *count);

#endif

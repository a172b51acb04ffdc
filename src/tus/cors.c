/*
 * cors — see cors.h. tusd matches its regex unanchored; tusc wraps the pattern in
 * "^(" … ")$" so an operator's "https://app\.example\.com" means exactly that origin.
 */
#include "tus/cors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"

int tusc_cors_init(tusc_cors_t *cors, const tusc_config_t *cfg) {
  memset(cors, 0, sizeof(*cors));
  cors->enabled = !cfg->disable_cors;
  cors->allow_credentials = cfg->cors_allow_credentials;
  cors->allow_methods =
      cfg->cors_allow_methods != NULL ? cfg->cors_allow_methods : TUSC_CORS_DEFAULT_METHODS;
  cors->allow_headers =
      cfg->cors_allow_headers != NULL ? cfg->cors_allow_headers : TUSC_CORS_DEFAULT_HEADERS;
  cors->expose_headers =
      cfg->cors_expose_headers != NULL ? cfg->cors_expose_headers : TUSC_CORS_DEFAULT_EXPOSE;
  snprintf(cors->max_age, sizeof(cors->max_age), "%lld", (long long)cfg->cors_max_age);
  if (!cors->enabled)
    return 0;

  const char *pattern = cfg->cors_allow_origin != NULL ? cfg->cors_allow_origin : ".*";
  size_t len = strlen(pattern) + 5;
  char *anchored = malloc(len);
  if (anchored == NULL)
    return TUSC_ENOMEM;
  snprintf(anchored, len, "^(%s)$", pattern);
  int rc = regcomp(&cors->origin_re, anchored, REG_EXTENDED | REG_NOSUB);
  free(anchored);
  if (rc != 0) {
    tusc_log_msg(TUSC_LOG_ERROR, "invalid -cors-allow-origin regex: %s", pattern);
    return TUSC_EINVALID_ARGUMENT;
  }
  cors->origin_re_compiled = true;
  return 0;
}

void tusc_cors_dispose(tusc_cors_t *cors) {
  if (cors->origin_re_compiled)
    regfree(&cors->origin_re);
  cors->origin_re_compiled = false;
}

bool tusc_cors_origin_allowed(const tusc_cors_t *cors, const char *origin) {
  if (!cors->origin_re_compiled)
    return false;
  return regexec(&cors->origin_re, origin, 0, NULL, 0) == 0;
}

int tusc_cors_headers(const tusc_cors_t *cors, const char *origin, bool preflight,
                      tusc_cors_header_t out[TUSC_CORS_MAX_HEADERS], size_t *count) {
  size_t n = 0;
  *count = 0;
  if (!cors->enabled)
    return 0;
  /* Caches must not hand one origin's answer to another. */
  out[n++] = (tusc_cors_header_t){"Vary", "Origin"};
  if (origin == NULL || origin[0] == '\0') {
    *count = n;
    return 0;
  }
  if (!tusc_cors_origin_allowed(cors, origin))
    return TUSC_EORIGIN_NOT_ALLOWED;
  out[n++] = (tusc_cors_header_t){"Access-Control-Allow-Origin", origin};
  if (cors->allow_credentials)
    out[n++] = (tusc_cors_header_t){"Access-Control-Allow-Credentials", "true"};
  if (preflight) {
    out[n++] = (tusc_cors_header_t){"Access-Control-Allow-Methods", cors->allow_methods};
    out[n++] = (tusc_cors_header_t){"Access-Control-Allow-Headers", cors->allow_headers};
    out[n++] = (tusc_cors_header_t){"Access-Control-Max-Age", cors->max_age};
  } else {
    out[n++] = (tusc_cors_header_t){"Access-Control-Expose-Headers", cors->expose_headers};
  }
  *count = n;
  return 0;
}

/* redirect — plain HTTP → https 308 answers. */
#include "http/redirect.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/error.h"

struct tusc_redirect_s {
  int https_port;
  char **hosts; /* NULL-terminated; NULL = any */
};

static void free_hosts(char **hosts) {
  if (hosts == NULL)
    return;
  for (char **h = hosts; *h; h++)
    free(*h);
  free(hosts);
}

int tusc_redirect_new(int https_port, const char *allowed_hosts, tusc_redirect_t **out) {
  tusc_redirect_t *r = calloc(1, sizeof(*r));
  if (r == NULL)
    return TUSC_ENOMEM;
  r->https_port = https_port;
  if (allowed_hosts != NULL && allowed_hosts[0] != '\0') {
    size_t n = 1;
    for (const char *c = allowed_hosts; *c; c++)
      n += *c == ',';
    r->hosts = calloc(n + 1, sizeof(char *));
    if (r->hosts == NULL) {
      free(r);
      return TUSC_ENOMEM;
    }
    size_t k = 0;
    const char *p = allowed_hosts;
    while (*p) {
      const char *end = strchr(p, ',');
      size_t len = end ? (size_t)(end - p) : strlen(p);
      while (len > 0 && (*p == ' ' || *p == '\t')) {
        p++;
        len--;
      }
      while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
      if (len > 0) {
        r->hosts[k] = strndup(p, len);
        if (r->hosts[k] == NULL) {
          free_hosts(r->hosts);
          free(r);
          return TUSC_ENOMEM;
        }
        k++;
      }
      if (end == NULL)
        break;
      p = end + 1;
    }
  }
  *out = r;
  return 0;
}

void tusc_redirect_free(tusc_redirect_t *r) {
  if (r == NULL)
    return;
  free_hosts(r->hosts);
  free(r);
}

static bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-' || c == '_';
}

static bool ipv6_char(char c) {
  return (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || (c >= '0' && c <= '9') || c == ':' ||
         c == '.';
}

static bool all_digits(const char *s, size_t n) {
  if (n == 0 || n > 5)
    return false;
  for (size_t i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9')
      return false;
  return true;
}

/* Length of the host name part (brackets included) of a valid Host value, or 0. */
static size_t host_name_len(const char *host) {
  size_t len = strlen(host);
  size_t name_len;
  if (host[0] == '[') {
    const char *close = strchr(host, ']');
    if (close == NULL || close == host + 1)
      return 0;
    for (const char *c = host + 1; c < close; c++)
      if (!ipv6_char(*c))
        return 0;
    name_len = (size_t)(close - host) + 1;
  } else {
    const char *colon = strchr(host, ':');
    name_len = colon ? (size_t)(colon - host) : len;
    if (name_len == 0)
      return 0;
    for (size_t i = 0; i < name_len; i++)
      if (!name_char(host[i]))
        return 0;
  }
  if (name_len == len)
    return name_len;
  if (host[name_len] != ':' || !all_digits(host + name_len + 1, len - name_len - 1))
    return 0;
  return name_len;
}

int tusc_redirect_location(const tusc_redirect_t *r, const char *host, const char *path,
                           const char *query, char *out, size_t cap) {
  if (host == NULL || host[0] == '\0')
    return 400;
  size_t name_len = host_name_len(host);
  if (name_len == 0)
    return 400;
  if (r->hosts != NULL) {
    bool found = false;
    for (char **h = r->hosts; *h && !found; h++)
      found = strlen(*h) == name_len && strncasecmp(*h, host, name_len) == 0;
    if (!found)
      return 421;
  }
  char port[16] = "";
  if (r->https_port != 443)
    snprintf(port, sizeof(port), ":%d", r->https_port);
  const char *p = path && path[0] ? path : "/";
  bool q = query && query[0];
  int n = snprintf(out, cap, "https://%.*s%s%s%s%s", (int)name_len, host, port, p, q ? "?" : "",
                   q ? query : "");
  if (n < 0 || (size_t)n >= cap)
    return UV_ENOBUFS;
  return 0;
}

static void on_request(tusc_http_request_t *req, void *ctx) {
  const tusc_redirect_t *r = ctx;
  const tusc_http_header_t *host = tusc_http_header(req, "Host");
  char location[8192];
  int rc = tusc_redirect_location(r, host ? host->value : NULL, req->path, req->query, location,
                                  sizeof(location));
  tusc_http_response_t resp;
  if (rc == 0) {
    tusc_http_response_init(&resp, 308);
    tusc_http_response_header(&resp, "Location", location);
    tusc_http_response_header(&resp, "Content-Type", "text/plain; charset=utf-8");
    static const char body[] = "This server is served over HTTPS only.\n";
    tusc_http_respond(req, &resp, body, sizeof(body) - 1);
    return;
  }
  int status = rc > 0 ? rc : 400;
  int err = status == 421 ? TUSC_EMISDIRECTED : TUSC_EINVALID_HEADER;
  char body[256];
  int n = snprintf(body, sizeof(body), "%s: %s\n", tusc_error_code(err),
                   status == 421 ? tusc_strerror(err) : "missing or invalid Host header");
  tusc_http_response_init(&resp, status);
  tusc_http_response_header(&resp, "Content-Type", "text/plain; charset=utf-8");
  resp.close = true;
  tusc_http_respond(req, &resp, body, n > 0 && (size_t)n < sizeof(body) ? (size_t)n : 0);
}

static void on_abort(tusc_http_request_t *req, int err, void *ctx) {
  (void)req;
  (void)err;
  (void)ctx;
  /* on_request always responds at once; nothing outstanding to cancel. */
}

static const tusc_http_handler_t handler = {
    .on_request = on_request,
    .on_abort = on_abort,
};

const tusc_http_handler_t *tusc_redirect_http_handler(void) {
  return &handler;
}

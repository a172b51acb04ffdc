/*
 * response — building response heads. Header names and values are sanitised when
 * they are added, because handlers echo client-controlled text (metadata, IDs) and
 * a CR or LF there would let a client write its own headers (response splitting).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "http/http.h"
#include "http/internal.h"

const char *tusc_http_reason(int status) {
  switch (status) {
  case 100:
    return "Continue";
  case 101:
    return "Switching Protocols";
  case 103:
    return "Early Hints";
  case 104:
    return "Upload Resumption Supported";
  case 200:
    return "OK";
  case 201:
    return "Created";
  case 202:
    return "Accepted";
  case 204:
    return "No Content";
  case 206:
    return "Partial Content";
  case 301:
    return "Moved Permanently";
  case 302:
    return "Found";
  case 304:
    return "Not Modified";
  case 307:
    return "Temporary Redirect";
  case 308:
    return "Permanent Redirect";
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 408:
    return "Request Timeout";
  case 409:
    return "Conflict";
  case 410:
    return "Gone";
  case 411:
    return "Length Required";
  case 412:
    return "Precondition Failed";
  case 413:
    return "Content Too Large";
  case 414:
    return "URI Too Long";
  case 415:
    return "Unsupported Media Type";
  case 416:
    return "Range Not Satisfiable";
  case 417:
    return "Expectation Failed";
  case 421:
    return "Misdirected Request";
  case 422:
    return "Unprocessable Content";
  case 423:
    return "Locked";
  case 428:
    return "Precondition Required";
  case 429:
    return "Too Many Requests";
  case 431:
    return "Request Header Fields Too Large";
  case 460:
    return "Checksum Mismatch";
  case 500:
    return "Internal Server Error";
  case 501:
    return "Not Implemented";
  case 502:
    return "Bad Gateway";
  case 503:
    return "Service Unavailable";
  case 504:
    return "Gateway Timeout";
  case 505:
    return "HTTP Version Not Supported";
  case 507:
    return "Insufficient Storage";
  default:
    return "Unknown";
  }
}

bool tusc_http_name_eq(const char *a, const char *b) {
  for (;; a++, b++) {
    unsigned char ca = (unsigned char)*a, cb = (unsigned char)*b;
    if (ca >= 'A' && ca <= 'Z')
      ca = (unsigned char)(ca + 32);
    if (cb >= 'A' && cb <= 'Z')
      cb = (unsigned char)(cb + 32);
    if (ca != cb)
      return false;
    if (ca == '\0')
      return true;
  }
}

void tusc_http_response_init(tusc_http_response_t *resp, int status) {
  memset(resp, 0, sizeof(*resp));
  resp->status = status;
}

bool tusc_http_is_tchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
    return true;
  return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

void tusc_http_response_header(tusc_http_response_t *resp, const char *name, const char *value) {
  if (name == NULL || value == NULL || name[0] == '\0')
    return;
  for (const char *c = name; *c; c++) {
    if (!tusc_http_is_tchar((unsigned char)*c)) {
      TUSC_LOG(TUSC_LOG_WARN, "dropping response header with invalid name");
      return;
    }
  }
  if (resp->header_count >= TUSC_HTTP_MAX_RESPONSE_HEADERS) {
    TUSC_LOG(TUSC_LOG_WARN, "too many response headers, dropping %s", name);
    return;
  }
  char *n = strdup(name);
  char *v = strdup(value);
  if (n == NULL || v == NULL) {
    free(n);
    free(v);
    TUSC_LOG(TUSC_LOG_ERROR, "out of memory adding response header %s", name);
    return;
  }
  for (char *c = v; *c; c++) {
    unsigned char ch = (unsigned char)*c;
    if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
      *c = ' ';
  }
  resp->headers[resp->header_count].name = n;
  resp->headers[resp->header_count].value = v;
  resp->header_count++;
}

void tusc_http_response_headerf(tusc_http_response_t *resp, const char *name, const char *fmt,
                                ...) {
  char small[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof(small), fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  if ((size_t)n < sizeof(small)) {
    tusc_http_response_header(resp, name, small);
    return;
  }
  char *big = malloc((size_t)n + 1);
  if (big == NULL)
    return;
  va_start(ap, fmt);
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  va_end(ap);
  tusc_http_response_header(resp, name, big);
  free(big);
}

void tusc_http_response_dispose(tusc_http_response_t *resp) {
  if (resp == NULL)
    return;
  for (size_t i = 0; i < resp->header_count; i++) {
    free(resp->headers[i].name);
    free(resp->headers[i].value);
  }
  resp->header_count = 0;
}

bool tusc_http_status_has_body(int status) {
  return status >= 200 && status != 204 && status != 304;
}

/* Headers the http layer owns: a handler's copy would contradict the framing. */
bool tusc_http_managed_header(const char *name, bool head_request) {
  if (tusc_http_name_eq(name, "Content-Length"))
    return !head_request;
  return tusc_http_name_eq(name, "Connection") || tusc_http_name_eq(name, "Date") ||
         tusc_http_name_eq(name, "Transfer-Encoding") || tusc_http_name_eq(name, "Keep-Alive");
}

static bool has_header(const tusc_http_response_t *resp, const char *name) {
  for (size_t i = 0; i < resp->header_count; i++)
    if (tusc_http_name_eq(resp->headers[i].name, name))
      return true;
  return false;
}

char *tusc_http_build_head(const tusc_http_response_t *resp, const tusc_http_head_opts_t *opts,
                           size_t prefix, size_t extra, size_t *head_len) {
  int status = resp->status;
  if (status < 100 || status > 999)
    status = 500;
  bool interim = status < 200;
  bool no_length = !tusc_http_status_has_body(status);
  bool handler_length = opts->head_request && has_header(resp, "Content-Length");

  /* Size first, then one allocation. */
  size_t need = 64; /* status line */
  for (size_t i = 0; i < resp->header_count; i++)
    need += strlen(resp->headers[i].name) + strlen(resp->headers[i].value) + 4;
  need += 160; /* Date, Content-Length, Connection, final CRLF */

  char *buf = malloc(prefix + need + extra);
  if (buf == NULL)
    return NULL;
  char *p = buf + prefix;
  size_t cap = need, len = 0;
#define APPEND(...)                                                                                \
  do {                                                                                             \
    int n_ = snprintf(p + len, cap - len, __VA_ARGS__);                                            \
    if (n_ < 0 || (size_t)n_ >= cap - len)                                                         \
      goto overflow;                                                                               \
    len += (size_t)n_;                                                                             \
  } while (0)

  APPEND("HTTP/1.1 %d %s\r\n", status, tusc_http_reason(status));
  for (size_t i = 0; i < resp->header_count; i++) {
    if (!interim && tusc_http_managed_header(resp->headers[i].name, opts->head_request))
      continue;
    APPEND("%s: %s\r\n", resp->headers[i].name, resp->headers[i].value);
  }
  if (!interim) {
    if (opts->date != NULL)
      APPEND("Date: %s\r\n", opts->date);
    if (!no_length && !handler_length && opts->content_length >= 0)
      APPEND("Content-Length: %lld\r\n", (long long)opts->content_length);
    if (opts->close)
      APPEND("Connection: close\r\n");
    else if (opts->keep_alive_header)
      APPEND("Connection: keep-alive\r\n");
  }
  APPEND("\r\n");
#undef APPEND
  *head_len = len;
  return buf;

overflow:
  free(buf);
  return NULL;
}

/*
 * parser — http-parser 2.9 adapter. The only file that includes <http_parser.h>.
 *
 * Debian's libhttp_parser is built with HTTP_PARSER_STRICT=0, so it accepts bare LF,
 * obs-fold, any two bytes after chunk data and "gzip, chunked". h1_decoder.c adds the
 * checks that strict parsing would have made; this file only translates.
 */
#include "http/parser.h"

#include <http_parser.h>
#include <pthread.h>
#include <stdlib.h>

#include "common/error.h"

struct tusc_hparser_s {
  http_parser hp; /* first: callbacks get &hp and cast back */
  const tusc_hparser_callbacks_t *cbs;
  void *ud;
  int cb_error; /* the negative code a callback returned */
};

static tusc_hparser_t *from_hp(http_parser *hp) {
  return (tusc_hparser_t *)hp;
}

/* A callback's negative code is kept and the library is told to stop with 1. */
static int relay(tusc_hparser_t *p, int rc) {
  if (rc == 0)
    return 0;
  p->cb_error = rc;
  return 1;
}

static int cb_url(http_parser *hp, const char *at, size_t len) {
  tusc_hparser_t *p = from_hp(hp);
  return relay(p, p->cbs->on_url(p->ud, at, len));
}

static int cb_header_field(http_parser *hp, const char *at, size_t len) {
  tusc_hparser_t *p = from_hp(hp);
  return relay(p, p->cbs->on_header_field(p->ud, at, len));
}

static int cb_header_value(http_parser *hp, const char *at, size_t len) {
  tusc_hparser_t *p = from_hp(hp);
  return relay(p, p->cbs->on_header_value(p->ud, at, len));
}

static int cb_headers_complete(http_parser *hp) {
  tusc_hparser_t *p = from_hp(hp);
  return relay(p, p->cbs->on_headers_complete(p->ud));
}

static int cb_chunk_header(http_parser *hp) {
  tusc_hparser_t *p = from_hp(hp);
  return relay(p, p->cbs->on_chunk_header(p->ud, hp->content_length));
}

static int cb_body(http_parser *hp, const char *at, size_t len) {
  tusc_hparser_t *p = from_hp(hp);
  return relay(p, p->cbs->on_body(p->ud, at, len));
}

static int cb_message_complete(http_parser *hp) {
  tusc_hparser_t *p = from_hp(hp);
  return relay(p, p->cbs->on_message_complete(p->ud));
}

static const http_parser_settings settings = {
    .on_url = cb_url,
    .on_header_field = cb_header_field,
    .on_header_value = cb_header_value,
    .on_headers_complete = cb_headers_complete,
    .on_body = cb_body,
    .on_message_complete = cb_message_complete,
    .on_chunk_header = cb_chunk_header,
};

int tusc_hparser_new(const tusc_hparser_callbacks_t *cbs, void *ud, tusc_hparser_t **out) {
  tusc_hparser_t *p = calloc(1, sizeof(*p));
  if (p == NULL)
    return TUSC_ENOMEM;
  http_parser_init(&p->hp, HTTP_REQUEST);
  p->cbs = cbs;
  p->ud = ud;
  *out = p;
  return 0;
}

void tusc_hparser_free(tusc_hparser_t *parser) {
  free(parser);
}

static pthread_mutex_t limit_mutex = PTHREAD_MUTEX_INITIALIZER;
static size_t limit_set;

void tusc_hparser_set_min_head_limit(size_t bytes) {
  /* The library's default is 80 KiB; raising it is only needed for larger
   * -max-header-size values, and then only once per size. */
  const size_t library_default = 80 * 1024;
  if (bytes > UINT32_MAX / 2)
    bytes = UINT32_MAX / 2;
  pthread_mutex_lock(&limit_mutex);
  if (bytes > library_default && bytes > limit_set) {
    limit_set = bytes;
    http_parser_set_max_header_size((uint32_t)bytes);
  }
  pthread_mutex_unlock(&limit_mutex);
}

int tusc_hparser_execute(tusc_hparser_t *parser, const char *data, size_t len, size_t *consumed) {
  parser->cb_error = 0;
  size_t n = http_parser_execute(&parser->hp, &settings, data, len);
  *consumed = n;
  enum http_errno e = HTTP_PARSER_ERRNO(&parser->hp);
  if (e == HPE_OK) {
    /* A CONNECT or Upgrade request stops the library after the head with no error;
     * h1_decoder.c refuses CONNECT and treats Upgrade as a plain request, so leftovers are
     * the next request's bytes. */
    return 0;
  }
  if (e == HPE_PAUSED)
    return TUSC_HPARSER_PAUSED;
  if (parser->cb_error != 0)
    return parser->cb_error;
  if (e == HPE_HEADER_OVERFLOW)
    return TUSC_EHEADERS_TOO_LARGE;
  return TUSC_EBAD_REQUEST;
}

void tusc_hparser_pause(tusc_hparser_t *parser) {
  http_parser_pause(&parser->hp, 1);
}

void tusc_hparser_resume(tusc_hparser_t *parser) {
  if (HTTP_PARSER_ERRNO(&parser->hp) == HPE_PAUSED)
    http_parser_pause(&parser->hp, 0);
}

static enum tusc_http_method map_method(unsigned m) {
  switch (m) {
  case HTTP_GET:
    return TUSC_HTTP_GET;
  case HTTP_HEAD:
    return TUSC_HTTP_HEAD;
  case HTTP_POST:
    return TUSC_HTTP_POST;
  case HTTP_PUT:
    return TUSC_HTTP_PUT;
  case HTTP_PATCH:
    return TUSC_HTTP_PATCH;
  case HTTP_DELETE:
    return TUSC_HTTP_DELETE;
  case HTTP_OPTIONS:
    return TUSC_HTTP_OPTIONS;
  default:
    return TUSC_HTTP_OTHER;
  }
}

void tusc_hparser_head(const tusc_hparser_t *parser, tusc_hparser_head_t *out) {
  const http_parser *hp = &parser->hp;
  out->method = map_method(hp->method);
  out->method_name = http_method_str((enum http_method)hp->method);
  out->http_major = hp->http_major;
  out->http_minor = hp->http_minor;
  out->keep_alive = http_should_keep_alive(hp) != 0;
  out->chunked = (hp->flags & F_CHUNKED) != 0;
  out->transfer_encoding = hp->uses_transfer_encoding != 0;
  out->has_content_length = (hp->flags & F_CONTENTLENGTH) != 0;
  out->content_length = out->has_content_length ? hp->content_length : 0;
  out->connect = hp->method == HTTP_CONNECT;
}

const char *tusc_hparser_error_text(const tusc_hparser_t *parser) {
  return http_errno_description(HTTP_PARSER_ERRNO(&parser->hp));
}

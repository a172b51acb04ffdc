/*
 * h1_decoder — one HTTP/1.1 request message, decoded strictly (see h1_decoder.h).
 *
 * Pauses: the parser is paused after the head (the caller acts on the head outside the
 * parser), after the message (the next message is the next decoder's), and in on_body
 * when the body callback asks. tusc_h1_decode turns each pause into its event.
 */
#include "http/h1_decoder.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "http/internal.h"
#include "http/parser.h"

struct hbuf {
  char *data;
  size_t len;
  size_t cap;
};

struct hrec {
  uint32_t name_off, name_len, value_off, value_len;
};

enum hdr_state { HDR_NONE = 0, HDR_FIELD, HDR_VALUE };

/* The lenient library lets through a head ending "\r\n\rX", chunk lines ending in
 * a bare CR, any two bytes after chunk data, and bare LF / obs-fold in trailers.
 * This scanner walks the same bytes strictly (RFC 9112 section 7.1) just ahead of
 * the parser, so the parser is only ever given a valid prefix. */
enum framing_state {
  FR_ANY = 0, /* sized body or none: the parser's own checks suffice */
  FR_HEAD_LF, /* the head's last LF, which the parser reads after pausing */
  FR_SIZE_START,
  FR_SIZE,
  FR_SIZE_WS,
  FR_EXT,
  FR_SIZE_LF,
  FR_DATA,
  FR_DATA_CR,
  FR_DATA_LF,
  FR_TRAILER_START,
  FR_TRAILER_LINE,
  FR_TRAILER_LF,
  FR_FINAL_LF,
  FR_DONE,
};

struct framing {
  enum framing_state state;
  enum framing_state after_head;
  unsigned digits;
  uint64_t size;
  uint64_t left;
};
enum pause_reason { PAUSE_NONE = 0, PAUSE_HEAD, PAUSE_BODY, PAUSE_MESSAGE };

struct tusc_h1_decoder_s {
  tusc_h1_limits_t limits;
  tusc_http_request_t *req; /* borrowed: what the head fills in */
  tusc_h1_body_cb on_body;
  void *arg;
  tusc_hparser_t *parser;

  struct hbuf head; /* target, path, header names and values, NUL-terminated */
  struct hrec *recs;
  size_t nrec, rec_cap;
  struct hbuf tail; /* trailer names and values */
  struct hrec *trecs;
  size_t ntrec, trec_cap;
  tusc_http_header_t *head_headers; /* the header array of the head */
  tusc_http_header_t *all_headers;  /* head + trailers, once trailers came */

  size_t head_raw;      /* raw bytes of request line + headers seen so far */
  size_t trailer_bytes; /* counted against the same limit */
  enum hdr_state hdr_state;
  bool url_done;
  unsigned char prev_byte; /* raw scan of the head: bare LF and obs-fold */
  bool seen_crlf;          /* prev bytes were CR LF */
  enum pause_reason pause_reason;
  struct framing framing; /* strict check of the bytes after the head */

  bool head_done; /* TUSC_H1_HEAD was returned: header callbacks are trailers now */
  bool has_body;
  tusc_h1_rejection_t rejection; /* status 0 unless the head was refused */
};

/* Records how to refuse the message and returns `err` (< 0) for the caller to pass up. */
static int reject(tusc_h1_decoder_t *dec, int status, int err, const char *message) {
  dec->rejection = (tusc_h1_rejection_t){.status = status, .err = err, .message = message};
  return err;
}

/* --- head storage --------------------------------------------------------------- */

static size_t head_store_cap(const tusc_h1_decoder_t *dec) {
  /* Raw head bytes are limited exactly elsewhere; the stored copy adds NULs and a
   * second copy of the path, never more than twice the raw size. */
  return 2 * dec->limits.max_header_size + 2 * dec->limits.max_header_count + 64;
}

static int hbuf_append(struct hbuf *b, const char *p, size_t n, size_t limit) {
  if (b->len + n + 1 > limit)
    return TUSC_EHEADERS_TOO_LARGE;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
      cap *= 2;
    if (cap > limit)
      cap = limit;
    char *d = realloc(b->data, cap);
    if (d == NULL)
      return TUSC_ENOMEM;
    b->data = d;
    b->cap = cap;
  }
  if (n > 0)
    memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

static int hbuf_nul(struct hbuf *b, size_t limit) {
  int rc = hbuf_append(b, "", 0, limit);
  if (rc == 0)
    b->data[b->len++] = '\0';
  return rc;
}

/* --- parser callbacks ------------------------------------------------------------ */

static bool in_trailers(const tusc_h1_decoder_t *dec) {
  return dec->head_done;
}

static int finish_header(tusc_h1_decoder_t *dec) {
  size_t limit = head_store_cap(dec);
  struct hbuf *b = in_trailers(dec) ? &dec->tail : &dec->head;
  if (dec->hdr_state == HDR_NONE)
    return 0;
  struct hrec *r = in_trailers(dec) ? &dec->trecs[dec->ntrec - 1] : &dec->recs[dec->nrec - 1];
  int rc = 0;
  if (dec->hdr_state == HDR_FIELD) {
    r->name_len = (uint32_t)(b->len - r->name_off);
    rc = hbuf_nul(b, limit);
    r->value_off = (uint32_t)b->len;
    r->value_len = 0;
    if (rc == 0)
      rc = hbuf_nul(b, limit);
  } else if (dec->hdr_state == HDR_VALUE) {
    r->value_len = (uint32_t)(b->len - r->value_off);
    rc = hbuf_nul(b, limit);
  }
  dec->hdr_state = HDR_NONE;
  return rc;
}

static int finish_url(tusc_h1_decoder_t *dec) {
  if (dec->url_done)
    return 0;
  dec->url_done = true;
  return hbuf_nul(&dec->head, head_store_cap(dec));
}

static int on_url(void *ud, const char *at, size_t len) {
  tusc_h1_decoder_t *dec = ud;
  return hbuf_append(&dec->head, at, len, head_store_cap(dec));
}

static int on_header_field(void *ud, const char *at, size_t len) {
  tusc_h1_decoder_t *dec = ud;
  bool trailer = in_trailers(dec);
  struct hbuf *b = trailer ? &dec->tail : &dec->head;
  int rc;
  if (trailer) {
    dec->trailer_bytes += len;
    if (dec->head_raw + dec->trailer_bytes > dec->limits.max_header_size)
      return TUSC_EHEADERS_TOO_LARGE;
  }
  if (dec->hdr_state != HDR_FIELD) {
    if ((rc = finish_url(dec)) != 0)
      return rc;
    if (dec->hdr_state == HDR_VALUE && (rc = finish_header(dec)) != 0)
      return rc;
    if (dec->nrec + dec->ntrec >= dec->limits.max_header_count)
      return TUSC_EHEADERS_TOO_LARGE;
    struct hrec **recs = trailer ? &dec->trecs : &dec->recs;
    size_t *n = trailer ? &dec->ntrec : &dec->nrec;
    size_t *cap = trailer ? &dec->trec_cap : &dec->rec_cap;
    if (*n == *cap) {
      size_t ncap = *cap ? *cap * 2 : 16;
      struct hrec *nr = realloc(*recs, ncap * sizeof(**recs));
      if (nr == NULL)
        return TUSC_ENOMEM;
      *recs = nr;
      *cap = ncap;
    }
    (*recs)[*n] = (struct hrec){.name_off = (uint32_t)b->len};
    (*n)++;
    if (trailer)
      dec->trailer_bytes += 4; /* ": " and CRLF */
    dec->hdr_state = HDR_FIELD;
  }
  return hbuf_append(b, at, len, head_store_cap(dec));
}

static int on_header_value(void *ud, const char *at, size_t len) {
  tusc_h1_decoder_t *dec = ud;
  bool trailer = in_trailers(dec);
  struct hbuf *b = trailer ? &dec->tail : &dec->head;
  if (trailer) {
    dec->trailer_bytes += len;
    if (dec->head_raw + dec->trailer_bytes > dec->limits.max_header_size)
      return TUSC_EHEADERS_TOO_LARGE;
  }
  if (dec->hdr_state == HDR_FIELD) {
    struct hrec *r = trailer ? &dec->trecs[dec->ntrec - 1] : &dec->recs[dec->nrec - 1];
    r->name_len = (uint32_t)(b->len - r->name_off);
    int rc = hbuf_nul(b, head_store_cap(dec));
    if (rc != 0)
      return rc;
    r->value_off = (uint32_t)b->len;
    dec->hdr_state = HDR_VALUE;
  }
  return hbuf_append(b, at, len, head_store_cap(dec));
}

static int on_headers_complete(void *ud) {
  tusc_h1_decoder_t *dec = ud;
  int rc = finish_url(dec);
  if (rc == 0)
    rc = finish_header(dec);
  if (rc != 0)
    return rc;
  dec->pause_reason = PAUSE_HEAD;
  tusc_hparser_pause(dec->parser);
  return 0;
}

static int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Advances over p[0..n); returns how many bytes are valid. *bad tells whether it
 * stopped at an invalid byte (else at the end of the input or of the message). */
static size_t framing_scan(struct framing *f, const char *p, size_t n, bool *bad) {
  size_t i = 0;
  *bad = false;
  while (i < n) {
    unsigned char c = (unsigned char)p[i];
    switch (f->state) {
    case FR_ANY:
      return n;
    case FR_DONE:
      return i;
    case FR_HEAD_LF:
      if (c != '\n')
        goto bad;
      f->state = f->after_head;
      break;
    case FR_SIZE_START:
    case FR_SIZE: {
      int h = hex_value(c);
      if (h >= 0) {
        if (f->digits >= 15) /* > 2^60 bytes: not a size anyone sends */
          goto bad;
        f->size = f->size * 16 + (uint64_t)h;
        f->digits++;
        f->state = FR_SIZE;
      } else if (f->state == FR_SIZE_START) {
        goto bad;
      } else if (c == ';') {
        f->state = FR_EXT;
      } else if (c == ' ' || c == '\t') {
        f->state = FR_SIZE_WS;
      } else if (c == '\r') {
        f->state = FR_SIZE_LF;
      } else {
        goto bad;
      }
      break;
    }
    case FR_SIZE_WS:
      if (c == ';')
        f->state = FR_EXT;
      else if (c == '\r')
        f->state = FR_SIZE_LF;
      else if (c != ' ' && c != '\t')
        goto bad;
      break;
    case FR_EXT:
      if (c == '\r')
        f->state = FR_SIZE_LF;
      else if ((c < 0x20 && c != '\t') || c == 0x7f)
        goto bad;
      break;
    case FR_SIZE_LF:
      if (c != '\n')
        goto bad;
      f->digits = 0;
      if (f->size == 0) {
        f->state = FR_TRAILER_START;
      } else {
        f->left = f->size;
        f->size = 0;
        f->state = FR_DATA;
      }
      break;
    case FR_DATA: {
      size_t take = f->left < n - i ? (size_t)f->left : n - i;
      f->left -= take;
      i += take;
      if (f->left == 0)
        f->state = FR_DATA_CR;
      continue;
    }
    case FR_DATA_CR:
      if (c != '\r')
        goto bad;
      f->state = FR_DATA_LF;
      break;
    case FR_DATA_LF:
      if (c != '\n')
        goto bad;
      f->state = FR_SIZE_START;
      break;
    case FR_TRAILER_START:
      if (c == '\r')
        f->state = FR_FINAL_LF;
      else if (c == ' ' || c == '\t' || c == '\n' || c == '\0')
        goto bad;
      else
        f->state = FR_TRAILER_LINE;
      break;
    case FR_TRAILER_LINE:
      if (c == '\r')
        f->state = FR_TRAILER_LF;
      else if (c == '\n' || c == '\0')
        goto bad;
      break;
    case FR_TRAILER_LF:
      if (c != '\n')
        goto bad;
      f->state = FR_TRAILER_START;
      break;
    case FR_FINAL_LF:
      if (c != '\n')
        goto bad;
      f->state = FR_DONE;
      break;
    }
    i++;
  }
  return i;
bad:
  *bad = true;
  return i;
}

static int on_chunk_header(void *ud, uint64_t size) {
  (void)ud;
  (void)size;
  return 0;
}

static int on_body(void *ud, const char *at, size_t len) {
  tusc_h1_decoder_t *dec = ud;
  int rc = dec->on_body(dec->arg, at, len);
  if (rc == TUSC_H1_BODY_PAUSE) {
    dec->pause_reason = PAUSE_BODY;
    tusc_hparser_pause(dec->parser);
  }
  return 0;
}

static int on_message_complete(void *ud) {
  tusc_h1_decoder_t *dec = ud;
  int rc = 0;
  if (dec->hdr_state != HDR_NONE)
    rc = finish_header(dec);
  dec->pause_reason = PAUSE_MESSAGE;
  tusc_hparser_pause(dec->parser);
  return rc;
}

static const tusc_hparser_callbacks_t parser_callbacks = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_chunk_header = on_chunk_header,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* --- request head validation ------------------------------------------------------ */

static bool valid_name(const char *s, size_t n) {
  if (n == 0)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!tusc_http_is_tchar((unsigned char)s[i]))
      return false;
  return true;
}

static bool valid_value(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c < 0x20 && c != '\t') || c == 0x7f)
      return false;
  }
  return true;
}

static bool eq_ci(const char *a, size_t alen, const char *b) {
  size_t blen = strlen(b);
  if (alen != blen)
    return false;
  for (size_t i = 0; i < alen; i++) {
    unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
    if (x >= 'A' && x <= 'Z')
      x = (unsigned char)(x + 32);
    if (y >= 'A' && y <= 'Z')
      y = (unsigned char)(y + 32);
    if (x != y)
      return false;
  }
  return true;
}

/* Builds tusc_http_header_t entries from records, trimming trailing whitespace. */
static tusc_http_header_t *build_headers(struct hbuf *b, const struct hrec *recs, size_t n,
                                         bool trailer, tusc_http_header_t *out) {
  for (size_t i = 0; i < n; i++) {
    char *name = b->data + recs[i].name_off;
    char *value = b->data + recs[i].value_off;
    size_t vlen = recs[i].value_len;
    while (vlen > 0 && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
      value[--vlen] = '\0';
    while (vlen > 0 && (value[0] == ' ' || value[0] == '\t')) {
      value++;
      vlen--;
    }
    out[i] = (tusc_http_header_t){.name = name,
                                  .value = value,
                                  .name_len = recs[i].name_len,
                                  .value_len = vlen,
                                  .trailer = trailer};
  }
  return out;
}

/* Returns 0, or the status to refuse the request with (*message set). */
static int validate_head(tusc_h1_decoder_t *dec, const tusc_hparser_head_t *h,
                         const char **message) {
  tusc_http_request_t *req = dec->req;
  if (h->http_major != 1) {
    *message = "HTTP version not supported";
    return 505;
  }
  if (h->connect) {
    *message = "CONNECT is not supported";
    return 400;
  }
  const char *t = req->target;
  if (t[0] == '\0') {
    *message = "empty request target";
    return 400;
  }
  for (const char *c = t; *c; c++) {
    unsigned char ch = (unsigned char)*c;
    if (ch <= 0x20 || ch == 0x7f) {
      *message = "invalid request target";
      return 400;
    }
  }
  size_t hosts = 0, tes = 0, cls = 0;
  for (size_t i = 0; i < req->header_count; i++) {
    const tusc_http_header_t *hd = &req->headers[i];
    if (!valid_name(hd->name, hd->name_len) || !valid_value(hd->value, hd->value_len)) {
      *message = "invalid header field";
      return 400;
    }
    if (eq_ci(hd->name, hd->name_len, "Host"))
      hosts++;
    else if (eq_ci(hd->name, hd->name_len, "Transfer-Encoding")) {
      tes++;
      if (!eq_ci(hd->value, hd->value_len, "chunked")) {
        *message = "unsupported Transfer-Encoding";
        return 400;
      }
    } else if (eq_ci(hd->name, hd->name_len, "Content-Length"))
      cls++;
  }
  if (h->http_minor >= 1 && hosts != 1) {
    *message = hosts == 0 ? "missing Host header" : "more than one Host header";
    return 400;
  }
  if (hosts > 1) {
    *message = "more than one Host header";
    return 400;
  }
  /* Both framings, or two of one: a proxy in front may read the body differently
   * from us (request smuggling). */
  if (cls > 1 || tes > 1 || (cls > 0 && tes > 0) || (tes > 0 && !h->chunked)) {
    *message = "ambiguous message framing";
    return 400;
  }
  if (tes > 0 && h->http_minor == 0) {
    *message = "Transfer-Encoding in an HTTP/1.0 request";
    return 400;
  }
  return 0;
}

static int hbuf_reserve(struct hbuf *b, size_t n, size_t limit) {
  size_t len = b->len;
  int rc = hbuf_append(b, NULL, 0, limit);
  if (rc != 0)
    return rc;
  if (len + n + 1 > limit)
    return TUSC_EHEADERS_TOO_LARGE;
  if (len + n + 1 > b->cap) {
    char *d = realloc(b->data, len + n + 1);
    if (d == NULL)
      return TUSC_ENOMEM;
    b->data = d;
    b->cap = len + n + 1;
  }
  return 0;
}

/* Splits the target into path and query. Absolute-form ("http://host/p") is
 * accepted as RFC 9112 asks; the authority part is dropped from the path. */
static int split_target(tusc_h1_decoder_t *dec) {
  size_t limit = head_store_cap(dec);
  const char *t = dec->head.data;
  size_t tlen = strlen(t);
  size_t path_start = 0;
  const char *scheme_end = strstr(t, "://");
  if (t[0] != '/' && scheme_end != NULL) {
    const char *slash = strchr(scheme_end + 3, '/');
    path_start = slash ? (size_t)(slash - t) : tlen;
  }
  const char *q = strchr(t + path_start, '?');
  size_t path_len = q ? (size_t)(q - (t + path_start)) : tlen - path_start;
  size_t query_off = q ? (size_t)(q - t) + 1 : 0;
  bool has_query = q != NULL;
  size_t path_off = dec->head.len;
  int rc = hbuf_reserve(&dec->head, path_len + 1, limit);
  if (rc != 0)
    return rc;
  char *dst = dec->head.data + path_off;
  if (path_len == 0) {
    dst[0] = '/';
    path_len = 1;
  } else {
    memcpy(dst, dec->head.data + path_start, path_len);
  }
  dst[path_len] = '\0';
  dec->head.len += path_len + 1;
  dec->req->target = dec->head.data;
  dec->req->path = dec->head.data + path_off;
  dec->req->query = has_query ? dec->head.data + query_off : "";
  return 0;
}

/* Expect is a list (possibly over several fields); "100-continue" is the only
 * expectation defined, so any other member cannot be met. */
static bool expectations_supported(const tusc_http_request_t *req, bool *continue_expected) {
  for (size_t i = 0; i < req->header_count; i++) {
    const tusc_http_header_t *hd = &req->headers[i];
    if (hd->trailer || !eq_ci(hd->name, hd->name_len, "Expect"))
      continue;
    const char *v = hd->value, *end = hd->value + hd->value_len;
    while (v < end) {
      const char *comma = memchr(v, ',', (size_t)(end - v));
      const char *m_end = comma ? comma : end;
      const char *m = v;
      while (m < m_end && (*m == ' ' || *m == '\t'))
        m++;
      const char *e = m_end;
      while (e > m && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
      if (e > m) {
        if (!eq_ci(m, (size_t)(e - m), "100-continue"))
          return false;
        *continue_expected = true;
      }
      v = comma ? comma + 1 : end;
    }
  }
  return true;
}

/* The head is complete: fills in the request, then validates it. Fields are set in
 * this order on purpose: a refused HEAD request is answered without a body. */
static int finish_head(tusc_h1_decoder_t *dec) {
  tusc_http_request_t *req = dec->req;
  tusc_hparser_head_t h;
  tusc_hparser_head(dec->parser, &h);

  int rc = split_target(dec);
  if (rc == 0) {
    /* The head buffer does not grow any more: pointers into it are stable. */
    dec->head_headers = calloc(dec->nrec ? dec->nrec : 1, sizeof(tusc_http_header_t));
    if (dec->head_headers == NULL)
      rc = TUSC_ENOMEM;
  }
  if (rc != 0)
    return reject(dec, tusc_error_status(rc), rc, NULL);
  req->headers = build_headers(&dec->head, dec->recs, dec->nrec, false, dec->head_headers);
  req->header_count = dec->nrec;
  req->method = h.method;
  req->method_name = h.method_name;
  req->http_minor = h.http_minor >= 1 ? 1 : 0;
  req->keep_alive = h.keep_alive;
  req->chunked = h.chunked;
  req->content_length = h.has_content_length ? (int64_t)h.content_length : -1;
  if (req->content_length < -1)
    return reject(dec, 400, TUSC_EBAD_REQUEST, "invalid Content-Length");

  const char *message = NULL;
  int status = validate_head(dec, &h, &message);
  if (status != 0)
    return reject(dec, status, TUSC_EBAD_REQUEST, message);
  bool continue_expected = false;
  if (!expectations_supported(req, &continue_expected)) {
    /* RFC 9110 section 10.1.1: an expectation we cannot meet is refused, not ignored. */
    return reject(dec, 417, TUSC_EEXPECTATION_FAILED, NULL);
  }
  req->expect_continue = continue_expected && req->http_minor >= 1;
  dec->has_body = req->chunked || req->content_length > 0;
  dec->framing.after_head = req->chunked ? FR_SIZE_START : FR_ANY;
  dec->framing.state = dec->prev_byte == '\r' ? FR_HEAD_LF : dec->framing.after_head;
  dec->head_done = true;
  return 0;
}

/* Trailers join the header list in a new array; the old one stays alive (and its
 * strings never move) because the handler may still hold pointers into it. */
static int merge_trailers(tusc_h1_decoder_t *dec) {
  if (dec->ntrec == 0)
    return 0;
  size_t total = dec->nrec + dec->ntrec;
  tusc_http_header_t *all = calloc(total, sizeof(*all));
  if (all == NULL)
    return TUSC_ENOMEM;
  if (dec->nrec > 0)
    memcpy(all, dec->head_headers, dec->nrec * sizeof(*all));
  build_headers(&dec->tail, dec->trecs, dec->ntrec, true, all + dec->nrec);
  for (size_t i = dec->nrec; i < total; i++) {
    if (!valid_name(all[i].name, all[i].name_len) || !valid_value(all[i].value, all[i].value_len)) {
      free(all);
      return TUSC_EBAD_REQUEST;
    }
  }
  dec->all_headers = all;
  dec->req->headers = all;
  dec->req->header_count = total;
  return 0;
}

/* The lenient library accepts bare LF and obs-fold; the head's raw bytes are checked
 * here instead. */
static int scan_head(tusc_h1_decoder_t *dec, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (c == '\n' && dec->prev_byte != '\r')
      return TUSC_EBAD_REQUEST;
    if (dec->seen_crlf && (c == ' ' || c == '\t'))
      return TUSC_EBAD_REQUEST;
    if (c == '\0')
      return TUSC_EBAD_REQUEST;
    dec->seen_crlf = dec->prev_byte == '\r' && c == '\n';
    dec->prev_byte = c;
  }
  return 0;
}

/* --- decoding ---------------------------------------------------------------------- */

void tusc_h1_decoder_allow_head(size_t max_header_size) {
  tusc_hparser_set_min_head_limit(max_header_size + 1024);
}

int tusc_h1_decoder_new(const tusc_h1_limits_t *limits, tusc_http_request_t *req,
                        tusc_h1_body_cb on_body_cb, void *arg, tusc_h1_decoder_t **out) {
  tusc_h1_decoder_t *dec = calloc(1, sizeof(*dec));
  if (dec == NULL)
    return TUSC_ENOMEM;
  int rc = tusc_hparser_new(&parser_callbacks, dec, &dec->parser);
  if (rc != 0) {
    free(dec);
    return rc;
  }
  dec->limits = *limits;
  dec->req = req;
  dec->on_body = on_body_cb;
  dec->arg = arg;
  dec->seen_crlf = true; /* a request line may not start with whitespace either */
  *out = dec;
  return 0;
}

void tusc_h1_decoder_free(tusc_h1_decoder_t *dec) {
  if (dec == NULL)
    return;
  tusc_hparser_free(dec->parser);
  free(dec->all_headers);
  free(dec->head_headers);
  free(dec->head.data);
  free(dec->recs);
  free(dec->tail.data);
  free(dec->trecs);
  free(dec);
}

/* A failure: before the head was accepted it becomes a rejection (how the connection
 * answers); after, the error alone goes back. */
static int fail(tusc_h1_decoder_t *dec, int err) {
  if (dec->head_done)
    return err;
  if (err == TUSC_EHEADERS_TOO_LARGE)
    return reject(dec, 431, err, NULL);
  if (err == TUSC_ENOMEM)
    return reject(dec, 503, err, NULL);
  reject(dec, 400, TUSC_EBAD_REQUEST, NULL);
  return err;
}

/* One parser run over what may be given to it now. Returns an event, or TUSC_H1_MORE
 * when the parser took its bytes without one (the caller goes on with the rest). */
static int step(tusc_h1_decoder_t *dec, const char *data, size_t len, size_t *off_io) {
  size_t off = *off_io;
  size_t avail = len - off;
  bool head_phase = !dec->head_done;
  if (head_phase) {
    static const char h2_preface[] = "PRI * HTTP/2.0\r\n";
    if (dec->head_raw == 0 && avail >= sizeof(h2_preface) - 1 &&
        memcmp(data + off, h2_preface, sizeof(h2_preface) - 1) == 0) {
      /* Prior-knowledge HTTP/2 (e.g. h2c clients): say so rather than "malformed". */
      return reject(dec, 505, TUSC_EBAD_REQUEST, "HTTP/2 is not supported, use HTTP/1.1");
    }
    size_t allow = dec->limits.max_header_size - dec->head_raw;
    if (allow == 0)
      return fail(dec, TUSC_EHEADERS_TOO_LARGE);
    if (avail > allow)
      avail = allow;
  } else {
    struct framing probe = dec->framing;
    bool bad = false;
    size_t valid = framing_scan(&probe, data + off, avail, &bad);
    if (valid == 0) {
      /* An invalid byte, or bytes past the message end the parser did not see. */
      return fail(dec, TUSC_EBAD_REQUEST);
    }
    avail = valid;
  }
  size_t n = 0;
  int rc = tusc_hparser_execute(dec->parser, data + off, avail, &n);
  if (head_phase) {
    int src = scan_head(dec, data + off, n);
    dec->head_raw += n;
    if (src != 0 && rc >= 0)
      rc = src;
  } else {
    bool bad = false;
    framing_scan(&dec->framing, data + off, n, &bad);
  }
  off += n;
  *off_io = off;
  if (rc < 0)
    return fail(dec, rc);
  if (rc == TUSC_HPARSER_PAUSED) {
    tusc_hparser_resume(dec->parser);
    enum pause_reason why = dec->pause_reason;
    dec->pause_reason = PAUSE_NONE;
    if (why == PAUSE_HEAD) {
      bool lf_pending = dec->prev_byte == '\r';
      if (lf_pending && off < len && data[off] != '\n')
        return fail(dec, TUSC_EBAD_REQUEST);
      rc = finish_head(dec);
      return rc < 0 ? rc : TUSC_H1_HEAD;
    }
    if (why == PAUSE_MESSAGE) {
      if (dec->has_body && (rc = merge_trailers(dec)) != 0)
        return fail(dec, rc);
      return TUSC_H1_END;
    }
    return TUSC_H1_PAUSED;
  }
  if (head_phase && dec->head_raw >= dec->limits.max_header_size)
    return fail(dec, TUSC_EHEADERS_TOO_LARGE);
  return TUSC_H1_MORE;
}

int tusc_h1_decode(tusc_h1_decoder_t *dec, const char *data, size_t len, size_t *consumed) {
  size_t off = 0;
  int ev = TUSC_H1_MORE;
  while (off < len && ev == TUSC_H1_MORE)
    ev = step(dec, data, len, &off);
  *consumed = off;
  return ev;
}

void tusc_h1_decoder_rejection(const tusc_h1_decoder_t *dec, tusc_h1_rejection_t *out) {
  *out = dec->rejection;
}

bool tusc_h1_decoder_has_body(const tusc_h1_decoder_t *dec) {
  return dec->has_body;
}

const char *tusc_h1_decoder_error_text(const tusc_h1_decoder_t *dec) {
  return tusc_hparser_error_text(dec->parser);
}

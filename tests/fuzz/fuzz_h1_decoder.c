/*
 * fuzz_h1_decoder — the HTTP/1.1 request decoder alone (src/http/h1_decoder.c over
 * parser.c): bytes in, no socket, no loop, no handler. The input is a stream of
 * pipelined request messages, decoded one message per decoder as h1.c does.
 *
 * Checked, besides memory safety and leaks:
 *   - every head the decoder accepts is one the handler may trust: a target without
 *     spaces or controls, a non-empty path without the query, header names that are tokens,
 *     values without controls or surrounding blanks, at most max_header_count fields,
 *     not both Content-Length and chunked, one Host on HTTP/1.1;
 *   - body pieces point into the bytes just fed; a Content-Length body that ends adds
 *     up to its length; trailers come only with chunked bodies and are valid fields;
 *   - split invariance: the input decoded in one piece, and again arriving in small
 *     pieces (sizes from a generator seeded by the input) with a pause after every body
 *     piece, gives the same transcript — the same heads, body bytes, trailers and message
 *     ends, and a refusal at the same place. TCP may cut a request anywhere; whether the
 *     server takes a message, and what it takes from it, must not depend on where (a
 *     difference there is what request smuggling is made of). Which error is reported
 *     may differ: with two problems in one piece, the parser's lazy data callbacks and
 *     the strict scans may see either one first (e.g. 431 for too many fields or 400 for
 *     an obs-fold; a prior-knowledge HTTP/2 preface cut before its 16th byte gets 400,
 *     not 505). So the transcript has the refusal's place, not its code.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/h1_decoder.h"
#include "http/http.h"

#define MAX_HEADER_SIZE 1024
#define MAX_HEADER_COUNT 16
#define MAX_MESSAGES 64

struct transcript {
  unsigned char *data;
  size_t len, cap;
};

struct run {
  struct transcript t;
  bool split;      /* pieces and pauses */
  const char *win; /* the bytes given to the decoder now */
  size_t win_len;
  tusc_http_request_t req;
  int64_t body; /* body bytes of the current message */
};

static void put(struct transcript *t, const void *p, size_t n) {
  if (t->len + n > t->cap) {
    size_t cap = t->cap ? t->cap : 1024;
    while (cap < t->len + n)
      cap *= 2;
    unsigned char *d = realloc(t->data, cap);
    if (d == NULL)
      abort();
    t->data = d;
    t->cap = cap;
  }
  memcpy(t->data + t->len, p, n);
  t->len += n;
}

static void put_tag(struct transcript *t, char tag) {
  put(t, &tag, 1);
}

static void put_int(struct transcript *t, int64_t v) {
  put(t, &v, sizeof(v));
}

static void put_str(struct transcript *t, const char *s) {
  put(t, s, strlen(s) + 1);
}

static void fail(const char *what) {
  fprintf(stderr, "fuzz_h1_decoder: %s\n", what);
  abort();
}

/* Shows a transcript (printable bytes as they are) for the report of a mismatch. */
static void dump(const char *what, const struct transcript *t) {
  fprintf(stderr, "%s (%zu bytes): ", what, t->len);
  for (size_t i = 0; i < t->len; i++) {
    unsigned char c = t->data[i];
    if (c >= 0x20 && c < 0x7f && c != '\\')
      fputc(c, stderr);
    else
      fprintf(stderr, "\\x%02x", c);
  }
  fputc('\n', stderr);
}

static bool is_token(const char *s, size_t n) {
  if (n == 0)
    return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && (c == '\0' || strchr("!#$%&'*+-.^_`|~", c) == NULL))
      return false;
  }
  return true;
}

static void check_field(const tusc_http_header_t *h) {
  if (strlen(h->name) != h->name_len || strlen(h->value) != h->value_len)
    fail("field lengths disagree with the strings");
  if (!is_token(h->name, h->name_len))
    fail("field name is not a token");
  for (size_t i = 0; i < h->value_len; i++) {
    unsigned char c = (unsigned char)h->value[i];
    if ((c < 0x20 && c != '\t') || c == 0x7f)
      fail("control byte in a field value");
  }
  if (h->value_len > 0 && (h->value[0] == ' ' || h->value[0] == '\t' ||
                           h->value[h->value_len - 1] == ' ' || h->value[h->value_len - 1] == '\t'))
    fail("field value not trimmed");
}

static void record_fields(struct transcript *t, const tusc_http_request_t *req, bool trailers) {
  for (size_t i = 0; i < req->header_count; i++) {
    const tusc_http_header_t *h = &req->headers[i];
    if (h->trailer != trailers)
      continue;
    check_field(h);
    put_str(t, h->name);
    put_str(t, h->value);
  }
}

static void on_head(struct run *r) {
  const tusc_http_request_t *req = &r->req;
  if (req->target[0] == '\0' || req->path[0] == '\0' || strchr(req->path, '?') != NULL)
    fail("empty target or path, or a query left in the path");
  if (req->target[0] == '/' && req->path[0] != '/')
    fail("an origin-form target whose path does not start with '/'");
  for (const char *c = req->target; *c; c++)
    if ((unsigned char)*c <= 0x20 || (unsigned char)*c == 0x7f)
      fail("space or control byte in the target");
  if (req->header_count > MAX_HEADER_COUNT)
    fail("more fields than max_header_count");
  if (req->chunked && req->content_length >= 0)
    fail("both Content-Length and chunked");
  if (req->http_minor != 0 && req->http_minor != 1)
    fail("http_minor is neither 0 nor 1");
  size_t hosts = 0;
  for (size_t i = 0; i < req->header_count; i++) {
    if (req->headers[i].trailer)
      fail("a trailer in the head");
    if (strcasecmp(req->headers[i].name, "Host") == 0)
      hosts++;
  }
  if (hosts > 1 || (req->http_minor == 1 && hosts != 1))
    fail("Host count");
  put_tag(&r->t, 'H');
  put_str(&r->t, req->method_name);
  put_int(&r->t, req->method);
  put_str(&r->t, req->target);
  put_str(&r->t, req->path);
  put_str(&r->t, req->query);
  put_int(&r->t, req->http_minor);
  put_int(&r->t, req->keep_alive);
  put_int(&r->t, req->chunked);
  put_int(&r->t, req->content_length);
  put_int(&r->t, req->expect_continue);
  put_int(&r->t, (int64_t)req->header_count);
  record_fields(&r->t, req, false);
  put_tag(&r->t, 'B'); /* body bytes follow, as they come */
}

static void on_end(struct run *r) {
  const tusc_http_request_t *req = &r->req;
  if (!req->chunked && r->body != (req->content_length > 0 ? req->content_length : 0))
    fail("a sized body ended at another length");
  bool trailers = false;
  for (size_t i = 0; i < req->header_count; i++)
    trailers |= req->headers[i].trailer;
  if (trailers && !req->chunked)
    fail("trailers without a chunked body");
  if (req->header_count > MAX_HEADER_COUNT)
    fail("more fields and trailers than max_header_count");
  put_tag(&r->t, 'E');
  put_int(&r->t, r->body);
  record_fields(&r->t, req, true);
}

static int on_body(void *arg, const char *data, size_t len) {
  struct run *r = arg;
  if (len == 0 || data < r->win || data + len > r->win + r->win_len)
    fail("body piece outside the fed bytes");
  put(&r->t, data, len);
  r->body += (int64_t)len;
  /* As h1.c: never pause at the last byte of a sized body (its end would go unseen). */
  bool sized_done = !r->req.chunked && r->body == r->req.content_length;
  return r->split && !sized_done ? TUSC_H1_BODY_PAUSE : 0;
}

/* xorshift, seeded by the input: the piece sizes of the split run. */
static uint32_t next_piece(uint32_t *state) {
  uint32_t x = *state;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  *state = x;
  return (x & 7) == 0 ? 1 + (x >> 3) % 200 : 1 + (x >> 3) % 8;
}

static void run(struct run *r, const uint8_t *data, size_t size, uint32_t seed) {
  const tusc_h1_limits_t limits = {.max_header_size = MAX_HEADER_SIZE,
                                   .max_header_count = MAX_HEADER_COUNT};
  size_t pos = 0;                        /* bytes the decoders took */
  size_t received = r->split ? 0 : size; /* bytes "arrived" so far */
  for (int m = 0; m < MAX_MESSAGES; m++) {
    memset(&r->req, 0, sizeof(r->req));
    r->req.content_length = -1;
    r->req.method_name = "-";
    r->req.target = r->req.path = r->req.query = "";
    r->body = 0;
    tusc_h1_decoder_t *dec = NULL;
    if (tusc_h1_decoder_new(&limits, &r->req, on_body, r, &dec) != 0)
      fail("decoder_new");
    bool head = false;
    for (;;) {
      if (pos == received) {
        if (received == size) {
          put_tag(&r->t, 'Z'); /* the input ends inside this message (or before it) */
          put_int(&r->t, head);
          tusc_h1_decoder_free(dec);
          return;
        }
        received += next_piece(&seed);
        if (received > size)
          received = size;
      }
      r->win = (const char *)data + pos;
      r->win_len = received - pos;
      size_t n = SIZE_MAX;
      int ev = tusc_h1_decode(dec, r->win, r->win_len, &n);
      if (n > r->win_len)
        fail("consumed more than it was given");
      pos += n;
      if (ev < 0) {
        tusc_h1_rejection_t rej;
        tusc_h1_decoder_rejection(dec, &rej);
        if (head != (rej.status == 0))
          fail("a rejection status after the head, or none before it");
        if (!head && (rej.status < 400 || rej.status > 599 || rej.err >= 0))
          fail("a rejection that is no 4xx/5xx with an error");
        put_tag(&r->t, 'X');
        put_int(&r->t, head);
        tusc_h1_decoder_free(dec);
        return;
      }
      if (ev == TUSC_H1_MORE && n != r->win_len)
        fail("MORE without taking every byte");
      if (ev == TUSC_H1_PAUSED && !r->split)
        fail("paused without being asked");
      if (ev == TUSC_H1_HEAD) {
        if (head)
          fail("a second head");
        head = true;
        on_head(r);
      } else if (ev == TUSC_H1_END) {
        if (!head)
          fail("a message end before its head");
        on_end(r);
        break;
      }
    }
    tusc_h1_decoder_free(dec);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint32_t seed = 2166136261u;
  for (size_t i = 0; i < size; i++)
    seed = (seed ^ data[i]) * 16777619u;
  if (seed == 0)
    seed = 1;
  struct run whole = {.split = false};
  struct run split = {.split = true};
  run(&whole, data, size, seed);
  run(&split, data, size, seed);
  if (whole.t.len != split.t.len || memcmp(whole.t.data, split.t.data, whole.t.len) != 0) {
    dump("in one piece", &whole.t);
    dump("in pieces", &split.t);
    fail("decoding in pieces differs from decoding in one piece");
  }
  free(whole.t.data);
  free(split.t.data);
  return 0;
}

/*
 * hook_http — see hook_http.h. Transfers run on the loop's libcurl driver
 * (net/curl_loop.h).
 *
 * One `struct post` per invocation, reusing one easy handle across attempts. Its own
 * timer serves the backoff between attempts and, once the outcome is known, is
 * closed so that done() is always called from a close callback (asynchronously).
 */
#include "hooks/hook_http.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "common/error.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "hooks/hook_json.h"
#include "net/curl_loop.h"

struct http_sender;

struct post {
  struct http_sender *hs;
  tusc_hook_call_t *call;
  CURL *easy;
  struct curl_slist *headers;
  tusc_curl_xfer_t xfer; /* active exactly while an attempt is in flight */
  uv_timer_t timer;
  int attempt;          /* attempts started */
  uint64_t deadline_ms; /* 0 = none */
  bool finished;
  int status;
  char *body;
  size_t body_len, body_cap;
  bool too_large;
  char curl_error[CURL_ERROR_SIZE];
  struct post *prev, *next;
};

struct http_sender {
  tusc_hook_sender_t base;
  uv_loop_t *loop;
  tusc_curl_loop_t *curl;
  char *url;
  int retry;
  int64_t backoff_ms, timeout_ms, size_limit;
  struct post *posts;
  bool closing;
  void (*closed_cb)(void *arg);
  void *closed_arg;
};

static void start_attempt(struct post *p);

/* --- teardown ------------------------------------------------------------------------ */

static void curl_closed(void *arg) {
  struct http_sender *hs = arg;
  void (*cb)(void *) = hs->closed_cb;
  void *cb_arg = hs->closed_arg;
  free(hs->url);
  free(hs);
  cb(cb_arg);
}

/* Once no post is left; the driver's close callback frees the sender. */
static void teardown(struct http_sender *hs) {
  tusc_curl_loop_close(hs->curl, curl_closed, hs);
  hs->curl = NULL;
}

/* --- one invocation -------------------------------------------------------------------- */

static void post_closed(uv_handle_t *h) {
  struct post *p = h->data;
  struct http_sender *hs = p->hs;
  if (p->prev)
    p->prev->next = p->next;
  else
    hs->posts = p->next;
  if (p->next)
    p->next->prev = p->prev;
  curl_easy_cleanup(p->easy);
  curl_slist_free_all(p->headers);
  free(p->body);
  tusc_hook_call_t *call = p->call;
  int status = p->status;
  free(p);
  call->done(call, status);
  if (hs->closing && !hs->posts)
    teardown(hs);
}

static void finish(struct post *p, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void finish(struct post *p, int status, const char *fmt, ...) {
  if (p->finished)
    return;
  p->finished = true;
  p->status = status;
  if (status < 0 && fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->call->resp.error, sizeof(p->call->resp.error), fmt, ap);
    va_end(ap);
  }
  tusc_curl_loop_remove(p->hs->curl, &p->xfer);
  uv_timer_stop(&p->timer);
  uv_close((uv_handle_t *)&p->timer, post_closed);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp) {
  struct post *p = userp;
  size_t n = size * nmemb;
  int64_t limit = p->hs->size_limit;
  if (limit > 0 && (int64_t)(p->body_len + n) > limit) {
    p->too_large = true;
    return 0; /* makes curl fail the transfer with CURLE_WRITE_ERROR */
  }
  if (p->body_len + n + 1 > p->body_cap) {
    size_t cap = p->body_cap ? p->body_cap : 1024;
    while (cap < p->body_len + n + 1)
      cap *= 2;
    char *b = realloc(p->body, cap);
    if (!b)
      return 0;
    p->body = b;
    p->body_cap = cap;
  }
  memcpy(p->body + p->body_len, data, n);
  p->body_len += n;
  p->body[p->body_len] = '\0';
  return n;
}

static bool is_json_type(const char *ctype) {
  static const char want[] = "application/json";
  if (!ctype || strncasecmp(ctype, want, sizeof(want) - 1) != 0)
    return false;
  char next = ctype[sizeof(want) - 1];
  return next == '\0' || next == ';' || next == ' ' || next == '\t';
}

static bool blank(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
      return false;
  return true;
}

static void on_backoff(uv_timer_t *t) {
  start_attempt(t->data);
}

static void attempt_failed(struct post *p, const char *why) {
  struct http_sender *hs = p->hs;
  if (p->attempt >= hs->retry) {
    finish(p, TUSC_EINTERNAL, "HTTP hook %s failed after %d attempt(s): %s",
           tusc_hook_event_name(p->call->event), p->attempt, why);
    return;
  }
  uint64_t now = tusc_now_ms();
  if (p->deadline_ms && now + (uint64_t)hs->backoff_ms >= p->deadline_ms) {
    finish(p, UV_ETIMEDOUT, "HTTP hook %s timed out after %d attempt(s): %s",
           tusc_hook_event_name(p->call->event), p->attempt, why);
    return;
  }
  tusc_log_msg(TUSC_LOG_WARN, "HTTP hook %s attempt %d/%d failed: %s; retrying",
               tusc_hook_event_name(p->call->event), p->attempt, hs->retry, why);
  uv_update_time(hs->loop); /* the backoff counts from now, not from the loop's wake-up */
  uv_timer_start(&p->timer, on_backoff, (uint64_t)hs->backoff_ms, 0);
}

static void attempt_done(tusc_curl_xfer_t *xfer, CURLcode res) {
  struct post *p = xfer->data;
  struct http_sender *hs = p->hs;
  const char *ev = tusc_hook_event_name(p->call->event);
  char why[CURL_ERROR_SIZE + 64];

  if (res != CURLE_OK) {
    if (p->too_large || res == CURLE_FILESIZE_EXCEEDED) {
      finish(p, TUSC_EINTERNAL, "HTTP hook %s: response body exceeds %" PRId64 " bytes", ev,
             hs->size_limit);
      return;
    }
    if (res == CURLE_WRITE_ERROR) {
      finish(p, TUSC_ENOMEM, "HTTP hook %s: out of memory", ev);
      return;
    }
    if (res == CURLE_OPERATION_TIMEDOUT && p->deadline_ms && tusc_now_ms() >= p->deadline_ms) {
      finish(p, UV_ETIMEDOUT, "HTTP hook %s timed out after %" PRId64 " ms", ev, hs->timeout_ms);
      return;
    }
    snprintf(why, sizeof(why), "%s", p->curl_error[0] ? p->curl_error : curl_easy_strerror(res));
    attempt_failed(p, why);
    return;
  }
  long code = 0;
  curl_easy_getinfo(p->easy, CURLINFO_RESPONSE_CODE, &code);
  if (code >= 500) {
    snprintf(why, sizeof(why), "endpoint answered %ld", code);
    attempt_failed(p, why);
    return;
  }
  if (code < 200 || code > 299) {
    finish(p, TUSC_EINTERNAL, "HTTP hook %s: endpoint answered %ld", ev, code);
    return;
  }
  char *ctype = NULL;
  curl_easy_getinfo(p->easy, CURLINFO_CONTENT_TYPE, &ctype);
  if (!is_json_type(ctype)) {
    finish(p, TUSC_EINTERNAL,
           "HTTP hook %s: endpoint answered Content-Type \"%s\", not "
           "application/json",
           ev, ctype ? ctype : "");
    return;
  }
  if (blank(p->body ? p->body : "", p->body_len)) {
    finish(p, TUSC_EINTERNAL, "HTTP hook %s: endpoint answered an empty body (want at least {})",
           ev);
    return;
  }
  int rc = tusc_hook_json_response(p->body, p->body_len, &p->call->resp);
  finish(p, rc, NULL);
}

static void start_attempt(struct post *p) {
  struct http_sender *hs = p->hs;
  p->attempt++;
  p->body_len = 0;
  p->too_large = false;
  p->curl_error[0] = '\0';
  long timeout = 0;
  if (p->deadline_ms) {
    uint64_t now = tusc_now_ms();
    if (now >= p->deadline_ms) {
      finish(p, UV_ETIMEDOUT, "HTTP hook %s timed out after %" PRId64 " ms",
             tusc_hook_event_name(p->call->event), hs->timeout_ms);
      return;
    }
    timeout = (long)(p->deadline_ms - now);
  }
  curl_easy_setopt(p->easy, CURLOPT_TIMEOUT_MS, timeout);
  if (tusc_curl_loop_add(hs->curl, &p->xfer, p->easy, attempt_done) != 0)
    finish(p, TUSC_EINTERNAL, "HTTP hook: cannot start a transfer");
}

static int http_start(tusc_hook_sender_t *sender, tusc_hook_call_t *call) {
  struct http_sender *hs = (struct http_sender *)sender;
  if (hs->closing)
    return UV_ECANCELED;
  struct post *p = calloc(1, sizeof(*p));
  if (!p)
    return TUSC_ENOMEM;
  int rc = TUSC_ENOMEM;
  p->hs = hs;
  p->call = call;
  if (!(p->easy = curl_easy_init()))
    goto fail;
  struct curl_slist *l = curl_slist_append(NULL, "Content-Type: application/json");
  if (!l)
    goto fail;
  p->headers = l;
  /* No "Expect: 100-continue" round trip for larger payloads. */
  if (!(l = curl_slist_append(p->headers, "Expect:")))
    goto fail;
  for (size_t i = 0; i < call->forward_count; i++)
    if (!(l = curl_slist_append(p->headers, call->forward_headers[i])))
      goto fail;

  CURL *e = p->easy;
  curl_easy_setopt(e, CURLOPT_URL, hs->url);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_POST, 1L);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, call->json);
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)call->json_len);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, p->headers);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, p);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, p->curl_error);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "tusc/" TUSC_VERSION);
  if (hs->size_limit > 0)
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)hs->size_limit);

  uv_timer_init(hs->loop, &p->timer);
  p->timer.data = p;
  p->xfer.data = p;
  p->next = hs->posts;
  if (hs->posts)
    hs->posts->prev = p;
  hs->posts = p;
  if (hs->timeout_ms > 0)
    p->deadline_ms = tusc_now_ms() + (uint64_t)hs->timeout_ms;
  /* From here on the post ends only through finish(): done() will be called. */
  start_attempt(p);
  return 0;
fail:
  curl_slist_free_all(p->headers);
  if (p->easy)
    curl_easy_cleanup(p->easy);
  free(p);
  return rc;
}

static void http_close(tusc_hook_sender_t *sender, void (*closed_cb)(void *arg), void *arg) {
  struct http_sender *hs = (struct http_sender *)sender;
  hs->closing = true;
  hs->closed_cb = closed_cb;
  hs->closed_arg = arg;
  if (!hs->posts) {
    teardown(hs);
    return;
  }
  for (struct post *p = hs->posts; p; p = p->next)
    finish(p, UV_ECANCELED, "HTTP hook %s cancelled: shutting down",
           tusc_hook_event_name(p->call->event));
}

static void http_cancel(tusc_hook_sender_t *sender, tusc_hook_call_t *call) {
  struct http_sender *hs = (struct http_sender *)sender;
  for (struct post *p = hs->posts; p; p = p->next) {
    if (p->call == call) {
      finish(p, UV_ECANCELED, "HTTP hook %s stopped: its request has gone",
             tusc_hook_event_name(call->event));
      return;
    }
  }
}

static const tusc_hook_sender_ops_t http_ops = {
    .name = "http",
    .start = http_start,
    .close = http_close,
    .cancel = http_cancel,
};

int tusc_hook_http_sender_new(uv_loop_t *loop, const tusc_hook_http_options_t *opts,
                              tusc_hook_sender_t **out) {
  if (!opts->url || !opts->url[0])
    return TUSC_EINVALID_ARGUMENT;
  struct http_sender *hs = calloc(1, sizeof(*hs));
  if (!hs)
    return TUSC_ENOMEM;
  hs->url = strdup(opts->url);
  if (!hs->url || tusc_curl_loop_new(loop, &hs->curl) != 0) {
    free(hs->url);
    free(hs);
    return TUSC_ENOMEM;
  }
  hs->base.ops = &http_ops;
  hs->loop = loop;
  hs->retry = opts->retry < 1 ? 1 : opts->retry;
  hs->backoff_ms = opts->backoff_ms < 0 ? 0 : opts->backoff_ms;
  hs->timeout_ms = opts->timeout_ms < 0 ? 0 : opts->timeout_ms;
  hs->size_limit = opts->size_limit < 0 ? 0 : opts->size_limit;
  *out = &hs->base;
  return 0;
}

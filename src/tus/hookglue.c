/*
 * hookglue — hooks as a request sees them (handler_internal.h): whether an event is
 * enabled, blocking invocations that park the request in PH_HOOK and resume it with
 * st->hook_status / st->hook_resp, fire-and-forget invocations (a tracked post-receive
 * may answer StopUpload), merging the hooks' HTTPResponse parts into the answer, and
 * copies of the request for hooks that run after it was answered. All on the request's
 * loop; every blocking hook's callback comes back exactly once, later.
 */
#include "tus/handler_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/error.h"
#include "common/timeutil.h"
#include "metrics/metrics.h"

/* --- hooks and metrics ------------------------------------------------------------- */

bool tus_hook_on(const tus_request_t *st, enum tusc_hook_event ev) {
  const tusc_tus_worker_t *w = st->w;
  return w->hw != NULL && w->tus->hooks != NULL && tusc_hooks_enabled(w->tus->hooks, ev);
}

bool tus_finish_hooks_on(const tus_request_t *st) {
  return tus_hook_on(st, TUSC_HOOK_PRE_FINISH) || tus_hook_on(st, TUSC_HOOK_POST_FINISH);
}

/* Fills *hr with the request as hooks see it, borrowing its strings. Returns the header
 * array hr points into (the caller frees it once hr is used), or NULL on ENOMEM. */
static tusc_hook_header_t *hook_request_view(const tus_request_t *st,
                                             tusc_hook_http_request_t *hr) {
  static const char redacted[] = " [REDACTED]";
  tusc_http_request_t *req = st->req;
  /* When tusc itself checked the credentials, hooks get the principal instead of the
   * secret: "Basic [REDACTED]". The redacted values live behind the array, so one
   * free releases both. Without built-in auth they pass unchanged (hook-based auth). */
  bool redact = st->principal != NULL;
  size_t n = req->header_count > 0 ? req->header_count : 1;
  size_t extra = 0;
  for (size_t i = 0; redact && i < req->header_count; i++)
    if (strcasecmp(req->headers[i].name, "Authorization") == 0)
      extra += strcspn(req->headers[i].value, " \t") + sizeof(redacted);
  tusc_hook_header_t *hh = calloc(1, n * sizeof(*hh) + extra);
  if (hh == NULL)
    return NULL;
  char *p = (char *)(hh + n);
  size_t k = 0;
  for (size_t i = 0; i < req->header_count; i++) {
    if (req->headers[i].trailer)
      continue;
    hh[k].name = req->headers[i].name;
    hh[k].value = req->headers[i].value;
    if (redact && strcasecmp(req->headers[i].name, "Authorization") == 0) {
      size_t scheme = strcspn(req->headers[i].value, " \t");
      memcpy(p, req->headers[i].value, scheme);
      memcpy(p + scheme, redacted, sizeof(redacted));
      hh[k].value = p;
      p += scheme + sizeof(redacted);
    }
    k++;
  }
  /* RemoteAddr is the TCP peer as in tusd; the client a trusted proxy named (as in
   * the logs) goes in a key of its own. */
  bool proxied = strcmp(st->client, req->remote_addr) != 0;
  *hr = (tusc_hook_http_request_t){
      .method = st->method_name,
      .uri = req->target,
      .remote_ip = req->remote_addr,
      .remote_port = req->remote_port,
      .headers = hh,
      .header_count = k,
      .principal = st->principal,
      .client_addr = proxied ? st->client : NULL,
  };
  return hh;
}

/* Borrows the request for the invocation; the runner serialises it at once. */
static int hook_invoke(tus_request_t *st, enum tusc_hook_event ev, const tusc_upload_info_t *info,
                       tusc_hook_done_cb cb, void *arg) {
  tusc_hook_http_request_t hr;
  tusc_hook_header_t *hh = hook_request_view(st, &hr);
  if (hh == NULL)
    return TUSC_ENOMEM;
  int rc = tusc_hooks_invoke(st->w->hw, ev, info, &hr, cb, arg);
  free(hh);
  return rc;
}

/* Moves resp's HTTPResponse into the request's merge set: non-zero status replaces,
 * non-empty body replaces, headers are added (a later one with the same name wins). */
static void hook_merge_take(tus_request_t *st, tusc_hook_response_t *resp) {
  if (resp->status_code == 0 && (resp->body == NULL || resp->body[0] == '\0') &&
      resp->header_count == 0)
    return;
  if (st->merge == NULL) {
    st->merge = malloc(sizeof(*st->merge));
    if (st->merge == NULL)
      return;
    tusc_hook_response_init(st->merge);
  }
  tusc_hook_response_t *m = st->merge;
  if (resp->status_code != 0)
    m->status_code = resp->status_code;
  if (resp->body != NULL && resp->body[0] != '\0') {
    free(m->body);
    m->body = resp->body;
    m->body_len = resp->body_len;
    resp->body = NULL;
    resp->body_len = 0;
  }
  if (resp->header_count > 0) {
    tusc_hook_resp_header_t *h =
        realloc(m->headers, (m->header_count + resp->header_count) * sizeof(*h));
    if (h == NULL)
      return;
    memcpy(h + m->header_count, resp->headers, resp->header_count * sizeof(*h));
    m->headers = h;
    m->header_count += resp->header_count;
    free(resp->headers);
    resp->headers = NULL;
    resp->header_count = 0;
  }
}

/* Applies the merge set to the response about to be sent. */
void tus_hook_merge_apply(tus_request_t *st, tusc_http_response_t *resp, const void **body,
                          size_t *len) {
  tusc_hook_response_t *m = st->merge;
  if (m == NULL)
    return;
  if (m->status_code >= 100 && m->status_code <= 599)
    resp->status = m->status_code;
  if (m->body != NULL && m->body[0] != '\0') {
    *body = m->body;
    *len = m->body_len;
  }
  for (size_t i = 0; i < m->header_count; i++) {
    size_t j = 0;
    while (j < resp->header_count && strcasecmp(resp->headers[j].name, m->headers[i].name) != 0)
      j++;
    if (j < resp->header_count) {
      char *v = strdup(m->headers[i].value);
      if (v != NULL) {
        free(resp->headers[j].value);
        resp->headers[j].value = v;
      }
    } else {
      tusc_http_response_header(resp, m->headers[i].name, m->headers[i].value);
    }
  }
}

void tus_hook_state_dispose(tus_request_t *st) {
  if (st->progress != NULL)
    st->progress->st = NULL;
  if (st->merge != NULL) {
    tusc_hook_response_dispose(st->merge);
    free(st->merge);
  }
  if (st->hook_resp != NULL) {
    tusc_hook_response_dispose(st->hook_resp);
    free(st->hook_resp);
  }
  if (st->metrics_active)
    tusc_metrics_active_uploads(-1);
}

void tus_on_blocking_hook_done(int status, tusc_hook_response_t *resp, void *arg) {
  tus_request_t *st = arg;
  uint64_t now = tusc_now_ms();
  tusc_metrics_hook_done(st->hook_ev, now > st->hook_start_ms ? now - st->hook_start_ms : 0);
  st->phase = PH_RUN;
  st->hook_status = status;
  if (st->hook_resp == NULL)
    st->hook_resp = malloc(sizeof(*st->hook_resp));
  else
    tusc_hook_response_dispose(st->hook_resp);
  if (st->hook_resp != NULL) {
    *st->hook_resp = *resp;
    tusc_hook_response_init(resp);
    if (status == 0)
      hook_merge_take(st, st->hook_resp);
  } else if (status == 0) {
    st->hook_status = TUSC_ENOMEM;
  }
  st->after_hook(st);
}

/* The error a request answers when its blocking hook failed: 503 when no hook slot was
 * free, else 500 as in tusd. */
int tus_hook_failure(const tus_request_t *st) {
  return st->hook_status == TUSC_EHOOKS_BUSY ? TUSC_EHOOKS_BUSY : TUSC_EINTERNAL;
}

/* Runs blocking hook `ev`, then `next` (always later, on the loop; st->hook_status and
 * st->hook_resp hold the outcome). */
void tus_hook_block(tus_request_t *st, enum tusc_hook_event ev, const tusc_upload_info_t *info,
                    step_fn next) {
  st->after_hook = next;
  st->hook_ev = ev;
  st->hook_start_ms = tusc_now_ms();
  st->phase = PH_HOOK;
  int rc = hook_invoke(st, ev, info, tus_on_blocking_hook_done, st);
  if (rc < 0) {
    /* No callback will come: fail the same way later so callers see one path. */
    st->phase = PH_RUN;
    if (st->hook_resp != NULL) {
      tusc_hook_response_dispose(st->hook_resp);
      free(st->hook_resp);
      st->hook_resp = NULL;
    }
    st->hook_status = rc;
    tus_defer(st, next);
  }
}

void tus_on_nonblocking_hook_done(int status, tusc_hook_response_t *resp, void *arg) {
  struct hook_call *call = arg;
  uint64_t now = tusc_now_ms();
  tusc_metrics_hook_done(call->ev, now > call->start_ms ? now - call->start_ms : 0);
  tusc_metrics_hook_queue(-1);
  tus_request_t *st = call->st;
  free(call);
  if (st == NULL)
    return;
  st->progress = NULL;
  /* StopUpload counts only while the body still flows; after that the answer is out. */
  if (status == 0 && resp->stop_upload && st->phase == PH_BODY && !st->stopped) {
    hook_merge_take(st, resp);
    st->stopped = true;
    st->result = TUSC_EUPLOAD_STOPPED;
    tusc_http_body_pause(st->req);
    tus_chunk_finish(st, true);
  }
}

/* Queues non-blocking hook `ev`. With `track` the call is the request's outstanding
 * post-receive (its StopUpload answer is honoured). Returns 0 or the invoke error. */
int tus_hook_fire(tus_request_t *st, enum tusc_hook_event ev, const tusc_upload_info_t *info,
                  bool track) {
  if (!tus_hook_on(st, ev))
    return 0;
  struct hook_call *call = malloc(sizeof(*call));
  if (call == NULL)
    return TUSC_ENOMEM;
  call->st = track ? st : NULL;
  call->ev = ev;
  call->start_ms = tusc_now_ms();
  int rc = hook_invoke(st, ev, info, tus_on_nonblocking_hook_done, call);
  if (rc < 0) {
    free(call);
    return rc;
  }
  tusc_metrics_hook_queue(1);
  if (track)
    st->progress = call;
  return 0;
}

void tus_hook_req_copy_free(struct hook_req_copy *c) {
  if (c == NULL)
    return;
  free(c->headers);
  free(c->buf);
  free(c);
}

static char *pack_str(char **p, const char *s) {
  if (s == NULL)
    return NULL;
  size_t n = strlen(s) + 1;
  memcpy(*p, s, n);
  char *r = *p;
  *p += n;
  return r;
}

static size_t str_size(const char *s) {
  return s != NULL ? strlen(s) + 1 : 0;
}

struct hook_req_copy *tus_hook_req_copy_new(const tusc_hook_http_request_t *hr) {
  size_t total = str_size(hr->method) + str_size(hr->uri) + str_size(hr->remote_ip) +
                 str_size(hr->principal) + str_size(hr->client_addr);
  for (size_t i = 0; i < hr->header_count; i++)
    total += str_size(hr->headers[i].name) + str_size(hr->headers[i].value);
  struct hook_req_copy *c = calloc(1, sizeof(*c));
  if (c == NULL)
    return NULL;
  c->buf = malloc(total > 0 ? total : 1);
  c->headers = calloc(hr->header_count > 0 ? hr->header_count : 1, sizeof(*c->headers));
  if (c->buf == NULL || c->headers == NULL) {
    tus_hook_req_copy_free(c);
    return NULL;
  }
  char *p = c->buf;
  c->hr.method = pack_str(&p, hr->method);
  c->hr.uri = pack_str(&p, hr->uri);
  c->hr.remote_ip = pack_str(&p, hr->remote_ip);
  c->hr.remote_port = hr->remote_port;
  c->hr.principal = pack_str(&p, hr->principal);
  c->hr.client_addr = pack_str(&p, hr->client_addr);
  for (size_t i = 0; i < hr->header_count; i++) {
    c->headers[i].name = pack_str(&p, hr->headers[i].name);
    c->headers[i].value = pack_str(&p, hr->headers[i].value);
  }
  c->hr.headers = c->headers;
  c->hr.header_count = hr->header_count;
  return c;
}

/* The request as hook_invoke shows it to hooks, copied. NULL on ENOMEM. */
struct hook_req_copy *tus_hook_req_snapshot(const tus_request_t *st) {
  tusc_hook_http_request_t hr;
  tusc_hook_header_t *hh = hook_request_view(st, &hr);
  if (hh == NULL)
    return NULL;
  struct hook_req_copy *c = tus_hook_req_copy_new(&hr);
  free(hh);
  return c;
}

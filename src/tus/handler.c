/*
 * handler — the tus 1.0 protocol on top of the http layer (see handler.h): routing,
 * authentication, aborts, the tus and worker objects, the way back to the loop
 * (tus_defer, tus_store_step) and the upload locks. The methods, hook glue, concatenation
 * jobs and the IETF draft's glue live in the files listed in handler_internal.h, which
 * also holds the request state they share.
 *
 * Every request gets a tus_request_t (req->handler_data) that lives until the one
 * respond call that ends the request; it is freed right after that call, so nothing
 * here touches `req` or the state once a response has been handed over. A request moves
 * through phases; only these wait for something outside the current callback:
 *
 *   LOCK_WAIT  the upload's lock is being taken (lock.h: its callback comes back)
 *   WORK       a store request is out (st->sreq: the store runs it on its own pool), or
 *              a concat job runs; after_work always comes back, also after an abort
 *   BODY       PATCH bytes stream from on_body into tusc_store_append; when the store
 *              answers "full" the body is paused until its drain callback
 *   DRAIN      the body has ended while the store was full: the bytes held back wait
 *              for the drain callback, then the chunk ends (tus keeps what arrived)
 *   STREAM     a GET download writes 64 KiB at a time, the next read after write_cb
 *   AUTH       a password check waits for its loop's hashing slot or hashes (auth.h);
 *              an abort drops a waiting one, a hashing one comes back
 *
 * on_abort only records the failure, except where nothing else would ever wake the
 * request up again (BODY, LOCK_WAIT cancels the acquire, STREAM without a pending
 * write).
 *
 * Lock release: when another request wants the lock, the holder's
 * on_release_requested runs on this worker's loop (lock.h). A request reading a body
 * stops at once, makes the bytes that reached the file durable, releases the lock and
 * answers 400 ERR_UPLOAD_INTERRUPTED; in any other phase it only notes the wish and
 * lets go when that phase ends.
 */
#include "tus/handler.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/auth.h"
#include "common/error.h"
#include "common/timeutil.h"
#include "hooks/hooks.h"
#include "metrics/metrics.h"
#include "tus/checksum.h"
#include "tus/concat.h"
#include "tus/cors.h"
#include "tus/handler_internal.h"
#include "tus/headers.h"
#include "tus/ietf.h"
#include "tus/location.h"
#include "tus/verify.h"

static enum tusc_http_method method_from_name(const char *s, size_t len) {
  static const struct {
    const char *name;
    enum tusc_http_method method;
  } methods[] = {
      {"GET", TUSC_HTTP_GET},         {"HEAD", TUSC_HTTP_HEAD},   {"POST", TUSC_HTTP_POST},
      {"PUT", TUSC_HTTP_PUT},         {"PATCH", TUSC_HTTP_PATCH}, {"DELETE", TUSC_HTTP_DELETE},
      {"OPTIONS", TUSC_HTTP_OPTIONS},
  };
  for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
    if (strlen(methods[i].name) == len && memcmp(methods[i].name, s, len) == 0)
      return methods[i].method;
  return TUSC_HTTP_OTHER;
}

void tus_worker_maybe_free(tusc_tus_worker_t *w) {
  if (atomic_load(&w->closing) && w->requests == NULL && w->bg_jobs == 0)
    free(w);
}

static void respond_not_found_page(tus_request_t *st) {
  tusc_http_response_t resp;
  tus_response_init(st, &resp, 404);
  tus_respond_text(st, &resp, "404 page not found\n");
}

static void respond_unauthorized(tus_request_t *st) {
  tusc_http_response_t resp;
  char body[128];
  const char *challenges[2];
  size_t n = tusc_auth_challenges(st->w->tus->auth, challenges);
  tus_response_init(st, &resp, 401);
  for (size_t i = 0; i < n; i++)
    tusc_http_response_header(&resp, "WWW-Authenticate", challenges[i]);
  snprintf(body, sizeof(body), "%s: %s\n", tusc_error_code(TUSC_EUNAUTHORIZED),
           tusc_strerror(TUSC_EUNAUTHORIZED));
  tus_respond_text(st, &resp, body);
}

/* --- back to the loop: deferred steps and store completions -------------------------- */

static void on_deferred(tusc_defer_t *d, int status) {
  tus_request_t *st = (tus_request_t *)(void *)((char *)d - offsetof(tus_request_t, defer));
  if (status < 0 && st->work_result == 0)
    st->work_result = status;
  st->phase = PH_RUN;
  st->after_work(st);
}

void tus_defer(tus_request_t *st, step_fn next) {
  st->work_result = 0;
  st->after_work = next;
  st->phase = PH_WORK;
  if (tusc_defer_start(st->w->loop, &st->defer, on_deferred) != 0) {
    /* Out of memory for the loop's queue; go on rather than lose the request. */
    st->phase = PH_RUN;
    next(st);
  }
}

static void on_store_done(tusc_store_req_t *req, int status) {
  tus_request_t *st = req->data;
  st->work_result = status;
  st->phase = PH_RUN;
  st->after_work(st);
}

tusc_store_cb tus_store_step(tus_request_t *st, step_fn next) {
  st->sreq.data = st;
  st->after_work = next;
  st->work_result = 0;
  st->phase = PH_WORK;
  return on_store_done;
}

void tus_store_started(tus_request_t *st, int rc) {
  if (rc == 0)
    return;
  /* The store refused to start (no callback will come): go on with its error, later. */
  tus_defer(st, st->after_work);
  st->work_result = rc;
}

/* --- locks ----------------------------------------------------------------------- */

/* Another request wants the lock (on this loop). A body being read stops now; any
 * other phase ends soon on its own and then releases. tus_chunk_finish(st, true) never
 * frees st or lets go of the lock before returning. */
static void on_release_requested(tusc_lock_req_t *req) {
  tus_request_t *st = req->data;
  atomic_store(&st->release_requested, true);
  if (st->phase == PH_BODY) {
    tusc_http_body_pause(st->req);
    st->result = TUSC_EUPLOAD_INTERRUPTED;
    tus_chunk_finish(st, true);
  }
}

static void on_lock_wait(tusc_lock_req_t *req) {
  (void)req;
  tusc_metrics_lock_wait();
}

static void lock_got(tusc_lock_req_t *req, int status) {
  tus_request_t *st = req->data;
  st->phase = PH_RUN;
  if (status < 0) {
    if (status == TUSC_ELOCK_UNAVAILABLE) {
      tus_respond_retry_later(st, status, 1); /* Redis is down; nothing was touched */
      return;
    }
    /* No lock file for an ID means no such upload (TUSC_EINVALID_ID → 404). */
    tus_respond_store_error(st, status == UV_ECANCELED && st->aborted ? st->abort_err : status);
    return;
  }
  st->lock_held = true;
  st->after_lock(st);
}

/* Takes the upload's exclusive lock, asking a current holder to let go and waiting at
 * most -acquire-lock-timeout, then runs `next`. Answers the request itself on failure
 * or timeout. A free lock is taken at once (next runs before this returns), so that
 * body bytes that came with the head are not set aside by the http layer meanwhile. */
void tus_lock_upload(tus_request_t *st, step_fn next) {
  const tusc_config_t *cfg = tus_cfg_of(st);
  tusc_lock_t *lock = st->w->tus->lock;
  st->after_lock = next;
  st->lock_req.data = st;
  st->lock_req.on_release_requested = on_release_requested;
  st->lock_req.on_wait = on_lock_wait;
  if (tusc_lock_try_acquire(lock, st->w->loop, &st->lock_req, st->id) == 0) {
    lock_got(&st->lock_req, 0);
    return;
  }
  int64_t timeout = cfg->acquire_lock_timeout_ms > 0 ? cfg->acquire_lock_timeout_ms : 0;
  int rc = tusc_lock_acquire(lock, st->w->loop, &st->lock_req, st->id, timeout, lock_got);
  if (rc < 0) {
    tus_respond_error(st, rc);
    return;
  }
  st->phase = PH_LOCK_WAIT;
}

void tus_release_lock(tus_request_t *st) {
  if (st->lock_held) {
    tusc_lock_release(&st->lock_req);
    st->lock_held = false;
  }
}

/* --- metrics endpoint --------------------------------------------------------------- */

static void do_metrics(tus_request_t *st) {
  char *text = NULL;
  size_t len = 0;
  if (tusc_metrics_render(&text, &len) < 0) {
    tus_respond_error(st, TUSC_ENOMEM);
    return;
  }
  tusc_http_response_t resp;
  tusc_http_response_init(&resp, 200);
  tusc_http_response_header(&resp, "Content-Type", TUSC_METRICS_CONTENT_TYPE);
  tus_finish(st, &resp, text, len);
  free(text);
}

/* --- OPTIONS, greeting ------------------------------------------------------------ */

static void do_options(tus_request_t *st) {
  tusc_http_response_t resp;
  const tusc_config_t *cfg = tus_cfg_of(st);
  tus_response_init(st, &resp, 200);
  tusc_http_response_header(&resp, "Tus-Version", TUS_VERSION);
  tusc_http_response_header(&resp, "Tus-Extension", st->w->tus->extensions);
  tusc_http_response_header(&resp, "Tus-Checksum-Algorithm", TUSC_CHECKSUM_ALGORITHMS);
  if (cfg->max_size > 0)
    tusc_http_response_headerf(&resp, "Tus-Max-Size", "%lld", (long long)cfg->max_size);
  if (st->ietf.version > 0)
    tusc_ietf_options(st, &resp);
  tus_finish(st, &resp, NULL, 0);
}

static void do_greeting(tus_request_t *st) {
  char body[1024];
  snprintf(body, sizeof(body),
           "Welcome to tusc\n"
           "===============\n"
           "\n"
           "This is tusc %s, a server for the tus resumable upload protocol (tus.io).\n"
           "\n"
           "Uploads are accepted at the endpoint %s\n"
           "Point a tus client (tus-js-client, tuspy, Uppy, ...) at that URL to start.\n",
#ifdef TUSC_VERSION
           TUSC_VERSION,
#else
           "",
#endif
           tus_cfg_of(st)->base_path);
  tusc_http_response_t resp;
  tus_response_init(st, &resp, 200);
  tus_respond_text(st, &resp, body);
}

/* --- routing --------------------------------------------------------------------- */

static bool version_ok(const tusc_http_request_t *req, enum tusc_http_method method) {
  /* Browsers and plain HTTP tools send GET/HEAD without (or with any) Tus-Resumable;
   * tusd exempts both whatever they carry, and PROTOCOL.md says to do the same. */
  if (method == TUSC_HTTP_GET || method == TUSC_HTTP_HEAD)
    return true;
  size_t len = 0;
  const char *v = tus_header_value(req, "Tus-Resumable", &len);
  return v != NULL && len == strlen(TUS_VERSION) && memcmp(v, TUS_VERSION, len) == 0;
}

static void route_upload(tus_request_t *st, enum tusc_http_method method, const char *raw,
                         size_t raw_len) {
  const tusc_config_t *cfg = tus_cfg_of(st);
  char allow[64];
  snprintf(allow, sizeof(allow), "OPTIONS, HEAD, PATCH%s%s", cfg->disable_download ? "" : ", GET",
           cfg->disable_termination ? "" : ", DELETE");

  bool known = method == TUSC_HTTP_HEAD || method == TUSC_HTTP_PATCH ||
               (method == TUSC_HTTP_GET && !cfg->disable_download) ||
               (method == TUSC_HTTP_DELETE && !cfg->disable_termination);
  if (!known) {
    tus_respond_error_with(st, TUSC_EMETHOD_NOT_ALLOWED, allow);
    return;
  }
  long n = tusc_url_decode(raw, raw_len, st->id, sizeof(st->id));
  if (n <= 0 || !tusc_id_valid(st->id, (size_t)n) || strlen(st->id) != (size_t)n) {
    st->id[0] = '\0';
    if (method == TUSC_HTTP_HEAD) {
      tusc_http_response_t resp;
      tus_response_init(st, &resp, 404);
      tusc_http_response_header(&resp, "Cache-Control", "no-store");
      tus_finish(st, &resp, NULL, 0);
      return;
    }
    tus_respond_error(st, TUSC_ENOT_FOUND);
    return;
  }
  switch (method) {
  case TUSC_HTTP_HEAD:
    tus_do_head(st);
    break;
  case TUSC_HTTP_PATCH:
    st->op = OP_PATCH;
    tus_do_patch(st);
    break;
  case TUSC_HTTP_DELETE:
    st->op = OP_DELETE;
    tus_do_delete(st);
    break;
  case TUSC_HTTP_GET:
    st->op = OP_GET;
    tus_do_get(st);
    break;
  default:
    tus_respond_error_with(st, TUSC_EMETHOD_NOT_ALLOWED, allow);
    break;
  }
}

/* A list header sent as several lines is one comma-joined list (RFC 9110 5.3); a proxy
 * may append its own line after the client's, so the last line matters most. Returns
 * the value, joined into *joined (the caller frees it) when there are several lines;
 * NULL when absent or out of memory. */
static const char *list_header(const tusc_http_request_t *req, const char *name, size_t *len,
                               char **joined) {
  *joined = NULL;
  if (tusc_http_header_count(req, name) < 2)
    return tus_header_value(req, name, len);
  size_t cap = 1;
  for (size_t i = 0; i < req->header_count; i++)
    if (!req->headers[i].trailer && strcasecmp(req->headers[i].name, name) == 0)
      cap += req->headers[i].value_len + 2;
  char *out = malloc(cap);
  if (out == NULL)
    return NULL;
  size_t n = 0;
  for (size_t i = 0; i < req->header_count; i++) {
    const tusc_http_header_t *h = &req->headers[i];
    if (h->trailer || strcasecmp(h->name, name) != 0)
      continue;
    if (n > 0)
      out[n++] = ',';
    memcpy(out + n, h->value, h->value_len);
    n += h->value_len;
  }
  out[n] = '\0';
  *len = n;
  *joined = out;
  return out;
}

static bool proxy_trusted(const char *addr, void *arg) {
  return tusc_auth_proxy_trusted(arg, addr);
}

static void client_address(tus_request_t *st) {
  size_t xff_len = 0, fwd_len = 0;
  char *xff_joined = NULL, *fwd_joined = NULL;
  const char *xff = list_header(st->req, "X-Forwarded-For", &xff_len, &xff_joined);
  const char *fwd = list_header(st->req, "Forwarded", &fwd_len, &fwd_joined);
  tusc_auth_t *auth = st->w->tus->auth;
  tusc_location_client_addr(st->proxy_trusted, auth != NULL ? proxy_trusted : NULL, auth, xff,
                            xff_len, fwd, fwd_len, st->req->remote_addr, st->client);
  free(xff_joined);
  free(fwd_joined);
  if (strcmp(st->client, st->req->remote_addr) != 0)
    tusc_http_request_set_client(st->req, st->client);
}

/* Routes a request that passed the host, CORS and authentication checks. */
static void dispatch(tus_request_t *st) {
  tusc_http_request_t *req = st->req;
  const tusc_config_t *cfg = tus_cfg_of(st);
  enum tusc_http_method method = st->method;
  const char *path = req->path;
  size_t path_len = strlen(path);
  const char *base = cfg->base_path;
  size_t base_len = strlen(base);
  bool is_collection =
      (path_len == base_len && memcmp(path, base, base_len) == 0) ||
      (base_len > 1 && path_len == base_len - 1 && memcmp(path, base, base_len - 1) == 0);

  /* IETF draft requests (after authentication, like everything else). */
  if (st->ietf.version != 0 &&
      tusc_ietf_handle(st, method, is_collection, is_collection ? "" : path + base_len,
                       is_collection ? 0 : path_len - base_len))
    return;
  if (!version_ok(req, method)) {
    tus_respond_error(st, TUSC_EUNSUPPORTED_VERSION);
    return;
  }

  if (is_collection) {
    if (method == TUSC_HTTP_POST) {
      tus_do_post(st);
      return;
    }
    if ((method == TUSC_HTTP_GET || method == TUSC_HTTP_HEAD) && strcmp(base, "/") == 0 &&
        cfg->show_greeting) {
      do_greeting(st);
      return;
    }
    tus_respond_error_with(st, TUSC_EMETHOD_NOT_ALLOWED, "OPTIONS, POST");
    return;
  }
  route_upload(st, method, path + base_len, path_len - base_len);
}

static void on_auth_done(tusc_auth_request_t *areq, int result, char *principal) {
  tus_request_t *st = areq->data;
  st->phase = PH_RUN;
  if (st->aborted) {
    free(principal);
    tus_respond_error(st, st->abort_err);
    return;
  }
  if (result == 0) {
    st->principal = principal;
    if (principal != NULL)
      tusc_http_request_set_user(st->req, principal);
    dispatch(st);
  } else if (result == TUSC_EUNAUTHORIZED) {
    respond_unauthorized(st);
  } else if (result == TUSC_EAUTH_BUSY || result == TUSC_EAUTH_THROTTLED) {
    tus_respond_retry_later(st, result, areq->retry_after_s);
  } else {
    tus_respond_error(st, result);
  }
}

/* Answers 401 or continues with dispatch (now, or after a password check: PH_AUTH,
 * which an abort cancels while it waits and lets finish once it hashes). */
static void authenticate(tus_request_t *st) {
  size_t len = 0;
  const char *value = tus_header_value(st->req, "Authorization", &len);
  char *principal = NULL;
  st->areq.data = st;
  int rc = tusc_auth_check(st->w->tus->auth, st->w->loop, st->client, value, len, &st->areq,
                           on_auth_done, &principal);
  if (rc == TUSC_AUTH_PENDING) {
    st->phase = PH_AUTH;
    return;
  }
  on_auth_done(&st->areq, rc, principal);
}

/* -allowed-hosts: the Host header must name a served host, and so must the host a
 * Location would name (from a trusted proxy: X-Forwarded-Host or Forwarded host=), as
 * decided by the one function Location uses. Without a list every host is fine. */
static bool host_allowed(tus_request_t *st) {
  tusc_auth_t *auth = st->w->tus->auth;
  if (!tusc_auth_hosts_limited(auth))
    return true;
  size_t len = 0;
  const char *host = tus_header_value(st->req, "Host", &len);
  if (tusc_http_header_count(st->req, "Host") != 1 || !tusc_auth_host_allowed(auth, host, len))
    return false;
  tusc_location_input_t in;
  tusc_forwarded_t fwd;
  tus_location_input(st, &in);
  if (tusc_location_host(&in, &fwd, &host, &len) < 0)
    return false;
  return tusc_auth_host_allowed(auth, host, len);
}

static void on_request(tusc_http_request_t *req, void *ctx) {
  tusc_tus_worker_t *w = ctx;
  tusc_tus_t *tus = w->tus;
  const tusc_config_t *cfg = tus->cfg;

  tus_request_t *st = calloc(1, sizeof(*st));
  if (st == NULL) {
    tusc_http_response_t resp;
    tusc_http_response_init(&resp, 503);
    resp.close = true;
    tusc_http_respond(req, &resp, NULL, 0);
    return;
  }
  st->w = w;
  st->req = req;
  st->new_length = -1;
  atomic_init(&st->release_requested, false);
  st->next = w->requests;
  if (w->requests != NULL)
    w->requests->prev = st;
  w->requests = st;
  req->handler_data = st;
  st->proxy_trusted = tus->auth != NULL ? tusc_auth_proxy_trusted(tus->auth, req->remote_addr)
                                        : cfg->behind_proxy;
  client_address(st);
  tusc_ietf_detect(st);

  /* Old clients that can only send GET/POST name the real method here. Honoured on
   * POST only, as tusd does: on OPTIONS, which proxies and authentication let through
   * without credentials, it would turn an anonymous request into a DELETE or a GET.
   * Everything below (authentication included) sees the effective method. */
  enum tusc_http_method method = req->method;
  size_t ov_len = 0;
  const char *ov = tus_header_value(req, "X-HTTP-Method-Override", &ov_len);
  st->method_name = req->method_name;
  if (req->method == TUSC_HTTP_POST && ov != NULL && ov_len > 0) {
    method = method_from_name(ov, ov_len);
    st->method_name = ov;
    if (strcmp(ov, req->method_name) != 0)
      tusc_http_request_set_method(req, ov);
  }
  st->preflight = method == TUSC_HTTP_OPTIONS;
  st->method = method;
  tusc_metrics_request(method);

  if (!host_allowed(st)) {
    tus_respond_error(st, TUSC_EMISDIRECTED);
    return;
  }
  const char *origin = tus_header_value(req, "Origin", NULL);
  if (tus->cors.enabled && origin != NULL && origin[0] != '\0' &&
      !tusc_cors_origin_allowed(&tus->cors, origin)) {
    tus_respond_error(st, TUSC_EORIGIN_NOT_ALLOWED);
    return;
  }
  if (method == TUSC_HTTP_OPTIONS) {
    do_options(st);
    return;
  }

  const char *path = req->path;
  size_t path_len = strlen(path);
  const char *base = cfg->base_path;
  size_t base_len = strlen(base);
  bool is_collection =
      (path_len == base_len && memcmp(path, base, base_len) == 0) ||
      (base_len > 1 && path_len == base_len - 1 && memcmp(path, base, base_len - 1) == 0);
  bool is_upload = !is_collection && path_len > base_len && memcmp(path, base, base_len) == 0;
  bool is_metrics =
      cfg->expose_metrics && cfg->metrics_path != NULL && strcmp(path, cfg->metrics_path) == 0;

  /* Never routed as an upload ID; with -metrics-listen it lives on that address only. */
  if (is_metrics) {
    if (cfg->metrics_listen == NULL && (method == TUSC_HTTP_GET || method == TUSC_HTTP_HEAD))
      do_metrics(st);
    else
      respond_not_found_page(st);
    return;
  }
  if (!is_collection && !is_upload) {
    if (strcmp(path, "/") == 0 && cfg->show_greeting &&
        (method == TUSC_HTTP_GET || method == TUSC_HTTP_HEAD)) {
      do_greeting(st);
      return;
    }
    respond_not_found_page(st);
    return;
  }

  if (tusc_auth_required(tus->auth)) {
    authenticate(st);
    return;
  }
  dispatch(st);
}

static void on_abort(tusc_http_request_t *req, int err, void *ctx) {
  (void)ctx;
  tus_request_t *st = req->handler_data;
  if (st == NULL)
    return;
  st->aborted = true;
  st->abort_err = err;
  switch (st->phase) {
  case PH_BODY:
    /* Keep what reached the file: make it durable, release, answer (discarded). */
    st->result = err;
    tus_chunk_finish(st, true);
    break;
  case PH_DRAIN:
    /* The body has ended already; the store's drain comes back and ends the chunk. */
    break;
  case PH_LOCK_WAIT:
    /* lock_got comes back with UV_ECANCELED and answers. */
    (void)tusc_lock_cancel(&st->lock_req);
    break;
  case PH_STREAM:
    /* A pending write or store read comes back and ends the download. */
    if (!st->write_pending && !st->read_pending)
      tus_download_end(st);
    break;
  case PH_AUTH:
    /* A check still waiting is dropped (no callback); one hashing comes back. */
    if (tusc_auth_cancel(&st->areq) == 0) {
      st->phase = PH_RUN;
      tus_respond_error(st, err);
    }
    break;
  case PH_HOOK:
    /* Stop the hook (kill its process group); its callback comes back and sees
     * `aborted`. */
    (void)tusc_hooks_cancel(st->w->hw, tus_on_blocking_hook_done, st);
    break;
  case PH_WORK:
    /* A concat job waiting for locks stops waiting, a store request still queued is
     * dropped; their callbacks still come back (and see `aborted`). */
    tusc_concat_job_abandon(st->concat_job);
    (void)tusc_store_cancel(&st->sreq);
    break;
  case PH_RUN:
    /* after_work comes back and sees `aborted`. PH_RUN cannot be seen here: the
     * handler never returns to the loop in it. */
    break;
  }
}

/* --- public ---------------------------------------------------------------------- */

int tusc_tus_new(const tusc_config_t *cfg, tusc_store_t *store, tusc_lock_t *lock,
                 tusc_tus_t **out) {
  tusc_tus_t *tus = calloc(1, sizeof(*tus));
  if (tus == NULL)
    return TUSC_ENOMEM;
  tus->cfg = cfg;
  tus->store = store;
  tus->lock = lock;
  int rc = tusc_cors_init(&tus->cors, cfg);
  if (rc < 0) {
    free(tus);
    return rc;
  }
  rc = uv_mutex_init(&tus->triggers_mu);
  if (rc < 0) {
    tusc_cors_dispose(&tus->cors);
    free(tus);
    return rc;
  }
  snprintf(tus->extensions, sizeof(tus->extensions), "creation,creation-with-upload%s%s,%s",
           cfg->disable_termination ? "" : ",termination",
           cfg->disable_concatenation ? "" : ",concatenation,concatenation-unfinished",
           "creation-defer-length");
  size_t ext_len = strlen(tus->extensions);
  snprintf(tus->extensions + ext_len, sizeof(tus->extensions) - ext_len,
           ",checksum,checksum-trailer%s", cfg->expire_after_ms > 0 ? ",expiration" : "");
  *out = tus;
  return 0;
}

void tusc_tus_free(tusc_tus_t *tus) {
  if (tus == NULL)
    return;
  tusc_cors_dispose(&tus->cors);
  uv_mutex_destroy(&tus->triggers_mu);
  free(tus);
}

int tusc_tus_worker_new(tusc_tus_t *tus, uv_loop_t *loop, tusc_tus_worker_t **out) {
  tusc_tus_worker_t *w = calloc(1, sizeof(*w));
  if (w == NULL)
    return TUSC_ENOMEM;
  w->tus = tus;
  w->loop = loop;
  atomic_init(&w->closing, false);
  *out = w;
  return 0;
}

void tusc_tus_worker_close(tusc_tus_worker_t *worker) {
  if (worker == NULL || atomic_load(&worker->closing))
    return;
  /* Requests still in flight (thread-pool work) keep the worker alive; the last one
   * to go frees it. */
  atomic_store(&worker->closing, true);
  tus_worker_maybe_free(worker);
}

static const tusc_http_handler_t http_handler = {
    .on_request = on_request,
    .on_body = tus_on_body,
    .on_body_end = tus_on_body_end,
    .on_abort = on_abort,
};

void tusc_tus_set_expire(tusc_tus_t *tus, tusc_expire_t *expire) {
  tus->expire = expire;
}

void tusc_tus_set_hooks(tusc_tus_t *tus, tusc_hooks_t *hooks) {
  tus->hooks = hooks;
}

void tusc_tus_set_auth(tusc_tus_t *tus, tusc_auth_t *auth) {
  tus->auth = auth;
}

void tusc_tus_worker_set_hooks(tusc_tus_worker_t *worker, tusc_hooks_worker_t *hw) {
  worker->hw = hw;
}

const tusc_http_handler_t *tusc_tus_http_handler(void) {
  return &http_handler;
}

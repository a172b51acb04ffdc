/*
 * s3_client — see s3_client.h.
 *
 * One `struct tusc_s3_op` per request in flight, heap-allocated, owned by the client
 * and freed before the caller's callback runs (so the callback may reuse its request).
 * An op owns one easy handle (from the loop's free list), its header list and, for
 * paginated lists, is re-issued page after page from its own done callback.
 *
 * Responses: headers give the status, ETag, Content-Length and Content-Range; bodies
 * go, by kind, to the caller (GET streamed), into a capped buffer (GET into memory), or
 * through libexpat as they arrive (every XML answer and every error body). libexpat
 * rather than our own parser: S3's XML uses entities (&quot; in every ETag) and
 * arbitrary UTF-8 keys, expat is streaming (a page is never held whole) and is already
 * on every Debian machine; a DOCTYPE stops the parse (no entity declarations).
 *
 * Pausing a GET: the body callback may ask for a pause; the next delivery then answers
 * CURL_WRITEFUNC_PAUSE (curl keeps those bytes and stops reading the socket).
 * tusc_s3_resume puts the op on a resume list that a zero timer drains, because
 * curl_easy_pause(CONT) delivers kept bytes synchronously and the caller must not be
 * re-entered from its own resume call.
 */
#include "net/s3_client.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <expat.h>

#include "common/error.h"
#include "net/s3_sigv4.h"

#define ERROR_BODY_MAX (64u << 10) /* an <Error> document */
#define XML_DEPTH_MAX 8
#define XML_NAME_MAX 48
#define XML_TEXT_MAX 4096 /* a key is at most 1,024 bytes; tokens and ids are shorter */
#define PAGE_MAX 1000     /* S3's own limit per page */
#define CREDS_FILE_MAX (1u << 20)

/* --- credentials ---------------------------------------------------------------------- */

void tusc_s3_creds_dispose(tusc_s3_creds_t *c) {
  free(c->access_key);
  free(c->secret_key);
  free(c->session_token);
  free(c->region);
  memset(c, 0, sizeof(*c));
}

static void trim(const char **s, const char **e) {
  while (*s < *e && isspace((unsigned char)**s))
    (*s)++;
  while (*e > *s && isspace((unsigned char)(*e)[-1]))
    (*e)--;
}

static bool span_eq(const char *s, const char *e, const char *want) {
  size_t n = strlen(want);
  return (size_t)(e - s) == n && strncasecmp(s, want, n) == 0;
}

static int set_str(char **dst, const char *s, const char *e) {
  char *v = strndup(s, (size_t)(e - s));
  if (v == NULL)
    return TUSC_ENOMEM;
  free(*dst);
  *dst = v;
  return 0;
}

int tusc_s3_creds_parse(const char *text, size_t len, const char *profile, tusc_s3_creds_t *out) {
  tusc_s3_creds_t c = {0};
  const char *p = text, *end = text + len;
  bool in_profile = false;
  int rc = 0;
  while (p < end && rc == 0) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    const char *s = p, *e = le;
    p = nl ? nl + 1 : end;
    trim(&s, &e);
    if (s == e || *s == '#' || *s == ';')
      continue;
    if (*s == '[') {
      if (e[-1] != ']')
        continue;
      const char *ns = s + 1, *ne = e - 1;
      trim(&ns, &ne);
      /* ~/.aws/config spells sections "[profile name]"; credentials "[name]". */
      if ((size_t)(ne - ns) > 8 && strncmp(ns, "profile", 7) == 0 &&
          isspace((unsigned char)ns[7])) {
        ns += 8;
        trim(&ns, &ne);
      }
      in_profile = span_eq(ns, ne, profile);
      continue;
    }
    if (!in_profile)
      continue;
    const char *eq = memchr(s, '=', (size_t)(e - s));
    if (eq == NULL)
      continue;
    const char *ks = s, *ke = eq, *vs = eq + 1, *ve = e;
    trim(&ks, &ke);
    trim(&vs, &ve);
    if (span_eq(ks, ke, "aws_access_key_id"))
      rc = set_str(&c.access_key, vs, ve);
    else if (span_eq(ks, ke, "aws_secret_access_key"))
      rc = set_str(&c.secret_key, vs, ve);
    else if (span_eq(ks, ke, "aws_session_token"))
      rc = set_str(&c.session_token, vs, ve);
    else if (span_eq(ks, ke, "region"))
      rc = set_str(&c.region, vs, ve);
  }
  if (rc == 0 && (c.access_key == NULL || c.secret_key == NULL || !*c.access_key || !*c.secret_key))
    rc = TUSC_ES3_NO_SUCH_KEY;
  if (rc < 0) {
    tusc_s3_creds_dispose(&c);
    return rc;
  }
  *out = c;
  return 0;
}

static int read_small_file(const char *path, char **out, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return -errno;
  char *buf = malloc(CREDS_FILE_MAX);
  if (buf == NULL) {
    fclose(f);
    return TUSC_ENOMEM;
  }
  size_t n = fread(buf, 1, CREDS_FILE_MAX, f);
  int rc = ferror(f) ? UV_EIO : 0;
  fclose(f);
  if (rc == 0 && n == CREDS_FILE_MAX)
    rc = TUSC_EINVALID_ARGUMENT; /* not a credentials file */
  if (rc < 0) {
    free(buf);
    return rc;
  }
  *out = buf;
  *len = n;
  return 0;
}

static const char *env_nonempty(const char *name) {
  const char *v = getenv(name);
  return v != NULL && *v != '\0' ? v : NULL;
}

int tusc_s3_creds_load(tusc_s3_creds_t *out) {
  tusc_s3_creds_t c = {0};
  int rc = 0;
  const char *ak = env_nonempty("AWS_ACCESS_KEY_ID"), *sk = env_nonempty("AWS_SECRET_ACCESS_KEY");
  if (ak != NULL && sk != NULL) {
    const char *tok = env_nonempty("AWS_SESSION_TOKEN");
    c.access_key = strdup(ak);
    c.secret_key = strdup(sk);
    c.session_token = tok ? strdup(tok) : NULL;
    if (c.access_key == NULL || c.secret_key == NULL || (tok && c.session_token == NULL))
      rc = TUSC_ENOMEM;
  } else {
    char path[4096];
    const char *file = env_nonempty("AWS_SHARED_CREDENTIALS_FILE");
    if (file == NULL) {
      const char *home = env_nonempty("HOME");
      if (home == NULL) {
        rc = TUSC_ES3_NO_SUCH_KEY;
        goto out;
      }
      snprintf(path, sizeof(path), "%s/.aws/credentials", home);
      file = path;
    }
    const char *profile = env_nonempty("AWS_PROFILE");
    char *text = NULL;
    size_t len = 0;
    rc = read_small_file(file, &text, &len);
    if (rc == UV_ENOENT)
      rc = TUSC_ES3_NO_SUCH_KEY;
    if (rc < 0)
      goto out;
    rc = tusc_s3_creds_parse(text, len, profile ? profile : "default", &c);
    free(text);
    if (rc < 0)
      goto out;
  }
  const char *region = env_nonempty("AWS_REGION");
  if (region == NULL)
    region = env_nonempty("AWS_DEFAULT_REGION");
  if (region == NULL && c.region == NULL)
    region = "us-east-1";
  if (region != NULL) {
    free(c.region);
    c.region = strdup(region);
    if (c.region == NULL)
      rc = TUSC_ENOMEM;
  }
out:
  if (rc < 0) {
    tusc_s3_creds_dispose(&c);
    return rc;
  }
  *out = c;
  return 0;
}

/* --- shared configuration ---------------------------------------------------------------- */

struct tusc_s3_s {
  char *endpoint;    /* scheme://authority, what tusc_s3_endpoint returns */
  char *url_base;    /* scheme://authority or scheme://bucket.authority */
  char *host;        /* the Host header, signed */
  char *path_prefix; /* "/bucket" (path style) or "" */
  char *bucket, *region, *access_key, *secret_key, *session_token;
  long connect_timeout_ms, low_speed_bytes, low_speed_time_s, timeout_ms;
  bool sign_payload, insecure_tls;
};

void tusc_s3_free(tusc_s3_t *s3) {
  if (s3 == NULL)
    return;
  free(s3->endpoint);
  free(s3->url_base);
  free(s3->host);
  free(s3->path_prefix);
  free(s3->bucket);
  free(s3->region);
  free(s3->access_key);
  if (s3->secret_key != NULL)
    memset(s3->secret_key, 0, strlen(s3->secret_key));
  free(s3->secret_key);
  free(s3->session_token);
  free(s3);
}

/* A bucket usable as a DNS label sequence (virtual-host addressing). */
static bool dns_bucket(const char *b) {
  size_t n = strlen(b);
  if (n < 3 || n > 63)
    return false;
  for (const char *c = b; *c; c++)
    if (!(islower((unsigned char)*c) || isdigit((unsigned char)*c) || *c == '-' || *c == '.'))
      return false;
  return true;
}

static char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *str_printf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  if (vasprintf(&s, fmt, ap) < 0)
    s = NULL;
  va_end(ap);
  return s;
}

int tusc_s3_new(const tusc_s3_options_t *o, tusc_s3_t **out) {
  if (o == NULL || o->bucket == NULL || o->bucket[0] == '\0' || strlen(o->bucket) > 255 ||
      o->access_key == NULL || o->secret_key == NULL || o->access_key[0] == '\0' ||
      strchr(o->bucket, '/') != NULL)
    return TUSC_EINVALID_ARGUMENT;
  if (!o->path_style && !dns_bucket(o->bucket))
    return TUSC_EINVALID_ARGUMENT;
  tusc_s3_t *s3 = calloc(1, sizeof(*s3));
  if (s3 == NULL)
    return TUSC_ENOMEM;
  int rc = TUSC_ENOMEM;
  const char *region = o->region != NULL && o->region[0] != '\0' ? o->region : "us-east-1";
  char *defaulted = NULL;
  const char *ep = o->endpoint;
  if (ep == NULL || ep[0] == '\0') {
    defaulted = str_printf("s3.%s.amazonaws.com", region);
    if (defaulted == NULL)
      goto out;
    ep = defaulted;
  }
  const char *scheme = o->disable_ssl ? "http" : "https";
  const char *auth = ep;
  if (strncasecmp(ep, "http://", 7) == 0) {
    scheme = "http";
    auth = ep + 7;
  } else if (strncasecmp(ep, "https://", 8) == 0) {
    scheme = "https";
    auth = ep + 8;
  } else if (strstr(ep, "://") != NULL) {
    rc = TUSC_EINVALID_ARGUMENT;
    goto out;
  }
  size_t alen = strcspn(auth, "/?#");
  /* Nothing but an optional "/" after the authority: the bucket is the path. */
  if (alen == 0 || (auth[alen] != '\0' && strcmp(auth + alen, "/") != 0)) {
    rc = TUSC_EINVALID_ARGUMENT;
    goto out;
  }
  for (size_t i = 0; i < alen; i++)
    if (!isgraph((unsigned char)auth[i]) || auth[i] == '@') {
      rc = TUSC_EINVALID_ARGUMENT;
      goto out;
    }
  /* curl leaves the default port out of its Host; so do we, since Host is signed. */
  if (strcmp(scheme, "http") == 0 && alen > 3 && strncmp(auth + alen - 3, ":80", 3) == 0)
    alen -= 3;
  else if (strcmp(scheme, "https") == 0 && alen > 4 && strncmp(auth + alen - 4, ":443", 4) == 0)
    alen -= 4;
  int al = (int)alen;
  s3->endpoint = str_printf("%s://%.*s", scheme, al, auth);
  if (o->path_style) {
    char enc[3 * 255 + 1];
    if (tusc_sigv4_uri_encode(o->bucket, strlen(o->bucket), false, enc, sizeof(enc)) < 0) {
      rc = TUSC_EINVALID_ARGUMENT;
      goto out;
    }
    s3->host = str_printf("%.*s", al, auth);
    s3->url_base = str_printf("%s://%.*s", scheme, al, auth);
    s3->path_prefix = str_printf("/%s", enc);
  } else {
    s3->host = str_printf("%s.%.*s", o->bucket, al, auth);
    s3->url_base = str_printf("%s://%s.%.*s", scheme, o->bucket, al, auth);
    s3->path_prefix = strdup("");
  }
  s3->bucket = strdup(o->bucket);
  s3->region = strdup(region);
  s3->access_key = strdup(o->access_key);
  s3->secret_key = strdup(o->secret_key);
  if (o->session_token != NULL && o->session_token[0] != '\0') {
    s3->session_token = strdup(o->session_token);
    if (s3->session_token == NULL)
      goto out;
  }
  if (s3->endpoint == NULL || s3->host == NULL || s3->url_base == NULL || s3->path_prefix == NULL ||
      s3->bucket == NULL || s3->region == NULL || s3->access_key == NULL || s3->secret_key == NULL)
    goto out;
  s3->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 10000;
  s3->low_speed_bytes = o->low_speed_bytes > 0 ? o->low_speed_bytes : 1;
  s3->low_speed_time_s = o->low_speed_time_s > 0 ? o->low_speed_time_s : 60;
  s3->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 0;
  s3->sign_payload = o->sign_payload;
  s3->insecure_tls = o->insecure_tls;
  *out = s3;
  s3 = NULL;
  rc = 0;
out:
  free(defaulted);
  tusc_s3_free(s3);
  return rc;
}

const char *tusc_s3_bucket(const tusc_s3_t *s3) {
  return s3->bucket;
}

const char *tusc_s3_region(const tusc_s3_t *s3) {
  return s3->region;
}

const char *tusc_s3_endpoint(const tusc_s3_t *s3) {
  return s3->endpoint;
}

/* --- ops ------------------------------------------------------------------------------------ */

enum op_kind {
  OP_PUT,
  OP_GET_STREAM,
  OP_GET_BUF,
  OP_HEAD,
  OP_DELETE,
  OP_CREATE_MULTIPART,
  OP_UPLOAD_PART,
  OP_UPLOAD_PART_COPY,
  OP_COMPLETE,
  OP_ABORT,
  OP_LIST_PARTS,
  OP_LIST_OBJECTS,
  OP_LIST_UPLOADS,
  OP_CREATE_BUCKET,
};

/* One entry of a list page; strings malloc'd. */
struct entry {
  char *key, *etag, *upload_id, *date;
  uint64_t size;
  int part_number;
};

struct xml {
  XML_Parser parser;
  int depth;
  char names[XML_DEPTH_MAX][XML_NAME_MAX];
  char text[XML_TEXT_MAX];
  size_t text_len;
  bool overflow;
  size_t fed;
  bool root_error; /* the document is an <Error> */
  /* page state */
  bool truncated;
  char *next1, *next2; /* next markers/tokens */
  struct entry cur;
  struct entry *entries;
  size_t nentries;
};

struct tusc_s3_op {
  tusc_s3_loop_t *sl;
  tusc_s3_req_t *req;
  enum op_kind kind;
  tusc_s3_cb cb;
  tusc_curl_xfer_t xfer;
  CURL *easy;
  struct curl_slist *headers;
  char errbuf[CURL_ERROR_SIZE];
  /* what to send */
  char *path; /* encoded object path below the bucket ("/key"), "" for the bucket */
  char *upload_id;
  const char *send;
  size_t send_len, send_off;
  char *owned_send; /* CompleteMultipartUpload's XML */
  /* what came back */
  long status;
  int fail; /* a failure decided while receiving (cap, body callback) */
  bool user_paused;
  tusc_s3_body_cb on_body;
  size_t max_len;
  struct xml xml;
  bool xml_on;
  /* lists */
  int page_max;
  char *prefix;
  char *marker1, *marker2;
  tusc_s3_parts_visit_cb visit_parts;
  tusc_s3_objects_visit_cb visit_objects;
  tusc_s3_uploads_visit_cb visit_uploads;
  /* linkage */
  struct tusc_s3_op *prev, *next;            /* sl->ops */
  struct tusc_s3_op *rprev, *rnext, **rlist; /* a resume list */
};

struct tusc_s3_loop_s {
  tusc_s3_t *s3;
  uv_loop_t *loop;
  tusc_curl_loop_t *curl;
  uv_timer_t resume_timer;
  struct tusc_s3_op *ops;
  struct tusc_s3_op *resume; /* ops to unpause on the next timer run */
  CURL *idle[TUSC_S3_FREE_HANDLES];
  int nidle;
  void (*closed_cb)(void *arg);
  void *closed_arg;
};

int tusc_s3_loop_new(tusc_s3_t *s3, uv_loop_t *loop, tusc_curl_loop_t *curl, tusc_s3_loop_t **out) {
  if (s3 == NULL || loop == NULL || curl == NULL)
    return TUSC_EINVALID_ARGUMENT;
  tusc_s3_loop_t *sl = calloc(1, sizeof(*sl));
  if (sl == NULL)
    return TUSC_ENOMEM;
  sl->s3 = s3;
  sl->loop = loop;
  sl->curl = curl;
  uv_timer_init(loop, &sl->resume_timer);
  sl->resume_timer.data = sl;
  *out = sl;
  return 0;
}

static void loop_closed(uv_handle_t *h) {
  tusc_s3_loop_t *sl = h->data;
  void (*cb)(void *) = sl->closed_cb;
  void *arg = sl->closed_arg;
  free(sl);
  if (cb != NULL)
    cb(arg);
}

void tusc_s3_loop_close(tusc_s3_loop_t *sl, void (*closed_cb)(void *arg), void *arg) {
  /* The contract says none is left; should one be, it is cancelled (no callback). */
  while (sl->ops != NULL)
    tusc_s3_cancel(sl, sl->ops->req);
  sl->closed_cb = closed_cb;
  sl->closed_arg = arg;
  for (int i = 0; i < sl->nidle; i++)
    curl_easy_cleanup(sl->idle[i]);
  sl->nidle = 0;
  uv_close((uv_handle_t *)&sl->resume_timer, loop_closed);
}

void tusc_s3_req_init(tusc_s3_req_t *req) {
  memset(req, 0, sizeof(*req));
}

void tusc_s3_req_dispose(tusc_s3_req_t *req) {
  free(req->body);
  req->body = NULL;
  req->body_len = 0;
  free(req->parts);
  req->parts = NULL;
  req->nparts = 0;
}

static void entry_free(struct entry *e) {
  free(e->key);
  free(e->etag);
  free(e->upload_id);
  free(e->date);
  memset(e, 0, sizeof(*e));
}

static void xml_page_clear(struct xml *x) {
  for (size_t i = 0; i < x->nentries; i++)
    entry_free(&x->entries[i]);
  free(x->entries);
  x->entries = NULL;
  x->nentries = 0;
  entry_free(&x->cur);
  free(x->next1);
  free(x->next2);
  x->next1 = x->next2 = NULL;
  x->truncated = false;
}

static void xml_free(struct xml *x) {
  if (x->parser != NULL)
    XML_ParserFree(x->parser);
  x->parser = NULL;
  xml_page_clear(x);
}

static void resume_unlink(struct tusc_s3_op *op) {
  if (op->rlist == NULL)
    return;
  if (op->rprev != NULL)
    op->rprev->rnext = op->rnext;
  else
    *op->rlist = op->rnext;
  if (op->rnext != NULL)
    op->rnext->rprev = op->rprev;
  op->rprev = op->rnext = NULL;
  op->rlist = NULL;
}

static void resume_push(struct tusc_s3_op **list, struct tusc_s3_op *op) {
  op->rprev = NULL;
  op->rnext = *list;
  if (*list != NULL)
    (*list)->rprev = op;
  *list = op;
  op->rlist = list;
}

/* Detaches `op` from the client and frees it; its easy handle goes back to the idle
 * list (reset: options gone, connections stay in the multi's cache). */
static void op_free(struct tusc_s3_op *op) {
  tusc_s3_loop_t *sl = op->sl;
  resume_unlink(op);
  if (op->prev != NULL)
    op->prev->next = op->next;
  else if (sl->ops == op)
    sl->ops = op->next;
  if (op->next != NULL)
    op->next->prev = op->prev;
  if (op->easy != NULL) {
    if (sl->nidle < TUSC_S3_FREE_HANDLES) {
      curl_easy_reset(op->easy);
      sl->idle[sl->nidle++] = op->easy;
    } else {
      curl_easy_cleanup(op->easy);
    }
  }
  curl_slist_free_all(op->headers);
  xml_free(&op->xml);
  free(op->path);
  free(op->upload_id);
  free(op->owned_send);
  free(op->prefix);
  free(op->marker1);
  free(op->marker2);
  if (op->req != NULL && op->req->op == op)
    op->req->op = NULL;
  free(op);
}

static void copy_str(char *dst, size_t cap, const char *s, size_t n) {
  if (n >= cap)
    n = cap - 1;
  memcpy(dst, s, n);
  dst[n] = '\0';
}

static void finish(struct tusc_s3_op *op, int status) {
  tusc_s3_req_t *req = op->req;
  tusc_s3_cb cb = op->cb;
  req->status = status;
  if (status == 0) {
    req->s3_code[0] = '\0';
    req->message[0] = '\0';
  }
  op_free(op);
  cb(req, status);
}

void tusc_s3_cancel(tusc_s3_loop_t *sl, tusc_s3_req_t *req) {
  struct tusc_s3_op *op = req->op;
  if (op == NULL)
    return;
  tusc_curl_loop_remove(sl->curl, &op->xfer);
  op_free(op);
}

static void on_resume_timer(uv_timer_t *t) {
  tusc_s3_loop_t *sl = t->data;
  /* Work on a list of our own: an op resumed again meanwhile waits for the next run. */
  struct tusc_s3_op *batch = sl->resume;
  sl->resume = NULL;
  for (struct tusc_s3_op *o = batch; o != NULL; o = o->rnext)
    o->rlist = &batch;
  while (batch != NULL) {
    struct tusc_s3_op *op = batch;
    resume_unlink(op);
    curl_easy_pause(op->easy, CURLPAUSE_CONT);
  }
}

void tusc_s3_resume(tusc_s3_loop_t *sl, tusc_s3_req_t *req) {
  struct tusc_s3_op *op = req->op;
  if (op == NULL || op->kind != OP_GET_STREAM || !op->user_paused)
    return;
  op->user_paused = false;
  if (op->rlist == NULL)
    resume_push(&sl->resume, op);
  uv_timer_start(&sl->resume_timer, on_resume_timer, 0, 0);
}

/* --- XML ------------------------------------------------------------------------------------ */

static const char *xml_parent(const struct xml *x) {
  return x->depth >= 2 ? x->names[x->depth - 2] : "";
}

static bool is_root(const struct xml *x, const char *name) {
  return strcmp(x->names[0], name) == 0;
}

static int dup_text(char **dst, const struct xml *x) {
  char *s = strndup(x->text, x->text_len);
  if (s == NULL)
    return TUSC_ENOMEM;
  free(*dst);
  *dst = s;
  return 0;
}

static bool parse_u64(const char *s, size_t n, uint64_t *out) {
  if (n == 0 || n > 20)
    return false;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    uint64_t d = (uint64_t)(s[i] - '0');
    if (v > (UINT64_MAX - d) / 10)
      return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

static void xml_fail(struct tusc_s3_op *op, int err, const char *why) {
  if (op->fail == 0) {
    op->fail = err;
    copy_str(op->req->message, sizeof(op->req->message), why, strlen(why));
  }
  XML_StopParser(op->xml.parser, XML_FALSE);
}

static void on_xml_start(void *ud, const XML_Char *name, const XML_Char **attrs) {
  (void)attrs;
  struct tusc_s3_op *op = ud;
  struct xml *x = &op->xml;
  if (x->depth >= XML_DEPTH_MAX) {
    xml_fail(op, TUSC_ES3_ERROR, "S3 response nested too deeply");
    return;
  }
  copy_str(x->names[x->depth], XML_NAME_MAX, name, strlen(name));
  x->depth++;
  x->text_len = 0;
  x->overflow = false;
  if (x->depth == 1 && strcmp(name, "Error") == 0)
    x->root_error = true;
}

static void on_xml_text(void *ud, const XML_Char *s, int len) {
  struct tusc_s3_op *op = ud;
  struct xml *x = &op->xml;
  if (x->text_len + (size_t)len >= XML_TEXT_MAX) {
    x->overflow = true;
    return;
  }
  memcpy(x->text + x->text_len, s, (size_t)len);
  x->text_len += (size_t)len;
  x->text[x->text_len] = '\0';
}

static void push_entry(struct tusc_s3_op *op) {
  struct xml *x = &op->xml;
  if (x->nentries >= PAGE_MAX) {
    xml_fail(op, TUSC_ES3_ERROR, "S3 list page longer than 1000 entries");
    return;
  }
  if (x->nentries % 64 == 0) {
    struct entry *e = realloc(x->entries, (x->nentries + 64) * sizeof(*e));
    if (e == NULL) {
      xml_fail(op, TUSC_ENOMEM, "out of memory");
      return;
    }
    x->entries = e;
  }
  x->entries[x->nentries++] = x->cur;
  memset(&x->cur, 0, sizeof(x->cur));
}

/* Called at each closing tag with the element's text; what it means depends on the
 * document (root) and the parent element. */
static void on_xml_end(void *ud, const XML_Char *name) {
  struct tusc_s3_op *op = ud;
  struct xml *x = &op->xml;
  tusc_s3_req_t *req = op->req;
  int rc = 0;
  if (x->overflow) {
    xml_fail(op, TUSC_ES3_ERROR, "S3 response element too long");
    return;
  }
  const char *parent = xml_parent(x);
  const char *t = x->text;
  size_t n = x->text_len;
  if (x->root_error) {
    if (x->depth == 2 && strcmp(name, "Code") == 0)
      copy_str(req->s3_code, sizeof(req->s3_code), t, n);
    else if (x->depth == 2 && strcmp(name, "Message") == 0)
      copy_str(req->message, sizeof(req->message), t, n);
  } else if (x->depth == 2 && strcmp(name, "UploadId") == 0 &&
             is_root(x, "InitiateMultipartUploadResult")) {
    if (n >= sizeof(req->upload_id)) {
      xml_fail(op, TUSC_ES3_ERROR, "S3 upload id too long");
      return;
    }
    copy_str(req->upload_id, sizeof(req->upload_id), t, n);
  } else if (x->depth == 2 && strcmp(name, "ETag") == 0 &&
             (is_root(x, "CopyPartResult") || is_root(x, "CompleteMultipartUploadResult"))) {
    copy_str(req->etag, sizeof(req->etag), t, n);
  } else if (x->depth == 2 && strcmp(name, "IsTruncated") == 0) {
    x->truncated = n == 4 && strncmp(t, "true", 4) == 0;
  } else if (x->depth == 2 &&
             (strcmp(name, "NextPartNumberMarker") == 0 ||
              strcmp(name, "NextContinuationToken") == 0 || strcmp(name, "NextKeyMarker") == 0)) {
    rc = dup_text(&x->next1, x);
  } else if (x->depth == 2 && strcmp(name, "NextUploadIdMarker") == 0) {
    rc = dup_text(&x->next2, x);
  } else if (x->depth == 3 && (strcmp(parent, "Part") == 0 || strcmp(parent, "Contents") == 0 ||
                               strcmp(parent, "Upload") == 0)) {
    uint64_t v;
    if (strcmp(name, "PartNumber") == 0) {
      if (!parse_u64(t, n, &v) || v < 1 || v > TUSC_S3_MAX_PARTS) {
        xml_fail(op, TUSC_ES3_ERROR, "S3 sent a bad PartNumber");
        return;
      }
      x->cur.part_number = (int)v;
    } else if (strcmp(name, "Size") == 0) {
      if (!parse_u64(t, n, &v)) {
        xml_fail(op, TUSC_ES3_ERROR, "S3 sent a bad Size");
        return;
      }
      x->cur.size = v;
    } else if (strcmp(name, "ETag") == 0) {
      rc = dup_text(&x->cur.etag, x);
    } else if (strcmp(name, "Key") == 0) {
      rc = dup_text(&x->cur.key, x);
    } else if (strcmp(name, "UploadId") == 0) {
      rc = dup_text(&x->cur.upload_id, x);
    } else if (strcmp(name, "LastModified") == 0 || strcmp(name, "Initiated") == 0) {
      rc = dup_text(&x->cur.date, x);
    }
  } else if (x->depth == 2 && ((strcmp(name, "Part") == 0 && op->kind == OP_LIST_PARTS) ||
                               (strcmp(name, "Contents") == 0 && op->kind == OP_LIST_OBJECTS) ||
                               (strcmp(name, "Upload") == 0 && op->kind == OP_LIST_UPLOADS))) {
    push_entry(op);
  }
  if (rc < 0) {
    xml_fail(op, rc, "out of memory");
    return;
  }
  x->depth--;
  x->text_len = 0;
}

static void on_xml_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
                           const XML_Char *pubid, int has_internal_subset) {
  (void)name, (void)sysid, (void)pubid, (void)has_internal_subset;
  xml_fail(ud, TUSC_ES3_ERROR, "S3 response has a DOCTYPE");
}

static int xml_begin(struct tusc_s3_op *op) {
  struct xml *x = &op->xml;
  if (x->parser == NULL) {
    x->parser = XML_ParserCreate("UTF-8");
    if (x->parser == NULL)
      return TUSC_ENOMEM;
  } else {
    XML_ParserReset(x->parser, "UTF-8");
  }
  XML_SetUserData(x->parser, op);
  XML_SetElementHandler(x->parser, on_xml_start, on_xml_end);
  XML_SetCharacterDataHandler(x->parser, on_xml_text);
  XML_SetStartDoctypeDeclHandler(x->parser, on_xml_doctype);
  x->depth = 0;
  x->text_len = 0;
  x->overflow = false;
  x->fed = 0;
  x->root_error = false;
  memset(x->names, 0, sizeof(x->names));
  xml_page_clear(x);
  op->xml_on = true;
  return 0;
}

static bool xml_feed(struct tusc_s3_op *op, const char *data, size_t len, bool final) {
  struct xml *x = &op->xml;
  size_t cap = op->status >= 300 ? ERROR_BODY_MAX : TUSC_S3_XML_MAX;
  x->fed += len;
  if (x->fed > cap) {
    if (op->fail == 0) {
      op->fail = TUSC_ES3_ERROR;
      snprintf(op->req->message, sizeof(op->req->message), "S3 response longer than %zu bytes",
               cap);
    }
    return false;
  }
  if (op->fail != 0)
    return false;
  if (XML_Parse(x->parser, data, (int)len, final) != XML_STATUS_OK) {
    if (op->fail == 0) {
      op->fail = TUSC_ES3_ERROR;
      snprintf(op->req->message, sizeof(op->req->message), "malformed S3 XML: %s",
               XML_ErrorString(XML_GetErrorCode(x->parser)));
    }
    return false;
  }
  return true;
}

static bool wants_xml(const struct tusc_s3_op *op) {
  switch (op->kind) {
  case OP_CREATE_MULTIPART:
  case OP_UPLOAD_PART_COPY:
  case OP_COMPLETE:
  case OP_LIST_PARTS:
  case OP_LIST_OBJECTS:
  case OP_LIST_UPLOADS:
    return true;
  default:
    return false;
  }
}

/* --- curl callbacks ---------------------------------------------------------------------- */

static bool header_is(const char *line, size_t len, const char *name, const char **value,
                      size_t *vlen) {
  size_t n = strlen(name);
  if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':')
    return false;
  const char *v = line + n + 1, *e = line + len;
  trim(&v, &e);
  *value = v;
  *vlen = (size_t)(e - v);
  return true;
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *ud) {
  struct tusc_s3_op *op = ud;
  tusc_s3_req_t *req = op->req;
  size_t len = size * nmemb;
  const char *v;
  size_t vl;
  uint64_t u;
  if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) {
    /* A new response (after a 1xx too): forget the last one's headers. */
    req->etag[0] = '\0';
    req->content_length = 0;
    req->object_size = 0;
    const char *sp = memchr(line, ' ', len);
    if (sp != NULL && (size_t)(line + len - sp) > 4 && parse_u64(sp + 1, 3, &u))
      op->status = (long)u;
  } else if (header_is(line, len, "ETag", &v, &vl)) {
    copy_str(req->etag, sizeof(req->etag), v, vl);
  } else if (header_is(line, len, "Content-Length", &v, &vl)) {
    if (parse_u64(v, vl, &u)) {
      req->content_length = u;
      if (req->object_size == 0)
        req->object_size = u;
    }
  } else if (header_is(line, len, "Content-Range", &v, &vl)) {
    const char *slash = memchr(v, '/', vl);
    if (slash != NULL && parse_u64(slash + 1, (size_t)(v + vl - slash - 1), &u))
      req->object_size = u;
  }
  return len;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud) {
  struct tusc_s3_op *op = ud;
  tusc_s3_req_t *req = op->req;
  size_t len = size * nmemb;
  if (op->fail != 0)
    return 0;
  if (op->status >= 300 || wants_xml(op)) {
    if (!op->xml_on) {
      int rc = xml_begin(op);
      if (rc < 0) {
        op->fail = rc;
        return 0;
      }
    }
    return xml_feed(op, data, len, false) ? len : 0;
  }
  if (op->kind == OP_GET_STREAM) {
    if (op->user_paused)
      return CURL_WRITEFUNC_PAUSE; /* curl keeps these bytes for after the resume */
    int rc = op->on_body(req, data, len);
    if (rc == TUSC_S3_BODY_CONTINUE)
      return len;
    if (rc == TUSC_S3_BODY_PAUSE) {
      op->user_paused = true;
      return len;
    }
    if (rc == TUSC_S3_BODY_AGAIN) {
      op->user_paused = true;
      return CURL_WRITEFUNC_PAUSE;
    }
    op->fail = rc < 0 ? rc : TUSC_EINVALID_ARGUMENT;
    snprintf(req->message, sizeof(req->message), "body callback: %s", tusc_strerror(op->fail));
    return 0;
  }
  if (op->kind == OP_GET_BUF) {
    if (req->body_len + len > op->max_len) {
      op->fail = TUSC_ES3_ERROR;
      snprintf(req->message, sizeof(req->message), "object larger than %zu bytes", op->max_len);
      return 0;
    }
    char *b = realloc(req->body, req->body_len + len + 1);
    if (b == NULL) {
      op->fail = TUSC_ENOMEM;
      return 0;
    }
    memcpy(b + req->body_len, data, len);
    req->body = b;
    req->body_len += len;
    b[req->body_len] = '\0';
    return len;
  }
  return len; /* bodies nobody needs (PUT answers) */
}

static size_t on_read(char *buf, size_t size, size_t nmemb, void *ud) {
  struct tusc_s3_op *op = ud;
  size_t n = size * nmemb, left = op->send_len - op->send_off;
  if (n > left)
    n = left;
  memcpy(buf, op->send + op->send_off, n);
  op->send_off += n;
  return n;
}

static int on_seek(void *ud, curl_off_t offset, int origin) {
  struct tusc_s3_op *op = ud;
  if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > op->send_len)
    return CURL_SEEKFUNC_FAIL;
  op->send_off = (size_t)offset;
  return CURL_SEEKFUNC_OK;
}

/* --- building and sending ------------------------------------------------------------------- */

static int encode_key(const char *key, char **out) {
  size_t len = strlen(key);
  if (len == 0 || len > 1024)
    return TUSC_EINVALID_ARGUMENT;
  char *enc = malloc(3 * len + 2);
  if (enc == NULL)
    return TUSC_ENOMEM;
  enc[0] = '/';
  (void)tusc_sigv4_uri_encode(key, len, true, enc + 1, 3 * len + 1);
  *out = enc;
  return 0;
}

#define MAX_EXTRA 4
struct send_spec {
  const char *method;
  tusc_sigv4_pair_t query[6];
  size_t nquery;
  tusc_sigv4_pair_t extra[MAX_EXTRA]; /* signed and sent */
  size_t nextra;
  bool has_body; /* send op->send/send_len */
};

static int add_header(struct curl_slist **list, const char *name, const char *value) {
  char *line = str_printf("%s: %s", name, value);
  if (line == NULL)
    return TUSC_ENOMEM;
  struct curl_slist *l = curl_slist_append(*list, line);
  free(line);
  if (l == NULL)
    return TUSC_ENOMEM;
  *list = l;
  return 0;
}

static void on_done(tusc_curl_xfer_t *xfer, CURLcode res);

/* The request's path as sent and signed: "/bucket/key" or "/key"; a bucket-level request
 * is "/bucket" (path style) or "/". */
static char *path_of(const tusc_s3_t *s3, const struct tusc_s3_op *op) {
  if (op->path[0] != '\0')
    return str_printf("%s%s", s3->path_prefix, op->path);
  return strdup(s3->path_prefix[0] ? s3->path_prefix : "/");
}

/* Builds the request for the op's current page/attempt and adds it to the loop. */
static int op_send(struct tusc_s3_op *op, const struct send_spec *sp) {
  tusc_s3_loop_t *sl = op->sl;
  const tusc_s3_t *s3 = sl->s3;
  char *query = NULL, *url = NULL;
  int rc;
  if (op->easy == NULL) {
    op->easy = sl->nidle > 0 ? sl->idle[--sl->nidle] : curl_easy_init();
    if (op->easy == NULL)
      return TUSC_ENOMEM;
  } else {
    curl_easy_reset(op->easy);
  }
  curl_slist_free_all(op->headers);
  op->headers = NULL;
  op->status = 0;
  op->fail = 0;
  op->xml_on = false;
  op->send_off = 0;
  op->errbuf[0] = '\0';

  rc = tusc_sigv4_query_string(sp->query, sp->nquery, &query);
  if (rc < 0)
    goto out;
  char *path = path_of(s3, op);
  url = path ? str_printf("%s%s%s%s", s3->url_base, path, query[0] ? "?" : "", query) : NULL;
  free(path);
  if (url == NULL) {
    rc = TUSC_ENOMEM;
    goto out;
  }
  char *sign_path = path_of(s3, op);
  if (sign_path == NULL) {
    rc = TUSC_ENOMEM;
    goto out;
  }
  char date[TUSC_SIGV4_DATE_LEN];
  tusc_sigv4_format_date((long long)time(NULL), date);
  char hash[TUSC_SIGV4_HASH_HEX_LEN];
  const char *payload = TUSC_SIGV4_EMPTY_SHA256;
  if (sp->has_body && op->send_len > 0) {
    if (s3->sign_payload || op->owned_send != NULL) {
      /* Small XML bodies are always hashed: cheap, and what providers expect. */
      tusc_sigv4_sha256_hex(op->send, op->send_len, hash);
      payload = hash;
    } else {
      payload = TUSC_SIGV4_UNSIGNED_PAYLOAD;
    }
  }
  tusc_sigv4_pair_t hs[4 + MAX_EXTRA];
  size_t nh = 0;
  hs[nh++] = (tusc_sigv4_pair_t){"host", s3->host};
  hs[nh++] = (tusc_sigv4_pair_t){"x-amz-date", date};
  hs[nh++] = (tusc_sigv4_pair_t){"x-amz-content-sha256", payload};
  if (s3->session_token != NULL)
    hs[nh++] = (tusc_sigv4_pair_t){"x-amz-security-token", s3->session_token};
  for (size_t i = 0; i < sp->nextra; i++)
    hs[nh++] = sp->extra[i];
  tusc_sigv4_key_t key = {s3->access_key, s3->secret_key, s3->region, "s3"};
  tusc_sigv4_request_t sreq = {
      .method = sp->method,
      .path = sign_path,
      .query = sp->query,
      .nquery = sp->nquery,
      .headers = hs,
      .nheaders = nh,
      .payload_hash = payload,
      .amz_date = date,
  };
  char auth[TUSC_SIGV4_AUTH_MAX];
  rc = tusc_sigv4_sign(&key, &sreq, auth, sizeof(auth));
  free(sign_path);
  if (rc < 0)
    goto out;
  for (size_t i = 0; i < nh && rc == 0; i++)
    rc = add_header(&op->headers, hs[i].name, hs[i].value);
  if (rc == 0)
    rc = add_header(&op->headers, "Authorization", auth);
  /* "Expect:" with no value makes curl leave the header out; it is not signed. */
  if (rc == 0) {
    struct curl_slist *l = curl_slist_append(op->headers, "Expect:");
    if (l == NULL)
      rc = TUSC_ENOMEM;
    else
      op->headers = l;
  }
  if (rc < 0)
    goto out;

  CURL *e = op->easy;
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L); /* keys may hold "/./" or "//" */
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, op->headers);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, op->errbuf);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, op);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, op);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, s3->connect_timeout_ms);
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, s3->low_speed_bytes);
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, s3->low_speed_time_s);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, s3->timeout_ms);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  if (s3->insecure_tls) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (strcmp(sp->method, "GET") == 0) {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else if (strcmp(sp->method, "HEAD") == 0) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (strcmp(sp->method, "PUT") == 0) {
    curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)(sp->has_body ? op->send_len : 0));
    curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(e, CURLOPT_READDATA, op);
    curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
    curl_easy_setopt(e, CURLOPT_SEEKDATA, op);
  } else if (strcmp(sp->method, "POST") == 0) {
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(sp->has_body ? op->send_len : 0));
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, sp->has_body ? op->send : "");
  } else {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, sp->method);
  }
  op->xfer.data = op;
  rc = tusc_curl_loop_add(sl->curl, &op->xfer, e, on_done);
out:
  free(query);
  free(url);
  return rc;
}

static struct tusc_s3_op *op_new(tusc_s3_loop_t *sl, tusc_s3_req_t *req, enum op_kind kind,
                                 const char *key, tusc_s3_cb cb, int *rc) {
  *rc = TUSC_EINVALID_ARGUMENT;
  if (sl == NULL || req == NULL || cb == NULL || req->op != NULL)
    return NULL;
  struct tusc_s3_op *op = calloc(1, sizeof(*op));
  if (op == NULL) {
    *rc = TUSC_ENOMEM;
    return NULL;
  }
  op->sl = sl;
  op->req = req;
  op->kind = kind;
  op->cb = cb;
  if (key != NULL) {
    *rc = encode_key(key, &op->path);
  } else {
    op->path = strdup("");
    *rc = op->path ? 0 : TUSC_ENOMEM;
  }
  if (*rc < 0) {
    free(op);
    return NULL;
  }
  /* Fresh results: a request starting again disposes of what the last one left. */
  void *data = req->data;
  tusc_s3_req_dispose(req);
  memset(req, 0, sizeof(*req));
  req->data = data;
  req->op = op;
  op->next = sl->ops;
  if (sl->ops != NULL)
    sl->ops->prev = op;
  sl->ops = op;
  return op;
}

/* Starts the op; on failure it is freed and no callback will come. */
static int op_start(struct tusc_s3_op *op, const struct send_spec *sp) {
  int rc = op_send(op, sp);
  if (rc < 0) {
    tusc_s3_req_t *req = op->req;
    op_free(op);
    req->op = NULL;
  }
  return rc;
}

/* --- results ---------------------------------------------------------------------------------- */

static int map_code(const char *code, long status, enum op_kind kind) {
  static const struct {
    const char *code;
    int err;
  } table[] = {
      {"NoSuchKey", TUSC_ES3_NO_SUCH_KEY},
      {"NoSuchUpload", TUSC_ES3_NO_SUCH_UPLOAD},
      {"NoSuchBucket", TUSC_ES3_NO_SUCH_BUCKET},
      {"EntityTooSmall", TUSC_ES3_ENTITY_TOO_SMALL},
      {"AccessDenied", TUSC_ES3_ACCESS_DENIED},
      {"SignatureDoesNotMatch", TUSC_ES3_ACCESS_DENIED},
      {"InvalidAccessKeyId", TUSC_ES3_ACCESS_DENIED},
      {"RequestTimeTooSkewed", TUSC_ES3_ACCESS_DENIED},
      {"ExpiredToken", TUSC_ES3_ACCESS_DENIED},
      {"InvalidToken", TUSC_ES3_ACCESS_DENIED},
      {"InvalidRange", TUSC_EINVALID_RANGE},
      {"SlowDown", TUSC_ES3_UNAVAILABLE},
      {"ServiceUnavailable", TUSC_ES3_UNAVAILABLE},
      {"InternalError", TUSC_ES3_UNAVAILABLE},
      {"RequestTimeout", TUSC_ES3_UNAVAILABLE},
  };
  int err = 0;
  for (size_t i = 0; code[0] != '\0' && i < sizeof(table) / sizeof(table[0]); i++)
    if (strcmp(code, table[i].code) == 0)
      err = table[i].err;
  if (err == 0) {
    if (status == 404)
      err = TUSC_ES3_NO_SUCH_KEY;
    else if (status == 403)
      err = TUSC_ES3_ACCESS_DENIED;
    else if (status == 416)
      err = TUSC_EINVALID_RANGE;
    else if (status >= 500)
      err = TUSC_ES3_UNAVAILABLE;
    else
      err = TUSC_ES3_ERROR;
  }
  /* RGW answers NoSuchKey for an upload id it no longer knows (e.g. ListParts after
   * an abort). Not for UploadPartCopy: there NoSuchKey is the source object. */
  if (err == TUSC_ES3_NO_SUCH_KEY &&
      (kind == OP_LIST_PARTS || kind == OP_UPLOAD_PART || kind == OP_COMPLETE || kind == OP_ABORT))
    err = TUSC_ES3_NO_SUCH_UPLOAD;
  return err;
}

static int map_curl(CURLcode res) {
  switch (res) {
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_CONNECT:
  case CURLE_OPERATION_TIMEDOUT:
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE:
  case CURLE_SSL_CONNECT_ERROR:
    return TUSC_ES3_UNAVAILABLE;
  case CURLE_OUT_OF_MEMORY:
    return TUSC_ENOMEM;
  default:
    return TUSC_ES3_ERROR;
  }
}

static int visit_page(struct tusc_s3_op *op) {
  struct xml *x = &op->xml;
  tusc_s3_req_t *req = op->req;
  size_t n = x->nentries;
  int rc = 0;
  if (op->kind == OP_LIST_PARTS) {
    tusc_s3_part_t *parts = NULL;
    if (op->visit_parts == NULL) {
      if (req->nparts + n > TUSC_S3_MAX_PARTS) {
        snprintf(req->message, sizeof(req->message), "more than %d parts", TUSC_S3_MAX_PARTS);
        return TUSC_ES3_ERROR;
      }
      if (n == 0)
        return 0;
      parts = realloc(req->parts, (req->nparts + n) * sizeof(*parts));
      if (parts == NULL)
        return TUSC_ENOMEM;
      req->parts = parts;
      parts += req->nparts;
    } else if (n > 0) {
      parts = calloc(n, sizeof(*parts));
      if (parts == NULL)
        return TUSC_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
      struct entry *e = &x->entries[i];
      parts[i].part_number = e->part_number;
      parts[i].size = e->size;
      const char *etag = e->etag ? e->etag : "";
      copy_str(parts[i].etag, sizeof(parts[i].etag), etag, strlen(etag));
    }
    if (op->visit_parts == NULL) {
      req->nparts += n;
    } else {
      rc = op->visit_parts(req, parts, n);
      free(parts);
    }
    return rc;
  }
  if (op->kind == OP_LIST_OBJECTS) {
    tusc_s3_object_t *objs = n ? calloc(n, sizeof(*objs)) : NULL;
    if (n && objs == NULL)
      return TUSC_ENOMEM;
    for (size_t i = 0; i < n; i++) {
      struct entry *e = &x->entries[i];
      objs[i] = (tusc_s3_object_t){e->key ? e->key : "", e->size, e->etag ? e->etag : "",
                                   e->date ? e->date : ""};
    }
    rc = op->visit_objects(req, objs, n);
    free(objs);
    return rc;
  }
  tusc_s3_upload_t *ups = n ? calloc(n, sizeof(*ups)) : NULL;
  if (n && ups == NULL)
    return TUSC_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    struct entry *e = &x->entries[i];
    ups[i] = (tusc_s3_upload_t){e->key ? e->key : "", e->upload_id ? e->upload_id : "",
                                e->date ? e->date : ""};
  }
  rc = op->visit_uploads(req, ups, n);
  free(ups);
  return rc;
}

static int send_list_page(struct tusc_s3_op *op);

static void on_done(tusc_curl_xfer_t *xfer, CURLcode res) {
  struct tusc_s3_op *op = xfer->data;
  tusc_s3_req_t *req = op->req;
  req->http_status = op->status;
  if (op->fail != 0) {
    finish(op, op->fail);
    return;
  }
  if (res != CURLE_OK) {
    const char *why = op->errbuf[0] ? op->errbuf : curl_easy_strerror(res);
    copy_str(req->message, sizeof(req->message), why, strlen(why));
    finish(op, map_curl(res));
    return;
  }
  if (op->xml_on && !xml_feed(op, "", 0, true)) {
    finish(op, op->fail ? op->fail : TUSC_ES3_ERROR);
    return;
  }
  if (op->status >= 300 || op->status < 200 || (op->xml_on && op->xml.root_error)) {
    finish(op, map_code(req->s3_code, op->status, op->kind));
    return;
  }
  switch (op->kind) {
  case OP_CREATE_MULTIPART:
    if (req->upload_id[0] == '\0') {
      snprintf(req->message, sizeof(req->message), "S3 answered no UploadId");
      finish(op, TUSC_ES3_ERROR);
      return;
    }
    break;
  case OP_UPLOAD_PART_COPY:
  case OP_COMPLETE:
    if (!op->xml_on) { /* a 200 with no body at all: the copy/completion is unknown */
      snprintf(req->message, sizeof(req->message), "S3 answered an empty body");
      finish(op, TUSC_ES3_ERROR);
      return;
    }
    break;
  case OP_HEAD:
    req->object_size = req->content_length;
    break;
  case OP_GET_BUF:
    if (req->body == NULL) {
      req->body = calloc(1, 1);
      if (req->body == NULL) {
        finish(op, TUSC_ENOMEM);
        return;
      }
    }
    break;
  case OP_LIST_PARTS:
  case OP_LIST_OBJECTS:
  case OP_LIST_UPLOADS: {
    int rc = visit_page(op);
    if (rc < 0) {
      finish(op, rc);
      return;
    }
    if (rc > 0 || !op->xml.truncated) {
      finish(op, 0);
      return;
    }
    /* Next page: a truncated page must name where to go on, or we would loop. */
    if (op->xml.next1 == NULL || op->xml.next1[0] == '\0') {
      snprintf(req->message, sizeof(req->message), "S3 list truncated without a marker");
      finish(op, TUSC_ES3_ERROR);
      return;
    }
    /* A server that hands back the markers it was given would make us loop forever. */
    if (op->marker1 != NULL && strcmp(op->marker1, op->xml.next1) == 0 &&
        (op->kind != OP_LIST_UPLOADS ||
         (op->marker2 != NULL && op->xml.next2 != NULL &&
          strcmp(op->marker2, op->xml.next2) == 0) ||
         (op->marker2 == NULL && op->xml.next2 == NULL))) {
      snprintf(req->message, sizeof(req->message), "S3 list does not advance");
      finish(op, TUSC_ES3_ERROR);
      return;
    }
    free(op->marker1);
    free(op->marker2);
    op->marker1 = op->xml.next1;
    op->marker2 = op->xml.next2;
    op->xml.next1 = op->xml.next2 = NULL;
    rc = send_list_page(op);
    if (rc < 0)
      finish(op, rc);
    return;
  }
  default:
    break;
  }
  finish(op, 0);
}

/* --- operations ---------------------------------------------------------------------------- */

int tusc_s3_put_object(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key, const void *body,
                       size_t len, const char *content_type, tusc_s3_cb cb) {
  if (key == NULL || (body == NULL && len > 0))
    return TUSC_EINVALID_ARGUMENT;
  int rc;
  struct tusc_s3_op *op = op_new(sl, req, OP_PUT, key, cb, &rc);
  if (op == NULL)
    return rc;
  op->send = body;
  op->send_len = len;
  struct send_spec sp = {.method = "PUT", .has_body = true};
  sp.extra[sp.nextra++] =
      (tusc_sigv4_pair_t){"content-type", content_type ? content_type : "application/octet-stream"};
  return op_start(op, &sp);
}

static int get_common(tusc_s3_loop_t *sl, tusc_s3_req_t *req, enum op_kind kind, const char *key,
                      uint64_t first, uint64_t last, tusc_s3_cb cb, struct tusc_s3_op **out) {
  if (key == NULL || (first != TUSC_S3_NO_RANGE && last < first))
    return TUSC_EINVALID_ARGUMENT;
  int rc;
  struct tusc_s3_op *op = op_new(sl, req, kind, key, cb, &rc);
  if (op == NULL)
    return rc;
  *out = op;
  char range[64];
  struct send_spec sp = {.method = "GET"};
  if (first != TUSC_S3_NO_RANGE) {
    if (last == UINT64_MAX)
      snprintf(range, sizeof(range), "bytes=%" PRIu64 "-", first);
    else
      snprintf(range, sizeof(range), "bytes=%" PRIu64 "-%" PRIu64, first, last);
    sp.extra[sp.nextra++] = (tusc_sigv4_pair_t){"range", range};
  }
  return op_start(op, &sp);
}

int tusc_s3_get_object(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key, uint64_t first,
                       uint64_t last, tusc_s3_body_cb on_body, tusc_s3_cb cb) {
  if (on_body == NULL)
    return TUSC_EINVALID_ARGUMENT;
  /* on_body must be in place before the transfer can deliver anything, and it cannot
   * deliver before op_start returns (the loop drives curl), so set it through op. */
  struct tusc_s3_op *op = NULL;
  int rc = get_common(sl, req, OP_GET_STREAM, key, first, last, cb, &op);
  if (rc == 0)
    op->on_body = on_body;
  return rc;
}

int tusc_s3_get_object_buf(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key, size_t max_len,
                           tusc_s3_cb cb) {
  struct tusc_s3_op *op = NULL;
  int rc = get_common(sl, req, OP_GET_BUF, key, TUSC_S3_NO_RANGE, 0, cb, &op);
  if (rc == 0)
    op->max_len = max_len;
  return rc;
}

static int simple(tusc_s3_loop_t *sl, tusc_s3_req_t *req, enum op_kind kind, const char *method,
                  const char *key, tusc_s3_cb cb) {
  if (key == NULL && kind != OP_CREATE_BUCKET)
    return TUSC_EINVALID_ARGUMENT;
  int rc;
  struct tusc_s3_op *op = op_new(sl, req, kind, key, cb, &rc);
  if (op == NULL)
    return rc;
  struct send_spec sp = {.method = method};
  return op_start(op, &sp);
}

int tusc_s3_head_object(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key, tusc_s3_cb cb) {
  return simple(sl, req, OP_HEAD, "HEAD", key, cb);
}

int tusc_s3_delete_object(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key, tusc_s3_cb cb) {
  return simple(sl, req, OP_DELETE, "DELETE", key, cb);
}

int tusc_s3_create_bucket(tusc_s3_loop_t *sl, tusc_s3_req_t *req, tusc_s3_cb cb) {
  return simple(sl, req, OP_CREATE_BUCKET, "PUT", NULL, cb);
}

int tusc_s3_create_multipart(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key,
                             const char *content_type, tusc_s3_cb cb) {
  if (key == NULL)
    return TUSC_EINVALID_ARGUMENT;
  int rc;
  struct tusc_s3_op *op = op_new(sl, req, OP_CREATE_MULTIPART, key, cb, &rc);
  if (op == NULL)
    return rc;
  struct send_spec sp = {.method = "POST", .query = {{"uploads", ""}}, .nquery = 1};
  /* Set explicitly: curl would otherwise send a form type with the empty POST. */
  sp.extra[sp.nextra++] =
      (tusc_sigv4_pair_t){"content-type", content_type ? content_type : "application/octet-stream"};
  return op_start(op, &sp);
}

static bool valid_upload_id(const char *id) {
  return id != NULL && id[0] != '\0' && strlen(id) < TUSC_S3_UPLOAD_ID_MAX;
}

int tusc_s3_upload_part(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key,
                        const char *upload_id, int part_number, const void *body, size_t len,
                        tusc_s3_cb cb) {
  if (key == NULL || !valid_upload_id(upload_id) || part_number < 1 ||
      part_number > TUSC_S3_MAX_PARTS || (body == NULL && len > 0))
    return TUSC_EINVALID_ARGUMENT;
  int rc;
  struct tusc_s3_op *op = op_new(sl, req, OP_UPLOAD_PART, key, cb, &rc);
  if (op == NULL)
    return rc;
  op->send = body;
  op->send_len = len;
  char num[16];
  snprintf(num, sizeof(num), "%d", part_number);
  struct send_spec sp = {.method = "PUT",
                         .query = {{"partNumber", num}, {"uploadId", upload_id}},
                         .nquery = 2,
                         .has_body = true};
  return op_start(op, &sp);
}

int tusc_s3_upload_part_copy(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key,
                             const char *upload_id, int part_number, const char *src_key,
                             uint64_t first, uint64_t last, tusc_s3_cb cb) {
  if (key == NULL || src_key == NULL || !valid_upload_id(upload_id) || part_number < 1 ||
      part_number > TUSC_S3_MAX_PARTS || (first != TUSC_S3_NO_RANGE && last < first) ||
      (first != TUSC_S3_NO_RANGE && last == UINT64_MAX))
    return TUSC_EINVALID_ARGUMENT;
  char *src_path = NULL;
  int rc = encode_key(src_key, &src_path);
  if (rc < 0)
    return rc;
  struct tusc_s3_op *op = op_new(sl, req, OP_UPLOAD_PART_COPY, key, cb, &rc);
  if (op == NULL) {
    free(src_path);
    return rc;
  }
  const tusc_s3_t *s3 = sl->s3;
  char bucket_enc[3 * 255 + 1];
  (void)tusc_sigv4_uri_encode(s3->bucket, strlen(s3->bucket), false, bucket_enc,
                              sizeof(bucket_enc));
  char *source = str_printf("/%s%s", bucket_enc, src_path);
  free(src_path);
  if (source == NULL) {
    tusc_s3_cancel(sl, req);
    return TUSC_ENOMEM;
  }
  char num[16], range[64];
  snprintf(num, sizeof(num), "%d", part_number);
  struct send_spec sp = {
      .method = "PUT", .query = {{"partNumber", num}, {"uploadId", upload_id}}, .nquery = 2};
  sp.extra[sp.nextra++] = (tusc_sigv4_pair_t){"x-amz-copy-source", source};
  if (first != TUSC_S3_NO_RANGE) {
    snprintf(range, sizeof(range), "bytes=%" PRIu64 "-%" PRIu64, first, last);
    sp.extra[sp.nextra++] = (tusc_sigv4_pair_t){"x-amz-copy-source-range", range};
  }
  rc = op_start(op, &sp);
  free(source);
  return rc;
}

static void xml_escape(FILE *f, const char *s) {
  for (; *s; s++) {
    switch (*s) {
    case '&':
      fputs("&amp;", f);
      break;
    case '<':
      fputs("&lt;", f);
      break;
    case '>':
      fputs("&gt;", f);
      break;
    default:
      fputc(*s, f);
    }
  }
}

int tusc_s3_complete_multipart(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key,
                               const char *upload_id, const tusc_s3_part_t *parts, size_t n,
                               tusc_s3_cb cb) {
  if (key == NULL || !valid_upload_id(upload_id) || parts == NULL || n == 0 ||
      n > TUSC_S3_MAX_PARTS)
    return TUSC_EINVALID_ARGUMENT;
  char *xml = NULL;
  size_t xml_len = 0;
  FILE *f = open_memstream(&xml, &xml_len);
  if (f == NULL)
    return TUSC_ENOMEM;
  fputs("<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">", f);
  for (size_t i = 0; i < n; i++) {
    fprintf(f, "<Part><PartNumber>%d</PartNumber><ETag>", parts[i].part_number);
    xml_escape(f, parts[i].etag);
    fputs("</ETag></Part>", f);
  }
  fputs("</CompleteMultipartUpload>", f);
  if (fclose(f) != 0 || xml == NULL) {
    free(xml);
    return TUSC_ENOMEM;
  }
  int rc;
  struct tusc_s3_op *op = op_new(sl, req, OP_COMPLETE, key, cb, &rc);
  if (op == NULL) {
    free(xml);
    return rc;
  }
  op->owned_send = xml;
  op->send = xml;
  op->send_len = xml_len;
  struct send_spec sp = {
      .method = "POST", .query = {{"uploadId", upload_id}}, .nquery = 1, .has_body = true};
  sp.extra[sp.nextra++] = (tusc_sigv4_pair_t){"content-type", "application/xml"};
  return op_start(op, &sp);
}

int tusc_s3_abort_multipart(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key,
                            const char *upload_id, tusc_s3_cb cb) {
  if (key == NULL || !valid_upload_id(upload_id))
    return TUSC_EINVALID_ARGUMENT;
  int rc;
  struct tusc_s3_op *op = op_new(sl, req, OP_ABORT, key, cb, &rc);
  if (op == NULL)
    return rc;
  struct send_spec sp = {.method = "DELETE", .query = {{"uploadId", upload_id}}, .nquery = 1};
  return op_start(op, &sp);
}

static int send_list_page(struct tusc_s3_op *op) {
  char max[16];
  snprintf(max, sizeof(max), "%d", op->page_max);
  struct send_spec sp = {.method = "GET"};
  switch (op->kind) {
  case OP_LIST_PARTS:
    sp.query[sp.nquery++] = (tusc_sigv4_pair_t){"uploadId", op->upload_id};
    sp.query[sp.nquery++] = (tusc_sigv4_pair_t){"max-parts", max};
    if (op->marker1 != NULL)
      sp.query[sp.nquery++] = (tusc_sigv4_pair_t){"part-number-marker", op->marker1};
    break;
  case OP_LIST_OBJECTS:
    sp.query[sp.nquery++] = (tusc_sigv4_pair_t){"list-type", "2"};
    sp.query[sp.nquery++] = (tusc_sigv4_pair_t){"max-keys", max};
    if (op->prefix != NULL)
      sp.query[sp.nquery++] = (tusc_sigv4_pair_t){"prefix", op->prefix};
    if (op->marker1 != NULL)
      sp.query[sp.nquery++] = (tusc_sigv4_pair_t){"continuation-token", op->marker1};
    break;
  default:
    sp.query[sp.nquery++] = (tusc_sigv4_pair_t){"uploads", ""};
    sp.query[sp.nquery++] = (tusc_sigv4_pair_t){"max-uploads", max};
    if (op->prefix != NULL)
      sp.query[sp.nquery++] = (tusc_sigv4_pair_t){"prefix", op->prefix};
    if (op->marker1 != NULL)
      sp.query[sp.nquery++] = (tusc_sigv4_pair_t){"key-marker", op->marker1};
    if (op->marker2 != NULL)
      sp.query[sp.nquery++] = (tusc_sigv4_pair_t){"upload-id-marker", op->marker2};
    break;
  }
  return op_send(op, &sp);
}

static int list_common(tusc_s3_loop_t *sl, tusc_s3_req_t *req, enum op_kind kind, const char *key,
                       const char *upload_id, const char *prefix, int max, tusc_s3_cb cb,
                       struct tusc_s3_op **out) {
  if (max < 0 || max > PAGE_MAX)
    return TUSC_EINVALID_ARGUMENT;
  if (prefix != NULL && strlen(prefix) > 1024)
    return TUSC_EINVALID_ARGUMENT;
  int rc;
  struct tusc_s3_op *op = op_new(sl, req, kind, key, cb, &rc);
  if (op == NULL)
    return rc;
  op->page_max = max > 0 ? max : PAGE_MAX;
  if ((upload_id != NULL && (op->upload_id = strdup(upload_id)) == NULL) ||
      (prefix != NULL && prefix[0] != '\0' && (op->prefix = strdup(prefix)) == NULL)) {
    tusc_s3_cancel(sl, req);
    return TUSC_ENOMEM;
  }
  *out = op;
  return 0;
}

static int list_start(struct tusc_s3_op *op) {
  int rc = send_list_page(op);
  if (rc < 0) {
    tusc_s3_req_t *req = op->req;
    op_free(op);
    req->op = NULL;
  }
  return rc;
}

int tusc_s3_list_parts(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key,
                       const char *upload_id, int max_parts, tusc_s3_parts_visit_cb visit,
                       tusc_s3_cb cb) {
  if (key == NULL || !valid_upload_id(upload_id))
    return TUSC_EINVALID_ARGUMENT;
  struct tusc_s3_op *op = NULL;
  int rc = list_common(sl, req, OP_LIST_PARTS, key, upload_id, NULL, max_parts, cb, &op);
  if (rc < 0)
    return rc;
  op->visit_parts = visit;
  return list_start(op);
}

int tusc_s3_list_objects(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *prefix, int max_keys,
                         tusc_s3_objects_visit_cb visit, tusc_s3_cb cb) {
  if (visit == NULL)
    return TUSC_EINVALID_ARGUMENT;
  struct tusc_s3_op *op = NULL;
  int rc = list_common(sl, req, OP_LIST_OBJECTS, NULL, NULL, prefix, max_keys, cb, &op);
  if (rc < 0)
    return rc;
  op->visit_objects = visit;
  return list_start(op);
}

int tusc_s3_list_multipart_uploads(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *prefix,
                                   int max_uploads, tusc_s3_uploads_visit_cb visit, tusc_s3_cb cb) {
  if (visit == NULL)
    return TUSC_EINVALID_ARGUMENT;
  struct tusc_s3_op *op = NULL;
  int rc = list_common(sl, req, OP_LIST_UPLOADS, NULL, NULL, prefix, max_uploads, cb, &op);
  if (rc < 0)
    return rc;
  op->visit_uploads = visit;
  return list_start(op);
}

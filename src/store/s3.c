/*
 * s3 — the S3 store; see s3.h.
 *
 * Objects of upload <id>, K = <prefix><id>:
 *   K            the multipart upload while the upload runs; once complete
 *                (CompleteMultipartUpload) the whole upload, readable directly
 *   K.info       the file store's .info JSON (tusc_upload_info_to_json) whose Storage
 *                is {"Type":"s3store","Bucket","Key","MultipartUpload","PartSize"}
 *   K.part.<n>   the tail: the bytes from (n-1)·P on, fewer than P, that will begin
 *                part n once more bytes come
 *   K.stage.<n>  part n of a checksummed (staged) chunk not yet verified
 *
 * Parts: every part but the last is P bytes (s3_parts.h; R2 needs equal parts), P fixed
 * per upload at creation and kept in the .info.
 *
 * Offset = M·P + the length of K.part.<M+1> (if it exists), where parts 1..M are the
 * parts present without a gap. A tail is named after the part it will begin, so it
 * becomes stale by itself the moment that part exists: a crash between "part uploaded"
 * and "old tail deleted" cannot count its bytes twice, and a part that completed after
 * a gap (parts upload in parallel) counts only once the gap is filled (it is then
 * uploaded again anyway). Every restart or other instance computes the same offset from
 * S3 alone: get_info = GET K.info, ListParts (all pages), HEAD K.part.<M+1>. Stale tails
 * and stage objects are deleted when seen and by terminate.
 *
 * Streaming: a chunk's bytes are copied into part buffers (anonymous mappings, resident
 * only as far as filled); a full buffer is sent at once (UploadPart), up to
 * -s3-concurrent-part-uploads per upload, while the body keeps arriving. The next chunk
 * begins by reading the tail K.part.<M+1> into its first buffer (append answers "full"
 * until it is there). chunk_end(KEEP) waits for every part in flight, then stores what
 * is left: as the last part and CompleteMultipartUpload when the upload is complete,
 * else as the new tail K.part.<M+1> (a PUT replaces the old tail atomically). Only then
 * does it call back: a 204 means every byte is in a part or the tail.
 *
 * Memory: -s3-max-buffer-memory bounds all part buffers of the process. A chunk takes a
 * slot of 2·P + TUSC_STORE_APPEND_MAX bytes (less when the upload's length says fewer
 * bytes can come) before its first byte, and keeps it until chunk_end; with it the chunk
 * can always go on (one buffer fills while another is sent), so chunks that hold a slot
 * never wait for each other and there is no deadlock. Beyond the slot a chunk borrows
 * more (for more parts in flight) only when it is free at once. A chunk that finds no
 * slot answers TUSC_ESTORE_FULL and is woken (drain) when memory is given back, from
 * whichever loop gives it back (uv_async); a chunk whose slot is full waits for its own
 * parts (drain when one is stored). The HTTP layer pauses the client meanwhile.
 *
 * Staged chunks (TUSC_STORE_CHUNK_STAGED, checksums and IETF digests): full parts go to
 * K.stage.<n> objects (PutObject) instead of the multipart upload, so nothing of the
 * chunk counts in the offset until chunk_end(KEEP) copies them in (UploadPartCopy,
 * server side) and writes the tail. A DISCARD, or a crash at any time before the copy,
 * leaves parts and tail as they were: the stage objects count nowhere (they are deleted
 * by the DISCARD, or by terminate). A crash during the copies keeps a prefix of a
 * verified chunk, which is what a client resuming from the offset expects. Reading the
 * chunk back (checksum trailers) comes from the buffers or the stage objects.
 *
 * A plain chunk ended with DISCARD (an unannounced checksum trailer) drops what is still
 * in memory; parts it already completed stay (S3 cannot remove a part): the offset
 * then counts them, as after an interrupted upload.
 *
 * Reading: a complete upload is read from K with ranged GETs of READ_AHEAD bytes, kept
 * for the next pieces of a download (1 MiB per open upload being read). An unfinished
 * one cannot be read (S3 does not serve the parts of a multipart upload):
 * TUSC_EUPLOAD_NOT_FINISHED (400), as tusd's s3store.
 *
 * Concatenation: the final's parts are UploadPartCopy's of the partials (the whole
 * object, or ranges of at most 5 GiB); partials below the minimum part size, and the
 * head of a partial that follows them, are read into memory and uploaded as parts.
 * Parts of a final are therefore not all equal (R2 refuses those; noted in the docs).
 *
 * Errors: when a part or the tail cannot be stored, chunk_end reports the error and
 * re-reads the state from S3, so that info->offset counts exactly what S3 holds (if S3
 * cannot even be asked, it counts what tusc knows is stored).
 *
 * Threads: store-wide state (loops, budget) under `mutex`; everything of an open upload
 * and of a request on its loop. Every operation runs as a `job` that starts on a later
 * loop turn (store/defer.h), so no callback is ever inline.
 */
#include "store/s3.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "common/error.h"
#include "common/log.h"
#include "net/curl_loop.h"
#include "net/s3_client.h"
#include "store/defer.h"
#include "store/s3_parts.h"

#define INFO_MAX_BYTES (16u << 20)
#define KEY_MAX (TUSC_PATH_MAX + 32)
#define DEFAULT_BUFFER_MEMORY (INT64_C(512) << 20)
#define DEFAULT_CONCURRENCY 10
#define READ_AHEAD (1024 * 1024)

typedef struct s3_store_s s3_store_t;
typedef struct job_s job_t;

/* What the store keeps per attached loop. */
struct loop_ctx {
  struct loop_ctx *next; /* under mutex */
  s3_store_t *st;
  uv_loop_t *loop;
  tusc_curl_loop_t *curl;
  tusc_s3_loop_t *sl;
  uv_async_t wake;               /* memory was given back somewhere */
  atomic_int nwaiters;           /* uploads of this loop waiting for memory */
  struct tusc_upload_s *waiters; /* loop only */
  unsigned inflight;             /* jobs and part sends of this loop; loop only */
  bool detached;                 /* loop only */
};

struct s3_store_s {
  tusc_store_t base;
  tusc_s3_t *s3;
  char *prefix;
  int64_t part_size; /* for uploads of unknown length */
  int64_t min_part;
  int conc;
  uv_mutex_t mutex;
  struct loop_ctx *loops;
  int64_t budget, used;
};

struct part_buf {
  struct part_buf *next;
  tusc_upload_t *up;
  int number;
  char *data;
  size_t cap, len;
  bool full, sending, sent;
  int err;
  tusc_s3_req_t s3;
  char key[KEY_MAX]; /* the stage object's key (staged chunks) */
};

struct tusc_upload_s {
  tusc_upload_base_t base;
  s3_store_t *st;
  struct loop_ctx *lc;
  tusc_upload_info_t info; /* data_path = K, info_path = K.info, store_ref = upload ID */
  int64_t P;
  int parts;        /* M: parts 1..M present */
  int64_t tail_len; /* length of K.part.<tail_no> */
  int tail_no;      /* 0: no tail known */
  bool completed;

  bool chunk_open, staged;
  int64_t chunk_start, taken;
  int first_no;   /* the part the chunk's first byte (or the tail) begins */
  int next_no;    /* the part the next byte goes to */
  int tail_first; /* tail_no at chunk_begin if it begins first_no, else 0 */
  bool tail_in_buf, tail_loading;
  int64_t slot, extra, held;
  struct part_buf *bufs, *bufs_last; /* ascending numbers */
  int sending;
  int staged_upto; /* staged: K.stage.<first_no..staged_upto> stored */
  int err;
  bool broken; /* a part failed: later ones no longer count */
  tusc_store_drain_cb drain;
  void *drain_arg;
  bool waiting;
  struct tusc_upload_s *wnext;
  job_t *end_job;
  unsigned busy;
  bool closing;
  tusc_s3_req_t tail_req;
  char **stale; /* stale tails seen when opened, deleted by the next chunk end */
  size_t nstale;
  char *rcache; /* read-ahead of a complete upload: READ_AHEAD bytes from rcache_off */
  size_t rcache_len;
  int64_t rcache_off;
};

typedef void (*job_fn)(job_t *j, int status);

/* One operation: a caller's request (or an internal one) and its S3 requests, one at a
 * time. */
struct job_s {
  s3_store_t *st;
  struct loop_ctx *lc;
  tusc_store_req_t *req; /* NULL for internal jobs */
  tusc_upload_t *up;
  tusc_s3_req_t s3;
  job_fn next;
  job_fn done; /* where a sub-sequence (load) goes when finished */
  tusc_defer_t defer;
  int kind;
  int status;
  char key[KEY_MAX];
  char key2[KEY_MAX];
  /* load */
  tusc_upload_info_t info;
  int64_t P;
  int parts;
  bool gap;
  int64_t tail_len;
  bool completed;
  int64_t object_size;
  /* lists */
  char **keys;
  char **vals;
  size_t nkeys, ikey;
  /* concat and pending bytes */
  char *buf;
  size_t buf_len, buf_cap;
  size_t ipart;
  int64_t pos, total, psize;
  int pno;
  /* load: tails other than the one counted (stale) */
  char **stale;
  size_t nstale;
  /* read */
  char *dst;
  size_t dst_len, dst_got;
};

enum {
  K_GET_INFO = 1,
  K_CREATE,
  K_OPEN,
  K_TERMINATE,
  K_LIST,
  K_SWEEP,
  K_SAVE_INFO,
  K_CHUNK_END,
  K_READ,
  K_CONCAT,
  K_REFRESH
};

/* --- small helpers --------------------------------------------------------------------- */

static int keyf(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int keyf(char *out, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(out, cap, fmt, ap);
  va_end(ap);
  return n < 0 || (size_t)n >= cap ? TUSC_EINVALID_ID : 0;
}

/* info->data_path = K and info->info_path = K.info of upload `id`. */
static int set_keys(const s3_store_t *st, tusc_upload_info_t *info, const char *id) {
  char key[KEY_MAX];
  int rc = keyf(key, sizeof(key), "%s%s", st->prefix, id);
  if (rc == 0 && tusc_upload_info_set_path(&info->data_path, key) != 0)
    rc = TUSC_ENOMEM;
  if (rc == 0)
    rc = keyf(key, sizeof(key), "%s%s.info", st->prefix, id);
  if (rc == 0 && tusc_upload_info_set_path(&info->info_path, key) != 0)
    rc = TUSC_ENOMEM;
  return rc;
}

static bool has_suffix(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

/* IDs whose objects would collide with another upload's side objects. */
static bool id_usable(const char *id) {
  return id[0] != '\0' && strstr(id, ".part.") == NULL && strstr(id, ".stage.") == NULL &&
         !has_suffix(id, ".info");
}

static int64_t part_cap(const tusc_upload_t *up, int number) {
  int64_t start = tusc_s3_part_start(up->P, number);
  if (!up->info.size_is_deferred && up->info.size >= 0 && up->info.size - start < up->P)
    return up->info.size - start;
  return up->P;
}

/* S3 answers that mean "not there". */
static bool is_missing(int rc) {
  return rc == TUSC_ES3_NO_SUCH_KEY || rc == TUSC_ES3_NO_SUCH_UPLOAD;
}

static void log_s3(const char *what, const char *key, const tusc_s3_req_t *r, int rc) {
  TUSC_LOG(TUSC_LOG_WARN, "s3: %s %s: %s (HTTP %ld %s %s)", what, key, tusc_strerror(rc),
           r->http_status, r->s3_code, r->message);
}

/* --- loops and memory -------------------------------------------------------------------- */

static struct loop_ctx *ctx_of(s3_store_t *st, uv_loop_t *loop) {
  uv_mutex_lock(&st->mutex);
  struct loop_ctx *lc = st->loops;
  while (lc != NULL && lc->loop != loop)
    lc = lc->next;
  uv_mutex_unlock(&st->mutex);
  return lc != NULL && !lc->detached ? lc : NULL;
}

static bool budget_take(s3_store_t *st, int64_t n) {
  uv_mutex_lock(&st->mutex);
  bool ok = st->used + n <= st->budget;
  if (ok)
    st->used += n;
  uv_mutex_unlock(&st->mutex);
  return ok;
}

static void budget_give(s3_store_t *st, int64_t n) {
  if (n <= 0)
    return;
  uv_mutex_lock(&st->mutex);
  st->used -= n;
  for (struct loop_ctx *lc = st->loops; lc != NULL; lc = lc->next)
    if (atomic_load(&lc->nwaiters) > 0)
      uv_async_send(&lc->wake);
  uv_mutex_unlock(&st->mutex);
}

static void waiter_add(tusc_upload_t *up) {
  if (up->waiting)
    return;
  up->waiting = true;
  up->wnext = up->lc->waiters;
  up->lc->waiters = up;
  atomic_fetch_add(&up->lc->nwaiters, 1);
}

static void waiter_remove(tusc_upload_t *up) {
  if (!up->waiting)
    return;
  for (tusc_upload_t **pp = &up->lc->waiters; *pp != NULL; pp = &(*pp)->wnext) {
    if (*pp == up) {
      *pp = up->wnext;
      break;
    }
  }
  up->waiting = false;
  atomic_fetch_sub(&up->lc->nwaiters, 1);
}

static void call_drain(tusc_upload_t *up) {
  tusc_store_drain_cb drain = up->drain;
  up->drain = NULL;
  if (drain != NULL && !up->closing)
    drain(up->drain_arg);
}

static void on_wake(uv_async_t *async) {
  struct loop_ctx *lc = async->data;
  tusc_upload_t *list = lc->waiters;
  lc->waiters = NULL;
  atomic_store(&lc->nwaiters, 0);
  while (list != NULL) {
    tusc_upload_t *up = list;
    list = up->wnext;
    up->waiting = false;
    call_drain(up);
  }
}

static void ctx_closed(void *arg);

static void ctx_async_closed(uv_handle_t *h) {
  free(h->data);
}

static void ctx_curl_closed(void *arg) {
  struct loop_ctx *lc = arg;
  uv_close((uv_handle_t *)&lc->wake, ctx_async_closed);
}

static void ctx_closed(void *arg) {
  struct loop_ctx *lc = arg;
  tusc_curl_loop_close(lc->curl, ctx_curl_closed, lc);
}

static void ctx_maybe_close(struct loop_ctx *lc) {
  if (!lc->detached || lc->inflight > 0 || lc->sl == NULL)
    return;
  tusc_s3_loop_t *sl = lc->sl;
  lc->sl = NULL;
  tusc_s3_loop_close(sl, ctx_closed, lc);
}

static int s_attach(tusc_store_t *store, uv_loop_t *loop) {
  s3_store_t *st = (s3_store_t *)store;
  struct loop_ctx *lc = calloc(1, sizeof(*lc));
  if (lc == NULL)
    return TUSC_ENOMEM;
  lc->st = st;
  lc->loop = loop;
  atomic_init(&lc->nwaiters, 0);
  int rc = tusc_curl_loop_new(loop, &lc->curl);
  if (rc != 0) {
    free(lc);
    return rc;
  }
  rc = tusc_s3_loop_new(st->s3, loop, lc->curl, &lc->sl);
  if (rc == 0)
    rc = uv_async_init(loop, &lc->wake, on_wake);
  if (rc != 0) {
    /* Not reached in practice; the curl driver still closes through the loop. */
    if (lc->sl != NULL)
      tusc_s3_loop_close(lc->sl, NULL, NULL);
    tusc_curl_loop_close(lc->curl, free, lc);
    return rc;
  }
  lc->wake.data = lc;
  uv_mutex_lock(&st->mutex);
  lc->next = st->loops;
  st->loops = lc;
  uv_mutex_unlock(&st->mutex);
  return 0;
}

static void s_detach(tusc_store_t *store, uv_loop_t *loop) {
  s3_store_t *st = (s3_store_t *)store;
  uv_mutex_lock(&st->mutex);
  struct loop_ctx *lc = NULL;
  for (struct loop_ctx **pp = &st->loops; *pp != NULL; pp = &(*pp)->next) {
    if ((*pp)->loop == loop) {
      lc = *pp;
      *pp = lc->next;
      break;
    }
  }
  uv_mutex_unlock(&st->mutex);
  if (lc == NULL)
    return;
  lc->detached = true;
  ctx_maybe_close(lc);
}

/* --- jobs --------------------------------------------------------------------------------- */

static job_t *job_new(tusc_store_req_t *req, struct loop_ctx *lc, tusc_upload_t *up, int kind) {
  job_t *j = calloc(1, sizeof(*j));
  if (j == NULL)
    return NULL;
  j->st = lc->st;
  j->lc = lc;
  j->req = req;
  j->up = up;
  j->kind = kind;
  tusc_upload_info_init(&j->info);
  tusc_s3_req_init(&j->s3);
  lc->inflight++;
  if (up != NULL)
    up->busy++;
  if (req != NULL)
    req->backend = j;
  return j;
}

static void upload_free(tusc_upload_t *up);

static void job_free(job_t *j) {
  struct loop_ctx *lc = j->lc;
  tusc_upload_t *up = j->up;
  tusc_s3_req_dispose(&j->s3);
  tusc_upload_info_dispose(&j->info);
  for (size_t i = 0; i < j->nkeys; i++) {
    free(j->keys[i]);
    if (j->vals != NULL)
      free(j->vals[i]);
  }
  free(j->keys);
  free(j->vals);
  free(j->buf);
  for (size_t i = 0; i < j->nstale; i++)
    free(j->stale[i]);
  free(j->stale);
  free(j);
  if (up != NULL) {
    up->busy--;
    if (up->closing && up->busy == 0)
      upload_free(up);
  }
  lc->inflight--;
  ctx_maybe_close(lc);
}

/* Ends a job: the caller's callback last (it may close the upload, start its next
 * request or reuse req; nothing of the job or the upload is touched after it). */
static void job_finish(job_t *j, int status) {
  tusc_store_req_t *req = j->req;
  job_free(j);
  if (req != NULL) {
    req->backend = NULL;
    tusc_store_req_done(req, status);
  }
}

static void on_s3_done(tusc_s3_req_t *r, int status) {
  job_t *j = r->data;
  j->next(j, status);
}

/* Prepares j->s3 for the next request, whose completion goes to `fn`. */
static tusc_s3_req_t *s3_next(job_t *j, job_fn fn) {
  tusc_s3_req_dispose(&j->s3);
  tusc_s3_req_init(&j->s3);
  j->s3.data = j;
  j->next = fn;
  return &j->s3;
}

/* After starting an S3 request: a refusal goes to the step at once (we are in a
 * callback or a deferred start, never in the caller's call). */
static void s3_started(job_t *j, int rc) {
  if (rc != 0)
    j->next(j, rc);
}

static void on_job_defer(tusc_defer_t *d, int status) {
  job_t *j = (job_t *)(void *)((char *)d - offsetof(job_t, defer));
  j->next(j, status == 0 ? 0 : status);
}

/* Runs `fn` on a later turn: every job starts this way. */
static int job_start(job_t *j, job_fn fn) {
  j->next = fn;
  int rc = tusc_defer_start(j->lc->loop, &j->defer, on_job_defer);
  if (rc != 0) {
    j->req = NULL; /* the caller gets rc, not a callback */
    job_free(j);
  }
  return rc;
}

/* --- info JSON ---------------------------------------------------------------------------- */

static char *info_json(const s3_store_t *st, const tusc_upload_info_t *info, int64_t P) {
  char *base = tusc_upload_info_to_json(info);
  if (base == NULL)
    return NULL;
  json_error_t err;
  json_t *root = json_loads(base, 0, &err);
  free(base);
  if (root == NULL)
    return NULL;
  json_t *storage = json_object();
  char *out = NULL;
  if (storage != NULL && json_object_set_new(storage, "Type", json_string("s3store")) == 0 &&
      json_object_set_new(storage, "Bucket", json_string(tusc_s3_bucket(st->s3))) == 0 &&
      json_object_set_new(storage, "Key", json_string(info->data_path)) == 0 &&
      json_object_set_new(storage, "MultipartUpload",
                          json_string(info->store_ref != NULL ? info->store_ref : "")) == 0 &&
      json_object_set_new(storage, "PartSize", json_integer(P)) == 0) {
    json_object_set_new(root, "Storage", storage);
    storage = NULL;
    out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
  }
  json_decref(storage);
  json_decref(root);
  return out;
}

/* Parses K.info into j->info (keys and upload ID filled in) and j->P. */
static int parse_info(job_t *j, const char *id, const char *text, size_t len) {
  json_error_t err;
  json_t *root = json_loadb(text, len, 0, &err);
  if (root == NULL)
    return TUSC_EINTERNAL;
  json_t *storage = json_object_get(root, "Storage");
  const char *mpu = json_string_value(json_object_get(storage, "MultipartUpload"));
  json_t *psize = json_object_get(storage, "PartSize");
  int rc = 0;
  if (mpu == NULL || !json_is_integer(psize) || json_integer_value(psize) <= 0) {
    rc = TUSC_EINTERNAL;
  } else {
    j->P = json_integer_value(psize);
    rc = tusc_upload_info_from_json(text, len, &j->info);
    if (rc == 0 && mpu[0] != '\0' && (j->info.store_ref = strdup(mpu)) == NULL)
      rc = TUSC_ENOMEM;
  }
  json_decref(root);
  if (rc == 0) {
    snprintf(j->info.id, sizeof(j->info.id), "%s", id);
    rc = set_keys(j->st, &j->info, id);
  }
  if (rc == TUSC_EINTERNAL)
    TUSC_LOG(TUSC_LOG_ERROR, "s3: malformed upload info %s%s.info", j->st->prefix, id);
  return rc;
}

/* --- load: .info, ListParts, HEAD tail ------------------------------------------------- */

static void load_info_got(job_t *j, int status);
static void load_parts_done(job_t *j, int status);
static void load_object_headed(job_t *j, int status);
static void load_tail_headed(job_t *j, int status);

/* Reads the state of upload `id` into j->info (offset set), j->P, j->parts,
 * j->tail_len, j->completed; then j->done(j, status). */
static void load_start(job_t *j, const char *id, job_fn done) {
  j->done = done;
  for (size_t i = 0; i < j->nstale; i++)
    free(j->stale[i]);
  free(j->stale);
  j->stale = NULL;
  j->nstale = 0;
  snprintf(j->key2, sizeof(j->key2), "%s", id);
  int rc = keyf(j->key, sizeof(j->key), "%s%s.info", j->st->prefix, id);
  if (rc != 0) {
    done(j, TUSC_ENOT_FOUND);
    return;
  }
  tusc_s3_req_t *r = s3_next(j, load_info_got);
  s3_started(j, tusc_s3_get_object_buf(j->lc->sl, r, j->key, INFO_MAX_BYTES, on_s3_done));
}

static int parts_visit(tusc_s3_req_t *r, const tusc_s3_part_t *parts, size_t n) {
  job_t *j = r->data;
  for (size_t i = 0; i < n && !j->gap; i++) {
    if (parts[i].part_number == j->parts + 1 && (int64_t)parts[i].size == j->P)
      j->parts++;
    else if (parts[i].part_number > j->parts)
      j->gap = true; /* a missing or short part: what follows does not count */
  }
  return j->gap ? 1 : 0;
}

static void load_info_got(job_t *j, int status) {
  if (status == TUSC_ES3_NO_SUCH_KEY) {
    j->done(j, TUSC_ENOT_FOUND);
    return;
  }
  if (status == 0)
    status = parse_info(j, j->key2, j->s3.body, j->s3.body_len);
  if (status != 0) {
    j->done(j, status);
    return;
  }
  j->parts = 0;
  j->gap = false;
  j->tail_len = 0;
  j->completed = false;
  if (j->info.store_ref == NULL) {
    load_parts_done(j, TUSC_ES3_NO_SUCH_UPLOAD); /* made complete at creation */
    return;
  }
  tusc_s3_req_t *r = s3_next(j, load_parts_done);
  s3_started(j, tusc_s3_list_parts(j->lc->sl, r, j->info.data_path, j->info.store_ref, 0,
                                   parts_visit, on_s3_done));
}

static int64_t iso8601_seconds(const char *s);

/* K.<anything> objects: the tail's length, and the newest time of the tail and the
 * .info, which is the upload's last activity (every chunk end writes one of them). */
static int load_objects_visit(tusc_s3_req_t *r, const tusc_s3_object_t *objs, size_t n) {
  job_t *j = r->data;
  size_t klen = strlen(j->info.data_path);
  for (size_t i = 0; i < n; i++) {
    bool tail = strcmp(objs[i].key, j->key) == 0;
    if (!tail && strncmp(objs[i].key, j->info.data_path, klen) == 0 &&
        (strncmp(objs[i].key + klen, ".part.", 6) == 0 ||
         strncmp(objs[i].key + klen, ".stage.", 7) == 0)) {
      /* Another tail (absorbed into a part before a crash let it be deleted) or a stage
       * object of a chunk a crash cut short: the holder of the upload's lock opens it,
       * and its next chunk end deletes them. */
      char **g = realloc(j->stale, (j->nstale + 1) * sizeof(*g));
      if (g == NULL || (g[j->nstale] = strdup(objs[i].key)) == NULL) {
        if (g != NULL)
          j->stale = g;
        return TUSC_ENOMEM;
      }
      j->stale = g;
      j->nstale++;
      continue;
    }
    if (!tail && strcmp(objs[i].key, j->info.info_path) != 0)
      continue;
    if (tail)
      j->tail_len = (int64_t)objs[i].size;
    int64_t t = iso8601_seconds(objs[i].last_modified);
    if (t > 0 && t * 1000 > j->info.modified_ms)
      j->info.modified_ms = t * 1000;
  }
  return 0;
}

static void load_parts_done(job_t *j, int status) {
  if (is_missing(status)) {
    /* The multipart upload is gone: completed (the object exists) or lost. */
    tusc_s3_req_t *r = s3_next(j, load_object_headed);
    s3_started(j, tusc_s3_head_object(j->lc->sl, r, j->info.data_path, on_s3_done));
    return;
  }
  if (status != 0) {
    j->done(j, status);
    return;
  }
  /* The tail and the last activity: K.part.<M+1> and K.info with their times. */
  int rc = keyf(j->key, sizeof(j->key), "%s.part.%d", j->info.data_path, j->parts + 1);
  if (rc == 0)
    rc = keyf(j->key2, sizeof(j->key2), "%s.", j->info.data_path);
  if (rc != 0) {
    j->done(j, rc);
    return;
  }
  j->tail_len = -1;
  tusc_s3_req_t *r = s3_next(j, load_tail_headed);
  s3_started(j, tusc_s3_list_objects(j->lc->sl, r, j->key2, 0, load_objects_visit, on_s3_done));
}

static void load_object_headed(job_t *j, int status) {
  if (status == TUSC_ES3_NO_SUCH_KEY) {
    TUSC_LOG(TUSC_LOG_ERROR, "s3: upload %s has neither a multipart upload nor an object",
             j->info.id);
    status = TUSC_ENOT_FOUND;
  }
  if (status == 0) {
    j->completed = true;
    j->object_size = (int64_t)j->s3.content_length;
    j->info.offset = j->object_size;
  }
  j->done(j, status);
}

static void load_tail_headed(job_t *j, int status) {
  if (j->tail_len < 0 || j->tail_len >= j->P)
    j->tail_len = 0; /* none (or not ours: a tail is always shorter than a part) */
  if (status == 0)
    j->info.offset = (int64_t)j->parts * j->P + j->tail_len;
  j->done(j, status);
}

/* --- get_info, open ---------------------------------------------------------------------- */

static void get_info_loaded(job_t *j, int status) {
  if (status == 0) {
    tusc_upload_info_dispose(j->req->info);
    *j->req->info = j->info;
    tusc_upload_info_init(&j->info);
  }
  job_finish(j, status);
}

static void open_loaded(job_t *j, int status) {
  if (status == 0) {
    tusc_upload_t *up = calloc(1, sizeof(*up));
    if (up == NULL) {
      job_finish(j, TUSC_ENOMEM);
      return;
    }
    up->base.store = &j->st->base;
    up->st = j->st;
    up->lc = j->lc;
    up->info = j->info;
    tusc_upload_info_init(&j->info);
    up->P = j->P;
    up->parts = j->parts;
    up->completed = j->completed;
    up->tail_len = j->tail_len;
    up->tail_no = j->tail_len > 0 ? j->parts + 1 : 0;
    tusc_s3_req_init(&up->tail_req);
    up->stale = j->stale;
    up->nstale = j->nstale;
    j->stale = NULL;
    j->nstale = 0;
    j->req->upload = up;
  }
  job_finish(j, status);
}

/* get_info and open: the same reads of S3 (load_start), then kind's own ending. */
static void load_go(job_t *j, int status) {
  if (status != 0) {
    job_finish(j, status);
    return;
  }
  load_start(j, j->req->id, j->kind == K_OPEN ? open_loaded : get_info_loaded);
}

static int start_load(tusc_store_req_t *req, int kind) {
  s3_store_t *st = (s3_store_t *)req->store;
  struct loop_ctx *lc = ctx_of(st, req->loop);
  if (lc == NULL)
    return TUSC_EINVALID_ARGUMENT;
  if (!id_usable(req->id))
    return TUSC_EINVALID_ID;
  if (kind == K_OPEN)
    req->upload = NULL;
  job_t *j = job_new(req, lc, NULL, kind);
  if (j == NULL)
    return TUSC_ENOMEM;
  return job_start(j, load_go);
}

static int s_get_info(tusc_store_req_t *req) {
  return start_load(req, K_GET_INFO);
}

static int s_open(tusc_store_req_t *req) {
  return start_load(req, K_OPEN);
}

/* --- create ---------------------------------------------------------------------------------- */

static void create_info_headed(job_t *j, int status);
static void create_mpu_made(job_t *j, int status);
static void create_info_put(job_t *j, int status);

static void create_go(job_t *j, int status) {
  if (status != 0) {
    job_finish(j, status);
    return;
  }
  tusc_s3_req_t *r = s3_next(j, create_info_headed);
  s3_started(j, tusc_s3_head_object(j->lc->sl, r, j->req->info->info_path, on_s3_done));
}

static void create_info_headed(job_t *j, int status) {
  if (status == 0) {
    job_finish(j, UV_EEXIST);
    return;
  }
  if (status != TUSC_ES3_NO_SUCH_KEY) {
    job_finish(j, status);
    return;
  }
  tusc_upload_info_t *info = j->req->info;
  if (!info->size_is_deferred && info->size == 0) {
    /* Nothing will come: the upload is complete at once, as an empty object. */
    tusc_s3_req_t *r = s3_next(j, create_mpu_made);
    s3_started(j, tusc_s3_put_object(j->lc->sl, r, info->data_path, "", 0, NULL, on_s3_done));
    return;
  }
  tusc_s3_req_t *r = s3_next(j, create_mpu_made);
  s3_started(j, tusc_s3_create_multipart(j->lc->sl, r, info->data_path, NULL, on_s3_done));
}

static void create_mpu_made(job_t *j, int status) {
  if (status != 0) {
    log_s3("create", j->req->info->data_path, &j->s3, status);
    job_finish(j, status);
    return;
  }
  tusc_upload_info_t *info = j->req->info;
  free(info->store_ref);
  info->store_ref = NULL;
  if (j->s3.upload_id[0] != '\0' && (info->store_ref = strdup(j->s3.upload_id)) == NULL) {
    job_finish(j, TUSC_ENOMEM);
    return;
  }
  char *json = info_json(j->st, info, j->P);
  if (json == NULL) {
    job_finish(j, TUSC_ENOMEM);
    return;
  }
  free(j->buf);
  j->buf = json;
  tusc_s3_req_t *r = s3_next(j, create_info_put);
  s3_started(j, tusc_s3_put_object(j->lc->sl, r, info->info_path, j->buf, strlen(j->buf),
                                   "application/json", on_s3_done));
}

static void create_info_put(job_t *j, int status) {
  if (status != 0)
    log_s3("create", j->req->info->info_path, &j->s3, status);
  /* A multipart upload without .info is left to the sweep (tusc_store_sweep). */
  job_finish(j, status);
}

static int s_create(tusc_store_req_t *req) {
  s3_store_t *st = (s3_store_t *)req->store;
  struct loop_ctx *lc = ctx_of(st, req->loop);
  if (lc == NULL)
    return TUSC_EINVALID_ARGUMENT;
  tusc_upload_info_t *info = req->info;
  if (!id_usable(info->id))
    return TUSC_EINVALID_ID;
  int64_t P;
  int rc = tusc_s3_part_size_for(st->part_size, info->size_is_deferred ? -1 : info->size, &P);
  if (rc != 0)
    return rc;
  if (2 * P + TUSC_STORE_APPEND_MAX > st->budget) {
    /* Its parts would have to grow beyond what -s3-max-buffer-memory can hold. */
    TUSC_LOG(TUSC_LOG_WARN,
             "s3: upload %s of %lld bytes needs parts of %lld bytes, more than "
             "-s3-max-buffer-memory holds (two parts and 256 KiB); refused",
             info->id, (long long)info->size, (long long)P);
    return TUSC_EUPLOAD_SIZE_EXCEEDED;
  }
  if (info->custom_data_path) {
    TUSC_LOG(TUSC_LOG_WARN, "s3: upload %s: a hook's Storage.Path is ignored by the S3 store",
             info->id);
    info->custom_data_path = false;
  }
  if ((rc = set_keys(st, info, info->id)) != 0)
    return rc;
  info->offset = 0;
  if (info->created_at == 0)
    info->created_at = (int64_t)time(NULL);
  job_t *j = job_new(req, lc, NULL, K_CREATE);
  if (j == NULL)
    return TUSC_ENOMEM;
  j->P = P;
  return job_start(j, create_go);
}

/* --- terminate --------------------------------------------------------------------------- */

static void term_loaded(job_t *j, int status);
static void term_aborted(job_t *j, int status);
static void term_listed(job_t *j, int status);
static void term_delete_next(job_t *j, int status);

static int keys_push(job_t *j, const char *key, const char *val) {
  char **k = realloc(j->keys, (j->nkeys + 1) * sizeof(*k));
  if (k == NULL)
    return TUSC_ENOMEM;
  j->keys = k;
  char **v = realloc(j->vals, (j->nkeys + 1) * sizeof(*v));
  if (v == NULL)
    return TUSC_ENOMEM;
  j->vals = v;
  j->keys[j->nkeys] = strdup(key);
  j->vals[j->nkeys] = val != NULL ? strdup(val) : NULL;
  j->nkeys++;
  if (j->keys[j->nkeys - 1] == NULL || (val != NULL && j->vals[j->nkeys - 1] == NULL))
    return TUSC_ENOMEM;
  return 0;
}

static void term_go(job_t *j, int status) {
  if (status != 0) {
    job_finish(j, status);
    return;
  }
  /* Only the .info is needed (the upload ID), not the offset. */
  j->done = term_loaded;
  int rc = keyf(j->key, sizeof(j->key), "%s%s.info", j->st->prefix, j->req->id);
  snprintf(j->key2, sizeof(j->key2), "%s", j->req->id);
  if (rc != 0) {
    job_finish(j, TUSC_ENOT_FOUND);
    return;
  }
  tusc_s3_req_t *r = s3_next(j, term_loaded);
  s3_started(j, tusc_s3_get_object_buf(j->lc->sl, r, j->key, INFO_MAX_BYTES, on_s3_done));
}

static void term_loaded(job_t *j, int status) {
  if (status == TUSC_ES3_NO_SUCH_KEY) {
    job_finish(j, TUSC_ENOT_FOUND);
    return;
  }
  if (status == 0)
    status = parse_info(j, j->key2, j->s3.body, j->s3.body_len);
  if (status != 0) {
    job_finish(j, status);
    return;
  }
  if (j->info.store_ref == NULL) {
    term_aborted(j, 0);
    return;
  }
  tusc_s3_req_t *r = s3_next(j, term_aborted);
  s3_started(
      j, tusc_s3_abort_multipart(j->lc->sl, r, j->info.data_path, j->info.store_ref, on_s3_done));
}

static int term_visit(tusc_s3_req_t *r, const tusc_s3_object_t *objs, size_t n) {
  job_t *j = r->data;
  size_t klen = strlen(j->info.data_path);
  for (size_t i = 0; i < n; i++) {
    const char *rest = objs[i].key + klen;
    if (strncmp(objs[i].key, j->info.data_path, klen) != 0)
      continue;
    if (strncmp(rest, ".part.", 6) == 0 || strncmp(rest, ".stage.", 7) == 0) {
      int rc = keys_push(j, objs[i].key, NULL);
      if (rc != 0)
        return rc;
    }
  }
  return 0;
}

static void term_aborted(job_t *j, int status) {
  if (status != 0 && !is_missing(status)) {
    log_s3("abort", j->info.data_path, &j->s3, status);
    job_finish(j, status);
    return;
  }
  int rc = keyf(j->key, sizeof(j->key), "%s.", j->info.data_path);
  if (rc != 0) {
    job_finish(j, rc);
    return;
  }
  tusc_s3_req_t *r = s3_next(j, term_listed);
  s3_started(j, tusc_s3_list_objects(j->lc->sl, r, j->key, 0, term_visit, on_s3_done));
}

static void term_listed(job_t *j, int status) {
  if (status != 0) {
    job_finish(j, status);
    return;
  }
  /* Side objects, then the object, then the .info last: a terminate cut short is
   * found again by the next one. */
  int rc = keys_push(j, j->info.data_path, NULL);
  if (rc == 0)
    rc = keys_push(j, j->info.info_path, NULL);
  if (rc != 0) {
    job_finish(j, rc);
    return;
  }
  j->ikey = 0;
  term_delete_next(j, 0);
}

static void term_delete_next(job_t *j, int status) {
  if (status != 0 && status != TUSC_ES3_NO_SUCH_KEY) {
    log_s3("delete", j->keys[j->ikey - 1], &j->s3, status);
    job_finish(j, status);
    return;
  }
  if (j->ikey == j->nkeys) {
    job_finish(j, 0);
    return;
  }
  const char *key = j->keys[j->ikey++];
  tusc_s3_req_t *r = s3_next(j, term_delete_next);
  s3_started(j, tusc_s3_delete_object(j->lc->sl, r, key, on_s3_done));
}

static int s_terminate(tusc_store_req_t *req) {
  s3_store_t *st = (s3_store_t *)req->store;
  struct loop_ctx *lc = ctx_of(st, req->loop);
  if (lc == NULL)
    return TUSC_EINVALID_ARGUMENT;
  if (!id_usable(req->id))
    return TUSC_EINVALID_ID;
  job_t *j = job_new(req, lc, NULL, K_TERMINATE);
  if (j == NULL)
    return TUSC_ENOMEM;
  return job_start(j, term_go);
}

/* --- list --------------------------------------------------------------------------------- */

static void list_listed(job_t *j, int status);
static void list_next(job_t *j, int status);
static void list_loaded(job_t *j, int status);

static int list_visit(tusc_s3_req_t *r, const tusc_s3_object_t *objs, size_t n) {
  job_t *j = r->data;
  size_t plen = strlen(j->st->prefix);
  for (size_t i = 0; i < n; i++) {
    const char *key = objs[i].key;
    if (strncmp(key, j->st->prefix, plen) != 0 || !has_suffix(key, ".info"))
      continue;
    size_t idlen = strlen(key) - plen - 5;
    if (idlen == 0 || idlen > TUSC_ID_MAX)
      continue;
    char id[TUSC_ID_MAX + 1];
    memcpy(id, key + plen, idlen);
    id[idlen] = '\0';
    if (!id_usable(id))
      continue;
    int rc = keys_push(j, id, NULL);
    if (rc != 0)
      return rc;
  }
  return 0;
}

static void list_go(job_t *j, int status) {
  if (status != 0) {
    job_finish(j, status);
    return;
  }
  tusc_s3_req_t *r = s3_next(j, list_listed);
  s3_started(j, tusc_s3_list_objects(j->lc->sl, r, j->st->prefix, 0, list_visit, on_s3_done));
}

static void list_listed(job_t *j, int status) {
  if (status != 0) {
    job_finish(j, status);
    return;
  }
  j->ikey = 0;
  list_next(j, 0);
}

static void list_next(job_t *j, int status) {
  (void)status;
  if (j->ikey == j->nkeys) {
    job_finish(j, 0);
    return;
  }
  tusc_upload_info_dispose(&j->info);
  load_start(j, j->keys[j->ikey++], list_loaded);
}

static void list_loaded(job_t *j, int status) {
  if (status == 0) {
    int stop = j->req->visit(&j->info, j->req->visit_arg);
    if (stop != 0) {
      job_finish(j, stop);
      return;
    }
  } else if (status != TUSC_ENOT_FOUND) {
    TUSC_LOG(TUSC_LOG_WARN, "s3: listing: upload %s: %s", j->keys[j->ikey - 1],
             tusc_strerror(status));
  }
  list_next(j, 0);
}

static int s_list(tusc_store_req_t *req) {
  s3_store_t *st = (s3_store_t *)req->store;
  struct loop_ctx *lc = ctx_of(st, req->loop);
  if (lc == NULL)
    return TUSC_EINVALID_ARGUMENT;
  job_t *j = job_new(req, lc, NULL, K_LIST);
  if (j == NULL)
    return TUSC_ENOMEM;
  return job_start(j, list_go);
}

/* --- sweep: multipart uploads nobody names ----------------------------------------- */

static void sweep_listed(job_t *j, int status);
static void sweep_next(job_t *j, int status);
static void sweep_info_got(job_t *j, int status);

/* "2026-12-06T05:37:36.000Z" → unix seconds; -1 when malformed. */
static int64_t iso8601_seconds(const char *s) {
  struct tm tm;
  memset(&tm, 0, sizeof(tm));
  int y, mo, d, h, mi, sec;
  if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &sec) != 6)
    return -1;
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  return (int64_t)timegm(&tm);
}

static int sweep_visit(tusc_s3_req_t *r, const tusc_s3_upload_t *ups, size_t n) {
  job_t *j = r->data;
  for (size_t i = 0; i < n; i++) {
    int64_t t = iso8601_seconds(ups[i].initiated);
    if (t < 0 || t >= j->req->offset)
      continue;
    int rc = keys_push(j, ups[i].key, ups[i].upload_id);
    if (rc != 0)
      return rc;
  }
  return 0;
}

static void sweep_go(job_t *j, int status) {
  if (status != 0) {
    job_finish(j, status);
    return;
  }
  tusc_s3_req_t *r = s3_next(j, sweep_listed);
  s3_started(
      j, tusc_s3_list_multipart_uploads(j->lc->sl, r, j->st->prefix, 0, sweep_visit, on_s3_done));
}

static void sweep_listed(job_t *j, int status) {
  if (status != 0) {
    job_finish(j, status);
    return;
  }
  j->ikey = 0;
  sweep_next(j, 0);
}

static void sweep_aborted(job_t *j, int status) {
  if (status != 0 && !is_missing(status))
    log_s3("sweep: abort", j->keys[j->ikey - 1], &j->s3, status);
  else
    TUSC_LOG(TUSC_LOG_INFO, "s3: sweep: aborted the orphaned multipart upload of %s",
             j->keys[j->ikey - 1]);
  sweep_next(j, 0);
}

static void sweep_next(job_t *j, int status) {
  (void)status;
  if (j->ikey == j->nkeys) {
    job_finish(j, 0);
    return;
  }
  const char *key = j->keys[j->ikey++];
  if (keyf(j->key, sizeof(j->key), "%s.info", key) != 0) {
    sweep_next(j, 0);
    return;
  }
  tusc_s3_req_t *r = s3_next(j, sweep_info_got);
  s3_started(j, tusc_s3_get_object_buf(j->lc->sl, r, j->key, INFO_MAX_BYTES, on_s3_done));
}

static void sweep_info_got(job_t *j, int status) {
  size_t i = j->ikey - 1;
  bool named = false;
  if (status == 0) {
    json_error_t err;
    json_t *root = json_loadb(j->s3.body, j->s3.body_len, 0, &err);
    const char *mpu =
        json_string_value(json_object_get(json_object_get(root, "Storage"), "MultipartUpload"));
    named = mpu != NULL && strcmp(mpu, j->vals[i]) == 0;
    json_decref(root);
  } else if (status != TUSC_ES3_NO_SUCH_KEY) {
    sweep_next(j, 0); /* unsure: leave it */
    return;
  }
  if (named) {
    sweep_next(j, 0);
    return;
  }
  tusc_s3_req_t *r = s3_next(j, sweep_aborted);
  s3_started(j, tusc_s3_abort_multipart(j->lc->sl, r, j->keys[i], j->vals[i], on_s3_done));
}

static int s_sweep(tusc_store_req_t *req) {
  s3_store_t *st = (s3_store_t *)req->store;
  struct loop_ctx *lc = ctx_of(st, req->loop);
  if (lc == NULL)
    return TUSC_EINVALID_ARGUMENT;
  job_t *j = job_new(req, lc, NULL, K_SWEEP);
  if (j == NULL)
    return TUSC_ENOMEM;
  return job_start(j, sweep_go);
}

/* --- completion: last part, ListParts, CompleteMultipartUpload ------------------------ */

static void complete_part_done(job_t *j, int status);
static void complete_listed(job_t *j, int status);
static void complete_done(job_t *j, int status);

static void complete_empty_aborted(job_t *j, int status) {
  if (status != 0 && !is_missing(status)) {
    j->done(j, status);
    return;
  }
  tusc_s3_req_t *r = s3_next(j, complete_done);
  s3_started(j, tusc_s3_put_object(j->lc->sl, r, j->up->info.data_path, "", 0, NULL, on_s3_done));
}

/* Completes up's multipart upload: the last part (n = parts+1) comes from `data`/`len`
 * when data != NULL, else from the tail object when one exists. Then j->done. */
static void complete_start(job_t *j, const char *data, size_t len, job_fn done) {
  tusc_upload_t *up = j->up;
  j->done = done;
  if (up->info.size == 0 || up->info.store_ref == NULL) {
    /* Nothing to assemble: an empty object (the multipart upload, if any, goes). */
    j->pno = 0;
    if (up->info.store_ref != NULL) {
      tusc_s3_req_t *r = s3_next(j, complete_empty_aborted);
      s3_started(j, tusc_s3_abort_multipart(j->lc->sl, r, up->info.data_path, up->info.store_ref,
                                            on_s3_done));
      return;
    }
    complete_empty_aborted(j, 0);
    return;
  }
  j->pno = up->parts + 1;
  if (data != NULL && (len > 0 || up->parts == 0)) {
    tusc_s3_req_t *r = s3_next(j, complete_part_done);
    s3_started(j, tusc_s3_upload_part(j->lc->sl, r, up->info.data_path, up->info.store_ref, j->pno,
                                      data, len, on_s3_done));
    return;
  }
  if (data == NULL && up->tail_no == up->parts + 1 && up->tail_len > 0) {
    if (keyf(j->key, sizeof(j->key), "%s.part.%d", up->info.data_path, up->tail_no) != 0) {
      done(j, TUSC_EINTERNAL);
      return;
    }
    tusc_s3_req_t *r = s3_next(j, complete_part_done);
    s3_started(j, tusc_s3_upload_part_copy(j->lc->sl, r, up->info.data_path, up->info.store_ref,
                                           j->pno, j->key, TUSC_S3_NO_RANGE, 0, on_s3_done));
    return;
  }
  j->pno = up->parts;
  complete_part_done(j, 0);
}

static void complete_part_done(job_t *j, int status) {
  if (status != 0) {
    log_s3("upload last part", j->up->info.data_path, &j->s3, status);
    j->done(j, status);
    return;
  }
  tusc_s3_req_t *r = s3_next(j, complete_listed);
  s3_started(j, tusc_s3_list_parts(j->lc->sl, r, j->up->info.data_path, j->up->info.store_ref, 0,
                                   NULL, on_s3_done));
}

static void complete_listed(job_t *j, int status) {
  if (status == 0) {
    /* Parts 1..pno in order; anything after them (a stale part) is left out, and S3
     * drops it with the completion. */
    if (j->s3.nparts < (size_t)j->pno)
      status = TUSC_EINTERNAL;
    for (int i = 0; status == 0 && i < j->pno; i++)
      if (j->s3.parts[i].part_number != i + 1)
        status = TUSC_EINTERNAL;
    if (status == TUSC_EINTERNAL)
      TUSC_LOG(TUSC_LOG_ERROR, "s3: upload %s: parts missing before completion", j->up->info.id);
  }
  if (status != 0) {
    j->done(j, status);
    return;
  }
  /* The part list moves out of the request that is reused for the completion. */
  tusc_s3_part_t *parts = j->s3.parts;
  j->s3.parts = NULL;
  j->s3.nparts = 0;
  free(j->buf);
  j->buf = (char *)parts;
  tusc_s3_req_t *r = s3_next(j, complete_done);
  s3_started(j,
             tusc_s3_complete_multipart(j->lc->sl, r, j->up->info.data_path, j->up->info.store_ref,
                                        parts, (size_t)j->pno, on_s3_done));
}

static void complete_done(job_t *j, int status) {
  free(j->buf);
  j->buf = NULL;
  if (status != 0) {
    log_s3("complete", j->up->info.data_path, &j->s3, status);
  } else {
    tusc_upload_t *up = j->up;
    up->completed = true;
    up->parts = j->pno;
    up->info.offset = up->info.size;
  }
  j->done(j, status);
}

/* Deletes the objects named in j->keys from j->ikey on (errors only logged), then
 * j->done(j, j->status). */
static void cleanup_next(job_t *j, int status) {
  if (status != 0 && status != TUSC_ES3_NO_SUCH_KEY && j->ikey > 0)
    log_s3("delete", j->keys[j->ikey - 1], &j->s3, status);
  if (j->ikey >= j->nkeys) {
    for (size_t i = 0; i < j->nkeys; i++)
      free(j->keys[i]);
    if (j->vals != NULL)
      for (size_t i = 0; i < j->nkeys; i++)
        free(j->vals[i]);
    j->nkeys = j->ikey = 0;
    j->done(j, j->status);
    return;
  }
  const char *key = j->keys[j->ikey++];
  tusc_s3_req_t *r = s3_next(j, cleanup_next);
  s3_started(j, tusc_s3_delete_object(j->lc->sl, r, key, on_s3_done));
}

static void cleanup_start(job_t *j, int status_after, job_fn done) {
  j->status = status_after;
  j->done = done;
  j->ikey = 0;
  cleanup_next(j, 0);
}

static int push_tail_key(job_t *j, int number) {
  char key[KEY_MAX];
  if (keyf(key, sizeof(key), "%s.part.%d", j->up->info.data_path, number) != 0)
    return TUSC_EINTERNAL;
  return keys_push(j, key, NULL);
}

/* --- save_info ---------------------------------------------------------------------------- */

static void save_put(job_t *j, int status);
static void save_completed(job_t *j, int status);
static void push_stale(job_t *j);

static void save_go(job_t *j, int status) {
  if (status != 0) {
    job_finish(j, status);
    return;
  }
  tusc_upload_t *up = j->up;
  char *json = info_json(j->st, &up->info, up->P);
  if (json == NULL) {
    job_finish(j, TUSC_ENOMEM);
    return;
  }
  j->buf = json;
  tusc_s3_req_t *r = s3_next(j, save_put);
  s3_started(j, tusc_s3_put_object(j->lc->sl, r, up->info.info_path, j->buf, strlen(j->buf),
                                   "application/json", on_s3_done));
}

static void save_put(job_t *j, int status) {
  tusc_upload_t *up = j->up;
  free(j->buf);
  j->buf = NULL;
  if (status != 0 || up->completed || up->info.size_is_deferred ||
      up->info.offset != up->info.size) {
    job_finish(j, status);
    return;
  }
  /* A length declared equal to the bytes already stored completes the upload. */
  complete_start(j, NULL, 0, save_completed);
}

static void save_completed(job_t *j, int status) {
  if (status == 0) {
    if (j->up->tail_no > 0 && push_tail_key(j, j->up->tail_no) == 0)
      j->up->tail_no = 0;
    push_stale(j);
    cleanup_start(j, 0, job_finish);
    return;
  }
  job_finish(j, status);
}

static int s_save_info(tusc_store_req_t *req) {
  tusc_upload_t *up = req->up;
  if (up->lc->sl == NULL)
    return UV_ECANCELED; /* the loop is being detached */
  if (up->closing || up->chunk_open)
    return TUSC_EINVALID_ARGUMENT;
  req->loop = up->lc->loop;
  if (!up->info.size_is_deferred &&
      (up->info.size > tusc_s3_parts_capacity(up->P) || up->info.size < up->info.offset))
    return TUSC_EUPLOAD_SIZE_EXCEEDED;
  job_t *j = job_new(req, up->lc, up, K_SAVE_INFO);
  if (j == NULL)
    return TUSC_ENOMEM;
  return job_start(j, save_go);
}

/* --- chunks: buffers, sends, memory ----------------------------------------------------- */

static void chunk_end_continue(tusc_upload_t *up);

static struct part_buf *buf_new(tusc_upload_t *up, int number) {
  struct part_buf *b = calloc(1, sizeof(*b));
  if (b == NULL)
    return NULL;
  b->cap = (size_t)part_cap(up, number);
  void *p = mmap(NULL, b->cap > 0 ? b->cap : 1, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    free(b);
    return NULL;
  }
  b->data = p;
  b->up = up;
  b->number = number;
  tusc_s3_req_init(&b->s3);
  if (up->bufs_last != NULL)
    up->bufs_last->next = b;
  else
    up->bufs = b;
  up->bufs_last = b;
  return b;
}

/* Gives back what the chunk holds beyond its slot. */
static void extra_trim(tusc_upload_t *up) {
  int64_t keep = up->held > up->slot ? up->held - up->slot : 0;
  if (up->extra > keep) {
    budget_give(up->st, up->extra - keep);
    up->extra = keep;
  }
}

static void buf_free(tusc_upload_t *up, struct part_buf *b) {
  up->held -= (int64_t)b->len;
  tusc_s3_req_dispose(&b->s3);
  munmap(b->data, b->cap > 0 ? b->cap : 1);
  free(b);
  extra_trim(up);
}

/* Drops the buffers at the head that are done with: parts stored (counted when they
 * follow the last counted one without a failure between) or failed. */
static void bufs_advance(tusc_upload_t *up) {
  while (up->bufs != NULL && up->bufs->sent) {
    struct part_buf *b = up->bufs;
    if (b->err != 0 || up->broken) {
      up->broken = true;
    } else if (up->staged) {
      up->staged_upto = b->number;
    } else {
      up->parts = b->number;
    }
    up->bufs = b->next;
    if (up->bufs == NULL)
      up->bufs_last = NULL;
    buf_free(up, b);
  }
  if (!up->staged) {
    int64_t off = (int64_t)up->parts * up->P;
    if (up->tail_no == up->parts + 1)
      off += up->tail_len;
    if (off > up->info.offset)
      up->info.offset = off;
  }
}

static void kick_sends(tusc_upload_t *up);

static void on_part_sent(tusc_s3_req_t *r, int status) {
  struct part_buf *b = r->data;
  tusc_upload_t *up = b->up;
  up->sending--;
  up->busy--;
  up->lc->inflight--;
  b->sending = false;
  b->sent = true;
  b->err = status;
  if (status != 0) {
    log_s3(up->staged ? "put stage part" : "upload part", up->info.data_path, r, status);
    if (up->err == 0)
      up->err = status;
  }
  bufs_advance(up);
  struct loop_ctx *lc = up->lc;
  if (up->closing) {
    if (up->busy == 0)
      upload_free(up);
    ctx_maybe_close(lc);
    return;
  }
  kick_sends(up);
  if (up->end_job != NULL)
    chunk_end_continue(up);
  else
    call_drain(up); /* last: it may end the chunk or close the upload */
  ctx_maybe_close(lc);
}

static void kick_sends(tusc_upload_t *up) {
  for (struct part_buf *b = up->bufs; b != NULL && up->sending < up->st->conc; b = b->next) {
    if (!b->full || b->sending || b->sent)
      continue;
    if (up->err != 0) {
      b->sent = true; /* a part already failed: the chunk ends with it */
      b->err = up->err;
      continue;
    }
    tusc_s3_req_init(&b->s3);
    b->s3.data = b;
    int rc;
    if (up->staged) {
      rc = keyf(b->key, sizeof(b->key), "%s.stage.%d", up->info.data_path, b->number);
      if (rc == 0)
        rc = tusc_s3_put_object(up->lc->sl, &b->s3, b->key, b->data, b->len, NULL, on_part_sent);
    } else {
      rc = tusc_s3_upload_part(up->lc->sl, &b->s3, up->info.data_path, up->info.store_ref,
                               b->number, b->data, b->len, on_part_sent);
    }
    if (rc != 0) {
      b->sent = true;
      b->err = rc;
      if (up->err == 0)
        up->err = rc;
      continue;
    }
    b->sending = true;
    up->sending++;
    up->busy++;
    up->lc->inflight++;
  }
  bufs_advance(up);
}

static bool has_unsent_full(const tusc_upload_t *up) {
  for (const struct part_buf *b = up->bufs; b != NULL; b = b->next)
    if (b->full && !b->sent)
      return true;
  return false;
}

static int s_chunk_begin(tusc_upload_t *up, int flags) {
  if (up->chunk_open || up->closing || up->busy > 0)
    return TUSC_EINVALID_ARGUMENT;
  up->chunk_open = true;
  up->staged = (flags & TUSC_STORE_CHUNK_STAGED) != 0;
  up->chunk_start = up->info.offset;
  up->taken = 0;
  up->first_no = up->parts + 1;
  up->next_no = up->first_no;
  up->tail_first = up->tail_no == up->first_no && up->tail_len > 0 ? up->tail_no : 0;
  up->tail_in_buf = up->tail_loading = false;
  up->slot = up->extra = up->held = 0;
  up->staged_upto = up->first_no - 1;
  up->err = 0;
  up->broken = false;
  up->drain = NULL;
  return 0;
}

static int tail_body(tusc_s3_req_t *r, const char *data, size_t len) {
  tusc_upload_t *up = r->data;
  struct part_buf *b = up->bufs;
  if (b == NULL || b->len + len > b->cap)
    return TUSC_ES3_ERROR;
  memcpy(b->data + b->len, data, len);
  b->len += len;
  up->held += (int64_t)len;
  return TUSC_S3_BODY_CONTINUE;
}

static void on_tail_loaded(tusc_s3_req_t *r, int status) {
  tusc_upload_t *up = r->data;
  up->tail_loading = false;
  up->busy--;
  up->lc->inflight--;
  if (status == 0 && up->bufs != NULL && (int64_t)up->bufs->len != up->tail_len)
    status = TUSC_ES3_ERROR; /* the tail changed under us: another writer */
  if (status != 0) {
    log_s3("read tail", up->info.data_path, r, status);
    if (up->err == 0)
      up->err = status;
  } else {
    up->tail_in_buf = true;
  }
  tusc_s3_req_dispose(&up->tail_req);
  struct loop_ctx *lc = up->lc;
  if (up->closing) {
    if (up->busy == 0)
      upload_free(up);
    ctx_maybe_close(lc);
    return;
  }
  if (up->end_job != NULL)
    chunk_end_continue(up);
  else
    call_drain(up);
  ctx_maybe_close(lc);
}

static int tail_load(tusc_upload_t *up) {
  char key[KEY_MAX];
  if (keyf(key, sizeof(key), "%s.part.%d", up->info.data_path, up->tail_first) != 0)
    return TUSC_EINTERNAL;
  if (up->bufs == NULL && buf_new(up, up->first_no) == NULL)
    return TUSC_ENOMEM;
  tusc_s3_req_init(&up->tail_req);
  up->tail_req.data = up;
  int rc = tusc_s3_get_object(up->lc->sl, &up->tail_req, key, TUSC_S3_NO_RANGE, 0, tail_body,
                              on_tail_loaded);
  if (rc != 0)
    return rc;
  up->tail_loading = true;
  up->busy++;
  up->lc->inflight++;
  return 0;
}

static int s_append(tusc_upload_t *up, const void *data, size_t len, tusc_store_drain_cb drain,
                    void *arg) {
  if (!up->chunk_open || up->completed)
    return up->completed ? TUSC_EUPLOAD_SIZE_EXCEEDED : TUSC_EINVALID_ARGUMENT;
  if (up->err != 0)
    return up->err;
  int64_t end = up->chunk_start + up->taken + (int64_t)len;
  if ((!up->info.size_is_deferred && up->info.size >= 0 && end > up->info.size) ||
      end > tusc_s3_parts_capacity(up->P))
    return TUSC_EUPLOAD_SIZE_EXCEEDED;
  up->drain = drain;
  up->drain_arg = arg;
  if (up->waiting || up->tail_loading)
    return TUSC_ESTORE_FULL;
  if (up->slot == 0) {
    int64_t want = 2 * up->P + TUSC_STORE_APPEND_MAX;
    int64_t tail = up->tail_first != 0 ? up->tail_len : 0;
    if (!up->info.size_is_deferred && up->info.size >= 0 &&
        up->info.size - up->chunk_start + tail < want)
      want = up->info.size - up->chunk_start + tail;
    if (want > up->st->budget) {
      /* Parts chosen under a larger -s3-max-buffer-memory than this process has. */
      TUSC_LOG(TUSC_LOG_ERROR,
               "s3: upload %s has parts of %lld bytes: -s3-max-buffer-memory must hold two "
               "of them and 256 KiB",
               up->info.id, (long long)up->P);
      return TUSC_EINTERNAL;
    }
    if (!budget_take(up->st, want)) {
      waiter_add(up);
      return TUSC_ESTORE_FULL;
    }
    up->slot = want;
  }
  if (up->tail_first != 0 && !up->tail_in_buf) {
    int rc = tail_load(up);
    if (rc != 0)
      return rc;
    return TUSC_ESTORE_FULL;
  }
  if (up->held + (int64_t)len > up->slot + up->extra) {
    int64_t more = up->held + (int64_t)len - up->slot - up->extra;
    if (up->sending < up->st->conc && budget_take(up->st, more))
      up->extra += more;
    else if (has_unsent_full(up) || up->sending > 0)
      return TUSC_ESTORE_FULL; /* drain once one of our parts is stored */
    else
      return TUSC_EINTERNAL; /* cannot happen: the slot holds two parts and a piece */
  }
  const char *p = data;
  while (len > 0) {
    struct part_buf *b = up->bufs_last;
    if (b == NULL || b->full) {
      b = buf_new(up, up->next_no);
      if (b == NULL)
        return TUSC_ENOMEM; /* nothing counted yet for this piece beyond what was copied */
    }
    size_t n = b->cap - b->len < len ? b->cap - b->len : len;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    up->held += (int64_t)n;
    up->taken += (int64_t)n;
    p += n;
    len -= n;
    if (b->len == b->cap) {
      b->full = true;
      up->next_no = b->number + 1;
    }
  }
  up->drain = NULL;
  kick_sends(up);
  return 0;
}

/* --- chunk_end ------------------------------------------------------------------------------ */

static void end_copy_next(job_t *j, int status);
static void end_store_rest(job_t *j);
static void end_tail_put(job_t *j, int status);
static void end_completed(job_t *j, int status);
static void end_finish(job_t *j, int status);
static void end_refreshed(job_t *j, int status);

/* Called when the upload's sends or its tail load finish while chunk_end waits. */
static void chunk_end_continue(tusc_upload_t *up) {
  job_t *j = up->end_job;
  if (j == NULL || up->sending > 0 || up->tail_loading)
    return;
  if (j->req->flags == TUSC_STORE_DISCARD) {
    for (struct part_buf *b = up->bufs; b != NULL; b = b->next)
      if (b->full && !b->sending && !b->sent)
        b->sent = true, b->err = UV_ECANCELED; /* dropped, never sent */
  }
  kick_sends(up);
  if (up->sending > 0)
    return;
  up->end_job = NULL;
  j->next = NULL;
  /* Every full part is stored (or failed); the last buffer, if not full, is the rest. */
  bool discard = j->req->flags == TUSC_STORE_DISCARD;
  if (discard || up->err != 0) {
    /* Stage objects of this chunk go; nothing of it counts. */
    if (up->staged) {
      for (int n = up->first_no; n < up->next_no + 1; n++) {
        char key[KEY_MAX];
        if (keyf(key, sizeof(key), "%s.stage.%d", up->info.data_path, n) == 0)
          (void)keys_push(j, key, NULL);
      }
    }
    cleanup_start(j, discard ? 0 : up->err, end_finish);
    return;
  }
  if (up->staged && up->staged_upto >= up->first_no) {
    j->pno = up->first_no;
    end_copy_next(j, 0);
    return;
  }
  end_store_rest(j);
}

/* Staged KEEP: copy K.stage.<n> into part n, in order. */
static void end_copy_next(job_t *j, int status) {
  tusc_upload_t *up = j->up;
  if (status != 0) {
    log_s3("copy stage part", up->info.data_path, &j->s3, status);
    up->err = status;
    end_finish(j, status);
    return;
  }
  if (j->pno > j->up->first_no)
    up->parts = j->pno - 1; /* the copy just made counts */
  if (j->pno > up->staged_upto) {
    for (int n = up->first_no; n <= up->staged_upto; n++) {
      char key[KEY_MAX];
      if (keyf(key, sizeof(key), "%s.stage.%d", up->info.data_path, n) == 0)
        (void)keys_push(j, key, NULL);
    }
    end_store_rest(j);
    return;
  }
  if (keyf(j->key, sizeof(j->key), "%s.stage.%d", up->info.data_path, j->pno) != 0) {
    end_finish(j, TUSC_EINTERNAL);
    return;
  }
  int n = j->pno++;
  tusc_s3_req_t *r = s3_next(j, end_copy_next);
  s3_started(j, tusc_s3_upload_part_copy(j->lc->sl, r, up->info.data_path, up->info.store_ref, n,
                                         j->key, TUSC_S3_NO_RANGE, 0, on_s3_done));
}

/* Every full part counted: what is left in the last buffer becomes the last part (the
 * upload is complete) or the new tail. */
/* Hands the stale tails found at open to j's clean-up. */
static void push_stale(job_t *j) {
  tusc_upload_t *up = j->up;
  for (size_t i = 0; i < up->nstale; i++) {
    (void)keys_push(j, up->stale[i], NULL);
    free(up->stale[i]);
  }
  free(up->stale);
  up->stale = NULL;
  up->nstale = 0;
}

static void end_store_rest(job_t *j) {
  tusc_upload_t *up = j->up;
  push_stale(j);
  struct part_buf *b = up->bufs_last;
  size_t rest = b != NULL && !b->full ? b->len : 0;
  int64_t end = up->chunk_start + up->taken;
  if (up->tail_first != 0 && up->parts >= up->tail_first)
    (void)push_tail_key(j, up->tail_first); /* absorbed into a stored part */
  if (!up->info.size_is_deferred && up->info.size == end) {
    /* The last part: the bytes in memory, else the untouched tail object (data NULL). */
    const char *last = b != NULL && !b->full                     ? b->data
                       : up->tail_first != 0 && !up->tail_in_buf ? NULL
                                                                 : "";
    complete_start(j, last, rest, end_completed);
    return;
  }
  if (rest == 0 || (up->tail_first != 0 && !up->tail_in_buf)) {
    /* Nothing new past the last part (or the old tail was never touched). */
    if (rest == 0 && up->tail_no != 0 && up->tail_no <= up->parts)
      up->tail_no = 0, up->tail_len = 0;
    if (up->taken > 0) {
      /* No tail to write: the .info, rewritten, records the activity (expiry). */
      free(j->buf);
      j->buf = info_json(j->st, &up->info, up->P);
      if (j->buf != NULL) {
        j->psize = 0;
        tusc_s3_req_t *r = s3_next(j, end_tail_put);
        s3_started(j, tusc_s3_put_object(j->lc->sl, r, up->info.info_path, j->buf, strlen(j->buf),
                                         "application/json", on_s3_done));
        return;
      }
    }
    end_tail_put(j, 0);
    return;
  }
  if ((int64_t)rest == up->tail_len && up->tail_no == b->number && up->taken == 0) {
    end_tail_put(j, 0); /* the tail as it was */
    return;
  }
  if (keyf(j->key, sizeof(j->key), "%s.part.%d", up->info.data_path, b->number) != 0) {
    end_finish(j, TUSC_EINTERNAL);
    return;
  }
  j->pno = b->number;
  j->psize = (int64_t)rest;
  tusc_s3_req_t *r = s3_next(j, end_tail_put);
  s3_started(j, tusc_s3_put_object(j->lc->sl, r, j->key, b->data, rest, NULL, on_s3_done));
}

static void end_tail_put(job_t *j, int status) {
  tusc_upload_t *up = j->up;
  free(j->buf);
  j->buf = NULL;
  if (status == 0 && up->taken > 0)
    up->info.modified_ms = (int64_t)time(NULL) * 1000;
  if (status != 0) {
    log_s3("put tail", j->key, &j->s3, status);
    up->err = status;
    end_finish(j, status);
    return;
  }
  if (j->psize > 0) {
    up->tail_no = j->pno;
    up->tail_len = j->psize;
  }
  cleanup_start(j, 0, end_finish);
}

static void end_completed(job_t *j, int status) {
  tusc_upload_t *up = j->up;
  if (status != 0) {
    up->err = status;
    end_finish(j, status);
    return;
  }
  if (up->tail_no != 0) {
    (void)push_tail_key(j, up->tail_no);
    up->tail_no = 0;
    up->tail_len = 0;
  }
  cleanup_start(j, 0, end_finish);
}

static void chunk_release(tusc_upload_t *up) {
  while (up->bufs != NULL) {
    struct part_buf *b = up->bufs;
    up->bufs = b->next;
    buf_free(up, b);
  }
  up->bufs_last = NULL;
  up->held = 0;
  budget_give(up->st, up->slot + up->extra);
  up->slot = up->extra = 0;
  up->chunk_open = false;
  waiter_remove(up);
  up->drain = NULL;
}

static void end_finish(job_t *j, int status) {
  tusc_upload_t *up = j->up;
  bool discard = j->req->flags == TUSC_STORE_DISCARD;
  chunk_release(up);
  if (up->completed) {
    up->info.offset = up->info.size;
    job_finish(j, status);
    return;
  }
  if (status == 0 && !discard) {
    up->info.offset =
        (int64_t)up->parts * up->P + (up->tail_no == up->parts + 1 ? up->tail_len : 0);
    job_finish(j, 0);
    return;
  }
  if (discard && status == 0 && (up->staged || up->parts < up->first_no)) {
    up->info.offset = up->chunk_start;
    job_finish(j, 0);
    return;
  }
  /* An error (or a plain chunk discarded after a part of it was stored): ask S3 what
   * it holds, so that the offset is exact. */
  j->status = status;
  tusc_upload_info_dispose(&j->info);
  load_start(j, up->info.id, end_refreshed);
}

static void end_refreshed(job_t *j, int status) {
  tusc_upload_t *up = j->up;
  if (status == 0) {
    up->parts = j->parts;
    up->tail_len = j->tail_len;
    up->tail_no = j->tail_len > 0 ? j->parts + 1 : 0;
    up->completed = j->completed;
    up->info.offset = j->info.offset;
  } else {
    /* S3 cannot be asked: count what is known to be stored. */
    up->info.offset =
        (int64_t)up->parts * up->P + (up->tail_no == up->parts + 1 ? up->tail_len : 0);
  }
  job_finish(j, j->status);
}

static void end_go(job_t *j, int status) {
  (void)status;
  j->up->end_job = j;
  chunk_end_continue(j->up);
}

static int s_chunk_end(tusc_store_req_t *req) {
  tusc_upload_t *up = req->up;
  if (up->lc->sl == NULL)
    return UV_ECANCELED; /* the loop is being detached */
  if (!up->chunk_open || up->end_job != NULL || up->closing)
    return TUSC_EINVALID_ARGUMENT;
  req->loop = up->lc->loop;
  job_t *j = job_new(req, up->lc, up, K_CHUNK_END);
  if (j == NULL)
    return TUSC_ENOMEM;
  up->drain = NULL;
  waiter_remove(up);
  if (up->completed) {
    /* A chunk on a complete upload (no byte could be taken). */
    return job_start(j, end_finish);
  }
  return job_start(j, end_go);
}

/* --- read ----------------------------------------------------------------------------------- */

static int read_body(tusc_s3_req_t *r, const char *data, size_t len) {
  job_t *j = r->data;
  if (j->dst_got + len > j->dst_len)
    return TUSC_ES3_ERROR;
  memcpy(j->dst + j->dst_got, data, len);
  j->dst_got += len;
  return TUSC_S3_BODY_CONTINUE;
}

static void read_got(job_t *j, int status) {
  if (status == TUSC_EINVALID_RANGE) {
    status = 0;
    j->dst_got = 0;
  }
  if (status == 0)
    j->req->nread = j->dst_got;
  job_finish(j, status);
}

/* Serves req from the read-ahead of a complete upload when it holds req's first byte. */
static bool read_cached(tusc_upload_t *up, tusc_store_req_t *req) {
  if (up->rcache_len == 0 || req->offset < up->rcache_off ||
      req->offset >= up->rcache_off + (int64_t)up->rcache_len)
    return false;
  size_t at = (size_t)(req->offset - up->rcache_off);
  size_t n = up->rcache_len - at < req->len ? up->rcache_len - at : req->len;
  memcpy(req->buf, up->rcache + at, n);
  req->nread = n;
  return true;
}

static void read_cache_got(job_t *j, int status) {
  if (status == TUSC_EINVALID_RANGE) {
    status = 0;
    j->dst_got = 0;
  }
  if (status == 0) {
    j->up->rcache_len = j->dst_got;
    if (!read_cached(j->up, j->req))
      j->req->nread = 0;
  }
  job_finish(j, status);
}

static void read_go(job_t *j, int status) {
  if (status != 0) {
    job_finish(j, status);
    return;
  }
  tusc_store_req_t *req = j->req;
  tusc_upload_t *up = j->up;
  req->nread = 0;
  int64_t off = req->offset;
  if (req->len == 0) {
    /* Asks whether these bytes can be read: not those of an unfinished upload, except
     * the staged chunk's own. */
    bool staged_part = up->chunk_open && up->staged && off >= up->chunk_start;
    job_finish(
        j, !up->completed && !staged_part && off < up->info.offset ? TUSC_EUPLOAD_NOT_FINISHED : 0);
    return;
  }
  if (up->chunk_open && up->staged && off >= up->chunk_start) {
    int64_t end = up->chunk_start + up->taken;
    if (off >= end) {
      job_finish(j, 0);
      return;
    }
    int n = (int)(off / up->P) + 1;
    for (struct part_buf *b = up->bufs; b != NULL; b = b->next) {
      int64_t start = tusc_s3_part_start(up->P, b->number);
      if (b->number == n && off - start < (int64_t)b->len) {
        size_t k = b->len - (size_t)(off - start);
        if (k > req->len)
          k = req->len;
        memcpy(req->buf, b->data + (off - start), k);
        req->nread = k;
        job_finish(j, 0);
        return;
      }
    }
    /* Stored already: read it back from its stage object. */
    int64_t start = tusc_s3_part_start(up->P, n);
    int64_t last = start + up->P - 1;
    if (last > end - 1)
      last = end - 1;
    if (off + (int64_t)req->len - 1 < last)
      last = off + (int64_t)req->len - 1;
    if (keyf(j->key, sizeof(j->key), "%s.stage.%d", up->info.data_path, n) != 0) {
      job_finish(j, TUSC_EINTERNAL);
      return;
    }
    j->dst = req->buf;
    j->dst_len = req->len;
    j->dst_got = 0;
    tusc_s3_req_t *r = s3_next(j, read_got);
    s3_started(j, tusc_s3_get_object(j->lc->sl, r, j->key, (uint64_t)(off - start),
                                     (uint64_t)(last - start), read_body, on_s3_done));
    return;
  }
  if (off >= up->info.offset) {
    job_finish(j, 0);
    return;
  }
  if (!up->completed) {
    job_finish(j, TUSC_EUPLOAD_NOT_FINISHED);
    return;
  }
  if (read_cached(up, req)) {
    job_finish(j, 0);
    return;
  }
  /* A download reads in small pieces: one GET fetches READ_AHEAD bytes for the next
   * ones (a round trip to S3 per piece would set the pace). */
  if (up->rcache == NULL && (up->rcache = malloc(READ_AHEAD)) == NULL) {
    job_finish(j, TUSC_ENOMEM);
    return;
  }
  int64_t last = off + READ_AHEAD - 1;
  if (last > up->info.offset - 1)
    last = up->info.offset - 1;
  up->rcache_len = 0;
  up->rcache_off = off;
  j->dst = up->rcache;
  j->dst_len = READ_AHEAD;
  j->dst_got = 0;
  tusc_s3_req_t *r = s3_next(j, read_cache_got);
  s3_started(j, tusc_s3_get_object(j->lc->sl, r, up->info.data_path, (uint64_t)off, (uint64_t)last,
                                   read_body, on_s3_done));
}

static int s_read(tusc_store_req_t *req) {
  tusc_upload_t *up = req->up;
  if (up->lc->sl == NULL)
    return UV_ECANCELED; /* the loop is being detached */
  if (up->closing)
    return TUSC_EINVALID_ARGUMENT;
  req->loop = up->lc->loop;
  job_t *j = job_new(req, up->lc, up, K_READ);
  if (j == NULL)
    return TUSC_ENOMEM;
  return job_start(j, read_go);
}

/* --- concat ------------------------------------------------------------------------------ */

static void concat_next_partial(job_t *j, int status);
static void concat_partial_loaded(job_t *j, int status);
static void concat_step(job_t *j, int status);
static void concat_done(job_t *j, int status);
static void concat_failed(job_t *j, int status);

#define COPY_MAX TUSC_S3_PART_SIZE_MAX

static void concat_begin(job_t *j, int status);

/* A final that holds bytes already (concatenated before) starts again from a fresh
 * multipart upload: abort the old one (or delete the object), then create. */
static void concat_fresh_put(job_t *j, int status) {
  free(j->buf);
  j->buf = NULL;
  if (status != 0) {
    job_finish(j, status);
    return;
  }
  tusc_upload_t *up = j->up;
  up->completed = false;
  up->parts = 0;
  up->tail_no = 0;
  up->tail_len = 0;
  concat_begin(j, 0);
}

static void concat_fresh_made(job_t *j, int status) {
  tusc_upload_t *up = j->up;
  if (status != 0) {
    job_finish(j, status);
    return;
  }
  char *id = strdup(j->s3.upload_id);
  if (id == NULL) {
    job_finish(j, TUSC_ENOMEM);
    return;
  }
  free(up->info.store_ref);
  up->info.store_ref = id;
  j->buf = info_json(j->st, &up->info, up->P);
  if (j->buf == NULL) {
    job_finish(j, TUSC_ENOMEM);
    return;
  }
  tusc_s3_req_t *r = s3_next(j, concat_fresh_put);
  s3_started(j, tusc_s3_put_object(j->lc->sl, r, up->info.info_path, j->buf, strlen(j->buf),
                                   "application/json", on_s3_done));
}

static void concat_fresh_cleared(job_t *j, int status) {
  if (status != 0 && !is_missing(status)) {
    job_finish(j, status);
    return;
  }
  tusc_s3_req_t *r = s3_next(j, concat_fresh_made);
  s3_started(j, tusc_s3_create_multipart(j->lc->sl, r, j->up->info.data_path, NULL, on_s3_done));
}

static void concat_go(job_t *j, int status) {
  tusc_upload_t *up = j->up;
  if (status == 0 && (up->completed || up->parts > 0 || up->tail_no > 0)) {
    tusc_s3_req_t *r = s3_next(j, concat_fresh_cleared);
    if (up->completed || up->info.store_ref == NULL)
      s3_started(j, tusc_s3_delete_object(j->lc->sl, r, up->info.data_path, on_s3_done));
    else
      s3_started(j, tusc_s3_abort_multipart(j->lc->sl, r, up->info.data_path, up->info.store_ref,
                                            on_s3_done));
    return;
  }
  concat_begin(j, status);
}

static void concat_begin(job_t *j, int status) {
  if (status != 0) {
    job_finish(j, status);
    return;
  }
  j->up->rcache_len = 0; /* the data changes */
  j->ipart = 0;
  j->total = 0;
  j->pno = 0;
  j->buf_len = 0;
  j->up->info.offset = 0;
  concat_next_partial(j, 0);
}

static void concat_finish(job_t *j, int status);

/* Loads partial j->ipart (its .info and whether its object is complete); after the
 * last one, the pending bytes become the last part. */
static void concat_next_partial(job_t *j, int status) {
  if (status != 0) {
    concat_failed(j, status);
    return;
  }
  tusc_store_req_t *req = j->req;
  if (j->ipart == req->n_in) {
    if (j->buf_len > 0) {
      j->pno++;
      size_t n = j->buf_len;
      j->buf_len = 0;
      tusc_s3_req_t *r = s3_next(j, concat_finish);
      s3_started(j, tusc_s3_upload_part(j->lc->sl, r, j->up->info.data_path, j->up->info.store_ref,
                                        j->pno, j->buf, n, on_s3_done));
      return;
    }
    concat_finish(j, 0);
    return;
  }
  tusc_upload_info_dispose(&j->info);
  load_start(j, req->ids_in[j->ipart], concat_partial_loaded);
}

static void concat_empty_put(job_t *j, int status) {
  if (status == 0)
    j->total = 0;
  concat_done(j, status);
}

static void concat_empty_aborted(job_t *j, int status) {
  if (status != 0 && !is_missing(status)) {
    concat_failed(j, status);
    return;
  }
  tusc_s3_req_t *r = s3_next(j, concat_empty_put);
  s3_started(j, tusc_s3_put_object(j->lc->sl, r, j->up->info.data_path, "", 0, NULL, on_s3_done));
}

static void concat_finish(job_t *j, int status) {
  if (status != 0) {
    concat_failed(j, status);
    return;
  }
  if (j->pno == 0) {
    /* No byte at all: an empty object, and no multipart upload. */
    if (j->up->info.store_ref == NULL) {
      concat_empty_aborted(j, 0);
      return;
    }
    tusc_s3_req_t *r = s3_next(j, concat_empty_aborted);
    s3_started(j, tusc_s3_abort_multipart(j->lc->sl, r, j->up->info.data_path,
                                          j->up->info.store_ref, on_s3_done));
    return;
  }
  j->done = concat_done;
  complete_part_done(j, 0); /* lists parts 1..pno and completes */
}

static void concat_partial_loaded(job_t *j, int status) {
  if (status == 0 && (!j->completed || j->info.size_is_deferred || j->info.offset != j->info.size))
    status = TUSC_EUPLOAD_NOT_FINISHED;
  if (status == 0 && !j->up->info.size_is_deferred && j->up->info.size >= 0 &&
      j->total + j->info.offset > j->up->info.size)
    status = TUSC_EUPLOAD_SIZE_EXCEEDED;
  if (status != 0) {
    concat_failed(j, status);
    return;
  }
  j->psize = j->info.offset;
  j->pos = 0;
  j->total += j->psize;
  snprintf(j->key2, sizeof(j->key2), "%s", j->info.data_path);
  concat_step(j, 0);
}

static int concat_buf_body(tusc_s3_req_t *r, const char *data, size_t len) {
  job_t *j = r->data;
  if (j->buf_len + len > j->buf_cap)
    return TUSC_ES3_ERROR;
  memcpy(j->buf + j->buf_len, data, len);
  j->buf_len += len;
  return TUSC_S3_BODY_CONTINUE;
}

/* Places the rest of the current partial (bytes [pos, psize) of key2): copies of at most
 * 5 GiB when at least the minimum part size and nothing is pending, else reads bytes
 * into the pending buffer until it holds a minimum part. */
static void concat_step(job_t *j, int status) {
  if (status != 0) {
    concat_failed(j, status);
    return;
  }
  int64_t min = j->st->min_part;
  if (j->buf_len >= (size_t)min) {
    /* A pending minimum part: upload it. */
    j->pno++;
    size_t n = j->buf_len;
    j->buf_len = 0;
    tusc_s3_req_t *r = s3_next(j, concat_step);
    /* The bytes stay valid: the buffer is only written by the next GET, after this. */
    s3_started(j, tusc_s3_upload_part(j->lc->sl, r, j->up->info.data_path, j->up->info.store_ref,
                                      j->pno, j->buf, n, on_s3_done));
    return;
  }
  int64_t left = j->psize - j->pos;
  if (left == 0) {
    j->ipart++;
    concat_next_partial(j, 0);
    return;
  }
  if (j->pno + 1 > TUSC_S3_PARTS_MAX) {
    concat_failed(j, TUSC_EUPLOAD_SIZE_EXCEEDED);
    return;
  }
  if (j->buf_len == 0 && left >= min) {
    int64_t n = left > COPY_MAX ? COPY_MAX : left;
    if (left - n > 0 && left - n < min)
      n = left - min; /* leave a last copy of at least the minimum */
    j->pno++;
    uint64_t first = (uint64_t)j->pos, last = (uint64_t)(j->pos + n - 1);
    if (j->pos == 0 && n == j->psize)
      first = TUSC_S3_NO_RANGE;
    j->pos += n;
    tusc_s3_req_t *r = s3_next(j, concat_step);
    s3_started(j,
               tusc_s3_upload_part_copy(j->lc->sl, r, j->up->info.data_path, j->up->info.store_ref,
                                        j->pno, j->key2, first, last, on_s3_done));
    return;
  }
  /* Read into the pending buffer: the whole rest when small, else just enough. */
  int64_t want = left;
  if ((int64_t)j->buf_len + want > min && left >= min)
    want = min - (int64_t)j->buf_len;
  if (left - want > 0 && left - want < min)
    want = left; /* no copy smaller than the minimum would remain */
  if (j->buf_cap < j->buf_len + (size_t)want) {
    size_t cap = j->buf_len + (size_t)want;
    char *g = realloc(j->buf, cap);
    if (g == NULL) {
      concat_failed(j, TUSC_ENOMEM);
      return;
    }
    j->buf = g;
    j->buf_cap = cap;
  }
  uint64_t first = (uint64_t)j->pos, last = (uint64_t)(j->pos + want - 1);
  j->pos += want;
  tusc_s3_req_t *r = s3_next(j, concat_step);
  s3_started(j,
             tusc_s3_get_object(j->lc->sl, r, j->key2, first, last, concat_buf_body, on_s3_done));
}

static void concat_done(job_t *j, int status) {
  if (status != 0) {
    concat_failed(j, status);
    return;
  }
  tusc_upload_t *up = j->up;
  up->completed = true;
  up->parts = j->pno;
  up->info.offset = j->total;
  job_finish(j, 0);
}

static void concat_reset_put(job_t *j, int status) {
  if (status != 0)
    log_s3("concat: save info", j->up->info.info_path, &j->s3, status);
  free(j->buf);
  j->buf = NULL;
  job_finish(j, j->status);
}

static void concat_reset_made(job_t *j, int status) {
  tusc_upload_t *up = j->up;
  if (status == 0) {
    char *id = strdup(j->s3.upload_id);
    if (id != NULL) {
      free(up->info.store_ref);
      up->info.store_ref = id;
      free(j->buf);
      j->buf = info_json(j->st, &up->info, up->P);
      if (j->buf != NULL) {
        tusc_s3_req_t *r = s3_next(j, concat_reset_put);
        s3_started(j, tusc_s3_put_object(j->lc->sl, r, up->info.info_path, j->buf, strlen(j->buf),
                                         "application/json", on_s3_done));
        return;
      }
    }
  }
  job_finish(j, j->status);
}

static void concat_reset_aborted(job_t *j, int status) {
  (void)status;
  tusc_s3_req_t *r = s3_next(j, concat_reset_made);
  s3_started(j, tusc_s3_create_multipart(j->lc->sl, r, j->up->info.data_path, NULL, on_s3_done));
}

/* "On an error the final holds no bytes": a fresh multipart upload replaces the one
 * that got parts. */
static void concat_failed(job_t *j, int status) {
  tusc_upload_t *up = j->up;
  up->info.offset = 0;
  up->parts = 0;
  j->status = status;
  if (j->pno == 0 || up->info.store_ref == NULL) {
    job_finish(j, status);
    return;
  }
  tusc_s3_req_t *r = s3_next(j, concat_reset_aborted);
  s3_started(
      j, tusc_s3_abort_multipart(j->lc->sl, r, up->info.data_path, up->info.store_ref, on_s3_done));
}

static int s_concat(tusc_store_req_t *req) {
  tusc_upload_t *up = req->up;
  if (up->lc->sl == NULL)
    return UV_ECANCELED; /* the loop is being detached */
  if (up->chunk_open || up->closing)
    return TUSC_EINVALID_ARGUMENT;
  for (size_t i = 0; i < req->n_in; i++)
    if (req->ids_in[i] == NULL || !id_usable(req->ids_in[i]))
      return TUSC_EINVALID_ARGUMENT;
  req->loop = up->lc->loop;
  job_t *j = job_new(req, up->lc, up, K_CONCAT);
  if (j == NULL)
    return TUSC_ENOMEM;
  return job_start(j, concat_go);
}

/* --- the rest of the interface ----------------------------------------------------------- */

static int s_cancel(tusc_store_req_t *req) {
  (void)req;
  return UV_EBUSY; /* S3 requests run to their end; the callback comes as usual */
}

static tusc_upload_info_t *s_info(tusc_upload_t *up) {
  return &up->info;
}

static void upload_free(tusc_upload_t *up) {
  while (up->bufs != NULL) {
    struct part_buf *b = up->bufs;
    up->bufs = b->next;
    tusc_s3_req_dispose(&b->s3);
    munmap(b->data, b->cap > 0 ? b->cap : 1);
    free(b);
  }
  budget_give(up->st, up->slot + up->extra);
  tusc_s3_req_dispose(&up->tail_req);
  tusc_upload_info_dispose(&up->info);
  free(up->rcache);
  for (size_t i = 0; i < up->nstale; i++)
    free(up->stale[i]);
  free(up->stale);
  free(up);
}

static void s_close(tusc_upload_t *up) {
  if (up == NULL || up->closing)
    return;
  up->closing = true;
  up->drain = NULL;
  waiter_remove(up);
  if (up->busy == 0)
    upload_free(up);
}

static int s_storage(const tusc_store_t *store, const tusc_upload_info_t *info,
                     tusc_store_kv_t *out, size_t cap) {
  const s3_store_t *st = (const s3_store_t *)store;
  if (info->data_path[0] == '\0' || cap < 4)
    return 0;
  out[0] = (tusc_store_kv_t){"Type", "s3store"};
  out[1] = (tusc_store_kv_t){"Bucket", tusc_s3_bucket(st->s3)};
  out[2] = (tusc_store_kv_t){"Key", info->data_path};
  out[3] = (tusc_store_kv_t){"MultipartUpload", info->store_ref != NULL ? info->store_ref : ""};
  return 4;
}

static void s_free(tusc_store_t *store) {
  s3_store_t *st = (s3_store_t *)store;
  tusc_s3_free(st->s3);
  free(st->prefix);
  uv_mutex_destroy(&st->mutex);
  free(st);
}

static const tusc_store_async_ops_t s3_store_ops = {
    .get_info = s_get_info,
    .create = s_create,
    .open = s_open,
    .terminate = s_terminate,
    .list = s_list,
    .wait_add = NULL, /* concatenation-unfinished notes: TUSC_ENOT_IMPLEMENTED (tus copes) */
    .wait_take = NULL,
    .save_info = s_save_info,
    .chunk_begin = s_chunk_begin,
    .append = s_append,
    .chunk_end = s_chunk_end,
    .read = s_read,
    .concat = s_concat,
    .cancel = s_cancel,
    .info = s_info,
    .close = s_close,
    .storage = s_storage,
    .free = s_free,
    .attach_loop = s_attach,
    .detach_loop = s_detach,
    .sweep = s_sweep,
};

int tusc_s3_store_new(const tusc_s3_store_options_t *opts, tusc_store_t **out, const char **why) {
  const char *dummy;
  if (why == NULL)
    why = &dummy;
  *why = NULL;
  if (opts == NULL || opts->bucket == NULL || opts->bucket[0] == '\0') {
    *why = "no bucket";
    return TUSC_EINVALID_ARGUMENT;
  }
  int64_t P;
  int rc = tusc_s3_part_size(opts->part_size, opts->min_part_size, opts->max_size, &P);
  if (rc != 0) {
    *why = "no part size fits -max-size in 10,000 parts of at most 5 GiB";
    return TUSC_EINVALID_ARGUMENT;
  }
  int64_t budget = opts->max_buffer_memory > 0 ? opts->max_buffer_memory : DEFAULT_BUFFER_MEMORY;
  if (budget < 2 * P + TUSC_STORE_APPEND_MAX) {
    *why = "-s3-max-buffer-memory must hold two parts and 256 KiB";
    return TUSC_EINVALID_ARGUMENT;
  }
  tusc_s3_creds_t creds;
  memset(&creds, 0, sizeof(creds));
  if (opts->access_key == NULL) {
    rc = tusc_s3_creds_load(&creds);
    if (rc != 0) {
      *why = "no credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the shared "
             "credentials file)";
      return TUSC_EINVALID_ARGUMENT;
    }
  }
  s3_store_t *st = calloc(1, sizeof(*st));
  if (st == NULL) {
    tusc_s3_creds_dispose(&creds);
    return TUSC_ENOMEM;
  }
  tusc_s3_options_t so = {
      .endpoint = opts->endpoint,
      .disable_ssl = opts->disable_ssl,
      .bucket = opts->bucket,
      .path_style = opts->path_style,
      .access_key = opts->access_key != NULL ? opts->access_key : creds.access_key,
      .secret_key = opts->access_key != NULL ? opts->secret_key : creds.secret_key,
      .session_token = opts->access_key != NULL ? opts->session_token : creds.session_token,
      .region = opts->region != NULL ? opts->region : creds.region,
  };
  rc = tusc_s3_new(&so, &st->s3);
  tusc_s3_creds_dispose(&creds);
  if (rc != 0) {
    *why = "bad S3 settings (endpoint, bucket name or credentials)";
    free(st);
    return rc;
  }
  st->prefix = strdup(opts->prefix != NULL ? opts->prefix : "");
  if (st->prefix == NULL || uv_mutex_init(&st->mutex) != 0) {
    tusc_s3_free(st->s3);
    free(st->prefix);
    free(st);
    return TUSC_ENOMEM;
  }
  st->base.async = &s3_store_ops;
  st->part_size = P;
  st->min_part = opts->min_part_size > 0 ? opts->min_part_size : TUSC_S3_MIN_PART_SIZE;
  st->conc =
      opts->concurrent_part_uploads > 0 ? opts->concurrent_part_uploads : DEFAULT_CONCURRENCY;
  st->budget = budget;
  *out = &st->base;
  return 0;
}

int64_t tusc_s3_store_part_size(const tusc_store_t *store) {
  return ((const s3_store_t *)store)->part_size;
}

int64_t tusc_s3_store_buffer_used(tusc_store_t *store) {
  s3_store_t *st = (s3_store_t *)store;
  uv_mutex_lock(&st->mutex);
  int64_t used = st->used;
  uv_mutex_unlock(&st->mutex);
  return used;
}

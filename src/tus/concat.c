/*
 * concat — Upload-Concat parsing and final-upload assembly (see concat.h).
 *
 * Lock order: the final's lock first, then the partials' locks in ascending ID order.
 * Requests on a partial never wait for a final's lock, so two assemblies sharing
 * partials cannot wait for each other in a cycle.
 *
 * Why notes plus a re-check cannot lose a final: the PATCH that completes partial P
 * makes P's bytes visible before it takes P's notes; a new final F adds its note before
 * it checks its partials. Either the take sees F's note, or F's check sees P complete.
 * Assembly runs under the final's lock and is idempotent, so running it twice is
 * harmless.
 */
#include "tus/concat.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/error.h"
#include "common/log.h"
#include "metrics/metrics.h"
#include "tus/headers.h"

#define COPY_CHUNK (256 * 1024)

/* --- parsing ------------------------------------------------------------------------ */

static bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

static bool starts_with_nocase(const char *s, size_t len, const char *prefix) {
  size_t n = strlen(prefix);
  return len >= n && strncasecmp(s, prefix, n) == 0;
}

static bool starts_with(const char *s, size_t len, const char *prefix) {
  size_t n = prefix != NULL ? strlen(prefix) : 0;
  return n > 0 && len >= n && memcmp(s, prefix, n) == 0;
}

/* One URL of a final's list → an upload ID in id (TUSC_ID_MAX + 1 bytes). */
static int url_to_id(const char *url, size_t len, const char *collection_path,
                     const char *base_path, char *id) {
  const char *path = url;
  size_t path_len = len;
  size_t scheme = starts_with_nocase(url, len, "http://")    ? 7
                  : starts_with_nocase(url, len, "https://") ? 8
                                                             : 0;
  if (scheme > 0) {
    const char *slash = memchr(url + scheme, '/', len - scheme);
    if (slash == NULL || slash == url + scheme)
      return TUSC_EINVALID_CONCAT;
    path = slash;
    path_len = len - (size_t)(slash - url);
  }
  if (path_len == 0 || path[0] != '/' || memchr(path, '?', path_len) != NULL ||
      memchr(path, '#', path_len) != NULL)
    return TUSC_EINVALID_CONCAT;
  size_t skip = 0;
  if (starts_with(path, path_len, collection_path))
    skip = strlen(collection_path);
  else if (starts_with(path, path_len, base_path))
    skip = strlen(base_path);
  else
    return TUSC_EINVALID_CONCAT;
  if (skip >= path_len)
    return TUSC_EINVALID_CONCAT;
  long n = tusc_url_decode(path + skip, path_len - skip, id, TUSC_ID_MAX + 1);
  if (n <= 0 || !tusc_id_valid(id, (size_t)n) || strlen(id) != (size_t)n)
    return TUSC_EINVALID_CONCAT;
  return 0;
}

static void free_ids(char **ids, size_t count) {
  for (size_t i = 0; i < count; i++)
    free(ids[i]);
  free(ids);
}

int tusc_concat_parse(const char *value, size_t len, const char *collection_path,
                      const char *base_path, tusc_concat_t *out) {
  static const char final_prefix[] = "final;";
  const size_t final_len = sizeof(final_prefix) - 1;
  if (value == NULL)
    return TUSC_EINVALID_CONCAT;
  if (len == 7 && memcmp(value, "partial", 7) == 0) {
    memset(out, 0, sizeof(*out));
    out->is_partial = true;
    return 0;
  }
  if (len < final_len || memcmp(value, final_prefix, final_len) != 0)
    return TUSC_EINVALID_CONCAT;

  char **ids = NULL;
  size_t count = 0;
  int rc = 0;
  char id[TUSC_ID_MAX + 1];
  size_t i = final_len;
  for (;;) {
    while (i < len && is_ows(value[i]))
      i++;
    if (i == len)
      break;
    size_t start = i;
    while (i < len && !is_ows(value[i]))
      i++;
    if (count == TUSC_CONCAT_MAX_PARTIALS) {
      rc = TUSC_EINVALID_CONCAT;
      goto fail;
    }
    rc = url_to_id(value + start, i - start, collection_path, base_path, id);
    if (rc != 0)
      goto fail;
    /* A partial listed twice would be copied twice: the final's size no longer says
     * what was uploaded (several finals may share a partial; one final may not). */
    for (size_t k = 0; k < count; k++)
      if (strcmp(ids[k], id) == 0) {
        rc = TUSC_EINVALID_CONCAT;
        goto fail;
      }
    char **grown = realloc(ids, (count + 1) * sizeof(*ids));
    if (grown == NULL) {
      rc = TUSC_ENOMEM;
      goto fail;
    }
    ids = grown;
    ids[count] = strdup(id);
    if (ids[count] == NULL) {
      rc = TUSC_ENOMEM;
      goto fail;
    }
    count++;
  }
  if (count == 0) {
    rc = TUSC_EINVALID_CONCAT;
    goto fail;
  }
  memset(out, 0, sizeof(*out));
  out->is_final = true;
  out->ids = ids;
  out->count = count;
  return 0;

fail:
  free_ids(ids, count);
  return rc;
}

void tusc_concat_dispose(tusc_concat_t *c) {
  if (c == NULL)
    return;
  free_ids(c->ids, c->count);
  c->ids = NULL;
  c->count = 0;
}

const char *tusc_concat_url_path(const char *url) {
  const char *sep = strstr(url, "://");
  if (sep == NULL)
    return url;
  const char *slash = strchr(sep + 3, '/');
  return slash != NULL ? slash : "/";
}

/* --- checks ------------------------------------------------------------------------ */

static bool info_complete(const tusc_upload_info_t *info) {
  return !info->size_is_deferred && info->size >= 0 && info->offset == info->size;
}

bool tusc_concat_too_big(const tusc_upload_info_t *info, int64_t max_size) {
  return info->is_final && max_size > 0 && !info->size_is_deferred && info->size > max_size;
}

int tusc_concat_format_final(const tusc_upload_info_t *info, const char *collection, char *out,
                             size_t cap) {
  size_t used = 0;
  int n = snprintf(out, cap, "final;");
  if (n < 0 || (size_t)n >= cap)
    return UV_ENOBUFS;
  used = (size_t)n;
  for (size_t i = 0; i < info->partial_count; i++) {
    n = snprintf(out + used, cap - used, "%s%s%s", i > 0 ? " " : "", collection,
                 info->partial_uploads[i]);
    if (n < 0 || (size_t)n >= cap - used)
      return UV_ENOBUFS;
    used += (size_t)n;
  }
  return 0;
}

/* --- the same checks on asynchronously read infos ----------------------------------- */

static void parts_next(tusc_concat_parts_t *p);

static void on_part_loaded(tusc_store_req_t *req, int status) {
  tusc_concat_parts_t *p = req->data;
  p->rc[p->next] = status;
  p->next++;
  parts_next(p);
}

static void parts_next(tusc_concat_parts_t *p) {
  while (p->next < p->count) {
    p->sreq.data = p;
    int rc = tusc_store_get_info(p->store, p->loop, &p->sreq, p->ids[p->next], &p->infos[p->next],
                                 on_part_loaded);
    if (rc == 0)
      return;
    p->rc[p->next++] = rc; /* from a store callback, so looping on is never inline */
  }
  p->cb(p, p->arg);
}

static void on_parts_start(tusc_store_req_t *req, int status) {
  (void)status;
  parts_next(req->data);
}

int tusc_concat_parts_load(tusc_concat_parts_t *parts, tusc_store_t *store, uv_loop_t *loop,
                           const char *const *ids, size_t n, tusc_concat_parts_cb cb, void *arg) {
  memset(parts, 0, sizeof(*parts));
  parts->rc = calloc(n > 0 ? n : 1, sizeof(*parts->rc));
  parts->infos = calloc(n > 0 ? n : 1, sizeof(*parts->infos));
  if (parts->rc == NULL || parts->infos == NULL) {
    tusc_concat_parts_dispose(parts);
    return TUSC_ENOMEM;
  }
  for (size_t i = 0; i < n; i++)
    tusc_upload_info_init(&parts->infos[i]);
  parts->count = n;
  parts->store = store;
  parts->loop = loop;
  parts->ids = ids;
  parts->cb = cb;
  parts->arg = arg;
  if (n > 0) {
    parts_next(parts);
    return 0;
  }
  /* Nothing to read: still call back later, never inline. */
  parts->sreq.data = parts;
  int rc = tusc_store_get_info(store, loop, &parts->sreq, "", &parts->infos[0], on_parts_start);
  if (rc != 0) {
    tusc_concat_parts_dispose(parts);
    return rc;
  }
  return 0;
}

void tusc_concat_parts_dispose(tusc_concat_parts_t *parts) {
  if (parts->infos != NULL) {
    for (size_t i = 0; i < (parts->count > 0 ? parts->count : 1); i++)
      tusc_upload_info_dispose(&parts->infos[i]);
  }
  free(parts->infos);
  free(parts->rc);
  parts->infos = NULL;
  parts->rc = NULL;
  parts->count = 0;
}

int tusc_concat_prepare_final_parts(const tusc_concat_t *c, const tusc_concat_parts_t *parts,
                                    int64_t max_size, tusc_upload_info_t *final,
                                    tusc_concat_visible_cb visible, void *arg) {
  if (!c->is_final || c->count == 0 || parts->count != c->count)
    return TUSC_EINVALID_CONCAT;
  int64_t sum = 0;
  bool known = true;
  for (size_t i = 0; i < c->count; i++) {
    const tusc_upload_info_t *p = &parts->infos[i];
    int rc = parts->rc[i];
    if (rc == 0 && visible != NULL && !visible(p, arg))
      rc = TUSC_ENOT_FOUND;
    if (rc == TUSC_ENOT_FOUND || rc == TUSC_EINVALID_ID || rc == TUSC_EGONE)
      return TUSC_EINVALID_CONCAT;
    if (rc < 0)
      return rc;
    if (!p->is_partial)
      return TUSC_EINVALID_CONCAT;
    if (p->size_is_deferred || p->size < 0)
      known = false;
    else if (p->size > INT64_MAX - sum)
      return TUSC_EMAX_SIZE_EXCEEDED;
    else
      sum += p->size;
  }
  if (max_size > 0 && sum > max_size)
    return TUSC_EMAX_SIZE_EXCEEDED;
  char **ids = calloc(c->count, sizeof(*ids));
  if (ids == NULL)
    return TUSC_ENOMEM;
  for (size_t i = 0; i < c->count; i++) {
    ids[i] = strdup(c->ids[i]);
    if (ids[i] == NULL) {
      free_ids(ids, i);
      return TUSC_ENOMEM;
    }
  }
  free_ids(final->partial_uploads, final->partial_count);
  final->partial_uploads = ids;
  final->partial_count = c->count;
  final->is_final = true;
  final->is_partial = false;
  final->size = known ? sum : -1;
  final->size_is_deferred = !known;
  return 0;
}

bool tusc_concat_needs_parts(const tusc_upload_info_t *info) {
  return info->is_final && info->partial_count > 0 && !info_complete(info);
}

bool tusc_concat_status_parts(tusc_upload_info_t *info, const tusc_concat_parts_t *parts) {
  if (!tusc_concat_needs_parts(info) || parts->count != info->partial_count)
    return false;
  bool all_complete = true, all_known = true;
  int64_t sum = 0;
  for (size_t i = 0; i < parts->count; i++) {
    const tusc_upload_info_t *p = &parts->infos[i];
    if (parts->rc[i] < 0)
      return false;
    if (!info_complete(p))
      all_complete = false;
    if (p->size_is_deferred || p->size < 0 || p->size > INT64_MAX - sum)
      all_known = false;
    else
      sum += p->size;
  }
  if (info->size_is_deferred && all_known) {
    info->size = sum;
    info->size_is_deferred = false;
  }
  return all_complete && !info_complete(info);
}

bool tusc_concat_partial_missing_parts(const tusc_upload_info_t *info,
                                       const tusc_concat_parts_t *parts) {
  if (!tusc_concat_needs_parts(info) || parts->count != info->partial_count)
    return false;
  for (size_t i = 0; i < parts->count; i++) {
    int rc = parts->rc[i];
    if (rc == TUSC_ENOT_FOUND || rc == TUSC_EINVALID_ID || rc == TUSC_EGONE)
      return true;
  }
  return false;
}

/* --- lock order ------------------------------------------------------------------- */

static int cmp_ids(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The lock set of final `info` after its own lock: its partials, sorted, each once
 * (pointers into info). Returns 0 or TUSC_ENOMEM. */
static int partial_lock_order(const tusc_upload_info_t *info, char ***out, size_t *count) {
  size_t n = info->partial_count;
  char **sorted = malloc((n > 0 ? n : 1) * sizeof(*sorted));
  if (sorted == NULL)
    return TUSC_ENOMEM;
  if (n > 0) {
    memcpy(sorted, info->partial_uploads, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), cmp_ids);
  }
  size_t unique = 0;
  for (size_t i = 0; i < n; i++)
    if (unique == 0 || strcmp(sorted[i], sorted[unique - 1]) != 0)
      sorted[unique++] = sorted[i];
  *out = sorted;
  *count = unique;
  return 0;
}

/* --- jobs: locks taken on the loop, the work done by the asynchronous store ---------- */

/* A job works through a list of finals (one final; or, for a partial that finished, the
 * finals noted with it, read on the pool first). For each final it takes the lock set
 * on the loop through lock.h, one acquire after the other in lock order; the lock
 * asks a busy lock's holder to let go and hands the lock over when it does, until
 * env->lock_wait_ms (for the whole set) has passed. Locks already taken are kept while
 * it waits, which the lock order makes deadlock-free. Only with the whole set held does
 * the pool copy, so no pool thread ever waits for a lock: a stalled client holding a
 * partial costs a pending acquire, not a thread. The job's own locks are never asked
 * for (no on_release_requested): an assembly ends on its own. */

enum job_kind { JOB_PARTIAL, JOB_ASSEMBLE, JOB_CREATED, JOB_MARK };
enum job_stage { STAGE_START, STAGE_LOCK, STAGE_BUSY, STAGE_END };

struct tusc_concat_job_s {
  uv_loop_t *loop;
  tusc_concat_env_t env;
  enum job_kind kind;
  enum job_stage stage;
  bool abandoned;
  tusc_concat_done_cb cb;
  void *arg;
  uv_timer_t timer;
  char id[TUSC_ID_MAX + 1]; /* the partial (JOB_PARTIAL) or the final */
  int status;               /* the first error, 0 = none */
  char **finals;            /* to do, in order */
  size_t count, next;
  char **done; /* finals this job completed (each also in `finals`: moved) */
  size_t done_count;
  /* the lock set of finals[next]: the final's own lock, then its partials ascending */
  tusc_upload_info_t info;
  char **order;
  size_t lock_count, locked; /* reqs[0..locked) held; in STAGE_LOCK reqs[locked] pending */
  tusc_lock_req_t *reqs;
  uint64_t deadline; /* loop time */
  /* the store's requests (one at a time) and what they bring */
  tusc_store_req_t sreq;
  tusc_concat_parts_t parts;
  tusc_upload_t *final; /* open while the lock set is held */
  int64_t sum;
  int work_rc;
  bool work_now;
};

static void job_next(tusc_concat_job_t *job);
static void plan_skip(tusc_concat_job_t *job, int rc);

static void set_status(tusc_concat_job_t *job, int rc) {
  if (rc < 0 && job->status == 0)
    job->status = rc;
}

static void job_release(tusc_concat_job_t *job) {
  tusc_store_close(job->final);
  job->final = NULL;
  tusc_concat_parts_dispose(&job->parts);
  for (size_t i = 0; i < job->locked; i++)
    tusc_lock_release(&job->reqs[i]);
  free(job->reqs);
  free(job->order);
  job->reqs = NULL;
  job->order = NULL;
  job->lock_count = job->locked = 0;
  tusc_upload_info_dispose(&job->info);
  tusc_upload_info_init(&job->info);
}

static void on_job_closed(uv_handle_t *handle) {
  tusc_concat_job_t *job = handle->data;
  free_ids(job->finals, job->count);
  free_ids(job->done, job->done_count); /* its strings were moved out of `finals` */
  free(job);
}

static void job_end(tusc_concat_job_t *job) {
  job_release(job);
  job->stage = STAGE_END;
  uv_timer_stop(&job->timer);
  if (job->abandoned)
    set_status(job, UV_ECANCELED);
  if (job->cb != NULL)
    job->cb(job->arg, job->status, job->done, job->done_count);
  uv_close((uv_handle_t *)&job->timer, on_job_closed);
}

/* The finals noted with the partial, sorted, each once. */
static void on_notes_taken(tusc_store_req_t *req, int status) {
  tusc_concat_job_t *job = req->data;
  if (status < 0) {
    TUSC_LOG(TUSC_LOG_WARN, "concat: reading the finals waiting for %s: %s", job->id,
             tusc_strerror(status));
    set_status(job, status);
  } else {
    char **finals = req->ids;
    size_t count = req->id_count;
    if (count > 1)
      qsort(finals, count, sizeof(*finals), cmp_ids);
    size_t unique = 0;
    for (size_t i = 0; i < count; i++) {
      if (unique > 0 && strcmp(finals[i], finals[unique - 1]) == 0)
        free(finals[i]);
      else
        finals[unique++] = finals[i];
    }
    job->finals = finals;
    job->count = unique;
  }
  job_next(job);
}

/* --- with the lock set held: the store's requests, one after the other --------------- */

/* The held stage of finals[next] ended with `rc`; `now`: this job completed it. */
static void held_done(tusc_concat_job_t *job, int rc) {
  const char *final_id = job->finals[job->next];
  job_release(job);
  if (rc < 0 && job->kind != JOB_MARK)
    TUSC_LOG(TUSC_LOG_WARN, "concat %s: assembly failed: %s", final_id, tusc_strerror(rc));
  set_status(job, rc);
  if (job->work_now) {
    /* Moved: finals[next] is not looked at again. */
    job->done[job->done_count++] = job->finals[job->next];
    job->finals[job->next] = NULL;
  }
  job->next++;
  job_next(job);
}

static void on_marked(tusc_store_req_t *req, int status) {
  tusc_concat_job_t *job = req->data;
  if (status < 0)
    tusc_store_info(job->final)->finish_hooks = TUSC_FINISH_HOOKS_PENDING;
  job->work_now = status == 0;
  held_done(job, status);
}

static void on_assembled(tusc_store_req_t *req, int status) {
  tusc_concat_job_t *job = req->data;
  if (status == 0) {
    job->work_now = true;
    if (job->kind != JOB_CREATED) {
      const tusc_upload_info_t *info = tusc_store_info(job->final);
      char size_s[24];
      snprintf(size_s, sizeof(size_s), "%lld", (long long)info->size);
      tusc_log_event(TUSC_LOG_INFO, "UploadFinished", "id", info->id, "size", size_s, NULL);
      tusc_metrics_upload_finished();
    }
  }
  held_done(job, status);
}

/* Appends the partials' bytes to the final (the store truncates a leftover of an
 * assembly that crashed midway first, and syncs). */
static void held_concat(tusc_concat_job_t *job) {
  tusc_upload_info_t *info = tusc_store_info(job->final);
  /* Lease locks (Redis) must still be ours before the final is completed. */
  for (size_t i = 0; i < job->locked; i++) {
    if (tusc_lock_check(&job->reqs[i]) == TUSC_ELOCK_LOST) {
      held_done(job, TUSC_ELOCK_LOST);
      return;
    }
  }
  job->sreq.data = job;
  int rc = tusc_store_concat(job->final, (const char *const *)info->partial_uploads,
                             info->partial_count, &job->sreq, on_assembled);
  if (rc < 0)
    held_done(job, rc);
}

static void on_length_saved(tusc_store_req_t *req, int status) {
  tusc_concat_job_t *job = req->data;
  if (status < 0) {
    tusc_upload_info_t *info = tusc_store_info(job->final);
    info->size = -1;
    info->size_is_deferred = true;
    held_done(job, status);
    return;
  }
  held_concat(job);
}

/* The partials, read again under their locks: all complete → the length (saved when it
 * was deferred), then the copy. */
static void on_held_parts(tusc_concat_parts_t *parts, void *arg) {
  tusc_concat_job_t *job = arg;
  tusc_upload_info_t *info = tusc_store_info(job->final);
  int64_t sum = 0;
  for (size_t i = 0; i < parts->count; i++) {
    int rc = parts->rc[i];
    if (rc < 0) {
      held_done(job, rc == TUSC_EINVALID_ID ? TUSC_ENOT_FOUND : rc);
      return;
    }
    const tusc_upload_info_t *p = &parts->infos[i];
    if (!info_complete(p)) {
      held_done(job, 0); /* not ready (or changed since the look): nothing to do */
      return;
    }
    if (p->size > INT64_MAX - sum) {
      held_done(job, TUSC_EMAX_SIZE_EXCEEDED);
      return;
    }
    sum += p->size;
  }
  if (job->env.max_size > 0 && sum > job->env.max_size) {
    /* A deferred partial's length made the final too big after it was created. */
    held_done(job, TUSC_EMAX_SIZE_EXCEEDED);
    return;
  }
  if (info->size_is_deferred) {
    info->size = sum;
    info->size_is_deferred = false;
    job->sreq.data = job;
    int rc = tusc_store_save_info(job->final, &job->sreq, on_length_saved);
    if (rc < 0) {
      info->size = -1;
      info->size_is_deferred = true;
      held_done(job, rc);
    }
    return;
  }
  if (info->size != sum) {
    TUSC_LOG(TUSC_LOG_ERROR, "concat %s: length %lld but partials hold %lld bytes", info->id,
             (long long)info->size, (long long)sum);
    held_done(job, TUSC_EINTERNAL);
    return;
  }
  held_concat(job);
}

static void on_held_open(tusc_store_req_t *req, int status) {
  tusc_concat_job_t *job = req->data;
  if (status < 0) {
    held_done(job, status);
    return;
  }
  job->final = req->upload;
  tusc_upload_info_t *info = tusc_store_info(job->final);
  if (job->kind == JOB_MARK) {
    /* Turns a "pending" FinishHooks state into "done" and saves it. */
    if (info->finish_hooks != TUSC_FINISH_HOOKS_PENDING) {
      held_done(job, 0);
      return;
    }
    info->finish_hooks = TUSC_FINISH_HOOKS_DONE;
    job->sreq.data = job;
    int rc = tusc_store_save_info(job->final, &job->sreq, on_marked);
    if (rc < 0) {
      info->finish_hooks = TUSC_FINISH_HOOKS_PENDING;
      held_done(job, rc);
    }
    return;
  }
  if (!info->is_final || info->partial_count == 0) {
    held_done(job, TUSC_EINVALID_ARGUMENT);
    return;
  }
  if (info_complete(info)) {
    held_done(job, 0);
    return;
  }
  int rc = tusc_concat_parts_load(&job->parts, job->env.store, job->loop,
                                  (const char *const *)info->partial_uploads, info->partial_count,
                                  on_held_parts, job);
  if (rc < 0)
    held_done(job, rc);
}

/* With every lock of the set held: the assembly (or the mark) through the store. */
static int held_start(tusc_concat_job_t *job) {
  job->stage = STAGE_BUSY;
  job->work_now = false;
  job->sreq.data = job;
  return tusc_store_open(job->env.store, job->loop, &job->sreq, job->finals[job->next],
                         on_held_open);
}

static void on_job_lock(tusc_lock_req_t *req, int status);

/* Takes the next lock of the set, or, with all held, starts the store's work. Returns 1
 * while an acquire is pending (on_job_lock comes back), 0 when the store's work is
 * started, or a negative code (nothing held any more). */
static int job_lock(tusc_concat_job_t *job) {
  if (job->locked < job->lock_count) {
    uint64_t now = uv_now(job->loop);
    int64_t left = job->deadline > now ? (int64_t)(job->deadline - now) : 0;
    tusc_lock_req_t *req = &job->reqs[job->locked];
    memset(req, 0, sizeof(*req));
    req->data = job;
    int rc = tusc_lock_acquire(job->env.lock, job->loop, req, job->order[job->locked], left,
                               on_job_lock);
    if (rc < 0) {
      job_release(job);
      return rc;
    }
    job->stage = STAGE_LOCK;
    return 1;
  }
  int rc = held_start(job);
  if (rc < 0) {
    job_release(job);
    return rc;
  }
  return 0;
}

static void on_job_lock(tusc_lock_req_t *req, int status) {
  tusc_concat_job_t *job = req->data;
  int rc = status;
  if (rc == 0) {
    job->locked++;
    /* The requester is gone: let go of what is held. */
    rc = job->abandoned ? UV_ECANCELED : job_lock(job);
    if (rc >= 0)
      return;
  }
  job_release(job);
  /* No shard directory for the lock file: no such upload. */
  if (rc == TUSC_EINVALID_ID || rc == -ENOENT || rc == -ENOTDIR)
    rc = TUSC_ENOT_FOUND;
  TUSC_LOG(TUSC_LOG_WARN, "concat %s: not assembled: %s", job->finals[job->next],
           tusc_strerror(rc));
  set_status(job, rc);
  job->next++;
  job_next(job);
}

/* The lock set of finals[next] (its info in job->info, its partials' in job->parts for
 * an assembly), then the first lock. */
static void plan_locks(tusc_concat_job_t *job) {
  size_t partials = 0;
  char **order = NULL;
  int rc = 0;
  if (job->kind != JOB_MARK && (rc = partial_lock_order(&job->info, &order, &partials)) < 0) {
    plan_skip(job, rc);
    return;
  }
  tusc_concat_parts_dispose(&job->parts);
  job->order = malloc((partials + 1) * sizeof(*job->order));
  job->reqs = calloc(partials + 1, sizeof(*job->reqs));
  if (job->order == NULL || job->reqs == NULL) {
    free(order);
    plan_skip(job, TUSC_ENOMEM);
    return;
  }
  job->order[0] = job->finals[job->next];
  if (partials > 0)
    memcpy(job->order + 1, order, partials * sizeof(*order));
  free(order);
  job->lock_count = partials + 1;
  job->locked = 0;
  /* Without time to wait (0) each lock is tried once and nobody is asked to let go. */
  job->deadline =
      uv_now(job->loop) + (uint64_t)(job->env.lock_wait_ms > 0 ? job->env.lock_wait_ms : 0);
  rc = job_lock(job);
  if (rc < 0)
    plan_skip(job, rc);
}

/* Cheap look before locking: with an unfinished partial there is nothing to lock. */
static void on_plan_parts(tusc_concat_parts_t *parts, void *arg) {
  tusc_concat_job_t *job = arg;
  if (!tusc_concat_status_parts(&job->info, parts)) {
    plan_skip(job, 1);
    return;
  }
  if (tusc_concat_too_big(&job->info, job->env.max_size)) {
    plan_skip(job, TUSC_EMAX_SIZE_EXCEEDED);
    return;
  }
  plan_locks(job);
}

static void on_plan_info(tusc_store_req_t *req, int status) {
  tusc_concat_job_t *job = req->data;
  if (status < 0) {
    plan_skip(job, status == TUSC_EINVALID_ID || status == TUSC_EGONE ? TUSC_ENOT_FOUND : status);
    return;
  }
  if (!job->info.is_final) {
    plan_skip(job, TUSC_EINVALID_ARGUMENT);
    return;
  }
  if (!tusc_concat_needs_parts(&job->info)) {
    plan_skip(job, 1); /* assembled already */
    return;
  }
  int rc = tusc_concat_parts_load(&job->parts, job->env.store, job->loop,
                                  (const char *const *)job->info.partial_uploads,
                                  job->info.partial_count, on_plan_parts, job);
  if (rc < 0)
    plan_skip(job, rc);
}

/* Starts the plan for finals[next]: 0, or a negative code (nothing started). */
static int job_plan(tusc_concat_job_t *job) {
  if (job->kind == JOB_MARK) {
    plan_locks(job);
    return 0;
  }
  job->sreq.data = job;
  return tusc_store_get_info(job->env.store, job->loop, &job->sreq, job->finals[job->next],
                             &job->info, on_plan_info);
}

/* job->done needs room for every final; known only once the notes are read. */
static int job_done_room(tusc_concat_job_t *job) {
  if (job->done != NULL || job->count == 0)
    return 0;
  job->done = calloc(job->count, sizeof(*job->done));
  return job->done != NULL ? 0 : TUSC_ENOMEM;
}

/* finals[next] needs nothing (1) or cannot be done (< 0): on to the next. */
static void plan_skip(tusc_concat_job_t *job, int rc) {
  job_release(job);
  if (rc < 0) {
    TUSC_LOG(TUSC_LOG_WARN, "concat %s: not assembled: %s", job->finals[job->next],
             tusc_strerror(rc));
    set_status(job, rc);
  }
  job->next++;
  job_next(job);
}

/* On to the next final that needs work, or the end. Every step that follows comes from
 * a callback (lock, store) or starts one, so this never recurses deeply. */
static void job_next(tusc_concat_job_t *job) {
  if (job_done_room(job) < 0) {
    set_status(job, TUSC_ENOMEM);
    job->next = job->count;
  }
  while (job->next < job->count && !job->abandoned) {
    int rc = job_plan(job);
    if (rc == 0)
      return; /* looking, taking a lock or working in the store */
    job_release(job);
    TUSC_LOG(TUSC_LOG_WARN, "concat %s: not assembled: %s", job->finals[job->next],
             tusc_strerror(rc));
    set_status(job, rc);
    job->next++;
  }
  job_end(job);
}

/* The job's start, from a timer so that cb never runs before the start function
 * returned. */
static void on_job_start(uv_timer_t *timer) {
  tusc_concat_job_t *job = timer->data;
  if (job->kind == JOB_PARTIAL) {
    job->stage = STAGE_BUSY;
    job->sreq.data = job;
    int rc = tusc_store_wait_take(job->env.store, job->loop, &job->sreq, job->id, on_notes_taken);
    if (rc < 0) {
      if (rc != TUSC_ENOT_IMPLEMENTED)
        set_status(job, rc);
      job_end(job);
    }
    return;
  }
  job_next(job);
}

static int job_start(uv_loop_t *loop, const tusc_concat_env_t *env, const char *id,
                     enum job_kind kind, tusc_concat_done_cb cb, void *arg,
                     tusc_concat_job_t **out) {
  tusc_concat_job_t *job = calloc(1, sizeof(*job));
  if (job == NULL)
    return TUSC_ENOMEM;
  job->loop = loop;
  job->env = *env;
  job->kind = kind;
  job->cb = cb;
  job->arg = arg;
  tusc_upload_info_init(&job->info);
  snprintf(job->id, sizeof(job->id), "%s", id);
  if (kind != JOB_PARTIAL) {
    job->finals = calloc(1, sizeof(*job->finals));
    if (job->finals == NULL || (job->finals[0] = strdup(id)) == NULL) {
      free(job->finals);
      free(job);
      return TUSC_ENOMEM;
    }
    job->count = 1;
  }
  int rc = uv_timer_init(loop, &job->timer);
  if (rc < 0) {
    free_ids(job->finals, job->count);
    free(job);
    return rc;
  }
  job->timer.data = job;
  uv_timer_start(&job->timer, on_job_start, 0, 0);
  if (out != NULL)
    *out = job;
  return 0;
}

int tusc_concat_queue_partial_finished(uv_loop_t *loop, const tusc_concat_env_t *env,
                                       const char *partial_id, tusc_concat_done_cb cb, void *arg) {
  return job_start(loop, env, partial_id, JOB_PARTIAL, cb, arg, NULL);
}

int tusc_concat_queue_assemble(uv_loop_t *loop, const tusc_concat_env_t *env, const char *final_id,
                               tusc_concat_done_cb cb, void *arg, tusc_concat_job_t **job) {
  return job_start(loop, env, final_id, JOB_ASSEMBLE, cb, arg, job);
}

int tusc_concat_queue_created(uv_loop_t *loop, const tusc_concat_env_t *env, const char *final_id,
                              tusc_concat_done_cb cb, void *arg, tusc_concat_job_t **job) {
  return job_start(loop, env, final_id, JOB_CREATED, cb, arg, job);
}

int tusc_concat_queue_finish_hooks_done(uv_loop_t *loop, const tusc_concat_env_t *env,
                                        const char *final_id, tusc_concat_done_cb cb, void *arg) {
  return job_start(loop, env, final_id, JOB_MARK, cb, arg, NULL);
}

void tusc_concat_job_abandon(tusc_concat_job_t *job) {
  if (job == NULL)
    return;
  job->abandoned = true;
  /* A pending acquire ends with UV_ECANCELED (on_job_lock); copying finishes first. */
  if (job->stage == STAGE_LOCK)
    (void)tusc_lock_cancel(&job->reqs[job->locked]);
}

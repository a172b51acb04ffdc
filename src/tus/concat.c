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
#include <time.h>

#include "common/error.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "metrics/metrics.h"
#include "tus/headers.h"

#define LOCK_POLL_MS 10
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

/* --- checks on the loop ------------------------------------------------------------- */

static bool info_complete(const tusc_upload_info_t *info) {
  return !info->size_is_deferred && info->size >= 0 && info->offset == info->size;
}

int tusc_concat_prepare_final(tusc_store_t *store, const tusc_concat_t *c, int64_t max_size,
                              tusc_upload_info_t *final) {
  return tusc_concat_prepare_final_visible(store, c, max_size, final, NULL, NULL);
}

int tusc_concat_prepare_final_visible(tusc_store_t *store, const tusc_concat_t *c, int64_t max_size,
                                      tusc_upload_info_t *final, tusc_concat_visible_cb visible,
                                      void *arg) {
  if (!c->is_final || c->count == 0)
    return TUSC_EINVALID_CONCAT;
  int64_t sum = 0;
  bool known = true;
  for (size_t i = 0; i < c->count; i++) {
    tusc_upload_info_t p;
    tusc_upload_info_init(&p);
    int rc = store->ops->get_info(store, c->ids[i], &p);
    if (rc == 0 && visible != NULL && !visible(&p, arg))
      rc = TUSC_ENOT_FOUND;
    bool partial = p.is_partial;
    bool deferred = p.size_is_deferred || p.size < 0;
    int64_t size = p.size;
    tusc_upload_info_dispose(&p);
    if (rc == TUSC_ENOT_FOUND || rc == TUSC_EINVALID_ID || rc == TUSC_EGONE)
      return TUSC_EINVALID_CONCAT;
    if (rc < 0)
      return rc;
    if (!partial)
      return TUSC_EINVALID_CONCAT;
    if (deferred)
      known = false;
    else if (size > INT64_MAX - sum)
      return TUSC_EMAX_SIZE_EXCEEDED;
    else
      sum += size;
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

bool tusc_concat_status(tusc_store_t *store, tusc_upload_info_t *info) {
  /* An assembled final (the usual case) costs no partial lookups. */
  if (!info->is_final || info->partial_count == 0 || info_complete(info))
    return false;
  bool all_complete = true, all_known = true;
  int64_t sum = 0;
  for (size_t i = 0; i < info->partial_count; i++) {
    tusc_upload_info_t p;
    tusc_upload_info_init(&p);
    int rc = store->ops->get_info(store, info->partial_uploads[i], &p);
    if (rc < 0) {
      tusc_upload_info_dispose(&p);
      return false;
    }
    if (!info_complete(&p))
      all_complete = false;
    if (p.size_is_deferred || p.size < 0 || p.size > INT64_MAX - sum)
      all_known = false;
    else
      sum += p.size;
    tusc_upload_info_dispose(&p);
  }
  if (info->size_is_deferred && all_known) {
    info->size = sum;
    info->size_is_deferred = false;
  }
  return all_complete && !info_complete(info);
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

/* --- assembly (thread pool) --------------------------------------------------------- */

static void sleep_ms(long ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Takes `id`'s lock, polling until env->lock_wait_ms has passed. Nobody is asked to let
 * go: the holders that matter (another assembly, a finishing PATCH) end on their own. */
static int lock_wait(const tusc_concat_env_t *env, const char *id, tusc_lock_holder_t *holder) {
  char path[TUSC_PATH_MAX];
  int rc = env->store->ops->lock_path(env->store, id, path, sizeof(path));
  if (rc < 0)
    return rc;
  memset(holder, 0, sizeof(*holder));
  uint64_t deadline = tusc_now_ms() + (uint64_t)(env->lock_wait_ms > 0 ? env->lock_wait_ms : 0);
  for (;;) {
    rc = tusc_lock_try_acquire(env->locks, id, path, env->file_perms, holder);
    if (rc != TUSC_ELOCKED)
      return rc;
    if (tusc_now_ms() >= deadline)
      return TUSC_ELOCK_TIMEOUT;
    sleep_ms(LOCK_POLL_MS);
  }
}

static int cmp_ids(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int append_by_copy(tusc_store_t *store, tusc_upload_t *dst, tusc_upload_t *src,
                          char **buf) {
  if (*buf == NULL) {
    *buf = malloc(COPY_CHUNK);
    if (*buf == NULL)
      return TUSC_ENOMEM;
  }
  int64_t end = store->ops->info(src)->offset;
  for (int64_t pos = 0; pos < end;) {
    size_t want = end - pos > COPY_CHUNK ? (size_t)COPY_CHUNK : (size_t)(end - pos);
    ssize_t n = store->ops->read(src, pos, *buf, want);
    if (n <= 0)
      return n < 0 ? (int)n : TUSC_EINTERNAL;
    for (ssize_t done = 0; done < n;) {
      ssize_t w = store->ops->write(dst, store->ops->info(dst)->offset, *buf + done,
                                    (size_t)(n - done));
      if (w <= 0)
        return w < 0 ? (int)w : TUSC_EINTERNAL;
      done += w;
    }
    pos += n;
  }
  return 0;
}

/* The assembly proper, with the final locked and open. `report`: log UploadFinished and
 * count it (else the caller does). *now: this call is the one that completed it (so
 * exactly one caller reports it and runs its finish hooks). */
static int assemble_locked(const tusc_concat_env_t *env, tusc_upload_t *final, bool *complete,
                           bool report, bool *now) {
  tusc_store_t *store = env->store;
  tusc_upload_info_t *info = store->ops->info(final);
  size_t n = info->partial_count;
  if (!info->is_final || n == 0)
    return TUSC_EINVALID_ARGUMENT;
  if (info_complete(info)) {
    *complete = true;
    return 0;
  }

  /* Cheap look first: with an unfinished partial there is nothing to lock or do. */
  for (size_t i = 0; i < n; i++) {
    tusc_upload_info_t p;
    tusc_upload_info_init(&p);
    int rc = store->ops->get_info(store, info->partial_uploads[i], &p);
    bool done = rc == 0 && info_complete(&p);
    tusc_upload_info_dispose(&p);
    if (rc < 0)
      return rc == TUSC_EINVALID_ID ? TUSC_ENOT_FOUND : rc;
    if (!done)
      return 0;
  }

  int rc = 0;
  char *copy_buf = NULL;
  char **sorted = malloc(n * sizeof(*sorted));
  tusc_lock_holder_t *holders = calloc(n, sizeof(*holders));
  tusc_upload_t **parts = calloc(n, sizeof(*parts));
  size_t locked = 0;
  if (sorted == NULL || holders == NULL || parts == NULL) {
    rc = TUSC_ENOMEM;
    goto out;
  }
  memcpy(sorted, info->partial_uploads, n * sizeof(*sorted));
  qsort(sorted, n, sizeof(*sorted), cmp_ids);
  for (size_t i = 0; i < n; i++) {
    if (i > 0 && strcmp(sorted[i], sorted[i - 1]) == 0)
      continue;
    rc = lock_wait(env, sorted[i], &holders[locked]);
    if (rc < 0)
      goto out;
    locked++;
  }

  int64_t sum = 0;
  for (size_t i = 0; i < n; i++) {
    rc = store->ops->open(store, info->partial_uploads[i], &parts[i]);
    if (rc < 0) {
      parts[i] = NULL;
      goto out;
    }
    tusc_upload_info_t *p = store->ops->info(parts[i]);
    if (!info_complete(p))
      goto out; /* changed since the look above (e.g. deleted and recreated): not ready */
    if (p->size > INT64_MAX - sum) {
      rc = TUSC_EINTERNAL;
      goto out;
    }
    sum += p->size;
  }
  if (info->size_is_deferred) {
    info->size = sum;
    info->size_is_deferred = false;
    rc = store->ops->save_info(final);
    if (rc < 0) {
      info->size = -1;
      info->size_is_deferred = true;
      goto out;
    }
  } else if (info->size != sum) {
    TUSC_LOG(TUSC_LOG_ERROR, "concat %s: length %lld but partials hold %lld bytes", info->id,
             (long long)info->size, (long long)sum);
    rc = TUSC_EINTERNAL;
    goto out;
  }
  /* Left over from an assembly that crashed midway: start again. */
  if (info->offset > 0 && (rc = store->ops->truncate(final, 0)) < 0)
    goto out;
  for (size_t i = 0; i < n && rc == 0; i++)
    rc = store->ops->append_from != NULL ? store->ops->append_from(final, parts[i])
                                         : append_by_copy(store, final, parts[i], &copy_buf);
  if (rc == 0)
    rc = store->ops->sync(final);
  if (rc < 0) {
    if (info->offset > 0)
      (void)store->ops->truncate(final, 0);
    goto out;
  }
  *complete = true;
  *now = true;
  if (report) {
    char size_s[24];
    snprintf(size_s, sizeof(size_s), "%lld", (long long)info->size);
    tusc_log_event(TUSC_LOG_INFO, "UploadFinished", "id", info->id, "size", size_s, NULL);
    tusc_metrics_upload_finished();
  }

out:
  if (parts != NULL)
    for (size_t i = 0; i < n; i++)
      if (parts[i] != NULL)
        store->ops->close(parts[i]);
  for (size_t i = 0; i < locked; i++)
    tusc_lock_release(env->locks, &holders[i]);
  free(parts);
  free(holders);
  free(sorted);
  free(copy_buf);
  return rc;
}

static int assemble(const tusc_concat_env_t *env, const char *final_id, bool *complete,
                    bool report, bool *assembled) {
  bool done = false, now = false;
  if (complete != NULL)
    *complete = false;
  if (assembled != NULL)
    *assembled = false;
  tusc_lock_holder_t holder;
  int rc = lock_wait(env, final_id, &holder);
  /* No shard directory for the lock file: no such upload. */
  if (rc == TUSC_EINVALID_ID || rc == -ENOENT || rc == -ENOTDIR)
    return TUSC_ENOT_FOUND;
  if (rc < 0)
    return rc;
  tusc_upload_t *final = NULL;
  rc = env->store->ops->open(env->store, final_id, &final);
  if (rc == 0) {
    rc = assemble_locked(env, final, &done, report, &now);
    env->store->ops->close(final);
  }
  tusc_lock_release(env->locks, &holder);
  if (rc < 0)
    TUSC_LOG(TUSC_LOG_WARN, "concat %s: assembly failed: %s", final_id, tusc_strerror(rc));
  if (complete != NULL)
    *complete = done;
  if (assembled != NULL)
    *assembled = now;
  return rc;
}

int tusc_concat_assemble(const tusc_concat_env_t *env, const char *final_id, bool *complete) {
  return assemble(env, final_id, complete, true, NULL);
}

int tusc_concat_assemble_now(const tusc_concat_env_t *env, const char *final_id,
                             bool *assembled) {
  return assemble(env, final_id, NULL, true, assembled);
}

int tusc_concat_final_created(const tusc_concat_env_t *env, const tusc_upload_info_t *info) {
  return tusc_concat_create_final(env, info, NULL);
}

int tusc_concat_create_final(const tusc_concat_env_t *env, const tusc_upload_info_t *info,
                             bool *assembled) {
  tusc_store_t *store = env->store;
  if (store->ops->wait_add != NULL) {
    for (size_t i = 0; i < info->partial_count; i++) {
      const char *pid = info->partial_uploads[i];
      tusc_upload_info_t p;
      tusc_upload_info_init(&p);
      int rc = store->ops->get_info(store, pid, &p);
      bool done = rc == 0 && info_complete(&p);
      tusc_upload_info_dispose(&p);
      if (done)
        continue;
      rc = store->ops->wait_add(store, pid, info->id);
      /* Not fatal: HEAD/GET of the final still assemble it once its partials are done. */
      if (rc < 0)
        TUSC_LOG(TUSC_LOG_WARN, "concat %s: cannot note it with partial %s: %s", info->id, pid,
                 tusc_strerror(rc));
    }
  }
  /* Finished here, it is the creating request that reports it (and runs finish hooks);
   * a final that a partial's background job completed meanwhile is that job's. */
  return assemble(env, info->id, NULL, false, assembled);
}

/* Assembles the finals noted with partial_id. With `done` (may be NULL), the IDs of the
 * finals this call completed are moved there (malloc'd array of malloc'd IDs). */
static void partial_finished(const tusc_concat_env_t *env, const char *partial_id,
                             char ***done, size_t *done_count) {
  tusc_store_t *store = env->store;
  if (store->ops->wait_take == NULL)
    return;
  char **finals = NULL;
  size_t count = 0;
  int rc = store->ops->wait_take(store, partial_id, &finals, &count);
  if (rc < 0) {
    TUSC_LOG(TUSC_LOG_WARN, "concat: reading the finals waiting for %s: %s", partial_id,
             tusc_strerror(rc));
    return;
  }
  if (count > 1)
    qsort(finals, count, sizeof(*finals), cmp_ids);
  size_t unique = 0;
  for (size_t i = 0; i < count; i++) {
    if (unique > 0 && strcmp(finals[i], finals[unique - 1]) == 0)
      free(finals[i]);
    else
      finals[unique++] = finals[i];
  }
  count = unique;
  size_t kept = 0;
  for (size_t i = 0; i < count; i++) {
    bool now = false;
    (void)tusc_concat_assemble_now(env, finals[i], &now);
    if (now && done != NULL) {
      /* Compacted in place; slot `kept` (before i) holds an ID already dealt with. */
      char *id = finals[i];
      finals[i] = NULL;
      if (kept != i)
        free(finals[kept]);
      finals[kept++] = id;
    }
  }
  if (done != NULL && kept > 0) {
    for (size_t i = kept; i < count; i++)
      free(finals[i]);
    *done = finals;
    *done_count = kept;
    return;
  }
  free_ids(finals, count);
}

void tusc_concat_partial_finished(const tusc_concat_env_t *env, const char *partial_id) {
  partial_finished(env, partial_id, NULL, NULL);
}

int tusc_concat_finish_hooks_done(const tusc_concat_env_t *env, const char *final_id,
                                  bool *marked) {
  *marked = false;
  tusc_lock_holder_t holder;
  int rc = lock_wait(env, final_id, &holder);
  if (rc < 0)
    return rc;
  tusc_upload_t *final = NULL;
  rc = env->store->ops->open(env->store, final_id, &final);
  if (rc == 0) {
    tusc_upload_info_t *info = env->store->ops->info(final);
    if (info->finish_hooks == TUSC_FINISH_HOOKS_PENDING) {
      info->finish_hooks = TUSC_FINISH_HOOKS_DONE;
      rc = env->store->ops->save_info(final);
      if (rc < 0)
        info->finish_hooks = TUSC_FINISH_HOOKS_PENDING;
      *marked = rc == 0;
    }
    env->store->ops->close(final);
  }
  tusc_lock_release(env->locks, &holder);
  return rc;
}

bool tusc_concat_partial_missing(tusc_store_t *store, const tusc_upload_info_t *info) {
  if (!info->is_final || info->partial_count == 0 || info_complete(info))
    return false;
  for (size_t i = 0; i < info->partial_count; i++) {
    tusc_upload_info_t p;
    tusc_upload_info_init(&p);
    int rc = store->ops->get_info(store, info->partial_uploads[i], &p);
    tusc_upload_info_dispose(&p);
    if (rc == TUSC_ENOT_FOUND || rc == TUSC_EINVALID_ID || rc == TUSC_EGONE)
      return true;
  }
  return false;
}

/* --- fire and forget ---------------------------------------------------------------- */

typedef struct concat_job_s {
  uv_work_t work;
  tusc_concat_env_t env;
  bool partial; /* id is a partial that finished, else a final to assemble */
  char id[TUSC_ID_MAX + 1];
  tusc_concat_done_cb cb;
  void *arg;
  char **done; /* finals this job completed */
  size_t done_count;
} concat_job_t;

static void on_job(uv_work_t *work) {
  concat_job_t *job = work->data;
  char ***done = job->cb != NULL ? &job->done : NULL;
  if (job->partial) {
    partial_finished(&job->env, job->id, done, &job->done_count);
    return;
  }
  bool now = false;
  (void)tusc_concat_assemble_now(&job->env, job->id, &now);
  if (now && done != NULL && (job->done = malloc(sizeof(*job->done))) != NULL &&
      (job->done[0] = strdup(job->id)) != NULL)
    job->done_count = 1;
}

static void on_job_done(uv_work_t *work, int status) {
  (void)status;
  concat_job_t *job = work->data;
  if (job->cb != NULL)
    job->cb(job->arg, job->done, job->done_count);
  free_ids(job->done, job->done_count);
  free(job);
}

static int queue_job(uv_loop_t *loop, const tusc_concat_env_t *env, const char *id,
                     bool partial, tusc_concat_done_cb cb, void *arg) {
  concat_job_t *job = calloc(1, sizeof(*job));
  if (job == NULL)
    return TUSC_ENOMEM;
  job->env = *env;
  job->partial = partial;
  job->cb = cb;
  job->arg = arg;
  snprintf(job->id, sizeof(job->id), "%s", id);
  job->work.data = job;
  int rc = uv_queue_work(loop, &job->work, on_job, on_job_done);
  if (rc < 0)
    free(job);
  return rc;
}

int tusc_concat_queue_partial_finished(uv_loop_t *loop, const tusc_concat_env_t *env,
                                       const char *partial_id) {
  return queue_job(loop, env, partial_id, true, NULL, NULL);
}

int tusc_concat_queue_assemble(uv_loop_t *loop, const tusc_concat_env_t *env,
                               const char *final_id) {
  return queue_job(loop, env, final_id, false, NULL, NULL);
}

int tusc_concat_queue_partial_finished_cb(uv_loop_t *loop, const tusc_concat_env_t *env,
                                          const char *partial_id, tusc_concat_done_cb cb,
                                          void *arg) {
  return queue_job(loop, env, partial_id, true, cb, arg);
}

int tusc_concat_queue_assemble_cb(uv_loop_t *loop, const tusc_concat_env_t *env,
                                  const char *final_id, tusc_concat_done_cb cb, void *arg) {
  return queue_job(loop, env, final_id, false, cb, arg);
}

/*
 * sweep_bench — what expiration costs on a big store (bench/README.md, "Expiration
 * sweeper"). Links libtusc and drives the real file store and tus/expire.c directly,
 * without a server, so that only the sweeper is measured.
 *
 *   sweep_bench DIR [N] [EXPIRED]
 *
 * Fills DIR with N unfinished uploads (kept between runs: a marker file records N), adds
 * EXPIRED uploads whose last activity lies two days back, then measures with
 * -expire-after 24h: the start-up walk that fills the index (time, entries, bytes of
 * index, RSS growth), a sweep that deletes the EXPIRED ones, and sweeps with nothing due
 * (the steady state every minute). Prints one "name value unit" line per figure.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "lock/local.h"
#include "store/store.h"
#include "tus/expire.h"
#include "tus/headers.h"

#define DAY_MS (INT64_C(24) * 3600 * 1000)

static int lock_file(void *store, const char *id, char *out, size_t cap) {
  return tusc_file_store_lock_path(store, id, out, cap);
}

struct swept {
  int calls;
  tusc_expire_stats_t stats;
};

static void on_swept(void *arg, int status, const tusc_expire_stats_t *stats) {
  (void)status;
  struct swept *r = arg;
  r->calls++;
  r->stats = *stats;
}

/* One sweep, as the server's timer starts it, run on `loop` until it ended. */
static int sweep(tusc_expire_t *exp, uv_loop_t *loop, tusc_expire_stats_t *st) {
  struct swept r = {0};
  int rc = tusc_expire_sweep(exp, loop, tusc_expire_now_ms(), on_swept, &r);
  if (rc != 0)
    return rc;
  (void)uv_run(loop, UV_RUN_DEFAULT);
  *st = r.stats;
  return r.calls == 1 ? 0 : -1;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = -1;
  if (f == NULL)
    return -1;
  while (fgets(line, sizeof(line), f) != NULL)
    if (strncmp(line, "VmRSS:", 6) == 0)
      kib = strtol(line + 6, NULL, 10);
  fclose(f);
  return kib;
}

struct done {
  int calls, status;
  size_t filed;
};

static void on_created(tusc_store_req_t *req, int status) {
  struct done *d = req->data;
  d->calls++;
  d->status = status;
}

static void on_rebuilt(void *arg, int status, size_t filed) {
  struct done *d = arg;
  d->calls++;
  d->status = status;
  d->filed = filed;
}

static uv_loop_t make_loop;

/* Creates one upload of length 1000 with nothing written; `age_s` > 0 backdates its
 * creation and its data file's mtime. */
static int make_upload(tusc_store_t *store, int64_t age_s) {
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  int rc = tusc_id_generate(info.id);
  if (rc != 0)
    return rc;
  info.size = 1000;
  info.created_at = (int64_t)time(NULL) - age_s;
  struct done d = {0};
  tusc_store_req_t req = {.data = &d};
  rc = tusc_store_create(store, &make_loop, &req, &info, on_created);
  while (rc == 0 && d.calls == 0)
    (void)uv_run(&make_loop, UV_RUN_ONCE);
  if (rc == 0)
    rc = d.status;
  if (rc == 0 && age_s > 0) {
    struct timespec times[2] = {{.tv_sec = info.created_at}, {.tv_sec = info.created_at}};
    if (utimensat(AT_FDCWD, info.data_path, times, 0) != 0)
      rc = -errno;
  }
  tusc_upload_info_dispose(&info);
  return rc;
}

static long read_marker(const char *path) {
  FILE *f = fopen(path, "r");
  long n = -1;
  if (f == NULL)
    return -1;
  if (fscanf(f, "%ld", &n) != 1)
    n = -1;
  fclose(f);
  return n;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s DIR [N=1000000] [EXPIRED=1000]\n", argv[0]);
    return 2;
  }
  /* One UploadExpired line per deleted upload would be the loudest part of the run. */
  tusc_log_setup(TUSC_LOG_WARN, TUSC_LOG_TEXT);
  const char *dir = argv[1];
  long n = argc > 2 ? strtol(argv[2], NULL, 10) : 1000000;
  long n_expired = argc > 3 ? strtol(argv[3], NULL, 10) : 1000;
  if (n < 0 || n_expired < 0)
    return 2;

  tusc_file_store_options_t opts = {
      .dir = dir, .dir_perms = 0775, .file_perms = 0664, .fsync = false};
  tusc_store_t *store = NULL;
  if (uv_loop_init(&make_loop) != 0)
    return 1;
  int rc = tusc_file_store_new(&opts, &store);
  if (rc != 0) {
    fprintf(stderr, "store %s: %s\n", dir, tusc_strerror(rc));
    return 1;
  }
  char marker[4096];
  snprintf(marker, sizeof(marker), "%s/.bench-uploads", dir);
  long have = read_marker(marker);
  if (have != n) {
    /* A store of another size is not reused: counts must be exact. */
    if (have >= 0) {
      fprintf(stderr, "%s holds a store of %ld uploads; remove it or pass N=%ld\n", dir, have,
              have);
      return 1;
    }
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
      if ((rc = make_upload(store, 0)) != 0) {
        fprintf(stderr, "create: %s\n", tusc_strerror(rc));
        return 1;
      }
      if (i > 0 && i % 100000 == 0)
        fprintf(stderr, "  %ld uploads created (%.0f s)\n", i, now_s() - t0);
    }
    FILE *f = fopen(marker, "w");
    if (f == NULL || fprintf(f, "%ld\n", n) < 0 || fclose(f) != 0)
      return 1;
    printf("populate_s %.1f s\n", now_s() - t0);
  }
  for (long i = 0; i < n_expired; i++)
    if ((rc = make_upload(store, 2 * 24 * 3600)) != 0) {
      fprintf(stderr, "create expired: %s\n", tusc_strerror(rc));
      return 1;
    }

  tusc_lock_t *lock = NULL;
  tusc_expire_t *exp = NULL;
  uv_loop_t loop;
  if (tusc_lock_local_new(lock_file, store, 0664, &lock) != 0 ||
      tusc_expire_new(store, lock, DAY_MS, &exp) != 0 || uv_loop_init(&loop) != 0)
    return 1;

  long rss0 = rss_kib();
  double t0 = now_s();
  size_t filed = 0;
  struct done rb = {0};
  rc = tusc_expire_rebuild(exp, &loop, (int64_t)time(NULL) + 1, on_rebuilt, &rb);
  while (rc == 0 && rb.calls == 0)
    (void)uv_run(&loop, UV_RUN_ONCE);
  if (rc == 0)
    rc = rb.status;
  filed = rb.filed;
  double rebuild = now_s() - t0;
  if (rc != 0) {
    fprintf(stderr, "rebuild: %s\n", tusc_strerror(rc));
    return 1;
  }
  size_t bytes = 0;
  size_t entries = tusc_expire_index_entries(exp, &bytes);
  long rss1 = rss_kib();
  printf("stored_uploads %ld count\n", n + n_expired);
  printf("rebuild_s %.2f s\n", rebuild);
  printf("rebuild_per_upload_us %.1f us\n", rebuild * 1e6 / (double)(filed ? filed : 1));
  printf("index_entries %zu count\n", entries);
  printf("index_bytes %zu B\n", bytes);
  printf("index_bytes_per_upload %.1f B\n", (double)bytes / (double)(entries ? entries : 1));
  printf("rss_growth_rebuild %ld KiB\n", rss1 - rss0);

  tusc_expire_stats_t st;
  t0 = now_s();
  if (sweep(exp, &loop, &st) != 0)
    return 1;
  double sweep_expired = now_s() - t0;
  printf("sweep_with_expired_ms %.2f ms\n", sweep_expired * 1e3);
  size_t deleted = st.deleted;
  printf("sweep_deleted %zu count\n", st.deleted);
  printf("sweep_checked %zu count\n", st.checked);

  const int rounds = 10000;
  size_t idle_checked = 0;
  t0 = now_s();
  for (int i = 0; i < rounds; i++) {
    /* What the periodic timer does: a sweep only when something is due. */
    if (!tusc_expire_due(exp, tusc_expire_now_ms()))
      continue;
    if (sweep(exp, &loop, &st) != 0)
      return 1;
    idle_checked += st.checked;
  }
  double idle = (now_s() - t0) / rounds;
  printf("sweep_nothing_due_us %.3f us\n", idle * 1e6);
  printf("sweep_nothing_due_checked %zu count\n", idle_checked);

  /* Creation's side: filing one new upload in a heap of N. */
  t0 = now_s();
  char id[33];
  for (int i = 0; i < 100000; i++) {
    if (tusc_id_generate(id) != 0 || tusc_expire_track(exp, id, tusc_expire_now_ms() + DAY_MS))
      return 1;
  }
  printf("track_one_us %.3f us\n", (now_s() - t0) / 100000 * 1e6);

  tusc_expire_free(exp);
  (void)uv_loop_close(&loop);
  tusc_lock_free(lock);
  tusc_store_free(store);
  if (deleted != (size_t)n_expired) {
    fprintf(stderr, "expected %ld expired uploads deleted, got %zu\n", n_expired, deleted);
    return 1;
  }
  return 0;
}

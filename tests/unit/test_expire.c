/* Unit tests for src/tus/expire.c (deadline rules, heap order, sweeps on a loop
 * against a real file store in a temp directory, in batches, busy uploads, the start-up
 * walk) and src/store/file_walk.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "common/log.h"
#include <uv.h>

#include "lock/local.h"
#include "store/file_walk.h"
#include "store/store.h"
#include "tus/expire.h"

#include "store_sync.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define HOUR_MS (INT64_C(3600) * 1000)

/* --- pure rules ---------------------------------------------------------------------- */

static void test_deadline_rules(void **state) {
  (void)state;
  static const struct {
    int64_t size;
    bool deferred;
    int64_t offset;
    bool is_final;
    int64_t created_at, modified_ms, after_ms, want;
  } cases[] = {
      /* off */
      {100, false, 10, false, 1000, 0, 0, 0},
      {100, false, 10, false, 1000, 0, -5, 0},
      /* unfinished: creation is the last activity */
      {100, false, 10, false, 1000, 0, 2000, 1002000},
      /* a later write moves it */
      {100, false, 10, false, 1000, 1500500, 2000, 1502500},
      /* an mtime older than creation (clock skew, copied files) does not pull it back */
      {100, false, 10, false, 1000, 999000, 2000, 1002000},
      /* deferred length: unfinished whatever the offset */
      {-1, true, 500, false, 1000, 0, 2000, 1002000},
      /* finished, empty, final: never */
      {100, false, 100, false, 1000, 0, 2000, 0},
      {0, false, 0, false, 1000, 0, 2000, 0},
      {100, false, 10, true, 1000, 0, 2000, 0},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    tusc_upload_info_t info;
    tusc_upload_info_init(&info);
    info.size = cases[i].size;
    info.size_is_deferred = cases[i].deferred;
    info.offset = cases[i].offset;
    info.is_final = cases[i].is_final;
    info.created_at = cases[i].created_at;
    info.modified_ms = cases[i].modified_ms;
    int64_t got = tusc_expire_deadline_ms(&info, cases[i].after_ms);
    if (got != cases[i].want)
      fail_msg("case %zu: deadline %lld, want %lld", i, (long long)got, (long long)cases[i].want);
    if (cases[i].want > 0) {
      assert_false(tusc_expire_is_expired(&info, cases[i].after_ms, cases[i].want - 1));
      assert_true(tusc_expire_is_expired(&info, cases[i].after_ms, cases[i].want));
    } else {
      assert_false(tusc_expire_is_expired(&info, cases[i].after_ms, INT64_MAX / 2));
    }
    tusc_upload_info_dispose(&info);
  }
}

static void test_sweep_interval(void **state) {
  (void)state;
  static const int64_t in[] = {1, 500, 2000, 3000, 90000, 120000, 24 * HOUR_MS};
  static const uint64_t want[] = {1000, 1000, 1000, 1500, 45000, 60000, 60000};
  for (size_t i = 0; i < ARRAY_LEN(in); i++)
    assert_int_equal(tusc_expire_sweep_interval_ms(in[i]), want[i]);
}

/* --- a real store in a temp directory -------------------------------------------------- */

struct fixture {
  char dir[256];
  tusc_store_t *store;
  tusc_lock_t *lock;
  tusc_expire_t *exp;
  uv_loop_t loop;
};

static int lock_file(void *store, const char *id, char *out, size_t cap) {
  return tusc_file_store_lock_path(store, id, out, cap);
}

static int setup(void **state) {
  struct fixture *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  snprintf(f->dir, sizeof(f->dir), "/tmp/tusc-test-expire-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  tusc_file_store_options_t opts = {
      .dir = f->dir, .dir_perms = 0775, .file_perms = 0664, .fsync = false};
  assert_int_equal(tusc_file_store_new(&opts, &f->store), 0);
  assert_int_equal(tusc_lock_local_new(lock_file, f->store, 0664, &f->lock), 0);
  assert_int_equal(tusc_expire_new(f->store, f->lock, HOUR_MS, &f->exp), 0);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  struct fixture *f = *state;
  (void)uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  tusc_expire_free(f->exp);
  tusc_lock_free(f->lock);
  ss_free(f->store);
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
  assert_int_equal(system(cmd), 0);
  free(f);
  return 0;
}

struct swept {
  int calls, status;
  tusc_expire_stats_t stats;
};

static void on_swept(void *arg, int status, const tusc_expire_stats_t *stats) {
  struct swept *r = arg;
  r->calls++;
  r->status = status;
  r->stats = *stats;
}

/* One sweep at `now` on the fixture's loop, run until it ended; returns its status. */
static int sweep(struct fixture *f, int64_t now, tusc_expire_stats_t *st) {
  struct swept r = {0};
  assert_int_equal(tusc_expire_sweep(f->exp, &f->loop, now, on_swept, &r), 0);
  assert_int_equal(r.calls, 0); /* never before it returned */
  while (r.calls == 0)
    (void)uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(r.calls, 1);
  if (st != NULL)
    *st = r.stats;
  return r.status;
}

struct rebuilt {
  int calls, status;
  size_t filed;
};

static void on_rebuilt(void *arg, int status, size_t filed) {
  struct rebuilt *r = arg;
  r->calls++;
  r->status = status;
  r->filed = filed;
}

/* tusc_expire_rebuild of `exp` on the fixture's loop, run until it ended. */
static int rebuild(struct fixture *f, tusc_expire_t *exp, int64_t created_after_s, size_t *filed) {
  struct rebuilt r = {0};
  assert_int_equal(tusc_expire_rebuild(exp, &f->loop, created_after_s, on_rebuilt, &r), 0);
  assert_int_equal(r.calls, 0); /* never before it returned */
  while (r.calls == 0)
    (void)uv_run(&f->loop, UV_RUN_ONCE);
  *filed = r.filed;
  return r.status;
}

/* Creates `id` with `size` bytes declared and `written` stored, created `age_s` ago
 * with its data file's mtime set to the same moment. */
static void make(struct fixture *f, const char *id, int64_t size, int64_t written, int64_t age_s) {
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  snprintf(info.id, sizeof(info.id), "%s", id);
  info.size = size;
  info.size_is_deferred = size < 0;
  info.created_at = (int64_t)time(NULL) - age_s;
  assert_int_equal(ss_create(f->store, &info), 0);
  if (written > 0) {
    tusc_upload_t *up = NULL;
    assert_int_equal(ss_open(f->store, id, &up), 0);
    char buf[64] = {0};
    assert_int_equal(ss_write(up, 0, buf, (size_t)written), written);
    ss_close(up);
  }
  struct timespec times[2] = {{.tv_sec = info.created_at}, {.tv_sec = info.created_at}};
  assert_int_equal(utimensat(AT_FDCWD, info.data_path, times, 0), 0);
  tusc_upload_info_dispose(&info);
}

static bool exists(struct fixture *f, const char *id) {
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  int rc = ss_get_info(f->store, id, &info);
  tusc_upload_info_dispose(&info);
  return rc == 0;
}

static size_t count_files(const char *dir) {
  char cmd[512];
  snprintf(cmd, sizeof(cmd), "find '%s' -type f | wc -l", dir);
  FILE *p = popen(cmd, "r");
  size_t n = 0;
  assert_non_null(p);
  assert_int_equal(fscanf(p, "%zu", &n), 1);
  pclose(p);
  return n;
}

static void test_heap_order(void **state) {
  struct fixture *f = *state;
  /* 2,000 IDs that do not exist, with shuffled deadlines 1..2000 (ms): a sweep at t
   * must look at exactly those due by t, whatever the insertion order. */
  enum { N = 2000 };
  int64_t deadlines[N];
  for (int i = 0; i < N; i++)
    deadlines[i] = i + 1;
  srand(7);
  for (int i = N - 1; i > 0; i--) {
    int j = rand() % (i + 1);
    int64_t t = deadlines[i];
    deadlines[i] = deadlines[j];
    deadlines[j] = t;
  }
  for (int i = 0; i < N; i++) {
    char id[40];
    /* Half generated-looking (packed), half other IDs (heap strings). */
    if (i % 2 == 0)
      snprintf(id, sizeof(id), "%032x", i);
    else
      snprintf(id, sizeof(id), "hook/id-%d", i);
    assert_int_equal(tusc_expire_track(f->exp, id, deadlines[i]), 0);
  }
  size_t bytes = 0;
  assert_int_equal(tusc_expire_index_entries(f->exp, &bytes), N);
  assert_true(bytes >= N * 24);
  size_t seen = 0;
  static const int64_t steps[] = {0, 1, 10, 500, 1999, 2000, 5000};
  for (size_t s = 0; s < ARRAY_LEN(steps); s++) {
    tusc_expire_stats_t st;
    assert_int_equal(sweep(f, steps[s], &st), 0);
    size_t want = (size_t)(steps[s] > N ? N : steps[s]) - seen;
    assert_int_equal(st.checked, want);
    assert_int_equal(st.forgotten, want); /* none exists */
    assert_int_equal(st.deleted, 0);
    seen += want;
    assert_int_equal(tusc_expire_index_entries(f->exp, NULL), N - seen);
  }
  assert_int_equal(tusc_expire_index_entries(f->exp, &bytes), 0);
  assert_int_equal(tusc_expire_track(f->exp, "", 5), TUSC_EINVALID_ID);
}

static void test_sweep_deletes_only_expired_unfinished(void **state) {
  struct fixture *f = *state;
  int64_t now = tusc_expire_now_ms();
  make(f, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1", 100, 10, 7200); /* idle 2 h: expired */
  make(f, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2", -1, 0, 7200);   /* deferred, idle: expired */
  make(f, "proj/hook-chosen", 100, 0, 7200);                  /* nested hook ID: expired */
  make(f, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa3", 10, 10, 7200);  /* finished: stays */
  make(f, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa4", 100, 0, 60);    /* young: stays, re-filed */
  /* Filed with a stale (early) deadline, as the heap's lower bound allows. */
  const char *ids[] = {
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2", "proj/hook-chosen",
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa3", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa4", "never-existed"};
  for (size_t i = 0; i < ARRAY_LEN(ids); i++)
    assert_int_equal(tusc_expire_track(f->exp, ids[i], now - 1000), 0);

  tusc_expire_stats_t st;
  assert_int_equal(sweep(f, now, &st), 0);
  assert_int_equal(st.checked, 6);
  assert_int_equal(st.deleted, 3);
  assert_int_equal(st.forgotten, 2); /* finished + never-existed */
  assert_int_equal(st.refiled, 1);
  assert_int_equal(st.failed, 0);
  assert_false(exists(f, ids[0]));
  assert_false(exists(f, ids[1]));
  assert_false(exists(f, ids[2]));
  assert_true(exists(f, ids[3]));
  assert_true(exists(f, ids[4]));
  /* Data, .info and .lock of the deleted ones are gone: 2 uploads × (data + .info). */
  assert_int_equal(count_files(f->dir), 4);
  /* The young one was re-filed under its real deadline, not looked at again now. */
  assert_int_equal(tusc_expire_index_entries(f->exp, NULL), 1);
  assert_int_equal(sweep(f, now, &st), 0);
  assert_int_equal(st.checked, 0);
  /* An hour later it is due and goes. */
  assert_int_equal(sweep(f, now + HOUR_MS, &st), 0);
  assert_int_equal(st.deleted, 1);
  assert_false(exists(f, ids[4]));
}

static void on_held(tusc_lock_req_t *req, int status) {
  *(int *)req->data = status;
}

static void test_busy_upload_skipped(void **state) {
  struct fixture *f = *state;
  const char *id = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb1";
  make(f, id, 100, 0, 7200);
  int64_t now = tusc_expire_now_ms();
  assert_int_equal(tusc_expire_track(f->exp, id, now - 1), 0);
  /* Someone is uploading: holds the lock (on the same loop). */
  int held = 1;
  tusc_lock_req_t holder = {.data = &held};
  assert_int_equal(tusc_lock_acquire(f->lock, &f->loop, &holder, id, 0, on_held), 0);
  while (held == 1)
    (void)uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(held, 0);

  tusc_expire_stats_t st;
  assert_int_equal(sweep(f, now, &st), 0);
  assert_int_equal(st.deleted, 0);
  assert_int_equal(st.refiled, 1);
  assert_true(exists(f, id));
  assert_int_equal(st.failed, 0);
  tusc_lock_release(&holder);

  /* Re-filed one sweep interval (30 min for 1 h) later, not at once. */
  assert_int_equal(sweep(f, now + 1000, &st), 0);
  assert_int_equal(st.checked, 0);
  assert_int_equal(sweep(f, now + HOUR_MS / 2, &st), 0);
  assert_int_equal(st.deleted, 1);
  assert_false(exists(f, id));
  assert_int_equal(count_files(f->dir), 0);
}

/* More expired uploads than one batch takes, one of them busy: every other one goes in
 * one sweep; one sweep at a time. */
static void test_sweep_in_batches(void **state) {
  struct fixture *f = *state;
  enum { N = 150 };
  int64_t now = tusc_expire_now_ms();
  char ids[N][40];
  for (int i = 0; i < N; i++) {
    snprintf(ids[i], sizeof(ids[i]), "dddddddddddddddddddddddddddd%04d", i);
    make(f, ids[i], 100, 0, 7200);
    assert_int_equal(tusc_expire_track(f->exp, ids[i], now - 1000), 0);
  }
  assert_false(tusc_expire_due(f->exp, now - 1001));
  assert_true(tusc_expire_due(f->exp, now));
  int held = 1;
  tusc_lock_req_t holder = {.data = &held};
  assert_int_equal(tusc_lock_acquire(f->lock, &f->loop, &holder, ids[100], 0, on_held), 0);
  while (held == 1)
    (void)uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(held, 0);

  struct swept r = {0};
  assert_int_equal(tusc_expire_sweep(f->exp, &f->loop, now, on_swept, &r), 0);
  assert_int_equal(tusc_expire_sweep(f->exp, &f->loop, now, on_swept, &r), UV_EBUSY);
  while (r.calls == 0)
    (void)uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.stats.checked, N);
  assert_int_equal(r.stats.deleted, N - 1);
  assert_int_equal(r.stats.refiled, 1);
  assert_int_equal(r.stats.failed, 0);
  for (int i = 0; i < N; i++)
    assert_int_equal(exists(f, ids[i]), i == 100);
  assert_false(tusc_expire_due(f->exp, now));
  tusc_lock_release(&holder);
}

static int count_visit(const tusc_upload_info_t *info, void *arg) {
  size_t *n = arg;
  assert_true(info->offset >= 0);
  assert_true(info->modified_ms > 0);
  assert_true(strstr(info->info_path, ".info") != NULL);
  (*n)++;
  return 0;
}

static int stop_visit(const tusc_upload_info_t *info, void *arg) {
  (void)info;
  (void)arg;
  return 42;
}

static void write_file(const char *path, const char *text) {
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fputs(text, fp);
  fclose(fp);
}

static void test_rebuild_walk(void **state) {
  struct fixture *f = *state;
  make(f, "ccccccccccccccccccccccccccccccc1", 100, 5, 7200); /* expired */
  make(f, "ccccccccccccccccccccccccccccccc2", 100, 5, 60);   /* unfinished, young */
  make(f, "ccccccccccccccccccccccccccccccc3", 5, 5, 7200);   /* finished */
  make(f, "deep/er/hook.id", -1, 0, 7200);                   /* nested, deferred, expired */
  /* A tusd flat upload in the root. */
  char path[600];
  snprintf(path, sizeof(path), "%s/flatid", f->dir);
  write_file(path, "");
  snprintf(path, sizeof(path), "%s/flatid.info", f->dir);
  write_file(path, "{\"ID\":\"flatid\",\"Size\":10,\"SizeIsDeferred\":false,\"Offset\":0,"
                   "\"MetaData\":{},\"IsPartial\":false,\"IsFinal\":false,"
                   "\"PartialUploads\":null,\"Storage\":null}");
  /* Strays: garbage JSON, an .info naming another ID, a dot-directory. */
  snprintf(path, sizeof(path), "%s/junk.info", f->dir);
  write_file(path, "not json");
  snprintf(path, sizeof(path), "%s/other.info", f->dir);
  write_file(path, "{\"ID\":\"ccccccccccccccccccccccccccccccc1\",\"Size\":1}");
  snprintf(path, sizeof(path), "%s/other", f->dir);
  write_file(path, "");
  snprintf(path, sizeof(path), "%s/.concat", f->dir);
  assert_int_equal(mkdir(path, 0775), 0);
  snprintf(path, sizeof(path), "%s/.concat/x.info", f->dir);
  write_file(path, "{\"ID\":\"x\",\"Size\":1}");

  size_t n = 0;
  assert_int_equal(tusc_file_store_walk(f->dir, count_visit, &n), 0);
  assert_int_equal(n, 5); /* 4 sharded + the flat one */
  assert_int_equal(ss_walk(f->store, stop_visit, NULL), 42);

  size_t filed = 0;
  assert_int_equal(rebuild(f, f->exp, (int64_t)time(NULL) + 1, &filed), 0);
  assert_int_equal(filed, 4); /* every unfinished one, the finished one left out */
  tusc_expire_stats_t st;
  assert_int_equal(sweep(f, tusc_expire_now_ms(), &st), 0);
  assert_int_equal(st.deleted, 2);
  assert_false(exists(f, "ccccccccccccccccccccccccccccccc1"));
  assert_false(exists(f, "deep/er/hook.id"));
  assert_true(exists(f, "ccccccccccccccccccccccccccccccc2"));
  assert_true(exists(f, "ccccccccccccccccccccccccccccccc3"));
  /* The flat upload's data file was written just now: it is young. */
  assert_true(exists(f, "flatid"));

  /* Uploads created after the cut-off are left to tusc_expire_track: of the two
   * unfinished ones left, only the flat one (no CreatedAt: 0) is older than 10 min. */
  tusc_expire_t *other = NULL;
  assert_int_equal(tusc_expire_new(f->store, f->lock, HOUR_MS, &other), 0);
  assert_int_equal(rebuild(f, other, (int64_t)time(NULL) - 600, &filed), 0);
  assert_int_equal(filed, 1);
  tusc_expire_free(other);
}

static void test_new_rejects(void **state) {
  struct fixture *f = *state;
  tusc_expire_t *exp = NULL;
  assert_int_equal(tusc_expire_new(f->store, f->lock, 0, &exp), TUSC_EINVALID_ARGUMENT);
  assert_int_equal(tusc_expire_new(NULL, f->lock, 1000, &exp), TUSC_EINVALID_ARGUMENT);
  assert_int_equal(tusc_expire_new(f->store, NULL, 1000, &exp), TUSC_EINVALID_ARGUMENT);
  tusc_expire_free(NULL);
  tusc_expire_stop(NULL);
}

int main(void) {
  tusc_log_setup(TUSC_LOG_ERROR, TUSC_LOG_TEXT);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_deadline_rules),
      cmocka_unit_test(test_sweep_interval),
      cmocka_unit_test_setup_teardown(test_heap_order, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sweep_deletes_only_expired_unfinished, setup, teardown),
      cmocka_unit_test_setup_teardown(test_busy_upload_skipped, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sweep_in_batches, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rebuild_walk, setup, teardown),
      cmocka_unit_test_setup_teardown(test_new_rejects, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for src/tus/concat.c: the Upload-Concat parser (table-driven), the final
 * header, and assembly against the real file store in a mkdtemp directory: ready
 * finals, unfinished and deferred partials, waiting notes, restarts after a crash
 * mid-assembly, the read/write fallback without copy_file_range, and the jobs (the only
 * way to assemble) that take their locks on a loop through the local lock (waiting,
 * asking the holder, timing out, abandoned). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "store_sync.h"
#include "testutil.h"

#include "common/error.h"
#include "common/log.h"
#include <uv.h>

#include "lock/local.h"
#include "store/store.h"
#include "tus/concat.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* --- parser ------------------------------------------------------------------------- */

typedef struct parse_case_s {
  const char *value;
  int rc;
  bool partial;
  size_t count;
  const char *ids[3];
} parse_case_t;

static void test_parse_table(void **state) {
  (void)state;
  static const parse_case_t cases[] = {
      {"partial", 0, true, 0, {NULL}},
      {"final;/files/a", 0, false, 1, {"a"}},
      {"final;/files/a /files/b", 0, false, 2, {"a", "b"}},
      {"final; /files/a  /files/b\t/files/c ", 0, false, 3, {"a", "b", "c"}},
      {"final;http://example.com/files/a https://x:8080/files/b", 0, false, 2, {"a", "b"}},
      {"final;HTTP://example.com/files/a", 0, false, 1, {"a"}},
      {"final;/proxy/files/a", 0, false, 1, {"a"}},   /* collection path */
      {"final;/files/p/q/x", 0, false, 1, {"p/q/x"}}, /* hook-chosen IDs nest */
      {"final;/files/a%2Db", 0, false, 1, {"a-b"}},   /* percent-decoded */
      /* A partial listed twice, however spelled, is refused. */
      {"final;/files/a /files/a", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
      {"final;/files/a /files/b http://h/files/a", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
      {"final;/files/a /files/%61", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
      {"", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
      {"Partial", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
      {"partial ", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
      {"partial;x", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
      {"final", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
      {"final;", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
      {"final;   ", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
      {"Final;/files/a", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
      {"final:/files/a", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
      {"final;/files/", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
      {"final;/other/a", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
      {"final;files/a", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
      {"final;a", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
      {"final;/files/a?x=1", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
      {"final;/files/a#frag", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
      {"final;/files/../etc/passwd", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
      {"final;/files/%2e%2e", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
      {"final;/files/a%00b", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
      {"final;/files/a%zz", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
      {"final;/files/a/", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
      {"final;/files/a.info", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
      {"final;http:///files/a", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
      {"final;http://example.com", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
      {"final;ftp://example.com/files/a", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
      {"final;/files/a,/files/b", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
      {"final;/files/a /nope/b", TUSC_EINVALID_CONCAT, false, 0, {NULL}},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    const parse_case_t *c = &cases[i];
    tusc_concat_t out;
    memset(&out, 0x5a, sizeof(out)); /* untouched on failure */
    int rc = tusc_concat_parse(c->value, strlen(c->value), "/proxy/files/", "/files/", &out);
    if (rc != c->rc)
      fail_msg("case %zu \"%s\": rc %d, want %d", i, c->value, rc, c->rc);
    if (rc != 0) {
      assert_int_equal(out.count, (size_t)0x5a5a5a5a5a5a5a5aULL);
      continue;
    }
    assert_int_equal(out.is_partial, c->partial);
    assert_int_equal(out.is_final, !c->partial);
    assert_int_equal(out.count, c->count);
    for (size_t j = 0; j < c->count; j++)
      assert_string_equal(out.ids[j], c->ids[j]);
    tusc_concat_dispose(&out);
  }
}

static void test_parse_limits(void **state) {
  (void)state;
  /* Not NUL-terminated: only `len` bytes count. */
  const char *v = "final;/files/abXYZ";
  tusc_concat_t out;
  assert_int_equal(tusc_concat_parse(v, 15, NULL, "/files/", &out), 0);
  assert_string_equal(out.ids[0], "ab");
  tusc_concat_dispose(&out);
  assert_int_equal(tusc_concat_parse(NULL, 0, NULL, "/files/", &out), TUSC_EINVALID_CONCAT);

  /* Exactly the maximum number of partials, then one more. */
  size_t cap = 8 + (size_t)(TUSC_CONCAT_MAX_PARTIALS + 1) * 16;
  char *big = malloc(cap);
  assert_non_null(big);
  size_t used = (size_t)snprintf(big, cap, "final;");
  for (int i = 0; i < TUSC_CONCAT_MAX_PARTIALS; i++)
    used += (size_t)snprintf(big + used, cap - used, " /files/a%d", i);
  assert_int_equal(tusc_concat_parse(big, used, NULL, "/files/", &out), 0);
  assert_int_equal(out.count, TUSC_CONCAT_MAX_PARTIALS);
  tusc_concat_dispose(&out);
  used += (size_t)snprintf(big + used, cap - used, " /files/b");
  assert_int_equal(tusc_concat_parse(big, used, NULL, "/files/", &out), TUSC_EINVALID_CONCAT);
  free(big);

  /* An ID longer than TUSC_ID_MAX. */
  char longv[600];
  int n = snprintf(longv, sizeof(longv), "final;/files/");
  memset(longv + n, 'a', 300);
  longv[n + 300] = '\0';
  assert_int_equal(tusc_concat_parse(longv, strlen(longv), NULL, "/files/", &out),
                   TUSC_EINVALID_CONCAT);
}

static void test_url_path_and_format(void **state) {
  (void)state;
  assert_string_equal(tusc_concat_url_path("http://h:1/p/files/"), "/p/files/");
  assert_string_equal(tusc_concat_url_path("/files/"), "/files/");
  assert_string_equal(tusc_concat_url_path("http://h"), "/");

  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  char *ids[] = {"a", "b/c"};
  info.is_final = true;
  info.partial_uploads = ids;
  info.partial_count = 2;
  char out[64];
  assert_int_equal(tusc_concat_format_final(&info, "http://h/files/", out, sizeof(out)), 0);
  assert_string_equal(out, "final;http://h/files/a http://h/files/b/c");
  /* Exactly fitting, then one byte short. */
  size_t need = strlen("final;http://h/files/a http://h/files/b/c") + 1;
  assert_int_equal(tusc_concat_format_final(&info, "http://h/files/", out, need), 0);
  assert_int_equal(tusc_concat_format_final(&info, "http://h/files/", out, need - 1), UV_ENOBUFS);
}

/* --- assembly against the file store ---------------------------------------------- */

typedef struct fixture_s {
  char dir[64];
  tusc_store_t *store;
  tusc_lock_t *lock;
  tusc_concat_env_t env;
} fixture_t;

static int lock_file(void *store, const char *id, char *out, size_t cap) {
  return tusc_file_store_lock_path(store, id, out, cap);
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  if (test_tmpdir(f->dir, sizeof(f->dir), "concat") != 0)
    return -1;
  tusc_file_store_options_t opts = {
      .dir = f->dir, .dir_perms = 0750, .file_perms = 0640, .fsync = true};
  if (tusc_file_store_new(&opts, &f->store) != 0 ||
      tusc_lock_local_new(lock_file, f->store, 0640, &f->lock) != 0)
    return -1;
  f->env.store = f->store;
  f->env.lock = f->lock;
  f->env.lock_wait_ms = 200;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  ss_free(f->store);
  tusc_lock_free(f->lock);
  test_rm_rf(f->dir);
  free(f);
  return 0;
}

/* Runs a job on a loop of its own until it ended. */
enum job { JOB_ASSEMBLE, JOB_CREATED, JOB_PARTIAL };

typedef struct ran_s {
  int calls, status;
  size_t count; /* finals it completed */
} ran_t;

static void on_ran(void *arg, int status, char **finals, size_t count) {
  (void)finals;
  ran_t *ran = arg;
  ran->calls++;
  ran->status = status;
  ran->count = count;
}

static int run_job_alone(fixture_t *f, enum job kind, const char *id, ran_t *out) {
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  ran_t ran = {0};
  int rc = kind == JOB_ASSEMBLE ? tusc_concat_queue_assemble(&loop, &f->env, id, on_ran, &ran, NULL)
           : kind == JOB_CREATED
               ? tusc_concat_queue_created(&loop, &f->env, id, on_ran, &ran, NULL)
               : tusc_concat_queue_partial_finished(&loop, &f->env, id, on_ran, &ran);
  assert_int_equal(rc, 0);
  assert_int_equal(ran.calls, 0); /* never before the start function returned */
  (void)uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  assert_int_equal(ran.calls, 1);
  if (out != NULL)
    *out = ran;
  return ran.status;
}

static bool is_complete(fixture_t *f, const char *id) {
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  bool done =
      ss_get_info(f->store, id, &info) == 0 && !info.size_is_deferred && info.offset == info.size;
  tusc_upload_info_dispose(&info);
  return done;
}

/* Assembles final `id` (a job, as HEAD/GET start it); *complete: complete afterwards. */
static int assemble(fixture_t *f, const char *id, bool *complete) {
  int rc = run_job_alone(f, JOB_ASSEMBLE, id, NULL);
  if (complete != NULL)
    *complete = is_complete(f, id);
  return rc;
}

/* Creates an upload; is_partial as asked; size < 0 = deferred. */
static void create(fixture_t *f, const char *id, int64_t size, bool partial) {
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  snprintf(info.id, sizeof(info.id), "%s", id);
  info.size = size;
  info.size_is_deferred = size < 0;
  info.is_partial = partial;
  assert_int_equal(ss_create(f->store, &info), 0);
  tusc_upload_info_dispose(&info);
}

static void append(fixture_t *f, const char *id, const char *bytes) {
  tusc_upload_t *up = NULL;
  assert_int_equal(ss_open(f->store, id, &up), 0);
  int64_t off = ss_info(up)->offset;
  assert_int_equal(ss_write(up, off, bytes, strlen(bytes)), (ssize_t)strlen(bytes));
  ss_close(up);
}

static void declare_length(fixture_t *f, const char *id, int64_t size) {
  tusc_upload_t *up = NULL;
  assert_int_equal(ss_open(f->store, id, &up), 0);
  ss_info(up)->size = size;
  ss_info(up)->size_is_deferred = false;
  assert_int_equal(ss_save_info(up), 0);
  ss_close(up);
}

/* --- the concat checks on partial infos read through the store ------------------ */

static void on_parts_loaded(tusc_concat_parts_t *parts, void *arg) {
  (void)parts;
  *(bool *)arg = true;
}

static void load_parts(tusc_store_t *store, char **ids, size_t n, tusc_concat_parts_t *parts) {
  bool done = false;
  assert_int_equal(tusc_concat_parts_load(parts, store, ss_loop(), (const char *const *)ids, n,
                                          on_parts_loaded, &done),
                   0);
  assert_false(done); /* never before it returned */
  while (!done)
    uv_run(ss_loop(), UV_RUN_ONCE);
}

static int prepare_final(tusc_store_t *store, const tusc_concat_t *c, int64_t max_size,
                         tusc_upload_info_t *final) {
  tusc_concat_parts_t parts;
  load_parts(store, c->ids, c->count, &parts);
  int rc = tusc_concat_prepare_final_parts(c, &parts, max_size, final, NULL, NULL);
  tusc_concat_parts_dispose(&parts);
  return rc;
}

static bool concat_status(tusc_store_t *store, tusc_upload_info_t *info) {
  tusc_concat_parts_t parts;
  load_parts(store, info->partial_uploads, info->partial_count, &parts);
  bool ready = tusc_concat_status_parts(info, &parts);
  tusc_concat_parts_dispose(&parts);
  return ready;
}

/* What creation does for a final: a note with each unfinished partial. */
static int note_final(tusc_store_t *store, const tusc_upload_info_t *info) {
  tusc_concat_parts_t parts;
  load_parts(store, info->partial_uploads, info->partial_count, &parts);
  for (size_t i = 0; i < info->partial_count; i++) {
    const tusc_upload_info_t *p = &parts.infos[i];
    if (parts.rc[i] == 0 && !p->size_is_deferred && p->offset == p->size)
      continue;
    assert_int_equal(ss_wait_add(store, info->partial_uploads[i], info->id), 0);
  }
  tusc_concat_parts_dispose(&parts);
  return 0;
}

/* Parses `value`, prepares and creates final `id`; returns prepare's code. */
static int create_final(fixture_t *f, const char *id, const char *value) {
  tusc_concat_t c;
  assert_int_equal(tusc_concat_parse(value, strlen(value), NULL, "/files/", &c), 0);
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  snprintf(info.id, sizeof(info.id), "%s", id);
  info.size = 0;
  int rc = prepare_final(f->store, &c, 0, &info);
  tusc_concat_dispose(&c);
  if (rc == 0) {
    assert_int_equal(ss_create(f->store, &info), 0);
    assert_int_equal(note_final(f->store, &info), 0);
    assert_int_equal(run_job_alone(f, JOB_CREATED, id, NULL), 0);
  }
  tusc_upload_info_dispose(&info);
  return rc;
}

/* The final's stored bytes, NUL-terminated (caller frees), and its info. */
static char *contents(fixture_t *f, const char *id, tusc_upload_info_t *info) {
  tusc_upload_t *up = NULL;
  assert_int_equal(ss_open(f->store, id, &up), 0);
  tusc_upload_info_t *i = ss_info(up);
  char *buf = calloc(1, (size_t)i->offset + 1);
  assert_non_null(buf);
  assert_int_equal(ss_read(up, 0, buf, (size_t)i->offset), (ssize_t)i->offset);
  if (info != NULL) {
    info->size = i->size;
    info->size_is_deferred = i->size_is_deferred;
    info->offset = i->offset;
    info->is_final = i->is_final;
  }
  ss_close(up);
  return buf;
}

static void test_final_of_finished_partials(void **state) {
  fixture_t *f = *state;
  create(f, "p1", 3, true);
  create(f, "p2", 0, true);
  create(f, "p3", 4, true);
  append(f, "p1", "abc");
  append(f, "p3", "defg");
  assert_int_equal(create_final(f, "fin", "final;/files/p3 /files/p2 /files/p1"), 0);
  tusc_upload_info_t info;
  char *data = contents(f, "fin", &info);
  assert_string_equal(data, "defgabc");
  assert_true(info.is_final);
  assert_false(info.size_is_deferred);
  assert_int_equal(info.size, 7);
  assert_int_equal(info.offset, 7);
  free(data);
  /* Idempotent: assembling again changes nothing. */
  bool complete = false;
  assert_int_equal(assemble(f, "fin", &complete), 0);
  assert_true(complete);
  data = contents(f, "fin", NULL);
  assert_string_equal(data, "defgabc");
  free(data);
}

static void test_prepare_errors(void **state) {
  fixture_t *f = *state;
  create(f, "p1", 3, true);
  create(f, "plain", 3, false);
  tusc_concat_t c;
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  const char *bad[] = {"final;/files/nope", "final;/files/p1 /files/plain"};
  for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
    assert_int_equal(tusc_concat_parse(bad[i], strlen(bad[i]), NULL, "/files/", &c), 0);
    assert_int_equal(prepare_final(f->store, &c, 0, &info), TUSC_EINVALID_CONCAT);
    assert_false(info.is_final);
    tusc_concat_dispose(&c);
  }
  create(f, "p2", 3, true);
  const char *ok = "final;/files/p1 /files/p2";
  assert_int_equal(tusc_concat_parse(ok, strlen(ok), NULL, "/files/", &c), 0);
  assert_int_equal(prepare_final(f->store, &c, 5, &info), TUSC_EMAX_SIZE_EXCEEDED);
  assert_int_equal(prepare_final(f->store, &c, 6, &info), 0);
  assert_int_equal(info.size, 6);
  assert_int_equal(info.partial_count, 2);
  tusc_concat_dispose(&c);
  tusc_upload_info_dispose(&info);
}

static bool exists(fixture_t *f, const char *rel) {
  char path[TUSC_PATH_MAX];
  snprintf(path, sizeof(path), "%s/%s", f->dir, rel);
  struct stat st;
  return stat(path, &st) == 0;
}

static void test_unfinished_partial(void **state) {
  fixture_t *f = *state;
  create(f, "p1", 3, true);
  create(f, "p2", 4, true);
  create(f, "p3", -1, true); /* deferred */
  append(f, "p1", "abc");
  append(f, "p2", "de");
  assert_int_equal(create_final(f, "fin", "final;/files/p1 /files/p2 /files/p3"), 0);

  tusc_upload_info_t info;
  char *data = contents(f, "fin", &info);
  assert_string_equal(data, "");
  assert_true(info.size_is_deferred);
  free(data);
  /* Noted with the unfinished partials only. */
  assert_false(exists(f, ".concat/p1/__/p1"));
  assert_true(exists(f, ".concat/p2/__/p2"));
  assert_true(exists(f, ".concat/p3/__/p3"));

  /* Status: not ready, length unknown while p3's is. */
  tusc_upload_info_t st;
  tusc_upload_info_init(&st);
  assert_int_equal(ss_get_info(f->store, "fin", &st), 0);
  assert_false(concat_status(f->store, &st));
  assert_true(st.size_is_deferred);
  declare_length(f, "p3", 2);
  assert_false(concat_status(f->store, &st));
  assert_false(st.size_is_deferred);
  assert_int_equal(st.size, 9);
  tusc_upload_info_dispose(&st);

  append(f, "p2", "fg");
  assert_int_equal(run_job_alone(f, JOB_PARTIAL, "p2", NULL), 0);
  assert_false(exists(f, ".concat/p2/__/p2"));
  data = contents(f, "fin", &info);
  assert_string_equal(data, ""); /* p3 still unfinished */
  free(data);

  append(f, "p3", "hi");
  ran_t ran;
  assert_int_equal(run_job_alone(f, JOB_PARTIAL, "p3", &ran), 0);
  assert_int_equal(ran.count, 1); /* this job completed "fin" */
  assert_false(exists(f, ".concat/p3/__/p3"));
  data = contents(f, "fin", &info);
  assert_string_equal(data, "abcdefghi");
  assert_int_equal(info.size, 9);
  assert_false(info.size_is_deferred);
  free(data);
  /* A partial finishing with no notes is a no-op. */
  assert_int_equal(run_job_alone(f, JOB_PARTIAL, "p1", &ran), 0);
  assert_int_equal(ran.count, 0);
}

/* Lost notes and a half-written final (crash mid-assembly) are repaired by assembling
 * when the final is next looked at. */
static void test_recovery(void **state) {
  fixture_t *f = *state;
  create(f, "p1", 3, true);
  create(f, "p2", 3, true);
  append(f, "p1", "abc");
  assert_int_equal(create_final(f, "fin", "final;/files/p1 /files/p2"), 0);
  append(f, "p2", "def");
  /* The PATCH's trigger never ran; leave garbage as a crashed copy would. */
  char **ids = NULL;
  size_t n = 0;
  assert_int_equal(ss_wait_take(f->store, "p2", &ids, &n), 0);
  assert_int_equal(n, 1);
  assert_string_equal(ids[0], "fin");
  free(ids[0]);
  free(ids);
  append(f, "fin", "xy");

  tusc_upload_info_t st;
  tusc_upload_info_init(&st);
  assert_int_equal(ss_get_info(f->store, "fin", &st), 0);
  assert_true(concat_status(f->store, &st));
  tusc_upload_info_dispose(&st);
  bool complete = false;
  assert_int_equal(assemble(f, "fin", &complete), 0);
  assert_true(complete);
  char *data = contents(f, "fin", NULL);
  assert_string_equal(data, "abcdef");
  free(data);
}

/* Parts bigger than one copy chunk and in another order than created (the store's
 * concat copies each whole, in the final's order). */
static void test_copy_fallback(void **state) {
  fixture_t *f = *state;
  size_t big = 600 * 1024 + 7;
  char *bytes = malloc(big + 1);
  assert_non_null(bytes);
  for (size_t i = 0; i < big; i++)
    bytes[i] = (char)('a' + (i * 7) % 26);
  bytes[big] = '\0';
  create(f, "p1", (int64_t)big, true);
  create(f, "p2", 2, true);
  append(f, "p1", bytes);
  append(f, "p2", "ZZ");
  assert_int_equal(create_final(f, "fin", "final;/files/p2 /files/p1"), 0);
  tusc_upload_info_t info;
  char *data = contents(f, "fin", &info);
  assert_int_equal(info.offset, (int64_t)big + 2);
  assert_memory_equal(data, "ZZ", 2);
  assert_memory_equal(data + 2, bytes, big);
  free(data);
  free(bytes);
}

/* --- jobs: locks on the loop ------------------------------------------------------ */

/* Creates final `id` over `value` without assembling it (as WORK_CREATE does). */
static void create_final_only(fixture_t *f, const char *id, const char *value) {
  tusc_concat_t c;
  assert_int_equal(tusc_concat_parse(value, strlen(value), NULL, "/files/", &c), 0);
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  snprintf(info.id, sizeof(info.id), "%s", id);
  assert_int_equal(prepare_final(f->store, &c, 0, &info), 0);
  assert_int_equal(ss_create(f->store, &info), 0);
  assert_int_equal(note_final(f->store, &info), 0);
  tusc_concat_dispose(&c);
  tusc_upload_info_dispose(&info);
}

typedef struct job_run_s {
  fixture_t *f;
  tusc_lock_req_t holder; /* someone else's lock, on the job's loop */
  int held;               /* its status, 1 until known */
  bool asked;             /* its holder was asked to let go */
  bool release_when_asked;
  bool abandon; /* the requester goes away once the job waits for the holder */
  tusc_concat_job_t *job;
  int calls, status;
  char finals[4][TUSC_ID_MAX + 1];
  size_t count;
} job_run_t;

static void on_holder_got(tusc_lock_req_t *req, int status) {
  job_run_t *run = req->data;
  run->held = status;
}

static void on_asked(tusc_lock_req_t *req) {
  job_run_t *run = req->data;
  run->asked = true; /* the job is waiting for this lock now */
  if (run->release_when_asked)
    tusc_lock_release(req);
  else if (run->abandon)
    tusc_concat_job_abandon(run->job);
}

static void on_run_done(void *arg, int status, char **finals, size_t count) {
  job_run_t *run = arg;
  run->calls++;
  run->status = status;
  run->count = count;
  for (size_t i = 0; i < count && i < 4; i++)
    snprintf(run->finals[i], sizeof(run->finals[i]), "%s", finals[i]);
  run->job = NULL;
}

/* Holds `held_id`'s lock, starts an assembly job for "fin" and runs the loop until it
 * ends. */
static void run_job(fixture_t *f, job_run_t *run, const char *held_id, int64_t wait_ms) {
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  run->f = f;
  run->held = 1;
  run->holder.data = run;
  run->holder.on_release_requested = on_asked;
  assert_int_equal(tusc_lock_acquire(f->lock, &loop, &run->holder, held_id, 0, on_holder_got), 0);
  while (run->held == 1)
    (void)uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(run->held, 0);
  tusc_concat_env_t env = f->env;
  env.lock_wait_ms = wait_ms;
  assert_int_equal(tusc_concat_queue_assemble(&loop, &env, "fin", on_run_done, run, &run->job), 0);
  assert_int_equal(run->calls, 0); /* never before the start function returned */
  while (run->calls == 0)
    (void)uv_run(&loop, UV_RUN_ONCE);
  tusc_lock_release(&run->holder); /* no-op when released already */
  (void)uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  assert_int_equal(run->calls, 1);
}

/* Nobody holds it (the job let go of everything it took). */
static void on_free_got(tusc_lock_req_t *req, int status) {
  *(int *)req->data = status;
  if (status == 0)
    tusc_lock_release(req);
}

static void assert_free(fixture_t *f, const char *id) {
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  int status = 1;
  tusc_lock_req_t req = {.data = &status};
  assert_int_equal(tusc_lock_acquire(f->lock, &loop, &req, id, 0, on_free_got), 0);
  (void)uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  assert_int_equal(status, 0);
}

static void test_locked_final(void **state) {
  fixture_t *f = *state;
  create(f, "p1", 1, true);
  append(f, "p1", "a");
  create_final_only(f, "fin", "final;/files/p1");
  /* The final is busy and the job has no time to wait: it fails at once, and nobody
   * is asked to let go for nothing. */
  job_run_t run = {0};
  run_job(f, &run, "fin", 0);
  assert_int_equal(run.status, TUSC_ELOCK_TIMEOUT);
  assert_false(run.asked);
  assert_false(is_complete(f, "fin"));
  assert_free(f, "p1");
  bool complete = false;
  assert_int_equal(assemble(f, "fin", &complete), 0);
  assert_true(complete);
  /* Not a final upload; no upload at all. */
  create(f, "plain", 1, false);
  assert_int_equal(assemble(f, "plain", NULL), TUSC_EINVALID_ARGUMENT);
  assert_int_equal(assemble(f, "nope", NULL), TUSC_ENOT_FOUND);
}

static void test_job_asks_the_holder_and_assembles(void **state) {
  fixture_t *f = *state;
  create(f, "p1", 2, true);
  append(f, "p1", "ab");
  create(f, "p2", 1, true);
  append(f, "p2", "c");
  create_final_only(f, "fin", "final;/files/p2 /files/p1");
  job_run_t run = {.release_when_asked = true};
  run_job(f, &run, "p1", 10000);
  assert_true(run.asked);
  assert_int_equal(run.status, 0);
  assert_int_equal(run.count, 1);
  assert_string_equal(run.finals[0], "fin");
  char *data = contents(f, "fin", NULL);
  assert_string_equal(data, "cab");
  free(data);
  assert_free(f, "fin");
  assert_free(f, "p2");
}

static void test_job_gives_up_after_the_lock_timeout(void **state) {
  fixture_t *f = *state;
  create(f, "p1", 1, true);
  append(f, "p1", "a");
  create_final_only(f, "fin", "final;/files/p1");
  job_run_t run = {0};
  run_job(f, &run, "p1", 50);
  assert_true(run.asked);
  assert_int_equal(run.status, TUSC_ELOCK_TIMEOUT);
  assert_int_equal(run.count, 0);
  char *data = contents(f, "fin", NULL);
  assert_string_equal(data, "");
  free(data);
  assert_free(f, "fin");
}

static void test_job_abandoned_while_waiting(void **state) {
  fixture_t *f = *state;
  create(f, "p1", 1, true);
  append(f, "p1", "a");
  create_final_only(f, "fin", "final;/files/p1");
  job_run_t run = {.abandon = true};
  run_job(f, &run, "p1", 60000); /* ends long before: the requester went away */
  assert_true(run.asked);
  assert_int_equal(run.status, UV_ECANCELED);
  assert_int_equal(run.count, 0);
  assert_free(f, "fin");
}

/* Deferred partials whose lengths add up past max_size: never assembled. */
static void test_final_over_max_size_not_assembled(void **state) {
  fixture_t *f = *state;
  create(f, "p1", -1, true);
  create(f, "p2", -1, true);
  create_final_only(f, "fin", "final;/files/p1 /files/p2");
  declare_length(f, "p1", 3);
  declare_length(f, "p2", 3);
  append(f, "p1", "abc");
  append(f, "p2", "def");
  f->env.max_size = 5;
  bool complete = true;
  assert_int_equal(assemble(f, "fin", &complete), TUSC_EMAX_SIZE_EXCEEDED);
  assert_false(complete);
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  assert_int_equal(ss_get_info(f->store, "fin", &info), 0);
  assert_false(tusc_concat_too_big(&info, 5)); /* the length is not saved... */
  assert_true(concat_status(f->store, &info));
  assert_true(tusc_concat_too_big(&info, 5)); /* ...but known from the partials */
  assert_false(tusc_concat_too_big(&info, 6));
  tusc_upload_info_dispose(&info);
  char *data = contents(f, "fin", NULL);
  assert_string_equal(data, "");
  free(data);
  f->env.max_size = 6;
  assert_int_equal(assemble(f, "fin", &complete), 0);
  assert_true(complete);
}

int main(void) {
  tusc_log_setup(getenv("TUSC_TEST_VERBOSE") ? TUSC_LOG_DEBUG : TUSC_LOG_ERROR, TUSC_LOG_TEXT);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_table),
      cmocka_unit_test(test_parse_limits),
      cmocka_unit_test(test_url_path_and_format),
      cmocka_unit_test_setup_teardown(test_final_of_finished_partials, setup, teardown),
      cmocka_unit_test_setup_teardown(test_prepare_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unfinished_partial, setup, teardown),
      cmocka_unit_test_setup_teardown(test_recovery, setup, teardown),
      cmocka_unit_test_setup_teardown(test_copy_fallback, setup, teardown),
      cmocka_unit_test_setup_teardown(test_locked_final, setup, teardown),
      cmocka_unit_test_setup_teardown(test_job_asks_the_holder_and_assembles, setup, teardown),
      cmocka_unit_test_setup_teardown(test_job_gives_up_after_the_lock_timeout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_job_abandoned_while_waiting, setup, teardown),
      cmocka_unit_test_setup_teardown(test_final_over_max_size_not_assembled, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

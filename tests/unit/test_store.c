/* Unit tests for src/store/file.c: layout, round trips, offsets, atomic info, tusd's
 * flat layout, fan-out. Each test works in its own mkdtemp directory. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
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
#include "store/store.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

typedef struct fixture_s {
  char dir[64];
  tusc_store_t *store;
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  if (test_tmpdir(f->dir, sizeof(f->dir), "store") != 0)
    return -1;
  tusc_file_store_options_t opts = {
      .dir = f->dir, .dir_perms = 0750, .file_perms = 0640, .fsync = true};
  if (tusc_file_store_new(&opts, &f->store) != 0)
    return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  ss_free(f->store);
  test_rm_rf(f->dir);
  free(f);
  return 0;
}

static bool exists(const char *dir, const char *rel) {
  char path[TUSC_PATH_MAX];
  snprintf(path, sizeof(path), "%s/%s", dir, rel);
  struct stat st;
  return lstat(path, &st) == 0;
}

static void write_file(const char *dir, const char *rel, const char *text) {
  char path[TUSC_PATH_MAX];
  snprintf(path, sizeof(path), "%s/%s", dir, rel);
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fputs(text, fp);
  assert_int_equal(fclose(fp), 0);
}

static void new_info(tusc_upload_info_t *info, const char *id, int64_t size) {
  tusc_upload_info_init(info);
  snprintf(info->id, sizeof(info->id), "%s", id);
  info->size = size;
  info->size_is_deferred = size < 0;
}

static void create(fixture_t *f, const char *id, int64_t size) {
  tusc_upload_info_t info;
  new_info(&info, id, size);
  int rc = ss_create(f->store, &info);
  if (rc != 0)
    fail_msg("create %s: %s", id, tusc_strerror(rc));
  tusc_upload_info_dispose(&info);
}

/* ---- shard paths ---- */

struct shard_case {
  const char *id;
  int err;
  const char *want;
};

static void test_shard_paths(void **state) {
  (void)state;
  static const struct shard_case cases[] = {
      {"0123456789abcdef0123456789abcdef", 0, "01/23/0123456789abcdef0123456789abcdef"},
      {"abcd", 0, "ab/cd/abcd"},
      {"abc", 0, "ab/c_/abc"},
      {"ab", 0, "ab/__/ab"},
      {"x", 0, "x_/__/x"},
      {"a.bc", 0, "a_/bc/a.bc"},
      {"ab.c.d", 0, "ab/_c/ab.c.d"},
      {"project-7/uuid", 0, "project-7/uu/id/uuid"},
      {"project-7/x", 0, "project-7/x_/__/x"},
      {"a/b/c/hello", 0, "a/b/c/he/ll/hello"},
      {"A_b-9", 0, "A_/b-/A_b-9"},
      {"", TUSC_EINVALID_ID, NULL},
      {"..", TUSC_EINVALID_ID, NULL},
      {".", TUSC_EINVALID_ID, NULL},
      {"a/../b", TUSC_EINVALID_ID, NULL},
      {"../etc/passwd", TUSC_EINVALID_ID, NULL},
      {"/abs", TUSC_EINVALID_ID, NULL},
      {"trailing/", TUSC_EINVALID_ID, NULL},
      {"a//b", TUSC_EINVALID_ID, NULL},
      {"back\\slash", TUSC_EINVALID_ID, NULL},
      {"%2e%2e", TUSC_EINVALID_ID, NULL},
      {"sp ace", TUSC_EINVALID_ID, NULL},
      {".hidden", TUSC_EINVALID_ID, NULL},
      {"abcd.info", TUSC_EINVALID_ID, NULL}, /* would be the .info of "abcd" */
      {"abcd.lock", TUSC_EINVALID_ID, NULL},
      {"abcd.info.tmp", TUSC_EINVALID_ID, NULL},
      {"p.lock/abcd", TUSC_EINVALID_ID, NULL},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    char out[TUSC_PATH_MAX];
    snprintf(out, sizeof(out), "untouched");
    int rc = tusc_file_store_shard_path(cases[i].id, out, sizeof(out));
    if (rc != cases[i].err)
      fail_msg("row %zu (\"%s\"): rc %d, want %d", i, cases[i].id, rc, cases[i].err);
    if (cases[i].want != NULL && strcmp(out, cases[i].want) != 0)
      fail_msg("row %zu (\"%s\"): got \"%s\", want \"%s\"", i, cases[i].id, out, cases[i].want);
  }
  /* Too long for the ID grammar, and too long for the caller's buffer. */
  char long_id[TUSC_ID_MAX + 2];
  memset(long_id, 'a', sizeof(long_id) - 1);
  long_id[sizeof(long_id) - 1] = '\0';
  char out[16];
  assert_int_equal(tusc_file_store_shard_path(long_id, out, sizeof(out)), TUSC_EINVALID_ID);
  assert_int_equal(tusc_file_store_shard_path("abcdefghijklmnop", out, sizeof(out)), -ENAMETOOLONG);
}

/* ---- create / get_info ---- */

static void test_create_get_info(void **state) {
  fixture_t *f = *state;
  mode_t old_umask = umask(077); /* perms must not depend on the umask */
  tusc_upload_info_t info;
  new_info(&info, "0123456789abcdef0123456789abcdef", 100);
  assert_int_equal(tusc_metadata_set(&info.metadata, "filename", "a.txt", 5), 0);
  assert_int_equal(tusc_metadata_set(&info.metadata, "bin", "\xff\x00", 2), 0);
  info.is_partial = true;
  info.expires_at = 4102444800;
  info.owner = strdup("bob");
  assert_int_equal(ss_create(f->store, &info), 0);
  umask(old_umask);

  char want[TUSC_PATH_MAX];
  snprintf(want, sizeof(want), "%s/01/23/0123456789abcdef0123456789abcdef", f->dir);
  assert_string_equal(info.data_path, want);
  snprintf(want, sizeof(want), "%s/01/23/0123456789abcdef0123456789abcdef.info", f->dir);
  assert_string_equal(info.info_path, want);
  assert_true(info.created_at > 0);
  assert_false(exists(f->dir, "01/23/0123456789abcdef0123456789abcdef.info.tmp"));

  struct stat st;
  assert_int_equal(stat(info.data_path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0640);
  assert_int_equal(st.st_size, 0);
  assert_int_equal(stat(info.info_path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0640);
  char dir1[TUSC_PATH_MAX];
  snprintf(dir1, sizeof(dir1), "%s/01", f->dir);
  assert_int_equal(stat(dir1, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0750);

  /* Taken ID. */
  tusc_upload_info_t again;
  new_info(&again, info.id, 1);
  assert_int_equal(ss_create(f->store, &again), -EEXIST);
  tusc_upload_info_dispose(&again);

  tusc_upload_info_t got;
  tusc_upload_info_init(&got);
  assert_int_equal(ss_get_info(f->store, info.id, &got), 0);
  assert_string_equal(got.id, info.id);
  assert_int_equal(got.size, 100);
  assert_false(got.size_is_deferred);
  assert_int_equal(got.offset, 0);
  assert_true(got.is_partial);
  assert_false(got.is_final);
  assert_int_equal(got.expires_at, 4102444800);
  assert_int_equal(got.created_at, info.created_at);
  assert_string_equal(got.owner, "bob");
  assert_string_equal(got.data_path, info.data_path);
  assert_string_equal(got.info_path, info.info_path);
  const tusc_metadata_pair_t *p = tusc_metadata_get(&got.metadata, "bin");
  assert_non_null(p);
  assert_int_equal(p->value_len, 2);
  assert_memory_equal(p->value, "\xff\x00", 2);
  assert_non_null(tusc_metadata_get(&got.metadata, "filename"));
  tusc_upload_info_dispose(&got);
  tusc_upload_info_dispose(&info);

  /* Deferred length, final upload with its parts, nested hook ID. */
  new_info(&info, "project-7/final", -1);
  info.is_final = true;
  info.partial_uploads = calloc(2, sizeof(char *));
  info.partial_uploads[0] = strdup("aaaa");
  info.partial_uploads[1] = strdup("project-7/bbbb");
  info.partial_count = 2;
  assert_int_equal(ss_create(f->store, &info), 0);
  assert_true(exists(f->dir, "project-7/fi/na/final"));
  assert_true(exists(f->dir, "project-7/fi/na/final.info"));
  tusc_upload_info_init(&got);
  assert_int_equal(ss_get_info(f->store, "project-7/final", &got), 0);
  assert_int_equal(got.size, -1);
  assert_true(got.size_is_deferred);
  assert_true(got.is_final);
  assert_int_equal(got.partial_count, 2);
  assert_string_equal(got.partial_uploads[1], "project-7/bbbb");
  tusc_upload_info_dispose(&got);
  tusc_upload_info_dispose(&info);
}

static void test_not_found_and_invalid(void **state) {
  fixture_t *f = *state;
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  snprintf(info.id, sizeof(info.id), "keep");
  assert_int_equal(ss_get_info(f->store, "ffffffffffffffff", &info), TUSC_ENOT_FOUND);
  assert_int_equal(ss_get_info(f->store, "../x", &info), TUSC_EINVALID_ID);
  assert_string_equal(info.id, "keep"); /* untouched on failure */
  tusc_upload_t *up = NULL;
  assert_int_equal(ss_open(f->store, "ffffffffffffffff", &up), TUSC_ENOT_FOUND);
  assert_int_equal(ss_open(f->store, "a/../../b", &up), TUSC_EINVALID_ID);
  assert_null(up);
  assert_int_equal(ss_terminate(f->store, "ffffffffffffffff"), TUSC_ENOT_FOUND);
  assert_int_equal(ss_terminate(f->store, ".."), TUSC_EINVALID_ID);
  new_info(&info, "..", 1);
  assert_int_equal(ss_create(f->store, &info), TUSC_EINVALID_ID);
  char path[TUSC_PATH_MAX];
  assert_int_equal(tusc_file_store_lock_path(f->store, "a\\b", path, sizeof(path)),
                   TUSC_EINVALID_ID);
  /* A shard directory squatting where a flat upload's data would be is not an upload,
   * even beside a flat .info, and terminate leaves it alone. */
  create(f, "abcd", 3);
  write_file(f->dir, "ab.info", "{\"ID\":\"ab\",\"Size\":1}");
  assert_int_equal(ss_get_info(f->store, "ab", &info), TUSC_ENOT_FOUND);
  assert_int_equal(ss_open(f->store, "ab", &up), TUSC_ENOT_FOUND);
  assert_int_equal(ss_terminate(f->store, "ab"), 0); /* removes the .info */
  assert_false(exists(f->dir, "ab.info"));
  assert_true(exists(f->dir, "ab/cd/abcd"));
  assert_int_equal(ss_get_info(f->store, "abcd", &info), 0);
  tusc_upload_info_dispose(&info);
  /* An .info that is not whole (what a crash leaves of an unacknowledged create:
   * file.c, fs_create) or names another upload: no upload, not an error, not a crash. */
  create(f, "corrupt", 3);
  write_file(f->dir, "co/rr/corrupt.info", "{\"ID\":");
  assert_int_equal(ss_get_info(f->store, "corrupt", &info), TUSC_ENOT_FOUND);
  assert_int_equal(ss_open(f->store, "corrupt", &up), TUSC_ENOT_FOUND);
  write_file(f->dir, "co/rr/corrupt.info", "");
  assert_int_equal(ss_get_info(f->store, "corrupt", &info), TUSC_ENOT_FOUND);
  write_file(f->dir, "co/rr/corrupt.info", "{\"ID\":\"abcd\",\"Size\":3}");
  assert_int_equal(ss_get_info(f->store, "corrupt", &info), TUSC_ENOT_FOUND);
  tusc_upload_info_dispose(&info);
}

/* ---- write / read / offsets ---- */

static void test_write_offsets(void **state) {
  fixture_t *f = *state;
  const char *id = "feedfacefeedfacefeedfacefeedface";
  create(f, id, 10);
  tusc_upload_t *up;
  assert_int_equal(ss_open(f->store, id, &up), 0);
  assert_int_equal(ss_info(up)->offset, 0);
  assert_int_equal(ss_write(up, 1, "x", 1), TUSC_EMISMATCHED_OFFSET);
  assert_int_equal(ss_write(up, 0, "hello", 5), 5);
  assert_int_equal(ss_info(up)->offset, 5);
  assert_int_equal(ss_write(up, 0, "again", 5), TUSC_EMISMATCHED_OFFSET);
  assert_int_equal(ss_write(up, 4, "again", 5), TUSC_EMISMATCHED_OFFSET);
  assert_int_equal(ss_write(up, 5, "123456", 6), TUSC_EUPLOAD_SIZE_EXCEEDED);
  assert_int_equal(ss_write(up, 5, "wor", 3), 3);
  assert_int_equal(ss_sync(up), 0);
  char buf[16] = {0};
  assert_int_equal(ss_read(up, 0, buf, sizeof(buf)), 8);
  assert_memory_equal(buf, "hellowor", 8);
  assert_int_equal(ss_read(up, 6, buf, 2), 2);
  assert_memory_equal(buf, "or", 2);
  assert_int_equal(ss_read(up, 8, buf, 4), 0);
  ss_close(up);

  /* A new handle (and get_info) see the stored length, not the stale .info Offset. */
  assert_int_equal(ss_open(f->store, id, &up), 0);
  assert_int_equal(ss_info(up)->offset, 8);
  assert_int_equal(ss_write(up, 8, "ld", 2), 2);
  ss_close(up);
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  assert_int_equal(ss_get_info(f->store, id, &info), 0);
  assert_int_equal(info.offset, 10);
  assert_int_equal(info.size, 10);
  tusc_upload_info_dispose(&info);
}

/* A chunk that is dropped (a rejected checksum) leaves the offset where it began. */
static void test_discard(void **state) {
  fixture_t *f = *state;
  const char *id = "00000000000000000000000000000001";
  create(f, id, -1);
  tusc_upload_t *up;
  assert_int_equal(ss_open(f->store, id, &up), 0);
  assert_int_equal(ss_write(up, 0, "good", 4), 4);
  bool drained = false;
  assert_int_equal(tusc_store_chunk_begin(up, 0), 0);
  assert_int_equal(tusc_store_append(up, "-bad", 4, ss_drained_, &drained), 0);
  assert_int_equal(ss_chunk_end(up, TUSC_STORE_DISCARD), 0);
  assert_int_equal(ss_info(up)->offset, 4);
  assert_int_equal(ss_write(up, 8, "x", 1), TUSC_EMISMATCHED_OFFSET);
  assert_int_equal(ss_write(up, 4, "!", 1), 1);
  struct stat st;
  assert_int_equal(stat(ss_info(up)->data_path, &st), 0);
  assert_int_equal(st.st_size, 5);
  ss_close(up);
}

static void test_save_info(void **state) {
  fixture_t *f = *state;
  const char *id = "00000000000000000000000000000002";
  create(f, id, -1);
  tusc_upload_t *up;
  assert_int_equal(ss_open(f->store, id, &up), 0);
  tusc_upload_info_t *info = ss_info(up);
  assert_true(info->size_is_deferred);
  assert_int_equal(ss_write(up, 0, "abc", 3), 3);
  info->size = 3;
  info->size_is_deferred = false;
  assert_int_equal(tusc_metadata_set(&info->metadata, "k", "v", 1), 0);
  assert_int_equal(ss_save_info(up), 0);
  assert_false(exists(f->dir, "00/00/00000000000000000000000000000002.info.tmp"));
  ss_close(up);

  tusc_upload_info_t got;
  tusc_upload_info_init(&got);
  assert_int_equal(ss_get_info(f->store, id, &got), 0);
  assert_int_equal(got.size, 3);
  assert_false(got.size_is_deferred);
  assert_int_equal(got.offset, 3);
  assert_non_null(tusc_metadata_get(&got.metadata, "k"));
  tusc_upload_info_dispose(&got);

  /* The directory holds exactly the upload's two files: no temp left behind. */
  char shard[TUSC_PATH_MAX];
  snprintf(shard, sizeof(shard), "%s/00/00", f->dir);
  DIR *d = opendir(shard);
  assert_non_null(d);
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
      n++;
  closedir(d);
  assert_int_equal(n, 2);
}

static void test_terminate(void **state) {
  fixture_t *f = *state;
  const char *id = "project-9/doomed";
  create(f, id, 4);
  char lock[TUSC_PATH_MAX];
  assert_int_equal(tusc_file_store_lock_path(f->store, id, lock, sizeof(lock)), 0);
  char want[TUSC_PATH_MAX];
  snprintf(want, sizeof(want), "%s/project-9/do/om/doomed.lock", f->dir);
  assert_string_equal(lock, want);
  write_file(f->dir, "project-9/do/om/doomed.lock", "");
  assert_int_equal(ss_terminate(f->store, id), 0);
  assert_false(exists(f->dir, "project-9/do/om/doomed"));
  assert_false(exists(f->dir, "project-9/do/om/doomed.info"));
  assert_false(exists(f->dir, "project-9/do/om/doomed.lock"));
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  assert_int_equal(ss_get_info(f->store, id, &info), TUSC_ENOT_FOUND);
  assert_int_equal(ss_terminate(f->store, id), TUSC_ENOT_FOUND);
  /* The ID can be used again. */
  create(f, id, 4);
  assert_int_equal(ss_get_info(f->store, id, &info), 0);
  tusc_upload_info_dispose(&info);
}

/* ---- tusd's flat layout ---- */

static void test_flat_tusd_layout(void **state) {
  fixture_t *f = *state;
  const char *id = "2b7d3f0c9a1e4b5c8d6f7a8b9c0d1e2f";
  char json[2 * TUSC_PATH_MAX];
  /* As tusd writes it: Offset stale (0), the data already holds 5 bytes. */
  snprintf(json, sizeof(json),
           "{\"ID\":\"%s\",\"Size\":10,\"SizeIsDeferred\":false,\"Offset\":0,"
           "\"MetaData\":{\"filename\":\"old.bin\"},\"IsPartial\":false,\"IsFinal\":false,"
           "\"PartialUploads\":null,\"Storage\":{\"InfoPath\":\"%s/%s.info\",\"Path\":\"%s/%s\","
           "\"Type\":\"filestore\"}}",
           id, f->dir, id, f->dir, id);
  char rel[128];
  snprintf(rel, sizeof(rel), "%s.info", id);
  write_file(f->dir, rel, json);
  write_file(f->dir, id, "hello");

  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  assert_int_equal(ss_get_info(f->store, id, &info), 0);
  assert_int_equal(info.offset, 5);
  assert_int_equal(info.size, 10);
  assert_non_null(tusc_metadata_get(&info.metadata, "filename"));
  char want[TUSC_PATH_MAX];
  snprintf(want, sizeof(want), "%s/%s", f->dir, id);
  assert_string_equal(info.data_path, want);
  tusc_upload_info_dispose(&info);

  char lock[TUSC_PATH_MAX];
  assert_int_equal(tusc_file_store_lock_path(f->store, id, lock, sizeof(lock)), 0);
  snprintf(want, sizeof(want), "%s/%s.lock", f->dir, id);
  assert_string_equal(lock, want);

  tusc_upload_t *up;
  assert_int_equal(ss_open(f->store, id, &up), 0);
  char buf[16];
  assert_int_equal(ss_read(up, 0, buf, sizeof(buf)), 5);
  assert_memory_equal(buf, "hello", 5);
  assert_int_equal(ss_write(up, 5, "world", 5), 5);
  assert_int_equal(ss_save_info(up), 0);
  ss_close(up);

  /* Stayed flat: no shard directory appeared, the flat .info was rewritten. */
  assert_false(exists(f->dir, "2b"));
  tusc_upload_info_init(&info);
  assert_int_equal(ss_get_info(f->store, id, &info), 0);
  assert_int_equal(info.offset, 10);
  tusc_upload_info_dispose(&info);

  /* A flat upload's ID is taken for create too. */
  new_info(&info, id, 1);
  assert_int_equal(ss_create(f->store, &info), -EEXIST);
  tusc_upload_info_dispose(&info);

  write_file(f->dir, rel + 0, json); /* rewrite with stale offset: still served */
  snprintf(rel, sizeof(rel), "%s.lock", id);
  write_file(f->dir, rel, "");
  assert_int_equal(ss_terminate(f->store, id), 0);
  assert_false(exists(f->dir, id));
  snprintf(rel, sizeof(rel), "%s.info", id);
  assert_false(exists(f->dir, rel));
  snprintf(rel, sizeof(rel), "%s.lock", id);
  assert_false(exists(f->dir, rel));
  assert_int_equal(ss_terminate(f->store, id), TUSC_ENOT_FOUND);
}

/* ---- fan-out ---- */

static int max_entries;
static size_t total_files;

static void walk(const char *path) {
  DIR *d = opendir(path);
  assert_non_null(d);
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    n++;
    char child[TUSC_PATH_MAX];
    snprintf(child, sizeof(child), "%s/%s", path, e->d_name);
    struct stat st;
    assert_int_equal(lstat(child, &st), 0);
    if (S_ISDIR(st.st_mode))
      walk(child);
    else
      total_files++;
  }
  closedir(d);
  if (n > max_entries)
    max_entries = n;
}

static void test_fanout(void **state) {
  fixture_t *f = *state;
  /* fsync off: this is about the layout, not durability, and must stay quick. */
  tusc_store_t *store;
  tusc_file_store_options_t opts = {
      .dir = f->dir, .dir_perms = 0755, .file_perms = 0644, .fsync = false};
  assert_int_equal(tusc_file_store_new(&opts, &store), 0);
  enum { UPLOADS = 20000 };
  for (int i = 0; i < UPLOADS; i++) {
    tusc_upload_info_t info;
    tusc_upload_info_init(&info);
    assert_int_equal(tusc_id_generate(info.id), 0);
    info.size = 1;
    int rc = ss_create(store, &info);
    if (rc != 0)
      fail_msg("create #%d %s: %s", i, info.id, tusc_strerror(rc));
    tusc_upload_info_dispose(&info);
  }
  ss_free(store);
  max_entries = 0;
  total_files = 0;
  walk(f->dir);
  assert_int_equal(total_files, 2 * UPLOADS);
  if (max_entries > 1000)
    fail_msg("a directory has %d entries", max_entries);
  /* The root holds at most the 256 first-level shards. */
  assert_true(max_entries <= 256);
}

static void test_relative_dir(void **state) {
  fixture_t *f = *state;
  char cwd[TUSC_PATH_MAX];
  assert_non_null(getcwd(cwd, sizeof(cwd)));
  assert_int_equal(chdir(f->dir), 0);
  tusc_store_t *store;
  tusc_file_store_options_t opts = {
      .dir = "sub/uploads", .dir_perms = 0700, .file_perms = 0600, .fsync = true};
  assert_int_equal(tusc_file_store_new(&opts, &store), 0);
  assert_int_equal(chdir(cwd), 0);
  tusc_upload_info_t info;
  new_info(&info, "relative", 1);
  assert_int_equal(ss_create(store, &info), 0);
  char want[TUSC_PATH_MAX];
  snprintf(want, sizeof(want), "%s/sub/uploads/re/la/relative", f->dir);
  assert_string_equal(info.data_path, want); /* absolute, though made from a relative dir */
  tusc_upload_info_dispose(&info);
  ss_free(store);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shard_paths),
      cmocka_unit_test_setup_teardown(test_create_get_info, setup, teardown),
      cmocka_unit_test_setup_teardown(test_not_found_and_invalid, setup, teardown),
      cmocka_unit_test_setup_teardown(test_write_offsets, setup, teardown),
      cmocka_unit_test_setup_teardown(test_discard, setup, teardown),
      cmocka_unit_test_setup_teardown(test_save_info, setup, teardown),
      cmocka_unit_test_setup_teardown(test_terminate, setup, teardown),
      cmocka_unit_test_setup_teardown(test_flat_tusd_layout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_relative_dir, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fanout, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for src/upload/journal.c and walk.c: last record wins, records survive a
 * reopen, a torn last line is skipped, bad tokens are refused, compaction keeps the
 * live records; the walker yields every file of a tree once with its relative path. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"
#include "upload/journal.h"
#include "upload/mime.h"
#include "upload/walk.h"

struct fixture {
  char dir[128];
  char path[256];
};

static int setup(void **state) {
  static struct fixture f;
  if (test_tmpdir(f.dir, sizeof(f.dir), "upjournal") < 0)
    return -1;
  snprintf(f.path, sizeof(f.path), "%s/state/journal", f.dir);
  *state = &f;
  return 0;
}

static int teardown(void **state) {
  struct fixture *f = *state;
  return test_rm_rf(f->dir);
}

static void test_last_record_wins_and_survives_reopen(void **state) {
  struct fixture *f = *state;
  up_journal_t *j;
  assert_int_equal(up_journal_open(f->path, &j), 0); /* creates state/ */
  bool done;
  assert_null(up_journal_get(j, "k1", &done));
  assert_int_equal(up_journal_put(j, "k1", "http://h/files/a"), 0);
  assert_int_equal(up_journal_put(j, "k2", "http://h/files/b"), 0);
  assert_int_equal(up_journal_done(j, "k1", "http://h/files/a"), 0);
  assert_int_equal(up_journal_forget(j, "k2"), 0);
  assert_int_equal(up_journal_put(j, "k3", "http://h/files/c"), 0);
  assert_int_equal(up_journal_sync(j), 0);
  up_journal_free(j);

  assert_int_equal(up_journal_open(f->path, &j), 0);
  assert_string_equal(up_journal_get(j, "k1", &done), "http://h/files/a");
  assert_true(done);
  assert_null(up_journal_get(j, "k2", &done));
  assert_string_equal(up_journal_get(j, "k3", &done), "http://h/files/c");
  assert_false(done);
  up_journal_free(j);
}

static void test_torn_and_foreign_lines_are_skipped(void **state) {
  struct fixture *f = *state;
  up_journal_t *j;
  assert_int_equal(up_journal_open(f->path, &j), 0);
  up_journal_free(j);
  int fd = open(f->path, O_WRONLY | O_APPEND);
  assert_true(fd >= 0);
  const char text[] = "U good http://h/files/g\n"
                      "garbage line\n"
                      "Z odd http://h/files/z\n"
                      "U torn http://h/fi"; /* a writer killed mid-line */
  assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
  close(fd);
  assert_int_equal(up_journal_open(f->path, &j), 0);
  bool done;
  assert_string_equal(up_journal_get(j, "good", &done), "http://h/files/g");
  assert_null(up_journal_get(j, "torn", &done));
  assert_null(up_journal_get(j, "odd", &done));
  /* Appending after a torn line still yields whole records. */
  assert_int_equal(up_journal_put(j, "after", "http://h/files/x"), 0);
  up_journal_free(j);
  assert_int_equal(up_journal_open(f->path, &j), 0);
  /* Opening ended the torn line, so the new record stands on a line of its own. */
  assert_null(up_journal_get(j, "torn", &done));
  assert_string_equal(up_journal_get(j, "after", &done), "http://h/files/x");
  up_journal_free(j);
}

static void test_bad_tokens_refused(void **state) {
  struct fixture *f = *state;
  up_journal_t *j;
  assert_int_equal(up_journal_open(f->path, &j), 0);
  assert_int_equal(up_journal_put(j, "a key", "http://h/x"), -EINVAL);
  assert_int_equal(up_journal_put(j, "k", "http://h/x y"), -EINVAL);
  assert_int_equal(up_journal_put(j, "k", "http://h/x\n"), -EINVAL);
  assert_int_equal(up_journal_put(j, "", "http://h/x"), -EINVAL);
  up_journal_free(j);
}

static void test_compaction_keeps_live_records(void **state) {
  struct fixture *f = *state;
  up_journal_t *j;
  assert_int_equal(up_journal_open(f->path, &j), 0);
  char key[32], url[64];
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 1000; i++) {
      snprintf(key, sizeof(key), "k%d", i);
      snprintf(url, sizeof(url), "http://h/files/%d-%d", i, round);
      assert_int_equal(up_journal_put(j, key, url), 0);
    }
  }
  up_journal_free(j);
  struct stat before, after;
  assert_int_equal(stat(f->path, &before), 0);
  assert_int_equal(up_journal_open(f->path, &j), 0); /* 3000 records, 1000 live */
  assert_int_equal(stat(f->path, &after), 0);
  assert_true(after.st_size * 2 < before.st_size);
  bool done;
  assert_string_equal(up_journal_get(j, "k999", &done), "http://h/files/999-2");
  assert_int_equal(up_journal_put(j, "new", "http://h/files/new"), 0);
  up_journal_free(j);
  assert_int_equal(up_journal_open(f->path, &j), 0);
  assert_string_equal(up_journal_get(j, "k0", &done), "http://h/files/0-2");
  assert_string_equal(up_journal_get(j, "new", &done), "http://h/files/new");
  up_journal_free(j);
}

static void test_fingerprint_depends_on_every_input(void **state) {
  (void)state;
  struct stat st;
  memset(&st, 0, sizeof(st));
  st.st_size = 10;
  st.st_ino = 5;
  char a[UP_FINGERPRINT_LEN + 1], b[UP_FINGERPRINT_LEN + 1];
  up_journal_fingerprint("/x/f", &st, "http://h/files/", a);
  assert_int_equal(strlen(a), UP_FINGERPRINT_LEN);
  up_journal_fingerprint("/x/f", &st, "http://other/files/", b);
  assert_string_not_equal(a, b);
  st.st_mtim.tv_nsec = 1;
  up_journal_fingerprint("/x/f", &st, "http://h/files/", b);
  assert_string_not_equal(a, b);
  st.st_mtim.tv_nsec = 0;
  st.st_ino = 6;
  up_journal_fingerprint("/x/f", &st, "http://h/files/", b);
  assert_string_not_equal(a, b);
}

static void touch(const char *dir, const char *rel) {
  char p[512];
  snprintf(p, sizeof(p), "%s/%s", dir, rel);
  FILE *fp = fopen(p, "w");
  assert_non_null(fp);
  fputs(rel, fp);
  fclose(fp);
}

static void test_walk_tree(void **state) {
  struct fixture *f = *state;
  char root[256], p[512];
  snprintf(root, sizeof(root), "%s/tree", f->dir);
  assert_int_equal(mkdir(root, 0700), 0);
  snprintf(p, sizeof(p), "%s/a", root);
  assert_int_equal(mkdir(p, 0700), 0);
  snprintf(p, sizeof(p), "%s/a/b", root);
  assert_int_equal(mkdir(p, 0700), 0);
  touch(root, "top.txt");
  touch(root, "a/mid.txt");
  touch(root, "a/b/deep.txt");
  snprintf(p, sizeof(p), "%s/loop", root); /* a link to a directory is not followed */
  assert_int_equal(symlink(root, p), 0);
  snprintf(p, sizeof(p), "%s/link.txt", root); /* a link to a file is */
  char target[512];
  snprintf(target, sizeof(target), "%s/top.txt", root);
  assert_int_equal(symlink(target, p), 0);

  char withslash[300];
  snprintf(withslash, sizeof(withslash), "%s/", root);
  char *roots[] = {withslash, target};
  up_walk_t *w;
  assert_int_equal(up_walk_new(roots, 2, &w), 0);
  const up_walk_entry_t *e;
  int seen = 0, rc;
  unsigned mask = 0;
  while ((rc = up_walk_next(w, &e)) != 0) {
    assert_int_equal(rc, 1);
    seen++;
    if (strcmp(e->rel, "top.txt") == 0)
      mask |= seen == 5 ? 16 : 1; /* the file argument comes last, by base name */
    else if (strcmp(e->rel, "a/mid.txt") == 0)
      mask |= 2;
    else if (strcmp(e->rel, "a/b/deep.txt") == 0)
      mask |= 4;
    else if (strcmp(e->rel, "link.txt") == 0)
      mask |= 8;
    else
      fail_msg("unexpected %s (%s)", e->rel, e->path);
  }
  assert_int_equal(seen, 5);
  assert_int_equal(mask, 31);
  up_walk_free(w);

  char missing[300];
  snprintf(missing, sizeof(missing), "%s/nope", f->dir);
  char *bad[] = {missing};
  assert_int_equal(up_walk_new(bad, 1, &w), 0);
  assert_int_equal(up_walk_next(w, &e), -ENOENT);
  assert_string_equal(e->path, missing);
  assert_int_equal(up_walk_next(w, &e), 0);
  up_walk_free(w);
}

static void test_mime_guess(void **state) {
  (void)state;
  assert_string_equal(up_mime_guess("a/b/photo.JPG"), "image/jpeg");
  assert_string_equal(up_mime_guess("notes.txt"), "text/plain");
  assert_string_equal(up_mime_guess(".bashrc"), "application/octet-stream");
  assert_string_equal(up_mime_guess("dir.png/file"), "application/octet-stream");
  assert_string_equal(up_mime_guess("archive.tar.gz"), "application/gzip");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_last_record_wins_and_survives_reopen, setup, teardown),
      cmocka_unit_test_setup_teardown(test_torn_and_foreign_lines_are_skipped, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_tokens_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_compaction_keeps_live_records, setup, teardown),
      cmocka_unit_test(test_fingerprint_depends_on_every_input),
      cmocka_unit_test_setup_teardown(test_walk_tree, setup, teardown),
      cmocka_unit_test(test_mime_guess),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

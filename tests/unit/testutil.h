/*
 * testutil — scratch directories for the unit tests that work on real files.
 *
 * Header-only (static functions), so every test stays one .c file that CMake builds on
 * its own. test_tmpdir() makes a fresh /tmp/tusc-<tag>-XXXXXX; test_rm_rf() removes a
 * tree without following symlinks. Both return 0 or -1.
 */
#ifndef TUSC_TESTUTIL_H
#define TUSC_TESTUTIL_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static inline int test_tmpdir(char *dir, size_t cap, const char *tag) {
  int n = snprintf(dir, cap, "/tmp/tusc-%s-XXXXXX", tag);
  if (n < 0 || (size_t)n >= cap)
    return -1;
  return mkdtemp(dir) != NULL ? 0 : -1;
}

static inline int test_rm_entry_(const char *path, const struct stat *st, int flag,
                                 struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static inline int test_rm_rf(const char *dir) {
  return nftw(dir, test_rm_entry_, 16, FTW_DEPTH | FTW_PHYS);
}

#endif

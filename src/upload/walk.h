/*
 * walk — yields the regular files named by tusc-upload's PATH arguments, descending into
 * directories lazily: one open directory per level, nothing listed ahead, so a tree of
 * millions of files costs the same memory as a tree of ten. Order is the directory's
 * own (readdir), arguments in the order given.
 *
 * Symbolic links given as arguments are followed; inside a tree, links to files are
 * followed and links to directories are not (no cycles). A file's relative path is its
 * path under the directory argument it was found in ("sub/a.txt"), or its base name
 * for a file argument.
 *
 * Single-threaded; the walker owns its entry, valid until the next call.
 */
#ifndef TUSC_UPLOAD_WALK_H
#define TUSC_UPLOAD_WALK_H

#include <limits.h>
#include <sys/stat.h>

typedef struct up_walk_s up_walk_t;

typedef struct {
  char path[PATH_MAX]; /* as reachable from the cwd: the argument joined with names */
  const char *rel;     /* points into path */
  struct stat st;
} up_walk_entry_t;

/* The walker keeps `roots` (not copied; they must outlive it). Returns 0 or -ENOMEM. */
int up_walk_new(char *const *roots, int nroots, up_walk_t **out)
    __attribute__((warn_unused_result));
void up_walk_free(up_walk_t *w);

/* Next file: returns 1 and *e, 0 when there are no more, or a negative errno for a path
 * that cannot be read (e->path names it; the walk goes on with the next call). */
int up_walk_next(up_walk_t *w, const up_walk_entry_t **e);

#endif

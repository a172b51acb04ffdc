/*
 * walk — a stack of open directories. path[] always holds the directory at the top of
 * the stack followed by '/'; each level remembers where its part of path[] ends, so
 * descending and returning never copies names.
 */
#include "upload/walk.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Deeper trees are reported as an error rather than exhausting descriptors. */
#define WALK_MAX_DEPTH 256

struct level {
  DIR *dir;
  size_t path_len; /* length of path[] for entries of this directory */
};

struct up_walk_s {
  char *const *roots;
  int nroots;
  int next_root;
  struct level stack[WALK_MAX_DEPTH];
  int depth;
  size_t rel_start; /* where the relative path starts in entry.path */
  up_walk_entry_t entry;
};

int up_walk_new(char *const *roots, int nroots, up_walk_t **out) {
  up_walk_t *w = calloc(1, sizeof(*w));
  if (w == NULL)
    return -ENOMEM;
  w->roots = roots;
  w->nroots = nroots;
  *out = w;
  return 0;
}

void up_walk_free(up_walk_t *w) {
  if (w == NULL)
    return;
  while (w->depth > 0)
    closedir(w->stack[--w->depth].dir);
  free(w);
}

static int push_dir(up_walk_t *w, size_t len) {
  if (w->depth == WALK_MAX_DEPTH)
    return -ELOOP;
  if (len + 2 >= sizeof(w->entry.path))
    return -ENAMETOOLONG;
  DIR *d = opendir(w->entry.path);
  if (d == NULL)
    return -errno;
  if (len == 0 || w->entry.path[len - 1] != '/')
    w->entry.path[len++] = '/';
  w->entry.path[len] = '\0';
  w->stack[w->depth].dir = d;
  w->stack[w->depth].path_len = len;
  w->depth++;
  return 0;
}

/* Starts the next argument: 1 = a file to yield, 0 = a directory pushed, negative =
 * error, and -ENOENT... is reported for the argument itself. */
static int start_root(up_walk_t *w, const char *root) {
  size_t len = strlen(root);
  if (len + 1 >= sizeof(w->entry.path))
    return -ENAMETOOLONG;
  memcpy(w->entry.path, root, len + 1);
  if (stat(root, &w->entry.st) < 0)
    return -errno;
  if (S_ISREG(w->entry.st.st_mode)) {
    const char *slash = strrchr(w->entry.path, '/');
    w->entry.rel = slash ? slash + 1 : w->entry.path;
    return 1;
  }
  if (!S_ISDIR(w->entry.st.st_mode))
    return -EINVAL;
  /* Strip trailing slashes (but keep "/"), so relative paths start right after one. */
  while (len > 1 && w->entry.path[len - 1] == '/')
    w->entry.path[--len] = '\0';
  int rc = push_dir(w, len);
  if (rc < 0)
    return rc;
  w->rel_start = w->stack[0].path_len;
  return 0;
}

int up_walk_next(up_walk_t *w, const up_walk_entry_t **e) {
  *e = &w->entry;
  for (;;) {
    if (w->depth == 0) {
      if (w->next_root == w->nroots)
        return 0;
      int rc = start_root(w, w->roots[w->next_root++]);
      if (rc != 0)
        return rc; /* a file argument (1) or an unreadable one */
      continue;
    }
    struct level *top = &w->stack[w->depth - 1];
    errno = 0;
    struct dirent *de = readdir(top->dir);
    if (de == NULL) {
      int err = errno;
      closedir(top->dir);
      w->depth--;
      if (err != 0) {
        w->entry.path[top->path_len] = '\0';
        return -err;
      }
      continue;
    }
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    size_t nlen = strlen(de->d_name);
    if (top->path_len + nlen + 1 >= sizeof(w->entry.path)) {
      w->entry.path[top->path_len] = '\0';
      return -ENAMETOOLONG;
    }
    memcpy(w->entry.path + top->path_len, de->d_name, nlen + 1);
    w->entry.rel = w->entry.path + w->rel_start;
    struct stat lst;
    if (lstat(w->entry.path, &lst) < 0)
      return -errno;
    if (S_ISDIR(lst.st_mode)) {
      int rc = push_dir(w, top->path_len + nlen);
      if (rc < 0)
        return rc;
      continue;
    }
    if (S_ISLNK(lst.st_mode)) {
      if (stat(w->entry.path, &w->entry.st) < 0)
        return -errno;
      if (!S_ISREG(w->entry.st.st_mode))
        continue; /* links to directories are not followed */
      return 1;
    }
    if (!S_ISREG(lst.st_mode))
      continue; /* sockets, fifos, devices */
    w->entry.st = lst;
    return 1;
  }
}

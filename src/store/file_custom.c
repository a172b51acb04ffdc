/*
 * file_custom — see file_custom.h.
 */
#include "store/file_custom.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"

static bool has_suffix(const char *s, size_t n, const char *suffix) {
  size_t k = strlen(suffix);
  return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

static bool path_inside(const char *real, const char *root) {
  size_t rl = strlen(root);
  return strcmp(root, "/") == 0 ||
         (strncmp(real, root, rl) == 0 && (real[rl] == '\0' || real[rl] == '/'));
}

/* mkdir -p (with dir_perms) of the missing parents, as tusd's file store does, but only
 * for a directory spelled under `root`: every level is resolved again once it exists, so
 * a symlink (or one raced in) cannot lead the next mkdir outside. Returns NULL, or why
 * the directory cannot be used. */
static const char *make_parents(const char *root, char *dir, unsigned perms) {
  size_t rl = strlen(root);
  if (strncmp(dir, root, rl) != 0 || dir[rl] != '/')
    return "parent directory missing";
  for (char *p = dir + rl + 1;; p++) {
    if (*p != '/' && *p != '\0')
      continue;
    char saved = *p, real[PATH_MAX];
    const char *why = NULL;
    *p = '\0';
    if (mkdir(dir, (mode_t)perms) == 0) {
      if (chmod(dir, (mode_t)perms) != 0)
        why = "cannot set parent directory permissions";
    } else if (errno != EEXIST) {
      why = "cannot create parent directory";
    }
    if (why == NULL && (realpath(dir, real) == NULL || !path_inside(real, root)))
      why = "outside the upload directory";
    *p = saved;
    if (why != NULL || saved == '\0')
      return why;
  }
}

/* Whether `rel` (a resolved path under the upload directory) lies where tusc keeps its
 * own files, so that a hook could squat another upload's: the .concat tree of
 * concatenation notes, or a shard tree. Shard paths are <prefix/><ab>/<cd>/<name> for
 * any ID, so two two-character names in a row may be some upload's shard directories,
 * and a two-character name may become one. */
static bool reserved(const char *rel) {
  size_t prev = 0;
  for (const char *seg = rel;;) {
    const char *end = strchr(seg, '/');
    size_t len = end != NULL ? (size_t)(end - seg) : strlen(seg);
    if ((seg == rel && len == 7 && memcmp(seg, ".concat", 7) == 0) || (len == 2 && prev == 2))
      return true;
    if (end == NULL)
      return len == 2;
    prev = len;
    seg = end + 1;
  }
}

static const char *check_name(const char *want) {
  size_t n = strlen(want);
  if (n == 0 || want[n - 1] == '/' || has_suffix(want, n, ".info") ||
      has_suffix(want, n, ".lock") || has_suffix(want, n, ".tmp"))
    return "not a file name tusc can use";
  for (const char *seg = want; *seg != '\0';) {
    const char *end = strchr(seg, '/');
    size_t len = end != NULL ? (size_t)(end - seg) : strlen(seg);
    if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
      return "\".\" or \"..\" segment";
    seg += len + (end != NULL ? 1 : 0);
  }
  return NULL;
}

static const char *resolve(const char *root, unsigned dir_perms, bool allow_absolute,
                           const char *want, char *out, size_t cap) {
  char joined[PATH_MAX], parent[PATH_MAX];
  const char *why = check_name(want);
  if (why != NULL)
    return why;
  bool rel = want[0] != '/';
  int w = snprintf(joined, sizeof(joined), "%s%s%s", rel ? root : "", rel ? "/" : "", want);
  if (w < 0 || (size_t)w >= sizeof(joined))
    return "too long";
  /* As spelled first, so that no directory is made there; resolved again below. */
  size_t rl = strlen(root);
  if (strcmp(root, "/") != 0 && strncmp(joined, root, rl) == 0 && joined[rl] == '/' &&
      reserved(joined + rl + 1))
    return "in tusc's shard or .concat directories";
  char *slash = strrchr(joined, '/');
  *slash = '\0';
  if (realpath(joined[0] != '\0' ? joined : "/", parent) == NULL) {
    if (errno != ENOENT)
      return "parent directory unusable";
    if ((why = make_parents(root, joined, dir_perms)) != NULL)
      return why;
    if (realpath(joined, parent) == NULL)
      return "parent directory missing";
  }
  if (!allow_absolute && !path_inside(parent, root))
    return "outside the upload directory (see -hooks-allow-absolute-path)";
  w = snprintf(out, cap, "%s/%s", strcmp(parent, "/") == 0 ? "" : parent, slash + 1);
  if (w < 0 || (size_t)w >= cap)
    return "too long";
  if (path_inside(out, root)) {
    const char *in = out + (strcmp(root, "/") == 0 ? 0 : rl);
    char info_path[PATH_MAX + sizeof(".info")];
    snprintf(info_path, sizeof(info_path), "%s.info", out);
    if (reserved(in + (*in == '/' ? 1 : 0)))
      return "in tusc's shard or .concat directories";
    if (access(info_path, F_OK) == 0 || errno != ENOENT)
      return "another upload's file";
  }
  return NULL;
}

int tusc_file_custom_path(const char *root, unsigned dir_perms, bool allow_absolute,
                          const char *want, char *out, size_t cap, const char **why) {
  *why = resolve(root, dir_perms, allow_absolute, want, out, cap);
  if (*why == NULL)
    return 0;
  if (cap > 0)
    out[0] = '\0';
  return TUSC_EINTERNAL;
}

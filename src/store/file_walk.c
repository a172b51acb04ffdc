/*
 * file_walk — see file_walk.h. Depth-first with an explicit stack of directory paths,
 * so a deep hook-chosen ID cannot exhaust the thread's stack; every .info is read
 * through one reused buffer.
 */
#include "store/file_walk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"

#define INFO_SUFFIX ".info"
/* Same cap as the store's reader: bigger .info files are not ours. */
#define INFO_MAX_BYTES (16 * 1024 * 1024)

struct walk {
  const char *root;
  size_t root_len;
  tusc_store_visit_cb visit;
  void *arg;
  char **stack;
  size_t depth, cap;
  char *buf;
  size_t buf_cap;
};

static int push(struct walk *w, const char *path) {
  if (w->depth == w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 64;
    char **grown = realloc(w->stack, cap * sizeof(*grown));
    if (grown == NULL)
      return TUSC_ENOMEM;
    w->stack = grown;
    w->cap = cap;
  }
  char *copy = strdup(path);
  if (copy == NULL)
    return TUSC_ENOMEM;
  w->stack[w->depth++] = copy;
  return 0;
}

/* Reads the whole file at dirfd/name into w->buf (NUL-terminated). -1 to skip it. */
static long read_small(struct walk *w, int dirfd, const char *name) {
  int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return -1;
  long len = 0;
  for (;;) {
    if ((size_t)len + 1 >= w->buf_cap) {
      if (w->buf_cap >= INFO_MAX_BYTES) {
        len = -1;
        break;
      }
      size_t cap = w->buf_cap ? w->buf_cap * 2 : 4096;
      char *grown = realloc(w->buf, cap);
      if (grown == NULL) {
        len = -1;
        break;
      }
      w->buf = grown;
      w->buf_cap = cap;
    }
    ssize_t n = read(fd, w->buf + len, w->buf_cap - (size_t)len - 1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      len = -1;
      break;
    }
    if (n == 0)
      break;
    len += n;
  }
  close(fd);
  if (len >= 0)
    w->buf[len] = '\0';
  return len;
}

/* One "<stem>.info" in directory `dir` (absolute). Returns visit's value or 0. */
static int visit_info(struct walk *w, int dirfd, const char *dir, const char *name) {
  size_t name_len = strlen(name);
  size_t stem_len = name_len - strlen(INFO_SUFFIX);
  long len = read_small(w, dirfd, name);
  if (len < 0)
    return 0;
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  int rc = 0;
  if (tusc_upload_info_from_json(w->buf, (size_t)len, &info) != 0 || info.id[0] == '\0')
    goto out;

  /* The upload must live exactly here, or a copied or planted .info could make the
   * caller act on some other upload's ID. */
  char rel[TUSC_PATH_MAX], want[TUSC_PATH_MAX], here[TUSC_PATH_MAX];
  if (tusc_file_store_shard_path(info.id, rel, sizeof(rel)) != 0)
    goto out;
  int n = snprintf(here, sizeof(here), "%s/%.*s", dir, (int)stem_len, name);
  int m = snprintf(want, sizeof(want), "%s/%s", w->root, rel);
  if (n < 0 || m < 0 || (size_t)n >= sizeof(here) || (size_t)m >= sizeof(want))
    goto out;
  bool sharded = strcmp(here, want) == 0;
  bool flat = strcmp(dir, w->root) == 0 && strchr(info.id, '/') == NULL &&
              strlen(info.id) == stem_len && memcmp(info.id, name, stem_len) == 0;
  if (!sharded && !flat)
    goto out;

  struct stat st;
  char data_name[TUSC_PATH_MAX];
  snprintf(data_name, sizeof(data_name), "%.*s", (int)stem_len, name);
  if (fstatat(dirfd, data_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
    goto out;
  info.offset = (int64_t)st.st_size;
  info.modified_ms = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
  char info_path[TUSC_PATH_MAX];
  n = snprintf(info_path, sizeof(info_path), "%s/%s", dir, name);
  if (n < 0 || (size_t)n >= sizeof(info_path) ||
      tusc_upload_info_set_path(&info.data_path, here) != 0 ||
      tusc_upload_info_set_path(&info.info_path, info_path) != 0)
    goto out;
  rc = w->visit(&info, w->arg);
out:
  tusc_upload_info_dispose(&info);
  return rc;
}

static int walk_dir(struct walk *w, const char *dir) {
  DIR *d = opendir(dir[0] != '\0' ? dir : "/");
  if (d == NULL)
    return strcmp(dir, w->root) == 0 ? -errno : 0;
  int dirfd_ = dirfd(d);
  int rc = 0;
  char path[TUSC_PATH_MAX];
  struct dirent *e;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    const char *name = e->d_name;
    /* ".", "..", and the store's own dot-directories (e.g. .concat) hold no uploads;
     * no upload path segment may start with a dot. */
    if (name[0] == '.')
      continue;
    unsigned char type = e->d_type;
    if (type == DT_UNKNOWN) {
      struct stat st;
      if (fstatat(dirfd_, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        continue;
      type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
    }
    if (type == DT_DIR) {
      int n = snprintf(path, sizeof(path), "%s/%s", dir, name);
      if (n > 0 && (size_t)n < sizeof(path))
        rc = push(w, path);
      continue;
    }
    size_t len = strlen(name);
    size_t sl = strlen(INFO_SUFFIX);
    if (type == DT_REG && len > sl && strcmp(name + len - sl, INFO_SUFFIX) == 0)
      rc = visit_info(w, dirfd_, dir, name);
  }
  closedir(d);
  return rc;
}

int tusc_file_store_walk(const char *root, tusc_store_visit_cb visit, void *arg) {
  struct walk w = {.root = root, .root_len = strlen(root), .visit = visit, .arg = arg};
  int rc = walk_dir(&w, root);
  while (rc == 0 && w.depth > 0) {
    char *dir = w.stack[--w.depth];
    rc = walk_dir(&w, dir);
    free(dir);
  }
  while (w.depth > 0)
    free(w.stack[--w.depth]);
  free(w.stack);
  free(w.buf);
  return rc;
}

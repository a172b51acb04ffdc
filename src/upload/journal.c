/*
 * journal — an append-only text log plus an in-memory hash table of the last record of
 * each key. Records are written with one write(2) on an O_APPEND descriptor while
 * holding flock(LOCK_EX): another process appending to the same file waits for the
 * lock, so lines never interleave. Because compaction replaces the file by rename, an
 * appender checks under its lock that its descriptor is still the file at `path`
 * (same device and inode) and reopens otherwise, so no record lands in an unlinked
 * file.
 */
#include "upload/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <openssl/evp.h>

/* A line longer than this is not ours; it is skipped when loading. */
#define LINE_MAX_BYTES (UP_JOURNAL_KEY_MAX + UP_JOURNAL_URL_MAX + 8)
/* Compact when dead records outnumber live ones by this factor (and there are many). */
#define COMPACT_MIN_RECORDS 1024
#define COMPACT_FACTOR 2

struct entry {
  char *key; /* NULL = empty slot */
  char *url; /* NULL = forgotten */
  bool done;
};

struct up_journal_s {
  char *path;
  int fd;
  bool dirty;
  bool torn; /* the file ends inside a line (a writer was killed mid-write) */
  struct entry *slots;
  size_t cap; /* power of two */
  size_t used;
  size_t records; /* lines in the file */
};

static uint64_t hash_key(const char *s) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ULL;
  }
  return h;
}

static struct entry *find_slot(struct entry *slots, size_t cap, const char *key) {
  size_t i = (size_t)hash_key(key) & (cap - 1);
  while (slots[i].key != NULL && strcmp(slots[i].key, key) != 0)
    i = (i + 1) & (cap - 1);
  return &slots[i];
}

static int grow(up_journal_t *j) {
  size_t cap = j->cap ? j->cap * 2 : 256;
  struct entry *slots = calloc(cap, sizeof(*slots));
  if (slots == NULL)
    return -ENOMEM;
  for (size_t i = 0; i < j->cap; i++)
    if (j->slots[i].key != NULL)
      *find_slot(slots, cap, j->slots[i].key) = j->slots[i];
  free(j->slots);
  j->slots = slots;
  j->cap = cap;
  return 0;
}

/* Sets the in-memory view of `key`; url NULL forgets it. */
static int set_entry(up_journal_t *j, const char *key, const char *url, bool done) {
  if ((j->used + 1) * 4 > j->cap * 3) {
    int rc = grow(j);
    if (rc < 0)
      return rc;
  }
  struct entry *e = find_slot(j->slots, j->cap, key);
  char *nurl = NULL;
  if (url != NULL && (nurl = strdup(url)) == NULL)
    return -ENOMEM;
  if (e->key == NULL) {
    if ((e->key = strdup(key)) == NULL) {
      free(nurl);
      return -ENOMEM;
    }
    j->used++;
  }
  free(e->url);
  e->url = nurl;
  e->done = done && url != NULL;
  return 0;
}

static bool valid_token(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n == 0 || n > max)
    return false;
  for (; *s; s++)
    if ((unsigned char)*s <= ' ' || *s == 0x7f)
      return false;
  return true;
}

/* Applies one line ("U key url"); malformed lines are ignored. */
static int apply_line(up_journal_t *j, char *line) {
  if (strlen(line) < 4 || line[1] != ' ')
    return 0;
  char op = line[0];
  char *key = line + 2;
  char *sp = strchr(key, ' ');
  if (sp == NULL)
    return 0;
  *sp = '\0';
  char *url = sp + 1;
  if (!valid_token(key, UP_JOURNAL_KEY_MAX) || !valid_token(url, UP_JOURNAL_URL_MAX))
    return 0;
  j->records++;
  switch (op) {
  case 'U':
    return set_entry(j, key, url, false);
  case 'D':
    return set_entry(j, key, url, true);
  case 'X':
    return set_entry(j, key, NULL, false);
  default:
    return 0;
  }
}

static int load(up_journal_t *j) {
  int fd = dup(j->fd);
  if (fd < 0)
    return -errno;
  FILE *f = fdopen(fd, "r");
  if (f == NULL) {
    int rc = -errno;
    close(fd);
    return rc;
  }
  rewind(f);
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  int rc = 0;
  while (rc == 0 && (n = getline(&line, &cap, f)) > 0) {
    /* A line without its newline is the torn end of a killed writer: skip it. */
    if (line[n - 1] != '\n') {
      j->torn = true;
      continue;
    }
    if (n > LINE_MAX_BYTES)
      continue;
    line[n - 1] = '\0';
    rc = apply_line(j, line);
  }
  if (rc == 0 && ferror(f))
    rc = -EIO;
  free(line);
  fclose(f);
  return rc;
}

static int write_all(int fd, const char *p, size_t len) {
  while (len > 0) {
    ssize_t w = write(fd, p, len);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    p += w;
    len -= (size_t)w;
  }
  return 0;
}

static int lock_fd(int fd, int op) {
  while (flock(fd, op) < 0) {
    if (errno != EINTR)
      return -errno;
  }
  return 0;
}

/* Takes the exclusive lock on a descriptor that is still the file at path. */
static int lock_current(up_journal_t *j) {
  for (;;) {
    int rc = lock_fd(j->fd, LOCK_EX);
    if (rc < 0)
      return rc;
    struct stat a, b;
    if (fstat(j->fd, &a) == 0 && stat(j->path, &b) == 0 && a.st_dev == b.st_dev &&
        a.st_ino == b.st_ino)
      return 0;
    /* Compacted (renamed over) by another process: reopen the new file. */
    int fd = open(j->path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
      return -errno;
    close(j->fd);
    j->fd = fd;
  }
}

/* Rewrites the live records into path.tmp and renames it over path; called with the
 * exclusive lock held on j->fd. */
static int compact(up_journal_t *j) {
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof(tmp), "%s.tmp", j->path) >= (int)sizeof(tmp))
    return -ENAMETOOLONG;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    return -errno;
  int rc = 0;
  size_t live = 0;
  char line[LINE_MAX_BYTES + 1];
  for (size_t i = 0; rc == 0 && i < j->cap; i++) {
    struct entry *e = &j->slots[i];
    if (e->key == NULL || e->url == NULL)
      continue;
    int n = snprintf(line, sizeof(line), "%c %s %s\n", e->done ? 'D' : 'U', e->key, e->url);
    if (n > 0 && (size_t)n < sizeof(line))
      rc = write_all(fd, line, (size_t)n);
    live++;
  }
  if (rc == 0 && fsync(fd) < 0)
    rc = -errno;
  close(fd);
  if (rc == 0 && rename(tmp, j->path) < 0)
    rc = -errno;
  if (rc < 0) {
    unlink(tmp);
    return rc;
  }
  /* Make the rename itself durable. */
  char dir[PATH_MAX];
  snprintf(dir, sizeof(dir), "%s", j->path);
  char *slash = strrchr(dir, '/');
  if (slash != NULL) {
    *slash = '\0';
    int dfd = open(dir[0] ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      fsync(dfd);
      close(dfd);
    }
  }
  j->records = live;
  return 0;
}

static int mkdirs(const char *path) {
  char buf[PATH_MAX];
  if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
    return -ENAMETOOLONG;
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(buf, 0700) < 0 && errno != EEXIST)
      return -errno;
    *p = '/';
  }
  return 0;
}

int up_journal_open(const char *path, up_journal_t **out) {
  int rc = mkdirs(path);
  if (rc < 0)
    return rc;
  up_journal_t *j = calloc(1, sizeof(*j));
  if (j == NULL)
    return -ENOMEM;
  j->fd = -1;
  if ((j->path = strdup(path)) == NULL) {
    rc = -ENOMEM;
    goto out;
  }
  if ((j->fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) < 0) {
    rc = -errno;
    goto out;
  }
  if ((rc = lock_current(j)) < 0)
    goto out;
  rc = load(j);
  /* End a torn last line so the next record starts a line of its own. The ending
   * " \x7f" puts a DEL into the line's URL field (or makes it the field), which no
   * valid record holds, so the torn record stays invalid for every later load. */
  if (rc == 0 && j->torn)
    rc = write_all(j->fd, " \x7f\n", 3);
  if (rc == 0 && j->records >= COMPACT_MIN_RECORDS && j->records > COMPACT_FACTOR * j->used) {
    /* Best effort: a failed compaction leaves the old, still valid log. */
    if (compact(j) == 0) {
      int fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC);
      if (fd >= 0) {
        lock_fd(j->fd, LOCK_UN);
        close(j->fd);
        j->fd = fd;
      }
    }
  }
  lock_fd(j->fd, LOCK_UN);
out:
  if (rc < 0) {
    up_journal_free(j);
    return rc;
  }
  *out = j;
  return 0;
}

void up_journal_free(up_journal_t *j) {
  if (j == NULL)
    return;
  for (size_t i = 0; i < j->cap; i++) {
    free(j->slots[i].key);
    free(j->slots[i].url);
  }
  free(j->slots);
  if (j->fd >= 0)
    close(j->fd);
  free(j->path);
  free(j);
}

int up_journal_default_path(char *out, size_t cap) {
  const char *xdg = getenv("XDG_STATE_HOME");
  int n;
  if (xdg != NULL && xdg[0] == '/') {
    n = snprintf(out, cap, "%s/tusc-upload/journal", xdg);
  } else {
    const char *home = getenv("HOME");
    if (home == NULL || home[0] != '/')
      return -ENOENT;
    n = snprintf(out, cap, "%s/.local/state/tusc-upload/journal", home);
  }
  return n > 0 && (size_t)n < cap ? 0 : -ENAMETOOLONG;
}

void up_journal_fingerprint(const char *abs_path, const struct stat *st, const char *server_url,
                            char out[UP_FINGERPRINT_LEN + 1]) {
  char meta[160];
  int n = snprintf(meta, sizeof(meta), "%lld %lld.%09ld %llu %llu", (long long)st->st_size,
                   (long long)st->st_mtim.tv_sec, (long)st->st_mtim.tv_nsec,
                   (unsigned long long)st->st_dev, (unsigned long long)st->st_ino);
  unsigned char md[32];
  unsigned int mdlen = 0;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  /* NUL separators keep ("a","bc") and ("ab","c") apart. */
  if (ctx == NULL || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) ||
      !EVP_DigestUpdate(ctx, abs_path, strlen(abs_path) + 1) ||
      !EVP_DigestUpdate(ctx, meta, (size_t)n + 1) ||
      !EVP_DigestUpdate(ctx, server_url, strlen(server_url) + 1) ||
      !EVP_DigestFinal_ex(ctx, md, &mdlen))
    memset(md, 0, sizeof(md));
  EVP_MD_CTX_free(ctx);
  static const char hex[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    out[2 * i] = hex[md[i] >> 4];
    out[2 * i + 1] = hex[md[i] & 15];
  }
  out[UP_FINGERPRINT_LEN] = '\0';
}

const char *up_journal_get(const up_journal_t *j, const char *key, bool *done) {
  *done = false;
  if (j->cap == 0)
    return NULL;
  struct entry *e = find_slot(j->slots, j->cap, key);
  if (e->key == NULL || e->url == NULL)
    return NULL;
  *done = e->done;
  return e->url;
}

static int append(up_journal_t *j, char op, const char *key, const char *url) {
  if (!valid_token(key, UP_JOURNAL_KEY_MAX) || !valid_token(url, UP_JOURNAL_URL_MAX))
    return -EINVAL;
  char line[LINE_MAX_BYTES + 1];
  int n = snprintf(line, sizeof(line), "%c %s %s\n", op, key, url);
  if (n < 0 || (size_t)n >= sizeof(line))
    return -EINVAL;
  int rc = lock_current(j);
  if (rc < 0)
    return rc;
  rc = write_all(j->fd, line, (size_t)n);
  lock_fd(j->fd, LOCK_UN);
  if (rc < 0)
    return rc;
  j->dirty = true;
  j->records++;
  return set_entry(j, key, op == 'X' ? NULL : url, op == 'D');
}

int up_journal_put(up_journal_t *j, const char *key, const char *url) {
  return append(j, 'U', key, url);
}

int up_journal_done(up_journal_t *j, const char *key, const char *url) {
  return append(j, 'D', key, url);
}

int up_journal_forget(up_journal_t *j, const char *key) {
  return append(j, 'X', key, "-");
}

int up_journal_sync(up_journal_t *j) {
  if (!j->dirty)
    return 0;
  if (fdatasync(j->fd) < 0)
    return -errno;
  j->dirty = false;
  return 0;
}

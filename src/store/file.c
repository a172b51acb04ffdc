/*
 * The sharded file store (DESIGN.md "File store", TUSD-COMPAT.md "On disk").
 *
 * Files of one upload, all in one shard directory:
 *   <dir>/<shard path>            data; its length is the offset
 *   <dir>/<shard path>.info       tusd FileInfo JSON: written in place at create,
 *                                 replaced atomically by rename after that
 *   <dir>/<shard path>.info.tmp   the next .info while it is being written
 *   <dir>/<shard path>.lock       flock(2) target of lock/
 * An existing flat tusd directory (<dir>/<id>, <dir>/<id>.info) is served as well:
 * readers look at the sharded path first, then the flat one.
 *
 * Durability (docs/durability.md): with fsync, a create's files and a chunk end's
 * bytes are made durable by the store's sync batch (store/sync_batch.h, group commit)
 * before the callback; why what a crash leaves of an unacknowledged create is no
 * upload is at fs_create.
 *
 * Invariants: every ID is checked (tusc_id_valid plus the reserved suffixes below)
 * before any path is built from it; the store object is immutable after
 * tusc_file_store_new, so any thread may use it; an upload handle belongs to the holder
 * of the upload's lock, so its info needs no mutex.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "store/file_custom.h"
#include "store/file_path.h"
#include "store/file_walk.h"
#include "store/store.h"
#include "store/sync_batch.h"

/* Longest suffix appended to a data path; a data path is accepted only when it fits. */
#define TMP_SUFFIX ".info.tmp"
/* Named side file of a chunk being verified, where O_TMPFILE is unavailable; ".tmp" is
 * a reserved ID suffix, so no upload's files can be called that. */
#define STAGE_SUFFIX ".patch.tmp"
/* .info files bigger than this are treated as corrupt rather than read into memory. */
#define INFO_MAX_BYTES (16 * 1024 * 1024)

typedef struct file_store_s {
  tusc_store_t base;
  char dir[TUSC_PATH_MAX];
  unsigned dir_perms;
  unsigned file_perms;
  bool fsync;
  bool allow_absolute_path;
  tusc_store_pool_t pool;
  tusc_sync_batch_t sync; /* group commit of creates and chunk ends (fsync on) */
} file_store_t;

/* Size of each of an upload's two append buffers: one fills on the loop while the other
 * is written on the pool. */
#define APPEND_BUF (1024 * 1024)

struct append_buf {
  char *data; /* APPEND_BUF bytes of their own mapping, or NULL */
  size_t len;
  size_t touched; /* pages of the mapping ever written, in bytes: its resident part */
};

/* The buffers are mappings of their own, not heap memory: given back whole when an
 * upload goes idle, so thousands of quiet connections keep no pages of them (freed heap
 * pages of a burst of uploads would stay resident).
 *
 * Mapping, faulting in and unmapping (a TLB shootdown on every core running one of our
 * threads) cost more than writing a small upload, so each loop thread keeps released
 * buffers for its next uploads, bounded by what they hold resident: at most
 * BUF_SPARE_BYTES touched bytes in all (a buffer of which more was touched is unmapped),
 * and at most BUF_SPARE_MAX of them (so a loop thread's spares cost at most 2 MiB
 * whatever the load, and at most 128 KiB after a burst of idle connections that each
 * sent a few bytes: figure (c) of bench/), and a burst of small uploads (dozens open at
 * once per loop) reuses them. Buffers are taken and released on loop threads only.
 * This cache is the file store's only mutable state outside its objects; what a thread
 * holds at its exit stays mapped until the process ends. */
#define BUF_SPARE_MAX 32
#define BUF_SPARE_BYTES (2 * 1024 * 1024)

static _Thread_local struct {
  struct append_buf bufs[BUF_SPARE_MAX];
  int n;
  size_t bytes; /* touched bytes of the spares */
} loop_spare_bufs;

static int buf_get(struct append_buf *b) {
  if (loop_spare_bufs.n > 0) {
    *b = loop_spare_bufs.bufs[--loop_spare_bufs.n];
    loop_spare_bufs.bytes -= b->touched;
    b->len = 0;
    return 0;
  }
  void *p = mmap(NULL, APPEND_BUF, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return TUSC_ENOMEM;
  b->data = p;
  b->len = 0;
  b->touched = 0;
  return 0;
}

static void buf_release(struct append_buf *b) {
  if (b->data != NULL) {
    if (loop_spare_bufs.n < BUF_SPARE_MAX &&
        b->touched <= BUF_SPARE_BYTES - loop_spare_bufs.bytes) {
      loop_spare_bufs.bytes += b->touched;
      loop_spare_bufs.bufs[loop_spare_bufs.n++] = *b;
    } else {
      munmap(b->data, APPEND_BUF);
    }
  }
  b->data = NULL;
  b->len = 0;
  b->touched = 0;
}

struct tusc_upload_s {
  tusc_upload_base_t base;
  file_store_t *store;
  int fd;
  tusc_upload_info_t info;
  int stage_fd;   /* side file of a chunk being verified, -1 when none */
  int64_t staged; /* bytes in it */

  /* Asynchronous side, loop only unless said otherwise. At most one pool job runs for
   * an upload at a time (`writing` or `running`), so its fd and info are never used by
   * two threads at once; requests wait in a FIFO behind the buffered bytes. */
  uv_loop_t *loop;
  struct append_buf buf[2];
  int fill;     /* the buffer appends copy into; the other one may be writing */
  bool writing; /* a write job is on the pool */
  bool running; /* a request's job is on the pool */
  bool closing; /* closed while a job ran: freed when it is done */
  bool chunk_open;
  bool chunk_staged;
  int64_t chunk_start;  /* data length when the chunk began */
  int64_t taken;        /* bytes appended in this chunk */
  int64_t landed;       /* of those, bytes in the data or side file */
  int write_err;        /* first write error of the chunk, sticky */
  tusc_pool_job_t wjob; /* the write job of buffer wbuf */
  int wbuf;
  tusc_store_drain_cb drain;
  void *drain_arg;
  tusc_store_req_t *q_head, *q_tail;
  uv_timer_t tick; /* starts a write after the loop turn that appended, or drops the
                    * buffers of an upload idle for BUF_IDLE_MS (idle_armed) */
  bool tick_init;
  bool idle_armed;
  tusc_sync_req_t sync;     /* a chunk end's fdatasync in the store's batch */
  unsigned long sync_since; /* the batch's error epoch when the chunk began */
};

/* A create with fsync: one request of the store's sync batch, whose job makes the files
 * without syncing them (create_prepare → fs_create) and then makes them durable with
 * the rest of the batch (sync_batch.h; why this order is crash-safe: docs/durability.md
 * and the comment at fs_create). Paths live here until the callback. */
#define CREATE_NEW_DIRS 2
typedef struct create_sync_s {
  tusc_sync_req_t sync;
  char shard_dir[TUSC_PATH_MAX];                 /* holds the data file's and the .info's entries */
  char new_dirs[CREATE_NEW_DIRS][TUSC_PATH_MAX]; /* parents of shard dirs made now */
  int n_new_dirs;
  char data[TUSC_PATH_MAX]; /* the ID's own data file (unlinked on failure) */
  bool custom_made;         /* info->data_path is a hook-chosen file made now */
  bool made;                /* fs_create succeeded: the files exist */
} create_sync_t;

/* Where an upload's files are (or would be). */
typedef struct upload_paths_s {
  char data[TUSC_PATH_MAX];
  char info[TUSC_PATH_MAX];
} upload_paths_t;

static int err_from_errno(void) {
  return errno > 0 ? -errno : TUSC_EINTERNAL;
}

static int join(char *out, const char *a, const char *b, const char *suffix) {
  int n = snprintf(out, TUSC_PATH_MAX, "%s/%s%s", a, b, suffix);
  if (n < 0 || (size_t)n + sizeof(TMP_SUFFIX) > TUSC_PATH_MAX)
    return -ENAMETOOLONG;
  return 0;
}

static int sharded_paths(const file_store_t *fs, const char *id, upload_paths_t *p) {
  char rel[TUSC_PATH_MAX];
  int rc = tusc_file_store_shard_path(id, rel, sizeof(rel));
  if (rc == 0)
    rc = join(p->data, fs->dir, rel, "");
  if (rc == 0)
    rc = join(p->info, fs->dir, rel, ".info");
  return rc;
}

/* tusd's flat layout only ever holds IDs without '/'; the caller validated `id`. */
static bool flat_paths(const file_store_t *fs, const char *id, upload_paths_t *p) {
  if (strchr(id, '/') != NULL)
    return false;
  return join(p->data, fs->dir, id, "") == 0 && join(p->info, fs->dir, id, ".info") == 0;
}

static bool is_regular_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int fsync_parent(const char *path) {
  char dir[TUSC_PATH_MAX];
  const char *slash = strrchr(path, '/');
  if (slash == NULL)
    return 0;
  size_t n = slash == path ? 1 : (size_t)(slash - path);
  memcpy(dir, path, n);
  dir[n] = '\0';
  return tusc_sync_dir(dir);
}

static int write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return err_from_errno();
    }
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Reads and parses an .info file. TUSC_ENOT_FOUND when there is no regular file. */
static int read_info(const char *path, tusc_upload_info_t *info) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR || errno == EISDIR)
      return TUSC_ENOT_FOUND;
    return err_from_errno();
  }
  char *buf = NULL;
  int rc;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    rc = err_from_errno();
    goto out;
  }
  if (!S_ISREG(st.st_mode)) {
    rc = TUSC_ENOT_FOUND;
    goto out;
  }
  if (st.st_size > INFO_MAX_BYTES) {
    rc = TUSC_EINTERNAL;
    goto out;
  }
  size_t cap = (size_t)st.st_size + 1;
  buf = malloc(cap);
  if (buf == NULL) {
    rc = TUSC_ENOMEM;
    goto out;
  }
  size_t len = 0;
  for (;;) {
    ssize_t n = read(fd, buf + len, cap - len);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      rc = err_from_errno();
      goto out;
    }
    if (n == 0)
      break;
    len += (size_t)n;
    if (len == cap) {
      /* The file grew since fstat: a writer does not rewrite in place, so this is
       * not ours; refuse rather than chase it. */
      rc = TUSC_EINTERNAL;
      goto out;
    }
  }
  /* A create writes its .info in place (fs_create): one cut short by a crash is empty,
   * short or zeros, and was never acknowledged. So, as for the walk (file_walk.h), an
   * .info that does not parse is no upload. */
  rc = tusc_upload_info_from_json(buf, len, info);
  if (rc != 0) {
    TUSC_LOG(TUSC_LOG_WARN, "store: %s is not an upload's info (a create cut short?)", path);
    rc = TUSC_ENOT_FOUND;
  }
out:
  free(buf);
  close(fd);
  return rc;
}

/* Finds an upload's info, sharded first then flat, parses it and opens its data file
 * (fd_out != NULL: read-write, kept open) or stats it. On success *info is replaced,
 * its id, paths and offset set from what is on disk. */
static int load(file_store_t *fs, const char *id, tusc_upload_info_t *info, int *fd_out) {
  upload_paths_t p;
  int rc = sharded_paths(fs, id, &p);
  if (rc != 0)
    return rc;
  tusc_upload_info_t parsed;
  tusc_upload_info_init(&parsed);
  rc = read_info(p.info, &parsed);
  if (rc == TUSC_ENOT_FOUND && flat_paths(fs, id, &p))
    rc = read_info(p.info, &parsed);
  if (rc != 0)
    goto fail;

  /* An .info naming another upload is not this one's (file_walk.h: the same rule). */
  if (parsed.id[0] != '\0' && strcmp(parsed.id, id) != 0) {
    rc = TUSC_ENOT_FOUND;
    goto fail;
  }
  /* A hook-chosen data file (pre-create Storage.Path) is where its .info says. */
  const char *data = parsed.custom_data_path && parsed.data_path ? parsed.data_path : p.data;
  int fd = open(data, (fd_out != NULL ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) {
    rc = (errno == ENOENT || errno == ENOTDIR || errno == EISDIR) ? TUSC_ENOT_FOUND
                                                                  : err_from_errno();
    goto fail;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    rc = err_from_errno();
    close(fd);
    goto fail;
  }
  if (!S_ISREG(st.st_mode)) {
    rc = TUSC_ENOT_FOUND;
    close(fd);
    goto fail;
  }
  /* The .info's Offset is stale by design (tusd never rewrites it per chunk). */
  parsed.offset = st.st_size;
  parsed.modified_ms = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
  snprintf(parsed.id, sizeof(parsed.id), "%s", id);
  if ((!parsed.custom_data_path && tusc_upload_info_set_path(&parsed.data_path, p.data) != 0) ||
      tusc_upload_info_set_path(&parsed.info_path, p.info) != 0) {
    rc = TUSC_ENOMEM;
    close(fd);
    goto fail;
  }
  if (fd_out != NULL)
    *fd_out = fd;
  else
    close(fd);
  tusc_upload_info_dispose(info);
  *info = parsed;
  return 0;

fail:
  tusc_upload_info_dispose(&parsed);
  return rc;
}

/* Writes the info JSON to `path` (created or truncated). sync: fdatasync it. fd_out:
 * gets the open fd (the caller syncs and closes it), else it is closed here. On an
 * error the file is gone. */
static int write_info_file(const file_store_t *fs, const tusc_upload_info_t *info,
                           const char *path, bool sync, int *fd_out) {
  char *json = tusc_upload_info_to_json(info);
  if (json == NULL)
    return TUSC_ENOMEM;
  int rc;
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)fs->file_perms);
  if (fd < 0) {
    rc = err_from_errno();
    goto out;
  }
  rc = fchmod(fd, (mode_t)fs->file_perms) == 0 ? 0 : err_from_errno();
  if (rc == 0)
    rc = write_all(fd, json, strlen(json));
  /* fdatasync, not fsync: the inode's size and blocks are what reading it back needs;
   * only its timestamps are left to writeback. */
  if (rc == 0 && sync && fdatasync(fd) != 0)
    rc = err_from_errno();
  if (rc == 0 && fd_out != NULL) {
    *fd_out = fd;
    goto out;
  }
  if (close(fd) != 0 && rc == 0)
    rc = err_from_errno();
  if (rc != 0)
    unlink(path);
out:
  free(json);
  return rc;
}

static int tmp_path_of(const tusc_upload_info_t *info, char *tmp) {
  if (info->info_path == NULL)
    return TUSC_EINVALID_ARGUMENT;
  int n = snprintf(tmp, TUSC_PATH_MAX, "%s.tmp", info->info_path);
  if (n < 0 || (size_t)n >= TUSC_PATH_MAX)
    return -ENAMETOOLONG;
  return 0;
}

/* Writes the info JSON to <info_path>.tmp, makes it durable, renames it over the .info
 * and makes the rename durable. Readers see the old or the new file, never a mix. */
static int write_info_atomic(const file_store_t *fs, const tusc_upload_info_t *info) {
  char tmp[TUSC_PATH_MAX];
  int rc = tmp_path_of(info, tmp);
  if (rc == 0)
    rc = write_info_file(fs, info, tmp, fs->fsync, NULL);
  if (rc != 0)
    return rc;
  if (rename(tmp, info->info_path) != 0) {
    rc = err_from_errno();
    unlink(tmp);
    return rc;
  }
  return fs->fsync ? fsync_parent(info->info_path) : 0;
}

/* The directory part of `path` into dir (TUSC_PATH_MAX). */
static void parent_of(const char *path, char *dir) {
  const char *slash = strrchr(path, '/');
  size_t n = slash == NULL ? 0 : slash == path ? 1 : (size_t)(slash - path);
  memcpy(dir, slash == NULL ? "." : path, slash == NULL ? 1 : n);
  dir[slash == NULL ? 1 : n] = '\0';
}

/* mkdir -p of the directories between the store root and `path`'s last component.
 * New directories get exactly dir_perms (chmod, so the umask does not decide), and
 * their parents are fsynced so the new entries survive a crash: here, or, for the
 * first CREATE_NEW_DIRS of them when cs is given, by cs's sync batch. */
static int make_parents(const file_store_t *fs, const char *path, create_sync_t *cs) {
  char buf[TUSC_PATH_MAX];
  size_t root_len = strlen(fs->dir);
  snprintf(buf, sizeof(buf), "%s", path);
  for (char *s = strchr(buf + root_len + 1, '/'); s != NULL; s = strchr(s + 1, '/')) {
    *s = '\0';
    if (mkdir(buf, (mode_t)fs->dir_perms) == 0) {
      if (chmod(buf, (mode_t)fs->dir_perms) != 0)
        return err_from_errno();
      if (fs->fsync && cs != NULL && cs->n_new_dirs < CREATE_NEW_DIRS) {
        parent_of(buf, cs->new_dirs[cs->n_new_dirs++]);
      } else if (fs->fsync) {
        int rc = fsync_parent(buf);
        if (rc != 0)
          return rc;
      }
    } else if (errno != EEXIST) {
      return err_from_errno();
    }
    *s = '/';
  }
  return 0;
}

static void clear_path(char **path) {
  free(*path);
  *path = NULL;
}

/* info->data_path as a pre-create hook asked for it → the checked absolute path. */
static int custom_path(const file_store_t *fs, tusc_upload_info_t *info) {
  char root[PATH_MAX], real[TUSC_PATH_MAX];
  const char *want = info->data_path != NULL ? info->data_path : "";
  const char *why = "upload directory unresolvable";
  int rc = TUSC_EINTERNAL;
  if (realpath(fs->dir, root) != NULL)
    rc = tusc_file_custom_path(root, fs->dir_perms, fs->allow_absolute_path, want, real,
                               sizeof(real), &why);
  if (rc != 0) {
    TUSC_LOG(TUSC_LOG_WARN, "pre-create hook chose Storage.Path \"%s\": %s", want, why);
    return rc;
  }
  return tusc_upload_info_set_path(&info->data_path, real);
}

/* Makes upload info->id: its data file (O_EXCL reserves the ID), shard directories as
 * needed, and its .info, written in place. With cs (fsync on), nothing is synced here:
 * the files are left for cs->sync, which the caller starts, and which alone makes the
 * create durable, in one step (one syncfs, or fdatasyncs and directory fsyncs in no
 * particular order): the data file's inode (on a filesystem without a journal, e.g.
 * ext4 without one, fsyncing a directory writes its entries, not the inodes they
 * name), the .info's bytes, the shard directory's two entries and the entries of
 * shard directories made now. The callback (the 201) comes after all of it.
 *
 * Why no .info.tmp + rename here (updates have one, write_info_atomic): a crash before
 * the callback may leave any part of the above on disk and the rest not, so an .info
 * that is missing, empty, short or zeros, or a data file missing. None of these is an
 * upload: load and the walk need a whole .info (read_info) and the data file. No
 * client was told the ID, which was random or a hook's, so nobody is owed it. A
 * crash after the callback leaves everything the 201 promised. Without the rename the
 * .info's bytes need not be on disk before its name, which saves a batch its second
 * flush (docs/durability.md). */
static int fs_create(tusc_store_t *store, tusc_upload_info_t *info, create_sync_t *cs) {
  file_store_t *fs = (file_store_t *)store;
  unsigned long since = tusc_sync_batch_epoch(&fs->sync);
  if (cs != NULL)
    cs->n_new_dirs = 0;
  upload_paths_t p;
  int rc = sharded_paths(fs, info->id, &p);
  if (rc != 0)
    return rc;
  upload_paths_t flat;
  if (flat_paths(fs, info->id, &flat) && is_regular_file(flat.info))
    return -EEXIST;
  /* Before anything is made, so that a refused path leaves no directory behind. */
  if (info->custom_data_path && (rc = custom_path(fs, info)) != 0) {
    clear_path(&info->data_path);
    return rc;
  }
  /* O_EXCL on the data file is what reserves the ID. The shard directories usually
   * exist already, so they are made only when the first attempt says they are not. */
  int fd = open(p.data, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)fs->file_perms);
  if (fd < 0 && errno == ENOENT) {
    rc = make_parents(fs, p.data, cs);
    if (rc != 0)
      return rc;
    fd = open(p.data, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)fs->file_perms);
  }
  if (fd < 0)
    return err_from_errno();
  bool custom_made = false;
  if (info->custom_data_path) {
    /* A pre-create hook chose where the data lives. The empty file at the ID's own
     * place still reserves the ID; O_EXCL refuses an existing file or a symlink at the
     * chosen name. */
    int cfd = open(info->data_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                   (mode_t)fs->file_perms);
    if (cfd < 0) {
      rc = err_from_errno();
      clear_path(&info->data_path);
      goto fail;
    }
    close(fd);
    fd = cfd;
    custom_made = true;
    if (fs->fsync && (rc = fsync_parent(info->data_path)) != 0)
      goto fail;
  }
  if (fchmod(fd, (mode_t)fs->file_perms) != 0) {
    rc = err_from_errno();
    goto fail;
  }
  if ((!info->custom_data_path && tusc_upload_info_set_path(&info->data_path, p.data) != 0) ||
      tusc_upload_info_set_path(&info->info_path, p.info) != 0) {
    rc = TUSC_ENOMEM;
    goto fail;
  }
  info->offset = 0;
  if (info->created_at == 0)
    info->created_at = (int64_t)time(NULL);
  int info_fd = -1;
  rc = write_info_file(fs, info, info->info_path, false, cs != NULL ? &info_fd : NULL);
  if (rc != 0)
    goto fail;
  if (cs == NULL) { /* no fsync */
    close(fd);
    return 0;
  }
  cs->sync.since = since;
  cs->sync.other_fs = custom_made; /* a hook's Storage.Path may be anywhere */
  cs->sync.fd[0] = fd;
  cs->sync.fd[1] = info_fd;
  cs->sync.close_fds = true;
  parent_of(p.info, cs->shard_dir);
  cs->sync.dir[0] = cs->shard_dir;
  for (int i = 0; i < cs->n_new_dirs; i++)
    cs->sync.dir[1 + i] = cs->new_dirs[i];
  snprintf(cs->data, sizeof(cs->data), "%s", p.data);
  cs->custom_made = custom_made;
  cs->made = true;
  return 0;

fail:
  close(fd);
  unlink(p.data);
  if (custom_made)
    unlink(info->data_path);
  clear_path(&info->data_path);
  clear_path(&info->info_path);
  return rc;
}

static int fs_open(tusc_store_t *store, const char *id, tusc_upload_t **out) {
  tusc_upload_t *up = malloc(sizeof(*up));
  if (up == NULL)
    return TUSC_ENOMEM;
  memset(up, 0, sizeof(*up));
  up->base.store = store;
  up->store = (file_store_t *)store;
  up->stage_fd = -1;
  up->staged = 0;
  tusc_upload_info_init(&up->info);
  int rc = load(up->store, id, &up->info, &up->fd);
  if (rc != 0) {
    free(up);
    return rc;
  }
  *out = up;
  return 0;
}

static ssize_t fs_write(tusc_upload_t *up, int64_t offset, const void *buf, size_t len) {
  if (offset != up->info.offset)
    return TUSC_EMISMATCHED_OFFSET;
  if (len > (size_t)SSIZE_MAX || (int64_t)len > INT64_MAX - offset)
    return TUSC_EINVALID_ARGUMENT;
  if (!up->info.size_is_deferred && up->info.size >= 0 && offset + (int64_t)len > up->info.size)
    return TUSC_EUPLOAD_SIZE_EXCEEDED;
  const char *p = buf;
  size_t done = 0;
  while (done < len) {
    ssize_t n = pwrite(up->fd, p + done, len - done, (off_t)(offset + (int64_t)done));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      int rc = n < 0 ? err_from_errno() : -EIO;
      if (done > 0)
        break; /* report the bytes that did land; the error repeats on the next call */
      return rc;
    }
    done += (size_t)n;
    up->info.offset += n;
  }
  return (ssize_t)done;
}

static ssize_t fs_read(tusc_upload_t *up, int64_t offset, void *buf, size_t len) {
  if (offset < 0 || len > (size_t)SSIZE_MAX)
    return TUSC_EINVALID_ARGUMENT;
  char *p = buf;
  size_t done = 0;
  while (done < len) {
    ssize_t n = pread(up->fd, p + done, len - done, (off_t)(offset + (int64_t)done));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      if (done > 0)
        break;
      return err_from_errno();
    }
    if (n == 0)
      break;
    done += (size_t)n;
  }
  return (ssize_t)done;
}

static int fs_sync(tusc_upload_t *up) {
  if (!up->store->fsync)
    return 0;
  return fdatasync(up->fd) == 0 ? 0 : err_from_errno();
}

static int fs_truncate(tusc_upload_t *up, int64_t length) {
  if (length < 0 || length > up->info.offset)
    return TUSC_EINVALID_ARGUMENT;
  if (ftruncate(up->fd, (off_t)length) != 0)
    return err_from_errno();
  up->info.offset = length;
  /* A dropped chunk must stay dropped across a crash (DESIGN.md: a bad checksum leaves
   * the offset where it was). */
  return fs_sync(up);
}

static tusc_upload_info_t *fs_info(tusc_upload_t *up) {
  return &up->info;
}

static void fs_close(tusc_upload_t *up) {
  if (up == NULL)
    return;
  buf_release(&up->buf[0]);
  buf_release(&up->buf[1]);
  if (up->stage_fd >= 0)
    close(up->stage_fd);
  close(up->fd);
  tusc_upload_info_dispose(&up->info);
  free(up);
}

/* unlink that counts a missing file (or a directory squatting on the name) as absent. */
static int remove_file(const char *path, bool *existed) {
  if (unlink(path) == 0) {
    *existed = true;
    return 0;
  }
  if (errno == ENOENT || errno == ENOTDIR || errno == EISDIR)
    return 0;
  return err_from_errno();
}

static int remove_upload(const upload_paths_t *p, bool *existed) {
  char lock[TUSC_PATH_MAX];
  int n = snprintf(lock, sizeof(lock), "%s.lock", p->data);
  if (n < 0 || (size_t)n >= sizeof(lock))
    return -ENAMETOOLONG;
  bool lock_existed = false;
  /* The .info goes first: once it is gone, get_info already reports "not found". */
  int rc = remove_file(p->info, existed);
  if (rc == 0)
    rc = remove_file(p->data, existed);
  if (rc == 0)
    rc = remove_file(lock, &lock_existed);
  /* A chunk side file left by a crash between its open and its unlink (only where
   * O_TMPFILE is unavailable). */
  char side[TUSC_PATH_MAX + sizeof(STAGE_SUFFIX)];
  n = snprintf(side, sizeof(side), "%s" STAGE_SUFFIX, p->data);
  if (rc == 0 && n > 0 && (size_t)n < sizeof(side))
    rc = remove_file(side, &lock_existed);
  return rc;
}

static int fs_terminate(tusc_store_t *store, const char *id) {
  file_store_t *fs = (file_store_t *)store;
  upload_paths_t p;
  int rc = sharded_paths(fs, id, &p);
  if (rc != 0)
    return rc;
  bool existed = false;
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  if (read_info(p.info, &info) == 0 && info.custom_data_path && info.data_path != NULL)
    rc = remove_file(info.data_path, &existed);
  tusc_upload_info_dispose(&info);
  if (rc == 0)
    rc = remove_upload(&p, &existed);
  if (rc != 0 || existed)
    return rc;
  /* Only a flat upload with its .info is tusd's; a lone <dir>/<id> may be anything. */
  if (flat_paths(fs, id, &p) && is_regular_file(p.info)) {
    rc = remove_upload(&p, &existed);
    if (rc != 0 || existed)
      return rc;
  }
  return TUSC_ENOT_FOUND;
}

int tusc_file_store_lock_path(tusc_store_t *store, const char *id, char *out, size_t cap) {
  file_store_t *fs = (file_store_t *)store;
  upload_paths_t p;
  int rc = sharded_paths(fs, id, &p);
  if (rc != 0)
    return rc;
  if (!is_regular_file(p.info)) {
    upload_paths_t flat;
    if (flat_paths(fs, id, &flat) && is_regular_file(flat.info))
      p = flat;
  }
  int n = snprintf(out, cap, "%s.lock", p.data);
  if (n < 0 || (size_t)n >= cap)
    return -ENAMETOOLONG;
  return 0;
}

static void fs_free(tusc_store_t *store) {
  if (store != NULL)
    tusc_sync_batch_dispose(&((file_store_t *)store)->sync);
  free(store);
}

/* --- concatenation --------------------------------------------------------------- */

/* Copy with pread/pwrite, for filesystems or kernels without copy_file_range. */
static int append_by_copy(tusc_upload_t *dst, tusc_upload_t *src, int64_t in_off, int64_t end) {
  enum { COPY_BUF = 256 * 1024 };
  char *buf = malloc(COPY_BUF);
  if (buf == NULL)
    return TUSC_ENOMEM;
  int rc = 0;
  while (in_off < end) {
    size_t want = end - in_off > COPY_BUF ? (size_t)COPY_BUF : (size_t)(end - in_off);
    ssize_t n = pread(src->fd, buf, want, (off_t)in_off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      rc = n < 0 ? err_from_errno() : -EIO; /* the source shrank under us */
      break;
    }
    ssize_t w = fs_write(dst, dst->info.offset, buf, (size_t)n);
    if (w < 0) {
      rc = (int)w;
      break;
    }
    if (w != n) {
      rc = -EIO;
      break;
    }
    in_off += n;
  }
  free(buf);
  return rc;
}

static int fs_append_from(tusc_upload_t *dst, tusc_upload_t *src) {
  int64_t end = src->info.offset;
  if (!dst->info.size_is_deferred && dst->info.size >= 0 && end > dst->info.size - dst->info.offset)
    return TUSC_EUPLOAD_SIZE_EXCEEDED;
  loff_t in_off = 0;
  while (in_off < end) {
    loff_t out_off = (loff_t)dst->info.offset;
    size_t want = end - in_off > (int64_t)(1 << 30) ? (size_t)1 << 30 : (size_t)(end - in_off);
    ssize_t n = copy_file_range(src->fd, &in_off, dst->fd, &out_off, want, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL ||
                  errno == EBADF || errno == EPERM))
      return append_by_copy(dst, src, (int64_t)in_off, end);
    if (n < 0)
      return err_from_errno();
    if (n == 0)
      return -EIO; /* the source shrank under us */
    dst->info.offset += n;
  }
  return 0;
}

/* Waiting notes live apart from the uploads, under <dir>/.concat/<shard path of the
 * partial>: no upload path can start with '.', so the tree never meets an upload's
 * files whatever IDs hooks choose. One final ID per line. */
static int wait_path(const file_store_t *fs, const char *partial_id, char *out) {
  char rel[TUSC_PATH_MAX];
  int rc = tusc_file_store_shard_path(partial_id, rel, sizeof(rel));
  if (rc != 0)
    return rc;
  return join(out, fs->dir, ".concat/", rel);
}

static int fs_wait_add(tusc_store_t *store, const char *partial_id, const char *final_id) {
  file_store_t *fs = (file_store_t *)store;
  char path[TUSC_PATH_MAX], line[TUSC_ID_MAX + 2];
  size_t id_len = strnlen(final_id, TUSC_ID_MAX + 1);
  if (tusc_file_id_check(final_id, id_len) != 0)
    return TUSC_EINVALID_ID;
  int rc = wait_path(fs, partial_id, path);
  if (rc != 0)
    return rc;
  snprintf(line, sizeof(line), "%s\n", final_id);
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, (mode_t)fs->file_perms);
  if (fd < 0 && errno == ENOENT) {
    rc = make_parents(fs, path, NULL);
    if (rc != 0)
      return rc;
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, (mode_t)fs->file_perms);
  }
  if (fd < 0)
    return err_from_errno();
  /* One write per line: O_APPEND keeps concurrent adders' lines whole. */
  rc = write_all(fd, line, id_len + 1);
  if (rc == 0 && fs->fsync && fsync(fd) != 0)
    rc = err_from_errno();
  close(fd);
  if (rc == 0 && fs->fsync)
    rc = fsync_parent(path);
  return rc;
}

static void free_ids(char **ids, size_t count) {
  for (size_t i = 0; i < count; i++)
    free(ids[i]);
  free(ids);
}

static int fs_wait_take(tusc_store_t *store, const char *partial_id, char ***out, size_t *count) {
  file_store_t *fs = (file_store_t *)store;
  char path[TUSC_PATH_MAX];
  int rc = wait_path(fs, partial_id, path);
  if (rc != 0)
    return rc;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT && errno != ENOTDIR)
      return err_from_errno();
    *out = NULL;
    *count = 0;
    return 0;
  }
  char *text = NULL;
  char **ids = NULL;
  size_t n_ids = 0, len = 0, cap = 0;
  for (;;) {
    if (cap - len < 4096) {
      if (cap >= INFO_MAX_BYTES) {
        rc = TUSC_EINTERNAL;
        goto out;
      }
      char *grown = realloc(text, cap + 65536);
      if (grown == NULL) {
        rc = TUSC_ENOMEM;
        goto out;
      }
      text = grown;
      cap += 65536;
    }
    ssize_t n = read(fd, text + len, cap - len - 1);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      rc = err_from_errno();
      goto out;
    }
    if (n == 0)
      break;
    len += (size_t)n;
  }
  text[len] = '\0'; /* the loop always leaves room for it */
  for (char *line = text; *line != '\0';) {
    char *nl = strchr(line, '\n');
    size_t line_len = nl != NULL ? (size_t)(nl - line) : strlen(line);
    /* A line cut short by a crash mid-append fails the ID check and is dropped. */
    if (nl != NULL && tusc_file_id_check(line, line_len) == 0 && line_len <= TUSC_ID_MAX) {
      char **grown = realloc(ids, (n_ids + 1) * sizeof(*ids));
      if (grown == NULL) {
        rc = TUSC_ENOMEM;
        goto out;
      }
      ids = grown;
      ids[n_ids] = strndup(line, line_len);
      if (ids[n_ids] == NULL) {
        rc = TUSC_ENOMEM;
        goto out;
      }
      n_ids++;
    }
    if (nl == NULL)
      break;
    line = nl + 1;
  }
  if (unlink(path) != 0 && errno != ENOENT) {
    rc = err_from_errno();
    goto out;
  }
  *out = ids;
  *count = n_ids;
  ids = NULL;
  n_ids = 0;
  rc = 0;
out:
  free_ids(ids, n_ids);
  free(text);
  close(fd);
  return rc;
}

/* --- verified chunks -------------------------------------------------------------- */

static int fs_stage_begin(tusc_upload_t *up) {
  if (up->stage_fd >= 0) {
    close(up->stage_fd);
    up->stage_fd = -1;
  }
  up->staged = 0;
  char dir[TUSC_PATH_MAX];
  const char *slash = up->info.data_path ? strrchr(up->info.data_path, '/') : NULL;
  if (slash == NULL || (size_t)(slash - up->info.data_path) >= sizeof(dir))
    return TUSC_EINVALID_ARGUMENT;
  size_t n = slash == up->info.data_path ? 1 : (size_t)(slash - up->info.data_path);
  memcpy(dir, up->info.data_path, n);
  dir[n] = '\0';
  /* Same directory as the data file: same filesystem, so copy_file_range can work in
   * the kernel (or share extents), and a nameless file vanishes with a crash. */
  int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, (mode_t)up->store->file_perms);
  if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL || errno == ENOENT)) {
    char side[TUSC_PATH_MAX + sizeof(STAGE_SUFFIX)];
    int m = snprintf(side, sizeof(side), "%s" STAGE_SUFFIX, up->info.data_path);
    if (m < 0 || (size_t)m >= sizeof(side))
      return -ENAMETOOLONG;
    fd = open(side, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)up->store->file_perms);
    if (fd >= 0)
      unlink(side);
  }
  if (fd < 0)
    return err_from_errno();
  up->stage_fd = fd;
  return 0;
}

static ssize_t fs_stage_read(tusc_upload_t *up, int64_t offset, void *buf, size_t len) {
  if (up->stage_fd < 0 || offset < 0 || len > (size_t)SSIZE_MAX)
    return TUSC_EINVALID_ARGUMENT;
  for (;;) {
    ssize_t n = pread(up->stage_fd, buf, len, (off_t)offset);
    if (n < 0 && errno == EINTR)
      continue;
    return n < 0 ? err_from_errno() : n;
  }
}

static void fs_stage_discard(tusc_upload_t *up) {
  if (up->stage_fd >= 0)
    close(up->stage_fd);
  up->stage_fd = -1;
  up->staged = 0;
}

static int fs_stage_commit(tusc_upload_t *up) {
  if (up->stage_fd < 0)
    return TUSC_EINVALID_ARGUMENT;
  loff_t in_off = 0;
  int rc = 0;
  bool fallback = false;
  while (in_off < up->staged && !fallback) {
    loff_t out_off = (loff_t)up->info.offset;
    int64_t left = up->staged - (int64_t)in_off;
    size_t want = left > (int64_t)(1 << 30) ? (size_t)1 << 30 : (size_t)left;
    ssize_t n = copy_file_range(up->stage_fd, &in_off, up->fd, &out_off, want, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL))
      fallback = true;
    else if (n < 0)
      rc = err_from_errno();
    else if (n == 0)
      rc = -EIO;
    if (rc != 0)
      break;
    if (n > 0)
      up->info.offset += n;
  }
  if (rc == 0 && fallback) {
    char buf[64 * 1024];
    while (in_off < up->staged) {
      int64_t left = up->staged - (int64_t)in_off;
      ssize_t n = pread(up->stage_fd, buf, left > (int64_t)sizeof(buf) ? sizeof(buf) : (size_t)left,
                        (off_t)in_off);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0) {
        rc = n < 0 ? err_from_errno() : -EIO;
        break;
      }
      ssize_t w = fs_write(up, up->info.offset, buf, (size_t)n);
      if (w != n) {
        rc = w < 0 ? (int)w : -EIO;
        break;
      }
      in_off += n;
    }
  }
  fs_stage_discard(up);
  return rc;
}

/* --- the asynchronous interface: the blocking code above, run on the pool, except
 * get_info, open (inline_store_req) and a small unsynced chunk end (INLINE_TAIL_MAX),
 * which run on the loop and complete a turn later ----------------------------------- */

enum req_kind {
  K_GET_INFO = 1,
  K_CREATE,
  K_OPEN,
  K_TERMINATE,
  K_LIST,
  K_WAIT_ADD,
  K_WAIT_TAKE,
  K_SAVE_INFO,
  K_CHUNK_END,
  K_READ,
  K_CONCAT
};

/* req->state; RS_DEFERRED: done on the loop, its completion waits for a later turn;
 * RS_SYNC: in the store's sync batch (too late to cancel) */
enum { RS_IDLE = 0, RS_QUEUED, RS_POOL, RS_DEFERRED, RS_SYNC };
/* req->flags bit (apart from the caller's): the job writes up->wbuf before its work */
#define FLUSH_FIRST 0x100

static tusc_store_req_t *req_of(tusc_pool_job_t *job) {
  return (tusc_store_req_t *)(void *)((char *)job - offsetof(tusc_store_req_t, job));
}

static void run_store_req(tusc_pool_job_t *job) {
  tusc_store_req_t *req = req_of(job);
  file_store_t *fs = (file_store_t *)req->store;
  switch (req->kind) {
  case K_GET_INFO:
    req->result = load(fs, req->id, req->info, NULL);
    break;
  case K_CREATE: /* without fsync; with it, fa_create goes through the sync batch */
    req->result = fs_create(req->store, req->info, NULL);
    break;
  case K_OPEN:
    req->result = fs_open(req->store, req->id, &req->upload);
    break;
  case K_TERMINATE:
    req->result = fs_terminate(req->store, req->id);
    break;
  case K_LIST:
    req->result = tusc_file_store_walk(fs->dir, req->visit, req->visit_arg);
    break;
  case K_WAIT_ADD:
    req->result = fs_wait_add(req->store, req->id, req->ids_in[0]);
    break;
  case K_WAIT_TAKE:
    req->result = fs_wait_take(req->store, req->id, &req->ids, &req->id_count);
    break;
  default:
    req->result = TUSC_EINTERNAL;
  }
}

/* An opened upload now belongs to `loop`. */
static void upload_attach(tusc_upload_t *up, uv_loop_t *loop) {
  up->loop = loop;
  if (uv_timer_init(up->loop, &up->tick) == 0) {
    up->tick.data = up;
    up->tick_init = true;
  }
}

/* Loop: a create that failed after its files were made takes them back. Only on this
 * error path does the loop touch the disk (a few unlinks, no sync). */
static void create_undo(create_sync_t *cs, tusc_upload_info_t *info) {
  if (info->info_path != NULL)
    unlink(info->info_path);
  unlink(cs->data);
  if (cs->custom_made && info->data_path != NULL)
    unlink(info->data_path);
  clear_path(&info->data_path);
  clear_path(&info->info_path);
}

static create_sync_t *create_of(tusc_sync_req_t *sync) {
  return (create_sync_t *)(void *)((char *)sync - offsetof(create_sync_t, sync));
}

/* Pool, step 0 of the sync batch: the create's files, not yet synced. */
static int create_prepare(tusc_sync_req_t *sync) {
  tusc_store_req_t *req = sync->data;
  return fs_create(req->store, req->info, create_of(sync));
}

static void on_create_synced(tusc_sync_req_t *sync, int status) {
  create_sync_t *cs = create_of(sync);
  tusc_store_req_t *req = sync->data;
  if (status != 0 && cs->made)
    create_undo(cs, req->info);
  free(cs);
  req->backend = NULL;
  req->state = RS_IDLE;
  tusc_store_req_done(req, status);
}

static void done_store_req(tusc_pool_job_t *job, int status) {
  tusc_store_req_t *req = req_of(job);
  req->state = RS_IDLE;
  /* A deferred completion is never cancelled (fa_cancel), so its work's result stands. */
  int rc = status < 0 ? status : req->result;
  if (rc == 0 && req->kind == K_OPEN)
    upload_attach(req->upload, req->loop);
  if (rc != 0 && req->kind == K_OPEN)
    req->upload = NULL;
  tusc_store_req_done(req, rc);
}

static int submit_store_req(tusc_store_req_t *req, int kind) {
  file_store_t *fs = (file_store_t *)req->store;
  req->kind = kind;
  req->backend = NULL;
  req->upload = NULL;
  req->ids = NULL;
  req->id_count = 0;
  int rc =
      tusc_store_pool_submit(&fs->pool, req->loop, &req->job, run_store_req, done_store_req, false);
  if (rc == 0)
    req->state = RS_POOL;
  return rc;
}

/* get_info and open run on the loop thread and only their completion waits for a later
 * turn (store/defer.h), as these reads did before the store became asynchronous: they
 * read one small .info file and stat or open the data file, all in the page cache for
 * any live upload, which costs less than the two thread hops of a pool job (a small
 * upload's PATCH would pay two of them before its first byte). The pool keeps what
 * blocks for real: writes and fsync, create, terminate, directory walks, copies.
 * The completion is queued first, so a refusal (TUSC_ESTORE_BUSY) leaves nothing done;
 * the work then runs at once, before the call returns and before any later turn. */
static int inline_store_req(tusc_store_req_t *req, int kind) {
  file_store_t *fs = (file_store_t *)req->store;
  req->kind = kind;
  req->upload = NULL;
  req->ids = NULL;
  req->id_count = 0;
  int rc = tusc_store_pool_submit(&fs->pool, req->loop, &req->job, NULL, done_store_req, false);
  if (rc != 0)
    return rc;
  req->state = RS_DEFERRED;
  if (kind == K_GET_INFO)
    req->result = load(fs, req->id, req->info, NULL);
  else
    req->result = fs_open(req->store, req->id, &req->upload);
  return 0;
}

static int fa_get_info(tusc_store_req_t *req) {
  return inline_store_req(req, K_GET_INFO);
}
/* The same reads, answered at once (store.h: the fast paths). */
static int fa_try_get_info(tusc_store_t *store, const char *id, tusc_upload_info_t *info) {
  return load((file_store_t *)store, id, info, NULL);
}
static int fa_try_open(tusc_store_t *store, uv_loop_t *loop, const char *id, tusc_upload_t **out) {
  int rc = fs_open(store, id, out);
  if (rc == 0)
    upload_attach(*out, loop);
  return rc;
}
/* With fsync, a create is one request of the store's sync batch, which makes its files
 * (create_prepare, on the pool) and then makes them durable together with the other
 * waiting creates and chunk ends: one pool job for the lot. */
static int fa_create(tusc_store_req_t *req) {
  file_store_t *fs = (file_store_t *)req->store;
  if (!fs->fsync)
    return submit_store_req(req, K_CREATE);
  create_sync_t *cs = malloc(sizeof(*cs));
  if (cs == NULL)
    return TUSC_ENOMEM;
  tusc_sync_req_init(&cs->sync);
  cs->sync.prepare = create_prepare;
  cs->sync.data = req;
  cs->made = false;
  req->kind = K_CREATE;
  req->upload = NULL;
  req->ids = NULL;
  req->id_count = 0;
  req->backend = cs;
  int rc = tusc_sync_start(&fs->sync, req->loop, &cs->sync, on_create_synced);
  if (rc != 0) {
    free(cs);
    req->backend = NULL;
    return rc;
  }
  req->state = RS_SYNC;
  return 0;
}
static int fa_open(tusc_store_req_t *req) {
  return inline_store_req(req, K_OPEN);
}
static int fa_terminate(tusc_store_req_t *req) {
  return submit_store_req(req, K_TERMINATE);
}
static int fa_list(tusc_store_req_t *req) {
  return submit_store_req(req, K_LIST);
}
static int fa_wait_add(tusc_store_req_t *req) {
  return submit_store_req(req, K_WAIT_ADD);
}
static int fa_wait_take(tusc_store_req_t *req) {
  return submit_store_req(req, K_WAIT_TAKE);
}

/* --- an upload's requests and buffered writes ---------------------------------------- */

/* Appended bytes wait in one of two buffers (allocated when needed, dropped when idle):
 * `fill` takes appends on the loop while the other may be written by a pool job. A
 * write starts when the loop has finished its turn (the `tick` timer), so that the
 * pieces of one read and an immediately following chunk_end share one pool job; or at
 * once when the buffer is full. Requests (chunk_end, read, save_info, concat) wait in a
 * FIFO behind the bytes appended before them; the first one writes the bytes still
 * buffered itself, in the same job. At most one pool job per upload runs at a time. */

static void kick(tusc_upload_t *up);
static void on_tick(uv_timer_t *timer);

static void on_tick_closed(uv_handle_t *handle) {
  fs_close(handle->data);
}

static void upload_free(tusc_upload_t *up) {
  buf_release(&up->buf[0]);
  buf_release(&up->buf[1]);
  if (up->tick_init) {
    up->tick_init = false;
    uv_close((uv_handle_t *)&up->tick, on_tick_closed);
    return;
  }
  fs_close(up);
}

static bool upload_busy(const tusc_upload_t *up) {
  return up->writing || up->running || up->q_head != NULL;
}

static void bufs_drop(tusc_upload_t *up) {
  for (int i = 0; i < 2; i++)
    buf_release(&up->buf[i]);
}

/* A write that leaves the upload with nothing buffered does not drop the buffers at
 * once: a stream slower than the disk (curl's h2 upload) empties them between two reads
 * every few milliseconds, and dropping and mapping them again cost a munmap and 256
 * page faults per MiB. They go when no byte came for this long (the tick timer, then
 * unreferenced so that it keeps no loop alive), so a client that went quiet still
 * holds none after a moment. */
#define BUF_IDLE_MS 100

static void bufs_drop_later(tusc_upload_t *up) {
  if (up->buf[0].data == NULL && up->buf[1].data == NULL)
    return;
  if (!up->tick_init) {
    bufs_drop(up);
    return;
  }
  if (uv_is_active((uv_handle_t *)&up->tick) && !up->idle_armed)
    return; /* a write is due after this turn; its completion comes back here */
  up->idle_armed = true;
  uv_timer_start(&up->tick, on_tick, BUF_IDLE_MS, 0);
  uv_unref((uv_handle_t *)&up->tick);
}

/* Pool: writes buffer up->wbuf where the chunk's next bytes belong (the side file of a
 * staged chunk is made by its first write) and counts what landed. The loop leaves these
 * fields alone while the upload's job runs. */
static void write_buf(tusc_upload_t *up) {
  struct append_buf *b = &up->buf[up->wbuf];
  size_t done = 0;
  int err = 0;
  if (up->chunk_staged && up->stage_fd < 0)
    err = fs_stage_begin(up);
  int fd = up->chunk_staged ? up->stage_fd : up->fd;
  int64_t pos = up->chunk_staged ? up->landed : up->chunk_start + up->landed;
  while (err == 0 && done < b->len) {
    ssize_t n = pwrite(fd, b->data + done, b->len - done, (off_t)(pos + (int64_t)done));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      err = n < 0 ? err_from_errno() : -EIO;
    else
      done += (size_t)n;
  }
  up->landed += (int64_t)done;
  if (up->chunk_staged)
    up->staged += (int64_t)done;
  else
    up->info.offset += (int64_t)done;
  b->len = 0;
  if (err != 0 && up->write_err == 0)
    up->write_err = err;
}

static tusc_upload_t *upload_of_wjob(tusc_pool_job_t *job) {
  return (tusc_upload_t *)(void *)((char *)job - offsetof(tusc_upload_t, wjob));
}

static void run_write(tusc_pool_job_t *job) {
  write_buf(upload_of_wjob(job));
}

static void done_write(tusc_pool_job_t *job, int status) {
  tusc_upload_t *up = upload_of_wjob(job);
  up->writing = false;
  if (status < 0) {
    up->buf[up->wbuf].len = 0; /* cancelled: never written */
    if (up->write_err == 0)
      up->write_err = status;
  }
  if (up->closing) {
    if (!upload_busy(up))
      upload_free(up);
    return;
  }
  kick(up);
  if (!upload_busy(up) && up->buf[up->fill].len == 0)
    bufs_drop_later(up); /* an idle upload (a client that went quiet) holds no buffer */
  tusc_store_drain_cb drain = up->drain;
  if (drain != NULL) {
    up->drain = NULL;
    drain(up->drain_arg); /* last: it may end the chunk */
  }
}

/* Pool: an upload request's blocking part, after the bytes still buffered. */
static void run_upload_req(tusc_pool_job_t *job) {
  tusc_store_req_t *req = req_of(job);
  tusc_upload_t *up = req->up;
  int rc = 0;
  if (req->flags & FLUSH_FIRST)
    write_buf(up);
  switch (req->kind) {
  case K_SAVE_INFO:
    rc = write_info_atomic(up->store, &up->info);
    break;
  case K_CHUNK_END:
    if (up->chunk_staged) {
      if ((req->flags & TUSC_STORE_DISCARD) || up->write_err != 0) {
        fs_stage_discard(up);
        rc = up->write_err;
      } else {
        rc = up->staged > 0 ? fs_stage_commit(up) : 0;
        if (up->stage_fd >= 0)
          fs_stage_discard(up);
        if (rc == 0 && up->landed > 0)
          rc = fs_sync(up);
      }
    } else if (req->flags & TUSC_STORE_DISCARD) {
      rc = up->info.offset > up->chunk_start ? fs_truncate(up, up->chunk_start) : 0;
    } else {
      /* Also after a write error: what landed is kept and made durable. */
      rc = up->landed > 0 ? fs_sync(up) : 0;
      if (up->write_err != 0)
        rc = up->write_err;
    }
    break;
  case K_READ: {
    ssize_t n;
    if (up->chunk_open && up->chunk_staged && req->offset >= up->chunk_start)
      n = up->stage_fd >= 0 ? fs_stage_read(up, req->offset - up->chunk_start, req->buf, req->len)
                            : 0;
    else
      n = fs_read(up, req->offset, req->buf, req->len);
    if (n >= 0)
      req->nread = (size_t)n;
    else
      rc = (int)n;
    break;
  }
  case K_CONCAT:
    if (up->info.offset > 0)
      rc = fs_truncate(up, 0);
    for (size_t i = 0; rc == 0 && i < req->n_in; i++) {
      tusc_upload_t src;
      memset(&src, 0, sizeof(src));
      src.fd = -1;
      src.stage_fd = -1;
      tusc_upload_info_init(&src.info);
      rc = load(up->store, req->ids_in[i], &src.info, &src.fd);
      if (rc == 0 && (src.info.size_is_deferred || src.info.offset != src.info.size))
        rc = TUSC_EUPLOAD_NOT_FINISHED;
      if (rc == 0)
        rc = fs_append_from(up, &src);
      if (src.fd >= 0)
        close(src.fd);
      tusc_upload_info_dispose(&src.info);
    }
    if (rc == 0)
      rc = fs_sync(up);
    if (rc != 0 && up->info.offset > 0)
      (void)fs_truncate(up, 0);
    break;
  default:
    rc = TUSC_EINTERNAL;
  }
  req->result = rc;
}

static void done_upload_req(tusc_pool_job_t *job, int status) {
  tusc_store_req_t *req = req_of(job);
  tusc_upload_t *up = req->up;
  up->running = false;
  req->state = RS_IDLE;
  int rc = status < 0 ? status : req->result;
  if (status < 0 && (req->flags & FLUSH_FIRST)) {
    up->buf[up->wbuf].len = 0;
    if (up->write_err == 0)
      up->write_err = status;
  }
  if (req->kind == K_CHUNK_END) {
    up->chunk_open = false;
    up->chunk_staged = false;
    up->drain = NULL;
    bufs_drop(up);
  }
  req->flags &= ~FLUSH_FIRST;
  if (up->closing) {
    /* Closed while this ran (against the contract, but a gone client's cleanup may do
     * it): the request still completes. */
    tusc_store_req_done(req, rc);
    if (!upload_busy(up))
      upload_free(up);
    return;
  }
  kick(up);
  tusc_store_req_done(req, rc); /* last: the callback may close the upload */
}

/* A chunk end whose bytes have all landed in the data file (no buffered bytes, no side
 * file) only has to fdatasync it: that goes to the store's sync batch, where it shares
 * a pool job with the other uploads' syncs, instead of a pool job of its own. */
static bool chunk_sync_batched(const tusc_upload_t *up, const tusc_store_req_t *req) {
  return req->kind == K_CHUNK_END && !(req->flags & TUSC_STORE_DISCARD) && up->store->fsync &&
         !up->chunk_staged && !(req->flags & FLUSH_FIRST) && up->write_err == 0 && up->landed > 0;
}

static void on_chunk_synced(tusc_sync_req_t *sync, int status) {
  tusc_store_req_t *req = sync->data;
  req->result = status;
  done_upload_req(&req->job, 0);
}

static int start_chunk_sync(tusc_upload_t *up, tusc_store_req_t *req) {
  tusc_sync_req_init(&up->sync);
  up->sync.since = up->sync_since;
  up->sync.other_fs = up->info.custom_data_path;
  up->sync.fd[0] = up->fd;
  up->sync.data = req;
  int rc = tusc_sync_start(&up->store->sync, up->loop, &up->sync, on_chunk_synced);
  if (rc != 0)
    return rc;
  req->state = RS_SYNC;
  up->running = true;
  return 0;
}

static int submit_write(tusc_upload_t *up) {
  up->wbuf = up->fill;
  up->fill ^= 1;
  int rc =
      tusc_store_pool_submit(&up->store->pool, up->loop, &up->wjob, run_write, done_write, true);
  if (rc == 0)
    up->writing = true;
  else
    up->buf[up->wbuf].len = 0;
  return rc;
}

/* Starts the next pool job of `up` if none runs: the oldest request (writing the
 * buffered bytes first), else the buffered bytes. */
static void kick(tusc_upload_t *up) {
  while (!up->writing && !up->running) {
    struct append_buf *b = &up->buf[up->fill];
    if (b->len > 0 && (up->write_err != 0 || !up->chunk_open))
      b->len = 0; /* the chunk failed: what it still held is not written */
    tusc_store_req_t *req = up->q_head;
    if (req == NULL) {
      if (b->len > 0) {
        int rc = submit_write(up);
        if (rc != 0 && up->write_err == 0)
          up->write_err = rc;
      }
      return;
    }
    up->q_head = req->next;
    if (up->q_head == NULL)
      up->q_tail = NULL;
    req->next = NULL;
    if (req->kind == K_CHUNK_END && (req->flags & TUSC_STORE_DISCARD))
      b->len = 0; /* dropped anyway */
    if (b->len > 0) {
      req->flags |= FLUSH_FIRST;
      up->wbuf = up->fill;
      up->fill ^= 1;
    }
    int rc = chunk_sync_batched(up, req)
                 ? start_chunk_sync(up, req)
                 : tusc_store_pool_submit(&up->store->pool, up->loop, &req->job, run_upload_req,
                                          done_upload_req, true);
    if (rc == 0 && req->state == RS_SYNC)
      return;
    if (rc == 0) {
      req->state = RS_POOL;
      up->running = true;
      return;
    }
    /* Not reached in practice (uv_queue_work fails only on bad arguments). The queue
     * is only worked from callbacks, so completing here is never inline. */
    if (req->flags & FLUSH_FIRST)
      up->buf[up->wbuf].len = 0;
    req->flags &= ~FLUSH_FIRST;
    req->state = RS_IDLE;
    tusc_store_req_done(req, rc);
  }
}

static void on_tick(uv_timer_t *timer) {
  tusc_upload_t *up = timer->data;
  bool idle = up->idle_armed;
  up->idle_armed = false;
  uv_ref((uv_handle_t *)timer);
  if (up->closing)
    return;
  kick(up);
  if (!upload_busy(up) && up->buf[up->fill].len == 0) {
    if (idle)
      bufs_drop(up);
    else
      bufs_drop_later(up);
  }
}

/* Without fsync, a chunk_end(KEEP) that finds at most this many bytes still buffered
 * (a small upload's whole body, or the tail of a slow one) and nothing on the pool
 * writes them on the loop and completes a loop turn later (store/defer.h), as tusc
 * wrote every body before the store became asynchronous: such a pwrite only copies
 * into the page cache, cheaper than the two thread hops of a pool job, which cost a
 * burst of small uploads about a tenth of its rate. Bigger tails, staged chunks and
 * everything under -fsync=always (fdatasync) stay on the pool. */
#define INLINE_TAIL_MAX (64 * 1024)

static int upload_enqueue(tusc_store_req_t *req, int kind) {
  tusc_upload_t *up = req->up;
  if (up->closing || up->loop == NULL)
    return TUSC_EINVALID_ARGUMENT;
  req->loop = up->loop;
  req->kind = kind;
  req->nread = 0;
  req->state = RS_QUEUED;
  req->next = NULL;
  if (up->q_tail != NULL)
    up->q_tail->next = req;
  else
    up->q_head = req;
  up->q_tail = req;
  if (up->writing || up->running)
    return 0; /* the running job's completion starts it */
  /* Idle: start now, so that this call never completes the request itself. */
  up->q_head = req->next;
  if (up->q_head == NULL)
    up->q_tail = NULL;
  struct append_buf *b = &up->buf[up->fill];
  bool discard = kind == K_CHUNK_END && (req->flags & TUSC_STORE_DISCARD);
  if (b->len > 0 && up->chunk_open && up->write_err == 0 && !discard) {
    req->flags |= FLUSH_FIRST;
    up->wbuf = up->fill;
    up->fill ^= 1;
  } else {
    b->len = 0;
  }
  if (chunk_sync_batched(up, req)) {
    int rc = start_chunk_sync(up, req);
    if (rc != 0)
      req->state = RS_IDLE;
    return rc;
  }
  bool inline_end = kind == K_CHUNK_END && !discard && !up->store->fsync && !up->chunk_staged &&
                    (!(req->flags & FLUSH_FIRST) || up->buf[up->wbuf].len <= INLINE_TAIL_MAX);
  int rc = tusc_store_pool_submit(&up->store->pool, up->loop, &req->job,
                                  inline_end ? NULL : run_upload_req, done_upload_req, true);
  if (rc == 0 && inline_end) {
    /* The completion is queued first, so this call never completes the request. */
    req->state = RS_DEFERRED;
    up->running = true;
    run_upload_req(&req->job);
    return 0;
  }
  if (rc != 0) {
    if (req->flags & FLUSH_FIRST) {
      up->buf[up->wbuf].len = 0;
      up->write_err = rc;
    }
    req->flags &= ~FLUSH_FIRST;
    req->state = RS_IDLE;
    return rc;
  }
  req->state = RS_POOL;
  up->running = true;
  return 0;
}

static int fa_save_info(tusc_store_req_t *req) {
  return upload_enqueue(req, K_SAVE_INFO);
}

static int fa_chunk_begin(tusc_upload_t *up, int flags) {
  if (up->chunk_open || up->loop == NULL || upload_busy(up) || up->closing)
    return TUSC_EINVALID_ARGUMENT;
  up->fill = 0;
  up->buf[0].len = up->buf[1].len = 0;
  up->chunk_start = up->info.offset;
  up->taken = up->landed = 0;
  up->write_err = 0;
  up->staged = 0;
  up->drain = NULL;
  up->chunk_open = true;
  up->chunk_staged = (flags & TUSC_STORE_CHUNK_STAGED) != 0;
  up->sync_since = tusc_sync_batch_epoch(&up->store->sync);
  return 0;
}

/* The first INLINE_TAIL_MAX bytes of an unstaged chunk that find nothing buffered and
 * nothing on the pool are written on the loop straight from the caller's piece: a
 * pwrite into the page cache costs less than a thread hop (as for a small tail at chunk
 * end), and a small upload's body is then never copied into an append buffer nor makes
 * one resident (64 small uploads at once: 4 MiB less peak RSS). With fsync the
 * fdatasync stays on the pool, in chunk_end's job. Bigger chunks go on through the
 * buffers, so the loop writes at most INLINE_TAIL_MAX bytes of a chunk. */
static bool direct_write_ok(const tusc_upload_t *up, size_t len) {
  return !up->chunk_staged && !upload_busy(up) && up->buf[0].len == 0 &&
         up->buf[1].len == 0 && up->taken + (int64_t)len <= INLINE_TAIL_MAX;
}

/* Takes the bytes whatever happens: a write error is the chunk's (write_err, reported by
 * the next append and by chunk_end) and info->offset counts exactly what landed. */
static void direct_write(tusc_upload_t *up, const void *data, size_t len) {
  size_t done = 0;
  int err = 0;
  while (done < len) {
    ssize_t n = pwrite(up->fd, (const char *)data + done, len - done,
                       (off_t)(up->chunk_start + up->landed + (int64_t)done));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      err = n < 0 ? err_from_errno() : -EIO;
      break;
    }
    done += (size_t)n;
  }
  up->landed += (int64_t)done;
  up->info.offset += (int64_t)done;
  up->taken += (int64_t)len;
  if (err != 0)
    up->write_err = err;
}

static int fa_append(tusc_upload_t *up, const void *data, size_t len, tusc_store_drain_cb drain,
                     void *arg) {
  if (!up->chunk_open)
    return TUSC_EINVALID_ARGUMENT;
  if (up->write_err != 0)
    return up->write_err;
  if ((int64_t)len > INT64_MAX - up->chunk_start - up->taken)
    return TUSC_EINVALID_ARGUMENT;
  if (!up->info.size_is_deferred && up->info.size >= 0 &&
      up->chunk_start + up->taken + (int64_t)len > up->info.size)
    return TUSC_EUPLOAD_SIZE_EXCEEDED;
  if (direct_write_ok(up, len)) {
    direct_write(up, data, len);
    return 0;
  }
  struct append_buf *b = &up->buf[up->fill];
  if (b->len + len > APPEND_BUF) {
    if (up->writing || up->running) {
      up->drain = drain;
      up->drain_arg = arg;
      return TUSC_ESTORE_FULL;
    }
    int rc = submit_write(up); /* write this one, fill the other */
    if (rc != 0)
      return rc;
    b = &up->buf[up->fill];
  }
  if (b->data == NULL && buf_get(b) != 0)
    return TUSC_ENOMEM;
  memcpy(b->data + b->len, data, len);
  b->len += len;
  if (b->len > b->touched)
    b->touched = (b->len + 4095) & ~(size_t)4095; /* whole pages are resident */
  up->taken += (int64_t)len;
  if (!up->writing && !up->running) {
    if (b->len == APPEND_BUF) {
      int rc = submit_write(up);
      if (rc != 0 && up->write_err == 0)
        up->write_err = rc;
    } else if (up->tick_init && (!uv_is_active((uv_handle_t *)&up->tick) || up->idle_armed)) {
      up->idle_armed = false;
      uv_ref((uv_handle_t *)&up->tick);
      uv_timer_start(&up->tick, on_tick, 0, 0); /* after this loop turn */
    }
  }
  return 0;
}

static int fa_chunk_end(tusc_store_req_t *req) {
  if (!req->up->chunk_open)
    return TUSC_EINVALID_ARGUMENT;
  req->up->drain = NULL;
  return upload_enqueue(req, K_CHUNK_END);
}

static int fa_read(tusc_store_req_t *req) {
  return upload_enqueue(req, K_READ);
}

static int fa_concat(tusc_store_req_t *req) {
  if (req->up->chunk_open)
    return TUSC_EINVALID_ARGUMENT;
  for (size_t i = 0; i < req->n_in; i++)
    if (req->ids_in[i] == NULL)
      return TUSC_EINVALID_ARGUMENT;
  return upload_enqueue(req, K_CONCAT);
}

static int fa_cancel(tusc_store_req_t *req) {
  if (req->state != RS_POOL || req->up != NULL)
    return UV_EBUSY; /* an upload's requests run in order and soon, a deferred one has
                      * done its work already; let them complete */
  return tusc_store_pool_cancel(&req->job);
}

static void fa_close(tusc_upload_t *up) {
  if (up == NULL || up->closing)
    return;
  up->drain = NULL;
  up->closing = true;
  if (up->tick_init)
    uv_timer_stop(&up->tick);
  if (up->writing || up->running)
    return;
  upload_free(up);
}

static int fa_storage(const tusc_store_t *store, const tusc_upload_info_t *info,
                      tusc_store_kv_t *out, size_t cap) {
  (void)store;
  if (info->data_path == NULL || cap < 3)
    return 0;
  out[0] = (tusc_store_kv_t){"Type", "filestore"};
  out[1] = (tusc_store_kv_t){"Path", info->data_path};
  out[2] = (tusc_store_kv_t){"InfoPath", info->info_path != NULL ? info->info_path : ""};
  return 3;
}

static const tusc_store_async_ops_t file_store_async_ops = {
    .get_info = fa_get_info,
    .create = fa_create,
    .open = fa_open,
    .try_get_info = fa_try_get_info,
    .try_open = fa_try_open,
    .terminate = fa_terminate,
    .list = fa_list,
    .wait_add = fa_wait_add,
    .wait_take = fa_wait_take,
    .save_info = fa_save_info,
    .chunk_begin = fa_chunk_begin,
    .append = fa_append,
    .chunk_end = fa_chunk_end,
    .read = fa_read,
    .concat = fa_concat,
    .cancel = fa_cancel,
    .info = fs_info,
    .close = fa_close,
    .storage = fa_storage,
    .free = fs_free,
    .cheap_chunk_checkpoint = true,
};

/* mkdir -p for the upload directory itself (relative or absolute). */
static int make_root(const char *dir, unsigned perms) {
  char buf[TUSC_PATH_MAX];
  int n = snprintf(buf, sizeof(buf), "%s", dir);
  if (n < 0 || (size_t)n >= sizeof(buf))
    return -ENAMETOOLONG;
  for (char *s = buf + 1;; s++) {
    bool end = *s == '\0';
    if (*s == '/' || end) {
      char saved = *s;
      *s = '\0';
      if (mkdir(buf, (mode_t)perms) == 0) {
        if (chmod(buf, (mode_t)perms) != 0)
          return err_from_errno();
      } else if (errno != EEXIST) {
        return err_from_errno();
      }
      *s = saved;
    }
    if (end)
      break;
  }
  return 0;
}

int tusc_file_store_new(const tusc_file_store_options_t *opts, tusc_store_t **out) {
  if (opts == NULL || opts->dir == NULL || opts->dir[0] == '\0')
    return TUSC_EINVALID_ARGUMENT;
  int rc = make_root(opts->dir, opts->dir_perms);
  if (rc != 0)
    return rc;
  file_store_t *fs = calloc(1, sizeof(*fs));
  if (fs == NULL)
    return TUSC_ENOMEM;
  char resolved[PATH_MAX];
  if (realpath(opts->dir, resolved) == NULL) {
    rc = err_from_errno();
    free(fs);
    return rc;
  }
  struct stat st;
  if (stat(resolved, &st) != 0 || !S_ISDIR(st.st_mode)) {
    free(fs);
    return -ENOTDIR;
  }
  /* Leave room for the longest shard path so that join() is the only length check. */
  if (strlen(resolved) + 1 + TUSC_ID_MAX + 6 + sizeof(TMP_SUFFIX) >= TUSC_PATH_MAX) {
    free(fs);
    return -ENAMETOOLONG;
  }
  int dir_len =
      snprintf(fs->dir, sizeof(fs->dir), "%s", strcmp(resolved, "/") == 0 ? "" : resolved);
  if (dir_len < 0 || (size_t)dir_len >= sizeof(fs->dir)) {
    free(fs);
    return -ENAMETOOLONG;
  }
  fs->base.async = &file_store_async_ops;
  tusc_store_pool_init(&fs->pool, 0);
  rc = tusc_sync_batch_init(&fs->sync, &fs->pool, 0);
  if (rc != 0) {
    free(fs);
    return rc;
  }
  if (opts->fsync) {
    /* Group commit may sync the whole filesystem in one syncfs (sync_batch.h). */
    int root_fd = open(resolved, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root_fd >= 0 && tusc_sync_batch_use_syncfs(&fs->sync, root_fd) != 0)
      TUSC_LOG(TUSC_LOG_INFO, "store: kernel's syncfs reports no errors; syncing per file");
  }
  fs->dir_perms = opts->dir_perms;
  fs->file_perms = opts->file_perms;
  fs->fsync = opts->fsync;
  fs->allow_absolute_path = opts->allow_absolute_path;
  *out = &fs->base;
  return 0;
}

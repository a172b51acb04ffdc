/*
 * store — where upload data and upload info live. An interface (table of function
 * pointers) so that backends (file now, S3 later) plug in; tus/ sees only this header.
 *
 * Threads: every operation is synchronous and may block on disk. The caller decides
 * where to run it: the tus handler runs cheap calls (info reads, pwrite into the page
 * cache) on its loop and slow ones (create with fsync, sync, terminate) on libuv's
 * thread pool. A store object is shared by all workers: its operations are
 * thread-safe; one tusc_upload_t handle is used by one thread at a time (the holder
 * of the upload's lock).
 *
 * Errors: 0 or negative codes (TUSC_ENOT_FOUND, TUSC_EINVALID_ID, UV_E* / -errno for
 * I/O failures such as UV_ENOSPC).
 */
#ifndef TUSC_STORE_H
#define TUSC_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/id.h"
#include "common/metadata.h"

/* Longest absolute path of an upload's file. Not PATH_MAX: every open upload carries two
 * of these, and an idle upload connection must cost a few KiB. The store refuses an
 * upload directory too long to hold the longest ID under this limit. */
#define TUSC_PATH_MAX 1024

/* tusd's FileInfo plus what tusc keeps. Owns its heap members. */
typedef struct tusc_upload_info_s {
  char id[TUSC_ID_MAX + 1];
  int64_t size;             /* -1 while deferred */
  bool size_is_deferred;
  int64_t offset;           /* bytes stored: the data file's length */
  tusc_metadata_t metadata;
  bool is_partial;
  bool is_final;
  char **partial_uploads;   /* IDs, NULL when none */
  size_t partial_count;
  int64_t created_at;       /* unix seconds */
  int64_t expires_at;       /* unix seconds, 0 = never */
  char *owner;              /* authenticated principal or NULL */
  int64_t modified_ms;      /* data file's last change (mtime), unix ms; 0 = unknown */
  int finish_hooks;         /* TUSC_FINISH_HOOKS_*: "tusc":{"FinishHooks":...} in the .info */
  bool custom_data_path;    /* data_path was chosen by a pre-create hook (ChangeFileInfo
                             * Storage.Path): create puts the data file there and the
                             * store follows it; "tusc":{"CustomPath":true} */
  char data_path[TUSC_PATH_MAX];  /* absolute path of the data file ("" if none) */
  char info_path[TUSC_PATH_MAX];  /* absolute path of the .info file */
} tusc_upload_info_t;

/* Whether pre-finish/post-finish still have to run once offset == size: UNKNOWN for
 * uploads created without finish hooks (or by tusd): never re-run; PENDING from creation
 * with finish hooks until they succeed (a later request at offset == size retries:
 * tusd bug #496); DONE afterwards. */
enum { TUSC_FINISH_HOOKS_UNKNOWN = 0, TUSC_FINISH_HOOKS_PENDING, TUSC_FINISH_HOOKS_DONE };

void tusc_upload_info_init(tusc_upload_info_t *info);
void tusc_upload_info_dispose(tusc_upload_info_t *info);

/* tusd-compatible compact JSON of the info (ID, Size, SizeIsDeferred, Offset, MetaData,
 * IsPartial, IsFinal, PartialUploads, Storage{Type,Path,InfoPath}) plus tusc's fields
 * under "tusc" (CreatedAt, ExpiresAt, Owner). Size is 0 while deferred and Storage is
 * null while data_path is "" (as tusd). A metadata value that is not UTF-8 appears in
 * MetaData with U+FFFD for each bad byte and exactly in tusc.MetaDataB64 (base64),
 * which from_json prefers. Returns malloc'd text or NULL. */
char *tusc_upload_info_to_json(const tusc_upload_info_t *info);

/* Parses .info JSON (tusd's or tusc's). Size -1/absent with SizeIsDeferred handled.
 * Returns 0 or TUSC_EINTERNAL on malformed input; *info initialised by caller. */
int tusc_upload_info_from_json(const char *json, size_t len, tusc_upload_info_t *info);

typedef struct tusc_store_s tusc_store_t;
typedef struct tusc_upload_s tusc_upload_t; /* an open upload: data fd + info */

/* Called by ops->walk once per upload; a non-zero return stops the walk. */
typedef int (*tusc_store_visit_cb)(const tusc_upload_info_t *info, void *arg);

typedef struct tusc_store_ops_s {
  /* Creates data and info for info->id (caller generated and validated it), durable
   * before returning (file store: fsync data file, info, directories). Fills
   * info->data_path/info_path. Fails with UV_EEXIST if the ID is taken. */
  int (*create)(tusc_store_t *store, tusc_upload_info_t *info);

  /* Reads the info of `id`; info->offset is the stored length. TUSC_ENOT_FOUND when
   * there is no such upload. `info` must be initialised; filled only on success. */
  int (*get_info)(tusc_store_t *store, const char *id, tusc_upload_info_t *info);

  /* Opens an upload for appending/reading. *out owned by caller (close). */
  int (*open)(tusc_store_t *store, const char *id, tusc_upload_t **out);

  /* Writes `len` bytes at `offset` (must equal the current length). Returns bytes
   * written (may be short only on error, then the error on the next call) or < 0. */
  ssize_t (*write)(tusc_upload_t *up, int64_t offset, const void *buf, size_t len);

  /* Reads up to `len` bytes at `offset`; returns bytes read (0 at end) or < 0. */
  ssize_t (*read)(tusc_upload_t *up, int64_t offset, void *buf, size_t len);

  /* Makes every written byte durable (fdatasync). */
  int (*sync)(tusc_upload_t *up);

  /* Cuts the data back to `length` bytes (used to drop a rejected chunk). */
  int (*truncate)(tusc_upload_t *up, int64_t length);

  /* Rewrites the info atomically (temp, fsync, rename, fsync dir), e.g. after the
   * length of a deferred upload becomes known. */
  int (*save_info)(tusc_upload_t *up);

  /* The info of the open upload, kept current by write (offset). */
  tusc_upload_info_t *(*info)(tusc_upload_t *up);

  void (*close)(tusc_upload_t *up);

  /* Deletes data, info and lock file. TUSC_ENOT_FOUND when absent. */
  int (*terminate)(tusc_store_t *store, const char *id);

  /* Path of the per-upload lock file (for flock), written into out: beside the data
   * file (flat tusd uploads: <dir>/<id>.lock). Its directory exists only once the
   * upload does. */
  int (*lock_path)(tusc_store_t *store, const char *id, char *out, size_t cap);

  void (*free)(tusc_store_t *store);

  /* --- concatenation (tus/concat.c). Each may be NULL: concat then falls back to
   * read/write copies, and finals waiting for partials are assembled only when next
   * looked at (HEAD/GET). --- */

  /* Appends all stored bytes of `src` to `dst` at dst's offset, inside the kernel where
   * the filesystem allows (copy_file_range), and advances dst's offset. Not durable
   * until sync. On error dst may hold part of the copy (the caller truncates). */
  int (*append_from)(tusc_upload_t *dst, tusc_upload_t *src);

  /* Durably notes that final upload `final_id` waits for partial `partial_id` to finish
   * (concatenation-unfinished); survives restarts. */
  int (*wait_add)(tusc_store_t *store, const char *partial_id, const char *final_id);

  /* Returns and forgets the finals noted for `partial_id`: *out is a malloc'd array of
   * *count malloc'd IDs (NULL/0 when none); free each and the array. */
  int (*wait_take)(tusc_store_t *store, const char *partial_id, char ***out, size_t *count);

  /* --- verified chunks (tus/checksum.c). NULL when a backend cannot stage; the handler
   * then writes into the data file and truncates a rejected chunk back. --- */

  /* Opens an empty side file for the next chunk of `up` (caller holds the upload's
   * lock). The data file is not touched until stage_commit, so a crash before that
   * leaves the offset where it was. File store: an anonymous file (O_TMPFILE) in the
   * shard directory, or where the filesystem lacks that, <data>.patch.tmp unlinked
   * right after it is opened (terminate removes a leftover). */
  int (*stage_begin)(tusc_upload_t *up);
  /* Appends to the side file, refusing bytes past the upload's length. Returns bytes
   * written or < 0. */
  ssize_t (*stage_write)(tusc_upload_t *up, const void *buf, size_t len);
  /* Appends every staged byte to the data file (copy_file_range where possible),
   * advances the offset and drops the side file. Not durable until sync; a crash midway
   * leaves the data file with a prefix of the staged bytes. */
  int (*stage_commit)(tusc_upload_t *up);
  /* Drops the side file (no-op without one); close drops it too. */
  void (*stage_discard)(tusc_upload_t *up);
  /* Reads staged bytes back (checksum-trailer learns the algorithm only at the end).
   * Returns bytes read (0 at the end) or < 0. */
  ssize_t (*stage_read)(tusc_upload_t *up, int64_t offset, void *buf, size_t len);

  /* Calls visit once per stored upload (info->offset and modified_ms from the data
   * file), in no particular order. Blocks for as long as the walk takes: thread pool
   * only. Returns 0, visit's non-zero value, or an I/O error. */
  int (*walk)(tusc_store_t *store, tusc_store_visit_cb visit, void *arg);
} tusc_store_ops_t;

struct tusc_store_s {
  const tusc_store_ops_t *ops;
};

typedef struct tusc_file_store_options_s {
  const char *dir;      /* upload directory; created if missing */
  unsigned dir_perms;   /* e.g. 0775 */
  unsigned file_perms;  /* e.g. 0664 */
  bool fsync;           /* false = -fsync=never: skip fsync/fdatasync everywhere */
} tusc_file_store_options_t;

/* The sharded file store (DESIGN.md "File store"). `dir` is made absolute.
 * Returns 0 and *out, or a negative code. */
int tusc_file_store_new(const tusc_file_store_options_t *opts, tusc_store_t **out);

/* Path of upload `id`'s lock file in file store `store` (made by tusc_file_store_new),
 * written into out: beside the data file (flat tusd uploads: <dir>/<id>.lock). Its
 * directory exists only once the upload does. For the local lock (lock/local.h), which
 * flocks it so that several tusc processes on one directory exclude each other.
 * Returns 0, TUSC_EINVALID_ID, or -ENAMETOOLONG. */
int tusc_file_store_lock_path(tusc_store_t *store, const char *id, char *out, size_t cap);

/* Sharded relative path of `id`: "ab/cd/<id>" for a generated 32-hex ID (first two
 * and next two characters of the ID); a hook-chosen ID "p/q/x" keeps its prefix
 * directories and shards its last segment: "p/q/s1/s2/x". The shard directory names
 * are the segment's characters 1-2 and 3-4, '_' standing in for a missing character
 * or a '.': "x" → "x_/__/x", "ab" → "ab/__/ab", "a.bc" → "a_/bc/a.bc".
 * IDs must pass tusc_id_valid, and no segment may end in ".info", ".lock" or ".tmp"
 * (those names belong to an upload's sibling files). Returns 0 or TUSC_EINVALID_ID /
 * UV_ENAMETOOLONG. Pure. */
int tusc_file_store_shard_path(const char *id, char *out, size_t cap);

#endif

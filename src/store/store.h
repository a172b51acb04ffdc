/*
 * store — where upload data and upload info live. An interface (table of function
 * pointers) so that backends plug in: the file store (store/file.c), the S3 store
 * (store/s3.c) and an in-memory store for tests (store/mem.c); tus/ sees only this
 * header.
 *
 * Asynchronous, in libuv's contract: every operation that may block takes a
 * caller-owned tusc_store_req_t and a callback, and returns 0 — then the callback runs
 * exactly once, later (never before the call returns), on `loop` — or a negative error,
 * and then the callback never runs. Pointer arguments (IDs, info, buffers) must stay
 * valid until the callback. The store runs its blocking work where it likes (the file
 * store on libuv's thread pool, store/pool.h); the caller never does. A store may do
 * cheap work on the loop at once and still call back later (store/defer.h): the file
 * store reads an upload's small .info and stats or opens its data file there (page
 * cache for any live upload; a thread hop costs more), writes a chunk's first 64 KiB
 * there, and without fsync a chunk's small buffered tail; writes otherwise, fsync,
 * create, terminate, directory walks and copies go to the pool.
 *
 * Threads: a store object is shared by all workers and its operations may be started
 * from any loop thread. A store that does its I/O on the caller's loop (the S3 store:
 * one libcurl multi per loop) needs every such loop attached first
 * (tusc_store_attach_loop) and detached before the loop ends; for the others both are
 * no-ops. An open upload (tusc_upload_t) belongs to the loop that opened
 * it and to the holder of the upload's lock: its operations are started on that loop,
 * one request at a time except for append, and its info is read and changed on that
 * loop only while no request of the upload is in flight.
 *
 * Errors: 0 or negative codes (TUSC_ENOT_FOUND, TUSC_EINVALID_ID, TUSC_ESTORE_BUSY when
 * too much work is queued, UV_ECANCELED for a cancelled request, UV_E* / -errno for I/O
 * failures such as UV_ENOSPC).
 */
#ifndef TUSC_STORE_H
#define TUSC_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include "common/id.h"
#include "common/metadata.h"
#include "store/pool.h"

/* Longest absolute path of an upload's file. Not PATH_MAX: every open upload carries two
 * of these, and an idle upload connection must cost a few KiB. The store refuses an
 * upload directory too long to hold the longest ID under this limit. */
#define TUSC_PATH_MAX 1024

/* tusd's FileInfo plus what tusc keeps. Owns its heap members. */
typedef struct tusc_upload_info_s {
  char id[TUSC_ID_MAX + 1];
  int64_t size; /* -1 while deferred */
  bool size_is_deferred;
  int64_t offset; /* bytes stored: the data file's length */
  tusc_metadata_t metadata;
  bool is_partial;
  bool is_final;
  char **partial_uploads; /* IDs, NULL when none */
  size_t partial_count;
  int64_t created_at;            /* unix seconds */
  int64_t expires_at;            /* unix seconds, 0 = never */
  char *owner;                   /* authenticated principal or NULL */
  int64_t modified_ms;           /* data file's last change (mtime), unix ms; 0 = unknown */
  int finish_hooks;              /* TUSC_FINISH_HOOKS_*: "tusc":{"FinishHooks":...} in the .info */
  char *repr_digest;             /* IETF draft: the Repr-Digest member the creation asked to
                                  * check once the upload completes ("sha-256=:...:"),
                                  * NULL when none; "tusc":{"ReprDigest":...} */
  bool custom_data_path;         /* data_path was chosen by a pre-create hook (ChangeFileInfo
                                  * Storage.Path): the caller of create puts the path as the
                                  * hook gave it in data_path; the file store checks it and
                                  * makes its parents (file_custom.h), puts the data file
                                  * there and follows it; "tusc":{"CustomPath":true} */
  /* Malloc'd at their length (an open upload is kept per idle connection;
   * tusc_upload_info_set_path): */
  char *data_path; /* absolute path of the data file, NULL if none; S3 store: the
                    * object's key */
  char *info_path; /* absolute path of the .info file, NULL if none; S3: its key */
  char *store_ref; /* the backend's own handle of the data, malloc'd, NULL when none (S3
                    * store: the multipart upload ID); not in tusc_upload_info_to_json */
} tusc_upload_info_t;

/* Whether pre-finish/post-finish still have to run once offset == size: UNKNOWN for
 * uploads created without finish hooks (or by tusd): never re-run; PENDING from creation
 * with finish hooks until they succeed (a later request at offset == size retries:
 * tusd bug #496); DONE afterwards. */
enum { TUSC_FINISH_HOOKS_UNKNOWN = 0, TUSC_FINISH_HOOKS_PENDING, TUSC_FINISH_HOOKS_DONE };

void tusc_upload_info_init(tusc_upload_info_t *info);
void tusc_upload_info_dispose(tusc_upload_info_t *info);

/* Replaces *slot (info->data_path or info->info_path) with a copy of `path`; NULL or ""
 * clears it. Returns 0 or TUSC_ENOMEM (then *slot is unchanged). */
int tusc_upload_info_set_path(char **slot, const char *path) __attribute__((warn_unused_result));

/* tusd-compatible compact JSON of the info (ID, Size, SizeIsDeferred, Offset, MetaData,
 * IsPartial, IsFinal, PartialUploads, Storage{Type,Path,InfoPath}) plus tusc's fields
 * under "tusc" (CreatedAt, ExpiresAt, Owner). Size is 0 while deferred and Storage is
 * null while data_path is NULL (as tusd). A metadata value that is not UTF-8 appears in
 * MetaData with U+FFFD for each bad byte and exactly in tusc.MetaDataB64 (base64),
 * which from_json prefers. Returns malloc'd text or NULL. */
char *tusc_upload_info_to_json(const tusc_upload_info_t *info);

/* Parses .info JSON (tusd's or tusc's). Size -1/absent with SizeIsDeferred handled.
 * Returns 0 or TUSC_EINTERNAL on malformed input; *info initialised by caller. */
int tusc_upload_info_from_json(const char *json, size_t len, tusc_upload_info_t *info);

typedef struct tusc_store_s tusc_store_t;
typedef struct tusc_upload_s tusc_upload_t; /* an open upload: data fd + info */

/* Every backend's upload struct begins with this, so that the generic functions find
 * the store of an upload. */
typedef struct tusc_upload_base_s {
  tusc_store_t *store;
} tusc_upload_base_t;

/* Called by tusc_store_list once per upload; non-zero stops the walk. */
typedef int (*tusc_store_visit_cb)(const tusc_upload_info_t *info, void *arg);

/* --- the asynchronous interface ------------------------------------------------------ */

typedef struct tusc_store_req_s tusc_store_req_t;

/* Called once per started request, on the request's loop. status: 0 or a negative code
 * (UV_ECANCELED after tusc_store_cancel). */
typedef void (*tusc_store_cb)(tusc_store_req_t *req, int status);

/* Called on the upload's loop when an append that answered TUSC_ESTORE_FULL may be
 * tried again. */
typedef void (*tusc_store_drain_cb)(void *arg);

/* Longest piece one append takes. Bigger pieces are split by the caller. */
#define TUSC_STORE_APPEND_MAX (256 * 1024)

/* chunk_begin flags. STAGED: the chunk's bytes are kept apart from the upload's data
 * (file store: a side file) and reach it only with chunk_end(KEEP), so a crash or a
 * DISCARD leaves the data exactly as before (verified chunks, tus checksum). */
enum { TUSC_STORE_CHUNK_STAGED = 1 };
/* chunk_end modes. */
enum tusc_store_chunk_end { TUSC_STORE_KEEP = 0, TUSC_STORE_DISCARD = 1 };

/* A request: allocated and owned by the caller, which must not touch its private part
 * and must keep it (and the arguments it points to) alive until the callback. One
 * request runs one operation at a time; it may be reused from the callback. */
struct tusc_store_req_s {
  void *data; /* for the caller */

  /* Results, valid in the callback when status == 0. */
  tusc_upload_t *upload; /* open: the open upload, the caller's (tusc_store_close) */
  size_t nread;          /* read: bytes read, 0 at the end */
  char **ids;            /* wait_take: malloc'd IDs (tusc_store_ids_free), NULL when none */
  size_t id_count;

  /* Private to the store. */
  tusc_pool_job_t job;
  uv_loop_t *loop;
  tusc_store_cb cb;
  tusc_store_t *store;
  tusc_upload_t *up;
  const char *id;
  const char *const *ids_in;
  size_t n_in;
  tusc_upload_info_t *info;
  void *buf;
  size_t len;
  int64_t offset;
  tusc_store_visit_cb visit;
  void *visit_arg;
  int kind;
  int flags;
  int result;
  int state;
  tusc_store_req_t *next;
  void *backend; /* a backend's own state of the request (S3 store: its job) */
};

/* One pair of an upload's Storage map for hooks (tusd: {"Type":"filestore",
 * "Path":…,"InfoPath":…}). Strings are borrowed from the info or static. */
typedef struct tusc_store_kv_s {
  const char *key;
  const char *value;
} tusc_store_kv_t;
#define TUSC_STORE_KV_MAX 8

/* What a backend implements; callers use the tusc_store_* functions below, which check
 * arguments and the contract. The `*_start` members may assume `req` has loop, cb,
 * store and the arguments filled in and must call tusc_store_req_done exactly once,
 * later, iff they return 0. */
typedef struct tusc_store_async_ops_s {
  int (*get_info)(tusc_store_req_t *req);
  int (*create)(tusc_store_req_t *req);
  int (*open)(tusc_store_req_t *req);
  /* Optional fast paths (tusc_store_try_get_info/try_open); NULL = UV_EAGAIN. */
  int (*try_get_info)(tusc_store_t *store, const char *id, tusc_upload_info_t *info);
  int (*try_open)(tusc_store_t *store, uv_loop_t *loop, const char *id, tusc_upload_t **out);
  int (*terminate)(tusc_store_req_t *req);
  int (*list)(tusc_store_req_t *req);
  int (*wait_add)(tusc_store_req_t *req);
  int (*wait_take)(tusc_store_req_t *req);
  int (*save_info)(tusc_store_req_t *req);
  int (*chunk_begin)(tusc_upload_t *up, int flags);
  int (*append)(tusc_upload_t *up, const void *buf, size_t len, tusc_store_drain_cb drain,
                void *arg);
  int (*chunk_end)(tusc_store_req_t *req);
  int (*read)(tusc_store_req_t *req);
  int (*concat)(tusc_store_req_t *req);
  int (*cancel)(tusc_store_req_t *req);
  tusc_upload_info_t *(*info)(tusc_upload_t *up);
  void (*close)(tusc_upload_t *up);
  int (*storage)(const tusc_store_t *store, const tusc_upload_info_t *info, tusc_store_kv_t *out,
                 size_t cap);
  void (*free)(tusc_store_t *store);
  /* Optional (NULL: nothing to do). See tusc_store_attach_loop / _detach_loop / _sweep. */
  int (*attach_loop)(tusc_store_t *store, uv_loop_t *loop);
  void (*detach_loop)(tusc_store_t *store, uv_loop_t *loop);
  int (*sweep)(tusc_store_req_t *req);
  /* True when ending a chunk and beginning the next one mid-body costs no more than
   * making the bytes durable (file store: an fdatasync; memory store: nothing), so a
   * caller may do it to acknowledge bytes early (IETF progress 104). False where it
   * costs a copy (S3: the tail is stored as an object and read back). */
  bool cheap_chunk_checkpoint;
} tusc_store_async_ops_t;

/* Makes `loop` ready for this store's operations; call on the loop's thread before the
 * first operation started on it (server.c: at worker start, and for the main loop's
 * expiry sweeper). Returns 0 (also for stores that need nothing) or a negative code. */
int tusc_store_attach_loop(tusc_store_t *store, uv_loop_t *loop)
    __attribute__((warn_unused_result));

/* Undoes attach on the loop's thread once no request started on `loop` is in flight
 * (a request still in flight delays the close to its end): the store's handles on it
 * close during the loop's next runs, so run the loop until it has no handles. */
void tusc_store_detach_loop(tusc_store_t *store, uv_loop_t *loop);

/* Optional housekeeping for expiration: removes storage left behind by uploads that are
 * gone (S3 store: multipart uploads started before `before_unix_s` that no upload's info
 * names, e.g. after a crash between creating one and writing the .info). Returns
 * TUSC_ENOT_IMPLEMENTED when the store has nothing of the kind. */
int tusc_store_sweep(tusc_store_t *store, uv_loop_t *loop, tusc_store_req_t *req,
                     int64_t before_unix_s, tusc_store_cb cb) __attribute__((warn_unused_result));

/* Reads the info of `id` into `info` (initialised by the caller, replaced only on
 * success); info->offset is the stored length. TUSC_ENOT_FOUND when there is none. */
int tusc_store_get_info(tusc_store_t *store, uv_loop_t *loop, tusc_store_req_t *req, const char *id,
                        tusc_upload_info_t *info, tusc_store_cb cb)
    __attribute__((warn_unused_result));

/* Fast paths, as tusc_lock_try_acquire: get_info and open done now, without a callback,
 * when the store can tell without waiting (the file store reads an upload's .info and
 * opens its data file from the page cache). 0: done, exactly as if the asynchronous
 * call had reported 0 (try_open: *out is the caller's to close). UV_EAGAIN: the store
 * cannot answer now and nothing was done; start the asynchronous call. Anything else
 * is the error that call would report (TUSC_ENOT_FOUND, ...). A request handler uses
 * them so that the bytes that came with a PATCH's head go straight to the store instead
 * of waiting a loop turn (and being set aside) for the answer. */
int tusc_store_try_get_info(tusc_store_t *store, const char *id, tusc_upload_info_t *info)
    __attribute__((warn_unused_result));
int tusc_store_try_open(tusc_store_t *store, uv_loop_t *loop, const char *id, tusc_upload_t **out)
    __attribute__((warn_unused_result));

/* Creates data and info for info->id (the caller generated and validated it), durable
 * before the callback (file store: fsync data file, info, directories). Fills in
 * offset, created_at and the backend's own fields; UV_EEXIST if the ID is taken. */
int tusc_store_create(tusc_store_t *store, uv_loop_t *loop, tusc_store_req_t *req,
                      tusc_upload_info_t *info, tusc_store_cb cb)
    __attribute__((warn_unused_result));

/* Opens `id` for appending and reading: req->upload, to be closed by the caller. */
int tusc_store_open(tusc_store_t *store, uv_loop_t *loop, tusc_store_req_t *req, const char *id,
                    tusc_store_cb cb) __attribute__((warn_unused_result));

/* Deletes data, info (and the file store's lock and side files). TUSC_ENOT_FOUND when
 * absent. */
int tusc_store_terminate(tusc_store_t *store, uv_loop_t *loop, tusc_store_req_t *req,
                         const char *id, tusc_store_cb cb) __attribute__((warn_unused_result));

/* Calls visit(info, arg) once per stored upload (offset and modified_ms current), in no
 * particular order, then cb. visit runs on a store thread (file store: a pool thread),
 * never two at once for one list; it may touch only what the caller keeps for the
 * list. A non-zero return stops the walk: cb then gets that value. */
int tusc_store_list(tusc_store_t *store, uv_loop_t *loop, tusc_store_req_t *req,
                    tusc_store_visit_cb visit, void *arg, tusc_store_cb cb)
    __attribute__((warn_unused_result));

/* concatenation-unfinished: durably notes that final `final_id` waits for partial
 * `partial_id` (survives restarts). TUSC_ENOT_IMPLEMENTED when the store cannot. */
int tusc_store_wait_add(tusc_store_t *store, uv_loop_t *loop, tusc_store_req_t *req,
                        const char *partial_id, const char *final_id, tusc_store_cb cb)
    __attribute__((warn_unused_result));

/* Returns and forgets the finals noted for `partial_id` in req->ids / req->id_count. */
int tusc_store_wait_take(tusc_store_t *store, uv_loop_t *loop, tusc_store_req_t *req,
                         const char *partial_id, tusc_store_cb cb)
    __attribute__((warn_unused_result));

void tusc_store_ids_free(char **ids, size_t count);

/* Rewrites the upload's info atomically (file store: temp, fsync, rename, fsync dir),
 * e.g. once a deferred length is known. The info must not change until the callback. */
int tusc_store_save_info(tusc_upload_t *up, tusc_store_req_t *req, tusc_store_cb cb)
    __attribute__((warn_unused_result));

/* Starts a chunk (one PATCH body): appends follow, then exactly one chunk_end. With
 * TUSC_STORE_CHUNK_STAGED the bytes stay apart from the data until chunk_end(KEEP).
 * Synchronous and without I/O (a backend sets up what it needs with the first write, and
 * an error there comes back from append or chunk_end): 0, or TUSC_EINVALID_ARGUMENT
 * when a chunk is open or a request is in flight. */
int tusc_store_chunk_begin(tusc_upload_t *up, int flags) __attribute__((warn_unused_result));

/* Synchronous, on the upload's loop, between chunk_begin and chunk_end.
 * Takes all `len` (≤ TUSC_STORE_APPEND_MAX) bytes — copies them — and returns 0; or
 * returns TUSC_ESTORE_FULL having taken nothing: drain(arg) then runs later on the loop
 * once there is room (the caller pauses its source meanwhile; at most one drain is
 * pending, a later FULL replaces it); or returns an earlier write error (the chunk
 * should end). TUSC_EUPLOAD_SIZE_EXCEEDED past the upload's size. Bytes taken reach
 * info->offset as the store writes them (file store: unstaged ones, as they land), all
 * of them by chunk_end's callback.
 *
 * Why "took nothing" rather than "took it, now pause": the store keeps a strict bound
 * (file store: two 1 MiB buffers per upload) whatever the caller's piece sizes, and
 * the caller, which must keep what it could not hand over, holds at most one piece. */
int tusc_store_append(tusc_upload_t *up, const void *buf, size_t len, tusc_store_drain_cb drain,
                      void *arg) __attribute__((warn_unused_result));

/* Whether ending a chunk with KEEP and beginning a new one mid-body is cheap for this
 * upload's store (see cheap_chunk_checkpoint). Pure. */
bool tusc_store_cheap_chunk_checkpoint(const tusc_upload_t *up);

/* Ends the chunk. KEEP: every appended byte written (staged bytes moved into the data)
 * and durable unless the store was made without fsync; info->offset then counts them.
 * On a write error the status is that error and info->offset counts exactly the bytes
 * in the data (the client resumes from there). DISCARD: the chunk's bytes are dropped,
 * the offset is back where chunk_begin found it. */
int tusc_store_chunk_end(tusc_upload_t *up, tusc_store_req_t *req, enum tusc_store_chunk_end how,
                         tusc_store_cb cb) __attribute__((warn_unused_result));

/* Reads up to `len` bytes at `offset` into buf: req->nread (0 at the end). During a
 * chunk, offsets from where the chunk began read the chunk's bytes appended so far
 * (staged ones too): checksum-trailer hashes them once it knows the algorithm. A store
 * that cannot read an unfinished upload's bytes (S3) fails with
 * TUSC_EUPLOAD_NOT_FINISHED, also for len 0, which GET uses to ask before it answers. */
int tusc_store_read(tusc_upload_t *up, tusc_store_req_t *req, int64_t offset, void *buf, size_t len,
                    tusc_store_cb cb) __attribute__((warn_unused_result));

/* Replaces the data of final upload `up` with the stored bytes of the `n` partials
 * `ids` in order (file store: copy_file_range), durable before the callback;
 * info->offset is the sum. TUSC_EUPLOAD_NOT_FINISHED when a partial is not complete,
 * TUSC_EUPLOAD_SIZE_EXCEEDED past the final's size. On an error the final holds no
 * bytes. */
int tusc_store_concat(tusc_upload_t *up, const char *const *ids, size_t n, tusc_store_req_t *req,
                      tusc_store_cb cb) __attribute__((warn_unused_result));

/* Cancels a started request if its work has not begun: its callback then runs with
 * UV_ECANCELED. Returns 0, or UV_EBUSY when it is too late (the callback comes as
 * usual). For a client that has gone. */
int tusc_store_cancel(tusc_store_req_t *req);

/* The open upload's info (offset current after each chunk_end). */
tusc_upload_info_t *tusc_store_info(tusc_upload_t *up);

/* Closes an upload with no request in flight and no chunk open (chunk_end first). */
void tusc_store_close(tusc_upload_t *up);

/* The Storage map hooks see for `info` (at most `cap` pairs); returns the count, 0 when
 * the upload has no data yet. */
size_t tusc_store_storage(const tusc_store_t *store, const tusc_upload_info_t *info,
                          tusc_store_kv_t *out, size_t cap);

/* Frees a store with no request in flight. NULL is a no-op. */
void tusc_store_free(tusc_store_t *store);

/* For backends: completes `req` on its loop (calls req->cb). */
void tusc_store_req_done(tusc_store_req_t *req, int status);

struct tusc_store_s {
  const tusc_store_async_ops_t *async;
};

typedef struct tusc_file_store_options_s {
  const char *dir;     /* upload directory; created if missing */
  unsigned dir_perms;  /* e.g. 0775 */
  unsigned file_perms; /* e.g. 0664 */
  bool fsync;          /* false = -fsync=never: skip fsync/fdatasync everywhere */
  /* -hooks-allow-absolute-path: a pre-create hook's Storage.Path may lie outside dir. */
  bool allow_absolute_path;
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

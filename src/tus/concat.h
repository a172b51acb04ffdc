/*
 * concat — the concatenation and concatenation-unfinished extensions: parsing
 * Upload-Concat, checking the partial uploads of a new final upload, and assembling a
 * final upload from its partials once every partial is complete.
 *
 * A final upload is stored like any upload, with is_final and the partial IDs in its
 * info and an empty data file. Its length is the sum of the partials' lengths, known
 * (and saved) once every partial's length is known. Assembly appends the partials'
 * bytes to the final's data file in order (tusc_store_concat; the file store uses
 * copy_file_range, no copy through user space where the filesystem allows), so the
 * final's offset grows
 * from 0 to its length; it is idempotent and runs under the final's lock, with each
 * partial's lock held too (a complete partial cannot change anyway; the locks keep a
 * DELETE out for the duration).
 *
 * When a final is created before its partials are done, it is noted with each
 * unfinished partial (tusc_store_wait_add); the PATCH that completes a partial takes
 * those notes (tusc_store_wait_take) and assembles the finals whose partials are now all
 * complete. The notes survive restarts; HEAD and GET of a final whose partials are all
 * complete assemble it as well, which also covers notes lost with a crash.
 *
 * Limits: a partial appears at most once in one final (several finals may share it);
 * a final whose partials' lengths add up to more than -max-size is refused at creation
 * when the lengths are known, else never assembled once they are (tusc_concat_too_big).
 *
 * Threads: everything runs on a loop. The parser and the checks are pure; the partials'
 * infos are read through the asynchronous store (tusc_concat_parts_load). Assembly is
 * a job: its locks are taken on the loop (lock.h: a pending acquire, never a waiting
 * thread), then the store does the work (its own pool) with the locks held.
 */
#ifndef TUSC_TUS_CONCAT_H
#define TUSC_TUS_CONCAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "lock/lock.h"
#include "store/store.h"

/* Upper bound on the partial uploads of one final upload. */
#define TUSC_CONCAT_MAX_PARTIALS 1024

typedef struct tusc_concat_s {
  bool is_partial;
  bool is_final;
  char **ids; /* final: the partial upload IDs in order (no ID twice) */
  size_t count;
} tusc_concat_t;

/* Parses an Upload-Concat value: exactly "partial", or "final;" followed by one or more
 * upload URLs separated by spaces (optional spaces/tabs after ';' and around URLs).
 * A URL is absolute ("http(s)://authority/path", the authority is not checked) or a
 * path ("/files/<id>"); its path must start with `collection_path` (the path part of
 * the upload collection URL, proxy prefix included; may be NULL) or with `base_path`,
 * and the rest, percent-decoded, must be a valid upload ID. No query or fragment.
 * Returns 0 and fills *out (tusc_concat_dispose), or TUSC_EINVALID_CONCAT /
 * TUSC_ENOMEM; *out is untouched on failure. Pure. */
int tusc_concat_parse(const char *value, size_t len, const char *collection_path,
                      const char *base_path, tusc_concat_t *out);
void tusc_concat_dispose(tusc_concat_t *c);

/* The path part of a collection URL ("https://h/p/files/" → "/p/files/"; a relative
 * URL is returned as is). Pure; points into `url`. */
const char *tusc_concat_url_path(const char *url);

/* A partial for which `visible` returns false counts as missing (an upload of another
 * user, hidden by -auth-hide-foreign: nothing about it, not even its length through the
 * size limit, may show). visible NULL = every partial visible. */
typedef bool (*tusc_concat_visible_cb)(const tusc_upload_info_t *partial, void *arg);

/* Writes "final;<url> <url> …" for a final upload into out (cap bytes, NUL-terminated),
 * each URL being `collection` + partial ID. Returns 0 or UV_ENOBUFS. */
int tusc_concat_format_final(const tusc_upload_info_t *info, const char *collection, char *out,
                             size_t cap);

/* True when final `info` has a known length above max_size (> 0): it is never
 * assembled, and HEAD/GET answer 413 ERR_MAX_SIZE_EXCEEDED. */
bool tusc_concat_too_big(const tusc_upload_info_t *info, int64_t max_size);

/* --- the partials' infos, read through the asynchronous store --------------------- */

/* The infos of a list of uploads, read one after the other with the asynchronous
 * store (tusc_store_get_info) on `loop`. Caller-owned; after cb, rc[i] is 0 or the
 * lookup error of ids[i] and infos[i] its info. */
typedef struct tusc_concat_parts_s tusc_concat_parts_t;
typedef void (*tusc_concat_parts_cb)(tusc_concat_parts_t *parts, void *arg);
struct tusc_concat_parts_s {
  size_t count;
  int *rc;
  tusc_upload_info_t *infos;
  /* private */
  tusc_store_req_t sreq;
  size_t next;
  tusc_store_t *store;
  uv_loop_t *loop;
  const char *const *ids;
  tusc_concat_parts_cb cb;
  void *arg;
};

/* Starts reading the `n` uploads `ids` (kept alive by the caller until cb). Returns 0
 * (cb later, once) or TUSC_ENOMEM (no cb). Dispose the parts after cb (or after an
 * error return; a zeroed struct disposes fine). */
int tusc_concat_parts_load(tusc_concat_parts_t *parts, tusc_store_t *store, uv_loop_t *loop,
                           const char *const *ids, size_t n, tusc_concat_parts_cb cb, void *arg)
    __attribute__((warn_unused_result));
void tusc_concat_parts_dispose(tusc_concat_parts_t *parts);

/* Checks the partials of `c` (a parsed final; `parts` read from c->ids, in order) and
 * makes `final` a final upload: is_final, partial_uploads (copied), and size = the sum
 * of the partial lengths, or deferred while any partial's length is unknown. Every
 * partial must exist, be visible and be a partial upload (else TUSC_EINVALID_CONCAT); an
 * unfinished partial is fine (concatenation-unfinished). With max_size > 0 a known sum
 * above it gives TUSC_EMAX_SIZE_EXCEEDED. Returns 0 or a negative code. */
int tusc_concat_prepare_final_parts(const tusc_concat_t *c, const tusc_concat_parts_t *parts,
                                    int64_t max_size, tusc_upload_info_t *final,
                                    tusc_concat_visible_cb visible, void *arg);
/* What a HEAD/GET of a final needs to know, on its partials' infos (read from
 * info->partial_uploads, in order). status: if the final's length is unknown but every
 * partial's is, sets info->size (size_is_deferred false) in `info` (not on disk);
 * returns true when the final is not assembled yet and every partial is complete, so
 * that assembling it now would finish it (false on any lookup error). partial_missing:
 * true when the final is not complete and one of its partials no longer exists
 * (deleted, or expired and swept): it can never complete. */
bool tusc_concat_status_parts(tusc_upload_info_t *info, const tusc_concat_parts_t *parts);
bool tusc_concat_partial_missing_parts(const tusc_upload_info_t *info,
                                       const tusc_concat_parts_t *parts);
/* Whether final `info` needs its partials read at all for the checks above: false for
 * uploads that are not finals and for finals already complete (the usual case). */
bool tusc_concat_needs_parts(const tusc_upload_info_t *info);

/* Where and how assembly takes its locks. Borrowed pointers. */
typedef struct tusc_concat_env_s {
  tusc_store_t *store;
  tusc_lock_t *lock;
  int64_t lock_wait_ms; /* how long to wait on the loop for busy locks (0 = try each once) */
  int64_t max_size;     /* -max-size: a final above it is never assembled (0 = no limit) */
} tusc_concat_env_t;

/* Jobs, started on the loop thread that owns `loop`: the only way to assemble. A job
 * takes each final's lock set on the loop through lock.h (the final's lock, then its
 * partials' in ascending ID order; a busy lock's holder is asked to let go, and the
 * whole set must be held within env->lock_wait_ms), and only then has the store copy
 * (tusc_store_concat) with every lock held: no pool thread ever waits for a lock. A final whose
 * partials are not all complete is left alone; an assembly is idempotent, logs
 * UploadFinished and counts it in the metrics (finish hooks do not run here); on error
 * the final's data is cut back to empty. The loop stays alive until the job ends.
 * `env` is copied; its pointers must outlive the job.
 *
 * `cb` (may be NULL) runs on the loop exactly once, never before the start function
 * returned, when the job ends: status 0 or the first error (TUSC_ELOCK_TIMEOUT,
 * TUSC_EMAX_SIZE_EXCEEDED, TUSC_ENOT_FOUND, UV_ECANCELED after
 * tusc_concat_job_abandon, I/O errors), and the IDs of the finals this job completed
 * (exactly one caller sees a final here; it alone logged and counted it, so it alone
 * runs the finish hooks); `finals` and its strings are freed after cb returns. Start
 * functions return 0, or a negative code and nothing happens (no cb). */
typedef struct tusc_concat_job_s tusc_concat_job_t;
typedef void (*tusc_concat_done_cb)(void *arg, int status, char **finals, size_t count);

/* Partial `partial_id` became complete: assembles the finals noted with it (notes read
 * and taken with tusc_store_wait_take). */
int tusc_concat_queue_partial_finished(uv_loop_t *loop, const tusc_concat_env_t *env,
                                       const char *partial_id, tusc_concat_done_cb cb, void *arg);
/* Assembles final `final_id` if it is ready (HEAD, GET). *job (may be NULL) is the
 * handle for tusc_concat_job_abandon, valid until cb runs. */
int tusc_concat_queue_assemble(uv_loop_t *loop, const tusc_concat_env_t *env, const char *final_id,
                               tusc_concat_done_cb cb, void *arg, tusc_concat_job_t **job);
/* As tusc_concat_queue_assemble for a final just created (after it was noted with its
 * unfinished partials, tusc_store_wait_add), but it neither logs nor counts UploadFinished: the
 * creating request does. */
int tusc_concat_queue_created(uv_loop_t *loop, const tusc_concat_env_t *env, const char *final_id,
                              tusc_concat_done_cb cb, void *arg, tusc_concat_job_t **job);
/* Under the final's lock: turns a "pending" FinishHooks state into "done" and saves the
 * info; `finals` holds final_id when this job marked it (false when it was not pending
 * any more, e.g. another request ran the hooks first). */
int tusc_concat_queue_finish_hooks_done(uv_loop_t *loop, const tusc_concat_env_t *env,
                                        const char *final_id, tusc_concat_done_cb cb, void *arg);

/* The requester is gone: a job still waiting for locks stops, lets go of what it holds
 * and ends with UV_ECANCELED (copying already under way finishes first). cb still runs
 * once. NULL is a no-op. */
void tusc_concat_job_abandon(tusc_concat_job_t *job);

#endif

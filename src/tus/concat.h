/*
 * concat — the concatenation and concatenation-unfinished extensions: parsing
 * Upload-Concat, checking the partial uploads of a new final upload, and assembling a
 * final upload from its partials once every partial is complete.
 *
 * A final upload is stored like any upload, with is_final and the partial IDs in its
 * info and an empty data file. Its length is the sum of the partials' lengths, known
 * (and saved) once every partial's length is known. Assembly appends the partials'
 * bytes to the final's data file in order (store->append_from: copy_file_range, no
 * copy through user space where the filesystem allows), so the final's offset grows
 * from 0 to its length; it is idempotent and runs under the final's lock, with each
 * partial's lock held too (a complete partial cannot change anyway; the locks keep a
 * DELETE out for the duration).
 *
 * When a final is created before its partials are done, it is noted with each
 * unfinished partial (store->wait_add); the PATCH that completes a partial takes those
 * notes (store->wait_take) and assembles the finals whose partials are now all
 * complete. The notes survive restarts; HEAD and GET of a final whose partials are all
 * complete assemble it as well, which also covers notes lost with a crash.
 *
 * Threads: the parser and tusc_concat_status are cheap and may run on a loop;
 * tusc_concat_assemble, tusc_concat_final_created and tusc_concat_partial_finished
 * block on disk and on locks and belong on libuv's thread pool
 * (tusc_concat_queue_partial_finished / tusc_concat_queue_assemble put them there).
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
  char **ids; /* final: the partial upload IDs in order (may repeat) */
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

/* Checks the partials named by `c` (a parsed final) and makes `final` a final upload:
 * is_final, partial_uploads (copied), and size = the sum of the partial lengths, or
 * deferred while any partial's length is unknown. Every partial must exist and be a
 * partial upload (else TUSC_EINVALID_CONCAT); an unfinished partial is fine
 * (concatenation-unfinished). With max_size > 0 a known sum above it gives
 * TUSC_EMAX_SIZE_EXCEEDED. Reads infos only; returns 0 or a negative code. */
int tusc_concat_prepare_final(tusc_store_t *store, const tusc_concat_t *c, int64_t max_size,
                              tusc_upload_info_t *final);
/* The same, where a partial for which `visible` returns false counts as missing (an
 * upload of another user, hidden by -auth-hide-foreign: nothing about it, not even its
 * length through the size limit, may show). visible NULL = every partial visible. */
typedef bool (*tusc_concat_visible_cb)(const tusc_upload_info_t *partial, void *arg);
int tusc_concat_prepare_final_visible(tusc_store_t *store, const tusc_concat_t *c, int64_t max_size,
                                      tusc_upload_info_t *final, tusc_concat_visible_cb visible,
                                      void *arg);

/* What a HEAD/GET of a final needs to know. If the final's length is unknown but every
 * partial's is, sets info->size (size_is_deferred false) in `info` (not on disk).
 * Returns true when the final is not assembled yet and every partial is complete, so
 * that assembling it now would finish it. Cheap (info reads); false on any error. */
bool tusc_concat_status(tusc_store_t *store, tusc_upload_info_t *info);

/* Writes "final;<url> <url> …" for a final upload into out (cap bytes, NUL-terminated),
 * each URL being `collection` + partial ID. Returns 0 or UV_ENOBUFS. */
int tusc_concat_format_final(const tusc_upload_info_t *info, const char *collection, char *out,
                             size_t cap);

/* Where and how assembly takes its locks. Borrowed pointers. */
typedef struct tusc_concat_env_s {
  tusc_store_t *store;
  tusc_lock_table_t *locks;
  unsigned file_perms;   /* for lock files */
  int64_t lock_wait_ms;  /* how long to wait for a busy lock */
} tusc_concat_env_t;

/* Assembles final upload `final_id` if every partial is complete and it is not
 * assembled yet (then saves a newly known length, appends, syncs, logs UploadFinished
 * and counts it in the metrics; finish hooks do not run here). Sets *complete
 * (may be NULL) to whether the final is complete afterwards. Returns 0 (also when not
 * ready), TUSC_ELOCK_TIMEOUT, TUSC_ENOT_FOUND for a missing final or partial, or an
 * I/O error; on error the final's data is cut back to empty. Blocking. */
int tusc_concat_assemble(const tusc_concat_env_t *env, const char *final_id, bool *complete);

/* After the store created final upload `info`: notes it with each unfinished partial,
 * then assembles it if all are complete. Unlike tusc_concat_assemble it neither logs
 * UploadFinished nor counts it: the creating request does that (and runs the finish
 * hooks) when it sees the final complete. Returns 0 or the assembly's error. Blocking. */
int tusc_concat_final_created(const tusc_concat_env_t *env, const tusc_upload_info_t *info);

/* After partial `partial_id` became complete: assembles the finals noted with it.
 * Failures are logged (a later HEAD/GET retries). Blocking. */
void tusc_concat_partial_finished(const tusc_concat_env_t *env, const char *partial_id);

/* tusc_concat_assemble that also says whether this call is the one that completed the
 * final (*assembled; exactly one caller sees true, and it alone has logged and counted
 * it, so it alone runs the finish hooks). Blocking. */
int tusc_concat_assemble_now(const tusc_concat_env_t *env, const char *final_id,
                             bool *assembled);

/* tusc_concat_final_created with *assembled (may be NULL): this call completed the
 * final. False when a partial's background job completed it first (that job then owns
 * the report and the finish hooks). Blocking. */
int tusc_concat_create_final(const tusc_concat_env_t *env, const tusc_upload_info_t *info,
                             bool *assembled);

/* Under the final's lock: turns a "pending" FinishHooks state into "done" and saves
 * the info. *marked: it was pending and is now done on disk (false when it was not
 * pending any more, e.g. another request ran the hooks first). Blocking. */
int tusc_concat_finish_hooks_done(const tusc_concat_env_t *env, const char *final_id,
                                  bool *marked);

/* True when `info` is a final that is not complete and one of its partials no longer
 * exists (deleted or expired and swept): it can never complete. Info reads only. */
bool tusc_concat_partial_missing(tusc_store_t *store, const tusc_upload_info_t *info);

/* Fire-and-forget versions on `loop`'s thread pool (the loop stays alive until they are
 * done). `env` is copied; its pointers must outlive the work. Returns 0 or a negative
 * code (nothing queued). */
int tusc_concat_queue_partial_finished(uv_loop_t *loop, const tusc_concat_env_t *env,
                                       const char *partial_id);
int tusc_concat_queue_assemble(uv_loop_t *loop, const tusc_concat_env_t *env,
                               const char *final_id);

/* With a callback: `cb` runs on `loop` exactly once when the job ends (also when it
 * was cancelled), with the IDs of the finals the job completed (`finals` and its strings
 * are freed after cb returns; count may be 0). Not called when queueing fails. */
typedef void (*tusc_concat_done_cb)(void *arg, char **finals, size_t count);
int tusc_concat_queue_partial_finished_cb(uv_loop_t *loop, const tusc_concat_env_t *env,
                                          const char *partial_id, tusc_concat_done_cb cb,
                                          void *arg);
int tusc_concat_queue_assemble_cb(uv_loop_t *loop, const tusc_concat_env_t *env,
                                  const char *final_id, tusc_concat_done_cb cb, void *arg);

#endif

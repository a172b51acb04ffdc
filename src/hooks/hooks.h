/*
 * hooks — tusd v2 compatible hooks: the process-wide hook settings and a per-loop
 * runner that sends each invocation to the configured hook sender (file hooks run
 * through uv_spawn, HTTP hooks through libcurl multi on the loop) without ever
 * blocking the loop. The seven events, the request facts and the response are in
 * hook_types.h (included here); the senders are known to hooks.c alone.
 *
 * Objects:
 *   - tusc_hooks_t, one per process, built from the config on the main thread; after
 *     that read-only except for its atomic counters, shared by every worker.
 *   - tusc_hooks_worker_t, one per worker loop; all its functions and every callback
 *     run on that loop.
 *
 * Invocation: tusc_hooks_invoke() serialises the request JSON at once (the upload info
 * and request facts are only borrowed during the call) and returns. At most
 * -hooks-max-processes hooks run at once in the whole process (a slot counter shared
 * by all workers; a worker whose invocations wait is woken through its uv_async when
 * another worker frees a slot). Blocking events (pre-*) start as soon as a slot is
 * free, waiting first in a per-worker queue of the same size; when that is full the
 * invoke fails with TUSC_EHOOKS_BUSY (the request answers 503). Non-blocking events
 * (post-*) go through a bounded queue per worker with a small number running at once;
 * when the queue is full the invocation is dropped, logged ("hook queue full") and
 * counted. tusc_hooks_cancel() stops a blocking invocation whose request has gone.
 *
 * Callback discipline (libuv's): when tusc_hooks_invoke returns 0, `cb` (if not NULL)
 * fires exactly once, later, on the loop; when it returns an error, `cb` never fires.
 * The response passed to `cb` is owned by the runner and disposed after `cb` returns;
 * `cb` may move members out of it (set the pointer to NULL / has_metadata to false).
 *
 * Errors given to `cb`: 0 (the hook ran and answered, or there was nothing to run),
 * UV_ETIMEDOUT (file hook exceeded -hooks-timeout, HTTP hook exceeded
 * -hooks-http-timeout), UV_ECANCELED (worker closed first, or tusc_hooks_cancel),
 * TUSC_EINTERNAL (any
 * other hook failure: non-zero exit, not executable, bad JSON, HTTP status/type/size).
 * resp->error then says what went wrong (also logged). Blocking hooks that fail
 * answer 500 in tusd; tusc_error_status() gives that for all of these codes.
 */
#ifndef TUSC_HOOKS_H
#define TUSC_HOOKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "config/config.h"
#include "hooks/hook_types.h"
#include "store/store.h"

/* --- process-wide settings ------------------------------------------------------- */

typedef struct tusc_hooks_s tusc_hooks_t;

/* Reads hooks_dir, hooks_http*, hooks_enabled_events, progress/hook timeouts from
 * cfg (copied; cfg may go away afterwards). With both -hooks-dir and -hooks-http set,
 * file hooks win (tusd's order) and a warning is logged. An unknown event name in
 * -hooks-enabled-events → TUSC_EINVALID_ARGUMENT (logged). Initialises libcurl when
 * HTTP hooks are configured. Main thread only. Returns 0 and *out, or a code. */
int tusc_hooks_new(const tusc_config_t *cfg, tusc_hooks_t **out);

/* The store whose Storage map (tusc_store_storage) hook requests carry; without one,
 * Storage is null. Set once before the first invoke; the store outlives the hooks. */
void tusc_hooks_set_store(tusc_hooks_t *hooks, const tusc_store_t *store);
/* After every worker is closed. NULL is a no-op. */
void tusc_hooks_free(tusc_hooks_t *hooks);

/* Some sender (file or HTTP) is configured. */
bool tusc_hooks_active(const tusc_hooks_t *hooks);
/* A sender is configured and `ev` is in the enabled set: only then is an invocation
 * worth building. (tusc_hooks_invoke answers an empty success otherwise.) */
bool tusc_hooks_enabled(const tusc_hooks_t *hooks, enum tusc_hook_event ev);
/* -progress-hooks-interval in milliseconds (for post-receive pacing by the caller). */
int64_t tusc_hooks_progress_interval_ms(const tusc_hooks_t *hooks);

typedef struct tusc_hooks_stats_s {
  uint64_t invocations[TUSC_HOOK_EVENT_COUNT]; /* tusd_hook_invocations_total */
  uint64_t errors[TUSC_HOOK_EVENT_COUNT];      /* tusd_hook_errors_total */
  uint64_t dropped;                            /* "hook queue full" drops */
  uint64_t busy;      /* blocking invocations refused: every slot and queue place taken */
  uint64_t cancelled; /* blocking invocations stopped because their request had gone */
  uint64_t running;   /* hooks running now (holding a slot) */
  uint64_t waiting;   /* blocking invocations waiting for a slot now */
} tusc_hooks_stats_t;

/* Snapshot of the counters (all workers). Any thread. */
void tusc_hooks_stats(const tusc_hooks_t *hooks, tusc_hooks_stats_t *out);

/* --- per-loop runner ------------------------------------------------------------- */

typedef struct tusc_hooks_worker_s tusc_hooks_worker_t;

typedef struct tusc_hooks_worker_options_s {
  size_t queue_max;   /* non-blocking invocations waiting + running; 0 = default 1024 */
  size_t concurrency; /* non-blocking invocations running at once; 0 = default 8 */
} tusc_hooks_worker_options_t;

/* Borrows hooks (must outlive the worker). opts may be NULL (defaults).
 * Returns 0 and *out, or a negative code. */
int tusc_hooks_worker_new(tusc_hooks_t *hooks, uv_loop_t *loop,
                          const tusc_hooks_worker_options_t *opts, tusc_hooks_worker_t **out);

/* Cancels everything: queued invocations and running ones (children get SIGKILL,
 * HTTP transfers are aborted) complete with UV_ECANCELED, then the worker frees
 * itself from its handles' close callbacks — keep running the loop. No invoke after. */
void tusc_hooks_worker_close(tusc_hooks_worker_t *worker);

typedef void (*tusc_hook_done_cb)(int status, tusc_hook_response_t *resp, void *arg);

/* Runs hook `ev` for `upload` (borrowed; ID "" and Storage null are sent for
 * pre-create whatever it holds) and `req` (borrowed; NULL = no HTTP request, e.g. an
 * expiry sweep). cb may be NULL (fire and forget; use for post-* events).
 * Returns 0 (cb will fire once), UV_EBUSY when the non-blocking queue is full (dropped,
 * logged, counted; cb will not fire), TUSC_EHOOKS_BUSY when a blocking hook finds
 * neither a free slot nor a place in the worker's waiting queue (counted; cb will not
 * fire), UV_ECANCELED (worker closing), TUSC_ENOMEM, or
 * TUSC_EINVALID_ARGUMENT (also when the request JSON would exceed 4 MiB).
 * When the event is not enabled, returns 0 and cb fires with status 0 and an empty
 * response on a later loop iteration. Not warn_unused_result: fire-and-forget callers
 * may ignore the result (gcc does not accept a (void) cast for that attribute). */
int tusc_hooks_invoke(tusc_hooks_worker_t *worker, enum tusc_hook_event ev,
                      const tusc_upload_info_t *upload, const tusc_hook_http_request_t *req,
                      tusc_hook_done_cb cb, void *arg);

/* Non-blocking invocations waiting or running on this worker. */
size_t tusc_hooks_worker_pending(const tusc_hooks_worker_t *worker);

/* The request behind the blocking invocation made with this `cb` and `arg` has gone:
 * a waiting one is dropped, a running one stopped (a file hook's whole process group
 * is killed, an HTTP hook's transfer aborted). `cb` still fires exactly once, later,
 * with UV_ECANCELED (or with the result, if it was already known). Returns 0, or
 * UV_ENOENT when no such invocation waits or runs. */
int tusc_hooks_cancel(tusc_hooks_worker_t *worker, tusc_hook_done_cb cb, void *arg);

#endif

/*
 * metrics — process-wide Prometheus counters, gauges and histograms, and their text
 * exposition (format 0.0.4).
 *
 * Names: tusd's (tusd_requests_total{method}, tusd_errors_total{status,code},
 * tusd_bytes_received, tusd_uploads_created, tusd_uploads_finished,
 * tusd_uploads_terminated, tusd_connections_open, tusd_hook_invocations_total{hooktype},
 * tusd_hook_errors_total{hooktype}) so existing dashboards keep working; process_*
 * (cpu, memory, fds, start time); and tusc_* for what tusd does not have (request
 * durations, bytes written, active uploads, lock waits, hook queue, hook durations).
 *
 * Threads: every update function may be called from any thread at any time; each is a
 * few relaxed atomic additions (no locks, no allocation), cheap enough for the body
 * path. There is one set of counters per process (a process serves one tusc).
 * tusc_metrics_render reads a snapshot; counters updated meanwhile may or may not be in
 * it (each value is read atomically, the set is not one instant).
 */
#ifndef TUSC_METRICS_H
#define TUSC_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "hooks/hooks.h"
#include "http/http.h"

#define TUSC_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Records the process start time (once; later calls do nothing). Main thread, before
 * workers start; render works without it (start time = first render). */
void tusc_metrics_init(void);

/* Where the hook counters come from (tusc_hooks_stats); NULL to detach before the
 * hooks are freed. */
void tusc_metrics_set_hooks(const tusc_hooks_t *hooks);

/* A request reached the handler (tusd_requests_total{method}). */
void tusc_metrics_request(enum tusc_http_method method);
/* The handler answered a request that started at `start_ms` (tusc_now_ms clock). */
void tusc_metrics_request_done(enum tusc_http_method method, uint64_t start_ms);
/* The handler answered with an error: `status` as sent, `err` a TUSC_E* / UV_E* code
 * (its tusd code name becomes the label). */
void tusc_metrics_error(int status, int err);

void tusc_metrics_bytes_received(uint64_t n); /* body bytes taken off the wire */
void tusc_metrics_bytes_written(uint64_t n);  /* bytes stored in uploads */
void tusc_metrics_upload_created(void);
void tusc_metrics_upload_finished(void);
void tusc_metrics_upload_terminated(void);
void tusc_metrics_upload_expired(void); /* the sweeper deleted an expired upload */
void tusc_metrics_connections(int delta);    /* open connections, +1 / -1 */
void tusc_metrics_active_uploads(int delta); /* requests writing a body, +1 / -1 */
void tusc_metrics_lock_wait(void);           /* a request had to wait for an upload lock */
void tusc_metrics_hook_queue(int delta);     /* non-blocking hooks waiting or running */
/* A hook invocation of event `ev` completed after `duration_ms`. */
void tusc_metrics_hook_done(enum tusc_hook_event ev, uint64_t duration_ms);

/* The whole exposition as malloc'd text (*out, *len; caller frees). Returns 0 or
 * TUSC_ENOMEM. */
int tusc_metrics_render(char **out, size_t *len);

/* --- a separate metrics listener (-metrics-listen) ----------------------------- */

typedef struct tusc_metrics_server_s tusc_metrics_server_t;

/* Listens on `addr` ("127.0.0.1:9100", "[::1]:9100", ":9100" = every address; port 0
 * picks one) on `loop` and answers GET/HEAD on `path` with the exposition, 404
 * elsewhere. *port_out (may be NULL) receives the bound port. Returns 0 or a negative
 * code (TUSC_EINVALID_ARGUMENT for a malformed address). */
int tusc_metrics_server_start(uv_loop_t *loop, const char *addr, const char *path,
                              const tusc_http_limits_t *limits, tusc_metrics_server_t **out,
                              int *port_out);
/* Closes it; it frees itself once its connections are gone (keep running the loop).
 * NULL is a no-op. */
void tusc_metrics_server_stop(tusc_metrics_server_t *server);

#endif

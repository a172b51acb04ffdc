/*
 * metrics — process-wide Prometheus counters, gauges and histograms, and their text
 * exposition (format 0.0.4). A low layer: it includes nothing above common/, so any
 * module may count (src/http counts connections). Serving the text over HTTP is
 * http/metrics_endpoint.h's job.
 *
 * Names: tusd's (tusd_requests_total{method}, tusd_errors_total{status,code},
 * tusd_bytes_received, tusd_uploads_created, tusd_uploads_finished,
 * tusd_uploads_terminated, tusd_connections_open, tusd_hook_invocations_total{hooktype},
 * tusd_hook_errors_total{hooktype}) so existing dashboards keep working; process_*
 * (cpu, memory, fds, start time); and tusc_* for what tusd does not have (request
 * durations, bytes written, active uploads, lock waits, hook queue, hook durations).
 *
 * Labels: per-method series are indexed by enum tusc_http_method values and per-hook
 * series by enum tusc_hook_event values; callers pass their enums as they are. The label
 * values are tusd's and live here; http/metrics_endpoint.c (http) and server.c (hooks) check
 * at compile time that those enums still number them the same way.
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

#define TUSC_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Records the process start time (once; later calls do nothing). Main thread, before
 * workers start; render works without it (start time = first render). */
void tusc_metrics_init(void);

/* Method slots, numbered as enum tusc_http_method (http/http.h). */
enum tusc_metrics_method {
  TUSC_METRICS_OTHER = 0,
  TUSC_METRICS_GET,
  TUSC_METRICS_HEAD,
  TUSC_METRICS_POST,
  TUSC_METRICS_PUT,
  TUSC_METRICS_PATCH,
  TUSC_METRICS_DELETE,
  TUSC_METRICS_OPTIONS,
};
#define TUSC_METRICS_METHODS 8
/* Hook-type slots: enum tusc_hook_event (hooks/hooks.h), pre-create = 0 ... */
#define TUSC_METRICS_HOOK_TYPES 7

/* The hook runner's own counters (tusd_hook_invocations_total and the like), which
 * metrics renders but does not keep. */
typedef struct tusc_metrics_hook_stats_s {
  uint64_t invocations[TUSC_METRICS_HOOK_TYPES];
  uint64_t errors[TUSC_METRICS_HOOK_TYPES];
  uint64_t dropped;
  uint64_t busy;
  uint64_t cancelled;
  uint64_t running;
  uint64_t waiting;
} tusc_metrics_hook_stats_t;

typedef struct tusc_metrics_hook_source_s {
  /* Fills *out (zeroed before the call); any thread. */
  void (*stats)(const void *arg, tusc_metrics_hook_stats_t *out);
  const void *arg;
} tusc_metrics_hook_source_t;

/* Where the hook counters come from at each render; `source` (borrowed) must stay
 * valid until detached with NULL, which is done before the hooks are freed. Without a
 * source every hook series is rendered at zero. */
void tusc_metrics_set_hook_source(const tusc_metrics_hook_source_t *source);

/* A request reached the handler (tusd_requests_total{method}); `method` is an enum
 * tusc_http_method value (out of range counts as OTHER). */
void tusc_metrics_request(int method);
/* The handler answered a request that started at `start_ms` (tusc_now_ms clock). */
void tusc_metrics_request_done(int method, uint64_t start_ms);
/* The handler answered with an error: `status` as sent, `err` a TUSC_E* / UV_E* code
 * (its tusd code name becomes the label). */
void tusc_metrics_error(int status, int err);

void tusc_metrics_bytes_received(uint64_t n); /* body bytes taken off the wire */
void tusc_metrics_bytes_written(uint64_t n);  /* bytes stored in uploads */
void tusc_metrics_upload_created(void);
void tusc_metrics_upload_finished(void);
void tusc_metrics_upload_terminated(void);
void tusc_metrics_upload_expired(void);      /* the sweeper deleted an expired upload */
void tusc_metrics_connections(int delta);    /* open connections, +1 / -1 */
void tusc_metrics_tls_ktls(void);            /* a TLS connection went to kernel TLS */
void tusc_metrics_active_uploads(int delta); /* requests writing a body, +1 / -1 */
void tusc_metrics_lock_wait(void);           /* a request had to wait for an upload lock */
void tusc_metrics_hook_queue(int delta);     /* non-blocking hooks waiting or running */
/* A hook invocation of `hook_type` (an enum tusc_hook_event value) completed after
 * `duration_ms`. */
void tusc_metrics_hook_done(int hook_type, uint64_t duration_ms);

/* The whole exposition as malloc'd text (*out, *len; caller frees). Returns 0 or
 * TUSC_ENOMEM. */
int tusc_metrics_render(char **out, size_t *len);

#endif

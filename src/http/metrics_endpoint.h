/*
 * metrics_endpoint — serves the metrics exposition (metrics/metrics.h) over HTTP on a listener
 * of its own (-metrics-listen): GET/HEAD on one path, 404 elsewhere, 405 for other
 * methods. It sits above both src/http and metrics, which know nothing of each other
 * beyond metrics' counters.
 *
 * Threads: start and stop on the loop's thread; the server lives on that loop.
 * Ownership: the endpoint owns its http server and listening socket.
 */
#ifndef TUSC_HTTP_METRICS_ENDPOINT_H
#define TUSC_HTTP_METRICS_ENDPOINT_H

#include <uv.h>

#include "http/http.h"

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

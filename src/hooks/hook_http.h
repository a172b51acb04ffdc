/*
 * hook_http — the HTTP hook sender (tusd -hooks-http): POSTs the request JSON with
 * Content-Type application/json and the forwarded request headers, using libcurl's
 * multi interface on the loop (net/curl_loop.h), so no thread ever waits on the network.
 *
 * The endpoint must answer 2xx with Content-Type application/json and a non-empty
 * JSON body of at most size_limit bytes. Network errors and 5xx are retried, `retry`
 * attempts in total, backoff_ms apart, the whole call bounded by timeout_ms (then
 * UV_ETIMEDOUT). Redirects are not followed.
 *
 * Threads: the sender belongs to one loop. curl_global_init must have run
 * (tusc_hooks_new does it).
 */
#ifndef TUSC_HOOK_HTTP_H
#define TUSC_HOOK_HTTP_H

#include <stdint.h>

#include <uv.h>

#include "hooks/hook_sender.h"

typedef struct tusc_hook_http_options_s {
  const char *url; /* copied */
  int retry;       /* attempts in total; < 1 counts as 1 */
  int64_t backoff_ms;
  int64_t timeout_ms; /* the whole invocation, retries included; 0 = none */
  int64_t size_limit; /* response body bytes; 0 = none */
} tusc_hook_http_options_t;

/* Returns 0 and *out (close with sender->ops->close), or a negative code. */
int tusc_hook_http_sender_new(uv_loop_t *loop, const tusc_hook_http_options_t *opts,
                              tusc_hook_sender_t **out);

#endif

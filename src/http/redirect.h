/*
 * redirect — the handler of the optional plain-HTTP listener (-http-redirect-port):
 * every request is answered "308 Permanent Redirect" to the same path and query on
 * https://<host>[:<https port>] (the seed's HAProxy `redirect scheme https`). 308 keeps
 * the method and body, so a client that POSTs to http:// repeats the POST over TLS.
 *
 * The Host header is echoed only when it is a syntactically valid host name or
 * bracketed IPv6 literal (optionally with a port, which is replaced by the https
 * port) and, with -allowed-hosts, one of those names; otherwise 400 (invalid or
 * missing) or 421 (not served here). Nothing is ever read from a body.
 *
 * Threads: the redirect object is immutable after tusc_redirect_new and shared by
 * every worker's redirect server.
 */
#ifndef TUSC_HTTP_REDIRECT_H
#define TUSC_HTTP_REDIRECT_H

#include <stddef.h>

#include "http/http.h"

typedef struct tusc_redirect_s tusc_redirect_t;

/* https_port: where TLS is served (443 is left out of the URL). allowed_hosts:
 * comma-separated names or NULL for any. */
int tusc_redirect_new(int https_port, const char *allowed_hosts, tusc_redirect_t **out);
void tusc_redirect_free(tusc_redirect_t *r);

/* Handler for tusc_http_server_new; its ctx is the tusc_redirect_t. */
const tusc_http_handler_t *tusc_redirect_http_handler(void);

/* Builds the https URL for Host `host` (NULL = missing) and `path`/`query` (query
 * without '?', "" for none). Returns 0 (or UV_ENOBUFS when cap is too small) with
 * out filled, or the HTTP status to refuse with (400 or 421). */
int tusc_redirect_location(const tusc_redirect_t *r, const char *host, const char *path,
                           const char *query, char *out, size_t cap);

#endif

/*
 * location — where an upload lives, as a client should see it: the absolute upload URL
 * put into Location headers, and the client address for logs. Honours the proxy headers
 * (X-Forwarded-Host/-Proto/-Prefix/-For, Forwarded) only when told the server sits behind
 * a proxy. Pure: no I/O, no allocation; thread-safe.
 */
#ifndef TUSC_TUS_LOCATION_H
#define TUSC_TUS_LOCATION_H

#include <stdbool.h>
#include <stddef.h>

#include "tus/headers.h"

/* Header values as received (NULL when the header is absent); lengths in bytes. */
typedef struct tusc_location_input_s {
  const char *host;
  size_t host_len;
  const char *x_forwarded_host;
  size_t x_forwarded_host_len;
  const char *x_forwarded_proto;
  size_t x_forwarded_proto_len;
  const char *x_forwarded_prefix;
  size_t x_forwarded_prefix_len;
  const char *forwarded;
  size_t forwarded_len;
  bool behind_proxy; /* believe the forwarding headers above */
  bool tls;          /* the connection itself is TLS */
} tusc_location_input_t;

/* The one place that decides which host a response names: Host, replaced with
 * behind_proxy by the first X-Forwarded-Host, replaced by Forwarded host= (tusd's
 * order). -allowed-hosts and tusc_location_collection both use it, so a Location never
 * names a host the allow list did not see. *host points into `in` or into *fwd (the
 * caller's scratch space); NULL (length 0) when no host is known. Returns 0 or
 * TUSC_EINVALID_HEADER (invalid Host or X-Forwarded-Host); outputs are written only on
 * success. */
int tusc_location_host(const tusc_location_input_t *in, tusc_forwarded_t *fwd, const char **host,
                       size_t *host_len);

/* Writes the URL of the upload collection: "<proto>://<host><prefix><base_path>" into out
 * (NUL-terminated), so that appending an upload ID gives the upload URL. Default ports
 * (:80 for http, :443 for https) are dropped. When no usable host is known (HTTP/1.0
 * without Host) the result is relative: "<prefix><base_path>".
 * Returns 0, TUSC_EINVALID_HEADER for an invalid Host, or UV_ENOBUFS when cap is too
 * small; out is written only on success. */
int tusc_location_collection(const tusc_location_input_t *in, const char *base_path, char *out,
                             size_t cap);

/* Whether `addr` (an IP literal, v6 without brackets) is one of the trusted proxies. */
typedef bool (*tusc_location_trusted_cb)(const char *addr, void *arg);

/* Client address for logs and hooks. Without behind_proxy: `remote_addr`. With it, the
 * X-Forwarded-For list is walked from the right, skipping the addresses `trusted`
 * accepts; the first other one is the client (every proxy appends the address it
 * got the request from, so only the right end is written by proxies we trust). When
 * every address is trusted, or `trusted` is NULL (-behind-proxy without
 * -trusted-proxies: tusd's behaviour), the left-most. An entry that is not an IP
 * address ends the walk (nothing left of it can be believed). Without a result from
 * X-Forwarded-For, the same walk over Forwarded's for= values; then `remote_addr`.
 * Never fails; out holds 64 bytes. */
void tusc_location_client_addr(bool behind_proxy, tusc_location_trusted_cb trusted, void *arg,
                               const char *x_forwarded_for, size_t xff_len, const char *forwarded,
                               size_t forwarded_len, const char *remote_addr, char out[64]);

#endif

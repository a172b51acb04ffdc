/*
 * listener — the listening sockets of the server: one per worker, all bound to the
 * same port with SO_REUSEPORT so the kernel spreads new connections across workers,
 * or one unix socket shared (dup) by all workers.
 *
 * Addresses: host "", "0.0.0.0" or "::" means every address — one IPv6 socket with
 * IPV6_V6ONLY off (IPv4 clients appear as ::ffff:a.b.c.d), or plain IPv4 when the
 * system has no IPv6. Any other host is resolved (getaddrinfo, AI_PASSIVE) and the
 * first address is bound. Port 0 binds an ephemeral port; all sockets share it.
 *
 * Sockets are non-blocking, close-on-exec, listening with backlog 1024.
 * Threads: main thread, before workers start. The caller owns the fds: hand each to
 * one tusc_http_server_new (which takes it over) and set the slot to -1.
 */
#ifndef TUSC_NET_LISTENER_H
#define TUSC_NET_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

typedef struct tusc_listeners_s {
  int *fds; /* `count` listening sockets; -1 once handed over */
  size_t count;
  int port; /* bound TCP port; 0 for a unix socket */
  bool is_unix;
  char *unix_path; /* owned copy; the socket file is removed by tusc_listeners_close */
} tusc_listeners_t;

/* Opens `count` (>= 1) listening sockets. `unix_sock` non-NULL selects a unix
 * socket (a stale socket file there is replaced; any other file is an error).
 * Returns 0 and fills *out, or a negative errno / TUSC_E* code (nothing left open). */
int tusc_listeners_open(const char *host, int port, const char *unix_sock, size_t count,
                        tusc_listeners_t *out) __attribute__((warn_unused_result));

/* Closes the fds still held (not handed over) and removes the unix socket file. */
void tusc_listeners_close(tusc_listeners_t *listeners);

#endif

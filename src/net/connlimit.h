/*
 * connlimit — admission of new client connections against -max-connections (all
 * connections of the process, every worker together) and -max-connections-per-ip.
 *
 * Per-IP counting keys IPv4 peers (also when a dual-stack socket reports them as
 * ::ffff:a.b.c.d) by their address and IPv6 peers by their /64 prefix, since one
 * IPv6 client usually owns a whole /64. Unix-socket peers count only towards the total.
 *
 * Threads: one object per process, shared by every worker loop; acquire/release are
 * thread-safe (one mutex, held for a hash lookup). new/free on the main thread before
 * workers start / after they stopped.
 */
#ifndef TUSC_NET_CONNLIMIT_H
#define TUSC_NET_CONNLIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct tusc_connlimit_s tusc_connlimit_t;

/* What a connection holds once admitted; give it back to release. */
typedef struct tusc_connlimit_slot_s {
  bool held;
  bool keyed;      /* counted per IP */
  uint8_t key[17]; /* family tag + address (IPv6: first 8 bytes only) */
} tusc_connlimit_slot_t;

/* 0 = no limit for either. Returns 0 or TUSC_ENOMEM. */
int tusc_connlimit_new(size_t max_total, size_t max_per_ip, tusc_connlimit_t **out)
    __attribute__((warn_unused_result));
void tusc_connlimit_free(tusc_connlimit_t *limit);

/* Admits a connection from `peer` (NULL or AF_UNIX: no per-IP count). Returns 0 and
 * fills *slot, or TUSC_ETOO_MANY_CONNECTIONS (slot->held false). */
int tusc_connlimit_acquire(tusc_connlimit_t *limit, const struct sockaddr *peer,
                           tusc_connlimit_slot_t *slot) __attribute__((warn_unused_result));
/* Gives a slot back; no-op for a slot not held. */
void tusc_connlimit_release(tusc_connlimit_t *limit, tusc_connlimit_slot_t *slot);

/* Current counts (tests, metrics). */
size_t tusc_connlimit_total(tusc_connlimit_t *limit);
size_t tusc_connlimit_count_for(tusc_connlimit_t *limit, const struct sockaddr *peer);

#endif

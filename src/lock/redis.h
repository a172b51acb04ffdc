/*
 * redis — the lock.h backend for several tusc instances: a lease in Redis (hiredis on
 * libuv), so that instances behind a load balancer exclude each other per upload.
 *
 * A lock is the key "<prefix>lock:{<id>}" holding "<channel> <token>": the holder's
 * pub/sub channel (one per loop and lock object) and 128 random bits (getrandom). It is
 * taken with SET NX PX <lease>, renewed every lease/3 while held (compare-and-PEXPIRE,
 * Lua) and deleted on release (compare-and-DEL, Lua). The "{<id>}" hash tag keeps an
 * upload's keys in one Redis Cluster slot.
 *
 * Waiting: an acquire that finds the key taken adds its channel to
 * "<prefix>waiters:{<id>}" and, when it asks (at once, then every TUSC_LOCK_REASK_MS),
 * publishes "a<id>" on the holder's channel, all in one script. The holder's loop gets
 * it on its subscriber connection and runs on_release_requested there. A release
 * publishes "r<id>" to every waiting channel, which tries again at once; otherwise a
 * waiter tries again when the holder's lease would end or the next ask is due, never
 * sooner (pub/sub may drop messages; the timer is the safety net). A holder that
 * crashed stops renewing: its key expires after at most one lease and a waiter takes it.
 *
 * Leases: a holder's lease is certainly its own until (time the last successful SET or
 * renewal was sent) + lease - lease/10; tusc_lock_check() compares with that, on the
 * monotonic clock, with no round trip. A holder whose lease was taken over (the renewal
 * found another token) or that may not renew in time (its connection is down, or the
 * lease ends within one renewal period) is asked to let go through on_release_requested,
 * while its lease still holds, so that a PATCH ends cleanly with its bytes. The window
 * that remains: work the holder submitted before its check that lands after the lease
 * ended (a check passes, then the process stalls for longer than the remaining lease);
 * a Redis failover that loses the key (replication is asynchronous); clock rate drift
 * between tusc and Redis beyond lease/10.
 *
 * Redis unreachable: an acquire ends with TUSC_ELOCK_UNAVAILABLE (503), nothing is
 * changed; so does one whose script got no reply within TUSC_LOCK_REDIS_REPLY_TIMEOUT_MS
 * (the connection is then dropped and made again; TCP connections also use keepalive). Each loop's connections reconnect by themselves with a backoff from
 * TUSC_LOCK_REDIS_RETRY_MIN_MS to TUSC_LOCK_REDIS_RETRY_MAX_MS. A host name in the URL
 * is resolved once, by tusc_lock_redis_new, so nothing on a loop waits for DNS.
 *
 * Threads: the lock object is shared by every loop; each loop that acquires gets its
 * own context (made on first use, on that loop's thread): a command connection, a
 * subscriber connection and two timers. Everything of a req happens on its loop, so
 * there is no cross-thread glue. tusc_lock_detach(lock, loop) must run on every loop
 * that used the lock, when the loop is to end: the context closes once no req of the
 * loop is held or pending and every reply is in (a release is still sent); a context
 * made later on a detached loop closes whenever it falls idle. Until then its
 * connections keep the loop running. try_acquire is not offered (UV_EAGAIN): Redis
 * needs a round trip.
 */
#ifndef TUSC_LOCK_REDIS_H
#define TUSC_LOCK_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "lock/lock.h"

#define TUSC_LOCK_REDIS_LEASE_MS 10000 /* default lease */
#define TUSC_LOCK_REDIS_RETRY_MIN_MS 50
#define TUSC_LOCK_REDIS_RETRY_MAX_MS 2000
/* An acquire whose script got no reply for this long ends with TUSC_ELOCK_UNAVAILABLE and
 * its connection is made again (a hung Redis, a half-open connection). */
#define TUSC_LOCK_REDIS_REPLY_TIMEOUT_MS 3000

typedef struct tusc_lock_redis_options_s {
  /* redis://[[user]:password@]host[:port][/db], unix:///path/to.sock[?db=N&password=P],
   * unix:/path, unix://[[user]:password@]/path (tusd's form). Port 6379 by default. */
  const char *url;
  const char *prefix; /* key and channel prefix; NULL = "tusc:" */
  int64_t lease_ms;   /* <= 0: TUSC_LOCK_REDIS_LEASE_MS; at least 30 */
} tusc_lock_redis_options_t;

/* Checks a -redis-url value; on failure writes why into err. Returns 0 or
 * TUSC_EINVALID_ARGUMENT. Does not resolve host names. */
int tusc_lock_redis_check_url(const char *url, char *err, size_t errlen);

/* A new Redis lock. Connects lazily (the first acquire on each loop). Returns 0 and
 * *out (tusc_lock_free), TUSC_EINVALID_ARGUMENT (bad URL or lease; err says why),
 * a negated EAI code's UV_ counterpart when the host name does not resolve, or
 * TUSC_ENOMEM. */
int tusc_lock_redis_new(const tusc_lock_redis_options_t *opts, tusc_lock_t **out, char *err,
                        size_t errlen);

/* Counters, for tests and the bench. */
typedef struct tusc_lock_redis_stats_s {
  uint64_t acquired;   /* acquires that got the lock */
  uint64_t waits;      /* acquires that found it busy and waited */
  uint64_t asks_sent;  /* scripts that published a release request */
  uint64_t asks_heard; /* release requests delivered to a holder here */
  uint64_t wakeups;    /* "released" notifications that woke a waiter */
  uint64_t lost;       /* holders told their lease was lost or at risk */
  uint64_t connects;   /* connections established (command + subscriber) */
  uint64_t unavailable; /* acquires ended with TUSC_ELOCK_UNAVAILABLE */
} tusc_lock_redis_stats_t;

void tusc_lock_redis_stats(tusc_lock_t *lock, tusc_lock_redis_stats_t *out);

#endif

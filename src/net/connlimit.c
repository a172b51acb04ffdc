/*
 * connlimit — connection admission (see connlimit.h). The per-IP table is a chained
 * hash keyed by the 17-byte slot key; entries are freed when their count drops to 0,
 * so memory follows the number of distinct clients connected right now.
 */
#include "net/connlimit.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/error.h"

#define BUCKETS 4096

struct ip_entry {
  struct ip_entry *next;
  uint8_t key[17];
  size_t count;
};

struct tusc_connlimit_s {
  uv_mutex_t lock;
  size_t max_total, max_per_ip;
  size_t total;
  struct ip_entry *buckets[BUCKETS];
};

int tusc_connlimit_new(size_t max_total, size_t max_per_ip, tusc_connlimit_t **out) {
  tusc_connlimit_t *l = calloc(1, sizeof(*l));
  if (l == NULL)
    return TUSC_ENOMEM;
  if (uv_mutex_init(&l->lock) != 0) {
    free(l);
    return TUSC_ENOMEM;
  }
  l->max_total = max_total;
  l->max_per_ip = max_per_ip;
  *out = l;
  return 0;
}

void tusc_connlimit_free(tusc_connlimit_t *limit) {
  if (limit == NULL)
    return;
  for (size_t i = 0; i < BUCKETS; i++) {
    struct ip_entry *e = limit->buckets[i], *next;
    for (; e != NULL; e = next) {
      next = e->next;
      free(e);
    }
  }
  uv_mutex_destroy(&limit->lock);
  free(limit);
}

static bool make_key(const struct sockaddr *peer, uint8_t key[17]) {
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  memset(key, 0, 17);
  if (peer == NULL)
    return false;
  if (peer->sa_family == AF_INET) {
    const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)peer;
    key[0] = 4;
    memcpy(key + 1, &sin->sin_addr, 4);
    return true;
  }
  if (peer->sa_family == AF_INET6) {
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)peer;
    const uint8_t *a = sin6->sin6_addr.s6_addr;
    if (memcmp(a, mapped, sizeof(mapped)) == 0) {
      key[0] = 4;
      memcpy(key + 1, a + 12, 4);
    } else {
      key[0] = 6;
      memcpy(key + 1, a, 8);
    }
    return true;
  }
  return false;
}

static size_t bucket_of(const uint8_t key[17]) {
  /* FNV-1a: the key is not secret, and a client cannot choose many addresses that
   * collide without owning them. */
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < 17; i++) {
    h ^= key[i];
    h *= 16777619u;
  }
  return h % BUCKETS;
}

static struct ip_entry **find(tusc_connlimit_t *l, const uint8_t key[17]) {
  struct ip_entry **pp = &l->buckets[bucket_of(key)];
  while (*pp != NULL && memcmp((*pp)->key, key, 17) != 0)
    pp = &(*pp)->next;
  return pp;
}

int tusc_connlimit_acquire(tusc_connlimit_t *limit, const struct sockaddr *peer,
                           tusc_connlimit_slot_t *slot) {
  memset(slot, 0, sizeof(*slot));
  if (limit == NULL)
    return 0;
  int rc = 0;
  uv_mutex_lock(&limit->lock);
  if (limit->max_total > 0 && limit->total >= limit->max_total) {
    rc = TUSC_ETOO_MANY_CONNECTIONS;
    goto out;
  }
  if (make_key(peer, slot->key)) {
    struct ip_entry **pp = find(limit, slot->key);
    if (*pp == NULL) {
      struct ip_entry *e = calloc(1, sizeof(*e));
      if (e == NULL) {
        rc = TUSC_ENOMEM;
        goto out;
      }
      memcpy(e->key, slot->key, 17);
      *pp = e;
    }
    if (limit->max_per_ip > 0 && (*pp)->count >= limit->max_per_ip) {
      if ((*pp)->count == 0) {
        struct ip_entry *e = *pp;
        *pp = e->next;
        free(e);
      }
      rc = TUSC_ETOO_MANY_CONNECTIONS;
      goto out;
    }
    (*pp)->count++;
    slot->keyed = true;
  }
  limit->total++;
  slot->held = true;
out:
  uv_mutex_unlock(&limit->lock);
  return rc;
}

void tusc_connlimit_release(tusc_connlimit_t *limit, tusc_connlimit_slot_t *slot) {
  if (limit == NULL || slot == NULL || !slot->held)
    return;
  uv_mutex_lock(&limit->lock);
  limit->total--;
  if (slot->keyed) {
    struct ip_entry **pp = find(limit, slot->key);
    if (*pp != NULL && --(*pp)->count == 0) {
      struct ip_entry *e = *pp;
      *pp = e->next;
      free(e);
    }
  }
  uv_mutex_unlock(&limit->lock);
  slot->held = false;
}

size_t tusc_connlimit_total(tusc_connlimit_t *limit) {
  uv_mutex_lock(&limit->lock);
  size_t n = limit->total;
  uv_mutex_unlock(&limit->lock);
  return n;
}

size_t tusc_connlimit_count_for(tusc_connlimit_t *limit, const struct sockaddr *peer) {
  uint8_t key[17];
  if (!make_key(peer, key))
    return 0;
  uv_mutex_lock(&limit->lock);
  struct ip_entry **pp = find(limit, key);
  size_t n = *pp != NULL ? (*pp)->count : 0;
  uv_mutex_unlock(&limit->lock);
  return n;
}

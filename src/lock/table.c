/*
 * Upload locks: a chained hash table of held IDs under one mutex, plus flock(2).
 *
 * Invariants:
 * - An entry is in the table exactly while its holder has held == true. The entry, not
 *   the holder, is the table's node, so a holder needs no intrusive fields.
 * - open + flock run under the table mutex: both are non-blocking (LOCK_NB; open of a
 *   small lock file), and doing them there means a second acquire of the same ID can
 *   never slip in between the table check and the flock.
 * - on_release_requested runs without the mutex. To keep the holder alive meanwhile,
 *   the entry counts callbacks in flight and tusc_lock_release waits (cond var) until
 *   that count is zero before it returns control of the holder to its owner.
 */
#include "lock/table.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"

#define INITIAL_BUCKETS 256

typedef struct lock_entry_s {
  struct lock_entry_s *next;
  uint64_t hash;
  tusc_lock_holder_t *holder;
  unsigned callbacks; /* on_release_requested calls in flight */
} lock_entry_t;

struct tusc_lock_table_s {
  pthread_mutex_t mutex;
  pthread_cond_t callbacks_done;
  lock_entry_t **buckets;
  size_t bucket_count; /* power of two */
  size_t count;
};

static uint64_t hash_id(const char *id) {
  uint64_t h = 14695981039346656037ULL; /* FNV-1a */
  for (const unsigned char *p = (const unsigned char *)id; *p != '\0'; p++) {
    h ^= *p;
    h *= 1099511628211ULL;
  }
  return h;
}

int tusc_lock_table_new(tusc_lock_table_t **out) {
  tusc_lock_table_t *t = calloc(1, sizeof(*t));
  if (t == NULL)
    return TUSC_ENOMEM;
  t->buckets = calloc(INITIAL_BUCKETS, sizeof(*t->buckets));
  if (t->buckets == NULL) {
    free(t);
    return TUSC_ENOMEM;
  }
  t->bucket_count = INITIAL_BUCKETS;
  if (pthread_mutex_init(&t->mutex, NULL) != 0) {
    free(t->buckets);
    free(t);
    return TUSC_ENOMEM;
  }
  if (pthread_cond_init(&t->callbacks_done, NULL) != 0) {
    pthread_mutex_destroy(&t->mutex);
    free(t->buckets);
    free(t);
    return TUSC_ENOMEM;
  }
  *out = t;
  return 0;
}

/* Frees the table. Holders still registered are forgotten (their fds stay theirs to
 * release); callers free the table only once every lock is released. */
void tusc_lock_table_free(tusc_lock_table_t *table) {
  if (table == NULL)
    return;
  for (size_t i = 0; i < table->bucket_count; i++) {
    lock_entry_t *e = table->buckets[i];
    while (e != NULL) {
      lock_entry_t *next = e->next;
      free(e);
      e = next;
    }
  }
  free(table->buckets);
  pthread_cond_destroy(&table->callbacks_done);
  pthread_mutex_destroy(&table->mutex);
  free(table);
}

/* Caller holds the mutex. */
static lock_entry_t *find(tusc_lock_table_t *t, const char *id, uint64_t h) {
  for (lock_entry_t *e = t->buckets[h & (t->bucket_count - 1)]; e != NULL; e = e->next)
    if (e->hash == h && strcmp(e->holder->id, id) == 0)
      return e;
  return NULL;
}

/* Caller holds the mutex. Growing is best effort: a failed allocation only makes the
 * chains longer. */
static void maybe_grow(tusc_lock_table_t *t) {
  if (t->count < t->bucket_count)
    return;
  size_t n = t->bucket_count * 2;
  lock_entry_t **b = calloc(n, sizeof(*b));
  if (b == NULL)
    return;
  for (size_t i = 0; i < t->bucket_count; i++) {
    lock_entry_t *e = t->buckets[i];
    while (e != NULL) {
      lock_entry_t *next = e->next;
      e->next = b[e->hash & (n - 1)];
      b[e->hash & (n - 1)] = e;
      e = next;
    }
  }
  free(t->buckets);
  t->buckets = b;
  t->bucket_count = n;
}

/* Opens (creating with exactly `perms`) and flocks the lock file. */
static int flock_file(const char *path, unsigned perms, int *fd_out) {
  int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)perms);
  if (fd >= 0) {
    if (fchmod(fd, (mode_t)perms) != 0) {
      int rc = -errno;
      close(fd);
      return rc;
    }
  } else if (errno == EEXIST) {
    fd = open(path, O_RDWR | O_CLOEXEC);
  }
  if (fd < 0)
    return -errno;
  for (;;) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0)
      break;
    if (errno == EINTR)
      continue;
    int rc = errno == EWOULDBLOCK ? TUSC_ELOCKED : -errno;
    close(fd);
    return rc;
  }
  *fd_out = fd;
  return 0;
}

int tusc_lock_try_acquire(tusc_lock_table_t *table, const char *id, const char *lock_path,
                          unsigned file_perms, tusc_lock_holder_t *holder) {
  if (table == NULL || id == NULL || holder == NULL || holder->held)
    return TUSC_EINVALID_ARGUMENT;
  lock_entry_t *e = malloc(sizeof(*e));
  char *id_copy = strdup(id);
  if (e == NULL || id_copy == NULL) {
    free(e);
    free(id_copy);
    return TUSC_ENOMEM;
  }
  uint64_t h = hash_id(id);
  int rc = 0;
  int fd = -1;
  pthread_mutex_lock(&table->mutex);
  if (find(table, id, h) != NULL) {
    rc = TUSC_ELOCKED;
    goto out;
  }
  if (lock_path != NULL) {
    rc = flock_file(lock_path, file_perms, &fd);
    if (rc != 0)
      goto out;
  }
  holder->fd = fd;
  holder->id = id_copy;
  holder->held = true;
  id_copy = NULL;
  e->hash = h;
  e->holder = holder;
  e->callbacks = 0;
  maybe_grow(table);
  size_t b = h & (table->bucket_count - 1);
  e->next = table->buckets[b];
  table->buckets[b] = e;
  table->count++;
  e = NULL;
out:
  pthread_mutex_unlock(&table->mutex);
  free(e);
  free(id_copy);
  return rc;
}

int tusc_lock_request_release(tusc_lock_table_t *table, const char *id) {
  if (table == NULL || id == NULL)
    return TUSC_EINVALID_ARGUMENT;
  uint64_t h = hash_id(id);
  pthread_mutex_lock(&table->mutex);
  lock_entry_t *e = find(table, id, h);
  if (e == NULL) {
    pthread_mutex_unlock(&table->mutex);
    return TUSC_ENOT_FOUND;
  }
  tusc_lock_holder_t *holder = e->holder;
  tusc_lock_release_cb cb = holder->on_release_requested;
  e->callbacks++;
  pthread_mutex_unlock(&table->mutex);

  /* The holder cannot be released (and freed) while e->callbacks > 0. */
  if (cb != NULL)
    cb(holder);

  pthread_mutex_lock(&table->mutex);
  if (--e->callbacks == 0)
    pthread_cond_broadcast(&table->callbacks_done);
  pthread_mutex_unlock(&table->mutex);
  return 0;
}

void tusc_lock_table_release(tusc_lock_table_t *table, tusc_lock_holder_t *holder) {
  if (table == NULL || holder == NULL || !holder->held)
    return;
  uint64_t h = hash_id(holder->id);
  pthread_mutex_lock(&table->mutex);
  lock_entry_t **pp = &table->buckets[h & (table->bucket_count - 1)];
  while (*pp != NULL && (*pp)->holder != holder)
    pp = &(*pp)->next;
  lock_entry_t *e = *pp;
  if (e != NULL) {
    *pp = e->next;
    table->count--;
    while (e->callbacks > 0)
      pthread_cond_wait(&table->callbacks_done, &table->mutex);
  }
  /* The flock goes while the mutex is held, so an in-process acquirer that sees the
   * entry gone also finds the file unlocked. */
  if (holder->fd >= 0) {
    flock(holder->fd, LOCK_UN);
    close(holder->fd);
  }
  holder->fd = -1;
  free(holder->id);
  holder->id = NULL;
  holder->held = false;
  pthread_mutex_unlock(&table->mutex);
  free(e);
}

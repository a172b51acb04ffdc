/*
 * mem — an in-memory store behind the same asynchronous interface as the file store,
 * for tests: uploads live in a list in memory, every callback comes from a later loop
 * turn (never inline), and append can be told to answer TUSC_ESTORE_FULL every N bytes
 * and to call the drain callback only after a delay, so that back-pressure is tested
 * without a slow disk.
 *
 * Threads: the store may be shared by several loops (a mutex guards the list); an open
 * upload belongs to the loop that opened it. Not for production: nothing is durable.
 */
#ifndef TUSC_STORE_MEM_H
#define TUSC_STORE_MEM_H

#include <stdint.h>

#include "store/store.h"

typedef struct tusc_mem_store_options_s {
  /* > 0: after every `full_every` bytes taken, the next append answers
   * TUSC_ESTORE_FULL and drain runs `drain_delay_ms` later (0: the next loop turn). */
  uint64_t full_every;
  uint64_t drain_delay_ms;
} tusc_mem_store_options_t;

/* opts may be NULL. Returns 0 and *out, or TUSC_ENOMEM. */
int tusc_mem_store_new(const tusc_mem_store_options_t *opts, tusc_store_t **out);

/* How many appends answered TUSC_ESTORE_FULL so far (tests check they were seen). */
uint64_t tusc_mem_store_full_count(tusc_store_t *store);

/* Changes full_every and drain_delay_ms (see the options) for appends that start later. */
void tusc_mem_store_set_full(tusc_store_t *store, uint64_t full_every, uint64_t drain_delay_ms);

/* Faults for tests of error paths; any thread, applied to operations that start later. */
typedef struct tusc_mem_store_faults_s {
  int64_t write_budget; /* bytes that still land; past them writes fail with UV_ENOSPC
                         * (like the file store: the next append or chunk_end reports
                         * it); -1 = unlimited */
  int sync_err;         /* chunk_end(KEEP) fails with this once the bytes landed */
  int create_err;       /* create fails with this */
  int save_err;         /* save_info fails with this */
} tusc_mem_store_faults_t;

/* Sets the faults (all off: write_budget -1, the rest 0). */
void tusc_mem_store_set_faults(tusc_store_t *store, const tusc_mem_store_faults_t *faults);

/* Puts an upload straight into the store (what a hook or a concatenation would make):
 * info's id, size, flags, expiry, metadata; `len` bytes of data. Returns 0, UV_EEXIST or
 * TUSC_ENOMEM. */
int tusc_mem_store_put(tusc_store_t *store, const tusc_upload_info_t *info, const void *data,
                       size_t len);

/* Copies up to `len` stored bytes of `id` from `offset` into buf. Returns the count, or
 * -1 when there is no such upload. */
int64_t tusc_mem_store_read(tusc_store_t *store, const char *id, int64_t offset, void *buf,
                            size_t len);

/* Stored length of `id`, or -1 when there is no such upload. */
int64_t tusc_mem_store_length(tusc_store_t *store, const char *id);

#endif

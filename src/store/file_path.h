/*
 * file_path — the file store's naming rules, pure: which IDs may become paths, and the
 * sharded relative path of an ID. Shared by the store (file.c) and its walker
 * (file_walk.c), which therefore do not include each other. Any thread.
 */
#ifndef TUSC_STORE_FILE_PATH_H
#define TUSC_STORE_FILE_PATH_H

#include <stddef.h>

/* 0 when `id` (len bytes) passes tusc_id_valid and no segment ends in a name reserved
 * for an upload's sibling files (.info, .lock, .tmp); TUSC_EINVALID_ID otherwise. */
int tusc_file_id_check(const char *id, size_t len);

/* tusc_file_store_shard_path is declared in store/store.h (it is part of the file
 * store's public face) and defined in file_path.c. */

#endif

/*
 * file_custom — the file store's check of a data file location chosen by a pre-create
 * hook (ChangeFileInfo Storage.Path, tusd's file store feature). Blocking (realpath,
 * mkdir): the file store calls it from its create job on the pool. Any thread.
 */
#ifndef TUSC_STORE_FILE_CUSTOM_H
#define TUSC_STORE_FILE_CUSTOM_H

#include <stdbool.h>
#include <stddef.h>

/* Resolves `want` (relative: under `root`, the upload directory, already absolute) into
 * the absolute path of the data file in out[cap]. No "." or ".." segments, no name of
 * an upload's sibling files (.info, .lock, .tmp), nothing in tusc's shard or .concat
 * trees, no other upload's file; missing parents are made (with `dir_perms`) only under
 * `root`, each level resolved again once it exists so that a symlink cannot lead the
 * next mkdir outside; the resolved parent must lie under `root` unless
 * `allow_absolute`. The caller creates the file with O_EXCL|O_NOFOLLOW. Returns 0, or
 * TUSC_EINTERNAL with *why saying what is wrong (static text). */
int tusc_file_custom_path(const char *root, unsigned dir_perms, bool allow_absolute,
                          const char *want, char *out, size_t cap, const char **why);

#endif

/*
 * fileutil — reads a small configuration file (a key, a password table) whole.
 *
 * Contract: tusc_fileutil_read() opens `path`, checks that it is a regular file of at
 * most `max` bytes and reads it into a new NUL-terminated buffer (*out, *len bytes,
 * the NUL not counted) that the caller frees, wiping it first if it holds secrets.
 * Returns 0, -errno when the file cannot be opened or read, TUSC_EINVALID_ARGUMENT
 * when it is not a regular file or is larger than `max`, or TUSC_ENOMEM; on every
 * error but TUSC_ENOMEM, `err` (err_cap bytes) says why, starting with the path.
 * `max` is a whole number of MiB (it is named that way in the message).
 * Blocking; thread-safe.
 */
#ifndef TUSC_FILEUTIL_H
#define TUSC_FILEUTIL_H

#include <stddef.h>

int tusc_fileutil_read(const char *path, size_t max, char **out, size_t *len, char *err,
                       size_t err_cap);

#endif

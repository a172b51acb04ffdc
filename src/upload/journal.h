/*
 * journal — tusc-upload's resume state: which upload URL holds which local file.
 *
 * A key is a file's fingerprint (up_journal_fingerprint: path, size, mtime, device,
 * inode and server URL hashed together), optionally with a suffix for one part of a
 * parallel upload ("<fp>.p2/4", "<fp>.final"). The file on disk is an append-only log of
 * one record per line, "U <key> <url>" (upload created), "D <key> <url>" (file finished)
 * and "X <key> -" (forget); the last record of a key wins. Each append is one write(2)
 * under flock(LOCK_EX), so two uploaders sharing a journal never interleave records, and
 * a process killed at any instant leaves whole lines (a torn last line is skipped when
 * loading). up_journal_sync() makes appended records durable (fdatasync); the engine
 * calls it before it sends bytes to an upload it has just recorded.
 *
 * On open the log is compacted (temp file + fsync + rename) when most of it is dead
 * records; an appender holding the old file notices the rename (inode changed under
 * its lock) and reopens before writing.
 *
 * Single-threaded: one journal belongs to one thread. Memory is one small entry per
 * key of the journal.
 */
#ifndef TUSC_UPLOAD_JOURNAL_H
#define TUSC_UPLOAD_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

typedef struct up_journal_s up_journal_t;

#define UP_FINGERPRINT_LEN 64 /* hex SHA-256 */
#define UP_JOURNAL_KEY_MAX 96
#define UP_JOURNAL_URL_MAX 2048

/* Opens (creating it and its directory) and loads the journal at `path`. Returns 0 and
 * a new journal in *out, or a negative errno. */
int up_journal_open(const char *path, up_journal_t **out) __attribute__((warn_unused_result));
void up_journal_free(up_journal_t *j);

/* The default path: $XDG_STATE_HOME/tusc-upload/journal, else
 * $HOME/.local/state/tusc-upload/journal. Returns 0 or -ENOENT (no HOME). */
int up_journal_default_path(char *out, size_t cap);

/* Fingerprint of a local file for one server: hex SHA-256 (NUL-terminated) over the
 * absolute path, size, mtime (ns), device, inode and the server's creation URL. */
void up_journal_fingerprint(const char *abs_path, const struct stat *st, const char *server_url,
                            char out[UP_FINGERPRINT_LEN + 1]);

/* Looks a key up: returns its upload URL (owned by the journal, valid until the next
 * call that changes this key) or NULL; *done says whether the file finished. */
const char *up_journal_get(const up_journal_t *j, const char *key, bool *done);

/* Appends a record and updates the in-memory view: an upload URL for a key, the
 * key's file finished, or the key forgotten. Returns 0 or a negative errno
 * (-EINVAL for a key or URL with spaces, newlines or over the limits). */
int up_journal_put(up_journal_t *j, const char *key, const char *url)
    __attribute__((warn_unused_result));
int up_journal_done(up_journal_t *j, const char *key, const char *url)
    __attribute__((warn_unused_result));
int up_journal_forget(up_journal_t *j, const char *key) __attribute__((warn_unused_result));

/* fdatasync()s records appended since the last sync. Returns 0 or a negative errno. */
int up_journal_sync(up_journal_t *j) __attribute__((warn_unused_result));

#endif

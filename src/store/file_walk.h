/*
 * file_walk — lists every upload of a file-store directory (the sharded tree and a flat
 * tusd directory alike) by one pass over its directories: each "<name>.info" whose JSON
 * names an upload that lives at exactly that place (its shard path, or <root>/<id> for
 * tusd's flat layout) is one upload; the data file beside it gives the offset and the
 * modification time. Strays (other files, .info.tmp, unparsable JSON, IDs that do not
 * belong at their path, dot-directories such as .concat) are skipped.
 *
 * Threads: blocks on the filesystem for as long as the walk takes (seconds for a
 * million uploads): call it from a thread-pool thread, never from a loop. Reentrant.
 */
#ifndef TUSC_STORE_FILE_WALK_H
#define TUSC_STORE_FILE_WALK_H

#include "store/store.h"

/* Walks `root` (absolute, as the store holds it; "" stands for "/"). Calls
 * visit(info, arg) per upload with a filled tusc_upload_info_t that is disposed after
 * the call. Returns 0, visit's first non-zero value (which stops the walk), or
 * TUSC_ENOMEM / a negative errno if `root` itself cannot be read. Directories that
 * vanish or cannot be read during the walk are skipped. */
int tusc_file_store_walk(const char *root, tusc_store_visit_cb visit, void *arg);

#endif

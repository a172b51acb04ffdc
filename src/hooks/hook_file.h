/*
 * hook_file — the file hook sender (tusd -hooks-dir): runs <dir>/<event> with no
 * arguments, cwd = dir, the environment plus TUS_ID, TUS_SIZE, TUS_OFFSET; writes the
 * request JSON to its stdin and closes it; stdout (≤ 1 MiB, empty or JSON) is the
 * answer; each stderr line is logged as a warning naming the hook. A missing file is
 * "nothing to do" (success, empty answer); not executable, a non-zero exit, a signal,
 * too much output or bad JSON are errors. After timeout_ms the hook's whole process
 * group gets SIGKILL and the call fails with UV_ETIMEDOUT.
 *
 * Each hook runs in its own session/process group (setsid) so that a timeout or a
 * worker close also kills whatever the script started.
 *
 * Threads: the sender belongs to one loop. Requires SIGPIPE to be ignored by the
 * process (a hook that exits without reading stdin would otherwise kill us).
 */
#ifndef TUSC_HOOK_FILE_H
#define TUSC_HOOK_FILE_H

#include <stdint.h>

#include <uv.h>

#include "hooks/hook_sender.h"

#define TUSC_HOOK_FILE_OUTPUT_MAX (1024 * 1024)

typedef struct tusc_hook_file_options_s {
  const char *dir;    /* absolute; copied */
  int64_t timeout_ms; /* 0 = none */
} tusc_hook_file_options_t;

/* Returns 0 and *out (close with sender->ops->close), or a negative code. */
int tusc_hook_file_sender_new(uv_loop_t *loop, const tusc_hook_file_options_t *opts,
                              tusc_hook_sender_t **out);

#endif

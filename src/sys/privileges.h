/*
 * privileges — give up root once the listening sockets are bound: -user NAME and/or
 * -group NAME switch the whole process (every thread; glibc broadcasts set*id) to
 * that user and group, with the user's supplementary groups (initgroups) so group-
 * readable key or credential files stay readable for a SIGHUP reload.
 *
 * Refusals, all with a message in err: an unknown user or group; not running as root
 * when a switch is needed; any set*id call failing; and, afterwards, a process that
 * could still become root again (setuid(0) succeeding) — tusc must not keep running as
 * root when it was asked not to.
 *
 * Threads: main thread, before worker threads start.
 */
#ifndef TUSC_SYS_PRIVILEGES_H
#define TUSC_SYS_PRIVILEGES_H

#include <stddef.h>

/* user and/or group (NULL = not given). Returns 0 (a no-op when both are NULL, or when
 * the process already runs as them) or a negative code with err filled. */
int tusc_privileges_drop(const char *user, const char *group, char *err, size_t errlen);

/* Gives `path` (e.g. the -unix-sock socket, created as root) to the user/group tusc is
 * about to switch to, so that it stays usable and removable by them. Call before
 * tusc_privileges_drop. 0 or a negative code with err filled. */
int tusc_privileges_chown(const char *path, const char *user, const char *group, char *err,
                          size_t errlen);

/* Whether the current (effective) user can create and remove files in dir: a scratch
 * file is created and unlinked. 0 or a negative errno with err filled. */
int tusc_privileges_check_dir(const char *dir, char *err, size_t errlen);

#endif

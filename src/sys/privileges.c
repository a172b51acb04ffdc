/* privileges — setgroups/setgid/setuid after binding, and a usability check. */
#include "sys/privileges.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "common/error.h"

#define NAME_BUF 16384

static int lookup_user(const char *name, uid_t *uid, gid_t *gid, char *err, size_t errlen) {
  struct passwd pw, *res = NULL;
  char *buf = malloc(NAME_BUF);
  if (buf == NULL)
    return TUSC_ENOMEM;
  int e = getpwnam_r(name, &pw, buf, NAME_BUF, &res);
  if (res == NULL) {
    snprintf(err, errlen, "unknown user %s%s%s", name, e ? ": " : "", e ? strerror(e) : "");
    free(buf);
    return e ? -e : TUSC_EINVALID_ARGUMENT;
  }
  *uid = pw.pw_uid;
  *gid = pw.pw_gid;
  free(buf);
  return 0;
}

static int lookup_group(const char *name, gid_t *gid, char *err, size_t errlen) {
  struct group gr, *res = NULL;
  char *buf = malloc(NAME_BUF);
  if (buf == NULL)
    return TUSC_ENOMEM;
  int e = getgrnam_r(name, &gr, buf, NAME_BUF, &res);
  if (res == NULL) {
    snprintf(err, errlen, "unknown group %s%s%s", name, e ? ": " : "", e ? strerror(e) : "");
    free(buf);
    return e ? -e : TUSC_EINVALID_ARGUMENT;
  }
  *gid = gr.gr_gid;
  free(buf);
  return 0;
}

int tusc_privileges_drop(const char *user, const char *group, char *err, size_t errlen) {
  if (user == NULL && group == NULL)
    return 0;
  uid_t uid = getuid();
  gid_t gid = getgid();
  int rc;
  if (user != NULL && (rc = lookup_user(user, &uid, &gid, err, errlen)) != 0)
    return rc;
  if (group != NULL && (rc = lookup_group(group, &gid, err, errlen)) != 0)
    return rc;
  if (geteuid() != 0) {
    if (geteuid() == uid && getuid() == uid && getegid() == gid && getgid() == gid)
      return 0; /* already there (e.g. started by systemd with User=) */
    snprintf(err, errlen, "-user/-group need tusc to start as root (running as uid %u)",
             (unsigned)geteuid());
    return -EPERM;
  }
  /* Supplementary groups first, while still allowed to change them. */
  if (user != NULL)
    rc = initgroups(user, gid);
  else
    rc = setgroups(1, &gid);
  if (rc != 0) {
    snprintf(err, errlen, "cannot set supplementary groups: %s", strerror(errno));
    return -errno;
  }
  if (setgid(gid) != 0) {
    snprintf(err, errlen, "cannot switch to group %u: %s", (unsigned)gid, strerror(errno));
    return -errno;
  }
  if (user != NULL && setuid(uid) != 0) {
    snprintf(err, errlen, "cannot switch to user %s: %s", user, strerror(errno));
    return -errno;
  }
  if (getgid() != gid || getegid() != gid ||
      (user != NULL && (getuid() != uid || geteuid() != uid))) {
    snprintf(err, errlen, "switching user/group did not take effect");
    return -EPERM;
  }
  if (user != NULL && uid != 0 && setuid(0) == 0) {
    snprintf(err, errlen, "still able to become root after switching to %s", user);
    return -EPERM;
  }
  return 0;
}

int tusc_privileges_chown(const char *path, const char *user, const char *group, char *err,
                          size_t errlen) {
  uid_t uid = (uid_t)-1;
  gid_t gid = (gid_t)-1;
  int rc;
  if (user != NULL && (rc = lookup_user(user, &uid, &gid, err, errlen)) != 0)
    return rc;
  if (group != NULL && (rc = lookup_group(group, &gid, err, errlen)) != 0)
    return rc;
  if (chown(path, uid, gid) != 0) {
    int e = errno;
    snprintf(err, errlen, "cannot give %s to user %s group %s: %s", path, user ? user : "-",
             group ? group : "-", strerror(e));
    return -e;
  }
  return 0;
}

int tusc_privileges_check_dir(const char *dir, char *err, size_t errlen) {
  char path[4096];
  int n = snprintf(path, sizeof(path), "%s/.tusc-write-check-XXXXXX", dir);
  if (n < 0 || (size_t)n >= sizeof(path)) {
    snprintf(err, errlen, "upload directory path too long");
    return -ENAMETOOLONG;
  }
  int fd = mkostemp(path, O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    snprintf(err, errlen, "cannot create files in %s as uid %u gid %u: %s", dir,
             (unsigned)geteuid(), (unsigned)getegid(), strerror(e));
    return -e;
  }
  close(fd);
  if (unlink(path) != 0) {
    int e = errno;
    snprintf(err, errlen, "cannot remove files in %s as uid %u: %s", dir, (unsigned)geteuid(),
             strerror(e));
    return -e;
  }
  return 0;
}

/*
 * fileutil — see fileutil.h. The buffer is wiped before it is freed on an error path,
 * because callers read secrets with it.
 */
#include "common/fileutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"

int tusc_fileutil_read(const char *path, size_t max, char **out, size_t *len, char *err,
                       size_t err_cap) {
  int rc = 0;
  char *buf = NULL;
  size_t size = 0, got = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    rc = -errno;
    snprintf(err, err_cap, "%s: %s", path, strerror(-rc));
    return rc;
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    rc = -errno;
    snprintf(err, err_cap, "%s: %s", path, strerror(-rc));
    goto out;
  }
  if (!S_ISREG(sb.st_mode) || (unsigned long long)sb.st_size > max) {
    snprintf(err, err_cap, "%s: not a regular file of at most %zu MiB", path, max >> 20);
    rc = TUSC_EINVALID_ARGUMENT;
    goto out;
  }
  size = (size_t)sb.st_size;
  buf = malloc(size + 1);
  if (buf == NULL) {
    rc = TUSC_ENOMEM;
    goto out;
  }
  while (got < size) {
    ssize_t n = read(fd, buf + got, size - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      rc = -errno;
      snprintf(err, err_cap, "%s: %s", path, strerror(-rc));
      explicit_bzero(buf, size);
      free(buf);
      goto out;
    }
    if (n == 0)
      break;
    got += (size_t)n;
  }
  buf[got] = '\0';
  *out = buf;
  *len = got;
out:
  close(fd);
  return rc;
}

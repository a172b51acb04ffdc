/*
 * listener — SO_REUSEPORT sockets per worker. Each worker's loop accepts on its own
 * socket, so no accept lock and no cross-thread hand-off of connections.
 *
 * SO_REUSEPORT would also let a second tusc process (same user) join the port silently
 * and take half its connections. Two checks keep the port ours alone: a probe bind
 * without SO_REUSEPORT before we bind (it fails against any listener already there),
 * and, after our sockets listen, a look at the kernel's table of listening sockets for
 * one on our port that is not ours (two processes starting at the same instant both
 * pass the probe; each then sees the other and gives up).
 */
#include "net/listener.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"

#define BACKLOG 1024

static int listen_on(const struct sockaddr *addr, socklen_t addrlen, bool dual_stack,
                     bool reuseport, int *out_fd) {
  int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  int one = 1, zero = 0, rc = 0;
  if (addr->sa_family != AF_UNIX) {
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)) {
      rc = -errno;
      goto out;
    }
    if (addr->sa_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, dual_stack ? &zero : &one, sizeof(int)) != 0) {
      rc = -errno;
      goto out;
    }
  }
  if (bind(fd, addr, addrlen) != 0 || listen(fd, BACKLOG) != 0) {
    rc = -errno;
    goto out;
  }
  *out_fd = fd;
  fd = -1;
out:
  if (fd >= 0)
    close(fd);
  return rc;
}

/* Fails with -EADDRINUSE when something already listens on `addr` (any user, with or
 * without SO_REUSEPORT): a socket without SO_REUSEPORT cannot bind next to a listener. */
static int probe_free(const struct sockaddr *addr, socklen_t addrlen, bool dual_stack) {
  int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  int one = 1, zero = 0, rc = 0;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      (addr->sa_family == AF_INET6 &&
       setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, dual_stack ? &zero : &one, sizeof(int)) != 0) ||
      bind(fd, addr, addrlen) != 0)
    rc = -errno;
  close(fd);
  return rc;
}

static bool is_ours(const tusc_listeners_t *l, uint64_t inode) {
  for (size_t i = 0; i < l->count; i++) {
    struct stat st;
    if (l->fds[i] >= 0 && fstat(l->fds[i], &st) == 0 && (uint64_t)st.st_ino == inode)
      return true;
  }
  return false;
}

/* An all-zero hex address in /proc/net/tcp{,6} is the wildcard. */
static bool hex_is_any(const char *hex) {
  return strspn(hex, "0") == strlen(hex);
}

/* Looks in /proc/net/tcp and tcp6 for a listening socket on `port` that is not one of
 * ours and whose address overlaps `our_hex` (equal, or either is the wildcard).
 * Returns -EADDRINUSE if there is one, else 0 (also when the table cannot be read:
 * the probe already covered the common case). */
static int check_port_alone(const tusc_listeners_t *l, int port, const char *our_hex) {
  static const char *const tables[] = {"/proc/net/tcp", "/proc/net/tcp6"};
  for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++) {
    FILE *f = fopen(tables[t], "re");
    if (f == NULL)
      continue;
    char line[512];
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
      char local[64], state[8];
      unsigned lport = 0;
      uint64_t inode = 0;
      /* sl local:port remote:port st queues timer retrnsmt uid timeout inode */
      if (sscanf(line, " %*s %63[0-9A-Fa-f]:%x %*s %7s %*s %*s %*s %*s %*s %" SCNu64, local,
                 &lport, state, &inode) != 4)
        continue; /* the header line */
      if (strcmp(state, "0A") != 0 || (int)lport != port || is_ours(l, inode))
        continue;
      if (our_hex == NULL || hex_is_any(local) || hex_is_any(our_hex) ||
          strcasecmp(local, our_hex) == 0)
        rc = -EADDRINUSE;
    }
    fclose(f);
    if (rc != 0)
      return rc;
  }
  return 0;
}

/* The address as /proc/net/tcp{,6} prints it: the raw bytes in hex, 32-bit words in
 * host order. Only compared with those strings. */
static void proc_hex(const struct sockaddr_storage *ss, char *out, size_t outlen) {
  const unsigned char *b;
  size_t n;
  if (ss->ss_family == AF_INET) {
    b = (const unsigned char *)&((const struct sockaddr_in *)ss)->sin_addr;
    n = 4;
  } else {
    b = (const unsigned char *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
    n = 16;
  }
  size_t pos = 0;
  for (size_t w = 0; w < n && pos + 9 <= outlen; w += 4) {
    uint32_t word;
    memcpy(&word, b + w, 4);
    pos += (size_t)snprintf(out + pos, outlen - pos, "%08" PRIX32, word);
  }
}

static int bound_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
    return -errno;
  if (ss.ss_family == AF_INET)
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  if (ss.ss_family == AF_INET6)
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return TUSC_EINVALID_ARGUMENT;
}

static void set_port(struct sockaddr_storage *ss, int port) {
  if (ss->ss_family == AF_INET)
    ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
  else if (ss->ss_family == AF_INET6)
    ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

static bool is_wildcard(const char *host) {
  return host == NULL || host[0] == '\0' || strcmp(host, "0.0.0.0") == 0 ||
         strcmp(host, "::") == 0 || strcmp(host, "[::]") == 0;
}

/* Resolves host into *ss. Bracketed IPv6 literals ("[::1]") are accepted. */
static int resolve(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len) {
  char name[256];
  size_t hl = strlen(host);
  if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
    if (hl - 2 >= sizeof(name))
      return TUSC_EINVALID_ARGUMENT;
    memcpy(name, host + 1, hl - 2);
    name[hl - 2] = '\0';
  } else {
    if (hl >= sizeof(name))
      return TUSC_EINVALID_ARGUMENT;
    memcpy(name, host, hl + 1);
  }
  struct addrinfo hints = {
      .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
  struct addrinfo *res = NULL;
  int gai = getaddrinfo(name, NULL, &hints, &res);
  if (gai != 0 || res == NULL) {
    tusc_log_msg(TUSC_LOG_ERROR, "cannot resolve host %s: %s", host, gai_strerror(gai));
    return gai == EAI_SYSTEM ? -errno : TUSC_EINVALID_ARGUMENT;
  }
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  set_port(ss, port);
  return 0;
}

static int open_unix(const char *path, size_t count, tusc_listeners_t *out) {
  struct sockaddr_un sun = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof(sun.sun_path))
    return -ENAMETOOLONG;
  memcpy(sun.sun_path, path, strlen(path) + 1);
  struct stat st;
  if (lstat(path, &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      tusc_log_msg(TUSC_LOG_ERROR, "%s exists and is not a socket", path);
      return -EEXIST;
    }
    /* A socket file that still accepts belongs to a running server: replacing it would
     * take that server's clients. Only a dead one (refused) is stale. */
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (probe < 0)
      return -errno;
    int crc = connect(probe, (struct sockaddr *)&sun, sizeof(sun)) == 0 ? 0 : -errno;
    close(probe);
    if (crc == 0 || crc == -EAGAIN || crc == -EINPROGRESS) {
      tusc_log_msg(TUSC_LOG_ERROR, "%s: another process is listening on it", path);
      return -EADDRINUSE;
    }
    unlink(path); /* stale socket from an earlier run */
  }
  int rc = listen_on((struct sockaddr *)&sun, sizeof(sun), false, false, &out->fds[0]);
  if (rc != 0)
    return rc;
  out->count = 1;
  for (size_t i = 1; i < count; i++) {
    int fd = fcntl(out->fds[0], F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
      return -errno;
    out->fds[i] = fd;
    out->count++;
  }
  out->unix_path = strdup(path);
  if (out->unix_path == NULL)
    return TUSC_ENOMEM;
  out->is_unix = true;
  return 0;
}

static int open_tcp(const char *host, int port, size_t count, tusc_listeners_t *out) {
  struct sockaddr_storage ss;
  socklen_t len = 0;
  bool dual = false;
  memset(&ss, 0, sizeof(ss));
  if (is_wildcard(host)) {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_addr = in6addr_any;
    sin6->sin6_port = htons((uint16_t)port);
    len = sizeof(*sin6);
    dual = true;
  } else {
    int rc = resolve(host, port, &ss, &len);
    if (rc != 0)
      return rc;
  }
  int rc = port != 0 ? probe_free((struct sockaddr *)&ss, len, dual) : 0;
  if (rc == 0)
    rc = listen_on((struct sockaddr *)&ss, len, dual, true, &out->fds[0]);
  if (rc != 0 && dual && (rc == -EAFNOSUPPORT || rc == -EADDRNOTAVAIL)) {
    /* No IPv6 on this host: plain IPv4 wildcard. */
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    memset(&ss, 0, sizeof(ss));
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_ANY);
    sin->sin_port = htons((uint16_t)port);
    len = sizeof(*sin);
    rc = port != 0 ? probe_free((struct sockaddr *)&ss, len, false) : 0;
    if (rc == 0)
      rc = listen_on((struct sockaddr *)&ss, len, false, true, &out->fds[0]);
  }
  if (rc != 0)
    return rc;
  out->count = 1;
  int bound = bound_port(out->fds[0]);
  if (bound < 0)
    return bound;
  out->port = bound;
  set_port(&ss, bound); /* port 0: the others join the ephemeral port */
  for (size_t i = 1; i < count; i++) {
    rc = listen_on((struct sockaddr *)&ss, len, dual, true, &out->fds[i]);
    if (rc != 0)
      return rc;
    out->count++;
  }
  char hex[40] = "";
  proc_hex(&ss, hex, sizeof(hex));
  return check_port_alone(out, bound, hex);
}

int tusc_listeners_open(const char *host, int port, const char *unix_sock, size_t count,
                        tusc_listeners_t *out) {
  if (count == 0 || port < 0 || port > 65535)
    return TUSC_EINVALID_ARGUMENT;
  tusc_listeners_t l = {0};
  l.fds = malloc(count * sizeof(int));
  if (l.fds == NULL)
    return TUSC_ENOMEM;
  for (size_t i = 0; i < count; i++)
    l.fds[i] = -1;
  int rc = unix_sock != NULL ? open_unix(unix_sock, count, &l) : open_tcp(host, port, count, &l);
  if (rc != 0) {
    tusc_listeners_close(&l);
    return rc;
  }
  *out = l;
  return 0;
}

void tusc_listeners_close(tusc_listeners_t *listeners) {
  if (listeners == NULL)
    return;
  for (size_t i = 0; listeners->fds != NULL && i < listeners->count; i++)
    if (listeners->fds[i] >= 0)
      close(listeners->fds[i]);
  if (listeners->unix_path != NULL)
    unlink(listeners->unix_path);
  free(listeners->unix_path);
  free(listeners->fds);
  memset(listeners, 0, sizeof(*listeners));
}

/*
 * loadgen — tus load generator for `make bench`, one mode per figure:
 *
 *   big   one upload of -size bytes: POST (Upload-Length) then PATCHes of -chunk bytes
 *         each, sent from one pre-filled memory buffer over one keep-alive connection.
 *         Prints "big bytes=N secs=T mbps=X" (MB = 10^6 bytes).
 *   many  -n uploads of -size bytes, -c connections at a time; each upload is a POST then
 *         one PATCH on a keep-alive connection. Prints "many uploads=N secs=T per_sec=X".
 *   idle  -k connections, each of which creates an upload, then sends the headers of a
 *         PATCH with a large Content-Length and a few body bytes and then goes silent.
 *         Prints "idle established=K" once all are in that state, holds them until
 *         SIGTERM/SIGINT or -hold seconds, then prints "idle dropped=D" (connections the
 *         server closed or answered while they should have been waiting).
 *   raw   the physical limit for `big`: a forked child accepts one loopback TCP
 *         connection and write(2)s everything it reads into -file; the parent streams
 *         -size bytes from the same buffer. Timed from connect until the child has
 *         written the last byte and acknowledged. Prints like `big`.
 *
 * One thread, one epoll loop (many/idle) or blocking sockets (big/raw): the client must
 * cost less than the servers it measures, on a machine with 2 cores.
 * Exit status 0 only if every request got the expected answer.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define IN_CAP 16384
#define HDR_CAP 1024
#define LOC_CAP 512
#define SETUP_CONCURRENCY 64
#define IDLE_BODY_BYTES 5
#define IDLE_CONTENT_LENGTH ((int64_t)1 << 30)

static const char *g_host = "127.0.0.1";
static int g_port;
static const char *g_path = "/files/";
static int64_t g_size = -1;
static int64_t g_chunk = 64LL << 20;
static int64_t g_n = 5000;
static int64_t g_conc = 64;
static int64_t g_k = 2000;
static int64_t g_hold = 120;
static int64_t g_rbuf = 1 << 20;
static const char *g_file;
static uint8_t *g_buf;
static size_t g_buflen;
static struct sockaddr_in g_addr;
static volatile sig_atomic_t g_stop;

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("loadgen: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Integer with an optional binary suffix K, M or G. */
static int64_t parse_size(const char *flag, const char *s) {
  char *end = NULL;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno != 0 || end == s || v < 0)
    die("bad value for %s: %s", flag, s);
  int shift = 0;
  if (*end == 'K' || *end == 'k')
    shift = 10;
  else if (*end == 'M' || *end == 'm')
    shift = 20;
  else if (*end == 'G' || *end == 'g')
    shift = 30;
  else if (*end != '\0')
    die("bad value for %s: %s", flag, s);
  if (shift != 0 && end[1] != '\0')
    die("bad value for %s: %s", flag, s);
  if (shift != 0 && v > (INT64_MAX >> shift))
    die("value too large for %s: %s", flag, s);
  return (int64_t)v << shift;
}

/* Non-trivial contents so nothing on the path can shortcut zero pages. */
static void fill_buffer(size_t len) {
  g_buf = malloc(len > 0 ? len : 1);
  if (g_buf == NULL)
    die("out of memory for a %zu byte buffer", len);
  g_buflen = len;
  uint64_t x = 0x9e3779b97f4a7c15ULL;
  for (size_t i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    g_buf[i] = (uint8_t)x;
  }
}

static void resolve(void) {
  memset(&g_addr, 0, sizeof g_addr);
  g_addr.sin_family = AF_INET;
  g_addr.sin_port = htons((uint16_t)g_port);
  if (inet_pton(AF_INET, g_host, &g_addr.sin_addr) != 1)
    die("-host must be an IPv4 address, got %s", g_host);
}

static int open_socket(bool nonblock) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0)
    return -errno;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

/* ---- HTTP/1.1 responses ----------------------------------------------------------- */

struct resp {
  int status;
  int64_t upload_offset; /* -1 when absent */
  bool close;
  char location[LOC_CAP]; /* path part only */
};

static const char *trim(const char *s, const char *end, const char **out_end) {
  while (s < end && (*s == ' ' || *s == '\t'))
    s++;
  while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
    end--;
  *out_end = end;
  return s;
}

static bool header_is(const char *name, size_t nlen, const char *want) {
  return nlen == strlen(want) && strncasecmp(name, want, nlen) == 0;
}

static bool parse_dec(const char *s, const char *end, int64_t *out) {
  if (s == end)
    return false;
  int64_t v = 0;
  for (; s < end; s++) {
    if (*s < '0' || *s > '9' || v > (INT64_MAX - 9) / 10)
      return false;
    v = v * 10 + (*s - '0');
  }
  *out = v;
  return true;
}

/* Parses one complete response at buf[0..len). Returns the bytes it spans, 0 when more
 * bytes are needed, -1 when malformed. Bodies are small here (errors, empty 201/204),
 * so a response must fit the connection's input buffer. */
static ssize_t resp_parse(const char *buf, size_t len, struct resp *r) {
  const char *hend = memmem(buf, len, "\r\n\r\n", 4);
  if (hend == NULL)
    return len >= IN_CAP ? -1 : 0;
  size_t hlen = (size_t)(hend - buf) + 4;
  if (hlen < 14 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ')
    return -1;
  for (int i = 9; i < 12; i++)
    if (buf[i] < '0' || buf[i] > '9')
      return -1;
  r->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
  r->close = buf[7] == '0';
  r->upload_offset = -1;
  r->location[0] = '\0';
  int64_t clen = -1;
  bool chunked = false;

  const char *line = memmem(buf, hlen, "\r\n", 2) + 2;
  while (line < hend) {
    const char *eol = memmem(line, (size_t)(hend + 2 - line), "\r\n", 2);
    const char *colon = memchr(line, ':', (size_t)(eol - line));
    if (colon == NULL)
      return -1;
    const char *vend;
    const char *v = trim(colon + 1, eol, &vend);
    size_t nlen = (size_t)(colon - line);
    size_t vlen = (size_t)(vend - v);
    if (header_is(line, nlen, "content-length")) {
      if (!parse_dec(v, vend, &clen))
        return -1;
    } else if (header_is(line, nlen, "transfer-encoding")) {
      chunked = memmem(v, vlen, "chunked", 7) != NULL;
    } else if (header_is(line, nlen, "connection")) {
      if (vlen == 5 && strncasecmp(v, "close", 5) == 0)
        r->close = true;
      else if (vlen == 10 && strncasecmp(v, "keep-alive", 10) == 0)
        r->close = false;
    } else if (header_is(line, nlen, "upload-offset")) {
      if (!parse_dec(v, vend, &r->upload_offset))
        return -1;
    } else if (header_is(line, nlen, "location")) {
      const char *p = v;
      const char *scheme = memmem(v, vlen, "://", 3);
      if (scheme != NULL) {
        p = memchr(scheme + 3, '/', (size_t)(vend - (scheme + 3)));
        if (p == NULL)
          p = vend;
      }
      size_t plen = (size_t)(vend - p);
      if (plen == 0 || plen >= LOC_CAP)
        return -1;
      memcpy(r->location, p, plen);
      r->location[plen] = '\0';
    }
    line = eol + 2;
  }

  if (r->status < 200 || r->status == 204 || r->status == 304)
    return (ssize_t)hlen;
  if (chunked) {
    size_t pos = hlen;
    for (;;) {
      const char *eol = memmem(buf + pos, len - pos, "\r\n", 2);
      if (eol == NULL)
        return len >= IN_CAP ? -1 : 0;
      char *end = NULL;
      errno = 0;
      unsigned long long sz = strtoull(buf + pos, &end, 16);
      if (errno != 0 || end == buf + pos || sz > IN_CAP)
        return -1;
      pos = (size_t)(eol - buf) + 2;
      if (sz == 0) {
        /* optional trailers, then the empty line */
        if (len - pos >= 2 && memcmp(buf + pos, "\r\n", 2) == 0)
          return (ssize_t)(pos + 2);
        const char *tend = memmem(buf + pos, len - pos, "\r\n\r\n", 4);
        if (tend == NULL)
          return len >= IN_CAP ? -1 : 0;
        return (ssize_t)((size_t)(tend - buf) + 4);
      }
      if (len - pos < sz + 2)
        return len >= IN_CAP ? -1 : 0;
      pos += sz + 2;
    }
  }
  if (clen < 0) {
    /* body until close: not expected from a tus server; take what is here */
    r->close = true;
    return (ssize_t)len;
  }
  if (clen > IN_CAP)
    return -1;
  if (len < hlen + (size_t)clen)
    return len >= IN_CAP ? -1 : 0;
  return (ssize_t)(hlen + (size_t)clen);
}

static size_t build_post(char *out, int64_t upload_length) {
  int n = snprintf(out, HDR_CAP,
                   "POST %s HTTP/1.1\r\nHost: %s:%d\r\nTus-Resumable: 1.0.0\r\n"
                   "Upload-Length: %" PRId64 "\r\nContent-Length: 0\r\n\r\n",
                   g_path, g_host, g_port, upload_length);
  if (n < 0 || n >= HDR_CAP)
    die("request header too long");
  return (size_t)n;
}

static size_t build_patch(char *out, const char *loc, int64_t offset, int64_t clen) {
  int n = snprintf(out, HDR_CAP,
                   "PATCH %s HTTP/1.1\r\nHost: %s:%d\r\nTus-Resumable: 1.0.0\r\n"
                   "Upload-Offset: %" PRId64 "\r\n"
                   "Content-Type: application/offset+octet-stream\r\n"
                   "Content-Length: %" PRId64 "\r\n\r\n",
                   loc, g_host, g_port, offset, clen);
  if (n < 0 || n >= HDR_CAP)
    die("request header too long");
  return (size_t)n;
}

/* ---- blocking helpers (big, raw) -------------------------------------------------- */

static void send_all(int fd, const void *p, size_t len) {
  const uint8_t *b = p;
  while (len > 0) {
    ssize_t n = send(fd, b, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      die("send: %s", strerror(errno));
    }
    b += n;
    len -= (size_t)n;
  }
}

static void read_response(int fd, char *in, size_t *in_len, struct resp *r) {
  for (;;) {
    ssize_t used = resp_parse(in, *in_len, r);
    if (used < 0)
      die("malformed response: %.*s", (int)(*in_len > 200 ? 200 : *in_len), in);
    if (used > 0) {
      memmove(in, in + used, *in_len - (size_t)used);
      *in_len -= (size_t)used;
      return;
    }
    ssize_t n = recv(fd, in + *in_len, IN_CAP - *in_len, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      die("connection closed while waiting for a response (%s)", n < 0 ? strerror(errno) : "EOF");
    *in_len += (size_t)n;
  }
}

static int connect_blocking(void) {
  int fd = open_socket(false);
  if (fd < 0)
    die("socket: %s", strerror(-fd));
  if (connect(fd, (struct sockaddr *)&g_addr, sizeof g_addr) != 0)
    die("connect %s:%d: %s", g_host, g_port, strerror(errno));
  return fd;
}

static int run_big(void) {
  if (g_size <= 0 || g_chunk <= 0)
    die("big needs -size and -chunk > 0");
  fill_buffer((size_t)(g_chunk < g_size ? g_chunk : g_size));
  static char in[IN_CAP];
  size_t in_len = 0;
  char hdr[HDR_CAP];
  struct resp r;

  double t0 = now_s();
  int fd = connect_blocking();
  send_all(fd, hdr, build_post(hdr, g_size));
  read_response(fd, in, &in_len, &r);
  if (r.status != 201 || r.location[0] == '\0')
    die("POST answered %d (location \"%s\")", r.status, r.location);
  char loc[LOC_CAP];
  snprintf(loc, sizeof loc, "%s", r.location);
  int64_t off = 0;
  while (off < g_size) {
    if (r.close) {
      close(fd);
      fd = connect_blocking();
    }
    int64_t len = g_size - off < g_chunk ? g_size - off : g_chunk;
    send_all(fd, hdr, build_patch(hdr, loc, off, len));
    send_all(fd, g_buf, (size_t)len);
    read_response(fd, in, &in_len, &r);
    if (r.status != 204 || r.upload_offset != off + len)
      die("PATCH at %" PRId64 " answered %d, Upload-Offset %" PRId64, off, r.status,
          r.upload_offset);
    off += len;
  }
  double secs = now_s() - t0;
  close(fd);
  printf("big bytes=%" PRId64 " secs=%.3f mbps=%.1f\n", g_size, secs, (double)g_size / 1e6 / secs);
  return 0;
}

static int run_raw(void) {
  if (g_size <= 0 || g_file == NULL)
    die("raw needs -size and -file");
  fill_buffer((size_t)(g_chunk < g_size ? g_chunk : g_size));
  int lfd = open_socket(false);
  if (lfd < 0)
    die("socket: %s", strerror(-lfd));
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof a;
  if (bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 1) != 0 ||
      getsockname(lfd, (struct sockaddr *)&a, &alen) != 0)
    die("listen: %s", strerror(errno));
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0)
    die("fork: %s", strerror(errno));
  if (pid == 0) {
    int cfd = accept(lfd, NULL, NULL);
    int ffd = open(g_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    uint8_t *rb = malloc((size_t)g_rbuf);
    if (cfd < 0 || ffd < 0 || rb == NULL)
      _exit(2);
    for (;;) {
      ssize_t n = read(cfd, rb, (size_t)g_rbuf);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        _exit(3);
      if (n == 0)
        break;
      for (ssize_t w = 0; w < n;) {
        ssize_t m = write(ffd, rb + w, (size_t)(n - w));
        if (m < 0 && errno != EINTR)
          _exit(4);
        if (m > 0)
          w += m;
      }
    }
    if (close(ffd) != 0 || send(cfd, "k", 1, MSG_NOSIGNAL) != 1)
      _exit(5);
    free(rb);
    _exit(0);
  }
  close(lfd);
  g_addr = a;
  double t0 = now_s();
  int fd = connect_blocking();
  for (int64_t off = 0; off < g_size;) {
    int64_t len = g_size - off < g_chunk ? g_size - off : g_chunk;
    send_all(fd, g_buf, (size_t)len);
    off += len;
  }
  shutdown(fd, SHUT_WR);
  char ack;
  if (recv(fd, &ack, 1, 0) != 1)
    die("raw receiver did not acknowledge");
  double secs = now_s() - t0;
  close(fd);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    die("raw receiver failed (status %d)", status);
  printf("raw bytes=%" PRId64 " secs=%.3f mbps=%.1f\n", g_size, secs, (double)g_size / 1e6 / secs);
  return 0;
}

/* ---- event loop (many, idle) ------------------------------------------------------ */

enum cstate { C_FREE, C_CONNECTING, C_SENDING, C_READING, C_IDLE };
enum phase { P_POST, P_PATCH };

struct conn {
  int fd;
  enum cstate st;
  enum phase ph;
  uint32_t events;
  char hdr[HDR_CAP];
  size_t hdr_len;
  size_t body_len;
  size_t sent; /* over hdr then body */
  char in[IN_CAP];
  size_t in_len;
  char loc[LOC_CAP];
};

static int g_ep;
static bool g_idle_mode;
static struct conn *g_conns;
static int64_t g_nconns;
static int64_t g_started, g_completed, g_errors, g_established, g_dropped, g_opened;

static void report_error(struct conn *c, const char *what) {
  g_errors++;
  if (g_errors <= 5)
    fprintf(stderr, "loadgen: conn %td: %s\n", c - g_conns, what);
}

static void set_events(struct conn *c, uint32_t ev) {
  if (c->events == ev)
    return;
  struct epoll_event e = {.events = ev, .data.ptr = c};
  if (epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &e) != 0)
    die("epoll_ctl: %s", strerror(errno));
  c->events = ev;
}

static void conn_close(struct conn *c) {
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
  c->st = C_FREE;
}

static bool conn_open(struct conn *c) {
  c->fd = open_socket(true);
  if (c->fd < 0) {
    report_error(c, strerror(-c->fd));
    c->fd = -1;
    return false;
  }
  c->in_len = 0;
  c->events = EPOLLOUT;
  struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
  if (epoll_ctl(g_ep, EPOLL_CTL_ADD, c->fd, &e) != 0)
    die("epoll_ctl: %s", strerror(errno));
  c->st = C_CONNECTING;
  if (connect(c->fd, (struct sockaddr *)&g_addr, sizeof g_addr) != 0 && errno != EINPROGRESS) {
    report_error(c, strerror(errno));
    conn_close(c);
    return false;
  }
  return true;
}

static void conn_send(struct conn *c);

static void begin_upload(struct conn *c) {
  g_started++;
  c->ph = P_POST;
  c->hdr_len = build_post(c->hdr, g_idle_mode ? IDLE_CONTENT_LENGTH : g_size);
  c->body_len = 0;
  c->sent = 0;
  c->st = C_SENDING;
  conn_send(c);
}

/* Next piece of work for a connection that finished (or lost) its upload. */
static void next_work(struct conn *c, bool reconnect) {
  bool more = g_idle_mode ? g_opened < g_k : g_started < g_n;
  if (!more) {
    conn_close(c);
    return;
  }
  if (reconnect) {
    conn_close(c);
    if (g_idle_mode)
      g_opened++;
    if (!conn_open(c) && !g_idle_mode)
      die("cannot reconnect to %s:%d", g_host, g_port);
    return;
  }
  begin_upload(c);
}

static void on_sent(struct conn *c) {
  if (g_idle_mode && c->ph == P_PATCH) {
    c->st = C_IDLE;
    set_events(c, EPOLLIN);
    g_established++;
    if (g_established == g_k) {
      printf("idle established=%" PRId64 "\n", g_established);
      fflush(stdout);
    }
    /* this connection now holds still; open the next one in its place */
    if (g_opened < g_k) {
      for (int64_t i = 0; i < g_nconns; i++) {
        if (g_conns[i].st == C_FREE) {
          g_opened++;
          if (!conn_open(&g_conns[i]))
            g_errors++;
          break;
        }
      }
    }
    return;
  }
  c->st = C_READING;
  set_events(c, EPOLLIN);
}

static void conn_send(struct conn *c) {
  for (;;) {
    struct iovec iov[2];
    int cnt = 0;
    if (c->sent < c->hdr_len) {
      iov[cnt].iov_base = c->hdr + c->sent;
      iov[cnt++].iov_len = c->hdr_len - c->sent;
    }
    size_t boff = c->sent > c->hdr_len ? c->sent - c->hdr_len : 0;
    if (boff < c->body_len) {
      iov[cnt].iov_base = g_buf + boff;
      iov[cnt++].iov_len = c->body_len - boff;
    }
    if (cnt == 0) {
      on_sent(c);
      return;
    }
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};
    ssize_t n = sendmsg(c->fd, &m, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN) {
        set_events(c, EPOLLOUT);
        return;
      }
      report_error(c, strerror(errno));
      next_work(c, true);
      return;
    }
    c->sent += (size_t)n;
  }
}

static void on_response(struct conn *c, const struct resp *r) {
  if (c->ph == P_POST) {
    if (r->status != 201 || r->location[0] == '\0') {
      char msg[64];
      snprintf(msg, sizeof msg, "POST answered %d", r->status);
      report_error(c, msg);
      next_work(c, true);
      return;
    }
    snprintf(c->loc, sizeof c->loc, "%s", r->location);
    if (r->close) {
      report_error(c, "server closed the connection after POST");
      next_work(c, true);
      return;
    }
    c->ph = P_PATCH;
    int64_t clen = g_idle_mode ? IDLE_CONTENT_LENGTH : g_size;
    c->hdr_len = build_patch(c->hdr, c->loc, 0, clen);
    c->body_len = g_idle_mode ? IDLE_BODY_BYTES : (size_t)g_size;
    c->sent = 0;
    c->st = C_SENDING;
    conn_send(c);
    return;
  }
  if (r->status != 204 || r->upload_offset != g_size) {
    char msg[96];
    snprintf(msg, sizeof msg, "PATCH answered %d, Upload-Offset %" PRId64, r->status,
             r->upload_offset);
    report_error(c, msg);
  } else {
    g_completed++;
  }
  next_work(c, r->close);
}

static void on_readable(struct conn *c) {
  for (;;) {
    ssize_t n = recv(c->fd, c->in + c->in_len, IN_CAP - c->in_len, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN)
      return;
    if (c->st == C_IDLE) {
      /* the server hung up or answered a connection that should still be waiting */
      g_dropped++;
      conn_close(c);
      return;
    }
    if (n <= 0) {
      report_error(c, n < 0 ? strerror(errno) : "connection closed by server");
      next_work(c, true);
      return;
    }
    c->in_len += (size_t)n;
    struct resp r;
    ssize_t used = resp_parse(c->in, c->in_len, &r);
    if (used < 0) {
      report_error(c, "malformed response");
      next_work(c, true);
      return;
    }
    if (used == 0)
      continue;
    memmove(c->in, c->in + used, c->in_len - (size_t)used);
    c->in_len -= (size_t)used;
    on_response(c, &r);
    return;
  }
}

static void on_event(struct conn *c, uint32_t ev) {
  if (c->st == C_CONNECTING) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      report_error(c, strerror(err));
      next_work(c, true);
      return;
    }
    begin_upload(c);
    return;
  }
  if (c->st == C_SENDING && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
    conn_send(c);
  else if ((c->st == C_READING || c->st == C_IDLE) && (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)))
    on_readable(c);
}

static int64_t setting_up(void) {
  int64_t n = 0;
  for (int64_t i = 0; i < g_nconns; i++)
    if (g_conns[i].st != C_FREE && g_conns[i].st != C_IDLE)
      n++;
  return n;
}

static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static int run_loop(void) {
  g_ep = epoll_create1(EPOLL_CLOEXEC);
  if (g_ep < 0)
    die("epoll_create1: %s", strerror(errno));
  g_nconns = g_idle_mode ? g_k : g_conc;
  g_conns = calloc((size_t)g_nconns, sizeof *g_conns);
  if (g_conns == NULL)
    die("out of memory");
  for (int64_t i = 0; i < g_nconns; i++) {
    g_conns[i].fd = -1;
    g_conns[i].st = C_FREE;
  }
  int64_t first = g_idle_mode ? (g_k < SETUP_CONCURRENCY ? g_k : SETUP_CONCURRENCY)
                              : (g_conc < g_n ? g_conc : g_n);
  double t0 = now_s();
  for (int64_t i = 0; i < first; i++) {
    if (g_idle_mode)
      g_opened++;
    if (!conn_open(&g_conns[i]) && !g_idle_mode)
      die("cannot open connection %" PRId64, i);
  }

  struct epoll_event evs[256];
  double deadline = 0;
  for (;;) {
    if (g_idle_mode) {
      if (g_stop)
        break;
      if (g_established < g_k && g_opened >= g_k && setting_up() == 0)
        break; /* some connections failed: stop and report the errors */
      if (g_established == g_k && deadline == 0)
        deadline = now_s() + (double)g_hold;
      if (deadline != 0 && now_s() >= deadline)
        break;
    } else if (g_completed + g_errors >= g_n) {
      break;
    }
    int n = epoll_wait(g_ep, evs, 256, g_idle_mode ? 200 : 1000);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      die("epoll_wait: %s", strerror(errno));
    }
    for (int i = 0; i < n; i++)
      on_event(evs[i].data.ptr, evs[i].events);
  }
  double secs = now_s() - t0;
  if (g_idle_mode) {
    printf("idle dropped=%" PRId64 " errors=%" PRId64 "\n", g_dropped, g_errors);
  } else {
    printf("many uploads=%" PRId64 " secs=%.3f per_sec=%.1f errors=%" PRId64 "\n", g_completed,
           secs, (double)g_completed / secs, g_errors);
  }
  for (int64_t i = 0; i < g_nconns; i++)
    if (g_conns[i].fd >= 0)
      close(g_conns[i].fd);
  free(g_conns);
  close(g_ep);
  return g_errors == 0 && g_dropped == 0 ? 0 : 1;
}

static void usage(void) {
  fputs("usage: loadgen big|many|idle|raw [-host 127.0.0.1] [-port P] [-path /files/]\n"
        "  big:  -size BYTES [-chunk 64M]\n"
        "  many: [-n 5000] [-size 64K] [-c 64]\n"
        "  idle: [-k 2000] [-hold 120]\n"
        "  raw:  -size BYTES -file PATH [-chunk 64M] [-rbuf 1M]\n"
        "sizes take K, M, G (binary) suffixes\n",
        stderr);
  exit(2);
}

int main(int argc, char **argv) {
  if (argc < 2)
    usage();
  const char *mode = argv[1];
  for (int i = 2; i < argc; i += 2) {
    if (i + 1 >= argc)
      usage();
    const char *f = argv[i];
    const char *v = argv[i + 1];
    if (strcmp(f, "-host") == 0)
      g_host = v;
    else if (strcmp(f, "-port") == 0)
      g_port = (int)parse_size(f, v);
    else if (strcmp(f, "-path") == 0)
      g_path = v;
    else if (strcmp(f, "-size") == 0)
      g_size = parse_size(f, v);
    else if (strcmp(f, "-chunk") == 0)
      g_chunk = parse_size(f, v);
    else if (strcmp(f, "-n") == 0)
      g_n = parse_size(f, v);
    else if (strcmp(f, "-c") == 0)
      g_conc = parse_size(f, v);
    else if (strcmp(f, "-k") == 0)
      g_k = parse_size(f, v);
    else if (strcmp(f, "-hold") == 0)
      g_hold = parse_size(f, v);
    else if (strcmp(f, "-rbuf") == 0)
      g_rbuf = parse_size(f, v);
    else if (strcmp(f, "-file") == 0)
      g_file = v;
    else
      usage();
  }
  if (strcmp(mode, "raw") == 0)
    return run_raw();
  if (g_port <= 0 || g_port > 65535)
    die("-port is required");
  resolve();
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  if (strcmp(mode, "big") == 0)
    return run_big();
  if (strcmp(mode, "many") == 0) {
    if (g_size < 0)
      g_size = 64 << 10;
    if (g_n <= 0 || g_conc <= 0)
      die("many needs -n and -c > 0");
    fill_buffer((size_t)g_size);
    return run_loop();
  }
  if (strcmp(mode, "idle") == 0) {
    g_idle_mode = true;
    g_size = IDLE_CONTENT_LENGTH;
    if (g_k <= 0)
      die("idle needs -k > 0");
    fill_buffer(IDLE_BODY_BYTES);
    return run_loop();
  }
  usage();
  return 2;
}

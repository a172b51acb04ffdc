/*
 * conn — HTTP server connections: accept and admission, the transport (plain or TLS),
 * reading, holding unparsed bytes, writes and their completions, timeouts, lingering
 * close, failure, graceful stop. What the bytes mean is the protocol's (the server's
 * tusc_http_conn_proto_t, HTTP/1.1 today): it is fed what is read and says, through
 * read_room, whether to read at all — that is how a paused body stops the socket.
 *
 * Memory: reads land in the server's one read buffer (per loop). The protocol parses
 * what it can before the read callback returns; whatever it cannot take yet (the
 * handler paused the body, or a pipelined request waits for the current response) is
 * copied into conn->pending and the socket stops being read until the pending bytes
 * are used up.
 *
 * Deferred work: write completions that have no bytes to wait for, and parsing of
 * pending bytes after a resume, run from the server's idle callback, so that a
 * handler's callback never runs inside the handler's own call.
 *
 * Lifetime: see conn.h. A conn is freed in conn_maybe_free once both of its handles
 * have closed and nothing refers to it any more.
 */
#include "http/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "metrics/metrics.h"
#include "net/tls.h"

#define READ_BUFFER_SIZE (64 * 1024)
#define LINGER_MS 2000
#define LISTEN_BACKLOG 1024

static void conn_maybe_free(tusc_http_conn_t *conn);
static void on_timer(uv_timer_t *timer);
static uint64_t head_timeout(const tusc_http_server_t *server);
static void server_check_done(tusc_http_server_t *server);

/* --- the protocol's requests of the connection ------------------------------------ */

void tusc_http_conn_peer(tusc_http_conn_t *conn, tusc_http_request_t *req) {
  if (conn->is_pipe)
    return;
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  if (uv_tcp_getpeername(&conn->io.tcp, (struct sockaddr *)&ss, &len) != 0)
    return;
  if (ss.ss_family == AF_INET) {
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
    uv_ip4_name(sin, req->remote_addr, sizeof(req->remote_addr));
    req->remote_port = ntohs(sin->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
    uv_ip6_name(sin6, req->remote_addr, sizeof(req->remote_addr));
    /* Dual-stack sockets show IPv4 clients as ::ffff:a.b.c.d; log them as IPv4. */
    if (strncmp(req->remote_addr, "::ffff:", 7) == 0 && strchr(req->remote_addr + 7, '.'))
      memmove(req->remote_addr, req->remote_addr + 7, strlen(req->remote_addr + 7) + 1);
    req->remote_port = ntohs(sin6->sin6_port);
  }
}

const char *tusc_http_conn_date(tusc_http_conn_t *conn) {
  tusc_http_server_t *server = conn->server;
  int64_t now = (int64_t)time(NULL);
  if (now != server->date_sec) {
    server->date_sec = now;
    tusc_http_date(now, server->date);
  }
  return server->date;
}

bool tusc_http_conn_secure(const tusc_http_conn_t *conn) {
  return conn->tr != NULL && conn->tr->ops->secure(conn->tr);
}

/* Time allowed for a request head: the smaller non-zero of the two timeouts. */
static uint64_t head_timeout(const tusc_http_server_t *server) {
  uint64_t n = server->limits.network_timeout_ms, h = server->limits.header_timeout_ms;
  if (h == 0 || (n != 0 && n < h))
    return n;
  return h;
}

uint64_t tusc_http_conn_head_timeout(const tusc_http_server_t *server) {
  return head_timeout(server);
}

void tusc_http_conn_deadline(tusc_http_conn_t *conn, uint64_t ms) {
  if (conn->closing || conn->lingering || ms == 0)
    return;
  if (!uv_is_active((uv_handle_t *)&conn->timer) || ms < uv_timer_get_due_in(&conn->timer))
    uv_timer_start(&conn->timer, on_timer, ms, 0);
}

void tusc_http_conn_head_started(tusc_http_conn_t *conn) {
  uint64_t ht = head_timeout(conn->server);
  uint64_t nt = conn->server->limits.network_timeout_ms;
  if (ht != 0 && (nt == 0 || ht < nt))
    uv_timer_start(&conn->timer, on_timer, ht, 0); /* the idle timer may be due later */
}

static void process_pending(tusc_http_conn_t *conn) {
  conn->proto->resume(conn);
  while (conn->pending != NULL && !conn->closing) {
    size_t n = conn->proto->feed(conn, conn->pending + conn->pending_off,
                                         conn->pending_len - conn->pending_off);
    conn->pending_off += n;
    if (conn->pending_off == conn->pending_len) {
      free(conn->pending);
      conn->pending = NULL;
      conn->pending_off = conn->pending_len = 0;
    }
    if (n == 0)
      break;
  }
}

/* --- reading --------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  tusc_http_conn_t *conn = handle->data;
  buf->base = conn->server->read_buf;
  buf->len = READ_BUFFER_SIZE;
  size_t room = conn->proto->read_room(conn);
  if (room > 0 && room < READ_BUFFER_SIZE)
    buf->len = room; /* a watched connection holds at most the cap */
  if (conn->tr->ops->read_max != NULL) {
    size_t max = conn->tr->ops->read_max(conn->tr);
    if (max < buf->len)
      buf->len = max; /* TLS about to give reading to the kernel: up to a record's end */
  }
}

/* Plaintext from the transport (the socket's bytes themselves for plain HTTP). A TLS
 * transport may call this several times per read; what the parser cannot take yet
 * queues up in conn->pending, in order. */
static void on_plaintext(void *arg, const char *data, size_t n) {
  tusc_http_conn_t *conn = arg;
  if (conn->closing || conn->lingering || n == 0)
    return;
  conn->activity_ms = uv_now(conn->server->loop);
  if (conn->pending != NULL) {
    /* Reading stops while bytes wait, but one TLS read can decrypt to several
     * pieces; never reorder bytes. */
    char *p = realloc(conn->pending, conn->pending_len + n);
    if (p == NULL) {
      tusc_http_conn_fail(conn, UV_ENOMEM);
      return;
    }
    memcpy(p + conn->pending_len, data, n);
    conn->pending = p;
    conn->pending_len += n;
    return;
  }
  if (!conn->proto_chosen) {
    /* The first plaintext byte: the handshake (and ALPN) is done. */
    conn->proto_chosen = true;
    conn->proto = tusc_http_pick_proto(conn, data, n);
  }
  size_t used = conn->proto->feed(conn, data, n);
  if (!conn->closing && used < n && !conn->lingering) {
    conn->pending = malloc(n - used);
    if (conn->pending == NULL) {
      tusc_http_conn_fail(conn, UV_ENOMEM);
      return;
    }
    memcpy(conn->pending, data + used, n - used);
    conn->pending_off = 0;
    conn->pending_len = n - used;
  }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  tusc_http_conn_t *conn = stream->data;
  if (nread == 0 || conn->closing)
    return;
  if (nread < 0 && conn->tr->ops->read_error != NULL)
    nread = conn->tr->ops->read_error(conn->tr, stream, (int)nread);
  if (conn->lingering) {
    if (nread < 0)
      tusc_http_conn_close(conn);
    return;
  }
  if (nread < 0) {
    tusc_http_conn_fail(conn, (int)nread);
    return;
  }
  /* Handshake bytes are not progress: a handshake must finish within the timeout. */
  if (conn->tr->ops->established(conn->tr))
    conn->activity_ms = uv_now(conn->server->loop);
  int rc = conn->tr->ops->input(conn->tr, &conn->io.stream, buf->base, (size_t)nread,
                                conn->server->read_buf, READ_BUFFER_SIZE, on_plaintext, conn);
  if (conn->closing)
    return;
  if (rc < 0) {
    if (conn->lingering)
      tusc_http_conn_close(conn);
    else
      tusc_http_conn_fail(conn, rc);
    return;
  }
  tusc_http_conn_update_reading(conn);
}

void tusc_http_conn_update_reading(tusc_http_conn_t *conn) {
  if (conn->closing)
    return;
  if (conn->req == NULL && conn->server->stopping && conn->writes_pending == 0) {
    tusc_http_conn_close(conn);
    return;
  }
  size_t room = conn->proto->read_room(conn);
  bool want = conn->lingering || (room == SIZE_MAX ? conn->pending == NULL : room > 0);
  if (want && !conn->reading) {
    if (uv_read_start(&conn->io.stream, on_alloc, on_read) == 0)
      conn->reading = true;
  } else if (!want && conn->reading) {
    uv_read_stop(&conn->io.stream);
    conn->reading = false;
  }
}

/* --- deferred work (never call the handler from inside its own call) -------------- */

static void on_idle(uv_idle_t *idle) {
  tusc_http_server_t *server = idle->data;
  while (server->later_head != NULL) {
    tusc_http_write_t *wr = server->later_head;
    server->later_head = wr->next_later;
    if (server->later_head == NULL)
      server->later_tail = NULL;
    tusc_http_conn_t *conn = wr->conn;
    conn->writes_pending--;
    conn->guard++;
    wr->done(wr, wr->later_status);
    conn->guard--;
    if (conn->closing)
      conn_maybe_free(conn);
  }
  while (server->kick_head != NULL) {
    tusc_http_conn_t *conn = server->kick_head;
    server->kick_head = conn->kick_next;
    conn->kick_next = NULL;
    conn->kicked = false;
    if (!conn->closing) {
      process_pending(conn);
      tusc_http_conn_update_reading(conn);
    } else {
      conn_maybe_free(conn);
    }
  }
  if (server->kick_head == NULL && server->later_head == NULL) {
    uv_idle_stop(idle);
    server->idle_active = false;
    server_check_done(server);
  }
}

static void idle_start(tusc_http_server_t *server) {
  if (!server->idle_active && !server->idle_closing) {
    uv_idle_start(&server->idle, on_idle);
    server->idle_active = true;
  }
}

void tusc_http_conn_kick(tusc_http_conn_t *conn) {
  if (conn->kicked || conn->closing)
    return;
  conn->kicked = true;
  conn->kick_next = conn->server->kick_head;
  conn->server->kick_head = conn;
  idle_start(conn->server);
}

void tusc_http_conn_complete_later(tusc_http_conn_t *conn, tusc_http_write_t *wr, int status) {
  tusc_http_server_t *server = conn->server;
  wr->conn = conn;
  wr->later_status = status;
  wr->next_later = NULL;
  if (server->later_tail)
    server->later_tail->next_later = wr;
  else
    server->later_head = wr;
  server->later_tail = wr;
  conn->writes_pending++;
  idle_start(server);
}

/* --- closing --------------------------------------------------------------------- */

static void conn_free(tusc_http_conn_t *conn) {
  tusc_http_server_t *server = conn->server;
  if (conn->prev)
    conn->prev->next = conn->next;
  else
    server->conns = conn->next;
  if (conn->next)
    conn->next->prev = conn->prev;
  server->conn_count--;
  tusc_connlimit_release(server->limits.connlimit, &conn->limit_slot);
  tusc_metrics_connections(-1);
  free(conn->pending);
  if (conn->tr != NULL)
    conn->tr->ops->free(conn->tr);
  free(conn);
  if (server->spare_fd < 0) /* a descriptor just came free: re-arm the spare */
    server->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  server_check_done(server);
}

static void conn_maybe_free(tusc_http_conn_t *conn) {
  if (conn->handles_closed == 2 && conn->req == NULL && conn->writes_pending == 0 &&
      !conn->kicked && conn->guard == 0 && !conn->in_feed)
    conn_free(conn);
}

static void on_conn_closed(uv_handle_t *handle) {
  tusc_http_conn_t *conn = handle->data;
  conn->handles_closed++;
  conn_maybe_free(conn);
}

void tusc_http_conn_close(tusc_http_conn_t *conn) {
  if (conn->closing)
    return;
  conn->closing = true;
  conn->reading = false;
  if (conn->tr != NULL && !conn->failed && !conn->lingering)
    conn->tr->ops->close_notify(conn->tr, &conn->io.stream);
  uv_close(&conn->io.handle, on_conn_closed);
  uv_close((uv_handle_t *)&conn->timer, on_conn_closed);
  conn->proto->closing(conn);
}

/* The handler, if it works on a request, is told (it still ends the request; its
 * response is dropped). */
void tusc_http_conn_fail(tusc_http_conn_t *conn, int err) {
  if (conn->closing)
    return;
  conn->failed = true;
  tusc_http_conn_close(conn);
  conn->proto->failed(conn, err);
}

static void on_shutdown(uv_shutdown_t *sreq, int status) {
  (void)status;
  free(sreq);
}

/* After a response that leaves request bytes unread, close only our sending side
 * and drain for a moment: closing with unread data makes the kernel send RST, which
 * can destroy the response before the client reads it. */
static void conn_linger(tusc_http_conn_t *conn) {
  uv_shutdown_t *sreq = malloc(sizeof(*sreq));
  if (conn->tr != NULL)
    conn->tr->ops->close_notify(conn->tr, &conn->io.stream);
  if (sreq == NULL || uv_shutdown(sreq, &conn->io.stream, on_shutdown) != 0) {
    free(sreq);
    tusc_http_conn_close(conn);
    return;
  }
  conn->lingering = true;
  conn->activity_ms = uv_now(conn->server->loop);
  uint64_t t = conn->server->limits.network_timeout_ms;
  uv_timer_start(&conn->timer, on_timer, t && t < LINGER_MS ? t : LINGER_MS, 0);
  free(conn->pending);
  conn->pending = NULL;
  conn->pending_off = conn->pending_len = 0;
  tusc_http_conn_update_reading(conn);
}

/* --- timers ---------------------------------------------------------------------- */

static void on_timer(uv_timer_t *timer) {
  tusc_http_conn_t *conn = timer->data;
  tusc_http_server_t *server = conn->server;
  uint64_t timeout = server->limits.network_timeout_ms;
  if (conn->closing)
    return;
  uint64_t now = uv_now(server->loop);
  uint64_t proto_next = 0; /* the protocol's next per-request deadline, 0: none */
  if (conn->proto->expire != NULL && !conn->lingering) {
    conn->guard++;
    proto_next = conn->proto->expire(conn, now);
    conn->guard--;
    if (conn->closing) {
      conn_maybe_free(conn);
      return;
    }
  }
  uint64_t head_start_ms = 0;
  enum tusc_http_wait waiting = conn->proto->wait_state(conn, &head_start_ms);
  uint64_t limit = timeout;
  int action = 0; /* 0 none, 1 close quietly, 2 fail */
  int err = TUSC_EREAD_TIMEOUT;
  if (conn->lingering) {
    limit = timeout && timeout < LINGER_MS ? timeout : LINGER_MS;
    action = 1;
  } else if (waiting == TUSC_HTTP_WAIT_BODY) {
    action = 2; /* waiting for body bytes (a 100 Continue may still be queued) */
  } else if (conn->writes_pending > 0) {
    action = 2; /* the client does not read its response */
    err = UV_ETIMEDOUT;
  } else if (waiting == TUSC_HTTP_WAIT_IDLE) {
    action = 1;
    /* A new connection owes its first request head within the header timeout, so
     * that idle sockets cannot pile up (slowloris without even a first byte). */
    if (conn->requests_done == 0)
      limit = head_timeout(server);
  } else if (waiting == TUSC_HTTP_WAIT_HEAD) {
    /* The whole head must arrive within the timeout, not just each byte: a client
     * dribbling one byte at a time would otherwise hold the connection forever. */
    uint64_t ht = head_timeout(server);
    action = 1;
    limit = ht;
    if (head_start_ms < conn->activity_ms)
      limit = ht > conn->activity_ms - head_start_ms ? ht - (conn->activity_ms - head_start_ms) : 1;
  }
  if (action == 0 || limit == 0) {
    uint64_t next = timeout ? timeout : 60000;
    uv_timer_start(timer, on_timer, proto_next && proto_next < next ? proto_next : next, 0);
    return;
  }
  if (now - conn->activity_ms >= limit) {
    TUSC_LOG(TUSC_LOG_DEBUG, "connection timed out (%s)", action == 1 ? "idle" : "read/write");
    if (action == 1)
      tusc_http_conn_close(conn);
    else
      tusc_http_conn_fail(conn, err);
    return;
  }
  uint64_t next = limit - (now - conn->activity_ms);
  uv_timer_start(timer, on_timer, proto_next && proto_next < next ? proto_next : next, 0);
}

static void on_write(uv_write_t *w, int status) {
  tusc_http_write_t *wr = (tusc_http_write_t *)w;
  tusc_http_conn_t *conn = wr->conn;
  conn->writes_pending--;
  if (status < 0)
    tusc_http_conn_fail(conn, status);
  else
    conn->activity_ms = uv_now(conn->server->loop);
  conn->guard++;
  wr->done(wr, status);
  conn->guard--;
  if (conn->closing)
    conn_maybe_free(conn);
}

int tusc_http_conn_write(tusc_http_conn_t *conn, tusc_http_write_t *wr, const char *base,
                         size_t len) {
  wr->conn = conn;
  int rc = conn->tr->ops->write(conn->tr, &conn->io.stream, &wr->w, base, len, on_write);
  if (rc == 0)
    conn->writes_pending++;
  return rc;
}

void tusc_http_conn_request_ended(tusc_http_conn_t *conn, bool close, bool linger) {
  conn->requests_done++;
  if (conn->closing) {
    conn_maybe_free(conn);
    return;
  }
  conn->activity_ms = uv_now(conn->server->loop);
  if (close) {
    if (linger)
      conn_linger(conn);
    else
      tusc_http_conn_close(conn);
    return;
  }
  if (conn->pending != NULL)
    process_pending(conn);
  tusc_http_conn_update_reading(conn);
}

/* --- server ----------------------------------------------------------------------- */

/* -max-connections / -max-connections-per-ip. A refused connection gets a 503 if the
 * socket takes it at once (never waited for: the point is to spend nothing on it) and
 * is closed; with TLS it is closed without a word, as no handshake is worth doing. */
static bool admit(tusc_http_conn_t *conn) {
  tusc_http_server_t *server = conn->server;
  struct sockaddr_storage peer;
  int len = sizeof(peer);
  const struct sockaddr *sa = NULL;
  if (!server->is_pipe && uv_tcp_getpeername(&conn->io.tcp, (struct sockaddr *)&peer, &len) == 0)
    sa = (const struct sockaddr *)&peer;
  if (tusc_connlimit_acquire(server->limits.connlimit, sa, &conn->limit_slot) == 0)
    return true;
  static const char refusal[] = "HTTP/1.1 503 Service Unavailable\r\n"
                                "Content-Type: text/plain; charset=utf-8\r\n"
                                "Content-Length: 47\r\n"
                                "Retry-After: 1\r\n"
                                "Connection: close\r\n\r\n"
                                "ERR_TOO_MANY_CONNECTIONS: too many connections\n";
  if (server->tls == NULL) {
    uv_buf_t buf = uv_buf_init((char *)refusal, sizeof(refusal) - 1);
    (void)uv_try_write(&conn->io.stream, &buf, 1);
  }
  TUSC_LOG(TUSC_LOG_DEBUG, "connection refused: connection limit reached");
  tusc_http_conn_close(conn);
  return false;
}

/* Out of descriptors. libuv drops waiting connections with a spare descriptor of its
 * own, but with several workers another thread can take that descriptor's number
 * while it is briefly closed. libuv then has no spare and, since Linux's accept()
 * fails with EMFILE before it even looks at the queue, calls us from a loop that
 * only ends on EAGAIN: a worker at 100% CPU until some descriptor frees up (found by
 * test_exhaustion.py). So: free a slot (our own spare, else the longest-idle
 * connection without a request), drop what is waiting (clients see a close at once,
 * not a hang), and leave the slot free so that libuv's next accept() says EAGAIN and
 * the loop goes back to sleep. The spare is re-armed when a connection closes. */
static void drop_pending(tusc_http_server_t *server, uv_stream_t *listener) {
  uint64_t now = uv_now(server->loop);
  if (server->emfile_log_ms == 0 || now - server->emfile_log_ms >= 1000) {
    server->emfile_log_ms = now;
    TUSC_LOG(TUSC_LOG_WARN, "out of file descriptors: dropping new connections until some close");
  }
  uv_os_fd_t lfd;
  if (uv_fileno((uv_handle_t *)listener, &lfd) != 0)
    return;
  if (server->spare_fd >= 0) {
    close(server->spare_fd);
    server->spare_fd = -1;
  } else {
    tusc_http_conn_t *victim = NULL;
    for (tusc_http_conn_t *c = server->conns; c != NULL; c = c->next)
      if (!c->closing && c->req == NULL && c->writes_pending == 0 &&
          (victim == NULL || c->activity_ms < victim->activity_ms))
        victim = c;
    if (victim == NULL)
      return;                     /* every connection is mid-request; one will end soon */
    tusc_http_conn_close(victim); /* uv_close closes the socket at once */
  }
  for (int i = 0; i < LISTEN_BACKLOG; i++) { /* bounded: a flood must not hold the loop */
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0)
      close(fd);
    else if (errno != EINTR && errno != ECONNABORTED)
      break;
  }
}

static void on_connection(uv_stream_t *listener, int status) {
  tusc_http_server_t *server = listener->data;
  if (status == UV_EMFILE || status == UV_ENFILE) {
    drop_pending(server, listener);
    return;
  }
  if (status < 0) {
    TUSC_LOG(TUSC_LOG_WARN, "accept failed: %s", uv_strerror(status));
    return;
  }
  if (server->stopping)
    return;
  tusc_http_conn_t *conn = calloc(1, sizeof(*conn));
  if (conn == NULL)
    return;
  conn->server = server;
  conn->proto = server->proto;
  conn->is_pipe = server->is_pipe;
  int rc = server->is_pipe ? uv_pipe_init(server->loop, &conn->io.pipe, 0)
                           : uv_tcp_init(server->loop, &conn->io.tcp);
  if (rc != 0) {
    free(conn);
    return;
  }
  conn->io.handle.data = conn;
  uv_timer_init(server->loop, &conn->timer);
  conn->timer.data = conn;
  conn->next = server->conns;
  if (server->conns)
    server->conns->prev = conn;
  server->conns = conn;
  server->conn_count++;
  tusc_metrics_connections(1);
  if (uv_accept(listener, &conn->io.stream) != 0) {
    tusc_http_conn_close(conn);
    return;
  }
  if (!server->is_pipe)
    uv_tcp_nodelay(&conn->io.tcp, 1);
  if (server->limits.connlimit != NULL && !admit(conn))
    return;
  conn->tr = &tusc_transport_plain;
  if (server->tls != NULL && tusc_tls_transport_new(server->tls, &conn->tr) != 0) {
    conn->tr = &tusc_transport_plain; /* freed as plain: nothing to free */
    tusc_http_conn_close(conn);
    return;
  }
  conn->activity_ms = uv_now(server->loop);
  if (head_timeout(server) > 0)
    uv_timer_start(&conn->timer, on_timer, head_timeout(server), 0);
  tusc_http_conn_update_reading(conn);
}

int tusc_http_server_create(uv_loop_t *loop, int fd, const tusc_http_limits_t *limits,
                            const tusc_http_handler_t *handler, void *ctx,
                            const tusc_http_conn_proto_t *proto, tusc_http_server_t **out) {
  if (loop == NULL || fd < 0 || limits == NULL || handler == NULL || handler->on_request == NULL)
    return TUSC_EINVALID_ARGUMENT;
  tusc_http_server_t *server = calloc(1, sizeof(*server));
  if (server == NULL)
    return TUSC_ENOMEM;
  server->read_buf = malloc(READ_BUFFER_SIZE);
  if (server->read_buf == NULL) {
    free(server);
    return TUSC_ENOMEM;
  }
  server->loop = loop;
  server->limits = *limits;
  if (server->limits.max_header_size < 256)
    server->limits.max_header_size = 256;
  if (server->limits.max_header_size > (size_t)1 << 30)
    server->limits.max_header_size = (size_t)1 << 30;
  if (server->limits.max_header_count == 0)
    server->limits.max_header_count = 1;
  proto->server_init(server);
  server->handler = handler;
  server->ctx = ctx;
  server->proto = proto;
  server->date_sec = -1;
  server->spare_fd = -1;

  int domain = 0;
  socklen_t dlen = sizeof(domain);
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dlen) != 0) {
    int rc = -errno;
    close(fd);
    free(server->read_buf);
    free(server);
    return rc;
  }
  server->is_pipe = domain == AF_UNIX;
  int rc = server->is_pipe ? uv_pipe_init(loop, &server->listener.pipe, 0)
                           : uv_tcp_init(loop, &server->listener.tcp);
  if (rc != 0) {
    close(fd);
    free(server->read_buf);
    free(server);
    return rc;
  }
  server->listener.handle.data = server;
  rc = server->is_pipe ? uv_pipe_open(&server->listener.pipe, fd)
                       : uv_tcp_open(&server->listener.tcp, fd);
  if (rc != 0)
    close(fd); /* not adopted by the handle */
  else
    rc = uv_listen(&server->listener.stream, LISTEN_BACKLOG, on_connection);
  uv_idle_init(loop, &server->idle);
  server->idle.data = server;
  if (rc != 0) {
    /* The handles exist; they are closed and the server freed via the normal path. */
    server->free_when_done = true;
    tusc_http_server_stop(server, false, NULL, NULL);
    return rc;
  }
  server->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  *out = server;
  return 0;
}

static void server_free_now(tusc_http_server_t *server) {
  if (server->spare_fd >= 0)
    close(server->spare_fd);
  free(server->read_buf);
  free(server);
}

static void on_idle_closed(uv_handle_t *handle) {
  tusc_http_server_t *server = handle->data;
  server->idle_closed = true;
  server_check_done(server);
}

static void server_check_done(tusc_http_server_t *server) {
  if (!server->stopping || server->done || server->conn_count > 0)
    return;
  if (!server->idle_closing && !server->idle_active) {
    server->idle_closing = true;
    uv_close((uv_handle_t *)&server->idle, on_idle_closed);
  }
  if (!server->listener_closed || !server->idle_closed)
    return;
  server->done = true;
  if (server->free_when_done) {
    server_free_now(server);
    return;
  }
  /* Last use of `server` here: the callback may free it. */
  if (server->done_cb)
    server->done_cb(server, server->done_arg);
}

static void on_listener_closed(uv_handle_t *handle) {
  tusc_http_server_t *server = handle->data;
  server->listener_closed = true;
  server_check_done(server);
}

void tusc_http_server_stop(tusc_http_server_t *server, bool abort_in_flight,
                           void (*done_cb)(tusc_http_server_t *server, void *arg), void *arg) {
  if (server == NULL)
    return;
  if (done_cb != NULL) {
    server->done_cb = done_cb;
    server->done_arg = arg;
  }
  if (abort_in_flight)
    server->abort_in_flight = true;
  if (!server->stopping) {
    server->stopping = true;
    uv_close(&server->listener.handle, on_listener_closed);
  }
  tusc_http_conn_t *next;
  for (tusc_http_conn_t *conn = server->conns; conn != NULL; conn = next) {
    next = conn->next;
    if (conn->closing)
      continue;
    conn->proto->stopping(conn);
  }
  server_check_done(server);
}

void tusc_http_server_free(tusc_http_server_t *server) {
  if (server == NULL)
    return;
  if (server->done) {
    server_free_now(server);
    return;
  }
  server->free_when_done = true;
  server->done_cb = NULL;
  tusc_http_server_stop(server, true, NULL, NULL);
}

void tusc_http_server_set_tls(tusc_http_server_t *server, struct tusc_tls_s *tls) {
  server->tls = tls;
}

size_t tusc_http_server_connections(const tusc_http_server_t *server) {
  return server->conn_count;
}

bool tusc_http_server_waiting(const tusc_http_server_t *server) {
  if (server->later_head != NULL || server->kick_head != NULL)
    return false;
  for (const tusc_http_conn_t *conn = server->conns; conn != NULL; conn = conn->next) {
    if (conn->closing || conn->writes_pending > 0 || conn->pending != NULL)
      return false;
    uint64_t since;
    if (!conn->lingering && conn->proto->wait_state(conn, &since) == TUSC_HTTP_BUSY)
      return false;
  }
  return true;
}

/*
 * redis — see redis.h. One context per loop (rctx_t); each req has a private part
 * (rreq_t) on its loop.
 *
 * Lifetimes:
 * - An rreq is referenced by its timer (until the close callback) and by every hiredis
 *   command in flight that names it (hiredis runs each callback exactly once, with a
 *   NULL reply when the connection goes). It is freed when the last reference goes, so
 *   a reply that comes after the req ended finds it (state RS_DONE) and only cleans up,
 *   e.g. gives back a lock that a cancelled acquire got after all.
 * - The req is detached (r->req = NULL, req->impl = NULL) before its last callback or
 *   in release; code here never touches a req after calling its callback.
 * - A context lives from the first acquire on its loop until it is detached and idle
 *   (no rreq left, not even one waiting for a reply); then it leaves the lock's list and
 *   is freed once its connections and timers are gone. ctx->cmd / ctx->sub are cleared exactly when
 *   hiredis is about to free them: a failed connect, the disconnect callback, or our own
 *   redisAsyncFree (then ac->data is cleared first so no callback of ours follows).
 */
#include "lock/redis.h"

#include <errno.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "common/error.h"
#include "common/log.h"

#define DEFAULT_PREFIX "tusc:"
#define TOKEN_BYTES 16

/* KEYS: lock, waiters. ARGV: value, lease ms, my channel, mode ('-' no wait, '0' wait,
 * '1' wait and ask), id, waiters ttl ms. Returns {1, 0} taken or {0, pttl}. A winner
 * does not take its channel out of the waiters: other requests of its loop may still
 * wait there; a stale entry costs one ignored message and expires with the set. */
static const char ACQUIRE_LUA[] =
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then\n"
    "  return {1, 0}\n"
    "end\n"
    "local ttl = redis.call('PTTL', KEYS[1])\n"
    "if ARGV[4] ~= '-' then\n"
    "  redis.call('SADD', KEYS[2], ARGV[3])\n"
    "  redis.call('PEXPIRE', KEYS[2], ARGV[6])\n"
    "  if ARGV[4] == '1' then\n"
    "    local cur = redis.call('GET', KEYS[1])\n"
    "    if cur then\n"
    "      local sp = string.find(cur, ' ', 1, true)\n"
    "      if sp then redis.call('PUBLISH', string.sub(cur, 1, sp - 1), 'a' .. ARGV[5]) end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return {0, ttl}\n";

/* KEYS: lock, waiters. ARGV: value, id. Deletes the lock if it is ours and wakes the
 * waiters. Returns 1 or 0 (not ours any more). */
static const char RELEASE_LUA[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
    "redis.call('DEL', KEYS[1])\n"
    "local w = redis.call('SMEMBERS', KEYS[2])\n"
    "for i = 1, #w do redis.call('PUBLISH', w[i], 'r' .. ARGV[2]) end\n"
    "if #w > 0 then redis.call('DEL', KEYS[2]) end\n"
    "return 1\n";

/* KEYS: lock. ARGV: value, lease ms. Returns 1 (renewed) or 0 (not ours). */
static const char RENEW_LUA[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "end\n"
    "return 0\n";

typedef struct rlock_s rlock_t;
typedef struct rctx_s rctx_t;
typedef struct rreq_s rreq_t;

enum rstate {
  RS_ACQ,    /* the acquire script is in flight */
  RS_WAIT,   /* busy; the timer tries again */
  RS_HELD,   /* ours; renewed by the context's timer */
  RS_ENDING, /* the timer runs the callback with `status` a loop turn later */
  RS_DONE    /* the req is detached; waiting for the last reference */
};

struct rreq_s {
  rctx_t *ctx;
  tusc_lock_req_t *req; /* NULL once detached */
  tusc_lock_cb cb;
  enum rstate state;
  int status;
  uv_timer_t timer;
  unsigned refs;
  int64_t timeout_ms;
  bool waited, asked_lost, renewing;
  uint64_t deadline, last_ask; /* uv_now */
  uint64_t sent_ms, renew_sent_ms, valid_until; /* monotonic ms (uv_hrtime) */
  rreq_t *prev, *next; /* ctx's list of live (not RS_DONE) rreqs */
  char *key, *wkey, *value;
  char id[];
};

struct rctx_s {
  rlock_t *lock;
  uv_loop_t *loop;
  rctx_t *next;
  redisAsyncContext *cmd, *sub;
  bool cmd_ready, sub_ready, down_logged;
  bool detached; /* tusc_lock_detach ran: close as soon as idle (nreqs == 0) */
  bool closing;  /* unlinked; connections and timers going */
  bool in_close;
  uv_timer_t retry, renew;
  int open_timers;
  uint64_t backoff;
  size_t nreqs, nheld;
  rreq_t *head;
  char channel[];
};

struct rlock_s {
  tusc_lock_t base;
  char *host; /* numeric address; NULL for a unix socket */
  int port;
  char *path;
  char *user, *password;
  int db;
  char *prefix;
  uint64_t lease_ms, margin_ms, renew_ms;
  char lease_s[24], waiters_ttl_s[24];
  uv_mutex_t mutex; /* guards `loops` and `detached` */
  rctx_t *loops;
  uv_loop_t **detached; /* loops that were detached: contexts made later close when idle */
  size_t ndetached, detached_cap;
  atomic_uint_fast64_t acquired, waits, asks_sent, asks_heard, wakeups, lost, connects,
      unavailable;
};

static uint64_t mono_ms(void) {
  return uv_hrtime() / 1000000u;
}

static int random_hex(char *out, size_t bytes) {
  unsigned char buf[32];
  size_t got = 0;
  while (got < bytes) {
    ssize_t n = getrandom(buf + got, bytes - got, 0);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    got += (size_t)n;
  }
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < bytes; i++) {
    out[2 * i] = hex[buf[i] >> 4];
    out[2 * i + 1] = hex[buf[i] & 15];
  }
  out[2 * bytes] = '\0';
  return 0;
}

/* --- URL ------------------------------------------------------------------------------ */

typedef struct url_parts_s {
  char *host, *path, *user, *password;
  int port, db;
} url_parts_t;

static void url_parts_free(url_parts_t *u) {
  free(u->host);
  free(u->path);
  free(u->user);
  free(u->password);
  memset(u, 0, sizeof(*u));
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* A percent-decoded copy of s[0..len); NULL on bad escapes or no memory. */
static char *decode(const char *s, size_t len) {
  char *out = malloc(len + 1);
  if (out == NULL)
    return NULL;
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] == '%') {
      int hi = i + 2 < len ? hexval(s[i + 1]) : -1;
      int lo = hi >= 0 ? hexval(s[i + 2]) : -1;
      if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
        free(out);
        return NULL;
      }
      out[o++] = (char)(hi * 16 + lo);
      i += 2;
    } else {
      out[o++] = s[i];
    }
  }
  out[o] = '\0';
  return out;
}

static bool parse_int(const char *s, size_t len, int min, int max, int *out) {
  if (len == 0 || len > 9)
    return false;
  int v = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    v = v * 10 + (s[i] - '0');
  }
  if (v < min || v > max)
    return false;
  *out = v;
  return true;
}

/* "user:password" or ":password" or "password"-less "user". */
static int parse_userinfo(const char *s, size_t len, url_parts_t *u) {
  const char *colon = memchr(s, ':', len);
  size_t ulen = colon != NULL ? (size_t)(colon - s) : len;
  if (ulen > 0 && (u->user = decode(s, ulen)) == NULL)
    return -1;
  if (colon != NULL && (u->password = decode(colon + 1, len - ulen - 1)) == NULL)
    return -1;
  return 0;
}

/* "db=N&password=P" (unix URLs). */
static int parse_query(const char *q, url_parts_t *u) {
  while (*q != '\0') {
    const char *amp = strchr(q, '&');
    size_t len = amp != NULL ? (size_t)(amp - q) : strlen(q);
    if (len > 3 && strncmp(q, "db=", 3) == 0) {
      if (!parse_int(q + 3, len - 3, 0, 1 << 20, &u->db))
        return -1;
    } else if (len > 9 && strncmp(q, "password=", 9) == 0) {
      free(u->password);
      if ((u->password = decode(q + 9, len - 9)) == NULL)
        return -1;
    } else {
      return -1;
    }
    q += len;
    if (*q == '&')
      q++;
  }
  return 0;
}

static int url_parse(const char *url, url_parts_t *u, char *err, size_t errlen) {
  memset(u, 0, sizeof(*u));
  u->port = 6379;
  const char *why = "expected redis://[[user]:password@]host[:port][/db] or unix:///path";
  if (url == NULL || url[0] == '\0')
    goto bad;
  if (strncmp(url, "unix:", 5) == 0) {
    const char *p = url + 5;
    if (strncmp(p, "//", 2) == 0)
      p += 2;
    const char *at = strchr(p, '@');
    const char *q = strchr(p, '?');
    if (at != NULL && (q == NULL || at < q)) {
      if (parse_userinfo(p, (size_t)(at - p), u) != 0)
        goto bad;
      p = at + 1;
    }
    size_t plen = q != NULL ? (size_t)(q - p) : strlen(p);
    if (plen < 2 || p[0] != '/') {
      why = "a unix:// URL needs an absolute socket path";
      goto bad;
    }
    if ((u->path = decode(p, plen)) == NULL || (q != NULL && parse_query(q + 1, u) != 0))
      goto bad;
    return 0;
  }
  if (strncmp(url, "rediss://", 9) == 0) {
    why = "TLS to Redis (rediss://) is not supported; use redis:// or unix://";
    goto bad;
  }
  if (strncmp(url, "redis://", 8) != 0)
    goto bad;
  const char *p = url + 8;
  const char *slash = strchr(p, '/');
  const char *end = slash != NULL ? slash : p + strlen(p);
  const char *at = NULL;
  for (const char *c = p; c < end; c++)
    if (*c == '@')
      at = c;
  if (at != NULL) {
    if (parse_userinfo(p, (size_t)(at - p), u) != 0)
      goto bad;
    p = at + 1;
  }
  const char *hend;
  const char *portp = NULL;
  if (*p == '[') {
    const char *rb = memchr(p, ']', (size_t)(end - p));
    if (rb == NULL)
      goto bad;
    u->host = strndup(p + 1, (size_t)(rb - p - 1));
    hend = rb + 1;
    if (hend < end && *hend == ':')
      portp = hend + 1;
    else if (hend != end)
      goto bad;
  } else {
    const char *colon = memchr(p, ':', (size_t)(end - p));
    hend = colon != NULL ? colon : end;
    u->host = strndup(p, (size_t)(hend - p));
    if (colon != NULL)
      portp = colon + 1;
  }
  if (u->host == NULL || u->host[0] == '\0') {
    why = "the Redis URL has no host";
    goto bad;
  }
  if (portp != NULL && !parse_int(portp, (size_t)(end - portp), 1, 65535, &u->port)) {
    why = "bad port in the Redis URL";
    goto bad;
  }
  if (slash != NULL && slash[1] != '\0' &&
      !parse_int(slash + 1, strlen(slash + 1), 0, 1 << 20, &u->db)) {
    why = "bad database number in the Redis URL";
    goto bad;
  }
  return 0;
bad:
  snprintf(err, errlen, "bad Redis URL: %s", why);
  url_parts_free(u);
  return TUSC_EINVALID_ARGUMENT;
}

int tusc_lock_redis_check_url(const char *url, char *err, size_t errlen) {
  url_parts_t u;
  int rc = url_parse(url, &u, err, errlen);
  if (rc == 0)
    url_parts_free(&u);
  return rc;
}

/* --- contexts and connections ---------------------------------------------------------- */

static void ctx_connect(rctx_t *ctx);
static void on_sub_message(redisAsyncContext *ac, void *reply, void *priv);

static void ctx_maybe_free(rctx_t *ctx) {
  if (ctx->closing && !ctx->in_close && ctx->cmd == NULL && ctx->sub == NULL &&
      ctx->open_timers == 0 && ctx->nreqs == 0)
    free(ctx);
}

static void on_ctx_timer_closed(uv_handle_t *handle);

/* A detached context with no req left (not even one waiting for a reply) closes: out
 * of the lock's list first, so a later acquire on the loop makes a new one. */
static void ctx_close_if_idle(rctx_t *ctx) {
  if (!ctx->detached || ctx->closing || ctx->nreqs > 0)
    return;
  rlock_t *l = ctx->lock;
  uv_mutex_lock(&l->mutex);
  rctx_t **pp = &l->loops;
  while (*pp != ctx)
    pp = &(*pp)->next;
  *pp = ctx->next;
  uv_mutex_unlock(&l->mutex);
  ctx->closing = true;
  ctx->in_close = true;
  uv_close((uv_handle_t *)&ctx->retry, on_ctx_timer_closed);
  uv_close((uv_handle_t *)&ctx->renew, on_ctx_timer_closed);
  if (ctx->sub != NULL) {
    redisAsyncContext *ac = ctx->sub;
    ac->data = NULL;
    ctx->sub = NULL;
    redisAsyncFree(ac);
  }
  if (ctx->cmd != NULL) {
    redisAsyncContext *ac = ctx->cmd;
    if (ac->c.flags & REDIS_CONNECTED) {
      redisAsyncDisconnect(ac); /* its disconnect callback clears ctx->cmd */
    } else {
      ac->data = NULL;
      ctx->cmd = NULL;
      redisAsyncFree(ac);
    }
  }
  ctx->in_close = false;
  ctx_maybe_free(ctx);
}

static void on_ctx_timer_closed(uv_handle_t *handle) {
  rctx_t *ctx = handle->data;
  ctx->open_timers--;
  ctx_maybe_free(ctx);
}

static void on_retry_timer(uv_timer_t *timer) {
  ctx_connect(timer->data);
}

static void schedule_reconnect(rctx_t *ctx) {
  if (ctx->closing || uv_is_active((uv_handle_t *)&ctx->retry))
    return;
  uv_timer_start(&ctx->retry, on_retry_timer, ctx->backoff, 0);
  ctx->backoff *= 2;
  if (ctx->backoff > TUSC_LOCK_REDIS_RETRY_MAX_MS)
    ctx->backoff = TUSC_LOCK_REDIS_RETRY_MAX_MS;
}

static void note_down(rctx_t *ctx, const char *errstr) {
  if (!ctx->down_logged && !ctx->closing) {
    ctx->down_logged = true;
    tusc_log_event(TUSC_LOG_ERROR, "RedisUnavailable", "error", errstr ? errstr : "disconnected",
                   NULL);
  }
}

static void note_up(rctx_t *ctx) {
  atomic_fetch_add(&ctx->lock->connects, 1);
  if (ctx->cmd_ready && ctx->sub_ready) {
    ctx->backoff = TUSC_LOCK_REDIS_RETRY_MIN_MS;
    if (ctx->down_logged) {
      ctx->down_logged = false;
      tusc_log_event(TUSC_LOG_INFO, "RedisConnected", NULL);
    }
  }
}

/* A holder is asked to let go: someone wants the lock, or its lease is in doubt. */
static void ask_holder(rreq_t *r) {
  tusc_lock_req_t *req = r->req;
  if (req != NULL && req->on_release_requested != NULL)
    req->on_release_requested(req);
}

/* The command connection is gone: every holder here may lose its lease. */
static void ask_all_holders(rctx_t *ctx) {
  rreq_t *r = ctx->head;
  while (r != NULL) {
    rreq_t *next = r->next; /* the callback may release r, nothing else */
    if (r->state == RS_HELD && !r->asked_lost) {
      r->asked_lost = true;
      atomic_fetch_add(&ctx->lock->lost, 1);
      ask_holder(r);
    }
    r = next;
  }
}

static void on_cmd_connect(const redisAsyncContext *ac, int status) {
  rctx_t *ctx = ac->data;
  if (ctx == NULL)
    return;
  if (status != REDIS_OK) {
    note_down(ctx, ac->errstr);
    ctx->cmd = NULL; /* hiredis frees it after this */
    ctx->cmd_ready = false;
    schedule_reconnect(ctx);
    return;
  }
  ctx->cmd_ready = true;
  note_up(ctx);
}

static void on_cmd_disconnect(const redisAsyncContext *ac, int status) {
  (void)status;
  rctx_t *ctx = ac->data;
  if (ctx == NULL)
    return;
  ctx->cmd = NULL;
  ctx->cmd_ready = false;
  if (ctx->closing) {
    ctx_maybe_free(ctx);
    return;
  }
  note_down(ctx, ac->errstr);
  ask_all_holders(ctx);
  schedule_reconnect(ctx);
}

static void on_sub_connect(const redisAsyncContext *ac, int status) {
  rctx_t *ctx = ac->data;
  if (ctx == NULL)
    return;
  if (status != REDIS_OK) {
    note_down(ctx, ac->errstr);
    ctx->sub = NULL;
    ctx->sub_ready = false;
    schedule_reconnect(ctx);
  }
}

static void on_sub_disconnect(const redisAsyncContext *ac, int status) {
  (void)status;
  rctx_t *ctx = ac->data;
  if (ctx == NULL)
    return;
  ctx->sub = NULL;
  ctx->sub_ready = false;
  if (ctx->closing) {
    ctx_maybe_free(ctx);
    return;
  }
  note_down(ctx, ac->errstr);
  schedule_reconnect(ctx);
}

/* AUTH and SELECT: a refusal is a configuration error; the connection is dropped and
 * tried again later (so a fixed ACL heals without a restart). */
static void on_setup_reply(redisAsyncContext *ac, void *reply, void *priv) {
  redisReply *rep = reply;
  if (rep != NULL && rep->type == REDIS_REPLY_ERROR) {
    note_down(priv, rep->str); /* once per outage, like a refused connection */
    redisAsyncDisconnect(ac);
  }
}

static redisAsyncContext *open_conn(rctx_t *ctx, redisConnectCallback *on_connect,
                                    redisDisconnectCallback *on_disconnect) {
  rlock_t *l = ctx->lock;
  redisAsyncContext *ac =
      l->path != NULL ? redisAsyncConnectUnix(l->path) : redisAsyncConnect(l->host, l->port);
  if (ac == NULL)
    return NULL;
  if (ac->err != 0) {
    note_down(ctx, ac->errstr);
    redisAsyncFree(ac);
    return NULL;
  }
  if (redisLibuvAttach(ac, ctx->loop) != REDIS_OK) {
    ac->ev.cleanup = NULL; /* the adapter's state was not made */
    redisAsyncFree(ac);
    return NULL;
  }
  ac->data = ctx;
  if (l->path == NULL)
    (void)redisEnableKeepAlive(&ac->c); /* notice a dead peer on an idle connection */
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  if (l->password != NULL) {
    if (l->user != NULL)
      redisAsyncCommand(ac, on_setup_reply, ctx, "AUTH %s %s", l->user, l->password);
    else
      redisAsyncCommand(ac, on_setup_reply, ctx, "AUTH %s", l->password);
  }
  return ac;
}

/* (Re)opens whichever connection is missing; a timer callback or a first use. */
static void ctx_connect(rctx_t *ctx) {
  rlock_t *l = ctx->lock;
  if (ctx->closing)
    return;
  if (ctx->cmd == NULL) {
    ctx->cmd = open_conn(ctx, on_cmd_connect, on_cmd_disconnect);
    if (ctx->cmd != NULL && l->db != 0)
      redisAsyncCommand(ctx->cmd, on_setup_reply, ctx, "SELECT %d", l->db);
  }
  if (ctx->sub == NULL) {
    ctx->sub = open_conn(ctx, on_sub_connect, on_sub_disconnect);
    if (ctx->sub != NULL &&
        redisAsyncCommand(ctx->sub, on_sub_message, ctx, "SUBSCRIBE %s", ctx->channel) !=
            REDIS_OK) {
      redisAsyncContext *ac = ctx->sub;
      ac->data = NULL;
      ctx->sub = NULL;
      redisAsyncFree(ac);
    }
  }
  if (ctx->cmd == NULL || ctx->sub == NULL)
    schedule_reconnect(ctx);
}

static void on_renew_tick(uv_timer_t *timer);

/* The context of `loop`, made (and connecting) on first use. NULL on failure. */
static rctx_t *ctx_get(rlock_t *l, uv_loop_t *loop) {
  uv_mutex_lock(&l->mutex);
  rctx_t *ctx = l->loops;
  while (ctx != NULL && ctx->loop != loop)
    ctx = ctx->next;
  uv_mutex_unlock(&l->mutex);
  if (ctx != NULL)
    return ctx;
  size_t plen = strlen(l->prefix);
  ctx = calloc(1, sizeof(*ctx) + plen + 3 + 2 * TOKEN_BYTES + 1);
  if (ctx == NULL)
    return NULL;
  memcpy(ctx->channel, l->prefix, plen);
  memcpy(ctx->channel + plen, "ch:", 3);
  if (random_hex(ctx->channel + plen + 3, TOKEN_BYTES) != 0) {
    free(ctx);
    return NULL;
  }
  ctx->lock = l;
  ctx->loop = loop;
  ctx->backoff = TUSC_LOCK_REDIS_RETRY_MIN_MS;
  uv_timer_init(loop, &ctx->retry);
  uv_timer_init(loop, &ctx->renew);
  ctx->retry.data = ctx->renew.data = ctx;
  ctx->open_timers = 2;
  uv_mutex_lock(&l->mutex);
  for (size_t i = 0; i < l->ndetached; i++)
    ctx->detached = ctx->detached || l->detached[i] == loop;
  ctx->next = l->loops;
  l->loops = ctx;
  uv_mutex_unlock(&l->mutex);
  ctx_connect(ctx);
  return ctx;
}

/* --- requests ---------------------------------------------------------------------------- */

static void list_remove(rreq_t *r) {
  rctx_t *ctx = r->ctx;
  if (r->prev != NULL)
    r->prev->next = r->next;
  else if (ctx->head == r)
    ctx->head = r->next;
  if (r->next != NULL)
    r->next->prev = r->prev;
  r->prev = r->next = NULL;
}

static void rreq_unref(rreq_t *r) {
  if (--r->refs > 0)
    return;
  rctx_t *ctx = r->ctx;
  free(r);
  ctx->nreqs--;
  ctx_close_if_idle(ctx);
}

static void on_rreq_timer_closed(uv_handle_t *handle) {
  rreq_unref(handle->data);
}

/* Detaches the req and lets the timer go; r stays until its commands are answered. */
static void drop_cmd(rctx_t *ctx);

static void on_drain_timeout(uv_timer_t *timer) {
  drop_cmd(timer->data);
}

/* A detached context whose reqs all ended may still wait for replies (a release): if
 * they do not come in time (a hung Redis), the connection is dropped, so the loop can
 * end. The renew timer serves: nothing is held. */
static void ctx_check_drain(rctx_t *ctx) {
  if (ctx->detached && !ctx->closing && ctx->head == NULL && ctx->nreqs > 0)
    uv_timer_start(&ctx->renew, on_drain_timeout, TUSC_LOCK_REDIS_REPLY_TIMEOUT_MS, 0);
}

static tusc_lock_req_t *rreq_detach(rreq_t *r) {
  tusc_lock_req_t *req = r->req;
  if (r->state == RS_HELD)
    r->ctx->nheld--;
  r->state = RS_DONE;
  r->req = NULL;
  req->impl = NULL;
  list_remove(r);
  uv_close((uv_handle_t *)&r->timer, on_rreq_timer_closed);
  ctx_check_drain(r->ctx);
  return req;
}

/* Ends r with `status` now (we are on the loop, not in the caller's stack). */
static void end_now(rreq_t *r, int status) {
  tusc_lock_cb cb = r->cb;
  if (status == TUSC_ELOCK_UNAVAILABLE)
    atomic_fetch_add(&r->ctx->lock->unavailable, 1);
  tusc_lock_req_t *req = rreq_detach(r);
  cb(req, status);
}

static void on_end_timer(uv_timer_t *timer) {
  rreq_t *r = timer->data;
  end_now(r, r->status);
}

/* Ends r a loop turn later (from acquire or cancel, which must not call back). */
static void end_later(rreq_t *r, int status) {
  r->state = RS_ENDING;
  r->status = status;
  uv_timer_start(&r->timer, on_end_timer, 0, 0);
}

static void on_release_reply(redisAsyncContext *ac, void *reply, void *priv) {
  (void)ac;
  (void)reply; /* 0: the lease had already ended; nothing else to do either way */
  rreq_unref(priv);
}

/* Gives the lock back (r detached or about to be). If that cannot be sent, the lease
 * runs out by itself. */
static void send_release(rreq_t *r) {
  rctx_t *ctx = r->ctx;
  if (ctx->cmd != NULL && redisAsyncCommand(ctx->cmd, on_release_reply, r, "EVAL %s 2 %s %s %s %s",
                                            RELEASE_LUA, r->key, r->wkey, r->value,
                                            r->id) == REDIS_OK)
    r->refs++;
}

static void on_acquire_reply(redisAsyncContext *ac, void *reply, void *priv);

/* Drops the command connection (a reply is overdue: Redis hangs, or a half-open TCP
 * connection after a partition): every command in flight ends with a NULL reply, and
 * the connection is made again. */
static void drop_cmd(rctx_t *ctx) {
  redisAsyncContext *ac = ctx->cmd;
  if (ac == NULL)
    return;
  bool connected = (ac->c.flags & REDIS_CONNECTED) != 0;
  if (!connected) { /* no disconnect callback will come */
    ac->data = NULL;
    ctx->cmd = NULL;
    ctx->cmd_ready = false;
  }
  note_down(ctx, "no reply in time");
  redisAsyncFree(ac); /* connected: on_cmd_disconnect does the rest */
  if (!connected)
    schedule_reconnect(ctx);
}

static void on_reply_timeout(uv_timer_t *timer) {
  rreq_t *r = timer->data;
  if (r->state != RS_ACQ)
    return;
  drop_cmd(r->ctx); /* r's reply comes now, as NULL: TUSC_ELOCK_UNAVAILABLE */
  if (r->state == RS_ACQ)
    end_now(r, TUSC_ELOCK_UNAVAILABLE);
}

/* Sends the acquire script; ask: publish a release request to the holder. */
static int send_acquire(rreq_t *r, bool ask) {
  rctx_t *ctx = r->ctx;
  rlock_t *l = ctx->lock;
  if (ctx->cmd == NULL)
    return TUSC_ELOCK_UNAVAILABLE;
  const char *mode = r->timeout_ms <= 0 ? "-" : ask ? "1" : "0";
  r->sent_ms = mono_ms();
  if (redisAsyncCommand(ctx->cmd, on_acquire_reply, r, "EVAL %s 2 %s %s %s %s %s %s %s %s",
                        ACQUIRE_LUA, r->key, r->wkey, r->value, l->lease_s, ctx->channel, mode,
                        r->id, l->waiters_ttl_s) != REDIS_OK)
    return TUSC_ELOCK_UNAVAILABLE;
  if (ask)
    atomic_fetch_add(&l->asks_sent, 1);
  r->refs++;
  r->state = RS_ACQ;
  uv_timer_start(&r->timer, on_reply_timeout, TUSC_LOCK_REDIS_REPLY_TIMEOUT_MS, 0);
  return 0;
}

static void on_wait_timer(uv_timer_t *timer) {
  rreq_t *r = timer->data;
  if (r->state != RS_WAIT)
    return;
  uint64_t now = uv_now(timer->loop);
  bool ask = now - r->last_ask >= TUSC_LOCK_REASK_MS;
  if (ask)
    r->last_ask = now;
  int rc = send_acquire(r, ask);
  if (rc != 0)
    end_now(r, rc);
}

static void hold(rreq_t *r) {
  rctx_t *ctx = r->ctx;
  rlock_t *l = ctx->lock;
  r->state = RS_HELD;
  r->valid_until = r->sent_ms + l->lease_ms - l->margin_ms;
  if (ctx->nheld++ == 0) /* (also ends a detached context's drain timer: a req lives) */
    uv_timer_start(&ctx->renew, on_renew_tick, l->renew_ms, l->renew_ms);
  atomic_fetch_add(&l->acquired, 1);
}

static void on_acquire_reply(redisAsyncContext *ac, void *reply, void *priv) {
  (void)ac;
  rreq_t *r = priv;
  redisReply *rep = reply;
  int got = -1;
  long long ttl = -1;
  if (rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
      rep->element[0]->type == REDIS_REPLY_INTEGER &&
      rep->element[1]->type == REDIS_REPLY_INTEGER) {
    got = rep->element[0]->integer == 1;
    ttl = rep->element[1]->integer;
  } else if (rep != NULL && rep->type == REDIS_REPLY_ERROR) {
    tusc_log_event(TUSC_LOG_ERROR, "RedisLockError", "error", rep->str, NULL);
  }
  if (r->state != RS_ACQ) {
    /* Cancelled meanwhile: a lock it got after all goes back at once. */
    if (got == 1)
      send_release(r);
    rreq_unref(r);
    return;
  }
  r->refs--; /* the req's timer still holds r */
  uv_timer_stop(&r->timer);
  if (got == 1) {
    hold(r);
    r->cb(r->req, 0);
    return;
  }
  if (got < 0) {
    end_now(r, TUSC_ELOCK_UNAVAILABLE);
    return;
  }
  uv_loop_t *loop = r->ctx->loop;
  uint64_t now = uv_now(loop);
  if (r->timeout_ms <= 0 || now >= r->deadline) {
    end_now(r, TUSC_ELOCK_TIMEOUT);
    return;
  }
  r->state = RS_WAIT;
  uint64_t due = r->last_ask + TUSC_LOCK_REASK_MS > now ? r->last_ask + TUSC_LOCK_REASK_MS - now : 0;
  if (ttl >= 0 && (uint64_t)ttl + 1 < due)
    due = (uint64_t)ttl + 1; /* the holder's lease ends first (a crashed holder) */
  if (r->deadline - now < due)
    due = r->deadline - now;
  uv_timer_start(&r->timer, on_wait_timer, due, 0);
  if (!r->waited) {
    r->waited = true;
    atomic_fetch_add(&r->ctx->lock->waits, 1);
    if (r->req->on_wait != NULL)
      r->req->on_wait(r->req);
  }
}

static void on_renew_reply(redisAsyncContext *ac, void *reply, void *priv) {
  (void)ac;
  rreq_t *r = priv;
  redisReply *rep = reply;
  r->renewing = false;
  if (r->state == RS_HELD && rep != NULL && rep->type == REDIS_REPLY_INTEGER) {
    rlock_t *l = r->ctx->lock;
    if (rep->integer == 1) {
      r->valid_until = r->renew_sent_ms + l->lease_ms - l->margin_ms;
    } else {
      r->valid_until = 0; /* someone else holds it now */
      if (!r->asked_lost) {
        r->asked_lost = true;
        atomic_fetch_add(&l->lost, 1);
        tusc_log_event(TUSC_LOG_WARN, "RedisLockLost", "id", r->id, NULL);
        rreq_unref(r);
        ask_holder(r); /* r lives on while the req does */
        return;
      }
    }
  }
  rreq_unref(r);
}

/* Every lease/3: renew each held lease; ask holders whose lease may end before the
 * next tick to let go while it still holds. */
static void on_renew_tick(uv_timer_t *timer) {
  rctx_t *ctx = timer->data;
  rlock_t *l = ctx->lock;
  if (ctx->nheld == 0) {
    uv_timer_stop(timer);
    return;
  }
  uint64_t now = mono_ms();
  /* A renewal unanswered for a whole period: the connection hangs; make it again. */
  for (rreq_t *r = ctx->head; r != NULL; r = r->next) {
    if (r->state == RS_HELD && r->renewing && now - r->renew_sent_ms >= l->renew_ms) {
      drop_cmd(ctx);
      break;
    }
  }
  for (rreq_t *r = ctx->head; r != NULL; r = r->next) {
    if (r->state != RS_HELD || r->renewing || ctx->cmd == NULL)
      continue;
    r->renew_sent_ms = now;
    if (redisAsyncCommand(ctx->cmd, on_renew_reply, r, "EVAL %s 1 %s %s %s", RENEW_LUA, r->key,
                          r->value, l->lease_s) == REDIS_OK) {
      r->renewing = true;
      r->refs++;
    }
  }
  rreq_t *r = ctx->head;
  while (r != NULL) {
    rreq_t *next = r->next;
    if (r->state == RS_HELD && !r->asked_lost && r->valid_until <= now + l->renew_ms) {
      r->asked_lost = true;
      atomic_fetch_add(&l->lost, 1);
      ask_holder(r);
    }
    r = next;
  }
}

/* "a<id>": a waiter asks the holder of <id> here; "r<id>": <id> was released. */
static void on_sub_message(redisAsyncContext *ac, void *reply, void *priv) {
  (void)ac;
  rctx_t *ctx = priv;
  redisReply *rep = reply;
  if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
      rep->element[0]->type != REDIS_REPLY_STRING)
    return;
  if (strcmp(rep->element[0]->str, "subscribe") == 0) {
    ctx->sub_ready = true;
    note_up(ctx);
    return;
  }
  redisReply *msg = rep->element[2];
  if (strcmp(rep->element[0]->str, "message") != 0 || msg->type != REDIS_REPLY_STRING ||
      msg->len < 2)
    return;
  const char *id = msg->str + 1;
  if (msg->str[0] == 'a') {
    for (rreq_t *r = ctx->head; r != NULL; r = r->next) {
      if (r->state == RS_HELD && strcmp(r->id, id) == 0) {
        atomic_fetch_add(&ctx->lock->asks_heard, 1);
        ask_holder(r); /* one holder per ID; r may be gone after this */
        return;
      }
    }
  } else if (msg->str[0] == 'r') {
    for (rreq_t *r = ctx->head; r != NULL; r = r->next) {
      if (r->state == RS_WAIT && strcmp(r->id, id) == 0) {
        atomic_fetch_add(&ctx->lock->wakeups, 1);
        uv_timer_start(&r->timer, on_wait_timer, 0, 0);
      }
    }
  }
}

/* --- the ops ------------------------------------------------------------------------------ */

static int redis_acquire(tusc_lock_t *base, uv_loop_t *loop, tusc_lock_req_t *req, const char *id,
                         int64_t timeout_ms, tusc_lock_cb cb) {
  rlock_t *l = (rlock_t *)base;
  rctx_t *ctx = ctx_get(l, loop);
  if (ctx == NULL)
    return TUSC_ENOMEM;
  size_t idlen = strlen(id), plen = strlen(l->prefix), clen = strlen(ctx->channel);
  size_t klen = plen + 5 + idlen + 3, wlen = plen + 8 + idlen + 3, vlen = clen + 1 + 2 * TOKEN_BYTES + 1;
  rreq_t *r = calloc(1, sizeof(*r) + idlen + 1 + klen + wlen + vlen);
  if (r == NULL)
    return TUSC_ENOMEM;
  memcpy(r->id, id, idlen + 1);
  r->key = r->id + idlen + 1;
  r->wkey = r->key + klen;
  r->value = r->wkey + wlen;
  snprintf(r->key, klen, "%slock:{%s}", l->prefix, id);
  snprintf(r->wkey, wlen, "%swaiters:{%s}", l->prefix, id);
  snprintf(r->value, vlen, "%s ", ctx->channel);
  if (random_hex(r->value + clen + 1, TOKEN_BYTES) != 0) {
    free(r);
    return TUSC_ENOMEM;
  }
  r->ctx = ctx;
  r->req = req;
  r->cb = cb;
  r->timeout_ms = timeout_ms;
  uv_timer_init(loop, &r->timer);
  r->timer.data = r;
  r->refs = 1;
  ctx->nreqs++;
  r->next = ctx->head;
  if (ctx->head != NULL)
    ctx->head->prev = r;
  ctx->head = r;
  req->impl = r;
  uint64_t now = uv_now(loop);
  r->deadline = now + (timeout_ms > 0 ? (uint64_t)timeout_ms : 0);
  r->last_ask = now;
  int rc = send_acquire(r, timeout_ms > 0);
  if (rc != 0)
    end_later(r, rc);
  return 0;
}

static int redis_cancel(tusc_lock_req_t *req) {
  rreq_t *r = req->impl;
  switch (r->state) {
  case RS_ACQ: /* the reply finds it ended and gives back what it got */
  case RS_WAIT:
    end_later(r, UV_ECANCELED);
    return 0;
  case RS_ENDING:
    r->status = UV_ECANCELED;
    return 0;
  case RS_HELD:
  case RS_DONE:
    break;
  }
  return UV_EINVAL;
}

static void redis_release(tusc_lock_req_t *req) {
  rreq_t *r = req->impl;
  if (r->state != RS_HELD)
    return;
  send_release(r);
  rreq_detach(r);
}

static int redis_check(tusc_lock_req_t *req) {
  rreq_t *r = req->impl;
  if (r->state != RS_HELD)
    return UV_EINVAL;
  return mono_ms() < r->valid_until ? 0 : TUSC_ELOCK_LOST;
}

static void redis_detach(tusc_lock_t *base, uv_loop_t *loop) {
  rlock_t *l = (rlock_t *)base;
  uv_mutex_lock(&l->mutex);
  bool known = false;
  for (size_t i = 0; i < l->ndetached; i++)
    known = known || l->detached[i] == loop;
  if (!known && l->ndetached == l->detached_cap) {
    size_t cap = l->detached_cap * 2 + 8;
    uv_loop_t **grown = realloc(l->detached, cap * sizeof(*grown));
    if (grown != NULL) { /* else: a context made later on this loop stays open */
      l->detached = grown;
      l->detached_cap = cap;
    }
  }
  if (!known && l->ndetached < l->detached_cap)
    l->detached[l->ndetached++] = loop;
  rctx_t *ctx = l->loops;
  while (ctx != NULL && ctx->loop != loop)
    ctx = ctx->next;
  uv_mutex_unlock(&l->mutex);
  if (ctx == NULL)
    return;
  ctx->detached = true;
  ctx_close_if_idle(ctx);
  if (!ctx->closing)
    ctx_check_drain(ctx);
}

/* Contexts still attached here are a caller's bug (see lock.h); they are left alone. */
static void redis_free(tusc_lock_t *base) {
  rlock_t *l = (rlock_t *)base;
  free(l->host);
  free(l->path);
  free(l->user);
  free(l->password);
  free(l->prefix);
  free(l->detached);
  uv_mutex_destroy(&l->mutex);
  free(l);
}

static const tusc_lock_ops_t redis_ops = {
    .acquire = redis_acquire,
    .try_acquire = NULL,
    .cancel = redis_cancel,
    .release = redis_release,
    .free = redis_free,
    .check = redis_check,
    .detach = redis_detach,
};

/* The numeric address of `host`, so that no loop ever waits for DNS. */
static int resolve(const char *host, char **out, char *err, size_t errlen) {
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
  struct addrinfo *res = NULL;
  int rc = getaddrinfo(host, NULL, &hints, &res);
  if (rc != 0 || res == NULL) {
    snprintf(err, errlen, "cannot resolve Redis host %s: %s", host, gai_strerror(rc));
    return UV_EAI_NONAME;
  }
  char buf[NI_MAXHOST];
  rc = getnameinfo(res->ai_addr, res->ai_addrlen, buf, sizeof(buf), NULL, 0, NI_NUMERICHOST);
  freeaddrinfo(res);
  if (rc != 0) {
    snprintf(err, errlen, "cannot resolve Redis host %s: %s", host, gai_strerror(rc));
    return UV_EAI_NONAME;
  }
  *out = strdup(buf);
  return *out != NULL ? 0 : TUSC_ENOMEM;
}

int tusc_lock_redis_new(const tusc_lock_redis_options_t *opts, tusc_lock_t **out, char *err,
                        size_t errlen) {
  url_parts_t u;
  int rc = url_parse(opts->url, &u, err, errlen);
  if (rc != 0)
    return rc;
  int64_t lease = opts->lease_ms > 0 ? opts->lease_ms : TUSC_LOCK_REDIS_LEASE_MS;
  if (lease < 30) {
    snprintf(err, errlen, "the Redis lock lease must be at least 30ms");
    url_parts_free(&u);
    return TUSC_EINVALID_ARGUMENT;
  }
  rlock_t *l = calloc(1, sizeof(*l));
  if (l == NULL || uv_mutex_init(&l->mutex) != 0) {
    free(l);
    url_parts_free(&u);
    return TUSC_ENOMEM;
  }
  l->base.ops = &redis_ops;
  l->path = u.path;
  l->port = u.port;
  l->user = u.user;
  l->password = u.password;
  l->db = u.db;
  l->prefix = strdup(opts->prefix != NULL ? opts->prefix : DEFAULT_PREFIX);
  rc = l->prefix == NULL ? TUSC_ENOMEM : 0;
  if (rc == 0 && u.host != NULL)
    rc = resolve(u.host, &l->host, err, errlen);
  free(u.host);
  if (rc != 0) {
    redis_free(&l->base);
    return rc;
  }
  l->lease_ms = (uint64_t)lease;
  l->margin_ms = l->lease_ms / 10;
  l->renew_ms = l->lease_ms / 3;
  snprintf(l->lease_s, sizeof(l->lease_s), "%llu", (unsigned long long)l->lease_ms);
  snprintf(l->waiters_ttl_s, sizeof(l->waiters_ttl_s), "%llu",
           (unsigned long long)(2 * l->lease_ms + 2 * TUSC_LOCK_REASK_MS));
  *out = &l->base;
  return 0;
}

void tusc_lock_redis_stats(tusc_lock_t *lock, tusc_lock_redis_stats_t *out) {
  rlock_t *l = (rlock_t *)lock;
  out->acquired = atomic_load(&l->acquired);
  out->waits = atomic_load(&l->waits);
  out->asks_sent = atomic_load(&l->asks_sent);
  out->asks_heard = atomic_load(&l->asks_heard);
  out->wakeups = atomic_load(&l->wakeups);
  out->lost = atomic_load(&l->lost);
  out->connects = atomic_load(&l->connects);
  out->unavailable = atomic_load(&l->unavailable);
}

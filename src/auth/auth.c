/*
 * auth — request authentication, host allow list and proxy trust (see auth.h).
 *
 * Credentials snapshot: auth->creds is replaced under auth->lock; every check takes a
 * reference under the same lock and drops it when done, so a reload never frees a
 * table a thread-pool job is still reading.
 *
 * Success cache: bcrypt at cost 10-12 takes 50-300 ms of a CPU, and a tus client
 * sends a request per chunk, so recent successes are remembered for CACHE_TTL_MS.
 * Entries hold SHA-256(process salt || generation || user || 0 || password), never
 * the password, and are bounded (CACHE_SIZE, oldest replaced). Failures are never
 * cached: a wrong password always costs a full verification.
 *
 * Client table: per client address (keyed by a salted hash, so the table holds no
 * addresses and its buckets cannot be aimed at) the checks waiting or hashing and a
 * failure count. The count is kept in units of FAIL_UNIT per failure and loses
 * TUSC_AUTH_FAIL_LIMIT units per millisecond, which is exactly "FAIL_LIMIT failures
 * per FAIL_WINDOW_MS" without ever truncating a partial decay. An entry with checks in
 * flight is never replaced, so a pending count always finds its entry again.
 */
#include "auth/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth/cidr.h"
#include "auth/htpasswd.h"
#include "auth/jwt.h"
#include "common/base64.h"
#include "common/error.h"
#include "common/log.h"
#include "common/timeutil.h"

#define CACHE_SIZE 128
#define CACHE_TTL_MS (5 * 60 * 1000)
#define BASIC_MAX 4096    /* bytes of a decoded user:password */
#define VERIFY_PER_LOOP 1 /* concurrent password hashings per worker loop */
#define MAX_LOOPS 256     /* loops beyond this many hash without a queue */
#define CLIENT_BUCKETS 1024
#define CLIENT_WAYS 4
#define FAIL_UNIT ((uint64_t)TUSC_AUTH_FAIL_WINDOW_MS)
/* Refuse once one more failure would exceed FAIL_LIMIT within the window. */
#define FAIL_THRESHOLD ((uint64_t)(TUSC_AUTH_FAIL_LIMIT - 1) * FAIL_UNIT)

struct tusc_auth_creds_s {
  atomic_int refs;
  tusc_htpasswd_t *htpasswd;
  tusc_jwt_key_t *jwt;
};
typedef struct tusc_auth_creds_s creds_t;

/* Password checks of one loop: how many hash right now, and who waits. */
struct loop_queue {
  uv_loop_t *loop;
  unsigned inflight;
  size_t waiting;
  tusc_auth_request_t *head, *tail;
};

struct client_entry {
  uint64_t key;        /* 0 = free */
  uint64_t stamp_ms;   /* when fail_units was last decayed */
  uint64_t fail_units; /* FAIL_UNIT per failed check, decaying */
  uint32_t pending;    /* checks waiting or hashing */
};

struct cache_entry {
  unsigned char key[32];
  uint64_t expires_ms;
  bool used;
};

struct tusc_auth_s {
  const tusc_config_t *cfg;
  enum tusc_jwt_alg jwt_alg;
  uv_mutex_t lock; /* creds pointer, generation, cache */
  creds_t *creds;
  uint64_t generation;
  unsigned char salt[32];
  struct cache_entry cache[CACHE_SIZE];
  size_t cache_next;
  char *challenge_basic;
  char *challenge_bearer;
  char **hosts;
  size_t host_count;
  tusc_cidr_list_t proxies;
  bool proxy_list;
  struct loop_queue queues[MAX_LOOPS]; /* under lock */
  size_t queue_count;
  struct client_entry clients[CLIENT_BUCKETS * CLIENT_WAYS]; /* under lock */
};

/* --- credentials snapshot ---------------------------------------------------------- */

static void creds_unref(creds_t *c) {
  if (c == NULL || atomic_fetch_sub(&c->refs, 1) != 1)
    return;
  tusc_htpasswd_free(c->htpasswd);
  tusc_jwt_key_free(c->jwt);
  free(c);
}

static creds_t *creds_get(tusc_auth_t *auth) {
  uv_mutex_lock(&auth->lock);
  creds_t *c = auth->creds;
  if (c != NULL)
    atomic_fetch_add(&c->refs, 1);
  uv_mutex_unlock(&auth->lock);
  return c;
}

static int creds_load(const tusc_auth_t *auth, creds_t **out) {
  const tusc_config_t *cfg = auth->cfg;
  char err[512];
  int rc = 0;
  creds_t *c = calloc(1, sizeof(*c));
  if (c == NULL)
    return TUSC_ENOMEM;
  atomic_init(&c->refs, 1);
  if (cfg->auth_htpasswd != NULL) {
    rc = tusc_htpasswd_load(cfg->auth_htpasswd, &c->htpasswd, err, sizeof(err));
    if (rc != 0) {
      tusc_log_msg(TUSC_LOG_ERROR, "-auth-htpasswd: %s", err[0] ? err : tusc_strerror(rc));
      goto fail;
    }
    if (tusc_htpasswd_count(c->htpasswd) == 0)
      tusc_log_msg(TUSC_LOG_WARN, "-auth-htpasswd %s lists no users: nobody can log in",
                   cfg->auth_htpasswd);
  }
  if (cfg->auth_jwt_key != NULL) {
    rc = tusc_jwt_key_load(cfg->auth_jwt_key, auth->jwt_alg, &c->jwt, err, sizeof(err));
    if (rc != 0) {
      tusc_log_msg(TUSC_LOG_ERROR, "-auth-jwt-key: %s", err[0] ? err : tusc_strerror(rc));
      goto fail;
    }
  }
  *out = c;
  return 0;
fail:
  creds_unref(c);
  return rc;
}

/* --- set-up ---------------------------------------------------------------------- */

/* `Scheme realm="…"` with the realm's quotes and backslashes escaped. */
static char *make_challenge(const char *scheme, const char *realm, const char *extra) {
  size_t rl = strlen(realm);
  size_t cap = strlen(scheme) + 2 * rl + strlen(extra) + 16;
  char *s = malloc(cap);
  if (s == NULL)
    return NULL;
  size_t o = (size_t)snprintf(s, cap, "%s realm=\"", scheme);
  for (size_t i = 0; i < rl; i++) {
    unsigned char ch = (unsigned char)realm[i];
    if (ch < 0x20 || ch == 0x7f)
      continue; /* never let a realm split the header */
    if (ch == '"' || ch == '\\')
      s[o++] = '\\';
    s[o++] = (char)ch;
  }
  snprintf(s + o, cap - o, "\"%s", extra);
  return s;
}

/* Length of the host name in a Host value or list item: without the port (after ']'
 * for IPv6 literals, else after the first ':') and without a trailing dot; 0 when
 * unusable. */
static size_t host_name_len(const char *host, size_t len) {
  size_t n = len;
  if (len > 0 && host[0] == '[') {
    const char *close = memchr(host, ']', len);
    if (close == NULL)
      return 0;
    n = (size_t)(close - host) + 1;
  } else {
    const char *colon = memchr(host, ':', len);
    if (colon != NULL)
      n = (size_t)(colon - host);
  }
  if (n > 0 && host[n - 1] == '.')
    n--; /* "example.com." names the same host */
  return n;
}

static int parse_hosts(tusc_auth_t *auth, const char *list) {
  const char *p = list;
  while (*p != '\0') {
    const char *end = strchr(p, ',');
    if (end == NULL)
      end = p + strlen(p);
    const char *a = p, *b = end;
    while (a < b && (*a == ' ' || *a == '\t'))
      a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
      b--;
    size_t n = a < b ? host_name_len(a, (size_t)(b - a)) : 0;
    if (n > 0) {
      char **h = realloc(auth->hosts, (auth->host_count + 1) * sizeof(*h));
      if (h == NULL)
        return TUSC_ENOMEM;
      auth->hosts = h;
      h[auth->host_count] = strndup(a, n);
      if (h[auth->host_count] == NULL)
        return TUSC_ENOMEM;
      auth->host_count++;
    }
    p = *end == ',' ? end + 1 : end;
  }
  if (auth->host_count == 0) {
    tusc_log_msg(TUSC_LOG_ERROR, "-allowed-hosts lists no host names");
    return TUSC_EINVALID_ARGUMENT;
  }
  return 0;
}

int tusc_auth_new(const tusc_config_t *cfg, tusc_auth_t **out) {
  int rc;
  tusc_auth_t *auth = calloc(1, sizeof(*auth));
  if (auth == NULL)
    return TUSC_ENOMEM;
  auth->cfg = cfg;
  if (uv_mutex_init(&auth->lock) != 0) {
    free(auth);
    return TUSC_ENOMEM;
  }
  if (RAND_bytes(auth->salt, sizeof(auth->salt)) != 1) {
    rc = TUSC_EINTERNAL;
    goto fail;
  }
  const char *alg = cfg->auth_jwt_alg != NULL ? cfg->auth_jwt_alg : "HS256";
  if (tusc_jwt_alg_parse(alg, &auth->jwt_alg) != 0) {
    tusc_log_msg(TUSC_LOG_ERROR, "-auth-jwt-alg %s is not supported", alg);
    rc = TUSC_EINVALID_ARGUMENT;
    goto fail;
  }
  if ((rc = creds_load(auth, &auth->creds)) != 0)
    goto fail;
  const char *realm = cfg->auth_realm != NULL ? cfg->auth_realm : "tusc";
  auth->challenge_basic = make_challenge("Basic", realm, ", charset=\"UTF-8\"");
  auth->challenge_bearer = make_challenge("Bearer", realm, "");
  if (auth->challenge_basic == NULL || auth->challenge_bearer == NULL) {
    rc = TUSC_ENOMEM;
    goto fail;
  }
  if (cfg->allowed_hosts != NULL && (rc = parse_hosts(auth, cfg->allowed_hosts)) != 0)
    goto fail;
  if (cfg->trusted_proxies != NULL) {
    const char *bad = NULL;
    size_t bad_len = 0;
    rc = tusc_cidr_list_parse(cfg->trusted_proxies, &auth->proxies, &bad, &bad_len);
    if (rc != 0) {
      if (rc == TUSC_EINVALID_ARGUMENT)
        tusc_log_msg(TUSC_LOG_ERROR,
                     "-trusted-proxies: \"%.*s\" is not an address or CIDR range "
                     "(like 10.0.0.0/8 or fd00::/8)",
                     (int)(bad_len > 100 ? 100 : bad_len), bad);
      goto fail;
    }
    auth->proxy_list = true;
    if (auth->proxies.count == 0)
      tusc_log_msg(TUSC_LOG_WARN,
                   "-trusted-proxies is empty: no peer's forwarding headers are believed");
  } else if (cfg->behind_proxy) {
    tusc_log_msg(TUSC_LOG_WARN,
                 "-behind-proxy without -trusted-proxies: X-Forwarded-*/Forwarded headers "
                 "are believed from every client; list your proxies with -trusted-proxies");
  }
  *out = auth;
  return 0;
fail:
  tusc_auth_free(auth);
  return rc;
}

void tusc_auth_free(tusc_auth_t *auth) {
  if (auth == NULL)
    return;
  creds_unref(auth->creds);
  free(auth->challenge_basic);
  free(auth->challenge_bearer);
  for (size_t i = 0; i < auth->host_count; i++)
    free(auth->hosts[i]);
  free(auth->hosts);
  tusc_cidr_list_dispose(&auth->proxies);
  OPENSSL_cleanse(auth->cache, sizeof(auth->cache));
  uv_mutex_destroy(&auth->lock);
  free(auth);
}

int tusc_auth_reload(tusc_auth_t *auth) {
  if (auth == NULL || (auth->cfg->auth_htpasswd == NULL && auth->cfg->auth_jwt_key == NULL))
    return 0;
  creds_t *fresh = NULL;
  int rc = creds_load(auth, &fresh);
  if (rc != 0) {
    tusc_log_msg(TUSC_LOG_ERROR, "credentials not reloaded; the previous ones stay in force");
    return rc;
  }
  uv_mutex_lock(&auth->lock);
  creds_t *old = auth->creds;
  auth->creds = fresh;
  auth->generation++;
  memset(auth->cache, 0, sizeof(auth->cache));
  uv_mutex_unlock(&auth->lock);
  creds_unref(old);
  tusc_log_msg(TUSC_LOG_INFO, "credentials reloaded");
  return 0;
}

bool tusc_auth_required(const tusc_auth_t *auth) {
  return auth != NULL && (auth->cfg->auth_htpasswd != NULL || auth->cfg->auth_jwt_key != NULL);
}

size_t tusc_auth_challenges(const tusc_auth_t *auth, const char *out[2]) {
  size_t n = 0;
  if (auth == NULL)
    return 0;
  if (auth->cfg->auth_htpasswd != NULL)
    out[n++] = auth->challenge_basic;
  if (auth->cfg->auth_jwt_key != NULL)
    out[n++] = auth->challenge_bearer;
  return n;
}

/* --- success cache --------------------------------------------------------------- */

static bool cache_key(const tusc_auth_t *auth, uint64_t generation, const char *user,
                      const char *password, unsigned char key[32]) {
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  unsigned len = 0;
  bool ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
            EVP_DigestUpdate(md, auth->salt, sizeof(auth->salt)) == 1 &&
            EVP_DigestUpdate(md, &generation, sizeof(generation)) == 1 &&
            EVP_DigestUpdate(md, user, strlen(user) + 1) == 1 &&
            EVP_DigestUpdate(md, password, strlen(password)) == 1 &&
            EVP_DigestFinal_ex(md, key, &len) == 1 && len == 32;
  EVP_MD_CTX_free(md);
  return ok;
}

static bool cache_hit(tusc_auth_t *auth, const char *user, const char *password) {
  unsigned char key[32];
  bool hit = false;
  uv_mutex_lock(&auth->lock);
  uint64_t now = tusc_now_ms();
  if (cache_key(auth, auth->generation, user, password, key)) {
    for (size_t i = 0; i < CACHE_SIZE && !hit; i++) {
      struct cache_entry *e = &auth->cache[i];
      if (e->used && e->expires_ms > now && CRYPTO_memcmp(e->key, key, sizeof(key)) == 0)
        hit = true;
    }
  }
  uv_mutex_unlock(&auth->lock);
  return hit;
}

static void cache_put(tusc_auth_t *auth, creds_t *verified_with, const char *user,
                      const char *password) {
  unsigned char key[32];
  uv_mutex_lock(&auth->lock);
  /* A reload during verification: the answer belongs to the old file; do not keep it. */
  if (auth->creds == verified_with && cache_key(auth, auth->generation, user, password, key)) {
    struct cache_entry *e = &auth->cache[auth->cache_next];
    auth->cache_next = (auth->cache_next + 1) % CACHE_SIZE;
    memcpy(e->key, key, sizeof(key));
    e->expires_ms = tusc_now_ms() + CACHE_TTL_MS;
    e->used = true;
  }
  uv_mutex_unlock(&auth->lock);
}

/* --- client table ---------------------------------------------------------------- */

static uint64_t client_key(const tusc_auth_t *auth, const char *client) {
  unsigned char d[32];
  unsigned len = 0;
  uint64_t key = 0;
  if (client == NULL)
    client = "";
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  if (md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
      EVP_DigestUpdate(md, auth->salt, sizeof(auth->salt)) == 1 &&
      EVP_DigestUpdate(md, client, strlen(client)) == 1 && EVP_DigestFinal_ex(md, d, &len) == 1)
    memcpy(&key, d, sizeof(key));
  EVP_MD_CTX_free(md);
  return key | 1; /* never 0, the free mark */
}

static void client_decay(struct client_entry *e, uint64_t now) {
  if (now <= e->stamp_ms)
    return;
  uint64_t d = (now - e->stamp_ms) * TUSC_AUTH_FAIL_LIMIT;
  e->fail_units = d >= e->fail_units ? 0 : e->fail_units - d;
  e->stamp_ms = now;
}

/* The entry of `key` (lock held). With `create` an absent one takes a free way or the
 * one with the fewest failures and nothing in flight; NULL when there is none. */
static struct client_entry *client_find(tusc_auth_t *auth, uint64_t key, uint64_t now,
                                        bool create) {
  struct client_entry *b = &auth->clients[(key % CLIENT_BUCKETS) * CLIENT_WAYS];
  struct client_entry *victim = NULL;
  for (size_t i = 0; i < CLIENT_WAYS; i++) {
    struct client_entry *e = &b[i];
    client_decay(e, now);
    if (e->key == key)
      return e;
    if (e->pending > 0)
      continue;
    if (victim == NULL || e->key == 0 || (victim->key != 0 && e->fail_units < victim->fail_units))
      victim = e;
  }
  if (!create || victim == NULL)
    return NULL;
  *victim = (struct client_entry){.key = key, .stamp_ms = now};
  return victim;
}

/* A check of this client ended (lock held); `failed`: a wrong password was hashed. */
static void client_release(tusc_auth_t *auth, uint64_t key, bool failed) {
  struct client_entry *e = client_find(auth, key, tusc_now_ms(), false);
  if (e == NULL)
    return;
  if (e->pending > 0)
    e->pending--;
  if (failed)
    e->fail_units += FAIL_UNIT;
}

/* --- checks ---------------------------------------------------------------------- */

static void areq_clear(tusc_auth_request_t *areq) {
  if (areq->password != NULL) {
    OPENSSL_cleanse(areq->password, strlen(areq->password));
    free(areq->password);
    areq->password = NULL;
  }
  free(areq->user);
  areq->user = NULL;
  creds_unref(areq->creds);
  areq->creds = NULL;
}

static void on_verify(uv_work_t *work) {
  tusc_auth_request_t *areq = work->data;
  areq->result = tusc_htpasswd_verify(areq->creds->htpasswd, areq->user, areq->password);
}

/* The loop's queue (lock held); NULL when there are more loops than slots. */
static struct loop_queue *queue_of(tusc_auth_t *auth, uv_loop_t *loop) {
  for (size_t i = 0; i < auth->queue_count; i++)
    if (auth->queues[i].loop == loop)
      return &auth->queues[i];
  if (auth->queue_count == MAX_LOOPS)
    return NULL;
  struct loop_queue *q = &auth->queues[auth->queue_count++];
  q->loop = loop;
  return q;
}

static void on_verified(uv_work_t *work, int status);

/* Hands the finished check's hashing slot to the next waiting one of the same loop.
 * Waiting checks the cache now answers (a burst for the same user) finish here. */
static void run_next(tusc_auth_t *auth, uv_loop_t *loop) {
  for (;;) {
    uv_mutex_lock(&auth->lock);
    struct loop_queue *q = queue_of(auth, loop);
    tusc_auth_request_t *next = NULL;
    if (q != NULL) {
      next = q->head;
      if (next != NULL) {
        q->head = next->next_waiting;
        if (q->head == NULL)
          q->tail = NULL;
        next->next_waiting = NULL;
        next->waiting = false;
        q->waiting--;
      } else if (q->inflight > 0) {
        q->inflight--;
      }
    }
    uv_mutex_unlock(&auth->lock);
    if (next == NULL)
      return;
    if (cache_hit(auth, next->user, next->password)) {
      char *principal = next->user;
      next->user = NULL;
      uv_mutex_lock(&auth->lock);
      client_release(auth, next->client_key, false);
      uv_mutex_unlock(&auth->lock);
      areq_clear(next);
      next->cb(next, 0, principal);
      continue;
    }
    if (uv_queue_work(loop, &next->work, on_verify, on_verified) == 0)
      return;
    uv_mutex_lock(&auth->lock);
    client_release(auth, next->client_key, false);
    uv_mutex_unlock(&auth->lock);
    areq_clear(next);
    next->cb(next, TUSC_EINTERNAL, NULL);
  }
}

/* Seconds until a throttled client may try again (at least 1). */
static unsigned retry_after(const struct client_entry *e) {
  uint64_t excess = e->fail_units > FAIL_THRESHOLD ? e->fail_units - FAIL_THRESHOLD : 0;
  uint64_t ms = (excess + TUSC_AUTH_FAIL_LIMIT - 1) / TUSC_AUTH_FAIL_LIMIT;
  uint64_t s = (ms + 999) / 1000;
  return s < 1 ? 1 : s > 3600 ? 3600 : (unsigned)s;
}

/* Starts hashing now, or queues the check behind the loop's running one; refuses it
 * when a bound is reached (see auth.h). */
static int start_verify(tusc_auth_request_t *areq) {
  tusc_auth_t *auth = areq->auth;
  int rc = 0;
  uv_mutex_lock(&auth->lock);
  struct client_entry *e = client_find(auth, areq->client_key, tusc_now_ms(), true);
  struct loop_queue *q = queue_of(auth, areq->loop);
  bool must_wait = q != NULL && q->inflight >= VERIFY_PER_LOOP;
  areq->retry_after_s = 1;
  if (e == NULL) {
    rc = TUSC_EAUTH_BUSY; /* every entry of its bucket has checks in flight */
  } else if (e->fail_units > FAIL_THRESHOLD) {
    areq->retry_after_s = retry_after(e);
    rc = TUSC_EAUTH_THROTTLED;
  } else if (e->pending >= TUSC_AUTH_CLIENT_PENDING) {
    rc = TUSC_EAUTH_THROTTLED;
  } else if (must_wait && q->waiting >= TUSC_AUTH_QUEUE_MAX) {
    rc = TUSC_EAUTH_BUSY;
  }
  if (rc != 0) {
    uv_mutex_unlock(&auth->lock);
    return rc;
  }
  e->pending++;
  if (must_wait) {
    if (q->tail != NULL)
      q->tail->next_waiting = areq;
    else
      q->head = areq;
    q->tail = areq;
    q->waiting++;
    areq->waiting = true;
    uv_mutex_unlock(&auth->lock);
    return 0;
  }
  if (q != NULL)
    q->inflight++;
  uv_mutex_unlock(&auth->lock);
  if (uv_queue_work(areq->loop, &areq->work, on_verify, on_verified) != 0) {
    uv_mutex_lock(&auth->lock);
    if (q != NULL)
      q->inflight--;
    client_release(auth, areq->client_key, false);
    uv_mutex_unlock(&auth->lock);
    return TUSC_EINTERNAL;
  }
  return 0;
}

int tusc_auth_cancel(tusc_auth_request_t *areq) {
  tusc_auth_t *auth = areq->auth;
  uv_mutex_lock(&auth->lock);
  struct loop_queue *q = areq->waiting ? queue_of(auth, areq->loop) : NULL;
  if (q == NULL) {
    uv_mutex_unlock(&auth->lock);
    return UV_EBUSY;
  }
  tusc_auth_request_t *prev = NULL;
  for (tusc_auth_request_t *w = q->head; w != NULL && w != areq; w = w->next_waiting)
    prev = w;
  if (prev != NULL)
    prev->next_waiting = areq->next_waiting;
  else
    q->head = areq->next_waiting;
  if (q->tail == areq)
    q->tail = prev;
  areq->next_waiting = NULL;
  areq->waiting = false;
  q->waiting--;
  client_release(auth, areq->client_key, false);
  uv_mutex_unlock(&auth->lock);
  areq_clear(areq);
  return 0;
}

static void on_verified(uv_work_t *work, int status) {
  tusc_auth_request_t *areq = work->data;
  tusc_auth_t *auth = areq->auth;
  uv_loop_t *loop = areq->loop;
  int rc = status < 0 ? status : areq->result;
  char *principal = NULL;
  uv_mutex_lock(&auth->lock);
  client_release(auth, areq->client_key, rc == TUSC_EUNAUTHORIZED);
  uv_mutex_unlock(&auth->lock);
  if (rc == 0) {
    cache_put(areq->auth, areq->creds, areq->user, areq->password);
    principal = areq->user;
    areq->user = NULL;
  } else {
    tusc_log_msg(TUSC_LOG_INFO, "authentication failed for user %s", areq->user);
  }
  areq_clear(areq);
  /* areq may be gone once its callback returned. */
  areq->cb(areq, rc, principal);
  run_next(auth, loop);
}

static bool scheme_is(const char *v, size_t len, const char *scheme, size_t *rest) {
  size_t n = strlen(scheme);
  if (len <= n || strncasecmp(v, scheme, n) != 0 || v[n] != ' ')
    return false;
  size_t i = n;
  while (i < len && v[i] == ' ')
    i++;
  *rest = i;
  return true;
}

static int check_basic(tusc_auth_t *auth, uv_loop_t *loop, const char *client, const char *b64,
                       size_t len, tusc_auth_request_t *areq, tusc_auth_done_cb cb,
                       char **principal) {
  if (len == 0 || len > TUSC_BASE64_ENCODED_SIZE(BASIC_MAX))
    return TUSC_EUNAUTHORIZED;
  unsigned char *raw = malloc(TUSC_BASE64_DECODED_MAX(len) + 1);
  if (raw == NULL)
    return TUSC_ENOMEM;
  int rc = TUSC_EUNAUTHORIZED;
  long n = tusc_base64_decode(b64, len, raw);
  if (n <= 0 || memchr(raw, '\0', (size_t)n) != NULL)
    goto out;
  raw[n] = '\0';
  char *colon = memchr(raw, ':', (size_t)n);
  if (colon == NULL || colon == (char *)raw)
    goto out;
  *colon = '\0';
  const char *user = (const char *)raw, *password = colon + 1;
  creds_t *creds = creds_get(auth);
  if (creds == NULL || creds->htpasswd == NULL) {
    creds_unref(creds);
    goto out;
  }
  if (cache_hit(auth, user, password)) {
    creds_unref(creds);
    *principal = strdup(user);
    rc = *principal != NULL ? 0 : TUSC_ENOMEM;
    goto out;
  }
  areq->auth = auth;
  areq->creds = creds;
  areq->user = strdup(user);
  areq->password = strdup(password);
  areq->cb = cb;
  areq->result = TUSC_EUNAUTHORIZED;
  areq->work.data = areq;
  areq->loop = loop;
  areq->next_waiting = NULL;
  areq->waiting = false;
  areq->client_key = client_key(auth, client);
  if (areq->user == NULL || areq->password == NULL) {
    areq_clear(areq);
    rc = TUSC_ENOMEM;
    goto out;
  }
  if ((rc = start_verify(areq)) != 0) {
    areq_clear(areq);
    goto out;
  }
  rc = TUSC_AUTH_PENDING;
out:
  OPENSSL_cleanse(raw, TUSC_BASE64_DECODED_MAX(len) + 1);
  free(raw);
  return rc;
}

static int check_bearer(tusc_auth_t *auth, const char *token, size_t len, char **principal) {
  creds_t *creds = creds_get(auth);
  if (creds == NULL || creds->jwt == NULL) {
    creds_unref(creds);
    return TUSC_EUNAUTHORIZED;
  }
  tusc_jwt_opts_t opts = {
      .audience = auth->cfg->auth_jwt_audience,
      .issuer = auth->cfg->auth_jwt_issuer,
      .now = (int64_t)time(NULL),
      .skew_s = TUSC_JWT_SKEW_S,
  };
  const char *why = NULL;
  int rc = tusc_jwt_verify(creds->jwt, token, len, &opts, principal, &why);
  creds_unref(creds);
  if (rc == TUSC_EUNAUTHORIZED)
    tusc_log_msg(TUSC_LOG_INFO, "bearer token refused: %s", why != NULL ? why : "invalid");
  return rc;
}

int tusc_auth_check(tusc_auth_t *auth, uv_loop_t *loop, const char *client,
                    const char *authorization, size_t len, tusc_auth_request_t *areq,
                    tusc_auth_done_cb cb, char **principal) {
  size_t rest = 0;
  if (!tusc_auth_required(auth) || authorization == NULL)
    return TUSC_EUNAUTHORIZED;
  while (len > 0 && (authorization[len - 1] == ' ' || authorization[len - 1] == '\t'))
    len--;
  if (auth->cfg->auth_htpasswd != NULL && scheme_is(authorization, len, "Basic", &rest))
    return check_basic(auth, loop, client, authorization + rest, len - rest, areq, cb, principal);
  if (auth->cfg->auth_jwt_key != NULL && scheme_is(authorization, len, "Bearer", &rest))
    return check_bearer(auth, authorization + rest, len - rest, principal);
  return TUSC_EUNAUTHORIZED;
}

/* --- hosts and proxies ---------------------------------------------------------- */

bool tusc_auth_hosts_limited(const tusc_auth_t *auth) {
  return auth != NULL && auth->host_count > 0;
}

bool tusc_auth_host_allowed(const tusc_auth_t *auth, const char *host, size_t len) {
  if (!tusc_auth_hosts_limited(auth))
    return true;
  size_t n = host != NULL ? host_name_len(host, len) : 0;
  if (n == 0)
    return false;
  for (size_t i = 0; i < auth->host_count; i++) {
    const char *h = auth->hosts[i];
    size_t hl = strlen(h);
    if (hl == n && strncasecmp(h, host, n) == 0)
      return true;
  }
  return false;
}

bool tusc_auth_proxy_trusted(const tusc_auth_t *auth, const char *remote_addr) {
  if (auth == NULL)
    return false;
  if (!auth->proxy_list)
    return auth->cfg->behind_proxy;
  if (remote_addr == NULL || remote_addr[0] == '\0')
    return true; /* unix socket: only local processes can connect */
  return tusc_cidr_list_match(&auth->proxies, remote_addr);
}

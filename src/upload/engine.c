/*
 * engine — one loop: count the tree (a second walker, a few hundred entries per turn,
 * only for the totals), start files while fewer than `jobs` are active, hash the next
 * PATCH body of streams that send checksums (a few MiB per turn, so hashing never stalls
 * the transfers), sync the journal, start the request each idle stream needs, let curl
 * move bytes, and react to finished requests.
 *
 * A file is a job with one stream per tus upload it needs: one, or `parts` partials plus
 * the final. A stream is a small state machine:
 *
 *   CREATE --201--> PATCH --204--> PATCH ... --offset==length--> DONE
 *     ^               |  \--409/error--> WAIT --> HEAD --200--> PATCH
 *     +--404/410------+----------------------------+
 *
 * Invariant: an upload URL is in the journal (and synced) before any PATCH goes to it,
 * so a crash at any point leaves either no upload (created again) or a known one
 * (resumed from the server's offset). A stream is BUSY exactly while its easy handle
 * is in the multi handle.
 */
#include "upload/engine.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "common/base64.h"
#include "common/timeutil.h"
#include "upload/journal.h"
#include "upload/mime.h"
#include "upload/walk.h"

#ifndef TUSC_VERSION
#define TUSC_VERSION "0"
#endif
#define USER_AGENT "tusc-upload/" TUSC_VERSION

#define RESP_CAP 1024              /* server message kept for a failed file */
#define HASH_STEP_BYTES (4u << 20) /* hashed per stream per loop turn */
#define READ_BUF_BYTES (1u << 20)
#define BACKOFF_BASE_MS 500
#define BACKOFF_CAP_MS 30000
#define RETRY_AFTER_CAP_MS 600000
#define COUNT_STEP 256 /* entries the counting walker reads per turn */
#define RATE_WINDOW_MS 5000
#define RATE_SAMPLES 64
#define TICK_MS 200
#define EXPECT_MIN_BYTES (1u << 20)

enum kind { K_WHOLE, K_PART, K_FINAL };
enum step { ST_IDLE, ST_CREATE, ST_HEAD, ST_PATCH, ST_HASH, ST_WAIT, ST_VERIFY, ST_BUSY, ST_DONE };
enum req { R_NONE, R_POST, R_HEAD, R_PATCH, R_GET };

struct engine;
struct job;

/* The checksum of one PATCH body (the stream's bytes offset..offset+len), computed a few
 * MiB per loop turn: for the next PATCH, and while a PATCH is sent, already for the one
 * after it, so hashing and sending overlap. */
struct body_hash {
  EVP_MD_CTX *ctx;
  bool started, ready;
  uint64_t offset, len, pos;
  char value[200]; /* "sha256 <base64>" once ready */
};

struct stream {
  struct job *job;
  enum kind kind;
  uint64_t start, length; /* the byte range of the file this upload holds */
  uint64_t offset;        /* what the server acknowledged */
  char *url;
  char key[UP_JOURNAL_KEY_MAX + 1];
  enum step step, next_step;
  bool resuming; /* the next HEAD reports bytes of an earlier run */
  bool verified; /* --verify: the GET has been started */
  CURL *easy;
  enum req req;
  struct curl_slist *hdrs;
  uint64_t req_offset, body_len, body_pos;
  uint64_t inflight; /* body bytes curl has sent in the current PATCH */
  int attempts;
  uint64_t fail_since_ms;
  uint64_t wait_until_ms;
  char resp[RESP_CAP];
  size_t resp_len;
  EVP_MD_CTX *md;     /* the verify GET's SHA-256 */
  char checksum[200]; /* Upload-Checksum of the PATCH being sent */
  struct body_hash hash;
};

struct job {
  struct job *next;
  char *path;
  char *rel;
  char *metadata; /* Upload-Metadata value */
  struct stat st;
  int fd;
  char fp[UP_FINGERPRINT_LEN + 1];
  int nparts;
  int nstreams;
  struct stream *streams;
  uint64_t started_ms;
  uint64_t sent;
  bool restarted;
};

struct engine {
  const up_config_t *cfg;
  CURLM *multi;
  up_journal_t *journal;
  up_report_t *report;
  up_walk_t *walk, *count_walk;
  bool walk_done, count_done;
  struct job *jobs;
  int njobs;
  /* what the server offers (OPTIONS) */
  bool has_concat;
  const EVP_MD *md;
  char md_name[16];
  /* counters */
  uint64_t files_seen, bytes_seen; /* by the counting walker */
  uint64_t files_done, files_failed, files_skipped;
  uint64_t finished_bytes; /* sizes of finished and skipped files */
  uint64_t bytes_sent;
  uint64_t start_ms;
  struct {
    uint64_t t, bytes;
  } samples[RATE_SAMPLES];
  int nsamples, sample_head;
  up_report_active_t *active;
  int active_cap;
  unsigned char *buf; /* READ_BUF_BYTES, for hashing */
  bool hashing;       /* a body hash had more to do this turn */
};

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) {
  stop_signal = sig;
}

/* ---- small helpers ------------------------------------------------------------------ */

static uint64_t backoff_ms(int attempt) {
  uint64_t d = BACKOFF_BASE_MS;
  for (int i = 1; i < attempt && d < BACKOFF_CAP_MS; i++)
    d *= 2;
  if (d > BACKOFF_CAP_MS)
    d = BACKOFF_CAP_MS;
  /* Full jitter over the upper half: many uploaders that lost the same server do not
   * come back in lockstep. */
  return d / 2 + (uint64_t)random() % (d / 2 + 1);
}

static const char *header(CURL *h, const char *name) {
  struct curl_header *hd;
  if (curl_easy_header(h, name, 0, CURLH_HEADER, -1, &hd) != CURLHE_OK)
    return NULL;
  return hd->value;
}

static int parse_u64(const char *s, uint64_t *out) {
  if (s == NULL || *s < '0' || *s > '9')
    return -EINVAL;
  errno = 0;
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  while (*end == ' ' || *end == '\t')
    end++;
  if (errno != 0 || *end != '\0')
    return -EINVAL;
  *out = v;
  return 0;
}

/* Retry-After in ms (delay-seconds or an HTTP date), or 0 when absent or bad. */
static uint64_t retry_after_ms(CURL *h) {
  const char *v = header(h, "Retry-After");
  uint64_t secs;
  if (v == NULL)
    return 0;
  if (parse_u64(v, &secs) == 0)
    return secs * 1000 < RETRY_AFTER_CAP_MS ? secs * 1000 : RETRY_AFTER_CAP_MS;
  int64_t when;
  if (tusc_http_date_parse(v, &when) == 0) {
    int64_t delta = when - (int64_t)time(NULL);
    if (delta > 0)
      return (uint64_t)delta * 1000 < RETRY_AFTER_CAP_MS ? (uint64_t)delta * 1000
                                                         : RETRY_AFTER_CAP_MS;
  }
  return 0;
}

/* True when `list` (comma-separated, as in Tus-Extension) holds `token`. */
static bool list_has(const char *list, const char *token) {
  size_t n = strlen(token);
  for (const char *p = list; p && *p;) {
    while (*p == ' ' || *p == ',')
      p++;
    const char *end = p;
    while (*end && *end != ',')
      end++;
    const char *last = end;
    while (last > p && last[-1] == ' ')
      last--;
    if ((size_t)(last - p) == n && strncasecmp(p, token, n) == 0)
      return true;
    p = end;
  }
  return false;
}

static void add_header(struct stream *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void add_header(struct stream *s, const char *fmt, ...) {
  char line[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof(line))
    return;
  struct curl_slist *l = curl_slist_append(s->hdrs, line);
  if (l != NULL)
    s->hdrs = l;
}

/* The server's answer for a message: "413: ERR_MAX_SIZE_EXCEEDED: maximum size exceeded". */
static void server_message(struct stream *s, long status, char *out, size_t cap) {
  char body[RESP_CAP];
  size_t n = 0;
  for (size_t i = 0; i < s->resp_len && n + 1 < sizeof(body); i++) {
    char c = s->resp[i];
    if (c == '\r' || c == '\n') {
      if (n > 0)
        break;
      continue;
    }
    body[n++] = (c >= ' ' && c != 0x7f) || (c & 0x80) ? c : '?';
  }
  body[n] = '\0';
  snprintf(out, cap, "server answered %ld%s%s", status, n ? ": " : "", body);
}

/* ---- curl callbacks ----------------------------------------------------------------- */

static size_t on_read(char *buf, size_t size, size_t nitems, void *ud) {
  struct stream *s = ud;
  size_t want = size * nitems;
  uint64_t left = s->body_len - s->body_pos;
  if (want > left)
    want = (size_t)left;
  if (want == 0)
    return 0;
  off_t at = (off_t)(s->start + s->req_offset + s->body_pos);
  ssize_t n;
  do
    n = pread(s->job->fd, buf, want, at);
  while (n < 0 && errno == EINTR);
  if (n <= 0)
    return CURL_READFUNC_ABORT; /* read error, or the file shrank under us */
  s->body_pos += (uint64_t)n;
  return (size_t)n;
}

static int on_seek(void *ud, curl_off_t offset, int origin) {
  struct stream *s = ud;
  if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > s->body_len)
    return CURL_SEEKFUNC_CANTSEEK;
  s->body_pos = (uint64_t)offset;
  return CURL_SEEKFUNC_OK;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud) {
  struct stream *s = ud;
  size_t n = size * nmemb;
  if (s->req == R_GET && s->md != NULL) {
    EVP_DigestUpdate(s->md, ptr, n);
    return n;
  }
  size_t room = sizeof(s->resp) - s->resp_len;
  size_t k = n < room ? n : room;
  memcpy(s->resp + s->resp_len, ptr, k);
  s->resp_len += k;
  return n; /* the rest of a long body is dropped, not an error */
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
  (void)dltotal;
  (void)dlnow;
  (void)ultotal;
  struct stream *s = ud;
  if (s->req == R_PATCH && ulnow >= 0)
    s->inflight = (uint64_t)ulnow < s->body_len ? (uint64_t)ulnow : s->body_len;
  return stop_signal ? 1 : 0;
}

/* Options every request shares: transport, auth, timeouts, user headers. */
static void common_options(struct engine *e, CURL *h, const char *url) {
  const up_config_t *cfg = e->cfg;
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_USERAGENT, USER_AGENT);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, cfg->connect_timeout);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, cfg->speed_limit);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, cfg->speed_time);
  curl_easy_setopt(h, CURLOPT_PIPEWAIT, 1L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  if (cfg->userpwd != NULL) {
    curl_easy_setopt(h, CURLOPT_USERPWD, cfg->userpwd);
    curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
  }
  if (cfg->cacert != NULL)
    curl_easy_setopt(h, CURLOPT_CAINFO, cfg->cacert);
  if (cfg->insecure) {
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (cfg->verbose > 1)
    curl_easy_setopt(h, CURLOPT_VERBOSE, 1L);
}

/* ---- stream and job life cycle ------------------------------------------------------ */

static void finish_job(struct engine *e, struct job *j, const char *error);

static void abort_request(struct engine *e, struct stream *s) {
  if (s->step == ST_BUSY && s->easy != NULL)
    curl_multi_remove_handle(e->multi, s->easy);
  s->req = R_NONE;
  s->inflight = 0;
}

static void set_url(struct stream *s, const char *url) {
  char *u = url ? strdup(url) : NULL;
  free(s->url);
  s->url = u;
}

/* The server now has `offset` bytes of this stream. `ours`: they came from this run. */
static void set_offset(struct engine *e, struct stream *s, uint64_t offset, bool ours) {
  if (offset > s->offset) {
    if (ours) {
      s->job->sent += offset - s->offset;
      e->bytes_sent += offset - s->offset;
    }
    /* Progress: the retry budget starts over. */
    s->attempts = 0;
    s->fail_since_ms = 0;
  }
  s->offset = offset;
}

/* A job fails as a whole: one broken part makes the file fail. */
static void fail_job(struct engine *e, struct job *j, const char *why) {
  finish_job(e, j, why);
}

/* Schedules `next` after a backoff, or fails the job when its retries are spent. */
static void retry_later(struct engine *e, struct stream *s, enum step next, uint64_t delay_ms,
                        const char *why) {
  const up_config_t *cfg = e->cfg;
  uint64_t now = tusc_now_ms();
  if (s->fail_since_ms == 0)
    s->fail_since_ms = now;
  s->attempts++;
  if (s->attempts > cfg->retries || now - s->fail_since_ms > (uint64_t)cfg->retry_max_time * 1000) {
    char msg[600];
    snprintf(msg, sizeof(msg), "%s (gave up after %d attempts)", why, s->attempts);
    fail_job(e, s->job, msg);
    return;
  }
  if (delay_ms == 0)
    delay_ms = backoff_ms(s->attempts);
  if (cfg->verbose)
    up_report_msg(e->report, "%s: %s; retry %d in %.1f s", s->job->rel, why, s->attempts,
                  (double)delay_ms / 1000.0);
  s->step = ST_WAIT;
  s->next_step = next;
  s->wait_until_ms = now + delay_ms;
}

/* Forgets the stream's upload (gone on the server) and starts a new one. */
static void start_over(struct engine *e, struct stream *s) {
  if (up_journal_forget(e->journal, s->key) < 0)
    up_report_msg(e->report, "journal: cannot write %s", s->key);
  set_url(s, NULL);
  s->offset = 0;
  s->resuming = false;
  s->step = ST_CREATE;
}

static void stream_done(struct engine *e, struct stream *s) {
  struct job *j = s->job;
  s->step = ST_DONE;
  if (s->kind == K_PART) {
    for (int i = 0; i < j->nparts; i++)
      if (j->streams[i].step != ST_DONE)
        return;
    j->streams[j->nparts].step = ST_CREATE; /* every partial is there: the final */
    return;
  }
  if (e->cfg->verify && !s->verified) {
    s->verified = true;
    s->step = ST_VERIFY;
    return;
  }
  finish_job(e, j, NULL);
}

/* ---- requests ----------------------------------------------------------------------- */

static int start_request(struct engine *e, struct stream *s, enum req req) {
  const up_config_t *cfg = e->cfg;
  if (s->easy == NULL && (s->easy = curl_easy_init()) == NULL)
    return -ENOMEM;
  curl_easy_reset(s->easy);
  curl_slist_free_all(s->hdrs);
  s->hdrs = NULL;
  CURL *h = s->easy;
  const char *url = s->url;
  if (req == R_POST)
    url = cfg->url;
  common_options(e, h, url);
  curl_easy_setopt(h, CURLOPT_PRIVATE, s);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, s);
  add_header(s, "Tus-Resumable: 1.0.0");
  for (int i = 0; i < cfg->nheaders; i++)
    add_header(s, "%s", cfg->headers[i]);
  switch (req) {
  case R_POST:
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
    add_header(s, "Content-Type:"); /* no form type on an empty POST */
    if (s->kind == K_FINAL) {
      char concat[4096];
      size_t n = (size_t)snprintf(concat, sizeof(concat), "Upload-Concat: final;");
      for (int i = 0; i < s->job->nparts && n < sizeof(concat); i++) {
        CURLU *u = curl_url();
        char *path = NULL;
        if (u && curl_url_set(u, CURLUPART_URL, s->job->streams[i].url, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK)
          n += (size_t)snprintf(concat + n, sizeof(concat) - n, "%s%s", i ? " " : "", path);
        curl_free(path);
        curl_url_cleanup(u);
      }
      add_header(s, "%s", concat);
    } else {
      add_header(s, "Upload-Length: %" PRIu64, s->length);
      if (s->kind == K_PART)
        add_header(s, "Upload-Concat: partial");
    }
    if (s->kind != K_PART && s->job->metadata[0] != '\0')
      add_header(s, "Upload-Metadata: %s", s->job->metadata);
    break;
  case R_HEAD:
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    break;
  case R_PATCH:
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PATCH");
    curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(h, CURLOPT_READDATA, s);
    curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
    curl_easy_setopt(h, CURLOPT_SEEKDATA, s);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)s->body_len);
    if (cfg->limit_rate > 0) {
      /* Shared evenly by the transfers that may run at once. */
      uint64_t share = cfg->limit_rate / (uint64_t)(cfg->jobs * cfg->parts);
      curl_easy_setopt(h, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t)(share ? share : 1));
    }
    add_header(s, "Upload-Offset: %" PRIu64, s->req_offset);
    add_header(s, "Content-Type: application/offset+octet-stream");
    /* Expect: 100-continue costs a round trip; it pays off only for bodies big enough
     * that a refusal (413, 409) is worth hearing before they are sent. */
    if (s->body_len < EXPECT_MIN_BYTES)
      add_header(s, "Expect:");
    if (s->checksum[0] != '\0')
      add_header(s, "Upload-Checksum: %s", s->checksum);
    s->body_pos = 0;
    break;
  case R_GET:
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    break;
  case R_NONE:
    break;
  }
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, s->hdrs);
  s->req = req;
  s->resp_len = 0;
  s->inflight = 0;
  s->step = ST_BUSY;
  if (curl_multi_add_handle(e->multi, h) != CURLM_OK) {
    s->req = R_NONE;
    return -ENOMEM;
  }
  return 0;
}

/* The PATCH body limit for a PATCH starting at stream offset `offset`. */
static uint64_t body_len_at(struct engine *e, struct stream *s, uint64_t offset) {
  uint64_t len = s->length - offset;
  uint64_t limit = e->cfg->chunk_size;
  if (limit == 0 && e->md != NULL)
    limit = e->cfg->checksum_chunk; /* a failed checksummed PATCH is lost whole */
  return limit != 0 && len > limit ? limit : len;
}

/* Points the stream's body hash at offset..offset+len, unless it already is. */
static int hash_target(struct engine *e, struct stream *s, uint64_t offset, uint64_t len) {
  struct body_hash *h = &s->hash;
  if (h->started && h->offset == offset && h->len == len)
    return 0;
  if (h->ctx == NULL && (h->ctx = EVP_MD_CTX_new()) == NULL)
    return -ENOMEM;
  if (!EVP_DigestInit_ex(h->ctx, e->md, NULL))
    return -ENOMEM;
  h->started = true;
  h->ready = false;
  h->offset = offset;
  h->len = len;
  h->pos = 0;
  return 0;
}

/* Hashes up to HASH_STEP_BYTES more of the stream's body hash. Returns 0 (ready or
 * not), or fails the job and returns a negative errno when the file cannot be read. */
static int hash_step(struct engine *e, struct stream *s) {
  struct body_hash *h = &s->hash;
  uint64_t budget = HASH_STEP_BYTES;
  while (budget > 0 && h->pos < h->len) {
    uint64_t want = h->len - h->pos;
    if (want > READ_BUF_BYTES)
      want = READ_BUF_BYTES;
    ssize_t n = pread(s->job->fd, e->buf, (size_t)want, (off_t)(s->start + h->offset + h->pos));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      int rc = n < 0 ? -errno : -EIO;
      char msg[300];
      snprintf(msg, sizeof(msg), "cannot read: %s", n < 0 ? strerror(errno) : "file shrank");
      fail_job(e, s->job, msg);
      return rc;
    }
    EVP_DigestUpdate(h->ctx, e->buf, (size_t)n);
    h->pos += (uint64_t)n;
    budget -= (uint64_t)n < budget ? (uint64_t)n : budget;
  }
  if (h->pos < h->len || h->ready)
    return 0;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  EVP_DigestFinal_ex(h->ctx, md, &mdlen);
  char b64[TUSC_BASE64_ENCODED_SIZE(EVP_MAX_MD_SIZE)];
  tusc_base64_encode(md, mdlen, b64);
  snprintf(h->value, sizeof(h->value), "%s %s", e->md_name, b64);
  h->ready = true;
  return 0;
}

/* Starts the PATCH from the stream's offset, or the hashing of its body first. */
static void begin_patch(struct engine *e, struct stream *s) {
  if (s->offset >= s->length) {
    stream_done(e, s);
    return;
  }
  s->req_offset = s->offset;
  s->body_len = body_len_at(e, s, s->offset);
  s->checksum[0] = '\0';
  if (e->md != NULL) {
    if (hash_target(e, s, s->req_offset, s->body_len) < 0) {
      fail_job(e, s->job, "out of memory");
      return;
    }
    if (!s->hash.ready) {
      s->step = ST_HASH;
      return;
    }
    memcpy(s->checksum, s->hash.value, sizeof(s->checksum));
    s->hash.started = false;
  }
  if (start_request(e, s, R_PATCH) < 0)
    fail_job(e, s->job, "out of memory");
}

/* A turn's hashing for one stream: the body it waits for (ST_HASH), or, while its PATCH
 * is on the wire, the next one. Returns true when more hashing is left. */
static bool hash_work(struct engine *e, struct stream *s) {
  if (e->md == NULL)
    return false;
  if (s->step == ST_HASH) {
    if (hash_step(e, s) < 0)
      return false;
    if (s->hash.ready)
      begin_patch(e, s);
    return true;
  }
  if (s->step != ST_BUSY || s->req != R_PATCH)
    return false;
  uint64_t next = s->req_offset + s->body_len;
  if (next >= s->length)
    return false;
  if (hash_target(e, s, next, body_len_at(e, s, next)) < 0 || s->hash.ready)
    return false;
  if (hash_step(e, s) < 0)
    return false;
  return !s->hash.ready;
}

/* SHA-256 of the local file, for --verify. Blocking (it is opt-in). */
static int file_sha256(struct engine *e, struct job *j, unsigned char out[32]) {
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (ctx == NULL || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
    EVP_MD_CTX_free(ctx);
    return -ENOMEM;
  }
  off_t at = 0;
  for (;;) {
    ssize_t n = pread(j->fd, e->buf, READ_BUF_BYTES, at);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int rc = -errno;
      EVP_MD_CTX_free(ctx);
      return rc;
    }
    if (n == 0)
      break;
    EVP_DigestUpdate(ctx, e->buf, (size_t)n);
    at += n;
  }
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, out, &len);
  EVP_MD_CTX_free(ctx);
  return 0;
}

/* ---- responses ---------------------------------------------------------------------- */

static bool retryable_status(long status) {
  return status == 408 || status == 423 || status == 429 || status == 460 ||
         (status >= 500 && status != 501 && status != 505);
}

/* Curl errors that another attempt cannot fix. */
static bool fatal_curl_error(CURLcode rc) {
  switch (rc) {
  case CURLE_UNSUPPORTED_PROTOCOL:
  case CURLE_URL_MALFORMAT:
  case CURLE_READ_ERROR:
  case CURLE_ABORTED_BY_CALLBACK:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_LOGIN_DENIED:
  case CURLE_OUT_OF_MEMORY:
    return true;
  default:
    return false;
  }
}

static void on_created(struct engine *e, struct stream *s, CURL *h) {
  const char *loc = header(h, "Location");
  char *eff = NULL;
  curl_easy_getinfo(h, CURLINFO_EFFECTIVE_URL, &eff);
  CURLU *u = curl_url();
  char *abs = NULL;
  if (loc == NULL || u == NULL || curl_url_set(u, CURLUPART_URL, eff, 0) != CURLUE_OK ||
      curl_url_set(u, CURLUPART_URL, loc, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_URL, &abs, 0) != CURLUE_OK) {
    curl_url_cleanup(u);
    fail_job(e, s->job, "server answered 201 without a usable Location");
    return;
  }
  curl_url_cleanup(u);
  set_url(s, abs);
  curl_free(abs);
  if (s->url == NULL) {
    fail_job(e, s->job, "out of memory");
    return;
  }
  int rc = up_journal_put(e->journal, s->key, s->url);
  if (rc < 0) {
    char msg[300];
    snprintf(msg, sizeof(msg), "journal: %s", strerror(-rc));
    fail_job(e, s->job, msg);
    return;
  }
  s->offset = 0;
  s->resuming = false;
  s->attempts = 0;
  s->fail_since_ms = 0;
  /* A final may still be assembling; HEAD says when it is complete. */
  s->step = s->kind == K_FINAL ? ST_HEAD : ST_PATCH;
}

/* A final whose partials are gone: all partials again, once. */
static void restart_parts(struct engine *e, struct job *j, const char *why) {
  if (j->restarted) {
    fail_job(e, j, why);
    return;
  }
  j->restarted = true;
  for (int i = 0; i < j->nparts; i++)
    start_over(e, &j->streams[i]);
  struct stream *f = &j->streams[j->nparts];
  set_url(f, NULL);
  f->step = ST_IDLE;
}

static void on_response(struct engine *e, struct stream *s, CURLcode res) {
  CURL *h = s->easy;
  enum req req = s->req;
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  curl_multi_remove_handle(e->multi, h);
  s->req = R_NONE;
  s->inflight = 0;
  s->step = ST_IDLE;
  if (stop_signal)
    return; /* interrupted: the journal keeps the upload for the next run */
  char msg[RESP_CAP + 64];
  enum step again = req == R_POST ? ST_CREATE : req == R_GET ? ST_VERIFY : ST_HEAD;

  if (res != CURLE_OK) {
    snprintf(msg, sizeof(msg), "%s", curl_easy_strerror(res));
    if (fatal_curl_error(res))
      fail_job(e, s->job, msg);
    else
      retry_later(e, s, again, 0, msg);
    return;
  }
  server_message(s, status, msg, sizeof(msg));
  if (retryable_status(status)) {
    retry_later(e, s, again, retry_after_ms(h), msg);
    return;
  }
  switch (req) {
  case R_POST:
    if (status == 201) {
      on_created(e, s, h);
    } else if (s->kind == K_FINAL && (status == 400 || status == 404 || status == 410)) {
      restart_parts(e, s->job, msg);
    } else {
      fail_job(e, s->job, msg);
    }
    return;
  case R_HEAD: {
    if (status == 404 || status == 410 || status == 403) {
      start_over(e, s); /* gone, or someone else's: a new upload */
      return;
    }
    uint64_t off, len;
    if (status < 200 || status > 299 || parse_u64(header(h, "Upload-Offset"), &off) < 0) {
      fail_job(e, s->job, msg);
      return;
    }
    const char *concat = header(h, "Upload-Concat");
    bool is_final = s->kind == K_FINAL || (concat != NULL && strncmp(concat, "final", 5) == 0);
    const char *lenh = header(h, "Upload-Length");
    if (lenh != NULL && parse_u64(lenh, &len) == 0 && len != s->length) {
      /* Not this file's upload (it changed size): start a new one. */
      start_over(e, s);
      return;
    }
    if (is_final) {
      if (lenh != NULL && off == s->length) {
        s->offset = off;
        stream_done(e, s);
      } else {
        retry_later(e, s, ST_HEAD, 0, "final upload still being assembled");
      }
      return;
    }
    if (off > s->length) {
      fail_job(e, s->job, "server reports an offset beyond the file's length");
      return;
    }
    set_offset(e, s, off, !s->resuming);
    s->resuming = false;
    s->step = ST_PATCH;
    return;
  }
  case R_PATCH: {
    if (status == 204 || status == 200) {
      uint64_t off;
      if (parse_u64(header(h, "Upload-Offset"), &off) < 0 || off > s->length)
        off = s->req_offset + s->body_len;
      set_offset(e, s, off, true);
      s->step = ST_PATCH;
      return;
    }
    if (status == 409) {
      retry_later(e, s, ST_HEAD, 1, msg); /* re-read the offset at once */
      return;
    }
    if (status == 404 || status == 410) {
      start_over(e, s);
      return;
    }
    fail_job(e, s->job, msg);
    return;
  }
  case R_GET: {
    struct job *j = s->job;
    if (status != 200) {
      /* The server does not serve downloads: nothing to compare with. */
      EVP_MD_CTX_free(s->md);
      s->md = NULL;
      finish_job(e, j, NULL);
      return;
    }
    unsigned char got[EVP_MAX_MD_SIZE], want[32];
    unsigned int n = 0;
    EVP_DigestFinal_ex(s->md, got, &n);
    EVP_MD_CTX_free(s->md);
    s->md = NULL;
    if (file_sha256(e, j, want) < 0 || n != 32 || memcmp(got, want, 32) != 0) {
      fail_job(e, j, "verify: the server's bytes differ from the file (SHA-256)");
      return;
    }
    finish_job(e, j, NULL);
    return;
  }
  case R_NONE:
    return;
  }
}

/* Starts what an idle stream needs next. */
static void pump_stream(struct engine *e, struct stream *s, uint64_t now) {
  if (s->step == ST_WAIT) {
    if (now < s->wait_until_ms)
      return;
    s->step = s->next_step;
  }
  int rc = 0;
  switch (s->step) {
  case ST_CREATE:
    rc = start_request(e, s, R_POST);
    break;
  case ST_HEAD:
    rc = start_request(e, s, R_HEAD);
    break;
  case ST_PATCH:
    begin_patch(e, s);
    return;
  case ST_VERIFY:
    if (s->md != NULL)
      EVP_MD_CTX_free(s->md);
    if ((s->md = EVP_MD_CTX_new()) == NULL || !EVP_DigestInit_ex(s->md, EVP_sha256(), NULL)) {
      fail_job(e, s->job, "out of memory");
      return;
    }
    rc = start_request(e, s, R_GET);
    break;
  default:
    return;
  }
  if (rc < 0)
    fail_job(e, s->job, "out of memory");
}

/* ---- jobs --------------------------------------------------------------------------- */

static void free_job(struct job *j) {
  for (int i = 0; i < j->nstreams; i++) {
    struct stream *s = &j->streams[i];
    if (s->easy != NULL)
      curl_easy_cleanup(s->easy);
    curl_slist_free_all(s->hdrs);
    EVP_MD_CTX_free(s->md);
    EVP_MD_CTX_free(s->hash.ctx);
    free(s->url);
  }
  free(j->streams);
  if (j->fd >= 0)
    close(j->fd);
  free(j->path);
  free(j->rel);
  free(j->metadata);
  free(j);
}

/* Ends a job: success (error NULL) or failure. Removes it from the engine and frees it;
 * its requests are aborted first. */
static void finish_job(struct engine *e, struct job *j, const char *error) {
  for (int i = 0; i < j->nstreams; i++)
    abort_request(e, &j->streams[i]);
  struct stream *last = &j->streams[j->nstreams - 1];
  double secs = (double)(tusc_now_ms() - j->started_ms) / 1000.0;
  if (error == NULL) {
    if (up_journal_done(e->journal, j->fp, last->url) < 0)
      up_report_msg(e->report, "%s: journal not updated", j->path);
    /* The partials live on in the final; their records only grow the journal. */
    for (int i = 0; j->nparts > 1 && i < j->nparts; i++)
      if (up_journal_forget(e->journal, j->streams[i].key) < 0)
        up_report_msg(e->report, "%s: journal not updated", j->path);
    e->files_done++;
    e->finished_bytes += (uint64_t)j->st.st_size;
    up_report_file(e->report, j->path, last->url, (uint64_t)j->st.st_size, j->sent, secs,
                   "uploaded", NULL);
  } else {
    e->files_failed++;
    up_report_file(e->report, j->path, last->url, (uint64_t)j->st.st_size, j->sent, secs, "failed",
                   error);
  }
  for (struct job **p = &e->jobs; *p; p = &(*p)->next) {
    if (*p == j) {
      *p = j->next;
      break;
    }
  }
  e->njobs--;
  free_job(j);
}

/* Upload-Metadata for a file: filename, filetype, relativePath, mtime and -m pairs. */
static char *build_metadata(const up_config_t *cfg, const up_walk_entry_t *w, bool in_dir) {
  const char *base = strrchr(w->path, '/');
  base = base ? base + 1 : w->path;
  char mtime[32];
  snprintf(mtime, sizeof(mtime), "%lld", (long long)w->st.st_mtim.tv_sec);
  const char *pairs[2 * 4];
  int n = 0;
  pairs[n++] = "filename";
  pairs[n++] = base;
  pairs[n++] = "filetype";
  pairs[n++] = up_mime_guess(base);
  if (in_dir) {
    pairs[n++] = "relativePath";
    pairs[n++] = w->rel;
  }
  pairs[n++] = "mtime";
  pairs[n++] = mtime;
  size_t cap = 1;
  for (int i = 0; i < n; i += 2)
    cap += strlen(pairs[i]) + TUSC_BASE64_ENCODED_SIZE(strlen(pairs[i + 1])) + 2;
  for (int i = 0; i < cfg->nmetadata; i++)
    cap += TUSC_BASE64_ENCODED_SIZE(strlen(cfg->metadata[i])) + strlen(cfg->metadata[i]) + 2;
  char *out = malloc(cap);
  if (out == NULL)
    return NULL;
  size_t len = 0;
  for (int i = 0; i < n; i += 2) {
    len += (size_t)snprintf(out + len, cap - len, "%s%s ", len ? "," : "", pairs[i]);
    len += tusc_base64_encode((const unsigned char *)pairs[i + 1], strlen(pairs[i + 1]), out + len);
  }
  for (int i = 0; i < cfg->nmetadata; i++) {
    const char *eq = strchr(cfg->metadata[i], '=');
    len += (size_t)snprintf(out + len, cap - len, ",%.*s ", (int)(eq - cfg->metadata[i]),
                            cfg->metadata[i]);
    len += tusc_base64_encode((const unsigned char *)eq + 1, strlen(eq + 1), out + len);
  }
  out[len] = '\0';
  return out;
}

/* Starts one file found by the walker: skipped when the journal says it is done,
 * resumed when it holds its upload, new otherwise. */
static void add_file(struct engine *e, const up_walk_entry_t *w) {
  const up_config_t *cfg = e->cfg;
  char abs[PATH_MAX];
  if (realpath(w->path, abs) == NULL)
    snprintf(abs, sizeof(abs), "%s", w->path);
  char fp[UP_FINGERPRINT_LEN + 1];
  up_journal_fingerprint(abs, &w->st, cfg->url, fp);
  bool done = false;
  const char *url = up_journal_get(e->journal, fp, &done);
  if (done) {
    e->files_skipped++;
    e->finished_bytes += (uint64_t)w->st.st_size;
    up_report_file(e->report, w->path, url, (uint64_t)w->st.st_size, 0, 0, "skipped", NULL);
    return;
  }
  struct job *j = calloc(1, sizeof(*j));
  const char *error = "out of memory";
  if (j == NULL)
    goto fail;
  j->fd = -1;
  j->st = w->st;
  memcpy(j->fp, fp, sizeof(fp));
  j->started_ms = tusc_now_ms();
  bool in_dir = w->rel != w->path && strrchr(w->path, '/') + 1 != w->rel;
  if ((j->path = strdup(w->path)) == NULL || (j->rel = strdup(w->rel)) == NULL ||
      (j->metadata = build_metadata(cfg, w, in_dir)) == NULL)
    goto fail;
  if ((j->fd = open(w->path, O_RDONLY | O_CLOEXEC)) < 0) {
    error = strerror(errno);
    goto fail;
  }
  uint64_t size = (uint64_t)w->st.st_size;
  j->nparts = 1;
  if (url == NULL && cfg->parts > 1 && e->has_concat && size >= cfg->parts_min_size &&
      size >= (uint64_t)cfg->parts)
    j->nparts = cfg->parts;
  j->nstreams = j->nparts > 1 ? j->nparts + 1 : 1;
  if ((j->streams = calloc((size_t)j->nstreams, sizeof(*j->streams))) == NULL)
    goto fail;
  for (int i = 0; i < j->nstreams; i++) {
    struct stream *s = &j->streams[i];
    s->job = j;
    if (j->nstreams == 1) {
      s->kind = K_WHOLE;
      s->length = size;
      snprintf(s->key, sizeof(s->key), "%s", fp);
    } else if (i < j->nparts) {
      s->kind = K_PART;
      s->start = size * (uint64_t)i / (uint64_t)j->nparts;
      s->length = size * (uint64_t)(i + 1) / (uint64_t)j->nparts - s->start;
      snprintf(s->key, sizeof(s->key), "%s.p%dof%d", fp, i + 1, j->nparts);
    } else {
      s->kind = K_FINAL;
      s->length = size;
      snprintf(s->key, sizeof(s->key), "%s", fp);
      s->step = ST_IDLE;
      continue;
    }
    bool pdone;
    const char *purl = up_journal_get(e->journal, s->key, &pdone);
    if (purl != NULL) {
      set_url(s, purl);
      if (s->url == NULL)
        goto fail;
      s->resuming = true;
      s->step = ST_HEAD;
    } else {
      s->step = ST_CREATE;
    }
  }
  j->next = e->jobs;
  e->jobs = j;
  e->njobs++;
  return;
fail:
  e->files_failed++;
  up_report_file(e->report, w->path, NULL, (uint64_t)w->st.st_size, 0, 0, "failed", error);
  if (j != NULL)
    free_job(j);
}

/* ---- the loop ----------------------------------------------------------------------- */

static void count_some(struct engine *e) {
  for (int i = 0; i < COUNT_STEP && !e->count_done; i++) {
    const up_walk_entry_t *w;
    int rc = up_walk_next(e->count_walk, &w);
    if (rc == 0)
      e->count_done = true;
    else if (rc > 0) {
      e->files_seen++;
      e->bytes_seen += (uint64_t)w->st.st_size;
    }
  }
}

static void fill_slots(struct engine *e) {
  while (!e->walk_done && e->njobs < e->cfg->jobs && !stop_signal) {
    const up_walk_entry_t *w;
    int rc = up_walk_next(e->walk, &w);
    if (rc == 0) {
      e->walk_done = true;
    } else if (rc < 0) {
      e->files_failed++;
      up_report_file(e->report, w->path, NULL, 0, 0, 0, "failed", strerror(-rc));
    } else {
      add_file(e, w);
    }
  }
}

static void snapshot(struct engine *e, up_report_snapshot_t *s, uint64_t now) {
  memset(s, 0, sizeof(*s));
  int na = 0;
  uint64_t active_done = 0, inflight = 0;
  for (struct job *j = e->jobs; j; j = j->next) {
    uint64_t d = 0;
    for (int i = 0; i < j->nparts && i < j->nstreams; i++) {
      d += j->streams[i].offset + j->streams[i].inflight;
      inflight += j->streams[i].inflight;
    }
    if (d > (uint64_t)j->st.st_size)
      d = (uint64_t)j->st.st_size;
    active_done += d;
    if (na < e->active_cap) {
      e->active[na].name = j->rel;
      e->active[na].size = (uint64_t)j->st.st_size;
      e->active[na].done = d;
      na++;
    }
  }
  /* Rate over the last RATE_WINDOW_MS from samples of bytes sent (plus in flight). */
  uint64_t sent_now = e->bytes_sent + inflight;
  int idx = (e->sample_head + e->nsamples) % RATE_SAMPLES;
  if (e->nsamples == RATE_SAMPLES) {
    e->sample_head = (e->sample_head + 1) % RATE_SAMPLES;
    e->nsamples--;
  }
  e->samples[idx].t = now;
  e->samples[idx].bytes = sent_now;
  e->nsamples++;
  while (e->nsamples > 2 && now - e->samples[e->sample_head].t > RATE_WINDOW_MS) {
    e->sample_head = (e->sample_head + 1) % RATE_SAMPLES;
    e->nsamples--;
  }
  uint64_t dt = now - e->samples[e->sample_head].t;
  uint64_t db = sent_now - e->samples[e->sample_head].bytes;
  s->rate =
      dt > 0 && sent_now >= e->samples[e->sample_head].bytes ? (double)db * 1000.0 / (double)dt : 0;
  s->files_seen = e->files_seen;
  s->total_known = e->count_done;
  s->files_total = e->files_seen;
  s->bytes_total = e->bytes_seen;
  s->files_done = e->files_done;
  s->files_failed = e->files_failed;
  s->files_skipped = e->files_skipped;
  s->bytes_done = e->finished_bytes + active_done;
  s->bytes_sent = e->bytes_sent;
  s->elapsed_ms = now - e->start_ms;
  s->active = e->active;
  s->nactive = na;
}

/* OPTIONS: which extensions and checksum algorithms the server offers. Blocking, with
 * retries for connection errors; a server that refuses OPTIONS is assumed to offer
 * only the core protocol. Returns 0 or -1 when the server cannot be reached. */
static int discover(struct engine *e) {
  const up_config_t *cfg = e->cfg;
  CURL *h = curl_easy_init();
  if (h == NULL)
    return -1;
  struct stream scratch = {0};
  int rc = -1;
  for (int attempt = 1; !stop_signal; attempt++) {
    curl_easy_reset(h);
    common_options(e, h, cfg->url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "OPTIONS");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &scratch);
    scratch.resp_len = 0;
    struct curl_slist *hs = curl_slist_append(NULL, "Tus-Resumable: 1.0.0");
    for (int i = 0; i < cfg->nheaders && hs; i++)
      hs = curl_slist_append(hs, cfg->headers[i]);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
    CURLcode res = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (res == CURLE_OK && !retryable_status(status)) {
      if (status >= 200 && status < 300) {
        const char *ext = header(h, "Tus-Extension");
        e->has_concat = list_has(ext, "concatenation");
        const char *algs = header(h, "Tus-Checksum-Algorithm");
        static const char *const preferred[] = {"sha256", "sha512", "sha1", "md5"};
        bool want_auto = strcmp(cfg->checksum, "auto") == 0;
        for (size_t i = 0; algs != NULL && i < sizeof(preferred) / sizeof(*preferred); i++) {
          if ((want_auto || strcasecmp(cfg->checksum, preferred[i]) == 0) &&
              list_has(algs, preferred[i])) {
            e->md = EVP_get_digestbyname(preferred[i]);
            snprintf(e->md_name, sizeof(e->md_name), "%s", preferred[i]);
            break;
          }
        }
        if (!want_auto && strcmp(cfg->checksum, "none") != 0 && e->md == NULL)
          up_report_msg(e->report, "the server does not offer checksum %s; sending without",
                        cfg->checksum);
      } else if (cfg->verbose) {
        up_report_msg(e->report, "OPTIONS answered %ld; assuming the core protocol only", status);
      }
      rc = 0;
      curl_slist_free_all(hs);
      break;
    }
    curl_slist_free_all(hs);
    if (res != CURLE_OK && fatal_curl_error(res)) {
      up_report_msg(e->report, "%s: %s", cfg->url, curl_easy_strerror(res));
      break;
    }
    if (attempt > cfg->retries) {
      up_report_msg(e->report, "%s: %s", cfg->url,
                    res != CURLE_OK ? curl_easy_strerror(res) : "server keeps failing");
      break;
    }
    uint64_t delay = res == CURLE_OK ? retry_after_ms(h) : 0;
    if (delay == 0)
      delay = backoff_ms(attempt);
    uint64_t until = tusc_now_ms() + delay;
    if (cfg->verbose)
      up_report_msg(e->report, "%s: %s; retry %d in %.1f s", cfg->url,
                    res != CURLE_OK ? curl_easy_strerror(res) : "server error", attempt,
                    (double)delay / 1000.0);
    while (!stop_signal && tusc_now_ms() < until)
      usleep(50000);
  }
  curl_easy_cleanup(h);
  return rc;
}

/* True when the next turn has work that must not wait for a socket or a timer: a free
 * slot for the next file, a stream that can start its next request, hashing. */
static bool work_pending(struct engine *e) {
  if (e->hashing || (!e->walk_done && e->njobs < e->cfg->jobs))
    return true;
  for (struct job *j = e->jobs; j; j = j->next) {
    for (int i = 0; i < j->nstreams; i++) {
      switch (j->streams[i].step) {
      case ST_CREATE:
      case ST_HEAD:
      case ST_PATCH:
      case ST_HASH:
      case ST_VERIFY:
        return true;
      default:
        break;
      }
    }
  }
  return false;
}

/* The earliest time a waiting stream wants to retry, capped at now + TICK_MS. */
static uint64_t next_wake(struct engine *e, uint64_t now) {
  uint64_t wake = now + TICK_MS;
  for (struct job *j = e->jobs; j; j = j->next)
    for (int i = 0; i < j->nstreams; i++)
      if (j->streams[i].step == ST_WAIT && j->streams[i].wait_until_ms < wake)
        wake = j->streams[i].wait_until_ms;
  return wake;
}

/* True while `j` is still one of the engine's jobs (a step may have finished it). */
static bool job_alive(struct engine *e, const struct job *j) {
  for (struct job *k = e->jobs; k; k = k->next)
    if (k == j)
      return true;
  return false;
}

static void run_loop(struct engine *e) {
  uint64_t last_tick = 0;
  while (!stop_signal) {
    if (!e->count_done)
      count_some(e);
    fill_slots(e);
    if (e->walk_done && e->njobs == 0)
      break;
    e->hashing = false;
    for (struct job *j = e->jobs, *next; j; j = next) {
      next = j->next;
      for (int i = 0; job_alive(e, j) && i < j->nstreams; i++)
        e->hashing |= hash_work(e, &j->streams[i]);
    }
    /* URLs recorded since the last turn become durable before bytes go to them. */
    int rc = up_journal_sync(e->journal);
    if (rc < 0)
      up_report_msg(e->report, "journal: %s", strerror(-rc));
    uint64_t now = tusc_now_ms();
    for (struct job *j = e->jobs, *next; j; j = next) {
      next = j->next;
      for (int i = 0; job_alive(e, j) && i < j->nstreams; i++)
        pump_stream(e, &j->streams[i], now);
    }
    int running = 0;
    curl_multi_perform(e->multi, &running);
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(e->multi, &left)) != NULL) {
      if (m->msg != CURLMSG_DONE)
        continue;
      char *priv = NULL;
      curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
      CURLcode res = m->data.result;
      on_response(e, (struct stream *)priv, res);
    }
    now = tusc_now_ms();
    if (now - last_tick >= TICK_MS) {
      up_report_snapshot_t snap;
      snapshot(e, &snap, now);
      up_report_tick(e->report, &snap, now);
      last_tick = now;
    }
    uint64_t wake = next_wake(e, now);
    int timeout = work_pending(e) ? 0 : (int)(wake > now ? wake - now : 0);
    curl_multi_poll(e->multi, NULL, 0, timeout, NULL);
  }
}

static void dry_run(struct engine *e) {
  const up_walk_entry_t *w;
  int rc;
  while ((rc = up_walk_next(e->walk, &w)) != 0) {
    if (rc < 0) {
      printf("error %s: %s\n", w->path, strerror(-rc));
      e->files_failed++;
      continue;
    }
    char abs[PATH_MAX];
    if (realpath(w->path, abs) == NULL)
      snprintf(abs, sizeof(abs), "%s", w->path);
    char fp[UP_FINGERPRINT_LEN + 1];
    up_journal_fingerprint(abs, &w->st, e->cfg->url, fp);
    bool done = false;
    const char *url = e->journal ? up_journal_get(e->journal, fp, &done) : NULL;
    char size[32];
    up_report_bytes((uint64_t)w->st.st_size, size, sizeof(size));
    printf("%s %s (%lld bytes, %s) as %s [%s]%s%s\n",
           done  ? "skip"
           : url ? "resume"
                 : "upload",
           w->path, (long long)w->st.st_size, size, w->rel, up_mime_guess(w->path), url ? " " : "",
           url ? url : "");
    e->files_seen++;
    e->bytes_seen += (uint64_t)w->st.st_size;
  }
  char total[32];
  up_report_bytes(e->bytes_seen, total, sizeof(total));
  printf("%llu files, %s, to %s\n", (unsigned long long)e->files_seen, total, e->cfg->url);
}

int up_engine_run(const up_config_t *cfg) {
  struct engine eng = {0}, *e = &eng;
  e->cfg = cfg;
  e->start_ms = tusc_now_ms();
  srandom((unsigned)(e->start_ms ^ (uint64_t)getpid()));
  int exit_code = 1;
  char path[PATH_MAX];
  const char *jpath = cfg->state_path;
  if (jpath == NULL) {
    if (up_journal_default_path(path, sizeof(path)) < 0) {
      fprintf(stderr, "tusc-upload: no HOME or XDG_STATE_HOME for the journal; use --state\n");
      return 1;
    }
    jpath = path;
  }
  int rc;
  if (cfg->dry_run) {
    if (access(jpath, R_OK) == 0 && up_journal_open(jpath, &e->journal) < 0)
      e->journal = NULL;
    if (up_walk_new(cfg->paths, cfg->npaths, &e->walk) < 0)
      return 1;
    dry_run(e);
    up_walk_free(e->walk);
    up_journal_free(e->journal);
    return e->files_failed ? 1 : 0;
  }
  if ((rc = up_journal_open(jpath, &e->journal)) < 0) {
    fprintf(stderr, "tusc-upload: journal %s: %s\n", jpath, strerror(-rc));
    return 1;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  e->active_cap = cfg->jobs;
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
      up_report_new(cfg->progress, cfg->json, stdout, cfg->progress_interval_ms, &e->report) < 0 ||
      (e->multi = curl_multi_init()) == NULL ||
      (e->active = calloc((size_t)e->active_cap, sizeof(*e->active))) == NULL ||
      (e->buf = malloc(READ_BUF_BYTES)) == NULL ||
      up_walk_new(cfg->paths, cfg->npaths, &e->walk) < 0 ||
      up_walk_new(cfg->paths, cfg->npaths, &e->count_walk) < 0) {
    fprintf(stderr, "tusc-upload: out of memory\n");
    goto out;
  }
  curl_multi_setopt(e->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  if (discover(e) < 0) {
    /* Nothing can be uploaded: every file counts as failed. */
    e->walk_done = true;
    const up_walk_entry_t *w;
    while ((rc = up_walk_next(e->count_walk, &w)) != 0) {
      e->files_seen++;
      e->files_failed++;
    }
    e->count_done = true;
  } else {
    run_loop(e);
  }
  {
    up_report_snapshot_t snap;
    snapshot(e, &snap, tusc_now_ms());
    up_report_finish(e->report, &snap, stop_signal != 0);
  }
  exit_code = stop_signal ? 130 : e->files_failed ? 1 : 0;
out:
  while (e->jobs != NULL) {
    struct job *j = e->jobs;
    for (int i = 0; i < j->nstreams; i++)
      abort_request(e, &j->streams[i]);
    e->jobs = j->next;
    free_job(j);
  }
  if (e->multi)
    curl_multi_cleanup(e->multi);
  up_report_free(e->report);
  up_walk_free(e->walk);
  up_walk_free(e->count_walk);
  up_journal_free(e->journal);
  free(e->active);
  free(e->buf);
  curl_global_cleanup();
  return exit_code;
}

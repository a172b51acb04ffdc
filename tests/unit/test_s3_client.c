/* Tests of net/s3_client against a real Ceph RGW (tests/s3/rgw.py run -- test_s3_client,
 * wired by CMakeLists.txt): every operation, pagination over several pages, error
 * mapping, ranged UploadPartCopy, a GET paused and resumed, awkward keys, cancel, and
 * clean closes (LeakSanitizer). The credentials-file parser and the configuration checks
 * run without RGW. Without TUSC_S3_ENDPOINT the RGW tests are skipped.
 *
 * Waiting: uv_run(ONCE) until the callback came, with a guard timer as the deadline;
 * never a sleep. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <uv.h>

#include "common/error.h"
#include "net/curl_loop.h"
#include "net/s3_client.h"

#define MIB (1024u * 1024u)
#define DEADLINE_MS 60000

static const char *env_endpoint, *env_bucket, *env_ak, *env_sk;
static uint64_t env_min_part;
static unsigned test_seq;

/* --- harness ------------------------------------------------------------------------------- */

struct ctx {
  uv_loop_t loop;
  uv_timer_t guard;
  bool timed_out;
  tusc_curl_loop_t *curl;
  tusc_s3_t *s3;
  tusc_s3_loop_t *sl;
  char prefix[64]; /* keys of this test start with it */
};

struct done {
  int calls;
  int status;
};

static bool in_call; /* a callback while the starting call runs breaks the contract */
static uv_loop_t *cur_loop;

static void on_req_done(tusc_s3_req_t *req, int status) {
  assert_false(in_call);
  struct done *d = req->data;
  /* A callback from the timer phase (curl finished inside a timeout action) is followed
   * by a blocking poll in the same UV_RUN_ONCE: stop it so the test goes on at once. */
  uv_stop(cur_loop);
  d->calls++;
  d->status = status;
  assert_int_equal(req->status, status);
}

static void on_guard(uv_timer_t *t) {
  struct ctx *c = t->data;
  c->timed_out = true;
}

static void base_options(tusc_s3_options_t *o) {
  memset(o, 0, sizeof(*o));
  o->endpoint = env_endpoint;
  o->bucket = env_bucket;
  o->path_style = true;
  o->access_key = env_ak;
  o->secret_key = env_sk;
  o->region = "us-east-1";
}

static void ctx_open_with(struct ctx *c, const tusc_s3_options_t *o) {
  memset(c, 0, sizeof(*c));
  assert_int_equal(uv_loop_init(&c->loop), 0);
  uv_timer_init(&c->loop, &c->guard);
  c->guard.data = c;
  assert_int_equal(tusc_curl_loop_new(&c->loop, &c->curl), 0);
  assert_int_equal(tusc_s3_new(o, &c->s3), 0);
  assert_int_equal(tusc_s3_loop_new(c->s3, &c->loop, c->curl, &c->sl), 0);
  snprintf(c->prefix, sizeof(c->prefix), "t%u-%ld/", ++test_seq, (long)uv_os_getpid());
  cur_loop = &c->loop;
}

static void ctx_open(struct ctx *c) {
  tusc_s3_options_t o;
  base_options(&o);
  ctx_open_with(c, &o);
}

static int closed;
static void on_closed(void *arg) {
  (void)arg;
  closed++;
}

static void ctx_close(struct ctx *c) {
  closed = 0;
  tusc_s3_loop_close(c->sl, on_closed, NULL);
  tusc_curl_loop_close(c->curl, on_closed, NULL);
  uv_close((uv_handle_t *)&c->guard, NULL);
  uv_run(&c->loop, UV_RUN_DEFAULT);
  assert_int_equal(closed, 2);
  assert_int_equal(uv_loop_close(&c->loop), 0);
  tusc_s3_free(c->s3);
}

static void wait_for(struct ctx *c, const int *calls, int want, const char *what) {
  c->timed_out = false;
  uv_update_time(&c->loop);
  uv_timer_start(&c->guard, on_guard, DEADLINE_MS, 0);
  while (*calls < want && !c->timed_out)
    uv_run(&c->loop, UV_RUN_ONCE);
  uv_timer_stop(&c->guard);
  if (*calls < want)
    print_message("  timed out waiting for %s\n", what);
  assert_int_equal(*calls, want);
}

/* Starts an operation through `start` (a statement using sl, req, on_req_done), checks
 * the contract and waits for the callback; evaluates to its status. */
#define RUN(c, req, start)                                                                         \
  ({                                                                                               \
    struct done d_ = {0};                                                                          \
    (req)->data = &d_;                                                                             \
    in_call = true;                                                                                \
    int rc_ = (start);                                                                             \
    in_call = false;                                                                               \
    assert_int_equal(rc_, 0);                                                                      \
    assert_int_equal(d_.calls, 0);                                                                 \
    wait_for((c), &d_.calls, 1, #start);                                                           \
    if (d_.status != 0)                                                                            \
      print_message("  %s: %s (HTTP %ld, %s: %s)\n", #start, tusc_strerror(d_.status),             \
                    (req)->http_status, (req)->s3_code, (req)->message);                           \
    d_.status;                                                                                     \
  })

static char *key(struct ctx *c, const char *name) {
  static char buf[4][1200];
  static int i;
  char *k = buf[i++ % 4];
  snprintf(k, sizeof(buf[0]), "%s%s", c->prefix, name);
  return k;
}

static unsigned char *pattern(size_t len, unsigned seed) {
  unsigned char *b = malloc(len ? len : 1);
  assert_non_null(b);
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b[i] = (unsigned char)x;
  }
  return b;
}

static void put(struct ctx *c, const char *k, const void *body, size_t len) {
  tusc_s3_req_t r;
  tusc_s3_req_init(&r);
  assert_int_equal(RUN(c, &r, tusc_s3_put_object(c->sl, &r, k, body, len, NULL, on_req_done)), 0);
  assert_int_equal(r.http_status, 200);
  assert_true(r.etag[0] != '\0');
}

static void get_expect(struct ctx *c, const char *k, const void *body, size_t len) {
  tusc_s3_req_t r;
  tusc_s3_req_init(&r);
  assert_int_equal(RUN(c, &r, tusc_s3_get_object_buf(c->sl, &r, k, len + 1, on_req_done)), 0);
  assert_int_equal(r.body_len, len);
  assert_memory_equal(r.body, body, len);
  tusc_s3_req_dispose(&r);
}

static void skip_without_rgw(void) {
  if (env_endpoint == NULL)
    skip();
}

/* --- objects --------------------------------------------------------------------------------- */

static void test_put_get_head_delete(void **state) {
  (void)state;
  skip_without_rgw();
  struct ctx c;
  ctx_open(&c);
  /* Keys S3 tools get wrong: spaces, reserved characters, UTF-8, slashes, dot segments. */
  const char *names[] = {
      "plain.info",
      "dir/sub dir/file name.bin",
      "\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87/\xc3\xbc\xe2\x82\xac \xf0\x9f\x98\x80.txt",
      "a+b=c&d?e#f%g;h:i@j,k$l!m'n(o)p*q~r",
      "double//slash/./dot/../x",
  };
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    const char *k = key(&c, names[i]);
    size_t len = 1000 + i;
    unsigned char *body = pattern(len, (unsigned)i);
    put(&c, k, body, len);
    get_expect(&c, k, body, len);
    tusc_s3_req_t r;
    tusc_s3_req_init(&r);
    assert_int_equal(RUN(&c, &r, tusc_s3_head_object(c.sl, &r, k, on_req_done)), 0);
    assert_int_equal(r.content_length, len);
    assert_int_equal(r.object_size, len);
    assert_true(r.etag[0] == '"');
    assert_int_equal(RUN(&c, &r, tusc_s3_delete_object(c.sl, &r, k, on_req_done)), 0);
    assert_int_equal(RUN(&c, &r, tusc_s3_head_object(c.sl, &r, k, on_req_done)),
                     TUSC_ES3_NO_SUCH_KEY);
    assert_int_equal(r.http_status, 404);
    free(body);
  }
  /* An empty object, and deleting what is not there (S3: success). */
  put(&c, key(&c, "empty"), NULL, 0);
  get_expect(&c, key(&c, "empty"), "", 0);
  tusc_s3_req_t r;
  tusc_s3_req_init(&r);
  assert_int_equal(RUN(&c, &r, tusc_s3_delete_object(c.sl, &r, key(&c, "empty"), on_req_done)), 0);
  assert_int_equal(RUN(&c, &r, tusc_s3_delete_object(c.sl, &r, key(&c, "never"), on_req_done)), 0);
  ctx_close(&c);
}

static void test_errors(void **state) {
  (void)state;
  skip_without_rgw();
  struct ctx c;
  ctx_open(&c);
  tusc_s3_req_t r;
  tusc_s3_req_init(&r);
  assert_int_equal(
      RUN(&c, &r, tusc_s3_get_object_buf(c.sl, &r, key(&c, "missing"), 100, on_req_done)),
      TUSC_ES3_NO_SUCH_KEY);
  assert_int_equal(r.http_status, 404);
  assert_string_equal(r.s3_code, "NoSuchKey");
  tusc_s3_req_dispose(&r);

  /* Too large for the caller's buffer. */
  unsigned char *body = pattern(5000, 7);
  put(&c, key(&c, "big"), body, 5000);
  assert_int_equal(RUN(&c, &r, tusc_s3_get_object_buf(c.sl, &r, key(&c, "big"), 4999, on_req_done)),
                   TUSC_ES3_ERROR);
  tusc_s3_req_dispose(&r);
  free(body);

  /* Arguments are checked before anything starts: no callback. */
  struct done d = {0};
  r.data = &d;
  assert_int_equal(tusc_s3_upload_part(c.sl, &r, "k", "id", 0, "x", 1, on_req_done),
                   TUSC_EINVALID_ARGUMENT);
  assert_int_equal(tusc_s3_upload_part(c.sl, &r, "k", "id", 10001, "x", 1, on_req_done),
                   TUSC_EINVALID_ARGUMENT);
  assert_int_equal(tusc_s3_put_object(c.sl, &r, "", "x", 1, NULL, on_req_done),
                   TUSC_EINVALID_ARGUMENT);
  assert_int_equal(tusc_s3_list_objects(c.sl, &r, NULL, 0, NULL, on_req_done),
                   TUSC_EINVALID_ARGUMENT);
  assert_int_equal(d.calls, 0);
  ctx_close(&c);
}

static void test_bad_credentials(void **state) {
  (void)state;
  skip_without_rgw();
  tusc_s3_options_t o;
  base_options(&o);
  o.secret_key = "not-the-secret";
  struct ctx c;
  ctx_open_with(&c, &o);
  tusc_s3_req_t r;
  tusc_s3_req_init(&r);
  assert_int_equal(
      RUN(&c, &r, tusc_s3_put_object(c.sl, &r, key(&c, "x"), "x", 1, NULL, on_req_done)),
      TUSC_ES3_ACCESS_DENIED);
  assert_int_equal(r.http_status, 403);
  assert_string_equal(r.s3_code, "SignatureDoesNotMatch");
  ctx_close(&c);

  base_options(&o);
  o.access_key = "NOSUCHACCESSKEY00000";
  ctx_open_with(&c, &o);
  assert_int_equal(RUN(&c, &r, tusc_s3_get_object_buf(c.sl, &r, key(&c, "x"), 10, on_req_done)),
                   TUSC_ES3_ACCESS_DENIED);
  assert_int_equal(r.http_status, 403);
  assert_string_equal(r.s3_code, "InvalidAccessKeyId");
  tusc_s3_req_dispose(&r);
  ctx_close(&c);
}

/* Nothing listens there: connection refused is "unavailable", not a crash or a hang. */
static void test_unreachable(void **state) {
  (void)state;
  skip_without_rgw();
  /* A port that was free a moment ago. */
  uv_loop_t l;
  uv_loop_init(&l);
  uv_tcp_t t;
  uv_tcp_init(&l, &t);
  struct sockaddr_in sin;
  uv_ip4_addr("127.0.0.1", 0, &sin);
  assert_int_equal(uv_tcp_bind(&t, (struct sockaddr *)&sin, 0), 0);
  int len = sizeof(sin);
  uv_tcp_getsockname(&t, (struct sockaddr *)&sin, &len);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&l, UV_RUN_DEFAULT);
  uv_loop_close(&l);
  char ep[64];
  snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", ntohs(sin.sin_port));
  tusc_s3_options_t o;
  base_options(&o);
  o.endpoint = ep;
  struct ctx c;
  ctx_open_with(&c, &o);
  tusc_s3_req_t r;
  tusc_s3_req_init(&r);
  assert_int_equal(RUN(&c, &r, tusc_s3_head_object(c.sl, &r, "k", on_req_done)),
                   TUSC_ES3_UNAVAILABLE);
  assert_int_equal(r.http_status, 0);
  assert_true(r.message[0] != '\0');
  ctx_close(&c);
}

/* --- GET streamed, ranges, pause/resume, cancel ---------------------------------------------- */

struct stream {
  struct ctx *c;
  tusc_s3_req_t req;
  unsigned char *got;
  size_t len, cap;
  int pauses, agains;
  bool paused;     /* no delivery may come while set */
  bool again_next; /* answer AGAIN once, then expect the same bytes */
  const char *again_data;
  size_t again_len;
  uv_timer_t resume;
  int mode; /* 0: continue, 1: pause after every piece, 2: AGAIN on every other piece */
};

static void on_resume(uv_timer_t *t) {
  struct stream *s = t->data;
  s->paused = false;
  tusc_s3_resume(s->c->sl, &s->req);
  tusc_s3_resume(s->c->sl, &s->req); /* twice is harmless */
}

static int on_piece(tusc_s3_req_t *req, const char *data, size_t len) {
  struct stream *s = (struct stream *)((char *)req - offsetof(struct stream, req));
  assert_false(s->paused);
  if (s->mode == 2 && s->again_data == NULL && (s->agains % 2) == 0 && s->agains < 40) {
    s->agains++;
    s->again_data = data;
    s->again_len = len;
    s->paused = true;
    uv_timer_start(&s->resume, on_resume, 0, 0);
    return TUSC_S3_BODY_AGAIN;
  }
  if (s->again_data != NULL) {
    /* Redelivered after AGAIN (curl may hand them over in other pieces). */
    assert_true(len > 0);
    s->again_data = NULL;
    s->agains++;
  }
  assert_true(s->len + len <= s->cap);
  memcpy(s->got + s->len, data, len);
  s->len += len;
  if (s->mode == 1) {
    s->pauses++;
    s->paused = true;
    uv_timer_start(&s->resume, on_resume, 0, 0);
    return TUSC_S3_BODY_PAUSE;
  }
  return TUSC_S3_BODY_CONTINUE;
}

static void stream_get(struct ctx *c, struct stream *s, const char *k, uint64_t first,
                       uint64_t last, size_t cap, int mode, int want_status) {
  memset(s, 0, sizeof(*s));
  s->c = c;
  s->cap = cap;
  s->got = malloc(cap ? cap : 1);
  s->mode = mode;
  uv_timer_init(&c->loop, &s->resume);
  s->resume.data = s;
  tusc_s3_req_init(&s->req);
  assert_int_equal(
      RUN(c, &s->req, tusc_s3_get_object(c->sl, &s->req, k, first, last, on_piece, on_req_done)),
      want_status);
  uv_close((uv_handle_t *)&s->resume, NULL);
  uv_run(&c->loop, UV_RUN_NOWAIT); /* the close completes before `s` is reused */
}

static void test_get_stream_pause_resume(void **state) {
  (void)state;
  skip_without_rgw();
  struct ctx c;
  ctx_open(&c);
  size_t len = 3 * MIB + 123;
  unsigned char *body = pattern(len, 3);
  const char *k = key(&c, "stream.bin");
  put(&c, k, body, len);

  struct stream s;
  stream_get(&c, &s, k, TUSC_S3_NO_RANGE, 0, len, 0, 0);
  assert_int_equal(s.len, len);
  assert_memory_equal(s.got, body, len);
  assert_int_equal(s.req.content_length, len);
  assert_int_equal(s.req.object_size, len);
  free(s.got);

  /* Paused after every piece, resumed a loop turn later: same bytes, in order. */
  stream_get(&c, &s, k, TUSC_S3_NO_RANGE, 0, len, 1, 0);
  assert_int_equal(s.len, len);
  assert_memory_equal(s.got, body, len);
  assert_true(s.pauses > 2);
  free(s.got);

  /* AGAIN: nothing taken, the same bytes come back after the resume. */
  stream_get(&c, &s, k, TUSC_S3_NO_RANGE, 0, len, 2, 0);
  assert_int_equal(s.len, len);
  assert_memory_equal(s.got, body, len);
  assert_true(s.agains >= 2);
  free(s.got);

  /* Ranges: inside, to the end, and past the end. */
  stream_get(&c, &s, k, 1000, 1999, 1000, 0, 0);
  assert_int_equal(s.len, 1000);
  assert_memory_equal(s.got, body + 1000, 1000);
  assert_int_equal(s.req.content_length, 1000);
  assert_int_equal(s.req.object_size, len);
  assert_int_equal(s.req.http_status, 206);
  free(s.got);
  stream_get(&c, &s, k, len - 10, UINT64_MAX, 10, 0, 0);
  assert_int_equal(s.len, 10);
  assert_memory_equal(s.got, body + len - 10, 10);
  free(s.got);
  stream_get(&c, &s, k, len + 10, UINT64_MAX, 10, 0, TUSC_EINVALID_RANGE);
  assert_int_equal(s.len, 0);
  assert_int_equal(s.req.http_status, 416);
  free(s.got);
  free(body);
  ctx_close(&c);
}

/* A body callback's error ends the request with it. */
static int refuse(tusc_s3_req_t *req, const char *data, size_t len) {
  (void)req, (void)data, (void)len;
  return UV_EPIPE;
}

/* Cancel while paused: no callback ever; the loop closes with nothing left. */
static int pause_forever(tusc_s3_req_t *req, const char *data, size_t len) {
  (void)data, (void)len;
  struct done *d = req->data;
  d->calls += 100; /* seen a piece */
  uv_stop(cur_loop);
  return TUSC_S3_BODY_PAUSE;
}

static void test_get_cancel_and_body_error(void **state) {
  (void)state;
  skip_without_rgw();
  struct ctx c;
  ctx_open(&c);
  size_t len = 4 * MIB;
  unsigned char *body = pattern(len, 4);
  const char *k = key(&c, "cancel.bin");
  put(&c, k, body, len);
  free(body);

  tusc_s3_req_t r;
  tusc_s3_req_init(&r);
  assert_int_equal(
      RUN(&c, &r, tusc_s3_get_object(c.sl, &r, k, TUSC_S3_NO_RANGE, 0, refuse, on_req_done)),
      UV_EPIPE);

  struct done d = {0};
  r.data = &d;
  assert_int_equal(tusc_s3_get_object(c.sl, &r, k, TUSC_S3_NO_RANGE, 0, pause_forever, on_req_done),
                   0);
  wait_for(&c, &d.calls, 100, "first piece"); /* the first piece came and paused the transfer */
  tusc_s3_cancel(c.sl, &r);
  tusc_s3_cancel(c.sl, &r); /* no-op */
  tusc_s3_resume(c.sl, &r); /* no-op */
  assert_int_equal(d.calls, 100);

  /* Cancel right after the start, and one left in flight at close (cancelled there). */
  tusc_s3_req_t r2, r3;
  tusc_s3_req_init(&r2);
  tusc_s3_req_init(&r3);
  struct done d2 = {0}, d3 = {0};
  r2.data = &d2;
  r3.data = &d3;
  assert_int_equal(tusc_s3_head_object(c.sl, &r2, k, on_req_done), 0);
  tusc_s3_cancel(c.sl, &r2);
  assert_int_equal(
      tusc_s3_get_object(c.sl, &r3, k, TUSC_S3_NO_RANGE, 0, pause_forever, on_req_done), 0);
  ctx_close(&c);
  assert_int_equal(d2.calls, 0);
  assert_true(d3.calls == 0 || d3.calls == 100);
}

/* --- multipart ------------------------------------------------------------------------------ */

static void create_mp(struct ctx *c, const char *k, char *upload_id) {
  tusc_s3_req_t r;
  tusc_s3_req_init(&r);
  assert_int_equal(RUN(c, &r, tusc_s3_create_multipart(c->sl, &r, k, NULL, on_req_done)), 0);
  assert_true(r.upload_id[0] != '\0');
  strcpy(upload_id, r.upload_id);
}

static void part(struct ctx *c, const char *k, const char *id, int n, const void *b, size_t len,
                 tusc_s3_part_t *out) {
  tusc_s3_req_t r;
  tusc_s3_req_init(&r);
  assert_int_equal(RUN(c, &r, tusc_s3_upload_part(c->sl, &r, k, id, n, b, len, on_req_done)), 0);
  assert_true(r.etag[0] == '"');
  out->part_number = n;
  out->size = len;
  strcpy(out->etag, r.etag);
}

static int pages_seen;
static int count_parts(tusc_s3_req_t *req, const tusc_s3_part_t *parts, size_t n) {
  (void)parts;
  struct done *d = req->data;
  (void)d;
  pages_seen++;
  assert_true(n <= 2);
  return 0;
}

static void test_multipart_and_list_parts(void **state) {
  (void)state;
  skip_without_rgw();
  struct ctx c;
  ctx_open(&c);
  const char *k = key(&c, "multi part/obj");
  char id[TUSC_S3_UPLOAD_ID_MAX];
  create_mp(&c, k, id);
  /* Two parts of the configured minimum and a short last one. */
  size_t full = (size_t)env_min_part, total = 2 * full + 777;
  unsigned char *body = pattern(total, 9);
  tusc_s3_part_t parts[3];
  part(&c, k, id, 1, body, full, &parts[0]);
  part(&c, k, id, 2, body + full, full, &parts[1]);
  part(&c, k, id, 3, body + 2 * full, 777, &parts[2]);

  /* All pages into an array, two parts per page. */
  tusc_s3_req_t r;
  tusc_s3_req_init(&r);
  assert_int_equal(RUN(&c, &r, tusc_s3_list_parts(c.sl, &r, k, id, 2, NULL, on_req_done)), 0);
  assert_int_equal(r.nparts, 3);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(r.parts[i].part_number, i + 1);
    assert_int_equal(r.parts[i].size, parts[i].size);
    assert_string_equal(r.parts[i].etag, parts[i].etag);
  }
  tusc_s3_req_dispose(&r);
  /* Page by page. */
  pages_seen = 0;
  assert_int_equal(RUN(&c, &r, tusc_s3_list_parts(c.sl, &r, k, id, 2, count_parts, on_req_done)),
                   0);
  assert_int_equal(pages_seen, 2);

  assert_int_equal(RUN(&c, &r, tusc_s3_complete_multipart(c.sl, &r, k, id, parts, 3, on_req_done)),
                   0);
  get_expect(&c, k, body, total);
  assert_int_equal(RUN(&c, &r, tusc_s3_head_object(c.sl, &r, k, on_req_done)), 0);
  assert_int_equal(r.content_length, total);
  /* The upload is gone once complete. */
  assert_int_equal(RUN(&c, &r, tusc_s3_list_parts(c.sl, &r, k, id, 0, NULL, on_req_done)),
                   TUSC_ES3_NO_SUCH_UPLOAD);
  tusc_s3_req_dispose(&r);
  free(body);
  ctx_close(&c);
}

/* With RGW's real 5 MiB minimum, a small non-last part fails the completion. */
static void test_entity_too_small(void **state) {
  (void)state;
  skip_without_rgw();
  if (env_min_part < 5 * MIB)
    skip();
  struct ctx c;
  ctx_open(&c);
  const char *k = key(&c, "small");
  char id[TUSC_S3_UPLOAD_ID_MAX];
  create_mp(&c, k, id);
  tusc_s3_part_t parts[2];
  part(&c, k, id, 1, "0123456789", 10, &parts[0]);
  part(&c, k, id, 2, "abc", 3, &parts[1]);
  tusc_s3_req_t r;
  tusc_s3_req_init(&r);
  assert_int_equal(RUN(&c, &r, tusc_s3_complete_multipart(c.sl, &r, k, id, parts, 2, on_req_done)),
                   TUSC_ES3_ENTITY_TOO_SMALL);
  assert_string_equal(r.s3_code, "EntityTooSmall");
  assert_int_equal(r.http_status, 400);
  assert_int_equal(RUN(&c, &r, tusc_s3_abort_multipart(c.sl, &r, k, id, on_req_done)), 0);
  assert_int_equal(RUN(&c, &r, tusc_s3_list_parts(c.sl, &r, k, id, 0, NULL, on_req_done)),
                   TUSC_ES3_NO_SUCH_UPLOAD);
  tusc_s3_req_dispose(&r);
  ctx_close(&c);
}

/* After an abort, the operations on the upload say it is gone. */
static void test_aborted_upload(void **state) {
  (void)state;
  skip_without_rgw();
  struct ctx c;
  ctx_open(&c);
  const char *k = key(&c, "aborted");
  char id[TUSC_S3_UPLOAD_ID_MAX];
  create_mp(&c, k, id);
  tusc_s3_part_t parts[1];
  part(&c, k, id, 1, "0123456789", 10, &parts[0]);
  tusc_s3_req_t r;
  tusc_s3_req_init(&r);
  assert_int_equal(RUN(&c, &r, tusc_s3_abort_multipart(c.sl, &r, k, id, on_req_done)), 0);
  assert_int_equal(RUN(&c, &r, tusc_s3_list_parts(c.sl, &r, k, id, 0, NULL, on_req_done)),
                   TUSC_ES3_NO_SUCH_UPLOAD);
  tusc_s3_req_dispose(&r);
  assert_int_equal(RUN(&c, &r, tusc_s3_upload_part(c.sl, &r, k, id, 2, "x", 1, on_req_done)),
                   TUSC_ES3_NO_SUCH_UPLOAD);
  /* AWS: NoSuchUpload. RGW 16 (pacific): 500 InternalError "This multipart completion is
   * already in progress" — a retryable error to us; a store must not retry it forever. */
  int st = RUN(&c, &r, tusc_s3_complete_multipart(c.sl, &r, k, id, parts, 1, on_req_done));
  assert_true(st == TUSC_ES3_NO_SUCH_UPLOAD ||
              (st == TUSC_ES3_UNAVAILABLE && r.http_status == 500));
  assert_int_equal(RUN(&c, &r, tusc_s3_abort_multipart(c.sl, &r, k, id, on_req_done)),
                   TUSC_ES3_NO_SUCH_UPLOAD);
  ctx_close(&c);
}

static void test_upload_part_copy_ranged(void **state) {
  (void)state;
  skip_without_rgw();
  struct ctx c;
  ctx_open(&c);
  size_t full = (size_t)env_min_part, total = full + 4321;
  unsigned char *body = pattern(total, 11);
  const char *src = key(&c, "copy src/ü.bin");
  put(&c, src, body, total);
  const char *dst = key(&c, "copy dst");
  char id[TUSC_S3_UPLOAD_ID_MAX];
  create_mp(&c, dst, id);
  tusc_s3_part_t parts[3];
  tusc_s3_req_t r;
  tusc_s3_req_init(&r);
  /* [0, full) of the source by a ranged copy, the same bytes uploaded, then
   * [full, total) by a ranged copy: the object is body[0..full) + body. */
  assert_int_equal(
      RUN(&c, &r, tusc_s3_upload_part_copy(c.sl, &r, dst, id, 1, src, 0, full - 1, on_req_done)),
      0);
  assert_true(r.etag[0] != '\0');
  parts[0] = (tusc_s3_part_t){.part_number = 1};
  strcpy(parts[0].etag, r.etag);
  part(&c, dst, id, 2, body, full, &parts[1]);
  assert_int_equal(
      RUN(&c, &r,
          tusc_s3_upload_part_copy(c.sl, &r, dst, id, 3, src, full, total - 1, on_req_done)),
      0);
  parts[2] = (tusc_s3_part_t){.part_number = 3};
  strcpy(parts[2].etag, r.etag);
  /* A copy from a missing source is NoSuchKey (not taken for a missing upload). */
  assert_int_equal(RUN(&c, &r,
                       tusc_s3_upload_part_copy(c.sl, &r, dst, id, 4, key(&c, "nope"),
                                                TUSC_S3_NO_RANGE, 0, on_req_done)),
                   TUSC_ES3_NO_SUCH_KEY);
  assert_int_equal(
      RUN(&c, &r, tusc_s3_complete_multipart(c.sl, &r, dst, id, parts, 3, on_req_done)), 0);
  unsigned char *want = malloc(total + full);
  memcpy(want, body, full);
  memcpy(want + full, body, total);
  get_expect(&c, dst, want, total + full);
  free(want);

  /* A whole-object copy. */
  const char *dst2 = key(&c, "copy whole");
  create_mp(&c, dst2, id);
  assert_int_equal(
      RUN(&c, &r,
          tusc_s3_upload_part_copy(c.sl, &r, dst2, id, 1, src, TUSC_S3_NO_RANGE, 0, on_req_done)),
      0);
  parts[0] = (tusc_s3_part_t){.part_number = 1};
  strcpy(parts[0].etag, r.etag);
  assert_int_equal(
      RUN(&c, &r, tusc_s3_complete_multipart(c.sl, &r, dst2, id, parts, 1, on_req_done)), 0);
  get_expect(&c, dst2, body, total);
  free(body);
  ctx_close(&c);
}

/* --- lists ------------------------------------------------------------------------------------ */

struct listing {
  int pages;
  int n;
  char keys[16][256];
  int stop_after; /* pages; 0 = never */
};

/* RUN's done struct with the listing the visitors fill. */
struct done_list {
  struct done d;
  struct listing *l;
};

static int visit_objects(tusc_s3_req_t *req, const tusc_s3_object_t *objs, size_t n) {
  struct listing *l = ((struct done_list *)req->data)->l;
  l->pages++;
  for (size_t i = 0; i < n; i++) {
    assert_true(l->n < 16);
    snprintf(l->keys[l->n++], sizeof(l->keys[0]), "%s", objs[i].key);
    assert_true(objs[i].size > 0);
    assert_true(objs[i].etag[0] != '\0');
    assert_true(objs[i].last_modified[0] != '\0');
  }
  return l->stop_after && l->pages >= l->stop_after ? 1 : 0;
}

static int visit_uploads(tusc_s3_req_t *req, const tusc_s3_upload_t *ups, size_t n) {
  struct listing *l = ((struct done_list *)req->data)->l;
  l->pages++;
  for (size_t i = 0; i < n; i++) {
    assert_true(l->n < 16);
    snprintf(l->keys[l->n++], sizeof(l->keys[0]), "%s", ups[i].key);
    assert_true(ups[i].upload_id[0] != '\0');
    assert_true(ups[i].initiated[0] != '\0');
  }
  return 0;
}

static int run_list(struct ctx *c, tusc_s3_req_t *r, struct listing *l, int kind, int max) {
  struct done_list dl = {{0}, l};
  r->data = &dl;
  in_call = true;
  int rc = kind == 0 ? tusc_s3_list_objects(c->sl, r, c->prefix, max, visit_objects, on_req_done)
                     : tusc_s3_list_multipart_uploads(c->sl, r, c->prefix, max, visit_uploads,
                                                      on_req_done);
  in_call = false;
  assert_int_equal(rc, 0);
  wait_for(c, &dl.d.calls, 1, kind == 0 ? "list_objects" : "list_uploads");
  return dl.d.status;
}

static void test_list_objects_and_uploads(void **state) {
  (void)state;
  skip_without_rgw();
  struct ctx c;
  ctx_open(&c);
  const char *names[] = {"e", "a", "d/x y", "b", "c\xc3\xa9"};
  for (int i = 0; i < 5; i++)
    put(&c, key(&c, names[i]), "data", 4);
  put(&c, "outside-the-prefix", "zz", 2);

  tusc_s3_req_t r;
  tusc_s3_req_init(&r);
  struct listing l = {0};
  assert_int_equal(run_list(&c, &r, &l, 0, 2), 0);
  assert_int_equal(l.pages, 3);
  assert_int_equal(l.n, 5);
  const char *sorted[] = {"a", "b", "c\xc3\xa9", "d/x y", "e"};
  for (int i = 0; i < 5; i++) {
    char want[128];
    snprintf(want, sizeof(want), "%s%s", c.prefix, sorted[i]);
    assert_string_equal(l.keys[i], want);
  }
  /* The visitor stops after the first page. */
  memset(&l, 0, sizeof(l));
  l.stop_after = 1;
  assert_int_equal(run_list(&c, &r, &l, 0, 2), 0);
  assert_int_equal(l.pages, 1);
  assert_int_equal(l.n, 2);

  /* Three multipart uploads (two on one key), two per page. */
  char id[3][TUSC_S3_UPLOAD_ID_MAX];
  const char *mk[3] = {key(&c, "mp1"), key(&c, "mp1"), key(&c, "mp2")};
  char keys[3][256];
  for (int i = 0; i < 3; i++) {
    snprintf(keys[i], sizeof(keys[i]), "%s", mk[i]);
    create_mp(&c, keys[i], id[i]);
  }
  memset(&l, 0, sizeof(l));
  assert_int_equal(run_list(&c, &r, &l, 1, 2), 0);
  assert_int_equal(l.n, 3);
  assert_true(l.pages >= 2);
  for (int i = 0; i < 3; i++)
    assert_int_equal(RUN(&c, &r, tusc_s3_abort_multipart(c.sl, &r, keys[i], id[i], on_req_done)),
                     0);
  memset(&l, 0, sizeof(l));
  assert_int_equal(run_list(&c, &r, &l, 1, 0), 0);
  assert_int_equal(l.n, 0);
  assert_int_equal(RUN(&c, &r, tusc_s3_delete_object(c.sl, &r, "outside-the-prefix", on_req_done)),
                   0);
  ctx_close(&c);
}

/* Virtual-host addressing: bucket.localhost (curl resolves *.localhost to loopback;
 * rgw.py sets "rgw dns name = localhost"). */
static void test_virtual_host(void **state) {
  (void)state;
  skip_without_rgw();
  const char *port = strrchr(env_endpoint, ':');
  assert_non_null(port);
  char ep[64];
  snprintf(ep, sizeof(ep), "localhost%s", port);
  tusc_s3_options_t o;
  base_options(&o);
  o.endpoint = ep;
  o.disable_ssl = true; /* no scheme: http because of -s3-disable-ssl */
  o.path_style = false;
  o.sign_payload = true;
  struct ctx c;
  ctx_open_with(&c, &o);
  assert_int_equal(strncmp(tusc_s3_endpoint(c.s3), "http://localhost:", 17), 0);
  put(&c, key(&c, "vhost key"), "virtual", 7);
  get_expect(&c, key(&c, "vhost key"), "virtual", 7);
  tusc_s3_req_t r;
  tusc_s3_req_init(&r);
  assert_int_equal(RUN(&c, &r, tusc_s3_delete_object(c.sl, &r, key(&c, "vhost key"), on_req_done)),
                   0);
  ctx_close(&c);
}

/* Client-side TCP connections of this process to `port` that are established
 * (/proc/net/tcp: remote address 127.0.0.1:port, state 01). */
static int established_to(int port) {
  FILE *f = fopen("/proc/net/tcp", "r");
  assert_non_null(f);
  char line[512];
  int n = 0;
  char want[32];
  snprintf(want, sizeof(want), "0100007F:%04X", port);
  while (fgets(line, sizeof(line), f) != NULL) {
    char local[64], remote[64], st[8];
    if (sscanf(line, "%*d: %63s %63s %7s", local, remote, st) == 3 && strcmp(remote, want) == 0 &&
        strcmp(st, "01") == 0)
      n++;
  }
  fclose(f);
  return n;
}

/* Sequential requests on one loop reuse one connection (keep-alive). */
static void test_keepalive(void **state) {
  (void)state;
  skip_without_rgw();
  int port = atoi(strrchr(env_endpoint, ':') + 1);
  int before = established_to(port);
  struct ctx c;
  ctx_open(&c);
  put(&c, key(&c, "ka"), "ka", 2);
  for (int i = 0; i < 20; i++) {
    tusc_s3_req_t r;
    tusc_s3_req_init(&r);
    assert_int_equal(RUN(&c, &r, tusc_s3_head_object(c.sl, &r, key(&c, "ka"), on_req_done)), 0);
  }
  get_expect(&c, key(&c, "ka"), "ka", 2);
  assert_int_equal(established_to(port) - before, 1);
  ctx_close(&c);
}

static void on_late_resume(uv_timer_t *t) {
  struct stream *s = t->data;
  s->paused = false;
  tusc_s3_resume(s->c->sl, &s->req);
}

static int pause_once_long(tusc_s3_req_t *req, const char *data, size_t len) {
  struct stream *s = (struct stream *)((char *)req - offsetof(struct stream, req));
  assert_false(s->paused);
  assert_true(s->len + len <= s->cap);
  memcpy(s->got + s->len, data, len);
  s->len += len;
  if (s->pauses++ == 0) {
    s->paused = true;
    uv_timer_start(&s->resume, on_late_resume, 2500, 0);
    return TUSC_S3_BODY_PAUSE;
  }
  return TUSC_S3_BODY_CONTINUE;
}

/* A GET paused longer than the low-speed window (a slow client of tusc) is not failed
 * by it: curl exempts paused transfers from the speed check. */
static void test_long_pause_not_low_speed(void **state) {
  (void)state;
  skip_without_rgw();
  tusc_s3_options_t o;
  base_options(&o);
  o.low_speed_time_s = 1;
  o.low_speed_bytes = 1000;
  struct ctx c;
  ctx_open_with(&c, &o);
  size_t len = 2 * MIB;
  unsigned char *body = pattern(len, 21);
  const char *k = key(&c, "slow reader");
  put(&c, k, body, len);
  struct stream s;
  memset(&s, 0, sizeof(s));
  s.c = &c;
  s.cap = len;
  s.got = malloc(len);
  uv_timer_init(&c.loop, &s.resume);
  s.resume.data = &s;
  tusc_s3_req_init(&s.req);
  assert_int_equal(
      RUN(&c, &s.req,
          tusc_s3_get_object(c.sl, &s.req, k, TUSC_S3_NO_RANGE, 0, pause_once_long, on_req_done)),
      0);
  assert_int_equal(s.len, len);
  assert_memory_equal(s.got, body, len);
  uv_close((uv_handle_t *)&s.resume, NULL);
  free(s.got);
  free(body);
  ctx_close(&c);
}

/* Many requests in flight on one loop at once, then a clean close. */
static void test_concurrent(void **state) {
  (void)state;
  skip_without_rgw();
  struct ctx c;
  ctx_open(&c);
  enum { N = 24 };
  tusc_s3_req_t r[N];
  struct done d[N];
  int total = 0;
  char keys[N][128];
  char body[N][32];
  for (int i = 0; i < N; i++) {
    tusc_s3_req_init(&r[i]);
    memset(&d[i], 0, sizeof(d[i]));
    r[i].data = &d[i];
    snprintf(keys[i], sizeof(keys[i]), "%sconc-%d", c.prefix, i);
    snprintf(body[i], sizeof(body[i]), "body %d", i);
    assert_int_equal(tusc_s3_put_object(c.sl, &r[i], keys[i], body[i], strlen(body[i]),
                                        "text/plain", on_req_done),
                     0);
  }
  c.timed_out = false;
  uv_timer_start(&c.guard, on_guard, DEADLINE_MS, 0);
  while (!c.timed_out) {
    total = 0;
    for (int i = 0; i < N; i++)
      total += d[i].calls;
    if (total == N)
      break;
    uv_run(&c.loop, UV_RUN_ONCE);
  }
  uv_timer_stop(&c.guard);
  assert_int_equal(total, N);
  for (int i = 0; i < N; i++) {
    assert_int_equal(d[i].status, 0);
    get_expect(&c, keys[i], body[i], strlen(body[i]));
  }
  ctx_close(&c);
}

/* --- without RGW: configuration and credentials ----------------------------------------------- */

static void test_new_checks(void **state) {
  (void)state;
  tusc_s3_options_t o = {.bucket = "b-1.x", .access_key = "A", .secret_key = "S"};
  tusc_s3_t *s3 = NULL;
  assert_int_equal(tusc_s3_new(&o, &s3), 0);
  assert_string_equal(tusc_s3_endpoint(s3), "https://s3.us-east-1.amazonaws.com");
  assert_string_equal(tusc_s3_region(s3), "us-east-1");
  assert_string_equal(tusc_s3_bucket(s3), "b-1.x");
  tusc_s3_free(s3);
  o.endpoint = "minio.local:9000";
  o.disable_ssl = true;
  assert_int_equal(tusc_s3_new(&o, &s3), 0);
  assert_string_equal(tusc_s3_endpoint(s3), "http://minio.local:9000");
  tusc_s3_free(s3);
  o.endpoint = "https://r2.example:443/";
  assert_int_equal(tusc_s3_new(&o, &s3), 0);
  assert_string_equal(tusc_s3_endpoint(s3), "https://r2.example");
  tusc_s3_free(s3);
  o.endpoint = "http://host/some/path";
  assert_int_equal(tusc_s3_new(&o, &s3), TUSC_EINVALID_ARGUMENT);
  o.endpoint = "ftp://host";
  assert_int_equal(tusc_s3_new(&o, &s3), TUSC_EINVALID_ARGUMENT);
  o.endpoint = NULL;
  o.bucket = "Not_A_DNS_Name"; /* fine with path style only */
  assert_int_equal(tusc_s3_new(&o, &s3), TUSC_EINVALID_ARGUMENT);
  o.path_style = true;
  assert_int_equal(tusc_s3_new(&o, &s3), 0);
  tusc_s3_free(s3);
  o.secret_key = NULL;
  assert_int_equal(tusc_s3_new(&o, &s3), TUSC_EINVALID_ARGUMENT);
  tusc_s3_free(NULL);
}

static void test_creds_parse(void **state) {
  (void)state;
  static const char text[] = "# comment\n"
                             "[default]\n"
                             "aws_access_key_id = AKDEFAULT\n"
                             "aws_secret_access_key=secret/default+x\n"
                             "\n"
                             "[profile other]\r\n"
                             "  aws_access_key_id =  AKOTHER  \r\n"
                             "aws_secret_access_key = s2\r\n"
                             "aws_session_token = tok==\r\n"
                             "; another comment\n"
                             "region = eu-west-3\n"
                             "[broken]\n"
                             "aws_access_key_id = only\n";
  tusc_s3_creds_t c;
  assert_int_equal(tusc_s3_creds_parse(text, sizeof(text) - 1, "default", &c), 0);
  assert_string_equal(c.access_key, "AKDEFAULT");
  assert_string_equal(c.secret_key, "secret/default+x");
  assert_null(c.session_token);
  assert_null(c.region);
  tusc_s3_creds_dispose(&c);
  assert_int_equal(tusc_s3_creds_parse(text, sizeof(text) - 1, "other", &c), 0);
  assert_string_equal(c.access_key, "AKOTHER");
  assert_string_equal(c.secret_key, "s2");
  assert_string_equal(c.session_token, "tok==");
  assert_string_equal(c.region, "eu-west-3");
  tusc_s3_creds_dispose(&c);
  assert_int_equal(tusc_s3_creds_parse(text, sizeof(text) - 1, "broken", &c), TUSC_ES3_NO_SUCH_KEY);
  assert_int_equal(tusc_s3_creds_parse(text, sizeof(text) - 1, "absent", &c), TUSC_ES3_NO_SUCH_KEY);
  assert_int_equal(tusc_s3_creds_parse("", 0, "default", &c), TUSC_ES3_NO_SUCH_KEY);
}

static char *save_env(const char *name) {
  const char *v = getenv(name);
  return v ? strdup(v) : NULL;
}

static void restore_env(const char *name, char *v) {
  if (v != NULL)
    setenv(name, v, 1);
  else
    unsetenv(name);
  free(v);
}

static void test_creds_load(void **state) {
  (void)state;
  const char *names[] = {
      "AWS_ACCESS_KEY_ID",  "AWS_SECRET_ACCESS_KEY",       "AWS_SESSION_TOKEN", "AWS_REGION",
      "AWS_DEFAULT_REGION", "AWS_SHARED_CREDENTIALS_FILE", "AWS_PROFILE"};
  char *saved[7];
  for (int i = 0; i < 7; i++) {
    saved[i] = save_env(names[i]);
    unsetenv(names[i]);
  }
  tusc_s3_creds_t c;
  /* The environment first. */
  setenv("AWS_ACCESS_KEY_ID", "AKENV", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "skenv", 1);
  setenv("AWS_SESSION_TOKEN", "tokenv", 1);
  assert_int_equal(tusc_s3_creds_load(&c), 0);
  assert_string_equal(c.access_key, "AKENV");
  assert_string_equal(c.session_token, "tokenv");
  assert_string_equal(c.region, "us-east-1");
  tusc_s3_creds_dispose(&c);
  unsetenv("AWS_ACCESS_KEY_ID");
  unsetenv("AWS_SECRET_ACCESS_KEY");
  unsetenv("AWS_SESSION_TOKEN");

  /* Then the shared file and its profile; AWS_REGION wins over the file's region. */
  char path[] = "/tmp/tusc-creds-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  static const char text[] = "[default]\naws_access_key_id=AKFILE\naws_secret_access_key=skfile\n"
                             "[p2]\naws_access_key_id=AKP2\naws_secret_access_key=skp2\n"
                             "region=ap-south-1\n";
  assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
  close(fd);
  setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
  assert_int_equal(tusc_s3_creds_load(&c), 0);
  assert_string_equal(c.access_key, "AKFILE");
  assert_string_equal(c.region, "us-east-1");
  tusc_s3_creds_dispose(&c);
  setenv("AWS_PROFILE", "p2", 1);
  assert_int_equal(tusc_s3_creds_load(&c), 0);
  assert_string_equal(c.access_key, "AKP2");
  assert_string_equal(c.region, "ap-south-1");
  tusc_s3_creds_dispose(&c);
  setenv("AWS_REGION", "eu-north-1", 1);
  assert_int_equal(tusc_s3_creds_load(&c), 0);
  assert_string_equal(c.region, "eu-north-1");
  tusc_s3_creds_dispose(&c);
  setenv("AWS_PROFILE", "nope", 1);
  assert_int_equal(tusc_s3_creds_load(&c), TUSC_ES3_NO_SUCH_KEY);
  unlink(path);
  assert_int_equal(tusc_s3_creds_load(&c), TUSC_ES3_NO_SUCH_KEY);
  for (int i = 0; i < 7; i++)
    restore_env(names[i], saved[i]);
}

int main(void) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  env_endpoint = getenv("TUSC_S3_ENDPOINT");
  env_bucket = getenv("TUSC_S3_BUCKET");
  env_ak = getenv("AWS_ACCESS_KEY_ID");
  env_sk = getenv("AWS_SECRET_ACCESS_KEY");
  const char *mp = getenv("TUSC_S3_MIN_PART_SIZE");
  env_min_part = mp ? strtoull(mp, NULL, 10) : 5 * MIB;
  if (env_endpoint == NULL || env_bucket == NULL || env_ak == NULL || env_sk == NULL) {
    env_endpoint = NULL;
    fprintf(stderr, "test_s3_client: no TUSC_S3_ENDPOINT; RGW tests skipped "
                    "(run through tests/s3/rgw.py run --)\n");
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_new_checks),
      cmocka_unit_test(test_creds_parse),
      cmocka_unit_test(test_creds_load),
      cmocka_unit_test(test_put_get_head_delete),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_bad_credentials),
      cmocka_unit_test(test_unreachable),
      cmocka_unit_test(test_get_stream_pause_resume),
      cmocka_unit_test(test_get_cancel_and_body_error),
      cmocka_unit_test(test_multipart_and_list_parts),
      cmocka_unit_test(test_entity_too_small),
      cmocka_unit_test(test_aborted_upload),
      cmocka_unit_test(test_upload_part_copy_ranged),
      cmocka_unit_test(test_list_objects_and_uploads),
      cmocka_unit_test(test_virtual_host),
      cmocka_unit_test(test_concurrent),
      cmocka_unit_test(test_keepalive),
      cmocka_unit_test(test_long_pause_not_low_speed),
  };
  const char *filter = getenv("TUSC_TEST_FILTER"); /* e.g. "test_put*" */
  if (filter != NULL)
    cmocka_set_test_filter(filter);
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}

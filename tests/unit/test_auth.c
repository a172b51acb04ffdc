/* Unit tests for src/auth/auth.c: Host allow list matching, proxy trust decisions,
 * WWW-Authenticate challenges (realm escaping), Basic checks on the thread pool with
 * the success cache answering at once, Bearer checks, and reload keeping the old
 * credentials when the new file is bad. */
#include <crypt.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "auth/auth.h"
#include "common/base64.h"
#include "common/error.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static tusc_config_t base_cfg(void) {
  tusc_config_t cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.auth_jwt_alg = "HS256";
  cfg.auth_realm = "tusc";
  return cfg;
}

static void test_hosts(void **state) {
  (void)state;
  tusc_config_t cfg = base_cfg();
  cfg.allowed_hosts = "uploads.example, Files.Example:8443 ,[2001:db8::1],,";
  tusc_auth_t *auth = NULL;
  assert_int_equal(tusc_auth_new(&cfg, &auth), 0);
  assert_true(tusc_auth_hosts_limited(auth));
  static const struct {
    const char *host;
    bool ok;
  } cases[] = {
      {"uploads.example", true},
      {"UPLOADS.EXAMPLE", true},
      {"uploads.example:443", true},
      {"uploads.example.", true},
      {"files.example", true},
      {"files.example:1", true},
      {"[2001:db8::1]", true},
      {"[2001:db8::1]:8080", true},
      {"2001:db8::1", false},
      {"[2001:db8::2]", false},
      {"evil.example", false},
      {"uploads.example.evil", false},
      {"uploads.exampl", false},
      {"", false},
      {":80", false},
      {"[2001:db8::1", false},
      {"xuploads.example", false},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    bool got = tusc_auth_host_allowed(auth, cases[i].host, strlen(cases[i].host));
    if (got != cases[i].ok)
      fail_msg("host \"%s\": %d, want %d", cases[i].host, got, cases[i].ok);
  }
  assert_false(tusc_auth_host_allowed(auth, NULL, 0));
  tusc_auth_free(auth);

  cfg.allowed_hosts = " , ";
  assert_int_equal(tusc_auth_new(&cfg, &auth), TUSC_EINVALID_ARGUMENT);
  cfg.allowed_hosts = NULL;
  assert_int_equal(tusc_auth_new(&cfg, &auth), 0);
  assert_false(tusc_auth_hosts_limited(auth));
  assert_true(tusc_auth_host_allowed(auth, "anything", 8));
  assert_false(tusc_auth_required(auth));
  tusc_auth_free(auth);
}

static void test_proxies(void **state) {
  (void)state;
  tusc_config_t cfg = base_cfg();
  tusc_auth_t *auth = NULL;
  /* neither flag: nobody */
  assert_int_equal(tusc_auth_new(&cfg, &auth), 0);
  assert_false(tusc_auth_proxy_trusted(auth, "127.0.0.1"));
  tusc_auth_free(auth);
  /* -behind-proxy alone: everybody (tusd) */
  cfg.behind_proxy = true;
  assert_int_equal(tusc_auth_new(&cfg, &auth), 0);
  assert_true(tusc_auth_proxy_trusted(auth, "198.51.100.1"));
  tusc_auth_free(auth);
  /* a list: only its members, unix peers always */
  cfg.trusted_proxies = "127.0.0.1/32, fd00::/8";
  assert_int_equal(tusc_auth_new(&cfg, &auth), 0);
  assert_true(tusc_auth_proxy_trusted(auth, "127.0.0.1"));
  assert_true(tusc_auth_proxy_trusted(auth, "fd12::1"));
  assert_true(tusc_auth_proxy_trusted(auth, ""));
  assert_false(tusc_auth_proxy_trusted(auth, "127.0.0.2"));
  assert_false(tusc_auth_proxy_trusted(auth, "fe80::1"));
  tusc_auth_free(auth);
  cfg.trusted_proxies = "127.0.0.1/32,bogus";
  assert_int_equal(tusc_auth_new(&cfg, &auth), TUSC_EINVALID_ARGUMENT);
  assert_false(tusc_auth_proxy_trusted(NULL, "127.0.0.1"));
}

static char *write_file(const char *text) {
  char *path = strdup("/tmp/tusc-auth-test-XXXXXX");
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
  return path;
}

static void rewrite(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static char *htpasswd_line(const char *user, const char *password) {
  struct crypt_data cd;
  memset(&cd, 0, sizeof(cd));
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  assert_non_null(crypt_gensalt_rn("$2b$", 4, NULL, 0, setting, sizeof(setting)));
  const char *h = crypt_r(password, setting, &cd);
  char *line = malloc(256);
  snprintf(line, 256, "%s:%s\n", user, h);
  return line;
}

struct outcome {
  int calls;
  int result;
  char *principal;
};

static void on_done(tusc_auth_request_t *areq, int result, char *principal) {
  struct outcome *o = areq->data;
  o->calls++;
  o->result = result;
  o->principal = principal;
}

/* Runs a check from `client` to its end; *sync tells whether it was decided at once. */
static int check_from(tusc_auth_t *auth, uv_loop_t *loop, const char *client, const char *header,
                      char **principal, bool *sync) {
  tusc_auth_request_t areq;
  memset(&areq, 0, sizeof(areq));
  struct outcome o = {0, 0, NULL};
  areq.data = &o;
  *principal = NULL;
  int rc = tusc_auth_check(auth, loop, client, header, header ? strlen(header) : 0, &areq, on_done,
                           principal);
  *sync = rc != TUSC_AUTH_PENDING;
  if (rc != TUSC_AUTH_PENDING)
    return rc;
  assert_int_equal(o.calls, 0); /* never before returning */
  uv_run(loop, UV_RUN_DEFAULT);
  assert_int_equal(o.calls, 1);
  *principal = o.principal;
  return o.result;
}

static int check(tusc_auth_t *auth, uv_loop_t *loop, const char *header, char **principal,
                 bool *sync) {
  return check_from(auth, loop, NULL, header, principal, sync);
}

static char *basic(const char *user_pw) {
  char *h = malloc(256);
  char enc[200];
  tusc_base64_encode((const unsigned char *)user_pw, strlen(user_pw), enc);
  snprintf(h, 256, "Basic %s", enc);
  return h;
}

static void test_basic_cache_reload(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  char *line = htpasswd_line("ann", "pw1");
  char *path = write_file(line);
  tusc_config_t cfg = base_cfg();
  cfg.auth_htpasswd = path;
  cfg.auth_realm = "Up\"loads\\\r\n";
  tusc_auth_t *auth = NULL;
  assert_int_equal(tusc_auth_new(&cfg, &auth), 0);
  assert_true(tusc_auth_required(auth));
  const char *ch[2];
  assert_int_equal(tusc_auth_challenges(auth, ch), 1);
  assert_string_equal(ch[0], "Basic realm=\"Up\\\"loads\\\\\", charset=\"UTF-8\"");

  char *good = basic("ann:pw1"), *bad = basic("ann:pw2"), *nobody = basic("bob:pw1");
  char *p = NULL;
  bool sync = false;
  assert_int_equal(check(auth, &loop, good, &p, &sync), 0);
  assert_false(sync);
  assert_string_equal(p, "ann");
  free(p);
  /* a success is remembered: the next check needs no thread pool */
  assert_int_equal(check(auth, &loop, good, &p, &sync), 0);
  assert_true(sync);
  assert_string_equal(p, "ann");
  free(p);
  /* failures are not */
  for (int i = 0; i < 2; i++) {
    assert_int_equal(check(auth, &loop, bad, &p, &sync), TUSC_EUNAUTHORIZED);
    assert_false(sync);
    assert_null(p);
  }
  assert_int_equal(check(auth, &loop, nobody, &p, &sync), TUSC_EUNAUTHORIZED);
  assert_int_equal(check(auth, &loop, NULL, &p, &sync), TUSC_EUNAUTHORIZED);
  assert_true(sync);
  assert_int_equal(check(auth, &loop, "Bearer x.y.z", &p, &sync), TUSC_EUNAUTHORIZED);

  /* several checks at once on one loop: they queue behind each other, and all end */
  {
    tusc_auth_t *fresh = NULL;
    assert_int_equal(tusc_auth_new(&cfg, &fresh), 0);
    tusc_auth_request_t areqs[4];
    struct outcome outs[4];
    const char *hdrs[4] = {good, bad, good, good};
    for (int i = 0; i < 4; i++) {
      memset(&areqs[i], 0, sizeof(areqs[i]));
      memset(&outs[i], 0, sizeof(outs[i]));
      areqs[i].data = &outs[i];
      char *pp = NULL;
      assert_int_equal(
          tusc_auth_check(fresh, &loop, NULL, hdrs[i], strlen(hdrs[i]), &areqs[i], on_done, &pp),
          TUSC_AUTH_PENDING);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    for (int i = 0; i < 4; i++) {
      assert_int_equal(outs[i].calls, 1);
      assert_int_equal(outs[i].result, i == 1 ? TUSC_EUNAUTHORIZED : 0);
      if (i != 1)
        assert_string_equal(outs[i].principal, "ann");
      free(outs[i].principal);
    }
    tusc_auth_free(fresh);
  }

  /* reload: a bad file keeps the old credentials, a good one replaces them and
   * empties the cache */
  rewrite(path, "ann:plain\n");
  assert_int_equal(tusc_auth_reload(auth), TUSC_EINVALID_ARGUMENT);
  assert_int_equal(check(auth, &loop, good, &p, &sync), 0);
  free(p);
  char *line2 = htpasswd_line("ann", "pw2");
  rewrite(path, line2);
  assert_int_equal(tusc_auth_reload(auth), 0);
  assert_int_equal(check(auth, &loop, good, &p, &sync), TUSC_EUNAUTHORIZED);
  assert_false(sync);
  assert_int_equal(check(auth, &loop, bad, &p, &sync), 0);
  free(p);

  tusc_auth_free(auth);
  unlink(path);
  free(path);
  free(line);
  free(line2);
  free(good);
  free(bad);
  free(nobody);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* No client can stall the others: failures per address are throttled, checks per
 * address and per loop are bounded, and a waiting check whose client has gone is
 * dropped without a callback. */
static void test_basic_bounds(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  char *line = htpasswd_line("ann", "pw1");
  char *path = write_file(line);
  tusc_config_t cfg = base_cfg();
  cfg.auth_htpasswd = path;
  tusc_auth_t *auth = NULL;
  assert_int_equal(tusc_auth_new(&cfg, &auth), 0);
  char *good = basic("ann:pw1"), *bad = basic("ann:nope");
  char *p = NULL;
  bool sync = false;

  /* FAIL_LIMIT failures from one address, then it is refused before any hashing */
  for (int i = 0; i < TUSC_AUTH_FAIL_LIMIT; i++)
    assert_int_equal(check_from(auth, &loop, "192.0.2.1", bad, &p, &sync), TUSC_EUNAUTHORIZED);
  {
    tusc_auth_request_t areq;
    memset(&areq, 0, sizeof(areq));
    assert_int_equal(
        tusc_auth_check(auth, &loop, "192.0.2.1", good, strlen(good), &areq, on_done, &p),
        TUSC_EAUTH_THROTTLED);
    assert_true(areq.retry_after_s >= 1);
    assert_true(areq.retry_after_s <= TUSC_AUTH_FAIL_WINDOW_MS / 1000);
  }
  /* another address is not affected; its success is cached and answers anyone */
  assert_int_equal(check_from(auth, &loop, "192.0.2.2", good, &p, &sync), 0);
  free(p);
  assert_int_equal(check_from(auth, &loop, "192.0.2.1", good, &p, &sync), 0);
  assert_true(sync);
  free(p);

  /* per address: CLIENT_PENDING checks in flight, the next is refused */
  enum { N = TUSC_AUTH_QUEUE_MAX + 1 };
  tusc_auth_request_t *areqs = calloc(N + 1, sizeof(*areqs));
  struct outcome *outs = calloc(N + 1, sizeof(*outs));
  assert_non_null(areqs);
  assert_non_null(outs);
  for (int i = 0; i < TUSC_AUTH_CLIENT_PENDING; i++) {
    areqs[i].data = &outs[i];
    assert_int_equal(
        tusc_auth_check(auth, &loop, "192.0.2.3", bad, strlen(bad), &areqs[i], on_done, &p),
        TUSC_AUTH_PENDING);
  }
  assert_int_equal(
      tusc_auth_check(auth, &loop, "192.0.2.3", bad, strlen(bad), &areqs[N], on_done, &p),
      TUSC_EAUTH_THROTTLED);
  /* per loop: one hashes, QUEUE_MAX wait (from many addresses), then 503 */
  for (int i = TUSC_AUTH_CLIENT_PENDING; i < N; i++) {
    char client[32];
    snprintf(client, sizeof(client), "198.51.100.%d", i);
    areqs[i].data = &outs[i];
    assert_int_equal(tusc_auth_check(auth, &loop, client, bad, strlen(bad), &areqs[i], on_done, &p),
                     TUSC_AUTH_PENDING);
  }
  assert_int_equal(
      tusc_auth_check(auth, &loop, "203.0.113.1", bad, strlen(bad), &areqs[N], on_done, &p),
      TUSC_EAUTH_BUSY);
  /* clients gone: the hashing one still answers, waiting ones are dropped silently */
  assert_int_equal(tusc_auth_cancel(&areqs[0]), UV_EBUSY);
  for (int i = 1; i < N; i += 2)
    assert_int_equal(tusc_auth_cancel(&areqs[i]), 0);
  /* the queue has room again */
  areqs[N].data = &outs[N];
  assert_int_equal(
      tusc_auth_check(auth, &loop, "203.0.113.1", good, strlen(good), &areqs[N], on_done, &p),
      0); /* cached */
  free(p);
  uv_run(&loop, UV_RUN_DEFAULT);
  for (int i = 0; i < N; i++) {
    bool dropped = i % 2 == 1;
    assert_int_equal(outs[i].calls, dropped ? 0 : 1);
    if (!dropped)
      assert_int_equal(outs[i].result, TUSC_EUNAUTHORIZED);
  }
  free(areqs);
  free(outs);
  tusc_auth_free(auth);
  assert_int_equal(uv_loop_close(&loop), 0);
  unlink(path);
  free(path);
  free(line);
  free(good);
  free(bad);
}

static void test_bearer_sync(void **state) {
  (void)state;
  /* {"alg":"HS256"}.{"sub":"zoe"} signed with "k" */
  char *path = write_file("k\n");
  tusc_config_t cfg = base_cfg();
  cfg.auth_jwt_key = path;
  tusc_auth_t *auth = NULL;
  assert_int_equal(tusc_auth_new(&cfg, &auth), 0);
  const char *ch[2];
  assert_int_equal(tusc_auth_challenges(auth, ch), 1);
  assert_string_equal(ch[0], "Bearer realm=\"tusc\"");
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  char *p = NULL;
  bool sync = false;
  const char *tok = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ6b2UifQ."
                    "qmoDNWsga3sF1mDkZQDkkmFAIJKRg3AfRvMmNH38Xo0";
  int rc = check(auth, &loop, tok, &p, &sync);
  assert_true(sync);
  assert_int_equal(rc, 0);
  assert_string_equal(p, "zoe");
  free(p);
  assert_int_equal(check(auth, &loop, "Basic YTpi", &p, &sync), TUSC_EUNAUTHORIZED);
  tusc_auth_free(auth);
  unlink(path);
  free(path);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hosts),
      cmocka_unit_test(test_proxies),
      cmocka_unit_test(test_basic_cache_reload),
      cmocka_unit_test(test_basic_bounds),
      cmocka_unit_test(test_bearer_sync),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

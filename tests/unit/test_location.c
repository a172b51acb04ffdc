/* Unit tests for src/tus/location.c: upload URLs with and without proxy headers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "common/error.h"
#include "tus/location.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

struct loc_case {
  const char *host, *xfh, *xfp, *xfprefix, *fwd;
  bool proxy, tls;
  const char *base;
  int err;
  const char *want;
};

static void set(const char *v, const char **p, size_t *len) {
  *p = v;
  *len = v != NULL ? strlen(v) : 0;
}

static void test_collection(void **state) {
  (void)state;
  static const struct loc_case cases[] = {
      {"example.com", NULL, NULL, NULL, NULL, false, false, "/files/", 0,
       "http://example.com/files/"},
      {"example.com:8080", NULL, NULL, NULL, NULL, false, false, "/files/", 0,
       "http://example.com:8080/files/"},
      {"example.com:80", NULL, NULL, NULL, NULL, false, false, "/files/", 0,
       "http://example.com/files/"},
      {"example.com:443", NULL, NULL, NULL, NULL, false, true, "/", 0, "https://example.com/"},
      {"example.com:443", NULL, NULL, NULL, NULL, false, false, "/", 0, "http://example.com:443/"},
      {"[::1]:1080", NULL, NULL, NULL, NULL, false, false, "/files/", 0,
       "http://[::1]:1080/files/"},
      {"127.0.0.1:8080", NULL, NULL, NULL, NULL, false, false, "/files/", 0,
       "http://127.0.0.1:8080/files/"},
      /* no Host (HTTP/1.0): relative */
      {NULL, NULL, NULL, NULL, NULL, false, false, "/files/", 0, "/files/"},
      {"", NULL, NULL, NULL, NULL, false, false, "/files/", 0, "/files/"},
      /* hostile Host */
      {"evil.com/x", NULL, NULL, NULL, NULL, false, false, "/files/", TUSC_EINVALID_HEADER, NULL},
      {"user@evil.com", NULL, NULL, NULL, NULL, false, false, "/files/", TUSC_EINVALID_HEADER,
       NULL},
      {"a b", NULL, NULL, NULL, NULL, false, false, "/files/", TUSC_EINVALID_HEADER, NULL},
      /* proxy headers ignored without behind_proxy */
      {"internal:1080", "public.example", "https", "/up", "host=x.example;proto=https", false,
       false, "/files/", 0, "http://internal:1080/files/"},
      /* X-Forwarded-Host/Proto */
      {"internal:1080", "public.example", "https", NULL, NULL, true, false, "/files/", 0,
       "https://public.example/files/"},
      {"internal:1080", "public.example:443, other", "https", NULL, NULL, true, false, "/files/", 0,
       "https://public.example/files/"},
      {"internal:1080", "public.example:80", "http", NULL, NULL, true, false, "/files/", 0,
       "http://public.example/files/"},
      {"internal:1080", NULL, "ftp", NULL, NULL, true, false, "/files/", 0,
       "http://internal:1080/files/"},
      {"internal:1080", "bad host", NULL, NULL, NULL, true, false, "/files/", TUSC_EINVALID_HEADER,
       NULL},
      /* Forwarded wins over X-Forwarded-* */
      {"internal", "xfh.example", "http", NULL, "for=1.2.3.4;host=fwd.example;proto=https", true,
       false, "/files/", 0, "https://fwd.example/files/"},
      {"internal", NULL, NULL, NULL, "proto=https, proto=http", true, false, "/files/", 0,
       "https://internal/files/"},
      /* X-Forwarded-Prefix */
      {"h", NULL, NULL, "/uploads", NULL, true, false, "/files/", 0, "http://h/uploads/files/"},
      {"h", NULL, NULL, "/uploads/", NULL, true, false, "/files/", 0, "http://h/uploads/files/"},
      {"h", NULL, NULL, "uploads", NULL, true, false, "/files/", TUSC_EINVALID_HEADER, NULL},
      {"h", NULL, NULL, "/a\"b", NULL, true, false, "/files/", TUSC_EINVALID_HEADER, NULL},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    const struct loc_case *c = &cases[i];
    tusc_location_input_t in;
    memset(&in, 0, sizeof(in));
    set(c->host, &in.host, &in.host_len);
    set(c->xfh, &in.x_forwarded_host, &in.x_forwarded_host_len);
    set(c->xfp, &in.x_forwarded_proto, &in.x_forwarded_proto_len);
    set(c->xfprefix, &in.x_forwarded_prefix, &in.x_forwarded_prefix_len);
    set(c->fwd, &in.forwarded, &in.forwarded_len);
    in.behind_proxy = c->proxy;
    in.tls = c->tls;
    char out[256] = "untouched";
    int err = tusc_location_collection(&in, c->base, out, sizeof(out));
    if (err != c->err)
      fail_msg("row %zu: err %d, want %d", i, err, c->err);
    if (err == 0 && strcmp(out, c->want) != 0)
      fail_msg("row %zu: got \"%s\", want \"%s\"", i, out, c->want);
    if (err != 0 && strcmp(out, "untouched") != 0)
      fail_msg("row %zu: out written on failure", i);
  }
}

static void test_collection_too_small(void **state) {
  (void)state;
  tusc_location_input_t in;
  memset(&in, 0, sizeof(in));
  set("example.com", &in.host, &in.host_len);
  char out[26] = "untouched";
  /* "http://example.com/files/" is 25 bytes + NUL: one byte short fails, exact fits. */
  assert_int_equal(tusc_location_collection(&in, "/files/", out, 25), UV_ENOBUFS);
  assert_string_equal(out, "untouched");
  assert_int_equal(tusc_location_collection(&in, "/files/", out, 26), 0);
  assert_string_equal(out, "http://example.com/files/");
}

/* The host Location names and -allowed-hosts checks come from one function. */
static void test_host(void **state) {
  (void)state;
  static const struct {
    const char *host, *xfh, *fwd;
    bool proxy;
    int err;
    const char *want; /* NULL: no host */
  } cases[] = {
      {"a.example", NULL, NULL, false, 0, "a.example"},
      {" a.example:8080 ", NULL, NULL, false, 0, "a.example:8080"},
      {NULL, NULL, NULL, false, 0, NULL},
      {"", NULL, NULL, true, 0, NULL},
      {"a b", NULL, NULL, false, TUSC_EINVALID_HEADER, NULL},
      /* proxy headers count only with behind_proxy */
      {"a.example", "x.example", "host=f.example", false, 0, "a.example"},
      {"a.example", "x.example, y.example", NULL, true, 0, "x.example"},
      {"a.example", "bad host", NULL, true, TUSC_EINVALID_HEADER, NULL},
      /* Forwarded host= wins over X-Forwarded-Host */
      {"a.example", "x.example", "for=192.0.2.1;host=f.example", true, 0, "f.example"},
      {"a.example", NULL, "host=\"f.example:8443\"", true, 0, "f.example:8443"},
      /* a Forwarded without host=, or unparseable, leaves the others */
      {"a.example", "x.example", "proto=https", true, 0, "x.example"},
      {"a.example", NULL, "host=f.example;;=x", true, 0, "a.example"},
      {"a.example", NULL, "host=\"evil/x\"", true, 0, "a.example"},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    tusc_location_input_t in;
    memset(&in, 0, sizeof(in));
    set(cases[i].host, &in.host, &in.host_len);
    set(cases[i].xfh, &in.x_forwarded_host, &in.x_forwarded_host_len);
    set(cases[i].fwd, &in.forwarded, &in.forwarded_len);
    in.behind_proxy = cases[i].proxy;
    tusc_forwarded_t fwd;
    const char *host = "untouched";
    size_t len = 9;
    int err = tusc_location_host(&in, &fwd, &host, &len);
    if (err != cases[i].err)
      fail_msg("row %zu: err %d, want %d", i, err, cases[i].err);
    if (err != 0) {
      if (strcmp(host, "untouched") != 0 || len != 9)
        fail_msg("row %zu: output written on failure", i);
      continue;
    }
    if (cases[i].want == NULL) {
      if (host != NULL || len != 0)
        fail_msg("row %zu: got a host, want none", i);
    } else if (host == NULL || len != strlen(cases[i].want) ||
               memcmp(host, cases[i].want, len) != 0) {
      fail_msg("row %zu: got \"%.*s\", want \"%s\"", i, host ? (int)len : 4, host ? host : "NULL",
               cases[i].want);
    }
  }
}

/* Trusted proxies for the tests: 10.0.0.0/8 and 2001:db8:1::/48 (prefix checks are
 * enough here; the real list is auth/cidr). */
static bool trusted_10(const char *addr, void *arg) {
  int *calls = arg;
  (*calls)++;
  return strncmp(addr, "10.", 3) == 0 || strncmp(addr, "2001:db8:1:", 11) == 0;
}

static void test_client_addr(void **state) {
  (void)state;
  static const struct {
    bool proxy;
    bool list; /* NULL callback: -behind-proxy without -trusted-proxies */
    const char *xff, *fwd;
    const char *want;
  } cases[] = {
      /* proxy headers count only with behind_proxy */
      {false, true, "203.0.113.7, 10.0.0.1", NULL, "192.0.2.9"},
      /* the right-most untrusted address, whatever the client put in front */
      {true, true, "203.0.113.7, 10.0.0.1", NULL, "203.0.113.7"},
      {true, true, "1.1.1.1, 203.0.113.7", NULL, "203.0.113.7"},
      {true, true, "1.1.1.1, 203.0.113.7, 10.0.0.2, 10.0.0.1", NULL, "203.0.113.7"},
      {true, true, "garbage, 203.0.113.7", NULL, "203.0.113.7"},
      {true, true, " , 203.0.113.7 ,, ", NULL, "203.0.113.7"},
      /* every address trusted: the left-most */
      {true, true, "10.1.1.1, 10.0.0.1", NULL, "10.1.1.1"},
      /* an unusable entry right of every untrusted one: nothing can be believed */
      {true, true, "203.0.113.7, garbage, 10.0.0.1", NULL, "192.0.2.9"},
      {true, true, "203.0.113.7, garbage", NULL, "192.0.2.9"},
      /* no list: tusd's left-most */
      {true, false, "1.1.1.1, 203.0.113.7", NULL, "1.1.1.1"},
      {true, false, "garbage, 203.0.113.7", NULL, "192.0.2.9"},
      /* Forwarded: the same walk over for= */
      {true, true, NULL, "for=\"[2001:db8::1]:4711\";proto=https", "2001:db8::1"},
      {true, true, NULL, "for=1.1.1.1, for=203.0.113.7;proto=https, for=\"[2001:db8:1::5]\"",
       "203.0.113.7"},
      {true, true, NULL, "for=10.0.0.3, for=10.0.0.1", "10.0.0.3"},
      {true, true, NULL, "for=\"x,y\";bogus, for=203.0.113.7", "203.0.113.7"},
      {true, true, NULL, "for=203.0.113.7, for=unknown, for=10.0.0.1", "192.0.2.9"},
      {true, true, NULL, "for=203.0.113.7, for=\"unterminated, for=10.0.0.1", "192.0.2.9"},
      {true, false, NULL, "for=1.1.1.1, for=203.0.113.7", "1.1.1.1"},
      /* X-Forwarded-For first; Forwarded when it names nobody */
      {true, true, "203.0.113.7", "for=198.51.100.1", "203.0.113.7"},
      {true, true, "garbage", "for=198.51.100.1", "198.51.100.1"},
      {true, true, "", "", "192.0.2.9"},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    char out[64];
    int calls = 0;
    const char *xff = cases[i].xff, *fwd = cases[i].fwd;
    tusc_location_client_addr(cases[i].proxy, cases[i].list ? trusted_10 : NULL, &calls, xff,
                              xff ? strlen(xff) : 0, fwd, fwd ? strlen(fwd) : 0, "192.0.2.9", out);
    if (strcmp(out, cases[i].want) != 0)
      fail_msg("row %zu: got \"%s\", want \"%s\"", i, out, cases[i].want);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_collection),
      cmocka_unit_test(test_collection_too_small),
      cmocka_unit_test(test_host),
      cmocka_unit_test(test_client_addr),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for src/http/redirect.c: the https URL built from Host, path and query. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "http/redirect.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

struct redirect_case {
  int port;
  const char *allowed;
  const char *host, *path, *query;
  int rc;
  const char *want;
};

static void test_location(void **state) {
  (void)state;
  static const struct redirect_case cases[] = {
      {443, NULL, "example.com", "/files/", "", 0, "https://example.com/files/"},
      {443, NULL, "example.com:80", "/files/x", "a=1", 0, "https://example.com/files/x?a=1"},
      {8443, NULL, "example.com:8080", "/", "", 0, "https://example.com:8443/"},
      {8443, NULL, "127.0.0.1", "", "", 0, "https://127.0.0.1:8443/"},
      {443, NULL, "[::1]:80", "/p", "", 0, "https://[::1]/p"},
      {443, NULL, "[2001:db8::1]", "/p", "", 0, "https://[2001:db8::1]/p"},
      {443, NULL, "Up_Loads-1.Example", "/", "", 0, "https://Up_Loads-1.Example/"},
      {443, NULL, NULL, "/", "", 400, NULL},
      {443, NULL, "", "/", "", 400, NULL},
      {443, NULL, ":80", "/", "", 400, NULL},
      {443, NULL, "a b", "/", "", 400, NULL},
      {443, NULL, "a/b", "/", "", 400, NULL},
      {443, NULL, "a@b", "/", "", 400, NULL},
      {443, NULL, "a:b", "/", "", 400, NULL},
      {443, NULL, "a:", "/", "", 400, NULL},
      {443, NULL, "a:123456", "/", "", 400, NULL},
      {443, NULL, "a:1:2", "/", "", 400, NULL},
      {443, NULL, "[::1", "/", "", 400, NULL},
      {443, NULL, "[]", "/", "", 400, NULL},
      {443, NULL, "[::1]x", "/", "", 400, NULL},
      {443, NULL, "[::g]", "/", "", 400, NULL},
      {443, NULL, "evil.com\"", "/", "", 400, NULL},
      {443, "a.example, b.example", "b.example", "/f", "", 0, "https://b.example/f"},
      {443, "a.example,b.example", "A.EXAMPLE:8080", "/f", "", 0, "https://A.EXAMPLE/f"},
      {443, "a.example,b.example", "c.example", "/f", "", 421, NULL},
      {443, "a.example", "a.example.evil", "/f", "", 421, NULL},
      {443, "a.example", "a.exampl", "/f", "", 421, NULL},
      {443, "a.example,,", "a.example", "/", "", 0, "https://a.example/"},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    const struct redirect_case *c = &cases[i];
    tusc_redirect_t *r = NULL;
    assert_int_equal(tusc_redirect_new(c->port, c->allowed, &r), 0);
    char out[256] = "untouched";
    int rc = tusc_redirect_location(r, c->host, c->path, c->query, out, sizeof(out));
    if (rc != c->rc)
      print_error("case %zu (%s): rc %d, want %d\n", i, c->host ? c->host : "NULL", rc, c->rc);
    assert_int_equal(rc, c->rc);
    if (c->want != NULL)
      assert_string_equal(out, c->want);
    tusc_redirect_free(r);
  }
}

static void test_small_buffer(void **state) {
  (void)state;
  tusc_redirect_t *r = NULL;
  assert_int_equal(tusc_redirect_new(443, NULL, &r), 0);
  char out[16];
  assert_int_equal(tusc_redirect_location(r, "example.com", "/files/long", "", out, sizeof(out)),
                   UV_ENOBUFS);
  tusc_redirect_free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_location),
      cmocka_unit_test(test_small_buffer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

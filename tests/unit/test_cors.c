/* Unit tests for src/tus/cors.c: anchored origin regex and the headers per request kind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "tus/cors.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static const char *find(const tusc_cors_header_t *h, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(h[i].name, name) == 0)
      return h[i].value;
  return NULL;
}

static void test_origin_anchored(void **state) {
  (void)state;
  static const struct {
    const char *pattern, *origin;
    bool allowed;
  } cases[] = {
      {".*", "https://anything.example", true},
      {"https://a\\.com", "https://a.com", true},
      {"https://a\\.com", "https://a.com.evil.net", false},
      {"https://a\\.com", "xhttps://a.com", false},
      {"https://a\\.com|https://b\\.com", "https://b.com", true},
      {"https://a\\.com|https://b\\.com", "https://b.com.evil", false},
      {"https://.*\\.example\\.org", "https://app.example.org", true},
      {"https://.*\\.example\\.org", "https://example.org", false},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    tusc_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.cors_allow_origin = (char *)cases[i].pattern;
    cfg.cors_max_age = 86400;
    tusc_cors_t cors;
    assert_int_equal(tusc_cors_init(&cors, &cfg), 0);
    if (tusc_cors_origin_allowed(&cors, cases[i].origin) != cases[i].allowed)
      fail_msg("row %zu: %s vs %s", i, cases[i].pattern, cases[i].origin);
    tusc_cors_dispose(&cors);
  }
}

static void test_bad_regex(void **state) {
  (void)state;
  tusc_config_t cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.cors_allow_origin = "(unclosed";
  tusc_cors_t cors;
  assert_int_equal(tusc_cors_init(&cors, &cfg), TUSC_EINVALID_ARGUMENT);
  tusc_cors_dispose(&cors);
}

static void test_headers(void **state) {
  (void)state;
  tusc_config_t cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.cors_allow_origin = "https://ok\\.example";
  cfg.cors_max_age = 600;
  cfg.cors_allow_credentials = true;
  tusc_cors_t cors;
  assert_int_equal(tusc_cors_init(&cors, &cfg), 0);
  tusc_cors_header_t h[TUSC_CORS_MAX_HEADERS];
  size_t n = 99;

  /* no Origin: only Vary */
  assert_int_equal(tusc_cors_headers(&cors, NULL, false, h, &n), 0);
  assert_int_equal(n, 1);
  assert_string_equal(find(h, n, "Vary"), "Origin");

  /* refused origin */
  assert_int_equal(tusc_cors_headers(&cors, "https://evil.example", false, h, &n),
                   TUSC_EORIGIN_NOT_ALLOWED);
  assert_int_equal(n, 0);

  /* normal request */
  assert_int_equal(tusc_cors_headers(&cors, "https://ok.example", false, h, &n), 0);
  assert_string_equal(find(h, n, "Access-Control-Allow-Origin"), "https://ok.example");
  assert_string_equal(find(h, n, "Access-Control-Allow-Credentials"), "true");
  assert_non_null(strstr(find(h, n, "Access-Control-Expose-Headers"), "Upload-Offset"));
  assert_null(find(h, n, "Access-Control-Allow-Methods"));
  assert_null(find(h, n, "Access-Control-Max-Age"));

  /* preflight */
  assert_int_equal(tusc_cors_headers(&cors, "https://ok.example", true, h, &n), 0);
  assert_string_equal(find(h, n, "Access-Control-Allow-Methods"), TUSC_CORS_DEFAULT_METHODS);
  assert_non_null(strstr(find(h, n, "Access-Control-Allow-Headers"), "Tus-Resumable"));
  assert_string_equal(find(h, n, "Access-Control-Max-Age"), "600");
  assert_null(find(h, n, "Access-Control-Expose-Headers"));
  tusc_cors_dispose(&cors);

  /* disabled: nothing, and any origin passes */
  cfg.disable_cors = true;
  assert_int_equal(tusc_cors_init(&cors, &cfg), 0);
  assert_int_equal(tusc_cors_headers(&cors, "https://evil.example", true, h, &n), 0);
  assert_int_equal(n, 0);
  tusc_cors_dispose(&cors);
}

static void test_custom_lists(void **state) {
  (void)state;
  tusc_config_t cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.cors_allow_methods = "POST";
  cfg.cors_allow_headers = "X-Custom";
  cfg.cors_expose_headers = "Location";
  tusc_cors_t cors;
  assert_int_equal(tusc_cors_init(&cors, &cfg), 0);
  tusc_cors_header_t h[TUSC_CORS_MAX_HEADERS];
  size_t n = 0;
  assert_int_equal(tusc_cors_headers(&cors, "https://x", true, h, &n), 0);
  assert_string_equal(find(h, n, "Access-Control-Allow-Methods"), "POST");
  assert_string_equal(find(h, n, "Access-Control-Allow-Headers"), "X-Custom");
  assert_null(find(h, n, "Access-Control-Allow-Credentials"));
  assert_int_equal(tusc_cors_headers(&cors, "https://x", false, h, &n), 0);
  assert_string_equal(find(h, n, "Access-Control-Expose-Headers"), "Location");
  tusc_cors_dispose(&cors);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_origin_anchored),
      cmocka_unit_test(test_bad_regex),
      cmocka_unit_test(test_headers),
      cmocka_unit_test(test_custom_lists),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

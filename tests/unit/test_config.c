/*
 * Unit tests for config: Go flag syntax, defaults, aliases, validation messages, the
 * duration parser and the usage page. Output streams are captured with open_memstream
 * so every error test can check that the message names the flag.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "config/config.h"

#define MAX_ARGS 16

struct run {
  int rc;
  tusc_config_t cfg;
  char *out;
  char *err;
};

/* Parses {"tusc", args...}; the caller checks fields, then calls run_done. */
static void run_args(struct run *r, const char *const *args) {
  char *argv[MAX_ARGS + 2];
  int argc = 0;
  argv[argc++] = strdup("tusc");
  for (int i = 0; args[i] != NULL; i++) {
    assert_true(i < MAX_ARGS);
    argv[argc++] = strdup(args[i]);
  }
  argv[argc] = NULL;

  size_t out_len = 0, err_len = 0;
  r->out = NULL;
  r->err = NULL;
  FILE *out = open_memstream(&r->out, &out_len);
  FILE *err = open_memstream(&r->err, &err_len);
  assert_non_null(out);
  assert_non_null(err);
  r->rc = tusc_config_parse(&r->cfg, argc, argv, out, err);
  fclose(out);
  fclose(err);
  for (int i = 0; i < argc; i++)
    free(argv[i]);
}

static void run_done(struct run *r) {
  /* Disposing twice must be harmless. */
  tusc_config_dispose(&r->cfg);
  tusc_config_dispose(&r->cfg);
  free(r->out);
  free(r->err);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void assert_contains(const char *haystack, const char *needle) {
  if (haystack == NULL || strstr(haystack, needle) == NULL)
    fail_msg("expected \"%s\" in:\n%s", needle, haystack ? haystack : "(null)");
}

/* ---- defaults ------------------------------------------------------------------------ */

static void test_defaults(void **state) {
  (void)state;
  struct run r;
  run_args(&r, (const char *const[]){NULL});
  assert_int_equal(r.rc, 0);
  assert_string_equal(r.err, "");
  assert_string_equal(r.out, "");
  const tusc_config_t *c = &r.cfg;
  assert_string_equal(c->host, "0.0.0.0");
  assert_int_equal(c->port, 1080);
  assert_null(c->unix_sock);
  assert_string_equal(c->base_path, "/files/");
  assert_false(c->behind_proxy);
  assert_true(c->show_greeting);
  assert_int_equal(c->workers, 0);
  assert_null(c->port_file);
  assert_int_equal(c->max_size, 0);
  assert_false(c->disable_download);
  assert_false(c->disable_termination);
  assert_false(c->disable_concatenation);
  assert_false(c->enable_experimental_protocol);
  assert_int_equal(c->max_metadata_size, 65536);
  assert_false(c->disable_cors);
  assert_string_equal(c->cors_allow_origin, ".*");
  assert_false(c->cors_allow_credentials);
  assert_string_equal(c->cors_allow_methods, "POST, HEAD, PATCH, OPTIONS, GET, DELETE");
  assert_string_equal(c->cors_allow_headers,
                      "Authorization, Origin, X-Requested-With, X-Request-ID, "
                      "X-HTTP-Method-Override, Content-Type, Upload-Length, Upload-Offset, "
                      "Tus-Resumable, Upload-Metadata, Upload-Defer-Length, Upload-Concat, "
                      "Upload-Incomplete, Upload-Complete, Upload-Draft-Interop-Version");
  assert_int_equal(c->cors_max_age, 86400);
  assert_string_equal(c->cors_expose_headers,
                      "Upload-Offset, Location, Upload-Length, Tus-Version, Tus-Resumable, "
                      "Tus-Max-Size, Tus-Extension, Upload-Metadata, Upload-Defer-Length, "
                      "Upload-Concat, Upload-Incomplete, Upload-Complete, "
                      "Upload-Draft-Interop-Version");
  assert_string_equal(c->upload_dir, "./data");
  assert_int_equal(c->dir_perms, 0775);
  assert_int_equal(c->file_perms, 0664);
  assert_int_equal(c->fsync, TUSC_FSYNC_ALWAYS);
  assert_int_equal(c->max_header_size, 65536);
  assert_int_equal(c->max_header_count, 100);
  assert_null(c->hooks_dir);
  assert_null(c->hooks_http);
  assert_null(c->hooks_http_forward_headers);
  assert_int_equal(c->hooks_http_retry, 3);
  assert_int_equal(c->hooks_http_backoff_ms, 1000);
  assert_int_equal(c->hooks_http_timeout_ms, 15000);
  assert_int_equal(c->hooks_http_size_limit, 5120);
  assert_null(c->hooks_enabled_events);
  assert_int_equal(c->progress_hooks_interval_ms, 1000);
  assert_int_equal(c->hooks_timeout_ms, 30000);
  assert_null(c->tls_certificate);
  assert_null(c->tls_key);
  assert_string_equal(c->tls_mode, "tls12");
  assert_string_equal(c->tls_ktls, "auto");
  assert_true(c->expose_metrics);
  assert_string_equal(c->metrics_path, "/metrics");
  assert_false(c->verbose);
  assert_string_equal(c->log_format, "text");
  assert_false(c->show_startup_logs);
  assert_int_equal(c->network_timeout_ms, 60000);
  assert_int_equal(c->shutdown_timeout_ms, 10000);
  assert_int_equal(c->acquire_lock_timeout_ms, 20000);
  assert_null(c->s3_bucket);
  assert_null(c->s3_endpoint);
  assert_null(c->s3_object_prefix);
  run_done(&r);
}

/* ---- syntax forms -------------------------------------------------------------------- */

static void test_value_syntax_forms(void **state) {
  (void)state;
  static const struct {
    const char *args[3];
    int port;
  } cases[] = {
      {{"-port=1234"}, 1234},     {{"-port", "1234"}, 1234}, {{"--port=1234"}, 1234},
      {{"--port", "1234"}, 1234}, {{"-port=0"}, 0},          {{"-port", "65535"}, 65535},
      {{"-port=+80"}, 80},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct run r;
    run_args(&r, cases[i].args);
    if (r.rc != 0)
      fail_msg("case %zu (%s): rc %d, err %s", i, cases[i].args[0], r.rc, r.err);
    assert_int_equal(r.cfg.port, cases[i].port);
    assert_string_equal(r.err, "");
    run_done(&r);
  }
}

static void test_value_may_start_with_dash(void **state) {
  (void)state;
  /* As in Go, a non-boolean flag takes the next argument whatever it looks like. */
  struct run r;
  run_args(&r, ARGS("-hooks-http-forward-headers", "-x", "-host", "::1"));
  assert_int_equal(r.rc, 0);
  assert_string_equal(r.cfg.hooks_http_forward_headers, "-x");
  assert_string_equal(r.cfg.host, "::1");
  run_done(&r);
}

static void test_equals_in_value(void **state) {
  (void)state;
  struct run r;
  run_args(&r, ARGS("-hooks-http=http://h/x?a=b", "-cors-allow-origin", "^https://a=b$"));
  assert_int_equal(r.rc, 0);
  assert_string_equal(r.cfg.hooks_http, "http://h/x?a=b");
  assert_string_equal(r.cfg.cors_allow_origin, "^https://a=b$");
  run_done(&r);
}

static void test_bool_forms(void **state) {
  (void)state;
  static const struct {
    const char *args[4];
    int rc;
    int behind_proxy; /* -1: not checked */
    int show_greeting;
  } cases[] = {
      {{"-behind-proxy"}, 0, 1, 1},
      {{"--behind-proxy"}, 0, 1, 1},
      {{"-behind-proxy=true"}, 0, 1, 1},
      {{"-behind-proxy=false"}, 0, 0, 1},
      {{"-behind-proxy=1"}, 0, 1, 1},
      {{"-behind-proxy=0"}, 0, 0, 1},
      {{"-behind-proxy=T"}, 0, 1, 1},
      {{"-behind-proxy=FALSE"}, 0, 0, 1},
      {{"-behind-proxy", "true"}, 0, 1, 1},
      {{"-behind-proxy", "false"}, 0, 0, 1},
      {{"-behind-proxy", "false", "-show-greeting=false"}, 0, 0, 0},
      {{"-show-greeting", "false", "-behind-proxy"}, 0, 1, 0},
      {{"-show-greeting", "-behind-proxy"}, 0, 1, 1},
      {{"-behind-proxy", "-behind-proxy=false"}, 0, 0, 1},
      /* only the exact words are taken as the next argument */
      {{"-behind-proxy", "1"}, TUSC_CONFIG_EXIT_USAGE, -1, -1},
      {{"-behind-proxy", "TRUE"}, TUSC_CONFIG_EXIT_USAGE, -1, -1},
      {{"-behind-proxy=yes"}, TUSC_CONFIG_EXIT_USAGE, -1, -1},
      {{"-behind-proxy="}, TUSC_CONFIG_EXIT_USAGE, -1, -1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct run r;
    run_args(&r, cases[i].args);
    if (r.rc != cases[i].rc)
      fail_msg("case %zu: rc %d, want %d; err %s", i, r.rc, cases[i].rc, r.err);
    if (cases[i].behind_proxy >= 0)
      assert_int_equal(r.cfg.behind_proxy, cases[i].behind_proxy);
    if (cases[i].show_greeting >= 0)
      assert_int_equal(r.cfg.show_greeting, cases[i].show_greeting);
    if (cases[i].rc != 0)
      assert_true(strstr(r.err, "behind-proxy") != NULL || strstr(r.err, "\"1\"") != NULL ||
                  strstr(r.err, "\"TRUE\"") != NULL);
    run_done(&r);
  }
}

/* Every boolean flag reaches its own field. */
static void test_bool_flags_map_to_fields(void **state) {
  (void)state;
  static const struct {
    const char *flag;
    size_t off;
    bool dflt;
  } cases[] = {
      {"behind-proxy", offsetof(tusc_config_t, behind_proxy), false},
      {"show-greeting", offsetof(tusc_config_t, show_greeting), true},
      {"disable-download", offsetof(tusc_config_t, disable_download), false},
      {"disable-termination", offsetof(tusc_config_t, disable_termination), false},
      {"disable-concatenation", offsetof(tusc_config_t, disable_concatenation), false},
      {"enable-experimental-protocol", offsetof(tusc_config_t, enable_experimental_protocol),
       false},
      {"disable-cors", offsetof(tusc_config_t, disable_cors), false},
      {"cors-allow-credentials", offsetof(tusc_config_t, cors_allow_credentials), false},
      {"expose-metrics", offsetof(tusc_config_t, expose_metrics), true},
      {"verbose", offsetof(tusc_config_t, verbose), false},
      {"show-startup-logs", offsetof(tusc_config_t, show_startup_logs), false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char arg[80];
    snprintf(arg, sizeof arg, "-%s=%s", cases[i].flag, cases[i].dflt ? "false" : "true");
    struct run r;
    run_args(&r, ARGS(arg));
    if (r.rc != 0)
      fail_msg("%s: rc %d err %s", arg, r.rc, r.err);
    bool v;
    memcpy(&v, (const char *)&r.cfg + cases[i].off, sizeof v);
    if (v == cases[i].dflt)
      fail_msg("%s did not change its field", arg);
    run_done(&r);
  }
}

/* Every string flag reaches its own field, as a copy. */
static void test_string_flags_map_to_fields(void **state) {
  (void)state;
  static const struct {
    const char *flag;
    const char *value;
    size_t off;
  } cases[] = {
      {"host", "127.0.0.1", offsetof(tusc_config_t, host)},
      {"unix-sock", "/run/tusc.sock", offsetof(tusc_config_t, unix_sock)},
      {"port-file", "/tmp/port", offsetof(tusc_config_t, port_file)},
      {"cors-allow-origin", "^https://example\\.com$", offsetof(tusc_config_t, cors_allow_origin)},
      {"cors-allow-methods", "GET", offsetof(tusc_config_t, cors_allow_methods)},
      {"cors-allow-headers", "X-A", offsetof(tusc_config_t, cors_allow_headers)},
      {"cors-expose-headers", "X-B", offsetof(tusc_config_t, cors_expose_headers)},
      {"upload-dir", "/srv/up", offsetof(tusc_config_t, upload_dir)},
      {"dir", "/srv/dir", offsetof(tusc_config_t, upload_dir)},
      {"hooks-dir", "/app/hooks", offsetof(tusc_config_t, hooks_dir)},
      {"hooks-http", "http://127.0.0.1:9/h", offsetof(tusc_config_t, hooks_http)},
      {"hooks-http-forward-headers", "Authorization",
       offsetof(tusc_config_t, hooks_http_forward_headers)},
      {"tls-mode", "tls13", offsetof(tusc_config_t, tls_mode)},
      {"redis-url", "unix:///run/redis.sock", offsetof(tusc_config_t, redis_url)},
      {"tls-mode", "tls12-strong", offsetof(tusc_config_t, tls_mode)},
      {"tls-ktls", "off", offsetof(tusc_config_t, tls_ktls)},
      {"metrics-path", "/m", offsetof(tusc_config_t, metrics_path)},
      {"log-format", "json", offsetof(tusc_config_t, log_format)},
      {"s3-bucket", "bkt", offsetof(tusc_config_t, s3_bucket)},
      {"s3-object-prefix", "p/", offsetof(tusc_config_t, s3_object_prefix)},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char flag[80];
    snprintf(flag, sizeof flag, "-%s", cases[i].flag);
    struct run r;
    run_args(&r, ARGS(flag, cases[i].value));
    if (r.rc != 0)
      fail_msg("%s: rc %d err %s", flag, r.rc, r.err);
    const char *v;
    memcpy(&v, (const char *)&r.cfg + cases[i].off, sizeof v);
    assert_non_null(v);
    assert_string_equal(v, cases[i].value);
    run_done(&r);
  }
}

static void test_integer_and_duration_flags_map_to_fields(void **state) {
  (void)state;
  static const struct {
    const char *args[3];
    size_t off;
    bool is_int; /* int field, else int64_t */
    int64_t want;
  } cases[] = {
      {{"-workers", "8"}, offsetof(tusc_config_t, workers), true, 8},
      {{"-max-size", "10737418240"},
       offsetof(tusc_config_t, max_size),
       false,
       INT64_C(10737418240)},
      {{"-max-metadata-size=1024"}, offsetof(tusc_config_t, max_metadata_size), false, 1024},
      {{"-cors-max-age=60"}, offsetof(tusc_config_t, cors_max_age), false, 60},
      {{"-max-header-size=8192"}, offsetof(tusc_config_t, max_header_size), false, 8192},
      {{"-max-header-count=50"}, offsetof(tusc_config_t, max_header_count), true, 50},
      {{"-hooks-http-retry=1"}, offsetof(tusc_config_t, hooks_http_retry), true, 1},
      {{"-hooks-max-processes", "0"}, offsetof(tusc_config_t, hooks_max_processes), false, 0},
      {{"-hooks-http-size-limit=0"}, offsetof(tusc_config_t, hooks_http_size_limit), false, 0},
      {{"-hooks-http-backoff=250ms"}, offsetof(tusc_config_t, hooks_http_backoff_ms), false, 250},
      {{"-hooks-http-timeout=2m"}, offsetof(tusc_config_t, hooks_http_timeout_ms), false, 120000},
      {{"-progress-hooks-interval=0"},
       offsetof(tusc_config_t, progress_hooks_interval_ms),
       false,
       0},
      {{"-hooks-timeout", "5"}, offsetof(tusc_config_t, hooks_timeout_ms), false, 5000},
      {{"-network-timeout", "90s"}, offsetof(tusc_config_t, network_timeout_ms), false, 90000},
      {{"-redis-lock-lease=2s"}, offsetof(tusc_config_t, redis_lock_lease_ms), false, 2000},
      {{"-network-timeout", "3"}, offsetof(tusc_config_t, network_timeout_ms), false, 3000},
      {{"-shutdown-timeout=1m30s"}, offsetof(tusc_config_t, shutdown_timeout_ms), false, 90000},
      {{"-acquire-lock-timeout=2h"},
       offsetof(tusc_config_t, acquire_lock_timeout_ms),
       false,
       7200000},
      {{"-timeout", "3000"}, offsetof(tusc_config_t, network_timeout_ms), false, 3000},
      {{"-timeout", "3s"}, offsetof(tusc_config_t, network_timeout_ms), false, 3000},
      {{"--timeout=250"}, offsetof(tusc_config_t, network_timeout_ms), false, 250},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct run r;
    run_args(&r, cases[i].args);
    if (r.rc != 0)
      fail_msg("case %zu (%s): rc %d err %s", i, cases[i].args[0], r.rc, r.err);
    int64_t got;
    if (cases[i].is_int) {
      int v;
      memcpy(&v, (const char *)&r.cfg + cases[i].off, sizeof v);
      got = v;
    } else {
      memcpy(&got, (const char *)&r.cfg + cases[i].off, sizeof got);
    }
    if (got != cases[i].want)
      fail_msg("case %zu (%s): got %lld want %lld", i, cases[i].args[0], (long long)got,
               (long long)cases[i].want);
    run_done(&r);
  }
}

static void test_seed_command_line(void **state) {
  (void)state;
  struct run r;
  run_args(&r, ARGS("-dir", "/data/tusupload", "-hooks-dir", "/app/tusd/hooks", "-behind-proxy"));
  assert_int_equal(r.rc, 0);
  assert_string_equal(r.err, "");
  assert_string_equal(r.cfg.upload_dir, "/data/tusupload");
  assert_string_equal(r.cfg.hooks_dir, "/app/tusd/hooks");
  assert_true(r.cfg.behind_proxy);
  assert_int_equal(r.cfg.port, 1080);
  assert_string_equal(r.cfg.base_path, "/files/");
  run_done(&r);
}

static void test_last_value_wins(void **state) {
  (void)state;
  struct run r;
  run_args(&r, ARGS("-host", "a", "-host=b", "-upload-dir", "x", "-dir", "y", "-port", "1"));
  assert_int_equal(r.rc, 0);
  assert_string_equal(r.cfg.host, "b");
  assert_string_equal(r.cfg.upload_dir, "y");
  assert_int_equal(r.cfg.port, 1);
  run_done(&r);
}

static void test_empty_optional_strings_are_unset(void **state) {
  (void)state;
  struct run r;
  run_args(&r, ARGS("-unix-sock=", "-hooks-dir", "", "-host="));
  assert_int_equal(r.rc, 0);
  assert_null(r.cfg.unix_sock);
  assert_null(r.cfg.hooks_dir);
  /* "" is a meaningful host: all addresses */
  assert_non_null(r.cfg.host);
  assert_string_equal(r.cfg.host, "");
  run_done(&r);
}

static void test_fsync(void **state) {
  (void)state;
  struct run r;
  run_args(&r, ARGS("-fsync", "never"));
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.cfg.fsync, TUSC_FSYNC_NEVER);
  run_done(&r);
  run_args(&r, ARGS("-fsync=always"));
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.cfg.fsync, TUSC_FSYNC_ALWAYS);
  run_done(&r);
}

/* ---- errors --------------------------------------------------------------------------- */

static void test_unknown_flag(void **state) {
  (void)state;
  static const struct {
    const char *args[3];
    const char *msg;
  } cases[] = {
      {{"-bogus"}, "flag provided but not defined: -bogus\n"},
      {{"--bogus=1"}, "flag provided but not defined: -bogus\n"},
      {{"-port", "1", "-Port"}, "flag provided but not defined: -Port\n"},
      {{"-upload_dir=x"}, "flag provided but not defined: -upload_dir\n"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct run r;
    run_args(&r, cases[i].args);
    assert_int_equal(r.rc, TUSC_CONFIG_EXIT_USAGE);
    /* the message comes first, then the usage page */
    assert_true(strncmp(r.err, cases[i].msg, strlen(cases[i].msg)) == 0);
    assert_contains(r.err, "OPTIONS");
    assert_string_equal(r.out, "");
    run_done(&r);
  }
}

/* The S3 store's tuning flags: parsed, defaulted, and a buffer budget below one part
 * refused. */
static void test_s3_flags(void **state) {
  (void)state;
  tusc_config_t c;
  char *argv[] = {"tusc",
                  "-s3-bucket",
                  "b",
                  "-s3-part-size",
                  "6291456",
                  "-s3-min-part-size",
                  "65536",
                  "-s3-max-buffer-memory",
                  "1048576",
                  "-s3-concurrent-part-uploads",
                  "3",
                  "-s3-disable-ssl",
                  "-s3-addressing",
                  "virtual",
                  "-s3-disable-content-hashes"};
  FILE *devnull = fopen("/dev/null", "w");
  assert_int_equal(
      tusc_config_parse(&c, (int)(sizeof argv / sizeof argv[0]), argv, devnull, devnull), 0);
  assert_int_equal(c.s3_part_size, 6291456);
  assert_int_equal(c.s3_min_part_size, 65536);
  assert_int_equal(c.s3_max_buffer_memory, 1048576);
  assert_int_equal(c.s3_concurrent_part_uploads, 3);
  assert_true(c.s3_disable_ssl);
  assert_true(c.s3_disable_content_hashes);
  assert_string_equal(c.s3_addressing, "virtual");
  tusc_config_dispose(&c);

  char *dflt[] = {"tusc"};
  assert_int_equal(tusc_config_parse(&c, 1, dflt, devnull, devnull), 0);
  assert_int_equal(c.s3_part_size, 50 << 20);
  assert_int_equal(c.s3_min_part_size, 5 << 20);
  assert_int_equal(c.s3_max_buffer_memory, 512 << 20);
  assert_int_equal(c.s3_concurrent_part_uploads, 10);
  assert_false(c.s3_disable_ssl);
  assert_string_equal(c.s3_addressing, "auto");
  tusc_config_dispose(&c);

  char *small[] = {"tusc", "-s3-bucket", "b", "-s3-max-buffer-memory", "1000"};
  assert_int_equal(tusc_config_parse(&c, 5, small, devnull, devnull), TUSC_CONFIG_EXIT_USAGE);
  tusc_config_dispose(&c);
  char *badstyle[] = {"tusc", "-s3-addressing", "dns"};
  assert_int_equal(tusc_config_parse(&c, 3, badstyle, devnull, devnull), TUSC_CONFIG_EXIT_USAGE);
  tusc_config_dispose(&c);
  fclose(devnull);
}

static void test_unsupported_flags(void **state) {
  (void)state;
  static const struct {
    const char *args[3];
    const char *msg;
  } cases[] = {
      {{"-hooks-grpc", "localhost:1"}, "flag -hooks-grpc: not supported by tusc ("},
      {{"-hooks-grpc-retry=3"}, "flag -hooks-grpc-retry: not supported by tusc ("},
      {{"--hooks-plugin", "x.so"}, "flag -hooks-plugin: not supported by tusc ("},
      {{"-gcs-bucket", "b"}, "flag -gcs-bucket: not supported by tusc ("},
      {{"-azure-storage", "c"}, "flag -azure-storage: not supported by tusc ("},
      {{"-expose-pprof"}, "flag -expose-pprof: not supported by tusc ("},
      {{"-pprof-path=/p"}, "flag -pprof-path: not supported by tusc ("},
      {{"-s3-transfer-acceleration"}, "flag -s3-transfer-acceleration: not supported by tusc ("},
      {{"-s3-max-buffered-parts", "5"}, "flag -s3-max-buffered-parts: not supported by tusc ("},
      {{"-s3-use-minio-sdk"}, "flag -s3-use-minio-sdk: not supported by tusc ("},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct run r;
    run_args(&r, cases[i].args);
    assert_int_equal(r.rc, TUSC_CONFIG_EXIT_USAGE);
    assert_contains(r.err, cases[i].msg);
    run_done(&r);
  }
}

static void test_bad_values(void **state) {
  (void)state;
  static const struct {
    const char *args[4];
    const char *msg;
  } cases[] = {
      {{"-port", "abc"}, "invalid value \"abc\" for flag -port: not an integer"},
      {{"-port", "70000"}, "invalid value \"70000\" for flag -port: out of range"},
      {{"-port=-1"}, "invalid value \"-1\" for flag -port: out of range"},
      {{"-port="}, "invalid value \"\" for flag -port: not an integer"},
      {{"-port", "12 "}, "for flag -port: not an integer"},
      {{"-port", "0x50"}, "for flag -port: not an integer"},
      {{"--workers=2000"}, "invalid value \"2000\" for flag -workers: out of range"},
      {{"-max-size", "-5"}, "invalid value \"-5\" for flag -max-size: out of range"},
      {{"-max-size", "1e3"}, "for flag -max-size: not an integer"},
      {{"-max-size", "99999999999999999999"}, "for flag -max-size: out of range"},
      {{"-max-header-count", "0"}, "for flag -max-header-count: out of range"},
      {{"-hooks-http-retry", "x"}, "for flag -hooks-http-retry: not an integer"},
      {{"-network-timeout", "5x"},
       "invalid value \"5x\" for flag -network-timeout: not a "
       "duration"},
      {{"-timeout", "abc"}, "invalid value \"abc\" for flag -timeout: not a duration"},
      {{"-shutdown-timeout", "-1s"}, "for flag -shutdown-timeout: negative durations"},
      {{"-hooks-http-backoff="}, "for flag -hooks-http-backoff: not a duration"},
      {{"-dir-perms", "999"}, "invalid value \"999\" for flag -dir-perms: not an octal number"},
      {{"-dir-perms", "1777"}, "invalid value \"1777\" for flag -dir-perms: out of range"},
      {{"-file-perms", "abc"}, "for flag -file-perms: not an octal number"},
      {{"-file-perms", ""}, "for flag -file-perms: not an octal number"},
      {{"-tls-mode", "tls11"}, "invalid value \"tls11\" for flag -tls-mode: must be one of"},
      {{"-tls-ktls", "on"}, "invalid value \"on\" for flag -tls-ktls: must be one of"},
      {{"-log-format", "xml"}, "invalid value \"xml\" for flag -log-format: must be one of"},
      {{"-fsync", "sometimes"}, "for flag -fsync: must be one of"},
      {{"-metrics-path", "metrics"}, "for flag -metrics-path: must start with '/'"},
      {{"-base-path", "/a b/"}, "for flag -base-path: a URL path must not contain"},
      {{"-base-path", "/files?x"}, "for flag -base-path: a URL path must not contain"},
      {{"-port"}, "flag needs an argument: -port"},
      {{"-behind-proxy", "-dir"}, "flag needs an argument: -dir"},
      {{"foo"}, "unexpected argument \"foo\""},
      {{"-port", "1", "foo"}, "unexpected argument \"foo\""},
      {{"-"}, "unexpected argument \"-\""},
      {{"--", "-port=1"}, "unexpected argument \"-port=1\" after \"--\""},
      {{"---port=1"}, "bad flag syntax: ---port=1"},
      {{"-=1"}, "bad flag syntax: -=1"},
      {{"-redis-url", "http://r:6379"}, "flag -redis-url must start with redis:// or unix://"},
      {{"-redis-lock-lease", "10ms"}, "-redis-lock-lease"},
      {{"-tls-certificate", "c.pem"}, "-tls-certificate and -tls-key must be given together"},
      {{"-tls-key", "k.pem"}, "-tls-certificate and -tls-key must be given together"},
      {{"-hooks-dir", "d", "-hooks-http=http://x/"}, "-hooks-dir and -hooks-http"},
      {{"-s3-endpoint", "http://minio:9000"}, "flag -s3-endpoint needs -s3-bucket"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct run r;
    run_args(&r, cases[i].args);
    if (r.rc != TUSC_CONFIG_EXIT_USAGE)
      fail_msg("case %zu (%s): rc %d, want 2", i, cases[i].args[0], r.rc);
    assert_contains(r.err, cases[i].msg);
    assert_string_equal(r.out, "");
    run_done(&r);
  }
}

static void test_double_dash_ends_flags(void **state) {
  (void)state;
  struct run r;
  run_args(&r, ARGS("-port", "7", "--"));
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.cfg.port, 7);
  run_done(&r);
}

/* ---- values ---------------------------------------------------------------------------- */

static void test_octal_perms(void **state) {
  (void)state;
  static const struct {
    const char *value;
    unsigned want;
  } cases[] = {
      {"640", 0640}, {"0640", 0640}, {"0o600", 0600}, {"0", 0},
      {"777", 0777}, {"0777", 0777}, {"00755", 0755}, {"7", 07},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct run r;
    run_args(&r, ARGS("-dir-perms", cases[i].value, "-file-perms", cases[i].value));
    if (r.rc != 0)
      fail_msg("%s: rc %d err %s", cases[i].value, r.rc, r.err);
    assert_int_equal(r.cfg.dir_perms, cases[i].want);
    assert_int_equal(r.cfg.file_perms, cases[i].want);
    run_done(&r);
  }
}

static void test_duration_parse(void **state) {
  (void)state;
  static const struct {
    const char *s;
    int64_t bare_unit_ms;
    int rc;
    int64_t want;
  } cases[] = {
      {"1h2m3.5s", 1000, 0, 3723500},
      {"500ms", 1000, 0, 500},
      {"90s", 1000, 0, 90000},
      {"1m30s", 1000, 0, 90000},
      {"2h", 1000, 0, 7200000},
      {"0", 1000, 0, 0},
      {"0", 1, 0, 0},
      {"0s", 1000, 0, 0},
      {"+5s", 1000, 0, 5000},
      {"1.5h", 1000, 0, 5400000},
      {".5s", 1000, 0, 500},
      {"1.s", 1000, 0, 1000},
      {"1500000us", 1000, 0, 1500},
      {"2000000000ns", 1000, 0, 2000},
      {"3\xc2\xb5s", 1000, 0, 1}, /* micro sign */
      {"3\xce\xbcs", 1000, 0, 1}, /* Greek mu */
      {"500us", 1000, 0, 1},      /* non-zero stays non-zero */
      {"1ns", 1000, 0, 1},
      {"1.9ms", 1000, 0, 1}, /* whole milliseconds round down */
      {"5", 1000, 0, 5000},  /* bare: seconds */
      {"5", 1, 0, 5},        /* bare: milliseconds (-timeout) */
      {"3000", 1, 0, 3000},
      {"2562047h", 1000, 0, INT64_C(2562047) * 3600000},
      {"", 1000, TUSC_EINVALID_ARGUMENT, 0},
      {"1x", 1000, TUSC_EINVALID_ARGUMENT, 0},
      {"-1s", 1000, TUSC_EINVALID_ARGUMENT, 0},
      {"-0", 1000, TUSC_EINVALID_ARGUMENT, 0},
      {"s", 1000, TUSC_EINVALID_ARGUMENT, 0},
      {".s", 1000, TUSC_EINVALID_ARGUMENT, 0},
      {"1.5", 1000, TUSC_EINVALID_ARGUMENT, 0},
      {"1s2", 1000, TUSC_EINVALID_ARGUMENT, 0},
      {"1 s", 1000, TUSC_EINVALID_ARGUMENT, 0},
      {" 1s", 1000, TUSC_EINVALID_ARGUMENT, 0},
      {"1S", 1000, TUSC_EINVALID_ARGUMENT, 0},
      {"+", 1000, TUSC_EINVALID_ARGUMENT, 0},
      {"2562048h", 1000, TUSC_EINVALID_ARGUMENT, 0}, /* > int64 nanoseconds */
      {"9223372036854775807s", 1000, TUSC_EINVALID_ARGUMENT, 0},
      {"99999999999999999999s", 1000, TUSC_EINVALID_ARGUMENT, 0},
      {"2000000h2000000h", 1000, TUSC_EINVALID_ARGUMENT, 0},    /* the sum overflows */
      {"9223372036854775807", 1000, TUSC_EINVALID_ARGUMENT, 0}, /* bare * 1000 overflows */
      {"99999999999999999999", 1, TUSC_EINVALID_ARGUMENT, 0},
      {"5", 0, TUSC_EINVALID_ARGUMENT, 0}, /* no bare unit: Go's rule */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int64_t got = -12345;
    int rc = tusc_duration_parse(cases[i].s, cases[i].bare_unit_ms, &got);
    if (rc != cases[i].rc)
      fail_msg("\"%s\" (bare %lld): rc %d want %d", cases[i].s, (long long)cases[i].bare_unit_ms,
               rc, cases[i].rc);
    if (rc == 0 && got != cases[i].want)
      fail_msg("\"%s\": got %lld want %lld", cases[i].s, (long long)got, (long long)cases[i].want);
    if (rc != 0 && got != -12345)
      fail_msg("\"%s\": output written on failure", cases[i].s);
  }
  int64_t v = 7;
  assert_int_equal(tusc_duration_parse(NULL, 1000, &v), TUSC_EINVALID_ARGUMENT);
  assert_int_equal(v, 7);
}

static void test_base_path_normalisation(void **state) {
  (void)state;
  static const struct {
    const char *value;
    const char *want;
  } cases[] = {
      {"", "/"},
      {"/", "/"},
      {"files", "/files/"},
      {"/files", "/files/"},
      {"files/", "/files/"},
      {"/files/", "/files/"},
      {"/a/b", "/a/b/"},
      {"api/v1/uploads", "/api/v1/uploads/"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct run r;
    run_args(&r, ARGS("-base-path", cases[i].value));
    if (r.rc != 0)
      fail_msg("\"%s\": rc %d err %s", cases[i].value, r.rc, r.err);
    assert_string_equal(r.cfg.base_path, cases[i].want);
    run_done(&r);
  }
}

static void test_hooks_enabled_events(void **state) {
  (void)state;
  static const struct {
    const char *args[3];
    int rc;
    const char *want; /* NULL: field stays NULL (or not checked on error) */
  } cases[] = {
      {{"-port=1"}, 0, NULL},
      {{"-hooks-enabled-events="}, 0, ""},
      {{"-hooks-enabled-events", ""}, 0, ""},
      {{"-hooks-enabled-events", "  "}, 0, ""},
      {{"-hooks-enabled-events", "post-finish"}, 0, "post-finish"},
      {{"-hooks-enabled-events", " pre-create , post-finish "}, 0, "pre-create,post-finish"},
      {{"-hooks-enabled-events=pre-create,post-create,post-receive,pre-finish,post-finish,"
        "pre-terminate,post-terminate"},
       0,
       "pre-create,post-create,post-receive,pre-finish,post-finish,pre-terminate,"
       "post-terminate"},
      {{"-hooks-enabled-events", "pre-create,bogus"}, TUSC_CONFIG_EXIT_USAGE, NULL},
      {{"-hooks-enabled-events", "pre-create,,post-create"}, TUSC_CONFIG_EXIT_USAGE, NULL},
      {{"-hooks-enabled-events", "pre-create,"}, TUSC_CONFIG_EXIT_USAGE, NULL},
      {{"-hooks-enabled-events", "Pre-Create"}, TUSC_CONFIG_EXIT_USAGE, NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct run r;
    run_args(&r, cases[i].args);
    if (r.rc != cases[i].rc)
      fail_msg("case %zu: rc %d want %d err %s", i, r.rc, cases[i].rc, r.err);
    if (r.rc == 0) {
      if (cases[i].want == NULL)
        assert_null(r.cfg.hooks_enabled_events);
      else
        assert_string_equal(r.cfg.hooks_enabled_events, cases[i].want);
    } else {
      assert_contains(r.err, "for flag -hooks-enabled-events:");
    }
    run_done(&r);
  }
  struct run r;
  run_args(&r, ARGS("-hooks-enabled-events", "pre-create,bogus"));
  assert_contains(r.err, "unknown hook event \"bogus\"");
  run_done(&r);
}

/* ---- help and version ------------------------------------------------------------------- */

static void test_help(void **state) {
  (void)state;
  static const char *const forms[] = {"-help", "--help", "-h", "--h"};
  for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
    struct run r;
    run_args(&r, ARGS("-port", "1", forms[i]));
    assert_int_equal(r.rc, TUSC_CONFIG_EXIT_OK);
    assert_string_equal(r.err, "");
    assert_contains(r.out, "NAME\n");
    assert_contains(r.out, "SYNOPSIS\n");
    assert_contains(r.out, "DESCRIPTION\n");
    assert_contains(r.out, "OPTIONS\n");
    assert_contains(r.out, "SIGNALS\n");
    assert_contains(r.out, "EXAMPLES\n");
    assert_contains(r.out, "tusc -dir /data/tusupload -hooks-dir /app/tusd/hooks -behind-proxy");
    run_done(&r);
  }
}

static void test_help_after_error_is_an_error(void **state) {
  (void)state;
  struct run r;
  run_args(&r, ARGS("-port", "x", "-help"));
  assert_int_equal(r.rc, TUSC_CONFIG_EXIT_USAGE);
  assert_contains(r.err, "-port");
  run_done(&r);
}

static void test_usage_documents_every_flag(void **state) {
  (void)state;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  assert_non_null(f);
  tusc_config_usage(f);
  fclose(f);
  static const char *const names[] = {
      "-host HOST",
      "-port PORT",
      "-unix-sock",
      "-base-path",
      "-behind-proxy",
      "-show-greeting",
      "-workers",
      "-port-file",
      "-max-size",
      "-disable-download",
      "-disable-termination",
      "-disable-concatenation",
      "-enable-experimental-protocol",
      "-max-metadata-size",
      "-disable-cors",
      "-cors-allow-origin",
      "-cors-allow-credentials",
      "-cors-allow-methods",
      "-cors-allow-headers",
      "-cors-max-age",
      "-cors-expose-headers",
      "-upload-dir",
      "-dir",
      "-dir-perms",
      "-file-perms",
      "-fsync",
      "-max-header-size",
      "-max-header-count",
      "-hooks-dir",
      "-hooks-http",
      "-hooks-http-forward-headers",
      "-hooks-http-retry",
      "-hooks-http-backoff",
      "-hooks-http-timeout",
      "-hooks-http-size-limit",
      "-hooks-enabled-events",
      "-progress-hooks-interval",
      "-hooks-timeout",
      "-tls-certificate",
      "-tls-key",
      "-tls-mode",
      "-expose-metrics",
      "-metrics-path",
      "-verbose",
      "-log-format",
      "-show-startup-logs",
      "-network-timeout",
      "-timeout",
      "-shutdown-timeout",
      "-acquire-lock-timeout",
      "-s3-bucket",
      "-s3-endpoint",
      "-s3-object-prefix",
      "-s3-part-size",
      "-s3-min-part-size",
      "-s3-max-buffer-memory",
      "-s3-concurrent-part-uploads",
      "-s3-disable-ssl",
      "-s3-addressing",
      "-help",
      "-version",
      /* defaults shown as an operator would type them */
      "Default: 1080",
      "Default: /files/",
      "Default: ./data",
      "Default: 775",
      "Default: 664",
      "Default: 60s",
      "Default: 10s",
      "Default: 20s",
      "Default: 86400",
      "Default: tls12",
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    assert_contains(text, names[i]);
  free(text);
}

static void test_version(void **state) {
  (void)state;
  struct run r;
  run_args(&r, ARGS("-version"));
  assert_int_equal(r.rc, TUSC_CONFIG_EXIT_OK);
  assert_string_equal(r.out, "tusc " TUSC_VERSION "\n");
  assert_string_equal(r.err, "");
  run_done(&r);

  run_args(&r, ARGS("--version", "-port", "5"));
  assert_int_equal(r.rc, TUSC_CONFIG_EXIT_OK);
  assert_string_equal(r.out, "tusc " TUSC_VERSION "\n");
  run_done(&r);

  run_args(&r, ARGS("-version=false"));
  assert_int_equal(r.rc, 0);
  assert_string_equal(r.out, "");
  run_done(&r);

  /* a bad flag anywhere wins over -version */
  run_args(&r, ARGS("-version", "-port", "x"));
  assert_int_equal(r.rc, TUSC_CONFIG_EXIT_USAGE);
  assert_string_equal(r.out, "");
  run_done(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_value_syntax_forms),
      cmocka_unit_test(test_value_may_start_with_dash),
      cmocka_unit_test(test_equals_in_value),
      cmocka_unit_test(test_bool_forms),
      cmocka_unit_test(test_bool_flags_map_to_fields),
      cmocka_unit_test(test_string_flags_map_to_fields),
      cmocka_unit_test(test_integer_and_duration_flags_map_to_fields),
      cmocka_unit_test(test_seed_command_line),
      cmocka_unit_test(test_last_value_wins),
      cmocka_unit_test(test_empty_optional_strings_are_unset),
      cmocka_unit_test(test_fsync),
      cmocka_unit_test(test_unknown_flag),
      cmocka_unit_test(test_unsupported_flags),
      cmocka_unit_test(test_s3_flags),
      cmocka_unit_test(test_bad_values),
      cmocka_unit_test(test_double_dash_ends_flags),
      cmocka_unit_test(test_octal_perms),
      cmocka_unit_test(test_duration_parse),
      cmocka_unit_test(test_base_path_normalisation),
      cmocka_unit_test(test_hooks_enabled_events),
      cmocka_unit_test(test_help),
      cmocka_unit_test(test_help_after_error_is_an_error),
      cmocka_unit_test(test_usage_documents_every_flag),
      cmocka_unit_test(test_version),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

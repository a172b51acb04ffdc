/* Unit tests for src/metrics: counters, labelled errors, histograms and the exposition
 * text (metrics.c), including concurrent updates from several threads, and the
 * -metrics-listen server (http/metrics_endpoint.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "common/error.h"
#include "common/timeutil.h"
#include "hooks/hooks.h"
#include "http/http.h"
#include "http/metrics_endpoint.h"
#include "metrics/metrics.h"

/* The value of the sample line that starts with `series` ("name{labels}" or "name"),
 * or -1 when absent. */
static double sample(const char *text, const char *series) {
  size_t n = strlen(series);
  for (const char *line = text; line != NULL && *line != '\0';) {
    if (strncmp(line, series, n) == 0 && line[n] == ' ')
      return strtod(line + n + 1, NULL);
    line = strchr(line, '\n');
    if (line != NULL)
      line++;
  }
  return -1;
}

static char *render(void) {
  char *text = NULL;
  size_t len = 0;
  assert_int_equal(tusc_metrics_render(&text, &len), 0);
  assert_non_null(text);
  assert_int_equal(strlen(text), len);
  assert_true(len > 0 && text[len - 1] == '\n');
  return text;
}

static void test_counters_move(void **state) {
  (void)state;
  char *before = render();
  tusc_metrics_request(TUSC_HTTP_PATCH);
  tusc_metrics_request(TUSC_HTTP_PATCH);
  tusc_metrics_bytes_received(100);
  tusc_metrics_bytes_written(90);
  tusc_metrics_upload_created();
  tusc_metrics_upload_finished();
  tusc_metrics_upload_terminated();
  tusc_metrics_connections(3);
  tusc_metrics_connections(-1);
  tusc_metrics_active_uploads(1);
  tusc_metrics_lock_wait();
  tusc_metrics_hook_queue(2);
  tusc_metrics_tls_ktls();
  char *after = render();
  struct {
    const char *series;
    double delta;
  } cases[] = {
      {"tusd_requests_total{method=\"PATCH\"}", 2},
      {"tusd_requests_total{method=\"GET\"}", 0},
      {"tusd_bytes_received", 100},
      {"tusc_bytes_written_total", 90},
      {"tusd_uploads_created", 1},
      {"tusd_uploads_finished", 1},
      {"tusd_uploads_terminated", 1},
      {"tusd_connections_open", 2},
      {"tusc_tls_ktls_connections_total", 1},
      {"tusc_active_uploads", 1},
      {"tusc_lock_waits_total", 1},
      {"tusc_hook_queue_depth", 2},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    double a = sample(before, cases[i].series), b = sample(after, cases[i].series);
    assert_true(a >= 0);
    if (b - a != cases[i].delta)
      fail_msg("%s moved by %g, expected %g", cases[i].series, b - a, cases[i].delta);
  }
  tusc_metrics_connections(-2);
  tusc_metrics_active_uploads(-1);
  tusc_metrics_hook_queue(-2);
  free(before);
  free(after);
}

static void test_error_labels(void **state) {
  (void)state;
  tusc_metrics_error(404, TUSC_ENOT_FOUND);
  tusc_metrics_error(404, TUSC_ENOT_FOUND);
  tusc_metrics_error(410, TUSC_EGONE);
  tusc_metrics_error(507, UV_ENOSPC);
  tusc_metrics_error(403, TUSC_EUPLOAD_REJECTED); /* a hook changed the status */
  char *text = render();
  assert_true(sample(text, "tusd_errors_total{status=\"404\",code=\"ERR_UPLOAD_NOT_FOUND\"}") == 2);
  assert_true(sample(text, "tusd_errors_total{status=\"410\",code=\"ERR_UPLOAD_NOT_FOUND\"}") == 1);
  assert_true(sample(text, "tusd_errors_total{status=\"403\",code=\"ERR_UPLOAD_REJECTED\"}") == 1);
  char series[128];
  snprintf(series, sizeof(series), "tusd_errors_total{status=\"507\",code=\"%s\"}",
           tusc_error_code(UV_ENOSPC));
  assert_true(sample(text, series) == 1);
  free(text);
}

/* Durations are measured against the clock: a thread preempted between taking `now` and
 * an observation records it longer (a loaded machine does that for many ms). A try counts
 * only if the three observations took under 5 ms in all; else it is made again. */
static void test_histogram_buckets(void **state) {
  (void)state;
  const char *name = "tusc_request_duration_seconds";
  char s[160];
  bool measured = false;
  for (int attempt = 0; attempt < 100 && !measured; attempt++) {
    char *before = render();
    uint64_t now = tusc_now_ms();
    tusc_metrics_request_done(TUSC_HTTP_DELETE, now);         /* ~0 ms */
    tusc_metrics_request_done(TUSC_HTTP_DELETE, now - 200);   /* ~200 ms */
    tusc_metrics_request_done(TUSC_HTTP_DELETE, now - 90000); /* beyond the last bound */
    uint64_t took = tusc_now_ms() - now;
    char *text = render();
    snprintf(s, sizeof(s), "%s_bucket{method=\"DELETE\",le=\"0.005\"}", name);
    double b5 = sample(text, s) - sample(before, s);
    snprintf(s, sizeof(s), "%s_bucket{method=\"DELETE\",le=\"0.25\"}", name);
    double b250 = sample(text, s) - sample(before, s);
    snprintf(s, sizeof(s), "%s_bucket{method=\"DELETE\",le=\"60\"}", name);
    double b60 = sample(text, s) - sample(before, s);
    snprintf(s, sizeof(s), "%s_bucket{method=\"DELETE\",le=\"+Inf\"}", name);
    double binf = sample(text, s) - sample(before, s);
    snprintf(s, sizeof(s), "%s_count{method=\"DELETE\"}", name);
    double count = sample(text, s) - sample(before, s);
    snprintf(s, sizeof(s), "%s_sum{method=\"DELETE\"}", name);
    double sum = sample(text, s) - sample(before, s);
    free(before);
    free(text);
    if (took >= 5)
      continue;
    measured = true;
    assert_true(b5 == 1 && b250 == 2 && b60 == 2 && binf == 3 && count == 3);
    assert_true(sum >= 90.2 && sum < 90.3);
  }
  assert_true(measured);

  tusc_metrics_hook_done(TUSC_HOOK_PRE_FINISH, 7);
  char *text = render();
  assert_true(
      sample(text, "tusc_hook_duration_seconds_bucket{hooktype=\"pre-finish\",le=\"0.005\"}") == 0);
  assert_true(
      sample(text, "tusc_hook_duration_seconds_bucket{hooktype=\"pre-finish\",le=\"0.01\"}") == 1);
  assert_true(sample(text, "tusc_hook_duration_seconds_count{hooktype=\"pre-finish\"}") == 1);
  free(text);
}

static void test_families_declared_once(void **state) {
  (void)state;
  char *text = render();
  const char *families[] = {"tusd_requests_total",         "tusd_errors_total",
                            "tusd_hook_invocations_total", "tusc_request_duration_seconds",
                            "process_cpu_seconds_total",   "process_start_time_seconds"};
  for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
    char type[128];
    snprintf(type, sizeof(type), "# TYPE %s ", families[i]);
    const char *first = strstr(text, type);
    assert_non_null(first);
    assert_null(strstr(first + 1, type));
  }
  /* No hooks attached: every hook type still present, at zero. */
  assert_true(sample(text, "tusd_hook_invocations_total{hooktype=\"post-terminate\"}") == 0);
  free(text);
}

/* metrics names hook types itself (it does not include hooks/): its labels must be the
 * hooks module's names, each counted in its own series. */
static void test_hook_labels_match_hooks(void **state) {
  (void)state;
  char *before = render();
  for (int ev = 0; ev < TUSC_HOOK_EVENT_COUNT; ev++)
    for (int i = 0; i <= ev; i++)
      tusc_metrics_hook_done(ev, 1);
  char *after = render();
  for (int ev = 0; ev < TUSC_HOOK_EVENT_COUNT; ev++) {
    const char *name = tusc_hook_event_name((enum tusc_hook_event)ev);
    char series[128];
    snprintf(series, sizeof(series), "tusc_hook_duration_seconds_count{hooktype=\"%s\"}", name);
    double a = sample(before, series), b = sample(after, series);
    if (a < 0 || b - a != ev + 1)
      fail_msg("%s: %g before, %g after, want +%d", series, a, b, ev + 1);
    snprintf(series, sizeof(series), "tusd_hook_invocations_total{hooktype=\"%s\"}", name);
    assert_true(sample(after, series) >= 0);
  }
  free(before);
  free(after);
}

struct fake_hooks {
  uint64_t invocations;
};

static void fake_hook_stats(const void *arg, tusc_metrics_hook_stats_t *out) {
  const struct fake_hooks *h = arg;
  out->invocations[TUSC_HOOK_POST_FINISH] = h->invocations;
  out->errors[TUSC_HOOK_PRE_CREATE] = 2;
  out->dropped = 3;
  out->running = 4;
}

/* The hook counters come from the source server.c attaches, read at each render. */
static void test_hook_source(void **state) {
  (void)state;
  struct fake_hooks h = {.invocations = 5};
  tusc_metrics_hook_source_t source = {.stats = fake_hook_stats, .arg = &h};
  tusc_metrics_set_hook_source(&source);
  char *text = render();
  assert_true(sample(text, "tusd_hook_invocations_total{hooktype=\"post-finish\"}") == 5);
  assert_true(sample(text, "tusd_hook_errors_total{hooktype=\"pre-create\"}") == 2);
  assert_true(sample(text, "tusc_hook_queue_dropped_total") == 3);
  assert_true(sample(text, "tusc_hooks_running") == 4);
  free(text);
  tusc_metrics_set_hook_source(NULL);
  text = render();
  assert_true(sample(text, "tusd_hook_invocations_total{hooktype=\"post-finish\"}") == 0);
  free(text);
}

#define THREADS 4
#define PER_THREAD 100000

static void hammer(void *arg) {
  (void)arg;
  for (int i = 0; i < PER_THREAD; i++) {
    tusc_metrics_bytes_received(1);
    tusc_metrics_error(499, TUSC_EINTERNAL);
  }
}

static void test_concurrent_updates(void **state) {
  (void)state;
  char *before = render();
  uv_thread_t t[THREADS];
  for (int i = 0; i < THREADS; i++)
    assert_int_equal(uv_thread_create(&t[i], hammer, NULL), 0);
  for (int i = 0; i < THREADS; i++)
    uv_thread_join(&t[i]);
  char *after = render();
  double d = sample(after, "tusd_bytes_received") - sample(before, "tusd_bytes_received");
  assert_true(d == THREADS * PER_THREAD);
  assert_true(
      sample(after, "tusd_errors_total{status=\"499\",code=\"ERR_INTERNAL_SERVER_ERROR\"}") ==
      THREADS * PER_THREAD);
  free(before);
  free(after);
}

static void test_metrics_server_rejects_bad_address(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  tusc_http_limits_t limits = {
      .max_header_size = 8192, .max_header_count = 50, .network_timeout_ms = 1000};
  tusc_metrics_server_t *s = NULL;
  const char *bad[] = {"",         "127.0.0.1",   "127.0.0.1:", "127.0.0.1:70000",
                       "::1:9100", "127.0.0.1:9x"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(tusc_metrics_server_start(&loop, bad[i], "/metrics", &limits, &s, NULL),
                     TUSC_EINVALID_ARGUMENT);
  int port = 0;
  assert_int_equal(tusc_metrics_server_start(&loop, "127.0.0.1:0", "/metrics", &limits, &s, &port),
                   0);
  assert_true(port > 0);
  tusc_metrics_server_stop(s);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  tusc_metrics_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_counters_move),
      cmocka_unit_test(test_error_labels),
      cmocka_unit_test(test_histogram_buckets),
      cmocka_unit_test(test_families_declared_once),
      cmocka_unit_test(test_hook_labels_match_hooks),
      cmocka_unit_test(test_hook_source),
      cmocka_unit_test(test_concurrent_updates),
      cmocka_unit_test(test_metrics_server_rejects_bad_address),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

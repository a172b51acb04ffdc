/*
 * metrics — the counters are one static block of relaxed atomics: updates come from
 * every worker thread on the request path, and ordering between different counters
 * does not matter to a scraper. Labelled error counters use a small fixed table whose
 * slots are claimed with a compare-and-swap on their (status, code) key, so even the
 * error path takes no lock.
 */
#include "metrics/metrics.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "common/timeutil.h"

#define ERROR_SLOTS 64
#define HIST_BUCKETS 14

/* Upper bounds in milliseconds; the last bucket is +Inf. */
static const uint64_t bucket_ms[HIST_BUCKETS - 1] = {5,    10,   25,   50,    100,   250,  500,
                                                     1000, 2500, 5000, 10000, 30000, 60000};

struct histogram {
  atomic_uint_fast64_t buckets[HIST_BUCKETS]; /* non-cumulative; summed when rendered */
  atomic_uint_fast64_t sum_ms;
  atomic_uint_fast64_t count;
};

/* Distinct tusd error-code names, in TUSC_ERROR_MAP order (duplicates are harmless:
 * lookups take the first). Index + 1 is the code part of an error slot's key. */
static const char *const code_names[] = {
#define TUSC_METRICS_CODE(name, status, code, msg) code,
    TUSC_ERROR_MAP(TUSC_METRICS_CODE)
#undef TUSC_METRICS_CODE
};
#define CODE_COUNT (sizeof(code_names) / sizeof(code_names[0]))

static struct {
  atomic_uint_fast64_t requests[TUSC_METRICS_METHODS];
  struct histogram durations[TUSC_METRICS_METHODS];
  atomic_uint_fast64_t error_key[ERROR_SLOTS]; /* 0 = free, else status << 16 | code+1 */
  atomic_uint_fast64_t error_count[ERROR_SLOTS];
  atomic_uint_fast64_t errors_unrecorded;
  atomic_uint_fast64_t bytes_received;
  atomic_uint_fast64_t bytes_written;
  atomic_uint_fast64_t uploads_created;
  atomic_uint_fast64_t uploads_finished;
  atomic_uint_fast64_t uploads_terminated;
  atomic_uint_fast64_t uploads_expired;
  atomic_int_fast64_t connections;
  atomic_uint_fast64_t tls_ktls;
  atomic_int_fast64_t active_uploads;
  atomic_uint_fast64_t lock_waits;
  atomic_int_fast64_t hook_queue;
  struct histogram hook_durations[TUSC_METRICS_HOOK_TYPES];
  _Atomic(const tusc_metrics_hook_source_t *) hook_source;
  atomic_int_fast64_t start_time_ms; /* unix ms; 0 = not recorded */
} m;

static const char *const method_labels[TUSC_METRICS_METHODS] = {
    [TUSC_METRICS_OTHER] = "OTHER",   [TUSC_METRICS_GET] = "GET",
    [TUSC_METRICS_HEAD] = "HEAD",     [TUSC_METRICS_POST] = "POST",
    [TUSC_METRICS_PUT] = "PUT",       [TUSC_METRICS_PATCH] = "PATCH",
    [TUSC_METRICS_DELETE] = "DELETE", [TUSC_METRICS_OPTIONS] = "OPTIONS",
};

/* tusd's hooktype label values, in enum tusc_hook_event order. */
static const char *const hook_labels[TUSC_METRICS_HOOK_TYPES] = {
    "pre-create",  "post-create",   "post-receive",   "pre-finish",
    "post-finish", "pre-terminate", "post-terminate",
};

#define ADD(counter, n) atomic_fetch_add_explicit(&(counter), (n), memory_order_relaxed)
#define GET(counter) atomic_load_explicit(&(counter), memory_order_relaxed)

static int64_t unix_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tusc_metrics_init(void) {
  int_fast64_t zero = 0;
  atomic_compare_exchange_strong(&m.start_time_ms, &zero, unix_ms());
}

void tusc_metrics_set_hook_source(const tusc_metrics_hook_source_t *source) {
  atomic_store(&m.hook_source, source);
}

static size_t method_index(int method) {
  return (unsigned)method < TUSC_METRICS_METHODS ? (size_t)method : (size_t)TUSC_METRICS_OTHER;
}

static void observe(struct histogram *h, uint64_t ms) {
  size_t i = 0;
  while (i < HIST_BUCKETS - 1 && ms > bucket_ms[i])
    i++;
  ADD(h->buckets[i], 1);
  ADD(h->sum_ms, ms);
  ADD(h->count, 1);
}

void tusc_metrics_request(int method) {
  ADD(m.requests[method_index(method)], 1);
}

void tusc_metrics_request_done(int method, uint64_t start_ms) {
  uint64_t now = tusc_now_ms();
  observe(&m.durations[method_index(method)], now > start_ms ? now - start_ms : 0);
}

void tusc_metrics_error(int status, int err) {
  const char *code = tusc_error_code(err);
  size_t ci = 0;
  while (ci < CODE_COUNT && strcmp(code_names[ci], code) != 0)
    ci++;
  if (ci == CODE_COUNT)
    ci = 0; /* cannot happen: every code name comes from the map */
  uint_fast64_t key = ((uint_fast64_t)(unsigned)status << 16) | (uint_fast64_t)(ci + 1);
  for (size_t i = 0; i < ERROR_SLOTS; i++) {
    uint_fast64_t cur = GET(m.error_key[i]);
    if (cur == 0) {
      uint_fast64_t expected = 0;
      if (atomic_compare_exchange_strong(&m.error_key[i], &expected, key))
        cur = key;
      else
        cur = expected; /* someone else claimed it first: maybe with our key */
    }
    if (cur == key) {
      ADD(m.error_count[i], 1);
      return;
    }
  }
  ADD(m.errors_unrecorded, 1);
}

void tusc_metrics_bytes_received(uint64_t n) {
  ADD(m.bytes_received, n);
}
void tusc_metrics_bytes_written(uint64_t n) {
  ADD(m.bytes_written, n);
}
void tusc_metrics_upload_created(void) {
  ADD(m.uploads_created, 1);
}
void tusc_metrics_upload_finished(void) {
  ADD(m.uploads_finished, 1);
}
void tusc_metrics_upload_terminated(void) {
  ADD(m.uploads_terminated, 1);
}
void tusc_metrics_upload_expired(void) {
  ADD(m.uploads_expired, 1);
}
void tusc_metrics_connections(int delta) {
  ADD(m.connections, delta);
}
void tusc_metrics_tls_ktls(void) {
  ADD(m.tls_ktls, 1);
}
void tusc_metrics_active_uploads(int delta) {
  ADD(m.active_uploads, delta);
}
void tusc_metrics_lock_wait(void) {
  ADD(m.lock_waits, 1);
}
void tusc_metrics_hook_queue(int delta) {
  ADD(m.hook_queue, delta);
}
void tusc_metrics_hook_done(int hook_type, uint64_t duration_ms) {
  if ((unsigned)hook_type < TUSC_METRICS_HOOK_TYPES)
    observe(&m.hook_durations[hook_type], duration_ms);
}

/* --- rendering -------------------------------------------------------------------- */

struct buf {
  char *data;
  size_t len, cap;
  bool failed;
};

__attribute__((format(printf, 2, 3))) static void put(struct buf *b, const char *fmt, ...) {
  if (b->failed)
    return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->failed = true;
      return;
    }
    if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = b->cap * 2;
    while (cap - b->len <= (size_t)n)
      cap *= 2;
    char *p = realloc(b->data, cap);
    if (p == NULL) {
      b->failed = true;
      return;
    }
    b->data = p;
    b->cap = cap;
  }
}

static void family(struct buf *b, const char *name, const char *type, const char *help) {
  put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Label values here are fixed ASCII words, but the format demands escaping and a
 * future label must not be able to break the exposition. */
static void put_label_value(struct buf *b, const char *v) {
  for (; *v != '\0'; v++) {
    if (*v == '\\')
      put(b, "\\\\");
    else if (*v == '"')
      put(b, "\\\"");
    else if (*v == '\n')
      put(b, "\\n");
    else
      put(b, "%c", *v);
  }
}

static void histogram(struct buf *b, const char *name, const char *label, const char *label_value,
                      const struct histogram *h) {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < HIST_BUCKETS; i++) {
    cumulative += GET(h->buckets[i]);
    put(b, "%s_bucket{%s=\"", name, label);
    put_label_value(b, label_value);
    if (i < HIST_BUCKETS - 1)
      put(b, "\",le=\"%g\"} %llu\n", (double)bucket_ms[i] / 1000.0, (unsigned long long)cumulative);
    else
      put(b, "\",le=\"+Inf\"} %llu\n", (unsigned long long)cumulative);
  }
  /* count is read after the buckets: a concurrent observation may make count larger
   * than +Inf for one scrape; report the bucket total so the sample stays consistent. */
  put(b, "%s_sum{%s=\"", name, label);
  put_label_value(b, label_value);
  put(b, "\"} %.3f\n", (double)GET(h->sum_ms) / 1000.0);
  put(b, "%s_count{%s=\"", name, label);
  put_label_value(b, label_value);
  put(b, "\"} %llu\n", (unsigned long long)cumulative);
}

static void counter1(struct buf *b, const char *name, const char *help, uint64_t v) {
  family(b, name, "counter", help);
  put(b, "%s %llu\n", name, (unsigned long long)v);
}

static void gauge1(struct buf *b, const char *name, const char *help, double v) {
  family(b, name, "gauge", help);
  put(b, "%s %.17g\n", name, v);
}

static void render_process(struct buf *b) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) == 0) {
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    family(b, "process_cpu_seconds_total", "counter",
           "Total user and system CPU time spent in seconds.");
    put(b, "process_cpu_seconds_total %.6f\n", cpu);
  }
  FILE *f = fopen("/proc/self/statm", "re");
  if (f != NULL) {
    unsigned long long vm = 0, rss = 0;
    long page = sysconf(_SC_PAGESIZE);
    if (fscanf(f, "%llu %llu", &vm, &rss) == 2 && page > 0) {
      gauge1(b, "process_virtual_memory_bytes", "Virtual memory size in bytes.",
             (double)vm * (double)page);
      gauge1(b, "process_resident_memory_bytes", "Resident memory size in bytes.",
             (double)rss * (double)page);
    }
    fclose(f);
  }
  DIR *d = opendir("/proc/self/fd");
  if (d != NULL) {
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
      if (e->d_name[0] != '.')
        n++;
    closedir(d);
    gauge1(b, "process_open_fds", "Number of open file descriptors.", (double)(n - 1));
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
    gauge1(b, "process_max_fds", "Maximum number of open file descriptors.",
           rl.rlim_cur == RLIM_INFINITY ? -1.0 : (double)rl.rlim_cur);
  tusc_metrics_init();
  gauge1(b, "process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
         (double)GET(m.start_time_ms) / 1000.0);
}

static void render_tusd(struct buf *b) {
  static const enum tusc_metrics_method tusd_methods[] = {
      TUSC_METRICS_GET,   TUSC_METRICS_HEAD,   TUSC_METRICS_POST,
      TUSC_METRICS_PATCH, TUSC_METRICS_DELETE, TUSC_METRICS_OPTIONS};
  family(b, "tusd_requests_total", "counter",
         "Total number of requests served by tusd per method.");
  for (size_t i = 0; i < sizeof(tusd_methods) / sizeof(tusd_methods[0]); i++)
    put(b, "tusd_requests_total{method=\"%s\"} %llu\n", method_labels[tusd_methods[i]],
        (unsigned long long)GET(m.requests[tusd_methods[i]]));
  /* PUT and unknown methods are counted too, but shown only once seen: tusd's
   * dashboards expect its six series. */
  if (GET(m.requests[TUSC_METRICS_PUT]) > 0)
    put(b, "tusd_requests_total{method=\"PUT\"} %llu\n",
        (unsigned long long)GET(m.requests[TUSC_METRICS_PUT]));
  if (GET(m.requests[TUSC_METRICS_OTHER]) > 0)
    put(b, "tusd_requests_total{method=\"OTHER\"} %llu\n",
        (unsigned long long)GET(m.requests[TUSC_METRICS_OTHER]));

  family(b, "tusd_errors_total", "counter", "Total number of errors per status.");
  for (size_t i = 0; i < ERROR_SLOTS; i++) {
    uint_fast64_t key = GET(m.error_key[i]);
    if (key == 0)
      continue;
    size_t ci = (size_t)(key & 0xffff) - 1;
    put(b, "tusd_errors_total{status=\"%u\",code=\"", (unsigned)(key >> 16));
    put_label_value(b, ci < CODE_COUNT ? code_names[ci] : "");
    put(b, "\"} %llu\n", (unsigned long long)GET(m.error_count[i]));
  }

  counter1(b, "tusd_bytes_received", "Number of bytes received for uploads.",
           GET(m.bytes_received));
  counter1(b, "tusd_uploads_created", "Number of created uploads.", GET(m.uploads_created));
  counter1(b, "tusd_uploads_finished", "Number of finished uploads.", GET(m.uploads_finished));
  counter1(b, "tusd_uploads_terminated", "Number of terminated uploads.",
           GET(m.uploads_terminated));
  counter1(b, "tusc_uploads_expired_total", "Number of unfinished uploads deleted on expiry.",
           GET(m.uploads_expired));
  gauge1(b, "tusd_connections_open", "Current number of open connections.",
         (double)GET(m.connections));
  counter1(b, "tusc_tls_ktls_connections_total",
           "TLS connections whose records the kernel encrypts and decrypts (kTLS).",
           GET(m.tls_ktls));

  tusc_metrics_hook_stats_t hs;
  memset(&hs, 0, sizeof(hs));
  const tusc_metrics_hook_source_t *source = atomic_load(&m.hook_source);
  if (source != NULL)
    source->stats(source->arg, &hs);
  family(b, "tusd_hook_invocations_total", "counter", "Total number of invocations per hook type.");
  for (int ev = 0; ev < TUSC_METRICS_HOOK_TYPES; ev++)
    put(b, "tusd_hook_invocations_total{hooktype=\"%s\"} %llu\n", hook_labels[ev],
        (unsigned long long)hs.invocations[ev]);
  family(b, "tusd_hook_errors_total", "counter", "Total number of execution errors per hook type.");
  for (int ev = 0; ev < TUSC_METRICS_HOOK_TYPES; ev++)
    put(b, "tusd_hook_errors_total{hooktype=\"%s\"} %llu\n", hook_labels[ev],
        (unsigned long long)hs.errors[ev]);
  counter1(b, "tusc_hook_queue_dropped_total",
           "Non-blocking hook invocations dropped because the queue was full.", hs.dropped);
  gauge1(b, "tusc_hooks_running", "Hooks running now (at most -hooks-max-processes).",
         (double)hs.running);
  gauge1(b, "tusc_hooks_waiting", "Blocking hook invocations waiting for a free hook slot.",
         (double)hs.waiting);
  counter1(b, "tusc_hook_busy_total",
           "Blocking hook invocations refused with 503 (every slot and queue place taken).",
           hs.busy);
  counter1(b, "tusc_hook_cancelled_total",
           "Blocking hooks stopped (process group killed) because their request had gone.",
           hs.cancelled);
}

static void render_tusc(struct buf *b) {
  family(b, "tusc_request_duration_seconds", "histogram",
         "Time from request head to the end of the response, per method.");
  for (size_t i = 0; i < TUSC_METRICS_METHODS; i++) {
    if (i == TUSC_METRICS_OTHER || i == TUSC_METRICS_PUT)
      continue;
    histogram(b, "tusc_request_duration_seconds", "method", method_labels[i], &m.durations[i]);
  }
  counter1(b, "tusc_bytes_written_total", "Bytes stored in uploads.", GET(m.bytes_written));
  gauge1(b, "tusc_active_uploads", "Requests currently writing an upload body.",
         (double)GET(m.active_uploads));
  counter1(b, "tusc_lock_waits_total", "Requests that had to wait for an upload's lock.",
           GET(m.lock_waits));
  counter1(b, "tusc_errors_unrecorded_total",
           "Errors not in tusd_errors_total because its label table was full.",
           GET(m.errors_unrecorded));
  gauge1(b, "tusc_hook_queue_depth", "Non-blocking hook invocations waiting or running.",
         (double)GET(m.hook_queue));
  family(b, "tusc_hook_duration_seconds", "histogram",
         "Time from invoking a hook to its answer, per hook type.");
  for (int ev = 0; ev < TUSC_METRICS_HOOK_TYPES; ev++)
    histogram(b, "tusc_hook_duration_seconds", "hooktype", hook_labels[ev], &m.hook_durations[ev]);
}

int tusc_metrics_render(char **out, size_t *len) {
  struct buf b = {.data = malloc(16384), .len = 0, .cap = 16384, .failed = false};
  if (b.data == NULL)
    return TUSC_ENOMEM;
  b.data[0] = '\0';
  render_tusd(&b);
  render_tusc(&b);
  render_process(&b);
  if (b.failed) {
    free(b.data);
    return TUSC_ENOMEM;
  }
  *out = b.data;
  *len = b.len;
  return 0;
}

/*
 * server — process wiring. The main thread owns a small loop of its own for signals
 * and for hearing from workers; each worker thread owns a loop with one http server
 * and one tus worker. Cross-thread signalling is only uv_async_send (stop requests
 * to workers, "finished" to the main loop); everything else is read-only after
 * start-up.
 *
 * Stop: SIGTERM/SIGINT → every worker stops accepting and interrupts in-flight
 * requests (the tus handler saves their offset and answers 503) → workers leave
 * their loops → the main thread joins them and frees everything. If that takes
 * longer than -shutdown-timeout the process exits with 1 without waiting further
 * (threads still run then, so nothing can be freed safely).
 */
#include "server.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <uv.h>

#include "auth/auth.h"
#include "common/error.h"
#include "common/log.h"
#include "hooks/hooks.h"
#include "http/http.h"
#include "http/redirect.h"
#include "lock/local.h"
#include "lock/redis.h"
#include "http/metrics_endpoint.h"
#include "metrics/metrics.h"
#include "net/connlimit.h"
#include "net/listener.h"
#include "net/tls.h"
#include "store/s3.h"
#include "store/store.h"
#include "sys/privileges.h"
#include "tus/expire.h"
#include "tus/handler.h"

#define MAX_WORKERS 256
/* Thread-pool size when UV_THREADPOOL_SIZE is not set (see size_thread_pool). */
#define TUSC_POOL_THREADS_PER_CORE 4
#define TUSC_POOL_THREADS_MIN 8
#define TUSC_POOL_THREADS_MAX 64
#define MAX_RELOAD_HOOKS 8

struct server;

struct worker {
  struct server *server;
  int fd; /* listening socket; the http server takes it over */
  uv_thread_t thread;
  bool thread_started;
  uv_loop_t loop;
  uv_async_t stop_async;
  tusc_http_server_t *http;
  int redirect_fd; /* -1 without -http-redirect-port */
  tusc_http_server_t *redirect_http;
  tusc_tus_worker_t *tus_worker;
  tusc_hooks_worker_t *hooks_worker; /* NULL without hooks */
  bool store_attached;
  int start_rc;
  atomic_bool finished;
};

struct server {
  const tusc_config_t *cfg;
  tusc_store_t *store;
  tusc_lock_t *lock; /* upload locks: the local lock (on the file store's lock files), or Redis */
  bool store_on_main; /* the main loop is attached to the store (tusc_store_attach_loop) */
  tusc_tus_t *tus;
  tusc_expire_t *expire; /* NULL unless -expire-after */
  tusc_hooks_t *hooks;
  tusc_metrics_hook_source_t hook_source; /* hooks' counters, as metrics renders them */
  tusc_auth_t *auth;                      /* -auth-*, -allowed-hosts, -trusted-proxies */
  tusc_connlimit_t *connlimit;            /* -max-connections, -max-connections-per-ip */
  tusc_metrics_server_t *metrics;         /* -metrics-listen */
  tusc_listeners_t listeners;
  bool listeners_open;
  uv_loop_t loop; /* main thread */
  bool loop_open;
  uv_signal_t sigterm, sigint, sighup;
  tusc_tls_t *tls;           /* NULL: plain HTTP */
  tusc_redirect_t *redirect; /* -http-redirect-port */
  tusc_listeners_t redirect_listeners;
  bool redirect_listeners_open;
  /* Run in order on SIGHUP: certificate, then whatever else reads files (credentials).
   * Each returns 0, or a negative code and the reason, keeping its old state. */
  struct reload_hook {
    const char *what;
    int (*fn)(void *arg, char *err, size_t errlen);
    void *arg;
  } reload_hooks[MAX_RELOAD_HOOKS];
  size_t reload_hook_count;
  uv_async_t worker_done;
  uv_timer_t shutdown_timer;
  uv_sem_t started;
  struct worker *workers;
  size_t worker_count;
  bool stopping;
};

/* metrics counts per hook type by enum tusc_hook_event value and names them itself. */
_Static_assert(TUSC_HOOK_EVENT_COUNT == TUSC_METRICS_HOOK_TYPES && TUSC_HOOK_PRE_CREATE == 0 &&
                   TUSC_HOOK_POST_TERMINATE == TUSC_METRICS_HOOK_TYPES - 1,
               "enum tusc_hook_event and metrics' hook slots disagree");

static void hook_stats(const void *arg, tusc_metrics_hook_stats_t *out) {
  tusc_hooks_stats_t hs;
  tusc_hooks_stats(arg, &hs);
  memcpy(out->invocations, hs.invocations, sizeof(out->invocations));
  memcpy(out->errors, hs.errors, sizeof(out->errors));
  out->dropped = hs.dropped;
  out->busy = hs.busy;
  out->cancelled = hs.cancelled;
  out->running = hs.running;
  out->waiting = hs.waiting;
}

/* --- worker thread ----------------------------------------------------------------- */

/* Pending hooks are cancelled (their requests answer) rather than waited for. */
static void close_hooks_worker(struct worker *w) {
  if (w->hooks_worker == NULL)
    return;
  if (w->tus_worker != NULL)
    tusc_tus_worker_set_hooks(w->tus_worker, NULL);
  tusc_hooks_worker_close(w->hooks_worker);
  w->hooks_worker = NULL;
}

static void on_http_stopped(tusc_http_server_t *http, void *arg) {
  struct worker *w = arg;
  close_hooks_worker(w);
  if (http != NULL)
    tusc_http_server_free(http);
  w->http = NULL;
  if (w->tus_worker != NULL) {
    tusc_tus_worker_close(w->tus_worker);
    w->tus_worker = NULL;
  }
  tusc_lock_detach(w->server->lock, &w->loop); /* Redis: this loop's connections */
  if (w->store_attached) {
    /* The store's handles on this loop (S3: libcurl's) close before the loop ends. */
    tusc_store_detach_loop(w->server->store, &w->loop);
    w->store_attached = false;
  }
  if (!uv_is_closing((uv_handle_t *)&w->stop_async))
    uv_close((uv_handle_t *)&w->stop_async, NULL);
}

static void on_worker_stop(uv_async_t *async) {
  struct worker *w = async->data;
  close_hooks_worker(w);
  if (w->redirect_http != NULL) {
    tusc_http_server_free(w->redirect_http); /* frees itself once its connections close */
    w->redirect_http = NULL;
  }
  if (w->http != NULL)
    tusc_http_server_stop(w->http, true, on_http_stopped, w);
  else
    on_http_stopped(NULL, w);
}

static void close_any(uv_handle_t *handle, void *arg) {
  (void)arg;
  if (!uv_is_closing(handle))
    uv_close(handle, NULL);
}

static void worker_main(void *arg) {
  struct worker *w = arg;
  struct server *s = w->server;
  const tusc_config_t *cfg = s->cfg;
  int rc = uv_loop_init(&w->loop);
  if (rc != 0) {
    close(w->fd);
    w->fd = -1;
    w->start_rc = rc;
    atomic_store(&w->finished, true);
    uv_sem_post(&s->started);
    return;
  }
  uv_async_init(&w->loop, &w->stop_async, on_worker_stop);
  w->stop_async.data = w;
  rc = tusc_store_attach_loop(s->store, &w->loop);
  w->store_attached = rc == 0;
  if (rc == 0)
    rc = tusc_tus_worker_new(s->tus, &w->loop, &w->tus_worker);
  if (rc == 0 && tusc_hooks_active(s->hooks)) {
    tusc_hooks_worker_options_t hopts = {.queue_max = (size_t)cfg->hooks_queue_size};
    rc = tusc_hooks_worker_new(s->hooks, &w->loop, &hopts, &w->hooks_worker);
    if (rc == 0)
      tusc_tus_worker_set_hooks(w->tus_worker, w->hooks_worker);
  }
  if (rc == 0) {
    tusc_http_limits_t limits = {
        .max_header_size = (size_t)cfg->max_header_size,
        .max_header_count = (size_t)cfg->max_header_count,
        .network_timeout_ms = (uint64_t)cfg->network_timeout_ms,
        .header_timeout_ms = (uint64_t)cfg->header_timeout_ms,
        .connlimit = s->connlimit,
        .h2c = cfg->enable_h2c,
    };
    rc = tusc_http_server_new(&w->loop, w->fd, &limits, tusc_tus_http_handler(), w->tus_worker,
                              &w->http);
    w->fd = -1; /* taken over, even on failure */
    if (rc == 0 && s->tls != NULL)
      tusc_http_server_set_tls(w->http, s->tls);
    if (rc == 0 && w->redirect_fd >= 0) {
      rc = tusc_http_server_new(&w->loop, w->redirect_fd, &limits, tusc_redirect_http_handler(),
                                s->redirect, &w->redirect_http);
      w->redirect_fd = -1;
      if (rc != 0)
        w->redirect_http = NULL;
    }
  }
  if (w->redirect_fd >= 0) {
    close(w->redirect_fd);
    w->redirect_fd = -1;
  }
  w->start_rc = rc;
  uv_sem_post(&s->started);
  if (rc != 0) {
    if (w->http != NULL) {
      tusc_http_server_free(w->http);
      w->http = NULL;
    }
    on_http_stopped(NULL, w);
  }

  uv_run(&w->loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&w->loop) == UV_EBUSY) {
    /* Something outlived its owner's close; close it so the loop can go. */
    uv_walk(&w->loop, close_any, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
  }
  atomic_store(&w->finished, true);
  if (rc == 0)
    uv_async_send(&s->worker_done);
}

/* --- main thread ------------------------------------------------------------------- */

static void stop_workers(struct server *s) {
  for (size_t i = 0; i < s->worker_count; i++) {
    struct worker *w = &s->workers[i];
    if (w->thread_started && w->start_rc == 0)
      uv_async_send(&w->stop_async);
  }
}

static void close_main_handles(struct server *s) {
  tusc_expire_stop(s->expire);
  tusc_lock_detach(s->lock, &s->loop); /* the sweeper's */
  if (s->store_on_main) {
    tusc_store_detach_loop(s->store, &s->loop);
    s->store_on_main = false;
  }
  tusc_metrics_server_stop(s->metrics);
  s->metrics = NULL;
  uv_close((uv_handle_t *)&s->sigterm, NULL);
  uv_close((uv_handle_t *)&s->sigint, NULL);
  uv_close((uv_handle_t *)&s->sighup, NULL);
  uv_close((uv_handle_t *)&s->worker_done, NULL);
  uv_close((uv_handle_t *)&s->shutdown_timer, NULL);
}

static void on_worker_done(uv_async_t *async) {
  struct server *s = async->data;
  for (size_t i = 0; i < s->worker_count; i++)
    if (!atomic_load(&s->workers[i].finished))
      return;
  tusc_log_event(TUSC_LOG_INFO, "ServerStopped", NULL);
  close_main_handles(s);
}

static void on_shutdown_timeout(uv_timer_t *timer) {
  struct server *s = timer->data;
  tusc_log_event(TUSC_LOG_ERROR, "ShutdownTimeout", "timeout_ms",
                 s->cfg->shutdown_timeout_ms > 0 ? "exceeded" : "0", NULL);
  fflush(stdout);
  /* Workers still run: freeing now would race them, and exit handlers (leak checks)
   * would report what they hold. */
  _exit(1);
}

static void on_signal(uv_signal_t *sig, int signum) {
  struct server *s = sig->data;
  if (s->stopping) {
    tusc_log_msg(TUSC_LOG_WARN, "signal %d again while stopping; still waiting", signum);
    return;
  }
  s->stopping = true;
  tusc_log_event(TUSC_LOG_INFO, "ServerStopping", "signal", signum == SIGINT ? "SIGINT" : "SIGTERM",
                 NULL);
  stop_workers(s);
  int64_t ms = s->cfg->shutdown_timeout_ms;
  uv_timer_start(&s->shutdown_timer, on_shutdown_timeout, ms > 0 ? (uint64_t)ms : 0, 0);
}

static void server_add_reload_hook(struct server *s, const char *what,
                                   int (*fn)(void *arg, char *err, size_t errlen), void *arg) {
  if (s->reload_hook_count == MAX_RELOAD_HOOKS) {
    tusc_log_msg(TUSC_LOG_ERROR, "too many reload hooks; %s is not reloaded on SIGHUP", what);
    return;
  }
  s->reload_hooks[s->reload_hook_count++] = (struct reload_hook){what, fn, arg};
}

static int reload_tls(void *arg, char *err, size_t errlen) {
  tusc_tls_t *tls = arg;
  int rc = tusc_tls_reload(tls, err, errlen);
  if (rc == 0) {
    char serial[128];
    tusc_tls_serial(tls, serial, sizeof(serial));
    tusc_log_event(TUSC_LOG_INFO, "TLSCertificateLoaded", "serial", serial, NULL);
  }
  return rc;
}

static int reload_auth(void *arg, char *err, size_t errlen) {
  int rc = tusc_auth_reload(arg);
  if (rc != 0)
    snprintf(err, errlen, "%s (details logged above)", tusc_strerror(rc));
  return rc;
}

/* SIGHUP: reload files; connections stay open (each keeps what it started with). */
static void on_sighup(uv_signal_t *sig, int signum) {
  (void)signum;
  struct server *s = sig->data;
  if (s->stopping)
    return;
  tusc_log_event(TUSC_LOG_INFO, "ReloadRequested", "signal", "SIGHUP", NULL);
  for (size_t i = 0; i < s->reload_hook_count; i++) {
    char err[1024] = "";
    struct reload_hook *h = &s->reload_hooks[i];
    if (h->fn(h->arg, err, sizeof(err)) != 0)
      tusc_log_event(TUSC_LOG_ERROR, "ReloadFailed", "what", h->what, "reason", err, "kept",
                     "previous", NULL);
    else
      tusc_log_event(TUSC_LOG_INFO, "Reloaded", "what", h->what, NULL);
  }
}

static int write_port_file(const char *path, int port) {
  char tmp[4096];
  int n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  if (n < 0 || (size_t)n >= sizeof(tmp))
    return -ENAMETOOLONG;
  FILE *f = fopen(tmp, "we");
  if (f == NULL)
    return -errno;
  fprintf(f, "%d\n", port);
  if (fclose(f) != 0 || rename(tmp, path) != 0) {
    int rc = -errno;
    unlink(tmp);
    return rc;
  }
  return 0;
}

static void print_listening(const struct server *s) {
  const tusc_config_t *cfg = s->cfg;
  const char *host = cfg->host && cfg->host[0] ? cfg->host : "0.0.0.0";
  char addr[512];
  if (s->listeners.is_unix)
    snprintf(addr, sizeof(addr), "unix:%s", cfg->unix_sock);
  else if (strchr(host, ':') != NULL && host[0] != '[')
    snprintf(addr, sizeof(addr), "[%s]:%d", host, s->listeners.port);
  else
    snprintf(addr, sizeof(addr), "%s:%d", host, s->listeners.port);
  tusc_log_msg(TUSC_LOG_INFO, "Using %s as address to listen.", addr);
  tusc_log_msg(TUSC_LOG_INFO, "Using %s as the base path.", cfg->base_path);
  tusc_log_msg(TUSC_LOG_INFO, "You can now upload files to: %s://%s%s", s->tls ? "https" : "http",
               addr, cfg->base_path);
  if (s->redirect_listeners_open)
    tusc_log_msg(TUSC_LOG_INFO, "Redirecting plain HTTP on port %d to https.",
                 s->redirect_listeners.port);
  fprintf(stdout, "tusc: listening on %s\n", addr);
  fflush(stdout);
}

static int open_file_store(const tusc_config_t *cfg, tusc_store_t **out) {
  tusc_file_store_options_t store_opts = {
      .dir = cfg->upload_dir,
      .dir_perms = cfg->dir_perms,
      .file_perms = cfg->file_perms,
      .fsync = cfg->fsync == TUSC_FSYNC_ALWAYS,
      .allow_absolute_path = cfg->hooks_allow_absolute_path,
  };
  int rc = tusc_file_store_new(&store_opts, out);
  if (rc != 0) {
    tusc_log_msg(TUSC_LOG_ERROR, "cannot open upload directory %s: %s", cfg->upload_dir,
                 tusc_strerror(rc));
    return rc;
  }
  tusc_log_msg(TUSC_LOG_INFO, "Using %s as directory for storage.", cfg->upload_dir);
  return 0;
}

/* -s3-bucket: the S3 store. Credentials come from the environment or the shared
 * credentials file (read here, at start-up). */
static int open_s3_store(const tusc_config_t *cfg, tusc_store_t **out) {
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    tusc_log_msg(TUSC_LOG_ERROR, "cannot initialise libcurl for the S3 store");
    return TUSC_EINTERNAL;
  }
  const char *style = cfg->s3_addressing != NULL ? cfg->s3_addressing : "auto";
  tusc_s3_store_options_t opts = {
      .bucket = cfg->s3_bucket,
      .endpoint = cfg->s3_endpoint,
      .disable_ssl = cfg->s3_disable_ssl,
      /* tusd forces path-style URLs with a custom endpoint (MinIO, Ceph) and uses
       * virtual-host URLs on AWS. */
      .path_style =
          strcmp(style, "path") == 0 || (strcmp(style, "auto") == 0 && cfg->s3_endpoint != NULL),
      .prefix = cfg->s3_object_prefix,
      .part_size = cfg->s3_part_size,
      .min_part_size = cfg->s3_min_part_size,
      .max_size = cfg->max_size,
      .max_buffer_memory = cfg->s3_max_buffer_memory,
      .concurrent_part_uploads = cfg->s3_concurrent_part_uploads,
  };
  const char *why = NULL;
  int rc = tusc_s3_store_new(&opts, out, &why);
  if (rc != 0) {
    tusc_log_msg(TUSC_LOG_ERROR, "cannot use S3 bucket %s: %s", cfg->s3_bucket,
                 why != NULL ? why : tusc_strerror(rc));
    return rc;
  }
  if (cfg->s3_endpoint != NULL)
    tusc_log_msg(TUSC_LOG_INFO, "Using '%s/%s' as S3 endpoint and bucket for storage.",
                 cfg->s3_endpoint, cfg->s3_bucket);
  else
    tusc_log_msg(TUSC_LOG_INFO, "Using 's3://%s' as S3 bucket for storage.", cfg->s3_bucket);
  tusc_log_msg(TUSC_LOG_INFO, "S3 parts of %lld bytes; %lld bytes of part buffers.",
               (long long)tusc_s3_store_part_size(*out), (long long)cfg->s3_max_buffer_memory);
  return 0;
}

static void server_dispose(struct server *s) {
  if (s->workers != NULL) {
    for (size_t i = 0; i < s->worker_count; i++) {
      if (s->workers[i].thread_started)
        uv_thread_join(&s->workers[i].thread);
    }
  }
  if (s->loop_open) {
    uv_run(&s->loop, UV_RUN_DEFAULT); /* close callbacks */
    uv_loop_close(&s->loop);
  }
  free(s->workers);
  if (s->listeners_open)
    tusc_listeners_close(&s->listeners);
  if (s->redirect_listeners_open)
    tusc_listeners_close(&s->redirect_listeners);
  tusc_redirect_free(s->redirect);
  tusc_tls_free(s->tls);
  tusc_tus_free(s->tus);
  tusc_expire_free(s->expire); /* its work ended in the uv_run above */
  tusc_auth_free(s->auth);
  tusc_connlimit_free(s->connlimit);
  tusc_metrics_set_hook_source(NULL);
  tusc_hooks_free(s->hooks);
  tusc_lock_free(s->lock); /* every request ended in the loops' runs above */
  if (s->store != NULL)
    tusc_store_free(s->store);
}

/* The local lock flocks the file store's per-upload lock files (tusd's layout), so
 * that several tusc processes on one directory exclude each other. */
static int file_lock_path(void *store, const char *id, char *out, size_t cap) {
  return tusc_file_store_lock_path(store, id, out, cap);
}

/* -redis-url: a lease in Redis, for several instances on one store; otherwise the
 * local lock. */
static int make_lock(struct server *s) {
  const tusc_config_t *cfg = s->cfg;
  /* The file store's lock files make several processes on one directory exclude each
   * other; the S3 store has none, so its local lock works within this process only
   * (several instances on one bucket need -redis-url). */
  if (cfg->redis_url == NULL)
    return tusc_lock_local_new(cfg->s3_bucket != NULL ? NULL : file_lock_path,
                               cfg->s3_bucket != NULL ? NULL : s->store, cfg->file_perms,
                               &s->lock);
  tusc_lock_redis_options_t ropts = {.url = cfg->redis_url, .lease_ms = cfg->redis_lock_lease_ms};
  char err[512] = "";
  int rc = tusc_lock_redis_new(&ropts, &s->lock, err, sizeof(err));
  if (rc != 0)
    tusc_log_msg(TUSC_LOG_ERROR, "-redis-url: %s", err[0] ? err : tusc_strerror(rc));
  else
    tusc_log_msg(TUSC_LOG_INFO, "Using Redis for upload locks (lease %lldms).",
                 (long long)cfg->redis_lock_lease_ms);
  return rc;
}

/* libuv's thread pool serves every blocking job of every worker: fsyncs, creates,
 * info writes, password hashing, sweeps and concatenation copies. Its default of four
 * threads lets four slow fsyncs (a busy disk) hold up every other client, although
 * fsync waits on the disk, not the CPU. Size it from the cores: enough threads that
 * the disk queue, not the pool, sets the pace; CPU-heavy jobs (password checks) are
 * bounded by their own limits. An operator's UV_THREADPOOL_SIZE wins. Must run before
 * the first uv_queue_work, which is when libuv reads it. */
static void size_thread_pool(void) {
  const char *given = getenv("UV_THREADPOOL_SIZE");
  if (given != NULL && given[0] != '\0')
    return;
  unsigned n = uv_available_parallelism() * TUSC_POOL_THREADS_PER_CORE;
  if (n < TUSC_POOL_THREADS_MIN)
    n = TUSC_POOL_THREADS_MIN;
  if (n > TUSC_POOL_THREADS_MAX)
    n = TUSC_POOL_THREADS_MAX;
  char value[16];
  snprintf(value, sizeof(value), "%u", n);
  setenv("UV_THREADPOOL_SIZE", value, 1);
}

int tusc_server_run(const tusc_config_t *cfg) {
  tusc_log_setup(cfg->verbose ? TUSC_LOG_DEBUG : TUSC_LOG_INFO,
                 cfg->log_format != NULL && strcmp(cfg->log_format, "json") == 0 ? TUSC_LOG_JSON
                                                                                 : TUSC_LOG_TEXT);
  int exit_code;
  size_thread_pool();
  signal(SIGPIPE, SIG_IGN);
  /* Under a file-size limit (systemd LimitFSIZE, ulimit -f) a write past it must fail
   * with EFBIG for that upload, not kill the whole process. */
  signal(SIGXFSZ, SIG_IGN);

  struct server s;
  memset(&s, 0, sizeof(s));
  s.cfg = cfg;
  exit_code = 1;

  if (cfg->tls_certificate != NULL) {
    tusc_tls_options_t tls_opts = {
        .certificate = cfg->tls_certificate,
        .key = cfg->tls_key,
        .mode = cfg->tls_mode,
        .hsts_max_age = cfg->hsts ? cfg->hsts_max_age : -1,
        .h2 = true,
        .ktls = cfg->tls_ktls == NULL || strcmp(cfg->tls_ktls, "off") != 0,
        .on_ktls = tusc_metrics_tls_ktls,
    };
    char err[1024];
    if (tusc_tls_new(&tls_opts, &s.tls, err, sizeof(err)) != 0) {
      tusc_log_msg(TUSC_LOG_ERROR, "TLS: %s", err);
      return 2;
    }
    char serial[128];
    tusc_tls_serial(s.tls, serial, sizeof(serial));
    tusc_log_msg(TUSC_LOG_INFO, "Serving HTTPS (%s) with certificate %s, serial %s.",
                 cfg->tls_mode ? cfg->tls_mode : "tls12", cfg->tls_certificate, serial);
    server_add_reload_hook(&s, "tls-certificate", reload_tls, s.tls);
  }

  if (tusc_auth_new(cfg, &s.auth) != 0) {
    exit_code = 2;
    goto out;
  }
  if (cfg->auth_htpasswd != NULL || cfg->auth_jwt_key != NULL)
    server_add_reload_hook(&s, "credentials", reload_auth, s.auth);
  if ((cfg->max_connections > 0 || cfg->max_connections_per_ip > 0) &&
      tusc_connlimit_new((size_t)cfg->max_connections, (size_t)cfg->max_connections_per_ip,
                         &s.connlimit) != 0)
    goto out;

  tusc_metrics_init();

  int rc = cfg->s3_bucket != NULL ? open_s3_store(cfg, &s.store) : open_file_store(cfg, &s.store);
  if (rc != 0)
    goto out;
  if (cfg->max_size > 0)
    tusc_log_msg(TUSC_LOG_INFO, "Using %.2fMB as maximum size.",
                 (double)cfg->max_size / (1024.0 * 1024.0));
  else
    tusc_log_msg(TUSC_LOG_INFO, "Using 0.00MB as maximum size.");
  if ((rc = make_lock(&s)) != 0 ||
      (rc = tusc_tus_new(cfg, s.store, s.lock, &s.tus)) != 0) {
    tusc_log_msg(TUSC_LOG_ERROR, "cannot start the tus handler: %s", tusc_strerror(rc));
    goto out;
  }
  if ((rc = tusc_hooks_new(cfg, &s.hooks)) != 0) {
    tusc_log_msg(TUSC_LOG_ERROR, "cannot set up hooks: %s", tusc_strerror(rc));
    goto out;
  }
  tusc_hooks_set_store(s.hooks, s.store);
  tusc_tus_set_hooks(s.tus, s.hooks);
  if (cfg->expire_after_ms > 0) {
    if ((rc = tusc_expire_new(s.store, s.lock, cfg->expire_after_ms, &s.expire)) != 0) {
      tusc_log_msg(TUSC_LOG_ERROR, "cannot set up expiration: %s", tusc_strerror(rc));
      goto out;
    }
    tusc_tus_set_expire(s.tus, s.expire);
  }
  tusc_tus_set_auth(s.tus, s.auth);
  s.hook_source = (tusc_metrics_hook_source_t){.stats = hook_stats, .arg = s.hooks};
  tusc_metrics_set_hook_source(&s.hook_source);

  size_t workers = cfg->workers > 0 ? (size_t)cfg->workers : (size_t)uv_available_parallelism();
  if (workers == 0)
    workers = 1;
  if (workers > MAX_WORKERS)
    workers = MAX_WORKERS;
  rc = tusc_listeners_open(cfg->host, cfg->port, cfg->unix_sock, workers, &s.listeners);
  if (rc != 0) {
    tusc_log_msg(TUSC_LOG_ERROR, "cannot listen on %s:%d: %s",
                 cfg->unix_sock ? cfg->unix_sock : cfg->host, cfg->port, tusc_strerror(rc));
    goto out;
  }
  s.listeners_open = true;
  if (cfg->http_redirect_port != 0) {
    rc = tusc_listeners_open(cfg->host, cfg->http_redirect_port, NULL, workers,
                             &s.redirect_listeners);
    if (rc != 0) {
      tusc_log_msg(TUSC_LOG_ERROR, "cannot listen on %s:%d (-http-redirect-port): %s", cfg->host,
                   cfg->http_redirect_port, tusc_strerror(rc));
      goto out;
    }
    s.redirect_listeners_open = true;
    if ((rc = tusc_redirect_new(s.listeners.port, cfg->allowed_hosts, &s.redirect)) != 0)
      goto out;
  }
  if (cfg->run_user != NULL || cfg->run_group != NULL) {
    /* Every socket is bound and every key file read: root is no longer needed. */
    char err[1024];
    if (s.listeners.is_unix && geteuid() == 0 &&
        (rc = tusc_privileges_chown(s.listeners.unix_path, cfg->run_user, cfg->run_group, err,
                                    sizeof(err))) != 0) {
      tusc_log_msg(TUSC_LOG_ERROR, "%s", err);
      goto out;
    }
    if ((rc = tusc_privileges_drop(cfg->run_user, cfg->run_group, err, sizeof(err))) != 0) {
      tusc_log_msg(TUSC_LOG_ERROR, "cannot drop privileges: %s; refusing to run", err);
      goto out;
    }
    if (cfg->s3_bucket == NULL &&
        (rc = tusc_privileges_check_dir(cfg->upload_dir, err, sizeof(err))) != 0) {
      tusc_log_msg(TUSC_LOG_ERROR,
                   "upload directory unusable after switching to user %s group %s: %s "
                   "(chown the directory to that user)",
                   cfg->run_user ? cfg->run_user : "-", cfg->run_group ? cfg->run_group : "-", err);
      goto out;
    }
    tusc_log_msg(TUSC_LOG_INFO, "Running as uid %u gid %u.", (unsigned)getuid(),
                 (unsigned)getgid());
  }

  if ((rc = uv_loop_init(&s.loop)) != 0)
    goto out;
  s.loop_open = true;
  uv_signal_init(&s.loop, &s.sigterm);
  uv_signal_init(&s.loop, &s.sigint);
  uv_signal_init(&s.loop, &s.sighup);
  uv_async_init(&s.loop, &s.worker_done, on_worker_done);
  uv_timer_init(&s.loop, &s.shutdown_timer);
  s.sigterm.data = s.sigint.data = s.worker_done.data = s.shutdown_timer.data = &s;
  s.sighup.data = &s;
  uv_signal_start(&s.sighup, on_sighup, SIGHUP);
  uv_signal_start(&s.sigterm, on_signal, SIGTERM);
  uv_signal_start(&s.sigint, on_signal, SIGINT);
  if ((rc = tusc_store_attach_loop(s.store, &s.loop)) != 0) {
    tusc_log_msg(TUSC_LOG_ERROR, "cannot attach the store to the main loop: %s", tusc_strerror(rc));
    close_main_handles(&s);
    goto out;
  }
  s.store_on_main = true;
  if (s.expire != NULL)
    tusc_expire_set_hooks(s.expire, s.hooks);
  if (s.expire != NULL && (rc = tusc_expire_start(s.expire, &s.loop)) != 0)
    tusc_log_msg(TUSC_LOG_ERROR, "expiration: cannot start the sweeper: %s", tusc_strerror(rc));
  if (cfg->expose_metrics && cfg->metrics_listen != NULL) {
    tusc_http_limits_t mlimits = {
        .max_header_size = (size_t)cfg->max_header_size,
        .max_header_count = (size_t)cfg->max_header_count,
        .network_timeout_ms = (uint64_t)cfg->network_timeout_ms,
    };
    int mport = 0;
    rc = tusc_metrics_server_start(&s.loop, cfg->metrics_listen, cfg->metrics_path, &mlimits,
                                   &s.metrics, &mport);
    if (rc != 0) {
      tusc_log_msg(TUSC_LOG_ERROR, "cannot serve metrics on %s: %s", cfg->metrics_listen,
                   tusc_strerror(rc));
      close_main_handles(&s);
      goto out;
    }
    tusc_log_msg(TUSC_LOG_INFO, "Serving metrics at %s (port %d).", cfg->metrics_listen, mport);
    fprintf(stdout, "tusc: metrics on port %d\n", mport);
  }

  s.workers = calloc(workers, sizeof(*s.workers));
  if (s.workers == NULL || uv_sem_init(&s.started, 0) != 0) {
    close_main_handles(&s);
    goto out;
  }
  s.worker_count = workers;
  bool start_failed = false;
  for (size_t i = 0; i < workers; i++) {
    struct worker *w = &s.workers[i];
    w->server = &s;
    w->fd = s.listeners.fds[i];
    s.listeners.fds[i] = -1;
    w->redirect_fd = -1;
    if (s.redirect_listeners_open) {
      w->redirect_fd = s.redirect_listeners.fds[i];
      s.redirect_listeners.fds[i] = -1;
    }
    atomic_init(&w->finished, false);
    if (uv_thread_create(&w->thread, worker_main, w) != 0) {
      close(w->fd);
      if (w->redirect_fd >= 0)
        close(w->redirect_fd);
      start_failed = true;
      break;
    }
    w->thread_started = true;
    uv_sem_wait(&s.started);
    if (w->start_rc != 0) {
      tusc_log_msg(TUSC_LOG_ERROR, "worker %zu failed to start: %s", i, tusc_strerror(w->start_rc));
      start_failed = true;
      break;
    }
  }
  uv_sem_destroy(&s.started);
  if (start_failed) {
    stop_workers(&s);
    close_main_handles(&s);
    goto out;
  }
  tusc_log_event(TUSC_LOG_INFO, "ServerStarted", NULL);
  print_listening(&s);
  if (cfg->port_file != NULL && (rc = write_port_file(cfg->port_file, s.listeners.port)) != 0)
    tusc_log_msg(TUSC_LOG_WARN, "cannot write port file %s: %s", cfg->port_file, tusc_strerror(rc));

  uv_run(&s.loop, UV_RUN_DEFAULT);
  exit_code = 0;

out:
  server_dispose(&s);
  return exit_code;
}

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
#include <uv.h>

#include "common/error.h"
#include "common/log.h"
#include "http/http.h"
#include "lock/lock.h"
#include "net/listener.h"
#include "store/store.h"
#include "tus/handler.h"

#define MAX_WORKERS 256

struct server;

struct worker {
  struct server *server;
  int fd; /* listening socket; the http server takes it over */
  uv_thread_t thread;
  bool thread_started;
  uv_loop_t loop;
  uv_async_t stop_async;
  tusc_http_server_t *http;
  tusc_tus_worker_t *tus_worker;
  int start_rc;
  atomic_bool finished;
};

struct server {
  const tusc_config_t *cfg;
  tusc_store_t *store;
  tusc_lock_table_t *locks;
  tusc_tus_t *tus;
  tusc_listeners_t listeners;
  bool listeners_open;
  uv_loop_t loop; /* main thread */
  bool loop_open;
  uv_signal_t sigterm, sigint;
  uv_async_t worker_done;
  uv_timer_t shutdown_timer;
  uv_sem_t started;
  struct worker *workers;
  size_t worker_count;
  bool stopping;
};

/* --- worker thread ----------------------------------------------------------------- */

static void on_http_stopped(tusc_http_server_t *http, void *arg) {
  struct worker *w = arg;
  if (http != NULL)
    tusc_http_server_free(http);
  w->http = NULL;
  if (w->tus_worker != NULL) {
    tusc_tus_worker_close(w->tus_worker);
    w->tus_worker = NULL;
  }
  if (!uv_is_closing((uv_handle_t *)&w->stop_async))
    uv_close((uv_handle_t *)&w->stop_async, NULL);
}

static void on_worker_stop(uv_async_t *async) {
  struct worker *w = async->data;
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
  rc = tusc_tus_worker_new(s->tus, &w->loop, &w->tus_worker);
  if (rc == 0) {
    tusc_http_limits_t limits = {
        .max_header_size = (size_t)cfg->max_header_size,
        .max_header_count = (size_t)cfg->max_header_count,
        .network_timeout_ms = (uint64_t)cfg->network_timeout_ms,
    };
    rc = tusc_http_server_new(&w->loop, w->fd, &limits, tusc_tus_http_handler(), w->tus_worker,
                              &w->http);
    w->fd = -1; /* taken over, even on failure */
  }
  w->start_rc = rc;
  uv_sem_post(&s->started);
  if (rc != 0)
    on_http_stopped(NULL, w);

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
  uv_close((uv_handle_t *)&s->sigterm, NULL);
  uv_close((uv_handle_t *)&s->sigint, NULL);
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
  tusc_log_msg(TUSC_LOG_INFO, "You can now upload files to: http://%s%s", addr, cfg->base_path);
  fprintf(stdout, "tusc: listening on %s\n", addr);
  fflush(stdout);
}

static int refuse_unbuilt(const tusc_config_t *cfg) {
  if (cfg->tls_certificate != NULL || cfg->tls_key != NULL) {
    tusc_log_msg(TUSC_LOG_ERROR, "TLS (-tls-certificate, -tls-key) is not available in this "
                                 "build yet; terminate TLS in a proxy in front of tusc");
    return 2;
  }
  if (cfg->s3_bucket != NULL || cfg->s3_endpoint != NULL || cfg->s3_object_prefix != NULL) {
    tusc_log_msg(TUSC_LOG_ERROR, "the S3 store (-s3-*) is not available in this build yet");
    return 2;
  }
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
  tusc_tus_free(s->tus);
  if (s->locks != NULL)
    tusc_lock_table_free(s->locks);
  if (s->store != NULL)
    s->store->ops->free(s->store);
}

int tusc_server_run(const tusc_config_t *cfg) {
  tusc_log_setup(cfg->verbose ? TUSC_LOG_DEBUG : TUSC_LOG_INFO,
                 cfg->log_format != NULL && strcmp(cfg->log_format, "json") == 0 ? TUSC_LOG_JSON
                                                                                 : TUSC_LOG_TEXT);
  int exit_code = refuse_unbuilt(cfg);
  if (exit_code != 0)
    return exit_code;
  signal(SIGPIPE, SIG_IGN);

  struct server s;
  memset(&s, 0, sizeof(s));
  s.cfg = cfg;
  exit_code = 1;

  if (cfg->hooks_dir != NULL || cfg->hooks_http != NULL)
    tusc_log_msg(TUSC_LOG_WARN, "hooks are accepted but not run yet (hooks_dir=%s hooks_http=%s)",
                 cfg->hooks_dir ? cfg->hooks_dir : "", cfg->hooks_http ? cfg->hooks_http : "");

  tusc_file_store_options_t store_opts = {
      .dir = cfg->upload_dir,
      .dir_perms = cfg->dir_perms,
      .file_perms = cfg->file_perms,
      .fsync = cfg->fsync == TUSC_FSYNC_ALWAYS,
  };
  int rc = tusc_file_store_new(&store_opts, &s.store);
  if (rc != 0) {
    tusc_log_msg(TUSC_LOG_ERROR, "cannot open upload directory %s: %s", cfg->upload_dir,
                 tusc_strerror(rc));
    goto out;
  }
  tusc_log_msg(TUSC_LOG_INFO, "Using %s as directory for storage.", cfg->upload_dir);
  if (cfg->max_size > 0)
    tusc_log_msg(TUSC_LOG_INFO, "Using %.2fMB as maximum size.",
                 (double)cfg->max_size / (1024.0 * 1024.0));
  else
    tusc_log_msg(TUSC_LOG_INFO, "Using 0.00MB as maximum size.");
  if ((rc = tusc_lock_table_new(&s.locks)) != 0 ||
      (rc = tusc_tus_new(cfg, s.store, s.locks, &s.tus)) != 0) {
    tusc_log_msg(TUSC_LOG_ERROR, "cannot start the tus handler: %s", tusc_strerror(rc));
    goto out;
  }

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

  if ((rc = uv_loop_init(&s.loop)) != 0)
    goto out;
  s.loop_open = true;
  uv_signal_init(&s.loop, &s.sigterm);
  uv_signal_init(&s.loop, &s.sigint);
  uv_async_init(&s.loop, &s.worker_done, on_worker_done);
  uv_timer_init(&s.loop, &s.shutdown_timer);
  s.sigterm.data = s.sigint.data = s.worker_done.data = s.shutdown_timer.data = &s;
  uv_signal_start(&s.sigterm, on_signal, SIGTERM);
  uv_signal_start(&s.sigint, on_signal, SIGINT);

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
    atomic_init(&w->finished, false);
    if (uv_thread_create(&w->thread, worker_main, w) != 0) {
      close(w->fd);
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

/*
 * hook_file — see hook_file.h. One `struct run` per child with five handles
 * (process, stdin/stdout/stderr pipes, timer). Its life:
 *
 *   spawn ─► write JSON to stdin, close stdin ─► read stdout/stderr ─► exit + EOFs
 *         └─ timeout / output cap / cancel: SIGKILL the group, stop reading, wait exit
 *
 * The run ends when the child has exited (so it is always reaped) and both output
 * pipes are at EOF or closed. Then all handles are closed, and done() is called from
 * the last close callback — which is also what makes done() asynchronous when
 * uv_spawn itself failed.
 */
#include "hooks/hook_file.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "hooks/hook_json.h"

extern char **environ;

#define ERRLINE_MAX 1024
#define READ_CHUNK 16384

struct file_sender;

struct run {
  struct file_sender *fs;
  tusc_hook_call_t *call;
  uv_process_t proc;
  uv_pipe_t in, out, err;
  uv_timer_t timer;
  uv_write_t write_req;
  int open_handles;
  int pid;
  bool spawned, exited, out_done, err_done, ending, finished;
  int status; /* the outcome decided so far; 0 until something fails */
  int64_t exit_status;
  int term_signal;
  char *output;
  size_t output_len;
  size_t output_cap;
  char errline[ERRLINE_MAX];
  size_t errline_len;
  char out_buf[READ_CHUNK];
  char err_buf[READ_CHUNK];
  struct run *prev, *next;
};

struct file_sender {
  tusc_hook_sender_t base;
  uv_loop_t *loop;
  char *dir;
  int64_t timeout_ms;
  struct run *runs;
  bool closing;
  void (*closed_cb)(void *arg);
  void *closed_arg;
};

static void maybe_closed(struct file_sender *fs) {
  if (fs->closing && !fs->runs) {
    void (*cb)(void *) = fs->closed_cb;
    void *arg = fs->closed_arg;
    free(fs->dir);
    free(fs);
    cb(arg);
  }
}

static void set_error(struct run *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_error(struct run *r, int status, const char *fmt, ...) {
  if (r->status < 0)
    return; /* keep the first reason */
  r->status = status;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->call->resp.error, sizeof(r->call->resp.error), fmt, ap);
  va_end(ap);
}

static const char *hook_name(const struct run *r) {
  return tusc_hook_event_name(r->call->event);
}

static void on_handle_closed(uv_handle_t *h) {
  struct run *r = h->data;
  if (--r->open_handles > 0)
    return;
  struct file_sender *fs = r->fs;
  if (r->prev)
    r->prev->next = r->next;
  else
    fs->runs = r->next;
  if (r->next)
    r->next->prev = r->prev;
  tusc_hook_call_t *call = r->call;
  int status = r->status;
  free(r->output);
  free(r);
  call->done(call, status);
  maybe_closed(fs);
}

static void close_handle(uv_handle_t *h) {
  if (!uv_is_closing(h))
    uv_close(h, on_handle_closed);
}

static void flush_errline(struct run *r) {
  if (r->errline_len == 0)
    return;
  tusc_log_msg(TUSC_LOG_WARN, "hook %s (upload %s) stderr: %.*s", hook_name(r),
               r->call->id[0] ? r->call->id : "-", (int)r->errline_len, r->errline);
  r->errline_len = 0;
}

/* Called whenever something changes; ends the run once nothing is outstanding. */
static void check_end(struct run *r) {
  if (r->finished || !r->exited || !r->out_done || !r->err_done)
    return;
  r->finished = true;
  flush_errline(r);
  if (r->status == 0) {
    if (r->term_signal) {
      set_error(r, TUSC_EINTERNAL, "hook %s was killed by signal %d", hook_name(r), r->term_signal);
    } else if (r->exit_status != 0) {
      set_error(r, TUSC_EINTERNAL, "hook %s exited with status %" PRId64, hook_name(r),
                r->exit_status);
    } else {
      int rc = tusc_hook_json_response(r->output ? r->output : "", r->output_len, &r->call->resp);
      if (rc < 0)
        r->status = rc;
    }
  }
  close_handle((uv_handle_t *)&r->proc);
  close_handle((uv_handle_t *)&r->in);
  close_handle((uv_handle_t *)&r->out);
  close_handle((uv_handle_t *)&r->err);
  close_handle((uv_handle_t *)&r->timer);
}

/* Ends the run early: kill the whole group, stop waiting for output. */
static void abort_run(struct run *r) {
  if (r->ending)
    return;
  r->ending = true;
  if (r->spawned) {
    /* The group, not just the child: a script's own children hold our pipes too,
     * possibly after the script itself has exited. */
    if (kill(-r->pid, SIGKILL) < 0 && !r->exited)
      uv_process_kill(&r->proc, SIGKILL);
  }
  if (!r->out_done) {
    r->out_done = true;
    close_handle((uv_handle_t *)&r->out);
  }
  if (!r->err_done) {
    r->err_done = true;
    close_handle((uv_handle_t *)&r->err);
  }
  check_end(r);
}

static void on_child_exit(uv_process_t *proc, int64_t exit_status, int term_signal) {
  struct run *r = proc->data;
  r->exited = true;
  r->exit_status = exit_status;
  r->term_signal = term_signal;
  /* The timer keeps running: output pipes may stay open after the exit. */
  check_end(r);
}

static void on_timeout(uv_timer_t *t) {
  struct run *r = t->data;
  set_error(r, UV_ETIMEDOUT, "hook %s timed out after %" PRId64 " ms", hook_name(r),
            r->fs->timeout_ms);
  abort_run(r);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  struct run *r = h->data;
  if (h == (uv_handle_t *)&r->out)
    *buf = uv_buf_init(r->out_buf, sizeof(r->out_buf));
  else
    *buf = uv_buf_init(r->err_buf, sizeof(r->err_buf));
}

static void on_stdout(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  struct run *r = s->data;
  if (n == 0 || r->out_done)
    return;
  if (n < 0) {
    if (n != UV_EOF)
      set_error(r, (int)n, "reading the output of hook %s: %s", hook_name(r),
                tusc_strerror((int)n));
    r->out_done = true;
    close_handle((uv_handle_t *)s);
    check_end(r);
    return;
  }
  if (r->output_len + (size_t)n > TUSC_HOOK_FILE_OUTPUT_MAX) {
    set_error(r, TUSC_EINTERNAL, "hook %s wrote more than %d bytes to stdout", hook_name(r),
              TUSC_HOOK_FILE_OUTPUT_MAX);
    abort_run(r);
    return;
  }
  if (r->output_len + (size_t)n + 1 > r->output_cap) {
    size_t cap = r->output_cap ? r->output_cap : 4096;
    while (cap < r->output_len + (size_t)n + 1)
      cap *= 2;
    char *p = realloc(r->output, cap);
    if (!p) {
      set_error(r, TUSC_ENOMEM, "out of memory reading hook %s", hook_name(r));
      abort_run(r);
      return;
    }
    r->output = p;
    r->output_cap = cap;
  }
  memcpy(r->output + r->output_len, buf->base, (size_t)n);
  r->output_len += (size_t)n;
  r->output[r->output_len] = '\0';
}

static void on_stderr(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  struct run *r = s->data;
  if (n == 0 || r->err_done)
    return;
  if (n < 0) {
    r->err_done = true;
    close_handle((uv_handle_t *)s);
    check_end(r);
    return;
  }
  for (ssize_t i = 0; i < n; i++) {
    char c = buf->base[i];
    if (c == '\n') {
      flush_errline(r);
      continue;
    }
    if (r->errline_len == sizeof(r->errline))
      flush_errline(r);
    r->errline[r->errline_len++] = c;
  }
}

static void on_stdin_written(uv_write_t *req, int status) {
  struct run *r = req->data;
  /* EPIPE: the hook did not read its input, which it is free to do. */
  (void)status;
  close_handle((uv_handle_t *)&r->in);
}

/* environ without TUS_ID/TUS_SIZE/TUS_OFFSET, plus ours. */
static char **build_env(char *const vars[3]) {
  size_t n = 0;
  while (environ && environ[n])
    n++;
  char **env = calloc(n + 4, sizeof(*env));
  if (!env)
    return NULL;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (strncmp(environ[i], "TUS_ID=", 7) == 0 || strncmp(environ[i], "TUS_SIZE=", 9) == 0 ||
        strncmp(environ[i], "TUS_OFFSET=", 11) == 0)
      continue;
    env[k++] = environ[i];
  }
  for (int i = 0; i < 3; i++)
    env[k++] = vars[i];
  env[k] = NULL;
  return env;
}

static void spawn_failed(struct run *r, const char *path, int rc) {
  struct stat st;
  if (rc == UV_ENOENT && stat(path, &st) < 0 && errno == ENOENT) {
    /* No such hook: nothing to do, empty answer. */
  } else if (rc == UV_EACCES) {
    set_error(r, TUSC_EINTERNAL, "hook %s is not executable", path);
  } else {
    set_error(r, TUSC_EINTERNAL, "cannot run hook %s: %s", path, tusc_strerror(rc));
  }
  r->exited = r->out_done = r->err_done = true;
  check_end(r);
}

static int file_start(tusc_hook_sender_t *sender, tusc_hook_call_t *call) {
  struct file_sender *fs = (struct file_sender *)sender;
  if (fs->closing)
    return UV_ECANCELED;
  char path[TUSC_PATH_MAX];
  int plen = snprintf(path, sizeof(path), "%s/%s", fs->dir, tusc_hook_event_name(call->event));
  if (plen < 0 || (size_t)plen >= sizeof(path))
    return UV_ENAMETOOLONG;

  struct run *r = calloc(1, sizeof(*r));
  if (!r)
    return TUSC_ENOMEM;
  char var_id[8 + TUSC_ID_MAX + 1], var_size[40], var_offset[40];
  snprintf(var_id, sizeof(var_id), "TUS_ID=%s", call->id);
  snprintf(var_size, sizeof(var_size), "TUS_SIZE=%" PRId64, call->size);
  snprintf(var_offset, sizeof(var_offset), "TUS_OFFSET=%" PRId64, call->offset);
  char *vars[3] = {var_id, var_size, var_offset};
  char **env = build_env(vars);
  if (!env) {
    free(r);
    return TUSC_ENOMEM;
  }

  r->fs = fs;
  r->call = call;
  uv_pipe_init(fs->loop, &r->in, 0);
  uv_pipe_init(fs->loop, &r->out, 0);
  uv_pipe_init(fs->loop, &r->err, 0);
  uv_timer_init(fs->loop, &r->timer);
  r->in.data = r->out.data = r->err.data = r->timer.data = r->proc.data = r;
  r->write_req.data = r;
  r->open_handles = 5;
  r->next = fs->runs;
  if (fs->runs)
    fs->runs->prev = r;
  fs->runs = r;

  char *args[] = {path, NULL};
  uv_stdio_container_t stdio[3] = {
      {.flags = UV_CREATE_PIPE | UV_READABLE_PIPE, .data.stream = (uv_stream_t *)&r->in},
      {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&r->out},
      {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&r->err},
  };
  uv_process_options_t po = {
      .exit_cb = on_child_exit,
      .file = path,
      .args = args,
      .env = env,
      .cwd = fs->dir,
      .flags = UV_PROCESS_DETACHED,
      .stdio_count = 3,
      .stdio = stdio,
  };
  /* uv_spawn initialises proc even when it fails, so it is always closed later. */
  int rc = uv_spawn(fs->loop, &r->proc, &po);
  free(env);
  if (rc < 0) {
    spawn_failed(r, path, rc);
    return 0;
  }
  r->spawned = true;
  r->pid = r->proc.pid;

  uv_buf_t b = uv_buf_init(call->json, (unsigned)call->json_len);
  if (uv_write(&r->write_req, (uv_stream_t *)&r->in, &b, 1, on_stdin_written) < 0)
    close_handle((uv_handle_t *)&r->in);
  if (uv_read_start((uv_stream_t *)&r->out, on_alloc, on_stdout) < 0) {
    r->out_done = true;
    close_handle((uv_handle_t *)&r->out);
  }
  if (uv_read_start((uv_stream_t *)&r->err, on_alloc, on_stderr) < 0) {
    r->err_done = true;
    close_handle((uv_handle_t *)&r->err);
  }
  if (fs->timeout_ms > 0) {
    /* From now, not from the loop's wake-up: the spawn (or a caller outside uv_run)
     * may have taken long on a loaded machine, and the hook is owed its full time. */
    uv_update_time(r->timer.loop);
    uv_timer_start(&r->timer, on_timeout, (uint64_t)fs->timeout_ms, 0);
  }
  return 0;
}

static void file_close(tusc_hook_sender_t *sender, void (*closed_cb)(void *arg), void *arg) {
  struct file_sender *fs = (struct file_sender *)sender;
  fs->closing = true;
  fs->closed_cb = closed_cb;
  fs->closed_arg = arg;
  if (!fs->runs) {
    maybe_closed(fs);
    return;
  }
  for (struct run *r = fs->runs; r; r = r->next) {
    if (r->finished)
      continue;
    set_error(r, UV_ECANCELED, "hook %s cancelled: shutting down", hook_name(r));
    abort_run(r);
  }
}

static void file_cancel(tusc_hook_sender_t *sender, tusc_hook_call_t *call) {
  struct file_sender *fs = (struct file_sender *)sender;
  for (struct run *r = fs->runs; r; r = r->next) {
    if (r->call != call)
      continue;
    if (!r->finished) {
      set_error(r, UV_ECANCELED, "hook %s stopped: its request has gone", hook_name(r));
      abort_run(r);
    }
    return;
  }
}

static const tusc_hook_sender_ops_t file_ops = {
    .name = "file",
    .start = file_start,
    .close = file_close,
    .cancel = file_cancel,
};

int tusc_hook_file_sender_new(uv_loop_t *loop, const tusc_hook_file_options_t *opts,
                              tusc_hook_sender_t **out) {
  if (!opts->dir || opts->dir[0] != '/')
    return TUSC_EINVALID_ARGUMENT;
  struct file_sender *fs = calloc(1, sizeof(*fs));
  if (!fs)
    return TUSC_ENOMEM;
  fs->dir = strdup(opts->dir);
  if (!fs->dir) {
    free(fs);
    return TUSC_ENOMEM;
  }
  fs->base.ops = &file_ops;
  fs->loop = loop;
  fs->timeout_ms = opts->timeout_ms;
  *out = &fs->base;
  return 0;
}

/* Unit tests for file hooks (src/hooks/hook_file.c through the hooks.h runner): real
 * sh scripts in a temp directory, each test on its own uv loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "common/timeutil.h"
#include "hooks/hook_json.h"
#include "hooks/hooks.h"

struct fx {
  char dir[64];
  uv_loop_t loop;
  tusc_config_t cfg;
  tusc_hooks_t *hooks;
  tusc_hooks_worker_t *worker;
};

struct result {
  int calls;
  int status;
  tusc_hook_response_t resp;
};

static void on_done(int status, tusc_hook_response_t *resp, void *arg) {
  struct result *r = arg;
  r->calls++;
  r->status = status;
  r->resp = *resp; /* take everything over */
  tusc_hook_response_init(resp);
}

static int64_t fx_max_processes; /* -hooks-max-processes for the next fx_start */

static void fx_start(struct fx *f, const char *events, int64_t timeout_ms,
                     const tusc_hooks_worker_options_t *opts) {
  memset(f, 0, sizeof(*f));
  snprintf(f->dir, sizeof(f->dir), "/tmp/tusc-hooks-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  assert_int_equal(uv_loop_init(&f->loop), 0);
  f->cfg.hooks_dir = f->dir;
  f->cfg.hooks_enabled_events = (char *)events;
  f->cfg.hooks_timeout_ms = timeout_ms;
  f->cfg.hooks_http_retry = 3;
  f->cfg.progress_hooks_interval_ms = 1000;
  f->cfg.hooks_max_processes = fx_max_processes;
  assert_int_equal(tusc_hooks_new(&f->cfg, &f->hooks), 0);
  assert_true(tusc_hooks_active(f->hooks));
  assert_int_equal(tusc_hooks_worker_new(f->hooks, &f->loop, opts, &f->worker), 0);
}

static void remove_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (!d)
    return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
    unlink(p);
  }
  closedir(d);
  rmdir(dir);
}

static void fx_stop(struct fx *f) {
  tusc_hooks_worker_close(f->worker);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  tusc_hooks_free(f->hooks);
  remove_tree(f->dir);
}

static void write_script(struct fx *f, const char *name, const char *body, mode_t mode) {
  char path[256];
  snprintf(path, sizeof(path), "%s/%s", f->dir, name);
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fprintf(fp, "#!/bin/sh\n%s\n", body);
  fclose(fp);
  assert_int_equal(chmod(path, mode), 0);
}

static char *read_file(struct fx *f, const char *name) {
  char path[256];
  snprintf(path, sizeof(path), "%s/%s", f->dir, name);
  FILE *fp = fopen(path, "r");
  if (!fp)
    return NULL;
  char *buf = calloc(1, 1 << 16);
  size_t n = fread(buf, 1, (1 << 16) - 1, fp);
  buf[n] = '\0';
  fclose(fp);
  return buf;
}

static bool exists(struct fx *f, const char *name) {
  char path[256];
  snprintf(path, sizeof(path), "%s/%s", f->dir, name);
  return access(path, F_OK) == 0;
}

static void sample_upload(tusc_upload_info_t *info) {
  tusc_upload_info_init(info);
  snprintf(info->id, sizeof(info->id), "abcd");
  info->size = 11;
  info->offset = 7;
  assert_int_equal(tusc_upload_info_set_path(&info->data_path, "/srv/ab/cd/abcd"), 0);
  assert_int_equal(tusc_upload_info_set_path(&info->info_path, "/srv/ab/cd/abcd.info"), 0);
  assert_int_equal(tusc_metadata_set(&info->metadata, "filename", "r\xc3\xa9sum\xc3\xa9.txt", 11),
                   0);
}

static const tusc_hook_header_t sample_headers[] = {
    {"upload-length", "11"}, {"Tus-Resumable", "1.0.0"}, {"Host", "example.com"}};
static const tusc_hook_http_request_t sample_req = {
    .method = "PATCH",
    .uri = "/files/abcd",
    .remote_ip = "10.0.0.1",
    .remote_port = 5555,
    .headers = sample_headers,
    .header_count = 3,
};

/* Invokes one hook and runs the loop until the runner is idle. */
static void run_hook(struct fx *f, enum tusc_hook_event ev, struct result *r) {
  tusc_upload_info_t info;
  sample_upload(&info);
  memset(r, 0, sizeof(*r));
  assert_int_equal(tusc_hooks_invoke(f->worker, ev, &info, &sample_req, on_done, r), 0);
  tusc_upload_info_dispose(&info); /* the runner copied what it needs */
  assert_int_equal(r->calls, 0);   /* never synchronously */
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(r->calls, 1);
}

static void test_response_echoed(void **state) {
  (void)state;
  struct fx f;
  fx_start(&f, "", 5000, NULL);
  write_script(&f, "pre-create",
               "cat >/dev/null\n"
               "echo '{\"RejectUpload\":true,\"HTTPResponse\":{\"StatusCode\":403,"
               "\"Body\":\"nope\"}}'",
               0755);
  struct result r;
  run_hook(&f, TUSC_HOOK_PRE_CREATE, &r);
  assert_int_equal(r.status, 0);
  assert_true(r.resp.reject_upload);
  assert_int_equal(r.resp.status_code, 403);
  assert_string_equal(r.resp.body, "nope");
  tusc_hook_response_dispose(&r.resp);
  tusc_hooks_stats_t st;
  tusc_hooks_stats(f.hooks, &st);
  assert_int_equal(st.invocations[TUSC_HOOK_PRE_CREATE], 1);
  assert_int_equal(st.errors[TUSC_HOOK_PRE_CREATE], 0);
  fx_stop(&f);
}

static void test_stdin_env_cwd(void **state) {
  (void)state;
  struct fx f;
  fx_start(&f, "", 5000, NULL);
  /* Relative paths: the hook runs in the hooks directory. */
  write_script(&f, "post-finish",
               "cat > stdin.json\n"
               "printf '%s|%s|%s|%s' \"$TUS_ID\" \"$TUS_SIZE\" \"$TUS_OFFSET\" \"$HOME_MARK\" "
               "> env.txt\n"
               "echo 'a warning on stderr' >&2",
               0755);
  setenv("HOME_MARK", "inherited", 1);
  setenv("TUS_ID", "stale", 1); /* ours must win */
  struct result r;
  run_hook(&f, TUSC_HOOK_POST_FINISH, &r);
  unsetenv("TUS_ID");
  assert_int_equal(r.status, 0);
  tusc_hook_response_dispose(&r.resp);

  tusc_upload_info_t info;
  sample_upload(&info);
  char *want = NULL;
  size_t want_len = 0;
  assert_int_equal(
      tusc_hook_json_request(TUSC_HOOK_POST_FINISH, &info, NULL, 0, &sample_req, &want, &want_len),
      0);
  tusc_upload_info_dispose(&info);
  char *got = read_file(&f, "stdin.json");
  assert_non_null(got);
  assert_string_equal(got, want);
  /* The real wire bytes, not just our own builder agreeing with itself. */
  assert_non_null(strstr(got, "\"RemoteAddr\":\"10.0.0.1:5555\""));
  assert_non_null(strstr(got, "\"Upload-Length\":[\"11\"]"));
  free(got);
  free(want);
  char *env = read_file(&f, "env.txt");
  assert_non_null(env);
  assert_string_equal(env, "abcd|11|7|inherited");
  free(env);
  fx_stop(&f);
}

static void test_pre_create_env_has_empty_id(void **state) {
  (void)state;
  struct fx f;
  fx_start(&f, "", 5000, NULL);
  write_script(&f, "pre-create", "printf '[%s]' \"$TUS_ID\" > env.txt", 0755);
  struct result r;
  run_hook(&f, TUSC_HOOK_PRE_CREATE, &r);
  assert_int_equal(r.status, 0);
  char *env = read_file(&f, "env.txt");
  assert_non_null(env);
  assert_string_equal(env, "[]");
  free(env);
  fx_stop(&f);
}

static void test_exit_status(void **state) {
  (void)state;
  struct fx f;
  fx_start(&f, "", 5000, NULL);
  write_script(&f, "pre-terminate",
               "echo 'going to fail' >&2\necho '{\"RejectTermination\":true}'\n"
               "exit 1",
               0755);
  struct result r;
  run_hook(&f, TUSC_HOOK_PRE_TERMINATE, &r);
  assert_int_equal(r.status, TUSC_EINTERNAL);
  assert_non_null(strstr(r.resp.error, "exited with status 1"));
  assert_false(r.resp.reject_termination); /* a failed hook changes nothing */
  tusc_hook_response_dispose(&r.resp);
  tusc_hooks_stats_t st;
  tusc_hooks_stats(f.hooks, &st);
  assert_int_equal(st.errors[TUSC_HOOK_PRE_TERMINATE], 1);
  fx_stop(&f);
}

static void test_not_executable(void **state) {
  (void)state;
  struct fx f;
  fx_start(&f, "", 5000, NULL);
  write_script(&f, "pre-create", "echo '{}'", 0644);
  struct result r;
  run_hook(&f, TUSC_HOOK_PRE_CREATE, &r);
  assert_int_equal(r.status, TUSC_EINTERNAL);
  assert_non_null(strstr(r.resp.error, "pre-create"));
  assert_non_null(strstr(r.resp.error, f.dir));
  assert_non_null(strstr(r.resp.error, "not executable"));
  fx_stop(&f);
}

static void test_missing_is_noop(void **state) {
  (void)state;
  struct fx f;
  fx_start(&f, "", 5000, NULL);
  struct result r;
  run_hook(&f, TUSC_HOOK_PRE_CREATE, &r);
  assert_int_equal(r.status, 0);
  assert_false(r.resp.reject_upload);
  assert_null(r.resp.body);
  fx_stop(&f);
}

/* A process of group `pgid` that is not a zombie (zombies wait for a reaper we do
 * not control in a container). */
static bool group_alive(long pgid) {
  DIR *d = opendir("/proc");
  assert_non_null(d);
  bool alive = false;
  struct dirent *e;
  while (!alive && (e = readdir(d))) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9')
      continue;
    char path[300], buf[512];
    snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
    FILE *fp = fopen(path, "r");
    if (!fp)
      continue;
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    char *close_paren = strrchr(buf, ')');
    char state;
    long ppid, pgrp;
    if (close_paren && sscanf(close_paren + 1, " %c %ld %ld", &state, &ppid, &pgrp) == 3)
      alive = pgrp == pgid && state != 'Z';
  }
  closedir(d);
  return alive;
}

static void test_timeout_kills_group(void **state) {
  (void)state;
  struct fx f;
  fx_start(&f, "", 300, NULL);
  /* The child sleep also holds stdout: killing only sh would leave us waiting. */
  write_script(&f, "pre-finish", "echo $$ > pid.txt\nsleep 30\necho '{}'", 0755);
  uint64_t t0 = tusc_now_ms();
  struct result r;
  run_hook(&f, TUSC_HOOK_PRE_FINISH, &r);
  uint64_t took = tusc_now_ms() - t0;
  assert_int_equal(r.status, UV_ETIMEDOUT);
  assert_non_null(strstr(r.resp.error, "timed out"));
  assert_true(took >= 300);
  assert_true(took < 5000);
  /* No process of the hook's group survives. */
  char *pid = read_file(&f, "pid.txt");
  assert_non_null(pid);
  long pgid = strtol(pid, NULL, 10);
  free(pid);
  assert_true(pgid > 1);
  bool alive = true;
  for (int i = 0; i < 100 && alive; i++) {
    alive = group_alive(pgid);
    if (alive)
      usleep(20 * 1000);
  }
  assert_false(alive);
  fx_stop(&f);
}

static void test_background_child_holding_stdout(void **state) {
  (void)state;
  struct fx f;
  fx_start(&f, "", 300, NULL);
  write_script(&f, "pre-finish", "sleep 30 &\necho '{}'\nexit 0", 0755);
  uint64_t t0 = tusc_now_ms();
  struct result r;
  run_hook(&f, TUSC_HOOK_PRE_FINISH, &r);
  assert_int_equal(r.status, UV_ETIMEDOUT);
  assert_true(tusc_now_ms() - t0 < 5000);
  fx_stop(&f);
}

static void test_invalid_json(void **state) {
  (void)state;
  struct fx f;
  fx_start(&f, "", 5000, NULL);
  write_script(&f, "pre-create", "echo '{\"RejectUpload\": tru'", 0755);
  struct result r;
  run_hook(&f, TUSC_HOOK_PRE_CREATE, &r);
  assert_int_equal(r.status, TUSC_EINTERNAL);
  assert_non_null(strstr(r.resp.error, "not valid JSON"));
  assert_false(r.resp.reject_upload);
  fx_stop(&f);
}

static void test_output_cap(void **state) {
  (void)state;
  struct fx f;
  fx_start(&f, "", 5000, NULL);
  write_script(&f, "pre-create", "head -c 3000000 /dev/zero | tr '\\0' ' '", 0755);
  struct result r;
  run_hook(&f, TUSC_HOOK_PRE_CREATE, &r);
  assert_int_equal(r.status, TUSC_EINTERNAL);
  assert_non_null(strstr(r.resp.error, "more than"));
  fx_stop(&f);
}

static void test_disabled_event_not_run(void **state) {
  (void)state;
  struct fx f;
  fx_start(&f, NULL, 5000, NULL); /* tusd default: no pre-finish, no pre-terminate */
  assert_false(tusc_hooks_enabled(f.hooks, TUSC_HOOK_PRE_FINISH));
  assert_false(tusc_hooks_enabled(f.hooks, TUSC_HOOK_PRE_TERMINATE));
  assert_true(tusc_hooks_enabled(f.hooks, TUSC_HOOK_PRE_CREATE));
  assert_true(tusc_hooks_enabled(f.hooks, TUSC_HOOK_POST_RECEIVE));
  write_script(&f, "pre-finish", "touch ran\necho '{\"RejectUpload\":true}'", 0755);
  struct result r;
  run_hook(&f, TUSC_HOOK_PRE_FINISH, &r);
  assert_int_equal(r.status, 0);
  assert_false(r.resp.reject_upload);
  assert_false(exists(&f, "ran"));
  fx_stop(&f);
}

static void test_enabled_events_list(void **state) {
  (void)state;
  tusc_config_t cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.hooks_dir = "/tmp";
  cfg.hooks_enabled_events = " pre-finish ,post-terminate";
  tusc_hooks_t *h = NULL;
  assert_int_equal(tusc_hooks_new(&cfg, &h), 0);
  for (int i = 0; i < TUSC_HOOK_EVENT_COUNT; i++)
    assert_int_equal(tusc_hooks_enabled(h, (enum tusc_hook_event)i),
                     i == TUSC_HOOK_PRE_FINISH || i == TUSC_HOOK_POST_TERMINATE);
  tusc_hooks_free(h);
  cfg.hooks_enabled_events = "pre-create,bogus";
  h = NULL;
  assert_int_equal(tusc_hooks_new(&cfg, &h), TUSC_EINVALID_ARGUMENT);
  assert_null(h);
  cfg.hooks_dir = NULL;
  cfg.hooks_enabled_events = NULL;
  assert_int_equal(tusc_hooks_new(&cfg, &h), 0);
  assert_false(tusc_hooks_active(h));
  assert_false(tusc_hooks_enabled(h, TUSC_HOOK_PRE_CREATE));
  tusc_hooks_free(h);
}

static void test_queue_full(void **state) {
  (void)state;
  struct fx f;
  tusc_hooks_worker_options_t opts = {.queue_max = 2, .concurrency = 1};
  fx_start(&f, "", 5000, &opts);
  write_script(&f, "post-create", "cat >/dev/null\nsleep 0.2\necho x >> count.txt", 0755);
  write_script(&f, "pre-create", "echo '{\"RejectUpload\":true}'", 0755);
  tusc_upload_info_t info;
  sample_upload(&info);
  assert_int_equal(tusc_hooks_invoke(f.worker, TUSC_HOOK_POST_CREATE, &info, NULL, NULL, NULL), 0);
  assert_int_equal(tusc_hooks_invoke(f.worker, TUSC_HOOK_POST_CREATE, &info, NULL, NULL, NULL), 0);
  assert_int_equal(tusc_hooks_worker_pending(f.worker), 2);
  assert_int_equal(tusc_hooks_invoke(f.worker, TUSC_HOOK_POST_CREATE, &info, NULL, NULL, NULL),
                   UV_EBUSY);
  /* Blocking hooks never wait behind background ones. */
  struct result r = {0};
  assert_int_equal(tusc_hooks_invoke(f.worker, TUSC_HOOK_PRE_CREATE, &info, NULL, on_done, &r), 0);
  tusc_upload_info_dispose(&info);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  assert_int_equal(r.calls, 1);
  assert_true(r.resp.reject_upload);
  assert_int_equal(tusc_hooks_worker_pending(f.worker), 0);
  tusc_hooks_stats_t st;
  tusc_hooks_stats(f.hooks, &st);
  assert_int_equal(st.dropped, 1);
  assert_int_equal(st.invocations[TUSC_HOOK_POST_CREATE], 2);
  char *count = read_file(&f, "count.txt");
  assert_non_null(count);
  assert_string_equal(count, "x\nx\n");
  free(count);
  fx_stop(&f);
}

static void test_close_cancels(void **state) {
  (void)state;
  struct fx f;
  tusc_hooks_worker_options_t opts = {.queue_max = 10, .concurrency = 1};
  fx_start(&f, "", 0, &opts); /* no timeout: only the close ends it */
  write_script(&f, "pre-create", "sleep 30", 0755);
  write_script(&f, "post-finish", "sleep 30", 0755);
  tusc_upload_info_t info;
  sample_upload(&info);
  struct result running = {0}, queued1 = {0}, queued2 = {0};
  assert_int_equal(
      tusc_hooks_invoke(f.worker, TUSC_HOOK_PRE_CREATE, &info, NULL, on_done, &running), 0);
  assert_int_equal(
      tusc_hooks_invoke(f.worker, TUSC_HOOK_POST_FINISH, &info, NULL, on_done, &queued1), 0);
  assert_int_equal(
      tusc_hooks_invoke(f.worker, TUSC_HOOK_POST_FINISH, &info, NULL, on_done, &queued2), 0);
  tusc_upload_info_dispose(&info);
  uv_run(&f.loop, UV_RUN_NOWAIT);
  uint64_t t0 = tusc_now_ms();
  tusc_hooks_worker_close(f.worker);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  assert_true(tusc_now_ms() - t0 < 5000);
  assert_int_equal(running.calls, 1);
  assert_int_equal(running.status, UV_ECANCELED);
  assert_int_equal(queued1.calls, 1);
  assert_int_equal(queued1.status, UV_ECANCELED);
  assert_int_equal(queued2.calls, 1);
  assert_int_equal(queued2.status, UV_ECANCELED);
  assert_int_equal(uv_loop_close(&f.loop), 0);
  tusc_hooks_free(f.hooks);
  remove_tree(f.dir);
}

/* Lines in the file `name` (0 when it does not exist yet). */
static int count_lines(struct fx *f, const char *name) {
  char *text = exists(f, name) ? read_file(f, name) : NULL;
  int n = 0;
  for (const char *c = text; c && *c; c++)
    n += *c == '\n';
  free(text);
  return n;
}

/* -hooks-max-processes: one runs, one waits, the next is refused; a cancelled waiting
 * hook never runs and a cancelled running one has its process group killed. */
static void test_max_processes_and_cancel(void **state) {
  (void)state;
  struct fx f;
  fx_max_processes = 1;
  fx_start(&f, "", 10000, NULL);
  fx_max_processes = 0;
  write_script(&f, "pre-create", "echo $$ >> pids.txt\nsleep 30\necho '{}'", 0755);
  tusc_upload_info_t info;
  sample_upload(&info);
  struct result a = {0}, b = {0}, c = {0};
  assert_int_equal(tusc_hooks_invoke(f.worker, TUSC_HOOK_PRE_CREATE, &info, NULL, on_done, &a), 0);
  assert_int_equal(tusc_hooks_invoke(f.worker, TUSC_HOOK_PRE_CREATE, &info, NULL, on_done, &b), 0);
  assert_int_equal(tusc_hooks_invoke(f.worker, TUSC_HOOK_PRE_CREATE, &info, NULL, on_done, &c),
                   TUSC_EHOOKS_BUSY);
  tusc_upload_info_dispose(&info);
  tusc_hooks_stats_t st;
  tusc_hooks_stats(f.hooks, &st);
  assert_int_equal(st.running, 1);
  assert_int_equal(st.waiting, 1);
  assert_int_equal(st.busy, 1);
  uint64_t t0 = tusc_now_ms();
  while (count_lines(&f, "pids.txt") < 1 && tusc_now_ms() - t0 < 5000) {
    uv_run(&f.loop, UV_RUN_NOWAIT);
    usleep(10 * 1000);
  }
  assert_int_equal(count_lines(&f, "pids.txt"), 1);
  char *pid = read_file(&f, "pids.txt");
  long pgid = strtol(pid, NULL, 10);
  free(pid);
  assert_true(pgid > 1);
  assert_int_equal(tusc_hooks_cancel(f.worker, on_done, &b), 0);
  assert_int_equal(tusc_hooks_cancel(f.worker, on_done, &a), 0);
  assert_int_equal(tusc_hooks_cancel(f.worker, on_done, &c), UV_ENOENT);
  t0 = tusc_now_ms();
  uv_run(&f.loop, UV_RUN_DEFAULT);
  assert_true(tusc_now_ms() - t0 < 5000); /* not the 10 s timeout, not the 30 s sleep */
  assert_int_equal(a.calls, 1);
  assert_int_equal(a.status, UV_ECANCELED);
  assert_int_equal(b.calls, 1);
  assert_int_equal(b.status, UV_ECANCELED);
  assert_int_equal(c.calls, 0);
  assert_int_equal(count_lines(&f, "pids.txt"), 1); /* b never ran */
  bool alive = true;
  for (int i = 0; i < 250 && alive; i++) {
    alive = group_alive(pgid);
    if (alive)
      usleep(20 * 1000);
  }
  assert_false(alive);
  tusc_hooks_stats(f.hooks, &st);
  assert_int_equal(st.running, 0);
  assert_int_equal(st.waiting, 0);
  assert_int_equal(st.cancelled, 2);
  assert_int_equal(st.errors[TUSC_HOOK_PRE_CREATE], 0);
  fx_stop(&f);
}

static void big_upload(tusc_upload_info_t *info) {
  sample_upload(info);
  /* Far more than a pipe buffer: stdin is written in several asynchronous steps. */
  size_t n = 300 * 1024;
  char *v = malloc(n);
  assert_non_null(v);
  for (size_t i = 0; i < n; i++)
    v[i] = (char)('a' + i % 26);
  assert_int_equal(tusc_metadata_set(&info->metadata, "big", v, n), 0);
  free(v);
}

static void test_big_input_read(void **state) {
  (void)state;
  struct fx f;
  fx_start(&f, "", 10000, NULL);
  write_script(&f, "post-receive", "sleep 0.1\ncat > stdin.json", 0755);
  tusc_upload_info_t info;
  big_upload(&info);
  char *want = NULL;
  size_t want_len = 0;
  assert_int_equal(
      tusc_hook_json_request(TUSC_HOOK_POST_RECEIVE, &info, NULL, 0, NULL, &want, &want_len), 0);
  assert_true(want_len > 300 * 1024);
  struct result r = {0};
  assert_int_equal(tusc_hooks_invoke(f.worker, TUSC_HOOK_POST_RECEIVE, &info, NULL, on_done, &r),
                   0);
  tusc_upload_info_dispose(&info);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, 0);
  char path[256];
  snprintf(path, sizeof(path), "%s/stdin.json", f.dir);
  FILE *fp = fopen(path, "r");
  assert_non_null(fp);
  char *got = malloc(want_len + 1);
  size_t n = fread(got, 1, want_len + 1, fp);
  fclose(fp);
  assert_int_equal(n, want_len);
  assert_memory_equal(got, want, want_len);
  free(got);
  free(want);
  fx_stop(&f);
}

static void test_big_input_ignored(void **state) {
  (void)state;
  struct fx f;
  fx_start(&f, "", 10000, NULL);
  /* Exits without reading: our write fails with EPIPE, which is not the hook's fault. */
  write_script(&f, "pre-create", "echo '{\"RejectUpload\":true}'", 0755);
  tusc_upload_info_t info;
  big_upload(&info);
  struct result r = {0};
  assert_int_equal(tusc_hooks_invoke(f.worker, TUSC_HOOK_PRE_CREATE, &info, NULL, on_done, &r), 0);
  tusc_upload_info_dispose(&info);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, 0);
  assert_true(r.resp.reject_upload);
  fx_stop(&f);
}

static void test_no_sender(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  tusc_config_t cfg;
  memset(&cfg, 0, sizeof(cfg));
  tusc_hooks_t *h = NULL;
  assert_int_equal(tusc_hooks_new(&cfg, &h), 0);
  tusc_hooks_worker_t *w = NULL;
  assert_int_equal(tusc_hooks_worker_new(h, &loop, NULL, &w), 0);
  tusc_upload_info_t info;
  sample_upload(&info);
  struct result r = {0};
  assert_int_equal(tusc_hooks_invoke(w, TUSC_HOOK_PRE_CREATE, &info, NULL, on_done, &r), 0);
  assert_int_equal(tusc_hooks_invoke(w, TUSC_HOOK_POST_FINISH, &info, NULL, NULL, NULL), 0);
  tusc_upload_info_dispose(&info);
  assert_int_equal(r.calls, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, 0);
  assert_false(r.resp.reject_upload);
  tusc_hooks_stats_t st;
  tusc_hooks_stats(h, &st);
  assert_int_equal(st.invocations[TUSC_HOOK_PRE_CREATE], 0);
  tusc_hooks_worker_close(w);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  tusc_hooks_free(h);
}

int main(void) {
  /* A hook that exits without reading stdin must not kill the test (the server
   * ignores SIGPIPE the same way). */
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_response_echoed),
      cmocka_unit_test(test_stdin_env_cwd),
      cmocka_unit_test(test_pre_create_env_has_empty_id),
      cmocka_unit_test(test_exit_status),
      cmocka_unit_test(test_not_executable),
      cmocka_unit_test(test_missing_is_noop),
      cmocka_unit_test(test_timeout_kills_group),
      cmocka_unit_test(test_background_child_holding_stdout),
      cmocka_unit_test(test_invalid_json),
      cmocka_unit_test(test_output_cap),
      cmocka_unit_test(test_disabled_event_not_run),
      cmocka_unit_test(test_enabled_events_list),
      cmocka_unit_test(test_queue_full),
      cmocka_unit_test(test_close_cancels),
      cmocka_unit_test(test_max_processes_and_cancel),
      cmocka_unit_test(test_big_input_read),
      cmocka_unit_test(test_big_input_ignored),
      cmocka_unit_test(test_no_sender),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

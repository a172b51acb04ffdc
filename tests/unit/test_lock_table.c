/* Unit tests for src/lock/table.c: in-process exclusion, release requests, flock across
 * processes, and many threads at once (run under ASan, which also catches a holder
 * used after its owner freed it). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#include "common/error.h"
#include "lock/table.h"

typedef struct fixture_s {
  char dir[64];
  tusc_lock_table_t *table;
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  if (test_tmpdir(f->dir, sizeof(f->dir), "lock") != 0 || tusc_lock_table_new(&f->table) != 0)
    return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  tusc_lock_table_free(f->table);
  test_rm_rf(f->dir);
  free(f);
  return 0;
}

static void lock_file(const fixture_t *f, const char *name, char *out, size_t cap) {
  snprintf(out, cap, "%s/%s.lock", f->dir, name);
}

static void holder_init(tusc_lock_holder_t *h, tusc_lock_release_cb cb, void *data) {
  memset(h, 0, sizeof(*h));
  h->on_release_requested = cb;
  h->data = data;
}

static void test_acquire_release(void **state) {
  fixture_t *f = *state;
  char path[256];
  lock_file(f, "a", path, sizeof(path));
  mode_t old_umask = umask(077);
  tusc_lock_holder_t h1, h2, h3;
  holder_init(&h1, NULL, NULL);
  holder_init(&h2, NULL, NULL);
  holder_init(&h3, NULL, NULL);
  assert_int_equal(tusc_lock_try_acquire(f->table, "a", path, 0640, &h1), 0);
  umask(old_umask);
  assert_true(h1.held);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0640); /* exactly file_perms, whatever the umask */

  assert_int_equal(tusc_lock_try_acquire(f->table, "a", path, 0640, &h2), TUSC_ELOCKED);
  assert_false(h2.held);
  /* The table alone excludes too, whatever the path. */
  assert_int_equal(tusc_lock_try_acquire(f->table, "a", NULL, 0640, &h2), TUSC_ELOCKED);
  /* Holding one ID does not hold another. */
  assert_int_equal(tusc_lock_try_acquire(f->table, "b", NULL, 0640, &h3), 0);
  /* A holder already in use is refused. */
  assert_int_equal(tusc_lock_try_acquire(f->table, "c", NULL, 0640, &h3), TUSC_EINVALID_ARGUMENT);

  tusc_lock_table_release(f->table, &h1);
  assert_false(h1.held);
  tusc_lock_table_release(f->table, &h1);     /* no-op */
  assert_int_equal(stat(path, &st), 0); /* lock file is kept */
  assert_int_equal(tusc_lock_try_acquire(f->table, "a", path, 0640, &h2), 0);
  tusc_lock_table_release(f->table, &h2);
  tusc_lock_table_release(f->table, &h3);

  /* An I/O error leaves nothing behind in the table. */
  char bad[300];
  snprintf(bad, sizeof(bad), "%s/missing-dir/x.lock", f->dir);
  assert_int_equal(tusc_lock_try_acquire(f->table, "d", bad, 0640, &h1), -ENOENT);
  assert_false(h1.held);
  assert_int_equal(tusc_lock_try_acquire(f->table, "d", NULL, 0640, &h1), 0);
  tusc_lock_table_release(f->table, &h1);
}

static atomic_int calls;
static tusc_lock_holder_t *last_asked;

static void on_release(tusc_lock_holder_t *h) {
  atomic_fetch_add(&calls, 1);
  last_asked = h;
}

static void test_request_release(void **state) {
  fixture_t *f = *state;
  atomic_store(&calls, 0);
  last_asked = NULL;
  assert_int_equal(tusc_lock_request_release(f->table, "x"), TUSC_ENOT_FOUND);
  int tag = 7;
  tusc_lock_holder_t h;
  holder_init(&h, on_release, &tag);
  assert_int_equal(tusc_lock_try_acquire(f->table, "x", NULL, 0600, &h), 0);
  assert_int_equal(tusc_lock_request_release(f->table, "x"), 0);
  assert_int_equal(atomic_load(&calls), 1);
  assert_ptr_equal(last_asked, &h);
  assert_ptr_equal(last_asked->data, &tag);
  assert_int_equal(tusc_lock_request_release(f->table, "x"), 0); /* once per call */
  assert_int_equal(atomic_load(&calls), 2);
  assert_int_equal(tusc_lock_request_release(f->table, "y"), TUSC_ENOT_FOUND);
  tusc_lock_table_release(f->table, &h);
  assert_int_equal(tusc_lock_request_release(f->table, "x"), TUSC_ENOT_FOUND);
  assert_int_equal(atomic_load(&calls), 2);

  /* A holder without a callback can still be asked (nothing happens). */
  holder_init(&h, NULL, NULL);
  assert_int_equal(tusc_lock_try_acquire(f->table, "x", NULL, 0600, &h), 0);
  assert_int_equal(tusc_lock_request_release(f->table, "x"), 0);
  tusc_lock_table_release(f->table, &h);
}

/* The callback may use the module for other IDs (it runs under no lock of it). */
static tusc_lock_table_t *reentry_table;
static int reentry_rc = 1;

static void on_release_reenter(tusc_lock_holder_t *h) {
  (void)h;
  tusc_lock_holder_t other;
  holder_init(&other, NULL, NULL);
  reentry_rc = tusc_lock_try_acquire(reentry_table, "other", NULL, 0600, &other);
  if (reentry_rc == 0)
    tusc_lock_table_release(reentry_table, &other);
}

static void test_callback_may_reenter(void **state) {
  fixture_t *f = *state;
  reentry_table = f->table;
  tusc_lock_holder_t h;
  holder_init(&h, on_release_reenter, NULL);
  assert_int_equal(tusc_lock_try_acquire(f->table, "main", NULL, 0600, &h), 0);
  assert_int_equal(tusc_lock_request_release(f->table, "main"), 0);
  assert_int_equal(reentry_rc, 0);
  tusc_lock_table_release(f->table, &h);
}

/* tusc_lock_release must not return while a callback still uses the holder: the owner
 * frees the holder right after. The callback lingers; if release did not wait, the
 * ordering check fails and ASan reports the read of freed memory. */
typedef struct linger_s {
  tusc_lock_table_t *table;
  atomic_int in_callback;
  atomic_int callback_done;
} linger_t;

static linger_t linger;

static void on_release_linger(tusc_lock_holder_t *h) {
  atomic_store(&linger.in_callback, 1);
  usleep(100 * 1000);
  int *data = h->data;
  if (*data == 42)
    atomic_store(&linger.callback_done, 1);
}

static void *request_thread(void *arg) {
  (void)arg;
  tusc_lock_request_release(linger.table, "linger");
  return NULL;
}

static void test_release_waits_for_callback(void **state) {
  fixture_t *f = *state;
  linger.table = f->table;
  atomic_store(&linger.in_callback, 0);
  atomic_store(&linger.callback_done, 0);
  tusc_lock_holder_t *h = malloc(sizeof(*h));
  int *data = malloc(sizeof(*data));
  *data = 42;
  holder_init(h, on_release_linger, data);
  assert_int_equal(tusc_lock_try_acquire(f->table, "linger", NULL, 0600, h), 0);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, request_thread, NULL), 0);
  while (atomic_load(&linger.in_callback) == 0)
    usleep(1000);
  tusc_lock_table_release(f->table, h);
  int done_at_release = atomic_load(&linger.callback_done);
  free(data);
  free(h);
  pthread_join(t, NULL);
  assert_int_equal(done_at_release, 1);
}

/* Exit 0: the lock was busy; 1: the child got it; 2: something else went wrong. */
static int child_try(const char *path) {
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    tusc_lock_table_t *t;
    if (tusc_lock_table_new(&t) != 0)
      _exit(2);
    tusc_lock_holder_t h;
    holder_init(&h, NULL, NULL);
    int rc = tusc_lock_try_acquire(t, "shared", path, 0600, &h);
    /* Cross-check with a bare flock, independent of the code under test. */
    int fd = open(path, O_RDWR | O_CLOEXEC);
    int bare = fd >= 0 ? flock(fd, LOCK_EX | LOCK_NB) : -1;
    int bare_errno = errno;
    if (rc == TUSC_ELOCKED && bare != 0 && bare_errno == EWOULDBLOCK)
      _exit(0);
    if (rc == 0 && bare != 0 && bare_errno == EWOULDBLOCK)
      _exit(1); /* we hold it, so the bare flock on another fd must fail */
    _exit(2);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  return WEXITSTATUS(status);
}

static void test_flock_across_processes(void **state) {
  fixture_t *f = *state;
  char path[256];
  lock_file(f, "shared", path, sizeof(path));
  tusc_lock_holder_t h;
  holder_init(&h, NULL, NULL);
  assert_int_equal(tusc_lock_try_acquire(f->table, "shared", path, 0600, &h), 0);
  assert_int_equal(child_try(path), 0);
  tusc_lock_table_release(f->table, &h);
  assert_int_equal(child_try(path), 1);
  /* And the other way round: a lock held elsewhere is ELOCKED here. */
  int fd = open(path, O_RDWR | O_CLOEXEC);
  assert_true(fd >= 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    if (flock(fd, LOCK_EX) != 0)
      _exit(2);
    sleep(30); /* killed by the parent */
    _exit(0);
  }
  close(fd);
  /* Wait until the child holds it (bounded). */
  int rc = 0;
  for (int i = 0; i < 500; i++) {
    rc = tusc_lock_try_acquire(f->table, "shared", path, 0600, &h);
    if (rc == TUSC_ELOCKED)
      break;
    if (rc == 0)
      tusc_lock_table_release(f->table, &h);
    usleep(10000);
  }
  kill(pid, SIGKILL);
  int status;
  waitpid(pid, &status, 0);
  assert_int_equal(rc, TUSC_ELOCKED);
  assert_false(h.held);
}

/* ---- many threads ---- */

enum { THREADS = 4, ROUNDS = 3000, IDS = 5 };

typedef struct hammer_s {
  fixture_t *f;
  atomic_int inside[IDS]; /* holders of each ID right now: must never exceed 1 */
  atomic_int violations;
  atomic_int acquired;
  atomic_int asked;
} hammer_t;

static hammer_t *hammer;

static void on_release_hammer(tusc_lock_holder_t *h) {
  /* Touches the holder: ASan reports it if the holder was already freed. */
  int *slot = h->data;
  if (*slot < 0 || *slot >= IDS)
    atomic_fetch_add(&hammer->violations, 1);
  atomic_fetch_add(&hammer->asked, 1);
}

static void *hammer_thread(void *arg) {
  unsigned seed = (unsigned)(uintptr_t)arg;
  hammer_t *hm = hammer;
  for (int r = 0; r < ROUNDS; r++) {
    int slot = (int)(rand_r(&seed) % IDS);
    char id[16], path[256];
    snprintf(id, sizeof(id), "id%d", slot);
    lock_file(hm->f, id, path, sizeof(path));
    if (rand_r(&seed) % 3 == 0) {
      tusc_lock_request_release(hm->f->table, id);
      continue;
    }
    tusc_lock_holder_t *h = malloc(sizeof(*h));
    int *data = malloc(sizeof(*data));
    *data = slot;
    holder_init(h, on_release_hammer, data);
    int rc = tusc_lock_try_acquire(hm->f->table, id, path, 0600, h);
    if (rc == 0) {
      atomic_fetch_add(&hm->acquired, 1);
      if (atomic_fetch_add(&hm->inside[slot], 1) != 0)
        atomic_fetch_add(&hm->violations, 1);
      for (int spin = rand_r(&seed) % 100; spin > 0; spin--)
        atomic_thread_fence(memory_order_seq_cst);
      atomic_fetch_sub(&hm->inside[slot], 1);
      tusc_lock_table_release(hm->f->table, h);
    } else if (rc != TUSC_ELOCKED) {
      atomic_fetch_add(&hm->violations, 1);
    }
    free(data);
    free(h);
  }
  return NULL;
}

static void test_threads_hammer(void **state) {
  fixture_t *f = *state;
  hammer_t hm;
  memset(&hm, 0, sizeof(hm));
  hm.f = f;
  hammer = &hm;
  pthread_t t[THREADS];
  for (uintptr_t i = 0; i < THREADS; i++)
    assert_int_equal(pthread_create(&t[i], NULL, hammer_thread, (void *)(i + 1)), 0);
  for (int i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  assert_int_equal(atomic_load(&hm.violations), 0);
  assert_true(atomic_load(&hm.acquired) > 0);
  /* Every ID is free again. */
  for (int i = 0; i < IDS; i++) {
    char id[16];
    snprintf(id, sizeof(id), "id%d", i);
    assert_int_equal(tusc_lock_request_release(f->table, id), TUSC_ENOT_FOUND);
    tusc_lock_holder_t h;
    holder_init(&h, NULL, NULL);
    char path[256];
    lock_file(f, id, path, sizeof(path));
    assert_int_equal(tusc_lock_try_acquire(f->table, id, path, 0600, &h), 0);
    tusc_lock_table_release(f->table, &h);
  }
}

/* Many IDs held at once: the table grows and still finds every one. */
static void test_many_ids(void **state) {
  fixture_t *f = *state;
  enum { N = 3000 };
  tusc_lock_holder_t *hs = calloc(N, sizeof(*hs));
  for (int i = 0; i < N; i++) {
    char id[32];
    snprintf(id, sizeof(id), "upload-%d", i);
    assert_int_equal(tusc_lock_try_acquire(f->table, id, NULL, 0600, &hs[i]), 0);
  }
  for (int i = 0; i < N; i++) {
    char id[32];
    snprintf(id, sizeof(id), "upload-%d", i);
    tusc_lock_holder_t h;
    holder_init(&h, NULL, NULL);
    assert_int_equal(tusc_lock_try_acquire(f->table, id, NULL, 0600, &h), TUSC_ELOCKED);
    assert_int_equal(tusc_lock_request_release(f->table, id), 0);
  }
  for (int i = 0; i < N; i += 2)
    tusc_lock_table_release(f->table, &hs[i]);
  for (int i = 0; i < N; i++) {
    char id[32];
    snprintf(id, sizeof(id), "upload-%d", i);
    assert_int_equal(tusc_lock_request_release(f->table, id), i % 2 == 0 ? TUSC_ENOT_FOUND : 0);
  }
  for (int i = 1; i < N; i += 2)
    tusc_lock_table_release(f->table, &hs[i]);
  free(hs);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_acquire_release, setup, teardown),
      cmocka_unit_test_setup_teardown(test_request_release, setup, teardown),
      cmocka_unit_test_setup_teardown(test_callback_may_reenter, setup, teardown),
      cmocka_unit_test_setup_teardown(test_release_waits_for_callback, setup, teardown),
      cmocka_unit_test_setup_teardown(test_flock_across_processes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_threads_hammer, setup, teardown),
      cmocka_unit_test_setup_teardown(test_many_ids, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

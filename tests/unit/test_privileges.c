/* Unit tests for src/sys/privileges.c (the parts that need no root). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "sys/privileges.h"

static void test_nothing_to_drop(void **state) {
  (void)state;
  char err[256] = "";
  uid_t before = geteuid();
  assert_int_equal(tusc_privileges_drop(NULL, NULL, err, sizeof(err)), 0);
  assert_int_equal(geteuid(), before);
}

static void test_unknown_names(void **state) {
  (void)state;
  char err[256] = "";
  uid_t before = geteuid();
  assert_true(tusc_privileges_drop("no-such-user-tusc-x", NULL, err, sizeof(err)) < 0);
  assert_non_null(strstr(err, "unknown user no-such-user-tusc-x"));
  assert_true(tusc_privileges_drop(NULL, "no-such-group-tusc-x", err, sizeof(err)) < 0);
  assert_non_null(strstr(err, "unknown group no-such-group-tusc-x"));
  assert_int_equal(geteuid(), before); /* nothing changed on the way */
}

static void test_check_dir(void **state) {
  (void)state;
  char tmpl[] = "/tmp/tusc-priv-XXXXXX";
  char *dir = mkdtemp(tmpl);
  assert_non_null(dir);
  char err[512] = "";
  assert_int_equal(tusc_privileges_check_dir(dir, err, sizeof(err)), 0);
  /* No scratch file left behind. */
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A %s)\"", dir);
  assert_int_equal(system(cmd), 0);
  char missing[600];
  snprintf(missing, sizeof(missing), "%s/missing", dir);
  assert_true(tusc_privileges_check_dir(missing, err, sizeof(err)) < 0);
  assert_non_null(strstr(err, "cannot create files in"));
  rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_nothing_to_drop),
      cmocka_unit_test(test_unknown_names),
      cmocka_unit_test(test_check_dir),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

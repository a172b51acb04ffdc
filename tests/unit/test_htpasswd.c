/* Unit tests for src/auth/htpasswd.c: accepted and refused hash kinds (with the line
 * named), comments, duplicates, verification of bcrypt, sha512-crypt and yescrypt
 * hashes made here with crypt_gensalt/crypt_r, and file loading. */
#include <crypt.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth/htpasswd.h"
#include "common/error.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static char *make_hash(const char *prefix, unsigned long cost, const char *password) {
  struct crypt_data cd;
  memset(&cd, 0, sizeof(cd));
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  if (crypt_gensalt_rn(prefix, cost, NULL, 0, setting, sizeof(setting)) == NULL)
    return NULL;
  const char *h = crypt_r(password, setting, &cd);
  if (h == NULL || h[0] == '*')
    return NULL;
  return strdup(h);
}

struct refuse_case {
  const char *text;
  const char *message_part; /* must appear in the error text */
};

static const struct refuse_case refuse_cases[] = {
    {"alice:$apr1$abcdefgh$0123456789abcdefghijkl\n", "f:1: user alice: md5-apr1"},
    {"# c\n\nbob:plaintext\n", "f:3: user bob: plain-text"},
    {"carol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", "f:1: user carol: SHA-1"},
    {"dave:$1$abcdefgh$0123456789abcdefghijkl\n", "md5-crypt"},
    {"erin:$5$salt$hash\n", "sha256-crypt"},
    {"frank:$9$x\n", "unknown hash scheme"},
    {"no-colon-here\n", "f:1: expected \"user:hash\""},
    {":$6$salt$hash\n", "f:1: expected"},
    {"gina:$6$a$b\ngina:$6$c$d\n", "f:2: user gina is listed twice"},
};

static void test_refused(void **state) {
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(refuse_cases); i++) {
    tusc_htpasswd_t *t = NULL;
    char err[256];
    int rc = tusc_htpasswd_parse(refuse_cases[i].text, strlen(refuse_cases[i].text), "f", &t, err,
                                 sizeof(err));
    if (rc != TUSC_EINVALID_ARGUMENT || t != NULL)
      fail_msg("case %zu: rc %d", i, rc);
    if (strstr(err, refuse_cases[i].message_part) == NULL)
      fail_msg("case %zu: message \"%s\" lacks \"%s\"", i, err, refuse_cases[i].message_part);
  }
}

static void test_verify_kinds(void **state) {
  (void)state;
  char *bcrypt = make_hash("$2b$", 5, "s3cret");
  char *sha512 = make_hash("$6$", 0, "pässwörd");
  char *yescrypt = make_hash("$y$", 0, "yes:colon");
  assert_non_null(bcrypt);
  assert_non_null(sha512);
  assert_non_null(yescrypt);
  /* $2y$ is the same algorithm as $2b$ under PHP's name; htpasswd -B writes it. */
  char *bcrypt_y = strdup(bcrypt);
  bcrypt_y[2] = 'y';
  char text[2048];
  snprintf(text, sizeof(text), "# users\r\nann:%s\r\nben:%s\n  \nchris:%s\ndora:%s:extra-field\n",
           bcrypt, sha512, yescrypt, bcrypt_y);
  tusc_htpasswd_t *t = NULL;
  char err[256];
  assert_int_equal(tusc_htpasswd_parse(text, strlen(text), "mem", &t, err, sizeof(err)), 0);
  assert_int_equal(tusc_htpasswd_count(t), 4);

  static const struct {
    const char *user, *password;
    int rc;
  } cases[] = {
      {"ann", "s3cret", 0},
      {"ann", "s3cret ", TUSC_EUNAUTHORIZED},
      {"ann", "S3cret", TUSC_EUNAUTHORIZED},
      {"ann", "", TUSC_EUNAUTHORIZED},
      {"ben", "pässwörd", 0},
      {"ben", "s3cret", TUSC_EUNAUTHORIZED},
      {"chris", "yes:colon", 0},
      {"chris", "yes", TUSC_EUNAUTHORIZED},
      {"dora", "s3cret", 0},
      {"nobody", "s3cret", TUSC_EUNAUTHORIZED},
      {"Ann", "s3cret", TUSC_EUNAUTHORIZED},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    int rc = tusc_htpasswd_verify(t, cases[i].user, cases[i].password);
    if (rc != cases[i].rc)
      fail_msg("case %zu (%s): rc %d, want %d", i, cases[i].user, rc, cases[i].rc);
  }
  assert_int_equal(tusc_htpasswd_verify(NULL, "ann", "s3cret"), TUSC_EUNAUTHORIZED);
  tusc_htpasswd_free(t);
  free(bcrypt);
  free(bcrypt_y);
  free(sha512);
  free(yescrypt);
}

static void test_load_file(void **state) {
  (void)state;
  char path[] = "/tmp/tusc-htpasswd-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  char *h = make_hash("$6$", 0, "pw");
  assert_non_null(h);
  char line[512];
  int n = snprintf(line, sizeof(line), "u:%s\n", h);
  assert_int_equal(write(fd, line, (size_t)n), n);
  close(fd);
  tusc_htpasswd_t *t = NULL;
  char err[256];
  assert_int_equal(tusc_htpasswd_load(path, &t, err, sizeof(err)), 0);
  assert_int_equal(tusc_htpasswd_verify(t, "u", "pw"), 0);
  tusc_htpasswd_free(t);
  unlink(path);
  t = NULL;
  int rc = tusc_htpasswd_load(path, &t, err, sizeof(err));
  assert_true(rc < 0);
  assert_null(t);
  assert_non_null(strstr(err, path));
  free(h);

  /* An empty file loads: nobody can log in. */
  assert_int_equal(tusc_htpasswd_parse("", 0, "e", &t, err, sizeof(err)), 0);
  assert_int_equal(tusc_htpasswd_count(t), 0);
  assert_int_equal(tusc_htpasswd_verify(t, "x", "y"), TUSC_EUNAUTHORIZED);
  tusc_htpasswd_free(t);
  tusc_htpasswd_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_refused),
      cmocka_unit_test(test_verify_kinds),
      cmocka_unit_test(test_load_file),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

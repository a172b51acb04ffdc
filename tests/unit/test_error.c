/* Unit tests for src/common/error.c: the X-macro table and errno mapping. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "common/error.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

struct mapping {
  int err;
  int status;
  const char *code;
  const char *msg; /* NULL: only check that some message exists */
};

static void test_mapping(void **state) {
  (void)state;
  static const struct mapping cases[] = {
      {TUSC_EUNSUPPORTED_VERSION, 412, "ERR_UNSUPPORTED_VERSION",
       "missing, invalid or unsupported Tus-Resumable header"},
      {TUSC_ENOT_FOUND, 404, "ERR_UPLOAD_NOT_FOUND", "upload not found"},
      {TUSC_EGONE, 410, "ERR_UPLOAD_NOT_FOUND", "upload has expired or was terminated"},
      {TUSC_EMISMATCHED_OFFSET, 409, "ERR_MISMATCHED_OFFSET", "mismatched offset"},
      {TUSC_EINVALID_CONTENT_TYPE, 415, "ERR_INVALID_CONTENT_TYPE", NULL},
      {TUSC_EMAX_SIZE_EXCEEDED, 413, "ERR_MAX_SIZE_EXCEEDED", "maximum size exceeded"},
      {TUSC_EINVALID_METADATA, 400, "ERR_INVALID_METADATA", "invalid Upload-Metadata header"},
      {TUSC_EMETADATA_TOO_LARGE, 400, "ERR_INVALID_METADATA", NULL},
      {TUSC_EINVALID_ID, 404, "ERR_UPLOAD_NOT_FOUND", NULL},
      {TUSC_EMODIFY_FINAL, 403, "ERR_MODIFY_FINAL", NULL},
      {TUSC_ESERVER_SHUTDOWN, 503, "ERR_SERVER_SHUTDOWN", NULL},
      {TUSC_EHEADERS_TOO_LARGE, 431, "ERR_HEADERS_TOO_LARGE", NULL},
      {TUSC_EINSUFFICIENT_STORAGE, 507, "ERR_INSUFFICIENT_STORAGE", "insufficient storage"},
      {TUSC_ELOCKED, 423, "ERR_LOCKED", NULL},
      {TUSC_ENOMEM, 503, "ERR_INTERNAL_SERVER_ERROR", "out of memory"},
      {UV_ENOSPC, 507, "ERR_INSUFFICIENT_STORAGE", NULL},
      {-ENOSPC, 507, "ERR_INSUFFICIENT_STORAGE", NULL},
      {-EDQUOT, 507, "ERR_INSUFFICIENT_STORAGE", NULL},
      {UV_EIO, 500, "ERR_INTERNAL_SERVER_ERROR", "i/o error"},
      {UV_ENOENT, 500, "ERR_INTERNAL_SERVER_ERROR", NULL},
      {UV_EACCES, 500, "ERR_INTERNAL_SERVER_ERROR", NULL},
      {-12345, 500, "ERR_INTERNAL_SERVER_ERROR", "unknown error"},
      {TUSC_E__BASE, 500, "ERR_INTERNAL_SERVER_ERROR", NULL},
      {TUSC_E__END, 500, "ERR_INTERNAL_SERVER_ERROR", NULL},
      {-1000000, 500, "ERR_INTERNAL_SERVER_ERROR", "unknown error"},
      {7, 500, "ERR_INTERNAL_SERVER_ERROR", "unknown error"},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    const struct mapping *c = &cases[i];
    if (tusc_error_status(c->err) != c->status)
      fail_msg("row %zu: status %d, want %d", i, tusc_error_status(c->err), c->status);
    if (strcmp(tusc_error_code(c->err), c->code) != 0)
      fail_msg("row %zu: code %s, want %s", i, tusc_error_code(c->err), c->code);
    const char *msg = tusc_strerror(c->err);
    assert_non_null(msg);
    assert_true(msg[0] != '\0');
    if (c->msg != NULL && strcmp(msg, c->msg) != 0)
      fail_msg("row %zu: message \"%s\", want \"%s\"", i, msg, c->msg);
  }
}

/* Every table entry is reachable and distinct from libuv's range. */
static void test_table_complete(void **state) {
  (void)state;
  assert_true((int)TUSC_E__END < (int)UV_ERRNO_MAX);
  for (int e = TUSC_E__BASE + 1; e < TUSC_E__END; e++) {
    int status = tusc_error_status(e);
    assert_true(status >= 400 && status <= 599);
    assert_memory_equal(tusc_error_code(e), "ERR_", 4);
    assert_true(strlen(tusc_strerror(e)) > 0);
  }
}

static void test_uv_messages(void **state) {
  (void)state;
  assert_string_equal(tusc_strerror(UV_ENOENT), uv_strerror(UV_ENOENT));
  assert_string_equal(tusc_strerror(-EIO), uv_strerror(UV_EIO));
  assert_string_equal(tusc_strerror(0), "success");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mapping),
      cmocka_unit_test(test_table_complete),
      cmocka_unit_test(test_uv_messages),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for src/hooks/hook_types.c: event names and the response's lifetime. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "hooks/hook_types.h"

static void test_event_names(void **state) {
  (void)state;
  static const char *names[] = {"pre-create",  "post-create",   "post-receive",  "pre-finish",
                                "post-finish", "pre-terminate", "post-terminate"};
  for (int i = 0; i < TUSC_HOOK_EVENT_COUNT; i++) {
    assert_string_equal(tusc_hook_event_name((enum tusc_hook_event)i), names[i]);
    enum tusc_hook_event ev;
    assert_int_equal(tusc_hook_event_parse(names[i], strlen(names[i]), &ev), 0);
    assert_int_equal(ev, i);
    assert_int_equal(tusc_hook_event_blocking(ev), names[i][1] == 'r');
  }
  enum tusc_hook_event ev = TUSC_HOOK_POST_FINISH;
  assert_int_equal(tusc_hook_event_parse("Pre-Create", 10, &ev), TUSC_EINVALID_ARGUMENT);
  assert_int_equal(tusc_hook_event_parse("pre-creat", 9, &ev), TUSC_EINVALID_ARGUMENT);
  assert_int_equal(ev, TUSC_HOOK_POST_FINISH);
  assert_string_equal(tusc_hook_event_name((enum tusc_hook_event)99), "");
}

/* dispose frees every member (LSan checks) and leaves an empty response behind. */
static void test_response_dispose(void **state) {
  (void)state;
  tusc_hook_response_t r;
  tusc_hook_response_init(&r);
  assert_null(r.body);
  assert_false(r.has_metadata);
  r.status_code = 418;
  r.body = strdup("teapot");
  r.headers = calloc(1, sizeof(*r.headers));
  assert_non_null(r.headers);
  r.headers[0].name = strdup("X-A");
  r.headers[0].value = strdup("1");
  r.header_count = 1;
  r.change_id = strdup("new-id");
  r.change_storage_path = strdup("/tmp/x");
  r.has_metadata = true;
  assert_int_equal(tusc_metadata_set(&r.metadata, "k", "v", 1), 0);
  tusc_hook_response_dispose(&r);
  assert_int_equal(r.status_code, 0);
  assert_null(r.body);
  assert_null(r.headers);
  assert_int_equal(r.header_count, 0);
  assert_null(r.change_id);
  assert_false(r.has_metadata);
  tusc_hook_response_dispose(&r); /* twice is harmless */
  tusc_hook_response_dispose(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_event_names),
      cmocka_unit_test(test_response_dispose),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for src/common/log.c: stderr is redirected to a temp file and the exact
 * line shapes are checked for the text (logfmt) and JSON formats. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/log.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define CAPTURE_MAX (256 * 1024)

static FILE *capture_file;
static int saved_stderr = -1;

static void capture_begin(void) {
  capture_file = tmpfile();
  assert_non_null(capture_file);
  saved_stderr = dup(STDERR_FILENO);
  assert_true(saved_stderr >= 0);
  assert_true(dup2(fileno(capture_file), STDERR_FILENO) >= 0);
}

/* Restores stderr and returns everything written meanwhile (caller frees). */
static char *capture_end(size_t *len_out) {
  assert_true(dup2(saved_stderr, STDERR_FILENO) >= 0);
  close(saved_stderr);
  saved_stderr = -1;
  char *buf = malloc(CAPTURE_MAX + 1);
  assert_non_null(buf);
  rewind(capture_file);
  size_t n = fread(buf, 1, CAPTURE_MAX, capture_file);
  buf[n] = '\0';
  fclose(capture_file);
  capture_file = NULL;
  if (len_out != NULL)
    *len_out = n;
  return buf;
}

static int is_d(char c) {
  return c >= '0' && c <= '9';
}

/* "2026-11-25T08:00:00.123Z" */
static void assert_timestamp(const char *s) {
  static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
  for (size_t i = 0; i < sizeof(shape) - 1; i++) {
    if (shape[i] == 'd' ? !is_d(s[i]) : s[i] != shape[i])
      fail_msg("bad timestamp in \"%.40s\"", s);
  }
}

/* Checks a text line: "time=<ts><rest>". */
static void assert_text_line(const char *line, const char *rest) {
  if (strncmp(line, "time=", 5) != 0)
    fail_msg("line does not start with time=: \"%s\"", line);
  assert_timestamp(line + 5);
  if (strcmp(line + 5 + 24, rest) != 0)
    fail_msg("line tail \"%s\", want \"%s\"", line + 5 + 24, rest);
}

/* Checks a JSON line: {"time":"<ts>"<rest>. */
static void assert_json_line(const char *line, const char *rest) {
  if (strncmp(line, "{\"time\":\"", 9) != 0)
    fail_msg("line does not start with {\"time\": \"%s\"", line);
  assert_timestamp(line + 9);
  if (strcmp(line + 9 + 24, rest) != 0)
    fail_msg("line tail \"%s\", want \"%s\"", line + 9 + 24, rest);
  json_error_t jerr;
  json_t *obj = json_loads(line, 0, &jerr);
  if (obj == NULL)
    fail_msg("not valid JSON (%s): %s", jerr.text, line);
  assert_true(json_is_object(obj));
  json_decref(obj);
}

static int setup_text(void **state) {
  (void)state;
  tusc_log_setup(TUSC_LOG_INFO, TUSC_LOG_TEXT);
  return 0;
}

static int setup_json(void **state) {
  (void)state;
  tusc_log_setup(TUSC_LOG_INFO, TUSC_LOG_JSON);
  return 0;
}

struct event_case {
  const char *key;
  const char *value;
  const char *text;
  const char *json;
};

static const struct event_case value_cases[] = {
    {"id", "abc", "id=abc", "\"id\":\"abc\""},
    {"size", "42", "size=42", "\"size\":\"42\""},
    {"v", "", "v=\"\"", "\"v\":\"\""},
    {"v", NULL, "v=\"\"", "\"v\":\"\""},
    {"v", "a b", "v=\"a b\"", "\"v\":\"a b\""},
    {"v", "a=b", "v=\"a=b\"", "\"v\":\"a=b\""},
    {"v", "say \"hi\"", "v=\"say \\\"hi\\\"\"", "\"v\":\"say \\\"hi\\\"\""},
    {"v", "a\\b", "v=a\\b", "\"v\":\"a\\\\b\""},
    {"v", "x \\ y", "v=\"x \\\\ y\"", "\"v\":\"x \\\\ y\""},
    {"v", "l1\nl2", "v=\"l1\\nl2\"", "\"v\":\"l1\\nl2\""},
    {"v", "a\r\tb", "v=\"a\\r\\tb\"", "\"v\":\"a\\r\\tb\""},
    {"v", "\x01\x1b\x7f", "v=\"\\x01\\x1b\\x7f\"", "\"v\":\"\\u0001\\u001b\\u007f\""},
    {"path", "/files/\xc3\xa9", "path=/files/\xc3\xa9", "\"path\":\"/files/\xc3\xa9\""},
    {"v", "bad\xff\xc3", "v=bad\xff\xc3", "\"v\":\"bad\\ufffd\\ufffd\""},
    {"v", "\xed\xa0\x80", "v=\xed\xa0\x80", "\"v\":\"\\ufffd\\ufffd\\ufffd\""}, /* surrogate */
};

static void test_text_event_values(void **state) {
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(value_cases); i++) {
    capture_begin();
    tusc_log_event(TUSC_LOG_INFO, "UploadCreated", value_cases[i].key, value_cases[i].value, NULL);
    char *out = capture_end(NULL);
    char want[256];
    snprintf(want, sizeof(want), " level=INFO event=UploadCreated %s\n", value_cases[i].text);
    assert_text_line(out, want);
    free(out);
  }
}

static void test_json_event_values(void **state) {
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(value_cases); i++) {
    capture_begin();
    tusc_log_event(TUSC_LOG_INFO, "UploadCreated", value_cases[i].key, value_cases[i].value, NULL);
    char *out = capture_end(NULL);
    char want[256];
    snprintf(want, sizeof(want), "\",\"level\":\"INFO\",\"event\":\"UploadCreated\",%s}\n",
             value_cases[i].json);
    assert_json_line(out, want);
    free(out);
  }
}

static void test_text_shapes(void **state) {
  (void)state;
  capture_begin();
  tusc_log_event(TUSC_LOG_INFO, "UploadCreated", "id", "abc", "size", "42", NULL);
  tusc_log_event(TUSC_LOG_ERROR, "ChunkWriteFailed", "id", "abc", "error", "no space left", NULL);
  tusc_log_msg(TUSC_LOG_WARN, "hello %d", 5);
  tusc_log_msg(TUSC_LOG_INFO, "quote \" here");
  tusc_log_msg(TUSC_LOG_DEBUG, "not shown");
  tusc_log_event(TUSC_LOG_DEBUG, "NotShown", "id", "x", NULL);
  char *out = capture_end(NULL);

  static const char *want[] = {
      " level=INFO event=UploadCreated id=abc size=42\n",
      " level=ERROR event=ChunkWriteFailed id=abc error=\"no space left\"\n",
      " level=WARN msg=\"hello 5\"\n",
      " level=INFO msg=\"quote \\\" here\"\n",
  };
  char *line = out;
  for (size_t i = 0; i < ARRAY_LEN(want); i++) {
    char *nl = strchr(line, '\n');
    assert_non_null(nl);
    char saved = nl[1];
    nl[1] = '\0';
    assert_text_line(line, want[i]);
    nl[1] = saved;
    line = nl + 1;
  }
  assert_string_equal(line, ""); /* debug lines were filtered */
  free(out);
}

static void test_json_shapes(void **state) {
  (void)state;
  capture_begin();
  tusc_log_event(TUSC_LOG_INFO, "UploadCreated", "id", "abc", "size", "42", NULL);
  tusc_log_msg(TUSC_LOG_ERROR, "disk %s", "full");
  tusc_log_msg(TUSC_LOG_DEBUG, "not shown");
  char *out = capture_end(NULL);
  static const char *want[] = {
      "\",\"level\":\"INFO\",\"event\":\"UploadCreated\",\"id\":\"abc\",\"size\":\"42\"}\n",
      "\",\"level\":\"ERROR\",\"msg\":\"disk full\"}\n",
  };
  char *line = out;
  for (size_t i = 0; i < ARRAY_LEN(want); i++) {
    char *nl = strchr(line, '\n');
    assert_non_null(nl);
    char saved = nl[1];
    nl[1] = '\0';
    assert_json_line(line, want[i]);
    nl[1] = saved;
    line = nl + 1;
  }
  assert_string_equal(line, "");
  free(out);
}

static void test_levels(void **state) {
  (void)state;
  tusc_log_setup(TUSC_LOG_WARN, TUSC_LOG_TEXT);
  assert_false(tusc_log_enabled(TUSC_LOG_DEBUG));
  assert_false(tusc_log_enabled(TUSC_LOG_INFO));
  assert_true(tusc_log_enabled(TUSC_LOG_WARN));
  assert_true(tusc_log_enabled(TUSC_LOG_ERROR));
  capture_begin();
  TUSC_LOG(TUSC_LOG_INFO, "hidden %d", 1);
  TUSC_LOG(TUSC_LOG_WARN, "shown %d", 2);
  char *out = capture_end(NULL);
  assert_text_line(out, " level=WARN msg=\"shown 2\"\n");
  free(out);
  tusc_log_setup(TUSC_LOG_DEBUG, TUSC_LOG_TEXT);
  capture_begin();
  tusc_log_msg(TUSC_LOG_DEBUG, "dbg");
  out = capture_end(NULL);
  assert_text_line(out, " level=DEBUG msg=\"dbg\"\n");
  free(out);
}

/* Messages longer than the stack buffer go through the heap path intact. */
static void test_long_message(void **state) {
  (void)state;
  char big[3000];
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  capture_begin();
  tusc_log_msg(TUSC_LOG_INFO, "%s", big);
  size_t len;
  char *out = capture_end(&len);
  char *want = malloc(sizeof(big) + 64);
  assert_non_null(want);
  snprintf(want, sizeof(big) + 64, " level=INFO msg=\"%s\"\n", big);
  assert_text_line(out, want);
  free(want);
  free(out);
}

/* A hostile value cannot make a line grow without bound. */
static void test_huge_value_truncated(void **state) {
  (void)state;
  size_t n = 200 * 1024;
  char *big = malloc(n + 1);
  assert_non_null(big);
  memset(big, 'y', n);
  big[n] = '\0';
  capture_begin();
  tusc_log_event(TUSC_LOG_INFO, "Big", "v", big, NULL);
  tusc_log_event(TUSC_LOG_INFO, "After", NULL);
  size_t len;
  char *out = capture_end(&len);
  char *nl = strchr(out, '\n');
  assert_non_null(nl);
  size_t first = (size_t)(nl - out) + 1;
  assert_true(first <= 64 * 1024);
  assert_true(first > 60 * 1024);
  assert_memory_equal(nl - 3, "...", 3);
  assert_text_line(nl + 1, " level=INFO event=After\n");
  free(out);
  free(big);
}

/* A cut JSON line is still one valid object; escapes are never split. */
static void test_huge_value_json(void **state) {
  (void)state;
  size_t n = 100 * 1024;
  char *big = malloc(n + 1);
  assert_non_null(big);
  for (size_t i = 0; i < n; i++)
    big[i] = (i % 7 == 0) ? '"' : (i % 11 == 0) ? '\x01' : 'z';
  big[n] = '\0';
  static const char *shapes[][4] = {
      {"v", NULL, "w", "tail"},  /* cut inside the value of v; w dropped */
      {"a", "short", "v", NULL}, /* a survives, v is cut */
  };
  for (size_t k = 0; k < ARRAY_LEN(shapes); k++) {
    capture_begin();
    tusc_log_event(TUSC_LOG_INFO, "Big", shapes[k][0], shapes[k][1] ? shapes[k][1] : big,
                   shapes[k][2], shapes[k][3] ? shapes[k][3] : big, NULL);
    size_t len;
    char *out = capture_end(&len);
    assert_true(len <= 64 * 1024);
    assert_int_equal(out[len - 1], '\n');
    assert_non_null(strstr(out, "...\"}\n"));
    json_error_t jerr;
    json_t *obj = json_loads(out, 0, &jerr);
    if (obj == NULL)
      fail_msg("shape %zu: cut line is not valid JSON: %s", k, jerr.text);
    assert_string_equal(json_string_value(json_object_get(obj, "event")), "Big");
    if (k == 0)
      assert_null(json_object_get(obj, "w"));
    if (k == 1)
      assert_string_equal(json_string_value(json_object_get(obj, "a")), "short");
    assert_true(json_string_length(json_object_get(obj, "v")) > 30 * 1024);
    json_decref(obj);
    free(out);
  }
  free(big);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_text_event_values, setup_text),
      cmocka_unit_test_setup(test_json_event_values, setup_json),
      cmocka_unit_test_setup(test_text_shapes, setup_text),
      cmocka_unit_test_setup(test_json_shapes, setup_json),
      cmocka_unit_test_setup(test_levels, setup_text),
      cmocka_unit_test_setup(test_long_message, setup_text),
      cmocka_unit_test_setup(test_huge_value_truncated, setup_text),
      cmocka_unit_test_setup(test_huge_value_json, setup_json),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

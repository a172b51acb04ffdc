/* Unit tests for src/tus/headers.c: table-driven, every parser fed good and hostile input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"
#include "tus/headers.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Table checks name the failing row, so a red test says which input broke. */
#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond))                                                                                   \
      fail_msg("row %zu (\"%s\"): %s", i, case_in, #cond);                                         \
  } while (0)

/* ---- sizes ---- */

struct size_case {
  const char *in;
  int err;
  int64_t want;
};

static void test_parse_size(void **state) {
  (void)state;
  static const struct size_case cases[] = {
      {"", TUSC_EINVALID_HEADER, 0},
      {"0", 0, 0},
      {"42", 0, 42},
      {"007", 0, 7}, /* leading zeros are still digits, as tusd accepts them */
      {"+1", TUSC_EINVALID_HEADER, 0},
      {"-1", TUSC_EINVALID_HEADER, 0},
      {" 1", TUSC_EINVALID_HEADER, 0},
      {"1 ", TUSC_EINVALID_HEADER, 0},
      {"0x10", TUSC_EINVALID_HEADER, 0},
      {"1e3", TUSC_EINVALID_HEADER, 0},
      {"1.0", TUSC_EINVALID_HEADER, 0},
      {"9223372036854775807", 0, INT64_MAX},
      {"09223372036854775807", 0, INT64_MAX},
      {"9223372036854775808", TUSC_EINVALID_HEADER, 0},
      {"9223372036854775810", TUSC_EINVALID_HEADER, 0},
      {"18446744073709551616", TUSC_EINVALID_HEADER, 0},
      {"123456789012345678901234567890", TUSC_EINVALID_HEADER, 0},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    int64_t v = -12345;
    int err = tusc_parse_size(cases[i].in, strlen(cases[i].in), &v);
    const char *case_in = cases[i].in;
    CHECK((err) == (cases[i].err));
    if (err == 0)
      CHECK(v == cases[i].want);
    else
      assert_true(v == -12345); /* untouched on failure */
  }
}

static void test_parse_size_uses_length(void **state) {
  (void)state;
  int64_t v = 0;
  /* Not NUL-terminated at the length: "12" out of "123". */
  assert_int_equal(tusc_parse_size("123", 2, &v), 0);
  assert_true(v == 12);
  assert_int_equal(tusc_parse_size("1\0002", 3, &v), TUSC_EINVALID_HEADER);
}

/* ---- Forwarded ---- */

struct fwd_case {
  const char *in;
  int err;
  const char *host;
  const char *proto;
  const char *for_addr;
};

static void test_forwarded(void **state) {
  (void)state;
  static const struct fwd_case cases[] = {
      {"for=1.2.3.4;proto=https;host=a.example", 0, "a.example", "https", "1.2.3.4"},
      {"For=1.2.3.4;PROTO=HTTPS;Host=a.example", 0, "a.example", "https", "1.2.3.4"},
      {"host=\"a.example:8443\";proto=\"http\"", 0, "a.example:8443", "http", ""},
      {"for=\"[2001:db8::1]:4711\"", 0, "", "", "2001:db8::1"},
      {"for=\"[2001:db8::1]\"", 0, "", "", "2001:db8::1"},
      {"for=\"1.2.3.4:8080\"", 0, "", "", "1.2.3.4"},
      {"for=unknown", 0, "", "", ""},
      {"for=_hidden;proto=https", 0, "", "https", ""},
      {"for=\"_hidden:_port\"", 0, "", "", ""},
      {"for=1.2.3.4, for=5.6.7.8;host=evil.example", 0, "", "", "1.2.3.4"},
      {"proto=https;host=a.example,host=b.example", 0, "a.example", "https", ""},
      {"for=1.2.3.4; proto=https ; host=a.example", 0, "a.example", "https", "1.2.3.4"},
      {" , for=1.2.3.4", 0, "", "", "1.2.3.4"},
      {"proto=ftp;host=a.example", 0, "a.example", "", ""},
      {"by=10.0.0.1;for=1.2.3.4;ext=\"x y\"", 0, "", "", "1.2.3.4"},
      {"host=\"a\\.example\"", 0, "a.example", "", ""}, /* quoted-pair */
      {"", 0, "", "", ""},
      {";;for=1.2.3.4", 0, "", "", "1.2.3.4"},
      /* bad syntax */
      {"for", TUSC_EINVALID_HEADER, 0, 0, 0},
      {"for=", TUSC_EINVALID_HEADER, 0, 0, 0},
      {"=1.2.3.4", TUSC_EINVALID_HEADER, 0, 0, 0},
      {"for = 1.2.3.4", TUSC_EINVALID_HEADER, 0, 0, 0},
      {"for=\"1.2.3.4", TUSC_EINVALID_HEADER, 0, 0, 0},
      {"for=[2001:db8::1]", TUSC_EINVALID_HEADER, 0, 0, 0}, /* must be quoted */
      {"for=\"[2001:db8::1\"", TUSC_EINVALID_HEADER, 0, 0, 0},
      {"for=\"[1.2.3.4]\"", TUSC_EINVALID_HEADER, 0, 0, 0},
      {"for=1.2.3.999", TUSC_EINVALID_HEADER, 0, 0, 0},
      {"for=\"1.2.3.4:99999\"", TUSC_EINVALID_HEADER, 0, 0, 0},
      {"for=example.com", TUSC_EINVALID_HEADER, 0, 0, 0},
      {"for=1.2.3.4 x", TUSC_EINVALID_HEADER, 0, 0, 0},
      {"for=1.2.3.4;for=5.6.7.8", TUSC_EINVALID_HEADER, 0, 0, 0},
      {"host=\"a example\"", TUSC_EINVALID_HEADER, 0, 0, 0},
      {"host=\"a/b\"", TUSC_EINVALID_HEADER, 0, 0, 0},
      {"host=\"user@a\"", TUSC_EINVALID_HEADER, 0, 0, 0},
      {"host=\"a\rb\"", TUSC_EINVALID_HEADER, 0, 0, 0},
      {"host=\"a\\", TUSC_EINVALID_HEADER, 0, 0, 0},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    const struct fwd_case *c = &cases[i];
    const char *case_in = c->in;
    tusc_forwarded_t f;
    memset(&f, 'X', sizeof(f));
    int err = tusc_forwarded_parse(c->in, strlen(c->in), &f);
    CHECK((err) == (c->err));
    if (err != 0)
      continue;
    CHECK(strcmp(f.host, c->host) == 0);
    CHECK(strcmp(f.proto, c->proto) == 0);
    CHECK(strcmp(f.for_addr, c->for_addr) == 0);
  }
}

/* Every element of a list, one call each; an invalid element stops the walk. */
static void test_forwarded_next(void **state) {
  (void)state;
  const char *in = " , for=1.1.1.1;proto=https,, for=\"[2001:db8::1]:80\" , host=x.example,";
  size_t len = strlen(in), pos = 0;
  tusc_forwarded_t f;
  assert_int_equal(tusc_forwarded_parse_next(in, len, &pos, &f), 0);
  assert_string_equal(f.for_addr, "1.1.1.1");
  assert_string_equal(f.proto, "https");
  assert_int_equal(tusc_forwarded_parse_next(in, len, &pos, &f), 0);
  assert_string_equal(f.for_addr, "2001:db8::1");
  assert_int_equal(tusc_forwarded_parse_next(in, len, &pos, &f), 0);
  assert_string_equal(f.for_addr, "");
  assert_string_equal(f.host, "x.example");
  size_t end = pos;
  assert_int_equal(tusc_forwarded_parse_next(in, len, &pos, &f), TUSC_EINVALID_HEADER);
  assert_int_equal(pos, end);

  const char *bad = "for=1.1.1.1, for=1.2.3, for=2.2.2.2";
  pos = 0;
  assert_int_equal(tusc_forwarded_parse_next(bad, strlen(bad), &pos, &f), 0);
  end = pos;
  assert_int_equal(tusc_forwarded_parse_next(bad, strlen(bad), &pos, &f), TUSC_EINVALID_HEADER);
  assert_int_equal(pos, end);
  pos = 0;
  assert_int_equal(tusc_forwarded_parse_next(NULL, 0, &pos, &f), TUSC_EINVALID_HEADER);
}

/* ---- X-Forwarded-For ---- */

struct xff_case {
  const char *in;
  int err;
  const char *want;
};

static void test_xff(void **state) {
  (void)state;
  static const struct xff_case cases[] = {
      {"1.2.3.4", 0, "1.2.3.4"},
      {"1.2.3.4, 5.6.7.8", 0, "1.2.3.4"},
      {"  1.2.3.4  ,5.6.7.8", 0, "1.2.3.4"},
      {"2001:db8::1", 0, "2001:db8::1"},
      {"::ffff:1.2.3.4, 10.0.0.1", 0, "::ffff:1.2.3.4"},
      {"[2001:db8::1]:443", 0, "2001:db8::1"},
      {"1.2.3.4:5678", 0, "1.2.3.4"},
      {"", TUSC_EINVALID_HEADER, NULL},
      {" , 1.2.3.4", TUSC_EINVALID_HEADER, NULL},
      {"unknown", TUSC_EINVALID_HEADER, NULL},
      {"example.com", TUSC_EINVALID_HEADER, NULL},
      {"1.2.3", TUSC_EINVALID_HEADER, NULL},
      {"1.2.3.4.5", TUSC_EINVALID_HEADER, NULL},
      {"256.1.1.1", TUSC_EINVALID_HEADER, NULL},
      {"1.2.3.4 5.6.7.8", TUSC_EINVALID_HEADER, NULL},
      {"2001:db8::1::2", TUSC_EINVALID_HEADER, NULL},
      {"fe80::1%eth0", TUSC_EINVALID_HEADER, NULL},
      {"1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb:cccc:dddd:eeee:ffff:0000",
       TUSC_EINVALID_HEADER, NULL},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    const char *case_in = cases[i].in;
    char out[64] = "untouched";
    int err = tusc_xff_first(cases[i].in, strlen(cases[i].in), out);
    CHECK((err) == (cases[i].err));
    if (err == 0)
      CHECK(strcmp(out, cases[i].want) == 0);
    else
      CHECK(strcmp(out, "untouched") == 0);
  }
}

/* ---- Host ---- */

struct host_case {
  const char *in;
  bool valid;
};

static void test_host_valid(void **state) {
  (void)state;
  static char long_host[257];
  static char max_host[256];
  memset(long_host, 'a', 256);
  memset(max_host, 'a', 255);
  const struct host_case cases[] = {
      {"example.com", true},
      {"example.com:8080", true},
      {"localhost:1", true},
      {"localhost:65535", true},
      {"127.0.0.1", true},
      {"127.0.0.1:1080", true},
      {"[::1]", true},
      {"[::1]:1080", true},
      {"[2001:db8::1]:443", true},
      {"xn--bcher-kva.example", true},
      {"my_host-1.example", true},
      {"a%41b", true},
      {max_host, true},
      {long_host, false},
      {"", false},
      {":80", false},
      {"example.com:", false},
      {"example.com:0", false},
      {"example.com:65536", false},
      {"example.com:123456", false},
      {"example.com:8a", false},
      {"example.com:80:80", false},
      {"user@example.com", false},
      {"user:pw@example.com", false},
      {"exa mple.com", false},
      {"example.com/path", false},
      {"example.com\\x", false},
      {"example.com\r\nX-Evil: 1", false},
      {"example.com\x01", false},
      {"ex\xc3\xa4mple.com", false},
      {"::1", false},
      {"[::1", false},
      {"[::1]x", false},
      {"[::1]:", false},
      {"[example.com]", false},
      {"a%4", false},
      {"a%zz", false},
      {"exa\"mple", false},
      {"exa<mple", false},
      {"example.com?x", false},
      {"example.com#x", false},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    const char *case_in = cases[i].in;
    CHECK((tusc_host_valid(cases[i].in, strlen(cases[i].in))) == (cases[i].valid));
  }
  assert_false(tusc_host_valid("a\0b", 3));
  assert_true(tusc_host_valid("a.example:80/x", 12)); /* only len bytes are looked at */
}

/* ---- URL decode ---- */

struct url_case {
  const char *in;
  long want_len;
  const char *want;
};

static void test_url_decode(void **state) {
  (void)state;
  static const struct url_case cases[] = {
      {"abc", 3, "abc"}, {"", 0, ""},       {"a%20b", 3, "a b"},       {"%2e%2E", 2, ".."},
      {"%2F", 1, "/"},   {"a+b", 3, "a+b"}, {"%c3%a9", 2, "\xc3\xa9"}, {"%00", -1, NULL},
      {"a%", -1, NULL},  {"a%2", -1, NULL}, {"a%2g", -1, NULL},        {"%%41", -1, NULL},
      {"%g0", -1, NULL},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    const char *case_in = cases[i].in;
    char out[16];
    long n = tusc_url_decode(cases[i].in, strlen(cases[i].in), out, sizeof(out));
    CHECK((n) == (cases[i].want_len));
    if (n >= 0) {
      CHECK(memcmp(out, cases[i].want, (size_t)n + 1) == 0);
    }
  }
  char small[4];
  assert_int_equal(tusc_url_decode("abc", 3, small, sizeof(small)), 3);
  assert_int_equal(tusc_url_decode("abcd", 4, small, sizeof(small)), -1);
  assert_int_equal(tusc_url_decode("%41%42%43", 9, small, sizeof(small)), 3);
  assert_string_equal(small, "ABC");
  assert_int_equal(tusc_url_decode("a\0b", 3, small, sizeof(small)), -1);
  assert_int_equal(tusc_url_decode("a%2", 2, small, sizeof(small)), -1); /* cut escape */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_size),
      cmocka_unit_test(test_parse_size_uses_length),
      cmocka_unit_test(test_forwarded),
      cmocka_unit_test(test_forwarded_next),
      cmocka_unit_test(test_xff),
      cmocka_unit_test(test_host_valid),
      cmocka_unit_test(test_url_decode),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

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

/* ---- Upload-Metadata ---- */

struct md_pair {
  const char *key;
  const char *value;
};

struct md_case {
  const char *in;
  int err;
  size_t count;
  struct md_pair pairs[4];
};

static void test_metadata_parse(void **state) {
  (void)state;
  static const struct md_case cases[] = {
      {"", 0, 0, {{0}}},
      {"   ", 0, 0, {{0}}},
      {"filename d29ybGQ=", 0, 1, {{"filename", "world"}}},
      {"filename d29ybGQ=,is_confidential", 0, 2, {{"filename", "world"}, {"is_confidential", ""}}},
      {"a YQ==, b YmI=,c Y2Nj", 0, 3, {{"a", "a"}, {"b", "bb"}, {"c", "ccc"}}},
      {"  a YQ==  ,  b  ", 0, 2, {{"a", "a"}, {"b", ""}}},
      {"key", 0, 1, {{"key", ""}}},
      {"k!#$%&'*+-.^_`|~\"/ YQ==", 0, 1, {{"k!#$%&'*+-.^_`|~\"/", "a"}}},
      {"CaseA YQ==,casea YQ==", 0, 2, {{"CaseA", "a"}, {"casea", "a"}}},
      /* duplicates */
      {"a YQ==,a YQ==", TUSC_EINVALID_METADATA, 0, {{0}}},
      {"a,a", TUSC_EINVALID_METADATA, 0, {{0}}},
      {"a YQ==,b,a", TUSC_EINVALID_METADATA, 0, {{0}}},
      /* bad base64 */
      {"a Y", TUSC_EINVALID_METADATA, 0, {{0}}},
      {"a YQ", TUSC_EINVALID_METADATA, 0, {{0}}}, /* unpadded */
      {"a YQ=", TUSC_EINVALID_METADATA, 0, {{0}}},
      {"a YR==", TUSC_EINVALID_METADATA, 0, {{0}}}, /* non-canonical trailing bits */
      {"a Y*==", TUSC_EINVALID_METADATA, 0, {{0}}},
      {"a YQ==YQ==", TUSC_EINVALID_METADATA, 0, {{0}}}, /* padding in the middle */
      {"a d29y bGQ=", TUSC_EINVALID_METADATA, 0, {{0}}},
      {"a d29ybGQ-", TUSC_EINVALID_METADATA, 0, {{0}}}, /* url-safe alphabet */
      /* separators */
      {"a  YQ==", TUSC_EINVALID_METADATA, 0, {{0}}}, /* two spaces */
      {"a\tYQ==", TUSC_EINVALID_METADATA, 0, {{0}}},
      {"a YQ==,", TUSC_EINVALID_METADATA, 0, {{0}}}, /* trailing comma */
      {",a YQ==", TUSC_EINVALID_METADATA, 0, {{0}}},
      {"a YQ==,,b YQ==", TUSC_EINVALID_METADATA, 0, {{0}}},
      {"a YQ==, ,b YQ==", TUSC_EINVALID_METADATA, 0, {{0}}},
      {",", TUSC_EINVALID_METADATA, 0, {{0}}},
      /* keys */
      {" YQ==", 0, 1, {{"YQ==", ""}}}, /* leading space is trimmed: the key is "YQ==" */
      {"k\xc3\xa9 YQ==", TUSC_EINVALID_METADATA, 0, {{0}}},
      {"k\x01 YQ==", TUSC_EINVALID_METADATA, 0, {{0}}},
      {"k\x7f", TUSC_EINVALID_METADATA, 0, {{0}}},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    const struct md_case *c = &cases[i];
    const char *case_in = c->in;
    tusc_metadata_t md = {(tusc_metadata_pair_t *)(uintptr_t)1, 99};
    int err = tusc_metadata_parse(c->in, strlen(c->in), &md);
    CHECK((err) == (c->err));
    if (err != 0) {
      CHECK(md.pairs == (tusc_metadata_pair_t *)(uintptr_t)1 && md.count == 99);
      continue;
    }
    CHECK((md.count) == (c->count));
    for (size_t k = 0; k < c->count; k++) {
      CHECK(strcmp(md.pairs[k].key, c->pairs[k].key) == 0);
      CHECK((md.pairs[k].value_len) == (strlen(c->pairs[k].value)));
      CHECK(memcmp(md.pairs[k].value, c->pairs[k].value, md.pairs[k].value_len) == 0);
      CHECK((md.pairs[k].value[md.pairs[k].value_len]) == ('\0'));
      const tusc_metadata_pair_t *got = tusc_metadata_get(&md, c->pairs[k].key);
      CHECK((got) == (&md.pairs[k]));
    }
    tusc_metadata_dispose(&md);
    assert_null(md.pairs);
    CHECK((md.count) == (0));
  }
}

static void test_metadata_key_with_comma_or_space(void **state) {
  (void)state;
  tusc_metadata_t md = {NULL, 0};
  /* A comma always splits; "a,b YQ==" is two pairs, not a key "a,b". */
  assert_int_equal(tusc_metadata_parse("a,b YQ==", 8, &md), 0);
  assert_int_equal(md.count, 2);
  assert_string_equal(md.pairs[0].key, "a");
  assert_string_equal(md.pairs[1].key, "b");
  tusc_metadata_dispose(&md);
  /* A key cannot contain a space: "my key YQ==" makes "key" the value and then fails. */
  assert_int_equal(tusc_metadata_parse("my key YQ==", 11, &md), TUSC_EINVALID_METADATA);
}

static void test_metadata_binary_value(void **state) {
  (void)state;
  tusc_metadata_t md = {NULL, 0};
  /* "AAEA" = 00 01 00 */
  assert_int_equal(tusc_metadata_parse("bin AAEA", 8, &md), 0);
  assert_int_equal(md.count, 1);
  assert_int_equal(md.pairs[0].value_len, 3);
  assert_memory_equal(md.pairs[0].value, "\x00\x01\x00", 3);
  tusc_metadata_dispose(&md);
  /* NUL bytes in the header itself are never accepted. */
  assert_int_equal(tusc_metadata_parse("a\0 YQ==", 7, &md), TUSC_EINVALID_METADATA);
  assert_int_equal(tusc_metadata_parse("a YQ==\0", 7, &md), TUSC_EINVALID_METADATA);
  /* Length is honoured: only "a YQ==" of the longer string is parsed. */
  assert_int_equal(tusc_metadata_parse("a YQ==,b", 6, &md), 0);
  assert_int_equal(md.count, 1);
  tusc_metadata_dispose(&md);
}

static void test_metadata_round_trip(void **state) {
  (void)state;
  static const char *inputs[] = {
      "",
      "filename d29ybGQ=",
      "filename d29ybGQ=,is_confidential",
      "a YQ==,b YmI=,c Y2Nj,empty",
      "bin AAEA,k!x YWJjZGVmZ2hp",
  };
  for (size_t i = 0; i < ARRAY_LEN(inputs); i++) {
    tusc_metadata_t md = {NULL, 0};
    assert_int_equal(tusc_metadata_parse(inputs[i], strlen(inputs[i]), &md), 0);
    char *s = tusc_metadata_format(&md);
    assert_non_null(s);
    assert_string_equal(s, inputs[i]);
    tusc_metadata_t again = {NULL, 0};
    assert_int_equal(tusc_metadata_parse(s, strlen(s), &again), 0);
    assert_int_equal(again.count, md.count);
    for (size_t k = 0; k < md.count; k++) {
      assert_string_equal(again.pairs[k].key, md.pairs[k].key);
      assert_int_equal(again.pairs[k].value_len, md.pairs[k].value_len);
      assert_memory_equal(again.pairs[k].value, md.pairs[k].value, md.pairs[k].value_len);
    }
    free(s);
    tusc_metadata_dispose(&md);
    tusc_metadata_dispose(&again);
  }
}

static void test_metadata_set_get(void **state) {
  (void)state;
  tusc_metadata_t md = {NULL, 0};
  assert_null(tusc_metadata_get(&md, "x"));
  assert_int_equal(tusc_metadata_set(&md, "filename", "a.txt", 5), 0);
  assert_int_equal(tusc_metadata_set(&md, "filetype", "text/plain", 10), 0);
  assert_int_equal(tusc_metadata_set(&md, "flag", NULL, 0), 0);
  assert_int_equal(md.count, 3);
  assert_int_equal(tusc_metadata_set(&md, "filename", "b\0c", 3), 0);
  assert_int_equal(md.count, 3);
  const tusc_metadata_pair_t *p = tusc_metadata_get(&md, "filename");
  assert_non_null(p);
  assert_int_equal(p->value_len, 3);
  assert_memory_equal(p->value, "b\0c", 4);
  p = tusc_metadata_get(&md, "flag");
  assert_non_null(p);
  assert_int_equal(p->value_len, 0);
  assert_string_equal(p->value, "");
  assert_null(tusc_metadata_get(&md, "FILENAME"));
  char *s = tusc_metadata_format(&md);
  assert_non_null(s);
  assert_string_equal(s, "filename YgBj,filetype dGV4dC9wbGFpbg==,flag");
  free(s);
  tusc_metadata_dispose(&md);
  tusc_metadata_dispose(&md); /* idempotent */
}

/* Keys that arrive through tusc_metadata_set (hooks, .info files) are not checked;
 * format must never emit a header that would not parse back. */
static void test_metadata_format_skips_bad_keys(void **state) {
  (void)state;
  tusc_metadata_t md = {NULL, 0};
  assert_int_equal(tusc_metadata_set(&md, "bad key", "x", 1), 0);
  assert_int_equal(tusc_metadata_set(&md, "good", "x", 1), 0);
  assert_int_equal(tusc_metadata_set(&md, "a,b", "x", 1), 0);
  assert_int_equal(tusc_metadata_set(&md, "crlf\r\nX-Evil: 1", "x", 1), 0);
  assert_int_equal(tusc_metadata_set(&md, "", "x", 1), 0);
  assert_int_equal(tusc_metadata_set(&md, "k\xc3\xa9", "x", 1), 0);
  assert_int_equal(tusc_metadata_set(&md, "also_good", NULL, 0), 0);
  char *s = tusc_metadata_format(&md);
  assert_non_null(s);
  assert_string_equal(s, "good eA==,also_good");
  free(s);
  tusc_metadata_dispose(&md);
  md.pairs = NULL;
  assert_int_equal(tusc_metadata_set(&md, "only bad", "x", 1), 0);
  s = tusc_metadata_format(&md);
  assert_non_null(s);
  assert_string_equal(s, "");
  free(s);
  tusc_metadata_dispose(&md);
}

/* ---- upload IDs ---- */

struct id_case {
  const char *in;
  size_t len; /* 0 = strlen */
  bool valid;
};

static void test_id_valid(void **state) {
  (void)state;
  static char long_id[TUSC_ID_MAX + 2];
  static char max_id[TUSC_ID_MAX + 1];
  static char long_seg[TUSC_ID_SEGMENT_MAX + 2];
  static char max_seg[TUSC_ID_SEGMENT_MAX + 1];
  memset(long_seg, 'a', TUSC_ID_SEGMENT_MAX + 1);
  memset(max_seg, 'a', TUSC_ID_SEGMENT_MAX);
  /* 255 bytes made of segments of 127 'a' joined by '/': "aaa…/aaa…" (127+1+127). */
  memset(max_id, 'a', TUSC_ID_MAX);
  max_id[127] = '/';
  memset(long_id, 'a', TUSC_ID_MAX + 1);
  long_id[127] = '/';
  long_id[255] = '/';

  const struct id_case cases[] = {
      {"0123456789abcdef0123456789abcdef", 0, true},
      {"a", 0, true},
      {"A-Z_a.z-09", 0, true},
      {"tenant/2026/upload.bin", 0, true},
      {"a.b", 0, true},
      {"a..b", 0, true}, /* dots inside a segment are fine; only whole-dot segments hurt */
      {"-x", 0, true},
      {max_seg, 0, true},
      {long_seg, 0, false},
      {max_id, 0, true},
      {long_id, 0, false},
      {"", 0, false},
      {"a/b", 0, true},
      {".", 0, false},
      {"..", 0, false},
      {"...", 0, false},
      {"a/../b", 0, false},
      {"a/./b", 0, false},
      {"../a", 0, false},
      {"a/..", 0, false},
      {".hidden", 0, false},
      {"trailing.", 0, false},
      {"%2e", 0, false},
      {"%2e%2e", 0, false},
      {"a%2fb", 0, false},
      {"a\\b", 0, false},
      {"..\\a", 0, false},
      {"a\0b", 3, false},
      {"ab\0", 3, false},
      {"/a", 0, false},
      {"a/", 0, false},
      {"/", 0, false},
      {"a//b", 0, false},
      {"a b", 0, false},
      {"a:b", 0, false},
      {"a\nb", 0, false},
      {"\xc3\xa9", 0, false},
      {"x.info", 0, false},
      {"x.INFO", 0, false},
      {"x.lock", 0, false},
      {"x.tmp", 0, false},
      {"d/x.info", 0, false},
      {"x.info/y", 0, false},
      {"x.information", 0, true},
      {"info", 0, true},
      {"x_info", 0, true},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    size_t len = cases[i].len ? cases[i].len : strlen(cases[i].in);
    const char *case_in = cases[i].in;
    CHECK((tusc_id_valid(cases[i].in, len)) == (cases[i].valid));
  }
}

static void test_id_generate(void **state) {
  (void)state;
  char a[33], b[33];
  assert_int_equal(tusc_id_generate(a), 0);
  assert_int_equal(tusc_id_generate(b), 0);
  assert_int_equal(strlen(a), 32);
  for (size_t i = 0; i < 32; i++)
    assert_non_null(strchr("0123456789abcdef", a[i]));
  assert_string_not_equal(a, b);
  assert_true(tusc_id_valid(a, 32));
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
      cmocka_unit_test(test_metadata_parse),
      cmocka_unit_test(test_metadata_key_with_comma_or_space),
      cmocka_unit_test(test_metadata_binary_value),
      cmocka_unit_test(test_metadata_round_trip),
      cmocka_unit_test(test_metadata_set_get),
      cmocka_unit_test(test_metadata_format_skips_bad_keys),
      cmocka_unit_test(test_id_valid),
      cmocka_unit_test(test_id_generate),
      cmocka_unit_test(test_forwarded),
      cmocka_unit_test(test_forwarded_next),
      cmocka_unit_test(test_xff),
      cmocka_unit_test(test_host_valid),
      cmocka_unit_test(test_url_decode),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

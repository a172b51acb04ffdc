/* Unit tests for src/tus/checksum.c: header parsing (table-driven), known digests of
 * every algorithm, streaming in pieces, and mismatch detection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/base64.h"
#include "common/error.h"
#include "tus/checksum.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Digests of "hello world" (coreutils sha1sum/md5sum/…, `crc32` of python's zlib). */
static const struct {
  enum tusc_checksum_algo algo;
  const char *name;
  const char *b64;
} hello_vectors[] = {
    {TUSC_CHECKSUM_SHA1, "sha1", "Kq5sNclPz7QV2+lfQIuc6R7oRu0="},
    {TUSC_CHECKSUM_MD5, "md5", "XrY7u+Ae7tCTyyK7j1rNww=="},
    {TUSC_CHECKSUM_SHA256, "sha256", "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek="},
    {TUSC_CHECKSUM_SHA512, "sha512",
     "MJ7MSJwS1utMxA9QyQLytNDtd+5RGnx6m808qG1M2G+YndNbxf9JlnDaNCVbRbDP2DDoH2Bdz33FVC6TrpzXbw=="},
    {TUSC_CHECKSUM_CRC32, "crc32", "DUoRhQ=="},
};

static void test_parse_valid(void **state) {
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(hello_vectors); i++) {
    char value[160];
    snprintf(value, sizeof(value), "%s %s", hello_vectors[i].name, hello_vectors[i].b64);
    tusc_checksum_expect_t e;
    memset(&e, 0xAA, sizeof(e));
    assert_int_equal(tusc_checksum_parse(value, strlen(value), &e), 0);
    assert_int_equal(e.algo, hello_vectors[i].algo);
    assert_int_equal(e.digest_len, tusc_checksum_digest_len(hello_vectors[i].algo));
    unsigned char want[80];
    long n = tusc_base64_decode(hello_vectors[i].b64, strlen(hello_vectors[i].b64), want);
    assert_int_equal(n, (long)e.digest_len);
    assert_memory_equal(e.digest, want, e.digest_len);
  }
  /* Names are case-insensitive. */
  tusc_checksum_expect_t e;
  const char *upper = "SHA1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=";
  assert_int_equal(tusc_checksum_parse(upper, strlen(upper), &e), 0);
  assert_int_equal(e.algo, TUSC_CHECKSUM_SHA1);
  /* `len` bounds the value: trailing bytes past it are not looked at. */
  const char *longer = "md5 XrY7u+Ae7tCTyyK7j1rNww==GARBAGE";
  assert_int_equal(tusc_checksum_parse(longer, strlen("md5 XrY7u+Ae7tCTyyK7j1rNww=="), &e), 0);
  assert_int_equal(e.algo, TUSC_CHECKSUM_MD5);
}

static void test_parse_rejects(void **state) {
  (void)state;
  static const struct {
    const char *value;
    int err;
  } bad[] = {
      {"", TUSC_EINVALID_CHECKSUM},
      {"sha1", TUSC_EINVALID_CHECKSUM},
      {"sha1 ", TUSC_EINVALID_CHECKSUM},
      {" sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=", TUSC_EINVALID_CHECKSUM},
      {"sha1  Kq5sNclPz7QV2+lfQIuc6R7oRu0=", TUSC_EINVALID_CHECKSUM},
      {"sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0= ", TUSC_EINVALID_CHECKSUM},
      {"sha1\tKq5sNclPz7QV2+lfQIuc6R7oRu0=", TUSC_EINVALID_CHECKSUM},
      {"sha1:Kq5sNclPz7QV2+lfQIuc6R7oRu0=", TUSC_EINVALID_CHECKSUM},
      {"sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0", TUSC_EINVALID_CHECKSUM},      /* unpadded */
      {"sha1 Kq5sNclPz7QV2-lfQIuc6R7oRu0=", TUSC_EINVALID_CHECKSUM},     /* url alphabet */
      {"sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=AAAA", TUSC_EINVALID_CHECKSUM}, /* too long */
      {"sha1 XrY7u+Ae7tCTyyK7j1rNww==", TUSC_EINVALID_CHECKSUM},         /* md5 length */
      {"sha256 Kq5sNclPz7QV2+lfQIuc6R7oRu0=", TUSC_EINVALID_CHECKSUM},   /* sha1 length */
      {"crc32 DUoRhQ", TUSC_EINVALID_CHECKSUM},
      {"crc32 DUoRhQAA", TUSC_EINVALID_CHECKSUM},
      {"sh@1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=", TUSC_EINVALID_CHECKSUM},
      {"sha3 Kq5sNclPz7QV2+lfQIuc6R7oRu0=", TUSC_ECHECKSUM_ALGORITHM},
      {"crc32c DUoRhQ==", TUSC_ECHECKSUM_ALGORITHM},
      {"blake2b XrY7u+Ae7tCTyyK7j1rNww==", TUSC_ECHECKSUM_ALGORITHM},
      {"sha-1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=", TUSC_ECHECKSUM_ALGORITHM},
      {"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx AAAA", TUSC_EINVALID_CHECKSUM},
  };
  for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
    tusc_checksum_expect_t e;
    memset(&e, 0x55, sizeof(e));
    tusc_checksum_expect_t before = e;
    int rc = tusc_checksum_parse(bad[i].value, strlen(bad[i].value), &e);
    if (rc != bad[i].err)
      fail_msg("%s: got %d, want %d", bad[i].value, rc, bad[i].err);
    assert_memory_equal(&e, &before, sizeof(e)); /* untouched on failure */
  }
  tusc_checksum_expect_t e;
  assert_int_equal(tusc_checksum_parse(NULL, 0, &e), TUSC_EINVALID_CHECKSUM);
  /* An embedded NUL is not base64. */
  const char nul[] = "md5 XrY7u+Ae\0tCTyyK7j1rNww==";
  assert_int_equal(tusc_checksum_parse(nul, sizeof(nul) - 1, &e), TUSC_EINVALID_CHECKSUM);
}

#define SHA256_HELLO "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek="
#define SHA512_HELLO                                                                               \
  "MJ7MSJwS1utMxA9QyQLytNDtd+5RGnx6m808qG1M2G+YndNbxf9JlnDaNCVbRbDP2DDoH2Bdz33FVC6TrpzXbw=="

/* Content-Digest (RFC 9530): a Dictionary of Byte Sequences; sha-512 preferred. */
static void test_digest_field(void **state) {
  (void)state;
  static const struct {
    const char *value;
    int rc;
    bool found;
    enum tusc_checksum_algo algo;
  } cases[] = {
      {"sha-256=:" SHA256_HELLO ":", 0, true, TUSC_CHECKSUM_SHA256},
      {"sha-512=:" SHA512_HELLO ":", 0, true, TUSC_CHECKSUM_SHA512},
      /* both: the stronger is the one checked, whatever the order */
      {"sha-256=:" SHA256_HELLO ":, sha-512=:" SHA512_HELLO ":", 0, true, TUSC_CHECKSUM_SHA512},
      {"sha-512=:" SHA512_HELLO ":,sha-256=:" SHA256_HELLO ":", 0, true, TUSC_CHECKSUM_SHA512},
      /* parameters are allowed; unknown and deprecated algorithms are ignored */
      {"sha-256=:" SHA256_HELLO ":;x=1", 0, true, TUSC_CHECKSUM_SHA256},
      {"md5=:XrY7u+Ae7tCTyyK7j1rNww==:, sha-256=:" SHA256_HELLO ":", 0, true, TUSC_CHECKSUM_SHA256},
      {"unixsum=12345, sha-256=:" SHA256_HELLO ":", 0, true, TUSC_CHECKSUM_SHA256},
      /* padding may be left out (RFC 9651 §4.2.7) */
      {"sha-256=:uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek:", 0, true, TUSC_CHECKSUM_SHA256},
      /* nothing tusc can check */
      {"md5=:XrY7u+Ae7tCTyyK7j1rNww==:", 0, false, 0},
      {"blake3=:AAAA:, unixcksum=42", 0, false, 0},
      {"", 0, false, 0},
      /* malformed: not a dictionary, wrong type, wrong length, bad base64 */
      {"sha-256", TUSC_EINVALID_DIGEST, false, 0}, /* Boolean true */
      {"sha-256=" SHA256_HELLO, TUSC_EINVALID_DIGEST, false, 0},
      {"sha-256=\"" SHA256_HELLO "\"", TUSC_EINVALID_DIGEST, false, 0},
      {"sha-256=:" SHA512_HELLO ":", TUSC_EINVALID_DIGEST, false, 0},
      {"sha-256=:AAAA:", TUSC_EINVALID_DIGEST, false, 0},
      {"sha-256=:" SHA256_HELLO, TUSC_EINVALID_DIGEST, false, 0},
      {"SHA-256=:" SHA256_HELLO ":", TUSC_EINVALID_DIGEST, false, 0}, /* keys are lowercase */
      {"sha-256=:" SHA256_HELLO ":, sha-512=:AAAA:", TUSC_EINVALID_DIGEST, false, 0},
      {"sha-256=:uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvze:", TUSC_EINVALID_DIGEST, false, 0},
  };
  for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
    tusc_checksum_expect_t e;
    bool found = !cases[i].found;
    int rc = tusc_checksum_parse_digest_field(cases[i].value, strlen(cases[i].value), &e, &found);
    if (rc != cases[i].rc || found != cases[i].found)
      fail_msg("case %zu (%s): rc %d found %d", i, cases[i].value, rc, (int)found);
    if (!found)
      continue;
    assert_int_equal(e.algo, cases[i].algo);
    assert_int_equal(e.digest_len, tusc_checksum_digest_len(cases[i].algo));
    /* The parsed digest is the one of "hello world". */
    tusc_checksum_t *c = NULL;
    assert_int_equal(tusc_checksum_new(e.algo, &c), 0);
    assert_int_equal(tusc_checksum_update(c, "hello world", 11), 0);
    assert_int_equal(tusc_checksum_verify(c, &e), 0);
    tusc_checksum_free(c);
  }
  tusc_checksum_expect_t e;
  bool found = true;
  assert_int_equal(tusc_checksum_parse_digest_field(NULL, 0, &e, &found), TUSC_EINVALID_DIGEST);
  assert_false(found);
  /* Formatting gives back what parses to the same digest (Repr-Digest kept in .info). */
  const char *v = "sha-512=:" SHA512_HELLO ":";
  assert_int_equal(tusc_checksum_parse_digest_field(v, strlen(v), &e, &found), 0);
  char out[160];
  assert_int_equal(tusc_checksum_format_digest_field(&e, out, sizeof(out)), (int)strlen(v));
  assert_string_equal(out, v);
  char small[20];
  assert_int_equal(tusc_checksum_format_digest_field(&e, small, sizeof(small)), -1);
  e.algo = TUSC_CHECKSUM_MD5;
  e.digest_len = 16;
  assert_int_equal(tusc_checksum_format_digest_field(&e, out, sizeof(out)), -1);
}

static void test_errors_map(void **state) {
  (void)state;
  assert_int_equal(tusc_error_status(TUSC_ECHECKSUM_MISMATCH), 460);
  assert_string_equal(tusc_error_code(TUSC_ECHECKSUM_MISMATCH), "ERR_CHECKSUM_MISMATCH");
  assert_int_equal(tusc_error_status(TUSC_ECHECKSUM_ALGORITHM), 400);
  assert_int_equal(tusc_error_status(TUSC_EINVALID_CHECKSUM), 400);
}

static void expect_from_b64(enum tusc_checksum_algo algo, const char *b64,
                            tusc_checksum_expect_t *e) {
  e->algo = algo;
  long n = tusc_base64_decode(b64, strlen(b64), e->digest);
  assert_true(n > 0);
  e->digest_len = (size_t)n;
}

static void test_known_digests_streamed(void **state) {
  (void)state;
  const char *msg = "hello world";
  size_t len = strlen(msg);
  for (size_t i = 0; i < ARRAY_LEN(hello_vectors); i++) {
    /* Every split point: the digest must not depend on how the body arrived. */
    for (size_t split = 0; split <= len; split++) {
      tusc_checksum_t *c = NULL;
      assert_int_equal(tusc_checksum_new(hello_vectors[i].algo, &c), 0);
      assert_int_equal(tusc_checksum_update(c, msg, split), 0);
      assert_int_equal(tusc_checksum_update(c, msg + split, len - split), 0);
      tusc_checksum_expect_t e;
      expect_from_b64(hello_vectors[i].algo, hello_vectors[i].b64, &e);
      assert_int_equal(tusc_checksum_verify(c, &e), 0);
      /* Finished objects refuse more input and a second final. */
      assert_int_equal(tusc_checksum_update(c, "x", 1), TUSC_EINTERNAL);
      unsigned char out[TUSC_CHECKSUM_DIGEST_MAX];
      size_t n = 0;
      assert_int_equal(tusc_checksum_final(c, out, &n), TUSC_EINTERNAL);
      tusc_checksum_free(c);
    }
  }
}

static void test_mismatch(void **state) {
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(hello_vectors); i++) {
    tusc_checksum_t *c = NULL;
    assert_int_equal(tusc_checksum_new(hello_vectors[i].algo, &c), 0);
    assert_int_equal(tusc_checksum_update(c, "hello worle", 11), 0);
    tusc_checksum_expect_t e;
    expect_from_b64(hello_vectors[i].algo, hello_vectors[i].b64, &e);
    assert_int_equal(tusc_checksum_verify(c, &e), TUSC_ECHECKSUM_MISMATCH);
    tusc_checksum_free(c);
  }
  /* Empty body: the digest of nothing, not a match for anything else. */
  tusc_checksum_t *c = NULL;
  assert_int_equal(tusc_checksum_new(TUSC_CHECKSUM_SHA1, &c), 0);
  tusc_checksum_expect_t e;
  expect_from_b64(TUSC_CHECKSUM_SHA1, "2jmj7l5rSw0yVb/vlWAYkK/YBwk=", &e);
  assert_int_equal(tusc_checksum_verify(c, &e), 0);
  tusc_checksum_free(c);
  assert_int_equal(tusc_checksum_new(TUSC_CHECKSUM_CRC32, &c), 0);
  expect_from_b64(TUSC_CHECKSUM_CRC32, "AAAAAA==", &e);
  assert_int_equal(tusc_checksum_verify(c, &e), 0);
  tusc_checksum_free(c);
  /* Algorithm of the expectation must be the object's. */
  assert_int_equal(tusc_checksum_new(TUSC_CHECKSUM_MD5, &c), 0);
  expect_from_b64(TUSC_CHECKSUM_SHA1, "2jmj7l5rSw0yVb/vlWAYkK/YBwk=", &e);
  assert_int_equal(tusc_checksum_verify(c, &e), TUSC_EINVALID_ARGUMENT);
  tusc_checksum_free(c);
  tusc_checksum_free(NULL);
  assert_int_equal(tusc_checksum_new((enum tusc_checksum_algo)99, &c), TUSC_EINVALID_ARGUMENT);
}

/* A large input in odd pieces against crc32 of a single update (zlib's own
 * combination logic is not what we test; piecewise feeding through our wrapper is). */
static void test_large_piecewise(void **state) {
  (void)state;
  static unsigned char buf[1 << 20];
  for (size_t i = 0; i < sizeof(buf); i++)
    buf[i] = (unsigned char)(i * 2654435761u >> 13);
  for (int a = TUSC_CHECKSUM_SHA1; a <= TUSC_CHECKSUM_CRC32; a++) {
    tusc_checksum_t *whole = NULL, *parts = NULL;
    assert_int_equal(tusc_checksum_new((enum tusc_checksum_algo)a, &whole), 0);
    assert_int_equal(tusc_checksum_new((enum tusc_checksum_algo)a, &parts), 0);
    assert_int_equal(tusc_checksum_update(whole, buf, sizeof(buf)), 0);
    size_t off = 0, step = 1;
    while (off < sizeof(buf)) {
      size_t n = step < sizeof(buf) - off ? step : sizeof(buf) - off;
      assert_int_equal(tusc_checksum_update(parts, buf + off, n), 0);
      off += n;
      step = step * 3 + 7;
    }
    unsigned char d1[TUSC_CHECKSUM_DIGEST_MAX], d2[TUSC_CHECKSUM_DIGEST_MAX];
    size_t n1 = 0, n2 = 0;
    assert_int_equal(tusc_checksum_final(whole, d1, &n1), 0);
    assert_int_equal(tusc_checksum_final(parts, d2, &n2), 0);
    assert_int_equal(n1, tusc_checksum_digest_len((enum tusc_checksum_algo)a));
    assert_int_equal(n1, n2);
    assert_memory_equal(d1, d2, n1);
    tusc_checksum_free(whole);
    tusc_checksum_free(parts);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_valid),  cmocka_unit_test(test_parse_rejects),
      cmocka_unit_test(test_errors_map),   cmocka_unit_test(test_known_digests_streamed),
      cmocka_unit_test(test_mismatch),     cmocka_unit_test(test_large_piecewise),
      cmocka_unit_test(test_digest_field),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for src/common/base64.c: RFC 4648 vectors and non-canonical input, for the
 * padded standard alphabet and for unpadded base64url. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/base64.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

struct vector {
  const char *plain;
  const char *encoded;
};

/* RFC 4648 §10. */
static const struct vector rfc_vectors[] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

static void test_encode_vectors(void **state) {
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(rfc_vectors); i++) {
    char out[32];
    size_t plain_len = strlen(rfc_vectors[i].plain);
    size_t n = tusc_base64_encode((const unsigned char *)rfc_vectors[i].plain, plain_len, out);
    assert_int_equal(n, strlen(rfc_vectors[i].encoded));
    assert_string_equal(out, rfc_vectors[i].encoded);
    assert_true(n + 1 <= TUSC_BASE64_ENCODED_SIZE(plain_len));
  }
}

static void test_decode_vectors(void **state) {
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(rfc_vectors); i++) {
    unsigned char out[32];
    const char *enc = rfc_vectors[i].encoded;
    long n = tusc_base64_decode(enc, strlen(enc), out);
    assert_int_equal(n, (long)strlen(rfc_vectors[i].plain));
    assert_memory_equal(out, rfc_vectors[i].plain, (size_t)n);
    assert_true((size_t)n <= TUSC_BASE64_DECODED_MAX(strlen(enc)));
  }
}

static void test_decode_rejects(void **state) {
  (void)state;
  static const char *bad[] = {
      "Zg",       /* unpadded */
      "Zg=",      /* short padding */
      "Zg===",    /* too much padding */
      "Z===",     /* three pad characters */
      "====",     /* only padding */
      "Zh==",     /* nonzero unused bits (canonical is Zg==) */
      "Zm9=",     /* nonzero unused bits (canonical is Zm8=) */
      "Zg==Zg==", /* padding in the middle */
      "Z=g=",     /* padding before data */
      "Zm9v\n",   /* line break */
      "Zm 9v",    /* space */
      "Zm9-",     /* url-safe alphabet */
      "Zm9_",     /* url-safe alphabet */
      "Zm9\x80",  /* high byte */
      "Zm9v=",    /* length not a multiple of four */
  };
  for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
    unsigned char out[32];
    if (tusc_base64_decode(bad[i], strlen(bad[i]), out) != -1)
      fail_msg("accepted non-canonical \"%s\"", bad[i]);
  }
  unsigned char out[8];
  assert_int_equal(tusc_base64_decode("Zg\0=", 4, out), -1);   /* NUL inside */
  assert_int_equal(tusc_base64_decode("Zm9vYmFy", 4, out), 3); /* honours len */
}

static void test_round_trip_all_bytes(void **state) {
  (void)state;
  unsigned char in[256];
  for (size_t i = 0; i < sizeof(in); i++)
    in[i] = (unsigned char)(255 - i);
  /* Every length 0..256 exercises all three tail shapes with every byte value. */
  for (size_t len = 0; len <= sizeof(in); len++) {
    char enc[TUSC_BASE64_ENCODED_SIZE(256)];
    unsigned char dec[TUSC_BASE64_DECODED_MAX(sizeof(enc))];
    size_t n = tusc_base64_encode(in, len, enc);
    assert_int_equal(n + 1, TUSC_BASE64_ENCODED_SIZE(len));
    assert_int_equal(strlen(enc), n);
    long m = tusc_base64_decode(enc, n, dec);
    assert_int_equal(m, (long)len);
    assert_memory_equal(dec, in, len);
  }
}

/* RFC 4648 §10 without padding, and the two characters base64url changes. */
static const struct vector url_vectors[] = {
    {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},          {"foo", "Zm9v"},
    {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}, {"\xfb\xff\xbf", "-_-_"},
};

static void test_url_decode_vectors(void **state) {
  (void)state;
  for (size_t i = 0; i < ARRAY_LEN(url_vectors); i++) {
    unsigned char out[32];
    const char *enc = url_vectors[i].encoded;
    long n = tusc_base64url_decode(enc, strlen(enc), out);
    assert_int_equal(n, (long)strlen(url_vectors[i].plain));
    assert_memory_equal(out, url_vectors[i].plain, (size_t)n);
    assert_true((size_t)n <= strlen(enc) * 3 / 4);
  }
}

static void test_url_decode_rejects(void **state) {
  (void)state;
  static const char *bad[] = {
      "Zm9vYh",   /* nonzero unused bits (canonical is Zm9vYg) */
      "Zh",       /* nonzero unused bits (canonical is Zg) */
      "Zm9vYg==", /* padding */
      "Zg=",      /* padding */
      "Z",        /* impossible length */
      "Zm9vY",    /* impossible length */
      "+/+/",     /* standard alphabet */
      "Zm 9v",    /* space */
      "Zm9\x80",  /* high byte */
  };
  for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
    unsigned char out[32];
    if (tusc_base64url_decode(bad[i], strlen(bad[i]), out) != -1)
      fail_msg("accepted \"%s\"", bad[i]);
  }
  unsigned char out[8];
  assert_int_equal(tusc_base64url_decode("Zm9vYmFy", 4, out), 3); /* honours len */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_encode_vectors),     cmocka_unit_test(test_decode_vectors),
      cmocka_unit_test(test_decode_rejects),     cmocka_unit_test(test_round_trip_all_bytes),
      cmocka_unit_test(test_url_decode_vectors), cmocka_unit_test(test_url_decode_rejects),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

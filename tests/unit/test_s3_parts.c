/* Unit tests for src/store/s3_parts.c: the S3 store's part size and part numbers at the
 * edges (0 bytes, exactly the minimum, one byte over, exactly 10,000 parts, part 10,001). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "common/error.h"
#include "store/s3_parts.h"

#define MIB (INT64_C(1) << 20)

static void test_part_size(void **state) {
  (void)state;
  int64_t p = 0;
  /* Defaults: tusd's 50 MiB preferred, 5 MiB minimum. */
  assert_int_equal(tusc_s3_part_size(0, 0, 0, &p), 0);
  assert_int_equal(p, 50 * MIB);
  /* The minimum wins over a smaller preference. */
  assert_int_equal(tusc_s3_part_size(1 * MIB, 5 * MIB, 0, &p), 0);
  assert_int_equal(p, 5 * MIB);
  /* A lowered minimum (test servers) lets small parts through. */
  assert_int_equal(tusc_s3_part_size(64 * 1024, 64 * 1024, 0, &p), 0);
  assert_int_equal(p, 64 * 1024);
  /* -max-size that fits in 10,000 preferred parts exactly keeps the preference... */
  assert_int_equal(tusc_s3_part_size(5 * MIB, 5 * MIB, 10000 * 5 * MIB, &p), 0);
  assert_int_equal(p, 5 * MIB);
  /* ...one byte more grows the part by one byte, so that it still fits. */
  assert_int_equal(tusc_s3_part_size(5 * MIB, 5 * MIB, 10000 * 5 * MIB + 1, &p), 0);
  assert_int_equal(p, 5 * MIB + 1);
  int n = 0;
  assert_int_equal(tusc_s3_part_count(p, 10000 * 5 * MIB + 1, &n), 0);
  assert_int_equal(n, 10000);
  /* The largest upload S3 can hold: 10,000 parts of 5 GiB; one byte more is refused. */
  assert_int_equal(tusc_s3_part_size(5 * MIB, 5 * MIB, 10000 * TUSC_S3_PART_SIZE_MAX, &p), 0);
  assert_int_equal(p, TUSC_S3_PART_SIZE_MAX);
  assert_int_equal(tusc_s3_part_size(5 * MIB, 5 * MIB, 10000 * TUSC_S3_PART_SIZE_MAX + 1, &p),
                   TUSC_EUPLOAD_SIZE_EXCEEDED);
  /* Nonsense. */
  assert_int_equal(tusc_s3_part_size(-1, 0, 0, &p), TUSC_EINVALID_ARGUMENT);
  assert_int_equal(tusc_s3_part_size(0, TUSC_S3_PART_SIZE_MAX + 1, 0, &p), TUSC_EINVALID_ARGUMENT);
}

static void test_part_size_for(void **state) {
  (void)state;
  int64_t p = 0;
  assert_int_equal(tusc_s3_part_size_for(5 * MIB, -1, &p), 0); /* deferred */
  assert_int_equal(p, 5 * MIB);
  assert_int_equal(tusc_s3_part_size_for(5 * MIB, 0, &p), 0);
  assert_int_equal(p, 5 * MIB);
  assert_int_equal(tusc_s3_part_size_for(5 * MIB, 5 * MIB, &p), 0); /* exactly one part */
  assert_int_equal(p, 5 * MIB);
  assert_int_equal(tusc_s3_part_size_for(100, 1000000, &p), 0); /* exactly 10,000 parts */
  assert_int_equal(p, 100);
  assert_int_equal(tusc_s3_part_size_for(100, 1000001, &p), 0); /* would be 10,001 */
  assert_int_equal(p, 101);
  assert_int_equal(tusc_s3_part_size_for(0, 1, &p), TUSC_EINVALID_ARGUMENT);
}

static void test_count_and_numbers(void **state) {
  (void)state;
  const int64_t P = 5 * MIB;
  static const struct {
    int64_t length;
    int parts; /* -1: refused */
  } counts[] = {
      {0, 0},           {1, 1},        {5 * MIB - 1, 1},         {5 * MIB, 1},
      {5 * MIB + 1, 2}, {10 * MIB, 2}, {10000 * 5 * MIB, 10000}, {10000 * 5 * MIB + 1, -1},
  };
  for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
    int n = -7;
    int rc = tusc_s3_part_count(P, counts[i].length, &n);
    if (counts[i].parts < 0) {
      assert_int_equal(rc, TUSC_EUPLOAD_SIZE_EXCEEDED);
      assert_int_equal(n, -7); /* untouched on error */
    } else {
      assert_int_equal(rc, 0);
      assert_int_equal(n, counts[i].parts);
    }
  }
  static const struct {
    int64_t offset;
    int number; /* -1: refused */
  } numbers[] = {
      {0, 1},
      {5 * MIB - 1, 1},
      {5 * MIB, 2},
      {5 * MIB + 1, 2},
      {9999 * 5 * MIB, 10000},
      {10000 * 5 * MIB - 1, 10000},
      {10000 * 5 * MIB, -1}, /* part 10,001 */
  };
  for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++) {
    int n = -7;
    int rc = tusc_s3_part_number(P, numbers[i].offset, &n);
    if (numbers[i].number < 0) {
      assert_int_equal(rc, TUSC_EUPLOAD_SIZE_EXCEEDED);
    } else {
      assert_int_equal(rc, 0);
      assert_int_equal(n, numbers[i].number);
      assert_true(tusc_s3_part_start(P, n) <= numbers[i].offset);
      assert_true(numbers[i].offset < tusc_s3_part_start(P, n) + P);
    }
  }
  assert_int_equal(tusc_s3_part_start(P, 1), 0);
  assert_int_equal(tusc_s3_part_start(P, 10000), 9999 * P);
  assert_int_equal(tusc_s3_parts_capacity(P), 10000 * P);
  int n;
  assert_int_equal(tusc_s3_part_number(0, 0, &n), TUSC_EINVALID_ARGUMENT);
  assert_int_equal(tusc_s3_part_number(P, -1, &n), TUSC_EINVALID_ARGUMENT);
  assert_int_equal(tusc_s3_part_count(P, -1, &n), TUSC_EINVALID_ARGUMENT);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_part_size),
      cmocka_unit_test(test_part_size_for),
      cmocka_unit_test(test_count_and_numbers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

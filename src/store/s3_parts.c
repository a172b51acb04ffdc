/*
 * s3_parts — see s3_parts.h.
 */
#include "store/s3_parts.h"

#include "common/error.h"

static int64_t ceil_div(int64_t a, int64_t b) {
  return a / b + (a % b != 0);
}

int tusc_s3_part_size(int64_t preferred, int64_t min_part, int64_t max_upload, int64_t *out) {
  if (preferred < 0 || min_part < 0 || max_upload < 0)
    return TUSC_EINVALID_ARGUMENT;
  if (preferred == 0)
    preferred = TUSC_S3_PART_SIZE_DEFAULT;
  if (min_part == 0)
    min_part = TUSC_S3_MIN_PART_SIZE;
  if (min_part > TUSC_S3_PART_SIZE_MAX)
    return TUSC_EINVALID_ARGUMENT;
  int64_t p = preferred > min_part ? preferred : min_part;
  if (p > TUSC_S3_PART_SIZE_MAX)
    p = TUSC_S3_PART_SIZE_MAX;
  return tusc_s3_part_size_for(p, max_upload > 0 ? max_upload : -1, out);
}

int tusc_s3_part_size_for(int64_t base, int64_t length, int64_t *out) {
  if (base <= 0)
    return TUSC_EINVALID_ARGUMENT;
  int64_t p = base;
  if (length > 0) {
    int64_t need = ceil_div(length, TUSC_S3_PARTS_MAX);
    if (need > p)
      p = need;
  }
  if (p > TUSC_S3_PART_SIZE_MAX)
    return TUSC_EUPLOAD_SIZE_EXCEEDED;
  *out = p;
  return 0;
}

int tusc_s3_part_count(int64_t part_size, int64_t length, int *out) {
  if (part_size <= 0 || length < 0)
    return TUSC_EINVALID_ARGUMENT;
  int64_t n = ceil_div(length, part_size);
  if (n > TUSC_S3_PARTS_MAX)
    return TUSC_EUPLOAD_SIZE_EXCEEDED;
  *out = (int)n;
  return 0;
}

int tusc_s3_part_number(int64_t part_size, int64_t offset, int *out) {
  if (part_size <= 0 || offset < 0)
    return TUSC_EINVALID_ARGUMENT;
  int64_t n = offset / part_size + 1;
  if (n > TUSC_S3_PARTS_MAX)
    return TUSC_EUPLOAD_SIZE_EXCEEDED;
  *out = (int)n;
  return 0;
}

int64_t tusc_s3_part_start(int64_t part_size, int n) {
  return (int64_t)(n - 1) * part_size;
}

int64_t tusc_s3_parts_capacity(int64_t part_size) {
  return part_size * TUSC_S3_PARTS_MAX;
}

/*
 * s3_parts — the part arithmetic of the S3 store (store/s3.c), pure and thread-safe.
 *
 * An S3 multipart upload has at most TUSC_S3_PARTS_MAX (10,000) parts; every part but
 * the last must be at least the provider's minimum (5 MiB on AWS, lowered on some test
 * servers) and at most TUSC_S3_PART_SIZE_MAX (5 GiB). Cloudflare R2 also wants every part
 * but the last to be the same size, so tusc cuts an upload into equal parts of one size
 * P: part n (1-based) holds bytes [(n-1)·P, n·P), and an upload of L bytes has
 * ceil(L / P) parts. P is the preferred size (-s3-part-size), raised to the minimum
 * (-s3-min-part-size), and raised again until the largest upload (-max-size, or the
 * upload's own declared length) fits in 10,000 parts.
 *
 * Errors: TUSC_EINVALID_ARGUMENT for nonsense (negative sizes, a minimum above the
 * maximum part size), TUSC_EUPLOAD_SIZE_EXCEEDED when an upload cannot fit in 10,000
 * parts of at most 5 GiB, or when an offset would fall in part 10,001.
 */
#ifndef TUSC_STORE_S3_PARTS_H
#define TUSC_STORE_S3_PARTS_H

#include <stdint.h>

#define TUSC_S3_PARTS_MAX 10000
#define TUSC_S3_PART_SIZE_MAX (INT64_C(5) << 30)      /* 5 GiB */
#define TUSC_S3_MIN_PART_SIZE (INT64_C(5) << 20)      /* AWS's minimum, 5 MiB */
#define TUSC_S3_PART_SIZE_DEFAULT (INT64_C(50) << 20) /* tusd's preferred part size */

/* The part size for uploads of at most `max_upload` bytes (0: no bound known; the
 * part size is then max(preferred, min_part) and uploads stop at 10,000 parts of it).
 * preferred and min_part: 0 means the defaults above. Returns 0 and *out, or an error. */
int tusc_s3_part_size(int64_t preferred, int64_t min_part, int64_t max_upload, int64_t *out)
    __attribute__((warn_unused_result));

/* The part size for one upload of `length` bytes (-1: deferred) given the store's part
 * size `base` (from tusc_s3_part_size): base, or larger when length needs it. */
int tusc_s3_part_size_for(int64_t base, int64_t length, int64_t *out)
    __attribute__((warn_unused_result));

/* Parts of an upload of `length` bytes with part size P: ceil(length / P) (0 for 0).
 * TUSC_EUPLOAD_SIZE_EXCEEDED past 10,000 parts. */
int tusc_s3_part_count(int64_t part_size, int64_t length, int *out)
    __attribute__((warn_unused_result));

/* The 1-based number of the part holding byte `offset`. TUSC_EUPLOAD_SIZE_EXCEEDED
 * when that would be part 10,001 or later. */
int tusc_s3_part_number(int64_t part_size, int64_t offset, int *out)
    __attribute__((warn_unused_result));

/* First byte of part n (1-based): (n-1)·P. */
int64_t tusc_s3_part_start(int64_t part_size, int n);

/* The largest upload that fits: 10,000 · P. */
int64_t tusc_s3_parts_capacity(int64_t part_size);

#endif

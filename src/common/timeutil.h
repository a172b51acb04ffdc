/*
 * timeutil — wall-clock and monotonic time helpers. Pure, thread-safe.
 */
#ifndef TUSC_TIMEUTIL_H
#define TUSC_TIMEUTIL_H

#include <stdint.h>

/* RFC 9110 IMF-fixdate for a Unix time: "Wed, 25 Nov 2026 21:00:00 GMT". */
void tusc_http_date(int64_t unix_seconds, char out[32]);

/* Parses an IMF-fixdate. Returns 0 or TUSC_EINVALID_HEADER. */
int tusc_http_date_parse(const char *s, int64_t *out_unix_seconds);

/* Milliseconds on a monotonic clock. */
uint64_t tusc_now_ms(void);

#endif

/*
 * cidr — address ranges for -trusted-proxies: "10.0.0.0/8", "::1", "fd00::/8",
 * "127.0.0.1" (a bare address is a /32 or /128). An IPv4-mapped IPv6 peer
 * (::ffff:10.1.2.3, as a dual-stack socket reports IPv4 clients) matches IPv4 ranges.
 *
 * Pure: no I/O; a parsed list is read-only and may be shared by every thread.
 * The list owns its array: tusc_cidr_list_dispose frees it.
 */
#ifndef TUSC_AUTH_CIDR_H
#define TUSC_AUTH_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tusc_cidr_s {
  int family;       /* AF_INET or AF_INET6 */
  uint8_t addr[16]; /* network address, host bits cleared; 4 bytes used for IPv4 */
  unsigned prefix;  /* 0..32 or 0..128 */
} tusc_cidr_t;

typedef struct tusc_cidr_list_s {
  tusc_cidr_t *items;
  size_t count;
} tusc_cidr_list_t;

/* One range from s[0..len). Host bits set below the prefix ("10.1.2.3/8") are refused
 * as a likely typo. Returns 0 or TUSC_EINVALID_ARGUMENT; *out written only on success. */
int tusc_cidr_parse(const char *s, size_t len, tusc_cidr_t *out);

/* Comma-separated ranges, blanks around items ignored; an empty list is allowed.
 * Returns 0, TUSC_EINVALID_ARGUMENT (then *bad_item, if given, points at the offending
 * item in `list`, and *bad_len is its length) or TUSC_ENOMEM. */
int tusc_cidr_list_parse(const char *list, tusc_cidr_list_t *out, const char **bad_item,
                         size_t *bad_len);
void tusc_cidr_list_dispose(tusc_cidr_list_t *list);

/* Whether the textual address `addr` (IPv4 dotted or IPv6, no brackets, no port,
 * an optional %zone ignored) lies in one of the ranges. Unparsable addresses never
 * match. */
bool tusc_cidr_list_match(const tusc_cidr_list_t *list, const char *addr);

#endif

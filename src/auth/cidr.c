/*
 * cidr — parsing and matching of address ranges (see cidr.h). inet_pton does the
 * address syntax, so "1.2.3" or "01.2.3.4" are refused exactly as the C library
 * refuses them; we only add the "/prefix" part, parsed strictly (decimal, no sign).
 */
#include "auth/cidr.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/error.h"

#define ADDR_TEXT_MAX 64

static bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

/* Parses an address into family/bytes; IPv4-mapped IPv6 becomes IPv4. */
static bool parse_addr(const char *s, size_t len, int *family, uint8_t bytes[16], bool unmap) {
  char text[ADDR_TEXT_MAX];
  if (len == 0 || len >= sizeof(text))
    return false;
  memcpy(text, s, len);
  text[len] = '\0';
  char *zone = strchr(text, '%');
  if (zone != NULL)
    *zone = '\0';
  if (inet_pton(AF_INET, text, bytes) == 1) {
    *family = AF_INET;
    return true;
  }
  if (inet_pton(AF_INET6, text, bytes) != 1)
    return false;
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (unmap && memcmp(bytes, mapped, sizeof(mapped)) == 0) {
    memmove(bytes, bytes + 12, 4);
    *family = AF_INET;
    return true;
  }
  *family = AF_INET6;
  return true;
}

int tusc_cidr_parse(const char *s, size_t len, tusc_cidr_t *out) {
  const char *slash = memchr(s, '/', len);
  size_t addr_len = slash != NULL ? (size_t)(slash - s) : len;
  tusc_cidr_t c;
  memset(&c, 0, sizeof(c));
  /* A range is written as the operator means it: "::ffff:10.0.0.0/104" stays IPv6. */
  if (!parse_addr(s, addr_len, &c.family, c.addr, false))
    return TUSC_EINVALID_ARGUMENT;
  if (c.family == AF_INET6 && memchr(s, '%', addr_len) != NULL)
    return TUSC_EINVALID_ARGUMENT;
  unsigned max = c.family == AF_INET ? 32 : 128;
  c.prefix = max;
  if (slash != NULL) {
    const char *p = slash + 1;
    size_t n = len - addr_len - 1;
    if (n == 0 || n > 3)
      return TUSC_EINVALID_ARGUMENT;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
      if (p[i] < '0' || p[i] > '9')
        return TUSC_EINVALID_ARGUMENT;
      v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (n > 1 && p[0] == '0')
      return TUSC_EINVALID_ARGUMENT;
    if (v > max)
      return TUSC_EINVALID_ARGUMENT;
    c.prefix = v;
  }
  /* Host bits must be clear. */
  for (unsigned bit = c.prefix; bit < max; bit++)
    if (c.addr[bit / 8] & (0x80u >> (bit % 8)))
      return TUSC_EINVALID_ARGUMENT;
  *out = c;
  return 0;
}

int tusc_cidr_list_parse(const char *list, tusc_cidr_list_t *out, const char **bad_item,
                         size_t *bad_len) {
  tusc_cidr_list_t l = {NULL, 0};
  size_t cap = 0;
  const char *p = list != NULL ? list : "";
  while (*p != '\0') {
    const char *end = strchr(p, ',');
    if (end == NULL)
      end = p + strlen(p);
    const char *a = p, *b = end;
    while (a < b && is_blank(*a))
      a++;
    while (b > a && is_blank(b[-1]))
      b--;
    if (a < b) {
      tusc_cidr_t c;
      if (tusc_cidr_parse(a, (size_t)(b - a), &c) != 0) {
        free(l.items);
        if (bad_item != NULL)
          *bad_item = a;
        if (bad_len != NULL)
          *bad_len = (size_t)(b - a);
        return TUSC_EINVALID_ARGUMENT;
      }
      if (l.count == cap) {
        size_t ncap = cap ? cap * 2 : 4;
        tusc_cidr_t *items = realloc(l.items, ncap * sizeof(*items));
        if (items == NULL) {
          free(l.items);
          return TUSC_ENOMEM;
        }
        l.items = items;
        cap = ncap;
      }
      l.items[l.count++] = c;
    }
    p = *end == ',' ? end + 1 : end;
  }
  *out = l;
  return 0;
}

void tusc_cidr_list_dispose(tusc_cidr_list_t *list) {
  if (list == NULL)
    return;
  free(list->items);
  list->items = NULL;
  list->count = 0;
}

static bool in_range(const tusc_cidr_t *c, const uint8_t *bytes) {
  unsigned full = c->prefix / 8, rest = c->prefix % 8;
  if (memcmp(c->addr, bytes, full) != 0)
    return false;
  if (rest == 0)
    return true;
  uint8_t mask = (uint8_t)(0xffu << (8 - rest));
  return (c->addr[full] & mask) == (bytes[full] & mask);
}

bool tusc_cidr_list_match(const tusc_cidr_list_t *list, const char *addr) {
  if (list == NULL || addr == NULL || list->count == 0)
    return false;
  int family = 0;
  uint8_t bytes[16];
  if (!parse_addr(addr, strlen(addr), &family, bytes, true))
    return false;
  /* Also try the mapped form as IPv6, for ranges written as ::ffff:a.b.c.d/n. */
  uint8_t v6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (family == AF_INET)
    memcpy(v6 + 12, bytes, 4);
  for (size_t i = 0; i < list->count; i++) {
    const tusc_cidr_t *c = &list->items[i];
    if (c->family == family && in_range(c, bytes))
      return true;
    if (family == AF_INET && c->family == AF_INET6 && in_range(c, v6))
      return true;
  }
  return false;
}

/*
 * id — upload ID validation and generation. The grammar keeps an ID safe to use as a
 * relative path below the upload directory (no "..", no hidden names, no side-file
 * names), so stores need no escaping.
 */
#include "common/id.h"

#include <errno.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

static bool is_id_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '.';
}

/* ASCII only: tusc never calls setlocale, so strncasecmp runs in the "C" locale. */
static bool ends_with_nocase(const char *s, size_t len, const char *suffix) {
  size_t n = strlen(suffix);
  return len >= n && strncasecmp(s + len - n, suffix, n) == 0;
}

/* The file store keeps "<id>.info", "<id>.lock" and "<id>.tmp" beside each upload;
 * an ID (or a directory on its path) with such a name would collide with them. */
static bool is_side_file_name(const char *seg, size_t len) {
  return ends_with_nocase(seg, len, ".info") || ends_with_nocase(seg, len, ".lock") ||
         ends_with_nocase(seg, len, ".tmp");
}

static bool segment_valid(const char *seg, size_t len) {
  if (len == 0 || len > TUSC_ID_SEGMENT_MAX)
    return false;
  /* No leading dot also rules out ".", ".." and hidden files. */
  if (seg[0] == '.' || seg[len - 1] == '.')
    return false;
  for (size_t i = 0; i < len; i++)
    if (!is_id_char((unsigned char)seg[i]))
      return false;
  return !is_side_file_name(seg, len);
}

bool tusc_id_valid(const char *id, size_t len) {
  if (id == NULL || len == 0 || len > TUSC_ID_MAX)
    return false;
  size_t seg = 0;
  for (size_t i = 0; i <= len; i++) {
    if (i == len || id[i] == '/') {
      if (!segment_valid(id + seg, i - seg))
        return false;
      seg = i + 1;
    }
  }
  return true;
}

int tusc_id_generate(char out[33]) {
  static const char hex[] = "0123456789abcdef";
  unsigned char bytes[16];
  size_t got = 0;
  while (got < sizeof(bytes)) {
    ssize_t n = getrandom(bytes + got, sizeof(bytes) - got, 0);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    got += (size_t)n;
  }
  for (size_t i = 0; i < sizeof(bytes); i++) {
    out[2 * i] = hex[bytes[i] >> 4];
    out[2 * i + 1] = hex[bytes[i] & 15];
  }
  out[32] = '\0';
  return 0;
}

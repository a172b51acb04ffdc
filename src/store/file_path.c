/*
 * file_path — see file_path.h.
 */
#include "store/file_path.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "store/store.h"

/* A segment that ends like one of an upload's sibling files could make one upload's
 * data file another upload's .info or .lock, so such IDs are refused. */
static bool reserved_suffix(const char *seg, size_t len) {
  static const char *const suffixes[] = {".info", ".lock", ".tmp"};
  for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
    size_t n = strlen(suffixes[i]);
    if (len >= n && memcmp(seg + len - n, suffixes[i], n) == 0)
      return true;
  }
  return false;
}

int tusc_file_id_check(const char *id, size_t len) {
  if (!tusc_id_valid(id, len))
    return TUSC_EINVALID_ID;
  const char *seg = id;
  for (;;) {
    const char *slash = memchr(seg, '/', len - (size_t)(seg - id));
    size_t seg_len = slash != NULL ? (size_t)(slash - seg) : len - (size_t)(seg - id);
    /* Belt and braces: the grammar already forbids these. */
    if (seg_len == 0 || (seg_len == 1 && seg[0] == '.') ||
        (seg_len == 2 && seg[0] == '.' && seg[1] == '.'))
      return TUSC_EINVALID_ID;
    if (reserved_suffix(seg, seg_len))
      return TUSC_EINVALID_ID;
    if (slash == NULL)
      return 0;
    seg = slash + 1;
  }
}

/* One character of a shard directory name: '_' pads short segments and replaces '.', so
 * that no shard directory is ever named "." or "..". */
static char shard_char(const char *seg, size_t seg_len, size_t i) {
  if (i >= seg_len || seg[i] == '.')
    return '_';
  return seg[i];
}

int tusc_file_store_shard_path(const char *id, char *out, size_t cap) {
  if (id == NULL)
    return TUSC_EINVALID_ID;
  size_t len = strnlen(id, TUSC_ID_MAX + 1);
  int rc = tusc_file_id_check(id, len);
  if (rc != 0)
    return rc;
  const char *last = strrchr(id, '/');
  last = last != NULL ? last + 1 : id;
  size_t prefix_len = (size_t)(last - id);
  size_t seg_len = len - prefix_len;
  int n = snprintf(out, cap, "%.*s%c%c/%c%c/%s", (int)prefix_len, id, shard_char(last, seg_len, 0),
                   shard_char(last, seg_len, 1), shard_char(last, seg_len, 2),
                   shard_char(last, seg_len, 3), last);
  if (n < 0 || (size_t)n >= cap)
    return -ENAMETOOLONG;
  return 0;
}

/*
 * fuzz_id — the upload-ID grammar, the file store's shard path, URL path decoding
 * and size numbers. Oracles: a valid ID shards to a relative path inside the upload
 * dir (no "..", no empty segment, no absolute path) that ends with the ID's last
 * segment; tusc_url_decode never writes more than it says and never yields NUL;
 * tusc_parse_size accepts exactly 1+ digits whose value fits int64.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "tus/headers.h"

static void check_shard(const char *id, size_t len) {
  char out[TUSC_PATH_MAX];
  int rc = tusc_file_store_shard_path(id, out, sizeof(out));
  if (rc != 0)
    return;
  size_t n = strlen(out);
  if (n == 0 || out[0] == '/' || out[n - 1] == '/' || strstr(out, "//") != NULL)
    abort();
  /* every segment must be a normal name */
  const char *seg = out;
  for (;;) {
    const char *slash = strchr(seg, '/');
    size_t sl = slash ? (size_t)(slash - seg) : strlen(seg);
    if ((sl == 1 && seg[0] == '.') || (sl == 2 && seg[0] == '.' && seg[1] == '.'))
      abort();
    if (!slash)
      break;
    seg = slash + 1;
  }
  const char *last = strrchr(id, '/');
  last = last ? last + 1 : id;
  size_t ll = len - (size_t)(last - id);
  if (n < ll || memcmp(out + n - ll, last, ll) != 0)
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  if (s == NULL)
    return 0;
  memcpy(s, data, size);
  s[size] = '\0';

  /* exact-size copy: any read past len is an ASan report */
  char *exact = malloc(size ? size : 1);
  memcpy(exact, data, size);
  bool valid = tusc_id_valid(exact, size);
  if (valid) {
    /* "a..b" is a legal name; a whole segment of dots is not */
    if (size == 0 || size > TUSC_ID_MAX || memchr(s, '\0', size) != NULL || s[0] == '/' ||
        s[size - 1] == '/' || strchr(s, '\\') != NULL || strstr(s, "//") != NULL ||
        strncmp(s, "../", 3) == 0 || strstr(s, "/../") != NULL || strcmp(s, "..") == 0 ||
        (size >= 3 && strcmp(s + size - 3, "/..") == 0))
      abort();
    check_shard(s, size);
  } else if (memchr(s, '\0', size) == NULL) {
    /* the store must refuse what the grammar refuses */
    char out[TUSC_PATH_MAX];
    if (tusc_file_store_shard_path(s, out, sizeof(out)) == 0)
      abort();
  }

  char dec[512];
  long d = tusc_url_decode(exact, size, dec, sizeof(dec));
  if (d >= 0 && ((size_t)d >= sizeof(dec) || strlen(dec) != (size_t)d))
    abort();

  int64_t v = -1;
  if (tusc_parse_size(exact, size, &v) == 0) {
    if (size == 0 || v < 0)
      abort();
    for (size_t i = 0; i < size; i++)
      if (s[i] < '0' || s[i] > '9')
        abort();
  }
  free(exact);
  free(s);
  return 0;
}

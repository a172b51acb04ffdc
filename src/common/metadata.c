/*
 * metadata — Upload-Metadata parsing and formatting, and the pair set's small API.
 * Parsing takes (pointer, length) straight out of the request buffer and never trusts
 * a NUL terminator inside client data.
 */
#include "common/metadata.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64.h"
#include "common/error.h"

static bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

static bool is_metadata_key_char(unsigned char c) {
  return c > 0x20 && c < 0x7f && c != ',';
}

static char *copy_bytes(const char *s, size_t len) {
  char *p = malloc(len + 1);
  if (p == NULL)
    return NULL;
  if (len > 0)
    memcpy(p, s, len);
  p[len] = '\0';
  return p;
}

static void free_pairs(tusc_metadata_pair_t *pairs, size_t count) {
  for (size_t i = 0; i < count; i++) {
    free(pairs[i].key);
    free(pairs[i].value);
  }
  free(pairs);
}

/* Parses one trimmed, non-empty element "key" or "key base64" into *pair. */
static int parse_metadata_pair(const char *s, size_t len, tusc_metadata_pair_t *pair) {
  size_t key_len = 0;
  while (key_len < len && s[key_len] != ' ')
    key_len++;
  if (key_len == 0)
    return TUSC_EINVALID_METADATA;
  for (size_t i = 0; i < key_len; i++)
    if (!is_metadata_key_char((unsigned char)s[i]))
      return TUSC_EINVALID_METADATA;

  /* After the key: nothing, or exactly one space and a non-empty value (the element
   * is trimmed, so a value is never empty here, and a second space lands in the value
   * where base64 decoding rejects it). */
  const char *enc = key_len < len ? s + key_len + 1 : s + len;
  size_t enc_len = key_len < len ? len - key_len - 1 : 0;

  char *key = copy_bytes(s, key_len);
  char *value = malloc(TUSC_BASE64_DECODED_MAX(enc_len) + 1);
  if (key == NULL || value == NULL) {
    free(key);
    free(value);
    return TUSC_ENOMEM;
  }
  long n = tusc_base64_decode(enc, enc_len, (unsigned char *)value);
  if (n < 0) {
    free(key);
    free(value);
    return TUSC_EINVALID_METADATA;
  }
  value[n] = '\0';
  pair->key = key;
  pair->value = value;
  pair->value_len = (size_t)n;
  return 0;
}

static int compare_keys(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorting a copy of the key pointers keeps this O(n log n): a header of many tiny
 * pairs must not turn into a quadratic scan. */
static int check_unique_keys(const tusc_metadata_pair_t *pairs, size_t count) {
  if (count < 2)
    return 0;
  char **keys = malloc(count * sizeof(*keys));
  if (keys == NULL)
    return TUSC_ENOMEM;
  for (size_t i = 0; i < count; i++)
    keys[i] = pairs[i].key;
  qsort(keys, count, sizeof(*keys), compare_keys);
  int err = 0;
  for (size_t i = 1; i < count && err == 0; i++)
    if (strcmp(keys[i - 1], keys[i]) == 0)
      err = TUSC_EINVALID_METADATA;
  free(keys);
  return err;
}

int tusc_metadata_parse(const char *s, size_t len, tusc_metadata_t *out) {
  if (s == NULL && len > 0)
    return TUSC_EINVALID_METADATA;
  size_t start = 0;
  size_t end = len;
  while (start < end && is_ows(s[start]))
    start++;
  while (end > start && is_ows(s[end - 1]))
    end--;
  if (start == end) {
    out->pairs = NULL;
    out->count = 0;
    return 0;
  }

  size_t max_pairs = 1;
  for (size_t i = start; i < end; i++)
    if (s[i] == ',')
      max_pairs++;
  tusc_metadata_pair_t *pairs = calloc(max_pairs, sizeof(*pairs));
  if (pairs == NULL)
    return TUSC_ENOMEM;

  int err = 0;
  size_t count = 0;
  size_t pos = start;
  for (;;) {
    size_t elem_end = pos;
    while (elem_end < end && s[elem_end] != ',')
      elem_end++;
    size_t a = pos;
    size_t b = elem_end;
    while (a < b && is_ows(s[a]))
      a++;
    while (b > a && is_ows(s[b - 1]))
      b--;
    /* "a,,b" and a trailing "," are rejected: an empty element is far more likely a
     * client bug than an intended empty set. */
    if (a == b) {
      err = TUSC_EINVALID_METADATA;
      goto out;
    }
    err = parse_metadata_pair(s + a, b - a, &pairs[count]);
    if (err != 0)
      goto out;
    count++;
    if (elem_end == end)
      break;
    pos = elem_end + 1;
  }

  err = check_unique_keys(pairs, count);
  if (err != 0)
    goto out;
  out->pairs = pairs;
  out->count = count;
  pairs = NULL;
  count = 0;
out:
  free_pairs(pairs, count);
  return err;
}

static bool metadata_key_valid(const char *key) {
  if (key == NULL || key[0] == '\0')
    return false;
  for (const char *k = key; *k; k++)
    if (!is_metadata_key_char((unsigned char)*k))
      return false;
  return true;
}

char *tusc_metadata_format(const tusc_metadata_t *md) {
  size_t total = 1;
  size_t n = md != NULL ? md->count : 0;
  for (size_t i = 0; i < n; i++) {
    total += strlen(md->pairs[i].key) + 2; /* ' ' or ',' separators */
    if (md->pairs[i].value_len > 0)
      total += TUSC_BASE64_ENCODED_SIZE(md->pairs[i].value_len);
  }
  char *buf = malloc(total);
  if (buf == NULL)
    return NULL;
  size_t pos = 0;
  for (size_t i = 0; i < n; i++) {
    const tusc_metadata_pair_t *p = &md->pairs[i];
    /* Keys set by hooks or read from old .info files are not checked on the way in;
     * one with a space, comma or CR/LF would corrupt (or inject into) the header. */
    if (!metadata_key_valid(p->key))
      continue;
    if (pos > 0)
      buf[pos++] = ',';
    size_t key_len = strlen(p->key);
    memcpy(buf + pos, p->key, key_len);
    pos += key_len;
    /* An empty value is written as the key alone, which the spec allows and which
     * parses back to the same empty value. */
    if (p->value_len > 0) {
      buf[pos++] = ' ';
      pos += tusc_base64_encode((const unsigned char *)p->value, p->value_len, buf + pos);
    }
  }
  buf[pos] = '\0';
  return buf;
}

const tusc_metadata_pair_t *tusc_metadata_get(const tusc_metadata_t *md, const char *key) {
  if (md == NULL || key == NULL)
    return NULL;
  for (size_t i = 0; i < md->count; i++)
    if (strcmp(md->pairs[i].key, key) == 0)
      return &md->pairs[i];
  return NULL;
}

int tusc_metadata_set(tusc_metadata_t *md, const char *key, const char *value, size_t value_len) {
  char *v = copy_bytes(value != NULL ? value : "", value != NULL ? value_len : 0);
  if (v == NULL)
    return TUSC_ENOMEM;
  size_t v_len = value != NULL ? value_len : 0;

  for (size_t i = 0; i < md->count; i++) {
    if (strcmp(md->pairs[i].key, key) == 0) {
      free(md->pairs[i].value);
      md->pairs[i].value = v;
      md->pairs[i].value_len = v_len;
      return 0;
    }
  }

  char *k = copy_bytes(key, strlen(key));
  tusc_metadata_pair_t *pairs = NULL;
  if (k != NULL)
    pairs = realloc(md->pairs, (md->count + 1) * sizeof(*pairs));
  if (pairs == NULL) {
    free(k);
    free(v);
    return TUSC_ENOMEM;
  }
  pairs[md->count].key = k;
  pairs[md->count].value = v;
  pairs[md->count].value_len = v_len;
  md->pairs = pairs;
  md->count++;
  return 0;
}

void tusc_metadata_dispose(tusc_metadata_t *md) {
  if (md == NULL)
    return;
  free_pairs(md->pairs, md->count);
  md->pairs = NULL;
  md->count = 0;
}

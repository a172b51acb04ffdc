/*
 * download — see download.h. Everything here ends up in response headers, so every
 * byte that is not known to be safe is dropped or encoded rather than passed through.
 */
#include "tus/download.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <uv.h>

static int is_space(char c) {
  return c == ' ' || c == '\t';
}

/* Saturating decimal parse of 1+ digits at s[*i]; returns 0 when there are none. */
static int parse_digits(const char *s, size_t len, size_t *i, int64_t *out) {
  size_t start = *i;
  int64_t v = 0;
  while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
    int d = s[*i] - '0';
    v = v > (INT64_MAX - d) / 10 ? INT64_MAX : v * 10 + d;
    (*i)++;
  }
  if (*i == start)
    return 0;
  *out = v;
  return 1;
}

enum tusc_range_result tusc_download_range(const char *s, size_t len, int64_t size, int64_t *first,
                                           int64_t *last) {
  size_t i = 0;
  int64_t a = 0, b = 0;
  if (s == NULL)
    return TUSC_RANGE_NONE;
  while (i < len && is_space(s[i]))
    i++;
  if (len - i < 5 || strncasecmp(s + i, "bytes", 5) != 0)
    return TUSC_RANGE_NONE;
  i += 5;
  while (i < len && is_space(s[i]))
    i++;
  if (i >= len || s[i] != '=')
    return TUSC_RANGE_NONE;
  i++;
  if (memchr(s + i, ',', len - i) != NULL)
    return TUSC_RANGE_NONE; /* several ranges: serve the whole thing */
  while (i < len && is_space(s[i]))
    i++;

  if (i < len && s[i] == '-') {
    i++;
    if (!parse_digits(s, len, &i, &b))
      return TUSC_RANGE_NONE;
    while (i < len && is_space(s[i]))
      i++;
    if (i != len)
      return TUSC_RANGE_NONE;
    if (b == 0 || size == 0)
      return TUSC_RANGE_UNSATISFIABLE;
    *first = b >= size ? 0 : size - b;
    *last = size - 1;
    return TUSC_RANGE_PARTIAL;
  }

  if (!parse_digits(s, len, &i, &a))
    return TUSC_RANGE_NONE;
  if (i >= len || s[i] != '-')
    return TUSC_RANGE_NONE;
  i++;
  bool has_last = parse_digits(s, len, &i, &b);
  while (i < len && is_space(s[i]))
    i++;
  if (i != len)
    return TUSC_RANGE_NONE;
  if (has_last && b < a)
    return TUSC_RANGE_NONE; /* invalid range-spec: ignored per RFC 9110 */
  if (a >= size)
    return TUSC_RANGE_UNSATISFIABLE;
  *first = a;
  *last = (!has_last || b >= size) ? size - 1 : b;
  return TUSC_RANGE_PARTIAL;
}

static int is_tchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
    return 1;
  return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static size_t token_len(const char *s, size_t i, size_t len) {
  size_t j = i;
  while (j < len && is_tchar((unsigned char)s[j]))
    j++;
  return j - i;
}

/* type "/" subtype *( OWS ";" OWS token "=" ( token / quoted-string ) ) */
static int media_type_valid(const char *s, size_t len, size_t *essence_len) {
  size_t i = 0, n;
  if ((n = token_len(s, i, len)) == 0)
    return 0;
  i += n;
  if (i >= len || s[i] != '/')
    return 0;
  i++;
  if ((n = token_len(s, i, len)) == 0)
    return 0;
  i += n;
  *essence_len = i;
  for (;;) {
    while (i < len && is_space(s[i]))
      i++;
    if (i == len)
      return 1;
    if (s[i] != ';')
      return 0;
    i++;
    while (i < len && is_space(s[i]))
      i++;
    if ((n = token_len(s, i, len)) == 0)
      return 0;
    i += n;
    if (i >= len || s[i] != '=')
      return 0;
    i++;
    if (i < len && s[i] == '"') {
      i++;
      while (i < len && s[i] != '"') {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\') {
          i++;
          if (i >= len)
            return 0;
          c = (unsigned char)s[i];
        }
        if ((c < 0x20 && c != '\t') || c == 0x7f || c >= 0x80)
          return 0;
        i++;
      }
      if (i >= len)
        return 0;
      i++;
    } else {
      if ((n = token_len(s, i, len)) == 0)
        return 0;
      i += n;
    }
  }
}

/* Types a browser may render in place without executing anything. */
static const char *const inline_types[] = {
    "text/plain", "image/png", "image/jpeg", "image/gif",  "image/webp", "image/avif", "audio/mpeg",
    "audio/ogg",  "audio/wav", "audio/wave", "audio/webm", "video/mp4",  "video/webm", "video/ogg",
};

void tusc_download_content_type(const char *filetype, char *out, size_t cap, bool *inline_ok) {
  size_t essence = 0;
  *inline_ok = false;
  if (filetype == NULL || filetype[0] == '\0' ||
      !media_type_valid(filetype, strlen(filetype), &essence) || strlen(filetype) >= cap) {
    snprintf(out, cap, "application/octet-stream");
    return;
  }
  snprintf(out, cap, "%s", filetype);
  for (size_t i = 0; i < sizeof(inline_types) / sizeof(inline_types[0]); i++) {
    if (strlen(inline_types[i]) == essence &&
        strncasecmp(filetype, inline_types[i], essence) == 0) {
      *inline_ok = true;
      break;
    }
  }
}

static int is_attr_char(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
    return 1;
  return c != '\0' && strchr("!#$&+-.^_`|~", c) != NULL;
}

int tusc_download_disposition(bool inline_ok, const char *filename, size_t filename_len, char *out,
                              size_t cap) {
  static const char hex[] = "0123456789ABCDEF";
  const char *type = inline_ok ? "inline" : "attachment";
  size_t n = strlen(type);
  if (cap < n + 1)
    return UV_ENOBUFS;
  memcpy(out, type, n + 1);
  if (filename == NULL || filename_len == 0)
    return 0;

  bool non_ascii = false;
  /* Reserve room for the closing quote and NUL while appending. */
  const char *lead = "; filename=\"";
  size_t lead_len = strlen(lead);
  if (n + lead_len + 2 > cap)
    return 0;
  size_t start = n;
  memcpy(out + n, lead, lead_len);
  n += lead_len;
  size_t visible = 0;
  for (size_t i = 0; i < filename_len; i++) {
    unsigned char c = (unsigned char)filename[i];
    if (c < 0x20 || c == 0x7f)
      continue;
    char esc[2];
    size_t k = 0;
    if (c >= 0x80) {
      non_ascii = true;
      esc[k++] = '_';
    } else {
      if (c == '"' || c == '\\')
        esc[k++] = '\\';
      esc[k++] = (char)c;
    }
    if (n + k + 2 > cap)
      break;
    memcpy(out + n, esc, k);
    n += k;
    visible++;
  }
  if (visible == 0) {
    out[start] = '\0';
    return 0;
  }
  out[n++] = '"';
  out[n] = '\0';

  if (non_ascii) {
    const char *ext = "; filename*=UTF-8''";
    size_t ext_len = strlen(ext);
    size_t mark = n;
    if (n + ext_len + 1 > cap)
      return 0;
    memcpy(out + n, ext, ext_len);
    n += ext_len;
    for (size_t i = 0; i < filename_len; i++) {
      unsigned char c = (unsigned char)filename[i];
      if (c < 0x20 || c == 0x7f)
        continue;
      if (is_attr_char(c)) {
        if (n + 2 > cap)
          goto cut;
        out[n++] = (char)c;
      } else {
        if (n + 4 > cap)
          goto cut;
        out[n++] = '%';
        out[n++] = hex[c >> 4];
        out[n++] = hex[c & 15];
      }
    }
    out[n] = '\0';
    return 0;
  cut:
    /* A truncated UTF-8 name could decode into garbage: leave only the ASCII form. */
    out[mark] = '\0';
  }
  return 0;
}

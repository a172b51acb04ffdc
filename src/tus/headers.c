/*
 * headers — strict parsers for tus header values. Everything here takes (pointer,
 * length) so callers can parse straight out of the request buffer, and nothing
 * trusts a NUL terminator inside client data. Upload-Metadata and upload IDs are in
 * common/metadata.c and common/id.c.
 */
#include "tus/headers.h"

#include <arpa/inet.h>
#include <string.h>

#include "common/error.h"

static bool is_digit(unsigned char c) {
  return c >= '0' && c <= '9';
}

static bool is_alpha(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_hex(unsigned char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int hex_value(unsigned char c) {
  if (is_digit(c))
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return c - 'A' + 10;
}

static bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

static unsigned char lower(unsigned char c) {
  return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Case-insensitive comparison of s[0..len) with the lower-case literal lit. */
static bool equals_nocase(const char *s, size_t len, const char *lit) {
  size_t n = strlen(lit);
  if (len != n)
    return false;
  for (size_t i = 0; i < n; i++)
    if (lower((unsigned char)s[i]) != (unsigned char)lit[i])
      return false;
  return true;
}

/* ---- sizes ---------------------------------------------------------------- */

int tusc_parse_size(const char *s, size_t len, int64_t *out) {
  if (s == NULL || len == 0)
    return TUSC_EINVALID_HEADER;
  int64_t v = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!is_digit(c))
      return TUSC_EINVALID_HEADER;
    int d = c - '0';
    if (v > (INT64_MAX - d) / 10)
      return TUSC_EINVALID_HEADER;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

/* ---- client address / host from proxy headers ----------------------------- */

/* Copies s[0..len) into a NUL-terminated buffer and asks inet_pton. */
static bool ip_literal(const char *s, size_t len, int family) {
  char buf[64];
  /* inet_pton stops at a NUL: "::8\0junk" must not pass as "::8" */
  if (len == 0 || len >= sizeof(buf) || memchr(s, '\0', len) != NULL)
    return false;
  memcpy(buf, s, len);
  buf[len] = '\0';
  unsigned char addr[16];
  return inet_pton(family, buf, addr) == 1;
}

static bool port_valid(const char *s, size_t len) {
  if (len == 0 || len > 5)
    return false;
  unsigned long v = 0;
  for (size_t i = 0; i < len; i++) {
    if (!is_digit((unsigned char)s[i]))
      return false;
    v = v * 10 + (unsigned long)(s[i] - '0');
  }
  return v >= 1 && v <= 65535;
}

/* RFC 7239 obfuscated port: "_" 1*(ALPHA / DIGIT / "." / "_" / "-"). */
static bool obf_valid(const char *s, size_t len) {
  if (len < 2 || s[0] != '_')
    return false;
  for (size_t i = 1; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!is_alpha(c) && !is_digit(c) && c != '.' && c != '_' && c != '-')
      return false;
  }
  return true;
}

/*
 * A node: "1.2.3.4", "1.2.3.4:port", "[v6]", "[v6]:port", or (leniently, as some
 * proxies send it) a bare v6 literal. Writes the address without brackets or port
 * into out. With allow_hidden, "unknown" and obfuscated names are valid and give "".
 */
static int parse_node(const char *s, size_t len, bool allow_hidden, char out[64]) {
  const char *addr = s;
  size_t addr_len = len;
  int family;
  if (len > 0 && s[0] == '[') {
    const char *close = memchr(s, ']', len);
    if (close == NULL)
      return TUSC_EINVALID_HEADER;
    addr = s + 1;
    addr_len = (size_t)(close - addr);
    size_t rest = len - (size_t)(close - s) - 1;
    if (rest > 0 &&
        (close[1] != ':' || (!port_valid(close + 2, rest - 1) && !obf_valid(close + 2, rest - 1))))
      return TUSC_EINVALID_HEADER;
    family = AF_INET6;
  } else if (ip_literal(s, len, AF_INET6)) {
    family = AF_INET6;
  } else {
    const char *colon = memchr(s, ':', len);
    if (colon != NULL) {
      addr_len = (size_t)(colon - s);
      size_t plen = len - addr_len - 1;
      if (!port_valid(colon + 1, plen) && !obf_valid(colon + 1, plen))
        return TUSC_EINVALID_HEADER;
    }
    family = AF_INET;
    if (allow_hidden && (equals_nocase(addr, addr_len, "unknown") || obf_valid(addr, addr_len))) {
      out[0] = '\0';
      return 0;
    }
  }
  if (!ip_literal(addr, addr_len, family))
    return TUSC_EINVALID_HEADER;
  memcpy(out, addr, addr_len);
  out[addr_len] = '\0';
  return 0;
}

static bool is_tchar(unsigned char c) {
  if (is_alpha(c) || is_digit(c))
    return true;
  return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Reads a token or quoted-string at s[*pos]; the unescaped value goes to buf. */
static int read_param_value(const char *s, size_t len, size_t *pos, char *buf, size_t cap,
                            size_t *out_len) {
  size_t i = *pos;
  size_t n = 0;
  if (i < len && s[i] == '"') {
    i++;
    for (;;) {
      if (i >= len)
        return TUSC_EINVALID_HEADER;
      unsigned char c = (unsigned char)s[i];
      if (c == '"') {
        i++;
        break;
      }
      if (c == '\\') {
        if (i + 1 >= len)
          return TUSC_EINVALID_HEADER;
        c = (unsigned char)s[++i];
      }
      /* qdtext and quoted-pair: HTAB, SP, visible ASCII, obs-text; never controls. */
      if ((c < 0x20 && c != '\t') || c == 0x7f)
        return TUSC_EINVALID_HEADER;
      if (n + 1 >= cap)
        return TUSC_EINVALID_HEADER;
      buf[n++] = (char)c;
      i++;
    }
  } else {
    while (i < len && is_tchar((unsigned char)s[i])) {
      if (n + 1 >= cap)
        return TUSC_EINVALID_HEADER;
      buf[n++] = s[i++];
    }
    if (n == 0)
      return TUSC_EINVALID_HEADER;
  }
  buf[n] = '\0';
  *pos = i;
  *out_len = n;
  return 0;
}

/* One element of a Forwarded list, from *pos; *pos ends past its ','. */
static int forwarded_element(const char *s, size_t len, size_t *pos, tusc_forwarded_t *out) {
  tusc_forwarded_t f;
  memset(&f, 0, sizeof(f));
  bool seen_for = false, seen_proto = false, seen_host = false, seen_by = false;
  size_t i = *pos;
  /* Empty list elements (", ,") are allowed by the list syntax; skip to the first
   * real one. */
  while (i < len && (is_ows(s[i]) || s[i] == ','))
    i++;
  while (i < len && s[i] != ',') {
    if (s[i] == ';') {
      i++;
      while (i < len && is_ows(s[i]))
        i++;
      continue;
    }
    size_t name = i;
    while (i < len && is_tchar((unsigned char)s[i]))
      i++;
    size_t name_len = i - name;
    if (name_len == 0 || i >= len || s[i] != '=')
      return TUSC_EINVALID_HEADER;
    i++;
    char value[512];
    size_t value_len;
    int err = read_param_value(s, len, &i, value, sizeof(value), &value_len);
    if (err != 0)
      return err;
    const char *n = s + name;
    bool *seen = NULL;
    if (equals_nocase(n, name_len, "for")) {
      seen = &seen_for;
      err = parse_node(value, value_len, true, f.for_addr);
    } else if (equals_nocase(n, name_len, "proto")) {
      seen = &seen_proto;
      if (equals_nocase(value, value_len, "http") || equals_nocase(value, value_len, "https")) {
        for (size_t k = 0; k <= value_len; k++)
          f.proto[k] = (char)lower((unsigned char)value[k]);
      }
    } else if (equals_nocase(n, name_len, "host")) {
      seen = &seen_host;
      if (!tusc_host_valid(value, value_len))
        err = TUSC_EINVALID_HEADER;
      else
        memcpy(f.host, value, value_len + 1);
    } else if (equals_nocase(n, name_len, "by")) {
      seen = &seen_by;
    }
    if (err != 0)
      return err;
    /* RFC 7239 §4: a parameter must not occur twice in one element; a proxy chain
     * that lets a client smuggle a second "for=" should not be believed. */
    if (seen != NULL) {
      if (*seen)
        return TUSC_EINVALID_HEADER;
      *seen = true;
    }
    while (i < len && is_ows(s[i]))
      i++;
    if (i < len && s[i] != ';' && s[i] != ',')
      return TUSC_EINVALID_HEADER;
  }
  if (i < len)
    i++; /* the ',' ending this element */
  *pos = i;
  *out = f;
  return 0;
}

int tusc_forwarded_parse(const char *s, size_t len, tusc_forwarded_t *out) {
  size_t pos = 0;
  return forwarded_element(s, s != NULL ? len : 0, &pos, out);
}

int tusc_forwarded_parse_next(const char *s, size_t len, size_t *pos, tusc_forwarded_t *out) {
  size_t i = *pos;
  if (s == NULL)
    return TUSC_EINVALID_HEADER;
  while (i < len && (is_ows(s[i]) || s[i] == ','))
    i++;
  if (i >= len)
    return TUSC_EINVALID_HEADER;
  int err = forwarded_element(s, len, &i, out);
  if (err == 0)
    *pos = i;
  return err;
}

int tusc_xff_first(const char *s, size_t len, char out[64]) {
  if (s == NULL)
    return TUSC_EINVALID_HEADER;
  size_t a = 0;
  while (a < len && is_ows(s[a]))
    a++;
  size_t b = a;
  while (b < len && s[b] != ',')
    b++;
  while (b > a && is_ows(s[b - 1]))
    b--;
  char addr[64];
  if (parse_node(s + a, b - a, false, addr) != 0)
    return TUSC_EINVALID_HEADER;
  memcpy(out, addr, strlen(addr) + 1);
  return 0;
}

static bool is_reg_name_char(unsigned char c) {
  /* RFC 3986 unreserved and sub-delims; '%' is checked separately. */
  return is_alpha(c) || is_digit(c) || (c != '\0' && strchr("-._~!$&'()*+,;=", c) != NULL);
}

bool tusc_host_valid(const char *host, size_t len) {
  if (host == NULL || len == 0 || len > 255)
    return false;
  size_t host_end;
  if (host[0] == '[') {
    const char *close = memchr(host, ']', len);
    if (close == NULL || !ip_literal(host + 1, (size_t)(close - host - 1), AF_INET6))
      return false;
    host_end = (size_t)(close - host) + 1;
  } else {
    host_end = 0;
    while (host_end < len && host[host_end] != ':') {
      unsigned char c = (unsigned char)host[host_end];
      if (c == '%') {
        if (host_end + 2 >= len || !is_hex((unsigned char)host[host_end + 1]) ||
            !is_hex((unsigned char)host[host_end + 2]))
          return false;
        host_end += 3;
        continue;
      }
      if (!is_reg_name_char(c))
        return false;
      host_end++;
    }
    if (host_end == 0)
      return false;
  }
  if (host_end == len)
    return true;
  return host[host_end] == ':' && port_valid(host + host_end + 1, len - host_end - 1);
}

long tusc_url_decode(const char *in, size_t len, char *out, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)in[i];
    if (c == '%') {
      if (i + 2 >= len)
        return -1;
      unsigned char h = (unsigned char)in[i + 1], l = (unsigned char)in[i + 2];
      if (!is_hex(h) || !is_hex(l))
        return -1;
      c = (unsigned char)(hex_value(h) * 16 + hex_value(l));
      i += 2;
    }
    /* A NUL, raw or encoded, would silently cut the path in any C API downstream. */
    if (c == '\0')
      return -1;
    if (o + 1 >= cap)
      return -1;
    out[o++] = (char)c;
  }
  if (cap == 0)
    return -1;
  out[o] = '\0';
  return (long)o;
}

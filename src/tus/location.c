/*
 * location — builds upload URLs. Proxy headers are client-controlled unless a trusted
 * proxy overwrote them, so they are read only with behind_proxy, and every value that
 * ends up in a Location header is validated first (no CR/LF, no spaces, no userinfo).
 */
#include "tus/location.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <uv.h>

#include "common/error.h"
#include "tus/headers.h"

static void trim(const char **s, size_t *len) {
  while (*len > 0 && (**s == ' ' || **s == '\t')) {
    (*s)++;
    (*len)--;
  }
  while (*len > 0 && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
    (*len)--;
}

/* First element of a comma-separated list, trimmed. */
static void first_element(const char **s, size_t *len) {
  const char *comma = memchr(*s, ',', *len);
  if (comma != NULL)
    *len = (size_t)(comma - *s);
  trim(s, len);
}

/* A path prefix safe to put into a URL: '/' followed by pchars (RFC 3986) and '/'. */
static int prefix_valid(const char *s, size_t len) {
  if (len == 0 || s[0] != '/')
    return 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
      continue;
    if (strchr("/-._~!$&'()*+,;=:@%", c) == NULL || c == '\0')
      return 0;
  }
  return 1;
}

static int ends_with(const char *s, size_t len, const char *suffix) {
  size_t n = strlen(suffix);
  return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

int tusc_location_host(const tusc_location_input_t *in, tusc_forwarded_t *fwd, const char **host,
                       size_t *host_len) {
  const char *h = in->host;
  size_t hl = in->host_len;
  if (h != NULL) {
    trim(&h, &hl);
    if (hl == 0)
      h = NULL;
    else if (!tusc_host_valid(h, hl))
      return TUSC_EINVALID_HEADER;
  }
  if (in->behind_proxy) {
    if (in->x_forwarded_host != NULL) {
      const char *x = in->x_forwarded_host;
      size_t xl = in->x_forwarded_host_len;
      first_element(&x, &xl);
      if (xl > 0) {
        if (!tusc_host_valid(x, xl))
          return TUSC_EINVALID_HEADER;
        h = x;
        hl = xl;
      }
    }
    /* Forwarded is the standard header and wins over the X- variants (tusd's order).
     * An unparseable one is ignored, as tusd does; its host= is validated by the
     * parser. */
    if (in->forwarded != NULL && tusc_forwarded_parse(in->forwarded, in->forwarded_len, fwd) == 0 &&
        fwd->host[0] != '\0') {
      h = fwd->host;
      hl = strlen(fwd->host);
    }
  }
  *host = h;
  *host_len = h != NULL ? hl : 0;
  return 0;
}

int tusc_location_collection(const tusc_location_input_t *in, const char *base_path, char *out,
                             size_t cap) {
  const char *host = NULL;
  size_t host_len = 0;
  const char *proto = in->tls ? "https" : "http";
  const char *prefix = "";
  size_t prefix_len = 0;
  tusc_forwarded_t fwd;

  int rc = tusc_location_host(in, &fwd, &host, &host_len);
  if (rc < 0)
    return rc;
  if (in->behind_proxy) {
    if (in->x_forwarded_proto != NULL) {
      const char *p = in->x_forwarded_proto;
      size_t pl = in->x_forwarded_proto_len;
      first_element(&p, &pl);
      if (pl == 4 && strncasecmp(p, "http", 4) == 0)
        proto = "http";
      else if (pl == 5 && strncasecmp(p, "https", 5) == 0)
        proto = "https";
    }
    /* Forwarded's proto= wins over X-Forwarded-Proto, as its host= does. */
    if (in->forwarded != NULL &&
        tusc_forwarded_parse(in->forwarded, in->forwarded_len, &fwd) == 0 &&
        (strcmp(fwd.proto, "http") == 0 || strcmp(fwd.proto, "https") == 0))
      proto = strcmp(fwd.proto, "http") == 0 ? "http" : "https";
    if (in->x_forwarded_prefix != NULL) {
      const char *p = in->x_forwarded_prefix;
      size_t pl = in->x_forwarded_prefix_len;
      first_element(&p, &pl);
      if (pl > 0) {
        if (!prefix_valid(p, pl))
          return TUSC_EINVALID_HEADER;
        /* base_path starts with '/', so the prefix must not end with one. */
        while (pl > 0 && p[pl - 1] == '/')
          pl--;
        prefix = p;
        prefix_len = pl;
      }
    }
  }

  if (host != NULL) {
    if (strcmp(proto, "http") == 0 && ends_with(host, host_len, ":80"))
      host_len -= 3;
    else if (strcmp(proto, "https") == 0 && ends_with(host, host_len, ":443"))
      host_len -= 4;
  }

  size_t need = strlen(base_path) + prefix_len + 1;
  if (host != NULL)
    need += strlen(proto) + 3 + host_len;
  if (need > cap)
    return UV_ENOBUFS;
  if (host != NULL)
    snprintf(out, cap, "%s://%.*s%.*s%s", proto, (int)host_len, host, (int)prefix_len, prefix,
             base_path);
  else
    snprintf(out, cap, "%.*s%s", (int)prefix_len, prefix, base_path);
  return 0;
}

/* The walk of tusc_location_client_addr, done left to right in one pass: an untrusted
 * address becomes the answer, an unusable entry clears it (nothing left of it can be
 * believed), a trusted one leaves it. */
struct addr_walk {
  tusc_location_trusted_cb trusted;
  void *arg;
  char answer[64];
  char leftmost[64];
  bool any;    /* an entry was seen */
  bool broken; /* the answer was cleared by an unusable entry */
  bool found;  /* answer holds an untrusted address */
};

static void walk_entry(struct addr_walk *w, const char *addr) {
  if (addr == NULL || addr[0] == '\0') {
    w->broken = true;
    w->found = false;
  } else if (w->trusted != NULL && !w->trusted(addr, w->arg)) {
    snprintf(w->answer, sizeof(w->answer), "%s", addr);
    w->found = true;
    w->broken = false;
  } else if (!w->any) {
    snprintf(w->leftmost, sizeof(w->leftmost), "%s", addr);
  }
  w->any = true;
}

/* Writes the result and returns true when the walk named a client. */
static bool walk_result(const struct addr_walk *w, char out[64]) {
  if (w->found) {
    snprintf(out, 64, "%s", w->answer);
    return true;
  }
  if (w->any && !w->broken) { /* every entry trusted: the left-most, as tusd */
    snprintf(out, 64, "%s", w->leftmost);
    return true;
  }
  return false;
}

/* Moves *pos past the next ',' outside a quoted-string (or to len). Returns whether
 * the skipped span held anything but whitespace and commas. An unterminated quote
 * swallows the rest, which can only make the walk fall back to the peer address. */
static bool skip_element(const char *s, size_t len, size_t *pos) {
  bool quoted = false, content = false;
  size_t i = *pos;
  for (; i < len; i++) {
    char c = s[i];
    if (quoted) {
      if (c == '\\')
        i++;
      else if (c == '"')
        quoted = false;
      continue;
    }
    if (c == ',') {
      i++;
      break;
    }
    if (c == '"')
      quoted = true;
    if (c != ' ' && c != '\t')
      content = true;
  }
  *pos = i < len ? i : len;
  return content;
}

void tusc_location_client_addr(bool behind_proxy, tusc_location_trusted_cb trusted, void *arg,
                               const char *x_forwarded_for, size_t xff_len, const char *forwarded,
                               size_t forwarded_len, const char *remote_addr, char out[64]) {
  if (behind_proxy && x_forwarded_for != NULL) {
    struct addr_walk w = {.trusted = trusted, .arg = arg};
    const char *p = x_forwarded_for, *end = x_forwarded_for + xff_len;
    while (p < end) {
      const char *comma = memchr(p, ',', (size_t)(end - p));
      const char *e = comma != NULL ? comma : end;
      const char *t = p;
      size_t tl = (size_t)(e - p);
      trim(&t, &tl);
      if (tl > 0) { /* empty list elements are allowed and mean nothing */
        char addr[64];
        walk_entry(&w, tusc_xff_first(t, tl, addr) == 0 ? addr : NULL);
      }
      p = e + (comma != NULL);
    }
    if (walk_result(&w, out))
      return;
  }
  if (behind_proxy && forwarded != NULL) {
    struct addr_walk w = {.trusted = trusted, .arg = arg};
    size_t pos = 0;
    tusc_forwarded_t fwd;
    while (pos < forwarded_len) {
      if (tusc_forwarded_parse_next(forwarded, forwarded_len, &pos, &fwd) == 0)
        walk_entry(&w, fwd.for_addr);
      else if (skip_element(forwarded, forwarded_len, &pos))
        walk_entry(&w, NULL); /* invalid: only what a proxy appended after it counts */
    }
    if (walk_result(&w, out))
      return;
  }
  snprintf(out, 64, "%s", remote_addr != NULL ? remote_addr : "");
}

/*
 * fuzz_forwarded — Forwarded (RFC 7239), X-Forwarded-For and Host validation: the
 * values a proxy (or a client pretending to be one) controls. Oracles: outputs are
 * NUL-terminated inside their buffers, proto is "", "http" or "https", a host that
 * passes tusc_host_valid has no byte that could break a Location header or URL.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tus/headers.h"

static void check_host(const char *h, size_t n) {
  if (!tusc_host_valid(h, n))
    return;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)h[i];
    if (c <= 0x20 || c >= 0x7f || c == '/' || c == '\\' || c == '?' || c == '#' || c == '@' ||
        c == '"')
      abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = malloc(size ? size : 1);
  if (s == NULL)
    return 0;
  memcpy(s, data, size);

  tusc_forwarded_t fw;
  memset(&fw, 0x41, sizeof(fw));
  if (tusc_forwarded_parse(s, size, &fw) == 0) {
    if (memchr(fw.host, 0, sizeof(fw.host)) == NULL || memchr(fw.proto, 0, sizeof(fw.proto)) == NULL ||
        memchr(fw.for_addr, 0, sizeof(fw.for_addr)) == NULL)
      abort();
    if (fw.proto[0] && strcmp(fw.proto, "http") != 0 && strcmp(fw.proto, "https") != 0)
      abort();
    check_host(fw.host, strlen(fw.host));
  }

  char out[64];
  memset(out, 0x41, sizeof(out));
  if (tusc_xff_first(s, size, out) == 0) {
    if (memchr(out, 0, sizeof(out)) == NULL || out[0] == '\0')
      abort();
    for (const char *p = out; *p; p++)
      if (!(((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F') ||
             *p == '.' || *p == ':')))
        abort();
  }

  check_host(s, size);
  free(s);
  return 0;
}

/*
 * fuzz_concat — the Upload-Concat parser ("partial" / "final;<url> <url>..."), the
 * one header whose values name other uploads. Oracles: a final lists 1 to
 * TUSC_CONCAT_MAX_PARTIALS IDs, every one of them valid by the ID grammar (so no URL
 * can point the assembly at a file outside the store); a partial lists none.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tus/concat.h"
#include "tus/headers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = malloc(size ? size : 1);
  if (s == NULL)
    return 0;
  memcpy(s, data, size);
  const char *collections[] = {"/proxy/files/", NULL};
  for (size_t k = 0; k < 2; k++) {
    tusc_concat_t c;
    memset(&c, 0, sizeof(c));
    if (tusc_concat_parse(s, size, collections[k], "/files/", &c) != 0)
      continue;
    if (c.is_partial == c.is_final)
      abort();
    if (c.is_partial && c.count != 0)
      abort();
    if (c.is_final && (c.count == 0 || c.count > TUSC_CONCAT_MAX_PARTIALS))
      abort();
    for (size_t i = 0; i < c.count; i++)
      if (c.ids[i] == NULL || !tusc_id_valid(c.ids[i], strlen(c.ids[i])))
        abort();
    tusc_concat_dispose(&c);
  }
  free(s);
  return 0;
}

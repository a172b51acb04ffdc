/*
 * fuzz_metadata — Upload-Metadata parsing. Oracle: whatever parses must format back
 * into a header that parses to the same pairs (keys, value bytes), and the parser
 * must never read past `len` (the input is copied into an exactly sized buffer).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/metadata.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = malloc(size ? size : 1);
  if (s == NULL)
    return 0;
  memcpy(s, data, size);
  tusc_metadata_t md = {0};
  if (tusc_metadata_parse(s, size, &md) == 0) {
    char *text = tusc_metadata_format(&md);
    if (text == NULL)
      abort();
    tusc_metadata_t again = {0};
    if (tusc_metadata_parse(text, strlen(text), &again) != 0 || again.count != md.count)
      abort();
    for (size_t i = 0; i < md.count; i++) {
      const tusc_metadata_pair_t *p = tusc_metadata_get(&again, md.pairs[i].key);
      if (p == NULL || p->value_len != md.pairs[i].value_len ||
          memcmp(p->value, md.pairs[i].value, p->value_len) != 0 || p->value[p->value_len] != 0)
        abort();
    }
    tusc_metadata_dispose(&again);
    free(text);
    tusc_metadata_dispose(&md);
  }
  free(s);
  return 0;
}

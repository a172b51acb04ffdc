/*
 * fuzz_info — loading .info JSON (tusd's or tusc's; a .info file is trusted input
 * only as far as the disk is, and tusd-written files arrive from elsewhere). Oracle:
 * what loads must save to JSON that loads back to the same upload.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

static void same(const tusc_upload_info_t *a, const tusc_upload_info_t *b) {
  if (strcmp(a->id, b->id) != 0 || a->size_is_deferred != b->size_is_deferred ||
      (!a->size_is_deferred && a->size != b->size) || a->offset != b->offset ||
      a->is_partial != b->is_partial || a->is_final != b->is_final ||
      a->partial_count != b->partial_count || a->metadata.count != b->metadata.count ||
      a->created_at != b->created_at || a->expires_at != b->expires_at ||
      (a->owner == NULL) != (b->owner == NULL) || (a->owner && strcmp(a->owner, b->owner) != 0))
    abort();
  for (size_t i = 0; i < a->partial_count; i++)
    if (strcmp(a->partial_uploads[i], b->partial_uploads[i]) != 0)
      abort();
  for (size_t i = 0; i < a->metadata.count; i++) {
    const tusc_metadata_pair_t *p = tusc_metadata_get(&b->metadata, a->metadata.pairs[i].key);
    if (p == NULL || p->value_len != a->metadata.pairs[i].value_len ||
        memcmp(p->value, a->metadata.pairs[i].value, p->value_len) != 0)
      abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = malloc(size ? size : 1);
  if (s == NULL)
    return 0;
  memcpy(s, data, size);
  tusc_upload_info_t info;
  tusc_upload_info_init(&info);
  if (tusc_upload_info_from_json(s, size, &info) == 0) {
    char *json = tusc_upload_info_to_json(&info);
    if (json == NULL)
      abort();
    tusc_upload_info_t again;
    tusc_upload_info_init(&again);
    if (tusc_upload_info_from_json(json, strlen(json), &again) != 0)
      abort();
    same(&info, &again);
    tusc_upload_info_dispose(&again);
    free(json);
  }
  tusc_upload_info_dispose(&info);
  free(s);
  return 0;
}

/*
 * hook_types — event names and the hook response's lifetime.
 */
#include "hooks/hook_types.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"

static const char *const event_names[TUSC_HOOK_EVENT_COUNT] = {
    "pre-create",  "post-create",   "post-receive",   "pre-finish",
    "post-finish", "pre-terminate", "post-terminate",
};

const char *tusc_hook_event_name(enum tusc_hook_event ev) {
  if ((unsigned)ev >= TUSC_HOOK_EVENT_COUNT)
    return "";
  return event_names[ev];
}

int tusc_hook_event_parse(const char *name, size_t len, enum tusc_hook_event *out) {
  for (int i = 0; i < TUSC_HOOK_EVENT_COUNT; i++) {
    if (strlen(event_names[i]) == len && memcmp(event_names[i], name, len) == 0) {
      *out = (enum tusc_hook_event)i;
      return 0;
    }
  }
  return TUSC_EINVALID_ARGUMENT;
}

bool tusc_hook_event_blocking(enum tusc_hook_event ev) {
  return ev == TUSC_HOOK_PRE_CREATE || ev == TUSC_HOOK_PRE_FINISH || ev == TUSC_HOOK_PRE_TERMINATE;
}

/* --- response ------------------------------------------------------------------------ */

void tusc_hook_response_init(tusc_hook_response_t *resp) {
  memset(resp, 0, sizeof(*resp));
}

void tusc_hook_response_dispose(tusc_hook_response_t *resp) {
  if (!resp)
    return;
  free(resp->body);
  for (size_t i = 0; i < resp->header_count; i++) {
    free(resp->headers[i].name);
    free(resp->headers[i].value);
  }
  free(resp->headers);
  free(resp->change_id);
  free(resp->change_storage_path);
  if (resp->has_metadata)
    tusc_metadata_dispose(&resp->metadata);
  tusc_hook_response_init(resp);
}

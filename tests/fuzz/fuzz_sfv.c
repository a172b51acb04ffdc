/*
 * fuzz_sfv — Structured Field parsing (sfv.c) and the IETF draft's header helpers
 * (Content-Disposition file names, completeness, lengths in ietf.c). Oracles: the
 * typed parsers agree with the generic item parser, numbers stay in RFC 9651's range,
 * parsed text lies inside the input, unescaped strings are no longer than their raw
 * form, and a file name is NUL-terminated UTF-8-or-ASCII text without control bytes.
 * The input is copied into an exactly sized buffer so over-reads are caught.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tus/ietf.h"
#include "tus/sfv.h"

static void check_item(const tusc_sfv_item_t *item, const char *s, size_t size) {
  switch (item->type) {
  case TUSC_SFV_INTEGER:
  case TUSC_SFV_DATE:
    if (item->integer > TUSC_SFV_INTEGER_MAX || item->integer < -TUSC_SFV_INTEGER_MAX)
      abort();
    break;
  case TUSC_SFV_STRING:
  case TUSC_SFV_TOKEN:
  case TUSC_SFV_BYTES:
  case TUSC_SFV_DISPLAY_STRING:
    if (item->str < s || item->str + item->str_len > s + size)
      abort();
    break;
  default:
    break;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = malloc(size ? size : 1);
  if (s == NULL)
    return 0;
  memcpy(s, data, size);

  tusc_sfv_item_t item;
  int item_rc = tusc_sfv_parse_item(s, size, &item);
  if (item_rc == 0) {
    check_item(&item, s, size);
    if (item.type == TUSC_SFV_STRING) {
      char out[4097];
      long n = tusc_sfv_string_value(&item, out, sizeof(out));
      if (n > (long)item.str_len || (n >= 0 && out[n] != '\0'))
        abort();
    }
  }
  bool b = false;
  if ((tusc_sfv_parse_boolean(s, size, &b) == 0) != (item_rc == 0 && item.type == TUSC_SFV_BOOLEAN))
    abort();
  int64_t v = 0;
  if ((tusc_sfv_parse_integer(s, size, &v) == 0) != (item_rc == 0 && item.type == TUSC_SFV_INTEGER))
    abort();

  tusc_sfv_member_t members[8];
  size_t count = 0;
  if (tusc_sfv_parse_dictionary(s, size, members, 8, &count) == 0) {
    if (count > 8)
      abort();
    for (size_t i = 0; i < count; i++) {
      check_item(&members[i].item, s, size);
      if (tusc_sfv_dict_get(members, count, members[i].key) != &members[i])
        abort(); /* keys are unique */
    }
  }
  tusc_sfv_item_t items[8];
  if (tusc_sfv_parse_list(s, size, items, 8, &count) == 0) {
    if (count > 8)
      abort();
    for (size_t i = 0; i < count; i++)
      check_item(&items[i], s, size);
  }

  char name[256];
  long n = tusc_ietf_disposition_filename(s, size, name, sizeof(name));
  if (n == 0 || n >= (long)sizeof(name) ||
      (n > 0 && (name[n] != '\0' || strlen(name) != (size_t)n)))
    abort();
  for (long i = 0; i < n; i++)
    if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
      abort();

  int version = 0;
  if (tusc_ietf_parse_version(s, size, &version) == 0 &&
      (version < TUSC_IETF_VERSION_MIN || version > TUSC_IETF_VERSION_MAX))
    abort();
  int64_t length = 0;
  if (tusc_ietf_request_length(true, s, size, 10, 5, &length) == 0 && length != 15)
    abort(); /* only "15" (with optional parameters) agrees with offset 5 + body 10 */
  free(s);
  return 0;
}

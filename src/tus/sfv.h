/*
 * sfv — strict parser for HTTP Structured Field Values (RFC 9651, which obsoletes RFC
 * 8941): items, lists and dictionaries, with every bare-item type (integer, decimal,
 * string, token, byte sequence, boolean, date, display string), parameters and inner
 * lists. The IETF resumable-upload draft sends its header values in this syntax
 * (Upload-Complete: ?1, Upload-Offset: 42, Upload-Limit: max-size=100).
 *
 * Strict means the RFC's parsing algorithm without its "ignore the field" escape
 * hatch: anything the algorithm would fail on returns TUSC_EINVALID_HEADER, so the
 * caller can answer 400. Leading and trailing spaces of the whole field are allowed
 * (the algorithm discards them).
 *
 * Pure, no allocation, thread-safe. Parsed strings, tokens and byte sequences point
 * into the caller's input (raw, still escaped / still base64); nothing is copied.
 */
#ifndef TUSC_TUS_SFV_H
#define TUSC_TUS_SFV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 9651 limits: integers have at most 15 digits. */
#define TUSC_SFV_INTEGER_MAX 999999999999999LL
#define TUSC_SFV_KEY_MAX 64 /* our cap on key length (the RFC sets none) */

enum tusc_sfv_type {
  TUSC_SFV_INTEGER = 1,
  TUSC_SFV_DECIMAL,
  TUSC_SFV_STRING,
  TUSC_SFV_TOKEN,
  TUSC_SFV_BYTES,
  TUSC_SFV_BOOLEAN,
  TUSC_SFV_DATE,
  TUSC_SFV_DISPLAY_STRING,
  TUSC_SFV_INNER_LIST, /* only as a list or dictionary member; items not kept */
};

/* One bare item (or an inner list marker). For DECIMAL, `integer` holds the value in
 * thousandths (1.5 → 1500). For STRING / TOKEN / BYTES / DISPLAY_STRING, `str` and
 * `str_len` delimit the raw text without its delimiters (escapes left in place). */
typedef struct tusc_sfv_item_s {
  enum tusc_sfv_type type;
  int64_t integer;
  bool boolean;
  const char *str;
  size_t str_len;
  size_t param_count; /* parameters were validated; only their number is kept */
} tusc_sfv_item_t;

typedef struct tusc_sfv_member_s {
  char key[TUSC_SFV_KEY_MAX + 1];
  tusc_sfv_item_t item;
} tusc_sfv_member_t;

/* Parses a whole field as an Item. Returns 0 or TUSC_EINVALID_HEADER; *out written
 * only on success. */
int tusc_sfv_parse_item(const char *s, size_t len, tusc_sfv_item_t *out);

/* An Item that must be a Boolean (parameters allowed and ignored). */
int tusc_sfv_parse_boolean(const char *s, size_t len, bool *out);

/* An Item that must be an Integer (parameters allowed and ignored). */
int tusc_sfv_parse_integer(const char *s, size_t len, int64_t *out);

/* Parses a Dictionary into members[0..cap). A key seen twice keeps its first position
 * and its last value (RFC 9651 §4.2.2). A member without "=value" is Boolean true.
 * More than `cap` distinct keys → TUSC_EINVALID_HEADER. The empty field is an empty
 * dictionary. Returns 0 and *count, or TUSC_EINVALID_HEADER. */
int tusc_sfv_parse_dictionary(const char *s, size_t len, tusc_sfv_member_t *members, size_t cap,
                              size_t *count);

/* Parses a List (members' items into items[0..cap)). Same rules as dictionaries. */
int tusc_sfv_parse_list(const char *s, size_t len, tusc_sfv_item_t *items, size_t cap,
                        size_t *count);

/* The member called `key`, or NULL. */
const tusc_sfv_member_t *tusc_sfv_dict_get(const tusc_sfv_member_t *members, size_t count,
                                           const char *key);

/* Unescapes a STRING item's raw text into out (cap bytes incl. NUL). Returns the
 * length or -1 when it does not fit. */
long tusc_sfv_string_value(const tusc_sfv_item_t *item, char *out, size_t cap);

#endif

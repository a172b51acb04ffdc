/*
 * sfv — Structured Field Values (see sfv.h). The functions follow RFC 9651 §4.2 step by
 * step; each takes a cursor and fails (returns -1) at the first byte the algorithm
 * would reject, leaving the cursor anywhere. Only the public entry points map that to
 * TUSC_EINVALID_HEADER and insist on consuming the whole field.
 */
#include "tus/sfv.h"

#include <string.h>

#include "common/error.h"
#include "common/utf8.h"

typedef struct cursor_s {
  const char *p;
  const char *end;
} cursor_t;

static bool at_end(const cursor_t *c) {
  return c->p >= c->end;
}

static int peek(const cursor_t *c) {
  return at_end(c) ? -1 : (unsigned char)*c->p;
}

static bool is_digit(int ch) {
  return ch >= '0' && ch <= '9';
}
static bool is_alpha(int ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}
static bool is_lcalpha(int ch) {
  return ch >= 'a' && ch <= 'z';
}
static bool is_tchar(int ch) {
  return is_alpha(ch) || is_digit(ch) || (ch > 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}
static bool is_base64(int ch) {
  return is_alpha(ch) || is_digit(ch) || ch == '+' || ch == '/' || ch == '=';
}
static bool is_lchex(int ch) {
  return is_digit(ch) || (ch >= 'a' && ch <= 'f');
}

static void skip_sp(cursor_t *c) {
  while (peek(c) == ' ')
    c->p++;
}
static void skip_ows(cursor_t *c) {
  while (peek(c) == ' ' || peek(c) == '\t')
    c->p++;
}

/* §4.2.4: Integer or Decimal; Decimal in thousandths. */
static int parse_number(cursor_t *c, tusc_sfv_item_t *out) {
  bool decimal = false;
  int64_t sign = 1;
  if (peek(c) == '-') {
    sign = -1;
    c->p++;
  }
  if (!is_digit(peek(c)))
    return -1;
  int64_t int_part = 0, frac = 0;
  size_t digits = 0, frac_digits = 0;
  for (;;) {
    int ch = peek(c);
    if (is_digit(ch)) {
      if (decimal) {
        frac = frac * 10 + (ch - '0');
        frac_digits++;
      } else {
        int_part = int_part * 10 + (ch - '0');
      }
      digits++;
    } else if (!decimal && ch == '.') {
      if (digits > 12)
        return -1;
      decimal = true;
    } else {
      break;
    }
    c->p++;
    /* Checked per digit so the accumulators can never overflow. */
    if (!decimal && digits > 15)
      return -1;
    if (decimal && digits + 1 > 16)
      return -1;
  }
  if (!decimal) {
    out->type = TUSC_SFV_INTEGER;
    out->integer = sign * int_part;
    return 0;
  }
  if (frac_digits == 0 || frac_digits > 3)
    return -1;
  while (frac_digits < 3) {
    frac *= 10;
    frac_digits++;
  }
  out->type = TUSC_SFV_DECIMAL;
  out->integer = sign * (int_part * 1000 + frac);
  return 0;
}

/* §4.2.5 */
static int parse_string(cursor_t *c, tusc_sfv_item_t *out) {
  c->p++; /* '"' */
  const char *start = c->p;
  while (!at_end(c)) {
    int ch = peek(c);
    if (ch == '\\') {
      c->p++;
      int next = peek(c);
      if (next != '"' && next != '\\')
        return -1;
    } else if (ch == '"') {
      out->type = TUSC_SFV_STRING;
      out->str = start;
      out->str_len = (size_t)(c->p - start);
      c->p++;
      return 0;
    } else if (ch < 0x20 || ch > 0x7e) {
      return -1;
    }
    c->p++;
  }
  return -1;
}

/* §4.2.6 */
static int parse_token(cursor_t *c, tusc_sfv_item_t *out) {
  const char *start = c->p;
  int ch = peek(c);
  if (!is_alpha(ch) && ch != '*')
    return -1;
  c->p++;
  while (!at_end(c) && (is_tchar(peek(c)) || peek(c) == ':' || peek(c) == '/'))
    c->p++;
  out->type = TUSC_SFV_TOKEN;
  out->str = start;
  out->str_len = (size_t)(c->p - start);
  return 0;
}

/* §4.2.7 */
static int parse_bytes(cursor_t *c, tusc_sfv_item_t *out) {
  c->p++; /* ':' */
  const char *start = c->p;
  while (!at_end(c) && peek(c) != ':') {
    if (!is_base64(peek(c)))
      return -1;
    c->p++;
  }
  if (at_end(c))
    return -1;
  out->type = TUSC_SFV_BYTES;
  out->str = start;
  out->str_len = (size_t)(c->p - start);
  c->p++;
  return 0;
}

/* §4.2.8 */
static int parse_boolean(cursor_t *c, tusc_sfv_item_t *out) {
  c->p++; /* '?' */
  int ch = peek(c);
  if (ch != '0' && ch != '1')
    return -1;
  c->p++;
  out->type = TUSC_SFV_BOOLEAN;
  out->boolean = ch == '1';
  return 0;
}

/* §4.2.9 */
static int parse_date(cursor_t *c, tusc_sfv_item_t *out) {
  c->p++; /* '@' */
  if (parse_number(c, out) < 0 || out->type != TUSC_SFV_INTEGER)
    return -1;
  out->type = TUSC_SFV_DATE;
  return 0;
}

static int hexval(int ch) {
  return is_digit(ch) ? ch - '0' : ch - 'a' + 10;
}

/* §4.2.10: %"..." with lowercase %xx escapes whose bytes must be UTF-8. */
static int parse_display_string(cursor_t *c, tusc_sfv_item_t *out) {
  c->p++; /* '%' */
  if (peek(c) != '"')
    return -1;
  c->p++;
  const char *start = c->p;
  unsigned char pending[4];
  size_t npending = 0;
  while (!at_end(c)) {
    int ch = peek(c);
    if (ch < 0x20 || ch > 0x7e)
      return -1;
    if (ch == '"') {
      if (npending != 0)
        return -1;
      out->type = TUSC_SFV_DISPLAY_STRING;
      out->str = start;
      out->str_len = (size_t)(c->p - start);
      c->p++;
      return 0;
    }
    if (ch == '%') {
      if (c->end - c->p < 3 || !is_lchex((unsigned char)c->p[1]) ||
          !is_lchex((unsigned char)c->p[2]))
        return -1;
      unsigned char b =
          (unsigned char)(hexval((unsigned char)c->p[1]) * 16 + hexval((unsigned char)c->p[2]));
      c->p += 3;
      if (npending >= sizeof(pending))
        return -1;
      pending[npending++] = b;
      /* Decode as soon as a complete sequence is buffered; a prefix that can never
       * complete fails at 4 bytes or at the next non-escaped character. */
      size_t want = pending[0] < 0x80 ? 1 : pending[0] >= 0xf0 ? 4 : pending[0] >= 0xe0 ? 3 : 2;
      if (npending == want) {
        if (tusc_utf8_seq(pending, npending, NULL) != npending)
          return -1;
        npending = 0;
      }
      continue;
    }
    if (npending != 0)
      return -1;
    c->p++;
  }
  return -1;
}

static int parse_bare_item(cursor_t *c, tusc_sfv_item_t *out) {
  int ch = peek(c);
  if (ch == '-' || is_digit(ch))
    return parse_number(c, out);
  if (ch == '"')
    return parse_string(c, out);
  if (ch == '*' || is_alpha(ch))
    return parse_token(c, out);
  if (ch == ':')
    return parse_bytes(c, out);
  if (ch == '?')
    return parse_boolean(c, out);
  if (ch == '@')
    return parse_date(c, out);
  if (ch == '%')
    return parse_display_string(c, out);
  return -1;
}

/* §4.2.3.3: writes a NUL-terminated key into out (TUSC_SFV_KEY_MAX + 1 bytes). */
static int parse_key(cursor_t *c, char *out) {
  int ch = peek(c);
  if (!is_lcalpha(ch) && ch != '*')
    return -1;
  size_t n = 0;
  while (!at_end(c)) {
    ch = peek(c);
    if (!is_lcalpha(ch) && !is_digit(ch) && ch != '_' && ch != '-' && ch != '.' && ch != '*')
      break;
    if (n >= TUSC_SFV_KEY_MAX)
      return -1;
    out[n++] = (char)ch;
    c->p++;
  }
  out[n] = '\0';
  return 0;
}

/* §4.2.3.2 */
static int parse_parameters(cursor_t *c, size_t *count) {
  size_t n = 0;
  while (peek(c) == ';') {
    c->p++;
    skip_sp(c);
    char key[TUSC_SFV_KEY_MAX + 1];
    if (parse_key(c, key) < 0)
      return -1;
    if (peek(c) == '=') {
      c->p++;
      tusc_sfv_item_t value;
      if (parse_bare_item(c, &value) < 0)
        return -1;
    }
    n++;
  }
  *count = n;
  return 0;
}

/* §4.2.3 */
static int parse_item_params(cursor_t *c, tusc_sfv_item_t *out) {
  memset(out, 0, sizeof(*out));
  if (parse_bare_item(c, out) < 0)
    return -1;
  return parse_parameters(c, &out->param_count);
}

/* §4.2.1.2 */
static int parse_inner_list(cursor_t *c, tusc_sfv_item_t *out) {
  c->p++; /* '(' */
  while (!at_end(c)) {
    skip_sp(c);
    if (peek(c) == ')') {
      c->p++;
      memset(out, 0, sizeof(*out));
      out->type = TUSC_SFV_INNER_LIST;
      return parse_parameters(c, &out->param_count);
    }
    tusc_sfv_item_t item;
    if (parse_item_params(c, &item) < 0)
      return -1;
    if (peek(c) != ' ' && peek(c) != ')')
      return -1;
  }
  return -1;
}

static int parse_item_or_inner_list(cursor_t *c, tusc_sfv_item_t *out) {
  if (peek(c) == '(')
    return parse_inner_list(c, out);
  return parse_item_params(c, out);
}

/* After a member: end of field, or OWS "," OWS and another member. Returns 1 at the
 * end, 0 when another member follows, -1 on a syntax error. */
static int next_member(cursor_t *c) {
  skip_ows(c);
  if (at_end(c))
    return 1;
  if (peek(c) != ',')
    return -1;
  c->p++;
  skip_ows(c);
  return at_end(c) ? -1 : 0;
}

static void field_init(cursor_t *c, const char *s, size_t len) {
  c->p = s;
  c->end = s + len;
  skip_sp(c);
  while (c->end > c->p && c->end[-1] == ' ')
    c->end--;
}

int tusc_sfv_parse_item(const char *s, size_t len, tusc_sfv_item_t *out) {
  cursor_t c;
  tusc_sfv_item_t item;
  if (s == NULL)
    return TUSC_EINVALID_HEADER;
  field_init(&c, s, len);
  if (parse_item_params(&c, &item) < 0 || !at_end(&c))
    return TUSC_EINVALID_HEADER;
  *out = item;
  return 0;
}

int tusc_sfv_parse_boolean(const char *s, size_t len, bool *out) {
  tusc_sfv_item_t item;
  if (tusc_sfv_parse_item(s, len, &item) < 0 || item.type != TUSC_SFV_BOOLEAN)
    return TUSC_EINVALID_HEADER;
  *out = item.boolean;
  return 0;
}

int tusc_sfv_parse_integer(const char *s, size_t len, int64_t *out) {
  tusc_sfv_item_t item;
  if (tusc_sfv_parse_item(s, len, &item) < 0 || item.type != TUSC_SFV_INTEGER)
    return TUSC_EINVALID_HEADER;
  *out = item.integer;
  return 0;
}

int tusc_sfv_parse_dictionary(const char *s, size_t len, tusc_sfv_member_t *members, size_t cap,
                              size_t *count) {
  cursor_t c;
  size_t n = 0;
  if (s == NULL)
    return TUSC_EINVALID_HEADER;
  field_init(&c, s, len);
  while (!at_end(&c)) {
    char key[TUSC_SFV_KEY_MAX + 1];
    tusc_sfv_item_t item;
    if (parse_key(&c, key) < 0)
      return TUSC_EINVALID_HEADER;
    if (peek(&c) == '=') {
      c.p++;
      if (parse_item_or_inner_list(&c, &item) < 0)
        return TUSC_EINVALID_HEADER;
    } else {
      memset(&item, 0, sizeof(item));
      item.type = TUSC_SFV_BOOLEAN;
      item.boolean = true;
      if (parse_parameters(&c, &item.param_count) < 0)
        return TUSC_EINVALID_HEADER;
    }
    size_t i;
    for (i = 0; i < n; i++)
      if (strcmp(members[i].key, key) == 0)
        break;
    if (i == n) {
      if (n >= cap)
        return TUSC_EINVALID_HEADER;
      memcpy(members[n].key, key, sizeof(key));
      n++;
    }
    members[i].item = item;
    int rc = next_member(&c);
    if (rc < 0)
      return TUSC_EINVALID_HEADER;
    if (rc > 0)
      break;
  }
  *count = n;
  return 0;
}

int tusc_sfv_parse_list(const char *s, size_t len, tusc_sfv_item_t *items, size_t cap,
                        size_t *count) {
  cursor_t c;
  size_t n = 0;
  if (s == NULL)
    return TUSC_EINVALID_HEADER;
  field_init(&c, s, len);
  while (!at_end(&c)) {
    tusc_sfv_item_t item;
    if (parse_item_or_inner_list(&c, &item) < 0 || n >= cap)
      return TUSC_EINVALID_HEADER;
    items[n++] = item;
    int rc = next_member(&c);
    if (rc < 0)
      return TUSC_EINVALID_HEADER;
    if (rc > 0)
      break;
  }
  *count = n;
  return 0;
}

const tusc_sfv_member_t *tusc_sfv_dict_get(const tusc_sfv_member_t *members, size_t count,
                                           const char *key) {
  for (size_t i = 0; i < count; i++)
    if (strcmp(members[i].key, key) == 0)
      return &members[i];
  return NULL;
}

long tusc_sfv_string_value(const tusc_sfv_item_t *item, char *out, size_t cap) {
  size_t n = 0;
  if (cap == 0)
    return -1;
  for (size_t i = 0; i < item->str_len; i++) {
    char ch = item->str[i];
    if (ch == '\\' && i + 1 < item->str_len)
      ch = item->str[++i];
    if (n + 1 >= cap)
      return -1;
    out[n++] = ch;
  }
  out[n] = '\0';
  return (long)n;
}

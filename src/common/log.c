/*
 * log — each line is assembled completely in memory and handed to one write(2), so
 * lines from different threads never interleave (stderr is unbuffered at the fd
 * level; writes up to PIPE_BUF are atomic on pipes, and O_APPEND files keep
 * whole writes together).
 *
 * Lines are capped at LINE_MAX_BYTES so a hostile header value cannot make us
 * allocate without bound; a longer line is cut and marked with "...", and a cut JSON
 * line is still closed into a valid object.
 */
#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/utf8.h"

#define LINE_STACK_BYTES 1024
#define LINE_MAX_BYTES (64 * 1024)
/* Bytes always kept free for the ending: "...\"" + "}" + "\n". */
#define LINE_TAIL_BYTES 6

static enum tusc_log_level min_level = TUSC_LOG_INFO;
static enum tusc_log_format log_format = TUSC_LOG_TEXT;

void tusc_log_setup(enum tusc_log_level level, enum tusc_log_format format) {
  min_level = level;
  log_format = format;
}

bool tusc_log_enabled(enum tusc_log_level level) {
  return level >= min_level;
}

static const char *level_name(enum tusc_log_level level) {
  switch (level) {
  case TUSC_LOG_DEBUG:
    return "DEBUG";
  case TUSC_LOG_INFO:
    return "INFO";
  case TUSC_LOG_WARN:
    return "WARN";
  case TUSC_LOG_ERROR:
    return "ERROR";
  }
  return "INFO";
}

/* Growable line buffer: starts on the stack, moves to the heap when needed. */
struct line {
  char *p;
  size_t len;
  size_t cap;
  bool truncated;
  /* JSON only: where the field being written began, and whether its value string is
   * open, so a cut line can still be closed into a valid object. */
  size_t field_start;
  bool value_open;
  char stack[LINE_STACK_BYTES];
};

static void line_init(struct line *l) {
  l->p = l->stack;
  l->len = 0;
  l->cap = sizeof(l->stack);
  l->truncated = false;
  l->field_start = 0;
  l->value_open = false;
}

static void line_free(struct line *l) {
  if (l->p != l->stack)
    free(l->p);
}

/* Makes room for n more bytes plus the tail; false when the line is full. */
static bool line_reserve(struct line *l, size_t n) {
  if (l->truncated)
    return false;
  size_t need = l->len + n + LINE_TAIL_BYTES;
  if (need <= l->cap)
    return true;
  if (need > LINE_MAX_BYTES) {
    l->truncated = true;
    return false;
  }
  size_t cap = l->cap * 2;
  while (cap < need)
    cap *= 2;
  if (cap > LINE_MAX_BYTES)
    cap = LINE_MAX_BYTES;
  char *p = malloc(cap);
  if (p == NULL) {
    l->truncated = true;
    return false;
  }
  memcpy(p, l->p, l->len);
  line_free(l);
  l->p = p;
  l->cap = cap;
  return true;
}

static void put(struct line *l, const char *s, size_t n) {
  if (!line_reserve(l, n))
    return;
  memcpy(l->p + l->len, s, n);
  l->len += n;
}

static void puts_(struct line *l, const char *s) {
  put(l, s, strlen(s));
}

/* Like puts_, but when the line fills up, keeps as much of s as fits. Only for runs
 * of plain bytes, where a cut cannot split an escape sequence. */
static void puts_partial(struct line *l, const char *s) {
  size_t n = strlen(s);
  if (l->truncated)
    return;
  /* line_reserve never lets len pass LINE_MAX_BYTES - LINE_TAIL_BYTES. */
  size_t room = LINE_MAX_BYTES - LINE_TAIL_BYTES - l->len;
  if (n <= room) {
    put(l, s, n);
    return;
  }
  put(l, s, room);
  l->truncated = true;
}

static void putc_(struct line *l, char c) {
  put(l, &c, 1);
}

static const char hex_digits[] = "0123456789abcdef";

static bool needs_quotes(const char *v) {
  if (*v == '\0')
    return true;
  for (const unsigned char *p = (const unsigned char *)v; *p; p++)
    if (*p <= ' ' || *p == '"' || *p == '=' || *p == 0x7f)
      return true;
  return false;
}

static void put_text_value(struct line *l, const char *v) {
  if (v == NULL)
    v = "";
  if (!needs_quotes(v)) {
    puts_partial(l, v);
    return;
  }
  putc_(l, '"');
  for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
    switch (*p) {
    case '"':
      puts_(l, "\\\"");
      break;
    case '\\':
      puts_(l, "\\\\");
      break;
    case '\n':
      puts_(l, "\\n");
      break;
    case '\r':
      puts_(l, "\\r");
      break;
    case '\t':
      puts_(l, "\\t");
      break;
    default:
      if (*p < 0x20 || *p == 0x7f) {
        char esc[4] = {'\\', 'x', hex_digits[*p >> 4], hex_digits[*p & 15]};
        put(l, esc, 4);
      } else {
        putc_(l, (char)*p);
      }
    }
  }
  putc_(l, '"');
}

/* JSON string; invalid UTF-8 becomes U+FFFD so the line always parses. Escapes and
 * UTF-8 sequences are each written whole, so a cut never splits one. */
static void put_json_string(struct line *l, const char *v, bool is_value) {
  if (v == NULL)
    v = "";
  putc_(l, '"');
  if (is_value && !l->truncated)
    l->value_open = true;
  const unsigned char *p = (const unsigned char *)v;
  while (*p) {
    unsigned char c = *p;
    if (c == '"' || c == '\\') {
      char esc[2] = {'\\', (char)c};
      put(l, esc, 2);
      p++;
    } else if (c == '\n') {
      puts_(l, "\\n");
      p++;
    } else if (c == '\r') {
      puts_(l, "\\r");
      p++;
    } else if (c == '\t') {
      puts_(l, "\\t");
      p++;
    } else if (c < 0x20 || c == 0x7f) {
      char esc[6] = {'\\', 'u', '0', '0', hex_digits[c >> 4], hex_digits[c & 15]};
      put(l, esc, 6);
      p++;
    } else {
      size_t n = tusc_utf8_seq(p, strnlen((const char *)p, 4), NULL);
      if (n == 0) {
        puts_(l, "\\ufffd");
        p++;
      } else {
        put(l, (const char *)p, n);
        p += n;
      }
    }
  }
  putc_(l, '"');
  if (!l->truncated)
    l->value_open = false;
}

static void put_time(struct line *l) {
  struct timespec ts;
  struct tm tm;
  char buf[40];
  clock_gettime(CLOCK_REALTIME, &ts);
  if (gmtime_r(&ts.tv_sec, &tm) == NULL)
    memset(&tm, 0, sizeof(tm));
  int n = snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                   tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   (int)(ts.tv_nsec / 1000000));
  if (n > 0)
    put(l, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

static void begin(struct line *l, enum tusc_log_level level) {
  if (log_format == TUSC_LOG_JSON) {
    puts_(l, "{\"time\":\"");
    put_time(l);
    puts_(l, "\",\"level\":\"");
    puts_(l, level_name(level));
    putc_(l, '"');
  } else {
    puts_(l, "time=");
    put_time(l);
    puts_(l, " level=");
    puts_(l, level_name(level));
  }
  l->field_start = l->len;
}

static void field(struct line *l, const char *key, const char *value) {
  if (log_format == TUSC_LOG_JSON) {
    if (!l->truncated)
      l->field_start = l->len;
    putc_(l, ',');
    put_json_string(l, key, false);
    putc_(l, ':');
    put_json_string(l, value, true);
  } else {
    putc_(l, ' ');
    /* Keys come from our code, but keep the line parseable whatever they hold. */
    for (const char *k = key; *k; k++)
      putc_(l, (*k <= ' ' || *k == '=' || *k == '"' || *k == 0x7f) ? '_' : *k);
    putc_(l, '=');
    put_text_value(l, value);
  }
}

static void finish(struct line *l) {
  /* line_reserve keeps LINE_TAIL_BYTES free, so the ending always fits. */
  if (l->truncated && log_format == TUSC_LOG_JSON) {
    if (l->value_open) {
      memcpy(l->p + l->len, "...\"", 4);
      l->len += 4;
    } else {
      l->len = l->field_start; /* drop the half-written field */
    }
  } else if (l->truncated) {
    memcpy(l->p + l->len, "...", 3);
    l->len += 3;
  }
  if (log_format == TUSC_LOG_JSON)
    l->p[l->len++] = '}';
  l->p[l->len++] = '\n';
  const char *p = l->p;
  size_t left = l->len;
  while (left > 0) {
    ssize_t w = write(STDERR_FILENO, p, left);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    p += w;
    left -= (size_t)w;
  }
}

void tusc_log_msg(enum tusc_log_level level, const char *fmt, ...) {
  if (!tusc_log_enabled(level))
    return;
  char stack_msg[512];
  char *msg = stack_msg;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(stack_msg, sizeof(stack_msg), fmt, ap);
  va_end(ap);
  if (n < 0) {
    stack_msg[0] = '\0';
  } else if ((size_t)n >= sizeof(stack_msg)) {
    size_t want = (size_t)n + 1;
    if (want > LINE_MAX_BYTES)
      want = LINE_MAX_BYTES;
    char *heap = malloc(want);
    if (heap != NULL) {
      va_start(ap, fmt);
      vsnprintf(heap, want, fmt, ap);
      va_end(ap);
      msg = heap;
    }
  }
  struct line l;
  line_init(&l);
  begin(&l, level);
  if (log_format == TUSC_LOG_JSON) {
    field(&l, "msg", msg);
  } else {
    /* msg is always quoted so a reader can tell free text from structured fields. */
    puts_(&l, " msg=");
    if (needs_quotes(msg)) {
      put_text_value(&l, msg);
    } else {
      putc_(&l, '"');
      puts_partial(&l, msg);
      putc_(&l, '"');
    }
  }
  finish(&l);
  line_free(&l);
  if (msg != stack_msg)
    free(msg);
}

void tusc_log_event(enum tusc_log_level level, const char *event, ...) {
  if (!tusc_log_enabled(level))
    return;
  struct line l;
  line_init(&l);
  begin(&l, level);
  field(&l, "event", event);
  va_list ap;
  va_start(ap, event);
  for (;;) {
    const char *key = va_arg(ap, const char *);
    if (key == NULL)
      break;
    const char *value = va_arg(ap, const char *);
    field(&l, key, value);
    /* A NULL value is logged as empty, but it must not end the list early: the
     * sentinel is only ever in key position. */
  }
  va_end(ap);
  finish(&l);
  line_free(&l);
}

/*
 * report — the terminal display is redrawn in place: the cursor goes back up over the
 * lines drawn last time ("ESC[nA"), which are then cleared ("ESC[J") and rewritten in
 * one fwrite, so the picture never tears. Messages clear the display first and are
 * printed above it; the next tick draws it again below them.
 */
#include "upload/report.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <jansson.h>

#include "common/utf8.h"

/* The display is one buffer; active-file lines beyond this are summarised. */
#define DISPLAY_MAX_BYTES 16384
#define DISPLAY_MAX_FILES 16

struct up_report_s {
  enum up_progress_mode mode;
  bool json;
  FILE *out;
  uint64_t interval_ms;
  uint64_t last_plain_ms;
  int drawn_lines; /* tty: lines of the display currently on screen */
  bool json_first;
  char buf[DISPLAY_MAX_BYTES];
};

int up_report_new(enum up_progress_mode mode, bool json, FILE *out, uint64_t interval_ms,
                  up_report_t **r) {
  up_report_t *rep = calloc(1, sizeof(*rep));
  if (rep == NULL)
    return -ENOMEM;
  if (mode == UP_PROGRESS_AUTO)
    mode = isatty(STDERR_FILENO) ? UP_PROGRESS_TTY : UP_PROGRESS_PLAIN;
  rep->mode = mode;
  rep->json = json;
  rep->out = out;
  rep->interval_ms = interval_ms;
  rep->json_first = true;
  if (json) {
    fputs("{\"files\":[", out);
    fflush(out);
  }
  *r = rep;
  return 0;
}

void up_report_free(up_report_t *r) {
  free(r);
}

void up_report_bytes(uint64_t n, char *out, size_t cap) {
  static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = (double)n;
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    u++;
  }
  if (u == 0)
    snprintf(out, cap, "%llu B", (unsigned long long)n);
  else
    snprintf(out, cap, "%.1f %s", v, units[u]);
}

static void format_duration(double secs, char *out, size_t cap) {
  if (secs < 0 || secs > 99 * 86400.0) {
    snprintf(out, cap, "--");
    return;
  }
  unsigned long s = (unsigned long)(secs + 0.5);
  if (s >= 3600)
    snprintf(out, cap, "%luh%02lum", s / 3600, s / 60 % 60);
  else if (s >= 60)
    snprintf(out, cap, "%lum%02lus", s / 60, s % 60);
  else
    snprintf(out, cap, "%lus", s);
}

static int term_width(void) {
  struct winsize ws;
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
    return ws.ws_col;
  return 80;
}

/* The one-line summary shared by the display and the plain lines. */
static void summary_line(const up_report_snapshot_t *s, char *out, size_t cap) {
  char done[32], total[32], rate[32], eta[32];
  up_report_bytes(s->bytes_done, done, sizeof(done));
  up_report_bytes(s->bytes_total, total, sizeof(total));
  up_report_bytes((uint64_t)s->rate, rate, sizeof(rate));
  if (s->total_known && s->rate > 0 && s->bytes_total >= s->bytes_done)
    format_duration((double)(s->bytes_total - s->bytes_done) / s->rate, eta, sizeof(eta));
  else
    snprintf(eta, sizeof(eta), "--");
  snprintf(out, cap, "%s / %s%s  files %llu/%llu%s done, %llu failed  %s/s  ETA %s", done, total,
           s->total_known ? "" : "+", (unsigned long long)(s->files_done + s->files_skipped),
           (unsigned long long)(s->total_known ? s->files_total : s->files_seen),
           s->total_known ? "" : "+", (unsigned long long)s->files_failed, rate, eta);
}

static size_t append(up_report_t *r, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static size_t append(up_report_t *r, size_t len, const char *fmt, ...) {
  if (len >= sizeof(r->buf))
    return len;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(r->buf + len, sizeof(r->buf) - len, fmt, ap);
  va_end(ap);
  if (n < 0)
    return len;
  len += (size_t)n;
  return len < sizeof(r->buf) ? len : sizeof(r->buf) - 1;
}

static void clear_display(up_report_t *r) {
  if (r->mode != UP_PROGRESS_TTY || r->drawn_lines == 0)
    return;
  fprintf(stderr, "\r\x1b[%dA\x1b[J", r->drawn_lines);
  r->drawn_lines = 0;
}

/* Cuts a name to `width` columns (bytes; names are mostly ASCII), keeping its end. */
static void put_name(char *out, size_t cap, const char *name, int width) {
  size_t n = strlen(name);
  if (width < 4 || n <= (size_t)width) {
    snprintf(out, cap, "%s", name);
    return;
  }
  const char *tail = name + n - (size_t)(width - 3);
  /* Do not start inside a UTF-8 sequence. */
  while (*tail && ((unsigned char)*tail & 0xC0) == 0x80)
    tail++;
  snprintf(out, cap, "...%s", tail);
}

static void draw(up_report_t *r, const up_report_snapshot_t *s) {
  int width = term_width();
  char line[512];
  size_t len = 0;
  summary_line(s, line, sizeof(line));
  len = append(r, len, "%.*s\x1b[K\n", width - 1, line);
  int lines = 1;
  int shown = s->nactive < DISPLAY_MAX_FILES ? s->nactive : DISPLAY_MAX_FILES;
  for (int i = 0; i < shown; i++) {
    const up_report_active_t *a = &s->active[i];
    int pct = a->size ? (int)(a->done * 100 / a->size) : 100;
    char sz[32], name[512];
    up_report_bytes(a->size, sz, sizeof(sz));
    int name_width = width - 22;
    put_name(name, sizeof(name), a->name, name_width);
    len = append(r, len, "  %3d%% %10s  %s\x1b[K\n", pct, sz, name);
    lines++;
  }
  if (s->nactive > shown) {
    len = append(r, len, "  ... and %d more\x1b[K\n", s->nactive - shown);
    lines++;
  }
  clear_display(r);
  fwrite(r->buf, 1, len, stderr);
  fflush(stderr);
  r->drawn_lines = lines;
}

void up_report_tick(up_report_t *r, const up_report_snapshot_t *s, uint64_t now_ms) {
  if (r->mode == UP_PROGRESS_TTY) {
    draw(r, s);
  } else if (r->mode == UP_PROGRESS_PLAIN) {
    if (r->last_plain_ms != 0 && now_ms - r->last_plain_ms < r->interval_ms)
      return;
    if (r->last_plain_ms == 0) { /* the first line after one interval, not at once */
      r->last_plain_ms = now_ms;
      return;
    }
    r->last_plain_ms = now_ms;
    char line[512];
    summary_line(s, line, sizeof(line));
    fprintf(stderr, "progress: %s\n", line);
  }
}

void up_report_msg(up_report_t *r, const char *fmt, ...) {
  clear_display(r);
  va_list ap;
  va_start(ap, fmt);
  fputs("tusc-upload: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

/* A JSON string from bytes that may not be UTF-8 (file names): bad bytes become U+FFFD. */
static json_t *json_text(const char *s) {
  if (s == NULL)
    return json_null();
  size_t n = strlen(s);
  if (tusc_utf8_valid(s, n))
    return json_stringn(s, n);
  size_t o = 0;
  char *fixed = tusc_utf8_lossy(s, n, &o);
  if (fixed == NULL)
    return json_null();
  json_t *j = json_stringn(fixed, o);
  free(fixed);
  return j;
}

void up_report_file(up_report_t *r, const char *path, const char *url, uint64_t size, uint64_t sent,
                    double seconds, const char *outcome, const char *error) {
  if (error != NULL)
    up_report_msg(r, "%s: failed: %s", path, error);
  if (!r->json)
    return;
  json_t *o = json_object();
  json_object_set_new(o, "path", json_text(path));
  json_object_set_new(o, "url", url ? json_text(url) : json_null());
  json_object_set_new(o, "bytes", json_integer((json_int_t)size));
  json_object_set_new(o, "sent", json_integer((json_int_t)sent));
  json_object_set_new(o, "seconds", json_real(seconds));
  json_object_set_new(o, "outcome", json_string(outcome));
  if (error != NULL)
    json_object_set_new(o, "error", json_text(error));
  char *text = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  if (text != NULL) {
    fprintf(r->out, "%s\n%s", r->json_first ? "" : ",", text);
    r->json_first = false;
    free(text);
  }
}

void up_report_finish(up_report_t *r, const up_report_snapshot_t *s, bool interrupted) {
  if (r->mode == UP_PROGRESS_TTY)
    draw(r, s);
  char line[512];
  summary_line(s, line, sizeof(line));
  double secs = (double)s->elapsed_ms / 1000.0;
  if (r->mode != UP_PROGRESS_NONE) {
    char sent[32], rate[32];
    up_report_bytes(s->bytes_sent, sent, sizeof(sent));
    up_report_bytes(secs > 0 ? (uint64_t)((double)s->bytes_sent / secs) : 0, rate, sizeof(rate));
    fprintf(stderr,
            "tusc-upload: %s: %llu uploaded, %llu already done, %llu failed; %s sent in %.1f s "
            "(%s/s)\n",
            interrupted ? "interrupted" : "finished", (unsigned long long)s->files_done,
            (unsigned long long)s->files_skipped, (unsigned long long)s->files_failed, sent, secs,
            rate);
  }
  if (r->json) {
    json_t *o =
        json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:b}", "files", (json_int_t)s->files_seen,
                  "uploaded", (json_int_t)s->files_done, "skipped", (json_int_t)s->files_skipped,
                  "failed", (json_int_t)s->files_failed, "bytes", (json_int_t)s->bytes_total,
                  "sent", (json_int_t)s->bytes_sent, "seconds", secs, "interrupted", interrupted);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    fprintf(r->out, "\n],\"summary\":%s}\n", text ? text : "{}");
    free(text);
    json_decref(o);
    fflush(r->out);
  }
  fflush(stderr);
}

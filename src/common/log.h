/*
 * log — the only place that writes diagnostics. Lines go to stderr, either as
 * tusd-style logfmt (`time=… level=INFO event=UploadCreated id=… size=…`) or as one
 * JSON object per line (-log-format json).
 *
 * Global state: the level and format, set once by tusc_log_setup() before any
 * worker starts, then read-only. Every function is thread-safe (one write(2) per line).
 */
#ifndef TUSC_LOG_H
#define TUSC_LOG_H

#include <stdbool.h>

enum tusc_log_level { TUSC_LOG_DEBUG = 0, TUSC_LOG_INFO, TUSC_LOG_WARN, TUSC_LOG_ERROR };
enum tusc_log_format { TUSC_LOG_TEXT = 0, TUSC_LOG_JSON };

void tusc_log_setup(enum tusc_log_level min_level, enum tusc_log_format format);
bool tusc_log_enabled(enum tusc_log_level level);

/* A free-form message: `level=… msg="…"`. Formats only when the level is enabled. */
void tusc_log_msg(enum tusc_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A structured event: key/value string pairs terminated by NULL, e.g.
 * tusc_log_event(TUSC_LOG_INFO, "UploadCreated", "id", id, "size", "42", NULL).
 * Values are quoted/escaped as the format needs. */
void tusc_log_event(enum tusc_log_level level, const char *event, ...)
    __attribute__((sentinel));

#define TUSC_LOG(level, ...)                                                                \
  do {                                                                                      \
    if (tusc_log_enabled(level))                                                            \
      tusc_log_msg(level, __VA_ARGS__);                                                     \
  } while (0)

#endif

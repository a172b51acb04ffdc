/*
 * report — everything tusc-upload tells its user: the live progress display on a
 * terminal (total bytes, files done/failed, rate, ETA, one line per active file, redrawn
 * in place), periodic plain progress lines otherwise, one line per failed file and per
 * message, and with --json a summary object on stdout that is streamed file by file
 * ({"files":[…],"summary":{…}}) so thousands of files cost no memory.
 *
 * The engine hands it snapshots; report owns no upload state. Single-threaded.
 */
#ifndef TUSC_UPLOAD_REPORT_H
#define TUSC_UPLOAD_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct up_report_s up_report_t;

enum up_progress_mode {
  UP_PROGRESS_AUTO = 0, /* tty when stderr is a terminal, else plain */
  UP_PROGRESS_TTY,
  UP_PROGRESS_PLAIN,
  UP_PROGRESS_NONE,
};

typedef struct {
  const char *name; /* relative path */
  uint64_t size;
  uint64_t done; /* bytes the server has, plus bytes in flight */
} up_report_active_t;

typedef struct {
  uint64_t files_seen; /* found so far; files_total once the count is complete */
  bool total_known;
  uint64_t files_total;
  uint64_t bytes_total; /* of files found so far */
  uint64_t files_done, files_failed, files_skipped;
  uint64_t bytes_done; /* on the server (incl. skipped and resumed files) */
  uint64_t bytes_sent; /* sent by this run */
  double rate;         /* bytes/s over the last seconds */
  uint64_t elapsed_ms;
  const up_report_active_t *active;
  int nactive;
} up_report_snapshot_t;

/* `json`: stream the --json object to `out`. interval_ms: period of plain lines. */
int up_report_new(enum up_progress_mode mode, bool json, FILE *out, uint64_t interval_ms,
                  up_report_t **r) __attribute__((warn_unused_result));
void up_report_free(up_report_t *r);

/* Redraws the display (tty) or prints a line when the interval has passed (plain). */
void up_report_tick(up_report_t *r, const up_report_snapshot_t *s, uint64_t now_ms);

/* A message for the user, printed above the display. */
void up_report_msg(up_report_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One finished file. outcome: "uploaded", "skipped" (already done per journal),
 * "failed"; error is the reason for a failed one (else NULL). */
void up_report_file(up_report_t *r, const char *path, const char *url, uint64_t size, uint64_t sent,
                    double seconds, const char *outcome, const char *error);

/* Ends the display and prints the summary (the JSON object's closing part). */
void up_report_finish(up_report_t *r, const up_report_snapshot_t *s, bool interrupted);

/* Formats a byte count as "1.5 GiB". */
void up_report_bytes(uint64_t n, char *out, size_t cap);

#endif

/*
 * timeutil — HTTP dates are formatted with fixed English names rather than strftime,
 * whose %a/%b follow the process locale.
 */
#include "common/timeutil.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/error.h"

static const char day_names[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char month_names[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static void put_digits(char *out, int v, int n) {
  for (int i = n - 1; i >= 0; i--) {
    out[i] = (char)('0' + v % 10);
    v /= 10;
  }
}

void tusc_http_date(int64_t unix_seconds, char out[32]) {
  /* Keep the year at four digits so the result is always a valid IMF-fixdate. */
  const int64_t max_seconds = 253402300799; /* 9999-12-31T23:59:59Z */
  if (unix_seconds < 0)
    unix_seconds = 0;
  if (unix_seconds > max_seconds)
    unix_seconds = max_seconds;
  time_t t = (time_t)unix_seconds;
  struct tm tm;
  if (gmtime_r(&t, &tm) == NULL) {
    snprintf(out, 32, "Thu, 01 Jan 1970 00:00:00 GMT");
    return;
  }
  /* Fixed-width fields written by hand: every value is already in range, and this
   * keeps the compiler from having to prove the 29 characters fit. */
  int year = tm.tm_year + 1900;
  memcpy(out, day_names[tm.tm_wday % 7], 3);
  out[3] = ',';
  out[4] = ' ';
  put_digits(out + 5, tm.tm_mday, 2);
  out[7] = ' ';
  memcpy(out + 8, month_names[tm.tm_mon % 12], 3);
  out[11] = ' ';
  put_digits(out + 12, year, 4);
  out[16] = ' ';
  put_digits(out + 17, tm.tm_hour, 2);
  out[19] = ':';
  put_digits(out + 20, tm.tm_min, 2);
  out[22] = ':';
  put_digits(out + 23, tm.tm_sec, 2);
  memcpy(out + 25, " GMT", 5);
}

static int digits(const char *s, int n, int *out) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return 0;
}

static int is_leap(int y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int tusc_http_date_parse(const char *s, int64_t *out_unix_seconds) {
  /* "Sun, 06 Nov 1994 08:49:37 GMT": fixed length, fixed positions. The obsolete
   * RFC 850 and asctime forms are not accepted. */
  static const char shape[] = "www, dd mmm yyyy hh:mm:ss GMT";
  if (s == NULL || strlen(s) != sizeof(shape) - 1)
    return TUSC_EINVALID_HEADER;
  if (s[3] != ',' || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' || s[19] != ':' ||
      s[22] != ':' || s[25] != ' ' || memcmp(s + 26, "GMT", 3) != 0)
    return TUSC_EINVALID_HEADER;
  /* The weekday must be a real name but is not checked against the date: it is
   * redundant, and RFC 9110 lets recipients ignore it. */
  int wday = -1;
  for (int i = 0; i < 7; i++)
    if (memcmp(s, day_names[i], 3) == 0)
      wday = i;
  int mon = -1;
  for (int i = 0; i < 12; i++)
    if (memcmp(s + 8, month_names[i], 3) == 0)
      mon = i;
  int mday, year, hour, min, sec;
  if (wday < 0 || mon < 0 || digits(s + 5, 2, &mday) || digits(s + 12, 4, &year) ||
      digits(s + 17, 2, &hour) || digits(s + 20, 2, &min) || digits(s + 23, 2, &sec))
    return TUSC_EINVALID_HEADER;
  static const int month_days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int max_day = month_days[mon] + (mon == 1 && is_leap(year));
  /* Second 60 is allowed for a leap second; timegm folds it into the next minute. */
  if (year < 1970 || mday < 1 || mday > max_day || hour > 23 || min > 59 || sec > 60)
    return TUSC_EINVALID_HEADER;
  struct tm tm;
  memset(&tm, 0, sizeof(tm));
  tm.tm_year = year - 1900;
  tm.tm_mon = mon;
  tm.tm_mday = mday;
  tm.tm_hour = hour;
  tm.tm_min = min;
  tm.tm_sec = sec;
  time_t t = timegm(&tm);
  if (t == (time_t)-1)
    return TUSC_EINVALID_HEADER;
  *out_unix_seconds = (int64_t)t;
  return 0;
}

uint64_t tusc_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

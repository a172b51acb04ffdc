/*
 * error — one table (TUSC_ERROR_MAP in error.h) drives messages, HTTP statuses and
 * tusd error codes, so the three can never disagree.
 */
#include "common/error.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <uv.h>

struct error_entry {
  int status;
  const char *code;
  const char *msg;
};

static const struct error_entry error_table[] = {
#define TUSC_ERROR_ENTRY(name, status, code, msg) {status, code, msg},
    TUSC_ERROR_MAP(TUSC_ERROR_ENTRY)
#undef TUSC_ERROR_ENTRY
};

static const struct error_entry *own_entry(int err) {
  if (err <= TUSC_E__BASE || err >= TUSC_E__END)
    return NULL;
  return &error_table[err - TUSC_E__BASE - 1];
}

/* Running out of space is the one I/O failure a client can do something about
 * (retry later), so it gets its own status instead of the generic 500. */
static int is_storage_full(int err) {
  return err == UV_ENOSPC || err == -ENOSPC || err == -EDQUOT;
}

const char *tusc_strerror(int err) {
  const struct error_entry *e = own_entry(err);
  if (e != NULL)
    return e->msg;
  if (err == 0)
    return "success";
  if (err == -EDQUOT)
    return "disk quota exceeded";
  /* uv_strerror leaks a formatted string for codes it does not know, so ask first
   * with the non-allocating uv_err_name_r. */
  char name[64];
  uv_err_name_r(err, name, sizeof(name));
  if (strncmp(name, "Unknown system error", 20) == 0)
    return "unknown error";
  return uv_strerror(err);
}

int tusc_error_status(int err) {
  const struct error_entry *e = own_entry(err);
  if (e != NULL)
    return e->status;
  if (is_storage_full(err))
    return 507;
  return 500;
}

const char *tusc_error_code(int err) {
  const struct error_entry *e = own_entry(err);
  if (e != NULL)
    return e->code;
  if (is_storage_full(err))
    return "ERR_INSUFFICIENT_STORAGE";
  return "ERR_INTERNAL_SERVER_ERROR";
}

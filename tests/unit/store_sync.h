/*
 * store_sync — blocking wrappers over the asynchronous store (store/store.h) for unit
 * tests that set up or inspect uploads step by step: each starts the request on a
 * private loop and runs that loop until the callback came. Header-only (static
 * functions), like testutil.h. Same shapes as the store's old synchronous calls: 0 or a
 * negative code; ss_write returns the bytes written (short only on an error) or < 0.
 * One thread; uploads opened here belong to the private loop (ss_close them here).
 */
#ifndef TUSC_TEST_STORE_SYNC_H
#define TUSC_TEST_STORE_SYNC_H

#include <stdbool.h>
#include <string.h>
#include <sys/types.h>

#include <uv.h>

#include "common/error.h"
#include "store/store.h"

static inline uv_loop_t *ss_loop(void) {
  static uv_loop_t loop;
  static bool init;
  if (!init) {
    if (uv_loop_init(&loop) != 0)
      return NULL;
    init = true;
  }
  return &loop;
}

struct ss_wait {
  bool done;
  int status;
};

static inline void ss_cb_(tusc_store_req_t *req, int status) {
  struct ss_wait *w = req->data;
  w->done = true;
  w->status = status;
}

static inline int ss_run_(struct ss_wait *w, int started) {
  if (started != 0)
    return started;
  while (!w->done)
    uv_run(ss_loop(), UV_RUN_ONCE);
  return w->status;
}

#define SS_REQ_                                                                                    \
  struct ss_wait w = {0};                                                                          \
  tusc_store_req_t req;                                                                            \
  memset(&req, 0, sizeof(req));                                                                    \
  req.data = &w

static inline int ss_create(tusc_store_t *s, tusc_upload_info_t *info) {
  SS_REQ_;
  return ss_run_(&w, tusc_store_create(s, ss_loop(), &req, info, ss_cb_));
}

static inline int ss_get_info(tusc_store_t *s, const char *id, tusc_upload_info_t *info) {
  SS_REQ_;
  return ss_run_(&w, tusc_store_get_info(s, ss_loop(), &req, id, info, ss_cb_));
}

static inline int ss_open(tusc_store_t *s, const char *id, tusc_upload_t **out) {
  SS_REQ_;
  int rc = ss_run_(&w, tusc_store_open(s, ss_loop(), &req, id, ss_cb_));
  if (rc == 0)
    *out = req.upload;
  return rc;
}

static inline int ss_terminate(tusc_store_t *s, const char *id) {
  SS_REQ_;
  return ss_run_(&w, tusc_store_terminate(s, ss_loop(), &req, id, ss_cb_));
}

static inline int ss_walk(tusc_store_t *s, tusc_store_visit_cb visit, void *arg) {
  SS_REQ_;
  return ss_run_(&w, tusc_store_list(s, ss_loop(), &req, visit, arg, ss_cb_));
}

static inline int ss_wait_add(tusc_store_t *s, const char *partial, const char *final) {
  SS_REQ_;
  return ss_run_(&w, tusc_store_wait_add(s, ss_loop(), &req, partial, final, ss_cb_));
}

static inline int ss_wait_take(tusc_store_t *s, const char *partial, char ***ids, size_t *n) {
  SS_REQ_;
  int rc = ss_run_(&w, tusc_store_wait_take(s, ss_loop(), &req, partial, ss_cb_));
  if (rc == 0) {
    *ids = req.ids;
    *n = req.id_count;
  }
  return rc;
}

static inline int ss_save_info(tusc_upload_t *up) {
  SS_REQ_;
  return ss_run_(&w, tusc_store_save_info(up, &req, ss_cb_));
}

static inline tusc_upload_info_t *ss_info(tusc_upload_t *up) {
  return tusc_store_info(up);
}

static inline void ss_drained_(void *arg) {
  *(bool *)arg = true;
}

/* One chunk: `len` bytes at `offset` (which must be the stored length), kept and
 * durable. */
static inline ssize_t ss_write(tusc_upload_t *up, int64_t offset, const void *buf, size_t len) {
  if (offset != tusc_store_info(up)->offset)
    return TUSC_EMISMATCHED_OFFSET;
  int rc = tusc_store_chunk_begin(up, 0);
  if (rc != 0)
    return rc;
  size_t done = 0;
  while (rc == 0 && done < len) {
    size_t n = len - done < TUSC_STORE_APPEND_MAX ? len - done : TUSC_STORE_APPEND_MAX;
    bool drained = false;
    rc = tusc_store_append(up, (const char *)buf + done, n, ss_drained_, &drained);
    if (rc == TUSC_ESTORE_FULL) {
      while (!drained)
        uv_run(ss_loop(), UV_RUN_ONCE);
      rc = 0;
      continue;
    }
    if (rc == 0)
      done += n;
  }
  SS_REQ_;
  int end = ss_run_(&w, tusc_store_chunk_end(up, &req, TUSC_STORE_KEEP, ss_cb_));
  int64_t landed = tusc_store_info(up)->offset - offset;
  if (rc == 0)
    rc = end;
  if (rc != 0)
    return landed > 0 ? (ssize_t)landed : rc;
  return (ssize_t)len;
}

static inline int ss_chunk_end(tusc_upload_t *up, enum tusc_store_chunk_end how) {
  SS_REQ_;
  return ss_run_(&w, tusc_store_chunk_end(up, &req, how, ss_cb_));
}

/* Durability comes with each chunk's end (ss_write). */
static inline int ss_sync(tusc_upload_t *up) {
  (void)up;
  return 0;
}

static inline ssize_t ss_read(tusc_upload_t *up, int64_t offset, void *buf, size_t len) {
  size_t got = 0;
  while (got < len) {
    SS_REQ_;
    int rc = ss_run_(
        &w, tusc_store_read(up, &req, offset + (int64_t)got, (char *)buf + got, len - got, ss_cb_));
    if (rc < 0)
      return got > 0 ? (ssize_t)got : rc;
    if (req.nread == 0)
      break;
    got += req.nread;
  }
  return (ssize_t)got;
}

static inline void ss_close(tusc_upload_t *up) {
  tusc_store_close(up);
  uv_run(ss_loop(), UV_RUN_NOWAIT); /* close callbacks */
}

/* A request's callback may come before the end of the pool job that ran it (a sync
 * batch's job hands its requests back first): the loop runs until those are done too,
 * as the server's loops do before it frees its store. */
static inline void ss_free(tusc_store_t *s) {
  uv_run(ss_loop(), UV_RUN_DEFAULT);
  tusc_store_free(s);
}

#endif

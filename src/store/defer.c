/*
 * defer — see defer.h. One entry per loop that has something queued, in a thread-local
 * list: a worker thread runs one loop, so the list is one entry long or empty; a test
 * that runs two loops on one thread gets two.
 */
#include "store/defer.h"

#include <stdbool.h>
#include <stdlib.h>

#include "common/error.h"

enum { D_IDLE = 0, D_QUEUED, D_CANCELLED };

typedef struct defer_loop_s {
  uv_idle_t idle;
  uv_loop_t *loop;
  tusc_defer_t *head, *tail;
  struct defer_loop_s *next;
  bool listed; /* in this thread's list (not yet closing) */
} defer_loop_t;

static _Thread_local defer_loop_t *thread_loops;

static void unlist(defer_loop_t *dl) {
  for (defer_loop_t **p = &thread_loops; *p != NULL; p = &(*p)->next) {
    if (*p == dl) {
      *p = dl->next;
      break;
    }
  }
  dl->listed = false;
}

static void on_closed(uv_handle_t *handle) {
  defer_loop_t *dl = handle->data;
  if (dl->listed)
    unlist(dl); /* closed by a loop teardown, not by on_idle */
  free(dl);
}

static void on_idle(uv_idle_t *idle) {
  defer_loop_t *dl = idle->data;
  tusc_defer_t *d = dl->head;
  dl->head = dl->tail = NULL; /* what the callbacks queue waits for the next turn */
  while (d != NULL) {
    tusc_defer_t *next = d->next; /* d may be reused by its callback */
    int status = d->state == D_CANCELLED ? UV_ECANCELED : 0;
    d->state = D_IDLE;
    d->next = NULL;
    d->cb(d, status);
    d = next;
  }
  if (dl->head == NULL) {
    unlist(dl);
    uv_close((uv_handle_t *)&dl->idle, on_closed);
  }
}

int tusc_defer_start(uv_loop_t *loop, tusc_defer_t *d, tusc_defer_cb cb) {
  defer_loop_t *dl = thread_loops;
  while (dl != NULL && dl->loop != loop)
    dl = dl->next;
  if (dl == NULL) {
    dl = calloc(1, sizeof(*dl));
    if (dl == NULL)
      return TUSC_ENOMEM;
    int rc = uv_idle_init(loop, &dl->idle);
    if (rc != 0) {
      free(dl);
      return rc;
    }
    (void)uv_idle_start(&dl->idle, on_idle); /* fails only without a callback */
    dl->idle.data = dl;
    dl->loop = loop;
    dl->next = thread_loops;
    dl->listed = true;
    thread_loops = dl;
  }
  d->cb = cb;
  d->next = NULL;
  d->state = D_QUEUED;
  if (dl->tail != NULL)
    dl->tail->next = d;
  else
    dl->head = d;
  dl->tail = d;
  return 0;
}

int tusc_defer_cancel(tusc_defer_t *d) {
  if (d->state != D_QUEUED)
    return UV_EBUSY;
  d->state = D_CANCELLED;
  return 0;
}

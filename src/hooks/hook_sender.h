/*
 * hook_sender — the interface between the hook runner (hooks.c) and the ways a hook
 * can be delivered (hook_file.c: run a program; hook_http.c: POST to an endpoint).
 * Adding a delivery method = one new file implementing tusc_hook_sender_ops_t.
 *
 * Threads: a sender belongs to one loop; every function and callback runs on it.
 *
 * Contract for start(): returns 0 and then calls call->done exactly once, always from
 * a later loop callback (never inside start), after having filled call->resp (left
 * empty on failure, with call->resp.error set); or returns < 0 and never calls done.
 * close(): every running call completes with UV_ECANCELED (done is called), the
 * sender closes its handles and then calls closed_cb and frees itself.
 * cancel(): the request waiting for a running call has gone: stop it now (a file hook's
 * process group is killed, an HTTP transfer aborted); done still follows, later, with
 * UV_ECANCELED. A call that already has its result is left alone.
 */
#ifndef TUSC_HOOK_SENDER_H
#define TUSC_HOOK_SENDER_H

#include <stddef.h>
#include <stdint.h>

#include "common/id.h"
#include "hooks/hook_types.h"

typedef struct tusc_hook_call_s tusc_hook_call_t;

/* One invocation, owned by the runner; valid until done() has returned. */
struct tusc_hook_call_s {
  enum tusc_hook_event event;
  char *json; /* the request body, NUL-terminated */
  size_t json_len;
  char id[TUSC_ID_MAX + 1]; /* for TUS_ID ("" in pre-create) */
  int64_t size;             /* for TUS_SIZE (0 while deferred) */
  int64_t offset;           /* for TUS_OFFSET */
  char **forward_headers;   /* "Name: value" lines for HTTP hooks */
  size_t forward_count;
  tusc_hook_response_t resp;
  void (*done)(tusc_hook_call_t *call, int status);
};

typedef struct tusc_hook_sender_s tusc_hook_sender_t;

typedef struct tusc_hook_sender_ops_s {
  const char *name; /* "file", "http" */
  int (*start)(tusc_hook_sender_t *sender, tusc_hook_call_t *call);
  void (*close)(tusc_hook_sender_t *sender, void (*closed_cb)(void *arg), void *arg);
  void (*cancel)(tusc_hook_sender_t *sender, tusc_hook_call_t *call);
} tusc_hook_sender_ops_t;

struct tusc_hook_sender_s {
  const tusc_hook_sender_ops_t *ops;
};

#endif

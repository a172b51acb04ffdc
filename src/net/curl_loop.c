/*
 * curl_loop — see curl_loop.h.
 *
 * Invariant: a socket curl told us about has one `struct sock` (curl_multi_assign keeps
 * the pointer) until curl says CURL_POLL_REMOVE; after close starts (`dead`), no curl
 * call is made and every callback returns at once.
 */
#include "net/curl_loop.h"

#include <stdlib.h>

#include "common/error.h"

struct sock {
  uv_poll_t poll; /* first: the close callback frees the struct through it */
  curl_socket_t fd;
  tusc_curl_loop_t *cl;
  struct sock *prev, *next;
};

struct tusc_curl_loop_s {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;
  struct sock *socks;
  int open_handles; /* while closing: the timer and the polls still to close */
  bool dead;
  void (*closed_cb)(void *arg);
  void *closed_arg;
};

static void collect(tusc_curl_loop_t *cl) {
  CURLMsg *msg;
  int left;
  while (!cl->dead && (msg = curl_multi_info_read(cl->multi, &left)) != NULL) {
    if (msg->msg != CURLMSG_DONE)
      continue;
    /* msg is invalid once its handle is removed: copy first. */
    CURL *easy = msg->easy_handle;
    CURLcode res = msg->data.result;
    tusc_curl_xfer_t *xfer = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&xfer);
    if (xfer == NULL || !xfer->active)
      continue;
    curl_multi_remove_handle(cl->multi, easy);
    xfer->active = false;
    xfer->done(xfer, res);
  }
}

static void on_poll(uv_poll_t *handle, int status, int events) {
  struct sock *s = handle->data;
  tusc_curl_loop_t *cl = s->cl;
  if (cl->dead)
    return;
  int flags = 0;
  if (status < 0) {
    flags = CURL_CSELECT_ERR;
  } else {
    if (events & UV_READABLE)
      flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
      flags |= CURL_CSELECT_OUT;
  }
  int running;
  curl_multi_socket_action(cl->multi, s->fd, flags, &running);
  collect(cl);
}

static void on_timer(uv_timer_t *t) {
  tusc_curl_loop_t *cl = t->data;
  if (cl->dead)
    return;
  int running;
  curl_multi_socket_action(cl->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  collect(cl);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp) {
  (void)multi;
  tusc_curl_loop_t *cl = userp;
  if (cl->dead)
    return 0;
  if (timeout_ms < 0)
    uv_timer_stop(&cl->timer);
  else /* 0 too: curl wants to be called soon, but not from inside itself */
    uv_timer_start(&cl->timer, on_timer, (uint64_t)timeout_ms, 0);
  return 0;
}

static void sock_closed(uv_handle_t *h) {
  free(h);
}

static void unlink_sock(tusc_curl_loop_t *cl, struct sock *s) {
  if (s->prev != NULL)
    s->prev->next = s->next;
  else
    cl->socks = s->next;
  if (s->next != NULL)
    s->next->prev = s->prev;
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
  (void)easy;
  tusc_curl_loop_t *cl = userp;
  struct sock *s = socketp;
  if (cl->dead)
    return 0;
  if (what == CURL_POLL_REMOVE) {
    if (s != NULL) {
      uv_poll_stop(&s->poll);
      unlink_sock(cl, s);
      uv_close((uv_handle_t *)&s->poll, sock_closed);
      curl_multi_assign(cl->multi, fd, NULL);
    }
    return 0;
  }
  if (s == NULL) {
    s = calloc(1, sizeof(*s));
    if (s == NULL)
      return -1;
    if (uv_poll_init_socket(cl->loop, &s->poll, fd) < 0) {
      free(s);
      return -1;
    }
    s->fd = fd;
    s->cl = cl;
    s->poll.data = s;
    s->next = cl->socks;
    if (cl->socks != NULL)
      cl->socks->prev = s;
    cl->socks = s;
    curl_multi_assign(cl->multi, fd, s);
  }
  int events = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
    events |= UV_READABLE;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
    events |= UV_WRITABLE;
  uv_poll_start(&s->poll, events, on_poll);
  return 0;
}

int tusc_curl_loop_new(uv_loop_t *loop, tusc_curl_loop_t **out) {
  tusc_curl_loop_t *cl = calloc(1, sizeof(*cl));
  if (cl == NULL)
    return TUSC_ENOMEM;
  cl->multi = curl_multi_init();
  if (cl->multi == NULL) {
    free(cl);
    return TUSC_ENOMEM;
  }
  cl->loop = loop;
  curl_multi_setopt(cl->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
  curl_multi_setopt(cl->multi, CURLMOPT_SOCKETDATA, cl);
  curl_multi_setopt(cl->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
  curl_multi_setopt(cl->multi, CURLMOPT_TIMERDATA, cl);
  uv_timer_init(loop, &cl->timer);
  cl->timer.data = cl;
  *out = cl;
  return 0;
}

int tusc_curl_loop_add(tusc_curl_loop_t *cl, tusc_curl_xfer_t *xfer, CURL *easy,
                       tusc_curl_done_cb done) {
  if (cl->dead)
    return UV_ECANCELED;
  xfer->easy = easy;
  xfer->done = done;
  curl_easy_setopt(easy, CURLOPT_PRIVATE, xfer);
  if (curl_multi_add_handle(cl->multi, easy) != CURLM_OK)
    return TUSC_EINTERNAL;
  xfer->active = true;
  return 0;
}

void tusc_curl_loop_remove(tusc_curl_loop_t *cl, tusc_curl_xfer_t *xfer) {
  if (!xfer->active)
    return;
  xfer->active = false;
  if (!cl->dead)
    curl_multi_remove_handle(cl->multi, xfer->easy);
}

static void handle_closed(uv_handle_t *h) {
  tusc_curl_loop_t *cl = h->data;
  if (h->type == UV_POLL)
    free(h); /* struct sock starts with its uv_poll_t */
  if (--cl->open_handles > 0)
    return;
  void (*cb)(void *) = cl->closed_cb;
  void *arg = cl->closed_arg;
  free(cl);
  if (cb != NULL)
    cb(arg);
}

/* Stop watching curl's sockets before curl closes them, then close every handle; the
 * last close callback frees the driver. */
void tusc_curl_loop_close(tusc_curl_loop_t *cl, void (*closed_cb)(void *arg), void *arg) {
  cl->dead = true;
  cl->closed_cb = closed_cb;
  cl->closed_arg = arg;
  for (struct sock *s = cl->socks; s != NULL; s = s->next)
    uv_poll_stop(&s->poll);
  curl_multi_cleanup(cl->multi);
  cl->multi = NULL;
  cl->open_handles = 1;
  while (cl->socks != NULL) {
    struct sock *s = cl->socks;
    cl->socks = s->next;
    s->poll.data = cl;
    cl->open_handles++;
    uv_close((uv_handle_t *)&s->poll, handle_closed);
  }
  uv_close((uv_handle_t *)&cl->timer, handle_closed);
}

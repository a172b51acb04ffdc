/* transport — the plain (pass-through) transport. */
#include "net/transport.h"

static int plain_input(tusc_transport_t *t, uv_stream_t *stream, const char *data, size_t len,
                       char *scratch, size_t scratch_len, tusc_transport_deliver_fn deliver,
                       void *arg) {
  (void)t;
  (void)stream;
  (void)scratch;
  (void)scratch_len;
  if (len > 0)
    deliver(arg, data, len);
  return 0;
}

static int plain_write(tusc_transport_t *t, uv_stream_t *stream, uv_write_t *req, const char *data,
                       size_t len, uv_write_cb cb) {
  (void)t;
  uv_buf_t b = uv_buf_init((char *)(uintptr_t)data, (unsigned)len);
  return uv_write(req, stream, &b, 1, cb);
}

static void plain_close_notify(tusc_transport_t *t, uv_stream_t *stream) {
  (void)t;
  (void)stream;
}

static bool plain_secure(const tusc_transport_t *t) {
  (void)t;
  return false;
}

static bool plain_established(const tusc_transport_t *t) {
  (void)t;
  return true;
}

static void plain_free(tusc_transport_t *t) {
  (void)t;
}

static const tusc_transport_ops_t plain_ops = {
    .name = "plain",
    .input = plain_input,
    .write = plain_write,
    .close_notify = plain_close_notify,
    .secure = plain_secure,
    .established = plain_established,
    .free = plain_free,
};

tusc_transport_t tusc_transport_plain = {.ops = &plain_ops};

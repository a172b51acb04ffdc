/*
 * store — the generic half of store.h: argument checks and the request bookkeeping
 * shared by every backend, so each backend's start functions see filled-in requests.
 */
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"

static void req_prepare(tusc_store_req_t *req, tusc_store_t *store, uv_loop_t *loop,
                        tusc_store_cb cb) {
  void *data = req->data;
  memset(req, 0, sizeof(*req));
  req->data = data;
  req->store = store;
  req->loop = loop;
  req->cb = cb;
}

#define CHECK_OP(store, name)                                                                      \
  do {                                                                                             \
    if ((store) == NULL || (store)->async == NULL || (store)->async->name == NULL)                 \
      return TUSC_ENOT_IMPLEMENTED;                                                                \
  } while (0)

int tusc_store_get_info(tusc_store_t *store, uv_loop_t *loop, tusc_store_req_t *req, const char *id,
                        tusc_upload_info_t *info, tusc_store_cb cb) {
  CHECK_OP(store, get_info);
  if (id == NULL || info == NULL || cb == NULL || loop == NULL)
    return TUSC_EINVALID_ARGUMENT;
  req_prepare(req, store, loop, cb);
  req->id = id;
  req->info = info;
  return store->async->get_info(req);
}

int tusc_store_try_get_info(tusc_store_t *store, const char *id, tusc_upload_info_t *info) {
  if (store == NULL || id == NULL || info == NULL)
    return TUSC_EINVALID_ARGUMENT;
  if (store->async->try_get_info == NULL)
    return UV_EAGAIN;
  return store->async->try_get_info(store, id, info);
}

int tusc_store_try_open(tusc_store_t *store, uv_loop_t *loop, const char *id,
                        tusc_upload_t **out) {
  if (store == NULL || loop == NULL || id == NULL || out == NULL)
    return TUSC_EINVALID_ARGUMENT;
  *out = NULL;
  if (store->async->try_open == NULL)
    return UV_EAGAIN;
  return store->async->try_open(store, loop, id, out);
}

int tusc_store_create(tusc_store_t *store, uv_loop_t *loop, tusc_store_req_t *req,
                      tusc_upload_info_t *info, tusc_store_cb cb) {
  CHECK_OP(store, create);
  if (info == NULL || cb == NULL || loop == NULL)
    return TUSC_EINVALID_ARGUMENT;
  req_prepare(req, store, loop, cb);
  req->info = info;
  req->id = info->id;
  return store->async->create(req);
}

int tusc_store_open(tusc_store_t *store, uv_loop_t *loop, tusc_store_req_t *req, const char *id,
                    tusc_store_cb cb) {
  CHECK_OP(store, open);
  if (id == NULL || cb == NULL || loop == NULL)
    return TUSC_EINVALID_ARGUMENT;
  req_prepare(req, store, loop, cb);
  req->id = id;
  return store->async->open(req);
}

int tusc_store_terminate(tusc_store_t *store, uv_loop_t *loop, tusc_store_req_t *req,
                         const char *id, tusc_store_cb cb) {
  CHECK_OP(store, terminate);
  if (id == NULL || cb == NULL || loop == NULL)
    return TUSC_EINVALID_ARGUMENT;
  req_prepare(req, store, loop, cb);
  req->id = id;
  return store->async->terminate(req);
}

int tusc_store_list(tusc_store_t *store, uv_loop_t *loop, tusc_store_req_t *req,
                    tusc_store_visit_cb visit, void *arg, tusc_store_cb cb) {
  CHECK_OP(store, list);
  if (visit == NULL || cb == NULL || loop == NULL)
    return TUSC_EINVALID_ARGUMENT;
  req_prepare(req, store, loop, cb);
  req->visit = visit;
  req->visit_arg = arg;
  return store->async->list(req);
}

int tusc_store_wait_add(tusc_store_t *store, uv_loop_t *loop, tusc_store_req_t *req,
                        const char *partial_id, const char *final_id, tusc_store_cb cb) {
  CHECK_OP(store, wait_add);
  if (partial_id == NULL || final_id == NULL || cb == NULL || loop == NULL)
    return TUSC_EINVALID_ARGUMENT;
  req_prepare(req, store, loop, cb);
  req->id = partial_id;
  req->ids_in = (const char *const *)&req->buf;
  req->buf = (void *)(uintptr_t)final_id;
  req->n_in = 1;
  return store->async->wait_add(req);
}

int tusc_store_wait_take(tusc_store_t *store, uv_loop_t *loop, tusc_store_req_t *req,
                         const char *partial_id, tusc_store_cb cb) {
  CHECK_OP(store, wait_take);
  if (partial_id == NULL || cb == NULL || loop == NULL)
    return TUSC_EINVALID_ARGUMENT;
  req_prepare(req, store, loop, cb);
  req->id = partial_id;
  return store->async->wait_take(req);
}

void tusc_store_ids_free(char **ids, size_t count) {
  for (size_t i = 0; i < count; i++)
    free(ids[i]);
  free(ids);
}

static tusc_store_t *store_of(tusc_upload_t *up) {
  return ((tusc_upload_base_t *)(void *)up)->store;
}

static int upload_req(tusc_upload_t *up, tusc_store_req_t *req, tusc_store_cb cb) {
  if (up == NULL || req == NULL || cb == NULL)
    return TUSC_EINVALID_ARGUMENT;
  req_prepare(req, store_of(up), NULL, cb);
  req->up = up;
  return 0;
}

int tusc_store_save_info(tusc_upload_t *up, tusc_store_req_t *req, tusc_store_cb cb) {
  int rc = upload_req(up, req, cb);
  if (rc != 0)
    return rc;
  CHECK_OP(req->store, save_info);
  return req->store->async->save_info(req);
}

bool tusc_store_cheap_chunk_checkpoint(const tusc_upload_t *up) {
  return up != NULL && store_of((tusc_upload_t *)up)->async->cheap_chunk_checkpoint;
}

int tusc_store_chunk_begin(tusc_upload_t *up, int flags) {
  if (up == NULL)
    return TUSC_EINVALID_ARGUMENT;
  tusc_store_t *store = store_of(up);
  CHECK_OP(store, chunk_begin);
  return store->async->chunk_begin(up, flags);
}

int tusc_store_append(tusc_upload_t *up, const void *buf, size_t len, tusc_store_drain_cb drain,
                      void *arg) {
  if (up == NULL || (buf == NULL && len > 0) || len > TUSC_STORE_APPEND_MAX || drain == NULL)
    return TUSC_EINVALID_ARGUMENT;
  tusc_store_t *store = store_of(up);
  CHECK_OP(store, append);
  if (len == 0)
    return 0;
  return store->async->append(up, buf, len, drain, arg);
}

int tusc_store_chunk_end(tusc_upload_t *up, tusc_store_req_t *req, enum tusc_store_chunk_end how,
                         tusc_store_cb cb) {
  int rc = upload_req(up, req, cb);
  if (rc != 0)
    return rc;
  CHECK_OP(req->store, chunk_end);
  req->flags = (int)how;
  return req->store->async->chunk_end(req);
}

int tusc_store_read(tusc_upload_t *up, tusc_store_req_t *req, int64_t offset, void *buf, size_t len,
                    tusc_store_cb cb) {
  int rc = upload_req(up, req, cb);
  if (rc != 0)
    return rc;
  CHECK_OP(req->store, read);
  if (offset < 0 || (buf == NULL && len > 0))
    return TUSC_EINVALID_ARGUMENT;
  req->offset = offset;
  req->buf = buf;
  req->len = len;
  return req->store->async->read(req);
}

int tusc_store_concat(tusc_upload_t *up, const char *const *ids, size_t n, tusc_store_req_t *req,
                      tusc_store_cb cb) {
  int rc = upload_req(up, req, cb);
  if (rc != 0)
    return rc;
  CHECK_OP(req->store, concat);
  if (ids == NULL && n > 0)
    return TUSC_EINVALID_ARGUMENT;
  req->ids_in = ids;
  req->n_in = n;
  return req->store->async->concat(req);
}

int tusc_store_cancel(tusc_store_req_t *req) {
  if (req == NULL || req->store == NULL || req->store->async->cancel == NULL)
    return UV_EBUSY;
  return req->store->async->cancel(req);
}

tusc_upload_info_t *tusc_store_info(tusc_upload_t *up) {
  return store_of(up)->async->info(up);
}

void tusc_store_close(tusc_upload_t *up) {
  if (up != NULL)
    store_of(up)->async->close(up);
}

size_t tusc_store_storage(const tusc_store_t *store, const tusc_upload_info_t *info,
                          tusc_store_kv_t *out, size_t cap) {
  if (store == NULL || store->async->storage == NULL)
    return 0;
  int n = store->async->storage(store, info, out, cap);
  return n > 0 ? (size_t)n : 0;
}

void tusc_store_free(tusc_store_t *store) {
  if (store != NULL)
    store->async->free(store);
}

void tusc_store_req_done(tusc_store_req_t *req, int status) {
  req->cb(req, status);
}

int tusc_store_attach_loop(tusc_store_t *store, uv_loop_t *loop) {
  if (store == NULL || loop == NULL)
    return TUSC_EINVALID_ARGUMENT;
  return store->async->attach_loop != NULL ? store->async->attach_loop(store, loop) : 0;
}

void tusc_store_detach_loop(tusc_store_t *store, uv_loop_t *loop) {
  if (store != NULL && loop != NULL && store->async->detach_loop != NULL)
    store->async->detach_loop(store, loop);
}

int tusc_store_sweep(tusc_store_t *store, uv_loop_t *loop, tusc_store_req_t *req,
                     int64_t before_unix_s, tusc_store_cb cb) {
  CHECK_OP(store, sweep);
  if (req == NULL || cb == NULL || loop == NULL)
    return TUSC_EINVALID_ARGUMENT;
  req_prepare(req, store, loop, cb);
  req->offset = before_unix_s;
  return store->async->sweep(req);
}

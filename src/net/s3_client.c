/*
 * s3_client — see s3_client.h. Stub: the API is fixed, the implementation follows.
 */
#include "net/s3_client.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"

void tusc_s3_creds_dispose(tusc_s3_creds_t *c) {
  free(c->access_key);
  free(c->secret_key);
  free(c->session_token);
  free(c->region);
  memset(c, 0, sizeof(*c));
}

int tusc_s3_creds_parse(const char *text, size_t len, const char *profile, tusc_s3_creds_t *out) {
  (void)text, (void)len, (void)profile, (void)out;
  return TUSC_ENOT_IMPLEMENTED;
}

int tusc_s3_creds_load(tusc_s3_creds_t *out) {
  (void)out;
  return TUSC_ENOT_IMPLEMENTED;
}

int tusc_s3_new(const tusc_s3_options_t *opts, tusc_s3_t **out) {
  (void)opts, (void)out;
  return TUSC_ENOT_IMPLEMENTED;
}

void tusc_s3_free(tusc_s3_t *s3) {
  (void)s3;
}

const char *tusc_s3_bucket(const tusc_s3_t *s3) {
  (void)s3;
  return "";
}

const char *tusc_s3_region(const tusc_s3_t *s3) {
  (void)s3;
  return "";
}

const char *tusc_s3_endpoint(const tusc_s3_t *s3) {
  (void)s3;
  return "";
}

int tusc_s3_loop_new(tusc_s3_t *s3, uv_loop_t *loop, tusc_curl_loop_t *curl, tusc_s3_loop_t **out) {
  (void)s3, (void)loop, (void)curl, (void)out;
  return TUSC_ENOT_IMPLEMENTED;
}

void tusc_s3_loop_close(tusc_s3_loop_t *sl, void (*closed_cb)(void *arg), void *arg) {
  (void)sl, (void)closed_cb, (void)arg;
}

void tusc_s3_req_init(tusc_s3_req_t *req) {
  memset(req, 0, sizeof(*req));
}

void tusc_s3_req_dispose(tusc_s3_req_t *req) {
  free(req->body);
  req->body = NULL;
  free(req->parts);
  req->parts = NULL;
}

void tusc_s3_cancel(tusc_s3_loop_t *sl, tusc_s3_req_t *req) {
  (void)sl, (void)req;
}

void tusc_s3_resume(tusc_s3_loop_t *sl, tusc_s3_req_t *req) {
  (void)sl, (void)req;
}

#define STUB(...)                                                                              \
  {                                                                                            \
    (void)sl, (void)req, (void)cb;                                                             \
    return TUSC_ENOT_IMPLEMENTED;                                                              \
  }

int tusc_s3_put_object(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key, const void *body,
                       size_t len, const char *content_type, tusc_s3_cb cb) {
  (void)key, (void)body, (void)len, (void)content_type;
  STUB();
}
int tusc_s3_get_object(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key, uint64_t first,
                       uint64_t last, tusc_s3_body_cb on_body, tusc_s3_cb cb) {
  (void)key, (void)first, (void)last, (void)on_body;
  STUB();
}
int tusc_s3_get_object_buf(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key,
                           size_t max_len, tusc_s3_cb cb) {
  (void)key, (void)max_len;
  STUB();
}
int tusc_s3_head_object(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key, tusc_s3_cb cb) {
  (void)key;
  STUB();
}
int tusc_s3_delete_object(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key, tusc_s3_cb cb) {
  (void)key;
  STUB();
}
int tusc_s3_create_multipart(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key,
                             const char *content_type, tusc_s3_cb cb) {
  (void)key, (void)content_type;
  STUB();
}
int tusc_s3_upload_part(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key,
                        const char *upload_id, int part_number, const void *body, size_t len,
                        tusc_s3_cb cb) {
  (void)key, (void)upload_id, (void)part_number, (void)body, (void)len;
  STUB();
}
int tusc_s3_upload_part_copy(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key,
                             const char *upload_id, int part_number, const char *src_key,
                             uint64_t first, uint64_t last, tusc_s3_cb cb) {
  (void)key, (void)upload_id, (void)part_number, (void)src_key, (void)first, (void)last;
  STUB();
}
int tusc_s3_complete_multipart(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key,
                               const char *upload_id, const tusc_s3_part_t *parts, size_t n,
                               tusc_s3_cb cb) {
  (void)key, (void)upload_id, (void)parts, (void)n;
  STUB();
}
int tusc_s3_abort_multipart(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key,
                            const char *upload_id, tusc_s3_cb cb) {
  (void)key, (void)upload_id;
  STUB();
}
int tusc_s3_list_parts(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *key,
                       const char *upload_id, int max_parts, tusc_s3_parts_visit_cb visit,
                       tusc_s3_cb cb) {
  (void)key, (void)upload_id, (void)max_parts, (void)visit;
  STUB();
}
int tusc_s3_list_objects(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *prefix,
                         int max_keys, tusc_s3_objects_visit_cb visit, tusc_s3_cb cb) {
  (void)prefix, (void)max_keys, (void)visit;
  STUB();
}
int tusc_s3_list_multipart_uploads(tusc_s3_loop_t *sl, tusc_s3_req_t *req, const char *prefix,
                                   int max_uploads, tusc_s3_uploads_visit_cb visit, tusc_s3_cb cb) {
  (void)prefix, (void)max_uploads, (void)visit;
  STUB();
}
int tusc_s3_create_bucket(tusc_s3_loop_t *sl, tusc_s3_req_t *req, tusc_s3_cb cb) {
  STUB();
}

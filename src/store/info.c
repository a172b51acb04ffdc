/*
 * Upload info: lifetime helpers and the .info JSON (tusd's FileInfo layout).
 *
 * Metadata values are arbitrary bytes, JSON strings must be UTF-8. A value that is not
 * valid UTF-8 is written twice: under "MetaData" with every invalid byte replaced by
 * U+FFFD (what tusd and other readers see, as Go's encoder would have written it), and
 * exactly under "tusc":{"MetaDataB64":{key: base64}}, which wins when tusc reads the
 * file back. Valid UTF-8 values (NUL included, as \u0000) are written only once.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64.h"
#include "common/error.h"
#include "common/utf8.h"
#include "store/store.h"

void tusc_upload_info_init(tusc_upload_info_t *info) {
  memset(info, 0, sizeof(*info));
}

void tusc_upload_info_dispose(tusc_upload_info_t *info) {
  if (info == NULL)
    return;
  tusc_metadata_dispose(&info->metadata);
  for (size_t i = 0; i < info->partial_count; i++)
    free(info->partial_uploads[i]);
  free(info->partial_uploads);
  free(info->owner);
  free(info->repr_digest);
  free(info->data_path);
  free(info->info_path);
  free(info->store_ref);
  tusc_upload_info_init(info);
}

int tusc_upload_info_set_path(char **slot, const char *path) {
  char *copy = NULL;
  if (path != NULL && path[0] != '\0' && (copy = strdup(path)) == NULL)
    return TUSC_ENOMEM;
  free(*slot);
  *slot = copy;
  return 0;
}

/* A JSON string of `s` with invalid bytes replaced by U+FFFD. */
static json_t *lossy_string(const char *s, size_t len) {
  size_t n = 0;
  char *buf = tusc_utf8_lossy(s, len, &n);
  if (buf == NULL)
    return NULL;
  json_t *j = json_stringn(buf, n);
  free(buf);
  return j;
}

static json_t *b64_string(const char *s, size_t len) {
  char *buf = malloc(TUSC_BASE64_ENCODED_SIZE(len));
  if (buf == NULL)
    return NULL;
  size_t n = tusc_base64_encode((const unsigned char *)s, len, buf);
  json_t *j = json_stringn(buf, n);
  free(buf);
  return j;
}

/* json_object_set_new that reports failure (it steals `value` either way). */
static bool put(json_t *obj, const char *key, json_t *value) {
  return value != NULL && json_object_set_new(obj, key, value) == 0;
}

char *tusc_upload_info_to_json(const tusc_upload_info_t *info) {
  char *text = NULL;
  json_t *root = json_object();
  json_t *md = json_object();
  json_t *md_b64 = json_object();
  json_t *tusc = json_object();
  if (root == NULL || md == NULL || md_b64 == NULL || tusc == NULL)
    goto out;

  /* tusd writes Size 0 while the length is deferred. */
  int64_t size = info->size_is_deferred || info->size < 0 ? 0 : info->size;
  if (!put(root, "ID", json_string(info->id)) || !put(root, "Size", json_integer(size)) ||
      !put(root, "SizeIsDeferred", json_boolean(info->size_is_deferred)) ||
      !put(root, "Offset", json_integer(info->offset)))
    goto out;

  for (size_t i = 0; i < info->metadata.count; i++) {
    const tusc_metadata_pair_t *p = &info->metadata.pairs[i];
    if (tusc_utf8_valid(p->value, p->value_len)) {
      if (!put(md, p->key, json_stringn(p->value, p->value_len)))
        goto out;
    } else {
      if (!put(md, p->key, lossy_string(p->value, p->value_len)) ||
          !put(md_b64, p->key, b64_string(p->value, p->value_len)))
        goto out;
    }
  }
  json_t *md_moved = md;
  md = NULL;
  if (!put(root, "MetaData", md_moved))
    goto out;

  if (!put(root, "IsPartial", json_boolean(info->is_partial)) ||
      !put(root, "IsFinal", json_boolean(info->is_final)))
    goto out;

  json_t *partials = info->partial_uploads != NULL ? json_array() : json_null();
  if (partials == NULL)
    goto out;
  for (size_t i = 0; info->partial_uploads != NULL && i < info->partial_count; i++) {
    json_t *s = json_string(info->partial_uploads[i]);
    if (s == NULL || json_array_append_new(partials, s) != 0) {
      json_decref(partials);
      goto out;
    }
  }
  if (!put(root, "PartialUploads", partials))
    goto out;

  json_t *storage;
  if (info->data_path != NULL) {
    storage = json_object();
    if (storage == NULL)
      goto out;
    if (!put(storage, "Type", json_string("filestore")) ||
        !put(storage, "Path", json_string(info->data_path)) ||
        !put(storage, "InfoPath", json_string(info->info_path != NULL ? info->info_path : ""))) {
      json_decref(storage);
      goto out;
    }
  } else {
    storage = json_null();
  }
  if (!put(root, "Storage", storage))
    goto out;

  if (!put(tusc, "CreatedAt", json_integer(info->created_at)) ||
      !put(tusc, "ExpiresAt", json_integer(info->expires_at)) ||
      !put(tusc, "Owner", info->owner != NULL ? json_string(info->owner) : json_null()))
    goto out;
  if (info->custom_data_path && !put(tusc, "CustomPath", json_true()))
    goto out;
  if (info->repr_digest != NULL && !put(tusc, "ReprDigest", json_string(info->repr_digest)))
    goto out;
  if (info->finish_hooks != TUSC_FINISH_HOOKS_UNKNOWN &&
      !put(tusc, "FinishHooks",
           json_string(info->finish_hooks == TUSC_FINISH_HOOKS_DONE ? "done" : "pending")))
    goto out;
  if (json_object_size(md_b64) > 0) {
    json_t *moved = md_b64;
    md_b64 = NULL;
    if (!put(tusc, "MetaDataB64", moved))
      goto out;
  }
  json_t *tusc_moved = tusc;
  tusc = NULL;
  if (!put(root, "tusc", tusc_moved))
    goto out;

  text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);

out:
  json_decref(md);
  json_decref(md_b64);
  json_decref(tusc);
  json_decref(root);
  return text;
}

/* Field readers: absent or null keeps the default; a wrong type is malformed. */
static bool get_int(json_t *obj, const char *key, int64_t *out) {
  json_t *v = json_object_get(obj, key);
  if (v == NULL || json_is_null(v))
    return true;
  if (!json_is_integer(v))
    return false;
  *out = (int64_t)json_integer_value(v);
  return true;
}

static bool get_bool(json_t *obj, const char *key, bool *out) {
  json_t *v = json_object_get(obj, key);
  if (v == NULL || json_is_null(v))
    return true;
  if (!json_is_boolean(v))
    return false;
  *out = json_is_true(v);
  return true;
}

static bool copy_path(json_t *obj, const char *key, char **out) {
  json_t *v = json_object_get(obj, key);
  if (v == NULL || json_is_null(v))
    return true;
  if (!json_is_string(v))
    return false;
  size_t len = json_string_length(v);
  if (len >= TUSC_PATH_MAX || memchr(json_string_value(v), '\0', len) != NULL)
    return false;
  return tusc_upload_info_set_path(out, json_string_value(v)) == 0;
}

static int parse_root(json_t *root, tusc_upload_info_t *info) {
  if (!json_is_object(root))
    return TUSC_EINTERNAL;

  json_t *id = json_object_get(root, "ID");
  if (id != NULL && !json_is_null(id)) {
    if (!json_is_string(id) || json_string_length(id) > TUSC_ID_MAX ||
        memchr(json_string_value(id), '\0', json_string_length(id)) != NULL)
      return TUSC_EINTERNAL;
    memcpy(info->id, json_string_value(id), json_string_length(id) + 1);
  }

  if (!get_int(root, "Size", &info->size) ||
      !get_bool(root, "SizeIsDeferred", &info->size_is_deferred) ||
      !get_int(root, "Offset", &info->offset) || !get_bool(root, "IsPartial", &info->is_partial) ||
      !get_bool(root, "IsFinal", &info->is_final))
    return TUSC_EINTERNAL;
  /* tusd writes Size 0 with SizeIsDeferred; a missing or negative Size (older writers)
   * also means the length is not known yet. */
  json_t *size = json_object_get(root, "Size");
  if (info->size_is_deferred || info->size < 0 || size == NULL || json_is_null(size)) {
    info->size_is_deferred = true;
    info->size = -1;
  }
  if (info->offset < 0)
    return TUSC_EINTERNAL;

  json_t *md = json_object_get(root, "MetaData");
  if (md != NULL && !json_is_null(md)) {
    if (!json_is_object(md))
      return TUSC_EINTERNAL;
    const char *key;
    json_t *value;
    json_object_foreach(md, key, value) {
      if (!json_is_string(value))
        return TUSC_EINTERNAL;
      if (tusc_metadata_set(&info->metadata, key, json_string_value(value),
                            json_string_length(value)) != 0)
        return TUSC_ENOMEM;
    }
  }

  json_t *partials = json_object_get(root, "PartialUploads");
  if (partials != NULL && !json_is_null(partials)) {
    if (!json_is_array(partials))
      return TUSC_EINTERNAL;
    size_t n = json_array_size(partials);
    /* An empty array stays distinguishable from null, as in tusd. */
    info->partial_uploads = calloc(n > 0 ? n : 1, sizeof(char *));
    if (info->partial_uploads == NULL)
      return TUSC_ENOMEM;
    for (size_t i = 0; i < n; i++) {
      json_t *s = json_array_get(partials, i);
      if (!json_is_string(s) || json_string_length(s) > TUSC_ID_MAX)
        return TUSC_EINTERNAL;
      info->partial_uploads[i] = strdup(json_string_value(s));
      if (info->partial_uploads[i] == NULL)
        return TUSC_ENOMEM;
      info->partial_count = i + 1;
    }
  }

  json_t *storage = json_object_get(root, "Storage");
  if (storage != NULL && !json_is_null(storage)) {
    if (!json_is_object(storage) || !copy_path(storage, "Path", &info->data_path) ||
        !copy_path(storage, "InfoPath", &info->info_path))
      return TUSC_EINTERNAL;
  }

  json_t *tusc = json_object_get(root, "tusc");
  if (tusc != NULL && !json_is_null(tusc)) {
    if (!json_is_object(tusc) || !get_int(tusc, "CreatedAt", &info->created_at) ||
        !get_int(tusc, "ExpiresAt", &info->expires_at))
      return TUSC_EINTERNAL;
    json_t *owner = json_object_get(tusc, "Owner");
    if (owner != NULL && !json_is_null(owner)) {
      if (!json_is_string(owner))
        return TUSC_EINTERNAL;
      info->owner = strdup(json_string_value(owner));
      if (info->owner == NULL)
        return TUSC_ENOMEM;
    }
    info->custom_data_path = json_is_true(json_object_get(tusc, "CustomPath"));
    json_t *repr = json_object_get(tusc, "ReprDigest");
    if (repr != NULL && !json_is_null(repr)) {
      if (!json_is_string(repr))
        return TUSC_EINTERNAL;
      info->repr_digest = strdup(json_string_value(repr));
      if (info->repr_digest == NULL)
        return TUSC_ENOMEM;
    }
    json_t *fh = json_object_get(tusc, "FinishHooks");
    if (json_is_string(fh))
      info->finish_hooks = strcmp(json_string_value(fh), "done") == 0 ? TUSC_FINISH_HOOKS_DONE
                                                                      : TUSC_FINISH_HOOKS_PENDING;
    json_t *md_b64 = json_object_get(tusc, "MetaDataB64");
    if (md_b64 != NULL && !json_is_null(md_b64)) {
      if (!json_is_object(md_b64))
        return TUSC_EINTERNAL;
      const char *key;
      json_t *value;
      json_object_foreach(md_b64, key, value) {
        if (!json_is_string(value))
          return TUSC_EINTERNAL;
        size_t elen = json_string_length(value);
        unsigned char *raw = malloc(TUSC_BASE64_DECODED_MAX(elen) + 1);
        if (raw == NULL)
          return TUSC_ENOMEM;
        long n = tusc_base64_decode(json_string_value(value), elen, raw);
        int rc = 0;
        if (n < 0)
          rc = TUSC_EINTERNAL;
        else if (tusc_metadata_set(&info->metadata, key, (const char *)raw, (size_t)n) != 0)
          rc = TUSC_ENOMEM;
        free(raw);
        if (rc != 0)
          return rc;
      }
    }
  }
  return 0;
}

int tusc_upload_info_from_json(const char *json, size_t len, tusc_upload_info_t *info) {
  json_error_t err;
  json_t *root = json_loadb(json, len, JSON_ALLOW_NUL, &err);
  if (root == NULL)
    return TUSC_EINTERNAL;
  tusc_upload_info_t parsed;
  tusc_upload_info_init(&parsed);
  int rc = parse_root(root, &parsed);
  json_decref(root);
  if (rc != 0) {
    tusc_upload_info_dispose(&parsed);
    return rc;
  }
  tusc_upload_info_dispose(info);
  *info = parsed;
  return 0;
}

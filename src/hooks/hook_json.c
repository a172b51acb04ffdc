/*
 * hook_json — see hook_json.h. The writer mirrors Go's encoding/json (Go ≥ 1.22:
 * \b and \f are short escapes) because hook scripts and endpoints written for tusd
 * may compare or hash the payload; the reader follows encoding/json's struct
 * decoding rules (case-insensitive keys, null = leave as is).
 */
#include "hooks/hook_json.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "common/error.h"
#include "common/id.h"
#include "common/strbuf.h"
#include "common/utf8.h"

/* --- JSON on a string buffer ------------------------------------------------------ */

static void jb_i64(tusc_strbuf_t *b, int64_t v) {
  char tmp[32];
  int n = snprintf(tmp, sizeof(tmp), "%" PRId64, v);
  tusc_strbuf_add(b, tmp, (size_t)n);
}

static void jb_bool(tusc_strbuf_t *b, bool v) {
  tusc_strbuf_str(b, v ? "true" : "false");
}

static void jb_str(tusc_strbuf_t *b, const char *str, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *s = (const unsigned char *)str;
  size_t start = 0, i = 0;
  tusc_strbuf_add(b, "\"", 1);
  while (i < n) {
    unsigned char c = s[i];
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&') {
      i++;
      continue;
    }
    if (c < 0x80) {
      tusc_strbuf_add(b, str + start, i - start);
      char esc[7];
      switch (c) {
      case '"':
        tusc_strbuf_add(b, "\\\"", 2);
        break;
      case '\\':
        tusc_strbuf_add(b, "\\\\", 2);
        break;
      case '\b':
        tusc_strbuf_add(b, "\\b", 2);
        break;
      case '\f':
        tusc_strbuf_add(b, "\\f", 2);
        break;
      case '\n':
        tusc_strbuf_add(b, "\\n", 2);
        break;
      case '\r':
        tusc_strbuf_add(b, "\\r", 2);
        break;
      case '\t':
        tusc_strbuf_add(b, "\\t", 2);
        break;
      default:
        esc[0] = '\\';
        esc[1] = 'u';
        esc[2] = '0';
        esc[3] = '0';
        esc[4] = hex[c >> 4];
        esc[5] = hex[c & 0xF];
        tusc_strbuf_add(b, esc, 6);
      }
      i++;
      start = i;
      continue;
    }
    uint32_t cp = 0;
    size_t len = tusc_utf8_seq(s + i, n - i, &cp);
    if (len == 0) {
      tusc_strbuf_add(b, str + start, i - start);
      tusc_strbuf_str(b, "\\ufffd");
      i++;
      start = i;
      continue;
    }
    if (cp == 0x2028 || cp == 0x2029) {
      tusc_strbuf_add(b, str + start, i - start);
      tusc_strbuf_str(b, cp == 0x2028 ? "\\u2028" : "\\u2029");
      i += len;
      start = i;
      continue;
    }
    i += len;
  }
  tusc_strbuf_add(b, str + start, i - start);
  tusc_strbuf_add(b, "\"", 1);
}

static void jb_cstr(tusc_strbuf_t *b, const char *s) {
  jb_str(b, s ? s : "", s ? strlen(s) : 0);
}

/* --- header canonicalisation --------------------------------------------------------- */

static bool is_token_char(unsigned char c) {
  if (c >= 0x80 || c <= 0x20 || c == 0x7F)
    return false;
  return strchr("()<>@,;:\\\"/[]?={}", c) == NULL;
}

long tusc_hook_canonical_header(const char *name, char *out, size_t cap) {
  size_t n = strlen(name);
  if (n + 1 > cap)
    return -1;
  bool valid = n > 0;
  for (size_t i = 0; i < n && valid; i++)
    valid = is_token_char((unsigned char)name[i]);
  bool upper = true;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (valid) {
      if (upper && c >= 'a' && c <= 'z')
        c = (char)(c - 'a' + 'A');
      else if (!upper && c >= 'A' && c <= 'Z')
        c = (char)(c - 'A' + 'a');
      upper = c == '-';
    }
    out[i] = c;
  }
  out[n] = '\0';
  return (long)n;
}

/* --- request ------------------------------------------------------------------------- */

struct hdr_entry {
  char *name; /* canonical, owned */
  const char *value;
  size_t order;
};

static int cmp_hdr(const void *a, const void *b) {
  const struct hdr_entry *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  if (c)
    return c;
  return x->order < y->order ? -1 : x->order > y->order;
}

static int cmp_pair(const void *a, const void *b) {
  const tusc_metadata_pair_t *const *x = a, *const *y = b;
  return strcmp((*x)->key, (*y)->key);
}

static int write_headers(tusc_strbuf_t *b, const tusc_hook_http_request_t *req) {
  size_t n = req ? req->header_count : 0;
  if (n == 0) {
    tusc_strbuf_str(b, "{}");
    return 0;
  }
  struct hdr_entry *e = calloc(n, sizeof(*e));
  if (!e)
    return TUSC_ENOMEM;
  int rc = 0;
  for (size_t i = 0; i < n; i++) {
    const char *name = req->headers[i].name ? req->headers[i].name : "";
    size_t cap = strlen(name) + 1;
    e[i].name = malloc(cap);
    if (!e[i].name) {
      rc = TUSC_ENOMEM;
      goto out;
    }
    (void)tusc_hook_canonical_header(name, e[i].name, cap);
    e[i].value = req->headers[i].value ? req->headers[i].value : "";
    e[i].order = i;
  }
  qsort(e, n, sizeof(*e), cmp_hdr);
  tusc_strbuf_str(b, "{");
  for (size_t i = 0; i < n; i++) {
    bool first_of_name = i == 0 || strcmp(e[i - 1].name, e[i].name) != 0;
    bool last_of_name = i + 1 == n || strcmp(e[i + 1].name, e[i].name) != 0;
    if (first_of_name) {
      if (i > 0)
        tusc_strbuf_str(b, ",");
      jb_cstr(b, e[i].name);
      tusc_strbuf_str(b, ":[");
    } else {
      tusc_strbuf_str(b, ",");
    }
    jb_cstr(b, e[i].value);
    if (last_of_name)
      tusc_strbuf_str(b, "]");
  }
  tusc_strbuf_str(b, "}");
out:
  for (size_t i = 0; i < n; i++)
    free(e[i].name);
  free(e);
  return rc;
}

static int write_metadata(tusc_strbuf_t *b, const tusc_metadata_t *md) {
  if (md->count == 0) {
    tusc_strbuf_str(b, "{}");
    return 0;
  }
  const tusc_metadata_pair_t **sorted = calloc(md->count, sizeof(*sorted));
  if (!sorted)
    return TUSC_ENOMEM;
  for (size_t i = 0; i < md->count; i++)
    sorted[i] = &md->pairs[i];
  qsort(sorted, md->count, sizeof(*sorted), cmp_pair);
  tusc_strbuf_str(b, "{");
  for (size_t i = 0; i < md->count; i++) {
    if (i)
      tusc_strbuf_str(b, ",");
    jb_cstr(b, sorted[i]->key);
    tusc_strbuf_str(b, ":");
    if (sorted[i]->value)
      jb_str(b, sorted[i]->value, sorted[i]->value_len);
    else
      tusc_strbuf_str(b, "\"\"");
  }
  tusc_strbuf_str(b, "}");
  free(sorted);
  return 0;
}

/* Go's net.JoinHostPort: brackets around hosts containing ':'. */
static void write_remote_addr(tusc_strbuf_t *b, const tusc_hook_http_request_t *req) {
  if (!req || !req->remote_ip || !req->remote_ip[0]) {
    tusc_strbuf_str(b, "\"\"");
    return;
  }
  char addr[128];
  bool v6 = strchr(req->remote_ip, ':') != NULL;
  snprintf(addr, sizeof(addr), v6 ? "[%s]:%d" : "%s:%d", req->remote_ip, req->remote_port);
  jb_cstr(b, addr);
}

int tusc_hook_json_request(enum tusc_hook_event ev, const tusc_upload_info_t *upload,
                           const tusc_store_kv_t *storage, size_t storage_count,
                           const tusc_hook_http_request_t *req, char **out, size_t *out_len) {
  const char *type = tusc_hook_event_name(ev);
  if (!upload || !type[0])
    return TUSC_EINVALID_ARGUMENT;
  bool pre_create = ev == TUSC_HOOK_PRE_CREATE;
  tusc_strbuf_t b = {.max = TUSC_HOOK_JSON_MAX};
  int rc;

  tusc_strbuf_str(&b, "{\"Type\":");
  jb_cstr(&b, type);
  tusc_strbuf_str(&b, ",\"Event\":{\"Upload\":{\"ID\":");
  jb_cstr(&b, pre_create ? "" : upload->id);
  tusc_strbuf_str(&b, ",\"Size\":");
  jb_i64(&b, upload->size_is_deferred || upload->size < 0 ? 0 : upload->size);
  tusc_strbuf_str(&b, ",\"SizeIsDeferred\":");
  jb_bool(&b, upload->size_is_deferred);
  tusc_strbuf_str(&b, ",\"Offset\":");
  jb_i64(&b, upload->offset < 0 ? 0 : upload->offset);
  tusc_strbuf_str(&b, ",\"MetaData\":");
  if ((rc = write_metadata(&b, &upload->metadata)) < 0)
    goto out;
  tusc_strbuf_str(&b, ",\"IsPartial\":");
  jb_bool(&b, upload->is_partial);
  tusc_strbuf_str(&b, ",\"IsFinal\":");
  jb_bool(&b, upload->is_final);
  tusc_strbuf_str(&b, ",\"PartialUploads\":");
  if (upload->partial_uploads && upload->partial_count > 0) {
    tusc_strbuf_str(&b, "[");
    for (size_t i = 0; i < upload->partial_count; i++) {
      if (i)
        tusc_strbuf_str(&b, ",");
      jb_cstr(&b, upload->partial_uploads[i]);
    }
    tusc_strbuf_str(&b, "]");
  } else {
    tusc_strbuf_str(&b, "null");
  }
  tusc_strbuf_str(&b, ",\"Storage\":");
  if (pre_create || storage == NULL || storage_count == 0) {
    tusc_strbuf_str(&b, "null");
  } else {
    /* A Go map: keys come out sorted. The maps are a handful of pairs. */
    const tusc_store_kv_t *sorted[TUSC_STORE_KV_MAX];
    size_t n = storage_count < TUSC_STORE_KV_MAX ? storage_count : TUSC_STORE_KV_MAX;
    for (size_t i = 0; i < n; i++) {
      size_t k = i;
      while (k > 0 && strcmp(sorted[k - 1]->key, storage[i].key) > 0) {
        sorted[k] = sorted[k - 1];
        k--;
      }
      sorted[k] = &storage[i];
    }
    tusc_strbuf_str(&b, "{");
    for (size_t i = 0; i < n; i++) {
      if (i)
        tusc_strbuf_str(&b, ",");
      jb_cstr(&b, sorted[i]->key);
      tusc_strbuf_str(&b, ":");
      jb_cstr(&b, sorted[i]->value);
    }
    tusc_strbuf_str(&b, "}");
  }
  tusc_strbuf_str(&b, "},\"HTTPRequest\":{\"Method\":");
  jb_cstr(&b, req ? req->method : "");
  tusc_strbuf_str(&b, ",\"URI\":");
  jb_cstr(&b, req ? req->uri : "");
  tusc_strbuf_str(&b, ",\"RemoteAddr\":");
  write_remote_addr(&b, req);
  tusc_strbuf_str(&b, ",\"Header\":");
  if ((rc = write_headers(&b, req)) < 0)
    goto out;
  tusc_strbuf_str(&b, "}");
  if (req != NULL && req->principal != NULL) {
    tusc_strbuf_str(&b, ",\"TuscPrincipal\":");
    jb_cstr(&b, req->principal);
  }
  if (req != NULL && req->client_addr != NULL) {
    tusc_strbuf_str(&b, ",\"TuscClientAddr\":");
    jb_cstr(&b, req->client_addr);
  }
  tusc_strbuf_str(&b, "}}");
  rc = b.err;
  if (rc == 0) {
    *out = b.p;
    *out_len = b.len;
    b.p = NULL;
  }
out:
  free(b.p);
  return rc;
}

/* --- response ------------------------------------------------------------------------ */

static int fail(tusc_hook_response_t *resp, const char *field, const char *want) {
  snprintf(resp->error, sizeof(resp->error), "hook response: %s must be %s", field, want);
  return TUSC_EINTERNAL;
}

static char *dup_json_string(const json_t *s, size_t *len) {
  size_t n = json_string_length(s);
  char *p = malloc(n + 1);
  if (!p)
    return NULL;
  memcpy(p, json_string_value(s), n);
  p[n] = '\0';
  if (len)
    *len = n;
  return p;
}

static int get_bool(const json_t *v, bool *out, tusc_hook_response_t *resp, const char *field) {
  if (!json_is_boolean(v))
    return fail(resp, field, "a boolean");
  *out = json_is_true(v);
  return 0;
}

static int parse_http_response(const json_t *obj, tusc_hook_response_t *resp) {
  if (!json_is_object(obj))
    return fail(resp, "HTTPResponse", "an object");
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)obj, key, v) {
    if (json_is_null(v))
      continue;
    if (strcasecmp(key, "StatusCode") == 0) {
      /* 0 = unset. A 1xx is no final answer: the client would wait for another one,
       * and a body after it would be read as the next response. */
      if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 999 ||
          (json_integer_value(v) > 0 && json_integer_value(v) < 200))
        return fail(resp, "HTTPResponse.StatusCode", "0 or a final HTTP status (200-999)");
      resp->status_code = (int)json_integer_value(v);
    } else if (strcasecmp(key, "Body") == 0) {
      if (!json_is_string(v))
        return fail(resp, "HTTPResponse.Body", "a string");
      free(resp->body);
      resp->body = dup_json_string(v, &resp->body_len);
      if (!resp->body)
        return TUSC_ENOMEM;
    } else if (strcasecmp(key, "Header") == 0) {
      if (!json_is_object(v))
        return fail(resp, "HTTPResponse.Header", "an object of strings");
      size_t n = json_object_size(v);
      if (n == 0)
        continue;
      tusc_hook_resp_header_t *h = realloc(resp->headers, (resp->header_count + n) * sizeof(*h));
      if (!h)
        return TUSC_ENOMEM;
      resp->headers = h;
      const char *hk;
      json_t *hv;
      json_object_foreach(v, hk, hv) {
        if (!json_is_string(hv))
          return fail(resp, "HTTPResponse.Header values", "strings");
        /* A header name or value with CR/LF would split the response. */
        const char *val = json_string_value(hv);
        if (strpbrk(hk, "\r\n") || strpbrk(val, "\r\n") || strlen(val) != json_string_length(hv) ||
            !hk[0])
          return fail(resp, "HTTPResponse.Header", "free of CR, LF and NUL");
        tusc_hook_resp_header_t *e = &resp->headers[resp->header_count];
        e->name = strdup(hk);
        e->value = strdup(val);
        if (!e->name || !e->value) {
          free(e->name);
          free(e->value);
          return TUSC_ENOMEM;
        }
        resp->header_count++;
      }
    }
  }
  return 0;
}

static int parse_string_map_into_metadata(const json_t *v, tusc_hook_response_t *resp) {
  if (!json_is_object(v))
    return fail(resp, "ChangeFileInfo.MetaData", "an object of strings");
  if (resp->has_metadata) {
    tusc_metadata_dispose(&resp->metadata);
    memset(&resp->metadata, 0, sizeof(resp->metadata));
  }
  resp->has_metadata = true;
  const char *k;
  json_t *mv;
  json_object_foreach((json_t *)v, k, mv) {
    if (!json_is_string(mv))
      return fail(resp, "ChangeFileInfo.MetaData values", "strings");
    /* Keys must survive a later Upload-Metadata header (HEAD): no space or comma. */
    bool key_ok = k[0] != '\0';
    for (const unsigned char *c = (const unsigned char *)k; *c && key_ok; c++)
      key_ok = *c > 0x20 && *c < 0x7f && *c != ',';
    if (!key_ok)
      return fail(resp, "ChangeFileInfo.MetaData keys", "printable ASCII without space or comma");
    if (tusc_metadata_set(&resp->metadata, k, json_string_value(mv), json_string_length(mv)) < 0)
      return TUSC_ENOMEM;
  }
  return 0;
}

static int parse_change_file_info(const json_t *obj, tusc_hook_response_t *resp) {
  if (!json_is_object(obj))
    return fail(resp, "ChangeFileInfo", "an object");
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)obj, key, v) {
    if (json_is_null(v))
      continue;
    if (strcasecmp(key, "ID") == 0) {
      if (!json_is_string(v))
        return fail(resp, "ChangeFileInfo.ID", "a string");
      size_t n = json_string_length(v);
      free(resp->change_id);
      resp->change_id = NULL;
      if (n == 0) /* tusd: an empty ID means "keep the generated one" */
        continue;
      if (!tusc_id_valid(json_string_value(v), n)) {
        snprintf(resp->error, sizeof(resp->error),
                 "hook response: ChangeFileInfo.ID is not a valid upload ID");
        return TUSC_EINTERNAL;
      }
      resp->change_id = dup_json_string(v, NULL);
      if (!resp->change_id)
        return TUSC_ENOMEM;
    } else if (strcasecmp(key, "MetaData") == 0) {
      int rc = parse_string_map_into_metadata(v, resp);
      if (rc < 0)
        return rc;
    } else if (strcasecmp(key, "Storage") == 0) {
      if (!json_is_object(v))
        return fail(resp, "ChangeFileInfo.Storage", "an object of strings");
      const char *sk;
      json_t *sv;
      json_object_foreach(v, sk, sv) {
        if (!json_is_string(sv))
          return fail(resp, "ChangeFileInfo.Storage values", "strings");
        if (strcasecmp(sk, "Path") != 0 || json_string_length(sv) == 0)
          continue;
        if (strlen(json_string_value(sv)) != json_string_length(sv))
          return fail(resp, "ChangeFileInfo.Storage.Path", "free of NUL");
        free(resp->change_storage_path);
        resp->change_storage_path = dup_json_string(sv, NULL);
        if (!resp->change_storage_path)
          return TUSC_ENOMEM;
      }
    }
  }
  return 0;
}

int tusc_hook_json_response(const char *text, size_t len, tusc_hook_response_t *resp) {
  size_t i = 0;
  while (i < len && isspace((unsigned char)text[i]))
    i++;
  if (i == len)
    return 0;
  json_error_t jerr;
  json_t *root = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
  if (!root) {
    snprintf(resp->error, sizeof(resp->error), "hook response is not valid JSON: %s (line %d)",
             jerr.text, jerr.line);
    return TUSC_EINTERNAL;
  }
  int rc = 0;
  if (json_is_null(root))
    goto out;
  if (!json_is_object(root)) {
    rc = fail(resp, "the response", "a JSON object");
    goto out;
  }
  const char *key;
  json_t *v;
  json_object_foreach(root, key, v) {
    if (json_is_null(v))
      continue;
    if (strcasecmp(key, "HTTPResponse") == 0)
      rc = parse_http_response(v, resp);
    else if (strcasecmp(key, "RejectUpload") == 0)
      rc = get_bool(v, &resp->reject_upload, resp, "RejectUpload");
    else if (strcasecmp(key, "RejectTermination") == 0)
      rc = get_bool(v, &resp->reject_termination, resp, "RejectTermination");
    else if (strcasecmp(key, "StopUpload") == 0)
      rc = get_bool(v, &resp->stop_upload, resp, "StopUpload");
    else if (strcasecmp(key, "ChangeFileInfo") == 0)
      rc = parse_change_file_info(v, resp);
    if (rc < 0)
      break;
  }
out:
  json_decref(root);
  return rc;
}

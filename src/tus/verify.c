/*
 * verify — see verify.h.
 */
#include "tus/verify.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/error.h"
#include "common/log.h"
#include "tus/checksum.h"

#define HEADER "Upload-Checksum"
#define READBACK_CHUNK (256 * 1024)

struct tusc_verify_s {
  bool trailer;     /* checksum arrives as a trailer */
  bool digest;      /* Content-Digest (IETF draft): a mismatch is TUSC_EDIGEST_MISMATCH */
  bool have_expect; /* `expect` is known (header, or trailer parsed) */
  tusc_checksum_expect_t expect;
  tusc_checksum_t *hash; /* header mode: running over the body */
  int64_t start_offset;  /* where the chunk began in the upload */
  int64_t written;       /* body bytes the store took */

  /* tusc_verify_end */
  tusc_store_req_t sreq;
  tusc_upload_t *end_up;
  char *readback;
  int64_t pos;
  int verdict;
  tusc_verify_cb cb;
  void *cb_arg;
};

/* `Trailer: a, Upload-Checksum` — a comma list of field names, possibly over several
 * header lines. */
static bool trailer_announced(const tusc_http_request_t *req) {
  for (size_t i = 0; i < req->header_count; i++) {
    const tusc_http_header_t *h = &req->headers[i];
    if (h->trailer || strcasecmp(h->name, "Trailer") != 0)
      continue;
    const char *p = h->value, *end = h->value + h->value_len;
    while (p < end) {
      while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
        p++;
      const char *start = p;
      while (p < end && *p != ',' && *p != ' ' && *p != '\t')
        p++;
      if ((size_t)(p - start) == strlen(HEADER) && strncasecmp(start, HEADER, strlen(HEADER)) == 0)
        return true;
    }
  }
  return false;
}

int tusc_verify_new(const tusc_http_request_t *req, tusc_verify_t **out) {
  size_t count = tusc_http_header_count(req, HEADER);
  bool announced = trailer_announced(req);
  if (count == 0 && !announced) {
    *out = NULL;
    return 0;
  }
  if (count > 1 || (count == 1 && announced) || (announced && !req->chunked))
    return TUSC_EINVALID_CHECKSUM;
  tusc_verify_t *v = calloc(1, sizeof(*v));
  if (v == NULL)
    return TUSC_ENOMEM;
  int rc = 0;
  if (count == 1) {
    const tusc_http_header_t *h = tusc_http_header(req, HEADER);
    rc = tusc_checksum_parse(h->value, h->value_len, &v->expect);
    if (rc == 0) {
      v->have_expect = true;
      rc = tusc_checksum_new(v->expect.algo, &v->hash);
    }
  } else {
    v->trailer = true;
  }
  if (rc != 0) {
    tusc_verify_free(v);
    return rc;
  }
  *out = v;
  return 0;
}

#define DIGEST_HEADER "Content-Digest"
#define DIGEST_FIELD_MAX 4096

int tusc_verify_digest_field(const tusc_http_request_t *req, const char *name,
                             tusc_checksum_expect_t *out, bool *found) {
  *found = false;
  /* Field lines of a Dictionary combine with commas (RFC 9651 §3.2). */
  char field[DIGEST_FIELD_MAX];
  size_t len = 0, lines = 0;
  for (size_t i = 0; i < req->header_count; i++) {
    const tusc_http_header_t *h = &req->headers[i];
    if (h->trailer || strcasecmp(h->name, name) != 0)
      continue;
    if (len + h->value_len + 2 > sizeof(field))
      return TUSC_EINVALID_DIGEST;
    if (lines++ > 0) {
      field[len++] = ',';
      field[len++] = ' ';
    }
    memcpy(field + len, h->value, h->value_len);
    len += h->value_len;
  }
  if (lines == 0)
    return 0;
  return tusc_checksum_parse_digest_field(field, len, out, found);
}

int tusc_verify_new_digest(const tusc_http_request_t *req, tusc_verify_t **out) {
  *out = NULL;
  tusc_checksum_expect_t expect;
  bool found = false;
  int rc = tusc_verify_digest_field(req, DIGEST_HEADER, &expect, &found);
  if (rc != 0 || !found)
    return rc;
  tusc_verify_t *v = calloc(1, sizeof(*v));
  if (v == NULL)
    return TUSC_ENOMEM;
  v->digest = true;
  v->have_expect = true;
  v->expect = expect;
  rc = tusc_checksum_new(v->expect.algo, &v->hash);
  if (rc != 0) {
    tusc_verify_free(v);
    return rc;
  }
  *out = v;
  return 0;
}

/* The verdict of a digest comparison in the vocabulary of the header it came from. */
static int verdict_of(const tusc_verify_t *v, int rc) {
  return v->digest && rc == TUSC_ECHECKSUM_MISMATCH ? TUSC_EDIGEST_MISMATCH : rc;
}

int tusc_verify_body_end(tusc_verify_t *v, const tusc_http_request_t *req) {
  if (!v->trailer)
    return 0;
  const tusc_http_header_t *t = tusc_http_trailer(req, HEADER);
  if (t == NULL)
    return TUSC_EINVALID_CHECKSUM;
  int rc = tusc_checksum_parse(t->value, t->value_len, &v->expect);
  if (rc == 0)
    v->have_expect = true;
  return rc;
}

bool tusc_verify_has_trailer(const tusc_http_request_t *req) {
  return req->chunked && tusc_http_trailer(req, HEADER) != NULL;
}

void tusc_verify_free(tusc_verify_t *v) {
  if (v == NULL)
    return;
  tusc_checksum_free(v->hash);
  free(v->readback);
  free(v);
}

/* --- asynchronous: the caller appends, verify hashes and ends the chunk ------------ */

int tusc_verify_chunk_flags(const tusc_verify_t *v) {
  (void)v;
  return TUSC_STORE_CHUNK_STAGED;
}

int tusc_verify_update(tusc_verify_t *v, const void *data, size_t len) {
  v->written += (int64_t)len;
  if (v->hash != NULL && tusc_checksum_update(v->hash, data, len) != 0)
    return TUSC_EINTERNAL;
  return 0;
}

static void end_report(tusc_verify_t *v, int status) {
  tusc_verify_cb cb = v->cb;
  v->cb = NULL;
  cb(v, status, v->cb_arg); /* last: the callback may free v */
}

static void on_chunk_ended(tusc_store_req_t *sreq, int status) {
  tusc_verify_t *v = sreq->data;
  if (v->verdict != 0) {
    if (status != 0)
      TUSC_LOG(TUSC_LOG_ERROR, "checksum: dropping a rejected chunk failed: %s",
               tusc_strerror(status));
    end_report(v, v->verdict);
    return;
  }
  end_report(v, status);
}

static void end_chunk(tusc_verify_t *v, int verdict) {
  v->verdict = verdict;
  v->sreq.data = v;
  int rc = tusc_store_chunk_end(
      v->end_up, &v->sreq, verdict == 0 ? TUSC_STORE_KEEP : TUSC_STORE_DISCARD, on_chunk_ended);
  if (rc != 0)
    end_report(v, verdict != 0 ? verdict : rc); /* from a callback: never inline */
}

static void judge(tusc_verify_t *v) {
  end_chunk(v, verdict_of(v, tusc_checksum_verify(v->hash, &v->expect)));
}

static void read_next(tusc_verify_t *v);

static void on_readback(tusc_store_req_t *sreq, int status) {
  tusc_verify_t *v = sreq->data;
  if (status == 0 && sreq->nread == 0)
    status = TUSC_EINTERNAL; /* the staged bytes are shorter than what was appended */
  if (status == 0)
    status = tusc_checksum_update(v->hash, v->readback, sreq->nread);
  if (status != 0) {
    end_chunk(v, status);
    return;
  }
  v->pos += (int64_t)sreq->nread;
  read_next(v);
}

/* Trailer mode: the algorithm is known only now, so the chunk's bytes are read back
 * once (from the page cache, on the store's pool) instead of hashing every algorithm
 * while streaming. */
static void read_next(tusc_verify_t *v) {
  if (v->pos >= v->written) {
    judge(v);
    return;
  }
  int64_t left = v->written - v->pos;
  size_t want = left > READBACK_CHUNK ? READBACK_CHUNK : (size_t)left;
  v->sreq.data = v;
  int rc = tusc_store_read(v->end_up, &v->sreq, v->start_offset + v->pos, v->readback, want,
                           on_readback);
  if (rc != 0)
    end_chunk(v, rc);
}

static void on_end_started(tusc_store_req_t *sreq, int status) {
  /* Only here to leave the caller's stack before the work starts: see tusc_verify_end. */
  (void)status;
  tusc_verify_t *v = sreq->data;
  if (v->hash == NULL) {
    int rc = tusc_checksum_new(v->expect.algo, &v->hash);
    if (rc == 0 && v->written > 0 && v->readback == NULL) {
      v->readback = malloc(READBACK_CHUNK);
      if (v->readback == NULL)
        rc = TUSC_ENOMEM;
    }
    if (rc != 0) {
      end_chunk(v, rc);
      return;
    }
    v->pos = 0;
    read_next(v);
    return;
  }
  judge(v);
}

int tusc_verify_end(tusc_verify_t *v, tusc_upload_t *up, int64_t chunk_start, bool ok,
                    tusc_verify_cb cb, void *arg) {
  if (v == NULL || up == NULL || cb == NULL)
    return TUSC_EINVALID_ARGUMENT;
  v->end_up = up;
  v->start_offset = chunk_start;
  v->cb = cb;
  v->cb_arg = arg;
  v->verdict = 0;
  v->sreq.data = v;
  if (!ok || !v->have_expect) {
    /* A chunk that cannot be verified is dropped. Interrupted (!ok): the caller has its
     * own error and learns the discard's status; no digest: TUSC_EINVALID_CHECKSUM. */
    v->verdict = ok ? TUSC_EINVALID_CHECKSUM : 0;
    return tusc_store_chunk_end(up, &v->sreq, TUSC_STORE_DISCARD, on_chunk_ended);
  }
  /* The digest work starts from a store callback (a read of 0 bytes completes later),
   * so that the callback never runs inline even when no read is needed. */
  return tusc_store_read(up, &v->sreq, chunk_start, NULL, 0, on_end_started);
}

int tusc_verify_empty(tusc_verify_t *v) {
  if (!v->have_expect)
    return TUSC_EINVALID_CHECKSUM;
  if (v->hash == NULL) {
    int rc = tusc_checksum_new(v->expect.algo, &v->hash);
    if (rc != 0)
      return rc;
  }
  return verdict_of(v, tusc_checksum_verify(v->hash, &v->expect));
}

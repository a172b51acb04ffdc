/*
 * htpasswd — parsing and checking of htpasswd files (see htpasswd.h).
 *
 * crypt_r with a per-call struct crypt_data keeps verification thread-safe; the
 * struct is large (~32 KiB), so it is heap-allocated instead of living on a thread-
 * pool stack. Comparison of the computed hash is constant-time.
 */
#include "auth/htpasswd.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fileutil.h"

#define HTPASSWD_FILE_MAX (16 * 1024 * 1024)

struct entry {
  char *user;
  char *hash;
};

struct tusc_htpasswd_s {
  struct entry *entries;
  size_t count;
};

void tusc_htpasswd_free(tusc_htpasswd_t *table) {
  if (table == NULL)
    return;
  for (size_t i = 0; i < table->count; i++) {
    free(table->entries[i].user);
    if (table->entries[i].hash != NULL)
      OPENSSL_cleanse(table->entries[i].hash, strlen(table->entries[i].hash));
    free(table->entries[i].hash);
  }
  free(table->entries);
  free(table);
}

size_t tusc_htpasswd_count(const tusc_htpasswd_t *table) {
  return table != NULL ? table->count : 0;
}

static bool starts_with(const char *s, size_t len, const char *prefix) {
  size_t n = strlen(prefix);
  return len >= n && memcmp(s, prefix, n) == 0;
}

/* NULL when the hash kind is accepted, else why not. */
static const char *hash_refusal(const char *h, size_t len) {
  if (starts_with(h, len, "$2y$") || starts_with(h, len, "$2b$") || starts_with(h, len, "$2a$") ||
      starts_with(h, len, "$6$") || starts_with(h, len, "$y$"))
    return NULL;
  if (starts_with(h, len, "$apr1$"))
    return "md5-apr1 ($apr1$) hashes are too weak; re-create the entry with "
           "'htpasswd -B' (bcrypt)";
  if (starts_with(h, len, "$1$"))
    return "md5-crypt ($1$) hashes are too weak; use bcrypt, sha512-crypt or yescrypt";
  if (starts_with(h, len, "$5$"))
    return "sha256-crypt ($5$) is not accepted; use bcrypt, sha512-crypt or yescrypt";
  if (starts_with(h, len, "{SHA}"))
    return "SHA-1 ({SHA}) hashes are too weak; re-create the entry with 'htpasswd -B' (bcrypt)";
  if (len > 0 && h[0] == '$')
    return "unknown hash scheme; use bcrypt ($2y$), sha512-crypt ($6$) or yescrypt ($y$)";
  return "plain-text or DES-crypt passwords are refused; re-create the entry with "
         "'htpasswd -B' (bcrypt)";
}

int tusc_htpasswd_parse(const char *text, size_t len, const char *source, tusc_htpasswd_t **out,
                        char *err, size_t err_cap) {
  int rc = 0;
  size_t cap = 0;
  tusc_htpasswd_t *t = calloc(1, sizeof(*t));
  if (t == NULL)
    return TUSC_ENOMEM;
  if (err_cap > 0)
    err[0] = '\0';
  size_t pos = 0;
  unsigned lineno = 0;
  while (pos < len) {
    lineno++;
    const char *line = text + pos;
    const char *nl = memchr(line, '\n', len - pos);
    size_t n = nl != NULL ? (size_t)(nl - line) : len - pos;
    pos += n + (nl != NULL ? 1 : 0);
    if (n > 0 && line[n - 1] == '\r')
      n--;
    while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t'))
      n--;
    if (n == 0 || line[0] == '#')
      continue;
    if (memchr(line, '\0', n) != NULL) {
      snprintf(err, err_cap, "%s:%u: NUL byte in line", source, lineno);
      rc = TUSC_EINVALID_ARGUMENT;
      goto out;
    }
    const char *colon = memchr(line, ':', n);
    if (colon == NULL || colon == line) {
      snprintf(err, err_cap, "%s:%u: expected \"user:hash\"", source, lineno);
      rc = TUSC_EINVALID_ARGUMENT;
      goto out;
    }
    size_t ulen = (size_t)(colon - line);
    const char *hash = colon + 1;
    size_t hlen = n - ulen - 1;
    /* Apache allows extra ":field"s after the hash (htdigest-like tools add them). */
    const char *extra = memchr(hash, ':', hlen);
    if (extra != NULL)
      hlen = (size_t)(extra - hash);
    const char *why = hash_refusal(hash, hlen);
    if (why != NULL) {
      snprintf(err, err_cap, "%s:%u: user %.*s: %s", source, lineno, (int)(ulen > 64 ? 64 : ulen),
               line, why);
      rc = TUSC_EINVALID_ARGUMENT;
      goto out;
    }
    for (size_t i = 0; i < t->count; i++) {
      if (strlen(t->entries[i].user) == ulen && memcmp(t->entries[i].user, line, ulen) == 0) {
        snprintf(err, err_cap, "%s:%u: user %.*s is listed twice", source, lineno,
                 (int)(ulen > 64 ? 64 : ulen), line);
        rc = TUSC_EINVALID_ARGUMENT;
        goto out;
      }
    }
    if (t->count == cap) {
      size_t ncap = cap ? cap * 2 : 8;
      struct entry *e = realloc(t->entries, ncap * sizeof(*e));
      if (e == NULL) {
        rc = TUSC_ENOMEM;
        goto out;
      }
      t->entries = e;
      cap = ncap;
    }
    struct entry *e = &t->entries[t->count];
    e->user = strndup(line, ulen);
    e->hash = strndup(hash, hlen);
    if (e->user == NULL || e->hash == NULL) {
      free(e->user);
      free(e->hash);
      rc = TUSC_ENOMEM;
      goto out;
    }
    t->count++;
  }
  *out = t;
  t = NULL;
out:
  tusc_htpasswd_free(t);
  return rc;
}

int tusc_htpasswd_load(const char *path, tusc_htpasswd_t **out, char *err, size_t err_cap) {
  char *buf = NULL;
  size_t len = 0;
  int rc = tusc_fileutil_read(path, HTPASSWD_FILE_MAX, &buf, &len, err, err_cap);
  if (rc != 0)
    return rc;
  rc = tusc_htpasswd_parse(buf, len, path, out, err, err_cap);
  OPENSSL_cleanse(buf, len);
  free(buf);
  return rc;
}

static bool hash_matches(const char *hash, const char *password) {
  struct crypt_data *cd = calloc(1, sizeof(*cd));
  if (cd == NULL)
    return false;
  bool ok = false;
  const char *h = crypt_r(password, hash, cd);
  /* libxcrypt returns a string starting with '*' on failure, never NULL by default,
   * but older builds may. */
  if (h != NULL && h[0] != '*') {
    size_t hl = strlen(h), el = strlen(hash);
    ok = hl == el && CRYPTO_memcmp(h, hash, hl) == 0;
  }
  OPENSSL_cleanse(cd, sizeof(*cd));
  free(cd);
  return ok;
}

int tusc_htpasswd_verify(const tusc_htpasswd_t *table, const char *user, const char *password) {
  if (table == NULL || user == NULL || password == NULL || table->count == 0)
    return TUSC_EUNAUTHORIZED;
  for (size_t i = 0; i < table->count; i++) {
    if (strcmp(table->entries[i].user, user) == 0)
      return hash_matches(table->entries[i].hash, password) ? 0 : TUSC_EUNAUTHORIZED;
  }
  /* Spend the same effort on a name that does not exist. */
  (void)hash_matches(table->entries[0].hash, password);
  return TUSC_EUNAUTHORIZED;
}

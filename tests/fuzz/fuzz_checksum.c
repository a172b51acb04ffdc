/*
 * fuzz_checksum — the Upload-Checksum header parser and the streaming hashes.
 * Oracles: a parsed digest has exactly its algorithm's length; hashing the input
 * and verifying against that very digest succeeds, and against the parsed (random)
 * digest gives a match or a mismatch — never another error.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "tus/checksum.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = malloc(size ? size : 1);
  if (s == NULL)
    return 0;
  memcpy(s, data, size);
  tusc_checksum_expect_t exp;
  int rc = tusc_checksum_parse(s, size, &exp);
  if (rc == 0) {
    if (exp.digest_len != tusc_checksum_digest_len(exp.algo) || exp.digest_len == 0 ||
        exp.digest_len > TUSC_CHECKSUM_DIGEST_MAX)
      abort();
    tusc_checksum_t *c = NULL;
    if (tusc_checksum_new(exp.algo, &c) == 0) {
      if (tusc_checksum_update(c, data, size) != 0)
        abort();
      int v = tusc_checksum_verify(c, &exp);
      if (v != 0 && v != TUSC_ECHECKSUM_MISMATCH)
        abort();
      tusc_checksum_free(c);
    }
    tusc_checksum_t *d = NULL;
    if (tusc_checksum_new(exp.algo, &d) == 0) {
      tusc_checksum_update(d, data, size / 2);
      tusc_checksum_update(d, data + size / 2, size - size / 2);
      tusc_checksum_expect_t same = {.algo = exp.algo};
      tusc_checksum_t *e = NULL;
      if (tusc_checksum_new(exp.algo, &e) == 0) {
        tusc_checksum_update(e, data, size);
        if (tusc_checksum_final(e, same.digest, &same.digest_len) != 0)
          abort();
        if (tusc_checksum_verify(d, &same) != 0) /* split feeding = one feed */
          abort();
        tusc_checksum_free(e);
      }
      tusc_checksum_free(d);
    }
  } else if (rc != TUSC_ECHECKSUM_ALGORITHM && rc != TUSC_EINVALID_CHECKSUM) {
    abort();
  }
  free(s);
  return 0;
}

/*
 * fuzz_flags — command-line parsing: the input split at NUL or newline bytes is argv
 * (after "tusc"). Anything goes except crashing, leaking or touching the disk (the
 * parser only parses; help and errors go to /dev/null).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

#define MAX_ARGS 64

static FILE *null_out;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (null_out == NULL)
    null_out = fopen("/dev/null", "w");
  char *buf = malloc(size + 1);
  if (buf == NULL)
    return 0;
  memcpy(buf, data, size);
  buf[size] = '\0';
  char *argv[MAX_ARGS + 2];
  int argc = 0;
  argv[argc++] = "tusc";
  char *p = buf;
  char *end = buf + size;
  while (p <= end && argc < MAX_ARGS + 1) {
    char *q = p;
    while (q < end && *q != '\0' && *q != '\n')
      q++;
    *q = '\0';
    argv[argc++] = p;
    p = q + 1;
  }
  argv[argc] = NULL;
  tusc_config_t cfg;
  int rc = tusc_config_parse(&cfg, argc, argv, null_out, null_out);
  (void)rc;
  tusc_config_dispose(&cfg);
  free(buf);
  return 0;
}

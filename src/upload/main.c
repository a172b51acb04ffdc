/*
 * tusc-upload — command line: argv → up_config_t → up_engine_run(). The only file of
 * the uploader that knows argv. Usage errors exit with 2.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "upload/engine.h"

#ifndef TUSC_VERSION
#define TUSC_VERSION "0"
#endif

#define MAX_LIST 256 /* -m and -H each */

static const char help_text[] =
    "NAME\n"
    "    tusc-upload - upload files and directory trees to a tus 1.0 server, resumably\n"
    "\n"
    "SYNOPSIS\n"
    "    tusc-upload [options] URL PATH...\n"
    "\n"
    "DESCRIPTION\n"
    "    Uploads every PATH (files, and directories walked recursively) to the tus\n"
    "    creation URL (e.g. https://host/files/) of any tus 1.0 server: tusc, tusd,\n"
    "    @tus/server. Several files go at once on one connection pool (HTTP/1.1\n"
    "    keep-alive, HTTP/2 multiplexing when the server offers it).\n"
    "\n"
    "    Every upload URL is written to a journal before data is sent. Running the same\n"
    "    command again, after a network loss, a server restart, Ctrl-C or kill -9,\n"
    "    continues each file from the offset the server reports and does not send\n"
    "    finished files again. A file is known by its path, size, mtime, device, inode\n"
    "    and the server URL; a changed file is uploaded anew.\n"
    "\n"
    "    Each upload carries the metadata filename, filetype (guessed from the name),\n"
    "    relativePath (its path under a directory argument) and mtime (Unix seconds).\n"
    "\n"
    "OPTIONS\n"
    "    -j, --jobs N             files uploaded at once (default 4)\n"
    "    --chunk-size SIZE        at most SIZE bytes per PATCH (default: the rest of the\n"
    "                             file in one PATCH; set it below a proxy's body limit)\n"
    "    --parts K                split files of at least --parts-min-size into K partial\n"
    "                             uploads sent at once, then concatenate them (needs the\n"
    "                             server's concatenation extension; otherwise one upload)\n"
    "    --parts-min-size SIZE    smallest file split by --parts (default 64M)\n"
    "    --state FILE             the journal (default $XDG_STATE_HOME/tusc-upload/journal\n"
    "                             or ~/.local/state/tusc-upload/journal)\n"
    "    --retries N              attempts per file without progress before it fails\n"
    "                             (default 10); backoff 0.5 s doubling to 30 s, jittered,\n"
    "                             or the server's Retry-After\n"
    "    --retry-max-time SECS    a file fails after failing this long without progress\n"
    "                             (default 600)\n"
    "    --speed-limit BYTES      a transfer slower than BYTES/s ...\n"
    "    --speed-time SECS        ... for SECS seconds is stalled and retried\n"
    "                             (defaults 1 and 30)\n"
    "    --connect-timeout SECS   (default 30)\n"
    "    --checksum ALG           Upload-Checksum on every PATCH: auto (default: the best\n"
    "                             of sha256, sha512, sha1, md5 the server offers), none,\n"
    "                             or one of those names\n"
    "    --checksum-chunk SIZE    with checksums and no --chunk-size, PATCH bodies are at\n"
    "                             most SIZE (default 64M): a broken checksummed PATCH is\n"
    "                             lost whole\n"
    "    --verify                 download each finished upload (where the server allows\n"
    "                             GET) and compare its SHA-256 with the file\n"
    "    -m, --metadata KEY=VALUE add Upload-Metadata (repeatable)\n"
    "    -u, --user USER:PASSWORD HTTP basic authentication\n"
    "    -H, --header 'NAME: VALUE'\n"
    "                             add a request header, e.g. 'Authorization: Bearer T'\n"
    "                             (repeatable)\n"
    "    --cacert FILE            trust the CA certificates in FILE\n"
    "    -k, --insecure           do not verify the server's certificate\n"
    "    --limit-rate RATE        at most RATE bytes/s in all (e.g. 10M), shared evenly by\n"
    "                             the -j x --parts transfers\n"
    "    --json                   print a JSON summary on stdout: {\"files\":[{path, url,\n"
    "                             bytes, sent, seconds, outcome, error}...], \"summary\":{...}}\n"
    "    --dry-run                list what would be sent (upload, resume or skip) and exit\n"
    "    --progress MODE          auto (default: a live display when stderr is a terminal,\n"
    "                             else a progress line every --progress-interval), tty,\n"
    "                             plain or none\n"
    "    --progress-interval SECS (default 10)\n"
    "    -q, --quiet              same as --progress none\n"
    "    -v, --verbose            report every retry; twice: libcurl's trace too\n"
    "    -h, --help               this text\n"
    "    -V, --version\n"
    "\n"
    "    SIZE and RATE take K, M, G, T suffixes (powers of 1024).\n"
    "\n"
    "FAILURES\n"
    "    Connection errors, timeouts, stalls, 5xx, 408, 423, 429 and checksum mismatches\n"
    "    (460) are retried. 409 re-reads the offset and continues. 404, 410 or 403 for a\n"
    "    known upload starts that file again. Other 4xx answers (413 too large, 401, ...)\n"
    "    fail that file with the server's message; the other files go on.\n"
    "\n"
    "ENVIRONMENT\n"
    "    http_proxy, https_proxy, no_proxy, ALL_PROXY   as for curl\n"
    "    XDG_STATE_HOME, HOME                          where the journal lives\n"
    "\n"
    "EXIT STATUS\n"
    "    0 every file is on the server, 1 some failed, 2 usage error,\n"
    "    130 interrupted (run the command again to resume)\n"
    "\n"
    "EXAMPLES\n"
    "    tusc-upload -j 8 https://up.example.org/files/ ~/photos\n"
    "    tusc-upload --parts 4 -H 'Authorization: Bearer $T' https://h/files/ big.iso\n";

enum {
  OPT_CHUNK = 1000,
  OPT_PARTS,
  OPT_PARTS_MIN,
  OPT_STATE,
  OPT_RETRIES,
  OPT_RETRY_MAX,
  OPT_SPEED_LIMIT,
  OPT_SPEED_TIME,
  OPT_CONNECT_TIMEOUT,
  OPT_CHECKSUM,
  OPT_CHECKSUM_CHUNK,
  OPT_VERIFY,
  OPT_CACERT,
  OPT_LIMIT_RATE,
  OPT_JSON,
  OPT_DRY_RUN,
  OPT_PROGRESS,
  OPT_PROGRESS_INTERVAL,
};

static const struct option long_options[] = {
    {"jobs", required_argument, NULL, 'j'},
    {"chunk-size", required_argument, NULL, OPT_CHUNK},
    {"parts", required_argument, NULL, OPT_PARTS},
    {"parts-min-size", required_argument, NULL, OPT_PARTS_MIN},
    {"state", required_argument, NULL, OPT_STATE},
    {"retries", required_argument, NULL, OPT_RETRIES},
    {"retry-max-time", required_argument, NULL, OPT_RETRY_MAX},
    {"speed-limit", required_argument, NULL, OPT_SPEED_LIMIT},
    {"speed-time", required_argument, NULL, OPT_SPEED_TIME},
    {"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
    {"checksum", required_argument, NULL, OPT_CHECKSUM},
    {"checksum-chunk", required_argument, NULL, OPT_CHECKSUM_CHUNK},
    {"verify", no_argument, NULL, OPT_VERIFY},
    {"metadata", required_argument, NULL, 'm'},
    {"user", required_argument, NULL, 'u'},
    {"header", required_argument, NULL, 'H'},
    {"cacert", required_argument, NULL, OPT_CACERT},
    {"insecure", no_argument, NULL, 'k'},
    {"limit-rate", required_argument, NULL, OPT_LIMIT_RATE},
    {"json", no_argument, NULL, OPT_JSON},
    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
    {"progress", required_argument, NULL, OPT_PROGRESS},
    {"progress-interval", required_argument, NULL, OPT_PROGRESS_INTERVAL},
    {"quiet", no_argument, NULL, 'q'},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("tusc-upload: ", stderr);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputs("\nTry 'tusc-upload --help'.\n", stderr);
  return 2;
}

/* A byte count with an optional K/M/G/T suffix (powers of 1024, "KiB"/"KB"/"K"). */
static int parse_size(const char *s, uint64_t *out) {
  if (s == NULL || *s < '0' || *s > '9')
    return -EINVAL;
  errno = 0;
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0)
    return -EINVAL;
  unsigned shift = 0;
  switch (*end) {
  case 'k':
  case 'K':
    shift = 10;
    end++;
    break;
  case 'm':
  case 'M':
    shift = 20;
    end++;
    break;
  case 'g':
  case 'G':
    shift = 30;
    end++;
    break;
  case 't':
  case 'T':
    shift = 40;
    end++;
    break;
  default:
    break;
  }
  if (shift != 0 && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0))
    end += strlen(end);
  if (*end != '\0' || (shift != 0 && v > (UINT64_MAX >> shift)))
    return -EINVAL;
  *out = (uint64_t)v << shift;
  return 0;
}

static int parse_long(const char *s, long min, long max, long *out) {
  if (s == NULL || *s == '\0')
    return -EINVAL;
  errno = 0;
  char *end;
  long v = strtol(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < min || v > max)
    return -EINVAL;
  *out = v;
  return 0;
}

int main(int argc, char **argv) {
  up_config_t cfg = {
      .jobs = 4,
      .parts = 1,
      .parts_min_size = 64u << 20,
      .retries = 10,
      .retry_max_time = 600,
      .speed_limit = 1,
      .speed_time = 30,
      .connect_timeout = 30,
      .checksum = "auto",
      .checksum_chunk = 64u << 20,
      .progress = UP_PROGRESS_AUTO,
      .progress_interval_ms = 10000,
  };
  static char *metadata[MAX_LIST], *headers[MAX_LIST];
  long n;
  int c;
  while ((c = getopt_long(argc, argv, "j:m:u:H:kqvhV", long_options, NULL)) != -1) {
    switch (c) {
    case 'j':
      if (parse_long(optarg, 1, 1000, &n) < 0)
        return usage_error("-j wants a number of files from 1 to 1000, not '%s'", optarg);
      cfg.jobs = (int)n;
      break;
    case OPT_CHUNK:
      if (parse_size(optarg, &cfg.chunk_size) < 0 || cfg.chunk_size == 0)
        return usage_error("--chunk-size wants a size such as 8M, not '%s'", optarg);
      break;
    case OPT_PARTS:
      if (parse_long(optarg, 1, 64, &n) < 0)
        return usage_error("--parts wants a number from 1 to 64, not '%s'", optarg);
      cfg.parts = (int)n;
      break;
    case OPT_PARTS_MIN:
      if (parse_size(optarg, &cfg.parts_min_size) < 0)
        return usage_error("--parts-min-size wants a size such as 64M, not '%s'", optarg);
      break;
    case OPT_STATE:
      cfg.state_path = optarg;
      break;
    case OPT_RETRIES:
      if (parse_long(optarg, 0, 1000000, &n) < 0)
        return usage_error("--retries wants a number, not '%s'", optarg);
      cfg.retries = (int)n;
      break;
    case OPT_RETRY_MAX:
      if (parse_long(optarg, 0, 100000000, &n) < 0)
        return usage_error("--retry-max-time wants seconds, not '%s'", optarg);
      cfg.retry_max_time = (int)n;
      break;
    case OPT_SPEED_LIMIT:
      if (parse_long(optarg, 0, 1L << 40, &cfg.speed_limit) < 0)
        return usage_error("--speed-limit wants bytes per second, not '%s'", optarg);
      break;
    case OPT_SPEED_TIME:
      if (parse_long(optarg, 0, 86400, &cfg.speed_time) < 0)
        return usage_error("--speed-time wants seconds, not '%s'", optarg);
      break;
    case OPT_CONNECT_TIMEOUT:
      if (parse_long(optarg, 1, 86400, &cfg.connect_timeout) < 0)
        return usage_error("--connect-timeout wants seconds, not '%s'", optarg);
      break;
    case OPT_CHECKSUM: {
      static const char *const algs[] = {"auto", "none", "sha256", "sha512", "sha1", "md5"};
      bool ok = false;
      for (size_t i = 0; i < sizeof(algs) / sizeof(*algs); i++)
        ok |= strcasecmp(optarg, algs[i]) == 0;
      if (!ok)
        return usage_error("--checksum wants auto, none, sha256, sha512, sha1 or md5, not '%s'",
                           optarg);
      cfg.checksum = optarg;
      break;
    }
    case OPT_CHECKSUM_CHUNK:
      if (parse_size(optarg, &cfg.checksum_chunk) < 0 || cfg.checksum_chunk == 0)
        return usage_error("--checksum-chunk wants a size such as 64M, not '%s'", optarg);
      break;
    case OPT_VERIFY:
      cfg.verify = true;
      break;
    case 'm': {
      const char *eq = strchr(optarg, '=');
      if (eq == NULL || eq == optarg || strcspn(optarg, " ,") < (size_t)(eq - optarg))
        return usage_error("-m wants KEY=VALUE with a key without spaces or commas, not '%s'",
                           optarg);
      if (cfg.nmetadata == MAX_LIST)
        return usage_error("too many -m options%s", "");
      metadata[cfg.nmetadata++] = optarg;
      break;
    }
    case 'u':
      if (strchr(optarg, ':') == NULL)
        return usage_error("-u wants USER:PASSWORD%s", "");
      cfg.userpwd = optarg;
      break;
    case 'H': {
      const char *colon = strchr(optarg, ':');
      if (colon == NULL || colon == optarg || strpbrk(optarg, "\r\n") != NULL)
        return usage_error("-H wants 'Name: value', not '%s'", optarg);
      if (cfg.nheaders == MAX_LIST)
        return usage_error("too many -H options%s", "");
      headers[cfg.nheaders++] = optarg;
      break;
    }
    case OPT_CACERT:
      cfg.cacert = optarg;
      break;
    case 'k':
      cfg.insecure = true;
      break;
    case OPT_LIMIT_RATE:
      if (parse_size(optarg, &cfg.limit_rate) < 0)
        return usage_error("--limit-rate wants bytes per second such as 10M, not '%s'", optarg);
      break;
    case OPT_JSON:
      cfg.json = true;
      break;
    case OPT_DRY_RUN:
      cfg.dry_run = true;
      break;
    case OPT_PROGRESS:
      if (strcmp(optarg, "auto") == 0)
        cfg.progress = UP_PROGRESS_AUTO;
      else if (strcmp(optarg, "tty") == 0)
        cfg.progress = UP_PROGRESS_TTY;
      else if (strcmp(optarg, "plain") == 0)
        cfg.progress = UP_PROGRESS_PLAIN;
      else if (strcmp(optarg, "none") == 0)
        cfg.progress = UP_PROGRESS_NONE;
      else
        return usage_error("--progress wants auto, tty, plain or none, not '%s'", optarg);
      break;
    case OPT_PROGRESS_INTERVAL:
      if (parse_long(optarg, 1, 86400, &n) < 0)
        return usage_error("--progress-interval wants seconds, not '%s'", optarg);
      cfg.progress_interval_ms = (uint64_t)n * 1000;
      break;
    case 'q':
      cfg.progress = UP_PROGRESS_NONE;
      break;
    case 'v':
      cfg.verbose++;
      break;
    case 'h':
      fputs(help_text, stdout);
      return 0;
    case 'V':
      puts("tusc-upload " TUSC_VERSION);
      return 0;
    default:
      fputs("Try 'tusc-upload --help'.\n", stderr);
      return 2;
    }
  }
  if (argc - optind < 2)
    return usage_error("needs a URL and at least one PATH%s", "");
  cfg.url = argv[optind];
  if (strncasecmp(cfg.url, "http://", 7) != 0 && strncasecmp(cfg.url, "https://", 8) != 0)
    return usage_error("the URL must start with http:// or https://, not '%s'", cfg.url);
  cfg.paths = argv + optind + 1;
  cfg.npaths = argc - optind - 1;
  cfg.metadata = metadata;
  cfg.headers = headers;
  return up_engine_run(&cfg);
}

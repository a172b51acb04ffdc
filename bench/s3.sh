#!/usr/bin/env bash
# bench/s3.sh — tusc on S3 (a real single-node Ceph RGW) and the Redis lock; see
# README.md, "S3 and Redis". Called by `make -C bench s3` (which builds loadgen and
# redis_lock first); the figures come from s3_bench.py, this script checks what it needs.
#
# Knobs (environment): BIG_SIZE=1G BIG_CHUNK=256M S3_PART=16M S3_PARALLEL=4 REPEAT=2
# MANY_N=1000 MANY_SIZE=64K MANY_C=64 RSS_N=100 RSS_SIZE=12M RSS_PART=5M RSS_BUDGET=128M
# REDIS_SECONDS=3 ONLY="i ii iii iv" BENCH_DIR=/var/tmp
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
TUSC_BIN=${TUSC_BIN:-$HERE/../build/tusc}
LOADGEN=${LOADGEN:-$HERE/build/loadgen}
REDIS_LOCK=${REDIS_LOCK:-$HERE/build/redis_lock}
die() { echo "bench/s3.sh: $*" >&2; exit 1; }

[ -x "$TUSC_BIN" ] || die "no tusc binary at $TUSC_BIN (make build)"
[ -x "$LOADGEN" ] || die "no loadgen at $LOADGEN (make -C bench loadgen)"
for b in ceph-mon ceph-osd radosgw radosgw-admin redis-server; do
  command -v "$b" >/dev/null || die "$b is not installed (scripts/install-deps.sh test)"
done
/usr/bin/python3 -c 'import boto3' 2>/dev/null || die "python3-boto3 is not installed"
# memstore keeps what RGW stores in RAM (about 1.9 GB per GiB); a fresh RGW per figure
# frees it, but one figure needs about 2 x BIG_SIZE of free memory.
ulimit -n 8192 2>/dev/null || true

export TUSC_BIN LOADGEN REDIS_LOCK
exec /usr/bin/python3 "$HERE/s3_bench.py"

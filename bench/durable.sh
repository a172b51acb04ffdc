#!/usr/bin/env bash
# Durable small uploads, several tusc binaries side by side (issue 14, group commit):
#   bench/durable.sh ROUNDS BIN...
# Per round and binary: a fresh server and upload directory, a `sync`, then
# `loadgen many -n $N -size 64K -c 64`, with the default fsync and (unless FSYNC_ONLY=1)
# with -fsync=never; the binaries' order rotates per round. Prints one line per run
# (uploads/s, server CPU s = utime + stime) and, at the end, per binary and mode the
# median and the median over rounds of the ratio to the first binary.
#
#   DIR=/var/tmp   where the upload directories go: a real disk, never tmpfs
#   KEEP=1         do not delete a run's uploads until the end. Needed on ext4 without a
#                  journal (this machine's root): its inode allocator skips inodes deleted
#                  in the last minutes (recently_deleted), which makes the run after a
#                  deletion CPU-bound. Mind the space: 192 MB per run.
#   FRESH_FS=ext4  each run on a filesystem of its own, new for the run: an image file
#                  under $DIR (so on the real disk) made with mkfs.ext4 (FRESH_FS=nojournal:
#                  without a journal, like this machine's root), loop-mounted, removed
#                  after the run (needs root). Nothing recently deleted, and no other
#                  program's dirty pages in a syncfs: what docs/deploy.md recommends.
#   MIXED=1        a 2 GiB upload (64 MiB chunks) runs beside the small ones
#   N=3000 LOADGEN=bench/build/loadgen
# Every process it starts is stopped by PID; its directories are removed on exit.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
LG=${LOADGEN:-$HERE/build/loadgen}
N=${N:-3000}
DIR=${DIR:-/var/tmp}
R=${1:?rounds}
shift
BINS=("$@")
OUT=$(mktemp)
MADE=()
MOUNTS=()
cleanup() {
  for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null; done
  rm -rf "${MADE[@]}" "$OUT"
}
trap cleanup EXIT
run() { # round bin mode
  local r=$1 bin=$2 mode=$3 d port bpid= pid extra=
  d=$(mktemp -d "$DIR/tusc-durable.XXXXXX")
  MADE+=("$d")
  if [ -n "${FRESH_FS:-}" ]; then
    local opts=()
    [ "$FRESH_FS" = nojournal ] && opts=(-O ^has_journal)
    truncate -s 4G "$d.img" && MADE+=("$d.img")
    mkfs.ext4 -q -F "${opts[@]}" "$d.img" >/dev/null && mount -o loop "$d.img" "$d" || exit 1
    MOUNTS+=("$d")
  fi
  port=$((12000 + RANDOM % 8000))
  sync
  [ "$mode" = never ] && extra=-fsync=never
  "$bin" -host 127.0.0.1 -port "$port" -upload-dir "$d" $extra >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null -X OPTIONS "http://127.0.0.1:$port/files/" && break; sleep 0.05; done
  if [ -n "${MIXED:-}" ]; then "$LG" big -port "$port" -size 2G -chunk 64M >/dev/null 2>&1 & bpid=$!; sleep 0.5; fi
  local res cpu
  res=$("$LG" many -port "$port" -n "$N" -size 64K -c 64 2>&1 | tail -1)
  if [ -n "$bpid" ]; then kill "$bpid" 2>/dev/null; wait "$bpid" 2>/dev/null; fi
  cpu=$(awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$pid/stat" 2>/dev/null)
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  echo "r=$r $(basename "$bin") $mode cpu_s=${cpu:-?} $res" | tee -a "$OUT"
  if [ -n "${FRESH_FS:-}" ]; then
    umount "$d" && rm -f "$d.img"
  elif [ -z "${KEEP:-}" ]; then
    rm -rf "$d"
  fi
}
n=${#BINS[@]}
for r in $(seq "$R"); do
  for k in $(seq 0 $((n - 1))); do
    b=${BINS[$(((k + r) % n))]}
    run "$r" "$b" fsync
    [ -n "${FSYNC_ONLY:-}" ] || run "$r" "$b" never
  done
done
python3 - "$OUT" "$N" "$(basename "${BINS[0]}")" <<'PY'
import collections, re, statistics as st, sys
rates, cpu, rounds = collections.defaultdict(list), collections.defaultdict(list), collections.defaultdict(dict)
for line in open(sys.argv[1]):
    m = re.match(r'r=(\d+) (\S+) (\S+) cpu_s=([\d.]+) .*per_sec=([\d.]+) errors=0', line)
    if m:
        r, b, mode, c, ps = m.groups()
        rates[b, mode].append(float(ps)); cpu[b, mode].append(float(c) / int(sys.argv[2]) * 1e6)
        rounds[r, mode][b] = float(ps)
base = sys.argv[3]
for (b, mode), v in sorted(rates.items()):
    ratios = [x[b] / x[base] for (r, md), x in rounds.items() if md == mode and b in x and base in x]
    print(f"{b:24} {mode:6} median {st.median(v):7.0f}/s  min {min(v):6.0f}  max {max(v):6.0f}  "
          f"cpu {st.median(cpu[b, mode]):4.0f} us/upload  vs {base}: {st.median(ratios):.2f}  (n={len(v)})")
PY

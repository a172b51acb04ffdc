#!/usr/bin/env bash
# TLS upload throughput as a ratio of plain HTTP: the same tusc build, the same file,
# the same client (curl), once over http:// and once over https:// (-tls-mode tls12,
# ECDSA P-256 certificate; the suite tusc negotiates with curl is printed).
#
#   bench/tls.sh                       # uses build/tusc
#   TUSC_BIN=... SIZE_MB=1024 REPEAT=3 PAR=4 bench/tls.sh
#
# Each round: PAR uploads at once (SIZE_MB/PAR MiB each, so one curl's encryption is
# not the ceiling): POST with Upload-Length, then one PATCH streaming the whole file
# (curl -T, no Expect: 100-continue); time from the first curl's start to the last 204. Rounds
# alternate plain/TLS; each side keeps its best. tusc runs with -fsync=never so the
# figure is about the socket-to-page-cache path, where TLS costs show most. Client and
# server share this machine's cores, so the client's encryption is paid too, and other
# load on the machine moves the MB/s figure; the server's own CPU time per GiB (utime +
# stime from /proc/<pid>/stat around each PATCH) is the steadier measure of what TLS
# costs tusc.
set -euo pipefail
cd "$(dirname "$0")/.."
TUSC_BIN=${TUSC_BIN:-$PWD/build/tusc}
SIZE_MB=${SIZE_MB:-1024}
REPEAT=${REPEAT:-3}
PAR=${PAR:-4}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
command -v curl >/dev/null || { echo "tls.sh: needs curl" >&2; exit 1; }
command -v openssl >/dev/null || { echo "tls.sh: needs openssl" >&2; exit 1; }
[ -x "$TUSC_BIN" ] || { echo "tls.sh: no tusc at $TUSC_BIN (make build)" >&2; exit 1; }

work=$(mktemp -d "$BENCH_DIR/tusc-tls-bench.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/key.pem" \
  -out "$work/cert.pem" -days 2 -subj /CN=localhost \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" 2>/dev/null
size=$((SIZE_MB * 1024 * 1024 / PAR))
head -c "$size" /dev/urandom >"$work/data.bin"

start_tusc() { # name extra-flags... (not in a subshell: pids must stay in this shell)
  local name=$1
  shift
  mkdir -p "$work/$name"
  "$TUSC_BIN" -host 127.0.0.1 -port 0 -port-file "$work/$name.port" -upload-dir "$work/$name" \
    -fsync=never -workers 2 "$@" >/dev/null 2>"$work/$name.log" &
  pids+=($!)
  for _ in $(seq 200); do [ -s "$work/$name.port" ] && return 0; sleep 0.05; done
  echo "tls.sh: tusc ($name) did not start: $(cat "$work/$name.log")" >&2
  exit 1
}

start_tusc plain
plain_pid=${pids[0]}
plain_port=$(cat "$work/plain.port")
start_tusc tls -tls-certificate "$work/cert.pem" -tls-key "$work/key.pem"
tls_pid=${pids[1]}
tls_port=$(cat "$work/tls.port")
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

one_patch() { # scheme port -> http code of the PATCH
  local scheme=$1 port=$2 ca=() loc
  [ "$scheme" = https ] && ca=(--cacert "$work/cert.pem")
  loc=$(curl -sS "${ca[@]}" -X POST -H "Tus-Resumable: 1.0.0" -H "Upload-Length: $size" \
    -o /dev/null -w '%header{location}' "$scheme://127.0.0.1:$port/files/")
  curl -sS "${ca[@]}" -X PATCH -T "$work/data.bin" -H "Expect:" -H "Tus-Resumable: 1.0.0" \
    -H "Upload-Offset: 0" -H "Content-Type: application/offset+octet-stream" \
    -o /dev/null -w '%{http_code}' "$loc"
}

one_upload() { # scheme port pid -> "seconds server-cpu-seconds"
  local scheme=$1 port=$2 pid=$3 c0 c1 t0 t1 i cl=()
  c0=$(cpu_ticks "$pid")
  t0=$(date +%s.%N)
  for i in $(seq "$PAR"); do
    one_patch "$scheme" "$port" >"$work/code.$i" &
    cl+=($!)
  done
  wait "${cl[@]}" || true
  t1=$(date +%s.%N)
  c1=$(cpu_ticks "$pid")
  for i in $(seq "$PAR"); do
    [ "$(cat "$work/code.$i")" = 204 ] || { echo "tls.sh: PATCH over $scheme answered $(cat "$work/code.$i")" >&2; exit 1; }
  done
  rm -rf "${work:?}/$([ "$scheme" = https ] && echo tls || echo plain)"/*
  echo "$t0 $t1 $c0 $c1 $hz" | awk '{printf "%.3f %.3f", $2 - $1, ($4 - $3) / $5}'
}

suite=$(openssl s_client -connect "127.0.0.1:$tls_port" -CAfile "$work/cert.pem" </dev/null 2>/dev/null |
  awk '/^New, /{print $NF; exit}')
if [ -d /sys/module/tls ]; then ktls="kernel TLS module loaded (tusc's memory-BIO transport does not use kTLS yet)"
else ktls="no kernel TLS module (/sys/module/tls absent): kTLS not available, user-space TLS only"; fi
echo "negotiated with openssl s_client defaults: $suite; $ktls" >&2

best_plain=999999
best_tls=999999
cpu_plain=999999
cpu_tls=999999
min() { awk -v a="$1" -v b="$2" 'BEGIN{print (b < a) ? b : a}'; }
for r in $(seq "$REPEAT"); do
  sync
  read -r p pc <<<"$(one_upload http "$plain_port" "$plain_pid")"
  sync
  read -r t tc <<<"$(one_upload https "$tls_port" "$tls_pid")"
  echo "round $r: plain ${p}s (server cpu ${pc}s), tls ${t}s (server cpu ${tc}s)" >&2
  best_plain=$(min "$best_plain" "$p")
  best_tls=$(min "$best_tls" "$t")
  cpu_plain=$(min "$cpu_plain" "$pc")
  cpu_tls=$(min "$cpu_tls" "$tc")
done
awk -v mb="$SIZE_MB" -v par="$PAR" -v p="$best_plain" -v t="$best_tls" -v cp="$cpu_plain" -v ct="$cpu_tls" 'BEGIN {
  mp = mb * 1.048576 / p; mt = mb * 1.048576 / t
  gib = mb / 1024
  printf "| %d MiB as %d parallel PATCHes | plain HTTP | HTTPS (TLS 1.3) | TLS / plain |\n", mb, par
  printf "|---|---|---|---|\n"
  printf "| MB/s (best of rounds) | %.0f | %.0f | %.2f |\n", mp, mt, mt / mp
  printf "| tusc CPU seconds per GiB (best) | %.2f | %.2f | %.2f |\n", cp / gib, ct / gib, (cp > 0 ? ct / cp : 0)
}'

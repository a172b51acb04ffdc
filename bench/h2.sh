#!/usr/bin/env bash
# HTTP/2 against HTTP/1.1 over TLS, one tusc, one client (h2load from nghttp2-client)
# for both protocols:
#
#   bench/h2.sh                         # or: make -C bench h2; uses build/tusc
#   TUSC_BIN=... REPEAT=3 BIG_MB=1024 MANY_N=3000 MANY_SIZE=65536 STREAMS=100 H2_CONNS=4 bench/h2.sh
#
# Loads, each upload one creation-with-upload POST (Upload-Length + the whole body):
#   big   1 upload of BIG_MB MiB on one connection;
#   many  MANY_N uploads of MANY_SIZE bytes, STREAMS at a time: h2 multiplexes them on
#         H2_CONNS connections (STREAMS/H2_CONNS streams each), HTTP/1.1 cannot, so it
#         opens STREAMS connections (each a TLS handshake, counted in the time).
# Rounds alternate the order (h1 first, then h2 first, ...). Each run starts with an empty
# upload directory; tusc runs with -fsync=never and the directory is on tmpfs
# (BENCH_DIR=/dev/shm) so the figures are about the protocol path, not the disk.
# Per run: uploads/s and MB/s (MB = 10^6 bytes, from h2load's own "finished in" time),
# and the server's CPU seconds (utime + stime from /proc/<pid>/stat before and after).
# The table shows the best round's uploads/s and MB/s and the median round's CPU seconds,
# then the h2/HTTP/1.1 ratios, then every round.
# Every run must end with every request 2xx and every upload whole on disk.
set -euo pipefail
cd "$(dirname "$0")/.."
TUSC_BIN=${TUSC_BIN:-$PWD/build/tusc}
REPEAT=${REPEAT:-3}
BIG_MB=${BIG_MB:-1024}
MANY_N=${MANY_N:-3000}
MANY_SIZE=${MANY_SIZE:-65536}
STREAMS=${STREAMS:-100}
H2_CONNS=${H2_CONNS:-4}
BENCH_DIR=${BENCH_DIR:-/dev/shm}
command -v h2load >/dev/null || { echo "h2.sh: needs h2load (apt-get install nghttp2-client)" >&2; exit 1; }
command -v openssl >/dev/null || { echo "h2.sh: needs openssl" >&2; exit 1; }
[ -x "$TUSC_BIN" ] || { echo "h2.sh: no tusc at $TUSC_BIN (make build)" >&2; exit 1; }
[ $((STREAMS % H2_CONNS)) -eq 0 ] || { echo "h2.sh: STREAMS must be a multiple of H2_CONNS" >&2; exit 1; }

work=$(mktemp -d "$BENCH_DIR/tusc-h2-bench.XXXXXX")
tusc_pid=""
cleanup() {
  if [ -n "$tusc_pid" ]; then kill "$tusc_pid" 2>/dev/null || true; wait "$tusc_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/key.pem" \
  -out "$work/cert.pem" -days 2 -subj /CN=localhost \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" 2>/dev/null
big_size=$((BIG_MB * 1024 * 1024))
head -c "$big_size" /dev/urandom >"$work/big.bin"
head -c "$MANY_SIZE" /dev/urandom >"$work/many.bin"
up="$work/uploads"
mkdir -p "$up"

"$TUSC_BIN" -host 127.0.0.1 -port 0 -port-file "$work/port" -upload-dir "$up" -fsync=never \
  -workers 2 -max-size "$big_size" -tls-certificate "$work/cert.pem" -tls-key "$work/key.pem" \
  >/dev/null 2>"$work/tusc.log" &
tusc_pid=$!
for _ in $(seq 200); do [ -s "$work/port" ] && break; sleep 0.05; done
[ -s "$work/port" ] || { echo "h2.sh: tusc did not start: $(cat "$work/tusc.log")" >&2; exit 1; }
url="https://127.0.0.1:$(cat "$work/port")/files/"
tick=$(getconf CLK_TCK)

cpu_ticks() { # utime + stime of tusc; fields counted after the ")" that ends comm
  local s
  s=$(cat "/proc/$tusc_pid/stat")
  s=${s##*) }
  awk '{print $12 + $13}' <<<"$s"
}

seconds() { # h2load's duration ("1.23s", "116.83ms", "950us") in seconds
  awk -v d="$1" 'BEGIN {
    if (d ~ /ms$/) { sub(/ms$/, "", d); print d / 1000 }
    else if (d ~ /us$/) { sub(/us$/, "", d); print d / 1000000 }
    else { sub(/s$/, "", d); print d + 0 } }'
}

results="$work/results.tsv" # load proto round uploads/s MB/s cpu_s
: >"$results"
tls_line=""

run() { # load proto round
  local load=$1 proto=$2 round=$3 n size data flags out before after t ok whole
  if [ "$load" = big ]; then n=1; size=$big_size; data="$work/big.bin"
  else n=$MANY_N; size=$MANY_SIZE; data="$work/many.bin"; fi
  if [ "$proto" = h2 ]; then
    if [ "$load" = big ]; then flags=(-c 1 -m 1); else flags=(-c "$H2_CONNS" -m $((STREAMS / H2_CONNS))); fi
  else
    if [ "$load" = big ]; then flags=(--h1 -c 1); else flags=(--h1 -c "$STREAMS"); fi
  fi
  rm -rf "${up:?}"/*
  out="$work/h2load.out"
  before=$(cpu_ticks)
  h2load -t 1 -n "$n" "${flags[@]}" -d "$data" -H "Tus-Resumable: 1.0.0" \
    -H "Upload-Length: $size" -H "Content-Type: application/offset+octet-stream" "$url" >"$out" 2>&1 ||
    { echo "h2.sh: h2load failed ($load $proto):" >&2; cat "$out" >&2; exit 1; }
  after=$(cpu_ticks)
  ok=$(sed -n 's/^status codes: \([0-9]*\) 2xx.*/\1/p' "$out")
  [ "$ok" = "$n" ] || { echo "h2.sh: $load $proto: $ok of $n requests 2xx:" >&2; cat "$out" >&2; exit 1; }
  grep -q "^Application protocol: ${proto/h1/http/1.1}\$" "$out" ||
    { echo "h2.sh: $load $proto: h2load did not negotiate $proto:" >&2; cat "$out" >&2; exit 1; }
  # Upload data files are named by id, without the .info suffix.
  whole=$(find "$up" -type f ! -name '*.info' -size "${size}c" | wc -l)
  [ "$whole" = "$n" ] || { echo "h2.sh: $load $proto: $whole of $n uploads whole on disk" >&2; exit 1; }
  [ -n "$tls_line" ] || tls_line=$(grep -m1 '^Cipher:' "$out" || true)
  t=$(seconds "$(sed -n 's/^finished in \([^,]*\),.*/\1/p' "$out")")
  awk -v l="$load" -v p="$proto" -v r="$round" -v n="$n" -v s="$size" -v t="$t" \
    -v c=$((after - before)) -v k="$tick" \
    'BEGIN { printf "%s\t%s\t%d\t%.2f\t%.1f\t%.2f\n", l, p, r, n / t, n * s / 1e6 / t, c / k }' \
    | tee -a "$results" >&2
}

echo "tusc $TUSC_BIN, tmpfs upload dir $up, $(nproc) cores; rounds: load proto round uploads/s MB/s cpu_s" >&2
for round in $(seq "$REPEAT"); do
  for load in big many; do
    if [ $((round % 2)) -eq 1 ]; then order="h1 h2"; else order="h2 h1"; fi
    for proto in $order; do run "$load" "$proto" "$round"; done
  done
done

# Throughput: the best round (other load on the machine only ever slows a run down);
# server CPU seconds: the median round (steadier, and not a race).
best() { sort -g | tail -1; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() {
  local pick=best
  [ "$3" = 6 ] && pick=median
  awk -F'\t' -v l="$1" -v p="$2" -v c="$3" '$1 == l && $2 == p { print $c }' "$results" | $pick
}

echo
echo "h2load over TLS (${tls_line:-cipher not reported}); $REPEAT alternating rounds:" \
  "uploads/s and MB/s of the best round, server CPU s of the median round"
echo
echo "| load | protocol | uploads/s | MB/s | server CPU s | CPU s per GB |"
echo "|---|---|---|---|---|---|"
for load in big many; do
  if [ "$load" = big ]; then what="1 × $BIG_MB MiB"; n=1; size=$big_size
  else what="$MANY_N × $MANY_SIZE B, $STREAMS at a time"; n=$MANY_N; size=$MANY_SIZE; fi
  for proto in h1 h2; do
    if [ "$proto" = h2 ]; then how="h2, $H2_CONNS conns × $((STREAMS / H2_CONNS)) streams"
    elif [ "$load" = big ]; then how="HTTP/1.1, 1 conn"; else how="HTTP/1.1, $STREAMS conns"; fi
    [ "$load" = big ] && [ "$proto" = h2 ] && how="h2, 1 conn × 1 stream"
    cpu=$(col "$load" "$proto" 6)
    echo "| $what | $how | $(col "$load" "$proto" 4) | $(col "$load" "$proto" 5) | $cpu |" \
      "$(awk -v c="$cpu" -v b=$((n * size)) 'BEGIN { printf "%.2f", c / (b / 1e9) }') |"
  done
done
echo
for load in big many; do
  awk -v l="$load" -v u2="$(col "$load" h2 4)" -v u1="$(col "$load" h1 4)" \
    -v c2="$(col "$load" h2 6)" -v c1="$(col "$load" h1 6)" \
    'BEGIN { printf "%s: h2/h1 uploads/s %.2f, h2/h1 server CPU s %.2f\n", l, u2 / u1, (c1 > 0 ? c2 / c1 : 0) }'
done
echo
echo "All rounds (load proto round uploads/s MB/s cpu_s):"
cat "$results"

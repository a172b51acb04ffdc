#!/usr/bin/env bash
# TLS upload cost as a ratio of plain HTTP: the same tusc build, the same file, the same
# client (curl), once over http:// and once over https:// (-tls-mode tls12, ECDSA P-256
# certificate; the suite tusc negotiates is printed), both HTTP/1.1 so that the ratio is
# about TLS alone. (curl offers h2 by ALPN and tusc accepts it over TLS; H2=1, the
# default, adds an HTTPS h2 column beside it.)
#
#   bench/tls.sh                       # uses build/tusc
#   TUSC_BIN=... SIZE_MB=1024 REPEAT=5 PAR=4 H2=1 bench/tls.sh
#   PERF=/tmp/tls.data bench/tls.sh    # also profiles one more round of each side
#   TUSD_BIN=/path/to/tusd bench/tls.sh  # adds tusd (default flags, -tls-mode tls12) plain
#                                        # and over TLS to the same rounds (HTTP/1.1)
#
# Each round: PAR uploads at once (SIZE_MB/PAR MiB each, so one curl's encryption is
# not the ceiling): POST with Upload-Length, then one PATCH streaming the whole file
# (curl -T, no Expect: 100-continue); time from the first curl's start to the last 204.
# Rounds alternate plain / TLS (/ h2); the table shows medians. tusc runs with
# -fsync=never so the figure is about the socket-to-page-cache path, where TLS costs
# show most. Client and server share this machine's cores, so other load moves MB/s;
# the server's own CPU time per GiB (utime + stime from /proc/<pid>/stat around each
# round) is the steadier measure of what TLS costs tusc.
#
# The floor: TLS must do everything plain HTTP does plus decrypt every byte, so the best
# TLS / plain CPU ratio any server can reach on this CPU is (plain + cipher) / plain,
# with the cipher's own cost per GiB from `openssl speed -decrypt -evp <cipher> -bytes
# 16384` (one record's worth per call, single core). The script prints that bound.
set -euo pipefail
cd "$(dirname "$0")/.."
TUSC_BIN=${TUSC_BIN:-$PWD/build/tusc}
SIZE_MB=${SIZE_MB:-1024}
REPEAT=${REPEAT:-5}
PAR=${PAR:-4}
H2=${H2:-1}
TUSD_BIN=${TUSD_BIN:-}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
command -v curl >/dev/null || { echo "tls.sh: needs curl" >&2; exit 1; }
command -v openssl >/dev/null || { echo "tls.sh: needs openssl" >&2; exit 1; }
[ -x "$TUSC_BIN" ] || { echo "tls.sh: no tusc at $TUSC_BIN (make build)" >&2; exit 1; }
[ -z "$TUSD_BIN" ] || [ -x "$TUSD_BIN" ] || { echo "tls.sh: no tusd at TUSD_BIN=$TUSD_BIN" >&2; exit 1; }

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

# tusd (optional): its port is read from the socket table, since tusd 1.x prints the
# port it was given (0), not the one it got
start_tusd() { # name extra-flags... -> sets TUSD_PORT; pid appended to pids
  local name=$1 port=
  shift
  mkdir -p "$work/$name"
  "$TUSD_BIN" -host 127.0.0.1 -port 0 -upload-dir "$work/$name" "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 200); do
    port=$(ss -Hltnp 2>/dev/null | sed -n "s/^.*:\([0-9][0-9]*\) .*pid=$!,.*$/\1/p" | head -n 1)
    [ -n "$port" ] && { TUSD_PORT=$port; return 0; }
    sleep 0.05
  done
  echo "tls.sh: tusd ($name) did not start: $(cat "$work/$name.log")" >&2
  exit 1
}
if [ -n "$TUSD_BIN" ]; then
  command -v ss >/dev/null || { echo "tls.sh: TUSD_BIN needs ss (iproute2)" >&2; exit 1; }
  start_tusd tusdplain
  tusdplain_pid=${pids[-1]} tusdplain_port=$TUSD_PORT
  start_tusd tusdtls -tls-certificate "$work/cert.pem" -tls-key "$work/key.pem"
  tusdtls_pid=${pids[-1]} tusdtls_port=$TUSD_PORT
fi
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

one_patch() { # scheme port http-version-flag -> "code version" of the PATCH
  local scheme=$1 port=$2 ver=$3 ca=() loc
  [ "$scheme" = https ] && ca=(--cacert "$work/cert.pem")
  loc=$(curl -sS "${ca[@]}" "$ver" -X POST -H "Tus-Resumable: 1.0.0" -H "Upload-Length: $size" \
    -o /dev/null -w '%header{location}' "$scheme://127.0.0.1:$port/files/")
  curl -sS "${ca[@]}" "$ver" -X PATCH -T "$work/data.bin" -H "Expect:" -H "Tus-Resumable: 1.0.0" \
    -H "Upload-Offset: 0" -H "Content-Type: application/offset+octet-stream" \
    -o /dev/null -w '%{http_code} %{http_version}' "$loc"
}

one_upload() { # scheme port pid http-version-flag [upload-dir] -> "seconds server-cpu-seconds"
  local scheme=$1 port=$2 pid=$3 ver=$4 dir=${5:-} c0 c1 t0 t1 i cl=() want=1.1
  [ -n "$dir" ] || dir=$([ "$scheme" = https ] && echo tls || echo plain)
  [ "$ver" = --http2 ] && want=2
  c0=$(cpu_ticks "$pid")
  t0=$(date +%s.%N)
  for i in $(seq "$PAR"); do
    one_patch "$scheme" "$port" "$ver" >"$work/code.$i" &
    cl+=($!)
  done
  wait "${cl[@]}" || true
  t1=$(date +%s.%N)
  c1=$(cpu_ticks "$pid")
  for i in $(seq "$PAR"); do
    [ "$(cat "$work/code.$i")" = "204 $want" ] ||
      { echo "tls.sh: PATCH over $scheme $ver answered $(cat "$work/code.$i")" >&2; exit 1; }
  done
  rm -rf "${work:?}/$dir"/*
  echo "$t0 $t1 $c0 $c1 $hz" | awk '{printf "%.3f %.3f", $2 - $1, ($4 - $3) / $5}'
}

suite=$(openssl s_client -connect "127.0.0.1:$tls_port" -CAfile "$work/cert.pem" </dev/null 2>/dev/null |
  awk '/^New, /{print $NF; exit}')
# tusc says at startup whether it hands connections to kernel TLS (-tls-ktls auto): it
# does when the kernel has the tls module, else TLS stays in user space.
ktls=$(sed -n 's/.*msg="\(kTLS: [^"]*\)".*/\1/p' "$work/tls.log" | head -n 1)
[ -n "$ktls" ] || ktls="kTLS: tusc logged nothing about it"
ktls="$ktls (tcp_available_ulp: '$(cat /proc/sys/net/ipv4/tcp_available_ulp 2>/dev/null)')"
echo "negotiated with openssl s_client and curl defaults: $suite; $ktls" >&2

# The cipher's own decryption cost per GiB on this CPU (one core, 16 KiB records).
cipher_cost() { # evp-name -> seconds per GiB
  openssl speed -decrypt -evp "$1" -bytes 16384 -seconds 1 2>/dev/null |
    awk -v c="$1" 'tolower($1) == tolower(c) { sub(/k$/, "", $2); printf "%.3f %.2f", 1073741824 / ($2 * 1000), $2 / 1e6 }'
}
case $suite in
*CHACHA20*) suite_cipher=chacha20-poly1305 ;;
*AES_256_GCM* | *AES256-GCM*) suite_cipher=aes-256-gcm ;;
*) suite_cipher=aes-128-gcm ;;
esac
read -r cipher_s cipher_gbs <<<"$(cipher_cost "$suite_cipher")"
read -r chacha_s chacha_gbs <<<"$(cipher_cost chacha20-poly1305)"
echo "cipher alone (openssl speed -decrypt, 16 KiB): $suite_cipher ${cipher_gbs} GB/s = ${cipher_s} s/GiB; chacha20-poly1305 ${chacha_gbs} GB/s = ${chacha_s} s/GiB" >&2

plains=() tlss=() h2s=() cplains=() ctlss=() ch2s=() ratios=()
dplains=() dtlss=() dcplains=() dctlss=() dratios=()
for r in $(seq "$REPEAT"); do
  sync
  read -r p pc <<<"$(one_upload http "$plain_port" "$plain_pid" --http1.1)"
  sync
  read -r t tc <<<"$(one_upload https "$tls_port" "$tls_pid" --http1.1)"
  line="round $r: plain ${p}s (server cpu ${pc}s), tls ${t}s (server cpu ${tc}s)"
  plains+=("$p") tlss+=("$t") cplains+=("$pc") ctlss+=("$tc")
  ratios+=("$(awk -v a="$pc" -v b="$tc" 'BEGIN{printf "%.3f", (a > 0 ? b / a : 0)}')")
  if [ "$H2" = 1 ]; then
    sync
    read -r h hc <<<"$(one_upload https "$tls_port" "$tls_pid" --http2)"
    line="$line, tls h2 ${h}s (server cpu ${hc}s)"
    h2s+=("$h") ch2s+=("$hc")
  fi
  if [ -n "$TUSD_BIN" ]; then
    sync
    read -r dp dpc <<<"$(one_upload http "$tusdplain_port" "$tusdplain_pid" --http1.1 tusdplain)"
    sync
    read -r dt dtc <<<"$(one_upload https "$tusdtls_port" "$tusdtls_pid" --http1.1 tusdtls)"
    line="$line; tusd plain ${dp}s (cpu ${dpc}s), tusd tls ${dt}s (cpu ${dtc}s)"
    dplains+=("$dp") dtlss+=("$dt") dcplains+=("$dpc") dctlss+=("$dtc")
    dratios+=("$(awk -v a="$dpc" -v b="$dtc" 'BEGIN{printf "%.3f", (a > 0 ? b / a : 0)}')")
  fi
  echo "$line" >&2
done
if [ -n "${PERF:-}" ]; then # one more round of each side under perf: PERF.plain, PERF.tls
  command -v perf >/dev/null || { echo "tls.sh: PERF set but no perf" >&2; exit 1; }
  for side in plain tls; do
    if [ $side = plain ]; then pp=$plain_pid sch=http port=$plain_port; else pp=$tls_pid sch=https port=$tls_port; fi
    perf record -q -e cpu-clock -g -p "$pp" -o "$PERF.$side" 2>/dev/null &
    perf_pid=$!
    sleep 1 # perf attaches asynchronously; a bench, not a test
    one_upload "$sch" "$port" "$pp" --http1.1 >/dev/null
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
  done
  echo "perf: $PERF.plain and $PERF.tls (perf report -i FILE --no-children --sort dso,sym)" >&2
fi
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
awk -v mb="$SIZE_MB" -v par="$PAR" -v p="$(median "${plains[@]}")" -v t="$(median "${tlss[@]}")" \
  -v cp="$(median "${cplains[@]}")" -v ct="$(median "${ctlss[@]}")" -v ratio="$(median "${ratios[@]}")" \
  -v h2="$H2" -v h="$([ "$H2" = 1 ] && median "${h2s[@]}" || echo 0)" \
  -v ch="$([ "$H2" = 1 ] && median "${ch2s[@]}" || echo 0)" \
  -v cs="$cipher_s" -v cg="$cipher_gbs" -v cname="$suite_cipher" -v rounds="$REPEAT" 'BEGIN {
  gib = mb / 1024
  mp = mb * 1.048576 / p; mt = mb * 1.048576 / t
  hcol = h2 == 1 ? " HTTPS h2 |" : ""; hsep = h2 == 1 ? "---|" : ""
  printf "| %d MiB as %d parallel PATCHes, median of %d | plain HTTP/1.1 | HTTPS HTTP/1.1 | TLS / plain |%s\n", mb, par, rounds, hcol
  printf "|---|---|---|---|%s\n", hsep
  printf "| MB/s | %.0f | %.0f | %.2f |", mp, mt, mt / mp
  if (h2 == 1) printf " %.0f |", mb * 1.048576 / h
  printf "\n| tusc CPU seconds per GiB | %.3f | %.3f | %.2f (median of per-round ratios) |", cp / gib, ct / gib, ratio
  if (h2 == 1) printf " %.3f |", ch / gib
  printf "\n"
  pg = cp / gib
  floor = (pg + cs) / pg
  printf "| floor: plain + %s alone (%.3f s/GiB) | %.3f | %.3f | %.2f |%s\n", cname, cs, pg, pg + cs, floor, h2 == 1 ? " |" : ""
  printf "\nTLS / plain CPU: measured %.2f, best possible on this CPU %.2f (plain %.3f s/GiB + %s %.3f s/GiB);\n", ratio, floor, pg, cname, cs
  printf "tusc above that floor: %.3f s/GiB (OpenSSL record handling, its two copies, scheduling).\n", ct / gib - pg - cs
  need = 0.3 * pg
  if (cs > need)
    printf "1.3x is out of reach here: it would need the cipher at <= 0.3 x %.3f = %.3f s/GiB (%.1f GB/s); this CPU decrypts %s at %.2f GB/s.\n", pg, need, 1.073741824 / need, cname, cg
}'
if [ -n "$TUSD_BIN" ]; then
  dsuite=$(openssl s_client -connect "127.0.0.1:$tusdtls_port" -CAfile "$work/cert.pem" </dev/null 2>/dev/null |
    awk '/^New, /{print $NF; exit}')
  awk -v mb="$SIZE_MB" -v par="$PAR" -v rounds="$REPEAT" -v ver="$("$TUSD_BIN" -version 2>/dev/null | head -n 1)" \
    -v suite="$dsuite" -v p="$(median "${dplains[@]}")" -v t="$(median "${dtlss[@]}")" \
    -v cp="$(median "${dcplains[@]}")" -v ct="$(median "${dctlss[@]}")" -v ratio="$(median "${dratios[@]}")" \
    -v tp="$(median "${cplains[@]}")" -v tt="$(median "${ctlss[@]}")" -v tratio="$(median "${ratios[@]}")" 'BEGIN {
    gib = mb / 1024
    printf "\ntusd (%s, default flags, -tls-mode tls12, negotiated %s; HTTP/1.1 both), same rounds:\n\n", ver, suite
    printf "| %d MiB as %d parallel PATCHes, median of %d | plain HTTP/1.1 | HTTPS HTTP/1.1 | TLS / plain (median of per-round ratios) |\n", mb, par, rounds
    printf "|---|---|---|---|\n"
    printf "| tusd MB/s | %.0f | %.0f | %.2f |\n", mb * 1.048576 / p, mb * 1.048576 / t, p / t
    printf "| tusd CPU seconds per GiB | %.3f | %.3f | %.2f |\n", cp / gib, ct / gib, ratio
    printf "| tusc CPU seconds per GiB (above) | %.3f | %.3f | %.2f |\n", tp / gib, tt / gib, tratio
    printf "| tusc / tusd CPU per GiB | %.2f | %.2f | |\n", tp / cp, tt / ct
  }'
fi

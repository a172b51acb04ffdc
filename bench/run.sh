#!/usr/bin/env bash
# make bench driver: runs tusc, a raw socket→file receiver and @tus/server (Node) under
# the same loads from bench/loadgen, prints a table and writes bench/results/latest.md.
# Every process it starts is stopped by PID and every temp dir removed on exit.
#
# Environment (defaults = the issue's figures):
#   TUSC_BIN   tusc binary (make bench passes build/tusc)      LOADGEN  loadgen binary
#   BIG_SIZE=2G BIG_CHUNK=64M   MANY_N=5000 MANY_SIZE=64K MANY_C=64   IDLE_K=2000
#   REPEAT_A=5 REPEAT=3  rounds of (a) and (b); each contender's best counts (shared machine)
#   BENCH_DIR  parent of the scratch dir (default /var/tmp: on disk, not tmpfs)
#   SKIP_NODE=1  leave out @tus/server (no npm registry)
#   ONLY="a b c"  which figures to measure (e.g. ONLY=c while working on memory)
#   TUSC_BASE  a second tusc binary (e.g. a release build of the commit before a
#              change): it runs as one more contender in the same alternating rounds,
#              and the table gets a before/after section
#   TUSD_BIN   a tusd binary (not built here): one more contender in (a), (b) and (c),
#              run with its default flags (it never fsyncs); the table gets a tusd
#              section with medians and per-round ratios
set -u -o pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
LOADGEN=${LOADGEN:-$HERE/build/loadgen}
TUSC_BIN=${TUSC_BIN:-$HERE/../build/tusc}
BIG_SIZE=${BIG_SIZE:-2G}
BIG_CHUNK=${BIG_CHUNK:-64M}
MANY_N=${MANY_N:-5000}
MANY_SIZE=${MANY_SIZE:-64K}
MANY_C=${MANY_C:-64}
IDLE_K=${IDLE_K:-2000}
ONLY=${ONLY:-a b c}
REPEAT_A=${REPEAT_A:-5}
REPEAT=${REPEAT:-3}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
SKIP_NODE=${SKIP_NODE:-0}
TUSC_BASE=${TUSC_BASE:-}
TUSD_BIN=${TUSD_BIN:-}
RESULTS=$HERE/results/latest.md

die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

[ -x "$LOADGEN" ] || die "no loadgen at $LOADGEN (run make -C bench loadgen)"
[ -x "$TUSC_BIN" ] || die "no tusc binary at $TUSC_BIN (run make build)"
[ -z "$TUSC_BASE" ] || [ -x "$TUSC_BASE" ] || die "no tusc binary at TUSC_BASE=$TUSC_BASE"
[ -z "$TUSD_BIN" ] || [ -x "$TUSD_BIN" ] || die "no tusd binary at TUSD_BIN=$TUSD_BIN"
[ -z "$TUSD_BIN" ] || command -v ss >/dev/null || die "TUSD_BIN needs ss (iproute2) to find tusd's port"

# 2000 idle connections need 2000+ descriptors in the server and in loadgen.
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 4200 ] ||
  die "ulimit -n is $(ulimit -n); the idle test needs >= 4200"

WORK=$(mktemp -d "$BENCH_DIR/tusc-bench.XXXXXX") || die "cannot create a dir under $BENCH_DIR"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do
    kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
  done
  rm -rf "$WORK"
  sync # deleted inodes stop counting as recent sooner once their blocks are clean
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# On ext4 without a journal (this machine's root), creating an inode scans past every
# inode deleted in the last 1-6 minutes in the block group (fs/ext4/ialloc.c,
# recently_deleted), so deleting thousands of files between rounds would make the next
# round measure that scan, not the server. Hence: (b) never deletes, each (b) round gets
# a fresh server on a fresh upload dir, and the scratch dir gets the Orlov "top
# directory" flag so those dirs spread over block groups instead of sitting next to
# files deleted by earlier runs (or by anyone else on the machine).
chattr +T "$WORK" 2>/dev/null || note "chattr +T failed on $WORK; (b) may suffer from earlier deletions"
FSTYPE=$(findmnt -n -o FSTYPE -T "$WORK" 2>/dev/null || stat -f -c %T "$WORK")
[ "$FSTYPE" = tmpfs ] && note "warning: $WORK is on tmpfs; figures will not reflect a disk"

# ---- helpers ------------------------------------------------------------------------

# listen_port PID — the TCP port PID listens on (tusd 1.x prints the port it was given,
# 0, not the one it got)
listen_port() { ss -Hltnp 2>/dev/null | sed -n "s/^.*:\([0-9][0-9]*\) .*pid=$1,.*$/\1/p" | head -n 1; }

# start_server NAME LOG CMD... — starts CMD in the background, waits for its
# "listening on HOST:PORT" line (or, with TUSD_BIN set, for its listening socket:
# tusd 1.x prints no real port), sets
# SERVER_PID and SERVER_PORT.
start_server() {
  local name=$1 log=$2
  shift 2
  "$@" >"$log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  SERVER_PORT=
  local i
  for i in $(seq 1 200); do
    SERVER_PORT=$(sed -n 's/.*listening on .*:\([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)
    [ -z "$SERVER_PORT" ] && [ -n "$TUSD_BIN" ] && SERVER_PORT=$(listen_port "$SERVER_PID")
    [ -n "$SERVER_PORT" ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  cat "$log" >&2
  die "$name did not report a listening port"
}

stop_server() {
  local pid=$1 p
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  local keep=()
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

HZ=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# field KEY LINE — value of key=value in a loadgen result line
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }

# fresh_dir DIR — empty the upload dir (kept: a server may hold it open) and flush
# dirty pages so runs start alike
fresh_dir() {
  mkdir -p "$1"
  find "$1" -mindepth 1 -delete
  sync
}

best() { # best VALUES... — the largest, empty if none
  [ $# -gt 0 ] || return 0
  printf '%s\n' "$@" | sort -g | tail -n 1
}

median() { # median VALUES... — empty if none
  [ $# -gt 0 ] || return 0
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0 && a != "") printf "%.2f", a / b; else print "n/a" }'; }

# round_ratio "A1 A2 …" "B1 B2 …" — median over the rounds of A_i / B_i. The two ran
# back to back in each round, so a round's ratio cancels what slowed the whole machine
# then; best-of-rounds compares two lucky moments instead. n/a unless both have the
# same number of rounds.
round_ratio() {
  echo "$1|$2" | awk -F'|' '{
    na = split($1, a, " "); nb = split($2, b, " ")
    if (na == 0 || na != nb) { print "n/a"; exit }
    for (i = 1; i <= na; i++) r[i] = (b[i] > 0) ? a[i] / b[i] : 0
    for (i = 1; i <= na; i++) for (j = i + 1; j <= na; j++) if (r[j] < r[i]) { t = r[i]; r[i] = r[j]; r[j] = t }
    m = (na % 2) ? r[(na + 1) / 2] : (r[na / 2] + r[na / 2 + 1]) / 2
    printf "%.2f", m }'
}

# one_run KIND PORT DIR — OUT = loadgen's line, VAL = its figure. Empties DIR first for
# raw and big (a few huge files); many keeps what earlier rounds left (see the inode
# note at the top).
one_run() {
  local kind=$1 port=$2 dir=$3
  VAL=
  if [ "$kind" = many ]; then sync; else fresh_dir "$dir"; fi
  case $kind in
  raw*) OUT=$(timeout 300 "$LOADGEN" raw -size "$BIG_SIZE" -chunk "$BIG_CHUNK" -file "$dir/data" -rbuf "${kind#raw}") ;;
  big) OUT=$(timeout 300 "$LOADGEN" big -port "$port" -size "$BIG_SIZE" -chunk "$BIG_CHUNK") ;;
  many) OUT=$(timeout 300 "$LOADGEN" many -port "$port" -n "$MANY_N" -size "$MANY_SIZE" -c "$MANY_C") ;;
  esac || { note "  $kind run against port $port failed: $OUT"; return 1; }
  note "  $OUT"
  case $kind in
  many) VAL=$(field per_sec "$OUT") ;;
  *) VAL=$(field mbps "$OUT") ;;
  esac
}

# bench_idle PID PORT — RESULT = KiB of server RSS per idle connection; IDLE_DETAIL
bench_idle() {
  local pid=$1 port=$2 before after lpid i out
  RESULT= IDLE_DETAIL=
  # warm up: the server's per-worker buffers and allocator arenas exist before we count
  timeout 60 "$LOADGEN" many -port "$port" -n 200 -size 4K -c 8 >/dev/null || return 1
  sleep 0.5
  before=$(rss_kib "$pid")
  "$LOADGEN" idle -port "$port" -k "$IDLE_K" -hold 120 >"$WORK/idle.out" 2>&1 &
  lpid=$!
  PIDS+=("$lpid")
  for i in $(seq 1 600); do
    grep -q established "$WORK/idle.out" && break
    kill -0 "$lpid" 2>/dev/null || break
    sleep 0.1
  done
  if ! grep -q established "$WORK/idle.out"; then
    cat "$WORK/idle.out" >&2
    stop_server "$lpid"
    return 1
  fi
  sleep 1 # let the server read the few body bytes every connection sent
  after=$(rss_kib "$pid")
  stop_server "$lpid"
  out=$(grep dropped "$WORK/idle.out")
  [ "$(field dropped "$out")" = 0 ] || note "  idle: server dropped connections: $out"
  IDLE_DETAIL="RSS $before KiB → $after KiB"
  note "  idle: $IDLE_DETAIL with $IDLE_K connections"
  RESULT=$(awk -v a="$after" -v b="$before" -v k="$IDLE_K" 'BEGIN { printf "%.1f", (a - b) / k }')
}

# ---- run ----------------------------------------------------------------------------

T_START=$(date +%s)
note "scratch dir $WORK ($FSTYPE), loadgen $LOADGEN, tusc $TUSC_BIN"

NODE_OK=0 NODE_VER=
if [ "$SKIP_NODE" != 1 ]; then
  note "@tus/server: npm ci in $HERE/node"
  if (cd "$HERE/node" && npm ci --no-audit --no-fund --loglevel=error >&2); then
    NODE_OK=1
    NODE_VER="@tus/server $(node -p "require('$HERE/node/node_modules/@tus/server/package.json').version")"
    NODE_VER="$NODE_VER + @tus/file-store $(node -p "require('$HERE/node/node_modules/@tus/file-store/package.json').version"), node $(node --version)"
  else
    note "npm ci failed: no @tus/server reference this run"
  fi
fi

# The machine is shared, so the contenders run in alternating rounds (raw, tusc, node;
# raw, tusc, node; ...) and each keeps its best round: a burst of someone else's load
# hits all of them alike instead of one.
TUSC_ARGS=(-host 127.0.0.1 -port 0)

# fig NAME KIND PORT DIR — appends this round's figure to array NAME (nothing on failure)
fig() {
  local -n arr=$1
  one_run "$2" "$3" "$4" && arr+=("$VAL")
  [ "$2" = many ] || find "$4" -mindepth 1 -delete
}

# fig_fresh NAME DIR LOG CMD... — (b) round on a server started just for it, on an
# upload dir of its own (see the inode note at the top); tracks peak RSS in HWM_NAME and
# the server's CPU seconds (utime + stime) during the run in array CPU_NAME
fig_fresh() {
  local name=$1 dir=$2 log=$3 hwm c0 n
  shift 3
  mkdir -p "$dir"
  start_server "$name" "$log" "$@"
  n=$(eval "echo \${#$name[@]}")
  c0=$(cpu_ticks "$SERVER_PID")
  fig "$name" many "$SERVER_PORT" "$dir"
  if [ "$(eval "echo \${#$name[@]}")" -gt "$n" ]; then
    local -n cpus="CPU_$name"
    cpus+=("$(awk -v a="$c0" -v b="$(cpu_ticks "$SERVER_PID")" -v hz="$HZ" 'BEGIN { printf "%.2f", (b - a) / hz }')")
  fi
  hwm=$(hwm_kib "$SERVER_PID")
  local -n peak="HWM_$name"
  [ -n "$peak" ] && [ "$peak" -ge "$hwm" ] || peak=$hwm
  stop_server "$SERVER_PID"
}

RAW_V=() TUSC_AV=() NODE_AV=() TUSC_BV=() TUSC_SYNC_BV=() NODE_BV=()
BASE_AV=() BASE_BV=() BASE_SYNC_BV=()
HWM_TUSC_BV= HWM_TUSC_SYNC_BV= HWM_NODE_BV= TUSC_HWM= NODE_HWM=
HWM_BASE_BV= HWM_BASE_SYNC_BV= BASE_HWM=
TUSD_AV=() TUSD_BV=() HWM_TUSD_BV= TUSD_HWM=
CPU_TUSC_BV=() CPU_TUSC_SYNC_BV=() CPU_NODE_BV=() CPU_BASE_BV=() CPU_BASE_SYNC_BV=() CPU_TUSD_BV=()
# tusd with its defaults (base path /files/, no fsync); it logs every request to stdout,
# which start_server sends to a file as for the others
TUSD_ARGS=(-host 127.0.0.1 -port 0)
want() { case " $ONLY " in *" $1 "*) return 0 ;; esac; return 1; }
want a || REPEAT_A=0
want b || REPEAT=0

if [ "$REPEAT_A" -gt 0 ]; then
  note "(a) $BIG_SIZE in $BIG_CHUNK PATCHes: raw socket → file, tusc -fsync=never, @tus/server${TUSD_BIN:+, tusd}; $REPEAT_A rounds"
  start_server tusc "$WORK/a-tusc.log" "$TUSC_BIN" "${TUSC_ARGS[@]}" -upload-dir "$WORK/a-tusc" -fsync=never
  TUSC_PID=$SERVER_PID TUSC_PORT=$SERVER_PORT
  NODE_PID= NODE_PORT=
  if [ "$NODE_OK" = 1 ]; then
    start_server node "$WORK/a-node.log" env TUS_DIR="$WORK/a-node" node "$HERE/node/server.js"
    NODE_PID=$SERVER_PID NODE_PORT=$SERVER_PORT
  fi
  BASE_PID= BASE_PORT=
  if [ -n "$TUSC_BASE" ]; then
    start_server base "$WORK/a-base.log" "$TUSC_BASE" "${TUSC_ARGS[@]}" -upload-dir "$WORK/a-base" -fsync=never
    BASE_PID=$SERVER_PID BASE_PORT=$SERVER_PORT
  fi
  TUSD_PID= TUSD_PORT=
  if [ -n "$TUSD_BIN" ]; then
    start_server tusd "$WORK/a-tusd.log" "$TUSD_BIN" "${TUSD_ARGS[@]}" -upload-dir "$WORK/a-tusd"
    TUSD_PID=$SERVER_PID TUSD_PORT=$SERVER_PORT
  fi
  for i in $(seq 1 "$REPEAT_A"); do
    # the receiver's read size that suits this machine best is not known: try both
    fig RAW_V raw64K 0 "$WORK/raw"
    fig RAW_V raw1M 0 "$WORK/raw"
    fig TUSC_AV big "$TUSC_PORT" "$WORK/a-tusc"
    [ -n "$BASE_PID" ] && fig BASE_AV big "$BASE_PORT" "$WORK/a-base"
    [ -n "$NODE_PID" ] && fig NODE_AV big "$NODE_PORT" "$WORK/a-node"
    [ -n "$TUSD_PID" ] && fig TUSD_AV big "$TUSD_PORT" "$WORK/a-tusd"
  done
  [ -n "$TUSD_PID" ] && TUSD_HWM=$(hwm_kib "$TUSD_PID") && stop_server "$TUSD_PID"
  TUSC_HWM=$(hwm_kib "$TUSC_PID")
  [ -n "$NODE_PID" ] && NODE_HWM=$(hwm_kib "$NODE_PID")
  [ -n "$BASE_PID" ] && BASE_HWM=$(hwm_kib "$BASE_PID") && stop_server "$BASE_PID"
  stop_server "$TUSC_PID"
  [ -n "$NODE_PID" ] && stop_server "$NODE_PID"
fi

if [ "$REPEAT" -gt 0 ]; then
  note "(b) $MANY_N x $MANY_SIZE uploads, $MANY_C at a time: tusc -fsync=never, tusc default, @tus/server${TUSD_BIN:+, tusd}; $REPEAT rounds, fresh server and dir each"
  b_tusc() {
    fig_fresh TUSC_BV "$WORK/b$i-tusc" "$WORK/b$i-tusc.log" \
      "$TUSC_BIN" "${TUSC_ARGS[@]}" -upload-dir "$WORK/b$i-tusc" -fsync=never
    fig_fresh TUSC_SYNC_BV "$WORK/b$i-tusc-sync" "$WORK/b$i-tusc-sync.log" \
      "$TUSC_BIN" "${TUSC_ARGS[@]}" -upload-dir "$WORK/b$i-tusc-sync"
  }
  b_base() {
    fig_fresh BASE_BV "$WORK/b$i-base" "$WORK/b$i-base.log" \
      "$TUSC_BASE" "${TUSC_ARGS[@]}" -upload-dir "$WORK/b$i-base" -fsync=never
    fig_fresh BASE_SYNC_BV "$WORK/b$i-base-sync" "$WORK/b$i-base-sync.log" \
      "$TUSC_BASE" "${TUSC_ARGS[@]}" -upload-dir "$WORK/b$i-base-sync"
  }
  b_tusd() {
    fig_fresh TUSD_BV "$WORK/b$i-tusd" "$WORK/b$i-tusd.log" \
      "$TUSD_BIN" "${TUSD_ARGS[@]}" -upload-dir "$WORK/b$i-tusd"
  }
  for i in $(seq 1 "$REPEAT"); do
    # tusd goes first in even rounds, last in odd ones
    [ -n "$TUSD_BIN" ] && [ $((i % 2)) = 0 ] && b_tusd
    # With TUSC_BASE the two binaries take turns going first, so that neither always
    # runs right after the other's deletions and writeback.
    if [ -n "$TUSC_BASE" ] && [ $((i % 2)) = 0 ]; then
      b_base
      b_tusc
    else
      b_tusc
      [ -n "$TUSC_BASE" ] && b_base
    fi
    [ "$NODE_OK" = 1 ] && fig_fresh NODE_BV "$WORK/b$i-node" "$WORK/b$i-node.log" \
      env TUS_DIR="$WORK/b$i-node" node "$HERE/node/server.js"
    [ -n "$TUSD_BIN" ] && [ $((i % 2)) = 1 ] && b_tusd
  done
fi
RAW_A=$(best "${RAW_V[@]}")
TUSC_A=$(best "${TUSC_AV[@]}")
NODE_A=$(best "${NODE_AV[@]}")
TUSC_B=$(best "${TUSC_BV[@]}")
TUSC_B_SYNC=$(best "${TUSC_SYNC_BV[@]}")
NODE_B=$(best "${NODE_BV[@]}")
BASE_A=$(best "${BASE_AV[@]}")
BASE_B=$(best "${BASE_BV[@]}")
BASE_B_SYNC=$(best "${BASE_SYNC_BV[@]}")

# (c) on fresh servers with default flags
TUSC_C= TUSC_C_DETAIL= NODE_C= NODE_C_DETAIL=
if want c; then
  note "(c) tusc default flags, $IDLE_K idle connections"
  start_server tusc "$WORK/tusc-idle.log" "$TUSC_BIN" "${TUSC_ARGS[@]}" -upload-dir "$WORK/tusc"
  TUSC_PID=$SERVER_PID
  bench_idle "$TUSC_PID" "$SERVER_PORT"; TUSC_C=$RESULT TUSC_C_DETAIL=$IDLE_DETAIL
  stop_server "$TUSC_PID"
  rm -rf "$WORK/tusc"
  BASE_C=
  if [ -n "$TUSC_BASE" ]; then
    note "(c) TUSC_BASE default flags, $IDLE_K idle connections"
    start_server base "$WORK/base-idle.log" "$TUSC_BASE" "${TUSC_ARGS[@]}" -upload-dir "$WORK/base"
    BASE_PID=$SERVER_PID
    bench_idle "$BASE_PID" "$SERVER_PORT"; BASE_C=$RESULT
    stop_server "$BASE_PID"
    rm -rf "$WORK/base"
  fi

  TUSD_C= TUSD_C_DETAIL=
  if [ -n "$TUSD_BIN" ]; then
    note "(c) tusd default flags, $IDLE_K idle connections"
    start_server tusd "$WORK/tusd-idle.log" "$TUSD_BIN" "${TUSD_ARGS[@]}" -upload-dir "$WORK/tusd"
    TUSD_PID=$SERVER_PID
    bench_idle "$TUSD_PID" "$SERVER_PORT" || note "  idle: the tusd run failed"
    TUSD_C=$RESULT TUSD_C_DETAIL=$IDLE_DETAIL
    stop_server "$TUSD_PID"
    rm -rf "$WORK/tusd"
  fi

  if [ "$NODE_OK" = 1 ]; then
    note "(c) @tus/server, $IDLE_K idle connections"
    start_server node "$WORK/node-idle.log" env TUS_DIR="$WORK/node" node "$HERE/node/server.js"
    NODE_PID=$SERVER_PID
    bench_idle "$NODE_PID" "$SERVER_PORT"; NODE_C=$RESULT NODE_C_DETAIL=$IDLE_DETAIL
    stop_server "$NODE_PID"
    rm -rf "$WORK/node"
  fi

fi

# ---- report -------------------------------------------------------------------------

verdict() { # verdict VALUE OP LIMIT
  [ -n "$1" ] && [ "$1" != n/a ] || { echo "not measured"; return; }
  awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN {
    ok = (op == ">=") ? (v >= l) : (v < l); print (ok ? "met" : "MISSED") }'
}
or_na() { [ -n "$1" ] && echo "$1" || echo "n/a"; }

R_A_RAW=$(ratio "$TUSC_A" "$RAW_A")
R_A_NODE=$(ratio "$TUSC_A" "$NODE_A")
R_B_NODE=$(ratio "$TUSC_B" "$NODE_B")
R_B_SYNC_NODE=$(ratio "$TUSC_B_SYNC" "$NODE_B")
R_C_NODE=$(ratio "$NODE_C" "$TUSC_C")
CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
MEM=$(awk '/^MemTotal:/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
COMMIT=$(git -C "$HERE" rev-parse --short HEAD 2>/dev/null || echo unknown)
ELAPSED=$(($(date +%s) - T_START))

mkdir -p "$HERE/results"
{
  echo "# tusc bench — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Machine: $(nproc) cores ($CPU), $MEM RAM, Linux $(uname -r), scratch dir on $FSTYPE."
  echo "tusc commit $COMMIT; reference: $(or_na "$NODE_VER"). Best of $REPEAT_A alternating rounds for (a), $REPEAT for (b); took ${ELAPSED}s."
  echo
  echo "| figure | tusc | reference | ratio | target |"
  echo "|---|---|---|---|---|"
  echo "| (a) $BIG_SIZE in $BIG_CHUNK PATCHes, -fsync=never, MB/s | $(or_na "$TUSC_A") | raw TCP socket → file: $(or_na "$RAW_A") | $R_A_RAW | ≥ 0.8: $(verdict "$R_A_RAW" '>=' 0.8) |"
  echo "| (a) same load, MB/s | $(or_na "$TUSC_A") | @tus/server: $(or_na "$NODE_A") | $R_A_NODE | — |"
  echo "| (b) $MANY_N × $MANY_SIZE uploads, $MANY_C at a time, -fsync=never, uploads/s | $(or_na "$TUSC_B") | @tus/server: $(or_na "$NODE_B") | $R_B_NODE | ≥ 3: $(verdict "$R_B_NODE" '>=' 3) |"
  echo "| (b) same, tusc default -fsync=always, uploads/s | $(or_na "$TUSC_B_SYNC") | @tus/server: $(or_na "$NODE_B") | $R_B_SYNC_NODE | (no fsync in @tus/server) |"
  echo "| (c) $IDLE_K idle upload connections, server RSS KiB per connection | $(or_na "$TUSC_C") | @tus/server: $(or_na "$NODE_C") | $R_C_NODE$([ "$R_C_NODE" = n/a ] || echo "× less") | < 8 KiB: $(verdict "$TUSC_C" '<' 8) |"
  echo
  echo "All runs (the machine is shared; the table keeps each contender's best):"
  echo
  echo "- (a) raw: ${RAW_V[*]:-none}; tusc: ${TUSC_AV[*]:-none}; @tus/server: ${NODE_AV[*]:-none} MB/s"
  echo "- (b) tusc -fsync=never: ${TUSC_BV[*]:-none}; tusc default: ${TUSC_SYNC_BV[*]:-none}; @tus/server: ${NODE_BV[*]:-none} uploads/s"
  echo
  echo "(c) detail: tusc $(or_na "$TUSC_C_DETAIL"); @tus/server $(or_na "$NODE_C_DETAIL")."
  echo "Peak RSS (VmHWM): in (a) tusc $(or_na "$TUSC_HWM") KiB, @tus/server $(or_na "$NODE_HWM") KiB;" \
    "in (b) tusc -fsync=never $(or_na "$HWM_TUSC_BV") KiB, tusc default $(or_na "$HWM_TUSC_SYNC_BV") KiB," \
    "@tus/server $(or_na "$HWM_NODE_BV") KiB."
  echo "MB = 10^6 bytes."
  if [ -n "$TUSC_BASE" ]; then
    echo
    echo "Before/after (TUSC_BASE = $TUSC_BASE, same alternating rounds):"
    echo
    echo "| figure | before (TUSC_BASE), best | after (TUSC_BIN), best | after / before, best | median of the rounds' after / before |"
    echo "|---|---|---|---|---|"
    echo "| (a) MB/s, -fsync=never | $(or_na "$BASE_A") | $(or_na "$TUSC_A") | $(ratio "$TUSC_A" "$BASE_A") | $(round_ratio "${TUSC_AV[*]:-}" "${BASE_AV[*]:-}") |"
    echo "| (b) uploads/s, -fsync=never | $(or_na "$BASE_B") | $(or_na "$TUSC_B") | $(ratio "$TUSC_B" "$BASE_B") | $(round_ratio "${TUSC_BV[*]:-}" "${BASE_BV[*]:-}") |"
    echo "| (b) uploads/s, -fsync=always | $(or_na "$BASE_B_SYNC") | $(or_na "$TUSC_B_SYNC") | $(ratio "$TUSC_B_SYNC" "$BASE_B_SYNC") | $(round_ratio "${TUSC_SYNC_BV[*]:-}" "${BASE_SYNC_BV[*]:-}") |"
    echo "| (c) KiB per idle connection | $(or_na "$BASE_C") | $(or_na "$TUSC_C") | $(ratio "$TUSC_C" "$BASE_C") | (one round) |"
    echo
    echo "All rounds: (a) before ${BASE_AV[*]:-none}, after ${TUSC_AV[*]:-none}; (b) -fsync=never before ${BASE_BV[*]:-none}, after ${TUSC_BV[*]:-none}; default before ${BASE_SYNC_BV[*]:-none}, after ${TUSC_SYNC_BV[*]:-none}."
    echo "Peak RSS before: (a) $(or_na "$BASE_HWM") KiB, (b) -fsync=never $(or_na "$HWM_BASE_BV") KiB, default $(or_na "$HWM_BASE_SYNC_BV") KiB."
  fi
  if [ -n "$TUSD_BIN" ]; then
    echo
    echo "tusd (TUSD_BIN = $TUSD_BIN, $("$TUSD_BIN" -version 2>/dev/null | head -n 1), default flags: never fsyncs), same alternating rounds:"
    echo
    echo "| figure | tusc, median | tusd, median | tusc / tusd, median of the rounds' ratios | best: tusc / tusd |"
    echo "|---|---|---|---|---|"
    want a && echo "| (a) MB/s, tusc -fsync=never | $(or_na "$(median "${TUSC_AV[@]}")") | $(or_na "$(median "${TUSD_AV[@]}")") | $(round_ratio "${TUSC_AV[*]:-}" "${TUSD_AV[*]:-}") | $(or_na "$TUSC_A") / $(or_na "$(best "${TUSD_AV[@]}")") |"
    want b && echo "| (b) uploads/s, tusc -fsync=never | $(or_na "$(median "${TUSC_BV[@]}")") | $(or_na "$(median "${TUSD_BV[@]}")") | $(round_ratio "${TUSC_BV[*]:-}" "${TUSD_BV[*]:-}") | $(or_na "$TUSC_B") / $(or_na "$(best "${TUSD_BV[@]}")") |"
    want b && echo "| (b) uploads/s, tusc default (durable) | $(or_na "$(median "${TUSC_SYNC_BV[@]}")") | $(or_na "$(median "${TUSD_BV[@]}")") | $(round_ratio "${TUSC_SYNC_BV[*]:-}" "${TUSD_BV[*]:-}") | $(or_na "$TUSC_B_SYNC") / $(or_na "$(best "${TUSD_BV[@]}")") |"
    want b && echo "| (b) server CPU s per 1,000 uploads, tusc -fsync=never | $(or_na "$(median "${CPU_TUSC_BV[@]}" | awk -v n="$MANY_N" '{ printf "%.3f", $1 * 1000 / n }')") | $(or_na "$(median "${CPU_TUSD_BV[@]}" | awk -v n="$MANY_N" '{ printf "%.3f", $1 * 1000 / n }')") | tusd / tusc: $(round_ratio "${CPU_TUSD_BV[*]:-}" "${CPU_TUSC_BV[*]:-}") | |"
    want b && echo "| (b) server CPU s per 1,000 uploads, tusc default | $(or_na "$(median "${CPU_TUSC_SYNC_BV[@]}" | awk -v n="$MANY_N" '{ printf "%.3f", $1 * 1000 / n }')") | (as above) | tusd / tusc: $(round_ratio "${CPU_TUSD_BV[*]:-}" "${CPU_TUSC_SYNC_BV[*]:-}") | |"
    want c && echo "| (c) KiB per idle connection | $(or_na "$TUSC_C") | $(or_na "$TUSD_C") | tusd / tusc: $(ratio "$TUSD_C" "$TUSC_C") (one round) | |"
    echo
    echo "All rounds: (a) tusd ${TUSD_AV[*]:-none} MB/s; (b) tusd ${TUSD_BV[*]:-none} uploads/s; server CPU s per round: tusc -fsync=never ${CPU_TUSC_BV[*]:-none}, tusc default ${CPU_TUSC_SYNC_BV[*]:-none}, tusd ${CPU_TUSD_BV[*]:-none}. (c) tusd $(or_na "${TUSD_C_DETAIL:-}")."
    echo "Peak RSS (VmHWM) of tusd: (a) $(or_na "$TUSD_HWM") KiB, (b) $(or_na "$HWM_TUSD_BV") KiB."
  fi
} >"$RESULTS"
echo
cat "$RESULTS"

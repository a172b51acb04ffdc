#!/bin/sh
# Runs every libFuzzer target in a fuzz build dir for FUZZ_SECONDS each, one after
# the other (the seed corpus — regression inputs included — is replayed first, so a
# fixed crash that comes back fails at once). New corpus entries go to a scratch dir,
# never into tests/fuzz/corpus; a crash leaves its input in <build>/fuzz-artifacts/.
# Usage: scripts/fuzz.sh <build-dir> [seconds] [target...]
# Exit: non-zero if any target found a crash, leak, UB, timeout or OOM.
set -u
build=${1:?usage: scripts/fuzz.sh <build-dir> [seconds] [target...]}
secs=${2:-${FUZZ_SECONDS:-20}}
shift; [ $# -gt 0 ] && shift
src=$(cd "$(dirname "$0")/.." && pwd)
fuzzdir=$src/tests/fuzz
targets="$*"
[ -z "$targets" ] && targets=$(cd "$fuzzdir" && ls fuzz_*.c | sed 's/\.c$//')
work=$build/fuzz-work
art=$build/fuzz-artifacts
mkdir -p "$work" "$art"
summary=$build/fuzz-summary.txt
: >"$summary"
failed=""
for t in $targets; do
  name=${t#fuzz_}
  bin=$build/tests/fuzz/$t
  [ -x "$bin" ] || { echo "fuzz: $bin missing (build with TUSC_FUZZ=ON)" >&2; failed="$failed $t"; continue; }
  mkdir -p "$work/$name" "$fuzzdir/corpus/$name"
  dict=""
  [ -f "$fuzzdir/$name.dict" ] && dict="-dict=$fuzzdir/$name.dict"
  log=$build/fuzz-$name.log
  echo "fuzz: $t for ${secs}s"
  # detect_leaks: libFuzzer checks each input that grew memory; -timeout flags a
  # hang (the http target's inputs normally finish in milliseconds).
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
      -print_final_stats=1 -artifact_prefix="$art/$name-" $dict \
      "$work/$name" "$fuzzdir/corpus/$name" >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  echo "$t runs=${runs:-0} cov=${cov:-0} rc=$rc" | tee -a "$summary"
  if [ $rc -ne 0 ]; then
    failed="$failed $t"
    tail -60 "$log" >&2
  fi
done
if [ -n "$failed" ]; then
  echo "fuzz: FAILED:$failed (inputs in $art)" >&2
  exit 1
fi

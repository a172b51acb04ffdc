#!/bin/sh
# Runs the integration suite again and again to catch flaky tests: N runs, stopping at
# the first failing run, one "run i/N ok" line per run and a summary at the end.
# With LOAD=1 a busy shell loop runs on every core meanwhile (so timing races show up
# as they would on a loaded CI machine); the loops are killed by PID on any exit.
# K, if set, is passed to pytest as -k.
# Usage: TUSC_BIN=build-asan/tusc scripts/test-repeat.sh [N] [LOAD] [K]
# Exit: 0 when every run passed, else the failing run's pytest status (130 on ^C).
set -u
n=${1:-20}
load=${2:-0}
k=${3:-}
pytest=${PYTEST:-/usr/bin/python3 -m pytest}
: "${TUSC_BIN:?set TUSC_BIN to the tusc binary under test}"
export TUSC_BIN
case $n in
'' | *[!0-9]* | 0)
  echo "test-repeat: N must be a positive number, not '$n'" >&2
  exit 2
  ;;
esac
src=$(cd "$(dirname "$0")/.." && pwd)

hogs=""
stop_hogs() {
  for pid in $hogs; do
    kill "$pid" 2>/dev/null
  done
  for pid in $hogs; do
    wait "$pid" 2>/dev/null
  done
  hogs=""
}
trap stop_hogs EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

what="integration suite"
[ -n "$k" ] && what="integration tests matching -k '$k'"
if [ "$load" = 1 ]; then
  cores=$(nproc)
  i=0
  while [ "$i" -lt "$cores" ]; do
    sh -c 'while :; do :; done' &
    hogs="$hogs $!"
    i=$((i + 1))
  done
  echo "test-repeat: $n runs of the $what, $cores CPU hogs running (pids$hogs)"
else
  echo "test-repeat: $n runs of the $what"
fi

start=$(date +%s)
i=1
rc=0
while [ "$i" -le "$n" ]; do
  t0=$(date +%s)
  if [ -n "$k" ]; then
    $pytest -q -p no:cacheprovider "$src/tests/integration" -k "$k"
  else
    $pytest -q -p no:cacheprovider "$src/tests/integration"
  fi
  rc=$?
  secs=$(($(date +%s) - t0))
  if [ "$rc" -ne 0 ]; then
    echo "run $i/$n FAILED (pytest exit $rc, ${secs}s)"
    break
  fi
  echo "run $i/$n ok (${secs}s)"
  i=$((i + 1))
done
total=$(($(date +%s) - start))
load_note=""
[ "$load" = 1 ] && load_note=", under LOAD"
if [ "$rc" -eq 0 ]; then
  echo "test-repeat: all $n runs passed in ${total}s$load_note"
else
  echo "test-repeat: run $i/$n failed after $((i - 1)) passing runs, ${total}s$load_note"
fi
exit "$rc"

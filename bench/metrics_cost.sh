#!/usr/bin/env bash
# The metrics recording cost (bench/README.md, "Metrics recording cost"): starts the test bed's
# dev server (in memory, frontend rate limits raised as in bench/run.sh) and runs
# bench/metrics_cost.lua against it.   bench/metrics_cost.sh [calls] [rounds]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TB=$ROOT/.testbed/bench-metrics
TESTBED_NAME=bench-metrics
. "$ROOT/bench/lib.sh"
[ -x build/temporal-lua ] || die "build/temporal-lua missing: run make"
bench_testbed --lifted
unset LUA_INIT LUA_INIT_5_4
build/temporal-lua bench/metrics_cost.lua "$ADDRESS" "$@"

# Instructions per GetSystemInfo (every thread), metrics on and off: callgrind over 220 calls
# minus callgrind over 20 calls (connect, start-up and exit cancel out), divided by 200.
instructions() {
  local out=$TB/callgrind.$1.$2
  valgrind --tool=callgrind --callgrind-out-file="$out" build/temporal-lua bench/metrics_cost.lua \
    "$ADDRESS" --callgrind "$1" "$2" >/dev/null 2>"$TB/valgrind.log" || die "valgrind failed: $(tail -5 "$TB/valgrind.log")"
  awk '/^summary:/ { print $2 }' "$out"
}
for mode in off on; do
  small=$(instructions "$mode" 20)
  large=$(instructions "$mode" 220)
  eval "per_$mode=$(( (large - small) / 200 ))"
done
echo "| instructions per GetSystemInfo (callgrind, all threads), metrics off / on | $per_off / $per_on ($(( per_on - per_off )) more, $(awk -v a="$per_on" -v b="$per_off" 'BEGIN { printf "%+.2f", (a - b) / b * 100 }') %) |"

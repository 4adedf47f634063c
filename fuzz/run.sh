#!/usr/bin/env bash
# Runs libFuzzer harnesses built by `make fuzz-build`, each for SECONDS seconds:
#   fuzz/run.sh SECONDS target...
#   FUZZ_OUT=dir fuzz/run.sh ...     work, logs and findings under dir (default build/fuzz);
#                                    binaries from $FUZZ_OUT/bin when it has them
# Seeds: fuzz/corpus/<target> (read only); new inputs: build/fuzz/work/<target>; a crash,
# leak, timeout or sanitizer report lands in build/fuzz/findings/ and fails the run. Prints
# one line per target: `fuzz <target>: N executions in S s, <findings>`.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
seconds=$1
shift
status=0
out=${FUZZ_OUT:-build/fuzz}
mkdir -p "$out/findings"
for t in "$@"; do
  bin=build/fuzz/fuzz_$t
  [ -x "$out/bin/fuzz_$t" ] && bin=$out/bin/fuzz_$t
  work=$out/work/$t
  log=$out/$t.log
  mkdir -p "$work"
  dict=()
  [ -f "fuzz/$t.dict" ] && dict=(-dict="fuzz/$t.dict")
  # -timeout: one input taking 10 s is a finding (unbounded work); -rss_limit_mb likewise.
  # Leak checking stays on (ASan's LeakSanitizer at exit and per suspicious input).
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=1 \
    "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$out/findings/$t-" "${dict[@]}" "$work" "fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  if [ "$rc" = 0 ]; then
    echo "fuzz $t: ${execs:-?} executions in $seconds s, no findings"
  else
    status=1
    echo "fuzz $t: FINDING after ${execs:-?} executions (exit $rc); log: $log"
    grep -E 'ERROR: |BUG:|runtime error|Test unit written' "$log" | head -n 5 | sed 's/^/  /'
  fi
done
exit $status

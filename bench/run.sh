#!/usr/bin/env bash
# make bench: temporal-lua against the Python SDK client (temporalio, the version the test bed
# pins), the Go SDK client (bench/go, the version its go.mod pins) and the raw gRPC C core
# program (bench/raw.c), same workloads, same dev server, interleaved, several repetitions.
# See bench/README.md.
#
#   bench/run.sh              the full run: bench/results/<timestamp>.json, bench/results/latest.md,
#                             bench/results/throughput.png, and the table in bench/README.md
#   bench/run.sh --smoke      tiny counts, one repetition, results in .testbed/bench/ only
#   bench/run.sh ARGS...      any other ARGS go to bench/bench.py (e.g. --reps 5)
#
# It starts its own dev server (in-memory SQLite) and Python worker from the test bed's pinned
# venv (spec/testbed/testbed.sh), then execs bench/bench.py, which owns them from there: it
# restarts them when they die and for each phase (bench/devserver.py) and stops them at exit.
# BENCH_TB: the log directory (default .testbed/bench); BENCH_GO=0: no Go column.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TB=${BENCH_TB:-$ROOT/.testbed/bench}
TESTBED_NAME=bench
WORKER_TASK_QUEUE=bench-worker-tq
. "$ROOT/bench/lib.sh"

TEMPORAL_LUA=$ROOT/build/temporal-lua
[ -x "$TEMPORAL_LUA" ] || die "$TEMPORAL_LUA missing: run make (make bench builds it)"
command -v gnuplot >/dev/null || die "gnuplot not found (make deps installs gnuplot-nox)"
command -v valgrind >/dev/null || die "valgrind not found (make deps installs it)"

# The anchors. bench-raw is built by make bench; the Go client is built here (Go's build
# cache makes later builds quick). Either missing: the run goes on without its column.
anchors=()
if [ -x "$ROOT/build/bench-raw" ]; then anchors+=(--raw "$ROOT/build/bench-raw")
else say "build/bench-raw missing (make build/bench-raw): no raw C column"; fi
if [ "${BENCH_GO:-1}" = 0 ]; then
  say "BENCH_GO=0: no Go column"
elif command -v go >/dev/null; then
  say "building the Go SDK client workload (bench/go)"
  if (cd "$ROOT/bench/go" && go build -o "$TB/bench-go" .) >"$TB/go-build.log" 2>&1; then
    anchors+=(--go "$TB/bench-go")
  else
    say "the Go build failed (see ${TB#"$ROOT"/}/go-build.log): no Go column"; tail -n 5 "$TB/go-build.log" >&2
  fi
else
  say "go not found: no Go column"
fi

bench_testbed --lifted --worker "$WORKER_TASK_QUEUE"

# temporal-lua carries this checkout's modules (make bench rebuilds it); no user init code.
unset LUA_INIT LUA_INIT_5_4

out=(--out-dir "$ROOT/bench/results" --readme "$ROOT/bench/README.md")
[ "${1:-}" = "--smoke" ] && out=(--out-dir "$TB")
# exec: the server and the worker become the driver's own children (it sees how they end and
# restarts them); it stops them when it exits, so this script's cleanup is no longer needed.
trap - EXIT INT TERM
exec "$PY" "$ROOT/bench/bench.py" \
  --address "$ADDRESS" --namespace default --manage-server --work-dir "$TB" \
  --server-pid "$SERVER_PID" --worker-pid "$WORKER_PID" --worker-task-queue "$WORKER_TASK_QUEUE" \
  --temporal-lua "$TEMPORAL_LUA" --python "$PY" "${anchors[@]}" "${out[@]}" "$@"

#!/usr/bin/env bash
# make soak: bench/soak.lua (one client, a steady mix of calls, RSS / Lua heap / fds /
# threads sampled) against its own dev server and Python worker from the test bed's pinned
# venv, for SOAK_SECONDS (default 300). Writes bench/soak.md; exits non-zero unless flat.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

TB=$ROOT/.testbed/soak
TESTBED_NAME=soak
TASK_QUEUE=soak-tq
. "$ROOT/spec/testbed/testbed.sh"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  {
    stop_group "$WORKER_PID"
    stop_group "$SERVER_PID"
  } 2>/dev/null
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$TB"
TEMPORAL_LUA=$ROOT/build/temporal-lua
[ -x "$TEMPORAL_LUA" ] || die "$TEMPORAL_LUA missing: run make (make soak builds it)"
testbed_venv
testbed_start_server ""
testbed_start_worker "$TASK_QUEUE"
unset LUA_INIT LUA_INIT_5_4
"$TEMPORAL_LUA" "$ROOT/bench/soak.lua" "$ADDRESS" "$TASK_QUEUE" "${SOAK_SECONDS:-300}" "${SOAK_OUT:-$ROOT/bench/soak.md}"

#!/usr/bin/env bash
# make soak: bench/soak.lua (one client, a steady mix of calls, RSS / Lua heap / fds /
# threads sampled) against its own dev server and Python worker from the test bed's pinned
# venv, for SOAK_SECONDS (default 300). Writes bench/soak.md; exits non-zero unless flat.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TB=$ROOT/.testbed/soak
TESTBED_NAME=soak
TASK_QUEUE=soak-tq
. "$ROOT/bench/lib.sh"

TEMPORAL_LUA=$ROOT/build/temporal-lua
[ -x "$TEMPORAL_LUA" ] || die "$TEMPORAL_LUA missing: run make (make soak builds it)"
bench_testbed --worker "$TASK_QUEUE"
unset LUA_INIT LUA_INIT_5_4
"$TEMPORAL_LUA" "$ROOT/bench/soak.lua" "$ADDRESS" "$TASK_QUEUE" "${SOAK_SECONDS:-300}" "${SOAK_OUT:-$ROOT/bench/soak.md}"

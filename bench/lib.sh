# Sourced by bench/run.sh, bench/nginx.sh and bench/soak.sh: the test bed (spec/testbed/testbed.sh),
# the cleanup that stops what they started, and the dev server they run against.
#
# The caller sets ROOT (the checkout), TB (its log directory) and TESTBED_NAME first. Cleanup
# on exit (and on INT/TERM) stops the worker and the server; a script that starts more defines
# bench_stop_more (run first).
#
#   bench_testbed [--lifted] [--worker TASK_QUEUE]
#       the pinned venv (sets PY, CLI), a dev server in memory (sets SERVER_PID, ADDRESS;
#       --lifted: the frontend's rate limits and its long-poll limit raised, see below) and,
#       with --worker, the test bed's Python worker polling TASK_QUEUE (sets WORKER_PID).
cd "$ROOT"
. "$ROOT/spec/testbed/testbed.sh"

bench_cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  {
    if declare -F bench_stop_more >/dev/null; then bench_stop_more; fi
    stop_group "$WORKER_PID"
    stop_group "$SERVER_PID"
  } 2>/dev/null
  exit "$rc"
}
trap bench_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$TB"

# In memory: the server's own disk writes would be measured as much as the clients. The
# frontend's rate limits (2,400 RPCs/s by default) go up so the GetSystemInfo workload can
# show the clients' own ceiling instead of RESOURCE_EXHAUSTED; so does its limit of 1,200
# long polls per namespace, or the 10,000 held calls of the scaling workload would be
# refused and retried by every client (CPU while they "wait" would be the retries').
BENCH_LIFTED_LIMITS=(
  --dynamic-config-value frontend.rps=1000000
  --dynamic-config-value frontend.namespaceRPS=1000000
  --dynamic-config-value frontend.namespaceCount=1000000
)

bench_testbed() {
  local server_args=() worker_tq=
  while [ $# -gt 0 ]; do
    case $1 in
      --lifted) server_args+=("${BENCH_LIFTED_LIMITS[@]}") ;;
      --worker) worker_tq=$2; shift ;;
      *) die "bench_testbed: unknown option $1" ;;
    esac
    shift
  done
  testbed_venv
  testbed_start_server "" "${server_args[@]}"
  [ -z "$worker_tq" ] || testbed_start_worker "$worker_tq"
}

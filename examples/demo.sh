#!/bin/sh
# Runs the examples against the server spec/run.sh started (TEMPORAL_TEST_* are set).
set -e
export TEMPORAL_ADDRESS="$TEMPORAL_TEST_ADDRESS" TEMPORAL_TASK_QUEUE="$TEMPORAL_TEST_TASK_QUEUE"
for script in examples/hello.lua examples/workflows.lua examples/concurrent.lua examples/metrics.lua; do
  echo "== temporal-lua $script"
  build/temporal-lua "$script"
done
echo "== build/host_loop (a C program with its own loop driving temporal)"
build/host_loop "$TEMPORAL_ADDRESS" default
echo "== temporal-lua examples/activity_worker.lua (Lua activities for Python workflows)"
build/temporal-lua examples/activity_worker.lua
echo "== build/activity_host (the activity worker in a C host's frame loop)"
build/activity_host "$TEMPORAL_ADDRESS" "$TEMPORAL_TASK_QUEUE" 3
echo "== examples/openresty (nginx + temporal-lua under LuaJIT: an HTTP API over Temporal)"
examples/openresty/demo.sh
echo "demo finished"

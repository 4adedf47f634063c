#!/bin/sh
# make demo: the test bed's dev server and sample worker (spec/worker/worker.py) come up
# on 127.0.0.1, then each example runs with temporal-lua against them.
set -e
cd "$(dirname "$0")/.."
exec spec/run.sh --exec examples/demo.sh

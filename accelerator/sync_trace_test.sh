#!/usr/bin/env bash
# Runs sync_trace_test.py with the .venv's Python (Accelerate 1.15, torch).
# $1: our sync_trace; $2: the Python.
set -euo pipefail
exec "$2" "$(dirname "$0")/sync_trace_test.py" "$1"

#!/usr/bin/env bash
# Runs shards_peer_test.py with the .venv's Python (Accelerate 1.15, torch).
# $1: our plan_shards; $2: the Python.
set -euo pipefail
exec "$2" "$(dirname "$0")/shards_peer_test.py" "$1"

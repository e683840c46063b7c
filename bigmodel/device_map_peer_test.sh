#!/usr/bin/env bash
# Runs device_map_peer_test.py with the .venv's Python (Accelerate 1.15).
# $1: our device_map_cases tool; $2: the Python.
set -euo pipefail
exec "$2" "$(dirname "$0")/device_map_peer_test.py" "$1"

#!/usr/bin/env bash
# Runs checkpoint_interop_test.py with the .venv's Python (Accelerate 1.15,
# torch, safetensors). $1: our checkpoint_interop; $2: the Python.
set -euo pipefail
exec "$2" "$(dirname "$0")/checkpoint_interop_test.py" "$1"

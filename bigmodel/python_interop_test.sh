#!/usr/bin/env bash
# Runs python_interop_test.py with the .venv's Python (the safetensors
# package). $1: our safetensors_tool; $2: the Python.
set -euo pipefail
exec "$2" "$(dirname "$0")/python_interop_test.py" "$1"

#!/usr/bin/env bash
# Runs python_interop_test.py with Debian's Python and python3-torch.
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/python_interop_test.py" "$1"

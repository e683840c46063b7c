#!/usr/bin/env bash
# Fails when the launcher's code depends on LibTorch or on //state's process
# group (the `deps(...)` query result is the first argument).
set -euo pipefail
deps_file="$1"
grep -q '^//launch:cli$' "$deps_file" || { echo "query lists no //launch:cli"; exit 1; }
bad=$(grep -E '^(//third_party:torch|@libtorch//|//state:state)$' "$deps_file" || true)
if [[ -n "$bad" ]]; then
  echo "the launcher must not depend on LibTorch or //state:state, but reaches:"
  echo "$bad"
  exit 1
fi
echo "launcher dependencies are free of LibTorch"

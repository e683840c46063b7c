#!/usr/bin/env bash
# Fails when the launcher's code depends on LibTorch or on //state's process
# group: the first argument is the `deps(...)` query result, the others are
# the launcher's sources, which must not include LibTorch's headers either
# (an include without a dependency is invisible to the query).
set -euo pipefail
deps_file="$1"
shift
if ! grep -q '^//launch:cli$' "$deps_file"; then
  echo "query lists no //launch:cli"
  exit 1
fi
bad=$(grep -E '^(//third_party:torch|@torch_venv//:torch|//state:state)$' \
  "$deps_file" || true)
if [[ -n "$bad" ]]; then
  echo "the launcher must not depend on LibTorch or //state:state, but reaches:"
  echo "$bad"
  exit 1
fi
(( $# > 0 )) || { echo "no launcher sources given"; exit 1; }
space='[[:space:]]*'
torch_include="^${space}#${space}include${space}[<\"](torch|ATen|c10|caffe2)/"
includes=$(grep -nE "$torch_include" "$@" || true)
if [[ -n "$includes" ]]; then
  echo "the launcher's sources must not include LibTorch headers, but:"
  echo "$includes"
  exit 1
fi
echo "launcher dependencies and includes are free of LibTorch ($# sources)"

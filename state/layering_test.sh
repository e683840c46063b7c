#!/usr/bin/env bash
# Fails when //state depends on a project package other than //state and
# //third_party (the `deps(//state)` query result is the first argument).
# Run with a deliberately bad list to see it fail:
#   echo //data:data > /tmp/deps && state/layering_test.sh /tmp/deps
set -euo pipefail
deps_file="$1"
[[ -s "$deps_file" ]] || { echo "empty dependency list: $deps_file"; exit 1; }
grep -q '^//state:state$' "$deps_file" || {
  echo "query result does not list //state itself"; exit 1; }
# The root package's build settings (//:cuda, //:cuda_enabled) are allowed.
bad=$(grep '^//' "$deps_file" |
  grep -v -E '^//(state|third_party)(/[^:]*)?:' |
  grep -v -E '^//:cuda(_enabled)?$' || true)
if [[ -n "$bad" ]]; then
  echo "//state must depend only on //state and //third_party, but reaches:"
  echo "$bad"
  exit 1
fi
echo "//state depends on $(grep -c '^//' "$deps_file") project targets, all in //state or //third_party"

#!/usr/bin/env bash
# Fails when a library depends on a project package it must not reach.
# Arguments: the `deps(//lib)` query result file, the library's own label,
# and the allowed packages as an extended regex alternation
# ("state|third_party"). The root package's build settings (//:cuda,
# //:cuda_enabled) are always allowed. To see it fail:
#   printf '//state:state\n//data:data\n' > /tmp/deps &&
#   tools/layering_check.sh /tmp/deps //state:state 'state|third_party'
set -euo pipefail
deps_file="$1"
self="$2"
allowed="$3"
[[ -s "$deps_file" ]] || { echo "empty dependency list: $deps_file"; exit 1; }
grep -qx "$self" "$deps_file" || { echo "query result does not list $self"; exit 1; }
bad=$(grep '^//' "$deps_file" |
  grep -v -E "^//(${allowed})(/[^:]*)?:" |
  grep -v -E '^//:cuda(_enabled)?$' || true)
if [[ -n "$bad" ]]; then
  echo "$self may depend only on //{${allowed}}, but reaches:"
  echo "$bad"
  exit 1
fi
echo "$self depends on $(grep -c '^//' "$deps_file") project targets, all allowed"

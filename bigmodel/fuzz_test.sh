#!/usr/bin/env bash
# Builds the safetensors header fuzzer with clang's libFuzzer and
# AddressSanitizer (Debian's clang and libclang-rt-14-dev) and runs it on a
# bounded number of inputs, starting from a small valid file. Any crash or
# sanitizer report fails the test.
set -euo pipefail
root="${TEST_SRCDIR}/${TEST_WORKSPACE}"
work="${TEST_TMPDIR:-/tmp}/fuzz"
mkdir -p "$work/corpus"
command -v clang++ >/dev/null || { echo "clang++ is missing: run tools/setup"; exit 1; }
# shellcheck disable=SC2046
clang++ -std=c++17 -O1 -g -fsanitize=fuzzer,address \
  -I"$root" \
  "$root/bigmodel/safetensors_header_fuzzer.cc" \
  "$root/bigmodel/safetensors_header.cc" \
  "$root/bigmodel/dtype.cc" \
  "$root/bigmodel/internal/json_string.cc" \
  -o "$work/fuzzer" \
  -lprotobuf $(pkg-config --libs absl_statusor absl_status absl_strings absl_str_format) -lpthread
# Seeds: a valid file and a few near misses.
seed() { printf "$1" > "$work/corpus/$2"; }
json='{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
printf '%b' "\\x$(printf %02x ${#json})\\x00\\x00\\x00\\x00\\x00\\x00\\x00${json}AAAABBBB" > "$work/corpus/valid"
seed '\x02\x00\x00\x00\x00\x00\x00\x00{}' empty
seed '\xff\xff\xff\xff\x00\x00\x00\x00{' huge
"$work/fuzzer" -runs="${FUZZ_RUNS:-200000}" -max_len=2048 -max_total_time=120 \
  -print_final_stats=1 "$work/corpus" 2>&1 | tail -n 15

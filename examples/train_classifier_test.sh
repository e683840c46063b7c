#!/usr/bin/env bash
# The main job under our launcher on 2 processes in each mixed precision:
# the final JSON line names the precision in effect, and bf16, fp16
# (autocast and loss scaling on CPU) and fp8 (torchao's tensorwise recipe,
# then Transformer Engine's delayed scaling from a config's fp8_config) end
# within one accuracy point of fp32.
# Arguments: the accelerate binary, the train_classifier binary.
set -euo pipefail
accelerate="$1"
program="$2"
export HF_HOME="${TEST_TMPDIR}/hf"

accuracy_of() {
  local mp="$1" line
  line="$("$accelerate" launch --cpu --num_processes 2 --mixed_precision "$mp" \
    "$program" 2>/dev/null | grep '"eval_accuracy"' | tail -1)"
  [[ "$line" == *"\"mixed_precision\": \"$mp\""* ]] ||
    { echo "mixed_precision $mp: the JSON line says otherwise: $line" >&2; return 1; }
  [[ "$line" == *'"processes": 2'* ]] || { echo "not 2 processes: $line" >&2; return 1; }
  sed -E 's/.*"eval_accuracy": ([0-9.]+).*/\1/' <<<"$line"
}

fp32="$(accuracy_of no)"
echo "fp32 accuracy ${fp32}"
awk -v a="$fp32" 'BEGIN { exit !(a > 0.85) }' ||
  { echo "fp32 accuracy ${fp32} is below 0.85: the job does not learn" >&2; exit 1; }
for mp in bf16 fp16 fp8; do
  got="$(accuracy_of "$mp")"
  echo "${mp} accuracy ${got}"
  awk -v a="$got" -v b="$fp32" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 0.01) }' ||
    { echo "${mp} accuracy ${got} is more than one point from fp32's ${fp32}" >&2; exit 1; }
done
# Delayed scaling, configured as Accelerate's YAML does.
cat > "${TEST_TMPDIR}/fp8_te.yaml" <<'YAML'
compute_environment: LOCAL_MACHINE
distributed_type: MULTI_CPU
mixed_precision: fp8
num_processes: 2
use_cpu: true
fp8_config:
  backend: TE
  fp8_format: HYBRID
  amax_history_length: 16
  amax_compute_algorithm: max
YAML
line="$("$accelerate" launch --config_file "${TEST_TMPDIR}/fp8_te.yaml" "$program" 2>/dev/null | grep '"eval_accuracy"' | tail -1)"
got="$(sed -E 's/.*"eval_accuracy": ([0-9.]+).*/\1/' <<<"$line")"
echo "fp8 (TE, delayed) accuracy ${got}"
[[ "$line" == *'"mixed_precision": "fp8"'* ]] || { echo "TE run: $line" >&2; exit 1; }
awk -v a="$got" -v b="$fp32" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 0.01) }' ||
  { echo "fp8 (TE) accuracy ${got} is more than one point from fp32's ${fp32}" >&2; exit 1; }
# A precision that does not exist is refused, naming it.
if out="$("$accelerate" launch --cpu --num_processes 2 --mixed_precision fp17 "$program" 2>&1)"; then
  echo "fp17 was accepted" >&2; exit 1
fi
[[ "$out" == *'"fp17" is not one of no, fp16, bf16, fp8'* ]] ||
  { echo "fp17's error does not name it: $out" >&2; exit 1; }
echo "PASS"

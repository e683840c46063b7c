#!/usr/bin/env bash
# The main job launched with Accelerate's FSDP flags: SHARD_GRAD_OP and
# FULL_SHARD on 2 and 4 processes end exactly where data parallel ends
# (same accuracy and loss), the final JSON line names the strategy and the
# bytes of parameters, gradients and optimizer state this process holds
# (SHARD_GRAD_OP: the momentum buffers 1/N; FULL_SHARD: parameters and
# momentum 1/N), also under bf16; NO_SHARD is data parallel; DeepSpeed's ZeRO 1 and 3 map
# onto the same engines; sharded runs stopped and resumed from their
# checkpoints end as runs that never stopped; SHARDED_STATE_DICT parts
# written by 4 processes reload on 4, 2 and 1 and merge into the whole
# weights; HYBRID_SHARD over two launchers ("machines") trains as data
# parallel; activation checkpointing (FULL_SHARD, SHARD_GRAD_OP) trains as
# without it.
# Arguments: the accelerate binary, the train_classifier binary, Python.
set -euo pipefail
accelerate="$1"
program="$2"
python="$3"
export HF_HOME="${TEST_TMPDIR}/hf"
flags=(--epochs 3 --samples 1000)

json_of() {  # launcher flags... -- the final JSON line
  "$accelerate" launch --main_process_port 0 "$@" "$program" "${flags[@]}" 2>/dev/null |
    grep '"eval_accuracy"' | sed 's/^\[rank0\]: //'
}
field() { sed -E "s/.*\"$1\": \"?([^,\"}]+)\"?.*/\1/" <<<"$2"; }

for n in 2 4; do
  ddp="$(json_of --cpu --num_processes "$n")"
  sharded="$(json_of --num_processes "$n" --use_fsdp --fsdp_sharding_strategy SHARD_GRAD_OP)"
  echo "data parallel: $ddp"
  echo "SHARD_GRAD_OP: $sharded"
  [[ "$(field sharding "$ddp")" == none ]] || { echo "ddp says $(field sharding "$ddp")" >&2; exit 1; }
  [[ "$(field sharding "$sharded")" == SHARD_GRAD_OP ]] || { echo "not SHARD_GRAD_OP: $sharded" >&2; exit 1; }
  for key in eval_accuracy train_loss; do
    [[ "$(field $key "$ddp")" == "$(field $key "$sharded")" ]] ||
      { echo "$n processes: $key differs: $(field $key "$ddp") vs $(field $key "$sharded")" >&2; exit 1; }
  done
  # Data parallel holds the parameters P and SGD's momentum P; sharded,
  # P and its 1/N of the momentum (padded to a multiple of N floats).
  whole="$(field state_bytes_per_rank "$ddp")"
  held="$(field state_bytes_per_rank "$sharded")"
  awk -v w="$whole" -v h="$held" -v n="$n" 'BEGIN {
    p = w / 2; low = p + p / n; high = low + 4 * n;
    if (h < low || h > high) { printf "held %d, expected %d..%d\n", h, low, high; exit 1 } }' ||
    { echo "$n processes: state bytes are not P + P/N" >&2; exit 1; }
  # FULL_SHARD, each layer a unit: parameters and momentum 1/N each.
  full="$(json_of --num_processes "$n" --use_fsdp --fsdp_sharding_strategy FULL_SHARD \
    --fsdp_auto_wrap_policy TRANSFORMER_BASED_WRAP --fsdp_transformer_layer_cls_to_wrap Fp8Linear)"
  echo "FULL_SHARD: $full"
  [[ $n == 2 ]] && full2="$full" && ddp2="$ddp"
  [[ $n == 4 ]] && ddp4="$ddp"
  [[ "$(field sharding "$full")" == FULL_SHARD ]] || { echo "not FULL_SHARD: $full" >&2; exit 1; }
  for key in eval_accuracy train_loss; do
    [[ "$(field $key "$ddp")" == "$(field $key "$full")" ]] ||
      { echo "$n processes: FULL_SHARD $key differs: $(field $key "$ddp") vs $(field $key "$full")" >&2; exit 1; }
  done
  held="$(field state_bytes_per_rank "$full")"
  awk -v w="$whole" -v h="$held" -v n="$n" 'BEGIN {
    low = w / n; high = low + 3 * 2 * 4 * n;
    if (h < low || h > high) { printf "held %d, expected %d..%d\n", h, low, high; exit 1 } }' ||
    { echo "$n processes: FULL_SHARD state bytes are not 2P/N" >&2; exit 1; }
done

# FULL_SHARD under bf16: units gathered and gradients reduced in bf16 (the
# slices and optimizer float32), accuracy within a point of float32's.
bf16="$(json_of --num_processes 2 --mixed_precision bf16 --use_fsdp --fsdp_sharding_strategy FULL_SHARD \
  --fsdp_auto_wrap_policy TRANSFORMER_BASED_WRAP --fsdp_transformer_layer_cls_to_wrap Fp8Linear)"
echo "FULL_SHARD, bf16: $bf16"
[[ "$(field mixed_precision "$bf16")" == bf16 ]] || { echo "not bf16: $bf16" >&2; exit 1; }
awk -v a="$(field eval_accuracy "$bf16")" -v b="$(field eval_accuracy "$full2")" \
  'BEGIN { d = a - b; if (d < 0) d = -d; if (d > 0.01) exit 1 }' ||
  { echo "bf16 accuracy $(field eval_accuracy "$bf16") is not within a point of $(field eval_accuracy "$full2")" >&2; exit 1; }

# DeepSpeed's ZeRO stage 3 through the launcher's flags: FULL_SHARD with
# every layer a unit.
zero3="$(json_of --num_processes 2 --use_deepspeed --zero_stage 3)"
[[ "$(field sharding "$zero3")" == ZERO_3 ]] || { echo "ZeRO 3: $zero3" >&2; exit 1; }
[[ "$(field eval_accuracy "$zero3")" == "$(field eval_accuracy "$ddp2")" ]] ||
  { echo "ZeRO 3 differs from data parallel: $zero3" >&2; exit 1; }

# DeepSpeed's ZeRO stage 1, as Accelerate's launcher exports it: the same
# engine, whole gradients kept.
zero1="$(json_of --num_processes 2 --use_deepspeed --zero_stage 1)"
[[ "$(field sharding "$zero1")" == ZERO_1 ]] || { echo "ZeRO 1: $zero1" >&2; exit 1; }
[[ "$(field eval_accuracy "$zero1")" == "$(field eval_accuracy "$ddp2")" ]] ||
  { echo "ZeRO 1 differs from data parallel: $zero1" >&2; exit 1; }

no_shard="$(json_of --num_processes 2 --use_fsdp --fsdp_sharding_strategy NO_SHARD)"
[[ "$(field sharding "$no_shard")" == NO_SHARD ]] || { echo "NO_SHARD: $no_shard" >&2; exit 1; }

# HYBRID_SHARD over 2 "machines" of 2 processes on this one: sharded within
# each machine, replicated across; the same run as data parallel on 4, the
# parameters and momentum held 1/2 each.
port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
hybrid=(--num_machines 2 --main_process_ip 127.0.0.1 --main_process_port "$port" --num_processes 4
        --use_fsdp --fsdp_sharding_strategy HYBRID_SHARD
        --fsdp_auto_wrap_policy SIZE_BASED_WRAP --fsdp_min_num_params 1000)
"$accelerate" launch --machine_rank 1 "${hybrid[@]}" "$program" "${flags[@]}" >/dev/null 2>&1 &
second=$!
hybrid_json="$("$accelerate" launch --machine_rank 0 "${hybrid[@]}" "$program" "${flags[@]}" 2>/dev/null |
  grep '"eval_accuracy"' | sed 's/^\[rank0\]: //')"
wait "$second"
echo "HYBRID_SHARD, 2 x 2: $hybrid_json"
[[ "$(field sharding "$hybrid_json")" == HYBRID_SHARD ]] || { echo "HYBRID_SHARD: $hybrid_json" >&2; exit 1; }
for key in eval_accuracy train_loss; do
  [[ "$(field $key "$ddp4")" == "$(field $key "$hybrid_json")" ]] ||
    { echo "HYBRID_SHARD $key differs from data parallel on 4" >&2; exit 1; }
done
[[ "$(field state_bytes_per_rank "$hybrid_json")" == "$(field state_bytes_per_rank "$full2")" ]] ||
  { echo "HYBRID_SHARD holds $(field state_bytes_per_rank "$hybrid_json"), FULL_SHARD on 2 $(field state_bytes_per_rank "$full2")" >&2; exit 1; }

# Activation checkpointing: each unit's forward replayed in its backward,
# the run the same as without it (FULL_SHARD), and as data parallel
# (SHARD_GRAD_OP, then run on units as FSDP runs it).
checkpointed="$(json_of --num_processes 2 --use_fsdp --fsdp_sharding_strategy FULL_SHARD \
  --fsdp_auto_wrap_policy TRANSFORMER_BASED_WRAP --fsdp_transformer_layer_cls_to_wrap Fp8Linear \
  --fsdp_activation_checkpointing true)"
echo "FULL_SHARD, activation checkpointing: $checkpointed"
grad_op_checkpointed="$(json_of --num_processes 2 --use_fsdp --fsdp_sharding_strategy SHARD_GRAD_OP \
  --fsdp_auto_wrap_policy TRANSFORMER_BASED_WRAP --fsdp_transformer_layer_cls_to_wrap Fp8Linear \
  --fsdp_activation_checkpointing true)"
echo "SHARD_GRAD_OP, activation checkpointing: $grad_op_checkpointed"
[[ "$(field sharding "$grad_op_checkpointed")" == SHARD_GRAD_OP ]] ||
  { echo "not SHARD_GRAD_OP: $grad_op_checkpointed" >&2; exit 1; }
for run in "$checkpointed" "$grad_op_checkpointed"; do
  (( $(field recomputed_units "$run") > 0 )) || { echo "no unit was recomputed: $run" >&2; exit 1; }
done
(( $(field recomputed_units "$full2") == 0 )) || { echo "recomputed without checkpointing: $full2" >&2; exit 1; }
# Asked for with no unit but the root: said, not silently ignored.
out="$("$accelerate" launch --main_process_port 0 --num_processes 2 --use_fsdp \
  --fsdp_activation_checkpointing true "$program" --epochs 1 --samples 200 2>&1)"
[[ "$out" == *"activation checkpointing: the model has no unit but the root"* ]] ||
  { echo "checkpointing without units was not warned about: $out" >&2; exit 1; }
for key in eval_accuracy train_loss; do
  [[ "$(field $key "$full2")" == "$(field $key "$checkpointed")" ]] ||
    { echo "activation checkpointing changed $key: $(field $key "$full2") vs $(field $key "$checkpointed")" >&2; exit 1; }
  [[ "$(field $key "$ddp2")" == "$(field $key "$grad_op_checkpointed")" ]] ||
    { echo "SHARD_GRAD_OP with checkpointing: $key $(field $key "$grad_op_checkpointed") vs data parallel $(field $key "$ddp2")" >&2; exit 1; }
done
# Sharded state checkpoints whole (Accelerate's layout): stopped after 20
# steps and resumed, the run ends with the JSON line of one that never
# stopped.
for strategy in SHARD_GRAD_OP FULL_SHARD; do
  ckpt="${TEST_TMPDIR}/ckpt_$strategy"
  fsdp=(--num_processes 2 --use_fsdp --fsdp_sharding_strategy "$strategy"
        --fsdp_auto_wrap_policy SIZE_BASED_WRAP --fsdp_min_num_params 1000)
  whole="$(json_of "${fsdp[@]}")"
  "$accelerate" launch --main_process_port 0 "${fsdp[@]}" "$program" "${flags[@]}" \
    --checkpointing_steps 20 --output_dir "$ckpt" --stop_after_steps 20 >/dev/null 2>&1
  resumed="$("$accelerate" launch --main_process_port 0 "${fsdp[@]}" "$program" "${flags[@]}" \
    --output_dir "$ckpt" --resume_from_checkpoint latest 2>/dev/null |
    grep '"eval_accuracy"' | sed 's/^\[rank0\]: //')"
  [[ "$resumed" == "$whole" ]] ||
    { echo "$strategy resumed: $resumed"$'\n'"whole:   $whole" >&2; exit 1; }
  # The checkpoint is Accelerate's unsharded layout: one model file.
  [[ -f "$ckpt/step_20/model.safetensors" ]] ||
    { echo "$strategy: no whole model.safetensors in $(ls "$ckpt"/step_20)" >&2; exit 1; }
done
# SHARDED_STATE_DICT: each of 4 processes writes its parts; the checkpoint
# resumes exactly on 4, and loads on 2 and on 1 exactly as the unsharded
# (FULL_STATE_DICT) checkpoint of the same run does; merge-weights turns the
# parts into the same weights the unsharded checkpoint holds.
full4=(--num_processes 4 --use_fsdp --fsdp_sharding_strategy FULL_SHARD
       --fsdp_auto_wrap_policy SIZE_BASED_WRAP --fsdp_min_num_params 1000)
parts="${TEST_TMPDIR}/parts"
whole_ckpt="${TEST_TMPDIR}/whole"
FSDP_STATE_DICT_TYPE=SHARDED_STATE_DICT "$accelerate" launch --main_process_port 0 "${full4[@]}" \
  "$program" "${flags[@]}" --checkpointing_steps 20 --output_dir "$parts" --stop_after_steps 20 >/dev/null 2>&1
"$accelerate" launch --main_process_port 0 "${full4[@]}" "$program" "${flags[@]}" \
  --checkpointing_steps 20 --output_dir "$whole_ckpt" --stop_after_steps 20 >/dev/null 2>&1
for p in 0 1 2 3; do
  for stem in model optimizer; do
    [[ -f "$parts/step_20/$stem.rank-0000$p-of-00004.safetensors" ]] ||
      { echo "no $stem part of process $p: $(ls "$parts/step_20")" >&2; exit 1; }
  done
done
[[ ! -f "$parts/step_20/model.safetensors" ]] || { echo "SHARDED_STATE_DICT wrote a whole model" >&2; exit 1; }
uninterrupted="$(json_of "${full4[@]}")"
resumed="$(FSDP_STATE_DICT_TYPE=SHARDED_STATE_DICT "$accelerate" launch --main_process_port 0 "${full4[@]}" \
  "$program" "${flags[@]}" --output_dir "$parts" --resume_from_checkpoint latest 2>/dev/null |
  grep '"eval_accuracy"' | sed 's/^\[rank0\]: //')"
[[ "$resumed" == "$uninterrupted" ]] ||
  { echo "parts resumed on 4: $resumed"$'\n'"uninterrupted:     $uninterrupted" >&2; exit 1; }
for n in 2 1; do
  fewer=(--num_processes "$n" --use_fsdp --fsdp_sharding_strategy FULL_SHARD
         --fsdp_auto_wrap_policy SIZE_BASED_WRAP --fsdp_min_num_params 1000)
  for from in parts whole; do
    rm -rf "${TEST_TMPDIR}/resume_$from"
    cp -r "${TEST_TMPDIR}/$([[ $from == parts ]] && echo parts || echo whole)" "${TEST_TMPDIR}/resume_$from"
  done
  a="$("$accelerate" launch --main_process_port 0 "${fewer[@]}" "$program" "${flags[@]}" \
    --output_dir "${TEST_TMPDIR}/resume_parts" --resume_from_checkpoint latest 2>/dev/null |
    grep '"eval_accuracy"' | sed 's/^\[rank0\]: //')"
  b="$("$accelerate" launch --main_process_port 0 "${fewer[@]}" "$program" "${flags[@]}" \
    --output_dir "${TEST_TMPDIR}/resume_whole" --resume_from_checkpoint latest 2>/dev/null |
    grep '"eval_accuracy"' | sed 's/^\[rank0\]: //')"
  echo "4 -> $n processes: parts $a"
  [[ -n "$a" && "$a" == "$b" ]] ||
    { echo "4 -> $n: from parts: $a"$'\n'"4 -> $n: from whole: $b" >&2; exit 1; }
done
"$accelerate" merge-weights "$parts/step_20" "${TEST_TMPDIR}/merged" >/dev/null
"$python" - "${TEST_TMPDIR}/merged/model.safetensors" "$whole_ckpt/step_20/model.safetensors" <<'PY'
import sys
from safetensors.torch import load_file
merged, whole = load_file(sys.argv[1]), load_file(sys.argv[2])
assert merged.keys() == whole.keys(), (sorted(merged), sorted(whole))
for name, tensor in whole.items():
    assert merged[name].shape == tensor.shape and merged[name].equal(tensor), name
print("merged parts equal the whole checkpoint:", len(whole), "tensors")
PY
echo "PASS"

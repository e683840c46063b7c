#!/usr/bin/env bash
# train_lm under our launcher:
#  1. 2 processes x batch 4 give the per-step losses of 1 process x batch 8
#     (to 1e-5 absolute) for 3 steps at full learning rate, although their
#     padded shapes and per-process token counts differ;
#  2. a short 2-process run with gradient accumulation learns: the training
#     loss ends far below its start and the evaluation perplexity is finite
#     and far below 256 (uniform bytes);
#  3. bad flags are refused with a message naming the value;
#  4. train_lm_peer.py under Python Accelerate's launcher is the same work:
#     with the same seed it builds the same initial weights (one LibTorch,
#     the same draws in the same order) and reads the same batches, so its
#     losses and perplexity equal ours (to 1e-5 relative);
#  5. a run stopped after a checkpoint and resumed from it (`latest`, mid-
#     epoch, accumulating) ends with the results of one that never stopped,
#     exactly (all but the timings).
# Arguments: the accelerate binary, the train_lm binary, the corpus, the
# peers' Python, train_lm_peer.py.
set -euo pipefail
accelerate="$1"
program="$2"
text="$3"
python="$4"
peer="$5"
export HF_HOME="${TEST_TMPDIR}/hf"

# The final JSON line of a run: run_json NUM_PROCESSES [launch flags --]
# train_lm flags.
run_json() {
  local processes="$1" line
  shift
  local launch_flags=()
  if [[ " $* " == *" -- "* ]]; then
    while [[ "$1" != "--" ]]; do launch_flags+=("$1"); shift; done
    shift
  fi
  line="$("$accelerate" launch -q --cpu --num_processes "$processes" \
    --main_process_port 0 \
    --num_cpu_threads_per_process 1 "${launch_flags[@]}" \
    "$program" --text "$text" "$@" | grep '"first_losses"' | tail -1)"
  [[ "$line" == *"\"num_processes\": ${processes},"* ]] ||
    { echo "not ${processes} processes: $line" >&2; return 1; }
  echo "$line"
}

field() {  # field JSON NAME: a number's text.
  sed -E "s/.*\"$2\": ([^,}]+).*/\1/" <<<"$1"
}

losses() {  # The first_losses array, one per line.
  sed -E 's/.*"first_losses": \[([^]]*)\].*/\1/' <<<"$1" | tr -d ' ' | tr ',' '\n'
}

# 1. Equal global batches, equal losses.
start=$SECONDS
two="$(run_json 2 --batch_size 4 --max_steps 3 --warmup_steps 1 --log_every 1)"
one="$(run_json 1 --batch_size 8 --max_steps 3 --warmup_steps 1 --log_every 1)"
echo "2 x 4: $two"
echo "1 x 8: $one"
paste <(losses "$two") <(losses "$one") | awk '
  { n++; d = $1 - $2; if (d < 0) d = -d
    printf "step %d: %s vs %s (|diff| %.3g)\n", n, $1, $2, d
    if (d > 1e-5) bad = 1
    if (n == 1) first = $1; last = $1 }
  END {
    if (n != 3) { print "expected 3 losses, got " n > "/dev/stderr"; exit 1 }
    if (bad) { print "2 x 4 and 1 x 8 differ by more than 1e-5" > "/dev/stderr"; exit 1 }
    # The steps moved the weights, so the updates were compared too.
    if (first - last < 0.01) {
      print "the loss did not move: " first " -> " last > "/dev/stderr"; exit 1
    }
  }'
echo "equality runs: $((SECONDS - start)) s"

# 2. A short run learns (accumulating 2 batches per step, warm-up 20; it
# stops mid-epoch, at --max_steps).
start=$SECONDS
run="$(run_json 2 --gradient_accumulation_steps 2 -- --epochs 100 --max_steps 150 \
  --warmup_steps 20 --log_every 20)"
echo "$run"
echo "training run: $((SECONDS - start)) s"
[[ "$run" == *'"gradient_accumulation_steps": 2,'* &&
   "$run" == *'"steps": 150,'* ]] ||
  { echo "not 150 steps accumulating 2 batches: $run" >&2; exit 1; }
start_loss="$(losses "$run" | head -1)"
train_loss="$(field "$run" train_loss)"
perplexity="$(field "$run" eval_perplexity)"
awk -v s="$start_loss" -v t="$train_loss" -v p="$perplexity" 'BEGIN {
  if (!(t < 0.6 * s)) {
    print "train loss " t " is not below 0.6 x its start " s > "/dev/stderr"; exit 1
  }
  if (!(p > 1 && p < 40)) {
    print "eval perplexity " p " is not in (1, 40)" > "/dev/stderr"; exit 1
  }
}'

# 2b. The same transformer under FULL_SHARD, its blocks the units, on 2 and
# 4 processes: the losses of data parallel (to 1e-5), and the parameters
# and AdamW state held per process 1/N of data parallel's (padding aside);
# on 2, with activation checkpointing too.
for n in 2 4; do
  lm_flags=(--batch_size 4 --max_steps 12 --warmup_steps 2 --log_every 4)
  dp="$(run_json "$n" -- "${lm_flags[@]}")"
  fsdp="$("$accelerate" launch -q --num_processes "$n" --main_process_port 0 \
    --num_cpu_threads_per_process 1 --use_fsdp --fsdp_sharding_strategy FULL_SHARD \
    --fsdp_auto_wrap_policy TRANSFORMER_BASED_WRAP --fsdp_transformer_layer_cls_to_wrap Block \
    "$program" --text "$text" "${lm_flags[@]}" | grep '"first_losses"' | tail -1)"
  echo "FULL_SHARD on $n: $fsdp"
  [[ "$fsdp" == *'"sharding": "FULL_SHARD"'* ]] || { echo "not FULL_SHARD: $fsdp" >&2; exit 1; }
  paste <(losses "$dp"; field "$dp" train_loss) <(losses "$fsdp"; field "$fsdp" train_loss) | awk '
    { d = $1 - $2; if (d < 0) d = -d; if (d > 1e-5 * ($1 < 0 ? -$1 : $1) + 1e-6) bad = 1 }
    END { if (bad || NR < 2) { print "FULL_SHARD losses differ from data parallel" > "/dev/stderr"; exit 1 } }'
  awk -v w="$(field "$dp" state_bytes_per_rank)" -v h="$(field "$fsdp" state_bytes_per_rank)" -v n="$n" 'BEGIN {
    if (h * n < w || h * n > w + 3 * 3 * 4 * n * n) {
      printf "FULL_SHARD holds %d per process; data parallel %d on %d processes\n", h, w, n > "/dev/stderr"; exit 1 } }'
  [[ $n == 2 ]] || continue
  # With activation checkpointing each block's forward (attention, dropout)
  # is replayed in its backward: the same losses, to the last digit.
  checkpointed="$("$accelerate" launch -q --num_processes "$n" --main_process_port 0 \
    --num_cpu_threads_per_process 1 --use_fsdp --fsdp_sharding_strategy FULL_SHARD \
    --fsdp_auto_wrap_policy TRANSFORMER_BASED_WRAP --fsdp_transformer_layer_cls_to_wrap Block \
    --fsdp_activation_checkpointing true \
    "$program" --text "$text" "${lm_flags[@]}" | grep '"first_losses"' | tail -1)"
  echo "FULL_SHARD, activation checkpointing, on $n: $checkpointed"
  [[ "$(losses "$checkpointed")" == "$(losses "$fsdp")" ]] ||
    { echo "activation checkpointing changed the losses" >&2; exit 1; }
  (( $(field "$checkpointed" recomputed_units) > 0 )) ||
    { echo "no block was recomputed: $checkpointed" >&2; exit 1; }
done

# 3. Bad flags: a non-zero exit and a message naming the value.
refused() {
  local expected="$1" out
  shift
  if out="$("$program" "$@" 2>&1)"; then
    echo "accepted: $*" >&2; exit 1
  fi
  [[ "$out" == *"$expected"* ]] ||
    { echo "$*: the error does not say '$expected': $out" >&2; exit 1; }
}
refused '--text: cannot read "/nonexistent/corpus.txt"' --text /nonexistent/corpus.txt
refused '--max_length: 1 is below 2' --text "$text" --max_length 1
refused '--batch_size: 0 is below 1' --text "$text" --batch_size 0
refused '--n_embd 64 must be a positive multiple of --n_head 5' --text "$text" --n_head 5
# Under the launcher too: every rank refuses, the launch fails.
if "$accelerate" launch -q --cpu --num_processes 2 "$program" --text "$text" \
  --batch_size 0 >/dev/null 2>&1; then
  echo "the launch of --batch_size 0 succeeded" >&2; exit 1
fi

# 4. The Python peer, accumulating 2 batches per step on both sides.
start=$SECONDS
flags=(--batch_size 4 --max_steps 3 --warmup_steps 1 --log_every 1)
ours="$(run_json 2 --gradient_accumulation_steps 2 -- "${flags[@]}")"
port="$("$python" -c 'import socket; s = socket.socket()
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
theirs="$("$python" -m accelerate.commands.launch --multi_gpu --num_processes 2 \
  --num_machines 1 --mixed_precision no --dynamo_backend no \
  --main_process_port "$port" "$peer" --text "$text" "${flags[@]}" \
  --gradient_accumulation_steps 2 | grep '"first_losses"' | tail -1)"
echo "ours:   $ours"
echo "theirs: $theirs"
[[ "$theirs" == *'"num_processes": 2,'* &&
   "$theirs" == *'"gradient_accumulation_steps": 2,'* ]] ||
  { echo "the peer did not run 2 processes accumulating 2: $theirs" >&2; exit 1; }
paste <(losses "$ours"; field "$ours" eval_perplexity) \
  <(losses "$theirs"; field "$theirs" eval_perplexity) | awk '
  { n++; d = ($1 - $2) / $2; if (d < 0) d = -d
    if (d > 1e-5) { print "line " n ": ours " $1 ", the peer " $2 > "/dev/stderr"; bad = 1 } }
  END { if (n != 4 || bad) { print "train_lm and its peer differ" > "/dev/stderr"; exit 1 } }'
echo "peer runs: $((SECONDS - start)) s"

# 5. Stopped and resumed.
start=$SECONDS
work="${TEST_TMPDIR}/resume"
rm -rf "$work"
untimed() {
  sed -E 's/"tokens_per_second": [^,]+, "train_seconds": [^,]+, //' <<<"$1"
}
flags=(--gradient_accumulation_steps 2 -- --epochs 3 --max_steps 30
  --warmup_steps 4 --log_every 1 --checkpointing_steps 8)
full="$(untimed "$(run_json 2 "${flags[@]}" --output_dir "$work/full")")"
"$accelerate" launch -q --cpu --num_processes 2 --num_cpu_threads_per_process 1 \
  --main_process_port 0 --gradient_accumulation_steps 2 "$program" --text "$text" --epochs 3 \
  --max_steps 30 --warmup_steps 4 --log_every 1 --checkpointing_steps 8 \
  --output_dir "$work/stopped" --stop_after_steps 27 >/dev/null
[[ -d "$work/stopped/step_24" && ! -d "$work/stopped/step_32" ]] ||
  { echo "the stopped run left: $(ls "$work/stopped")" >&2; exit 1; }
resumed="$(untimed "$(run_json 2 "${flags[@]}" --output_dir "$work/stopped" \
  --resume_from_checkpoint latest)")"
echo "uninterrupted: $full"
echo "resumed:       $resumed"
[[ "$resumed" == "$full" ]] ||
  { echo "the resumed run ends otherwise than the uninterrupted one" >&2; exit 1; }
echo "resume runs: $((SECONDS - start)) s"
echo "PASS"

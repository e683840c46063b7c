#!/usr/bin/env bash
# The main job on 2 processes under our launcher, stopped and resumed from
# its checkpoints (Accelerate's example flags): it ends with the same final
# JSON line as the run that never stopped; a bad --checkpointing_steps is
# refused, naming it.
# Arguments: the accelerate binary, the train_classifier binary.
set -euo pipefail
accelerate="$1"
program="$2"
export HF_HOME="${TEST_TMPDIR}/hf"
work="${TEST_TMPDIR}/resume"
rm -rf "$work" && mkdir -p "$work"

# Any free port (0): tests running at once must not meet at 29500. A failed
# run says so (callers that expect a failure test the status themselves).
run() {
  "$accelerate" launch --cpu --num_processes 2 --main_process_port 0 \
    "$program" --epochs 4 "$@" 2>&1
}
must_run() {
  local out
  out="$(run "$@")" || { echo "run $* failed: $out" >&2; return 1; }
  echo "$out"
}
json_of() { grep '"eval_accuracy"' <<<"$1" | tail -1; }

full="$(json_of "$(must_run --checkpointing_steps 40 --output_dir "$work/full")")"
[[ -n "$full" ]] || { echo "the uninterrupted run printed no JSON line" >&2; exit 1; }
echo "uninterrupted: $full"
[[ -d "$work/full/step_40" && -d "$work/full/step_160" ]] ||
  { echo "no step_40 / step_160 checkpoints: $(ls "$work/full")" >&2; exit 1; }

# 4 epochs of 47 batches on 2 processes: stop at batch 100 (mid-epoch 3),
# after step_80 was saved.
out="$(must_run --checkpointing_steps 40 --output_dir "$work/steps" --stop_after_steps 100)"
[[ -z "$(json_of "$out")" ]] || { echo "the stopped run finished: $out" >&2; exit 1; }
out="$(must_run --checkpointing_steps 40 --output_dir "$work/steps" --resume_from_checkpoint latest)"
[[ "$out" == *"resumed from $work/steps/step_80 at step 80"* ]] ||
  { echo "did not resume from step_80: $out" >&2; exit 1; }
resumed="$(json_of "$out")"
echo "resumed from step_80: $resumed"
[[ "$resumed" == "$full" ]] || { echo "resumed run differs from $full" >&2; exit 1; }

# By epochs: stop in the third epoch, resume from epoch_1 named explicitly.
must_run --checkpointing_steps epoch --output_dir "$work/epochs" --stop_after_steps 110 >/dev/null
out="$(must_run --resume_from_checkpoint "$work/epochs/epoch_1")"
resumed="$(json_of "$out")"
echo "resumed from epoch_1: $resumed"
[[ "$resumed" == "$full" ]] || { echo "resumed run differs from $full" >&2; exit 1; }

if out="$(run --checkpointing_steps often)"; then
  echo "--checkpointing_steps often was accepted" >&2; exit 1
fi
[[ "$out" == *'--checkpointing_steps "often" is neither'* ]] ||
  { echo "the error does not name the value: $out" >&2; exit 1; }
if out="$(run --resume_from_checkpoint latest --output_dir "$work/none")"; then
  echo "resuming from an empty folder was accepted" >&2; exit 1
fi
[[ "$out" == *"no complete checkpoint in $work/none"* ]] ||
  { echo "the error does not name the folder: $out" >&2; exit 1; }
echo "PASS"

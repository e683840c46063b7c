#!/usr/bin/env bash
# The main job with Accelerate's tracking flags under our launcher on 2
# processes: TensorBoard, JSON Lines and CSV logs read back by TensorBoard's
# reader and Python (train_classifier_tracking_check.py) hold every step
# once and only the main process's files; a run stopped and resumed from
# its checkpoint continues the same logs; an unknown tracker is refused,
# naming it.
# Arguments: the accelerate binary, the train_classifier binary, the
# .venv's Python.
set -euo pipefail
accelerate="$1"
program="$2"
python="$3"
check="$(dirname "$0")/train_classifier_tracking_check.py"
export HF_HOME="${TEST_TMPDIR}/hf"
# 1000 samples, batch 32 per process, 2 processes: 16 steps per epoch.
flags=(--epochs 3 --samples 1000 --with_tracking --report_to tensorboard,jsonl,csv)
steps=48

project="${TEST_TMPDIR}/whole"
line="$("$accelerate" launch --cpu --num_processes 2 --main_process_port 0 \
  "$program" "${flags[@]}" --project_dir "$project" | grep '"eval_accuracy"' | sed 's/^\[rank0\]: //')"
"$python" "$check" "$project/train_classifier" "$steps" 3 "$line"

# Stopped after 20 steps (checkpoint at 20), then resumed: the logs go on.
project="${TEST_TMPDIR}/resumed"
"$accelerate" launch --cpu --num_processes 2 --main_process_port 0 \
  "$program" "${flags[@]}" --project_dir "$project" \
  --checkpointing_steps 20 --output_dir "$project/ckpt" --stop_after_steps 20 >/dev/null
line="$("$accelerate" launch --cpu --num_processes 2 --main_process_port 0 \
  "$program" "${flags[@]}" --project_dir "$project" \
  --output_dir "$project/ckpt" --resume_from_checkpoint latest | grep '"eval_accuracy"' | sed 's/^\[rank0\]: //')"
"$python" "$check" "$project/train_classifier" "$steps" 3 "$line"

# A tracker that does not exist.
if out="$("$accelerate" launch --cpu --num_processes 2 --main_process_port 0 \
  "$program" --with_tracking --report_to tensorbored 2>&1)"; then
  echo "tensorbored was accepted" >&2; exit 1
fi
[[ "$out" == *'"tensorbored" is not one of tensorboard, mlflow, jsonl, csv, all'* ]] ||
  { echo "the error does not name tensorbored: $out" >&2; exit 1; }
echo "PASS"

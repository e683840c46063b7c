#!/usr/bin/env bash
# The main job with Accelerate's tracking flags under our launcher on 2
# processes: TensorBoard, JSON Lines and CSV logs read back by TensorBoard's
# reader and Python (train_classifier_tracking_check.py) hold every step
# once and only the main process's files; a run stopped and resumed from
# its checkpoint continues the same logs; a real MLflow server (from .venv,
# on 127.0.0.1) receives one run with every step; an unknown tracker is
# refused, naming it.
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

# MLflow: a real tracking server on 127.0.0.1 (SQLite store) receives every
# step's metrics, the params and the finished run, from the main process.
port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
setsid "$python" -m mlflow server --host 127.0.0.1 --port "$port" --workers 1 \
  --backend-store-uri "sqlite:///${TEST_TMPDIR}/mlflow.db" \
  --default-artifact-root "${TEST_TMPDIR}/artifacts" >"${TEST_TMPDIR}/mlflow.log" 2>&1 &
server=$!
trap 'kill -9 -- -$server 2>/dev/null || true' EXIT
export MLFLOW_TRACKING_URI="http://127.0.0.1:${port}"
for _ in $(seq 240); do
  "$python" -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1] + '/health', timeout=1)" \
    "$MLFLOW_TRACKING_URI" 2>/dev/null && break
  sleep 0.5
done
project="${TEST_TMPDIR}/mlflow"
line="$("$accelerate" launch --cpu --num_processes 2 --main_process_port 0 \
  "$program" --epochs 3 --samples 1000 --with_tracking --report_to mlflow,jsonl \
  --project_dir "$project" | grep '"eval_accuracy"' | sed 's/^\[rank0\]: //')"
"$python" - "$MLFLOW_TRACKING_URI" "$project/train_classifier/metrics.jsonl" "$steps" <<'PY'
import json, sys
from mlflow.tracking import MlflowClient
uri, jsonl, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = MlflowClient(uri)
experiment = client.get_experiment_by_name("train_classifier")
runs = client.search_runs([experiment.experiment_id])
assert len(runs) == 1, f"{len(runs)} runs: only the main process starts one"
run = runs[0]
assert run.info.status == "FINISHED", run.info.status
assert run.data.params["num_processes"] == "2", run.data.params
assert run.data.params["lr"] == "0.05", run.data.params
history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "train_loss")}
assert sorted(history) == list(range(1, steps + 1)), sorted(history)[:5]
logged = {}
for line in open(jsonl):
    row = json.loads(line)
    if "train_loss" in row:
        logged[row["step"]] = row["train_loss"]
assert history == logged, "MLflow's train_loss differs from the JSON Lines'"
accuracy = client.get_metric_history(run.info.run_id, "eval_accuracy")
assert len(accuracy) == 3, accuracy
print(f"OK: MLflow run {run.info.run_id} holds {len(history)} steps")
PY

# A tracker that does not exist.
if out="$("$accelerate" launch --cpu --num_processes 2 --main_process_port 0 \
  "$program" --with_tracking --report_to tensorbored 2>&1)"; then
  echo "tensorbored was accepted" >&2; exit 1
fi
[[ "$out" == *'"tensorbored" is not one of tensorboard, mlflow, jsonl, csv, all'* ]] ||
  { echo "the error does not name tensorbored: $out" >&2; exit 1; }
echo "PASS"

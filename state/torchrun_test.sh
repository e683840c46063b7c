#!/usr/bin/env bash
# Runs 2 ranks of multiprocess_worker under Python torchrun (torch 2.13 in
# .venv), which serves the store from its agent
# (TORCHELASTIC_USE_AGENT_STORE=True), and checks every rank's results.
set -euo pipefail
worker="$1"
python="$2"
if ! "$python" -c 'import torch' 2>/dev/null; then
  echo "torch is missing from .venv: run tools/setup" >&2
  exit 1
fi
log_dir="${TEST_TMPDIR:-/tmp}/torchrun_logs"
out="${TEST_TMPDIR:-/tmp}/torchrun_out.txt"
WORKER_TMPDIR="${TEST_TMPDIR:-/tmp}" OMP_NUM_THREADS=1 timeout 120 \
  "$python" -m torch.distributed.run --nnodes 1 --rdzv_backend c10d \
  --rdzv_endpoint localhost:0 --nproc_per_node 2 \
  --redirects 2 --tee 1 --log_dir "$log_dir" --no_python \
  "$worker" collectives 60 >"$out" 2>&1 || {
  echo "torchrun failed:"; cat "$out"; find "$log_dir" -name '*.log' -exec cat {} \;
  exit 1
}
expect() {
  grep -qxF "$1" "$out" || { echo "missing line: $1"; cat "$out"; exit 1; }
}
for rank in 0 1; do
  expect "[default$rank]:RESULT gather_scalar 0,1"
  expect "[default$rank]:RESULT gather 0,1,10,11"
  expect "[default$rank]:RESULT reduce_sum 3,3"
  expect "[default$rank]:RESULT broadcast_object hello from 1"
  expect "[default$rank]:RESULT barrier ok"
done
expect "[default0]:RESULT rank 0,2,0,1,0"
expect "[default1]:RESULT rank 1,2,1,0,1"
echo "torchrun ran both ranks with matching results"

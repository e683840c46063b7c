"""Python peer of //benchmarks:trackers_log: Accelerate 1.15's
`Accelerator.log` with 10 scalars per step on every process of a job, the
trackers from ACCELERATE_LOG_WITH, the folder from ACCELERATE_PROJECT_DIR
(MLflow from MLFLOW_TRACKING_URI, as its client reads it). Rank 0 prints one
JSON line: seconds per call on each rank and how long `end_training` took.

Run one copy per rank with torchrun's variables (benchmarks/trackers_log.py
does), with the .venv's Python.
"""
import argparse
import json
import os
import time

import torch
from accelerate import Accelerator


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    accelerator = Accelerator(
        cpu=True,  # gloo on CPU: without it, each process runs alone
        log_with=os.environ["ACCELERATE_LOG_WITH"],
        project_dir=os.environ["ACCELERATE_PROJECT_DIR"],
    )
    accelerator.init_trackers("trackers_log", config={"calls": 1})
    names = ["train/loss", "train/lr", "train/grad_norm", "train/tokens",
             "train/acc", "eval/loss", "eval/acc", "scaler/scale", "epoch",
             "step_seconds"]
    for step in range(10):
        accelerator.log({names[0]: 1.0 / (step + 1), names[1]: 1e-3}, step=step)
    calls = args.calls
    start = time.perf_counter()
    for step in range(calls):
        x = float(step)
        accelerator.log({
            names[0]: 1.0 / (x + 1), names[1]: 1e-3 * (1 - x / calls),
            names[2]: 0.5 + x * 1e-6, names[3]: x * 512, names[4]: 0.9,
            names[5]: 2.0 - x * 1e-5, names[6]: 0.8, names[7]: 65536.0,
            names[8]: x / 1000, names[9]: 0.01,
        }, step=step + 10)
    per_call = (time.perf_counter() - start) / calls
    # (end_training also ends the process group: gather first.)
    gathered = accelerator.gather(torch.tensor([per_call], dtype=torch.float64))
    end_start = time.perf_counter()
    accelerator.end_training()
    end_seconds = time.perf_counter() - end_start
    if accelerator.is_main_process:
        print(json.dumps({"seconds_per_call": gathered.tolist(), "calls": calls,
                          "end_training_seconds": end_seconds}), flush=True)


if __name__ == "__main__":
    main()

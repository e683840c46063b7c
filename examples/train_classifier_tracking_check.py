"""Checks what train_classifier --with_tracking left in its project folder,
reading it as users' tools do: TensorBoard's own event reader, Python's json
and csv. Arguments: the run folder (<project_dir>/train_classifier), the
number of training steps, the epochs, the final JSON line of the run.

Every step's train_loss and lr is there exactly once (a stopped and resumed
run included), the same in every format; eval_accuracy once per epoch,
the last one the JSON line's; the hyperparameters; only the main process's
files.
"""

import csv
import glob
import json
import math
import os
import sys

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2


def fail(message):
    raise SystemExit(f"FAIL: {message}")


def main(folder, steps, epochs, final_line):
    steps, epochs = int(steps), int(epochs)
    final = json.loads(final_line)

    # Only the main process writes: no per-process files.
    names = sorted(os.listdir(folder))
    if any(".1." in name for name in names):
        fail(f"another process wrote into {folder}: {names}")

    # JSON Lines.
    jsonl = {}
    evals = []
    for line in open(os.path.join(folder, "metrics.jsonl")):
        row = json.loads(line)
        if "train_loss" in row:
            if row["step"] in jsonl:
                fail(f"step {row['step']} logged twice")
            jsonl[row["step"]] = (row["train_loss"], row["lr"])
        if "eval_accuracy" in row:
            evals.append((row["epoch"], row["eval_accuracy"]))
    if sorted(jsonl) != list(range(1, steps + 1)):
        fail(f"jsonl steps {min(jsonl)}..{max(jsonl)} ({len(jsonl)}), "
             f"expected 1..{steps}")
    if [e for e, _ in evals] != list(range(1, epochs + 1)):
        fail(f"eval epochs {[e for e, _ in evals]}")
    if abs(evals[-1][1] - final["eval_accuracy"]) > 1e-4:
        fail(f"last eval_accuracy {evals[-1][1]} vs {final['eval_accuracy']}")
    config = json.load(open(os.path.join(folder, "config.json")))
    if config["num_processes"] != 2 or config["epochs"] != epochs:
        fail(f"config.json {config}")

    # CSV: the same values.
    rows = list(csv.DictReader(open(os.path.join(folder, "metrics.csv"))))
    losses = {int(r["step"]): float(r["value"]) for r in rows
              if r["name"] == "train_loss"}
    if losses != {s: v[0] for s, v in jsonl.items()}:
        fail("csv train_loss differs from jsonl")

    # TensorBoard: one event file (possibly two after a resume: one per
    # run), every step.
    events = glob.glob(os.path.join(folder, "events.out.tfevents.*"))
    if not events:
        fail("no event file")
    acc = event_accumulator.EventAccumulator(
        folder, size_guidance={event_accumulator.SCALARS: 0,
                               event_accumulator.TENSORS: 0})
    acc.Reload()
    tb = {e.step: e.value for e in acc.Scalars("train_loss")}
    if sorted(tb) != list(range(1, steps + 1)):
        fail(f"tensorboard train_loss has {len(tb)} steps, expected {steps}")
    for step, (loss, lr) in jsonl.items():
        if not math.isclose(tb[step], loss, rel_tol=1e-6, abs_tol=1e-7):
            fail(f"step {step}: tensorboard {tb[step]} vs jsonl {loss}")
    tb_lr = {e.step: e.value for e in acc.Scalars("lr")}
    if not math.isclose(tb_lr[steps], jsonl[steps][1], rel_tol=1e-6):
        fail("lr differs")
    accuracies = [e.value for e in acc.Scalars("eval_accuracy")]
    if len(accuracies) != epochs:
        fail(f"tensorboard has {len(accuracies)} eval_accuracy values")
    content = acc.SummaryMetadata("_hparams_/session_start_info")
    data = plugin_data_pb2.HParamsPluginData.FromString(
        content.plugin_data.content)
    hparams = data.session_start_info.hparams
    if hparams["num_processes"].number_value != 2 or \
            hparams["mixed_precision"].string_value != final["mixed_precision"]:
        fail(f"hparams {hparams}")
    print(f"OK: {steps} steps, {epochs} epochs, {len(events)} event file(s)")


if __name__ == "__main__":
    main(*sys.argv[1:])

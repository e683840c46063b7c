"""Gradient accumulation batch by batch against the real Python Accelerate.

Runs sync_trace_peer.py (Accelerate 1.15 on 2 processes) and our sync_trace
(the Accelerator on 2 ranks) over the same 48 configurations, and compares,
for every batch: whether gradients synchronize, whether they were all-reduced,
the optimizer's real steps, the scheduler's steps, whether zero_grad cleared
the gradients, and the end of the data loader; then the final weights.

One known difference is not compared: Accelerate's dispatcher reports a
remainder of -1 until its last batch, ours knows it from the start; it is
compared where it matters (the last batch, and every batch without
dispatch).

Usage: sync_trace_test.py OUR_SYNC_TRACE
"""

import json
import math
import os
import subprocess
import sys

EXACT = ("sync", "reduced", "end", "opt_steps", "sched_steps", "grad_zero")


def run(command):
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{command[0]} failed ({result.returncode}):\n{result.stderr}")
    return json.loads(result.stdout)


def close(a, b):
    return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5)


def main():
    peer = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "sync_trace_peer.py")
    theirs = run([sys.executable, peer])["configs"]
    ours = run([sys.argv[1]])["configs"]
    if len(theirs) != len(ours):
        sys.exit(f"{len(ours)} configurations here, {len(theirs)} in Accelerate")
    failures = []
    keys = ("num_steps", "split_batches", "dispatch_batches", "sync_each_batch",
            "sync_with_dataloader")
    for t, o in zip(theirs, ours):
        name = " ".join(f"{k}={t[k]}" for k in keys)
        if [o[k] for k in keys] != [t[k] for k in keys]:
            sys.exit(f"configuration order differs at {name}")
        if len(t["batches"]) != len(o["batches"]):
            failures.append(f"{name}: {len(o['batches'])} batches, Accelerate "
                            f"{len(t['batches'])}")
            continue
        dispatch = t["dispatch_batches"]
        for tb, ob in zip(t["batches"], o["batches"]):
            where = f"{name} epoch {tb['epoch']} batch {tb['index']}"
            fields = list(EXACT) + ["samples"]
            if not dispatch or tb["end"]:
                fields += ["remainder"]
            for field in fields:
                if tb[field] != ob[field]:
                    failures.append(f"{where}: {field} is {ob[field]}, "
                                    f"Accelerate {tb[field]}")
        for a, b in zip(o["weight"] + [o["bias"]], t["weight"] + [t["bias"]]):
            if not close(a, b):
                failures.append(f"{name}: weights {o['weight']} {o['bias']}, "
                                f"Accelerate {t['weight']} {t['bias']}")
                break
    for failure in failures:
        print(failure)
    print(f"{len(ours)} configurations compared, {len(failures)} differences")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

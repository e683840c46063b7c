#!/usr/bin/env python3
"""Side-by-side: reading a 20000 x 20 dataset in batches of 256 with our
PreparedDataLoader, LibTorch's DataLoader and Python's DataLoader +
DistributedSampler (torch 2.13 in .venv), plus skip_first_batches over 10^6
batches. Writes the table between the `data-loader` markers of BENCHMARKS.md.

    bazel build //data:data_loader_benchmark && benchmarks/data_loader.py
"""
import argparse
import json
import os
import subprocess
import sys

from report import PYTHON, ROOT, publish

OURS = ROOT / "bazel-bin" / "data" / "data_loader_benchmark"
PEER = ROOT / "benchmarks" / "data_loader_peer.py"
BATCHES = (20000 + 255) // 256


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if not OURS.exists():
        sys.exit("build first: bazel build //data:data_loader_benchmark")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ours = json.loads(subprocess.run(
        [str(OURS), "--benchmark_format=json", "--benchmark_min_time=0.5"],
        env=env, check=True, capture_output=True, text=True).stdout)
    epoch = {b["name"]: b["real_time"] * 1e-6 for b in ours["benchmarks"]}
    peer = {}
    for line in subprocess.run([PYTHON, str(PEER)], env=env, check=True,
                               capture_output=True, text=True).stdout.split("\n"):
        if line.strip():
            row = json.loads(line)
            peer[row["name"]] = row["seconds"]

    def per_batch(seconds):
        return "%.2f us" % (seconds / BATCHES * 1e6)

    ours_loader = epoch["BM_PreparedDataLoader/0"]
    rows = [
        ("ours: PreparedDataLoader (no workers)", ours_loader),
        ("ours: PreparedDataLoader (2 prefetch workers)",
         epoch["BM_PreparedDataLoader/2"]),
        ("LibTorch DataLoader, batched dataset (index_select)",
         epoch["BM_LibTorchDataLoaderBatched"]),
        ("LibTorch DataLoader, per-example dataset + Stack",
         epoch["BM_LibTorchDataLoaderPerExample"]),
        ("C++ slicing (lower bound)", epoch["BM_Slicing"]),
        ("Python DataLoader + DistributedSampler",
         peer["DataLoader+DistributedSampler"]),
        ("Python slicing", peer["slicing"]),
    ]
    lines = ["| reader | per batch | ours / it |", "|---|---|---|"]
    for name, seconds in rows:
        lines.append("| %s | %s | %.3f |" % (name, per_batch(seconds),
                                           ours_loader / seconds))
    skip_us = epoch["BM_SkipFirstBatches"] * 1e6
    lines += ["", "`SkipBatches(999999)` then the next batch, on a loader "
              "of 10^6 batches: **%.1f us** (goal: under 10 ms)." % skip_us]
    publish("data-loader", "1 process, OMP_NUM_THREADS=1", "\n".join(lines),
            write=not args.no_write)


if __name__ == "__main__":
    main()

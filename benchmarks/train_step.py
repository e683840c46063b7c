#!/usr/bin/env python3
"""Side-by-side training step: the Accelerator (ours) against Python
Accelerate 1.15's Accelerator (DDP; torch 2.13 in .venv) on 2 processes over gloo,
the same 3.2M-parameter MLP and batch, and each alone on one process without
synchronization; alternating rounds, the best of each counts. Writes the
table between the `train-step` markers of BENCHMARKS.md.

    bazel build //benchmarks:train_step && benchmarks/train_step.py
"""
import json

from report import PYTHON, ROOT, publish, round_args, spawn_ranks

OURS = ROOT / "bazel-bin" / "benchmarks" / "train_step"
PEER = ROOT / "benchmarks" / "train_step_peer.py"


def run(argv, world):
    # Over gloo on CPU, like the peer, even where GPUs exist.
    return json.loads(spawn_ranks(argv, world, {"ACCELERATE_USE_CPU": "1"})
                      .strip().splitlines()[-1])


def main():
    args = round_args(__doc__, OURS, "//benchmarks:train_step")
    best = {}
    for _ in range(args.rounds):
        for name, argv, world in (("ours2", [str(OURS)], 2),
                                  ("peer2", [PYTHON, str(PEER)], 2),
                                  ("ours1", [str(OURS)], 1),
                                  ("peer1", [PYTHON, str(PEER)], 1)):
            result = run(argv, world)
            if name not in best or result["step_seconds"] < best[name]["step_seconds"]:
                best[name] = result
    ms = lambda name: best[name]["step_seconds"] * 1e3
    allreduce = best["ours2"]["allreduce_seconds"] * 1e3
    lines = [
        "| run | step time | ours / Python |",
        "|---|---|---|",
        "| 2 processes, ours (Accelerator, bucketed Reducer) | %.1f ms | %.2f |"
        % (ms("ours2"), ms("ours2") / ms("peer2")),
        "| 2 processes, Python Accelerate 1.15 Accelerator (DDP) | %.1f ms | |" % ms("peer2"),
        "| 1 process, ours, no sync | %.1f ms | %.2f |"
        % (ms("ours1"), ms("ours1") / ms("peer1")),
        "| 1 process, Python Accelerate, no DDP | %.1f ms | |" % ms("peer1"),
        "",
        "Sync overhead (ours, 2 processes minus 1 process): %.1f ms; one "
        "all-reduce of all %.1f MB of gradients alone: %.1f ms."
        % (ms("ours2") - ms("ours1"),
           best["ours2"]["parameters"] * 4 / 1e6, allreduce),
    ]
    publish("train-step",
            "OMP_NUM_THREADS=1, best of %d alternating rounds" % args.rounds,
            "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    main()

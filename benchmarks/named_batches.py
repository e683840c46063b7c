#!/usr/bin/env python3
"""Side-by-side: per-batch cost of a prepared loader on named-tensor batches
of padded variable-length sequences (4096 sequences of 16-128 tokens, 32 per
batch, {input_ids, labels, attention_mask}), ours against Python Accelerate
1.15's prepared DataLoader, on 1 and 2 processes; alternating rounds, the
best of each counts. Writes the table between the `named-batches` markers of
BENCHMARKS.md.

    bazel build //benchmarks:named_batches && benchmarks/named_batches.py
"""
import json

from report import PYTHON, ROOT, publish, round_args, spawn_ranks

OURS = ROOT / "bazel-bin" / "benchmarks" / "named_batches"
PEER = ROOT / "benchmarks" / "named_batches_peer.py"


def main():
    args = round_args(__doc__, OURS, "//benchmarks:named_batches")
    best = {}
    for _ in range(args.rounds):
        for world in (1, 2):
            for who, argv in (("ours", [str(OURS)]),
                              ("accelerate", [PYTHON, str(PEER)])):
                row = json.loads(spawn_ranks(argv, world).strip().splitlines()[-1])
                key = (world, who)
                best[key] = min(best.get(key, 1e30), row["per_batch_us"])
    lines = ["| processes | ours, per batch | Python Accelerate, per batch | "
             "Accelerate / ours |", "|---|---|---|---|"]
    for world in (1, 2):
        ours, theirs = best[(world, "ours")], best[(world, "accelerate")]
        lines.append("| %d | %.1f us | %.1f us | **%.1fx** |"
                     % (world, ours, theirs, theirs / ours))
    publish("named-batches", "OMP_NUM_THREADS=1, best of %d rounds" % args.rounds,
            "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Side-by-side: tokens per second of the language-model example
(//examples:train_lm, a byte-level GPT-style model on real text, 2
processes, padded named batches) against the same model, data, batches and
loss trained by Python Accelerate 1.15 (examples/train_lm_peer.py); one
intra-op thread per process; alternating rounds, the best of each counts.
Writes the table between the `train-lm` markers of BENCHMARKS.md.

    bazel build //examples:train_lm && benchmarks/train_lm.py
"""
import json

from report import PYTHON, ROOT, publish, round_args, spawn_ranks

OURS = ROOT / "bazel-bin" / "examples" / "train_lm"
PEER = ROOT / "examples" / "train_lm_peer.py"
TEXT = ROOT / "examples" / "data" / "licenses.txt"
STEPS = 200


def run(argv):
    return json.loads(spawn_ranks(argv, 2).strip().splitlines()[-1])


def main():
    args = round_args(__doc__, OURS, "//examples:train_lm")
    common = ["--text", str(TEXT), "--max_steps", str(STEPS)]
    best = {}
    for _ in range(args.rounds):
        for who, argv in (("ours", [str(OURS)] + common),
                          ("accelerate", [PYTHON, str(PEER)] + common)):
            result = run(argv)
            if result["tokens_per_second"] > best.get(who, {}).get(
                    "tokens_per_second", 0):
                best[who] = result
    ours, theirs = best["ours"], best["accelerate"]
    lines = ["| trainer | tokens/s | train loss | eval perplexity |",
             "|---|---|---|---|"]
    for name, row in (("ours: `train_lm`", ours),
                      ("Python Accelerate: `train_lm_peer.py`", theirs)):
        lines.append("| %s | %.0f | %.4f | %.3f |" % (
            name, row["tokens_per_second"], row["train_loss"],
            row["eval_perplexity"]))
    lines += ["", "Ours / Accelerate: **%.2fx** tokens per second (%d optimizer "
              "steps, batch 16 per process)." % (
                  ours["tokens_per_second"] / theirs["tokens_per_second"],
                  STEPS)]
    publish("train-lm", "2 processes, OMP_NUM_THREADS=1, best of %d rounds"
            % args.rounds, "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    main()

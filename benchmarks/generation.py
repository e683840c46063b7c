#!/usr/bin/env python3
"""Generation speed of the Big Model Inference example
(examples/gpt_generate: a GPT-2-style model, 12 blocks of width 512,
146 MB in float32, greedy decoding without a KV cache) with 0%, about 50%
and about 90% of its weights offloaded to disk, with and without prefetch,
the checkpoint's pages either left in the page cache ("warm") or dropped
after every token so that disk weights come from the disk each time
("cold"). Best of --runs. The peer is the same model with every weight in
memory, in the same run: the ratio is offloaded speed over in-memory speed.
Python Accelerate is not packaged for Debian, so its disk offload cannot
run beside it here. Writes the `generation` section of BENCHMARKS.md.

    bazel build //examples:gpt_generate && benchmarks/generation.py
"""
import argparse
import json
import pathlib
import subprocess
import tempfile

from report import ROOT, publish

EXAMPLE = ROOT / "bazel-bin" / "examples" / "gpt_generate"
MODEL = ["--n_embd=512", "--n_layer=12", "--n_head=8"]


def run(checkpoint, tokens, extra):
    argv = [str(EXAMPLE), "--checkpoint=" + checkpoint,
            "--max_new_tokens=%d" % tokens, "--progress=false"] + MODEL + extra
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def best(checkpoint, tokens, extra, runs):
    results = [run(checkpoint, tokens, extra) for _ in range(runs)]
    return max(results, key=lambda r: r["tokens_per_second"])


def budget_for(checkpoint, size, target):
    """The CPU budget whose device map offloads the share of the model
    nearest `target` (the map reserves room for the largest block, so the
    budget is not simply the share)."""
    low, high, best_budget, best_gap = 0, size, size, 1.0
    for _ in range(14):
        middle = (low + high) // 2
        fraction = run(checkpoint, 0, ["--max_memory=cpu=%d" % middle])[
            "offloaded_fraction"]
        if abs(fraction - target) < best_gap:
            best_budget, best_gap = middle, abs(fraction - target)
        if fraction > target:
            low = middle
        else:
            high = middle
    return best_budget


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = tmp + "/gpt"
        run(checkpoint, 1, [])  # Writes the checkpoint.
        size = sum(p.stat().st_size
                   for p in pathlib.Path(checkpoint).glob("*.safetensors"))
        base = best(checkpoint, args.tokens, [], args.runs)
        rows = ["| offloaded to disk | prefetch | page cache | tokens/s | "
                "speed / all in memory |", "|---|---|---|---|---|",
                "| 0%% | - | - | %.2f | 1.00 |" % base["tokens_per_second"]]
        print(rows[-1], flush=True)
        for target in (0.5, 0.9):
            budget = "--max_memory=cpu=%d" % budget_for(checkpoint, size, target)
            for cold in (False, True):
                for prefetch in (True, False):
                    r = best(checkpoint, args.tokens,
                             [budget, "--prefetch=%s" % str(prefetch).lower(),
                              "--cold=%s" % str(cold).lower()], args.runs)
                    assert r["tokens"] == base["tokens"][:len(r["tokens"])], \
                        "offloaded generation differs from in-memory"
                    rows.append("| %.0f%% | %s | %s | %.2f | %.2f |" % (
                        100 * r["offloaded_fraction"], "on" if prefetch else "off",
                        "cold" if cold else "warm", r["tokens_per_second"],
                        r["tokens_per_second"] / base["tokens_per_second"]))
                    print(rows[-1], flush=True)
    publish("generation", "best of %d, %d new tokens, %.0f MB model" % (
        args.runs, args.tokens, size / 1e6), "\n".join(rows),
        write=not args.no_write)


if __name__ == "__main__":
    main()

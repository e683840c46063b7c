#!/usr/bin/env python3
"""Side-by-side: loading a ~1 GB sharded safetensors checkpoint with
//bigmodel (zero-copy, and zero-copy then reading every byte) against
torch.load of the same weights in Python (torch 2.13 in .venv), and the
machine's page-cache read bandwidth; files warm in the page cache,
alternating runs, best of --runs. Writes the `checkpoint-load` section of
BENCHMARKS.md.

    bazel build //benchmarks:checkpoint_load && benchmarks/checkpoint_load.py
"""
import argparse
import json
import os
import subprocess
import sys

from report import PYTHON, ROOT, publish

OURS = ROOT / "bazel-bin" / "benchmarks" / "checkpoint_load"
PEER = ROOT / "benchmarks" / "checkpoint_load_peer.py"


def run(argv):
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default="/tmp/accelerate-cpp-bench")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if not OURS.exists():
        sys.exit("build first: bazel build //benchmarks:checkpoint_load")
    shards = os.path.join(args.dir, "sharded")
    pt = os.path.join(args.dir, "model.pt")
    if not os.path.exists(os.path.join(shards, "model.safetensors.index.json")):
        os.makedirs(args.dir, exist_ok=True)
        subprocess.run([str(OURS), "write", shards, str(args.gb)], check=True)
    if not os.path.exists(pt):
        subprocess.run([PYTHON, str(PEER), "write", pt, str(args.gb)],
                       check=True)
    best = {}
    for _ in range(args.runs):
        for name, argv in (("read", [str(OURS), "read", shards]),
                           ("zero_copy", [str(OURS), "zero_copy", shards]),
                           ("touch", [str(OURS), "touch", shards]),
                           ("torch.load", [PYTHON, str(PEER), "load", pt])):
            result = run(argv)
            if name not in best or result["seconds"] < best[name]["seconds"]:
                best[name] = result
    gb = best["zero_copy"]["bytes"] / 1e9
    largest_shard_mb = 256
    lines = [
        "| load of %.2f GB (%d shards of <= 256 MB) | wall time | peak RSS | torch.load time / it |"
        % (gb, len([f for f in os.listdir(shards) if f.endswith(".safetensors")])),
        "|---|---|---|---|",
    ]
    labels = {"zero_copy": "ours, zero-copy (mapped, bytes not yet read)",
              "touch": "ours, zero-copy then every byte read",
              "torch.load": "Python `torch.load` of one .pt file",
              "read": "page cache: `read()` of every shard"}
    for name in ("zero_copy", "touch", "torch.load", "read"):
        r = best[name]
        lines.append("| %s | %.1f ms | %.0f MB | %.1f |" % (
            labels[name], r["seconds"] * 1e3, r["peak_rss_mb"],
            best["torch.load"]["seconds"] / r["seconds"]))
    lines += ["", "Largest shard: %d MB; model: %.0f MB." % (largest_shard_mb, gb * 1e3)]
    publish("checkpoint-load",
            "warm page cache, best of %d alternating runs" % args.runs,
            "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Automatic device maps (//bigmodel InferAutoDeviceMap) on transformer-shaped
module trees of growing size, blocks splittable and blocks marked no-split;
best of --runs. The peer is our own smallest size: time per module at each
size over time per module at the smallest shows whether the cost grows
linearly (ratio near 1) or worse. Python Accelerate (whose
infer_auto_device_map is the quadratic one) is not packaged for Debian, so
it cannot run beside it here. Writes the `device-map` section of
BENCHMARKS.md.

    bazel build //benchmarks:device_map && benchmarks/device_map.py
"""
import argparse
import json
import subprocess

from report import ROOT, publish

OURS = ROOT / "bazel-bin" / "benchmarks" / "device_map"


def best(blocks, no_split, runs):
    argv = [str(OURS), "--blocks", str(blocks)] + (["--no_split"] if no_split else [])
    results = []
    for _ in range(runs):
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return min(results, key=lambda r: r["seconds"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rows = ["| blocks split | modules | device-map entries | time | us per module | "
            "per-module cost / smallest size's |", "|---|---|---|---|---|---|"]
    for no_split in (False, True):
        base = None
        for blocks in (2_778, 5_556, 11_111, 22_222):
            r = best(blocks, no_split, args.runs)
            per_module = r["seconds"] / r["modules"]
            base = base or per_module
            rows.append("| %s | %d | %d | %.3f s | %.2f | %.2f |" % (
                "no (no-split class)" if no_split else "yes", r["modules"], r["entries"],
                r["seconds"], per_module * 1e6, per_module / base))
            print(rows[-1], flush=True)
    publish("device-map", "best of %d" % args.runs, "\n".join(rows),
            write=not args.no_write)


if __name__ == "__main__":
    main()

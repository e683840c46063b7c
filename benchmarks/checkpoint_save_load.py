#!/usr/bin/env python3
"""Side-by-side: save and load of a whole training state on 2 processes, a
~500 MB float32 model with its AdamW state (1.5 GB in all): the
Accelerator's SaveState / LoadState (ours) against Python Accelerate 1.15's
save_state / load_state (torch 2.13 in .venv) on the same model, in the
same run, into folders on the same disk; loads cold (files evicted from
the page cache) and warm (cached). Rounds alternate which side goes first,
the median of each counts. Writes the table between the
`checkpoint-save-load` markers of BENCHMARKS.md.

    bazel build //benchmarks:checkpoint_save_load && benchmarks/checkpoint_save_load.py
"""
import json
import os
import shutil
import statistics
import sys

from report import PYTHON, ROOT, publish, round_args, spawn_ranks

OURS = ROOT / "bazel-bin" / "benchmarks" / "checkpoint_save_load"
PEER = ROOT / "benchmarks" / "checkpoint_save_load_peer.py"
# Both sides write here: one disk, one file system.
BASE = "/tmp/accelerate-cpp-bench/checkpoint-save-load"
NEEDED_BYTES = 4 << 30  # One checkpoint (1.5 GB) and our staging swap.
SAVE_GOAL, LOAD_GOAL, PEAK_GOAL = 3.0, 5.0, 1.10


def folder_bytes(path):
    return sum(os.path.getsize(os.path.join(path, name))
               for name in os.listdir(path))


def run(who, argv):
    """One run of `argv` on 2 processes writing to and reading from its own
    folder, which is removed (and the file systems synced) before and
    after, so no run inherits another's dirty pages or files."""
    directory = os.path.join(BASE, who)
    shutil.rmtree(directory, ignore_errors=True)
    os.sync()
    out = spawn_ranks(argv + [directory], 2, {"ACCELERATE_USE_CPU": "1"})
    result = json.loads(out.strip().splitlines()[-1])
    result["checkpoint_mb"] = folder_bytes(directory) / 1e6
    result["files"] = len(os.listdir(directory))
    shutil.rmtree(directory)
    os.sync()
    return result


def verdict(met):
    return "**met**" if met else "**missed**"


def main():
    args = round_args(__doc__, OURS, "//benchmarks:checkpoint_save_load")
    os.makedirs(BASE, exist_ok=True)
    free = shutil.disk_usage(BASE).free
    if free < NEEDED_BYTES:
        sys.exit("%s has %.1f GB free; this benchmark needs %.1f GB"
                 % (BASE, free / 1e9, NEEDED_BYTES / 1e9))
    sides = (("ours", [str(OURS)]), ("python", [PYTHON, str(PEER)]))
    results = {"ours": [], "python": []}
    try:
        for round_index in range(args.rounds):
            order = sides if round_index % 2 == 0 else sides[::-1]
            for who, argv in order:
                results[who].append(run(who, argv))
    finally:
        shutil.rmtree(BASE, ignore_errors=True)

    def median(who, key):
        return statistics.median(r[key] for r in results[who])

    keys = ("save_seconds", "cold_load_seconds", "warm_load_seconds",
            "save_peak_growth_mb", "checkpoint_mb")
    ours = {k: median("ours", k) for k in keys}
    python = {k: median("python", k) for k in keys}
    model_mb = results["ours"][0]["model_mb"]
    peak_limit = model_mb * PEAK_GOAL
    lines = [
        "| 2 processes | ours | Python Accelerate | Python / ours | goal |",
        "|---|---|---|---|---|",
    ]
    for label, key, goal in (
            ("`SaveState` / `save_state`", "save_seconds", SAVE_GOAL),
            ("`LoadState` / `load_state`, files on the disk (cold)",
             "cold_load_seconds", LOAD_GOAL),
            ("`LoadState` / `load_state`, files in the page cache (warm)",
             "warm_load_seconds", LOAD_GOAL)):
        speedup = python[key] / ours[key]
        lines.append("| %s | %.2f s | %.2f s | **%.2fx** | at least %.0fx: %s |"
                     % (label, ours[key], python[key], speedup, goal,
                        verdict(speedup >= goal)))
    lines += [
        "| peak RSS growth during the save | %.0f MB | %.0f MB | | "
        "at most the model + 10%% (%.0f MB): %s |"
        % (ours["save_peak_growth_mb"], python["save_peak_growth_mb"],
           peak_limit, verdict(ours["save_peak_growth_mb"] <= peak_limit)),
        "",
        "Model: %.0f MB (126M float32 parameters); checkpoint: %.0f MB in %d "
        "files (ours, with its manifest), %.0f MB in %d files (Python). "
        "Times: the slower process, from a barrier to its return."
        % (model_mb, ours["checkpoint_mb"], results["ours"][0]["files"],
           python["checkpoint_mb"], results["python"][0]["files"]),
        "",
        "Every round (save / cold load / warm load, seconds): ours %s; "
        "Python %s."
        % tuple(", ".join("%.2f / %.2f / %.2f"
                          % (r["save_seconds"], r["cold_load_seconds"],
                             r["warm_load_seconds"])
                          for r in results[who]) for who in ("ours", "python")),
    ]
    publish("checkpoint-save-load",
            "2 processes, OMP_NUM_THREADS=1, median of %d rounds alternating "
            "which side goes first" % args.rounds,
            "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Side-by-side: save and load of a whole training state on 2 processes, a
~500 MB float32 model with its AdamW state (1.5 GB in all): the
Accelerator's SaveState / LoadState (ours) against Python Accelerate 1.15's
save_state / load_state (torch 2.13 in .venv) on the same model, in the
same run, into folders on the same disk; loads cold (files evicted from
the page cache) and warm (cached), ours plain and mapped
(`{.map_files = true}`: the optimizer state aliases a copy-on-write
mapping), each timed alone and with the first training step after it
(where a mapped load's pages are read), the fair end-to-end comparison.
Each round runs ours plain, ours mapped and Python in turn, rotating which
goes first; the median of each counts. Writes the table between the
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
    """One run of `argv` DIR on 2 processes writing to and reading from its
    own folder DIR, which is removed (and the file systems synced) before
    and after, so no run inherits another's dirty pages or files."""
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
    # Each round runs ours with plain loads, ours with mapped loads and
    # Python's, each into a new checkpoint (so every cold load is the first
    # read of its files, as in Python's run), rotating which goes first.
    runs = (("ours", [str(OURS)]),
            ("ours-mapped", [str(OURS), "--map_files"]),
            ("python", [PYTHON, str(PEER)]))
    results = {who: [] for who, _ in runs}
    try:
        for round_index in range(args.rounds):
            turn = round_index % len(runs)
            for who, argv in runs[turn:] + runs[:turn]:
                results[who].append(run(who, argv))
    finally:
        shutil.rmtree(BASE, ignore_errors=True)
    checksums = {r["stepped_checksum"]
                 for who in ("ours", "ours-mapped") for r in results[who]}
    if len(checksums) != 1:
        sys.exit("the first steps after plain and mapped loads differ: %s"
                 % sorted(checksums))

    def median(who, key):
        return statistics.median(r[key] for r in results[who])

    model_mb = results["ours"][0]["model_mb"]
    peak_limit = model_mb * PEAK_GOAL
    load = "at least %.0fx" % LOAD_GOAL
    alone = load + ", mapped load alone (its reading moves into the step)"
    fair = load + ", mapped load end to end (the fair comparison)"
    lines = [
        "| 2 processes | ours | Python Accelerate | Python / ours | goal |",
        "|---|---|---|---|---|",
    ]
    # (label, our run, the key in both runs, goal, the goal's wording).
    rows = (
        ("`SaveState` / `save_state`", "ours", "save_seconds", SAVE_GOAL,
         "at least %.0fx" % SAVE_GOAL),
        ("`LoadState` / `load_state`, files on the disk (cold)", "ours",
         "cold_load_seconds", LOAD_GOAL, load + ", plain load"),
        ("`LoadState` / `load_state`, files in the page cache (warm)",
         "ours", "warm_load_seconds", LOAD_GOAL, load + ", plain load"),
        ("`LoadState` mapped (`map_files`) / `load_state`, cold",
         "ours-mapped", "cold_load_seconds", LOAD_GOAL, alone),
        ("`LoadState` mapped (`map_files`) / `load_state`, warm",
         "ours-mapped", "warm_load_seconds", LOAD_GOAL, alone),
        ("`LoadState` + first step / `load_state` + first step, cold",
         "ours", "cold_load_step_seconds", LOAD_GOAL,
         load + ", plain load end to end"),
        ("`LoadState` + first step / `load_state` + first step, warm",
         "ours", "warm_load_step_seconds", LOAD_GOAL,
         load + ", plain load end to end"),
        ("`LoadState` mapped + first step / `load_state` + first step, cold",
         "ours-mapped", "cold_load_step_seconds", LOAD_GOAL, fair),
        ("`LoadState` mapped + first step / `load_state` + first step, warm",
         "ours-mapped", "warm_load_step_seconds", LOAD_GOAL, fair),
    )
    for label, who, key, goal, wording in rows:
        ours, python = median(who, key), median("python", key)
        speedup = python / ours
        lines.append("| %s | %.2f s | %.2f s | **%.2fx** | %s: %s |"
                     % (label, ours, python, speedup, wording,
                        verdict(speedup >= goal)))

    def rounds(who):
        return ", ".join(
            " / ".join("%.2f" % r[k] for k in (
                "save_seconds", "cold_load_seconds", "warm_load_seconds",
                "cold_load_step_seconds", "warm_load_step_seconds"))
            for r in results[who])

    growth = median("ours", "save_peak_growth_mb")
    lines += [
        "| peak RSS growth during the save | %.0f MB | %.0f MB | | "
        "at most the model + 10%% (%.0f MB): %s |"
        % (growth, median("python", "save_peak_growth_mb"), peak_limit,
           verdict(growth <= peak_limit)),
        "",
        "Model: %.0f MB (126M float32 parameters); checkpoint: %.0f MB in %d "
        "files (ours, with its manifest), %.0f MB in %d files (Python). "
        "Times: the slower process, from a barrier to its return. First "
        "step: forward, backward (with DDP's all-reduce of 504 MB of "
        "gradients), AdamW step and `zero_grad` on the same 4 x 3968 input "
        "on both sides; its result is the same after plain and mapped loads. "
        "Python Accelerate's `load_state` has no mapped mode: its plain load "
        "is the reference for both of ours. Save and peak RSS: from our "
        "plain-load runs."
        % (model_mb, median("ours", "checkpoint_mb"),
           results["ours"][0]["files"], median("python", "checkpoint_mb"),
           results["python"][0]["files"]),
        "",
        "Every round (save / load cold / warm / load + first step cold / "
        "warm, seconds): ours, plain loads %s; ours, mapped loads %s; "
        "Python %s."
        % (rounds("ours"), rounds("ours-mapped"), rounds("python")),
    ]
    publish("checkpoint-save-load",
            "2 processes, OMP_NUM_THREADS=1, median of %d rounds, each "
            "running ours with plain loads, ours with mapped loads and Python "
            "in turn, rotating which goes first" % args.rounds,
            "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    main()

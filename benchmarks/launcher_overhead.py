#!/usr/bin/env python3
"""Launcher overhead: time from starting `accelerate launch --num_processes 2`
to both ranks past their first barrier, minus the time the same program takes
when its 2 processes are started directly; against Python Accelerate 1.15's
own `accelerate launch --multi_gpu --num_processes 2` (on a machine without
GPUs it starts torchrun's workers; the program joins over gloo) and
`python -m torch.distributed.run --nproc_per_node 2`, both with the
equivalent Python program (first_barrier.py), minus that program started
directly. Runs alternate; the best of --runs each counts. Writes the table
between the `launcher-overhead` markers of BENCHMARKS.md.

    bazel build //launch:accelerate //benchmarks:first_barrier && \\
        benchmarks/launcher_overhead.py
"""
import argparse
import os
import subprocess
import sys
import time

from report import PYTHON, ROOT, free_port, publish, spawn_ranks

ACCELERATE = ROOT / "bazel-bin" / "launch" / "accelerate"
OURS = ROOT / "bazel-bin" / "benchmarks" / "first_barrier"
PEER = ROOT / "benchmarks" / "first_barrier.py"



def barrier_ns(output):
    for line in output.splitlines():
        if "BARRIER_NS" in line:
            return int(line.split("BARRIER_NS")[1].strip())
    sys.exit("no BARRIER_NS line in:\n" + output)


def timed_launch(argv, env=None):
    start = time.time_ns()
    done = subprocess.run(argv, env=env, capture_output=True, text=True,
                          timeout=300)
    if done.returncode != 0:
        sys.exit("%s failed:\n%s%s" % (argv, done.stdout, done.stderr))
    return (barrier_ns(done.stdout) - start) / 1e6


def timed_direct(argv):
    """Starts 2 ranks directly with torchrun's variables."""
    start = time.time_ns()
    return (barrier_ns(spawn_ranks(argv, 2)) - start) / 1e6


def ratio_line(ours, accelerate, torchrun):
    if ours < 1.0:
        # Starting the ranks directly can lose more to the store client's
        # back-off than the launcher costs: no meaningful ratio then.
        return ("Ours is within the noise of starting the ranks directly "
                "(%.1f ms); Python `accelerate launch` adds **%.0f ms**, "
                "torchrun **%.0f ms**." % (ours, accelerate, torchrun))
    return ("Python `accelerate launch`'s overhead / ours: **%.0fx**; "
            "torchrun's / ours: **%.0fx**." % (accelerate / ours, torchrun / ours))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    for path in (ACCELERATE, OURS):
        if not path.exists():
            sys.exit("build first: bazel build //launch:accelerate "
                     "//benchmarks:first_barrier")
    env = dict(os.environ, HF_HOME="/nonexistent-hf-home")
    samples = {"ours": [], "ours_direct": [], "accelerate": [], "torchrun": [],
               "py_direct": []}
    for _ in range(args.runs):
        samples["ours"].append(timed_launch(
            [str(ACCELERATE), "launch", "--cpu", "-q", "--num_processes", "2",
             "--main_process_port", str(free_port()), str(OURS)], env))
        samples["ours_direct"].append(timed_direct([str(OURS)]))
        samples["accelerate"].append(timed_launch(
            [PYTHON, "-m", "accelerate.commands.launch", "--multi_gpu",
             "--num_processes", "2", "--num_machines", "1",
             "--mixed_precision", "no", "--dynamo_backend", "no",
             "--main_process_port", str(free_port()), str(PEER)], env))
        samples["torchrun"].append(timed_launch(
            [PYTHON, "-m", "torch.distributed.run", "--nproc_per_node",
             "2", "--master_port", str(free_port()), str(PEER)]))
        samples["py_direct"].append(timed_direct([PYTHON, str(PEER)]))
    # Best of N: a direct start can lose up to a second when rank 1 dials
    # before rank 0 listens (the store client backs off); the best run of
    # each kind is the one without such accidents.
    med = {k: min(v) for k, v in samples.items()}
    ours = med["ours"] - med["ours_direct"]
    theirs = med["torchrun"] - med["py_direct"]
    accelerate = med["accelerate"] - med["py_direct"]
    body = "\n".join([
        "| launcher | launch to first barrier | program started directly "
        "| launcher overhead |",
        "|---|---|---|---|",
        "| `accelerate launch` (ours, C++ program) | %.1f ms | %.1f ms | "
        "**%.1f ms** |" % (med["ours"], med["ours_direct"], ours),
        "| Python `accelerate launch` 1.15 (Python program) | %.1f ms | %.1f ms"
        " | **%.1f ms** |" % (med["accelerate"], med["py_direct"], accelerate),
        "| `torch.distributed.run` (Python program) | %.1f ms | %.1f ms | "
        "**%.1f ms** |" % (med["torchrun"], med["py_direct"], theirs),
        "",
        ratio_line(ours, accelerate, theirs),
    ])
    publish("launcher-overhead", "best of %d alternating runs" % args.runs,
            body, write=not args.no_write)


if __name__ == "__main__":
    main()

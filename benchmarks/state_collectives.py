#!/usr/bin/env python3
"""Side-by-side: //state's barrier and all-reduce (C++, gloo) against Python
torch.distributed with gloo (torch 2.13 in .venv), 2 ranks on this
machine, alternating rounds in one run. Writes the table between the
`state-collectives` markers of BENCHMARKS.md.

    bazel build //state:collectives_benchmark && benchmarks/state_collectives.py

Options: --rounds N (default 3; the best round of each side counts),
--no-write (print only).
"""
import json
import sys

from report import PYTHON, ROOT, publish, round_args, spawn_ranks

OURS = ROOT / "bazel-bin" / "state" / "collectives_benchmark"
PEER = ROOT / "benchmarks" / "state_collectives_peer.py"
WORLD = 2



def ours():
    report = json.loads(spawn_ranks([str(OURS), "--benchmark_format=json"], WORLD))
    results = {}
    for b in report["benchmarks"]:
        name = b["name"].split("/iterations")[0].split("/real_time")[0]
        # real_time is in the benchmark's unit (microseconds here).
        results[name] = b["real_time"] * 1e-6
    return results


def peer():
    out = spawn_ranks([PYTHON, str(PEER)], WORLD)
    return {r["name"]: r["seconds"]
            for r in map(json.loads, out.strip().splitlines())}


def human(nbytes):
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= size:
            return "%d %s" % (nbytes // size, unit)
    return "%d B" % nbytes


def table(best_ours, best_peer):
    lines = [
        "| operation | size | ours | Python gloo | ours / Python time "
        "| ours GB/s | Python GB/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in best_peer:
        o, p = best_ours[name], best_peer[name]
        nbytes = int(name.split("/")[1]) if "/" in name else 0
        op = "barrier" if nbytes == 0 else "all_reduce (sum, f32)"
        bw = (lambda t: "%.2f" % (nbytes / t / 1e9)) if nbytes else (
            lambda t: "")
        lines.append("| %s | %s | %.1f us | %.1f us | %.2f | %s | %s |" % (
            op, human(nbytes) if nbytes else "-", o * 1e6, p * 1e6, o / p,
            bw(o), bw(p)))
    return "\n".join(lines)


def main():
    args = round_args(__doc__, OURS, "//state:collectives_benchmark")
    best_ours, best_peer = {}, {}
    for round_index in range(args.rounds):
        for name, t in ours().items():
            best_ours[name] = min(t, best_ours.get(name, t))
        for name, t in peer().items():
            best_peer[name] = min(t, best_peer.get(name, t))
        print("round %d done" % (round_index + 1), file=sys.stderr)
    body = table(best_ours, best_peer)
    publish("state-collectives",
            "%d ranks, best of %d alternating rounds" % (WORLD, args.rounds),
            body, write=not args.no_write)


if __name__ == "__main__":
    main()

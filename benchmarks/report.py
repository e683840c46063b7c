"""Shared by the side-by-side benchmark scripts: free ports, and stamping and
replacing one marked section of BENCHMARKS.md."""
import argparse
import datetime
import os
import pathlib
import platform
import socket
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
# The peers' Python: tools/setup's .venv (torch 2.13, accelerate 1.15).
PYTHON = str(ROOT / ".venv" / "bin" / "python3")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def section(name, stamp, body):
    """The text of section `name`, between its begin and end markers."""
    return "<!-- %s:begin -->\nMeasured %s.\n\n%s\n<!-- %s:end -->" % (
        name, stamp, body, name)


def publish(name, conditions, body, write=True):
    """Prints section `name` of BENCHMARKS.md, stamped with today's date, the
    machine, its core count and `conditions` (how it was measured), and
    writes it unless `write` is false."""
    stamp = "%s, %s, %d cores, %s" % (
        datetime.date.today().isoformat(), platform.machine(), os.cpu_count(),
        conditions)
    text = section(name, stamp, body)
    print(text)
    if write:
        write_section(name, text)


def round_args(doc, binary, target):
    """The command line of a benchmark that alternates rounds of ours and the
    peer (`--rounds`, `--no-write`); exits asking for `bazel build target`
    when `binary` is missing."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if not binary.exists():
        sys.exit("build first: bazel build " + target)
    return args


def write_section(name, text):
    """Replaces section `name` of BENCHMARKS.md with `text` (appends it when
    the markers are missing)."""
    path = ROOT / "BENCHMARKS.md"
    content = path.read_text() if path.exists() else ""
    begin, end = "<!-- %s:begin -->" % name, "<!-- %s:end -->" % name
    if begin in content and end in content:
        head, rest = content.split(begin, 1)
        content = head + text + rest.split(end, 1)[1]
    else:
        content += "\n" + text + "\n"
    path.write_text(content)


def spawn_ranks(argv, world, env=None):
    """Runs `world` copies of argv as one job on this machine (torchrun's
    variables, a free port, OMP_NUM_THREADS=1; none for one process) and
    returns rank 0's stdout. Exits naming the rank that failed."""
    port = free_port()
    procs = []
    for rank in range(world):
        rank_env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
        if world > 1:
            rank_env.update(RANK=str(rank), WORLD_SIZE=str(world),
                            LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                            MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen(argv, env=rank_env,
                                      stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=900) for p in procs]
    for rank, (p, (out, err)) in enumerate(zip(procs, outputs)):
        if p.returncode != 0:
            sys.exit("rank %d of %s failed (%d):\n%s%s"
                     % (rank, argv[0], p.returncode, out, err))
    return outputs[0][0]

#!/usr/bin/env python3
"""Side-by-side cost of logging 10 scalars per step: our `Accelerator::Log`
against Python Accelerate 1.15's `Accelerator.log` (torch's SummaryWriter,
MLflow's client) on 2 processes, TensorBoard and MLflow (a real MLflow
server from .venv on 127.0.0.1 with a SQLite store, started here), plus
ours with JSON Lines and CSV (no peer); alternating rounds, the best of each
counts. Writes the table between the `trackers-log` markers of
BENCHMARKS.md.

    bazel build //benchmarks:trackers_log && benchmarks/trackers_log.py
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

from report import PYTHON, ROOT, free_port, publish, round_args, spawn_ranks

OURS = ROOT / "bazel-bin" / "benchmarks" / "trackers_log"
PEER = ROOT / "benchmarks" / "trackers_log_peer.py"
MLFLOW = ROOT / ".venv" / "bin" / "mlflow"

# Calls timed per run: the peer's calls cost far more, so it makes fewer.
CALLS = {
    ("tensorboard", "ours"): 20000, ("tensorboard", "peer"): 2000,
    ("mlflow", "ours"): 20000, ("mlflow", "peer"): 100,
    ("jsonl", "ours"): 20000, ("csv", "ours"): 20000,
}


def start_mlflow(folder):
    port = free_port()
    server = subprocess.Popen(
        [str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", "sqlite:///%s/mlflow.db" % folder,
         "--default-artifact-root", "%s/artifacts" % folder, "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    uri = "http://127.0.0.1:%d" % port
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(uri + "/health", timeout=1)
            return server, uri
        except OSError:
            time.sleep(0.5)
    os.killpg(server.pid, signal.SIGKILL)
    raise SystemExit("the MLflow server did not start")


def run(tracker, who, folder, uri):
    env = {"ACCELERATE_LOG_WITH": tracker,
           "ACCELERATE_PROJECT_DIR": os.path.join(folder, who + tracker)}
    if tracker == "mlflow":
        env["MLFLOW_TRACKING_URI"] = uri
        env["MLFLOW_EXPERIMENT_NAME"] = "trackers_log_" + who
    shutil.rmtree(env["ACCELERATE_PROJECT_DIR"], ignore_errors=True)
    calls = ["--calls", str(CALLS[(tracker, who)])]
    argv = [str(OURS)] + calls if who == "ours" else [PYTHON, str(PEER)] + calls
    return json.loads(spawn_ranks(argv, 2, env).strip().splitlines()[-1])


def main():
    args = round_args(__doc__, OURS, "//benchmarks:trackers_log")
    folder = tempfile.mkdtemp(prefix="trackers_log_")
    server, uri = start_mlflow(folder)
    best = {}
    try:
        for _ in range(args.rounds):
            for tracker, who in CALLS:
                result = run(tracker, who, folder, uri)
                key = (tracker, who)
                if key not in best or (result["seconds_per_call"][0] <
                                       best[key]["seconds_per_call"][0]):
                    best[key] = result
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)
    us = lambda key, rank=0: best[key]["seconds_per_call"][rank] * 1e6
    lines = [
        "| tracker | ours, main process | ours, other process | Python Accelerate, main process | Python, other process | Python / ours | `end_training`, ours / Python |",
        "|---|---|---|---|---|---|---|",
    ]
    for tracker in ("tensorboard", "mlflow", "jsonl", "csv"):
        ours = (tracker, "ours")
        peer = (tracker, "peer")
        if peer in best:
            lines.append("| %s | %.2f µs | %.3f µs | %.1f µs | %.3f µs | %.0fx | %.3f s / %.3f s |" % (
                tracker, us(ours), us(ours, 1), us(peer), us(peer, 1),
                us(peer) / us(ours), best[ours]["end_training_seconds"],
                best[peer]["end_training_seconds"]))
        else:
            lines.append("| %s | %.2f µs | %.3f µs | (no peer) | | | %.3f s |" % (
                tracker, us(ours), us(ours, 1), best[ours]["end_training_seconds"]))
    lines += [
        "",
        "Goals: under 5 µs per call on the main process, at least 50x cheaper "
        "than the Python peer, about 0 on the other processes. Ours queues "
        "the values (an encoded TFRecord event, a JSON line, an MLflow metric "
        "batch) and a background thread writes or sends them; Python "
        "Accelerate's TensorBoard tracker writes and flushes the event file "
        "in every `log`, and its MLflow tracker makes one HTTP request per "
        "`log`. The last column is what is left at the end: ours flushes the "
        "queue in `EndTraining`; for MLflow that is every metric point not yet "
        "sent (the server stored about %.0f points/s here, so %d calls of 10 "
        "points wait on it), where Python Accelerate spends %.0f s inside the "
        "loop for the same calls." % (
            10 * CALLS[("mlflow", "ours")] /
            max(best[("mlflow", "ours")]["end_training_seconds"], 1e-9),
            CALLS[("mlflow", "ours")],
            best[("mlflow", "peer")]["seconds_per_call"][0] *
            CALLS[("mlflow", "ours")]),
    ]
    publish("trackers-log",
            "2 processes, 10 scalars per call, best of %d alternating rounds"
            % args.rounds, "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    main()

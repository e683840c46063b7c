#!/usr/bin/env python3
"""The GPU figures raced against Python Accelerate on the same GPU, in the
same run (tools/gpu_check runs this on the lent GPU machine after the
tests; see BENCHMARKS.md "GPU figures"):

- bf16 training step of a ~1B-parameter model: examples/train_lm (the
  byte-level GPT, 20 blocks of width 2048: 1.0B parameters; AdamW, batches
  of 16 lines of 64 bytes, `mixed_precision: bf16`) against
  examples/train_lm_peer.py under Python Accelerate, one process each on
  GPU 0. Step time = training seconds / steps (both time the same loop,
  one host sync per step for the loss). Goal: ours <= 1.0x.
- Offloaded generation: examples/gpt_generate (the GPT-2-style model, 24
  blocks of width 2048, 1.2B parameters in float32, about half on GPU 0
  and half offloaded to the CPU) without and with prefetch, against
  examples/gpt_generate_peer.py (Accelerate's load_checkpoint_and_dispatch
  with the same device map: its hooks copy each module's CPU weights to the
  GPU before its forward). Both must generate the same tokens.

Each measurement is skipped, saying so, when the deadline would pass or
the peer cannot import Accelerate. Prints one JSON object (also written to
--out).

    gpu_peers.py --bin BUILD/runfiles/accelerate_cpp/examples \\
        --python PYTHON --out gpu-peers.json [--deadline SECONDS]
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEXT = ROOT / "examples" / "data" / "licenses.txt"
LM = ["--n_layer", "20", "--n_embd", "2048", "--n_head", "16",
      "--batch_size", "16", "--max_length", "64", "--warmup_steps", "5",
      "--lr", "1e-4", "--log_every", "10"]
GPT = ["--n_embd=2048", "--n_layer=24", "--n_head=16", "--n_positions=256"]
PROMPT = "Once upon a time"


def last_json(argv, env, timeout):
    done = subprocess.run(argv, capture_output=True, text=True, env=env,
                          timeout=max(1, timeout))
    if done.returncode != 0:
        raise RuntimeError("%s exited %d: %s" % (
            pathlib.Path(argv[0]).name if argv[0] != sys.executable else argv[1],
            done.returncode, done.stderr[-1500:]))
    return json.loads(done.stdout.strip().splitlines()[-1])


def step_ms(row):
    """Milliseconds per optimizer step of a train_lm(_peer) JSON row."""
    return 1000 * row["train_seconds"] / row["steps"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin", required=True, type=pathlib.Path)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--out", required=True)
    parser.add_argument("--deadline", type=float, default=300,
                        help="seconds from now after which nothing starts")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--tokens", type=int, default=12)
    parser.add_argument("--rehearse", action="store_true",
                        help="tiny models on the CPU: checks this script")
    args = parser.parse_args()
    global LM, GPT
    memory = "--max_memory=0=2600MB,cpu=200GB"
    if args.rehearse:
        LM = ["--n_layer", "2", "--n_embd", "64", "--n_head", "4"]
        GPT = ["--n_embd=128", "--n_layer=4", "--n_head=4"]
        memory = "--max_memory=cpu=1200KB"
        args.steps, args.tokens = 3, 3
    stop_at = time.time() + args.deadline
    env = dict(os.environ,
               ACCELERATE_MIXED_PRECISION="no" if args.rehearse else "bf16",
               CUDA_VISIBLE_DEVICES=os.environ.get("CUDA_VISIBLE_DEVICES", "0"))
    result = {"skipped": []}
    peer_ok = subprocess.run(
        [args.python, "-c", "import accelerate; print(accelerate.__version__)"],
        capture_output=True, text=True, env=env)
    result["peer_accelerate"] = (peer_ok.stdout.strip() if peer_ok.returncode == 0
                                 else "missing: " + peer_ok.stderr[-300:])

    def left():
        return stop_at - time.time()

    if not args.rehearse:
        gpu = subprocess.run([args.python, "-c",
                              "import torch; assert torch.cuda.is_available()"],
                             capture_output=True, env=env)
        if gpu.returncode != 0:  # The figures are GPU figures.
            result["skipped"].append("no CUDA device visible to " + args.python)
            pathlib.Path(args.out).write_text(json.dumps(result) + "\n")
            print(json.dumps(result))
            return

    def attempt(name, budget, fn):
        if left() < budget:
            result["skipped"].append("%s: %.0f s left, needs about %d" % (
                name, left(), budget))
            return
        try:
            fn()
        except Exception as error:  # Reported, the others still run.
            result["skipped"].append("%s: %s" % (name, error))
        # Written after each race: what was measured survives a time-out.
        pathlib.Path(args.out).write_text(json.dumps(result) + "\n")
        print(json.dumps(result), flush=True)

    # Each race's rows go into the result as they come: a peer that runs out
    # of time leaves ours measured.
    def train_step():
        common = ["--text", str(TEXT), "--max_steps", str(args.steps)] + LM
        rows = result["train_step_1b_bf16"] = {}
        ours = rows["ours"] = last_json([str(args.bin / "train_lm")] + common,
                                        env, left() / 2)  # The rest for the peer.
        ours["step_ms"] = step_ms(ours)
        if peer_ok.returncode == 0:
            # The generation race keeps about two minutes.
            peer = last_json(
                [args.python, str(ROOT / "examples" / "train_lm_peer.py")] + common,
                env, max(60, left() - 120))
            peer["step_ms"] = step_ms(peer)
            rows["accelerate"] = peer
            rows["ratio"] = ours["step_ms"] / peer["step_ms"]

    def generation():
        work = pathlib.Path(tempfile.mkdtemp(prefix="gpu_generation_"))
        checkpoint = str(work / "ckpt")
        device_map = str(work / "map.json")
        base = [str(args.bin / "gpt_generate"), "--checkpoint=" + checkpoint,
                "--prompt=" + PROMPT, "--max_new_tokens=%d" % args.tokens,
                "--progress=false", memory] + GPT
        rows = result["offloaded_generation"] = {}
        # The first run also writes the checkpoint (random weights).
        rows["ours_no_prefetch"] = last_json(
            base + ["--prefetch=false", "--device_map_out=" + device_map], env,
            max(left() / 3, left() - 60))
        rows["ours_prefetch"] = last_json(base, env, left() / 2)
        if peer_ok.returncode == 0:
            rows["accelerate"] = last_json(
                [args.python, str(ROOT / "examples" / "gpt_generate_peer.py"),
                 checkpoint, device_map, str(args.tokens), PROMPT], env, left())
            rows["same_tokens"] = (rows["accelerate"]["tokens"] ==
                                   rows["ours_prefetch"]["tokens"])
            for who in ("ours_no_prefetch", "ours_prefetch"):
                rows[who + "_ratio"] = (rows["accelerate"]["generate_seconds"] /
                                        rows[who]["generate_seconds"])
        shutil.rmtree(work, ignore_errors=True)

    attempt("train step", 150, train_step)
    attempt("offloaded generation", 120, generation)
    text = json.dumps(result)
    pathlib.Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

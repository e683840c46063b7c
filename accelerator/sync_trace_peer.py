# Reference trace of Python Accelerate's gradient-accumulation behaviour.
#
# Runs the REAL Hugging Face Accelerate (1.15) on 2 CPU processes (gloo, via
# accelerate.debug_launcher) for every combination of
#   num_steps x split_batches x dispatch_batches x sync_each_batch x sync_with_dataloader
# and records, batch by batch, what Accelerate does (sync flag, whether the
# gradients were all-reduced, end-of-dataloader / remainder, real optimizer
# steps, scheduler steps, gradient zeroing) plus the final weights. The C++
# test runs the same configurations and compares against this trace.
#
# Run:
#   /work/main/.venv/bin/python accelerator/sync_trace_peer.py > /tmp/sync_trace.json
#
# Output (stdout, one JSON document; logs go to stderr):
#   {"configs": [{"num_steps", "split_batches", "dispatch_batches",
#                 "sync_each_batch", "sync_with_dataloader",
#                 "batches": [{"epoch", "index", "samples", "sync", "reduced",
#                              "end", "remainder", "opt_steps", "sched_steps",
#                              "grad_zero"}, ...],
#                 "weight": [w0, w1], "bias": b}, ...]}
# Configurations are ordered num_steps outermost, then split_batches,
# dispatch_batches, sync_each_batch, sync_with_dataloader innermost (False
# before True, except sync_with_dataloader: True before False).
#
# Setup mirrored by the C++ side: 14 samples, x_i = [i, 1.0] (shape [2]),
# y_i = [i % 3] (shape [1], so y is a [B, 1] tensor matching the model output);
# DataLoader(batch_size=4 if split_batches else 2, shuffle=False);
# Linear(2, 1) with weight [[0.5, -0.25]], bias [0.1]; SGD(lr=0.1);
# LambdaLR(lambda s: 1.0); 2 epochs; mse_loss.
#
# Every rank records its own view; the parent process checks that all ranks
# agree on every recorded value and prints rank 0's trace. (Observed with
# Accelerate 1.15: all recorded per-batch values and final weights are identical
# on both ranks; any difference is reported on stderr.)

import itertools
import json
import os
import sys
import tempfile
import time
import types

# One intra-op thread per process: faster start-up on a small machine, and it
# silences Accelerate's OMP_NUM_THREADS warning.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from accelerate import Accelerator, debug_launcher  # noqa: E402
from accelerate.state import AcceleratorState, GradientState  # noqa: E402
from accelerate.utils import DataLoaderConfiguration, GradientAccumulationPlugin  # noqa: E402

NUM_PROCESSES = 2
NUM_SAMPLES = 14
NUM_EPOCHS = 2
# Gradients on two ranks count as "reduced" (identical) within this tolerance.
REDUCED_ATOL = 1e-7

CONFIG_KEYS = ("num_steps", "split_batches", "dispatch_batches", "sync_each_batch", "sync_with_dataloader")


def all_configs():
    """Configurations in the documented output order."""
    for num_steps, split, dispatch, each, with_dl in itertools.product(
        [1, 2, 3], [False, True], [False, True], [False, True], [True, False]
    ):
        yield dict(zip(CONFIG_KEYS, (num_steps, split, dispatch, each, with_dl)))


def make_dataset():
    i = torch.arange(NUM_SAMPLES, dtype=torch.float32)
    x = torch.stack([i, torch.ones(NUM_SAMPLES)], dim=1)  # [14, 2]
    y = (torch.arange(NUM_SAMPLES) % 3).to(torch.float32)[:, None]  # [14, 1]
    return TensorDataset(x, y)


def run_config(cfg):
    """Trains one configuration on this rank and returns its trace."""
    # Fresh singletons per configuration (as accelerate's own test_sync.py does).
    AcceleratorState._reset_state(True)
    GradientState._reset_state()

    accelerator = Accelerator(
        cpu=True,
        gradient_accumulation_plugin=GradientAccumulationPlugin(
            num_steps=cfg["num_steps"],
            sync_each_batch=cfg["sync_each_batch"],
            sync_with_dataloader=cfg["sync_with_dataloader"],
            adjust_scheduler=True,
        ),
        dataloader_config=DataLoaderConfiguration(
            split_batches=cfg["split_batches"],
            dispatch_batches=cfg["dispatch_batches"],
            even_batches=True,
        ),
    )

    torch.manual_seed(0)
    loader = DataLoader(make_dataset(), batch_size=4 if cfg["split_batches"] else 2, shuffle=False)
    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.5, -0.25]]))
        model.bias.copy_(torch.tensor([0.1]))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    # Count real steps of the underlying torch optimizer (wrapped before prepare,
    # and before the scheduler is built so torch's own step tracking wraps ours).
    # Installed as a bound method: torch's LRScheduler re-wraps `opt.step` via `__func__`.
    opt_steps = [0]

    def counting_step(self, *args, **kwargs):
        opt_steps[0] += 1
        return type(self).step(self, *args, **kwargs)

    opt.step = types.MethodType(counting_step, opt)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)

    # `net` keeps the bare Linear: prepare() wraps it in DDP but shares its parameters.
    net = model
    model, opt, loader, sched = accelerator.prepare(model, opt, loader, sched)
    model.train()

    batches = []
    for epoch in range(NUM_EPOCHS):
        for index, (x, y) in enumerate(loader):
            with accelerator.accumulate(model):
                loss = F.mse_loss(model(x), y)
                accelerator.backward(loss)

                # Moment 1: right after backward.
                grads = accelerator.gather(net.weight.grad.detach().flatten()[None])  # [ranks, 2]
                reduced = all(
                    torch.allclose(grads[0], grads[r], rtol=0.0, atol=REDUCED_ATOL) for r in range(grads.shape[0])
                )
                rec = {
                    "epoch": epoch,
                    "index": index,
                    "samples": int(x.shape[0]),
                    "sync": bool(accelerator.sync_gradients),
                    "reduced": bool(reduced),
                    "end": bool(accelerator.gradient_state.end_of_dataloader),
                    "remainder": int(accelerator.gradient_state.remainder),
                }

                opt.step()
                sched.step()
                opt.zero_grad()

                # Moment 2: after step / scheduler step / zero_grad.
                grad = net.weight.grad
                rec["opt_steps"] = opt_steps[0]
                rec["sched_steps"] = int(sched.scheduler.last_epoch)
                rec["grad_zero"] = bool(grad is None or not torch.any(grad != 0).item())
                batches.append(rec)

    out = dict(cfg)
    out["batches"] = batches
    out["weight"] = [float(v) for v in net.weight.detach().flatten().tolist()]
    out["bias"] = float(net.bias.detach().item())
    accelerator.wait_for_everyone()
    return out


def worker(out_dir):
    """Body of each launched process: trace every configuration, write rank file."""
    # Keep stdout clean for the JSON document: anything printed in workers goes to stderr.
    sys.stdout = sys.stderr
    configs = [run_config(cfg) for cfg in all_configs()]
    rank = torch.distributed.get_rank()
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"configs": configs}, f)


def main():
    start = time.time()
    with tempfile.TemporaryDirectory() as out_dir:
        debug_launcher(worker, args=(out_dir,), num_processes=NUM_PROCESSES)
        traces = []
        for rank in range(NUM_PROCESSES):
            with open(os.path.join(out_dir, f"rank{rank}.json")) as f:
                traces.append(json.load(f))

    # Report (stderr) any recorded value that differs between ranks.
    differences = 0
    for rank in range(1, NUM_PROCESSES):
        for c0, cr in zip(traces[0]["configs"], traces[rank]["configs"]):
            if c0 != cr:
                differences += 1
                print(f"rank {rank} differs from rank 0 in {[c0[k] for k in CONFIG_KEYS]}", file=sys.stderr)
    print(
        f"sync_trace_peer: {len(traces[0]['configs'])} configs, "
        f"{differences} differing between ranks, {time.time() - start:.1f}s",
        file=sys.stderr,
    )

    json.dump(traces[0], sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

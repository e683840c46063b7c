# Python Accelerate's side of checkpoint_interop_test (Accelerate 1.15).
#
# The twin of checkpoint_interop.cc: the same model (Net: fc1 = Linear(4, 8),
# tanh, fc2 = Linear(8, 3)), weights, data, optimizer (SGD with momentum,
# Adam, AdamW with amsgrad) and StepLR(step_size=3, gamma=0.5), prepared by
# `accelerate.Accelerator(cpu=True)`, with a `Counter` registered for
# checkpointing.
#
#   checkpoint_interop_peer.py save KIND PROCESSES DIR OUT [--legacy_weights]
#     trains 4 steps, `accelerator.save_state(DIR)` (with
#     `safe_serialization=False` under --legacy_weights: the model as
#     pytorch_model.bin), dumps what it saved to OUT/rank<r>.pt, then takes
#     one more step and adds its result;
#   checkpoint_interop_peer.py load KIND PROCESSES DIR OUT
#     builds everything afresh (other weights and hyperparameters),
#     `accelerator.load_state(DIR)`, dumps what it restored, then takes the
#     same next step and adds its result.
#
# PROCESSES is 1, or 2 (accelerate.debug_launcher: gloo, the model wrapped
# in DDP). The dump has the same structure as checkpoint_interop.cc's (see
# there), plus, here only, the raw `optimizer.state_dict()` and
# `scheduler.state_dict()` ("optimizer_state_dict", "scheduler_state_dict")
# and what Accelerate logged while loading ("load_log").

import logging
import os
import sys

# One intra-op thread, as our side: the same kernels in the same order.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from accelerate import Accelerator, debug_launcher  # noqa: E402

TRAIN_STEPS = 4  # See kTrainSteps in checkpoint_interop.cc.
STEP_SIZE = 3
GAMMA = 0.5


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 8)
        self.fc2 = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


class Counter:
    """Batches trained, saved with the checkpoint (our `Counter`)."""

    def __init__(self):
        self.batches = 0

    def state_dict(self):
        return {"batches": self.batches}

    def load_state_dict(self, state):
        self.batches = state["batches"]


def init_weights(net, offset):
    with torch.no_grad():
        for i, p in enumerate(net.parameters()):
            values = torch.sin(torch.arange(p.numel(), dtype=torch.float32) * 0.37 + (offset + i)) * 0.5
            p.copy_(values.reshape(p.shape))


def batch(rank, k):
    x = torch.sin(torch.arange(24, dtype=torch.float32).reshape(6, 4) * 0.7 + rank) + 0.1 * k
    y = torch.cos(torch.arange(18, dtype=torch.float32).reshape(6, 3) * 0.3 - rank)
    return x, y


def make_optimizer(kind, params, fresh):
    if kind == "sgd":
        if fresh:
            return torch.optim.SGD(params, lr=0.5, momentum=0.5)
        return torch.optim.SGD(params, lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)
    if kind == "adam":
        if fresh:
            return torch.optim.Adam(params, lr=0.3, betas=(0.5, 0.6), eps=1e-3)
        return torch.optim.Adam(params, lr=0.01, betas=(0.85, 0.995), eps=1e-7, weight_decay=0.02)
    if kind == "adamw":
        if fresh:
            return torch.optim.AdamW(params, lr=0.3, betas=(0.5, 0.6), eps=1e-3, weight_decay=0.0)
        return torch.optim.AdamW(params, lr=0.01, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.05, amsgrad=True)
    raise ValueError(f"optimizer {kind!r} is not one of sgd, adam, adamw")


def params_of(net):
    return {name: p.detach().clone() for name, p in net.named_parameters()}


def optimizer_state(net, opt):
    out = {}
    for name, p in net.named_parameters():
        if p not in opt.state:
            continue
        entry = {}
        for key, value in opt.state[p].items():
            if key == "step":
                entry["step"] = int(value.item()) if torch.is_tensor(value) else int(value)
            elif value is not None:
                entry[key] = value.detach().clone()
        out[name] = entry
    return out


def groups_of(opt, kind):
    keys = ("lr", "momentum", "dampening", "weight_decay", "nesterov") if kind == "sgd" else (
        "lr", "betas", "eps", "weight_decay", "amsgrad")
    groups = []
    for group in opt.param_groups:
        out = {}
        for key in keys:
            value = group[key]
            if key == "betas":
                value = [float(b) for b in value]
            elif isinstance(value, bool):
                pass
            else:
                value = float(value)
            out[key] = value
        groups.append(out)
    return groups


def worker(mode, kind, ckpt_dir, out_dir, legacy=False):
    # Logs of load_state (accelerate.checkpointing logs at INFO on the main
    # process) are kept for the dump.
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    log = logging.getLogger("accelerate.checkpointing")
    log.setLevel(logging.INFO)
    log.addHandler(Keep())

    fresh = mode == "load"
    accelerator = Accelerator(cpu=True)
    rank = accelerator.process_index
    net = Net()
    init_weights(net, 5.0 if fresh else 1.0)
    raw_opt = make_optimizer(kind, net.parameters(), fresh)
    raw_sched = torch.optim.lr_scheduler.StepLR(raw_opt, step_size=STEP_SIZE, gamma=GAMMA)
    model, opt, sched = accelerator.prepare(net, raw_opt, raw_sched)
    counter = Counter()
    accelerator.register_for_checkpointing(counter)

    def step(k):
        with accelerator.accumulate(model):
            x, y = batch(rank, k)
            loss = F.mse_loss(model(x), y)
            accelerator.backward(loss)
            opt.step()
            sched.step()
            opt.zero_grad()
        counter.batches += 1

    if mode == "save":
        for k in range(TRAIN_STEPS):
            step(k)
        # --legacy_weights: the model as pytorch_model.bin (torch.save).
        accelerator.save_state(ckpt_dir, safe_serialization=not legacy)
    else:
        accelerator.load_state(ckpt_dir)
    dump = {
        "params": params_of(net),
        "state": optimizer_state(net, raw_opt),
        "groups": groups_of(raw_opt, kind),
        "scheduler": {
            "last_epoch": int(raw_sched.last_epoch),
            "base_lrs": [float(lr) for lr in raw_sched.base_lrs],
            "last_lr": [float(lr) for lr in raw_sched.get_last_lr()],
        },
        "custom": counter.state_dict(),
        "accumulation_step": int(accelerator.step),
        "cpu_generator": torch.get_rng_state(),
        "optimizer_state_dict": raw_opt.state_dict(),
        "scheduler_state_dict": raw_sched.state_dict(),
        "load_log": list(records),
    }
    step(TRAIN_STEPS)
    dump["next_params"] = params_of(net)
    dump["next_lr"] = [float(g["lr"]) for g in raw_opt.param_groups]
    torch.save(dump, os.path.join(out_dir, f"rank{rank}.pt"))
    accelerator.wait_for_everyone()


def main():
    args = sys.argv[1:]
    legacy = args[-1:] == ["--legacy_weights"]
    if legacy:
        args = args[:-1]
    if len(args) != 5 or args[0] not in ("save", "load") or args[2] not in ("1", "2"):
        sys.exit("usage: checkpoint_interop_peer.py save|load sgd|adam|adamw 1|2 DIR OUT [--legacy_weights]")
    mode, kind, processes, ckpt_dir, out_dir = args
    torch.set_num_threads(1)
    if processes == "1":
        worker(mode, kind, ckpt_dir, out_dir, legacy)
    else:
        debug_launcher(worker, args=(mode, kind, ckpt_dir, out_dir, legacy), num_processes=2)


if __name__ == "__main__":
    main()

"""Python peer of //benchmarks:checkpoint_save_load: the same model (8
float32 Linear layers of width 3968 in a ModuleList, 126M parameters, about
500 MB) and AdamW after one step, prepared by Accelerate 1.15
(`Accelerator(cpu=True)`: DDP over gloo on 2 processes). Times
`accelerator.save_state(DIR)`, then `accelerator.load_state(DIR)` twice,
each into a fresh setup (`free_memory`, a new model and AdamW prepared):
cold (the checkpoint's files evicted from the page cache, then 5 s for
the memory freed to go back to the VM's host) and warm (the same files
again, now cached); each from the return of a barrier to the
process's own return, and again to the end of the first training step on
the loaded setup (forward, backward, `optimizer.step()`, `zero_grad()` on
the same input as ours; the check of the loaded state between them left
out). Accelerate's `load_state` has no mapped mode: it reads
optimizer.bin with `torch.load` into new memory (`torch.load(mmap=True)`
exists, Accelerate does not use it), so this side has only plain loads.
Measures the growth of the peak RSS during the save (reset through
/proc/self/clear_refs, VmHWM after minus VmRSS before). After the timed
save the main process syncs the file systems (`save_state` leaves its
files dirty in the page cache; dirty pages cannot be evicted). Checks the
loaded weights and optimizer state against the saved ones, and the two
first steps' results against each other. The main process prints one JSON
line {"save_seconds", "cold_load_seconds", "warm_load_seconds",
"cold_load_step_seconds", "warm_load_step_seconds",
"save_peak_growth_mb": each the largest over processes, "model_mb",
"processes"}. Run with the .venv's Python, one copy per rank with
torchrun's variables:

    checkpoint_save_load_peer.py DIR
"""
import json
import os
import sys
import time

import torch
import torch.nn as nn
from accelerate import Accelerator

LAYERS, WIDTH = 8, 3968
COLD_WAIT_SECONDS = 5


class Stack(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(WIDTH, WIDTH)
                                    for _ in range(LAYERS))

    def forward(self, x):
        for layer in self.layers:
            x = torch.relu(layer(x))
        return x


def status_bytes(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return -1


def reset_peak_rss():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def evict_from_page_cache(directory):
    """Drops the pages of the (synced) files in `directory` from the page
    cache, so that the next read comes from the disk."""
    for name in os.listdir(directory):
        fd = os.open(os.path.join(directory, name), os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def prepare(accelerator, seed):
    torch.manual_seed(seed)
    model = Stack()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return accelerator.prepare(model, optimizer)


def probe(model, optimizer):
    """The last layer's bias and its exp_avg."""
    bias = list(model.parameters())[-1]
    state = optimizer.optimizer.state.get(bias, {})
    exp_avg = state.get("exp_avg")
    return bias.detach().clone(), None if exp_avg is None else exp_avg.clone()


def main():
    directory = sys.argv[1]
    torch.set_num_threads(1)
    accelerator = Accelerator(cpu=True)

    # The state to save: one training step.
    model, optimizer = prepare(accelerator, 0)
    model_bytes = sum(p.nbytes for p in model.parameters())
    torch.manual_seed(1)
    x = torch.randn(4, WIDTH)  # The input of every step (ours draws the same).
    accelerator.backward(model(x).pow(2).mean())
    optimizer.step()
    optimizer.zero_grad()
    bias, exp_avg = probe(model, optimizer)
    assert exp_avg is not None, "AdamW has no state"

    # Save.
    reset_peak_rss()
    rss_before = status_bytes("VmRSS")
    accelerator.wait_for_everyone()
    start = time.perf_counter()
    accelerator.save_state(directory)
    save_seconds = time.perf_counter() - start
    peak_growth = status_bytes("VmHWM") - rss_before
    if accelerator.is_main_process:
        os.sync()

    # Loads, each into a fresh setup (the previous one released first):
    # cold, the checkpoint's files evicted from the page cache, then warm;
    # each followed by the first training step on the same input.
    load_seconds, load_step_seconds = [], []
    stepped_bias = None
    for warm in (False, True):
        accelerator.free_memory()
        del model, optimizer
        model, optimizer = prepare(accelerator, 2 + warm)
        assert not torch.equal(probe(model, optimizer)[0], bias)
        accelerator.wait_for_everyone()  # As ours.
        if not warm and accelerator.is_main_process:
            evict_from_page_cache(directory)
            time.sleep(COLD_WAIT_SECONDS)  # As ours (checkpoint_save_load.cc).
        accelerator.wait_for_everyone()
        start = time.perf_counter()
        accelerator.load_state(directory)
        loaded = time.perf_counter()
        load_seconds.append(loaded - start)
        loaded_bias, loaded_exp_avg = probe(model, optimizer)
        assert torch.equal(loaded_bias, bias), "weights not restored"
        assert loaded_exp_avg is not None and torch.equal(
            loaded_exp_avg, exp_avg), "optimizer state not restored"
        checked = time.perf_counter()
        accelerator.backward(model(x).pow(2).mean())
        optimizer.step()
        optimizer.zero_grad()
        load_step_seconds.append(
            time.perf_counter() - start - (checked - loaded))
        stepped = probe(model, optimizer)[0]
        assert not torch.equal(stepped, bias), "the step changed nothing"
        if stepped_bias is None:
            stepped_bias = stepped
        assert torch.equal(stepped, stepped_bias), "first steps differ"

    mine = torch.tensor([[save_seconds, *load_seconds, *load_step_seconds,
                          float(peak_growth)]], dtype=torch.float64)
    worst = accelerator.gather(mine).max(dim=0).values
    if accelerator.is_main_process:
        print(json.dumps({"save_seconds": worst[0].item(),
                          "cold_load_seconds": worst[1].item(),
                          "warm_load_seconds": worst[2].item(),
                          "cold_load_step_seconds": worst[3].item(),
                          "warm_load_step_seconds": worst[4].item(),
                          "save_peak_growth_mb": worst[5].item() / 1e6,
                          "model_mb": model_bytes / 1e6,
                          "processes": accelerator.num_processes}),
              flush=True)
    accelerator.end_training()


if __name__ == "__main__":
    main()

"""Python peer of train_step.cc: the same 3.2M-parameter MLP and batch,
trained through Python Accelerate 1.15's Accelerator (DDP over gloo when
WORLD_SIZE > 1; alone otherwise): prepare, accelerator.backward, step.
Rank 0 prints one JSON line. Run with the .venv's Python."""
import json
import time

import torch
import torch.nn as nn
from accelerate import Accelerator

WARMUP, STEPS = 5, 30


def main():
    accelerator = Accelerator(cpu=True)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1024, 1024), nn.ReLU(),
                          nn.Linear(1024, 1024), nn.ReLU(),
                          nn.Linear(1024, 1024), nn.ReLU(),
                          nn.Linear(1024, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model, optimizer = accelerator.prepare(model, optimizer)
    x = torch.randn(64, 1024)
    y = torch.randint(0, 10, (64,))
    for step in range(WARMUP + STEPS):
        if step == WARMUP:
            accelerator.wait_for_everyone()
            start = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x), y)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
    accelerator.wait_for_everyone()
    seconds = (time.perf_counter() - start) / STEPS
    if accelerator.is_main_process:
        print(json.dumps({"processes": accelerator.num_processes,
                          "step_seconds": seconds}), flush=True)
    accelerator.end_training()


if __name__ == "__main__":
    main()

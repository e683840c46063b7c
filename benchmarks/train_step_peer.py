"""Python peer of train_step.cc: the same 3.2M-parameter MLP and batch,
trained with torch.nn.parallel.DistributedDataParallel over gloo when
WORLD_SIZE > 1 (plain when alone). Rank 0 prints one JSON line. Needs
Debian's python3-torch: run with /usr/bin/python3."""
import json
import os
import time

import torch
import torch.distributed as dist
import torch.nn as nn

WARMUP, STEPS = 5, 30


def main():
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("gloo")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1024, 1024), nn.ReLU(),
                          nn.Linear(1024, 1024), nn.ReLU(),
                          nn.Linear(1024, 1024), nn.ReLU(),
                          nn.Linear(1024, 10))
    if distributed:
        model = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(64, 1024)
    y = torch.randint(0, 10, (64,))
    for step in range(WARMUP + STEPS):
        if step == WARMUP:
            if distributed:
                dist.barrier()
            start = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    if distributed:
        dist.barrier()
    seconds = (time.perf_counter() - start) / STEPS
    if not distributed or dist.get_rank() == 0:
        print(json.dumps({"processes": dist.get_world_size() if distributed else 1,
                          "step_seconds": seconds}), flush=True)
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()

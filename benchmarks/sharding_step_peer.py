"""Python peer of //benchmarks:sharding_step: the same 101M-parameter MLP,
AdamW and batch, wrapped with PyTorch 2.13's FSDP 2 (`fully_shard` on each
Linear and on the root, as Accelerate's FSDP 2 plugin does, over gloo on
CPU) with `reshard_after_forward` from SHARDING (SHARD_GRAD_OP: false,
FULL_SHARD: true), or DistributedDataParallel for "DDP". Rank 0 prints one
JSON line with every process's median step time, peak RSS and the bytes of
parameters, gradients and optimizer state it holds.

Run one copy per rank with torchrun's variables (sharding_step.py does).
"""
import json
import os
import resource
import time

import torch
import torch.distributed as dist

LAYERS, WIDTH, WARMUP, STEPS = 6, 4096, 2, 6


def local_bytes(tensor):
    if tensor is None:
        return 0
    local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
    return local.numel() * local.element_size()


def main():
    dist.init_process_group("gloo")
    torch.manual_seed(0)
    layers = []
    for i in range(LAYERS):
        layers.append(torch.nn.Linear(WIDTH, WIDTH))
        if i + 1 < LAYERS:
            layers.append(torch.nn.GELU())
    model = torch.nn.Sequential(*layers)
    sharding = os.environ.get("SHARDING", "DDP")
    if sharding == "DDP":
        model = torch.nn.parallel.DistributedDataParallel(model)
    else:
        from torch.distributed.fsdp import fully_shard
        reshard = sharding == "FULL_SHARD"
        for layer in model:
            if isinstance(layer, torch.nn.Linear):
                fully_shard(layer, reshard_after_forward=reshard)
        fully_shard(model, reshard_after_forward=reshard)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(16, WIDTH)
    times = []
    for step in range(WARMUP + STEPS):
        start = time.perf_counter()
        model(x).square().mean().backward()
        optimizer.step()
        if step + 1 == WARMUP + STEPS:
            break
        optimizer.zero_grad()
        if step >= WARMUP:
            times.append(time.perf_counter() - start)
    state = 0
    for p in model.parameters():
        state += local_bytes(p) + local_bytes(p.grad)
    for s in optimizer.state.values():
        for value in s.values():
            if torch.is_tensor(value) and value.dim() > 0:
                state += local_bytes(value)
    optimizer.zero_grad()
    times.sort()
    mine = torch.tensor([[times[len(times) // 2],
                          resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                          state]], dtype=torch.float64)
    gathered = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, mine)
    if dist.get_rank() == 0:
        print(json.dumps({"sharding": sharding, "ranks": [
            {"step_seconds": g[0][0].item(), "peak_rss_bytes": g[0][1].item(),
             "state_bytes": g[0][2].item()} for g in gathered]}), flush=True)
    dist.barrier()


if __name__ == "__main__":
    main()

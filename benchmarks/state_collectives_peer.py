"""Python peer of //state:collectives_benchmark: barrier latency and an
all-reduce sweep with torch.distributed over gloo, the same sizes and
iteration counts. Run one copy per rank with RANK, WORLD_SIZE, MASTER_ADDR and
MASTER_PORT set (benchmarks/state_collectives.py does); rank 0 prints one JSON
object per line: {"name": ..., "bytes": ..., "seconds": per iteration}.

Run with the .venv's Python (torch 2.13).
"""
import json
import time

import torch
import torch.distributed as dist


def iterations_for(nbytes):
    # Same formula as state/collectives_benchmark.cc.
    return max(10, min(2000, (256 << 20) // nbytes))


def main():
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    results = []

    dist.barrier()
    iters = 2000
    start = time.perf_counter()
    for _ in range(iters):
        dist.barrier()
    results.append({"name": "BM_Barrier", "bytes": 0,
                    "seconds": (time.perf_counter() - start) / iters})

    nbytes = 4
    while nbytes <= 64 << 20:
        tensor = torch.ones(nbytes // 4, dtype=torch.float32)
        dist.all_reduce(tensor)  # warm-up, as in the C++ benchmark
        dist.barrier()
        iters = iterations_for(nbytes)
        start = time.perf_counter()
        for _ in range(iters):
            dist.all_reduce(tensor)
        results.append({"name": "BM_AllReduce/%d" % nbytes, "bytes": nbytes,
                        "seconds": (time.perf_counter() - start) / iters})
        nbytes *= 4

    dist.barrier()
    if rank == 0:
        for result in results:
            print(json.dumps(result), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

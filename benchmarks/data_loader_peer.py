"""Python peer of //data:data_loader_benchmark: one epoch over a 20000 x 20
float TensorDataset in batches of 256, with plain slicing and with
DataLoader + DistributedSampler (1 replica, as prepared for one process).
Prints one JSON object per line: {"name": ..., "seconds": per epoch}.
Run with the .venv's Python (torch 2.13)."""
import json
import time

import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

ROWS, COLUMNS, BATCH = 20000, 20, 256


def best_epoch_time(run, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    torch.set_num_threads(1)
    data = torch.randn(ROWS, COLUMNS)
    target = torch.randint(0, 10, (ROWS,))

    def slicing():
        for begin in range(0, ROWS, BATCH):
            x = data[begin:begin + BATCH]
            y = target[begin:begin + BATCH]

    dataset = TensorDataset(data, target)
    loader = DataLoader(dataset, batch_size=BATCH,
                        sampler=DistributedSampler(dataset, num_replicas=1,
                                                   rank=0, shuffle=False))

    def data_loader():
        for x, y in loader:
            pass

    for name, run, repeats in (("slicing", slicing, 200),
                               ("DataLoader+DistributedSampler", data_loader, 10)):
        print(json.dumps({"name": name,
                          "seconds": best_epoch_time(run, repeats)}), flush=True)


if __name__ == "__main__":
    main()

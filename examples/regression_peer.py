"""The regression example written for Python Accelerate 1.15 (the peer of
examples/regression.cc; regression_test checks both end at the same a, b):
y = a*x + b in double precision fitted to 64 points with SGD on the mean
squared error, no shuffling, through Accelerator.prepare (DDP over gloo),
accelerator.accumulate and accelerator.backward.

    python -m accelerate.commands.launch --cpu --num_processes 2 \
        examples/regression_peer.py --batch_size 8 --epochs 3

On exit the main process prints {"a": <a>, "b": <b>} with full precision.
"""
import argparse
import gc

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class Line(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.zeros(1, dtype=torch.float64))
        self.b = nn.Parameter(torch.zeros(1, dtype=torch.float64))

    def forward(self, x):
        return self.a * x + self.b


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--gradient_accumulation_steps", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.1)
    args = parser.parse_args()

    accelerator = Accelerator(
        cpu=True, gradient_accumulation_steps=args.gradient_accumulation_steps)
    x = -1 + 2 * torch.arange(64, dtype=torch.float64).unsqueeze(1) / 63
    y = 2 * x + 3
    model = Line()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    loader = DataLoader(TensorDataset(x, y), batch_size=args.batch_size)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    for _ in range(args.epochs):
        for inputs, targets in loader:
            with accelerator.accumulate(model):
                loss = nn.functional.mse_loss(model(inputs), targets)
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
    if accelerator.is_main_process:
        line = accelerator.unwrap_model(model)
        print('{"a": %.17g, "b": %.17g}' % (line.a.item(), line.b.item()))
    accelerator.wait_for_everyone()
    # Drop the DDP wrapper and collect it before the process group goes: a
    # gloo thread left calling into Python at interpreter exit aborts the
    # process now and then (seen in about 5% of runs).
    del model, optimizer, loader
    accelerator.free_memory()
    gc.collect()
    accelerator.end_training()


if __name__ == "__main__":
    main()

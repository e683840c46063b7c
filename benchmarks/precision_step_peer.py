"""Python peer of precision_step.cc: the same small transformer and batch
trained through Python Accelerate 1.15's Accelerator with the same
mixed_precision (fp8 through its torchao backend, emulated on CPU as torchao
requires there; its default filter keeps the first and the last linear
layers in high precision). One process; prints one JSON line. Run with the
.venv's Python and ACCELERATE_MIXED_PRECISION set."""
import json
import math
import os
import time

import torch
import torch.nn as nn
from accelerate import Accelerator
from accelerate.utils import AORecipeKwargs

WARMUP, STEPS = 5, 30
VOCAB, WIDTH, HEADS, TOKENS, BATCH, BLOCKS = 256, 128, 4, 64, 16, 2


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(WIDTH)
        self.qkv = nn.Linear(WIDTH, 3 * WIDTH)
        self.proj = nn.Linear(WIDTH, WIDTH)
        self.norm2 = nn.LayerNorm(WIDTH)
        self.up = nn.Linear(WIDTH, 4 * WIDTH)
        self.down = nn.Linear(4 * WIDTH, WIDTH)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = (self.qkv(self.norm1(x))
                   .view(b, t, 3, HEADS, WIDTH // HEADS)
                   .permute(2, 0, 3, 1, 4))
        scores = q @ k.transpose(-2, -1) / math.sqrt(WIDTH // HEADS)
        mask = torch.ones(t, t, dtype=torch.bool).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
        attended = (torch.softmax(scores, -1) @ v).transpose(1, 2)
        x = x + self.proj(attended.reshape(b, t, WIDTH))
        return x + self.down(nn.functional.gelu(self.up(self.norm2(x))))


class Gpt(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.position = nn.Parameter(torch.randn(TOKENS, WIDTH) * 0.02)
        self.blocks = nn.ModuleList(Block() for _ in range(BLOCKS))
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, VOCAB)

    def forward(self, tokens):
        x = self.embed(tokens) + self.position
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def main():
    mixed_precision = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    handlers = []
    if mixed_precision == "fp8":
        from torchao.float8 import Float8LinearConfig
        recipe = os.environ.get("ACCELERATE_FP8_RECIPE", "tensorwise")
        config = Float8LinearConfig.from_recipe_name(recipe)
        config = Float8LinearConfig(**{**config.__dict__, "emulate": True})
        handlers = [AORecipeKwargs(config=config)]
    accelerator = Accelerator(cpu=True, mixed_precision=mixed_precision,
                              kwargs_handlers=handlers)
    torch.manual_seed(0)
    model = Gpt()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model, optimizer = accelerator.prepare(model, optimizer)
    tokens = torch.randint(0, VOCAB, (BATCH, TOKENS + 1))
    inputs, targets = tokens[:, :TOKENS], tokens[:, 1:].reshape(-1)
    for step in range(WARMUP + STEPS):
        if step == WARMUP:
            start = time.perf_counter()
        with accelerator.autocast():
            logits = model(inputs).float()
            loss = nn.functional.cross_entropy(logits.reshape(-1, VOCAB),
                                               targets)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        loss_value = loss.item()
    seconds = (time.perf_counter() - start) / STEPS
    print(json.dumps({"mixed_precision": mixed_precision,
                      "step_seconds": seconds, "loss": loss_value,
                      "scaler": accelerator.scaler is not None}), flush=True)


if __name__ == "__main__":
    main()

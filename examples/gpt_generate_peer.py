"""The Python twin of gpt_generate (its test checks that both generate the
same tokens; benchmarks/generation.py races them): the same GPT-2-style
model in Python torch 2.13, built under Accelerate's `init_empty_weights`
and loaded with Accelerate 1.15's own `load_checkpoint_and_dispatch` from
the same safetensors checkpoint and device map, with an `offload_folder`:
Accelerate writes the weights the map puts on "disk" to the offload folder
as .dat files, and its hooks (AlignDevicesHook over an
OffloadedWeightsLoader) read each module's weights before its forward and
drop them after. Prints one JSON line like the example.

    gpt_generate_peer.py CHECKPOINT DEVICE_MAP_JSON TOKENS PROMPT [--cold]
"""
import json
import math
import os
import resource
import sys
import tempfile
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # Accelerate's loading bars.

import torch
import torch.nn.functional as F
from accelerate import init_empty_weights, load_checkpoint_and_dispatch
from torch import nn


class Conv1D(nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        shape = list(x.shape[:-1]) + [self.weight.shape[1]]
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(shape)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.heads = c["n_head"]
        self.c_attn = Conv1D(c["n_embd"], 3 * c["n_embd"])
        self.c_proj = Conv1D(c["n_embd"], c["n_embd"])

    def forward(self, x):
        batch, length, width = x.shape
        q, k, v = self.c_attn(x).split(width, -1)
        split = lambda t: t.view(batch, length, self.heads,
                                 width // self.heads).transpose(1, 2)
        q, k, v = split(q), split(k), split(v)
        scores = q.matmul(k.transpose(-2, -1)) / math.sqrt(width // self.heads)
        causal = torch.ones(length, length, dtype=torch.bool,
                            device=x.device).triu(1)
        scores = scores.masked_fill(causal, float("-inf")).softmax(-1)
        return self.c_proj(scores.matmul(v).transpose(1, 2).reshape(batch, length, width))


class Mlp(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_fc = Conv1D(c["n_embd"], 4 * c["n_embd"])
        self.c_proj = Conv1D(4 * c["n_embd"], c["n_embd"])

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c["n_embd"], eps=1e-5)
        self.attn = Attention(c)
        self.ln_2 = nn.LayerNorm(c["n_embd"], eps=1e-5)
        self.mlp = Mlp(c)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Gpt(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.wte = nn.Embedding(c["vocab_size"], c["n_embd"])
        self.wpe = nn.Embedding(c["n_positions"], c["n_embd"])
        self.h = nn.ModuleList([Block(c) for _ in range(c["n_layer"])])
        self.ln_f = nn.LayerNorm(c["n_embd"], eps=1e-5)

    def forward(self, tokens):
        x = self.wte(tokens) + self.wpe(
            torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.h:
            x = block(x)
        return F.linear(self.ln_f(x), self.wte.weight)


def drop_page_cache(*folders):
    """Drops the cached pages of the checkpoint and of the offload folder
    (where Accelerate may have written .dat copies of disk weights)."""
    for folder in folders:
        for f in os.listdir(folder):
            if f.endswith((".safetensors", ".dat")):
                fd = os.open(os.path.join(folder, f), os.O_RDONLY)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)


def run(offload_folder):
    folder, map_path, new_tokens, prompt = sys.argv[1:5]
    cold = "--cold" in sys.argv[5:]
    config = json.load(open(os.path.join(folder, "config.json")))
    device_map = json.load(open(map_path))["device_map"]
    if device_map.get("wte") == "disk" or device_map.get("") == "disk":
        sys.exit("the output layer reuses wte outside wte's forward: "
                 "Accelerate's hooks cannot serve it from disk")
    load_start = time.perf_counter()
    with init_empty_weights():
        model = Gpt(config)
    model = load_checkpoint_and_dispatch(model, folder, device_map=device_map,
                                         offload_folder=offload_folder)
    load_seconds = time.perf_counter() - load_start
    # Inputs go to the map's first GPU (Accelerate's main device), else the CPU.
    gpus = [d for d in device_map.values() if isinstance(d, int)]
    device = torch.device("cuda", gpus[0]) if gpus else torch.device("cpu")
    tokens = [b % config["vocab_size"] for b in prompt.encode()] or [0]
    start = time.perf_counter()
    with torch.inference_mode():
        for _ in range(int(new_tokens)):
            window = tokens[-config["n_positions"]:]
            logits = model(torch.tensor([window], device=device))
            tokens.append(int(logits[0, -1].argmax()))
            if cold:
                drop_page_cache(folder, offload_folder)
    seconds = time.perf_counter() - start
    generated = tokens[len(tokens) - int(new_tokens):]
    print(json.dumps({"tokens": generated, "load_seconds": load_seconds,
                      "generate_seconds": seconds,
                      "tokens_per_second": len(generated) / seconds,
                      "last_logits_abs_sum": float(logits[0, -1].double().abs().sum()),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main():
    # Accelerate's offload folder, removed however the run ends.
    with tempfile.TemporaryDirectory(prefix="gpt_peer_offload_") as folder:
        run(folder)


if __name__ == "__main__":
    main()

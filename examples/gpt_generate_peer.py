"""The Python twin of gpt_generate (its test checks that both generate the
same tokens; benchmarks/generation.py races them): the same GPT-2-style
model in Python torch (Debian's python3-torch; run with
/usr/bin/python3), loaded from the same safetensors checkpoint, with the
weights the device map puts on "disk" offloaded the way Python Accelerate
does it (re-typed here, as Accelerate is not packaged for Debian): the
model is built under init_empty_weights, its offloaded tensors stay on `meta`, a forward pre-hook on each module
holding offloaded weights reads them from the checkpoint (a safe_open of
the file per tensor, as Accelerate's OffloadedWeightsLoader, and
get_tensor: a copy out of the mapping) and sets them on the module, a
forward hook puts them back on `meta`; no prefetching. Prints one JSON line
like the example.

    gpt_generate_peer.py CHECKPOINT DEVICE_MAP_JSON TOKENS PROMPT [--cold]
"""
import contextlib
import json
import math
import mmap
import os
import resource
import struct
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "F64": torch.float64, "I64": torch.int64, "I32": torch.int32}


class SafeOpen:
    """A mapped safetensors file: header parsed once, tensors copied out."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        (n,) = struct.unpack("<Q", self.map[:8])
        self.header = json.loads(self.map[8:8 + n])
        self.header.pop("__metadata__", None)
        self.start = 8 + n

    def get_tensor(self, name):
        info = self.header[name]
        begin, end = info["data_offsets"]
        data = bytearray(self.map[self.start + begin:self.start + end])
        return torch.frombuffer(data, dtype=DTYPES[info["dtype"]]).reshape(
            info["shape"])

    def close(self):
        self.map.close()


def read_offloaded(opened, name):
    """As Accelerate's OffloadedWeightsLoader does for a safetensors entry:
    safe_open the file for this one tensor, copy it out, close."""
    fresh = SafeOpen(opened.path)
    try:
        return fresh.get_tensor(name)
    finally:
        fresh.close()


def open_checkpoint(folder):
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        weight_map = json.load(open(index))["weight_map"]
    else:
        only = SafeOpen(os.path.join(folder, "model.safetensors"))
        weight_map = {name: "model.safetensors" for name in only.header}
    files = {f: SafeOpen(os.path.join(folder, f)) for f in set(weight_map.values())}
    return {name: files[f] for name, f in weight_map.items()}


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
        causal = torch.ones(length, length, dtype=torch.bool).triu(1)
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
        x = self.wte(tokens) + self.wpe(torch.arange(tokens.shape[1]))
        for block in self.h:
            x = block(x)
        return F.linear(self.ln_f(x), self.wte.weight)


@contextlib.contextmanager
def init_empty_weights():
    """Accelerate's init_empty_weights (include_buffers=False): parameters
    move to `meta` as they are registered."""
    register = nn.Module.register_parameter

    def register_empty_parameter(module, name, param):
        register(module, name, param)
        if param is not None:
            module._parameters[name] = nn.Parameter(
                module._parameters[name].to(torch.device("meta")),
                requires_grad=param.requires_grad)

    nn.Module.register_parameter = register_empty_parameter
    try:
        yield
    finally:
        nn.Module.register_parameter = register


def placement(device_map, name):
    """The device of the longest device-map entry covering `name`."""
    prefix = name
    while True:
        if prefix in device_map:
            return device_map[prefix]
        if not prefix:
            return None
        prefix = prefix.rpartition(".")[0]


def set_tensor(module, name, value):
    module._parameters[name] = nn.Parameter(value, requires_grad=False)


def offload(model, tensors, device_map):
    """Accelerate's AlignDevicesHook with a weights map, for disk weights."""
    held = {}
    for module_name, module in model.named_modules():
        own = [n for n, _ in module.named_parameters(recurse=False)
               if placement(device_map, (module_name + "." if module_name else "") + n) == "disk"]
        if own:
            held[module_name] = (module, own)

    def pre_hook(prefix, names):
        def hook(module, args):
            for n in names:
                set_tensor(module, n, read_offloaded(tensors[prefix + n], prefix + n))
        return hook

    def post_hook(names):
        def hook(module, args, output):
            for n in names:
                set_tensor(module, n, torch.empty_like(module._parameters[n], device="meta"))
        return hook

    for module_name, (module, names) in held.items():
        prefix = module_name + "." if module_name else ""
        module.register_forward_pre_hook(pre_hook(prefix, names))
        module.register_forward_hook(post_hook(names))
        for n in names:
            set_tensor(module, n, torch.empty_like(module._parameters[n], device="meta"))
    return held


def drop_page_cache(folder):
    for f in os.listdir(folder):
        if f.endswith(".safetensors"):
            fd = os.open(os.path.join(folder, f), os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)


def main():
    folder, map_path, new_tokens, prompt = sys.argv[1:5]
    cold = "--cold" in sys.argv[5:]
    config = json.load(open(os.path.join(folder, "config.json")))
    device_map = json.load(open(map_path))["device_map"]
    load_start = time.perf_counter()
    tensors = open_checkpoint(folder)
    if placement(device_map, "wte.weight") == "disk":
        sys.exit("the output layer reuses wte outside wte's forward: "
                 "Accelerate's hooks cannot serve it from disk")
    with init_empty_weights():
        model = Gpt(config)
    # The resident weights, copied out of the checkpoint (safe_open).
    for name, param in list(model.named_parameters()):
        if placement(device_map, name) == "disk":
            continue
        module_name, _, leaf = name.rpartition(".")
        module = model.get_submodule(module_name)
        set_tensor(module, leaf, tensors[name].get_tensor(name))
    offload(model, tensors, device_map)
    for opened in set(tensors.values()):
        opened.close()  # Loading is done; offloaded weights reopen their file.
    load_seconds = time.perf_counter() - load_start
    tokens = [b % config["vocab_size"] for b in prompt.encode()] or [0]
    start = time.perf_counter()
    with torch.inference_mode():
        for _ in range(int(new_tokens)):
            window = tokens[-config["n_positions"]:]
            logits = model(torch.tensor([window]))
            tokens.append(int(logits[0, -1].argmax()))
            if cold:
                drop_page_cache(folder)
    seconds = time.perf_counter() - start
    generated = tokens[len(tokens) - int(new_tokens):]
    print(json.dumps({"tokens": generated, "load_seconds": load_seconds,
                      "generate_seconds": seconds,
                      "tokens_per_second": len(generated) / seconds,
                      "last_logits_abs_sum": float(logits[0, -1].double().abs().sum()),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()

"""examples/train_lm.cc written for Python Accelerate 1.15, its peer for
tokens-per-second comparisons: the same byte-level GPT-style model (names,
shapes, initialisation scheme), the same data split and padded batches, the
same loss formulation (each process backpropagates num_processes * its token
sum / the global token count, so that the averaged gradient is the one of the
whole global batch), the same warm-up and decay counted in optimizer steps,
clipping at 1.0, AdamW, and evaluation perplexity over every eval token once
through gather_for_metrics. With the same seed it even starts from the same
weights (one LibTorch, the same random draws in the same order) and reads the
same batches (Accelerate's seedable sampler), so its first losses equal
train_lm's to float rounding; train_lm_test checks it.

    .venv/bin/python -m accelerate.commands.launch --multi_gpu \
        --num_processes 2 --num_machines 1 --mixed_precision no \
        --dynamo_backend no examples/train_lm_peer.py [--max_steps 100]

On a machine without GPUs `--multi_gpu` starts torchrun's processes (one
intra-op thread each, as our launcher gives 2 processes on 2 cores) and
the Accelerator (cpu=True there) joins them over gloo; Accelerate's `--cpu`
would start one process. Python Accelerate's multi-GPU launcher does not pass
`--gradient_accumulation_steps` on, so this script takes it as its own flag.
The main process prints `step N loss L lr X` lines and ends with one JSON line
with the keys of train_lm's.
"""
import argparse
import gc
import json
import math
import os
import sys
import time

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

VOCAB = 256
IGNORE = -100


class Attention(nn.Module):
    def __init__(self, n_embd, n_head, proj_std):
        super().__init__()
        self.heads = n_head
        self.qkv = linear(n_embd, 3 * n_embd, 0.02)
        self.proj = linear(n_embd, n_embd, proj_std)

    def forward(self, x, mask):
        b, t, width = x.shape
        q, k, v = (y.view(b, t, self.heads, width // self.heads).transpose(1, 2)
                   for y in self.qkv(x).split(width, -1))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(y.transpose(1, 2).reshape(b, t, width))


class Block(nn.Module):
    def __init__(self, n_layer, n_embd, n_head):
        super().__init__()
        proj_std = 0.02 / math.sqrt(2.0 * n_layer)
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = Attention(n_embd, n_head, proj_std)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.fc = linear(n_embd, 4 * n_embd, 0.02)
        self.fc_proj = linear(4 * n_embd, n_embd, proj_std)

    def forward(self, x, mask):
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.fc_proj(F.gelu(self.fc(self.ln_2(x)), approximate="tanh"))


class Gpt(nn.Module):
    def __init__(self, n_layer, n_embd, n_head, n_positions):
        super().__init__()
        self.wte = nn.Embedding(VOCAB, n_embd)
        self.wpe = nn.Embedding(n_positions, n_embd)
        nn.init.normal_(self.wte.weight, 0.0, 0.02)
        nn.init.normal_(self.wpe.weight, 0.0, 0.02)
        self.h = nn.ModuleList(Block(n_layer, n_embd, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)

    def forward(self, input_ids, attention_mask):
        b, t = input_ids.shape
        causal = torch.ones(t, t, dtype=torch.bool, device=input_ids.device).tril()
        mask = causal.view(1, 1, t, t) & attention_mask.bool().view(b, 1, 1, t)
        x = self.wte(input_ids) + self.wpe(torch.arange(t, device=input_ids.device))
        for block in self.h:
            x = block(x, mask)
        return F.linear(self.ln_f(x), self.wte.weight)


def linear(n_in, n_out, std):
    layer = nn.Linear(n_in, n_out)
    nn.init.normal_(layer.weight, 0.0, std)
    nn.init.zeros_(layer.bias)
    return layer


def parse_args():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser()
    p.add_argument("--text", default=os.path.join(here, "data", "licenses.txt"))
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--max_steps", type=int, default=-1)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--eval_batch_size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup_steps", type=int, default=20)
    p.add_argument("--max_length", type=int, default=64)
    p.add_argument("--n_layer", type=int, default=2)
    p.add_argument("--n_embd", type=int, default=64)
    p.add_argument("--n_head", type=int, default=4)
    p.add_argument("--gradient_accumulation_steps", type=int, default=1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--log_every", type=int, default=10)
    args = p.parse_args()
    for name, minimum in [("batch_size", 1), ("eval_batch_size", 1), ("epochs", 1),
                          ("warmup_steps", 0), ("n_layer", 1), ("log_every", 1),
                          ("gradient_accumulation_steps", 1),
                          ("max_length", 2)]:
        if getattr(args, name) < minimum:
            sys.exit(f"train_lm_peer: --{name}: {getattr(args, name)} is below {minimum}")
    if args.max_steps == 0 or args.max_steps < -1:
        sys.exit(f"train_lm_peer: --max_steps: {args.max_steps} is neither -1 nor positive")
    if args.n_head < 1 or args.n_embd % args.n_head:
        sys.exit(f"train_lm_peer: --n_embd {args.n_embd} must be a positive "
                 f"multiple of --n_head {args.n_head}")
    return args


def read_split(path, max_length):
    """Lines without trailing blanks, 2 bytes or more, cut to max_length;
    every 10th to evaluation."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        sys.exit(f'train_lm_peer: --text: cannot read "{path}"')
    train, evaluation = [], []
    kept = 0
    for line in data.split(b"\n"):
        line = line.rstrip(b" \t\r")
        if len(line) < 2:
            continue
        (evaluation if kept % 10 == 9 else train).append(line[:max_length])
        kept += 1
    if not evaluation:
        sys.exit(f'train_lm_peer: --text: "{path}" has {kept} lines; at least 10 are needed')
    return train, evaluation


def collate(lines):
    """Right-padded {input_ids (0), labels (-100), attention_mask}."""
    t = max(len(line) for line in lines)
    ids = torch.zeros(len(lines), t, dtype=torch.long)
    labels = torch.full((len(lines), t), IGNORE, dtype=torch.long)
    mask = torch.zeros(len(lines), t, dtype=torch.long)
    for i, line in enumerate(lines):
        row = torch.tensor(list(line), dtype=torch.long)
        ids[i, :len(line)] = row
        labels[i, :len(line)] = row
        mask[i, :len(line)] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def token_nll(logits, labels):
    """The next-token NLL at each position [B, T - 1]; 0 where ignored."""
    targets = labels[:, 1:]
    return F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), targets.reshape(-1),
                           ignore_index=IGNORE, reduction="none").view(targets.shape)


def perplexity(accelerator, model, loader):
    model.eval()
    nll = tokens = 0.0
    with torch.no_grad():
        for batch in loader:
            logits = model(batch["input_ids"], batch["attention_mask"])
            labels = batch["labels"]
            gathered = accelerator.gather_for_metrics(
                {"nll": token_nll(logits, labels).double().sum(1),
                 "tokens": labels[:, 1:].ne(IGNORE).sum(1)})
            nll += gathered["nll"].sum().item()
            tokens += gathered["tokens"].sum().item()
    model.train()
    return math.exp(nll / tokens)


def train(args, accelerator):
    """Trains and evaluates; on the main process, prints the JSON line."""
    train_lines, eval_lines = read_split(args.text, args.max_length)
    processes = accelerator.num_processes

    torch.manual_seed(args.seed)
    model = Gpt(args.n_layer, args.n_embd, args.n_head, args.max_length)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    total = [0]  # Known once the loader is prepared.

    def lr_at(step):  # WarmupLinearDecay of train_lm.cc, as a factor.
        if step < args.warmup_steps:
            return (step + 1) / args.warmup_steps
        if total[0] <= args.warmup_steps:
            return 1.0
        return max(0.0, (total[0] - step) / (total[0] - args.warmup_steps))

    # Accelerate steps it once per process per optimizer step: count
    # optimizer steps (global batches), as train_lm does.
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda ticks: lr_at(ticks // processes))
    train_loader = DataLoader(train_lines, batch_size=args.batch_size,
                              shuffle=True, collate_fn=collate)
    eval_loader = DataLoader(eval_lines, batch_size=args.eval_batch_size,
                             collate_fn=collate)
    model, optimizer, train_loader, eval_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, eval_loader, scheduler)

    accumulation = accelerator.gradient_accumulation_steps
    total[0] = args.epochs * math.ceil(len(train_loader) / accumulation)
    if args.max_steps > 0:
        total[0] = min(total[0], args.max_steps)
    accelerator.print(
        f"train_lm_peer: {processes} processes, {len(train_loader)} batches per "
        f"epoch per process, accumulation {accumulation}, {total[0]} optimizer "
        f"steps, {len(eval_lines)} eval lines")

    step, tokens, seconds, ppl = 0, 0.0, 0.0, float("nan")
    micro_loss, micro_batches, losses = 0.0, 0, []
    evaluated = False
    for epoch in range(args.epochs):
        if step >= total[0]:
            break
        start = time.perf_counter()
        batches = 0
        for batch in train_loader:
            batches += 1
            labels, mask = batch["labels"], batch["attention_mask"]
            targets = labels[:, 1:]
            counts = accelerator.reduce(
                torch.stack([targets.ne(IGNORE).sum(), mask.sum()]).double(), "sum")
            global_targets = counts[0].item()
            tokens += counts[1].item()
            with accelerator.accumulate(model):
                logits = model(batch["input_ids"], mask)
                token_sum = token_nll(logits, labels).sum()
                accelerator.backward(token_sum * (processes / global_targets))
                micro_loss += token_sum.item() / global_targets
                micro_batches += 1
                sync = accelerator.sync_gradients
                if sync:
                    accelerator.clip_grad_norm_(model.parameters(), 1.0)
                lr = optimizer.param_groups[0]["lr"]
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if not sync:
                continue
            step += 1
            summed = accelerator.reduce(
                torch.tensor(micro_loss, dtype=torch.float64), "sum")
            losses.append(summed.item() / micro_batches)
            micro_loss, micro_batches = 0.0, 0
            if step == 1 or step % args.log_every == 0:
                accelerator.print(f"step {step} loss {losses[-1]:.4f} lr {lr:.6g}")
            if step >= total[0]:
                break
        seconds += time.perf_counter() - start
        evaluated = batches == len(train_loader)
        if evaluated:
            ppl = perplexity(accelerator, model, eval_loader)
            accelerator.print(f"epoch {epoch + 1}: eval perplexity {ppl:.4f}")
    if not evaluated:
        ppl = perplexity(accelerator, model, eval_loader)
        accelerator.print(f"after {step} steps: eval perplexity {ppl:.4f}")

    window = losses[-args.log_every:]
    if accelerator.is_main_process:
        print(json.dumps({
            "train_loss": sum(window) / len(window),
            "eval_perplexity": ppl,
            "steps": step,
            "tokens_per_second": round(tokens / seconds, 1),
            "train_seconds": round(seconds, 3),
            "num_processes": processes,
            "gradient_accumulation_steps": accumulation,
            "mixed_precision": accelerator.mixed_precision,
            "intra_op_threads": torch.get_num_threads(),
            "first_losses": [float("%.9g" % x) for x in losses[:5]],
        }), flush=True)


def main():
    args = parse_args()
    # On the GPU when there is one (as train_lm), else gloo on the CPU.
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        dataloader_config=DataLoaderConfiguration(
            use_seedable_sampler=True, data_seed=args.seed))
    train(args, accelerator)
    accelerator.wait_for_everyone()
    # The DDP model holds the process group: let it go now, so that the group
    # is destroyed (its gloo threads joined) before the interpreter exits.
    # Destroyed during Python's finalization instead, a gloo thread that drops
    # the last reference to a tensor made by Python sometimes aborts the
    # process ("terminate called without an active exception").
    accelerator.free_memory()
    gc.collect()
    accelerator.end_training()


if __name__ == "__main__":
    main()

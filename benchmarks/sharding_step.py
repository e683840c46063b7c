#!/usr/bin/env python3
"""Side-by-side sharded training on 2 processes: a 101M-parameter MLP
(6 Linear layers of 4096 x 4096, AdamW, batch 16) with our Accelerator as
data parallel and under SHARD_GRAD_OP (launcher variables), against
PyTorch 2.13's DistributedDataParallel and FSDP 2 (`fully_shard`, what
Accelerate's FSDP 2 plugin calls) with `reshard_after_forward` false
(SHARD_GRAD_OP) and true (FULL_SHARD, which ours refuses for now), over
gloo on CPU. Median step time, peak RSS and the bytes of parameters,
gradients and optimizer state each process holds; alternating rounds, the
best step time of each counts. Writes the table between the
`sharding-step` markers of BENCHMARKS.md.

    bazel build //benchmarks:sharding_step && benchmarks/sharding_step.py
"""
import json

from report import PYTHON, ROOT, publish, round_args, spawn_ranks

OURS = ROOT / "bazel-bin" / "benchmarks" / "sharding_step"
PEER = ROOT / "benchmarks" / "sharding_step_peer.py"

FSDP = {"ACCELERATE_USE_FSDP": "true", "FSDP_SHARDING_STRATEGY": "SHARD_GRAD_OP",
        "ACCELERATE_USE_CPU": "true"}
RUNS = [
    ("ours, data parallel", [str(OURS)], {"ACCELERATE_USE_CPU": "true"}),
    ("ours, SHARD_GRAD_OP", [str(OURS)], FSDP),
    ("PyTorch DDP", [PYTHON, str(PEER)], {"SHARDING": "DDP"}),
    ("PyTorch FSDP 2, SHARD_GRAD_OP", [PYTHON, str(PEER)],
     {"SHARDING": "SHARD_GRAD_OP"}),
    ("PyTorch FSDP 2, FULL_SHARD", [PYTHON, str(PEER)],
     {"SHARDING": "FULL_SHARD"}),
]


def main():
    args = round_args(__doc__, OURS, "//benchmarks:sharding_step")
    best = {}
    for _ in range(args.rounds):
        for name, argv, env in RUNS:
            result = json.loads(spawn_ranks(argv, 2, env).strip().splitlines()[-1])
            slowest = max(r["step_seconds"] for r in result["ranks"])
            if name not in best or slowest < best[name][0]:
                best[name] = (slowest, result)
    mb = lambda value: value / 1e6
    lines = [
        "| run | step time | peak RSS per process | state held per process (params + grads + AdamW) |",
        "|---|---|---|---|",
    ]
    for name, _, _ in RUNS:
        seconds, result = best[name]
        rss = max(r["peak_rss_bytes"] for r in result["ranks"])
        state = max(r["state_bytes"] for r in result["ranks"])
        lines.append("| %s | %.3f s | %.0f MB | %.0f MB |" % (
            name, seconds, mb(rss), mb(state)))
    ours_dp, ours_sharded = best["ours, data parallel"], best["ours, SHARD_GRAD_OP"]
    peer = best["PyTorch FSDP 2, SHARD_GRAD_OP"]
    lines += [
        "",
        "SHARD_GRAD_OP, ours: step time %.2fx our data parallel's and %.2fx "
        "PyTorch FSDP 2's with the same strategy; state held %.2fx data "
        "parallel's; peak RSS %.2fx." % (
            ours_sharded[0] / ours_dp[0], ours_sharded[0] / peer[0],
            max(r["state_bytes"] for r in ours_sharded[1]["ranks"]) /
            max(r["state_bytes"] for r in ours_dp[1]["ranks"]),
            max(r["peak_rss_bytes"] for r in ours_sharded[1]["ranks"]) /
            max(r["peak_rss_bytes"] for r in ours_dp[1]["ranks"])),
        "",
        "The issue's goals are for FULL_SHARD (peak memory <= 0.6x data "
        "parallel, step <= 1.3x data parallel and <= 1.0x Python FSDP), which "
        "ours does not run yet (refused); the FULL_SHARD row is PyTorch's, for "
        "reference. Ours keeps whole parameters (and whole gradients during "
        "backward, reduced by all-reduce as data parallel does), so only the "
        "optimizer state and the gradients kept between steps shrink. The "
        "peer is PyTorch's `fully_shard` applied directly (what Accelerate "
        "1.15's FSDP 2 plugin applies), not through Accelerate's Accelerator.",
    ]
    publish("sharding-step",
            "2 processes over gloo, OMP_NUM_THREADS=1, best of %d alternating rounds"
            % args.rounds, "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    main()

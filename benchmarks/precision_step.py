#!/usr/bin/env python3
"""Side-by-side training step in each mixed precision: the Accelerator (ours)
against Python Accelerate 1.15's Accelerator (torch 2.13 and torchao 0.18 in
.venv) on the same small transformer, batch and seed, one process each;
alternating rounds, the best of each counts. Writes the table between the
`precision-step` markers of BENCHMARKS.md.

    bazel build //benchmarks:precision_step && benchmarks/precision_step.py
"""
import json

from report import PYTHON, ROOT, publish, round_args, spawn_ranks

OURS = ROOT / "bazel-bin" / "benchmarks" / "precision_step"
PEER = ROOT / "benchmarks" / "precision_step_peer.py"

# (row name, environment, whether Python Accelerate has the same mode on CPU)
MODES = [
    ("fp32 (no)", {"ACCELERATE_MIXED_PRECISION": "no"}, True),
    ("bf16", {"ACCELERATE_MIXED_PRECISION": "bf16"}, True),
    ("fp16 + loss scaling", {"ACCELERATE_MIXED_PRECISION": "fp16"}, True),
    ("fp8, dynamic tensorwise (AO)", {"ACCELERATE_MIXED_PRECISION": "fp8"}, True),
    ("fp8, dynamic rowwise (AO)", {"ACCELERATE_MIXED_PRECISION": "fp8",
                                   "ACCELERATE_FP8_RECIPE": "rowwise"}, True),
    ("fp8, delayed (TE recipe)", {"ACCELERATE_MIXED_PRECISION": "fp8",
                                  "ACCELERATE_FP8_BACKEND": "TE"}, False),
]


def run(argv, env):
    return json.loads(spawn_ranks(argv, 1, env).strip().splitlines()[-1])


def main():
    args = round_args(__doc__, OURS, "//benchmarks:precision_step")
    best = {}
    for _ in range(args.rounds):
        for name, env, peer in MODES:
            runs = [("ours", [str(OURS)])]
            if peer:
                runs.append(("peer", [PYTHON, str(PEER)]))
            for who, argv in runs:
                result = run(argv, env)
                key = (name, who)
                if key not in best or result["step_seconds"] < best[key]["step_seconds"]:
                    best[key] = result
    ms = lambda name, who: best[(name, who)]["step_seconds"] * 1e3
    lines = [
        "| mixed precision | ours | Python Accelerate | ours / Python | final loss, ours / Python |",
        "|---|---|---|---|---|",
    ]
    for name, _, peer in MODES:
        if peer:
            lines.append("| %s | %.1f ms | %.1f ms | %.2f | %.4f / %.4f |" % (
                name, ms(name, "ours"), ms(name, "peer"),
                ms(name, "ours") / ms(name, "peer"),
                best[(name, "ours")]["loss"], best[(name, "peer")]["loss"]))
        else:
            lines.append("| %s | %.1f ms | (not on CPU) | | %.4f |" % (
                name, ms(name, "ours"), best[(name, "ours")]["loss"]))
    scaler = best[("fp16 + loss scaling", "ours")]["scaler_seconds"] * 1e3
    lines += [
        "",
        "Loss scaler (unscale with the fused inf/NaN check, update) per step: "
        "%.3f ms, %.2f%% of the fp16 step and %.2f%% of the fp32 step." % (
            scaler, 100 * scaler / ms("fp16 + loss scaling", "ours"),
            100 * scaler / ms("fp32 (no)", "ours")),
        "",
        "Python Accelerate 1.15 runs `mixed_precision=\"fp16\"` on CPU without "
        "autocast or a scaler (fp32 work), while ours autocasts to float16 and "
        "scales the loss: CPU float16 matrix products are emulated and slow, "
        "so that row compares different work. fp8 on both sides computes "
        "from float8 values dequantized to float32 (torchao's `emulate`; "
        "`_scaled_mm` needs a recent GPU); both keep the first and the last "
        "linear layer in high precision. Transformer Engine does not run on "
        "CPU: the delayed-scaling row has no peer.",
    ]
    publish("precision-step",
            "OMP_NUM_THREADS=1, one process, best of %d alternating rounds"
            % args.rounds, "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    main()

"""Interoperability with the Python `safetensors` package (0.8, in .venv).

1. `safetensors.torch.save_file` writes a file; our safetensors_tool reads
   every tensor back.
2. Our tool writes a file; `safetensors.torch.load_file` (and `safe_open`
   for the metadata) reads it and every tensor is checked.
"""
import os
import subprocess
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

TOOL = sys.argv[1]
WORK = os.environ.get("TEST_TMPDIR", "/tmp")

DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16",
          torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32",
          torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
          torch.bool: "BOOL"}


def fail(message):
    print("FAIL:", message)
    sys.exit(1)


# 1. Python writes, we read.
py_tensors = {
    "weight": torch.arange(12, dtype=torch.float32).reshape(3, 4) / 8,
    "bias": torch.tensor([0.5, -1.5], dtype=torch.float64),
    "half": torch.tensor([1.0, 0.25], dtype=torch.float16),
    "bf": torch.tensor([2.0, -4.0], dtype=torch.bfloat16),
    "ids": torch.tensor([-3, 7, 11], dtype=torch.int64),
    "mask": torch.tensor([True, False]),
    "bytes": torch.tensor([255, 0, 17], dtype=torch.uint8),
}
py_path = os.path.join(WORK, "python.safetensors")
save_file(py_tensors, py_path, metadata={"format": "pt", "writer": "python"})
dump = subprocess.run([TOOL, "dump", py_path], capture_output=True, text=True)
if dump.returncode != 0:
    fail("our reader refused Python's file: " + dump.stderr)
lines = {line.split(" ")[0]: line for line in dump.stdout.splitlines()}
if "metadata writer=python" not in dump.stdout:
    fail("metadata missing in:\n" + dump.stdout)
for name, tensor in py_tensors.items():
    expected = "%s %s [%s] %s" % (
        name, DTYPES[tensor.dtype], ",".join(map(str, tensor.shape)),
        ",".join("%g" % v for v in tensor.double().flatten().tolist()))
    if lines.get(name) != expected:
        fail("tensor %s: we read %r, expected %r" % (name, lines.get(name), expected))

# 2. We write, Python reads.
cc_path = os.path.join(WORK, "ours.safetensors")
if subprocess.run([TOOL, "sample", cc_path]).returncode != 0:
    fail("our writer failed")
tensors = load_file(cc_path)
with safe_open(cc_path, framework="pt") as f:
    metadata = f.metadata()
if metadata != {"format": "pt"}:
    fail("metadata %r" % metadata)
expected = {
    "f32": torch.arange(6, dtype=torch.float32).reshape(2, 3) / 4,
    "f64": torch.tensor([1.5, -2.25], dtype=torch.float64),
    "f16": torch.tensor([0.5, 2.0], dtype=torch.float16),
    "bf16": torch.tensor([3.0, -1.0], dtype=torch.bfloat16),
    "i64": torch.tensor([-7, 9]), "i32": torch.tensor([4, 5, 6], dtype=torch.int32),
    "i16": torch.tensor([-3], dtype=torch.int16),
    "i8": torch.tensor([-1, 1], dtype=torch.int8),
    "u8": torch.tensor([200, 1], dtype=torch.uint8),
    "bool": torch.tensor([True, False, True]),
}
if set(tensors) != set(expected):
    fail("names %r" % sorted(tensors))
for name, tensor in expected.items():
    if tensors[name].dtype != tensor.dtype or not torch.equal(tensors[name], tensor):
        fail("tensor %s: Python read %r, expected %r" % (name, tensors[name], tensor))
print("python and accelerate-cpp read each other's safetensors files")

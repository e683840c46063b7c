"""Interoperability with Python (Debian's python3-torch; the `safetensors`
package itself is not in Debian, so this side follows the format's
specification the way that package writes it: compact JSON, tensors sorted
by dtype size then name, the header padded with spaces to 8 bytes).

1. Python writes a file; our safetensors_tool reads every tensor back.
2. Our tool writes a file; Python parses it by the specification and checks
   every tensor.
"""
import json
import os
import struct
import subprocess
import sys

import torch

TOOL = sys.argv[1]
WORK = os.environ.get("TEST_TMPDIR", "/tmp")

DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16",
          torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32",
          torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
          torch.bool: "BOOL"}
FROM = {v: k for k, v in DTYPES.items()}


def write(path, tensors, metadata):
    items = sorted(tensors.items(),
                   key=lambda kv: (-kv[1].element_size(), kv[0]))
    header, offset, blobs = {"__metadata__": metadata}, 0, []
    for name, tensor in items:
        data = tensor.contiguous().view(torch.uint8).numpy().tobytes() \
            if tensor.numel() else b""
        header[name] = {"dtype": DTYPES[tensor.dtype],
                        "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    metadata = header.pop("__metadata__", {})
    data = raw[8 + n:]
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        buf = bytearray(data[begin:end])
        dtype = FROM[info["dtype"]]
        flat = torch.frombuffer(buf, dtype=dtype) if buf else \
            torch.empty(0, dtype=dtype)
        tensors[name] = flat.reshape(info["shape"])
    return tensors, metadata


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
write(py_path, py_tensors, {"format": "pt", "writer": "python"})
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
tensors, metadata = read(cc_path)
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

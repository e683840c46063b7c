"""Python peer of checkpoint_load.cc: torch.load of the same weights saved
with torch.save (one file). Prints one JSON line like the C++ side. Needs
the .venv's Python (torch 2.13).

    checkpoint_load_peer.py write FILE DIR   (the same tensors as DIR's shards)
    checkpoint_load_peer.py load FILE
"""
import json
import resource
import sys
import time

import torch


def main():
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "write":
        count = int(float(sys.argv[3]) * 1e9 / (32 << 20))
        torch.manual_seed(0)
        state = {"layers.%d.weight" % i: torch.randn((32 << 20) // 4)
                 for i in range(count)}
        torch.save(state, path)
        return
    start = time.perf_counter()
    state = torch.load(path)
    seconds = time.perf_counter() - start
    total = sum(t.numel() * t.element_size() for t in state.values())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"mode": "torch.load", "seconds": seconds,
                      "peak_rss_mb": peak, "bytes": total}))


if __name__ == "__main__":
    main()

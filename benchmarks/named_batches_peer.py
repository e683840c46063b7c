"""Python peer of //benchmarks:named_batches: the same 4096 token sequences,
collated 32 at a time into {input_ids, labels (-100 padding),
attention_mask} by a padding collate (torch's pad_sequence, what Hugging
Face's collators do), through Accelerate 1.15's `prepare`d DataLoader.
Prints one JSON line {"per_batch_us", "batches", "processes"}. Run with the
.venv's Python (directly, or one copy per rank with torchrun's variables)."""
import json
import time

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset

from accelerate import Accelerator

SEQUENCES, BATCH, EPOCHS = 4096, 32, 20


class Sequences(Dataset):
    def __init__(self):
        self.sequences = [
            torch.remainder(torch.arange(16 + (37 * i) % 113) + i * 131, 50257)
            for i in range(SEQUENCES)]

    def __len__(self):
        return SEQUENCES

    def __getitem__(self, i):
        return {"input_ids": self.sequences[i], "labels": self.sequences[i]}


def collate(samples):
    ids = [s["input_ids"] for s in samples]
    mask = [torch.ones(len(s), dtype=torch.long) for s in ids]
    return {
        "input_ids": pad_sequence(ids, batch_first=True, padding_value=0),
        "labels": pad_sequence([s["labels"] for s in samples],
                               batch_first=True, padding_value=-100),
        "attention_mask": pad_sequence(mask, batch_first=True, padding_value=0),
    }


def main():
    torch.set_num_threads(1)
    accelerator = Accelerator(cpu=True)
    loader = accelerator.prepare(
        DataLoader(Sequences(), batch_size=BATCH, collate_fn=collate))
    best, batches = float("inf"), 0
    for _ in range(EPOCHS):
        batches = 0
        start = time.perf_counter()
        for batch in loader:
            batches += 1
        best = min(best, time.perf_counter() - start)
    print(json.dumps({"per_batch_us": best / batches * 1e6, "batches": batches,
                      "processes": accelerator.num_processes}))


if __name__ == "__main__":
    main()

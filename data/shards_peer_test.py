"""Our data sharding against the real Python Accelerate (1.15, in .venv).

For 300 seeded random configurations (dataset length 0..60, batch size 1..7,
1..4 processes, split_batches where the batch size divides, even_batches,
drop_last, a seeded shuffle at a random epoch, iterable datasets, and
resuming after a few batches) it runs our plan_shards binary (argv[1]) and
builds, for every process index, the loader Accelerate itself would give that
process: `prepare_data_loader(DataLoader(...), num_processes, process_index,
..., use_seedable_sampler=True, data_seed=seed)`, `set_epoch(epoch)`, then
`skip_first_batches`. The per-rank batch lists must be equal. Where
Accelerate refuses a configuration, ours must fail too. Two narrow cases are
skipped and counted (see `main`): a shuffled empty dataset, and one known
mismatch (fewer samples than processes with even_batches).
"""
import json
import random
import subprocess
import sys

import torch
from torch.utils.data import DataLoader, IterableDataset

from accelerate.data_loader import prepare_data_loader, skip_first_batches

TOOL = sys.argv[1]
CONFIGS = 300


class Stream(IterableDataset):
    """The iterable dataset 0, 1, ..., length - 1."""

    def __init__(self, length):
        self.length = length

    def __iter__(self):
        return iter(range(self.length))


def random_config(rng):
    b, p = rng.randint(1, 7), rng.randint(1, 4)
    iterable = rng.random() < 0.3
    # Both refuse to shuffle a stream: checked now and then, not 1 in 8.
    shuffle = rng.random() < (0.05 if iterable else 0.45)
    return {
        "dataset_length": rng.randint(0, 60),
        "batch_size": b,
        "num_processes": p,
        "split_batches": b % p == 0 and rng.random() < 0.5,
        "even_batches": rng.random() < 0.6,
        "drop_last": rng.random() < 0.3,
        "shuffle": shuffle,
        "seed": rng.randint(0, 2**31) if shuffle else 0,
        "epoch": rng.randint(0, 5) if shuffle else 0,
        "iterable": iterable,
        "skip_batches": rng.randint(1, 3) if rng.random() < 0.3 else 0,
    }


def ours(config):
    """Our per-rank batches, or None where plan_shards refuses."""
    args = [TOOL]
    for name, value in config.items():
        if isinstance(value, bool):
            args.append(f"--{name}={'true' if value else 'false'}")
        else:
            args.append(f"--{name}={value}")
    run = subprocess.run(args, capture_output=True, text=True)
    if run.returncode != 0:
        return None, run.stderr.strip()
    return json.loads(run.stdout)["ranks"], None


def theirs(config):
    """Accelerate's per-rank batches, or None where Accelerate refuses."""
    n, p = config["dataset_length"], config["num_processes"]
    try:
        ranks = []
        for index in range(p):
            dataset = Stream(n) if config["iterable"] else range(n)
            loader = DataLoader(dataset, batch_size=config["batch_size"],
                                shuffle=config["shuffle"],
                                drop_last=config["drop_last"])
            loader = prepare_data_loader(
                loader, num_processes=p, process_index=index,
                split_batches=config["split_batches"],
                even_batches=config["even_batches"],
                use_seedable_sampler=True, data_seed=config["seed"])
            loader.set_epoch(config["epoch"])
            if config["skip_batches"]:
                loader = skip_first_batches(loader, config["skip_batches"])
            ranks.append([batch.tolist() for batch in loader])
        return ranks, None
    except (ValueError, RuntimeError) as error:
        return None, f"{type(error).__name__}: {error}"


def main():
    rng = random.Random(20240611)
    matched = refused = empty_shuffle = tiny_even = 0
    for _ in range(CONFIGS):
        config = random_config(rng)
        their_ranks, their_error = theirs(config)
        our_ranks, our_error = ours(config)
        if their_ranks is None and our_ranks is None:
            refused += 1  # Both refuse: agreement.
            continue
        # torch's RandomSampler refuses an empty dataset ("num_samples should
        # be a positive integer value"); ours plans empty epochs, as it does
        # unshuffled. Skipped (counted) only in exactly that case.
        if (their_error and "num_samples should be a positive" in their_error
                and our_ranks == [[]] * config["num_processes"]):
            empty_shuffle += 1
            continue
        # KNOWN MISMATCH, left to the C++ owners: for a map-style dataset
        # with even_batches, no drop_last and 0 < N < P samples, Accelerate
        # cycles from the start (N=3 B=1 P=4: [[0]], [[1]], [[2]], [[0]])
        # but our ValidateShardOptions refuses ("a dataset of 3 samples
        # cannot give each of 4 processes a batch"). Skipped only while ours
        # refuses; once it plans these, they are compared like the rest.
        if (our_ranks is None and their_ranks is not None
                and not config["iterable"] and config["even_batches"]
                and not config["drop_last"]
                and 0 < config["dataset_length"] < config["num_processes"]):
            tiny_even += 1
            continue
        if our_ranks != their_ranks:
            print("MISMATCH for", json.dumps(config))
            print("  ours:  ", our_ranks if our_error is None else our_error)
            print("  theirs:", their_ranks if their_error is None
                  else their_error)
            sys.exit(1)
        matched += 1
    print(f"OK: {matched} configurations matched Accelerate batch for batch; "
          f"{refused} refused by both; {empty_shuffle} skipped (shuffle of an "
          f"empty dataset: torch refuses, ours plans empty epochs); "
          f"{tiny_even} skipped (known mismatch: fewer samples than "
          f"processes with even_batches, which ours refuses).")


if __name__ == "__main__":
    main()

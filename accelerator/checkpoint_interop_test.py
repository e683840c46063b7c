"""Checkpoints between our Accelerator and the real Python Accelerate (1.15).

For SGD (momentum), Adam and AdamW (amsgrad), each with a StepLR, on 1 and
on 2 processes:

1. Ours saves (checkpoint_interop save); Python Accelerate's `load_state`
   reads the folder on a fresh setup; the model, the optimizer's state and
   hyperparameters, the scheduler and the registered object it restored are
   compared EXACTLY with what ours saved; it logs that our random states
   could not be loaded (they hold no Python/NumPy generators) and still
   takes the step count from them. Then both take the same next step.
2. Python saves; ours (checkpoint_interop load) reads the folder on a fresh
   setup; compared the same way, the accumulation step too (and, on one
   process, the CPU generator's state: two ranks as threads share ours);
   ours warns only that Python's and NumPy's generators in Python's random
   states have no LibTorch counterpart.
3. Python saves its model as `pytorch_model.bin` (`safe_serialization=False`,
   Adam on 1 process); ours loads it, compared as in 2.
4. The files themselves: every file of ours opens with
   `torch.load(weights_only=True)` and has the structure, types and
   hyperparameters of the file Python wrote in its place (Python's
   `state_dict()` after loading ours, likewise).

The restored state is always compared exactly. The next step is too, for
SGD and Adam; AdamW's within 1e-6: LibTorch's optimizers are separate
implementations of Python's updates (`exp_avg.mul_(beta1).add_(grad, ...)`
where Python's use `exp_avg.lerp_(grad, ...)`, for one), free to round
differently in the last bit, and with this data AdamW (amsgrad, decoupled
decay) does: 1 ulp apart from the same, exactly restored, state. A state
restored wrong moves the next step by about the learning rate (1e-2).

Usage: checkpoint_interop_test.py OUR_CHECKPOINT_INTEROP
"""

import os
import subprocess
import sys
import tempfile

import torch
from safetensors import safe_open

TOOL = sys.argv[1]
PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoint_interop_peer.py")
KINDS = ("sgd", "adam", "adamw")
# The next step's tolerance: see the docstring.
NEXT_ATOL = {"sgd": 0.0, "adam": 0.0, "adamw": 1e-6}
# Keys of Python's StepLR.state_dict() that ours does not write: LibTorch's
# StepLR keeps them private (and const), and Python keeps its own on load.
SCHEDULER_KEYS_NOT_OURS = {"step_size", "gamma"}
# Ours writes `lr_lambdas` (None per group) for every scheduler, so that
# Python's LambdaLR, whose load_state_dict requires it, loads ours too.
SCHEDULER_KEYS_OURS_ONLY = {"lr_lambdas"}
MANIFEST = "accelerate_cpp_checkpoint.json"

failures = []


def fail(where, message):
    failures.append(f"{where}: {message}")


def run(command, where):
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        fail(where, f"{os.path.basename(command[0])} {' '.join(command[1:3])} failed "
             f"({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return None
    return result


def load(path):
    return torch.load(path, weights_only=True)


def equal_tensor(a, b):
    return (torch.is_tensor(a) and torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape
            and torch.equal(a, b))


def compare_named(where, expected, actual, atol=0.0):
    if set(expected) != set(actual):
        fail(where, f"names {sorted(actual)}, expected {sorted(expected)}")
        return
    for name in expected:
        e, a = expected[name], actual[name]
        if atol == 0.0:
            ok = equal_tensor(e, a)
        else:
            ok = e.dtype == a.dtype and e.shape == a.shape and torch.allclose(e, a, rtol=0.0, atol=atol)
        if not ok:
            diff = (e.double() - a.double()).abs().max().item() if e.shape == a.shape else "shape"
            fail(where, f"{name} differs (max |diff| {diff}, tolerance {atol})")


def compare_dumps(where, kind, saved, restored, accumulation_step_restored,
                  generator_restored=False):
    """`saved`: what one side saved; `restored`: what the other restored."""
    compare_named(f"{where} params", saved["params"], restored["params"])
    if set(saved["state"]) != set(restored["state"]):
        fail(f"{where} optimizer state", f"parameters {sorted(restored['state'])}, "
             f"expected {sorted(saved['state'])}")
    for name, entry in saved["state"].items():
        got = restored["state"].get(name, {})
        if set(entry) != set(got):
            fail(f"{where} optimizer state {name}", f"keys {sorted(got)}, expected {sorted(entry)}")
            continue
        for key, value in entry.items():
            ok = equal_tensor(value, got[key]) if torch.is_tensor(value) else value == got[key]
            if not ok:
                fail(f"{where} optimizer state {name}.{key}", f"{got[key]!r}, expected {value!r}")
    for field in ("groups", "scheduler", "custom"):
        if saved[field] != restored[field]:
            fail(f"{where} {field}", f"{restored[field]!r}, expected {saved[field]!r}")
    if accumulation_step_restored and saved["accumulation_step"] != restored["accumulation_step"]:
        fail(f"{where} accumulation step", f"{restored['accumulation_step']}, "
             f"expected {saved['accumulation_step']}")
    if generator_restored and not equal_tensor(saved["cpu_generator"], restored["cpu_generator"]):
        fail(f"{where} CPU generator", "state differs from the one saved")
    compare_named(f"{where} next step", saved["next_params"], restored["next_params"], NEXT_ATOL[kind])
    if saved["next_lr"] != restored["next_lr"]:
        fail(f"{where} next lr", f"{restored['next_lr']}, expected {saved['next_lr']}")


def same_structure(where, python, ours, path=""):
    """Same types, keys, tensor dtypes and shapes, and equal non-tensor leaves."""
    here = f"{where}{path}"
    if torch.is_tensor(python):
        if not torch.is_tensor(ours) or python.dtype != ours.dtype or python.shape != ours.shape:
            fail(here, f"{type(ours).__name__} {getattr(ours, 'dtype', '')} "
                 f"{tuple(getattr(ours, 'shape', ()))}, Python's is a tensor {python.dtype} "
                 f"{tuple(python.shape)}")
        return
    if isinstance(python, dict):
        if not isinstance(ours, dict):
            fail(here, f"a {type(ours).__name__}, Python's a dict")
            return
        if set(python) != set(ours):
            fail(here, f"keys {sorted(map(str, ours))}, Python's {sorted(map(str, python))}")
        for key in set(python) & set(ours):
            same_structure(where, python[key], ours[key], f"{path}[{key!r}]")
        return
    if isinstance(python, (list, tuple)):
        if type(python) is not type(ours) or len(python) != len(ours):
            fail(here, f"{ours!r}, Python's {python!r}")
            return
        for i, (p, o) in enumerate(zip(python, ours)):
            same_structure(where, p, o, f"{path}[{i}]")
        return
    # Numbers compare by value (Python writes `dampening=0` as an int where
    # ours writes 0.0), booleans and None by identity of type.
    if isinstance(python, bool) or python is None or isinstance(ours, bool) or ours is None:
        if type(python) is not type(ours) or python != ours:
            fail(here, f"{ours!r}, Python's {python!r}")
    elif python != ours:
        fail(here, f"{ours!r}, Python's {python!r}")


def compare_scheduler_state(where, python, ours):
    missing = set(python) - set(ours) - SCHEDULER_KEYS_NOT_OURS
    extra = set(ours) - set(python) - SCHEDULER_KEYS_OURS_ONLY
    if missing or extra:
        fail(where, f"keys missing {sorted(missing)}, unexpected {sorted(extra)}")
    for key in set(python) & set(ours):
        same_structure(where, python[key], ours[key], f"[{key!r}]")


def compare_files(where, ours_dir, python_dir, processes):
    """Our checkpoint's files against the ones Python wrote in their place."""
    ours_files = set(os.listdir(ours_dir)) - {MANIFEST}
    python_files = set(os.listdir(python_dir))
    if ours_files != python_files:
        fail(where, f"files {sorted(ours_files)}, Python's {sorted(python_files)}")
    with safe_open(os.path.join(ours_dir, "model.safetensors"), "pt") as o, \
            safe_open(os.path.join(python_dir, "model.safetensors"), "pt") as p:
        if sorted(o.keys()) != sorted(p.keys()) or o.metadata() != p.metadata():
            fail(f"{where} model.safetensors", f"{sorted(o.keys())} {o.metadata()}, "
                 f"Python's {sorted(p.keys())} {p.metadata()}")
        for key in set(o.keys()) & set(p.keys()):
            if o.get_slice(key).get_dtype() != p.get_slice(key).get_dtype():
                fail(f"{where} model.safetensors", f"{key} dtype differs")
    for name in ("optimizer.bin", "custom_checkpoint_0.pkl"):
        same_structure(f"{where} {name}", load(os.path.join(python_dir, name)),
                       load(os.path.join(ours_dir, name)))
    compare_scheduler_state(f"{where} scheduler.bin", load(os.path.join(python_dir, "scheduler.bin")),
                            load(os.path.join(ours_dir, "scheduler.bin")))
    for rank in range(processes):
        name = f"random_states_{rank}.pkl"
        ours = load(os.path.join(ours_dir, name))
        python = torch.load(os.path.join(python_dir, name), weights_only=False)
        for key in ("step", "torch_manual_seed"):
            if key not in ours:
                fail(f"{where} {name}", f"no {key!r}")
            else:
                same_structure(f"{where} {name}", python[key], ours[key], f"[{key!r}]")


def case(kind, processes, work):
    where = f"{kind} on {processes} process{'es' if processes > 1 else ''}"
    dirs = {name: os.path.join(work, name) for name in
            ("ours_ckpt", "ours_saved", "python_restored", "python_ckpt", "python_saved", "ours_restored")}
    for name in ("ours_saved", "python_restored", "python_saved", "ours_restored"):
        os.makedirs(dirs[name])
    n = str(processes)
    python = sys.executable

    # 1. Ours saves, Python loads.
    if run([TOOL, "save", kind, n, dirs["ours_ckpt"], dirs["ours_saved"]], where) is None:
        return
    if run([python, PEER, "load", kind, n, dirs["ours_ckpt"], dirs["python_restored"]], where) is None:
        return
    for rank in range(processes):
        saved = load(os.path.join(dirs["ours_saved"], f"rank{rank}.pt"))
        restored = load(os.path.join(dirs["python_restored"], f"rank{rank}.pt"))
        compare_dumps(f"{where}, rank {rank}, Python loading ours", kind, saved, restored,
                      accumulation_step_restored=True)
    log = load(os.path.join(dirs["python_restored"], "rank0.pt"))["load_log"]
    for expected in ("All model weights loaded successfully", "All optimizer states loaded successfully",
                     "All scheduler states loaded successfully", "Could not load random states"):
        if not any(expected in line for line in log):
            fail(f"{where}, Python loading ours", f"Accelerate did not log {expected!r}: {log}")

    # 2. Python saves, ours loads.
    if run([python, PEER, "save", kind, n, dirs["python_ckpt"], dirs["python_saved"]], where) is None:
        return
    loaded = run([TOOL, "load", kind, n, dirs["python_ckpt"], dirs["ours_restored"]], where)
    if loaded is None:
        return
    if "could not load random states" in loaded.stderr:
        fail(f"{where}, ours loading Python's", f"random states not loaded:\n{loaded.stderr}")
    warnings = loaded.stderr.count("which have no LibTorch counterpart")
    if warnings != processes:
        fail(f"{where}, ours loading Python's", f"{warnings} warnings about Python's and NumPy's "
             f"generators, expected {processes}:\n{loaded.stderr}")
    for rank in range(processes):
        saved = load(os.path.join(dirs["python_saved"], f"rank{rank}.pt"))
        restored = load(os.path.join(dirs["ours_restored"], f"rank{rank}.pt"))
        compare_dumps(f"{where}, rank {rank}, ours loading Python's", kind, saved, restored,
                      accumulation_step_restored=True, generator_restored=processes == 1)

    # 3. The files, and Python's state_dict() after loading ours.
    compare_files(f"{where}, files", dirs["ours_ckpt"], dirs["python_ckpt"], processes)
    python_saved = load(os.path.join(dirs["python_saved"], "rank0.pt"))
    python_restored = load(os.path.join(dirs["python_restored"], "rank0.pt"))
    same_structure(f"{where}, Python's optimizer.state_dict() after loading ours",
                   python_saved["optimizer_state_dict"], python_restored["optimizer_state_dict"])
    compare_scheduler_state(f"{where}, Python's scheduler.state_dict() after loading ours",
                            python_saved["scheduler_state_dict"], python_restored["scheduler_state_dict"])


def legacy_case(work):
    """Python saves its model as pytorch_model.bin (safe_serialization=False); ours loads it."""
    where = "adam on 1 process, Python's legacy pytorch_model.bin"
    ckpt, saved_dir, restored_dir = (os.path.join(work, name) for name in ("ckpt", "saved", "restored"))
    os.makedirs(saved_dir)
    os.makedirs(restored_dir)
    if run([sys.executable, PEER, "save", "adam", "1", ckpt, saved_dir, "--legacy_weights"], where) is None:
        return
    if not os.path.exists(os.path.join(ckpt, "pytorch_model.bin")) or \
            os.path.exists(os.path.join(ckpt, "model.safetensors")):
        fail(where, f"Python wrote {sorted(os.listdir(ckpt))}, not pytorch_model.bin alone")
        return
    if run([TOOL, "load", "adam", "1", ckpt, restored_dir], where) is None:
        return
    compare_dumps(f"{where}, ours loading it", "adam", load(os.path.join(saved_dir, "rank0.pt")),
                  load(os.path.join(restored_dir, "rank0.pt")), accumulation_step_restored=True,
                  generator_restored=True)


def main():
    count = 0
    with tempfile.TemporaryDirectory(dir=os.environ.get("TEST_TMPDIR")) as root:
        for processes in (1, 2):
            for kind in KINDS:
                work = os.path.join(root, f"{kind}_{processes}")
                os.makedirs(work)
                before = len(failures)
                case(kind, processes, work)
                count += 1
                print(f"{kind} on {processes} process(es): "
                      f"{'ok' if len(failures) == before else 'FAILED'}", flush=True)
        work = os.path.join(root, "legacy")
        os.makedirs(work)
        before = len(failures)
        legacy_case(work)
        count += 1
        print(f"legacy pytorch_model.bin: {'ok' if len(failures) == before else 'FAILED'}", flush=True)
    for failure in failures:
        print("FAIL:", failure)
    print(f"{count} cases, {len(failures)} differences")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

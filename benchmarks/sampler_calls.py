"""Count the Python function calls of one DDPM step through ``ddpm_sample``, in one or more versions of the helpers.

    python benchmarks/sampler_calls.py                   # this checkout
    python benchmarks/sampler_calls.py 621206b .         # a git commit of this repository (old) and this checkout

Each argument is a checkout (a folder holding ``ddpm_helpers/``) or a git revision of this repository (its
``ddpm_helpers/`` is extracted to a temporary folder). Each runs in its own subprocess with ``PYTHONPATH`` set to
it, so its ``ddpm_helpers`` is the one imported. ``sys.setprofile`` records every call while ``ddpm_sample``
runs with a parameter-free model (a plain function, ``0.5 · x_t``, not counted) on the linear schedule: one step
is everything from one model call to the next (the step, the recording check and the next ``t`` tensor), taken
in the middle of the chain. Reported: Python calls per step (and how many of them are argument checks), calls
into C (torch operations, builtins), the deepest nesting below the loop with its chain of functions, the same
per-step count from the difference of two whole runs (T = 200 and T = 100; it includes whatever the entry does
per timestep, such as checking the list of timesteps), and a CPU time per step (one thread; printed only, it
varies with the machine and its load). Prints, never asserts.
"""

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _model(x, t):
    return 0.5 * x


def _name(frame):
    code = frame.f_code
    return f"{frame.f_globals.get('__name__', '?')}.{getattr(code, 'co_qualname', code.co_name)}"


def _record(run):
    """Run ``run()`` under sys.setprofile; return the events as (kind, depth, name) and the deepest stack per event."""
    events, stack = [], []

    def profile(frame, event, arg):
        if event == "call":
            stack.append(_name(frame))
            events.append(("call", len(stack), stack[-1], tuple(stack)))
        elif event == "return":
            stack.pop()
        elif event == "c_call":
            events.append(("c_call", len(stack) + 1, getattr(arg, "__qualname__", repr(arg)), None))

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return events


def _worker(args):
    import torch

    import ddpm_helpers
    from ddpm_helpers.diffusion import Diffusion
    from ddpm_helpers.samplers import ddpm_sample

    torch.set_num_threads(1)
    shape = (args.batch, 3)

    def sample(T):
        diffusion = Diffusion.from_schedule("linear", T)
        return lambda: ddpm_sample(_model, diffusion, shape, generator=torch.Generator().manual_seed(0))

    sample(100)()  # warm up: imports, table caches
    events = _record(sample(100))
    model = f"{__name__}._model"
    starts = [i for i, e in enumerate(events) if e[0] == "call" and e[2] == model]
    mid = len(starts) // 2
    step = events[starts[mid]:starts[mid + 1]]
    loop_depth = step[0][1] - 1  # the frame that calls the model
    calls = [e for e in step if e[0] == "call" and e[2] != model]
    deepest = max(calls, key=lambda e: e[1])
    checks = [e for e in calls if e[2].rsplit(".", 1)[-1].lstrip("_").startswith("check")]
    totals = {T: sum(e[0] == "call" and e[2] != model for e in _record(sample(T))) for T in (100, 200)}
    run = sample(args.time_T)
    times = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) / args.time_T)
    print(json.dumps({
        "helpers": ddpm_helpers.__file__,
        "python_calls": len(calls),
        "checks": len(checks),
        "c_calls": sum(e[0] == "c_call" for e in step),
        "depth": deepest[1] - loop_depth,
        "chain": [n.rsplit(".", 2)[-2] + "." + n.rsplit(".", 1)[-1] if "." in n else n
                  for n in deepest[3][loop_depth - 1:]],
        "by_function": Counter(e[2].replace("ddpm_helpers.", "") for e in calls).most_common(),
        "per_step_from_totals": (totals[200] - totals[100]) / 100,
        "us_per_step": sorted(times)[len(times) // 2] * 1e6,
    }))


def _checkout(ref, tmp):
    """A folder holding ``ddpm_helpers/``: ``ref`` itself, or the revision ``ref`` of this repository extracted."""
    if (Path(ref) / "ddpm_helpers").is_dir():
        return str(Path(ref).resolve())
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "ddpm_helpers"], capture_output=True, check=True)
    folder = Path(tmp) / ref.replace("/", "_")
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    return str(folder)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="*", default=["."], help="folders or git revisions (default: .)")
    parser.add_argument("--batch", type=int, default=4, help="batch size (B, 3)")
    parser.add_argument("--time-T", type=int, default=1000, help="T of the timed run")
    parser.add_argument("--rounds", type=int, default=5, help="timed runs; the median is printed")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _worker(args)
    with tempfile.TemporaryDirectory() as tmp:
        for ref in args.checkouts:
            path = _checkout(ref, tmp)
            env = dict(os.environ, PYTHONPATH=path)
            out = subprocess.run([sys.executable, __file__, "--worker", "--batch", str(args.batch), "--time-T",
                                  str(args.time_T), "--rounds", str(args.rounds)],
                                 env=env, capture_output=True, text=True, check=True, cwd=tmp)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"== {ref}  ({r['helpers']})")
            print(f"one DDPM step through ddpm_sample (linear schedule, batch ({args.batch}, 3), float32, "
                  f"parameter-free model):")
            print(f"  Python calls per step: {r['python_calls']} (argument checks among them: {r['checks']}); "
                  f"from two whole runs: {r['per_step_from_totals']:.1f}")
            print(f"  calls into C (torch ops, builtins): {r['c_calls']}")
            print(f"  deepest nesting below the loop: {r['depth']} ({' → '.join(r['chain'])})")
            print("  Python calls by function: " + ", ".join(f"{name} ×{n}" for name, n in r["by_function"]))
            print(f"  CPU time per step (T = {args.time_T}, median of {args.rounds}, 1 thread): "
                  f"{r['us_per_step']:.0f} µs")


if __name__ == "__main__":
    main()

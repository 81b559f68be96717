"""Time one training step and one DDIM sampling step of the helpers in one or more checkouts; print a table.

    python benchmarks/step_time.py                       # this checkout
    python benchmarks/step_time.py /work/main .          # two checkouts side by side (old, new)

Each checkout runs in its own subprocess with ``PYTHONPATH`` set to it, so its ``ddpm_helpers`` is the one
imported; the checkouts take turns for ``--rounds`` rounds and the table reports the median round. Two
models: the U-Net of notebook 04 (``UNet(1, base_channels=16, channel_mults=(1, 2, 2))``, 28×28, batch 32)
and a parameter-free model (``0.5 · x_t``) that exposes the helpers' own overhead (tables, checks,
noise). Training step: ``diffusion_loss`` (v-prediction, min-SNR weighting) + backward + Adam step.
Sampling step: ``ddim_sample`` over ``--ddim-steps`` steps (η = 1), divided by the step count. CPU, one
thread by default. Prints, never asserts.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _worker(args):
    import torch

    from ddpm_helpers.diffusion import Diffusion
    from ddpm_helpers.losses import diffusion_loss
    from ddpm_helpers.nn.unet import UNet
    from ddpm_helpers.samplers import ddim_sample

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    diffusion = Diffusion.from_schedule("linear", 1000)
    x0 = torch.rand(args.batch, 1, 28, 28) * 2 - 1
    unet = UNet(1, base_channels=16, channel_mults=(1, 2, 2))
    scale = torch.nn.Parameter(torch.tensor(0.5))

    def trivial(x, t):
        return scale * x  # one parameter so that backward and the optimizer have work to do

    generator = torch.Generator().manual_seed(0)
    times = {}
    for label, model, params, train_steps in (("unet", unet, list(unet.parameters()), args.train_steps),
                                               ("trivial", trivial, [scale], 20 * args.train_steps)):
        optimizer = torch.optim.Adam(params, lr=1e-4)

        def train_step():
            loss = diffusion_loss(model, diffusion, x0, prediction="v", weighting="min_snr", generator=generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        train_step()  # warm-up
        start = time.perf_counter()
        for _ in range(train_steps):
            train_step()
        times[f"train_{label}"] = (time.perf_counter() - start) / train_steps
        steps = args.ddim_steps if label == "unet" else 20 * args.ddim_steps
        ddim_sample(model, diffusion, x0.shape, num_steps=2, eta=1.0, generator=generator)  # warm-up
        start = time.perf_counter()
        ddim_sample(model, diffusion, x0.shape, num_steps=steps, eta=1.0, generator=generator)
        times[f"ddim_{label}"] = (time.perf_counter() - start) / steps
    print(json.dumps(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkouts", nargs="*", default=[str(Path(__file__).resolve().parents[1])])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--ddim-steps", type=int, default=5)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _worker(args)
    rows = {checkout: [] for checkout in args.checkouts}
    for _ in range(args.rounds):
        for checkout in args.checkouts:
            env = dict(os.environ, PYTHONPATH=str(Path(checkout).resolve()))
            command = [sys.executable, __file__, "--worker", "--threads", str(args.threads), "--batch", str(args.batch),
                       "--train-steps", str(args.train_steps), "--ddim-steps", str(args.ddim_steps)]
            out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
            rows[checkout].append(json.loads(out.strip().splitlines()[-1]))
    keys = ("train_unet", "ddim_unet", "train_trivial", "ddim_trivial")
    print(f"median of {args.rounds} rounds, ms per step, batch {args.batch}, {args.threads} CPU thread(s)")
    print("| checkout | " + " | ".join(keys) + " |")
    print("| --- |" + " --- |" * len(keys))
    for checkout, results in rows.items():
        cells = [f"{1e3 * statistics.median(r[key] for r in results):.2f}" for key in keys]
        print(f"| {checkout} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

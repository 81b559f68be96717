"""Notebook 04 §5's ODE distances with and without clipping x̂0: why DPM-Solver++(2M)'s error rose from 20 to 50 calls.

    python benchmarks/dpm_solver_clipping.py                                    # the shipped MNIST network
    python benchmarks/dpm_solver_clipping.py weights/04_mnist_ema.safetensors outputs/04_mnist/04_mnist_ema.safetensors

For each weights file (``export_weights``'s safetensors; default the shipped ``weights/04_mnist_ema``), the same
eight x_T as notebook 04 (seed 5, null class) are solved finely (DPM-Solver++(2M), 1000 calls) and with 10, 20, 50
and 100 calls of DPM-Solver++(2M) and of DDIM (η = 0), once with x̂0 clipped to [−1, 1] (the notebook's setting)
and once without; each row prints the RMS distance to the fine solution of the same setting. Clipping makes the
update a non-smooth function of x_t, so a solver's error need not fall with every added call. Prints, never asserts.
"""

import argparse
from pathlib import Path

import torch

from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.samplers import ddim_sample, dpm_solver_sample
from ddpm_helpers.training.pretrained import read_weights

CALLS = (10, 20, 50, 100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path, nargs="*", default=[Path("weights/04_mnist_ema.safetensors")])
    parser.add_argument("--fine", type=int, default=1000, help="calls of the fine solution")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"RMS distance to DPM-Solver++(2M) with {args.fine} calls, 8 images of notebook 04 §5 (x_T seed 5)")
    print(f"{'weights':46s} {'x̂0':9s} {'solver':17s}" + "".join(f"{f'{k} calls':>10s}" for k in CALLS))
    for path in args.weights:
        weights = read_weights(path)
        model = weights.network()
        diffusion = Diffusion.from_schedule(weights.metadata.get("schedule", "linear"),
                                            T=int(weights.metadata.get("T", 1000)))
        x_T = torch.randn((8, 1, 28, 28), generator=torch.Generator().manual_seed(5))
        for clip in (1.0, None):
            ode = dict(prediction=weights.prediction, clip_x0=clip, x_T=x_T)
            with torch.no_grad():
                fine = dpm_solver_sample(model, diffusion, None, num_steps=args.fine, **ode).x
                for name, solve in (("DPM-Solver++(2M)", dpm_solver_sample), ("DDIM", ddim_sample)):
                    distances = [(solve(model, diffusion, None, num_steps=k, **ode).x - fine).pow(2).mean().sqrt()
                                 for k in CALLS]
                    print(f"{str(path):46s} {'clipped' if clip else 'free':9s} {name:17s}"
                          + "".join(f"{d.item():10.4f}" for d in distances), flush=True)


if __name__ == "__main__":
    main()

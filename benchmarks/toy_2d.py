"""Train the 2-D models of notebook 03 and print their sample quality and times (prints, never asserts).

    python benchmarks/toy_2d.py                          # full-profile sizes, 1 thread
    python benchmarks/toy_2d.py --profile quick --threads 2
    python benchmarks/toy_2d.py --steps 2000 --dataset ddpm_letters --hidden 128 --blocks 3

Trains one MLP on a toy data set with the shared training loop and samples it with Algorithm 2.
For every data set: the energy distance of the samples to fresh data, printed beside the same
distance for a second fresh sample (the level of a perfect sampler). For the ring of Gaussians,
whose density is exact, also the mean log-likelihood of the samples, mode coverage and the ELBO of
held-out points next to their true NLL. ``--profile`` picks the notebook's step and sample counts;
``--steps`` overrides the step count.
"""

import argparse
import time

import torch

from ddpm_helpers.analytic import optimal_eps
from ddpm_helpers.datasets.toy2d import DATASETS, ring_mixture, sample_toy
from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.elbo import elbo_terms
from ddpm_helpers.evaluation.metrics2d import energy_distance, mode_coverage
from ddpm_helpers.nn.mlp import MLP
from ddpm_helpers.samplers import ddpm_sample
from ddpm_helpers.training import TrainConfig, train

# Notebook 03's sizes: (steps, samples) per profile, for the main model (swiss roll) and the small ring model.
PROFILES = {"quick": {"hero": (100, 500), "small": (60, 200)}, "full": {"hero": (1000, 2000), "small": (500, 1000)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="full", choices=tuple(PROFILES))
    parser.add_argument("--steps", type=int, default=None, help="override the profile's step count")
    parser.add_argument("--datasets", default="swiss_roll,ring_of_gaussians",
                        help=f"comma-separated, from {', '.join(DATASETS)}")
    parser.add_argument("--hidden", type=int, default=None, help="default: 128 (swiss roll etc.), 64 (ring)")
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--T", type=int, default=200)
    parser.add_argument("--schedule", default="linear")
    parser.add_argument("--prediction", default="eps", choices=("eps", "x0", "v"))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")

    for name in args.datasets.split(","):
        ring = name == "ring_of_gaussians"
        steps, n_samples = PROFILES[args.profile]["small" if ring else "hero"]
        steps = args.steps or steps
        hidden = args.hidden or (64 if ring else 128)
        lr, warmup = (4e-3, 50) if ring else (2e-3, 100)
        data = sample_toy(name, 20_000, torch.Generator().manual_seed(1))
        diffusion = Diffusion.from_schedule(args.schedule, args.T)
        torch.manual_seed(args.seed)
        model = MLP(hidden=hidden, num_blocks=args.blocks)
        train_config = TrainConfig(steps=steps, batch_size=args.batch_size, lr=lr, warmup_steps=warmup,
                                   lr_schedule="cosine", ema_decay=0.995, prediction=args.prediction, seed=args.seed)
        result = train(model, diffusion, data, train_config, device=device, progress=False)
        start = time.perf_counter()
        samples = ddpm_sample(result.ema.model, diffusion, (n_samples, 2), prediction=args.prediction, clip_x0=3.0,
                              generator=torch.Generator().manual_seed(2)).x
        sample_seconds = time.perf_counter() - start
        reference = sample_toy(name, n_samples, torch.Generator().manual_seed(3))
        fresh = sample_toy(name, n_samples, torch.Generator().manual_seed(4))
        print(f"{name}: MLP {hidden}x{args.blocks}, T={args.T} {args.schedule}, {args.prediction}-prediction, "
              f"{torch.get_num_threads()} thread(s)")
        print(f"  train {steps} steps x {args.batch_size}: {result.seconds:.1f} s "
              f"({1000 * result.seconds / steps:.1f} ms/step)"
              f"; sample {n_samples} points: {sample_seconds:.1f} s")
        print(f"  energy distance to fresh data: model {energy_distance(samples, reference):.5f}   "
              f"true samples {energy_distance(fresh, reference):.5f}")
        if ring:
            mixture = ring_mixture()
            model_cov, true_cov = mode_coverage(samples, mixture), mode_coverage(fresh, mixture)
            print(f"  mean log p(x): model {mixture.log_prob(samples.double()).mean():.3f}   "
                  f"true samples {mixture.log_prob(fresh.double()).mean():.3f}")
            print(f"  modes covered: model {model_cov['covered'] * 8:.0f}/8   "
                  f"true samples {true_cov['covered'] * 8:.0f}/8;"
                  f"  near a mode: model {model_cov['near']:.1%}   true samples {true_cov['near']:.1%}")
            heldout = mixture.sample(1000, generator=torch.Generator().manual_seed(10))
            nll = -mixture.log_prob(heldout.double()).mean()
            for variance in ("beta_tilde", "beta"):
                bound = {label: elbo_terms(m, diffusion, heldout, prediction=p, variance=variance, decoder="gaussian",
                                           generator=torch.Generator().manual_seed(11))["total"].mean()
                         for label, m, p in [("model", result.ema.model, args.prediction),
                                             ("exact eps*", optimal_eps(mixture, diffusion), "eps")]}
                print(f"  -ELBO of held-out points, sigma^2={variance}: model {bound['model']:.3f}   "
                      f"exact eps* {bound['exact eps*']:.3f}   true NLL {nll:.3f} nats")


if __name__ == "__main__":
    main()

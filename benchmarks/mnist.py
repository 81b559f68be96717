"""Train the MNIST U-Net of notebook 04 for a given number of minutes; print quality and times.

    DDPM_DATA_DIR=shared/data python benchmarks/mnist.py --minutes 10 --threads 2 --p-uncond 0.1 --guidance 1
    python benchmarks/mnist.py --minutes 2 --threads 1 --prediction eps --weighting none   # an ablation

Without ``--p-uncond`` the model is unconditional (the DDPM of the paper); with it the U-Net is
class-conditional, trained with labels dropped at that rate, and sampled once per guidance
scale of ``--guidance`` (labels 0–9 in turn) and once without a label.

The run uses the shared training loop with a wall-clock budget (``TrainConfig.time_limit_s``)
on top of the step count, so the cosine LR schedule is laid out for ``--steps`` steps: pick
``--steps`` close to what the budget allows (the script prints ms/step to calibrate). Samples
come from DDIM (or DPM-Solver++(2M) with ``--sampler dpmpp2m``) with x̂0 clipping; the metrics are
those of ``ddpm_helpers.evaluation.mnist_eval``, printed next to the same metrics for real training digits
(the floor). Prints, never asserts.
"""

import argparse
import json
import time

import torch

from ddpm_helpers import config
from ddpm_helpers.datasets import mnist_images
from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.evaluation import mnist_eval
from ddpm_helpers.guidance import ClassifierFreeGuidance
from ddpm_helpers.nn.unet import UNet
from ddpm_helpers.samplers import ddim_sample
from ddpm_helpers.samplers.dpm_solver import dpm_solver_sample
from ddpm_helpers.training import TrainConfig, train
from ddpm_helpers.utils import count_parameters


def ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v)


def floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-clock training budget")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--base-channels", type=int, default=16)
    parser.add_argument("--channel-mults", type=ints, default=(1, 2, 2))
    parser.add_argument("--num-res-blocks", type=int, default=1)
    parser.add_argument("--patch-size", type=int, default=1, help="fold p×p pixels into channels (2: levels at 14, 7)")
    parser.add_argument("--attention", type=ints, default=(), help="e.g. 7 for attention at 7x7")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--ema-decay", type=float, default=0.995)
    parser.add_argument("--prediction", default="v", choices=("eps", "x0", "v"))
    parser.add_argument("--weighting", default="min_snr", choices=("none", "min_snr"))
    parser.add_argument("--schedule", default="linear")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--sampler", default="ddim", choices=("ddim", "dpmpp2m"),
                        help="DDIM (η = --eta) or the deterministic DPM-Solver++(2M), with --ddim-steps network calls")
    parser.add_argument("--ddim-steps", type=int, default=100)
    parser.add_argument("--eta", type=float, default=1.0, help="DDIM η (0: deterministic, 1: DDPM-like noise)")
    parser.add_argument("--p-uncond", type=float, default=None,
                        help="train class-conditional, dropping the label with this probability "
                             "(classifier-free guidance)")
    parser.add_argument("--guidance", type=floats, default=(0.0, 1.0, 2.0), help="guidance scales w to sample with")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    config.seed_everything(args.seed)
    device = config.get_device()
    images, labels = mnist_images(train=True)
    model = UNet(1, base_channels=args.base_channels, channel_mults=args.channel_mults,
                 num_res_blocks=args.num_res_blocks, attention_resolutions=args.attention,
                 patch_size=args.patch_size, num_classes=10 if args.p_uncond is not None else None)
    diffusion = Diffusion.from_schedule(args.schedule, T=1000)
    train_config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup,
                               lr_schedule="cosine", ema_decay=args.ema_decay, prediction=args.prediction,
                               weighting=args.weighting, seed=args.seed, time_limit_s=60 * args.minutes,
                               p_uncond=args.p_uncond)
    data = (images, labels) if args.p_uncond is not None else images
    cpu_start = time.process_time()
    result = train(model, diffusion, data, train_config, device=device, progress=False)
    train_cpu = time.process_time() - cpu_start

    evaluator = mnist_eval.DigitEvaluator()
    floor = evaluator.real_floor(args.samples)
    report = {
        "device": device.type, "threads": args.threads, "parameters": count_parameters(model),
        "steps": result.steps, "stopped_early": result.stopped_early, "train_seconds": round(result.seconds, 1),
        "train_cpu_seconds": round(train_cpu, 1), "ms_per_step": round(1000 * result.seconds / max(1, result.steps), 1),
        "final_loss": round(sum(result.losses[-50:]) / len(result.losses[-50:]), 4),
        "real_floor": floor.as_dict(), "generated": {},
        "args": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(args).items()},
    }
    print(f"training {result.steps} steps in {result.seconds:.0f} s ({report['ms_per_step']} ms/step)")
    print(f"{'real (floor)':24s}", floor)
    if args.p_uncond is None:
        samplers = {"unconditional": result.ema.model}
    else:  # a balanced set of labels 0, 1, …, 9, 0, 1, …; and the same network without labels
        labels = torch.arange(args.samples, device=device) % 10
        samplers = {f"guidance w = {w:g}": ClassifierFreeGuidance(result.ema.model, labels, w) for w in args.guidance}
        samplers["no label (y = ∅)"] = result.ema.model
    for name, sampler in samplers.items():
        start = time.perf_counter()
        sample, options = (ddim_sample, {"eta": args.eta}) if args.sampler == "ddim" else (dpm_solver_sample, {})
        samples = sample(sampler, diffusion, (args.samples, 1, 28, 28), num_steps=args.ddim_steps,
                         prediction=args.prediction, clip_x0=1.0, device=device,
                         generator=torch.Generator(device=device).manual_seed(args.seed), **options).x.cpu()
        seconds = time.perf_counter() - start
        metrics = evaluator.evaluate(samples)
        report["generated"][name] = {**metrics.as_dict(), "sample_seconds": round(seconds, 1)}
        print(f"{name:24s}", metrics, f"| {args.samples} samples in {seconds:.0f} s")
    print(json.dumps(report))

if __name__ == "__main__":
    main()

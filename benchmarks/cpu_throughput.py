"""Training steps per second of notebook 04's CPU network under each throughput lever (issue 23); prints a table.

    python benchmarks/cpu_throughput.py                  # the levers, 3 rounds
    python benchmarks/cpu_throughput.py --loss-curve 600 # and 600 MNIST steps in float32 and in bfloat16

The network is ``recipes.MNIST["cpu"]``'s U-Net; a step is the training loop's own ``train_step`` (v-prediction,
min-SNR weighting, backward, clipping, Adam, EMA) on a random batch. The settings take turns for ``--rounds``
rounds (so a burst of load hits all alike) and the table shows the median milliseconds per step and per image:

- the memory format: default (contiguous) or ``channels_last`` (``TrainConfig.channels_last``);
- threads: 1 or all of ``torch.get_num_threads()``;
- batch 32, 64, 128 (a larger batch needs a larger learning rate to learn as much per image; this measures cost);
- bfloat16 autocast: native where ``precision.cpu_computes_bf16()`` (AMX or AVX-512-BF16), otherwise emulated
  (and slower: shown for the record, never used by the recipes).

``--loss-curve N`` trains the recipe for N steps from the same seed in float32 and in bfloat16 and prints the mean
loss of each tenth of the run side by side (bfloat16 only changes the numbers by rounding if the curves agree).
Each run appends one JSON line to ``benchmarks/results/cpu_throughput.jsonl`` with the CPU. Prints, never asserts.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from common import cpu_name

from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.nn.unet import UNet
from ddpm_helpers.training import precision, recipes
from ddpm_helpers.training.ema import EMA
from ddpm_helpers.training.loop import train_step
from ddpm_helpers.training.precision import MixedPrecision

OUT = Path(__file__).resolve().parent / "results" / "cpu_throughput.jsonl"
RECIPE = recipes.MNIST["cpu"]


def step_seconds(batch: int, channels_last: bool, threads: int, bf16: bool, steps: int, warmup: int = 5) -> float:
    """Seconds per training step of the recipe's U-Net for one setting (after ``warmup`` untimed steps)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = UNet(**RECIPE.unet).to(memory_format=torch.channels_last if channels_last else torch.preserve_format)
    config = RECIPE.train_config(steps=steps + warmup, time_budget_s=None, batch_size=batch, warmup_steps=0,
                                 mixed_precision="bf16" if bf16 else "off")
    mixed = MixedPrecision(config.mixed_precision, "cpu")
    optimizer, ema = mixed.optimizer(model.parameters(), config.lr), EMA(model, config.ema_decay)
    diffusion = Diffusion.from_schedule("linear", T=1000)
    x0, labels = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    for i in range(steps + warmup):
        if i == warmup:
            start = time.perf_counter()
        t, eps = diffusion.sample_timesteps(batch), torch.randn_like(x0)
        train_step(model, model, ema, optimizer, mixed, diffusion, x0, t, eps, labels, config.lr, config)
    return (time.perf_counter() - start) / steps


def loss_curves(steps: int) -> dict:
    """Mean loss per tenth of an N-step MNIST run of the recipe, in float32 and in bfloat16 (same seed)."""
    from ddpm_helpers.datasets import mnist_images
    from ddpm_helpers.training import train

    images, labels = mnist_images(train=True)
    curves = {}
    for mode in ("off", "bf16"):
        torch.manual_seed(0)
        config = RECIPE.train_config(steps=steps, time_budget_s=None, warmup_steps=min(100, steps // 10),
                                     mixed_precision=mode)
        result = train(UNet(**RECIPE.unet), Diffusion.from_schedule("linear", T=1000), (images, labels), config,
                       device="cpu", progress=False)
        tenth = max(1, len(result.losses) // 10)
        curves[mode] = {"seconds": round(result.seconds, 1),
                        "loss_per_tenth": [round(statistics.mean(result.losses[i:i + tenth]), 4)
                                           for i in range(0, tenth * 10, tenth)]}
    return curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per setting and round")
    parser.add_argument("--loss-curve", type=int, default=0, help="also train this many steps in fp32 and bf16")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    threads = torch.get_num_threads()
    native = precision.cpu_computes_bf16()
    settings = {  # name: (batch, channels_last, threads, bf16)
        "batch 32, default layout": (32, False, threads, False),
        "batch 32, channels_last": (32, True, threads, False),
        "batch 32, default layout, 1 thread": (32, False, 1, False),
        "batch 64, channels_last": (64, True, threads, False),
        "batch 128, channels_last": (128, True, threads, False),
        f"batch 32, channels_last, bf16 ({'native' if native else 'emulated'})": (32, True, threads, True),
    }
    times = {name: [] for name in settings}
    for _ in range(args.rounds):
        for name, setting in settings.items():
            times[name].append(step_seconds(*setting, steps=args.steps))
    baseline = statistics.median(times["batch 32, default layout"])
    print(f"{cpu_name()}, {threads} threads, bfloat16 in hardware: {native}; median of {args.rounds} rounds")
    rows = []
    for name, (batch, *_rest) in settings.items():
        median = statistics.median(times[name])
        rows.append({"setting": name, "ms_per_step": round(1e3 * median, 1),
                     "ms_per_image": round(1e3 * median / batch, 2),
                     "images_per_second_vs_default": round(baseline / 32 / (median / batch), 2)})
        print(f"{name:52s} {1e3 * median:7.1f} ms/step {1e3 * median / batch:6.2f} ms/image "
              f"{rows[-1]['images_per_second_vs_default']:5.2f}× the images per second of the default")
    result = {"cpu": cpu_name(), "threads": threads, "bf16_native": native, "rounds": args.rounds,
              "torch": torch.__version__, "rows": rows}
    if args.loss_curve:
        result["loss_curves"] = loss_curves(args.loss_curve)
        for mode, curve in result["loss_curves"].items():
            print(f"{mode:4s} ({curve['seconds']:.0f} s): mean loss per tenth {curve['loss_per_tenth']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()

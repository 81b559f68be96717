"""Print the measured step time of the GPU recipes of notebooks 04 and 05 next to their T4 estimates.

For each recipe: FLOPs per training step (FlopCounterMode), a short fixed-length training run with the
recipe's mixed precision (after warm-up steps, timed with the device synchronized), the achieved TFLOP/s,
the steps its calibrated budget would buy at that speed, and a short DDIM sampling run. Real data:
MNIST and the butterflies of DDPM_DATA_DIR. One GPU, run once:

    python benchmarks/gpu_profiles.py                        # mnist-gpu, butterflies-gpu, butterflies128-gpu
    python benchmarks/gpu_profiles.py --recipes mnist-quick --steps 4 --warmup 1   # a CPU smoke test
"""

import argparse
import time

import torch

from ddpm_helpers import config, datasets
from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.nn.unet import UNet
from ddpm_helpers.samplers import ddim_sample
from ddpm_helpers.training import recipes, train


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(recipe, device, steps: int, warmup: int, sampling_steps: int) -> None:
    if recipe.data == "mnist":
        images, labels = datasets.mnist_images(train=True)
        draw = datasets.random_batches(images, recipe.train["batch_size"], labels=labels)
    else:
        draw = datasets.random_batches(datasets.butterfly_images(recipe.image_size).images,
                                       recipe.train["batch_size"], transform=datasets.flip_and_crop)
    clock = {}

    def batches(step, generator):  # the clock is read (device synchronized) as steps warmup and warmup + steps begin
        if step in (warmup, warmup + steps):
            _sync(device)
            clock[step] = time.perf_counter()
        return draw(step, generator)

    diffusion = Diffusion.from_schedule("linear", T=1000)
    estimate = recipes.t4_estimate(recipe)
    torch.manual_seed(0)
    model = UNet(**recipe.unet)
    result = train(model, diffusion, batches, recipe.train_config(steps=warmup + steps + 1, time_budget_s=None),
                   device=device, progress=False)
    step_s = (clock[warmup + steps] - clock[warmup]) / steps
    budget = recipe.train.get("time_budget_s")
    shape = (16, recipe.unet["in_channels"], recipe.image_size, recipe.image_size)
    _sync(device)
    start = time.perf_counter()
    ddim_sample(result.ema.model, diffusion, shape, num_steps=sampling_steps, prediction=recipe.train["prediction"],
                device=device, generator=torch.Generator(device=device).manual_seed(0))
    _sync(device)
    sample_s = time.perf_counter() - start
    print(f"{recipe.name} on {torch.cuda.get_device_name(device) if device.type == 'cuda' else device.type}: "
          f"{estimate['flops_per_step'] / 1e12:.3f} TFLOP/step | measured {1e3 * step_s:.1f} ms/step "
          f"({estimate['flops_per_step'] / step_s / 1e12:.1f} TFLOP/s; "
          f"T4 estimate {1e3 * estimate['seconds_per_step']:.0f} ms)"
          + (f" | {int(budget / step_s):,} steps in its {budget / 60:.0f}-min budget here" if budget else "")
          + f" | DDIM {sampling_steps} steps × 16 images: {sample_s:.2f} s | final loss {result.losses[-1]:.4f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="+", default=["mnist-gpu", "butterflies-gpu", "butterflies128-gpu"],
                        choices=sorted(recipes.RECIPES))
    parser.add_argument("--steps", type=int, default=30, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=10, help="untimed training steps first")
    parser.add_argument("--sampling-steps", type=int, default=50)
    args = parser.parse_args()
    device = config.get_device()
    for name in args.recipes:
        measure(recipes.get(name), device, args.steps, args.warmup, args.sampling_steps)


if __name__ == "__main__":
    main()

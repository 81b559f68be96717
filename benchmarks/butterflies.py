"""Print the cost of the butterfly U-Net variants and the nearest-neighbour statistics of notebook 05.

1. Parameters and seconds per CPU training step (loss, backward, Adam) of the U-Net variants
   compared in notebook 05, section 2, on random 32×32 RGB batches.
2. Nearest-neighbour distances (RMS pixel distance, mirror images count): training image →
   nearest other training image, augmented copy → its original, and, when notebook 05 has
   saved them, sample → nearest training image (``outputs/05_butterflies/samples.pt``).

Usage:  DDPM_DATA_DIR=/path/to/data python benchmarks/butterflies.py [--threads 2] [--batch-size 32]
"""

import argparse
from pathlib import Path

import torch

from ddpm_helpers import config
from ddpm_helpers.checkpoint import load_checkpoint
from ddpm_helpers.datasets import butterfly_images, flip_and_crop
from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.evaluation.neighbours import (
    distance_statistics,
    leave_one_out_distances,
    nearest_neighbours,
    rms_distance,
)
from ddpm_helpers.nn.unet import UNet
from ddpm_helpers.training.timing import fastest_training_steps
from ddpm_helpers.utils import count_parameters

OURS = dict(in_channels=3, base_channels=24, channel_mults=(1, 2, 2), num_res_blocks=1,
            attention_resolutions=(8,), dropout=0.1, image_size=32)  # notebook 05's CPU model
VARIANTS = {
    "baseline: no attention, no dropout": dict(attention_resolutions=(), dropout=0.0),
    "+ attention at 8x8": dict(attention_resolutions=(8,), dropout=0.0),
    "+ attention at 16x16 and 8x8": dict(attention_resolutions=(16, 8), dropout=0.0),
    "+ attention at 32x32, 16x16, 8x8": dict(attention_resolutions=(32, 16, 8), dropout=0.0),
    "+ attention at 8x8 + dropout 0.1 (ours)": {},
    "ours, 2 residual blocks per level": dict(num_res_blocks=2),
    "ours, twice as wide": dict(base_channels=2 * OURS["base_channels"]),
}


def print_step_times(batch_size: int, repeats: int) -> None:
    diffusion = Diffusion.from_schedule("linear", T=1000)
    torch.manual_seed(0)
    models = [UNet(**{**OURS, **change}) for change in VARIANTS.values()]
    x0 = torch.rand(batch_size, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    seconds = fastest_training_steps(models, diffusion, x0, repeats)
    print(f"## CPU training step, batch {batch_size} of 32x32 RGB, {torch.get_num_threads()} threads, "
          f"fastest of {repeats}\n")
    print("| variant | parameters | s / step | x baseline |\n| --- | ---: | ---: | ---: |")
    for label, model, value in zip(VARIANTS, models, seconds):
        print(f"| {label} | {count_parameters(model):,} | {value:.3f} | {value / seconds[0]:.2f} |")


def print_neighbour_statistics(samples_path) -> None:
    print("\n## Nearest-neighbour distances (RMS pixel distance in [-1, 1] units, mirror images count)\n")
    samples = None
    if samples_path.is_file():
        samples = load_checkpoint(samples_path)["samples"].float() / 127.5 - 1  # uint8 → [-1, 1]
    image_size = samples.shape[-1] if samples is not None else OURS["image_size"]
    data = butterfly_images(image_size)
    train_nn = leave_one_out_distances(data.images)
    copy_nn = rms_distance(flip_and_crop(data.images, torch.Generator().manual_seed(3)), data.images, flips=True)
    copy_threshold = train_nn.min().item()  # closer than any two different training images
    print(f"{len(data)} training images at {image_size}x{image_size}")
    print(f"median, augmented copy -> original:      {copy_nn.quantile(0.5).item():.3f}")
    print(f"median, training image -> nearest other: {train_nn.quantile(0.5).item():.3f} "
          f"(min {train_nn.min().item():.3f}, max {train_nn.max().item():.3f})")
    if samples is None:
        print(f"no samples at {samples_path}: run notebooks/05_butterflies.ipynb first (or pass --samples)")
        return
    neighbours = nearest_neighbours(samples, data.images, k=1)
    sample_nn = neighbours.distances[:, 0]
    stats = distance_statistics(sample_nn, train_nn, copy_threshold)
    print(f"median, sample -> nearest training image: {stats['sample_median']:.3f} "
          f"(min {sample_nn.min().item():.3f}, max {sample_nn.max().item():.3f}; {len(samples)} samples)")
    print(f"ratio sample / training median: {stats['ratio']:.2f}")
    print(f"samples closer than the closest pair of training images ({copy_threshold:.3f}): "
          f"{stats['copy_fraction']:.1%}")
    print(f"nearest match mirrored: {neighbours.flipped[:, 0].float().mean().item():.1%}")
    print(f"training images used as someone's nearest neighbour: "
          f"{neighbours.indices[:, 0].unique().numel()} of {len(data)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", default=None,
                        help="uint8 samples saved by notebook 05 (default: its outputs folder)")
    parser.add_argument("--skip-timing", action="store_true", help="only print the nearest-neighbour statistics")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.skip_timing:
        print_step_times(args.batch_size, args.repeats)
    samples_path = Path(args.samples) if args.samples else config.outputs_dir("05_butterflies") / "samples.pt"
    print_neighbour_statistics(samples_path)


if __name__ == "__main__":
    main()

"""Which colours a set of images holds: hue histograms, their distance, and the share of images showing a hue band.

A pixel's hue (HSV, 0–360°) means something only where the pixel is coloured: grey, white and near-black pixels
have an arbitrary hue. So only pixels with saturation ≥ ``MIN_SATURATION`` and value (brightness) ≥ ``MIN_VALUE``
count (a mask, no weighting); the white background and dark shadows of the butterfly photos drop out.

- ``hue_histogram``: the share of each hue bin among an image's coloured pixels, averaged over the images that have
  any (every image counts once, whatever the size of its specimen).
- ``total_variation``: ½ Σ |p − q| between two histograms, in [0, 1]: the share of the colour that would have to
  move to other hue bins to turn one histogram into the other.
- ``split_half_distances``: the same distance between random halves of one set: how far two samples of the *same*
  images already are, the floor below which a difference says nothing.
- ``resampled_distances``: the distance of ``n`` images drawn at random from a set (augmented, if the model saw
  augmented images) to a target histogram: what a model that drew exactly from that set would score with ``n``
  samples, the null for a distance of ``n`` samples.
- ``band_shares``: the share of images in which a hue band (red, pink, …) covers at least ``min_cover`` of the pixels.
"""

from __future__ import annotations

from typing import Callable

import torch
from matplotlib.colors import rgb_to_hsv
from torch import Tensor

from ddpm_helpers.checks import check_int, check_number

MIN_SATURATION = 0.25
MIN_VALUE = 0.2
NUM_BINS = 12  # 30° each, centred on red (0°), orange (30°), yellow (60°), …
BANDS = {  # hue bands in degrees, [start, end); red wraps around 0°
    "red": (345, 15),
    "orange/brown": (15, 45),
    "yellow": (45, 75),
    "green": (75, 165),
    "cyan/blue": (165, 255),
    "purple": (255, 285),
    "pink/magenta": (285, 345),
}


def _check_images(images: Tensor) -> Tensor:
    """RGB images (N, 3, H, W), uint8 pixels or floats in [-1, 1], as floats in [0, 1]."""
    if not torch.is_tensor(images) or images.ndim != 4 or images.shape[1] != 3 or len(images) == 0:
        got = f"shape {tuple(images.shape)}" if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"images must be a tensor of RGB images (N >= 1, 3, H, W), got {got}")
    if images.dtype == torch.uint8:
        return images.float() / 255
    if not images.is_floating_point():
        raise ValueError(f"images must be uint8 pixels or floats in [-1, 1], got dtype {images.dtype}")
    low, high = images.min().item(), images.max().item()
    if not (-1 - 1e-4 <= low and high <= 1 + 1e-4):
        raise ValueError(f"float images must lie in [-1, 1], got values in [{low:.3g}, {high:.3g}]")
    return ((images.detach().float().cpu() + 1) / 2).clamp(0, 1)


def pixel_hues(images: Tensor, min_saturation: float = MIN_SATURATION,
               min_value: float = MIN_VALUE) -> tuple[Tensor, Tensor]:
    """Hue in degrees [0, 360) of every pixel (N, H·W), and the mask (N, H·W) of the pixels coloured enough to count."""
    min_saturation = check_number(min_saturation, "min_saturation", 0.0, 1.0)
    min_value = check_number(min_value, "min_value", 0.0, 1.0)
    hsv = torch.from_numpy(rgb_to_hsv(_check_images(images).permute(0, 2, 3, 1).numpy())).flatten(1, 2)  # (N, HW, 3)
    hue, saturation, value = hsv.unbind(-1)
    return hue * 360, (saturation >= min_saturation) & (value >= min_value)


def hue_histogram(images: Tensor, num_bins: int = NUM_BINS, **mask_options) -> Tensor:
    """Shares (num_bins,) of the hue bins among the coloured pixels, bin k centred on k·360°/num_bins.

    Each image's coloured pixels give its own histogram; the result is their mean over the images with any coloured
    pixel (all zeros when no image has one). ``mask_options``: ``min_saturation``, ``min_value`` of ``pixel_hues``.
    """
    num_bins = check_int(num_bins, "num_bins", low=2)
    hue, mask = pixel_hues(images, **mask_options)
    width = 360 / num_bins
    bins = ((hue + width / 2) // width).long() % num_bins  # bin 0 covers [-width/2, width/2): red around 0°
    counts = torch.zeros(len(hue), num_bins).scatter_add_(1, bins, mask.float())  # (N, bins) coloured pixels
    coloured = counts.sum(1) > 0
    if not coloured.any():
        return torch.zeros(num_bins)
    return (counts[coloured] / counts[coloured].sum(1, keepdim=True)).mean(0)


def total_variation(p: Tensor, q: Tensor) -> float:
    """½ Σ_k |p_k − q_k| between two histograms of the same bins (each summing to 1, or all zeros as
    :func:`hue_histogram` gives without coloured pixels): 0 equal, 1 disjoint. Counts are refused (normalise them)."""
    if not (torch.is_tensor(p) and torch.is_tensor(q)) or p.ndim != 1 or p.shape != q.shape:
        shapes = [tuple(x.shape) if torch.is_tensor(x) else type(x).__name__ for x in (p, q)]
        raise ValueError(f"p and q must be 1-D tensors of the same length, got {shapes[0]} and {shapes[1]}")
    for name, h in (("p", p), ("q", q)):
        total = h.double().sum().item()
        if not bool(torch.isfinite(h).all()) or bool((h < 0).any()) or (abs(total - 1.0) > 1e-4 and total != 0):
            raise ValueError(f"{name} must be a histogram of shares (>= 0, summing to 1; all zeros: no coloured "
                             f"pixel), got sum {total:.6g} "
                             f"and minimum {h.double().min().item():.3g}: normalise it (h / h.sum())")
    return 0.5 * (p.double() - q.double()).abs().sum().item()


def split_half_distances(images: Tensor, num_splits: int = 20, seed: int = 0, **histogram_options) -> Tensor:
    """Total variation between the hue histograms of two random halves of ``images``, for ``num_splits`` splits."""
    num_splits = check_int(num_splits, "num_splits", low=1)
    if len(images) < 2:
        raise ValueError(f"need at least 2 images to split in halves, got {len(images)}")
    generator = torch.Generator().manual_seed(seed)
    distances = []
    for _ in range(num_splits):
        order = torch.randperm(len(images), generator=generator)
        half = len(images) // 2
        first, second = images[order[:half]], images[order[half : 2 * half]]
        distances.append(total_variation(hue_histogram(first, **histogram_options),
                                         hue_histogram(second, **histogram_options)))
    return torch.tensor(distances)


def resampled_distances(images: Tensor, target: Tensor, n: int, num_draws: int = 20, seed: int = 0,
                        transform: Callable[[Tensor, torch.Generator], Tensor] | None = None,
                        **histogram_options) -> Tensor:
    """Total variation between ``target`` (a hue histogram) and the hue histogram of ``n`` images drawn uniformly,
    with replacement, from ``images``, each passed through ``transform(batch, generator)`` when given (e.g.
    ``datasets.flip_and_crop``), for ``num_draws`` seeded draws.

    A model that drew exactly from the distribution of (augmented) ``images`` would score this with ``n`` samples:
    the null a distance of ``n`` samples from ``target`` is to be set against.
    """
    n = check_int(n, "n", low=1)
    num_draws = check_int(num_draws, "num_draws", low=1)
    if not torch.is_tensor(images) or images.ndim != 4 or len(images) == 0:
        raise ValueError("images must be a non-empty tensor of RGB images (N, 3, H, W)")
    generator = torch.Generator().manual_seed(check_int(seed, "seed", low=0))
    distances = []
    for _ in range(num_draws):
        drawn = images[torch.randint(len(images), (n,), generator=generator)]
        if transform is not None:
            drawn = transform(drawn, generator)
        distances.append(total_variation(hue_histogram(drawn, **histogram_options), target))
    return torch.tensor(distances)


def band_shares(images: Tensor, bands: dict[str, tuple[float, float]] | None = None, min_cover: float = 0.03,
                **mask_options) -> dict[str, float]:
    """For each hue band ``name: (start, end)`` in degrees (wrapping when start > end; default ``BANDS``), the share
    of images in which the coloured pixels of that band cover at least ``min_cover`` of all the image's pixels."""
    min_cover = check_number(min_cover, "min_cover", 0.0, 1.0, low_open=True)
    hue, mask = pixel_hues(images, **mask_options)
    shares = {}
    bands = BANDS if bands is None else bands
    for name, band in bands.items():
        if not isinstance(band, (tuple, list)) or len(band) != 2:
            raise ValueError(f"hue band {name!r} must be a (start, end) pair of degrees, got {band!r}")
        for value in band:
            check_number(value, f"hue band {name!r} bound", 0.0, 360.0)
    for name, (start, end) in bands.items():
        inside = (hue >= start) & (hue < end) if start <= end else (hue >= start) | (hue < end)
        cover = (inside & mask).float().mean(1)  # (N,) share of the image's pixels
        shares[name] = (cover >= min_cover).float().mean().item()
    return shares

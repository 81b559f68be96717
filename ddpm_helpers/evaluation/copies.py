"""The copies a model trained with augmentation would make: the nearest training image over its flips and crops.

Notebook 05's network trains on randomly flipped and cropped images (``datasets.flip_and_crop``: a crop of side
``scale`` ∈ [0.85, 1] of the image, shifted anywhere within the free margin, resized back). A model that memorizes
reproduces such *views* of its training images, and a plain nearest-neighbour search (``neighbours``) sees a view
shifted by two pixels as a distant image. This search renders every training image under a grid of the
augmentation's own transforms — both flips, scales 0.85, 0.90, 0.95 and 1, shifts on a 1-pixel grid of the free
margin — with the same resampling, and keeps for each query the nearest view. Distances are those of
``neighbours``: ‖a − b‖₂/√D for images in [−1, 1]. :func:`copy_test` runs notebook 05's whole test (section 5) on a
set of samples in one call, as its section 6 and ``benchmarks/butterfly_copies.py`` do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ddpm_helpers.checks import check_int
from ddpm_helpers.datasets.images import flip_and_crop
from ddpm_helpers.evaluation.intervals import median_ratio_interval
from ddpm_helpers.evaluation.neighbours import _check_exclude, _check_pair, pairwise_rms_distances

CROP_SCALES = (0.85, 0.90, 0.95, 1.0)  # the side of the crop, as a share of the image's (flip_and_crop's range)


@dataclass
class ViewNeighbours:
    """For each query ``(Q,)``: the distance to its nearest view, the training image it is a view of, and the view
    (``flipped``, crop ``scale`` and the crop's centre ``shift`` in pixels, x then y)."""

    distances: Tensor
    indices: Tensor
    flipped: Tensor
    scales: Tensor
    shifts: Tensor


def crop_grid(image_size: int, scales: tuple[float, ...] = CROP_SCALES) -> list[tuple[float, int, int]]:
    """Every crop ``(scale, dx, dy)`` on the grid: whole-pixel shifts ``dx``, ``dy`` with |d| ≤ (1 − scale)·size/2,
    the free margin on each side of a crop of side scale·size."""
    image_size = check_int(image_size, "image_size", low=1)
    grid = []
    for scale in scales:
        if not 0 < scale <= 1:
            raise ValueError(f"crop scales must lie in (0, 1], got {scale}")
        reach = math.floor((1 - scale) * image_size / 2 + 1e-9)  # whole pixels of free margin on each side
        grid += [(scale, dx, dy) for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1)]
    return grid


def crop_views(images: Tensor, grid: list[tuple[float, int, int]]) -> Tensor:
    """Each image under each crop of ``grid``, resampled as ``flip_and_crop`` does: ``(N, V, C, H, W)``.

    A crop is the affine map of the sampling grid θ = [[s, 0, t_x], [0, s, t_y]] with the shift in
    normalized coordinates, t = 2·d/size for a shift of d pixels (bilinear, border padding).
    """
    n, channels, height, width = images.shape
    theta = torch.zeros(len(grid), 2, 3, dtype=images.dtype, device=images.device)
    for v, (scale, dx, dy) in enumerate(grid):
        theta[v, 0, 0] = theta[v, 1, 1] = scale  # zoom in: the crop's side is scale·size
        theta[v, 0, 2], theta[v, 1, 2] = 2 * dx / width, 2 * dy / height  # t = 2d/size: d pixels
    views = []
    for image in images:
        batch = image.expand(len(grid), channels, height, width)
        sampling = F.affine_grid(theta, [len(grid), channels, height, width], align_corners=False)
        views.append(F.grid_sample(batch, sampling, mode="bilinear", padding_mode="border", align_corners=False))
    return torch.stack(views)


def nearest_views(queries: Tensor, references: Tensor, scales: tuple[float, ...] = CROP_SCALES,
                  chunk: int = 16, exclude: Tensor | None = None) -> ViewNeighbours:
    """The nearest view of a reference image for every query: the min of ‖q − view‖₂/√D over both flips of every
    reference and every crop of :func:`crop_grid` (``chunk`` references rendered at a time, to bound memory).

    ``exclude`` (optional, ``(Q,)``): for each query a reference row whose views are all left out of its search, e.g.
    the training image an augmented view was made from: the view is then measured to the views of *other* images.
    """
    _check_pair(queries, references, "queries", "references")
    exclude = _check_exclude(exclude, len(queries), len(references))
    if exclude is not None and len(references) < 2:
        raise ValueError("exclude leaves nothing to search: it needs at least 2 references")
    chunk = check_int(chunk, "chunk", low=1)
    grid = crop_grid(references.shape[-1], scales)
    best = torch.full((len(queries),), math.inf)
    best_view = torch.zeros(len(queries), dtype=torch.long)  # index into (reference, flip, crop), flattened
    for start in range(0, len(references), chunk):
        block = references[start:start + chunk].detach().cpu().float()
        views = torch.stack([crop_views(block, grid), crop_views(block.flip(-1), grid)], dim=1)  # (n, 2, V, C, H, W)
        distances = pairwise_rms_distances(queries, views.flatten(0, 2))  # (Q, n·2·V)
        if exclude is not None:  # every view of the query's own source image is out of reach
            source = (torch.arange(distances.shape[1]) // (2 * len(grid)) + start)[None, :]  # reference row of a view
            distances = distances.masked_fill(source == exclude[:, None], math.inf)
        nearest, where = distances.min(dim=1)
        closer = nearest < best
        best = torch.where(closer, nearest, best)
        best_view = torch.where(closer, where + start * 2 * len(grid), best_view)
    index, rest = best_view // (2 * len(grid)), best_view % (2 * len(grid))
    flipped, crop = rest // len(grid), rest % len(grid)
    crops = torch.tensor(grid, dtype=torch.float64)[crop]
    return ViewNeighbours(distances=best, indices=index, flipped=flipped.bool(), scales=crops[:, 0].float(),
                          shifts=crops[:, 1:].long())


@dataclass
class CopyTest:
    """Notebook 05's copy test of a set of samples against the training images (section 5, in one call): the
    nearest-view distance of every ``samples`` image, of as many ``fresh`` augmented views of training images measured
    to the *other* images (new butterflies), and of one ``planted`` augmented copy of each training image; the
    ``copy_line`` is the closest any training image comes to a view of another one. ``nearest`` keeps the samples'
    whole search (each one's nearest training image, flip and crop), to show them beside their nearest views."""

    copy_line: float
    samples: Tensor
    fresh: Tensor
    planted: Tensor
    nearest: ViewNeighbours

    def below_line(self) -> dict[str, tuple[int, int]]:
        """``(count, n)`` below the copy line for the samples, the fresh views and the planted copies."""
        return {name: (int((values < self.copy_line).sum()), len(values))
                for name, values in (("samples", self.samples), ("fresh", self.fresh), ("planted", self.planted))}

    def median_ratio(self) -> float:
        """Median nearest-view distance of the samples over that of the fresh views (≈ 1: as far as new ones); the
        median of an even count is the mean of its two middle values (``quantile(0.5)``, as notebook 05 computes it)."""
        return (self.samples.quantile(0.5) / self.fresh.quantile(0.5)).item()

    def median_ratio_interval(self, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
        """Bootstrap interval of :meth:`median_ratio` (``evaluation.intervals.median_ratio_interval``): how far
        another draw of as many samples and fresh views could move it."""
        return median_ratio_interval(self.samples, self.fresh, level=level, seed=seed)


def copy_test(samples: Tensor, train: Tensor, seed: int = 3) -> CopyTest:
    """Search ``samples`` and the three yardsticks over the views of ``train`` (:func:`nearest_views`); the
    augmentation is ``datasets.flip_and_crop`` drawn from seeds ``seed`` (planted copies) and ``seed + 1`` (fresh
    views of the training images in turn, as many as samples)."""
    _check_pair(samples, train, "samples", "train")
    n_train = len(train)
    line = nearest_views(train, train, exclude=torch.arange(n_train)).distances.min().item()
    source = torch.arange(len(samples)) % n_train
    views = flip_and_crop(train[source], torch.Generator().manual_seed(seed + 1))
    planted = flip_and_crop(train, torch.Generator().manual_seed(seed))
    nearest = nearest_views(samples, train)
    return CopyTest(copy_line=line, samples=nearest.distances,
                    fresh=nearest_views(views, train, exclude=source).distances,
                    planted=nearest_views(planted, train).distances, nearest=nearest)

"""Nearest training images of generated samples: does a model create, or does it memorize?

A diffusion model trained long enough on a small set can learn to reproduce its training
images (Somepalli et al. 2023, "Diffusion Art or Digital Forgery?"; Carlini et al. 2023,
"Extracting Training Data from Diffusion Models"). The simplest check compares every sample
with its nearest training image, and that distance with the distance between a training image
and its nearest *other* training image: samples much closer to the training set than the
training images are to each other are copies.

Distances are root-mean-square pixel differences of images in [−1, 1],
``d(a, b) = ‖a − b‖₂ / √D`` with ``D = C·H·W`` pixel values, so they do not depend on the image
size: 0 means identical, 2 means every pixel differs from black to white. With ``flips=True``
a mirrored image counts as the same image (the models are trained on random horizontal flips):
``d_flip(a, b) = min(d(a, b), d(a, flip(b)))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ddpm_helpers.checks import check_int, check_number


@dataclass
class Neighbours:
    """The ``k`` nearest references of each query, nearest first, all shaped ``(Q, k)``.

    ``indices`` are rows of the reference set; ``flipped[q, j]`` is True when the mirrored
    reference is the closer one.
    """

    distances: Tensor
    indices: Tensor
    flipped: Tensor


def _check_images(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.ndim != 4 or len(x) == 0:
        got = f"shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a non-empty Tensor of images (N, C, H, W), got {got}")


def _check_pair(a: Tensor, b: Tensor, a_name: str, b_name: str) -> None:
    _check_images(a_name, a)
    _check_images(b_name, b)
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"{a_name} images {tuple(a.shape[1:])} and {b_name} images {tuple(b.shape[1:])} "
                         "differ in shape")


def rms_distance(a: Tensor, b: Tensor, flips: bool = False) -> Tensor:
    """Distance of each pair ``(a[i], b[i])``, shape ``(N,)``: ‖a − b‖₂/√D, or min over b and flip(b)."""
    _check_pair(a, b, "a", "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must hold the same number of images, "
                         f"got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.double(), b.double()
    distance = (a - b).pow(2).flatten(1).mean(1).sqrt()  # ‖a − b‖₂ / √D
    if flips:
        mirrored = (a - b.flip(-1)).pow(2).flatten(1).mean(1).sqrt()  # ‖a − flip(b)‖₂ / √D
        distance = torch.minimum(distance, mirrored)
    return distance.float()


def pairwise_rms_distances(queries: Tensor, references: Tensor) -> Tensor:
    """All distances ``(Q, R)``: ‖q − r‖₂/√D via ‖q‖² + ‖r‖² − 2 q·r, computed in float64 (no cancellation trouble)."""
    _check_pair(queries, references, "queries", "references")
    q = queries.detach().flatten(1).double().cpu()
    r = references.detach().flatten(1).double().cpu()
    squared = q.pow(2).sum(1, keepdim=True) + r.pow(2).sum(1) - 2 * q @ r.T  # ‖q − r‖² = ‖q‖² + ‖r‖² − 2 q·r
    return (squared.clamp(min=0) / q.shape[1]).sqrt().float()  # ‖q − r‖₂ / √D


def _flip_aware_distances(queries: Tensor, references: Tensor, flips: bool) -> tuple[Tensor, Tensor]:
    """(distances (Q, R), flipped (Q, R)): the min over each reference and its mirror image."""
    direct = pairwise_rms_distances(queries, references)
    if not flips:
        return direct, torch.zeros_like(direct, dtype=torch.bool)
    mirrored = pairwise_rms_distances(queries, references.flip(-1))
    flipped = mirrored < direct
    return torch.where(flipped, mirrored, direct), flipped


def _check_exclude(exclude: Tensor | None, num_queries: int, num_references: int) -> Tensor | None:
    """``exclude``: None, or for each query the row of the reference set to leave out (a LongTensor ``(Q,)``)."""
    if exclude is None:
        return None
    if not isinstance(exclude, Tensor) or exclude.shape != (num_queries,) or exclude.is_floating_point():
        got = (f"shape {tuple(exclude.shape)}, dtype {exclude.dtype}" if isinstance(exclude, Tensor)
               else type(exclude).__name__)
        raise ValueError(f"exclude must be an integer Tensor of shape ({num_queries},), one reference row per query, "
                         f"got {got}")
    if len(exclude) and (int(exclude.min()) < 0 or int(exclude.max()) >= num_references):
        raise ValueError(f"exclude must hold reference rows in [0, {num_references - 1}], got values in "
                         f"[{int(exclude.min())}, {int(exclude.max())}]")
    return exclude.long().cpu()


def nearest_neighbours(queries: Tensor, references: Tensor, k: int = 1, flips: bool = True,
                       exclude: Tensor | None = None) -> Neighbours:
    """The ``k`` references nearest to each query in pixel space (mirrored references count when ``flips``).

    ``exclude`` (optional, ``(Q,)``): for each query a reference row left out of its search, e.g. the training image
    an augmented view was made from, so that the view is measured to the nearest *other* image.
    """
    _check_pair(queries, references, "queries", "references")
    exclude = _check_exclude(exclude, len(queries), len(references))
    k = check_int(k, "k", low=1, high=len(references) - (exclude is not None))  # at most the references searched
    distances, flipped = _flip_aware_distances(queries, references, flips)
    if exclude is not None:
        distances[torch.arange(len(queries)), exclude] = float("inf")  # the query's own source (and its mirror)
    nearest, indices = distances.topk(k, dim=1, largest=False)  # ascending: nearest first
    return Neighbours(distances=nearest, indices=indices, flipped=flipped.gather(1, indices))


def leave_one_out_distances(images: Tensor, flips: bool = True) -> Tensor:
    """For each image, the distance to its nearest *other* image in the set, shape ``(N,)``.

    This is the yardstick for samples: how far apart the training images are from each other.
    An image's own mirror image does not count as another image.
    """
    _check_images("images", images)
    if len(images) < 2:
        raise ValueError(f"need at least 2 images to measure distances between them, got {len(images)}")
    distances, _ = _flip_aware_distances(images, images, flips)
    distances.fill_diagonal_(float("inf"))  # exclude the image itself (and its mirror)
    return distances.min(1).values


def distance_statistics(sample_distances: Tensor, train_distances: Tensor, copy_threshold: float) -> dict[str, float]:
    """Summary of nearest-neighbour distances: medians, their ratio, and the share of near-copies.

    ``sample_median``/``train_median``: medians of the samples' distances to their nearest training
    image and of the training images' leave-one-out distances; ``ratio`` = sample / train median
    (≪ 1: samples sit on top of training images; ≈ 1 or more: as novel as the training images are
    to each other); ``copy_fraction``: share of samples closer than ``copy_threshold`` to a training image.
    """
    for name, values in (("sample_distances", sample_distances), ("train_distances", train_distances)):
        if not isinstance(values, Tensor) or values.ndim != 1 or len(values) == 0:
            got = f"shape {tuple(values.shape)}" if isinstance(values, Tensor) else type(values).__name__
            raise ValueError(f"{name} must be a non-empty 1-D Tensor, got {got}")
        if not bool(torch.isfinite(values).all()) or bool((values < 0).any()):
            raise ValueError(f"{name} must be distances (finite, >= 0), got values in "
                             f"[{values.min().item():.4g}, {values.max().item():.4g}]")
    copy_threshold = check_number(copy_threshold, "copy_threshold", low=0)
    sample_median = sample_distances.double().quantile(0.5).item()
    train_median = train_distances.double().quantile(0.5).item()
    return {
        "sample_median": sample_median,
        "train_median": train_median,
        "ratio": sample_median / train_median if train_median > 0 else float("inf"),
        "copy_fraction": (sample_distances < copy_threshold).double().mean().item(),
    }

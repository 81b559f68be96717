"""Classes without labels (notebook 04): k-means clusters of a cheap feature of the images.

A class-conditional network trained on cluster ids in place of labels, and sampled with cluster ids drawn in
proportion to the clusters' sizes, draws label-free images; a good partition of the data is what makes a
conditional model easier to learn (Bao et al. 2022, "Why are conditional generative models better than
unconditional ones?", who cluster self-supervised features; Adaloglou et al. 2024 study the number of clusters).
For MNIST a 7×7 area average of the pixels is feature enough, and no label is read.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ddpm_helpers.checks import check_int


def kmeans(x: Tensor, k: int, iterations: int = 30, seed: int = 0) -> Tensor:
    """Cluster ids (N,) of the rows of ``x`` (N, D): Lloyd's k-means (each row to its nearest centre, each centre to
    the mean of its rows) from a k-means++ start (Arthur & Vassilvitskii 2007: each next centre drawn with
    probability ∝ the squared distance to the nearest centre so far). An empty cluster keeps its centre."""
    k = check_int(k, "k")
    if x.ndim != 2 or not x.is_floating_point() or not 1 <= k <= len(x):
        raise ValueError(f"kmeans needs floating-point rows x (N, D) with 1 <= k <= N; got x of shape "
                         f"{tuple(x.shape)} ({x.dtype}) and k={k}")
    generator = torch.Generator().manual_seed(seed)
    centres = x[torch.randint(len(x), (1,), generator=generator)]
    for _ in range(k - 1):
        d2 = torch.cdist(x, centres).amin(1) ** 2  # squared distance to the nearest centre
        centres = torch.cat([centres, x[torch.multinomial(d2, 1, generator=generator)]])
    for _ in range(iterations):
        ids = torch.cdist(x, centres).argmin(1)  # assignment step
        sums = torch.zeros_like(centres).index_add_(0, ids, x)
        counts = torch.bincount(ids, minlength=k)[:, None]
        centres = torch.where(counts > 0, sums / counts.clamp(min=1), centres)  # update step
    return torch.cdist(x, centres).argmin(1)


def pooled_features(images: Tensor, size: int = 7) -> Tensor:
    """Each image (N, C, H, W) as its area average on a ``size`` × ``size`` grid, flattened: (N, C·size²)."""
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    return F.adaptive_avg_pool2d(images.float(), size).flatten(1)


def image_clusters(images: Tensor, k: int, seed: int = 0, size: int = 7) -> Tensor:
    """k-means cluster ids (N,) of ``images`` (N, C, H, W) by their :func:`pooled_features`."""
    return kmeans(pooled_features(images, size), k, seed=seed)


def cluster_shares(ids: Tensor, k: int) -> Tensor:
    """Each cluster's share of the data (k,), for drawing cluster ids in proportion to the clusters' sizes."""
    return torch.bincount(ids, minlength=k).double() / len(ids)


def draw_clusters(shares: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` cluster ids drawn with probabilities ``shares`` (k,)."""
    return torch.multinomial(torch.as_tensor(shares, dtype=torch.double), n, replacement=True, generator=generator)


def labels_and_clusters(images: Tensor, labels: Tensor, k: int, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """The training set of a network that draws digits on request *and* without labels (notebook 04): every image
    twice, once with its label (classes ``0 … L−1``) and once with its k-means cluster (classes ``L … L+k−1``, by
    :func:`image_clusters`). Returns ``(images, classes, shares)``: 2N images, their 2N classes, and the clusters'
    shares of the data (k,) for drawing label-free samples (class ``L + draw_clusters(shares, …)``)."""
    if labels.shape != images.shape[:1] or labels.dtype.is_floating_point:
        raise ValueError(f"labels must be integer classes, one per image ({len(images)}), got {labels.dtype} "
                         f"{tuple(labels.shape)}")
    num_labels = int(labels.max()) + 1
    ids = image_clusters(images, k, seed=seed)
    return (torch.cat([images, images]), torch.cat([labels, num_labels + ids]), cluster_shares(ids, k))

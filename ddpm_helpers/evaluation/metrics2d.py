"""Sample-quality numbers for low-dimensional data: a two-sample distance and mode coverage.

Each number is meant to be printed beside its value for fresh samples of the true
distribution, which shows the level reached by a perfect sampler at the same sample size.
"""

import torch
from torch import Tensor

from ddpm_helpers.analytic import GaussianMixture


def _check_points(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.ndim != 2 or len(x) < 2:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a Tensor of shape (N >= 2, D), got {got}")


def energy_distance(x: Tensor, y: Tensor) -> float:
    """Squared energy distance 2E‖X−Y‖ − E‖X−X′‖ − E‖Y−Y′‖ (Székely & Rizzo 2013, Eq. 1).

    Zero exactly when the two distributions are equal. Within-sample means exclude the
    pairs (i, i) (U-statistics), so the estimate is unbiased and hovers around 0 for two
    samples of one distribution.
    """
    _check_points("x", x)
    _check_points("y", y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    x, y = x.double(), y.double().to(x.device)
    n, m = len(x), len(y)
    xy = torch.cdist(x, y).mean()  # E‖X − Y‖
    xx = torch.cdist(x, x).sum() / (n * (n - 1))  # E‖X − X′‖, i ≠ j
    yy = torch.cdist(y, y).sum() / (m * (m - 1))  # E‖Y − Y′‖, i ≠ j
    return float(2 * xy - xx - yy)


def mode_coverage(x: Tensor, mixture: GaussianMixture, num_std: float = 3.0, min_share: float = 0.25) -> dict:
    """How well samples ``x`` cover the components of a Gaussian ``mixture``.

    Each sample is assigned to its nearest component mean; it is *near* it when closer than
    ``num_std`` standard deviations. A component is *covered* when its near samples number at
    least ``min_share`` of what it should get (weight · N). Returns ``covered`` (share of
    components covered), ``near`` (share of samples near some mean; low = samples off the
    data) and ``counts`` (near samples per component).
    """
    _check_points("x", x)
    means = mixture.means.to(x.device, torch.float64)
    stds = mixture.variances.to(x.device, torch.float64).sqrt()
    if x.shape[1] != means.shape[1]:
        raise ValueError(f"x has dimension {x.shape[1]} but the mixture has dimension {means.shape[1]}")
    distances = torch.cdist(x.double(), means)  # ‖x_i − μ_k‖
    nearest = distances.argmin(dim=1)
    near = distances.gather(1, nearest[:, None]).squeeze(1) < num_std * stds[nearest]
    counts = torch.bincount(nearest[near], minlength=len(means))
    expected = mixture.weights.to(x.device, torch.float64) * len(x)
    return {
        "covered": float((counts >= min_share * expected).double().mean()),
        "near": float(near.double().mean()),
        "counts": counts.cpu(),
    }

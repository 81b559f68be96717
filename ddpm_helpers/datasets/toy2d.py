"""Two-dimensional toy distributions, generated in code and standardized.

Every sampler takes ``n`` and a ``torch.Generator`` and returns a float32 tensor ``(n, 2)``.
Each distribution is standardized by a *fixed* map x ↦ (x − μ)/σ (mean 0 and variance 1
averaged over the two axes, one σ for both so shapes keep their aspect ratio, measured once
on a large reference sample), so two calls draw from exactly the same distribution: fresh
samples are a fair reference for a model's samples.
The ring of Gaussians is an exact :class:`~ddpm_helpers.analytic.GaussianMixture` whose
density is known, so log-likelihoods and optimal denoisers can be computed exactly.
"""

import math
from functools import lru_cache

import torch
from torch import Tensor

from ddpm_helpers.analytic import GaussianMixture
from ddpm_helpers.checks import check_int, check_number, check_positive_int

_REFERENCE_SIZE = 200_000
_REFERENCE_SEED = 12345


def _uniform(n: int, generator: torch.Generator | None) -> Tensor:
    return torch.rand(n, generator=generator, dtype=torch.float64)


def _normal(shape, generator: torch.Generator | None) -> Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float64)


def _raw_two_moons(n: int, generator) -> Tensor:
    """Two interleaved half circles (as sklearn's make_moons), Gaussian noise σ = 0.05."""
    upper = _uniform(n, generator) < 0.5
    angle = math.pi * _uniform(n, generator)
    x = torch.where(upper, torch.cos(angle), 1.0 - torch.cos(angle))
    y = torch.where(upper, torch.sin(angle), 0.5 - torch.sin(angle))
    return torch.stack([x, y], dim=1) + 0.05 * _normal((n, 2), generator)


def _raw_swiss_roll(n: int, generator) -> Tensor:
    """The 2-D swiss roll: (s cos s, s sin s), s ∈ [1.5π, 4.5π], Gaussian noise σ = 0.25."""
    s = 1.5 * math.pi * (1.0 + 2.0 * _uniform(n, generator))
    return torch.stack([s * torch.cos(s), s * torch.sin(s)], dim=1) + 0.25 * _normal((n, 2), generator)


def _raw_checkerboard(n: int, generator) -> Tensor:
    """Uniform on the 8 dark squares of a 4×4 checkerboard on [−2, 2]²."""
    x = 4.0 * _uniform(n, generator) - 2.0
    column = torch.floor(x)  # −2, −1, 0, 1
    row_in_pair = torch.floor(2.0 * _uniform(n, generator))  # which of the two dark rows of this column
    y = _uniform(n, generator) + 2.0 * row_in_pair - 2.0 + torch.remainder(column, 2.0)
    return torch.stack([x, y], dim=1)


def _ellipse_arc(cx, cy, rx, ry, start, stop, pieces=64) -> list[tuple[float, float]]:
    angles = [start + (stop - start) * i / pieces for i in range(pieces + 1)]
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


def _letter_strokes() -> list[list[tuple[float, float]]]:
    """Polylines writing "DD" above "PM" (letters 1.4 high, 0.7–1.0 wide)."""
    top = 1.8
    strokes = []
    for x0 in (0.0, 1.2):  # D, D: a stem and a half ellipse
        strokes.append([(x0, top), (x0, top + 1.4)])
        strokes.append(_ellipse_arc(x0, top + 0.7, 0.8, 0.7, math.pi / 2, -math.pi / 2))
    strokes.append([(0.0, 0.0), (0.0, 1.4)])  # P: a stem and a small bowl
    strokes.append(_ellipse_arc(0.0, 1.05, 0.7, 0.35, math.pi / 2, -math.pi / 2))
    strokes.append([(1.05, 0.0), (1.05, 1.4), (1.55, 0.55), (2.05, 1.4), (2.05, 0.0)])  # M
    return strokes


@lru_cache(maxsize=1)
def _letter_segments() -> tuple[Tensor, Tensor]:
    starts, ends = [], []
    for stroke in _letter_strokes():
        starts += stroke[:-1]
        ends += stroke[1:]
    return torch.tensor(starts, dtype=torch.float64), torch.tensor(ends, dtype=torch.float64)


def _raw_ddpm_letters(n: int, generator) -> Tensor:
    """Points spread uniformly along the strokes of the word "DDPM", Gaussian noise σ = 0.04."""
    starts, ends = _letter_segments()
    lengths = (ends - starts).norm(dim=1)
    segment = torch.multinomial(lengths, n, replacement=True, generator=generator)  # P(segment) ∝ its length
    along = _uniform(n, generator)[:, None]
    points = starts[segment] + along * (ends[segment] - starts[segment])
    return points + 0.04 * _normal((n, 2), generator)


_RAW = {
    "two_moons": _raw_two_moons,
    "swiss_roll": _raw_swiss_roll,
    "checkerboard": _raw_checkerboard,
    "ddpm_letters": _raw_ddpm_letters,
}


@lru_cache(maxsize=None)
def _standardization(name: str) -> tuple[Tensor, float]:
    """Fixed mean (per axis) and scale (one for both axes, so shapes keep their aspect ratio) of a
    distribution, from a large reference sample with a fixed seed: the scale makes E‖x − μ‖² = 2."""
    reference = _RAW[name](_REFERENCE_SIZE, torch.Generator().manual_seed(_REFERENCE_SEED))
    return reference.mean(dim=0), float(reference.var(dim=0).mean().sqrt())


def ring_mixture(num_modes: int = 8, std: float = 0.1) -> GaussianMixture:
    """Equal-weight isotropic Gaussians N(μ_k, std² I) with means on a circle, exactly standardized.

    Per axis the variance is r²/2 + std² (means at angles 2πk/K, K ≥ 3), so the radius
    r = √(2(1 − std²)) gives mean 0 and variance 1.
    """
    num_modes = check_int(num_modes, "num_modes", low=3)
    std = check_number(std, "std", 0, 1, low_open=True, high_open=True)
    radius = math.sqrt(2.0 * (1.0 - std**2))  # r²/2 + std² = 1
    angles = 2 * math.pi * torch.arange(num_modes, dtype=torch.float64) / num_modes
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    weights = torch.full((num_modes,), 1.0 / num_modes, dtype=torch.float64)
    variances = torch.full((num_modes,), std**2, dtype=torch.float64)
    return GaussianMixture(weights, means, variances)


def _ring_of_gaussians(n: int, generator) -> Tensor:
    return ring_mixture().sample(n, generator=generator)


DATASETS = ("two_moons", "swiss_roll", "ring_of_gaussians", "checkerboard", "ddpm_letters")


def sample_toy(name: str, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` points of the named 2-D distribution (one of :data:`DATASETS`), float32 ``(n, 2)``, standardized."""
    if name not in DATASETS:
        raise ValueError(f"unknown toy dataset {name!r}; expected one of {DATASETS}")
    n = check_positive_int(n, "n")
    if name == "ring_of_gaussians":
        return _ring_of_gaussians(n, generator).to(torch.float32)
    mean, scale = _standardization(name)
    return ((_RAW[name](n, generator) - mean) / scale).to(torch.float32)  # (x − μ) / σ

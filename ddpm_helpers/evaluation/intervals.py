"""Intervals for numbers measured on random samples: how far another draw of as many samples could move them.

- A **share** (confidently read digits, label agreement) counts successes among n independent samples: the Wilson
  score interval (Wilson 1927) is the standard interval for a binomial proportion and, unlike p̂ ± z·SE, stays
  inside [0, 1] and keeps its coverage near 0 and 1.
- A **distance between sample sets** (Fréchet, kernel) has no closed-form interval. The bootstrap fails it:
  a resample drawn with replacement holds only about 63 % distinct images, which shrinks the covariance and
  moves the Fréchet distance far more than its spread. The delete-a-group jackknife (Efron & Stein 1981;
  Efron & Tibshirani 1993, §11.2) leaves out one of g groups of the samples at a time, so every estimate sees
  distinct images: SE² = (g − 1)/g · Σ_k (θ_(k) − θ̄)², and the interval is θ̂ ± z·SE.

- A **ratio of two medians** (a set's nearest-neighbour distances over a yardstick's, notebook 05): the percentile
  bootstrap (Efron & Tibshirani 1993, §13), each set resampled with replacement on its own; a median needs no
  distinct images, so the bootstrap's duplicates do not bias it as they do a Fréchet distance.

Both hold the judge and the real-data reference fixed and vary only the generated samples: they answer "would
another 1000 samples of this model score the same?", not "would another training run?" (that needs seeds).
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Callable

import torch
from torch import Tensor

from ddpm_helpers.checks import check_int, check_number


def _z(level: float) -> float:
    level = check_number(level, "level", low=0.0, high=1.0, low_open=True, high_open=True)
    return NormalDist().inv_cdf(0.5 + level / 2)  # z with P(|Z| ≤ z) = level


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a share p̂ = successes/n:  (p̂ + z²/2n ± z √(p̂(1 − p̂)/n + z²/4n²)) / (1 + z²/n)."""
    n = check_int(n, "n", low=1)
    successes = check_int(successes, "successes", low=0, high=n)
    z, p = _z(level), successes / n
    centre = p + z * z / (2 * n)  # p̂ + z²/2n
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))  # z √(p̂(1 − p̂)/n + z²/4n²)
    scale = 1 + z * z / n  # 1 + z²/n
    return max(0.0, (centre - half) / scale), min(1.0, (centre + half) / scale)


def jackknife_interval(statistic: Callable[[Tensor], float], n: int, groups: int = 20, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """θ̂ ± z·SE of ``statistic(index)``, a number computed from the samples at ``index`` (a LongTensor of sample
    indices), with the delete-a-group jackknife: the n samples are split into ``groups`` random groups (seeded),
    θ_(k) leaves out group k, and SE² = (g − 1)/g · Σ_k (θ_(k) − θ̄)²."""
    n = check_int(n, "n", low=4)
    groups = check_int(groups, "groups", low=2, high=n // 2)  # every left-out group holds at least 2 samples
    z = _z(level)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(check_int(seed, "seed", low=0)))
    estimate = statistic(torch.arange(n))
    left_out = torch.tensor([statistic(torch.cat([part for j, part in enumerate(order.chunk(groups)) if j != k]))
                             for k in range(groups)], dtype=torch.float64)  # θ_(k)
    spread = ((groups - 1) / groups * (left_out - left_out.mean()).pow(2).sum()).sqrt().item()  # SE
    return estimate - z * spread, estimate + z * spread


def median_ratio_interval(a: Tensor, b: Tensor, level: float = 0.95, draws: int = 2000,
                          seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of median(a) / median(b) for two independent sets of positive values: ``draws``
    resamples of each set with replacement (seeded), and the (1 ∓ level)/2 quantiles of their ratios."""
    for name, values in (("a", a), ("b", b)):
        if not isinstance(values, Tensor) or values.ndim != 1 or len(values) < 2:
            raise ValueError(f"{name} must be a 1-D Tensor of at least 2 values, got "
                             f"{tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__}")
    _z(level)  # names a level outside (0, 1)
    draws = check_int(draws, "draws", low=100)
    generator = torch.Generator().manual_seed(check_int(seed, "seed", low=0))

    def medians(values: Tensor) -> Tensor:  # the median of each resample, (draws,)
        index = torch.randint(len(values), (draws, len(values)), generator=generator)
        return values.double().cpu()[index].quantile(0.5, dim=1)

    ratios = medians(a) / medians(b)
    low, high = ratios.quantile(torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)).tolist()
    return low, high

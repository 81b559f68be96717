"""Intervals for numbers measured on random samples: how far another draw of as many samples could move them.

- A **share** (confidently read digits, label agreement) counts successes among n independent samples: the Wilson
  score interval (Wilson 1927) is the standard interval for a binomial proportion and, unlike p̂ ± z·SE, stays
  inside [0, 1] and keeps its coverage near 0 and 1.
- A **distance between sample sets** (Fréchet, kernel) has no closed-form interval: the basic bootstrap (Davison &
  Hinkley 1997, §5.2) recomputes it on resamples of the n samples drawn with replacement and reflects the resampled
  quantiles around the estimate, 2θ̂ − θ*. A resample holds duplicates, which shrink its covariance and push
  θ* up; reflecting turns that shift into a correction instead of moving the interval away from θ̂.

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


def bootstrap_interval(statistic: Callable[[Tensor], float], n: int, resamples: int = 200, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Basic bootstrap interval of ``statistic(index)``, a number computed from the samples at ``index`` (a LongTensor
    of n sample indices): θ̂ = statistic(all n), θ*_b = statistic of ``resamples`` draws of n indices with
    replacement (seeded), and the interval [2θ̂ − θ*_(1−α/2), 2θ̂ − θ*_(α/2)] for α = 1 − ``level``."""
    n = check_int(n, "n", low=2)
    resamples = check_int(resamples, "resamples", low=10)
    alpha = 1 - check_number(level, "level", low=0.0, high=1.0, low_open=True, high_open=True)
    generator = torch.Generator().manual_seed(check_int(seed, "seed", low=0))
    estimate = statistic(torch.arange(n))
    draws = torch.tensor([statistic(torch.randint(n, (n,), generator=generator)) for _ in range(resamples)],
                         dtype=torch.float64)
    low, high = torch.quantile(draws, torch.tensor([alpha / 2, 1 - alpha / 2], dtype=torch.float64)).tolist()
    return 2 * estimate - high, 2 * estimate - low  # reflected around θ̂

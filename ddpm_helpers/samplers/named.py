"""The samplers of notebook 04's sampler table, by the names its rows carry.

``benchmarks/mnist_samplers.py`` writes one row per name, ``evaluation.reference_results.best_sampler`` returns
one, and notebook 04 and ``benchmarks/mnist_curve.py`` turn it back into a sampler here, so a name means the same
sampler everywhere.
"""

from __future__ import annotations

from typing import Callable

from ddpm_helpers.samplers.ddim import ddim_sample
from ddpm_helpers.samplers.ddpm import ddpm_sample
from ddpm_helpers.samplers.dpm_solver import dpm_solver_sample

DDPM_CALLS = 1000  # Algorithm 2 calls the network once per step of the T = 1000 of notebook 04's chain

NAMED: dict[str, tuple[Callable, dict]] = {  # name: (sampler, keyword arguments)
    f"DDPM, {DDPM_CALLS} steps": (ddpm_sample, {}),
    **{f"DDIM, {k} steps, η = {eta:g}": (ddim_sample, {"num_steps": k, "eta": eta})
       for k in (100, 50, 20, 10) for eta in (0.0, 1.0)},
    **{f"DPM-Solver++(2M), {k} steps": (dpm_solver_sample, {"num_steps": k}) for k in (20, 10)},
}


def by_name(name: str) -> tuple[Callable, dict]:
    """The sampler a table row names and its keyword arguments (a fresh dict), e.g.
    ``"DDIM, 20 steps, η = 1"`` → ``(ddim_sample, {"num_steps": 20, "eta": 1.0})``."""
    if name not in NAMED:
        raise ValueError(f"unknown sampler {name!r}; known: {', '.join(NAMED)}")
    sampler, kwargs = NAMED[name]
    return sampler, dict(kwargs)


def network_calls(name: str) -> int:
    """How many times the sampler ``name`` calls the network for one image (one call per visited step)."""
    return by_name(name)[1].get("num_steps", DDPM_CALLS)

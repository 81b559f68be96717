"""Noise schedules β_1, …, β_T (returned 0-based: ``betas[t]`` is the paper's β_{t+1}).

Every schedule is computed in float64 and returned as a 1-D float64 tensor of length ``T``;
:class:`ddpm_helpers.diffusion.Diffusion` derives all other tables from it.

* linear  — Ho et al. 2020, §4 (β from 1e-4 to 0.02 at T = 1000);
* cosine  — Nichol & Dhariwal 2021, Eq. 17;
* sigmoid — Jabri et al. 2022; Chen 2023, "On the importance of noise scheduling", Algorithm 1.
"""

import math

import torch

from ddpm_helpers.checks import check_name, check_number, check_positive_int

SCHEDULES = ("linear", "cosine", "sigmoid")


def _betas_from_alpha_bar(alpha_bar, max_beta):
    """β_t = 1 − ᾱ(t/T) / ᾱ((t−1)/T), clipped to ``max_beta`` (Nichol & Dhariwal 2021, §3.2).

    ``alpha_bar`` holds ᾱ at the T + 1 grid points 0, 1/T, …, 1.
    """
    betas = 1.0 - alpha_bar[1:] / alpha_bar[:-1]  # β_t = 1 − ᾱ_t / ᾱ_{t−1}
    return betas.clamp(max=max_beta)  # β_t ≤ max_beta avoids a singularity at t = T


def linear_beta_schedule(T, beta_start=1e-4, beta_end=0.02):
    """β_t linear from ``beta_start`` to ``beta_end`` (Ho et al. 2020, §4).

    The end points are Ho et al.'s values for T = 1000 and are rescaled by 1000 / T for
    other T, so that Σβ_t (and hence ᾱ_T) stays about the same (Nichol & Dhariwal 2021,
    improved-diffusion ``get_named_beta_schedule``).
    """
    T = check_positive_int(T, "T")
    beta_start = check_number(beta_start, "beta_start", low=0, low_open=True)
    beta_end = check_number(beta_end, "beta_end", low=0, low_open=True)
    scale = 1000.0 / T  # keeps Σ_t β_t ≈ const when T changes
    start, end = beta_start * scale, beta_end * scale  # β_1, β_T
    if not 0.0 < start <= end < 1.0:
        raise ValueError(
            f"linear schedule needs 0 < beta_start <= beta_end < 1 after rescaling by 1000/T; "
            f"got beta_start={start:g}, beta_end={end:g} for T={T} "
            f"(use T > {math.floor(beta_end * 1000)} or a smaller beta_end)"
        )
    return torch.linspace(start, end, T, dtype=torch.float64)  # β_t = β_1 + (β_T − β_1)(t−1)/(T−1)


def cosine_beta_schedule(T, s=0.008, max_beta=0.999):
    """Cosine schedule of Nichol & Dhariwal 2021, Eq. 17.

    ᾱ(t) = f(t) / f(0) with f(t) = cos²(π/2 · (t/T + s) / (1 + s)), and
    β_t = min(1 − ᾱ(t) / ᾱ(t−1), max_beta).
    """
    T = check_positive_int(T, "T")
    s = check_number(s, "s", low=0.0)  # the offset s ≥ 0
    max_beta = check_number(max_beta, "max_beta", low=0.0, high=1.0, low_open=True, high_open=True)
    u = torch.arange(T + 1, dtype=torch.float64) / T  # u = t / T on the grid 0, 1/T, …, 1
    f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2  # f(t) = cos²(π/2 · (t/T + s)/(1 + s))
    alpha_bar = f / f[0]  # ᾱ(t) = f(t) / f(0)
    return _betas_from_alpha_bar(alpha_bar, max_beta)


def sigmoid_beta_schedule(T, start=-3, end=3, tau=1.0, clamp_min=1e-9, max_beta=0.999):
    """Sigmoid schedule (Jabri et al. 2022; Chen 2023, Algorithm 1).

    ᾱ(t) = clip((σ(end/τ) − σ((t/T·(end − start) + start)/τ)) / (σ(end/τ) − σ(start/τ)),
    clamp_min, 1), with σ the logistic function, and β_t = min(1 − ᾱ(t)/ᾱ(t−1), max_beta).
    """
    T = check_positive_int(T, "T")
    start, end = check_number(start, "start"), check_number(end, "end")
    if not end > start:
        raise ValueError(f"sigmoid schedule needs end > start, got start={start!r}, end={end!r}")
    tau = check_number(tau, "tau", low=0.0, low_open=True)
    clamp_min = check_number(clamp_min, "clamp_min", low=0.0, high=1.0, low_open=True, high_open=True)
    max_beta = check_number(max_beta, "max_beta", low=0.0, high=1.0, low_open=True, high_open=True)
    u = torch.arange(T + 1, dtype=torch.float64) / T  # u = t / T on the grid 0, 1/T, …, 1
    v_start = torch.sigmoid(torch.tensor(start / tau, dtype=torch.float64))  # σ(start/τ)
    v_end = torch.sigmoid(torch.tensor(end / tau, dtype=torch.float64))  # σ(end/τ)
    v = torch.sigmoid((u * (end - start) + start) / tau)  # σ((u·(end − start) + start)/τ)
    alpha_bar = ((v_end - v) / (v_end - v_start)).clamp(clamp_min, 1.0)  # ᾱ(u), ᾱ(0) = 1
    return _betas_from_alpha_bar(alpha_bar, max_beta)


def make_beta_schedule(name, T):
    """β schedule by name: one of :data:`SCHEDULES` ("linear", "cosine", "sigmoid"), default parameters."""
    makers = {
        "linear": linear_beta_schedule,
        "cosine": cosine_beta_schedule,
        "sigmoid": sigmoid_beta_schedule,
    }
    return makers[check_name(name, SCHEDULES, "schedule")](T)

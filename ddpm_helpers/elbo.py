"""The variational bound (Ho et al. 2020, Eq. 5) term by term, in nats, and bits per dimension.

−log p_θ(x0) ≤ L = L_T + Σ_{t=2}^{T} L_{t−1} + L_0 with
L_T = KL(q(x_T | x0) ‖ N(0, I)), L_{t−1} = KL(q(x_{t−1} | x_t, x0) ‖ p_θ(x_{t−1} | x_t)),
L_0 = −log p_θ(x_0 | x_1). In 0-based code the step ``t`` is the paper's step t + 1: the KL term
L_{t−1} of paper step t (t = 2, …, T) is computed at code ``t − 1`` (``1, …, T−1``), the
decoder L_0 at code ``t = 0`` and L_T from ``alpha_bar[T−1]``.
"""

import math

import torch

from ddpm_helpers.checks import check_floating, check_model_output, check_name, check_positive_int
from ddpm_helpers.diffusion import PREDICTIONS, VARIANCES
from ddpm_helpers.utils import eval_no_grad, noise_like

DECODERS = ("discretized", "gaussian")


def normal_kl(mean1, logvar1, mean2, logvar2):
    """Elementwise KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)) in nats (Ho et al. 2020, Eq. 5 terms).

    KL = ½ (−1 + logvar2 − logvar1 + e^{logvar1 − logvar2} + (mean1 − mean2)² e^{−logvar2}).
    """
    mean1, logvar1, mean2, logvar2 = (torch.as_tensor(a) for a in (mean1, logvar1, mean2, logvar2))
    # ½ (−1 + log σ₂² − log σ₁² + σ₁²/σ₂² + (μ₁ − μ₂)²/σ₂²)
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def gaussian_log_likelihood(x, mean, log_var):
    """Elementwise log N(x; mean, e^log_var) = −½ (log 2π + log σ² + (x − mean)²/σ²), in nats."""
    return -0.5 * (math.log(2 * math.pi) + log_var + (x - mean) ** 2 * torch.exp(-log_var))  # log N(x; μ, σ²)


def _check_unit_interval(x):
    """Raise ValueError naming the range of ``x`` unless it lies in [−1, 1]."""
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.0 - 1e-6 or hi > 1.0 + 1e-6:
        raise ValueError(f"discretized likelihood needs data in [-1, 1], got values in [{lo:g}, {hi:g}]")


def discretized_gaussian_log_likelihood(x, mean, log_scale):
    """Elementwise log-probability of the 256-bin discretized Gaussian decoder (Ho et al. 2020, Eq. 13).

    Data x ∈ [−1, 1] sit on the grid −1 + 2k/255; bin k covers [x − 1/255, x + 1/255], the
    outer bins extend to ±∞: log ∫_{δ−(x)}^{δ+(x)} N(y; mean, e^{2·log_scale}) dy.
    ``log_scale`` is log σ (half the log-variance).
    """
    _check_unit_interval(x)
    inv_std = torch.exp(-log_scale)  # 1/σ
    upper = (x - mean + 1.0 / 255) * inv_std  # (δ+ − μ)/σ, δ+ = x + 1/255
    lower = (x - mean - 1.0 / 255) * inv_std  # (δ− − μ)/σ, δ− = x − 1/255
    log_cdf_upper = torch.special.log_ndtr(upper)  # log Φ((δ+ − μ)/σ): first bin, δ− = −∞
    log_sf_lower = torch.special.log_ndtr(-lower)  # log (1 − Φ((δ− − μ)/σ)): last bin, δ+ = +∞
    # Φ(b) − Φ(a), computed in the tail where it does not cancel: Φ(−a) − Φ(−b) when a > 0
    mass = torch.where(
        lower > 0,
        torch.special.ndtr(-lower) - torch.special.ndtr(-upper),
        torch.special.ndtr(upper) - torch.special.ndtr(lower),
    )
    log_mass = torch.log(mass.clamp(min=1e-12))  # log(Φ(b) − Φ(a)), floored as in Ho et al.'s code
    return torch.where(x < -0.999, log_cdf_upper, torch.where(x > 0.999, log_sf_lower, log_mass))


def _sum_dims(x):
    """Sum over every dimension but the batch dimension: (B, …) → (B,)."""
    return x.flatten(1).sum(dim=1)


def prior_kl(diffusion, x0):
    """L_T = KL(q(x_T | x0) ‖ N(0, I)) per example, summed over dimensions, in nats (Ho et al. 2020, Eq. 5)."""
    t = torch.full((x0.shape[0],), diffusion.T - 1, dtype=torch.long, device=x0.device)
    mean, variance = diffusion.q_mean_variance(x0, t)  # √ᾱ_T x0, 1 − ᾱ_T
    kl = normal_kl(mean, torch.log(variance), torch.zeros_like(x0), torch.zeros_like(x0))  # KL(q(x_T|x0) ‖ N(0, I))
    return _sum_dims(kl)


def elbo_terms(model, diffusion, x0, *, prediction="eps", variance="beta_tilde", decoder="discretized",
               generator=None):
    """All terms of the variational bound L (Ho et al. 2020, Eq. 5) per example, in nats.

    Loops over all T steps; each step draws x_t ~ q(x_t | x0) with fresh noise. Column ``j``
    of ``kl`` (``j = 0, …, T−2``) is the KL term computed at code step ``t = j + 1``, i.e. the
    paper's L_{j+1} = KL(q(x_{j+1} | x_{j+2}, x_0) ‖ p_θ(x_{j+1} | x_{j+2})); column 0 is L_1, the
    first KL term after the decoder. The decoder L_0 = −log p_θ(x_0 | x_1) uses the model mean at
    code ``t = 0`` and the log-variance of the chosen reverse process: ``variance="beta_tilde"``
    uses log β̃ clipped at ``t = 0`` (β̃ there is 0), as Ho et al.'s code does; ``variance="beta"``
    uses β_1 (``betas[0]``). ``decoder`` is "discretized" (Eq. 13, data in [−1, 1]) or "gaussian"
    (continuous density, e.g. 2-D toy data).

    Returns ``dict(prior=(B,), kl=(B, T−1), decoder_nll=(B,), total=(B,))``.
    """
    check_name(prediction, PREDICTIONS, "prediction")
    check_name(variance, VARIANCES, "variance")
    check_name(decoder, DECODERS, "decoder")
    check_floating(x0, "x0")
    if x0.ndim < 2:
        raise ValueError(f"x0 must have shape (B, ...) with at least 2 dims, got shape {tuple(x0.shape)}")
    if decoder == "discretized":
        _check_unit_interval(x0)
    B = x0.shape[0]
    kls = []
    with eval_no_grad(model):
        for t in range(diffusion.T - 1, -1, -1):
            tt = torch.full((B,), t, dtype=torch.long, device=x0.device)
            xt = diffusion.q_sample(x0, tt, noise_like(x0, generator))  # x_t ~ q(x_t | x0)
            out = check_model_output(model(xt, tt), x0, "x0")
            p = diffusion.p_mean_variance(out, xt, tt, prediction, variance)  # μ_θ, log σ_t²
            if t > 0:
                q_mean, _, q_log_var = diffusion.q_posterior(x0, xt, tt)  # μ̃_t, log β̃_t
                # the paper's L_t at code step `t`: KL(q(x_t | x_{t+1}, x_0) ‖ p_θ(x_t | x_{t+1})) in paper indices
                kls.append(_sum_dims(normal_kl(q_mean, q_log_var, p.mean, p.log_variance)))
            elif decoder == "discretized":
                log_scale = 0.5 * p.log_variance.expand_as(x0)  # log σ = ½ log σ²
                decoder_nll = -_sum_dims(discretized_gaussian_log_likelihood(x0, p.mean, log_scale))  # L_0, Eq. 13
            else:
                # L_0 = −log N(x0; μ_θ, σ²)
                decoder_nll = -_sum_dims(gaussian_log_likelihood(x0, p.mean, p.log_variance))
    kl = torch.stack(kls[::-1], dim=1)  # column `t − 1`: code step `t` (paper's L_t), `t = 1, …, T−1`
    prior = prior_kl(diffusion, x0)  # L_T
    return {"prior": prior, "kl": kl, "decoder_nll": decoder_nll, "total": prior + kl.sum(dim=1) + decoder_nll}


def bits_per_dim(nats, num_dims):
    """Convert a negative log-likelihood in nats to bits per dimension: nats / (num_dims · ln 2)."""
    check_positive_int(num_dims, "num_dims")
    return nats / (num_dims * math.log(2))  # bits/dim = nats / (D ln 2)

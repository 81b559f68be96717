"""Training objective: L_simple (Ho et al. 2020, Eq. 14) for ε, x0 or v targets, with optional min-SNR-γ weighting.

Hang et al. 2023 ("Efficient Diffusion Training via Min-SNR Weighting Strategy") weight each
timestep so that the implied x0-loss weight is min(SNR(t), γ). Written for the three targets:

* ε-prediction: w(t) = min(SNR, γ) / SNR
* x0-prediction: w(t) = min(SNR, γ)
* v-prediction: w(t) = min(SNR, γ) / (SNR + 1)

With ``weighting="none"`` every target is trained with a plain MSE (w = 1).

A class-conditional network is trained on (x0, y) with the label dropped to "no label" with
probability ``p_uncond`` (classifier-free guidance, Ho & Salimans 2022, Algorithm 1).
"""

import torch

from ddpm_helpers.diffusion import PREDICTIONS, check_name, extract, noise_like
from ddpm_helpers.guidance import drop_labels

WEIGHTINGS = ("none", "min_snr")


def training_target(diffusion, x0, t, eps, prediction):
    """Regression target of the network: ε, x0, or v = √ᾱ_t ε − √(1 − ᾱ_t) x0 (Salimans & Ho 2022)."""
    check_name(prediction, PREDICTIONS, "prediction")
    if prediction == "eps":
        return eps  # target ε (Ho et al. 2020, Eq. 14)
    if prediction == "x0":
        return x0  # target x0
    return diffusion.v_from_x0_eps(x0, t, eps)  # target v = √ᾱ ε − √(1−ᾱ) x0


def _weight_table(diffusion, prediction, weighting, gamma):
    """Float64 table of w(t) over all T steps (see :func:`snr_loss_weight`)."""
    check_name(prediction, PREDICTIONS, "prediction")
    check_name(weighting, WEIGHTINGS, "weighting")
    if not gamma > 0:
        raise ValueError(f"min-SNR gamma must be > 0, got gamma={gamma!r}")
    snr = diffusion.snr  # SNR(t) = ᾱ_t / (1 − ᾱ_t)
    clipped = snr.clamp(max=gamma)  # min(SNR, γ)
    if weighting == "none":
        return torch.ones_like(snr)  # w = 1
    if prediction == "eps":
        return clipped / snr  # w = min(SNR, γ) / SNR
    if prediction == "x0":
        return clipped  # w = min(SNR, γ)
    return clipped / (snr + 1.0)  # w = min(SNR, γ) / (SNR + 1)


def snr_loss_weight(diffusion, t, prediction, weighting="none", gamma=5.0):
    """Per-example loss weight w(t), shape ``(B,)``, in the default dtype on ``t``'s device.

    "none": w = 1. "min_snr" (Hang et al. 2023, min-SNR-γ): min(SNR, γ)/SNR for ε,
    min(SNR, γ) for x0, min(SNR, γ)/(SNR + 1) for v, with SNR(t) = ᾱ_t / (1 − ᾱ_t).
    """
    table = _weight_table(diffusion, prediction, weighting, gamma)
    return extract(table, t, torch.empty(t.shape, device=t.device))


def diffusion_loss(model, diffusion, x0, *, prediction="eps", weighting="none", min_snr_gamma=5.0, generator=None,
                   labels=None, p_uncond=0.0):
    """One Monte-Carlo estimate of the training loss (Ho et al. 2020, Algorithm 1; L_simple, Eq. 14).

    t ~ U{0, …, T−1}, ε ~ N(0, I), x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε, and the loss is
    mean_b w(t_b) · mean_dims ‖model(x_t, t) − target‖² with the target of
    :func:`training_target` and the weight of :func:`snr_loss_weight`. With ``labels`` (B,) the
    network is called as ``model(x_t, t, y)``, each label replaced by NULL_LABEL with probability
    ``p_uncond`` (:func:`ddpm_helpers.guidance.drop_labels`).
    """
    table = _weight_table(diffusion, prediction, weighting, min_snr_gamma)  # validates the names first
    if x0.ndim < 2:
        raise ValueError(f"x0 must have shape (B, ...) with at least 2 dims, got shape {tuple(x0.shape)}")
    t = diffusion.sample_timesteps(x0.shape[0], device=x0.device, generator=generator)  # t ~ U{0, …, T−1}
    eps = noise_like(x0, generator)  # ε ~ N(0, I)
    xt = diffusion.q_sample(x0, t, eps)  # x_t = √ᾱ x0 + √(1−ᾱ) ε
    if labels is None:
        output = model(xt, t)
    else:
        if labels.shape != x0.shape[:1]:
            raise ValueError(f"labels must have shape ({x0.shape[0]},), got {tuple(labels.shape)}")
        output = model(xt, t, drop_labels(labels, p_uncond, generator))  # y, or ∅ with probability p_uncond
    if output.shape != x0.shape:
        raise ValueError(f"model output shape {tuple(output.shape)} does not match x0 shape {tuple(x0.shape)}")
    target = training_target(diffusion, x0, t, eps, prediction)
    mse = (output - target).pow(2).flatten(1).mean(dim=1)  # ‖f_θ(x_t, t) − target‖² / dims, per example
    weight = extract(table, t, mse)  # w(t)
    return (weight * mse).mean()  # E_{t, x0, ε}[w(t) · MSE]

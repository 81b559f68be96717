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

import weakref

import torch

from ddpm_helpers import utils
from ddpm_helpers.checks import (
    check_floating,
    check_labels,
    check_model_output,
    check_name,
    check_number,
    check_timesteps,
)
from ddpm_helpers.diffusion import PREDICTIONS, extract
from ddpm_helpers.guidance import NULL_LABEL, drop_labels

WEIGHTINGS = ("none", "min_snr")
_WEIGHT_TABLES = weakref.WeakKeyDictionary()  # Diffusion -> {(prediction, weighting, γ, device, dtype): w(t)}


def training_target(diffusion, x0, t, eps, prediction):
    """Regression target of the network: ε, x0, or v = √ᾱ_t ε − √(1 − ᾱ_t) x0 (Salimans & Ho 2022)."""
    check_name(prediction, PREDICTIONS, "prediction")
    if prediction == "eps":
        return eps  # target ε (Ho et al. 2020, Eq. 14)
    if prediction == "x0":
        return x0  # target x0
    return diffusion.v_from_x0_eps(x0, t, eps)  # target v = √ᾱ ε − √(1−ᾱ) x0


def _check_weighting(prediction, weighting, min_snr_gamma):
    check_name(prediction, PREDICTIONS, "prediction")
    check_name(weighting, WEIGHTINGS, "weighting")
    return check_number(min_snr_gamma, "min_snr_gamma", low=0, low_open=True)


def _weights(diffusion, prediction, weighting, min_snr_gamma):
    """Float64 table of w(t) over all T steps (see :func:`snr_loss_weight`)."""
    snr = diffusion.snr  # SNR(t) = ᾱ_t / (1 − ᾱ_t)
    clipped = snr.clamp(max=min_snr_gamma)  # min(SNR, γ)
    if weighting == "none":
        return torch.ones_like(snr)  # w = 1
    if prediction == "eps":
        return clipped / snr  # w = min(SNR, γ) / SNR
    if prediction == "x0":
        return clipped  # w = min(SNR, γ)
    return clipped / (snr + 1.0)  # w = min(SNR, γ) / (SNR + 1)


def _weight_table(diffusion, prediction, weighting, min_snr_gamma, like):
    """The w(t) table in ``like``'s dtype and on its device, built once per diffusion, setting, device and dtype."""
    tables = _WEIGHT_TABLES.setdefault(diffusion, {})
    key = (prediction, weighting, min_snr_gamma, like.device, like.dtype)
    if key not in tables:
        weights = _weights(diffusion, prediction, weighting, min_snr_gamma)
        tables[key] = weights.to(device=like.device, dtype=like.dtype)
    return tables[key]


def snr_loss_weight(diffusion, t, prediction, weighting="none", min_snr_gamma=5.0):
    """Per-example loss weight w(t), shape ``(B,)``, in the default dtype on ``t``'s device.

    "none": w = 1. "min_snr" (Hang et al. 2023, min-SNR-γ): min(SNR, γ)/SNR for ε,
    min(SNR, γ) for x0, min(SNR, γ)/(SNR + 1) for v, with SNR(t) = ᾱ_t / (1 − ᾱ_t).
    """
    min_snr_gamma = _check_weighting(prediction, weighting, min_snr_gamma)
    check_timesteps(t, diffusion.T)
    like = torch.empty(t.shape, device=t.device)
    return extract(_weight_table(diffusion, prediction, weighting, min_snr_gamma, like), t, like)


def diffusion_loss(model, diffusion, x0, *, prediction="eps", weighting="none", min_snr_gamma=5.0, generator=None,
                   labels=None, p_uncond=0.0):
    """One Monte-Carlo estimate of the training loss (Ho et al. 2020, Algorithm 1; L_simple, Eq. 14).

    t ~ U{0, …, T−1}, ε ~ N(0, I), x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε, and the loss is
    mean_b w(t_b) · mean_dims ‖model(x_t, t) − target‖² with the target of
    :func:`training_target` and the weight of :func:`snr_loss_weight`. With ``labels`` (B,) the
    network is called as ``model(x_t, t, y)``, each label replaced by NULL_LABEL with probability
    ``p_uncond`` (:func:`ddpm_helpers.guidance.drop_labels`); labels on the CPU must lie in
    [0, ``model.num_classes``) (checked here: the network reads no label values). The draws are
    :func:`draw_training_noise`, the loss :func:`loss_from_noise`.
    """
    min_snr_gamma = _check_weighting(prediction, weighting, min_snr_gamma)
    check_floating(x0, "x0")
    if x0.ndim < 2:
        raise ValueError(f"x0 must have shape (B, ...) with at least 2 dims, got shape {tuple(x0.shape)}")
    if labels is not None and (not torch.is_tensor(labels) or labels.shape != x0.shape[:1]):
        got = tuple(labels.shape) if torch.is_tensor(labels) else type(labels).__name__
        raise ValueError(f"labels must have shape ({x0.shape[0]},) (a tensor of class indices), got {got}")
    if labels is not None:  # the values are read only on the CPU (no GPU sync); the network itself reads none
        num_classes = getattr(getattr(model, "module", model), "num_classes", None)  # .module: under DDP
        check_labels(labels, num_classes, NULL_LABEL)
    t, eps, labels = draw_training_noise(diffusion, x0, generator, labels, p_uncond)
    return loss_from_noise(model, diffusion, x0, t, eps, labels, prediction, weighting, min_snr_gamma)


def draw_training_noise(diffusion, x0, generator=None, labels=None, p_uncond=0.0):
    """The random draws of one training step, in this order: t ~ U{0, …, T−1}, ε ~ N(0, I) like ``x0`` and,
    with ``labels``, each label replaced by NULL_LABEL with probability ``p_uncond``. Returns ``(t, ε, labels)``."""
    t = diffusion.sample_timesteps(x0.shape[0], device=x0.device, generator=generator)  # t ~ U{0, …, T−1}
    eps = utils.noise_like(x0, generator)  # ε ~ N(0, I)
    if labels is not None:
        labels = drop_labels(labels, p_uncond, generator)  # y, or ∅ with probability p_uncond
    return t, eps, labels


def loss_from_noise(model, diffusion, x0, t, eps, labels, prediction, weighting, min_snr_gamma):
    """L_simple for given draws (no checks: :func:`diffusion_loss` is the checked entry point):
    x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε, then mean_b w(t_b) · mean_dims ‖model(x_t, t[, y]) − target‖²."""
    xt = diffusion.q_sample(x0, t, eps)  # x_t = √ᾱ x0 + √(1−ᾱ) ε
    output = model(xt, t) if labels is None else model(xt, t, labels)
    check_model_output(output, x0, "x0")
    target = training_target(diffusion, x0, t, eps, prediction)
    mse = (output - target).pow(2).flatten(1).mean(dim=1)  # ‖f_θ(x_t, t) − target‖² / dims, per example
    weight = extract(_weight_table(diffusion, prediction, weighting, min_snr_gamma, mse), t, mse)  # w(t)
    return (weight * mse).mean()  # E_{t, x0, ε}[w(t) · MSE]

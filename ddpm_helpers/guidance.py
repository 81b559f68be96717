"""Classifier-free guidance (Ho & Salimans 2022): one network, conditional and unconditional.

Training drops the class label with probability ``p_uncond`` (:func:`drop_labels`), so the same
network learns ε_θ(x_t, t, y) and, with y = NULL_LABEL, ε_θ(x_t, t). Sampling then follows

    ε̃ = (1 + w) ε_θ(x_t, t, y) − w ε_θ(x_t, t)        (Ho & Salimans 2022, Eq. 6)

with guidance scale w ≥ 0 (w = 0: the plain conditional model). x̂0 and v are affine in ε for
fixed x_t and t, and the weights (1 + w) and −w sum to 1, so the same formula guides an x0- or
v-predicting network. :class:`ClassifierFreeGuidance` wraps a conditional network as an ordinary
``model(x_t, t)`` that every sampler in :mod:`ddpm_helpers.samplers` accepts.
"""

import torch
from torch import Tensor, nn

from ddpm_helpers.nn.unet import NULL_LABEL


def drop_labels(labels: Tensor, p_uncond: float, generator: torch.Generator | None = None) -> Tensor:
    """Replace each label by NULL_LABEL with probability ``p_uncond`` (Ho & Salimans 2022, Algorithm 1)."""
    if not 0.0 <= p_uncond < 1.0:
        raise ValueError(f"p_uncond must be in [0, 1), got {p_uncond!r}")
    drop = torch.rand(labels.shape, device=labels.device, generator=generator) < p_uncond
    return torch.where(drop, torch.full_like(labels, NULL_LABEL), labels)


class ClassifierFreeGuidance(nn.Module):
    """``model(x_t, t)`` → (1 + w)·f(x_t, t, y) − w·f(x_t, t, ∅) for fixed labels ``y`` (Eq. 6).

    ``labels``: one class per sample, shape (B,); ``scale``: w ≥ 0. Both predictions come from
    one call on a batch of 2B (w = 0 needs only the conditional half, so it makes one call of B).
    """

    def __init__(self, model: nn.Module, labels: Tensor, scale: float):
        super().__init__()
        if not scale >= 0:
            raise ValueError(f"guidance scale must be >= 0, got {scale!r}")
        if labels.ndim != 1:
            raise ValueError(f"labels must have shape (B,), got {tuple(labels.shape)}")
        self.model, self.scale = model, float(scale)
        self.register_buffer("labels", labels.long(), persistent=False)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if x.shape[0] != len(self.labels):
            raise ValueError(f"batch of {x.shape[0]} samples but {len(self.labels)} labels")
        labels = self.labels.to(x.device)
        if self.scale == 0:
            return self.model(x, t, labels)
        null = torch.full_like(labels, NULL_LABEL)
        conditional, unconditional = self.model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null])).chunk(2)
        return conditional + self.scale * (conditional - unconditional)  # = (1 + w) f(y) − w f(∅)

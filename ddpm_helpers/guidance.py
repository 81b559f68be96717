"""Classifier-free guidance (Ho & Salimans 2022): one network, conditional and unconditional.

Training drops the class label with probability ``p_uncond`` (:func:`drop_labels`), so the same
network learns ε_θ(x_t, t, y) and, with y = NULL_LABEL, ε_θ(x_t, t). Sampling then follows

    ε̃ = (1 + w) ε_θ(x_t, t, y) − w ε_θ(x_t, t)        (Ho & Salimans 2022, Eq. 6)

with guidance scale w ≥ 0 (w = 0: the plain conditional model). x̂0 and v are affine in ε for
fixed x_t and t, and the weights (1 + w) and −w sum to 1, so the same formula guides an x0- or
v-predicting network. :class:`ClassifierFreeGuidance` wraps a conditional network as an ordinary
``model(x_t, t)`` that every sampler in :mod:`ddpm_helpers.samplers` accepts.
"""

import numbers

import torch
from torch import Tensor, nn

from ddpm_helpers.checks import check_labels, check_number

NULL_LABEL = -1  # "no class label": the unconditional model inside a conditional one (Ho & Salimans 2022, §3.2)


def drop_labels(labels: Tensor, p_uncond: float, generator: torch.Generator | None = None) -> Tensor:
    """Replace each label by NULL_LABEL with probability ``p_uncond`` (Ho & Salimans 2022, Algorithm 1)."""
    p_uncond = check_number(p_uncond, "p_uncond", low=0.0, high=1.0, high_open=True)
    if not torch.is_tensor(labels) or labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        got = f"dtype {labels.dtype}" if torch.is_tensor(labels) else type(labels).__name__
        raise ValueError(f"labels must be an integer tensor of class labels, got {got}")  # dtype only: no values read
    drop = torch.rand(labels.shape, device=labels.device, generator=generator) < p_uncond
    return torch.where(drop, torch.full_like(labels, NULL_LABEL), labels)


def _label_tensor(labels) -> Tensor:
    """Class labels as a LongTensor (B,) from an integer tensor or a sequence of ints (floats and bools refused)."""
    if not torch.is_tensor(labels):
        if isinstance(labels, (str, bytes)) or not all(
                isinstance(y, numbers.Integral) and not isinstance(y, bool) for y in labels):
            raise ValueError(f"labels must be integers (a LongTensor or a list of ints), got {labels!r}")
        labels = torch.tensor(list(labels), dtype=torch.long)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype} (float labels are not truncated)")
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (B,), got {tuple(labels.shape)}")
    return labels.long()


class ClassifierFreeGuidance(nn.Module):
    """``model(x_t, t)`` → (1 + w)·f(x_t, t, y) − w·f(x_t, t, ∅) for fixed labels ``y`` (Eq. 6).

    ``labels``: one class per sample, a LongTensor of shape (B,) or a list of ints; ``scale``: a
    finite w ≥ 0. Both predictions come from one call on a batch of 2B (w = 0 needs only the
    conditional half, so it makes one call of B). The labels are a buffer, placed on the wrapped
    model's device and moved with the wrapper (``.to(device)``), never per call.
    """

    def __init__(self, model: nn.Module, labels: Tensor, scale: float):
        super().__init__()
        self.scale = check_number(scale, "guidance scale", low=0.0)
        labels = _label_tensor(labels)
        # the labels' values are checked here, once, on the CPU (a tensor given on a GPU is not read)
        check_labels(labels, getattr(model, "num_classes", None), NULL_LABEL)
        device = next((p.device for p in model.parameters()), None) if isinstance(model, nn.Module) else None
        self.model = model
        self.register_buffer("labels", labels if device is None else labels.to(device), persistent=False)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if x.shape[0] != len(self.labels):
            raise ValueError(f"batch of {x.shape[0]} samples but {len(self.labels)} labels")
        if x.device != self.labels.device:
            raise ValueError(f"x_t is on {x.device} but the labels are on {self.labels.device}: "
                             f"move the guidance wrapper with .to({str(x.device)!r})")
        if self.scale == 0:
            return self.model(x, t, self.labels)
        null = torch.full_like(self.labels, NULL_LABEL)
        both = self.model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([self.labels, null]))  # f(y), f(∅): one call
        conditional, unconditional = both.chunk(2)
        return conditional + self.scale * (conditional - unconditional)  # = (1 + w) f(y) − w f(∅)

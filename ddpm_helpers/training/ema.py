"""Exponential moving average of model weights (Ho et al. 2020, §B: decay 0.9999; Polyak averaging)."""

import copy

import torch

from ddpm_helpers.checks import check_number


class EMA:
    """Keeps ``.model``, a copy of ``model`` whose weights are θ_ema ← d θ_ema + (1 − d) θ.

    With ``warmup=True`` the decay of update n (1-based) is d_n = min(decay, (1 + n)/(10 + n))
    (the ``num_updates`` rule of TensorFlow's ExponentialMovingAverage), so that the average
    forgets the random initialization quickly. Non-float buffers (e.g. counters) are copied.
    ``.model`` is in eval mode and has ``requires_grad=False``.
    """

    def __init__(self, model, decay=0.999, warmup=True):
        self.decay = check_number(decay, "decay", 0.0, 1.0, high_open=True)
        self.warmup = bool(warmup)
        self.num_updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self):
        """Decay d_n used by the next update."""
        n = self.num_updates + 1
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay  # d_n = min(d, (1 + n)/(10 + n))

    @torch.no_grad()
    def update(self, model):
        """One step θ_ema ← d θ_ema + (1 − d) θ over all parameters and float buffers of ``model``."""
        d = self.current_decay()
        ema_state = self.model.state_dict()
        state = model.state_dict()
        if ema_state.keys() != state.keys():
            missing = sorted(set(ema_state) ^ set(state))[:5]
            raise ValueError(f"model does not match the EMA copy; differing entries: {missing}")
        for name, ema_value in ema_state.items():
            value = state[name].detach().to(ema_value.device)
            if ema_value.dtype.is_floating_point:
                ema_value.lerp_(value.to(ema_value.dtype), 1.0 - d)  # θ_ema + (1 − d)(θ − θ_ema) = d θ_ema + (1 − d) θ
            else:
                ema_value.copy_(value)
        self.num_updates += 1

    def state_dict(self):
        """Tensors and primitives only (safe for ``torch.load(weights_only=True)``)."""
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates,
                "model": self.model.state_dict()}

    def load_state_dict(self, state):
        """Restore from :meth:`state_dict`."""
        self.decay = float(state["decay"])
        self.warmup = bool(state["warmup"])
        self.num_updates = int(state["num_updates"])
        self.model.load_state_dict(state["model"])

"""Exponential moving average of model weights (Ho et al. 2020, §B: decay 0.9999; Polyak averaging)."""

import copy
import weakref
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ddpm_helpers.checks import check_number


class _Pairs(NamedTuple):
    """The tensors one update touches, listed once: the EMA copy's and the model's, entry by entry."""

    model: weakref.ref  # the model they were listed for
    ema_model: weakref.ref  # the EMA copy they were listed for
    ema_float: list[Tensor]  # parameters and float buffers: averaged
    float_: list[Tensor]
    ema_other: list[Tensor]  # integer buffers (counters): copied
    other: list[Tensor]
    convert: bool  # some float pair differs in device or dtype: convert the model's tensors first
    probe: tuple[Tensor, ...]  # a parameter of each side (parameters keep their identity under .to())
    layout: tuple  # the probes' (device, dtype) when listed; a change means .to() moved a model


def _layout(probe: tuple[Tensor, ...]) -> tuple:
    return tuple((tensor.device, tensor.dtype) for tensor in probe)


class EMA:
    """Keeps ``.model``, a copy of ``model`` whose weights are θ_ema ← d θ_ema + (1 − d) θ.

    With ``warmup=True`` the decay of update n (1-based) is d_n = min(decay, (1 + n)/(10 + n))
    (the ``num_updates`` rule of TensorFlow's ExponentialMovingAverage), so that the average
    forgets the random initialization quickly. Non-float buffers (e.g. counters) are copied.
    ``.model`` is in eval mode and has ``requires_grad=False``.

    An update is one ``torch._foreach_lerp_`` over all parameters and float buffers (as diffusers'
    ``EMAModel(foreach=True)``): the lists are made at the first update, when the model is also
    checked against the copy (names and shapes), and made again only for another model object or
    after either model moved to another device or dtype.
    """

    def __init__(self, model, decay=0.999, warmup=True):
        self.decay = check_number(decay, "decay", 0.0, 1.0, high_open=True)
        if not isinstance(warmup, bool):  # bool('no') is True
            raise ValueError(f"warmup must be True or False, got warmup={warmup!r}")
        self.warmup = warmup
        self.num_updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self._pairs: _Pairs | None = None

    def __getstate__(self):
        return {**self.__dict__, "_pairs": None}  # the cached lists hold weak references: made again after a copy

    def current_decay(self):
        """Decay d_n used by the next update."""
        n = self.num_updates + 1
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay  # d_n = min(d, (1 + n)/(10 + n))

    @torch.no_grad()
    def update(self, model):
        """One step θ_ema ← d θ_ema + (1 − d) θ over all parameters and float buffers of ``model``."""
        d = self.current_decay()
        pairs = self._pairs_for(model)
        values = pairs.float_
        if pairs.convert:
            values = [value.to(ema.device, ema.dtype) for ema, value in zip(pairs.ema_float, values)]
        if values:
            torch._foreach_lerp_(pairs.ema_float, values, 1.0 - d)  # θ_ema + (1 − d)(θ − θ_ema) = d θ_ema + (1 − d) θ
        for ema, value in zip(pairs.ema_other, pairs.other):
            ema.copy_(value)
        self.num_updates += 1

    def _pairs_for(self, model: nn.Module) -> _Pairs:
        """The cached lists, if made for this model and this copy, neither moved since; else new ones."""
        pairs = self._pairs
        if (pairs is not None and pairs.model() is model and pairs.ema_model() is self.model
                and _layout(pairs.probe) == pairs.layout):
            return pairs
        ema_state, state = self.model.state_dict(keep_vars=True), model.state_dict(keep_vars=True)
        if ema_state.keys() != state.keys():
            missing = sorted(set(ema_state) ^ set(state))[:5]
            raise ValueError(f"model does not match the EMA copy; differing entries: {missing}")
        lists: tuple[list[Tensor], ...] = ([], [], [], [])
        seen = set()
        for name, ema in ema_state.items():
            value = state[name]
            if ema.shape != value.shape:
                raise ValueError(f"model does not match the EMA copy: {name} has shape {tuple(value.shape)}, "
                                 f"the copy {tuple(ema.shape)}")
            if id(ema) in seen:  # a tied tensor (one tensor under two names) is averaged once
                continue
            seen.add(id(ema))
            ema_list, value_list = lists[:2] if ema.dtype.is_floating_point else lists[2:]
            ema_list.append(ema)
            value_list.append(value)
        ema_float, float_, ema_other, other = lists
        convert = any(e.device != v.device or e.dtype != v.dtype for e, v in zip(ema_float, float_))
        probe = tuple(next(m.parameters(), None) for m in (model, self.model))
        probe = probe if None not in probe else ()  # no parameters: listed again at every update
        self._pairs = _Pairs(weakref.ref(model), weakref.ref(self.model), ema_float, float_, ema_other, other,
                             convert, probe, _layout(probe) if probe else None)
        return self._pairs

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
        self._pairs = None

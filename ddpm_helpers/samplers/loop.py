"""The sampling loop shared by every sampler, and the types it returns.

One reverse step is a function of its own module (``ddpm.py``, ``ddim.py``, ``dpm_solver.py``): it maps
the network output at the 0-based step ``t`` to the next state. Every sampler is a loop over its step:
it starts from x_T ~ N(0, I) (or a given ``x_T``), calls ``model(x_t, t)`` with ``t`` as a LongTensor
of shape ``(B,)``, and returns a :class:`SampleResult`. The model is called under ``torch.no_grad()``
and in eval mode; a model that was training is put back in training mode afterwards. No noise is added
at the last step (code ``t = 0``, paper step 1).

``record``: 0-based timesteps whose *incoming* state x_t (the input of the model call at
that ``t``) and the x̂0 predicted from it are kept, in sampling order (descending ``t``), on the
CPU. The final sample is ``SampleResult.x``.
"""

from dataclasses import dataclass
from typing import NamedTuple

import torch
from tqdm import tqdm

from ddpm_helpers import utils
from ddpm_helpers.checks import check_floating, check_int, check_model_output, check_positive_int


@dataclass
class SampleResult:
    """Output of a sampler.

    ``x``: the final sample (paper's x_0); ``timesteps``: the recorded 0-based timesteps in
    sampling order; ``xs``/``x0_preds``: tensors ``(K, B, …)`` holding x_t and x̂0 at those
    timesteps (K = len(timesteps), on the CPU).
    """

    x: torch.Tensor
    timesteps: list
    xs: torch.Tensor
    x0_preds: torch.Tensor


class StepResult(NamedTuple):
    """Output of one reverse step: the next state and the x̂0 estimated on the way."""

    x_prev: torch.Tensor  # the state after the step (x_{t−1} for DDPM, x_s for DDIM; x_0 after the last step)
    x0_hat: torch.Tensor  # x̂0 predicted from the incoming x_t


def _timestep_tensor(t, x):
    """The 0-based step ``t`` for every example of ``x``: a LongTensor of shape ``(B,)`` on ``x``'s device."""
    return torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)


def _model_device(model):
    """Device of the model's first parameter, or None for parameter-free callables."""
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return None


def _initial_state(shape, x_T, generator, device):
    """x_T as given, or x_T ~ N(0, I) of ``shape`` on ``device``."""
    if x_T is not None:
        check_floating(x_T, "x_T")
        if shape is not None and tuple(shape) != tuple(x_T.shape):
            raise ValueError(f"shape {tuple(shape)} does not match x_T shape {tuple(x_T.shape)}")
        return x_T.to(device).clone()
    if shape is None or isinstance(shape, (str, bytes)) or len(shape) == 0:
        raise ValueError(f"shape must be a non-empty tuple of positive ints, got shape={shape!r}")
    for n in shape:
        check_positive_int(n, f"every entry of shape={tuple(shape)!r}")
    return utils.noise_like(torch.empty(tuple(shape), device=device), generator)  # x_T ~ N(0, I)


def _resolve_device(model, x_T, device):
    """The device to sample on: ``device``, else x_T's, else the model's, else the CPU."""
    if device is not None:
        return torch.device(device)
    if x_T is not None:
        return x_T.device
    return _model_device(model) or torch.device("cpu")


def _record_set(record, T):
    """The set of 0-based timesteps to record; ValueError naming any outside [0, T)."""
    steps = set()
    for t in record:
        try:
            steps.add(check_int(t, "t", low=0, high=T - 1))
        except ValueError:
            raise ValueError(f"record timestep {t!r} out of range [0, {T}) (record takes ints)") from None
    return steps


def _result(x, recorded):
    """Pack the final sample and the recorded (t, x_t, x̂0) triples into a SampleResult."""
    timesteps = [t for t, _, _ in recorded]
    if recorded:
        xs = torch.stack([xt for _, xt, _ in recorded])
        x0_preds = torch.stack([x0 for _, _, x0 in recorded])
    else:
        xs = x0_preds = torch.empty((0, *x.shape), dtype=x.dtype)
    return SampleResult(x=x, timesteps=timesteps, xs=xs, x0_preds=x0_preds)


def _sample(model, diffusion, shape, x_T, generator, device, record, steps, step, desc, progress):
    """The loop shared by the samplers: x ← ``step(model(x, t), x, i)`` for ``t = steps[i]``, recording as asked."""
    device = _resolve_device(model, x_T, device)
    record = _record_set(record, diffusion.T)
    x = _initial_state(shape, x_T, generator, device)
    recorded = []
    with utils.eval_no_grad(model):
        for i in tqdm(range(len(steps)), desc=desc, disable=not progress):
            t = steps[i]
            output = check_model_output(model(x, _timestep_tensor(t, x)), x)
            x_prev, x0_hat = step(output, x, i)
            if t in record:
                recorded.append((t, x.cpu(), x0_hat.cpu()))
            x = x_prev
    return _result(x, recorded)

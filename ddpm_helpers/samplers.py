"""Samplers: DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) and DDIM (Song, Meng & Ermon 2021).

One reverse step is a public function, :func:`ddpm_step` and :func:`ddim_step` (diffusers'
``scheduler.step``, lucidrains' ``p_sample``): it maps the network output at the 0-based step
``t`` to the next state. :func:`ddpm_sample` and :func:`ddim_sample` are loops over it: they
start from x_T ~ N(0, I) (or a given ``x_T``), call ``model(x_t, t)`` with ``t`` as a LongTensor
of shape ``(B,)``, and return a :class:`SampleResult`. The model is called under
``torch.no_grad()`` and in eval mode; a model that was training is put back in training mode
afterwards. No noise is added at the last step (code ``t = 0``, paper step 1).

``record``: 0-based timesteps whose *incoming* state x_t (the input of the model call at
that ``t``) and the x̂0 predicted from it are kept, in sampling order (descending ``t``), on the
CPU. The final sample is ``SampleResult.x``.
"""

import numbers
from dataclasses import dataclass
from typing import NamedTuple

import torch
from tqdm import tqdm

from ddpm_helpers import utils
from ddpm_helpers.checks import (
    check_floating,
    check_int,
    check_model_output,
    check_name,
    check_number,
    check_positive_int,
)
from ddpm_helpers.diffusion import VARIANCES, check_prediction
from ddpm_helpers.utils import moved_names


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


def ddpm_step(diffusion, model_output, xt, t, *, prediction="eps", variance="beta_tilde", clip_x0=None,
              generator=None):
    """One ancestral step x_t → x_{t−1} = μ_θ(x_t, t) + σ_t z (Ho et al. 2020, Algorithm 2, line 4).

    The formula is in paper steps; the code step ``t`` (an int shared by the batch ``xt``) is the
    paper's t + 1. ``model_output``: the network's output at ``(xt, t)``. μ_θ from Eq. 11 (through
    x̂0, optionally clipped to [−clip_x0, clip_x0]), σ_t² = β̃_t ("beta_tilde") or β_t ("beta"),
    z ~ N(0, I) for ``t > 0``; at ``t = 0`` (paper's step 1) the mean is returned without noise.
    Returns :class:`StepResult` ``(x_prev, x0_hat)``.
    """
    t = check_int(t, "t", low=0, high=diffusion.T - 1)
    out = diffusion.p_mean_variance(model_output, xt, _timestep_tensor(t, xt), prediction, variance, clip_x0)
    if t == 0:
        return StepResult(out.mean, out.x0_hat)  # last step: x_0 = μ_θ(x_1, 1), no noise
    return StepResult(out.mean + out.variance.sqrt() * utils.noise_like(xt, generator), out.x0_hat)  # μ_θ + σ_t z


def ddim_step(diffusion, model_output, xt, t, t_prev, *, eta=0.0, prediction="eps", clip_x0=None, generator=None):
    """One DDIM step x_t → x_s from the 0-based step ``t`` to ``t_prev = s < t`` (Song, Meng & Ermon 2021, Eq. 12).

    x_s = √ᾱ_s x̂0 + √(1 − ᾱ_s − σ_t²) ε̂ + σ_t z,  σ_t = η √((1 − ᾱ_s)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_s)  (Eq. 16).
    Here ᾱ_t and ᾱ_s are ``alpha_bar[t]`` and ``alpha_bar[t_prev]`` (0-based code steps). ``t_prev=None``
    is the end of the chain (ᾱ_s = 1, σ = 0): the step returns x̂0. η = 0 is deterministic; η = 1
    with ``t_prev = t − 1`` is the DDPM step with σ² = β̃. Returns :class:`StepResult` ``(x_prev, x0_hat)``.
    """
    t = check_int(t, "t", low=0, high=diffusion.T - 1)
    if t_prev is not None:
        t_prev = check_int(t_prev, "t_prev", low=0, high=t - 1)  # None: the end of the chain
    eta = check_number(eta, "eta", low=0.0, high=1.0)
    tt = _timestep_tensor(t, xt)
    eps, x0_hat = diffusion.model_predictions(model_output, xt, tt, prediction, clip_x0)
    if t_prev is None:
        return StepResult(x0_hat, x0_hat)  # last step: ᾱ_s = 1, σ = 0, so x_0 = x̂0
    ab_t = diffusion.at("alpha_bar", tt, xt)  # ᾱ_t
    ab_s = diffusion.at("alpha_bar", _timestep_tensor(t_prev, xt), xt)  # ᾱ_s
    # σ_t = η √((1−ᾱ_s)/(1−ᾱ_t)) √(1−ᾱ_t/ᾱ_s)
    sigma = eta * ((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)).sqrt()
    direction = (1 - ab_s - sigma**2).clamp(min=0).sqrt() * eps  # √(1 − ᾱ_s − σ²) ε̂
    x = ab_s.sqrt() * x0_hat + direction  # √ᾱ_s x̂0 + √(1 − ᾱ_s − σ²) ε̂
    if eta > 0:
        x = x + sigma * utils.noise_like(x, generator)  # + σ_t z
    return StepResult(x, x0_hat)


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


def ddpm_sample(model, diffusion, shape, *, prediction="eps", variance="beta_tilde", clip_x0=None, generator=None,
                device=None, x_T=None, record=(), progress=False):
    """Ancestral sampling (Ho et al. 2020, Algorithm 2): :func:`ddpm_step` for ``t = T−1, …, 0``.

    ``shape`` may be None when ``x_T`` is given.
    """
    check_prediction(prediction, clip_x0)
    check_name(variance, VARIANCES, "variance")
    steps = list(range(diffusion.T - 1, -1, -1))

    def step(output, x, i):
        return ddpm_step(diffusion, output, x, steps[i], prediction=prediction, variance=variance, clip_x0=clip_x0,
                         generator=generator)

    return _sample(model, diffusion, shape, x_T, generator, device, record, steps, step, "DDPM sampling", progress)


def ddim_timesteps(T, num_steps):
    """``num_steps`` 0-based timesteps, evenly spaced, descending from ``T−1`` to 0 (Song et al. 2021, §4.2).

    Rounded from linspace(T−1, 0, num_steps); distinct because num_steps ≤ T. With
    ``num_steps = 1`` the single step is ``T−1`` (one jump from x_T to x̂0).
    """
    T = check_positive_int(T, "T")
    num_steps = check_int(num_steps, "num_steps", low=1, high=T)
    if num_steps == 1:
        return [T - 1]
    n = num_steps - 1
    # t_i = round(i (T−1) / n), exact integer rounding half up, i = n, …, 0
    return [(2 * i * (T - 1) + n) // (2 * n) for i in range(n, -1, -1)]


def _check_timesteps(timesteps, T):
    """A user-given DDIM sequence as a list of ints, strictly descending, in [0, T)."""
    if isinstance(timesteps, (str, bytes)) or not all(
            not isinstance(a, bool) and isinstance(a, numbers.Integral) for a in timesteps) or len(timesteps) == 0:
        raise ValueError(f"timesteps must be a non-empty sequence of ints, got {timesteps!r}")
    steps = [int(t) for t in timesteps]
    if any(not 0 <= t < T for t in steps):
        raise ValueError(f"timesteps {steps} out of range [0, {T})")
    if any(a <= b for a, b in zip(steps, steps[1:])):
        raise ValueError(f"timesteps must be strictly descending, got {steps}")
    return steps


def ddim_sample(model, diffusion, shape, *, num_steps=50, timesteps=None, eta=0.0, prediction="eps", clip_x0=None,
                generator=None, device=None, x_T=None, record=(), progress=False):
    """DDIM sampling (Song, Meng & Ermon 2021, Eq. 12): :func:`ddim_step` along a descending sub-sequence of steps.

    ``timesteps`` (0-based, strictly descending, in [0, T)) overrides ``num_steps`` (see
    :func:`ddim_timesteps`). η = 0 is deterministic; η = 1 over all T steps is DDPM with
    σ_t² = β̃_t. Only recorded timesteps that the sequence visits appear in the result.
    """
    check_prediction(prediction, clip_x0)
    eta = check_number(eta, "eta", low=0.0, high=1.0)
    steps = ddim_timesteps(diffusion.T, num_steps) if timesteps is None else _check_timesteps(timesteps, diffusion.T)
    next_steps = steps[1:] + [None]  # the step each one goes to; None: the end of the chain (ᾱ = 1)

    def step(output, x, i):
        return ddim_step(diffusion, output, x, steps[i], next_steps[i], eta=eta, prediction=prediction,
                         clip_x0=clip_x0, generator=generator)

    return _sample(model, diffusion, shape, x_T, generator, device, record, steps, step, "DDIM sampling", progress)


__getattr__ = moved_names(__name__, {"eval_no_grad": (utils.eval_no_grad, "ddpm_helpers.utils.eval_no_grad")})

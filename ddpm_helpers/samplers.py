"""Samplers: DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) and DDIM (Song, Meng & Ermon 2021).

Both start from x_T ~ N(0, I) (or a given ``x_T``), call ``model(x_t, t)`` with the 0-based
``t`` as a LongTensor of shape ``(B,)``, and return a :class:`SampleResult`. The model is
called under ``torch.no_grad()`` and in eval mode; a model that was training is put back in
training mode afterwards. No noise is added at the last step (t = 0).

``record``: 0-based timesteps whose *incoming* state x_t (the input of the model call at
that t) and the x̂0 predicted from it are kept, in sampling order (descending t), on the CPU.
The final sample is ``SampleResult.x``.
"""

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from tqdm import tqdm

from ddpm_helpers.diffusion import PREDICTIONS, VARIANCES, check_name, extract, noise_like


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


@contextmanager
def eval_no_grad(model):
    """Run ``model`` under ``torch.no_grad()`` in eval mode, restoring training mode afterwards."""
    was_training = isinstance(model, torch.nn.Module) and model.training
    if was_training:
        model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if was_training:
            model.train()


def _model_device(model):
    """Device of the model's first parameter, or None for parameter-free callables."""
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return None


def _initial_state(shape, x_T, generator, device):
    """x_T as given, or x_T ~ N(0, I) of ``shape`` on ``device``."""
    if x_T is not None:
        if shape is not None and tuple(shape) != tuple(x_T.shape):
            raise ValueError(f"shape {tuple(shape)} does not match x_T shape {tuple(x_T.shape)}")
        return x_T.to(device).clone()
    if shape is None or len(shape) == 0 or any(isinstance(n, bool) or not isinstance(n, int) or n <= 0 for n in shape):
        raise ValueError(f"shape must be a non-empty tuple of positive ints, got shape={shape!r}")
    return noise_like(torch.empty(tuple(shape), device=device), generator)  # x_T ~ N(0, I)


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
        if isinstance(t, bool) or int(t) != t or not 0 <= int(t) < T:
            raise ValueError(f"record timestep {t!r} out of range [0, {T})")
        steps.add(int(t))
    return steps


def _call_model(model, x, t):
    """model(x_t, t), checked to have x_t's shape."""
    out = model(x, t)
    if out.shape != x.shape:
        raise ValueError(f"model output shape {tuple(out.shape)} does not match x_t shape {tuple(x.shape)}")
    return out


def _result(x, recorded):
    """Pack the final sample and the recorded (t, x_t, x̂0) triples into a SampleResult."""
    timesteps = [t for t, _, _ in recorded]
    if recorded:
        xs = torch.stack([xt for _, xt, _ in recorded])
        x0_preds = torch.stack([x0 for _, _, x0 in recorded])
    else:
        xs = x0_preds = torch.empty((0, *x.shape), dtype=x.dtype)
    return SampleResult(x=x, timesteps=timesteps, xs=xs, x0_preds=x0_preds)


def ddpm_sample(model, diffusion, shape, *, prediction="eps", variance="beta_tilde", clip_x0=None, generator=None,
                device=None, x_T=None, record=(), progress=False):
    """Ancestral sampling (Ho et al. 2020, Algorithm 2).

    For t = T−1, …, 0: x_{t−1} = μ_θ(x_t, t) + σ_t z with z ~ N(0, I) for t > 0 and z = 0 at
    t = 0, μ_θ from Eq. 11 (through x̂0, optionally clipped to [−clip_x0, clip_x0]) and
    σ_t² = β̃_t ("beta_tilde") or β_t ("beta"). ``shape`` may be None when ``x_T`` is given.
    """
    check_name(prediction, PREDICTIONS, "prediction")
    check_name(variance, VARIANCES, "variance")
    device = _resolve_device(model, x_T, device)
    record = _record_set(record, diffusion.T)
    x = _initial_state(shape, x_T, generator, device)
    recorded = []
    with eval_no_grad(model):
        for t in tqdm(range(diffusion.T - 1, -1, -1), desc="DDPM sampling", disable=not progress):
            tt = torch.full((x.shape[0],), t, dtype=torch.long, device=device)
            out = diffusion.p_mean_variance(_call_model(model, x, tt), x, tt, prediction, variance, clip_x0)
            if t in record:
                recorded.append((t, x.cpu(), out["x0_hat"].cpu()))
            if t > 0:
                x = out["mean"] + out["variance"].sqrt() * noise_like(x, generator)  # x_{t−1} = μ_θ + σ_t z
            else:
                x = out["mean"]  # last step: x_0 = μ_θ(x_1, 1), no noise
    return _result(x, recorded)


def ddim_timesteps(T, num_steps):
    """``num_steps`` 0-based timesteps, evenly spaced, descending from T−1 to 0 (Song et al. 2021, §4.2).

    Rounded from linspace(T−1, 0, num_steps); distinct because num_steps ≤ T. With
    num_steps = 1 the single step is T−1 (one jump from x_T to x̂0).
    """
    if isinstance(T, bool) or not isinstance(T, int) or T <= 0:
        raise ValueError(f"T must be a positive integer, got T={T!r}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or not 1 <= num_steps <= T:
        raise ValueError(f"num_steps must be an integer in [1, T={T}], got num_steps={num_steps!r}")
    if num_steps == 1:
        return [T - 1]
    n = num_steps - 1
    # t_i = round(i (T−1) / n), exact integer rounding half up, i = n, …, 0
    return [(2 * i * (T - 1) + n) // (2 * n) for i in range(n, -1, -1)]


def _check_timesteps(timesteps, T):
    """A user-given DDIM sequence as a list of ints, strictly descending, in [0, T)."""
    steps = [int(t) for t in timesteps]
    if not steps or any(int(a) != a for a in timesteps):
        raise ValueError(f"timesteps must be a non-empty sequence of ints, got {timesteps!r}")
    if any(not 0 <= t < T for t in steps):
        raise ValueError(f"timesteps {steps} out of range [0, {T})")
    if any(a <= b for a, b in zip(steps, steps[1:])):
        raise ValueError(f"timesteps must be strictly descending, got {steps}")
    return steps


def ddim_sample(model, diffusion, shape, *, num_steps=50, timesteps=None, eta=0.0, prediction="eps", clip_x0=None,
                generator=None, device=None, x_T=None, record=(), progress=False):
    """DDIM sampling (Song, Meng & Ermon 2021, Eq. 12) on a descending sub-sequence of timesteps.

    From t to the next visited step s (ᾱ_s = 1 after the last step):
    x_s = √ᾱ_s x̂0 + √(1 − ᾱ_s − σ_t²) ε̂ + σ_t z,  with
    σ_t = η √((1 − ᾱ_s)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_s)  (Eq. 16).
    η = 0 is deterministic; η = 1 over all T steps is DDPM with σ_t² = β̃_t. ``timesteps``
    (strictly descending, in [0, T)) overrides ``num_steps`` (see :func:`ddim_timesteps`).
    Only recorded timesteps that the sequence visits appear in the result.
    """
    check_name(prediction, PREDICTIONS, "prediction")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got eta={eta!r}")
    steps = ddim_timesteps(diffusion.T, num_steps) if timesteps is None else _check_timesteps(timesteps, diffusion.T)
    device = _resolve_device(model, x_T, device)
    record = _record_set(record, diffusion.T)
    x = _initial_state(shape, x_T, generator, device)
    recorded = []
    with eval_no_grad(model):
        for i in tqdm(range(len(steps)), desc="DDIM sampling", disable=not progress):
            t = steps[i]
            tt = torch.full((x.shape[0],), t, dtype=torch.long, device=device)
            eps, x0_hat = diffusion.model_predictions(_call_model(model, x, tt), x, tt, prediction, clip_x0)
            if t in record:
                recorded.append((t, x.cpu(), x0_hat.cpu()))
            if i + 1 == len(steps):
                x = x0_hat  # last step: ᾱ_s = 1, σ = 0, so x_0 = x̂0
                continue  # (not break: the progress bar counts this step too)
            ss = torch.full_like(tt, steps[i + 1])
            ab_t = extract(diffusion.alpha_bar, tt, x)  # ᾱ_t
            ab_s = extract(diffusion.alpha_bar, ss, x)  # ᾱ_s
            # σ_t = η √((1−ᾱ_s)/(1−ᾱ_t)) √(1−ᾱ_t/ᾱ_s)
            sigma = eta * ((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)).sqrt()
            direction = (1 - ab_s - sigma**2).clamp(min=0).sqrt() * eps  # √(1 − ᾱ_s − σ²) ε̂
            x = ab_s.sqrt() * x0_hat + direction  # √ᾱ_s x̂0 + √(1 − ᾱ_s − σ²) ε̂
            if eta > 0:
                x = x + sigma * noise_like(x, generator)  # + σ_t z
    return _result(x, recorded)

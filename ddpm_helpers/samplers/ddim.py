"""DDIM sampling (Song, Meng & Ermon 2021, Eq. 12): one step, the sub-sequence of timesteps, and the loop."""

import numbers

from ddpm_helpers import utils
from ddpm_helpers.checks import check_int, check_number, check_positive_int
from ddpm_helpers.diffusion import check_prediction
from ddpm_helpers.samplers.loop import StepResult, _sample, _timestep_tensor


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

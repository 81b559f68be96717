"""DDIM sampling (Song, Meng & Ermon 2021, Eq. 12): one step, the sub-sequence of timesteps, and the loop."""

from functools import partial

from ddpm_helpers import utils
from ddpm_helpers.checks import check_int, check_number, check_positive_int
from ddpm_helpers.diffusion import check_prediction
from ddpm_helpers.samplers.loop import StepResult, check_step, sample_loop


def ddim_step(diffusion, model_output, xt, t, t_next, *, eta=0.0, prediction="eps", clip_x0=None, generator=None):
    """One DDIM step x_t → x_s from the 0-based step ``t`` to ``t_next = s < t`` (Song, Meng & Ermon 2021, Eq. 12).

    x_s = √ᾱ_s x̂0 + √(1 − ᾱ_s − σ_t²) ε̂ + σ_t z,  σ_t = η √((1 − ᾱ_s)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_s)  (Eq. 16).
    Here ᾱ_t and ᾱ_s are ``alpha_bar[t]`` and ``alpha_bar[t_next]`` (0-based code steps). ``t_next=None``
    is the end of the chain (ᾱ_s = 1, σ = 0): the step returns x̂0. η = 0 is deterministic; η = 1
    with ``t_next = t − 1`` is the DDPM step with σ² = β̃ (z ~ N(0, I) drawn with ``generator``).
    Returns :class:`StepResult` ``(x_prev, x0_hat)``.
    """
    t, t_next, tt = check_step(diffusion, model_output, xt, t, t_next)
    eta = check_number(eta, "eta", low=0.0, high=1.0)
    check_prediction(prediction, clip_x0)
    return _ddim_step(diffusion, model_output, xt, t, t_next, tt, eta=eta, prediction=prediction, clip_x0=clip_x0,
                      generator=generator)


def _ddim_step(diffusion, model_output, xt, t, t_next, tt, previous=None, *, eta, prediction, clip_x0, generator):
    """The body of :func:`ddim_step` (no checks): ``tt`` is ``t`` as the LongTensor ``(B,)`` the model received."""
    if t_next is None:
        x0_hat = diffusion._x0_hat(model_output, xt, tt, prediction, clip_x0)
        return StepResult(x0_hat, x0_hat)  # last step: ᾱ_s = 1, σ = 0, so x_0 = x̂0
    eps, x0_hat = diffusion._predictions(model_output, xt, tt, prediction, clip_x0)
    alpha_bar = diffusion.table("alpha_bar", xt)  # one t and one s for the whole batch: index by int
    ab_s = alpha_bar[t_next]  # ᾱ_s
    if eta == 0:  # σ_t = 0
        return StepResult(ab_s.sqrt() * x0_hat + (1 - ab_s).sqrt() * eps, x0_hat)  # √ᾱ_s x̂0 + √(1 − ᾱ_s) ε̂
    ab_t = alpha_bar[t]  # ᾱ_t
    # σ_t = η √((1−ᾱ_s)/(1−ᾱ_t)) √(1−ᾱ_t/ᾱ_s)
    sigma = eta * ((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s)).sqrt()
    direction = (1 - ab_s - sigma**2).clamp(min=0).sqrt() * eps  # √(1 − ᾱ_s − σ²) ε̂
    x = ab_s.sqrt() * x0_hat + direction  # √ᾱ_s x̂0 + √(1 − ᾱ_s − σ²) ε̂
    return StepResult(x + sigma * utils.noise_like(x, generator), x0_hat)  # + σ_t z


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


def ddim_sample(model, diffusion, shape, *, num_steps=50, timesteps=None, eta=0.0, prediction="eps", clip_x0=None,
                generator=None, device=None, x_T=None, record=(), progress=False):
    """DDIM sampling (Song, Meng & Ermon 2021, Eq. 12): :func:`ddim_step` along a descending sub-sequence of steps.

    ``timesteps`` (0-based, strictly descending, in [0, T)) overrides ``num_steps`` (see
    :func:`ddim_timesteps`). η = 0 is deterministic; η = 1 over all T steps is DDPM with
    σ_t² = β̃_t. Only recorded timesteps that the sequence visits appear in the result.
    One model call per timestep.
    """
    check_prediction(prediction, clip_x0)
    eta = check_number(eta, "eta", low=0.0, high=1.0)
    steps = ddim_timesteps(diffusion.T, num_steps) if timesteps is None else timesteps  # sample_loop checks them
    step = partial(_ddim_step, eta=eta, prediction=prediction, clip_x0=clip_x0, generator=generator)
    return sample_loop(model, diffusion, step, steps, shape=shape, x_T=x_T, generator=generator, device=device,
                       record=record, progress=progress, desc="DDIM sampling")

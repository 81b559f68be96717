"""DDPM ancestral sampling (Ho et al. 2020, Algorithm 2): one step and the loop over all T steps."""

from functools import partial

from ddpm_helpers import utils
from ddpm_helpers.checks import check_name
from ddpm_helpers.diffusion import VARIANCES, check_prediction
from ddpm_helpers.samplers.loop import StepResult, check_step, sample_loop

_VARIANCE_TABLES = {"beta_tilde": "posterior_variance", "beta": "betas"}  # σ_t² = β̃_t or σ_t² = β_t


def ddpm_step(diffusion, model_output, xt, t, t_next, *, prediction="eps", variance="beta_tilde", clip_x0=None,
              generator=None):
    """One ancestral step x_t → x_{t−1} = μ_θ(x_t, t) + σ_t z (Ho et al. 2020, Algorithm 2, line 4).

    The formula is in paper steps; the code step ``t`` (an int shared by the batch ``xt``) is the
    paper's t + 1, and ``t_next`` must be ``t − 1`` (``None`` after ``t = 0``: the clean end of the chain).
    ``model_output``: the network's output at ``(xt, t)``. μ_θ from Eq. 11 (through x̂0, optionally clipped
    to [−clip_x0, clip_x0]), σ_t² = β̃_t ("beta_tilde") or β_t ("beta"), z ~ N(0, I) drawn with ``generator``
    for ``t > 0``; at ``t = 0`` (paper's step 1) the mean is returned without noise.
    Returns :class:`StepResult` ``(x_prev, x0_hat)``.
    """
    t, t_next, tt = check_step(diffusion, model_output, xt, t, t_next)
    if t_next != (t - 1 if t > 0 else None):
        raise ValueError(f"ddpm_step goes from t to t − 1 (t_next=None after t = 0), got t={t}, t_next={t_next!r}")
    check_prediction(prediction, clip_x0)
    check_name(variance, VARIANCES, "variance")
    return _ddpm_step(diffusion, model_output, xt, t, t_next, tt, prediction=prediction, variance=variance,
                      clip_x0=clip_x0, generator=generator)


def _ddpm_step(diffusion, model_output, xt, t, t_next, tt, previous=None, *, prediction, variance, clip_x0, generator):
    """The body of :func:`ddpm_step` (no checks): ``tt`` is ``t`` as the LongTensor ``(B,)`` the model received."""
    x0_hat = diffusion._x0_hat(model_output, xt, tt, prediction, clip_x0)
    mean = diffusion._posterior_mean(x0_hat, xt, tt)  # μ_θ(x_t, t) = μ̃_t(x_t, x̂0)
    if t_next is None:
        return StepResult(mean, x0_hat)  # last step: x_0 = μ_θ(x_1, 1), no noise
    var = diffusion.at(_VARIANCE_TABLES[variance], tt, xt)  # σ_t² = β̃_t or β_t
    return StepResult(mean + var.sqrt() * utils.noise_like(xt, generator), x0_hat)  # μ_θ + σ_t z


def ddpm_sample(model, diffusion, shape, *, prediction="eps", variance="beta_tilde", clip_x0=None, generator=None,
                device=None, x_T=None, record=(), progress=False):
    """Ancestral sampling (Ho et al. 2020, Algorithm 2): :func:`ddpm_step` for ``t = T−1, …, 0``.

    ``shape`` may be None when ``x_T`` is given. T model calls.
    """
    check_prediction(prediction, clip_x0)
    check_name(variance, VARIANCES, "variance")
    step = partial(_ddpm_step, prediction=prediction, variance=variance, clip_x0=clip_x0, generator=generator)
    return sample_loop(model, diffusion, step, range(diffusion.T - 1, -1, -1), shape=shape, x_T=x_T,
                       generator=generator, device=device, record=record, progress=progress, desc="DDPM sampling")

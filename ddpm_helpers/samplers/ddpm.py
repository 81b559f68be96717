"""DDPM ancestral sampling (Ho et al. 2020, Algorithm 2): one step and the loop over all T steps."""

from ddpm_helpers import utils
from ddpm_helpers.checks import check_int, check_name
from ddpm_helpers.diffusion import VARIANCES, check_prediction
from ddpm_helpers.samplers.loop import StepResult, _sample, _timestep_tensor


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

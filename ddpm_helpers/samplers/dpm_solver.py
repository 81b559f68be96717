"""DPM-Solver++(2M): a second-order multistep solver of the probability-flow ODE (Lu et al. 2022, Algorithm 2).

Notation of Lu et al.: α_t = √ᾱ_t (not DDPM's α_t = 1 − β_t), σ_t = √(1 − ᾱ_t), λ_t = log(α_t/σ_t)
(half the log-SNR) and x̂0 = x_θ(x_t, t), the network's data prediction. In λ the probability-flow
ODE is semi-linear and, from t to a less noisy s (λ_s > λ_t), has the exact solution (Lu et al. 2022, §4.1)

    x_s = (σ_s/σ_t) x_t + σ_s ∫_{λ_t}^{λ_s} e^λ x̂0(x_λ, λ) dλ.

With h = λ_s − λ_t, holding x̂0 at its value at t gives the first-order step, which is DDIM with
η = 0 (Song et al. 2021, Eq. 12):  x_s = (σ_s/σ_t) x_t − α_s (e^{−h} − 1) x̂0_t.
The 2M step extrapolates x̂0 linearly in λ from the previous step's prediction (at λ_prev, with
h_prev = λ_t − λ_prev and r = h_prev/h):

    D = (1 + 1/(2r)) x̂0_t − 1/(2r) x̂0_prev,   x_s = (σ_s/σ_t) x_t − α_s (e^{−h} − 1) D.

Timesteps are 0-based (code ``t`` is the paper's t + 1); ``t_next=None`` is the clean end point
(ᾱ = 1, σ = 0, λ = ∞), where the exact solution is x̂0 at zero noise and the first-order step gives
x_0 = x̂0_t, as DDIM's last step does; the linear extrapolation has no limit there (r → 0), so the
jump to the clean end is always first order.
"""

import math

from ddpm_helpers.checks import check_floating, check_int, check_same_shape
from ddpm_helpers.diffusion import check_prediction
from ddpm_helpers.samplers.ddim import ddim_timesteps
from ddpm_helpers.samplers.loop import PreviousStep, StepResult, check_step, sample_loop


def _lambda(diffusion, t):
    """λ_t = log(α_t/σ_t) = ½ log SNR(t) at the 0-based timestep ``t``, as a float64 number."""
    return 0.5 * float(diffusion.log_snr[t])  # λ_t = ½ log(ᾱ_t / (1 − ᾱ_t))


def dpm_solver_step(diffusion, model_output, xt, t, t_next, *, previous=None, prediction="eps", clip_x0=None,
                    generator=None):
    """One DPM-Solver++ step from the 0-based timestep ``t`` to ``t_next = s < t`` (Lu et al. 2022, Algorithm 2).

    ``xt`` is x_t and ``model_output`` the network's output there, from which the data prediction x̂0 is
    computed (clipped to [−clip_x0, clip_x0] when ``clip_x0`` is given). Without ``previous`` the step is first
    order (DDIM, η = 0): x_s = (σ_s/σ_t) x_t − α_s (e^{−h} − 1) x̂0_t with h = λ_s − λ_t.
    ``previous``: the multistep memory, a :class:`PreviousStep` ``(t_prev, x0_hat_prev)`` (any pair) holding
    the previous step's timestep ``t_prev > t`` and its x̂0; with it the step is second order:
    r = h_prev/h, D = (1 + 1/(2r)) x̂0_t − 1/(2r) x̂0_prev, x_s = (σ_s/σ_t) x_t − α_s (e^{−h} − 1) D.
    ``t_next=None`` is the clean end point (σ_s = 0), reached by the first-order step only: x_0 = x̂0_t.
    ``generator`` is unused (the step is deterministic); it is there so that every step has one signature.
    Returns :class:`StepResult` ``(x_prev, x0_hat)``; pass ``PreviousStep(t, result.x0_hat)`` to the next step.
    """
    t, t_next, tt = check_step(diffusion, model_output, xt, t, t_next)
    check_prediction(prediction, clip_x0)
    if previous is not None:
        if t_next is None:
            raise ValueError("the step to the clean end point (t_next=None) is first order: do not pass previous")
        try:
            t_prev, x0_hat_prev = previous
        except (TypeError, ValueError):
            raise ValueError(f"previous must be a pair (t_prev, x0_hat_prev), got {previous!r}") from None
        t_prev = check_int(t_prev, "t_prev", low=t + 1, high=diffusion.T - 1)  # t_prev > t
        check_floating(x0_hat_prev, "x0_hat_prev")
        check_same_shape(xt=xt, x0_hat_prev=x0_hat_prev)
        previous = PreviousStep(t_prev, x0_hat_prev)
    return _dpm_solver_step(diffusion, model_output, xt, t, t_next, tt, previous, prediction=prediction,
                            clip_x0=clip_x0)


def _dpm_solver_step(diffusion, model_output, xt, t, t_next, tt, previous=None, *, prediction, clip_x0):
    """The body of :func:`dpm_solver_step` (no checks): ``tt`` is ``t`` as the LongTensor ``(B,)`` the model saw."""
    x0_hat = diffusion._x0_hat(model_output, xt, tt, prediction, clip_x0)  # x̂0_t
    if t_next is None:
        return StepResult(x0_hat, x0_hat)  # σ_s = 0, α_s = 1, e^{−h} = 0: x_0 = x̂0_t
    lam_t, lam_s = _lambda(diffusion, t), _lambda(diffusion, t_next)  # λ_t, λ_s
    h = lam_s - lam_t  # h = λ_s − λ_t > 0
    sigma_ratio = float(diffusion.sqrt_one_minus_alpha_bar[t_next] / diffusion.sqrt_one_minus_alpha_bar[t])  # σ_s/σ_t
    coef = -float(diffusion.sqrt_alpha_bar[t_next]) * math.expm1(-h)  # −α_s (e^{−h} − 1)
    if previous is None:
        return StepResult(sigma_ratio * xt + coef * x0_hat, x0_hat)  # x_s = (σ_s/σ_t) x_t − α_s (e^{−h} − 1) x̂0_t
    t_prev, x0_hat_prev = previous
    r = (lam_t - _lambda(diffusion, t_prev)) / h  # r = h_prev/h, h_prev = λ_t − λ_prev
    D = (1 + 1 / (2 * r)) * x0_hat - (1 / (2 * r)) * x0_hat_prev  # D = (1 + 1/(2r)) x̂0_t − 1/(2r) x̂0_prev
    return StepResult(sigma_ratio * xt + coef * D, x0_hat)  # x_s = (σ_s/σ_t) x_t − α_s (e^{−h} − 1) D


def dpm_solver_sample(model, diffusion, shape, *, num_steps=20, prediction="eps", clip_x0=None, generator=None,
                      device=None, x_T=None, record=(), progress=False):
    """DPM-Solver++(2M) sampling (Lu et al. 2022, Algorithm 2) with ``num_steps`` network calls.

    The network is called at DDIM's timesteps t_0 = T−1 > … > t_{N−1} = 0 (see
    :func:`ddpm_helpers.samplers.ddim_timesteps`), and the last jump from t_{N−1} = 0 to clean data
    is x_0 = x̂0, as in DDIM. The step t_0 → t_1 is first order (no previous x̂0 yet), and so is the
    step into t_{N−1} = 0 ("lower order final", as in Lu et al.'s code): on time-uniform steps it
    spans a long stretch of λ (λ_0 − λ_{t_{N−2}} ≈ 2.9 against h_prev ≈ 0.7 at N = 20 on the linear
    schedule), where extrapolating x̂0 overshoots. Every other step is second order; with N ≤ 3
    steps this is DDIM (η = 0). x̂0 is clipped to [−clip_x0, clip_x0] before it enters the update.
    ``record`` as in ``ddim_sample``.
    """
    check_prediction(prediction, clip_x0)
    steps = ddim_timesteps(diffusion.T, num_steps)

    def step(diffusion, model_output, xt, t, t_next, tt, previous):  # the loop hands over the step before
        first_order = t_next is None or t_next == 0  # into t = 0 and to the clean end: first order
        return _dpm_solver_step(diffusion, model_output, xt, t, t_next, tt, None if first_order else previous,
                                prediction=prediction, clip_x0=clip_x0)

    return sample_loop(model, diffusion, step, steps, shape=shape, x_T=x_T, generator=generator, device=device,
                       record=record, progress=progress, desc="DPM-Solver++(2M) sampling")

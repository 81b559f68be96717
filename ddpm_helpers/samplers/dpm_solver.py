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

Timesteps are 0-based (code ``t`` is the paper's t + 1); ``s=None`` is the clean end point
(ᾱ = 1, σ = 0, λ = ∞), where the exact solution is x̂0 at zero noise and the first-order step gives
x_0 = x̂0_t, as DDIM's last step does; the linear extrapolation has no limit there (r → 0), so the
jump to the clean end is always first order.
"""

import math

from ddpm_helpers.checks import check_int
from ddpm_helpers.diffusion import check_prediction
from ddpm_helpers.samplers.ddim import ddim_timesteps
from ddpm_helpers.samplers.loop import StepResult, _sample, _timestep_tensor


def _lambda(diffusion, t):
    """λ_t = log(α_t/σ_t) = ½ log SNR(t) at the 0-based timestep ``t``, as a float64 number."""
    return 0.5 * float(diffusion.log_snr[t])  # λ_t = ½ log(ᾱ_t / (1 − ᾱ_t))


def dpm_solver_step(diffusion, x, x0_hat, t, s, x0_hat_prev=None, t_prev=None):
    """One DPM-Solver++ step from the 0-based timestep ``t`` to ``s`` < ``t`` (Lu et al. 2022, Algorithm 2).

    ``x`` is x_t and ``x0_hat`` the data prediction x̂0 at ``t``. Without ``x0_hat_prev`` the step
    is first order (DDIM, η = 0): x_s = (σ_s/σ_t) x_t − α_s (e^{−h} − 1) x̂0_t with h = λ_s − λ_t.
    With the previous step's prediction ``x0_hat_prev`` at ``t_prev`` > ``t`` it is second order:
    r = h_prev/h, D = (1 + 1/(2r)) x̂0_t − 1/(2r) x̂0_prev, x_s = (σ_s/σ_t) x_t − α_s (e^{−h} − 1) D.
    ``s=None`` is the clean end point (σ_s = 0), reached by the first-order step only: x_0 = x̂0_t.
    """
    t = check_int(t, "t", low=0, high=diffusion.T - 1)
    if (x0_hat_prev is None) != (t_prev is None):
        raise ValueError(f"give both x0_hat_prev and t_prev or neither, got t_prev={t_prev!r}")
    if s is None:
        if x0_hat_prev is not None:
            raise ValueError("the step to the clean end point (s=None) is first order: do not pass x0_hat_prev")
        return x0_hat  # σ_s = 0, α_s = 1, e^{−h} = 0: x_0 = x̂0_t
    s = check_int(s, "s", low=0, high=t - 1)  # s < t
    lam_t, lam_s = _lambda(diffusion, t), _lambda(diffusion, s)  # λ_t, λ_s
    h = lam_s - lam_t  # h = λ_s − λ_t > 0
    sigma_ratio = float(diffusion.sqrt_one_minus_alpha_bar[s] / diffusion.sqrt_one_minus_alpha_bar[t])  # σ_s/σ_t
    coef = -float(diffusion.sqrt_alpha_bar[s]) * math.expm1(-h)  # −α_s (e^{−h} − 1)
    if x0_hat_prev is None:
        return sigma_ratio * x + coef * x0_hat  # x_s = (σ_s/σ_t) x_t − α_s (e^{−h} − 1) x̂0_t
    t_prev = check_int(t_prev, "t_prev", low=t + 1, high=diffusion.T - 1)  # t_prev > t
    r = (lam_t - _lambda(diffusion, t_prev)) / h  # r = h_prev/h, h_prev = λ_t − λ_prev
    D = (1 + 1 / (2 * r)) * x0_hat - (1 / (2 * r)) * x0_hat_prev  # D = (1 + 1/(2r)) x̂0_t − 1/(2r) x̂0_prev
    return sigma_ratio * x + coef * D  # x_s = (σ_s/σ_t) x_t − α_s (e^{−h} − 1) D


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
    previous = {}  # {"x0_hat_prev": x̂0, "t_prev": t} of the step before

    def step(output, x, i):
        t = steps[i]
        _, x0_hat = diffusion.model_predictions(output, x, _timestep_tensor(t, x), prediction, clip_x0)
        if i + 1 == len(steps):
            x_prev = dpm_solver_step(diffusion, x, x0_hat, t, None)  # last jump: x_0 = x̂0
        elif i + 2 == len(steps):
            x_prev = dpm_solver_step(diffusion, x, x0_hat, t, steps[i + 1])  # lower order final: into t = 0
        else:
            x_prev = dpm_solver_step(diffusion, x, x0_hat, t, steps[i + 1], **previous)
        previous.update(x0_hat_prev=x0_hat, t_prev=t)
        return StepResult(x_prev, x0_hat)

    return _sample(model, diffusion, shape, x_T, generator, device, record, steps, step,
                   "DPM-Solver++(2M) sampling", progress)

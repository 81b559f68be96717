"""DPM-Solver++(2M) against independent oracles: DDIM, the exact Gaussian ODE flow, and exact data quantiles."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from tanh_net import TanhNet

from ddpm_helpers.analytic import GaussianMixture, optimal_eps
from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.samplers import (
    PreviousStep,
    StepResult,
    ddim_sample,
    ddim_timesteps,
    dpm_solver_sample,
    dpm_solver_step,
)


@pytest.fixture(scope="module")
def diffusion():
    return Diffusion.from_schedule("linear", T=50)


def lambda_uniform_diffusion(T=1000, lam_max=5.0, lam_min=-5.0):
    """A schedule whose λ_t = log(√ᾱ_t/√(1 − ᾱ_t)) is linear in t: time-uniform steps are uniform in λ."""
    lam = torch.linspace(lam_max, lam_min, T, dtype=torch.float64)
    alpha_bar = torch.sigmoid(2 * lam)  # ᾱ = e^{2λ} / (1 + e^{2λ})
    alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
    return Diffusion(1 - alpha_bar / alpha_bar_prev)  # β_t = 1 − ᾱ_t/ᾱ_{t−1}


# ------------------------------------------------------------------ relations to DDIM


def test_first_order_step_is_a_ddim_eta_0_step(diffusion):
    """x_s = (σ_s/σ_t) x_t − α_s (e^{−h} − 1) x̂0 equals DDIM's √ᾱ_s x̂0 + √(1 − ᾱ_s) ε̂."""
    net = TanhNet()
    x = torch.randn(8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t, s = 37, 12
    tt = torch.full((8,), t)
    output = net(x, tt)
    _, x0_hat = diffusion.model_predictions(output, x, tt)
    ddim = ddim_sample(net, diffusion, None, timesteps=[t, s], x_T=x, record=[s])
    step = dpm_solver_step(diffusion, output, x, t, s)
    assert isinstance(step, StepResult) and torch.equal(step.x0_hat, x0_hat)
    torch.testing.assert_close(step.x_prev, ddim.xs[-1], rtol=1e-12, atol=1e-12)
    assert torch.equal(dpm_solver_step(diffusion, output, x, t, None).x_prev, x0_hat)  # the clean end: x_0 = x̂0


def test_second_order_step_by_hand(diffusion):
    """With ``previous = (t_prev, x̂0_prev)``: D = (1 + 1/(2r)) x̂0_t − 1/(2r) x̂0_prev, r = h_prev/h (Algorithm 2)."""
    x, output, x0_prev = torch.randn(3, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    t_prev, t, s = 45, 30, 12
    lam = 0.5 * diffusion.log_snr  # λ = ½ log SNR
    h, h_prev = (lam[s] - lam[t]).item(), (lam[t] - lam[t_prev]).item()
    x0_hat = diffusion.predict_x0_from_eps(x, torch.full((4,), t), output)
    D = (1 + h / (2 * h_prev)) * x0_hat - h / (2 * h_prev) * x0_prev
    sigma_s, sigma_t = diffusion.sqrt_one_minus_alpha_bar[s].item(), diffusion.sqrt_one_minus_alpha_bar[t].item()
    hand = sigma_s / sigma_t * x - diffusion.sqrt_alpha_bar[s].item() * math.expm1(-h) * D
    got = dpm_solver_step(diffusion, output, x, t, s, previous=PreviousStep(t_prev, x0_prev))
    torch.testing.assert_close(got.x_prev, hand, rtol=1e-12, atol=1e-12)
    assert torch.equal(got.x_prev, dpm_solver_step(diffusion, output, x, t, s, previous=(t_prev, x0_prev)).x_prev)


@pytest.mark.parametrize("num_steps", [1, 2, 3])
def test_up_to_three_steps_is_ddim(diffusion, num_steps):
    """First step, step into t = 0 and the jump to clean data are first order: N ≤ 3 leaves no 2nd-order step."""
    net = TanhNet()
    x_T = torch.randn(8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    dpm = dpm_solver_sample(net, diffusion, None, num_steps=num_steps, x_T=x_T)
    ddim = ddim_sample(net, diffusion, None, num_steps=num_steps, x_T=x_T)
    torch.testing.assert_close(dpm.x, ddim.x, rtol=1e-12, atol=1e-12)


def test_second_order_steps_differ_from_ddim(diffusion):
    net = TanhNet()
    x_T = torch.randn(8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    dpm = dpm_solver_sample(net, diffusion, None, num_steps=4, x_T=x_T)
    ddim = ddim_sample(net, diffusion, None, num_steps=4, x_T=x_T)
    assert (dpm.x - ddim.x).abs().max() > 1e-3


# ------------------------------------------------------------------ calls, determinism, recording


def test_one_model_call_per_step_in_eval_mode_without_grad(diffusion):
    net = TanhNet().train()
    dpm_solver_sample(net, diffusion, (4, 3), num_steps=7, generator=torch.Generator().manual_seed(0))
    assert [t for t, _, _ in net.calls] == ddim_timesteps(50, 7)  # num_steps calls, at DDIM's timesteps
    assert {(training, grad) for _, training, grad in net.calls} == {(False, False)}
    assert net.training


def test_deterministic_given_x_T(diffusion):
    net = TanhNet()
    x_T = torch.randn(16, 3)
    a = dpm_solver_sample(net, diffusion, (16, 3), num_steps=10, x_T=x_T, generator=torch.Generator().manual_seed(0))
    b = dpm_solver_sample(net, diffusion, (16, 3), num_steps=10, x_T=x_T, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a.x, b.x)
    c = dpm_solver_sample(net, diffusion, (16, 3), num_steps=10, generator=torch.Generator().manual_seed(5))
    d = dpm_solver_sample(net, diffusion, (16, 3), num_steps=10, generator=torch.Generator().manual_seed(5))
    assert torch.equal(c.x, d.x) and not torch.allclose(a.x, c.x)


def test_float32_stays_float32_and_records_visited_steps(diffusion):
    net = TanhNet()
    x_T = torch.randn(2, 3)
    result = dpm_solver_sample(net, diffusion, None, num_steps=3, x_T=x_T, record=[49, 30, 25, 0])
    assert result.x.dtype == torch.float32
    assert result.timesteps == [49, 25, 0]  # 30 is never visited
    assert torch.equal(result.xs[0], x_T)
    assert torch.equal(result.x, result.x0_preds[-1])  # the last jump returns x̂0 predicted at t = 0


def test_v_prediction_gives_the_eps_prediction_result():
    """The same denoiser written as v = √ᾱ ε − √(1 − ᾱ) x̂0 (Salimans & Ho 2022) gives the same samples."""
    d = Diffusion.from_schedule("cosine", T=200)
    eps_model = optimal_eps(GaussianMixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 1.0]], [0.1, 0.2]), d)

    def v_model(xt, t):
        eps = eps_model(xt, t)
        return d.v_from_x0_eps(d.predict_x0_from_eps(xt, t, eps), t, eps)

    x_T = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    by_eps = dpm_solver_sample(eps_model, d, None, num_steps=10, x_T=x_T)
    by_v = dpm_solver_sample(v_model, d, None, num_steps=10, x_T=x_T, prediction="v")
    torch.testing.assert_close(by_v.x, by_eps.x, rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------ validation


def test_bad_inputs_raise(diffusion):
    net = TanhNet()
    x, x0 = torch.zeros(2, 3), torch.zeros(2, 3)
    for num_steps in (0, 51, 2.0):
        with pytest.raises(ValueError, match=f"num_steps={num_steps!r}"):
            dpm_solver_sample(net, diffusion, (2, 3), num_steps=num_steps)
    with pytest.raises(ValueError, match="'score'"):
        dpm_solver_sample(net, diffusion, (2, 3), prediction="score")
    with pytest.raises(ValueError, match="record timestep 50"):
        dpm_solver_sample(net, diffusion, (2, 3), record=[50])
    with pytest.raises(ValueError, match=r"\(2, 4\)"):
        dpm_solver_sample(net, diffusion, (2, 4), x_T=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="clip_x0=0"):
        dpm_solver_sample(net, diffusion, (2, 3), clip_x0=0)
    with pytest.raises(ValueError, match="t_next=20"):
        dpm_solver_step(diffusion, x, x, 10, 20)
    with pytest.raises(ValueError, match="t=50"):
        dpm_solver_step(diffusion, x, x, 50, 10)
    with pytest.raises(ValueError, match="t_next=-1"):
        dpm_solver_step(diffusion, x, x, 10, -1)
    with pytest.raises(ValueError, match="t_prev=5"):
        dpm_solver_step(diffusion, x, x, 10, 0, previous=(5, x0))
    with pytest.raises(ValueError, match="previous must be a pair"):
        dpm_solver_step(diffusion, x, x, 10, 0, previous=20)
    with pytest.raises(ValueError, match=r"shape mismatch.*\(2, 4\)"):
        dpm_solver_step(diffusion, x, x, 10, 0, previous=(20, torch.zeros(2, 4)))
    with pytest.raises(ValueError, match="t_next=None"):
        dpm_solver_step(diffusion, x, x, 10, None, previous=(20, x0))
    with pytest.raises(ValueError, match="'score'"):
        dpm_solver_step(diffusion, x, x, 10, 5, prediction="score")


# ------------------------------------------------------------------ the probability-flow ODE of Gaussian data


def _exact_gaussian_ode(d, mu, s2, x_T):
    """x0 ~ N(μ, s² I): the ODE keeps (x_t − α_t μ)/√(α_t² s² + σ_t²) fixed; returns x̂0 at the exact x at t = 0.

    The solver ends with x_0 = x̂0(x at t = 0); with the exact x there, x̂0 = μ + α s²/(α² s² + σ²) (x − α μ).
    """
    a, sg = d.sqrt_alpha_bar, d.sqrt_one_minus_alpha_bar
    c_T = math.sqrt(a[-1] ** 2 * s2 + sg[-1] ** 2)  # √(α_T² s² + σ_T²)
    c_0 = math.sqrt(a[0] ** 2 * s2 + sg[0] ** 2)  # √(α_0² s² + σ_0²)
    x_0 = a[0].item() * mu + c_0 / c_T * (x_T - a[-1].item() * mu)  # exact flow from T−1 to 0
    return mu + a[0].item() * s2 / c_0**2 * (x_0 - a[0].item() * mu)  # E[x0 | x_t at t = 0]


def _ode_errors(d, num_steps, s2=0.25):
    """RMS distance of DDIM and DPM-Solver++(2M) samples from the exact ODE solution, same x_T."""
    mu = torch.tensor([1.5, -1.5], dtype=torch.float64)
    model = optimal_eps(GaussianMixture([1.0], mu[None], [s2]), d)
    x_T = torch.randn(500, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    exact = _exact_gaussian_ode(d, mu, s2, x_T)
    errors = []
    for sample in (ddim_sample, dpm_solver_sample):
        errors.append((sample(model, d, None, num_steps=num_steps, x_T=x_T).x - exact).pow(2).mean().sqrt().item())
    return errors


def test_converges_to_the_exact_ode_solution_with_second_order():
    """On steps uniform in λ, halving the step divides the error by ≈ 4 (measured 3.9, 4.3); DDIM's by ≈ 2."""
    d = lambda_uniform_diffusion()
    (ddim_20, dpm_20), (ddim_40, dpm_40), (ddim_80, dpm_80) = (_ode_errors(d, n) for n in (20, 40, 80))
    assert dpm_20 / dpm_40 > 3.0 and dpm_40 / dpm_80 > 3.0, (dpm_20, dpm_40, dpm_80)
    assert 1.7 < ddim_20 / ddim_40 < 2.3 and 1.7 < ddim_40 / ddim_80 < 2.3, (ddim_20, ddim_40, ddim_80)
    assert dpm_20 < 0.2 * ddim_20


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_closer_to_the_exact_ode_solution_than_ddim_at_20_steps(schedule):
    """On the series' schedules at 20 steps: 2M's error is 0.34× DDIM's (linear), 0.04× (cosine)."""
    ddim_20, dpm_20 = _ode_errors(Diffusion.from_schedule(schedule, T=1000), 20)
    assert dpm_20 < 0.5 * ddim_20, (ddim_20, dpm_20)


# ------------------------------------------------------------------ sampling the true distribution


def _quantiles(mixture, u):
    """Quantile function of a 1-D Gaussian mixture at ``u``, by bisection on its SciPy CDF."""
    w, m, v = mixture.weights.numpy(), mixture.means[:, 0].numpy(), mixture.variances.numpy()
    lo, hi = np.full_like(u, -20.0), np.full_like(u, 20.0)
    for _ in range(60):
        mid = (lo + hi) / 2
        cdf = sum(wk * stats.norm.cdf(mid, mk, math.sqrt(vk)) for wk, mk, vk in zip(w, m, v))
        lo, hi = np.where(cdf < u, mid, lo), np.where(cdf < u, hi, mid)
    return torch.from_numpy((lo + hi) / 2)


@pytest.mark.parametrize("mixture", [
    GaussianMixture([1.0], [[1.0]], [0.25]),
    GaussianMixture([0.3, 0.7], [[-3.0], [2.0]], [0.1, 0.2]),
], ids=["gaussian", "mixture"])
def test_samples_converge_to_the_true_distribution(mixture):
    """Wasserstein-1 distance to the data law, from stratified x_T (no Monte-Carlo noise), cosine schedule.

    The 1-D ODE flow is monotone, so sorted samples from x_T = Φ⁻¹((i + ½)/n) approach the data's
    quantiles at (i + ½)/n. Measured W1, DPM at 5/10/20/50 steps: 0.116/0.024/0.0013/0.0009 (Gaussian),
    0.43/0.13/0.040/0.008 (mixture); DDIM at 20: 0.031 and 0.094.
    """
    d = Diffusion.from_schedule("cosine", T=1000)
    n = 2000
    u = (np.arange(n) + 0.5) / n
    x_T = torch.from_numpy(stats.norm.ppf(u))[:, None]
    exact = _quantiles(mixture, u)
    model = optimal_eps(mixture, d)

    def w1(sample, num_steps):
        return (sample(model, d, None, num_steps=num_steps, x_T=x_T).x[:, 0].sort().values - exact).abs().mean()

    distances = [w1(dpm_solver_sample, n_steps) for n_steps in (5, 10, 20, 50)]
    assert all(b < 0.9 * a for a, b in zip(distances, distances[1:])), distances
    assert distances[-1] < 0.01
    assert distances[2] < 0.5 * w1(ddim_sample, 20)

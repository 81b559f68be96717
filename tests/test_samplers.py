"""DDPM and DDIM samplers: step sequences, DDIM(η=1) = DDPM(β̃), determinism, recording, and exact-denoiser sampling."""

import math

import pytest
import torch
from tanh_net import TanhNet

from ddpm_helpers import samplers
from ddpm_helpers.analytic import GaussianMixture, optimal_eps
from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.samplers import (
    SampleResult,
    StepResult,
    ddim_sample,
    ddim_step,
    ddim_timesteps,
    ddpm_sample,
    ddpm_step,
    sample_loop,
)


@pytest.fixture(scope="module")
def diffusion():
    return Diffusion.from_schedule("linear", T=50)


# ------------------------------------------------------------------ timestep sequences


def test_ddim_timesteps():
    steps = ddim_timesteps(1000, 50)
    assert len(steps) == 50 and steps[0] == 999 and steps[-1] == 0
    assert all(a > b for a, b in zip(steps, steps[1:]))
    assert ddim_timesteps(10, 10) == list(range(9, -1, -1))
    assert ddim_timesteps(100, 3) == [99, 50, 0]
    assert ddim_timesteps(100, 1) == [99]


@pytest.mark.parametrize("num_steps", [0, -5, 1001, 2.0])
def test_ddim_timesteps_bad_num_steps(num_steps):
    with pytest.raises(ValueError, match=f"num_steps={num_steps!r}"):
        ddim_timesteps(1000, num_steps)


# ------------------------------------------------------------------ exact relations between samplers


@pytest.mark.parametrize("clip_x0", [None, 1.0])
def test_ddim_eta_1_over_all_steps_is_ddpm_beta_tilde(diffusion, clip_x0):
    """Song et al. 2021, §4.1: η = 1 gives σ_t² = β̃_t and the DDPM mean, so with the same noise the chains agree."""
    net = TanhNet()
    x_T = torch.randn(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ddpm = ddpm_sample(net, diffusion, None, variance="beta_tilde", clip_x0=clip_x0, x_T=x_T,
                       generator=torch.Generator().manual_seed(1))
    ddim = ddim_sample(net, diffusion, None, num_steps=diffusion.T, eta=1.0, clip_x0=clip_x0, x_T=x_T,
                       generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(ddim.x, ddpm.x, rtol=1e-9, atol=1e-9)


def test_ddim_eta_0_is_deterministic(diffusion):
    net = TanhNet()
    x_T = torch.randn(16, 3, dtype=torch.float64)
    a = ddim_sample(net, diffusion, (16, 3), num_steps=10, x_T=x_T, generator=torch.Generator().manual_seed(0))
    b = ddim_sample(net, diffusion, (16, 3), num_steps=10, x_T=x_T, generator=torch.Generator().manual_seed(99))
    assert torch.equal(a.x, b.x)
    c = ddim_sample(net, diffusion, (16, 3), num_steps=10, eta=0.5, x_T=x_T, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(a.x, c.x)


def test_ddpm_adds_no_noise_at_the_last_step(diffusion):
    """x_T and one noise draw per step t = T−1, …, 1: exactly T draws, none for t = 0."""
    net = TanhNet()
    g = torch.Generator().manual_seed(7)
    ddpm_sample(net, diffusion, (5, 3), variance="beta", generator=g)
    reference = torch.Generator().manual_seed(7)
    for _ in range(diffusion.T):
        torch.randn(5, 3, generator=reference)
    assert torch.equal(torch.randn(4, generator=g), torch.randn(4, generator=reference))


def test_model_called_in_eval_mode_without_grad_and_restored(diffusion):
    net = TanhNet().train()
    ddpm_sample(net, diffusion, (4, 3), generator=torch.Generator().manual_seed(0))
    ddim_sample(net, diffusion, (4, 3), num_steps=5, generator=torch.Generator().manual_seed(0))
    assert net.training
    assert {(training, grad) for _, training, grad in net.calls} == {(False, False)}
    assert [t for t, _, _ in net.calls] == list(range(49, -1, -1)) + ddim_timesteps(50, 5)


# ------------------------------------------------------------------ recording


def test_ddpm_record_semantics(diffusion):
    net = TanhNet()
    x_T = torch.randn(6, 3, dtype=torch.float64)
    result = ddpm_sample(net, diffusion, (6, 3), x_T=x_T, record=[0, 49, 10],
                         generator=torch.Generator().manual_seed(0))
    assert isinstance(result, SampleResult)
    assert result.timesteps == [49, 10, 0]  # sampling order
    assert result.xs.shape == result.x0_preds.shape == (3, 6, 3)
    assert torch.equal(result.xs[0], x_T)  # the incoming state at t = T−1 is x_T
    torch.testing.assert_close(result.x, result.x0_preds[-1])  # the last step returns x̂0 predicted at t = 0
    empty = ddpm_sample(net, diffusion, (6, 3), x_T=x_T)
    assert empty.timesteps == [] and empty.xs.shape == (0, 6, 3)


def test_ddim_records_only_visited_steps(diffusion):
    net = TanhNet()
    result = ddim_sample(net, diffusion, (2, 3), num_steps=3, record=[49, 30, 24, 0],
                         generator=torch.Generator().manual_seed(0))
    assert ddim_timesteps(50, 3) == [49, 25, 0]
    assert result.timesteps == [49, 0]  # 30 and 24 are never visited
    torch.testing.assert_close(result.x, result.x0_preds[-1].to(result.x.dtype))


# ------------------------------------------------------------------ validation


def test_bad_inputs_raise(diffusion):
    net = TanhNet()
    with pytest.raises(ValueError, match="eta=1.5"):
        ddim_sample(net, diffusion, (2, 3), eta=1.5)
    with pytest.raises(ValueError, match="eta=-0.1"):
        ddim_sample(net, diffusion, (2, 3), eta=-0.1)
    with pytest.raises(ValueError, match="num_steps=51"):
        ddim_sample(net, diffusion, (2, 3), num_steps=51)
    with pytest.raises(ValueError, match=r"\[10, 20\]"):
        ddim_sample(net, diffusion, (2, 3), timesteps=[10, 20])
    with pytest.raises(ValueError, match=r"\[60, 0\]"):
        ddim_sample(net, diffusion, (2, 3), timesteps=[60, 0])
    with pytest.raises(ValueError, match="'huge'"):
        ddpm_sample(net, diffusion, (2, 3), variance="huge")
    with pytest.raises(ValueError, match="'score'"):
        ddim_sample(net, diffusion, (2, 3), prediction="score")
    with pytest.raises(ValueError, match="record timestep 50"):
        ddpm_sample(net, diffusion, (2, 3), record=[50])
    with pytest.raises(ValueError, match=r"\(2, 4\)"):
        ddpm_sample(net, diffusion, (2, 4), x_T=torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        ddpm_sample(lambda x, t: x[:, :2], diffusion, (2, 3))


# ------------------------------------------------------------------ sampling with the exact denoiser


def _assert_moments(x, mean, cov, n_sigma=5.0):
    """Sample mean and covariance within n_sigma Monte-Carlo standard errors of the target."""
    n = x.shape[0]
    x = x.double()
    mean_err = (x.mean(0) - mean).abs()
    assert (mean_err < n_sigma * (cov.diagonal() / n).sqrt()).all(), (x.mean(0), mean)
    centred = x - mean
    var_se = ((centred**2).var(0) / n).sqrt()  # SE of the variance estimate, from the samples themselves
    assert ((x.var(0) - cov.diagonal()).abs() < n_sigma * var_se).all(), (x.var(0), cov.diagonal())


@pytest.mark.parametrize("variance, T", [("beta_tilde", 1000), ("beta", 250)])
def test_ddpm_with_exact_eps_reproduces_a_gaussian(variance, T):
    """σ² = β̃ shrinks the variance by O(1/T) (−0.8 % at T = 1000, cosine); σ² = β is closer (+0.7 % at T = 250)."""
    d = Diffusion.from_schedule("cosine", T=T)
    data = GaussianMixture([1.0], [[1.0, -0.5]], [0.25])
    x = ddpm_sample(optimal_eps(data, d), d, (4000, 2), variance=variance, generator=torch.Generator().manual_seed(0)).x
    _assert_moments(x, data.mean(), data.covariance())


def test_samplers_with_exact_eps_reproduce_a_two_component_mixture():
    d = Diffusion.from_schedule("cosine", T=1000)
    data = GaussianMixture([0.3, 0.7], [[-3.0], [2.0]], [0.1, 0.2])  # components > 4 std away from 0
    n = 4000
    for sample in (
        lambda: ddpm_sample(optimal_eps(data, d), d, (n, 1), generator=torch.Generator().manual_seed(1)),
        lambda: ddim_sample(optimal_eps(data, d), d, (n, 1), num_steps=250, generator=torch.Generator().manual_seed(2)),
    ):
        x = sample().x
        _assert_moments(x, data.mean(), data.covariance())
        left = (x < 0).double().mean().item()  # mass of the left component
        assert abs(left - 0.3) < 5 * math.sqrt(0.3 * 0.7 / n)
        left_x = x[x < 0]
        assert abs(left_x.mean().item() + 3.0) < 5 * math.sqrt(0.1 / len(left_x))
        assert abs(left_x.var().item() - 0.1) < 5 * 0.1 * math.sqrt(2 / len(left_x))


# ------------------------------------------------------------------ one reverse step


def test_ddpm_step_is_one_iteration_of_ddpm_sample(diffusion):
    """Sampling by hand with ddpm_step gives the sampler's chain bit for bit (same noise draws)."""
    net = TanhNet()
    x_T = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = ddpm_sample(net, diffusion, None, x_T=x_T, clip_x0=1.0, generator=torch.Generator().manual_seed(1)).x
    g, x = torch.Generator().manual_seed(1), x_T
    with torch.no_grad():
        for t in range(diffusion.T - 1, -1, -1):
            out = ddpm_step(diffusion, net(x, torch.full((5,), t)), x, t, t - 1 if t else None, clip_x0=1.0,
                            generator=g)
            assert isinstance(out, StepResult)
            x = out.x_prev
    assert torch.equal(x, expected)


def test_ddpm_step_matches_algorithm_2(diffusion):
    """x_{t−1} = (x_t − β_t/√(1−ᾱ_t) ε)/√α_t + σ_t z (Ho et al. 2020, Algorithm 2), σ_t² = β_t; no noise at t = 0."""
    xt, eps = torch.randn(2, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for t in (17, 0):
        b, ab = diffusion.betas[t].item(), diffusion.alpha_bar[t].item()
        z = torch.randn(4, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64) if t > 0 else 0.0
        hand = (xt - b / math.sqrt(1 - ab) * eps) / math.sqrt(1 - b) + math.sqrt(b) * z
        got = ddpm_step(diffusion, eps, xt, t, t - 1 if t else None, variance="beta",
                        generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(got.x_prev, hand)


def test_ddim_step_deterministic_and_last_step(diffusion):
    """η = 0: x_s = √ᾱ_s x̂0 + √(1 − ᾱ_s) ε̂ (Song et al. 2021, Eq. 12); t_next=None returns x̂0."""
    xt, eps = torch.randn(2, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    t, s = 40, 25
    ab_t, ab_s = diffusion.alpha_bar[t].item(), diffusion.alpha_bar[s].item()
    x0_hat = (xt - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)
    out = ddim_step(diffusion, eps, xt, t, s)
    torch.testing.assert_close(out.x0_hat, x0_hat)
    torch.testing.assert_close(out.x_prev, math.sqrt(ab_s) * x0_hat + math.sqrt(1 - ab_s) * eps)
    last = ddim_step(diffusion, eps, xt, t, None)
    assert torch.equal(last.x_prev, last.x0_hat)


def test_step_bad_inputs_raise(diffusion):
    xt = torch.zeros(2, 3)
    for bad, match in ((50, "t must be an integer in"), (-1, "t must be"), (3.0, "t must be an integer"),
                       (True, "t must be an integer")):
        with pytest.raises(ValueError, match=match):
            ddpm_step(diffusion, xt, xt, bad, None)
        with pytest.raises(ValueError, match=match):
            ddim_step(diffusion, xt, xt, bad, None)
    for t_next in (10, 11, -1, 2.5):
        with pytest.raises(ValueError, match=f"t_next={t_next!r}"):
            ddim_step(diffusion, xt, xt, 10, t_next)
    for t, t_next in ((10, 8), (10, None), (0, 0), (10, 9.0), (10, True)):
        with pytest.raises(ValueError, match=f"t_next={t_next!r}"):
            ddpm_step(diffusion, xt, xt, t, t_next)
    with pytest.raises(ValueError, match="model_output must be a floating-point tensor"):
        ddpm_step(diffusion, torch.zeros(2, 3, dtype=torch.long), xt, 5, 4)
    with pytest.raises(ValueError, match=r"shape mismatch.*\(2, 4\)"):
        ddim_step(diffusion, torch.zeros(2, 4), xt, 5, 4)
    with pytest.raises(ValueError, match="eta=inf"):
        ddim_step(diffusion, xt, xt, 10, 5, eta=float("inf"))
    with pytest.raises(ValueError, match="'huge'"):
        ddpm_step(diffusion, xt, xt, 5, 4, variance="huge")


def test_sampler_bad_inputs_with_clear_errors(diffusion):
    net = TanhNet()
    with pytest.raises(ValueError, match=r"every entry of shape=\(2, True\)"):
        ddpm_sample(net, diffusion, (2, True))
    with pytest.raises(ValueError, match="x_T must be a floating-point tensor, got dtype torch.int64"):
        ddpm_sample(net, diffusion, None, x_T=torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="record timestep '5'"):
        ddpm_sample(net, diffusion, (2, 3), record=["5"])
    with pytest.raises(ValueError, match="timesteps must be a non-empty sequence of ints"):
        ddim_sample(net, diffusion, (2, 3), timesteps=[40.5, 0])
    with pytest.raises(ValueError, match="clip_x0"):
        ddim_sample(net, diffusion, (2, 3), clip_x0=float("nan"))
    with pytest.raises(ValueError, match="the model must return a tensor"):
        ddim_sample(lambda x, t: x.numpy(), diffusion, (2, 3))



def test_sample_loop_over_a_wrapped_public_step(diffusion):
    """sample_loop is public and keyword-only after its four leading arguments; over a public step it is the sampler."""
    net = TanhNet()
    x_T = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    steps = ddim_timesteps(diffusion.T, 6)
    g = torch.Generator().manual_seed(1)

    def step(d, output, x, t, t_next, tt, previous):
        return ddim_step(d, output, x, t, t_next, eta=0.5, clip_x0=1.0, generator=g)

    looped = sample_loop(net, diffusion, step, steps, x_T=x_T, record=[steps[1]])
    expected = ddim_sample(net, diffusion, None, num_steps=6, eta=0.5, clip_x0=1.0, x_T=x_T, record=[steps[1]],
                           generator=torch.Generator().manual_seed(1))
    assert torch.equal(looped.x, expected.x) and torch.equal(looped.xs, expected.xs)
    with pytest.raises(TypeError):
        sample_loop(net, diffusion, step, steps, (4, 3))  # shape is keyword-only
    with pytest.raises(ValueError, match="step must be a callable step body, got 'ddim'"):
        sample_loop(net, diffusion, "ddim", steps, shape=(4, 3))
    with pytest.raises(ValueError, match=r"timesteps must be strictly descending, got \[3, 3\]"):
        sample_loop(net, diffusion, step, [3, 3], shape=(4, 3))


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm"])
def test_a_network_that_returns_nan_is_named_once_at_the_end(sampler):
    """A NaN from the network (here from step t = 20 on) is no silent NaN sample: the end of the call names it."""
    diffusion = Diffusion.from_schedule("linear", T=50)

    def broken(x, t):
        return torch.where(t[:, None] <= 20, torch.full_like(x, float("nan")), torch.zeros_like(x))

    run = {"ddpm": lambda **kw: samplers.ddpm_sample(broken, diffusion, (3, 2), **kw),
           "ddim": lambda **kw: samplers.ddim_sample(broken, diffusion, (3, 2), num_steps=10, **kw),
           "dpm": lambda **kw: samplers.dpm_solver_sample(broken, diffusion, (3, 2), num_steps=10, **kw)}[sampler]
    with pytest.raises(FloatingPointError, match=r"holds 6 non-finite values .* of 6"):
        run(generator=torch.Generator().manual_seed(0))
    with pytest.raises(FloatingPointError, match=r"first recorded step with a non-finite x_t or x̂0 is t=\d+"):
        run(generator=torch.Generator().manual_seed(0), record=range(50))


# ------------------------------------------------------------------ samplers by name (notebook 04's table)


def test_by_name_gives_the_sampler_and_settings_a_table_row_names():
    from ddpm_helpers.evaluation.reference_results import load_results

    assert samplers.by_name("DDIM, 20 steps, η = 1") == (ddim_sample, {"num_steps": 20, "eta": 1.0})
    assert samplers.by_name("DPM-Solver++(2M), 10 steps") == (samplers.dpm_solver_sample, {"num_steps": 10})
    assert samplers.by_name("DDPM, 1000 steps") == (ddpm_sample, {})
    assert samplers.network_calls("DDPM, 1000 steps") == 1000 and samplers.network_calls("DDIM, 50 steps, η = 0") == 50
    kwargs = samplers.by_name("DDIM, 10 steps, η = 0")[1]
    kwargs["num_steps"] = 99  # a caller's edit must not change the table
    assert samplers.by_name("DDIM, 10 steps, η = 0")[1]["num_steps"] == 10
    table = load_results("mnist_samplers")  # every row of the committed table names a sampler found here
    assert {row["sampler"] for row in table["rows"]} <= set(samplers.named.NAMED)
    with pytest.raises(ValueError, match="unknown sampler 'DDIM, 7 steps'"):
        samplers.by_name("DDIM, 7 steps")

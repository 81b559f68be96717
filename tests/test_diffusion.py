"""Forward process, posterior and parameterizations of Diffusion, each checked against an independent oracle."""

import math

import numpy as np
import pytest
import torch

from ddpm_helpers.diffusion import Diffusion, extract
from ddpm_helpers.utils import noise_like


@pytest.fixture(scope="module")
def diffusion():
    return Diffusion.from_schedule("linear", T=50)


def _alpha_bar_list(betas):
    """ᾱ_t by an explicit loop over the one-step factors α_s = 1 − β_s."""
    out, prod = [], 1.0
    for b in betas.tolist():
        prod *= 1.0 - b
        out.append(prod)
    return out


# ------------------------------------------------------------------ convention and tables


def test_timestep_convention_zero_based():
    """Code t = 0 is the paper's step 1: ᾱ[0] = 1 − β_1, ᾱ_prev[0] = ᾱ_0 = 1, β̃ at t = 0 is 0."""
    d = Diffusion.from_schedule("cosine", T=100)
    assert d.alpha_bar[0].item() == 1.0 - d.betas[0].item()
    assert d.alpha_bar_prev[0].item() == 1.0
    assert torch.equal(d.alpha_bar_prev[1:], d.alpha_bar[:-1])
    assert d.posterior_variance[0].item() == 0.0
    assert d.posterior_log_variance_clipped[0].item() == math.log(d.posterior_variance[1].item())
    assert torch.equal(d.posterior_log_variance_clipped[1:], d.posterior_variance[1:].log())
    x0 = torch.randn(3, 2, dtype=torch.float64)
    eps = torch.randn(3, 2, dtype=torch.float64)
    t0 = torch.zeros(3, dtype=torch.long)
    b1 = d.betas[0].item()
    # q_sample(x0, t=0) is the paper's x_1 = √(1 − β_1) x0 + √β_1 ε
    torch.testing.assert_close(d.q_sample(x0, t0, eps), math.sqrt(1 - b1) * x0 + math.sqrt(b1) * eps)


def test_tables_are_float64_length_T(diffusion):
    names = ["betas", "alphas", "alpha_bar", "alpha_bar_prev", "sqrt_alpha_bar", "sqrt_one_minus_alpha_bar",
             "sqrt_recip_alpha_bar", "sqrt_recipm1_alpha_bar", "snr", "log_snr", "posterior_variance",
             "posterior_log_variance_clipped", "posterior_mean_coef_x0", "posterior_mean_coef_xt"]
    for name in names:
        table = getattr(diffusion, name)
        assert table.dtype == torch.float64 and table.shape == (diffusion.T,), name
    np.testing.assert_allclose(diffusion.alpha_bar.numpy(), _alpha_bar_list(diffusion.betas), rtol=1e-12)
    torch.testing.assert_close(diffusion.log_snr.exp(), diffusion.snr)


# ------------------------------------------------------------------ extract


def test_extract_shape_dtype_and_values():
    table = torch.arange(10, dtype=torch.float64) / 3
    x = torch.zeros(4, 3, 5, 5)
    t = torch.tensor([0, 9, 3, 3])
    out = extract(table, t, x)
    assert out.shape == (4, 1, 1, 1) and out.dtype == torch.float32
    assert out.flatten().tolist() == pytest.approx([0.0, 3.0, 1.0, 1.0])


def test_extract_refuses_mask_like_t():
    """A bool or uint8 t would index as a mask; extract checks the dtype (metadata only, no sync)."""
    for dtype in (torch.bool, torch.uint8, torch.float32):
        with pytest.raises(ValueError, match=str(dtype)):
            extract(torch.ones(10), torch.ones(2, dtype=dtype), torch.zeros(2, 3))


@pytest.mark.parametrize("bad_t", [-1, 10, 123])
def test_out_of_range_t_raises_at_the_entry_points(bad_t):
    d = Diffusion(torch.full((10,), 0.1))
    x = torch.zeros(2, 3)
    for call in (lambda t: d.q_sample(x, t), lambda t: d.q_mean_variance(x, t), lambda t: d.q_posterior(x, x, t),
                 lambda t: d.predict_x0_from_eps(x, t, x), lambda t: d.p_mean_variance(x, x, t)):
        with pytest.raises(ValueError, match=rf"t=\[{bad_t}\]"):
            call(torch.tensor([0, bad_t]))


def test_bad_t_raises_at_the_entry_points():
    d = Diffusion(torch.full((10,), 0.1))
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"\(2, 1\)"):
        d.q_sample(x, torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \(2,\), got shape \(3,\)"):
        d.q_sample(x, torch.zeros(3, dtype=torch.long))
    for dtype in (torch.float32, torch.uint8, torch.bool, torch.int16):
        with pytest.raises(ValueError, match=f"int64.*{dtype}"):
            d.q_sample(x, torch.zeros(2, dtype=dtype))
    torch.testing.assert_close(d.q_sample(x, torch.zeros(2, dtype=torch.int32), x),
                               d.q_sample(x, torch.zeros(2, dtype=torch.long), x))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.int32, torch.bool])
def test_integer_data_raises_naming_the_dtype(diffusion, dtype):
    """Integer x0/x_t used to be multiplied by tables cast to their integer dtype: silent zeros."""
    bad, good, t = torch.ones(4, 3, dtype=dtype), torch.ones(4, 3), torch.full((4,), 10)
    calls = {"x0": lambda: diffusion.q_sample(bad, t), "eps": lambda: diffusion.q_sample(good, t, bad),
             "xt": lambda: diffusion.q_posterior(good, bad, t),
             "model_output": lambda: diffusion.p_mean_variance(bad, good, t)}
    for name, call in calls.items():
        with pytest.raises(ValueError, match=rf"{name} must be a floating-point tensor, got dtype {dtype}"):
            call()


def test_tables_are_cached_per_device_and_dtype(diffusion):
    x32, x64 = torch.zeros(2), torch.zeros(2, dtype=torch.float64)
    a = diffusion.table("alpha_bar", x32)
    assert a.dtype == torch.float32 and diffusion.table("alpha_bar", torch.ones(5, 1)) is a  # converted once
    assert diffusion.table("alpha_bar", x64) is diffusion.alpha_bar  # already float64 on the CPU: no copy
    torch.testing.assert_close(a, diffusion.alpha_bar.float())


def test_betas_so_small_that_alpha_bar_rounds_to_one_raise():
    with pytest.raises(ValueError, match=r"betas too small.*t=\[0, 1\]"):
        Diffusion(torch.tensor([1e-17, 1e-17, 0.1]))


# ------------------------------------------------------------------ forward process


def test_closed_form_matches_iterated_one_step_chain():
    """Iterate x_t = √(1 − β_t) x_{t−1} + √β_t ε by Monte Carlo and compare with q(x_t | x0) (Eq. 4)."""
    d = Diffusion.from_schedule("cosine", T=40)
    g = torch.Generator().manual_seed(0)
    n = 20000
    x0 = torch.tensor([1.5, -0.5, 0.0], dtype=torch.float64)
    x = x0.expand(n, 3).clone()
    for t in range(d.T):
        beta = d.betas[t].item()
        x = math.sqrt(1 - beta) * x + math.sqrt(beta) * torch.randn(n, 3, generator=g, dtype=torch.float64)
        if t in (0, 9, 25, 39):
            mean, var = d.q_mean_variance(x0.expand(1, 3), torch.tensor([t]))
            mean, var = mean[0], var.item()
            mc_mean, mc_var = x.mean(0), x.var(0)
            assert (mc_mean - mean).abs().max() < 5 * math.sqrt(var / n), t
            assert (mc_var - var).abs().max() < 5 * var * math.sqrt(2 / (n - 1)), t


def test_q_sample_uses_given_noise_and_generator(diffusion):
    x0 = torch.randn(8, 2)
    t = torch.full((8,), 20)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    torch.testing.assert_close(diffusion.q_sample(x0, t, generator=g1), diffusion.q_sample(x0, t, generator=g2))
    eps = noise_like(x0, torch.Generator().manual_seed(3))
    torch.testing.assert_close(diffusion.q_sample(x0, t, eps),
                               diffusion.q_sample(x0, t, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match=r"\(8, 3\)"):
        diffusion.q_sample(x0, t, torch.zeros(8, 3))


def test_sample_timesteps_uniform_and_reproducible(diffusion):
    t = diffusion.sample_timesteps(20000, generator=torch.Generator().manual_seed(0))
    assert t.dtype == torch.long and t.shape == (20000,)
    assert t.min().item() == 0 and t.max().item() == diffusion.T - 1
    counts = torch.bincount(t, minlength=diffusion.T).double()
    expected = 20000 / diffusion.T
    assert ((counts - expected).abs() < 5 * math.sqrt(expected)).all()
    again = diffusion.sample_timesteps(20000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(t, again)
    with pytest.raises(ValueError, match="batch_size"):
        diffusion.sample_timesteps(0)


# ------------------------------------------------------------------ posterior


def test_posterior_matches_bayes_rule_on_joint_gaussian(diffusion):
    """Condition the joint Gaussian of (x_{t−1}, x_t) given x0 on x_t and compare with Eqs. 6–7."""
    abar = _alpha_bar_list(diffusion.betas)
    ts = list(range(diffusion.T))
    B = len(ts)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(B, 3, generator=g, dtype=torch.float64)
    xt = torch.randn(B, 3, generator=g, dtype=torch.float64)
    mean, var, log_var = diffusion.q_posterior(x0, xt, torch.tensor(ts))
    for i, t in enumerate(ts):
        beta = diffusion.betas[t].item()
        a_prev = abar[t - 1] if t > 0 else 1.0
        # x_{t−1} = √ā_prev x0 + √(1 − ā_prev) z1 ;  x_t = √(1 − β) x_{t−1} + √β z2
        mu1, mu2 = math.sqrt(a_prev) * x0[i], math.sqrt(a_prev * (1 - beta)) * x0[i]
        s11 = 1 - a_prev
        s12 = math.sqrt(1 - beta) * s11
        s22 = (1 - beta) * s11 + beta
        cond_mean = mu1 + s12 / s22 * (xt[i] - mu2)  # μ1 + Σ12 Σ22⁻¹ (x_t − μ2)
        cond_var = s11 - s12**2 / s22  # Σ11 − Σ12² / Σ22
        torch.testing.assert_close(mean[i], cond_mean, rtol=1e-10, atol=1e-12)
        assert var[i].item() == pytest.approx(cond_var, rel=1e-10, abs=1e-15)
        if t > 0:
            assert log_var[i].item() == pytest.approx(math.log(cond_var), rel=1e-10)
    torch.testing.assert_close(mean[0], x0[0])  # at t = 0 the posterior is a point mass at x0


# ------------------------------------------------------------------ parameterizations


def _sample_triplet(d, shape=(6, 2, 3), dtype=torch.float64):
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(shape, generator=g, dtype=dtype)
    eps = torch.randn(shape, generator=g, dtype=dtype)
    t = torch.tensor([0, 1, 10, 25, 48, 49])
    return x0, eps, t, d.q_sample(x0, t, eps)


def test_eps_x0_v_round_trips(diffusion):
    x0, eps, t, xt = _sample_triplet(diffusion)
    torch.testing.assert_close(diffusion.predict_x0_from_eps(xt, t, eps), x0)
    torch.testing.assert_close(diffusion.predict_eps_from_x0(xt, t, x0), eps)
    v = diffusion.v_from_x0_eps(x0, t, eps)
    torch.testing.assert_close(diffusion.predict_x0_from_v(xt, t, v), x0)
    torch.testing.assert_close(diffusion.predict_eps_from_v(xt, t, v), eps)


def test_v_is_the_rotated_velocity(diffusion):
    """Salimans & Ho 2022: with φ = atan2(σ, α), x_t = cos φ x0 + sin φ ε and v = dx_t/dφ = cos φ ε − sin φ x0."""
    x0, eps, t, xt = _sample_triplet(diffusion)
    abar = torch.tensor(_alpha_bar_list(diffusion.betas), dtype=torch.float64)[t].reshape(-1, 1, 1)
    phi = torch.atan2((1 - abar).sqrt(), abar.sqrt())
    torch.testing.assert_close(xt, torch.cos(phi) * x0 + torch.sin(phi) * eps)
    torch.testing.assert_close(diffusion.v_from_x0_eps(x0, t, eps), torch.cos(phi) * eps - torch.sin(phi) * x0)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_model_predictions_agree_across_parameterizations(diffusion, prediction):
    x0, eps, t, xt = _sample_triplet(diffusion)
    output = {"eps": eps, "x0": x0, "v": diffusion.v_from_x0_eps(x0, t, eps)}[prediction]
    eps_hat, x0_hat = diffusion.model_predictions(output, xt, t, prediction)
    torch.testing.assert_close(eps_hat, eps)
    torch.testing.assert_close(x0_hat, x0)


def test_clipped_x0_keeps_eps_consistent(diffusion):
    x0, eps, t, xt = _sample_triplet(diffusion)
    eps_hat, x0_hat = diffusion.model_predictions(3 * eps, xt, t, "eps", clip_x0=1.0)
    assert x0_hat.abs().max() <= 1.0
    torch.testing.assert_close(diffusion.q_sample(x0_hat, t, eps_hat), xt)


def test_model_mean_eq_11_equals_posterior_mean_of_x0_hat(diffusion):
    """μ_θ = (x_t − β_t/√(1 − ᾱ_t) ε)/√α_t (Eq. 11) is μ̃_t(x_t, x̂0(ε)) (Eq. 7)."""
    _, eps, t, xt = _sample_triplet(diffusion)
    out = diffusion.p_mean_variance(eps, xt, t, "eps", "beta_tilde")
    torch.testing.assert_close(out.mean, diffusion.predict_mean_from_eps(xt, t, eps))
    abar = _alpha_bar_list(diffusion.betas)
    for i, ti in enumerate(t.tolist()):
        beta = diffusion.betas[ti].item()
        hand = (xt[i] - beta / math.sqrt(1 - abar[ti]) * eps[i]) / math.sqrt(1 - beta)
        torch.testing.assert_close(out.mean[i], hand)


def test_p_mean_variance_variances(diffusion):
    _, eps, t, xt = _sample_triplet(diffusion, dtype=torch.float32)
    small = diffusion.p_mean_variance(eps, xt, t, variance="beta_tilde")
    large = diffusion.p_mean_variance(eps, xt, t, variance="beta")
    assert small.mean.dtype == torch.float32 and small.variance.shape == (6, 1, 1)
    assert small.variance[0].item() == 0.0  # t = 0: no noise at the last step
    assert small.log_variance[0].item() == pytest.approx(math.log(diffusion.posterior_variance[1].item()), rel=1e-6)
    torch.testing.assert_close(large.variance.flatten(), diffusion.betas[t].float())
    torch.testing.assert_close(large.log_variance.exp(), large.variance)
    assert (small.variance[1:] < large.variance[1:]).all()  # β̃_t < β_t


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("betas, match", [([0.1, 0.0, 0.2], r"0\.0"), ([0.1, 1.0], r"1\.0"), ([0.1, -0.2], r"-0\.2"),
                                          ([0.1], r"\(1,\)"), ([[0.1, 0.2]], r"\(1, 2\)")])
def test_bad_betas_raise(betas, match):
    with pytest.raises(ValueError, match=match):
        Diffusion(torch.tensor(betas))


def test_unknown_names_raise(diffusion):
    x0, eps, t, xt = _sample_triplet(diffusion)
    with pytest.raises(ValueError, match="'score'"):
        diffusion.model_predictions(eps, xt, t, "score")
    with pytest.raises(ValueError, match="'learned'"):
        diffusion.p_mean_variance(eps, xt, t, variance="learned")
    with pytest.raises(ValueError, match="clip_x0=-1"):
        diffusion.model_predictions(eps, xt, t, clip_x0=-1)
    with pytest.raises(ValueError, match="'cosine2'"):
        Diffusion.from_schedule("cosine2", 100)
    with pytest.raises(ValueError, match=r"\(6, 3\)"):
        diffusion.model_predictions(eps[:, 0], xt, t)
    with pytest.raises(ValueError, match=r"t=\[50, 50"):
        diffusion.q_sample(x0, torch.full((6,), 50))

"""Gaussian mixtures and the exact ε-predictor against SciPy, autograd and Monte Carlo."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from ddpm_helpers.analytic import GaussianMixture, optimal_eps
from ddpm_helpers.diffusion import Diffusion


@pytest.fixture(scope="module")
def mixture():
    return GaussianMixture([0.2, 0.5, 0.3], [[-2.0, 1.0], [1.0, 0.0], [0.5, 2.5]], [0.3, 0.5, 0.1])


def _scipy_log_prob(mixture, x):
    dens = sum(w * stats.multivariate_normal(m, v * np.eye(mixture.dim)).pdf(x)
               for w, m, v in zip(mixture.weights.numpy(), mixture.means.numpy(), mixture.variances.numpy()))
    return np.log(dens)


def test_log_prob_matches_scipy(mixture):
    x = torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2
    np.testing.assert_allclose(mixture.log_prob(x).numpy(), _scipy_log_prob(mixture, x.numpy()), rtol=1e-10)
    assert mixture.log_prob(x.float()).dtype == torch.float32


def test_sample_moments(mixture):
    n = 40000
    x = mixture.sample(n, torch.Generator().manual_seed(1)).double()
    assert x.shape == (n, 2)
    means = torch.tensor([[-2.0, 1.0], [1.0, 0.0], [0.5, 2.5]], dtype=torch.float64)
    mean = sum(w * m for w, m in zip([0.2, 0.5, 0.3], means))
    torch.testing.assert_close(mixture.mean(), mean)
    cov = mixture.covariance()
    assert ((x.mean(0) - mean).abs() < 5 * (cov.diagonal() / n).sqrt()).all()
    torch.testing.assert_close(torch.cov(x.T), cov, atol=0.05, rtol=0.0)


def test_score_matches_autograd(mixture):
    x = (torch.randn(20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 2).requires_grad_()
    (grad,) = torch.autograd.grad(mixture.log_prob(x).sum(), x)
    torch.testing.assert_close(mixture.score(x.detach()), grad)


def test_noised_mixture_is_the_law_of_x_t():
    """x_t = √ᾱ x0 + √(1 − ᾱ) ε with x0 from a 1-D mixture: Kolmogorov–Smirnov test against noised(ᾱ)."""
    base = GaussianMixture([0.4, 0.6], [[-1.5], [2.0]], [0.2, 0.05])
    abar = 0.6
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(20000, 1, generator=g, dtype=torch.float64)
    xt = math.sqrt(abar) * base.sample(20000, g).double() + math.sqrt(1 - abar) * noise
    noised = base.noised(abar)

    def cdf(v):
        return sum(w * stats.norm.cdf(v, m[0], math.sqrt(s2))
                   for w, m, s2 in zip(noised.weights.numpy(), noised.means.numpy(), noised.variances.numpy()))

    assert stats.kstest(xt[:, 0].numpy(), cdf).pvalue > 1e-3
    assert stats.kstest(xt[:, 0].numpy(), lambda v: stats.norm.cdf(v, 0.5, 1.4)).pvalue < 1e-6  # the test has power


def test_optimal_eps_for_a_single_gaussian_closed_form():
    """x0 ~ N(μ, s²I): E[ε | x_t] = √(1 − ᾱ) (x_t − √ᾱ μ) / (ᾱ s² + 1 − ᾱ)."""
    d = Diffusion.from_schedule("cosine", T=100)
    mu, s2 = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64), 0.3
    model = optimal_eps(GaussianMixture([1.0], mu[None], [s2]), d)
    t = torch.tensor([0, 20, 50, 99])
    xt = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    abar = d.alpha_bar[t].unsqueeze(1)
    expected = (1 - abar).sqrt() * (xt - abar.sqrt() * mu) / (abar * s2 + 1 - abar)
    torch.testing.assert_close(model(xt, t), expected)


def test_optimal_eps_is_minus_scaled_score_of_noised_mixture(mixture):
    d = Diffusion.from_schedule("linear", T=200)
    model = optimal_eps(mixture, d)
    t = torch.tensor([0, 1, 50, 120, 199])
    xt = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * 2
    for i, ti in enumerate(t.tolist()):
        abar = d.alpha_bar[ti].item()
        x = xt[i : i + 1].clone().requires_grad_()
        (grad,) = torch.autograd.grad(mixture.noised(abar).log_prob(x).sum(), x)
        torch.testing.assert_close(model(xt, t)[i], -math.sqrt(1 - abar) * grad[0])


def test_optimal_eps_is_the_conditional_mean_by_monte_carlo():
    """Regress ε on x_t by binning simulated pairs: the bin averages match E[ε | x_t] at the bin centres."""
    d = Diffusion.from_schedule("linear", T=100)
    data = GaussianMixture([0.5, 0.5], [[-1.0], [1.0]], [0.05, 0.05])
    t_index = 30
    g = torch.Generator().manual_seed(6)
    n = 200000
    x0 = data.sample(n, g).double()
    eps = torch.randn(n, 1, generator=g, dtype=torch.float64)
    t = torch.full((n,), t_index)
    xt = d.q_sample(x0, t, eps)[:, 0]
    edges = torch.linspace(-1.5, 1.5, 31, dtype=torch.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    which = torch.bucketize(xt, edges) - 1
    model = optimal_eps(data, d)
    for k, c in enumerate(centres):
        in_bin = which == k
        m = int(in_bin.sum())
        if m < 500:
            continue
        mc_mean = eps[in_bin, 0].mean().item()
        se = eps[in_bin, 0].std().item() / math.sqrt(m)
        # the exact value averaged over the bin (the bin width makes E[ε|x_t] vary inside the bin)
        exact = model(xt[in_bin, None], t[in_bin])[:, 0].mean().item()
        assert abs(mc_mean - exact) < 5 * se, (c.item(), mc_mean, exact, se)


def test_optimal_eps_accepts_image_shaped_input():
    d = Diffusion.from_schedule("linear", T=50)
    data = GaussianMixture([0.5, 0.5], torch.stack([torch.zeros(4), torch.ones(4)]), [0.1, 0.2])
    xt = torch.randn(3, 1, 2, 2)
    out = optimal_eps(data, d)(xt, torch.tensor([0, 10, 49]))
    assert out.shape == xt.shape and out.dtype == torch.float32
    flat = optimal_eps(data, d)(xt.reshape(3, 4), torch.tensor([0, 10, 49]))
    torch.testing.assert_close(out.reshape(3, 4), flat)


def test_bad_inputs_raise(mixture):
    with pytest.raises(ValueError, match=r"-0\.5"):
        GaussianMixture([1.5, -0.5], [[0.0], [1.0]], [1.0, 1.0])
    with pytest.raises(ValueError, match=r"\(2,\)"):
        GaussianMixture([0.5, 0.5], [0.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match=r"0\.0"):
        GaussianMixture([0.5, 0.5], [[0.0], [1.0]], [1.0, 0.0])
    with pytest.raises(ValueError, match="alpha_bar=1.5"):
        mixture.noised(1.5)
    with pytest.raises(ValueError, match="n=0"):
        mixture.sample(0)
    with pytest.raises(ValueError, match=r"\(4, 3\)"):
        mixture.log_prob(torch.zeros(4, 3))

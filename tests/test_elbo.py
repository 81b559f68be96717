"""ELBO pieces: KLs and likelihoods against torch.distributions/SciPy, and a bound that must be tight."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from ddpm_helpers.analytic import GaussianMixture, optimal_eps
from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.elbo import (
    bits_per_dim,
    discretized_gaussian_log_likelihood,
    elbo_terms,
    gaussian_log_likelihood,
    normal_kl,
    prior_kl,
)

D = torch.distributions


def test_normal_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(100, generator=g, dtype=torch.float64), torch.randn(100, generator=g, dtype=torch.float64)
    lv1, lv2 = torch.randn(100, generator=g, dtype=torch.float64), torch.randn(100, generator=g, dtype=torch.float64)
    expected = D.kl_divergence(D.Normal(m1, (0.5 * lv1).exp()), D.Normal(m2, (0.5 * lv2).exp()))
    torch.testing.assert_close(normal_kl(m1, lv1, m2, lv2), expected)
    assert normal_kl(m1, lv1, m1, lv1).abs().max() < 1e-12
    assert normal_kl(0.3, math.log(0.2), 0.3, math.log(0.2)).item() == pytest.approx(0.0, abs=1e-15)


def test_gaussian_log_likelihood_matches_torch_distributions():
    x, mean, log_var = torch.randn(3, 50, dtype=torch.float64)
    expected = D.Normal(mean, (0.5 * log_var).exp()).log_prob(x)
    torch.testing.assert_close(gaussian_log_likelihood(x, mean, log_var), expected)


@pytest.mark.parametrize("mean, log_scale", [(0.0, math.log(0.01)), (0.37, math.log(0.3)), (-0.999, math.log(2.0)),
                                             (1.4, math.log(0.05)), (0.2, math.log(1e-4))])
def test_discretized_likelihood_is_a_distribution_over_256_bins(mean, log_scale):
    bins = torch.linspace(-1, 1, 256, dtype=torch.float64)
    logp = discretized_gaussian_log_likelihood(bins, torch.full_like(bins, mean), torch.full_like(bins, log_scale))
    assert logp.exp().sum().item() == pytest.approx(1.0, abs=1e-9)
    assert (logp <= 0).all()


def test_discretized_likelihood_matches_scipy_bin_masses():
    bins = torch.linspace(-1, 1, 256, dtype=torch.float64)
    mean, std = 0.1, 0.2
    logp = discretized_gaussian_log_likelihood(bins, torch.full_like(bins, mean), torch.full_like(bins, math.log(std)))
    edges = np.concatenate([[-np.inf], (bins.numpy()[:-1] + bins.numpy()[1:]) / 2, [np.inf]])  # bin k: x_k ± 1/255
    masses = np.diff(stats.norm.cdf(edges, loc=mean, scale=std))
    ok = masses > 1e-10
    np.testing.assert_allclose(logp.exp().numpy()[ok], masses[ok], rtol=1e-8, atol=1e-15)


def test_discretized_likelihood_rejects_data_outside_unit_interval():
    with pytest.raises(ValueError, match="1.5"):
        discretized_gaussian_log_likelihood(torch.tensor([0.0, 1.5]), torch.zeros(2), torch.zeros(2))


def test_prior_kl_matches_torch_distributions():
    d = Diffusion.from_schedule("linear", T=100)
    x0 = torch.randn(5, 2, 3, dtype=torch.float64)
    abar = d.alpha_bar[-1].item()
    q = D.Normal(math.sqrt(abar) * x0, math.sqrt(1 - abar))
    expected = D.kl_divergence(q, D.Normal(torch.zeros_like(x0), 1.0)).sum(dim=(1, 2))
    torch.testing.assert_close(prior_kl(d, x0), expected)
    assert prior_kl(d, x0).max() < 1e-3  # ᾱ_T ≈ 4e-5: x_T is almost pure noise


def test_bits_per_dim():
    assert bits_per_dim(torch.tensor(784 * math.log(2)), 784).item() == pytest.approx(1.0)
    assert bits_per_dim(2 * math.log(2) * 3, 3) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="num_dims=0"):
        bits_per_dim(1.0, 0)


def _standard_normal_elbo(variance, n=3000, T=40):
    d = Diffusion.from_schedule("cosine", T=T)
    data = GaussianMixture([1.0], [[0.0, 0.0]], [1.0])  # x0 ~ N(0, I₂)
    x0 = torch.tensor([[0.8, -1.3]], dtype=torch.float64).expand(n, 2)
    terms = elbo_terms(optimal_eps(data, d), d, x0, variance=variance, decoder="gaussian",
                       generator=torch.Generator().manual_seed(0))
    exact_nll = -data.log_prob(x0[:1]).item()
    return terms, exact_nll


def test_elbo_is_tight_when_the_reverse_process_is_exact():
    """For x0 ~ N(0, I) the true reverse step q(x_{t−1} | x_t) is N(√α_t x_t, β_t): with the exact ε and σ_t² = β_t
    the model's joint equals q's, so E_noise[L] = −log p(x0) exactly (for every T)."""
    terms, exact_nll = _standard_normal_elbo("beta")
    total = terms["total"]
    assert abs(total.mean().item() - exact_nll) < 5 * total.std().item() / math.sqrt(len(total))


def test_elbo_bounds_nll_with_beta_tilde():
    terms, exact_nll = _standard_normal_elbo("beta_tilde")
    total = terms["total"]
    n, T = total.shape[0], 40
    assert terms["kl"].shape == (n, T - 1) and terms["prior"].shape == terms["decoder_nll"].shape == (n,)
    assert (terms["kl"] >= 0).all()
    torch.testing.assert_close(total, terms["prior"] + terms["kl"].sum(1) + terms["decoder_nll"])
    assert total.mean().item() - exact_nll > 5 * total.std().item() / math.sqrt(n)  # a strict, visible gap


class TinyNet(torch.nn.Module):
    """A training-mode network with dropout: elbo_terms must switch it to eval and back."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.5))
        self.drop = torch.nn.Dropout(0.5)
        self.seen = []

    def forward(self, xt, t):
        self.seen.append((self.training, torch.is_grad_enabled()))
        return self.drop(self.scale * xt)


def test_elbo_on_images_with_discretized_decoder():
    d = Diffusion.from_schedule("linear", T=30)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 256, (3, 1, 4, 4), generator=g).float() / 127.5 - 1  # pixels on the 256-level grid
    net = TinyNet().train()
    terms = elbo_terms(net, d, x0, decoder="discretized", generator=g)
    assert net.training and set(net.seen) == {(False, False)} and len(net.seen) == d.T
    assert terms["kl"].shape == (3, d.T - 1)
    assert (terms["decoder_nll"] >= 0).all()  # discrete probabilities are ≤ 1
    bpd = bits_per_dim(terms["total"], 16)
    assert torch.isfinite(bpd).all() and (bpd > 0).all()


def test_elbo_bad_inputs_raise():
    d = Diffusion.from_schedule("linear", T=30)
    identity = lambda xt, t: xt  # noqa: E731
    with pytest.raises(ValueError, match="'bernoulli'"):
        elbo_terms(identity, d, torch.zeros(2, 2), decoder="bernoulli")
    with pytest.raises(ValueError, match="'learned'"):
        elbo_terms(identity, d, torch.zeros(2, 2), variance="learned")
    with pytest.raises(ValueError, match="3"):
        elbo_terms(identity, d, torch.full((2, 2), 3.0), decoder="discretized")
    with pytest.raises(ValueError, match=r"\(2, 1\)"):
        elbo_terms(lambda xt, t: xt[:, :1], d, torch.zeros(2, 2))


def test_kl_column_0_is_the_hand_computed_kl_at_code_t_1():
    """Column 0 of ``kl`` is L_1 = KL(q(x_1 | x_2, x_0) ‖ p_θ(x_1 | x_2)), computed at code ``t = 1`` (paper step 2)."""
    T = 5
    betas = [0.1, 0.2, 0.3, 0.4, 0.5]
    d = Diffusion(torch.tensor(betas, dtype=torch.float64))
    x0 = torch.tensor([[0.3, -0.7]], dtype=torch.float64)
    terms = elbo_terms(lambda xt, t: 0.5 * xt, d, x0, variance="beta", decoder="gaussian",
                       generator=torch.Generator().manual_seed(7))
    # elbo_terms draws one noise per step for t = T−1, …, 0: code t = 1 uses the (T−1)-th draw
    g = torch.Generator().manual_seed(7)
    eps = [torch.randn(1, 2, generator=g, dtype=torch.float64) for _ in range(T)][T - 2][0].tolist()
    a1, a2 = 1 - betas[0], (1 - betas[0]) * (1 - betas[1])  # paper's ᾱ_1, ᾱ_2
    b2 = betas[1]  # paper's β_2
    kl = 0.0
    for x0_i, eps_i in zip(x0[0].tolist(), eps):
        x2 = math.sqrt(a2) * x0_i + math.sqrt(1 - a2) * eps_i  # x_2 ~ q(x_2 | x_0), Eq. 4
        mu_q = math.sqrt(a1) * b2 / (1 - a2) * x0_i + math.sqrt(1 - b2) * (1 - a1) / (1 - a2) * x2  # Eq. 7
        var_q = (1 - a1) / (1 - a2) * b2  # β̃_2
        mu_p = (x2 - b2 / math.sqrt(1 - a2) * 0.5 * x2) / math.sqrt(1 - b2)  # Eq. 11 with ε_θ = x_2 / 2
        var_p = b2  # σ_2² = β_2
        kl += 0.5 * (-1 + math.log(var_p / var_q) + var_q / var_p + (mu_q - mu_p) ** 2 / var_p)
    assert terms["kl"].shape == (1, T - 1)
    assert terms["kl"][0, 0].item() == pytest.approx(kl, rel=1e-12)
    assert terms["kl"][0, 1].item() != pytest.approx(kl, rel=1e-3)  # and not the next step's term


def test_elbo_refuses_integer_images():
    d = Diffusion.from_schedule("linear", T=30)
    with pytest.raises(ValueError, match="x0 must be a floating-point tensor, got dtype torch.uint8"):
        elbo_terms(lambda xt, t: xt, d, torch.zeros(2, 1, 2, 2, dtype=torch.uint8))

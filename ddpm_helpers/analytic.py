"""Exact denoisers for data whose distribution is known: isotropic Gaussian mixtures.

If x0 ~ Σ_k w_k N(μ_k, s_k² I), the forward process keeps it a mixture:
x_t ~ Σ_k w_k N(√ᾱ_t μ_k, (ᾱ_t s_k² + 1 − ᾱ_t) I) (Ho et al. 2020, Eq. 4 applied per component).
The minimum-MSE noise prediction is then known in closed form (Tweedie's formula, Efron 2011;
Song & Ermon 2019): E[ε | x_t] = −√(1 − ᾱ_t) ∇ log p_t(x_t). A single Gaussian is a
1-component mixture.
"""

import math

import torch

from ddpm_helpers.checks import check_positive_int


class GaussianMixture:
    """Isotropic Gaussian mixture p(x) = Σ_k w_k N(x; μ_k, s_k² I) in D dimensions.

    ``weights`` (K,) non-negative, normalized to sum to 1; ``means`` (K, D); ``variances``
    (K,) or a scalar: the per-component s_k². Parameters are kept in float64 on the CPU;
    results come back in the input's (or the default) dtype.
    """

    def __init__(self, weights, means, variances):
        means = torch.as_tensor(means, dtype=torch.float64).detach().cpu()
        if means.ndim != 2 or means.shape[0] == 0 or means.shape[1] == 0:
            raise ValueError(f"means must have shape (K, D), got shape {tuple(means.shape)}")
        K = means.shape[0]
        weights = torch.as_tensor(weights, dtype=torch.float64).detach().cpu()
        if weights.shape != (K,) or bool((weights < 0).any()) or not float(weights.sum()) > 0:
            raise ValueError(f"weights must be {K} non-negative numbers with a positive sum, got {weights.tolist()}")
        variances = torch.as_tensor(variances, dtype=torch.float64).detach().cpu()
        if variances.ndim == 0:
            variances = variances.expand(K).clone()
        if variances.shape != (K,) or not bool((variances > 0).all()):
            raise ValueError(f"variances must be {K} positive numbers, got {variances.tolist()}")
        self.weights = weights / weights.sum()  # w_k, Σ w_k = 1
        self.means = means  # μ_k
        self.variances = variances  # s_k²

    @property
    def dim(self):
        """Dimension D of the data."""
        return self.means.shape[1]

    def __repr__(self):
        return f"GaussianMixture(K={len(self.weights)}, D={self.dim})"

    def sample(self, n, generator=None):
        """n exact samples, shape (n, D): k ~ Categorical(w), x = μ_k + s_k z with z ~ N(0, I)."""
        n = check_positive_int(n, "n")
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)  # k ~ Categorical(w)
        z = torch.randn(n, self.dim, dtype=torch.float64, generator=generator)  # z ~ N(0, I)
        x = self.means[k] + self.variances[k].sqrt()[:, None] * z  # x = μ_k + s_k z
        return x.to(torch.get_default_dtype())

    def _flat(self, x):
        """x as float64 (N, D); ValueError unless x is (N, ...) with D numbers per example."""
        if x.ndim < 2 or math.prod(x.shape[1:]) != self.dim:
            raise ValueError(
                f"x must have shape (N, ...) with {self.dim} numbers per example, got shape {tuple(x.shape)}"
            )
        return x.reshape(x.shape[0], self.dim).to(torch.float64)

    def log_prob(self, x):
        """log p(x) = logsumexp_k (log w_k + log N(x; μ_k, s_k² I)), shape (N,)."""
        x_flat = self._flat(x)
        log_joint = _log_joint(x_flat, self.weights, self.means, 1.0, self.variances[None])  # (N, K)
        return torch.logsumexp(log_joint, dim=1).to(x.dtype)

    def score(self, x):
        """∇_x log p(x) = Σ_k r_k(x) (μ_k − x) / s_k² with r_k = p(k | x); shape and dtype of x."""
        score = _score(self._flat(x), self.weights, self.means, 1.0, self.variances[None])
        return score.reshape(x.shape).to(x.dtype)

    def mean(self):
        """E[x] = Σ_k w_k μ_k, shape (D,), float64."""
        return self.weights @ self.means

    def covariance(self):
        """Cov[x] = Σ_k w_k (s_k² I + μ_k μ_kᵀ) − E[x] E[x]ᵀ, shape (D, D), float64."""
        m = self.mean()
        second = torch.einsum("k,ki,kj->ij", self.weights, self.means, self.means)  # Σ_k w_k μ_k μ_kᵀ
        within = float(self.weights @ self.variances) * torch.eye(self.dim, dtype=torch.float64)  # Σ_k w_k s_k² I
        return second + within - torch.outer(m, m)

    def noised(self, alpha_bar):
        """Distribution of x_t = √ᾱ x0 + √(1 − ᾱ) ε: Σ_k w_k N(√ᾱ μ_k, (ᾱ s_k² + 1 − ᾱ) I) (Ho et al. 2020, Eq. 4)."""
        alpha_bar = float(alpha_bar)
        if not 0.0 < alpha_bar <= 1.0:
            raise ValueError(f"alpha_bar must lie in (0, 1], got alpha_bar={alpha_bar!r}")
        return GaussianMixture(
            self.weights,
            math.sqrt(alpha_bar) * self.means,  # √ᾱ μ_k
            alpha_bar * self.variances + (1.0 - alpha_bar),  # ᾱ s_k² + 1 − ᾱ
        )


def _log_joint(x, weights, means, scale, variances):
    """log w_k + log N(x; c μ_k, v_k I), shape (N, K).

    x (N, D); means μ (K, D); scale c (N, 1) or a float; variances v (N, K) or (1, K).
    """
    weights, means, variances = weights.to(x.device), means.to(x.device), variances.to(x.device)
    # ‖x − c μ_k‖² = ‖x‖² − 2c x·μ_k + c² ‖μ_k‖²  (matrix products: fast for many samples)
    sq_dist = (x * x).sum(dim=1, keepdim=True) - 2 * scale * (x @ means.T) + scale**2 * (means * means).sum(dim=1)
    # log w_k − ½ (D log(2π v_k) + ‖x − c μ_k‖² / v_k)
    return weights.log() - 0.5 * (x.shape[1] * torch.log(2 * math.pi * variances) + sq_dist.clamp(min=0) / variances)


def _score(x, weights, means, scale, variances):
    """∇_x log Σ_k w_k N(x; c μ_k, v_k I) = Σ_k r_k (c μ_k − x) / v_k, shape (N, D)."""
    # r_k / v_k
    r_over_v = torch.softmax(_log_joint(x, weights, means, scale, variances), dim=1) / variances.to(x.device)
    # Σ_k (r_k/v_k)(c μ_k − x) = c Σ_k (r_k/v_k) μ_k − (Σ_k r_k/v_k) x
    return scale * (r_over_v @ means.to(x.device)) - r_over_v.sum(dim=1, keepdim=True) * x


def optimal_eps(mixture, diffusion):
    """The exact noise predictor ε*(x_t, t) = E[ε | x_t] = −√(1 − ᾱ_t) ∇ log p_t(x_t).

    p_t is the noised mixture at ᾱ_t (Ho et al. 2020, Eq. 4; Tweedie's formula). Returns a
    callable ``model(xt, t)`` for the samplers and the ELBO: ``xt`` of shape (B, D) (or
    (B, …) with D numbers per example), ``t`` a 0-based LongTensor (B,); the output has
    ``xt``'s shape and dtype. Each example uses its own ᾱ_t.
    """

    def model(xt, t):
        x = mixture._flat(xt)  # (B, D), float64
        ab = diffusion.at("alpha_bar", t, x)  # ᾱ_t, (B, 1)
        variances = ab * mixture.variances.to(x.device)[None] + (1.0 - ab)  # ᾱ_t s_k² + 1 − ᾱ_t, (B, K)
        # ∇ log p_t(x_t), component means √ᾱ_t μ_k
        score = _score(x, mixture.weights, mixture.means, ab.sqrt(), variances)
        eps = -(1.0 - ab).sqrt() * score  # E[ε | x_t] = −√(1 − ᾱ_t) ∇ log p_t(x_t)
        return eps.reshape(xt.shape).to(xt.dtype)

    return model

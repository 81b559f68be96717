"""The Gaussian diffusion process of Ho et al. 2020: forward process, posterior, parameterizations.

Timestep convention
-------------------
Code is 0-based, the paper is 1-based: code index ``t ∈ {0, …, T−1}`` is the paper's step
``t + 1``. Hence ``betas[t]`` is β_{t+1}, ``alpha_bar[t] = ∏_{s ≤ t} alphas[s]`` is ᾱ_{t+1}
(so ``alpha_bar[0] == 1 − betas[0]``), ``q_sample(x0, t)`` returns the paper's x_{t+1},
and ``alpha_bar_prev[t]`` is ᾱ_t with ``alpha_bar_prev[0] == 1`` (the paper's ᾱ_0). The
posterior variance β̃ at ``t = 0`` is 0: the last reverse step is deterministic. Models
receive the 0-based ``t`` as a LongTensor of shape ``(B,)``.

All tables are 1-D float64 tensors of length T. They are read only through :func:`extract`,
which returns ``table[t]`` in the dtype and on the device of the tensor it is used with.

References: Ho et al. 2020 (DDPM); Nichol & Dhariwal 2021 (improved DDPM);
Salimans & Ho 2022 (v-parameterization).
"""

import torch

from ddpm_helpers.schedules import make_beta_schedule

PREDICTIONS = ("eps", "x0", "v")
VARIANCES = ("beta_tilde", "beta")


def extract(table, t, x):
    """``table[t]`` in ``x``'s dtype and device, shaped ``(B, 1, …, 1)`` to broadcast against ``x``.

    The one place where tables are indexed by the 0-based timestep ``t`` (a LongTensor of
    shape ``(B,)`` with ``B = x.shape[0]``).
    """
    if not torch.is_tensor(t) or t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise ValueError(f"t must be an integer tensor of shape (B,), got {t!r}")
    if t.ndim != 1:
        raise ValueError(f"t must have shape (B,), got shape {tuple(t.shape)}")
    if x.ndim == 0 or x.shape[0] != t.shape[0]:
        raise ValueError(f"batch mismatch: t has shape {tuple(t.shape)} but x has shape {tuple(x.shape)}")
    T = table.shape[0]
    if t.numel() > 0:
        lo, hi = torch.aminmax(t)
        if int(lo) < 0 or int(hi) >= T:
            bad = (t < 0) | (t >= T)
            raise ValueError(f"timestep t={t[bad].tolist()[:10]} out of range [0, {T})")
    values = table.to(dtype=x.dtype).to(x.device).index_select(0, t.to(x.device))  # table[t]
    return values.reshape(t.shape[0], *([1] * (x.ndim - 1)))


def noise_like(x, generator=None):
    """Standard normal noise ε ~ N(0, I) with ``x``'s shape, dtype and device.

    With a ``generator`` the noise is drawn on the generator's device and then moved, so
    a CPU generator gives the same noise on every device.
    """
    if generator is None:
        return torch.randn(x.shape, dtype=x.dtype, device=x.device)
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=generator.device).to(x.device)


def check_name(value, allowed, what):
    """Raise ValueError naming ``value`` unless it is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {allowed}")


def _check_same_shape(**tensors):
    """Raise ValueError naming the shapes unless all ``tensors`` share one shape."""
    shapes = {name: tuple(x.shape) for name, x in tensors.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"shape mismatch: {shapes}")


class Diffusion:
    """Precomputed tables of a DDPM noise schedule and the maps between x0, x_t, ε and v.

    ``Diffusion(betas)`` takes the 0-based β table (``betas[t]`` = paper's β_{t+1});
    ``Diffusion.from_schedule("cosine", T=1000)`` builds it from a named schedule.
    """

    def __init__(self, betas):
        betas = torch.as_tensor(betas, dtype=torch.float64).detach().cpu()
        if betas.ndim != 1 or betas.shape[0] < 2:
            raise ValueError(f"betas must be a 1-D table with T >= 2 entries, got shape {tuple(betas.shape)}")
        bad = ~((betas > 0) & (betas < 1))
        if bool(bad.any()):
            where = bad.nonzero().flatten().tolist()[:5]
            raise ValueError(f"betas must lie in (0, 1), got {betas[bad].tolist()[:5]} at t={where}")
        self.T = int(betas.shape[0])
        self.betas = betas  # β_t
        self.alphas = 1.0 - betas  # α_t = 1 − β_t
        self.alpha_bar = torch.cumprod(self.alphas, dim=0)  # ᾱ_t = ∏_{s≤t} α_s
        self.alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar[:-1]])  # ᾱ_{t−1}, ᾱ_0 = 1
        self.sqrt_alpha_bar = self.alpha_bar.sqrt()  # √ᾱ_t
        self.sqrt_one_minus_alpha_bar = (1.0 - self.alpha_bar).sqrt()  # √(1 − ᾱ_t)
        self.sqrt_recip_alpha_bar = self.alpha_bar.rsqrt()  # 1/√ᾱ_t
        self.sqrt_recipm1_alpha_bar = (1.0 / self.alpha_bar - 1.0).sqrt()  # √(1/ᾱ_t − 1)
        self.snr = self.alpha_bar / (1.0 - self.alpha_bar)  # SNR(t) = ᾱ_t / (1 − ᾱ_t)
        self.log_snr = self.alpha_bar.log() - torch.log1p(-self.alpha_bar)  # log SNR(t)
        # β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t  (Ho et al. 2020, Eq. 7); β̃ at t = 0 is 0
        self.posterior_variance = (1.0 - self.alpha_bar_prev) / (1.0 - self.alpha_bar) * self.betas
        # log β̃_t with the t = 0 entry replaced by β̃ at t = 1, as in Ho et al.'s code (log 0 = −∞)
        self.posterior_log_variance_clipped = torch.log(
            torch.cat([self.posterior_variance[1:2], self.posterior_variance[1:]])
        )
        # μ̃_t(x_t, x0) = coef1 · x0 + coef2 · x_t  (Ho et al. 2020, Eq. 7)
        # √ᾱ_{t−1} β_t / (1 − ᾱ_t)
        self.posterior_mean_coef1 = self.betas * self.alpha_bar_prev.sqrt() / (1.0 - self.alpha_bar)
        # √α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t)
        self.posterior_mean_coef2 = (1.0 - self.alpha_bar_prev) * self.alphas.sqrt() / (1.0 - self.alpha_bar)

    @classmethod
    def from_schedule(cls, name="linear", T=1000):
        """Diffusion with the named β schedule (see :func:`ddpm_helpers.schedules.make_beta_schedule`)."""
        return cls(make_beta_schedule(name, T))

    def __repr__(self):
        betas = f"[{self.betas[0]:.3g} … {self.betas[-1]:.3g}]"
        return f"Diffusion(T={self.T}, betas={betas}, alpha_bar_T={self.alpha_bar[-1]:.3g})"

    # ---------------------------------------------------------------- forward process

    def sample_timesteps(self, batch_size, device=None, generator=None):
        """t ~ Uniform{0, …, T−1} as a LongTensor of shape ``(batch_size,)`` (Ho et al. 2020, Algorithm 1)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        draw_device = generator.device if generator is not None else device
        t = torch.randint(0, self.T, (batch_size,), generator=generator, device=draw_device)
        return t if device is None else t.to(device)

    def q_mean_variance(self, x0, t):
        """Mean and variance of q(x_t | x0) = N(√ᾱ_t x0, (1 − ᾱ_t) I) (Ho et al. 2020, Eq. 4).

        The variance is shaped ``(B, 1, …, 1)``.
        """
        mean = extract(self.sqrt_alpha_bar, t, x0) * x0  # √ᾱ_t x0
        variance = extract(1.0 - self.alpha_bar, t, x0)  # 1 − ᾱ_t
        return mean, variance

    def q_sample(self, x0, t, eps=None, generator=None):
        """Sample x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε, ε ~ N(0, I) (Ho et al. 2020, Eq. 4 reparameterized)."""
        if eps is None:
            eps = noise_like(x0, generator)
        _check_same_shape(x0=x0, eps=eps)
        # √ᾱ x0 + √(1−ᾱ) ε
        return extract(self.sqrt_alpha_bar, t, x0) * x0 + extract(self.sqrt_one_minus_alpha_bar, t, x0) * eps

    def q_posterior(self, x0, xt, t):
        """Mean, variance and log-variance of q(x_{t−1} | x_t, x0) (Ho et al. 2020, Eqs. 6–7).

        μ̃_t = √ᾱ_{t−1} β_t / (1 − ᾱ_t) · x0 + √α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · x_t and
        β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t. At ``t = 0`` the variance is 0 and the
        returned log-variance is clipped to log β̃ at ``t = 1`` (as in Ho et al.'s code).
        Variance and log-variance are shaped ``(B, 1, …, 1)``.
        """
        mean = self._posterior_mean(x0, xt, t)  # μ̃_t(x_t, x0)
        variance = extract(self.posterior_variance, t, xt)  # β̃_t
        log_variance = extract(self.posterior_log_variance_clipped, t, xt)  # log β̃_t, clipped at t = 0
        return mean, variance, log_variance

    def _posterior_mean(self, x0, xt, t):
        """μ̃_t(x_t, x0) = coef1 · x0 + coef2 · x_t (Ho et al. 2020, Eq. 7)."""
        _check_same_shape(x0=x0, xt=xt)
        # coef1 x0 + coef2 x_t
        return extract(self.posterior_mean_coef1, t, xt) * x0 + extract(self.posterior_mean_coef2, t, xt) * xt

    # ---------------------------------------------------------------- parameterizations

    def predict_x0_from_eps(self, xt, t, eps):
        """x̂0 = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t (Ho et al. 2020, Eq. 15)."""
        _check_same_shape(xt=xt, eps=eps)
        # x_t/√ᾱ − √(1/ᾱ − 1) ε
        return extract(self.sqrt_recip_alpha_bar, t, xt) * xt - extract(self.sqrt_recipm1_alpha_bar, t, xt) * eps

    def predict_eps_from_x0(self, xt, t, x0):
        """ε = (x_t − √ᾱ_t x0) / √(1 − ᾱ_t) (Ho et al. 2020, Eq. 4 solved for ε)."""
        _check_same_shape(xt=xt, x0=x0)
        # (x_t − √ᾱ x0)/√(1−ᾱ)
        return (xt - extract(self.sqrt_alpha_bar, t, xt) * x0) / extract(self.sqrt_one_minus_alpha_bar, t, xt)

    def v_from_x0_eps(self, x0, t, eps):
        """v = √ᾱ_t ε − √(1 − ᾱ_t) x0 (Salimans & Ho 2022, §4)."""
        _check_same_shape(x0=x0, eps=eps)
        # √ᾱ ε − √(1−ᾱ) x0
        return extract(self.sqrt_alpha_bar, t, x0) * eps - extract(self.sqrt_one_minus_alpha_bar, t, x0) * x0

    def predict_x0_from_v(self, xt, t, v):
        """x̂0 = √ᾱ_t x_t − √(1 − ᾱ_t) v (Salimans & Ho 2022, §4)."""
        _check_same_shape(xt=xt, v=v)
        # √ᾱ x_t − √(1−ᾱ) v
        return extract(self.sqrt_alpha_bar, t, xt) * xt - extract(self.sqrt_one_minus_alpha_bar, t, xt) * v

    def predict_eps_from_v(self, xt, t, v):
        """ε = √(1 − ᾱ_t) x_t + √ᾱ_t v (Salimans & Ho 2022, §4)."""
        _check_same_shape(xt=xt, v=v)
        # √(1−ᾱ) x_t + √ᾱ v
        return extract(self.sqrt_one_minus_alpha_bar, t, xt) * xt + extract(self.sqrt_alpha_bar, t, xt) * v

    def predict_mean_from_eps(self, xt, t, eps):
        """μ_θ(x_t, t) = (x_t − β_t / √(1 − ᾱ_t) · ε) / √α_t (Ho et al. 2020, Eq. 11)."""
        _check_same_shape(xt=xt, eps=eps)
        coef = extract(self.betas / self.sqrt_one_minus_alpha_bar, t, xt)  # β_t / √(1 − ᾱ_t)
        return (xt - coef * eps) / extract(self.alphas.sqrt(), t, xt)  # (x_t − β/√(1−ᾱ) ε) / √α

    def model_predictions(self, model_output, xt, t, prediction="eps", clip_x0=None):
        """Turn a network output into ``(eps, x0_hat)`` for the chosen parameterization.

        ``prediction`` is "eps" (Ho et al. 2020), "x0" or "v" (Salimans & Ho 2022). With
        ``clip_x0 = c`` the estimate x̂0 is clamped to [−c, c] and ε is recomputed from the
        clamped x̂0, so that (ε, x̂0) stay consistent with x_t (used by DDIM, Song et al. 2021).
        """
        check_name(prediction, PREDICTIONS, "prediction")
        if clip_x0 is not None and not clip_x0 > 0:
            raise ValueError(f"clip_x0 must be None or > 0, got clip_x0={clip_x0!r}")
        _check_same_shape(model_output=model_output, xt=xt)
        if prediction == "eps":
            eps = model_output
            x0_hat = self.predict_x0_from_eps(xt, t, eps)
        elif prediction == "x0":
            x0_hat = model_output
            eps = self.predict_eps_from_x0(xt, t, x0_hat)
        else:
            x0_hat = self.predict_x0_from_v(xt, t, model_output)
            eps = self.predict_eps_from_v(xt, t, model_output)
        if clip_x0 is not None:
            x0_hat = x0_hat.clamp(-clip_x0, clip_x0)  # x̂0 ∈ [−c, c]
            eps = self.predict_eps_from_x0(xt, t, x0_hat)
        return eps, x0_hat

    def p_mean_variance(self, model_output, xt, t, prediction="eps", variance="beta_tilde", clip_x0=None):
        """Mean and variance of the reverse step p_θ(x_{t−1} | x_t) (Ho et al. 2020, Eqs. 7 and 11).

        μ_θ = μ̃_t(x_t, x̂0) with x̂0 from the network output, which for ε-prediction equals
        Eq. 11. ``variance`` is "beta_tilde" (σ_t² = β̃_t) or "beta" (σ_t² = β_t). At ``t = 0``
        "beta_tilde" gives variance 0 (no noise at the last step) and the log-variance
        clipped to log β̃ at t = 1, as in Ho et al.'s code; "beta" gives β at t = 0. The
        log-variance is what the decoder p_θ(x0 | x1) uses.

        Returns ``dict(mean, variance, log_variance, x0_hat, eps)``; the (log-)variance is
        shaped ``(B, 1, …, 1)``.
        """
        check_name(variance, VARIANCES, "variance")
        eps, x0_hat = self.model_predictions(model_output, xt, t, prediction, clip_x0)
        mean = self._posterior_mean(x0_hat, xt, t)  # μ_θ(x_t, t) = μ̃_t(x_t, x̂0)
        if variance == "beta_tilde":
            var = extract(self.posterior_variance, t, xt)  # σ_t² = β̃_t
            log_var = extract(self.posterior_log_variance_clipped, t, xt)  # log β̃_t (clipped at t = 0)
        else:
            var = extract(self.betas, t, xt)  # σ_t² = β_t
            log_var = extract(self.betas.log(), t, xt)  # log β_t
        return {"mean": mean, "variance": var, "log_variance": log_var, "x0_hat": x0_hat, "eps": eps}

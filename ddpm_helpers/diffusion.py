"""The Gaussian diffusion process of Ho et al. 2020: forward process, posterior, parameterizations.

Timestep convention
-------------------
Code is 0-based, the paper is 1-based: code index ``t ∈ {0, …, T−1}`` is the paper's step
``t + 1``. Hence ``betas[t]`` is β_{t+1}, ``alpha_bar[t] = ∏_{s ≤ t} alphas[s]`` is ᾱ_{t+1}
(so ``alpha_bar[0] == 1 − betas[0]``), ``q_sample(x0, t)`` returns the paper's x_{t+1},
and ``alpha_bar_prev[t]`` is ᾱ_t with ``alpha_bar_prev[0] == 1`` (the paper's ᾱ_0). The
posterior variance β̃ at ``t = 0`` is 0: the last reverse step is deterministic. Models
receive the 0-based ``t`` as a LongTensor of shape ``(B,)``.

All tables are 1-D float64 tensors of length T on the CPU. They are read through :func:`extract`
(``table[t]``, shaped to broadcast); :meth:`Diffusion.table` hands out each table in the dtype
and on the device of the data, converted once and cached, so the hot path copies nothing.

Validation happens in the public methods (``q_*``, ``predict_*``, ``model_predictions``,
``p_mean_variance``) with :mod:`ddpm_helpers.checks`; the private ``_…`` methods hold the math.

References: Ho et al. 2020 (DDPM); Nichol & Dhariwal 2021 (improved DDPM);
Salimans & Ho 2022 (v-parameterization).
"""

from typing import NamedTuple

import torch

from ddpm_helpers import checks, utils
from ddpm_helpers.checks import check_floating, check_number, check_positive_int, check_same_shape, check_timesteps
from ddpm_helpers.schedules import make_beta_schedule

PREDICTIONS = ("eps", "x0", "v")
VARIANCES = ("beta_tilde", "beta")


def extract(table, t, x):
    """``table[t]`` shaped ``(B, 1, …, 1)`` to broadcast against ``x`` (``t``: 0-based timesteps, shape ``(B,)``).

    The one place where tables are indexed by ``t``. A table not yet in ``x``'s dtype and on its device is
    converted first (a copy); :meth:`Diffusion.table` gives tables that already are. The public entry points
    validate ``t``; here only its dtype and shape are checked (no values read, no device sync), since a bool or
    uint8 ``t`` would silently index as a mask, and a negative ``t`` is refused by the indexing itself.
    """
    if not torch.is_tensor(t) or t.dtype not in checks.INDEX_DTYPES:
        got = f"dtype {t.dtype}" if torch.is_tensor(t) else type(t).__name__
        raise ValueError(f"t must be an int64 (or int32) tensor of timesteps, got {got}")
    if t.ndim != 1 or (x.ndim > 0 and t.shape[0] != x.shape[0]):  # shapes only: no values read
        raise ValueError(f"t must have shape ({x.shape[0] if x.ndim else 'B'},) to match x of shape "
                         f"{tuple(x.shape)}, got shape {tuple(t.shape)}")
    table = table.to(device=x.device, dtype=x.dtype)
    try:  # table[t]; index_select refuses a negative t (indexing would wrap it to the last steps) at no extra cost
        values = table.index_select(0, t)
    except (IndexError, RuntimeError):  # raised on the CPU only; on a GPU the kernel asserts
        bad = t[(t < 0) | (t >= table.shape[0])]
        raise ValueError(f"timestep t={bad.tolist()[:10]} out of range [0, {table.shape[0]})") from None
    return values.reshape(t.shape[0], *([1] * (x.ndim - 1)))


class PMeanVariance(NamedTuple):
    """Output of :meth:`Diffusion.p_mean_variance`: the reverse step p_θ(x_{t−1} | x_t) and the estimates behind it."""

    mean: torch.Tensor  # μ_θ(x_t, t)
    variance: torch.Tensor  # σ_t², shape (B, 1, …, 1)
    log_variance: torch.Tensor  # log σ_t² (clipped at `t = 0` for "beta_tilde")
    x0_hat: torch.Tensor  # x̂0
    eps: torch.Tensor  # ε̂


def check_prediction(prediction, clip_x0):
    """ValueError naming ``prediction`` unless it is one of :data:`PREDICTIONS`, or ``clip_x0`` unless None or > 0."""
    checks.check_name(prediction, PREDICTIONS, "prediction")
    if clip_x0 is not None:
        check_number(clip_x0, "clip_x0", low=0, low_open=True)


def _flat_values(values):
    """The entries of a (nested) list/tuple or NumPy array, for type checks; nothing for a tensor or a scalar."""
    if hasattr(values, "dtype") and not torch.is_tensor(values):  # a NumPy array: its dtype tells
        return [complex(0)] if getattr(values.dtype, "kind", "") == "c" else []
    if isinstance(values, (list, tuple)):
        return [v for item in values for v in (_flat_values(item) if isinstance(item, (list, tuple)) else [item])]
    return []


class Diffusion:
    """Precomputed tables of a DDPM noise schedule and the maps between x0, x_t, ε and v.

    ``Diffusion(betas)`` takes the 0-based β table (``betas[t]`` = paper's β_{t+1});
    ``Diffusion.from_schedule("cosine", T=1000)`` builds it from a named schedule.
    """

    def __init__(self, betas):
        if torch.is_tensor(betas) and betas.is_complex() or any(isinstance(b, complex) for b in _flat_values(betas)):
            raise ValueError(f"betas must be real numbers, got complex values ({betas!r:.80})")
        try:
            betas = torch.as_tensor(betas, dtype=torch.float64).detach().cpu()
        except (TypeError, ValueError, RuntimeError) as error:
            raise ValueError(f"betas must be a 1-D table of numbers, got {betas!r}") from error
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
        if bool((self.alpha_bar == 1).any()):
            where = (self.alpha_bar == 1).nonzero().flatten().tolist()
            raise ValueError(f"betas too small: 1 − alpha_bar rounds to 0 in float64 at t={where[:5]} "
                             f"(betas there: {betas[where[:5]].tolist()}); every β_t must be above ~1e-16")
        self.alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar[:-1]])  # ᾱ_{t−1}, ᾱ_0 = 1
        self.sqrt_alpha_bar = self.alpha_bar.sqrt()  # √ᾱ_t
        self.sqrt_one_minus_alpha_bar = (1.0 - self.alpha_bar).sqrt()  # √(1 − ᾱ_t)
        self.sqrt_recip_alpha_bar = self.alpha_bar.rsqrt()  # 1/√ᾱ_t
        self.sqrt_recipm1_alpha_bar = (1.0 / self.alpha_bar - 1.0).sqrt()  # √(1/ᾱ_t − 1)
        self.snr = self.alpha_bar / (1.0 - self.alpha_bar)  # SNR(t) = ᾱ_t / (1 − ᾱ_t)
        self.log_snr = self.alpha_bar.log() - torch.log1p(-self.alpha_bar)  # log SNR(t)
        # β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t  (Ho et al. 2020, Eq. 7); β̃ at `t = 0` is 0
        self.posterior_variance = (1.0 - self.alpha_bar_prev) / (1.0 - self.alpha_bar) * self.betas
        # log β̃_t with the `t = 0` entry replaced by β̃ at `t = 1`, as in Ho et al.'s code (log 0 = −∞)
        self.posterior_log_variance_clipped = torch.log(
            torch.cat([self.posterior_variance[1:2], self.posterior_variance[1:]])
        )
        # μ̃_t(x_t, x0) = coef_x0 · x0 + coef_xt · x_t  (Ho et al. 2020, Eq. 7)
        # coef_x0 = √ᾱ_{t−1} β_t / (1 − ᾱ_t)
        self.posterior_mean_coef_x0 = self.betas * self.alpha_bar_prev.sqrt() / (1.0 - self.alpha_bar)
        # coef_xt = √α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t)
        self.posterior_mean_coef_xt = (1.0 - self.alpha_bar_prev) * self.alphas.sqrt() / (1.0 - self.alpha_bar)
        self.one_minus_alpha_bar = 1.0 - self.alpha_bar  # 1 − ᾱ_t
        self.log_betas = self.betas.log()  # log β_t
        self.sqrt_alphas = self.alphas.sqrt()  # √α_t
        self.eps_coef = self.betas / self.sqrt_one_minus_alpha_bar  # β_t / √(1 − ᾱ_t)  (Eq. 11)
        self._tables = {}  # (name, device, dtype) -> table converted once

    @classmethod
    def from_schedule(cls, name="linear", T=1000):
        """Diffusion with the named β schedule (see :func:`ddpm_helpers.schedules.make_beta_schedule`)."""
        return cls(make_beta_schedule(name, T))

    def __repr__(self):
        betas = f"[{self.betas[0]:.3g} … {self.betas[-1]:.3g}]"
        return f"Diffusion(T={self.T}, betas={betas}, alpha_bar_T={self.alpha_bar[-1]:.3g})"

    def table(self, name, like):
        """The table ``name`` (e.g. "alpha_bar") in ``like``'s dtype and on its device, converted once and cached."""
        key = (name, like.device, like.dtype)
        if key not in self._tables:
            self._tables[key] = getattr(self, name).to(device=like.device, dtype=like.dtype)
        return self._tables[key]

    def at(self, name, t, x):
        """Table ``name`` at the 0-based timesteps ``t``, shaped ``(B, 1, …, 1)`` against ``x``."""
        return extract(self.table(name, x), t, x)

    def _check(self, t, **tensors):
        """Validate a public method's inputs: floating-point tensors of one shape (B, …), timesteps ``t`` (B,)."""
        for name, x in tensors.items():
            check_floating(x, name)
            if x.ndim == 0:
                raise ValueError(f"{name} must have a batch dimension (B, ...), got a 0-d tensor")
        check_same_shape(**tensors)
        check_timesteps(t, self.T, batch=next(iter(tensors.values())).shape[0])

    # ---------------------------------------------------------------- forward process

    def sample_timesteps(self, batch_size, device=None, generator=None):
        """t ~ Uniform{0, …, T−1} as a LongTensor of shape ``(batch_size,)`` (Ho et al. 2020, Algorithm 1)."""
        check_positive_int(batch_size, "batch_size")
        draw_device = generator.device if generator is not None else device
        t = torch.randint(0, self.T, (batch_size,), generator=generator, device=draw_device)
        return t if device is None else t.to(device)

    def q_mean_variance(self, x0, t):
        """Mean and variance of q(x_t | x0) = N(√ᾱ_t x0, (1 − ᾱ_t) I) (Ho et al. 2020, Eq. 4).

        The variance is shaped ``(B, 1, …, 1)``.
        """
        self._check(t, x0=x0)
        mean = self.at("sqrt_alpha_bar", t, x0) * x0  # √ᾱ_t x0
        variance = self.at("one_minus_alpha_bar", t, x0)  # 1 − ᾱ_t
        return mean, variance

    def q_sample(self, x0, t, eps=None, generator=None):
        """Sample x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε, ε ~ N(0, I) (Ho et al. 2020, Eq. 4 reparameterized)."""
        if eps is None:
            self._check(t, x0=x0)
            eps = utils.noise_like(x0, generator)
        else:
            self._check(t, x0=x0, eps=eps)
        # √ᾱ x0 + √(1−ᾱ) ε
        return self.at("sqrt_alpha_bar", t, x0) * x0 + self.at("sqrt_one_minus_alpha_bar", t, x0) * eps

    def q_posterior(self, x0, xt, t):
        """Mean, variance and log-variance of q(x_{t−1} | x_t, x0) (Ho et al. 2020, Eqs. 6–7).

        μ̃_t = √ᾱ_{t−1} β_t / (1 − ᾱ_t) · x0 + √α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · x_t and
        β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t. At code ``t = 0`` (paper step 1) the variance is 0
        and the returned log-variance is clipped to log β̃ at ``t = 1`` (as in Ho et al.'s code).
        Variance and log-variance are shaped ``(B, 1, …, 1)``.
        """
        self._check(t, x0=x0, xt=xt)
        mean = self._posterior_mean(x0, xt, t)  # μ̃_t(x_t, x0)
        variance = self.at("posterior_variance", t, xt)  # β̃_t
        log_variance = self.at("posterior_log_variance_clipped", t, xt)  # log β̃_t, clipped at `t = 0`
        return mean, variance, log_variance

    def _posterior_mean(self, x0, xt, t):
        """μ̃_t(x_t, x0) = coef_x0 · x0 + coef_xt · x_t (Ho et al. 2020, Eq. 7)."""
        # coef_x0 x0 + coef_xt x_t
        return self.at("posterior_mean_coef_x0", t, xt) * x0 + self.at("posterior_mean_coef_xt", t, xt) * xt

    # ---------------------------------------------------------------- parameterizations

    def predict_x0_from_eps(self, xt, t, eps):
        """x̂0 = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t (Ho et al. 2020, Eq. 15)."""
        self._check(t, xt=xt, eps=eps)
        return self._x0_from_eps(xt, t, eps)

    def _x0_from_eps(self, xt, t, eps):
        # x_t/√ᾱ − √(1/ᾱ − 1) ε
        return self.at("sqrt_recip_alpha_bar", t, xt) * xt - self.at("sqrt_recipm1_alpha_bar", t, xt) * eps

    def predict_eps_from_x0(self, xt, t, x0):
        """ε = (x_t − √ᾱ_t x0) / √(1 − ᾱ_t) (Ho et al. 2020, Eq. 4 solved for ε)."""
        self._check(t, xt=xt, x0=x0)
        return self._eps_from_x0(xt, t, x0)

    def _eps_from_x0(self, xt, t, x0):
        # (x_t − √ᾱ x0)/√(1−ᾱ)
        return (xt - self.at("sqrt_alpha_bar", t, xt) * x0) / self.at("sqrt_one_minus_alpha_bar", t, xt)

    def v_from_x0_eps(self, x0, t, eps):
        """v = √ᾱ_t ε − √(1 − ᾱ_t) x0 (Salimans & Ho 2022, §4)."""
        self._check(t, x0=x0, eps=eps)
        # √ᾱ ε − √(1−ᾱ) x0
        return self.at("sqrt_alpha_bar", t, x0) * eps - self.at("sqrt_one_minus_alpha_bar", t, x0) * x0

    def predict_x0_from_v(self, xt, t, v):
        """x̂0 = √ᾱ_t x_t − √(1 − ᾱ_t) v (Salimans & Ho 2022, §4)."""
        self._check(t, xt=xt, v=v)
        return self._x0_from_v(xt, t, v)

    def _x0_from_v(self, xt, t, v):
        # √ᾱ x_t − √(1−ᾱ) v
        return self.at("sqrt_alpha_bar", t, xt) * xt - self.at("sqrt_one_minus_alpha_bar", t, xt) * v

    def predict_eps_from_v(self, xt, t, v):
        """ε = √(1 − ᾱ_t) x_t + √ᾱ_t v (Salimans & Ho 2022, §4)."""
        self._check(t, xt=xt, v=v)
        return self._eps_from_v(xt, t, v)

    def _eps_from_v(self, xt, t, v):
        # √(1−ᾱ) x_t + √ᾱ v
        return self.at("sqrt_one_minus_alpha_bar", t, xt) * xt + self.at("sqrt_alpha_bar", t, xt) * v

    def predict_mean_from_eps(self, xt, t, eps):
        """μ_θ(x_t, t) = (x_t − β_t / √(1 − ᾱ_t) · ε) / √α_t (Ho et al. 2020, Eq. 11)."""
        self._check(t, xt=xt, eps=eps)
        # (x_t − β/√(1−ᾱ) ε) / √α
        return (xt - self.at("eps_coef", t, xt) * eps) / self.at("sqrt_alphas", t, xt)

    def model_predictions(self, model_output, xt, t, prediction="eps", clip_x0=None):
        """Turn a network output into ``(eps, x0_hat)`` for the chosen parameterization.

        ``prediction`` is "eps" (Ho et al. 2020), "x0" or "v" (Salimans & Ho 2022). With
        ``clip_x0 = c`` the estimate x̂0 is clamped to [−c, c] and ε is recomputed from the
        clamped x̂0, so that (ε, x̂0) stay consistent with x_t (used by DDIM, Song et al. 2021).
        """
        self._check_predictions(model_output, xt, t, prediction, clip_x0)
        return self._predictions(model_output, xt, t, prediction, clip_x0)

    def _check_predictions(self, model_output, xt, t, prediction, clip_x0):
        check_prediction(prediction, clip_x0)
        self._check(t, xt=xt, model_output=model_output)

    def _predictions(self, model_output, xt, t, prediction, clip_x0):
        x0_hat = self._x0_hat(model_output, xt, t, prediction, clip_x0)
        if clip_x0 is not None:
            eps = self._eps_from_x0(xt, t, x0_hat)  # ε̂ consistent with the clamped x̂0
        elif prediction == "eps":
            eps = model_output
        elif prediction == "x0":
            eps = self._eps_from_x0(xt, t, x0_hat)
        else:
            eps = self._eps_from_v(xt, t, model_output)
        return eps, x0_hat

    def _x0_hat(self, model_output, xt, t, prediction, clip_x0):
        """x̂0 alone (what :meth:`model_predictions` returns second), for the steps that need no ε̂."""
        if prediction == "eps":
            x0_hat = self._x0_from_eps(xt, t, model_output)
        elif prediction == "x0":
            x0_hat = model_output
        else:
            x0_hat = self._x0_from_v(xt, t, model_output)
        if clip_x0 is not None:
            x0_hat = x0_hat.clamp(-clip_x0, clip_x0)  # x̂0 ∈ [−c, c]
        return x0_hat

    def p_mean_variance(self, model_output, xt, t, prediction="eps", variance="beta_tilde", clip_x0=None):
        """Mean and variance of the reverse step p_θ(x_{t−1} | x_t) (Ho et al. 2020, Eqs. 7 and 11).

        μ_θ = μ̃_t(x_t, x̂0) with x̂0 from the network output, which for ε-prediction equals
        Eq. 11. ``variance`` is "beta_tilde" (σ_t² = β̃_t) or "beta" (σ_t² = β_t). At code ``t = 0``
        (paper step 1) "beta_tilde" gives variance 0 (no noise at the last step) and the
        log-variance clipped to log β̃ at ``t = 1``, as in Ho et al.'s code; "beta" gives β_1
        there. The log-variance is what the decoder p_θ(x_0 | x_1) uses.

        Returns a :class:`PMeanVariance` ``(mean, variance, log_variance, x0_hat, eps)``; the
        (log-)variance is shaped ``(B, 1, …, 1)``.
        """
        checks.check_name(variance, VARIANCES, "variance")
        self._check_predictions(model_output, xt, t, prediction, clip_x0)
        eps, x0_hat = self._predictions(model_output, xt, t, prediction, clip_x0)
        mean = self._posterior_mean(x0_hat, xt, t)  # μ_θ(x_t, t) = μ̃_t(x_t, x̂0)
        if variance == "beta_tilde":
            var = self.at("posterior_variance", t, xt)  # σ_t² = β̃_t
            log_var = self.at("posterior_log_variance_clipped", t, xt)  # log β̃_t (clipped at `t = 0`)
        else:
            var = self.at("betas", t, xt)  # σ_t² = β_t
            log_var = self.at("log_betas", t, xt)  # log β_t
        return PMeanVariance(mean, var, log_var, x0_hat, eps)


"""The contract every sampler keeps, in the spirit of diffusers' ``tests/schedulers/test_schedulers.py``.

Each sampler is listed once in :data:`SAMPLERS`; every test below runs on every entry: the step's signature and
return type, shapes and dtypes, determinism under a generator, no noise at the last step, the number of model
calls, bad input raising ValueError naming the value, and sampling with the exact denoiser of a Gaussian mixture
converging to it as the steps grow. Adding a sampler = one file in ``ddpm_helpers/samplers/`` + one line here.
"""

import inspect
from dataclasses import dataclass, field
from typing import Callable

import pytest
import torch

from ddpm_helpers.analytic import GaussianMixture, optimal_eps
from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.samplers import (
    StepResult,
    ddim_sample,
    ddim_step,
    ddim_timesteps,
    ddpm_sample,
    ddpm_step,
    dpm_solver_sample,
    dpm_solver_step,
)

T = 25  # the contract's diffusion length; samplers with a step count take N = 5 steps
N = 5


@dataclass(frozen=True)
class Sampler:
    """One sampler: its loop, its step, the options both take, whether it draws noise after x_T, and whether it
    takes ``num_steps`` (DDPM always runs all T steps)."""

    name: str
    sample: Callable  # sample(model, diffusion, shape, **options, num_steps=n, ...) -> SampleResult
    step: Callable  # step(diffusion, model_output, xt, t, t_next, **options, generator=None) -> StepResult
    options: dict = field(default_factory=dict)
    stochastic: bool = False
    num_steps: bool = True

    def run(self, model, diffusion, shape=None, n=N, **kwargs):
        if self.num_steps:
            kwargs["num_steps"] = n
        return self.sample(model, diffusion, shape, **self.options, **kwargs)

    def timesteps(self, diffusion, n=N):
        """The 0-based steps at which the model is called, in order."""
        return ddim_timesteps(diffusion.T, n) if self.num_steps else list(range(diffusion.T - 1, -1, -1))

    def __str__(self):
        return self.name


SAMPLERS = [
    Sampler("ddpm", ddpm_sample, ddpm_step, stochastic=True, num_steps=False),
    Sampler("ddpm-beta", ddpm_sample, ddpm_step, {"variance": "beta"}, stochastic=True, num_steps=False),
    Sampler("ddim", ddim_sample, ddim_step),
    Sampler("ddim-eta-0.5", ddim_sample, ddim_step, {"eta": 0.5}, stochastic=True),
    Sampler("dpm-solver++2m", dpm_solver_sample, dpm_solver_step),
]

every_sampler = pytest.mark.parametrize("sampler", SAMPLERS, ids=str)


@pytest.fixture(scope="module")
def diffusion():
    return Diffusion.from_schedule("linear", T=T)


def smooth_model(x, t):
    """A parameter-free, non-linear ε-predictor for inputs of any shape ``(B, …)``."""
    return torch.tanh(x + t.view(-1, *[1] * (x.ndim - 1)).to(x.dtype) / T)


class CountingModel(torch.nn.Module):
    """Counts its calls and logs the timesteps it saw; optionally reseeds ``generator`` when called at ``reseed_at``."""

    def __init__(self, generator=None, reseed_at=None, seed=0):
        super().__init__()
        self.calls, self.generator, self.reseed_at, self.seed = [], generator, reseed_at, seed

    def forward(self, x, t):
        assert t.dtype == torch.long and t.shape == (x.shape[0],) and not torch.is_grad_enabled() and not self.training
        self.calls.append(int(t[0]))
        if self.reseed_at is not None and int(t[0]) == self.reseed_at:
            self.generator.manual_seed(self.seed)  # changes the noise of this step and of the later ones
        return smooth_model(x, t)


# ------------------------------------------------------------------ the step function


@every_sampler
def test_one_step_signature(sampler):
    """step(diffusion, model_output, xt, t, t_next, *, options, generator=None)."""
    params = list(inspect.signature(sampler.step).parameters.values())
    assert [p.name for p in params[:5]] == ["diffusion", "model_output", "xt", "t", "t_next"]
    assert all(p.kind == p.POSITIONAL_OR_KEYWORD for p in params[:5])
    assert all(p.kind == p.KEYWORD_ONLY for p in params[5:])
    assert params[-1].name == "generator" and params[-1].default is None
    assert set(sampler.options) <= {p.name for p in params[5:]}


@every_sampler
def test_the_first_step_is_the_public_step(sampler, diffusion):
    """The loop's first step equals the public step with the same options, noise and network output."""
    x_T = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t, t_next = sampler.timesteps(diffusion)[:2]
    looped = sampler.run(smooth_model, diffusion, x_T=x_T, record=[t_next], generator=torch.Generator().manual_seed(1))
    out = sampler.step(diffusion, smooth_model(x_T, torch.full((4,), t)), x_T, t, t_next, **sampler.options,
                       generator=torch.Generator().manual_seed(1))
    assert isinstance(out, StepResult)
    assert torch.equal(out.x_prev, looped.xs[-1])


@every_sampler
def test_the_step_to_the_clean_end_adds_no_noise(sampler, diffusion):
    """From ``t = 0`` to ``t_next=None`` the step returns x̂0 (DDPM's mean μ_θ(x_1, 1) is x̂0: β̃ = 0, coef_xt = 0)."""
    xt, output = torch.randn(2, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    results = [sampler.step(diffusion, output, xt, 0, None, **sampler.options,
                            generator=torch.Generator().manual_seed(seed)) for seed in (3, 4)]
    assert torch.equal(results[0].x_prev, results[1].x_prev)
    torch.testing.assert_close(results[0].x_prev, results[0].x0_hat, rtol=1e-12, atol=1e-12)


@every_sampler
def test_step_bad_input_names_the_value(sampler, diffusion):
    xt = torch.zeros(2, 3)
    for t, t_next, match in ((T, T - 1, f"t={T}"), (5, 5, "t_next=5"), (5, -1, "t_next=-1"), (5, 2.0, "t_next=2.0")):
        with pytest.raises(ValueError, match=match):
            sampler.step(diffusion, xt, xt, t, t_next, **sampler.options)
    with pytest.raises(ValueError, match=r"\(2, 4\)"):
        sampler.step(diffusion, torch.zeros(2, 4), xt, 5, 4, **sampler.options)
    with pytest.raises(ValueError, match="torch.int64"):
        sampler.step(diffusion, xt, torch.zeros(2, 3, dtype=torch.long), 5, 4, **sampler.options)
    with pytest.raises(ValueError, match="'score'"):
        sampler.step(diffusion, xt, xt, 5, 4, **sampler.options, prediction="score")


# ------------------------------------------------------------------ the sampler


@every_sampler
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(3, 2), (2, 1, 4, 4)])
def test_shapes_and_dtypes(sampler, diffusion, dtype, shape):
    x_T = torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(0))
    visited = sampler.timesteps(diffusion)
    result = sampler.run(smooth_model, diffusion, x_T=x_T, record=[visited[0], 0],
                         generator=torch.Generator().manual_seed(1))
    assert result.x.shape == shape and result.x.dtype == dtype
    assert result.timesteps == [visited[0], 0]
    assert result.xs.shape == result.x0_preds.shape == (2, *shape)
    assert result.xs.dtype == result.x0_preds.dtype == dtype
    assert torch.equal(result.xs[0], x_T)
    drawn = sampler.run(smooth_model, diffusion, shape, generator=torch.Generator().manual_seed(1))
    assert drawn.x.shape == shape and drawn.x.dtype == torch.float32  # x_T ~ N(0, I) drawn in the default dtype


@every_sampler
def test_deterministic_under_a_generator(sampler, diffusion):
    """Same seed, same samples; another seed changes x_T, and with x_T fixed changes the result iff the sampler is
    stochastic."""
    def run(seed, x_T=None):
        return sampler.run(smooth_model, diffusion, (6, 3), x_T=x_T, generator=torch.Generator().manual_seed(seed)).x

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))
    x_T = torch.randn(6, 3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(run(0, x_T), run(0, x_T))
    assert torch.equal(run(0, x_T), run(1, x_T)) != sampler.stochastic


@every_sampler
def test_no_noise_at_the_last_step(sampler, diffusion):
    """Reseeding the generator at the last model call (t = 0) changes nothing; at the first it changes the result
    iff the sampler draws noise. The final sample is the x̂0 predicted at t = 0."""
    x_T = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def run(reseed_at, seed):
        g = torch.Generator().manual_seed(1)
        return sampler.run(CountingModel(g, reseed_at, seed), diffusion, x_T=x_T, generator=g, record=[0])

    last_a, last_b = run(0, 10), run(0, 11)
    assert torch.equal(last_a.x, last_b.x)
    first = sampler.timesteps(diffusion)[0]
    assert torch.equal(run(first, 10).x, run(first, 11).x) != sampler.stochastic
    torch.testing.assert_close(last_a.x, last_a.x0_preds[-1], rtol=1e-12, atol=1e-12)


@every_sampler
@pytest.mark.parametrize("n", [1, 2, 7])
def test_number_of_model_calls(sampler, diffusion, n):
    """One model call per visited timestep (DDPM: T), in eval mode without grad, a model in training mode restored."""
    model = CountingModel().train()
    sampler.run(model, diffusion, (2, 3), n=n, generator=torch.Generator().manual_seed(0))
    assert model.calls == sampler.timesteps(diffusion, n)
    assert len(model.calls) == (n if sampler.num_steps else T)
    assert model.training


@every_sampler
def test_bad_input_names_the_value(sampler, diffusion):
    with pytest.raises(ValueError, match=r"shape=\(2, 0\)"):
        sampler.run(smooth_model, diffusion, (2, 0))
    with pytest.raises(ValueError, match="x_T must be a floating-point tensor, got dtype torch.int64"):
        sampler.run(smooth_model, diffusion, x_T=torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \(2, 4\) does not match x_T shape \(2, 3\)"):
        sampler.run(smooth_model, diffusion, (2, 4), x_T=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="'score'"):
        sampler.run(smooth_model, diffusion, (2, 3), prediction="score")
    with pytest.raises(ValueError, match="clip_x0=-1"):
        sampler.run(smooth_model, diffusion, (2, 3), clip_x0=-1)
    with pytest.raises(ValueError, match=f"record timestep {T}"):
        sampler.run(smooth_model, diffusion, (2, 3), record=[T])
    with pytest.raises(ValueError, match=r"model output shape \(2, 2\)"):
        sampler.run(lambda x, t: x[:, :2], diffusion, (2, 3))
    if sampler.num_steps:
        for n in (0, T + 1, 2.0, True):
            with pytest.raises(ValueError, match=f"num_steps={n!r}"):
                sampler.run(smooth_model, diffusion, (2, 3), n=n)


# ------------------------------------------------------------------ the exact-denoiser oracle

MIXTURE = GaussianMixture([0.3, 0.7], [[-2.0], [1.5]], [0.1, 0.2])


def _mixture_quantiles(u):
    """Quantiles of the 1-D :data:`MIXTURE` at ``u``, by bisection on its CDF."""
    w, m, s = MIXTURE.weights, MIXTURE.means[:, 0], MIXTURE.variances.sqrt()
    lo, hi = torch.full_like(u, -10.0), torch.full_like(u, 10.0)
    for _ in range(60):
        mid = (lo + hi) / 2
        below = (w * torch.special.ndtr((mid[:, None] - m) / s)).sum(1) < u
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return (lo + hi) / 2


@every_sampler
def test_the_exact_denoiser_converges_to_the_data(sampler):
    """Wasserstein-1 distance of the samples to the mixture, from stratified x_T, falls as the steps grow.

    DDPM runs T = n steps of a cosine schedule of length n; the others n steps of T = 1000. With the exact ε
    (``ddpm_helpers.analytic``) the only errors left are the discretisation and, for stochastic samplers, the
    Monte-Carlo noise (about 0.02 at 2000 samples).
    """
    n_samples = 2000
    u = (torch.arange(n_samples, dtype=torch.float64) + 0.5) / n_samples
    x_T = torch.special.ndtri(u)[:, None]  # stratified x_T = Φ⁻¹(u)
    exact = _mixture_quantiles(u)

    def w1(n):
        d = Diffusion.from_schedule("cosine", T=1000 if sampler.num_steps else n)
        x = sampler.run(optimal_eps(MIXTURE, d), d, x_T=x_T, n=n, generator=torch.Generator().manual_seed(0)).x
        return (x[:, 0].sort().values - exact).abs().mean().item()

    coarse, fine = w1(4), w1(100)
    assert fine < 0.25 * coarse and fine < 0.04, (coarse, fine)  # measured: 0.19–0.41 at 4 steps, 0.0008–0.027 at 100

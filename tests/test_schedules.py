"""β schedules: end points, closed-form ᾱ, validity, and ᾱ_T small enough to start sampling from N(0, I)."""

import math

import numpy as np
import pytest
import torch

from ddpm_helpers.schedules import (
    SCHEDULES,
    cosine_beta_schedule,
    linear_beta_schedule,
    make_beta_schedule,
    sigmoid_beta_schedule,
)


def test_linear_matches_ho_et_al_at_T_1000():
    betas = linear_beta_schedule(1000)
    assert betas.dtype == torch.float64 and betas.shape == (1000,)
    assert betas[0].item() == pytest.approx(1e-4, rel=1e-12)
    assert betas[-1].item() == pytest.approx(0.02, rel=1e-12)
    steps = np.diff(betas.numpy())
    np.testing.assert_allclose(steps, (0.02 - 1e-4) / 999, rtol=1e-9)


def test_linear_rescaled_for_other_T_keeps_alpha_bar_T():
    betas = linear_beta_schedule(250)
    assert betas[0].item() == pytest.approx(4e-4, rel=1e-12)  # 1e-4 · 1000/250
    assert betas[-1].item() == pytest.approx(0.08, rel=1e-12)  # 0.02 · 1000/250
    # Σβ is what sets ᾱ_T ≈ exp(−Σβ); rescaling keeps it at ≈ 10.05 for every T
    assert betas.sum().item() == pytest.approx(linear_beta_schedule(1000).sum().item(), rel=1e-2)


def _alpha_bar_by_loop(betas):
    """ᾱ_t as an explicit running product, independent of torch.cumprod."""
    out, prod = [], 1.0
    for b in betas.tolist():
        prod *= 1.0 - b
        out.append(prod)
    return np.array(out)


def test_cosine_alpha_bar_matches_eq_17():
    T, s = 1000, 0.008
    betas = cosine_beta_schedule(T)
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    unclipped = betas.numpy() < 0.999
    assert unclipped[:-1].all() and not unclipped[-1]  # only the last step hits the 0.999 clip
    expected = np.array([f(t + 1) / f(0) for t in range(T)])
    np.testing.assert_allclose(_alpha_bar_by_loop(betas)[unclipped], expected[unclipped], rtol=1e-9, atol=1e-15)
    assert betas.max().item() == pytest.approx(0.999)


def test_sigmoid_alpha_bar_matches_chen_2023():
    T = 1000
    betas = sigmoid_beta_schedule(T)
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    gamma = lambda u: (sig(3) - sig(6 * u - 3)) / (sig(3) - sig(-3))  # noqa: E731
    expected = np.array([gamma((t + 1) / T) for t in range(T)])
    ok = betas.numpy() < 0.999
    np.testing.assert_allclose(_alpha_bar_by_loop(betas)[ok], expected[ok], rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("T", [50, 1000])
def test_schedules_are_valid_increasing_float64(name, T):
    betas = make_beta_schedule(name, T)
    assert betas.dtype == torch.float64 and betas.shape == (T,)
    assert (betas > 0).all() and (betas < 1).all()
    assert (torch.diff(betas) >= -1e-12).all()


@pytest.mark.parametrize("name", SCHEDULES)
def test_alpha_bar_T_small_enough_for_gaussian_prior(name):
    """KL(q(x_T | x0) ‖ N(0, 1)) per dimension for the worst data value |x0| = 1 is negligible."""
    alpha_bar_T = _alpha_bar_by_loop(make_beta_schedule(name, 1000))[-1]
    mean, var = math.sqrt(alpha_bar_T) * 1.0, 1.0 - alpha_bar_T
    kl_per_dim = 0.5 * (mean**2 + var - 1.0 - math.log(var))  # KL(N(m, v) ‖ N(0, 1))
    assert alpha_bar_T < 1e-4
    assert kl_per_dim < 1e-4


def test_unknown_schedule_name_raises():
    with pytest.raises(ValueError, match="quadratic"):
        make_beta_schedule("quadratic", 1000)


@pytest.mark.parametrize("T", [0, -3, 2.5, True])
@pytest.mark.parametrize("maker", [linear_beta_schedule, cosine_beta_schedule, sigmoid_beta_schedule])
def test_bad_T_raises(maker, T):
    with pytest.raises(ValueError, match=f"T={T!r}"):
        maker(T)


def test_linear_too_few_steps_raises():
    with pytest.raises(ValueError, match="T=10"):
        linear_beta_schedule(10)  # β_T would be 0.2 · 10 = 2 > 1


def test_bad_schedule_parameters_raise():
    with pytest.raises(ValueError, match="max_beta=1.5"):
        cosine_beta_schedule(100, max_beta=1.5)
    with pytest.raises(ValueError, match="tau=0"):
        sigmoid_beta_schedule(100, tau=0)

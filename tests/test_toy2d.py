"""Tests of the 2-D toy distributions."""

import math

import pytest
import torch

from ddpm_helpers.datasets.toy2d import DATASETS, ring_mixture, sample_toy


@pytest.mark.parametrize("name", DATASETS)
def test_shape_seeding_and_standardization(name):
    a = sample_toy(name, 20_000, torch.Generator().manual_seed(0))
    b = sample_toy(name, 20_000, torch.Generator().manual_seed(0))
    c = sample_toy(name, 20_000, torch.Generator().manual_seed(1))
    assert a.shape == (20_000, 2) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.mean(dim=0).abs().max() < 0.05  # centered
    assert abs(a.pow(2).sum(dim=1).mean().item() - 2.0) < 0.1  # E‖x‖² = 2: unit variance per axis on average


def test_ring_mixture_is_exactly_standardized_and_matches_its_samples():
    mixture = ring_mixture(num_modes=8, std=0.1)
    torch.testing.assert_close(mixture.mean(), torch.zeros(2, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(mixture.covariance(), torch.eye(2, dtype=torch.float64), atol=1e-12, rtol=0)
    x = sample_toy("ring_of_gaussians", 4000, torch.Generator().manual_seed(0))
    radius = x.norm(dim=1)
    assert abs(radius.median().item() - math.sqrt(2 * (1 - 0.01))) < 0.02  # points sit on the ring
    assert mixture.log_prob(x).mean() > ring_mixture(std=0.3).log_prob(x).mean()  # its own density fits best


def test_checkerboard_only_fills_dark_squares():
    x = sample_toy("checkerboard", 5000, torch.Generator().manual_seed(0))
    # undo the fixed standardization approximately: cells are where floor(u) + floor(v) is odd/even
    u, v = x[:, 0] / x[:, 0].abs().max() * 2, x[:, 1] / x[:, 1].abs().max() * 2
    parity = (torch.floor(u.clamp(-1.999, 1.999)) + torch.floor(v.clamp(-1.999, 1.999))).remainder(2)
    assert parity.float().mean() > 0.97 or parity.float().mean() < 0.03


def test_letters_points_lie_on_thin_strokes():
    x = sample_toy("ddpm_letters", 5000, torch.Generator().manual_seed(0))
    counts = torch.histogramdd(x.double(), bins=[60, 60]).hist
    # 5000 uniform points would touch ~75% of the 3600 cells of their bounding box; strokes leave most empty
    assert (counts > 0).double().mean() < 0.45


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="moon"):
        sample_toy("moon", 10)
    with pytest.raises(ValueError, match="-3"):
        sample_toy("two_moons", -3)
    with pytest.raises(ValueError, match="num_modes"):
        ring_mixture(num_modes=2)
    with pytest.raises(ValueError, match="std"):
        ring_mixture(std=1.5)

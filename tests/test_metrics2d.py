"""Tests of the two-sample energy distance and the mode-coverage count."""

import pytest
import torch

from ddpm_helpers.datasets.toy2d import ring_mixture
from ddpm_helpers.evaluation.metrics2d import energy_distance, mode_coverage


def test_energy_distance_of_two_point_masses():
    x, y = torch.zeros(50, 1), torch.ones(60, 1)
    assert energy_distance(x, y) == pytest.approx(2.0)  # 2·E|X−Y| − 0 − 0


def test_energy_distance_separates_equal_from_shifted_distributions():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(1500, 2, generator=g), torch.randn(1500, 2, generator=g)
    same = energy_distance(x, y)
    shifted = energy_distance(x, y + 0.3)
    assert abs(same) < 0.01 < shifted
    assert energy_distance(y + 0.3, x) == pytest.approx(shifted)


def test_energy_distance_rejects_mismatched_dimensions():
    with pytest.raises(ValueError, match="dimension"):
        energy_distance(torch.zeros(5, 2), torch.zeros(5, 3))


def test_mode_coverage_counts_covered_modes_and_stray_samples():
    mixture = ring_mixture(num_modes=8, std=0.1)
    g = torch.Generator().manual_seed(0)
    full = mode_coverage(mixture.sample(4000, g), mixture)
    assert full["covered"] == 1.0 and full["near"] > 0.98 and full["counts"].sum() > 3900
    half = mixture.means[:4].repeat(500, 1) + 0.1 * torch.randn(2000, 2, generator=g, dtype=torch.float64)
    result = mode_coverage(half.float(), mixture)
    assert result["covered"] == 0.5
    stray = mode_coverage(torch.zeros(100, 2), mixture)  # all at the centre, far from every mode
    assert stray["near"] == 0.0 and stray["covered"] == 0.0

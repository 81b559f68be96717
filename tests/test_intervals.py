"""Intervals of sample metrics: Wilson against SciPy, the jackknife's width and coverage, the judge's."""

import pytest
import torch
from scipy import stats

from ddpm_helpers.evaluation.intervals import jackknife_interval, median_ratio_interval, wilson_interval


@pytest.mark.parametrize("successes, n", [(0, 10), (3, 10), (958, 1000), (1000, 1000), (50, 100)])
def test_wilson_matches_scipy(successes, n):
    expected = stats.binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(successes, n) == pytest.approx((expected.low, expected.high), abs=1e-12)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="level"):
        wilson_interval(1, 10, level=1.0)
    with pytest.raises(ValueError, match="groups"):
        jackknife_interval(lambda index: 0.0, 10, groups=6)
    with pytest.raises(ValueError, match="b must be a 1-D Tensor"):
        median_ratio_interval(torch.rand(5), torch.rand(1))
    with pytest.raises(ValueError, match="draws"):
        median_ratio_interval(torch.rand(5), torch.rand(5), draws=10)


def test_the_jackknife_interval_of_a_mean_has_the_textbook_width_and_coverage():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(400, generator=generator, dtype=torch.float64)
    low, high = jackknife_interval(lambda index: x[index].mean().item(), len(x))
    assert low < x.mean().item() < high
    assert (high - low) == pytest.approx(2 * 1.96 / 400 ** 0.5, rel=0.25)  # 2 z σ/√n with σ = 1
    covered = 0
    for trial in range(200):  # draws of 60 from N(0, 1): the interval holds the true mean 0 about 95 % of the time
        y = torch.randn(60, generator=generator, dtype=torch.float64)
        low, high = jackknife_interval(lambda index: y[index].mean().item(), 60, groups=20, seed=trial)
        covered += low <= 0.0 <= high
    assert 176 <= covered <= 199  # 95 % of 200 = 190, give or take three binomial standard errors


def test_the_bootstrap_interval_of_a_median_ratio_covers_the_true_ratio():
    generator = torch.Generator().manual_seed(1)
    covered, widths = 0, []
    for trial in range(100):  # exponential distances; the true ratio of the medians is 0.8
        a = -0.8 * torch.rand(300, generator=generator).log()
        b = -torch.rand(300, generator=generator).log()
        low, high = median_ratio_interval(a, b, draws=500, seed=trial)
        covered += low <= 0.8 <= high
        widths.append(high - low)
    assert 85 <= covered <= 100  # 95 of 100, give or take three binomial standard errors
    # the delta method: SE of log(median) = 1/(2 f(m) m √n) = 1/(ln 2 · √n) for an exponential; two sets: × √2
    expected = 2 * 1.96 * 0.8 * (2 / 300) ** 0.5 / torch.log(torch.tensor(2.0)).item()
    assert sum(widths) / len(widths) == pytest.approx(expected, rel=0.2)
    assert median_ratio_interval(a, b, seed=3) == median_ratio_interval(a, b, seed=3)  # seeded


def test_the_judge_gives_intervals_around_its_numbers():
    from ddpm_helpers.datasets import mnist_images
    from ddpm_helpers.evaluation.mnist_eval import DigitEvaluator

    images, labels = mnist_images(train=False)
    evaluator = DigitEvaluator()
    digits, asked = images[-300:], labels[-300:]
    metrics = evaluator.evaluate(digits)
    found = evaluator.intervals(digits, asked, groups=30)
    for name in ("frechet_distance", "kernel_distance", "confident_share"):
        low, high = found[name]
        assert low <= getattr(metrics, name) <= high, name
    low, high = found["label_agreement"]
    assert 0.9 < low < high <= 1.0  # the judge reads real test digits as what they are
    label_free = evaluator.yardstick(digits).splitlines()
    assert label_free[-2].startswith("largest class gap (pts)") and "95 % confidence intervals" in label_free[-1]
    guided = evaluator.yardstick(digits, asked).splitlines()  # the labels asked for set the shares: no gap row
    assert guided[-2].startswith("label agreement (%)") and "class gap" not in "\n".join(guided)
    low, high = found["class_share_gap"]
    assert 0 <= low < high < 0.1  # real digits: their class shares are the data's, up to sampling noise


def test_the_jackknife_spread_of_the_frechet_distance_matches_independent_real_sets():
    """The interval's claim, checked where it can be: independent sets of 300 real digits scatter about as much as
    the jackknife says one set would (within a factor of two)."""
    from ddpm_helpers.evaluation import mnist_eval

    evaluator = mnist_eval.DigitEvaluator()
    images, _ = mnist_eval.real_digits(8 * 300, seed=1)
    scores = [evaluator.evaluate(images[k * 300:(k + 1) * 300]).frechet_distance for k in range(8)]
    spread = torch.tensor(scores, dtype=torch.float64).std().item()  # the sd over independent sets
    low, high = evaluator.intervals(images[:300], groups=30)["frechet_distance"]
    jackknife_sd = (high - low) / (2 * 1.96)
    assert 0.5 < jackknife_sd / spread < 2.0, (jackknife_sd, spread)

"""The doctor names the bug planted in a small DDPM written here (never in the helpers), and sees only the reader's
objects: tables, a batch, a step function, a network, an EMA copy. The correct pieces raise no alarm."""

import copy

import pytest
import torch

from ddpm_helpers.analytic import optimal_eps
from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.evaluation.doctor import (
    Report,
    check_data,
    check_ema,
    check_network,
    check_sampler,
    check_schedule,
    examine,
    reference_mixture,
)
from ddpm_helpers.nn.mlp import MLP

T = 200


# --- the reader's small DDPM: tables, one reverse step, a training loop, an EMA (bugs behind flags) -------------

def reader_tables(bug=None):
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)  # β_t, linear (Ho et al. 2020)
    alpha_bar = torch.cumprod(1 - betas, 0)  # ᾱ_t = ∏ (1 − β_s)
    if bug == "alpha_bar_off_by_one":
        alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])  # ᾱ_0 = 1 put at index 0
    if bug == "short_chain":
        betas = torch.linspace(1e-4, 2e-3, 1000, dtype=torch.float64)  # β too small: x_T keeps the data
        alpha_bar = torch.cumprod(1 - betas, 0)
    return betas, alpha_bar


def reader_step(bug=None):
    def step(diffusion, eps, xt, t, t_next, generator=None):
        betas, T = diffusion.betas, diffusion.T
        alpha_bar = torch.cumprod(1 - betas, 0)
        alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        if bug == "prev_from_first":
            alpha_bar_prev = torch.cat([alpha_bar[:1], alpha_bar[:-1]])  # ᾱ_prev[0] = ᾱ_1 where ᾱ_0 = 1 belongs
        i = t - 1 if bug == "off_by_one" else t  # a 0-based t converted once more: alpha_bar[t − 1]
        b, ab, ab_prev = float(betas[i]), float(alpha_bar[i]), float(alpha_bar_prev[i])
        if bug == "prev_wraps":
            ab_prev = float(alpha_bar[t - 1])  # ᾱ_{t−1} read from alpha_bar: right for t > 0, ᾱ_T at t = 0
        x0 = (xt - (1 - ab) ** 0.5 * eps) / ab**0.5  # x̂0 (Eq. 15)
        mean = ab_prev**0.5 * b / (1 - ab) * x0 + (1 - b) ** 0.5 * (1 - ab_prev) / (1 - ab) * xt  # μ̃ (Eq. 7)
        if bug == "mean_coefficient":
            mean = (xt - b / (1 - ab) * eps) / (1 - b) ** 0.5  # Eq. 11 with 1 − ᾱ where √(1 − ᾱ) belongs
        if bug == "unprobed" and T // 10 < t < T // 2 - 1:  # a slip only between the probed steps
            mean = mean + 0.05
        var = (1 - ab_prev) / (1 - ab) * b  # β̃
        z = torch.randn(xt.shape, dtype=xt.dtype, generator=generator)
        if t_next is None:
            return mean + (b**0.5 * z if bug == "last_step_noise" else 0)
        return mean + (var if bug == "sigma_as_variance" else var**0.5) * z
    return step


def reader_ddim_step(bug=None):
    def step(diffusion, eps, xt, t, t_next, generator=None):
        alpha_bar = torch.cumprod(1 - diffusion.betas, 0)
        i = t - 1 if bug == "off_by_one" else t  # both indices converted once more (and −1 wraps)
        ab = float(alpha_bar[i])
        x0 = (xt - (1 - ab) ** 0.5 * eps) / ab**0.5
        if t_next is None:
            return x0
        ab_s = float(alpha_bar[t - 1 if bug == "ddim_prev" else t_next - 1 if bug == "off_by_one" else t_next])
        return ab_s**0.5 * x0 + (1 - ab_s) ** 0.5 * eps  # Eq. 12, η = 0
    return step


def reader_train(bug=None, steps=400, seed=0):
    """Train an MLP on the reference mixture; returns (model, ema, initial, losses)."""
    torch.manual_seed(seed)
    mixture = reference_mixture()
    betas = Diffusion.from_schedule("linear", T).betas.float()
    alpha_bar = torch.cumprod(1 - betas, 0)
    model = MLP(hidden=64, num_blocks=2, time_dim=32, fourier_octaves=2)
    net = model
    if bug == "time_blind":
        net = lambda x, t: model(x, torch.zeros_like(t))  # noqa: E731
    if bug == "time_scaled":
        net = lambda x, t: model(x, t.float() / T)  # noqa: E731
    initial = copy.deepcopy(model)
    ema = copy.deepcopy(model)
    lr = 3.0 if bug == "diverging_lr" else 3e-3
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        x0 = mixture.sample(256, g)
        high = T // 2 if bug == "t_range" else T
        t = torch.randint(0, high, (256,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        ab = alpha_bar[t][:, None]
        loss = (net(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, t) - eps).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if bug != "ema_frozen":
            with torch.no_grad():
                decay = 0.0 if bug == "ema_is_raw" else 0.95
                for e, p in zip(ema.parameters(), model.parameters()):
                    e.lerp_(p, 1 - decay)  # θ_ema ← d θ_ema + (1 − d) θ
    return net, ema, initial, losses


@pytest.fixture(scope="module")
def diffusion():
    return Diffusion.from_schedule("linear", T)


@pytest.fixture(scope="module")
def held_out():
    return reference_mixture().sample(1000, torch.Generator().manual_seed(123))


@pytest.fixture(scope="module")
def trained():
    return reader_train()


# --- schedule tables -------------------------------------------------------------------------------------------

def test_correct_schedule_passes():
    assert check_schedule(*reader_tables()).passed


def test_zero_terminal_snr_schedule_passes():
    betas, _ = reader_tables()
    betas = betas.clone()
    betas[-1] = 1.0  # β_T = 1: ᾱ_T = 0 (Lin et al. 2024)
    assert check_schedule(betas, torch.cumprod(1 - betas, 0)).passed


@pytest.mark.parametrize("bug, name", [("alpha_bar_off_by_one", "alpha_bar = cumprod(1 - betas)"),
                                       ("short_chain", "x_T is noise")])
def test_schedule_bug_is_named(bug, name):
    report = check_schedule(*reader_tables(bug))
    assert report.most_likely.name == name, report
    if bug == "alpha_bar_off_by_one":
        assert "off by one" in report.most_likely.cause


# --- a data batch ----------------------------------------------------------------------------------------------

def reader_batch(bug=None):
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(8, 3, 36, 36, generator=g), 5, 1)  # (8, 3, 32, 32) images
    pixels = (smooth - smooth.amin()) / (smooth.amax() - smooth.amin())  # [0, 1]
    if bug == "uint8":
        return (pixels * 255).round().to(torch.uint8)
    if bug == "unscaled_float":
        return (pixels * 255).round()
    if bug == "unit_range":
        return pixels
    x = 2 * pixels - 1  # [−1, 1]
    if bug == "channels_last":
        return x.permute(0, 2, 3, 1)
    if bug == "scrambled":
        return x.permute(0, 2, 3, 1).reshape(8, 3, 32, 32)  # .view where .permute belongs
    return x


def test_correct_batch_passes():
    assert check_data(reader_batch()).passed, check_data(reader_batch())


@pytest.mark.parametrize("size", [64, 128])
def test_smooth_correct_images_raise_no_stripe_alarm(size):
    g = torch.Generator().manual_seed(size)
    coarse = torch.rand(8, 3, 6, 6, generator=g) * 2 - 1
    smooth = torch.nn.functional.interpolate(coarse, size=size, mode="bilinear")  # neighbours correlate ≈ 1
    assert check_data(smooth).passed, check_data(smooth)


def test_correct_points_pass_and_their_range_is_judged_as_points(held_out):
    assert check_data(held_out).passed, check_data(held_out)  # the mixture reaches beyond ±1.5: that is fine
    report = check_data(held_out / 4 + 0.5)  # the same points squeezed into [0, 1]
    assert report.most_likely.name == "centred, scale about 1" and "[0, 1]" in report.most_likely.cause, report
    report = check_data(held_out * 50 + 200)  # raw positive coordinates: not pixels
    assert "not normalised" in report.most_likely.cause and "255" not in report.most_likely.cause, report


def test_images_scaled_beyond_one_are_not_called_unit_range():
    x = reader_batch() * 2.2  # e.g. normalised with ImageNet's mean and std: below 0 and above 1.5
    report = check_data(x)
    assert report.most_likely.name == "range about [−1, 1]" and "[0, 1]," not in report.most_likely.cause, report


@pytest.mark.parametrize("bug, name, words", [
    ("uint8", "floating point", "uint8"), ("unscaled_float", "range about [−1, 1]", "[0, 255]"),
    ("unit_range", "range about [−1, 1]", "[0, 1]"), ("channels_last", "channels first (B, C, H, W)", "channels last"),
    ("scrambled", "no colour stripes along rows", "scrambled")])
def test_data_bug_is_named(bug, name, words):
    report = check_data(reader_batch(bug))
    assert report.most_likely.name == name and words in report.most_likely.cause, report


# --- a reverse step against the exact denoiser -----------------------------------------------------------------

def test_correct_steps_pass(diffusion):
    assert check_sampler(reader_step(), diffusion=diffusion).passed
    assert check_sampler(reader_ddim_step(), kind="ddim", diffusion=diffusion).passed


@pytest.mark.parametrize("bug, name, words", [
    ("off_by_one", "step mean = posterior mean (Eq. 7)", "off by one"),
    ("mean_coefficient", "step mean = posterior mean (Eq. 7)", "coefficient"),
    ("sigma_as_variance", "step variance σ² = β̃ (or β)", "σ used as the variance"),
    ("last_step_noise", "no noise at the last step", "last step"),
    ("prev_from_first", "step mean = posterior mean (Eq. 7)", "last step only"),
    ("prev_wraps", "step mean = posterior mean (Eq. 7)", "last step only")])
def test_step_bug_is_named(diffusion, bug, name, words):
    report = check_sampler(reader_step(bug), diffusion=diffusion, num_samples=500)
    assert report.most_likely.name == name and words in report.most_likely.cause, report
    if bug == "off_by_one":
        assert "at t − 1" in report.most_likely.cause, report
    if bug.startswith("prev_"):  # ᾱ_prev wrong only at t = 0 is not blamed on every table
        assert "off by one" not in report.most_likely.cause, report


def test_step_wrong_between_the_probes_is_blamed_on_the_step_not_the_loop(diffusion):
    report = check_sampler(reader_step("unprobed"), diffusion=diffusion, num_samples=500)
    assert report.names(passed=False) == ["samples match the mixture"], report
    assert "did not visit" in report.most_likely.cause and "loop" not in report.most_likely.fix, report


def test_chain_finding_follows_the_failed_step_checks(diffusion):
    report = check_sampler(reader_step("prev_wraps"), diffusion=diffusion, num_samples=500)
    chain = report.findings[-1]
    assert not chain.passed and chain.cause.startswith("follows") and chain.fix == "fix those first", report


@pytest.mark.parametrize("bug, words", [("ddim_prev", "wrong ᾱ_prev"), ("off_by_one", "off by one")])
def test_ddim_bug_is_named(diffusion, bug, words):
    report = check_sampler(reader_ddim_step(bug), kind="ddim", diffusion=diffusion, num_samples=500)
    assert words in report.most_likely.cause and "t − 1" in report.most_likely.cause, report


# --- a trained network and its EMA ------------------------------------------------------------------------------

def test_correct_network_and_ema_pass(diffusion, held_out, trained):
    net, ema, initial, losses = trained
    report = check_network(net, diffusion, held_out, mixture=reference_mixture(), losses=losses) + check_ema(
        ema, net, initial=initial, diffusion=diffusion, data=held_out)
    assert report.passed, report


@pytest.mark.parametrize("bug, name, words", [
    ("time_blind", "output depends on t", "timestep"),
    ("time_scaled", "loss near the exact denoiser's floor", "t / T"),
    ("t_range", "loss near the exact denoiser's floor", "never drawn"),
    ("diverging_lr", "training loss settled", "learning rate")])
def test_network_bug_is_named(diffusion, held_out, bug, name, words):
    net, _, _, losses = reader_train(bug)
    report = check_network(net, diffusion, held_out, mixture=reference_mixture(), losses=losses)
    assert report.most_likely.name == name and words in report.most_likely.cause, report


def test_near_optimal_x0_network_passes(diffusion, held_out):
    """An x0-predicting network off the exact x̂0 by 0.02: its ε error is ~40 times that at t = 0, but it is judged
    in the space of its own target."""
    mixture = reference_mixture()
    eps_star = optimal_eps(mixture, diffusion)

    def x0_net(x, t):
        ab = diffusion.alpha_bar.to(x.dtype)[t][:, None]
        return (x - (1 - ab).sqrt() * eps_star(x, t)) / ab.sqrt() + 0.02 * torch.sin(3 * x)  # x̂0 (Eq. 15) + error

    report = check_network(x0_net, diffusion, held_out, mixture=mixture, prediction="x0")
    assert report.passed, report


def test_v_loss_history_is_compared_with_the_loss_of_predicting_zero_v(diffusion, held_out):
    """For v the loss of predicting 0 is E[v²] = ᾱ + (1 − ᾱ) E[x0²] averaged over t, not 1: on data of small scale a
    history that never beats it is no settled training, though it stays below 1."""
    small = held_out * 0.1
    report = check_network(lambda x, t: torch.zeros_like(x), diffusion, small, prediction="v", losses=[0.6] * 100)
    settled = next(f for f in report.findings if f.name == "training loss settled")
    assert not settled.passed, report


@pytest.mark.parametrize("bug, name", [("ema_frozen", "EMA moved from its start"),
                                       ("ema_is_raw", "EMA differs from the raw weights")])
def test_ema_bug_is_named(diffusion, held_out, bug, name):
    net, ema, initial, _ = reader_train(bug, steps=100)
    report = check_ema(ema, net, initial=initial, diffusion=diffusion, data=held_out)
    assert report.most_likely.name == name, report


def test_frozen_ema_is_seen_without_the_initial_weights(diffusion, held_out):
    net, ema, _, _ = reader_train("ema_frozen", steps=100)
    report = check_ema(ema, net, diffusion=diffusion, data=held_out)
    assert report.most_likely.name == "EMA as good as the raw weights" and "never updated" in report.most_likely.cause


def test_examine_prints_what_it_checked(capsys):
    report = examine(betas=reader_tables()[0], data=reader_batch("unit_range"))
    printed = capsys.readouterr().out
    assert isinstance(report, Report) and not report.passed
    assert "ok    betas in (0, 1)" in printed and "FAIL  range about [−1, 1]" in printed and "fix:" in printed

"""The doctor's checks of a reader's schedule tables and of a data batch (no network needed)."""

from __future__ import annotations

import torch

from ddpm_helpers.evaluation.doctor.report import Finding, Report


def _vector(values, name: str) -> torch.Tensor:
    table = torch.as_tensor(values, dtype=torch.float64).detach().cpu()
    if table.ndim != 1 or len(table) < 2:
        raise ValueError(f"{name} must be a 1-D table of T >= 2 numbers, got shape {tuple(table.shape)}")
    return table


def check_schedule(betas, alpha_bar=None) -> Report:
    """Check a reader's ``betas`` (β_1…β_T, 0-based) and ``alpha_bar`` (ᾱ_t = ∏_{s≤t} (1 − β_s), Ho et al. 2020,
    Eq. 4): β in (0, 1) (β_T = 1 allowed, a zero-terminal-SNR schedule), ᾱ the product of the α's at the same
    index (not shifted by one), decreasing, and small enough at the end that x_T is noise."""
    betas = _vector(betas, "betas")
    findings = []
    bad = ~((betas > 0) & (betas < 1))
    bad[-1] = not (0 < float(betas[-1]) <= 1)  # β_T = 1 is allowed: zero terminal SNR (Lin et al. 2024)
    findings.append(Finding(
        "betas in (0, 1)", not bool(bad.any()),
        f"betas range from {betas.min():.3g} to {betas.max():.3g}",
        "a β outside (0, 1): a schedule rescaled wrongly, or ᾱ passed where β belongs",
        "build β with a schedule function (linear: 1e-4 to 0.02 at T = 1000) and derive ᾱ from it"))
    expected = torch.cumprod(1 - betas, 0)  # ᾱ_t = ∏_{s≤t} α_s
    if alpha_bar is None:
        alpha_bar = expected
    alpha_bar = _vector(alpha_bar, "alpha_bar")
    if alpha_bar.shape != betas.shape:
        findings.append(Finding(
            "alpha_bar has T entries", False, f"{len(alpha_bar)} values of ᾱ for {len(betas)} values of β",
            "ᾱ_0 = 1 kept at the front of the table (T + 1 entries), so alpha_bar[t] is the step before's",
            "alpha_bar = cumprod(1 − betas) (T entries); keep ᾱ_0 = 1 in a separate alpha_bar_prev"))
        return Report(findings)
    matches = torch.allclose(alpha_bar, expected, rtol=1e-4, atol=1e-8)
    shifted = torch.cat([torch.ones(1, dtype=torch.float64), expected[:-1]])  # ᾱ_{t−1}
    cause, fix = "ᾱ is not the running product of α = 1 − β", "alpha_bar = torch.cumprod(1 - betas, dim=0)"
    if torch.allclose(alpha_bar, shifted, rtol=1e-4, atol=1e-8):
        cause = ("ᾱ index off by one: alpha_bar[0] = 1 is the paper's ᾱ_0, so alpha_bar[t] is ᾱ of the step before "
                 "(the paper counts t from 1, the code from 0)")
        fix = "alpha_bar = cumprod(1 − betas), alpha_bar[0] = 1 − betas[0]; ᾱ_0 = 1 belongs in alpha_bar_prev"
    elif torch.allclose(alpha_bar, torch.cumprod(betas, 0), rtol=1e-4, atol=1e-30):
        cause = "ᾱ is the product of the β's, not of the α's"
    findings.append(Finding(
        "alpha_bar = cumprod(1 - betas)", matches,
        f"alpha_bar[0] = {alpha_bar[0]:.6f} (1 − β_1 = {expected[0]:.6f}), alpha_bar[-1] = {alpha_bar[-1]:.3g}",
        cause, fix))
    steps = alpha_bar[1:] - alpha_bar[:-1]
    findings.append(Finding(
        "alpha_bar decreasing", bool((steps < 0).all()), f"largest step {steps.max():+.3g}",
        "ᾱ grows somewhere: a β ≤ 0, or a table reversed", "ᾱ must fall from ≈ 1 to ≈ 0; check the order of β"))
    findings.append(Finding(
        "x_T is noise", float(alpha_bar[-1]) < 1e-2, f"√ᾱ_T = {alpha_bar[-1].sqrt():.3g} (signal left in x_T)",
        "the chain does not reach noise: T or the β's too small, so sampling from N(0, I) starts off the data's path",
        "use the linear schedule rescaled by 1000/T (the helpers' linear_beta_schedule) or a cosine schedule"))
    return Report(findings)


def _lag_correlation(images: torch.Tensor, lag: int) -> float:
    """Correlation of pixel values ``lag`` apart along the rows of every channel."""
    rows = images.reshape(-1, images.shape[-1])
    a, b = rows[:, :-lag].reshape(-1), rows[:, lag:].reshape(-1)
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).mean() / (a.std() * b.std()).clamp(min=1e-12))


def _range_finding(x: torch.Tensor) -> Finding:
    """Images must lie in about [−1, 1]; other data (points, vectors) about centred with a scale near 1. Either
    fails when it is all ≥ 0 and looks like [0, 1] or like [0, 255]."""
    low, high, mean = float(x.min()), float(x.max()), float(x.mean())
    image = x.ndim == 4
    detail = f"values from {low:.3g} to {high:.3g}, mean {mean:.3g}"
    if low >= 0 and high > 2:
        cause, fix = (("pixels still in [0, 255]: converted to float but not rescaled",
                       "x = x / 127.5 - 1  (or to_unit_range from ddpm_helpers.datasets.images)") if image else
                      (f"data not normalised: all values ≥ 0 and up to {high:.3g}",
                       "standardise: x = (x − mean) / std over the training set"))
    elif low >= 0 and high <= 1.5:
        cause, fix = ("data in [0, 1], not [−1, 1]: it never reaches the negative half, so at every t the noise is "
                      "relatively louder than the schedule was designed for",
                      "x = 2 * x - 1 before training, and (x + 1) / 2 only to display samples")
    elif image:
        cause, fix = ("images outside [−1, 1]: scaled by a mean and std (e.g. ImageNet's) instead of mapped to [−1, 1]",
                      "x = 2 * x - 1 from [0, 1] (or x / 127.5 - 1 from 0 … 255)")
    else:
        cause, fix = ("data not normalised: far from centred, or a scale far from 1",
                      "standardise: x = (x − mean) / std over the training set")
    if image:
        ok = low >= -1.5 and high <= 1.5 and not (low >= 0 and high > 0.5)
        return Finding("range about [−1, 1]", ok, detail, cause, fix)
    centred = float(x.mean(0).abs().max()) < 1 and 0.2 < float(x.std(0).max()) < 5
    ok = centred and not (low >= 0 and (high > 2 or high <= 1.5))
    return Finding("centred, scale about 1", ok, detail, cause, fix)


def check_data(batch) -> Report:
    """Check a training batch as the model will see it: floating point; for images ``(B, C, H, W)`` in [−1, 1]
    rather than in [0, 1] or [0, 255], channels first and not cut into channels in memory order; for other data
    (``(N, D)`` points) centred with a scale about 1, and again not all in [0, 1] or [0, 255]."""
    if not torch.is_tensor(batch):
        raise ValueError(f"batch must be a tensor, got {type(batch).__name__}")
    findings = [Finding(
        "floating point", batch.is_floating_point(), f"dtype {batch.dtype}",
        "uint8 pixels given to the model: no conversion to float", "x = x.float() / 127.5 - 1  (uint8 → [−1, 1])")]
    x = batch.detach().double().cpu()
    findings.append(_range_finding(x))
    if x.ndim == 4:
        channels_last = x.shape[1] not in (1, 3, 4) and x.shape[-1] in (1, 3, 4)
        findings.append(Finding(
            "channels first (B, C, H, W)", not channels_last, f"shape {tuple(x.shape)}",
            "channels last: an (H, W, C) image array given to a network that wants (C, H, W)",
            "x = x.permute(0, 3, 1, 2) (never .view or .reshape: they scramble the pixels)"))
        channels = x.shape[1]
        if not channels_last and channels in (3, 4) and x.shape[-1] > channels + 1:
            # (H, W, C) numbers cut into (C, H, W) in memory order: along a row, R G B R G B …, so values C apart
            # (one colour, neighbouring pixels) are more alike than values C − 1 or C + 1 apart (two colours). In a
            # correct image the correlation only falls with the distance, however smooth the image
            period = _lag_correlation(x, channels)
            off = max(_lag_correlation(x, channels - 1), _lag_correlation(x, channels + 1))
            findings.append(Finding(
                "no colour stripes along rows", period < off,
                f"correlation of pixels {channels} apart {period:.3f}, {channels - 1} or {channels + 1} apart "
                f"{off:.3f} (a peak at {channels} is the stripe)",
                "pixels scrambled: an (H, W, C) array turned into (C, H, W) with .view or .reshape",
                "use .permute(2, 0, 1) (one image) or .permute(0, 3, 1, 2) (a batch) to move the channel axis"))
    return Report(findings)

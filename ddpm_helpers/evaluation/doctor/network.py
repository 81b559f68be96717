"""The doctor's checks of a reader's trained network and of its EMA, on held-out data.

Per noise level the doctor draws x_t = √ᾱ_t x0 + √(1 − ᾱ_t) ε (Ho et al. 2020, Eq. 4) and reads the network's ε
prediction: its mean and variance, its loss against ε and, for data from a known Gaussian mixture, the loss of the
exact denoiser ε* = E[ε | x_t], which no network can beat (``analytic.optimal_eps``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ddpm_helpers.analytic import GaussianMixture, optimal_eps
from ddpm_helpers.checks import check_name
from ddpm_helpers.diffusion import PREDICTIONS, Diffusion
from ddpm_helpers.evaluation.doctor.report import Finding, Report


def _place(model):
    p = next((p for p in model.parameters() if p.is_floating_point()), None) if isinstance(model, nn.Module) else None
    return (p.device, p.dtype) if p is not None else (torch.device("cpu"), torch.get_default_dtype())


@torch.no_grad()
def _per_t(model, diffusion, x0, t, prediction, seed, eps_star=None):
    """(ε̂, ε, ε*) at code step ``t`` for the held-out ``x0``, on the CPU in float64."""
    device, dtype = _place(model)
    g = torch.Generator().manual_seed(seed + t)
    eps = torch.randn(x0.shape, dtype=torch.float64, generator=g)
    tt = torch.full((len(x0),), t, dtype=torch.long)
    xt = diffusion.q_sample(x0, tt, eps)  # x_t = √ᾱ x0 + √(1 − ᾱ) ε
    out = model(xt.to(device, dtype), tt.to(device)).double().cpu()
    eps_hat = diffusion.model_predictions(out, xt, tt, prediction)[0] if prediction != "eps" else out
    return xt, eps_hat, eps, (eps_star(xt, tt) if eps_star is not None else None)


def _sensitivity(outputs):
    """Share of the outputs' variance that comes from changing t at fixed x (0: the network ignores t)."""
    stacked = torch.stack(outputs)  # (timesteps, N, …)
    return float(stacked.var(0).mean() / stacked.var().clamp(min=1e-12))


@torch.no_grad()
def _outputs(model, x, timesteps):
    """The model's outputs at one ``x`` for each of ``timesteps``, on the CPU in float64."""
    device, dtype = _place(model)
    return [model(x.to(device, dtype), torch.full((len(x),), t, dtype=torch.long, device=device)).double().cpu()
            for t in timesteps]


def check_network(model, diffusion: Diffusion, data: torch.Tensor, *, mixture: GaussianMixture | None = None,
                  prediction: str = "eps", losses=None, num_timesteps: int = 10, seed: int = 0) -> Report:
    """Check a trained ``model(x_t, t)`` on held-out ``data`` (N, …) at ``num_timesteps`` noise levels.

    Its outputs must be finite, depend on t, and (with ``mixture``, the data's exact distribution) lose no more than
    the exact denoiser at every t, measured in the space of its own target (``prediction``: ε, x0 or v, so an x0
    network is not blamed for the 1/√ᾱ-amplified ε error at low noise); its ε prediction must have mean ≈ 0 and
    variance ≤ 1 (ε* = E[ε | x_t] varies less than ε). ``losses``: the training loss history, if you have it (a
    diverging run shows there first); it is compared with the loss of predicting 0, so it must be the plain mean
    squared error of that target, not a weighted one (min-SNR and the like).
    """
    check_name(prediction, PREDICTIONS, "prediction")
    x0 = data[:1000].detach().double().cpu()
    eps_star = optimal_eps(mixture, diffusion) if mixture is not None else None
    grid = sorted({round(i * (diffusion.T - 1) / (num_timesteps - 1)) for i in range(num_timesteps)})
    rows = [_per_t(model, diffusion, x0, t, prediction, seed, eps_star) for t in grid]
    findings = []
    finite = all(bool(torch.isfinite(eps_hat).all()) for _, eps_hat, _, _ in rows)
    findings.append(Finding("finite predictions", finite, "every prediction finite" if finite else "NaN or inf",
                            "training diverged: the learning rate is too high", "lower the learning rate (by 3 to "
                            "10 times), keep gradient clipping, add a warmup"))
    if not finite:
        return Report(findings)
    if losses is not None:
        history = torch.as_tensor(list(losses), dtype=torch.float64)
        width = max(len(history) // 10, 1)
        windows = history[: len(history) // width * width].reshape(-1, width).mean(1)
        second = float(x0.pow(2).mean())  # E[x0²]
        ab = diffusion.alpha_bar.double()
        # the loss of predicting 0: E[ε²] = 1, E[x0²], or E[v²] = ᾱ + (1 − ᾱ) E[x0²] averaged over t
        trivial = {"eps": 1.0, "x0": second, "v": float((ab + (1 - ab) * second).mean())}[prediction]
        settled = bool(torch.isfinite(history).all()) and float(windows[-1]) <= 1.5 * float(windows.min()) \
            and float(windows[-1]) < trivial
        findings.append(Finding(
            "training loss settled", settled,
            f"loss over the last tenth {float(windows[-1]):.3g}, best tenth {float(windows.min()):.3g} (predicting 0 "
            f"scores {trivial:.3g})",
            "the learning rate diverges: the loss climbed or jumped, or never fell below that of predicting 0",
            "lower the learning rate (by 3 to 10 times), keep gradient clipping, add a warmup"))
    x = rows[len(rows) // 2][0]  # one x_t, asked at every t
    sensitivity = _sensitivity(_outputs(model, x, grid))
    expected = 0.02 if eps_star is None else 0.3 * _sensitivity(
        [eps_star(x, torch.full((len(x),), t, dtype=torch.long)) for t in grid])
    findings.append(Finding(
        "output depends on t", sensitivity > expected,
        f"{100 * sensitivity:.1f} % of the output's variance comes from t (at least {100 * expected:.1f} % expected)",
        "the timestep does not reach the network: it gives one answer at every noise level",
        "pass the 0-based integer t to the model in training and sampling, into the sinusoidal embedding"))
    if eps_star is not None:
        # excess loss in the space of the network's own target: x̂0 − x0 = −√((1 − ᾱ)/ᾱ) (ε̂ − ε) and
        # v̂ − v = (ε̂ − ε)/√ᾱ, so the ε-space excess is weighted by (1 − ᾱ)/ᾱ (x0) or 1/ᾱ (v)
        ab = [float(diffusion.alpha_bar[t]) for t in grid]
        weight = [{"eps": 1.0, "x0": (1 - a) / a, "v": 1 / a}[prediction] for a in ab]
        excess = [w * float((eps_hat - eps).pow(2).mean() - (star - eps).pow(2).mean())
                  for w, (_, eps_hat, eps, star) in zip(weight, rows)]
        bad = [t for t, e in zip(grid, excess) if e > 0.05]
        few = bool(bad) and len(bad) < len(grid) - 1
        cause = "far from the exact denoiser at most t: too few steps, the wrong target, or a diverging learning rate"
        fix = "train longer with a stable learning rate; check the target is the ε that made x_t"
        if few and bad == grid[-len(bad):]:
            good = grid[len(grid) - len(bad) - 1]
            cause = (f"loss far above the floor at t in [{bad[0]}, {bad[-1]}] (of the t probed), fine up to "
                     f"t = {good}: t beyond about {good} probably never drawn in training (a wrong randint bound, "
                     "or a smaller T in training than in sampling)")
            fix = "draw t ~ U{0, …, T−1} with the same T as the sampler"
        elif few and bad == grid[:len(bad)]:
            cause = (f"not learnt at low noise, t in [{bad[0]}, {bad[-1]}]: the time embedding cannot tell these "
                     "steps apart (t / T fed to an embedding made for integer steps), or they were never drawn")
            fix = "embed the 0-based integer t (sinusoidal_embedding(t)), and draw t from 0, not 1"
        findings.append(Finding(
            "loss near the exact denoiser's floor", not bad,
            "excess loss per t " + ", ".join(f"{t}: {e:.3f}" for t, e in zip(grid, excess)), cause, fix))
    # an x0 network's ε̂ carries its x̂0 error times √(ᾱ/(1 − ᾱ)): judge its ε statistics only where ᾱ ≤ 0.9
    kept = [row for t, row in zip(grid, rows) if prediction != "x0" or float(diffusion.alpha_bar[t]) <= 0.9]
    means = [float(eps_hat.mean()) for _, eps_hat, _, _ in kept]
    variances = [float(eps_hat.var()) for _, eps_hat, _, _ in kept]
    ok = max(abs(m) for m in means) < 0.15 and max(variances) < 1.25
    findings.append(Finding(
        "ε prediction mean ≈ 0, variance ≤ 1", ok,
        f"means from {min(means):+.3f} to {max(means):+.3f}, variances from {min(variances):.3f} to "
        f"{max(variances):.3f}", "the predictions are biased or larger than any noise: a diverged run, the wrong "
        "target, or data not centred", "train on centred data in [−1, 1] with the ε target and a stable learning "
        "rate"))
    return Report(findings)


def _float_state(model):
    return {k: v.detach().double().cpu() for k, v in model.state_dict().items() if v.is_floating_point()}


def _distance(a, b):
    return math.sqrt(sum(float((a[k] - b[k]).pow(2).sum()) for k in a))


def check_ema(ema_model, model, *, initial=None, diffusion: Diffusion | None = None, data=None,
              prediction: str = "eps", seed: int = 0) -> Report:
    """Check an EMA copy against the raw ``model``: it must differ from it, have moved from ``initial`` (the
    weights before training, if given) and, with ``diffusion`` and held-out ``data``, not lose much more than the
    raw weights do (an EMA that never moved predicts like an untrained network)."""
    ema, raw = _float_state(ema_model), _float_state(model)
    if ema.keys() != raw.keys():
        raise ValueError("ema_model and model must be the same architecture (their float weights differ in names)")
    size = math.sqrt(sum(float(v.pow(2).sum()) for v in raw.values())) or 1.0
    findings = [Finding(
        "EMA differs from the raw weights", _distance(ema, raw) > 1e-9 * size,
        f"distance {_distance(ema, raw) / size:.2g} of the weights' norm",
        "the 'EMA' is the raw network: decay 0, the raw weights copied into it, or the raw model sampled",
        "sample from ema.model, updated with ema.update(model) after each optimizer step (decay 0.999 or so)")]
    if initial is not None:
        start = _float_state(initial)
        moved = _distance(ema, start) > 1e-9 * size
        findings.append(Finding(
            "EMA moved from its start", moved, f"distance {_distance(ema, start) / size:.2g} of the weights' norm",
            "the EMA was never updated: ema.update(model) is not called after optimizer.step()",
            "call ema.update(model) after every optimizer step"))
    if diffusion is not None and data is not None:
        x0 = data[:1000].detach().double().cpu()
        grid = [round(i * (diffusion.T - 1) / 9) for i in range(10)]
        loss = {}
        for name, net in (("ema", ema_model), ("raw", model)):
            rows = [_per_t(net, diffusion, x0, t, prediction, seed) for t in grid]
            loss[name] = sum(float((eps_hat - eps).pow(2).mean()) for _, eps_hat, eps, _ in rows) / len(rows)
        findings.append(Finding(
            "EMA as good as the raw weights", loss["ema"] <= 1.2 * loss["raw"] + 0.02,
            f"mean loss over t: EMA {loss['ema']:.3f}, raw {loss['raw']:.3f}",
            "the EMA lags far behind the raw weights: never updated, or a decay too close to 1 for this many steps",
            "call ema.update(model) after every optimizer step; with few steps use a decay warmup or 0.99"))
    return Report(findings)

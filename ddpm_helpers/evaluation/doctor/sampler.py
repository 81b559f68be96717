"""The doctor's check of a reader's reverse step, run against the exact denoiser of a known Gaussian mixture.

With ε* = E[ε | x_t] in closed form (``analytic.optimal_eps``) the network cannot be to blame, so whatever goes
wrong is the step's. The doctor probes single steps (their mean and variance over many draws from one x_t, next to
the posterior q(x_{t−1} | x_t, x̂0) of Ho et al. 2020, Eq. 7, and next to the same step with the tables read one
index off) and then runs the whole chain from x_T ~ N(0, I): its samples must have the mixture's mean, spread and
mode shares.
"""

from __future__ import annotations

import torch

from ddpm_helpers.analytic import GaussianMixture, optimal_eps
from ddpm_helpers.checks import check_name, check_positive_int
from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.evaluation.doctor.report import Finding, Report
from ddpm_helpers.samplers import ddim_step, ddim_timesteps

KINDS = ("ddpm", "ddim")


def reference_mixture() -> GaussianMixture:
    """Three unequal 2-D modes (shares 0.5, 0.3, 0.2, std 0.15): a sampler that loses a mode or its share shows."""
    return GaussianMixture([0.5, 0.3, 0.2], [[-1.2, -0.6], [1.2, -0.6], [0.0, 1.1]], 0.15**2)


def _call(step, diffusion, out, x, t, t_next, seed):
    result = step(diffusion, out, x, t, t_next, generator=torch.Generator().manual_seed(seed))
    return result[0] if isinstance(result, tuple) else result


def _probe(step, diffusion, eps_model, mixture, t, t_next, seed, points=32, reps=256):
    """x_t (points, D), ε*(x_t) and the per-point mean (points, D) and variance (points,) of ``reps`` steps."""
    g = torch.Generator().manual_seed(seed)
    x0 = mixture.sample(points, g).double()
    tt = torch.full((points,), t, dtype=torch.long)
    xt = diffusion.q_sample(x0, tt, generator=g)  # x_t = √ᾱ x0 + √(1 − ᾱ) ε
    out = eps_model(xt, tt)
    prev = _call(step, diffusion, out.repeat(reps, 1), xt.repeat(reps, 1), t, t_next, seed + 1)
    prev = prev.reshape(reps, points, -1).double()
    return xt, out, prev.mean(0), prev.var(0).mean(-1)


def _mean_error(mean, reference, scale):
    """RMS distance of two per-point means, in units of the step's noise scale."""
    return float((mean - reference).pow(2).mean().sqrt() / scale)


def _ddpm_reference(diffusion, out, xt, t):
    """Mean and variance β̃_t of the correct step from x_t at code step ``t`` (Ho et al. 2020, Eqs. 7 and 11)."""
    tt = torch.full((len(xt),), t, dtype=torch.long)
    pmv = diffusion.p_mean_variance(out, xt, tt)
    return pmv.mean, float(pmv.variance.flatten()[0])


def _last_step_means(diffusion, out, xt):
    """Means of the last step (code ``t = 0``) with ᾱ_prev set wrongly, the slips that only show there:
    ᾱ_prev = ᾱ_T (``alpha_bar[t − 1]`` wraps round) and ᾱ_prev = ᾱ_1 (``alpha_bar_prev[0]`` not 1)."""
    b, ab = float(diffusion.betas[0]), float(diffusion.alpha_bar[0])
    x0 = (xt - (1 - ab) ** 0.5 * out) / ab**0.5  # x̂0 (Eq. 15)
    means = {}
    for name, ab_prev in (("ᾱ_T", float(diffusion.alpha_bar[-1])), ("ᾱ_1", ab)):
        means[name] = ab_prev**0.5 * b / (1 - ab) * x0 + (1 - b) ** 0.5 * (1 - ab_prev) / (1 - ab) * xt  # μ̃ (Eq. 7)
    return means


def _ddpm_steps(step, diffusion, eps_model, mixture, seed):
    T, findings = diffusion.T, []
    a = _call(step, diffusion, *_last_inputs(diffusion, eps_model, mixture, seed), 0, None, seed + 1)
    b = _call(step, diffusion, *_last_inputs(diffusion, eps_model, mixture, seed), 0, None, seed + 2)
    spread = float((a - b).abs().max())
    findings.append(Finding(
        "no noise at the last step", spread < 1e-9, f"two draws of the step at t = 0 differ by up to {spread:.2g}",
        "noise added at the last step: the step at code t = 0 (paper t = 1) must return the mean",
        "add σ z only when t > 0 (t_next is not None)"))
    worst, shifts, last, var_bad = 0.0, set(), None, None
    for t in sorted({T - 1, T // 2, T // 10, 2, 0}, reverse=True):
        xt, out, mean, var = _probe(step, diffusion, eps_model, mixture, t, t - 1 if t else None, seed + t)
        ref_mean, ref_var = _ddpm_reference(diffusion, out, xt, t)
        scale = max(ref_var, float(diffusion.betas[t])) ** 0.5
        error = _mean_error(mean, ref_mean, scale)
        worst = max(worst, error)
        if error >= 0.3 and t > 0:  # which table index would explain this step? (T − 1 for the wrap at −1)
            shifted = {s: _mean_error(mean, _ddpm_reference(diffusion, out, xt, s)[0], scale)
                       for s in (t - 1, t + 1) if s < T}
            best = min(shifted, key=shifted.get)
            shifts.add(best - t if shifted[best] < 0.3 else None)
        if error >= 0.3 and t == 0:
            candidates = {"wrap": _ddpm_reference(diffusion, out, xt, T - 1)[0],  # every table at −1 ≡ T − 1
                          **_last_step_means(diffusion, out, xt)}
            errors = {name: _mean_error(mean, m, scale) for name, m in candidates.items()}
            last = min(errors, key=errors.get) if min(errors.values()) < 0.3 else "other"
        if t > 0 and var_bad is None:
            ratio, beta = float(var.mean()) / ref_var, float(diffusion.betas[t])
            if not (0.8 < ratio < 1.25 or 0.8 < ratio * ref_var / beta < 1.25):
                var_bad = (t, ratio, abs(float(var.mean()) / ref_var**2 - 1) < 0.25)
    cause, fix = ("the mean of the step is not μ̃_t(x_t, x̂0) (Eq. 7): a coefficient of x_t or x̂0 wrong (e.g. α_t "
                  "where √α_t belongs, or ᾱ_t where ᾱ_{t−1} belongs), or one inside x̂0 (Eq. 15, e.g. 1/ᾱ_t − 1 "
                  "where √(1/ᾱ_t − 1) belongs)",
                  "μ = (x_t − β_t/√(1 − ᾱ_t) ε̂)/√α_t (Eq. 11), or μ̃ = √ᾱ_{t−1}β_t/(1−ᾱ_t) x̂0 + "
                  "√α_t(1−ᾱ_{t−1})/(1−ᾱ_t) x_t (Eq. 7) with x̂0 = (x_t − √(1 − ᾱ_t) ε̂)/√ᾱ_t (Eq. 15)")
    off = shifts == {-1} or not shifts and last == "wrap"
    if off or shifts == {+1}:
        sign = "−" if off else "+"
        cause = (f"ᾱ index off by one: the step reads all its tables at t {sign} 1 (the paper counts t from 1, the "
                 "code from 0; at the last step t − 1 = −1 even wraps round to ᾱ_T)")
        fix = "index every table with the same 0-based t the model was called with"
    elif not shifts and last in ("ᾱ_T", "ᾱ_1"):
        cause = (f"ᾱ_prev wrong at the last step only: at t = 0 the step uses ᾱ_prev = {last} where ᾱ_0 = 1 belongs "
                 "(alpha_bar[t − 1] wraps round to ᾱ_T; or alpha_bar_prev[0] is not 1)")
        fix = "alpha_bar_prev = cat([1], alpha_bar[:-1]), so that the step at t = 0 returns x̂0"
    elif not shifts and last is not None:
        cause = ("the step is wrong only at the last step (t = 0, paper t = 1): there μ̃ = x̂0, since ᾱ_0 = 1; "
                 "look for a table or branch special to t = 0")
        fix = "at t = 0 return the posterior mean, x̂0 = (x_1 − √(1 − ᾱ_1) ε̂)/√ᾱ_1, with no noise"
    findings.append(Finding("step mean = posterior mean (Eq. 7)", worst < 0.3,
                            f"largest distance from μ̃ {worst:.2f} noise-σ over t in {{T−1, T/2, T/10, 2, 0}}",
                            cause, fix))
    detail = ("σ² is β̃_t or β_t" if var_bad is None else
              f"at code t = {var_bad[0]} (paper step {var_bad[0] + 1}): σ² / β̃ = {var_bad[1]:.3g}")
    cause = ("σ used as the variance: z multiplied by σ² = β̃_t instead of σ = √β̃_t (the samples come out too "
             "narrow)" if var_bad and var_bad[2] else "the variance of the step is neither β̃_t nor β_t")
    findings.append(Finding("step variance σ² = β̃ (or β)", var_bad is None, detail, cause,
                            "x_prev = mean + sqrt(posterior_variance[t]) * z"))
    return findings


def _last_inputs(diffusion, eps_model, mixture, seed):
    g = torch.Generator().manual_seed(seed)
    x0 = mixture.sample(64, g).double()
    tt = torch.zeros(64, dtype=torch.long)
    xt = diffusion.q_sample(x0, tt, generator=g)
    return eps_model(xt, tt), xt


def _ddim_update(diffusion, out, xt, t, s):
    """The η = 0 DDIM update from code step ``t`` to ``s`` (``None``: the clean end) for any pair of table indices,
    ``s`` ≥ ``t`` included (Song et al. 2021, Eq. 12): √ᾱ_s x̂0 + √(1 − ᾱ_s) ε̂."""
    ab, ab_s = float(diffusion.alpha_bar[t]), 1.0 if s is None else float(diffusion.alpha_bar[s])
    x0 = (xt - (1 - ab) ** 0.5 * out) / ab**0.5  # x̂0 (Eq. 15)
    return ab_s**0.5 * x0 + (1 - ab_s) ** 0.5 * out


def _ddim_steps(step, diffusion, eps_model, mixture, seed):
    T, findings = diffusion.T, []
    k = max(T // 10, 2)
    worst, hypothesis, noisy = 0.0, None, 0.0
    for t, s in ((T - 1, T - 1 - k), (T // 2, T // 2 - k), (k, 0), (0, None)):
        xt, out, mean, var = _probe(step, diffusion, eps_model, mixture, t, s, seed + t, reps=2)
        noisy = max(noisy, float(var.max()))
        scale = (1 - (1.0 if s is None else float(diffusion.alpha_bar[s]))) ** 0.5 + 1e-3
        error = _mean_error(mean, ddim_step(diffusion, out, xt, t, s).x_prev, scale)
        if error > worst:
            worst = error
            candidates = {"both": _ddim_update(diffusion, out, xt, (t - 1) % T, None if s is None else (s - 1) % T),
                          "stay": xt}
            if s is not None:
                candidates["prev"] = _ddim_update(diffusion, out, xt, t, t - 1)
            errors = {name: _mean_error(mean, m, scale) for name, m in candidates.items()}
            hypothesis = min(errors, key=errors.get) if error >= 0.3 and min(errors.values()) < 0.3 else None
    findings.append(Finding(
        "deterministic at η = 0", noisy < 1e-12, f"two draws of one step differ by a variance of {noisy:.2g}",
        "noise added in a DDIM step that should be deterministic (η = 0)", "σ_t = 0 when η = 0: add no z"))
    cause = "the DDIM update (Song et al. 2021, Eq. 12) is not √ᾱ_s x̂0 + √(1 − ᾱ_s) ε̂"
    fix = "alpha_bar_prev = alpha_bar[t_next] (1 at the clean end, t_next = None)"
    if hypothesis == "both":
        cause = ("ᾱ index off by one: the step reads ᾱ at t − 1 and at t_next − 1 (the paper counts t from 1, the "
                 "code from 0; at t_next = 0 the index −1 wraps round to ᾱ_T, so x jumps back to noise and the last "
                 "step blows it up by 1/√ᾱ_T)")
        fix = "index ᾱ with the 0-based t and t_next themselves: alpha_bar[t], alpha_bar[t_next]"
    elif hypothesis == "prev":
        cause = ("DDIM with the wrong ᾱ_prev: the step reads ᾱ at t − 1 (the next step of the full chain) instead of "
                 "at t_next, the next step of the sub-sequence")
    elif hypothesis == "stay":
        cause = "DDIM with the wrong ᾱ_prev: the step reads ᾱ at t itself, so x never moves"
    findings.append(Finding(
        "step = √ᾱ_s x̂0 + √(1 − ᾱ_s) ε̂ (Eq. 12)", worst < 0.3,
        f"largest distance from the DDIM update {worst:.2f} noise-σ over three strided steps and the last one",
        cause, fix))
    return findings


def _chain(step, diffusion, eps_model, mixture, timesteps, n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, mixture.dim, dtype=torch.float64, generator=g)  # x_T ~ N(0, I)
    for i, t in enumerate(timesteps):
        t_next = timesteps[i + 1] if i + 1 < len(timesteps) else None
        x = _call(step, diffusion, eps_model(x, torch.full((n,), t, dtype=torch.long)), x, t, t_next, seed + 7 * i)
    return x.double()


def sample_statistics(x: torch.Tensor, mixture: GaussianMixture) -> dict:
    """Samples ``x`` (N, D) against the ``mixture``: ``mean_gap`` (distance of the means), ``std_ratio`` (spread per
    axis over the exact one), ``near`` (share within 3 std of a mode) and ``shares`` (share of samples near each)."""
    x = x.double().cpu()
    distances = torch.cdist(x, mixture.means)
    nearest = distances.argmin(1)
    near = distances.gather(1, nearest[:, None]).squeeze(1) < 3 * mixture.variances.sqrt()[nearest]
    return {"mean_gap": float((x.mean(0) - mixture.mean()).norm()),
            "std_ratio": (x.std(0) / mixture.covariance().diagonal().sqrt()).tolist(),
            "near": float(near.double().mean()),
            "shares": (torch.bincount(nearest[near], minlength=len(mixture.weights)).double() / len(x)).tolist()}


def describe(stats: dict) -> str:
    """One line of :func:`sample_statistics`."""
    return (f"mean off by {stats['mean_gap']:.2f}, spread × {', '.join(f'{r:.2f}' for r in stats['std_ratio'])}, "
            f"{100 * stats['near']:.0f} % near a mode, shares {', '.join(f'{s:.2f}' for s in stats['shares'])}")


_UNPROBED = ("the step is wrong at a t the single-step probes did not visit (they check T−1, T/2, T/10, 2 and 0): "
             "a branch or table entry special to some steps")
_UNPROBED_FIX = "print the step's tables at every t next to the helpers' (Diffusion.from_schedule) and compare"


def chain_findings(x: torch.Tensor, mixture: GaussianMixture) -> list[Finding]:
    """Samples ``x`` (N, D) against the ``mixture``: finite, mean, spread per axis, and mode shares. The chain is
    the doctor's own loop around the reader's step, so a failure here with every step probe passed points at the
    step at a t the probes did not visit."""
    if not bool(torch.isfinite(x).all()):
        return [Finding("samples match the mixture", False, "the samples hold NaN or inf",
                        "the chain diverged: a coefficient above 1 compounds over T steps", _UNPROBED_FIX)]
    stats = sample_statistics(x, mixture)
    share_gap = max(abs(s - w) for s, w in zip(stats["shares"], mixture.weights.tolist()))
    ok = stats["mean_gap"] < 0.1 and all(0.85 < r < 1.15 for r in stats["std_ratio"]) and share_gap < 0.05 \
        and stats["near"] > 0.9
    detail = f"{describe(stats)} (exact {', '.join(f'{w:.2f}' for w in mixture.weights)})"
    return [Finding("samples match the mixture", ok, detail, _UNPROBED, _UNPROBED_FIX)]


def check_sampler(step, *, kind: str = "ddpm", diffusion: Diffusion | None = None,
                  mixture: GaussianMixture | None = None, num_samples: int = 2000, num_steps: int = 50,
                  seed: int = 0) -> Report:
    """Check a reader's reverse step against the exact denoiser ε* of ``mixture`` (default :func:`reference_mixture`).

    ``step(diffusion, model_output, xt, t, t_next, generator=None)`` → x at ``t_next`` (a tensor, or a tuple whose
    first entry it is), the helpers' step signature with 0-based ``t`` and ``t_next = None`` at the clean end.
    ``kind``: "ddpm" (ancestral steps t → t − 1, Ho et al. 2020, Algorithm 2) or "ddim" (η = 0 jumps along
    ``num_steps`` steps, Song et al. 2021, Eq. 12). ``diffusion`` defaults to the linear schedule with T = 1000.
    Single steps are probed first (they name the cause), then the whole chain draws ``num_samples`` points.
    """
    check_name(kind, KINDS, "kind")
    check_positive_int(num_samples, "num_samples")
    diffusion = Diffusion.from_schedule("linear", 1000) if diffusion is None else diffusion
    mixture = reference_mixture() if mixture is None else mixture
    eps_model = optimal_eps(mixture, diffusion)
    with torch.no_grad():
        if kind == "ddpm":
            findings = _ddpm_steps(step, diffusion, eps_model, mixture, seed)
            timesteps = list(range(diffusion.T - 1, -1, -1))
        else:
            findings = _ddim_steps(step, diffusion, eps_model, mixture, seed)
            timesteps = ddim_timesteps(diffusion.T, num_steps)
        findings += chain_findings(_chain(step, diffusion, eps_model, mixture, timesteps, num_samples, seed), mixture)
    if not all(f.passed for f in findings[:-1]):
        findings[-1].cause, findings[-1].fix = "follows from the failed step checks above", "fix those first"
    return Report(findings)

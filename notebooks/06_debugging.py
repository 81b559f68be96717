# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: accelerator,colab,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 — When samples are noise: a field guide to diffusion bugs
#
# A DDPM that is almost right produces samples that are plainly wrong: pure noise, grey blobs, one mode instead of
# three, digits that ignore their label. The cause is nearly always one of fifteen or so small slips, and they hide
# well, because the training loss of a broken model often looks healthy. This notebook plants each slip, one at a time,
# into code that works, and shows what it does to the samples: the symptom beside the correct result, the number
# that gives it away, and the one-line cause.
#
# **You will learn**
# - to split "the sampler is wrong" from "the network is wrong" with a denoiser that cannot be wrong: the exact
#   $\varepsilon^*$ of a Gaussian mixture (notebook 02);
# - the look of a dozen classic bugs, in the sampler (the $\bar\alpha$ index, the posterior mean and variance,
#   the last step, DDIM's $\bar\alpha_\text{prev}$, guidance, clipping), in training (the timestep, the range of
#   $t$, the learning rate, the EMA) and in the data (range, dtype, channel order);
# - to run `ddpm_helpers.evaluation.doctor` on your own tables, batches, step functions and networks: it prints
#   what it checked and the most likely cause of what failed.
#
# **You should know** notebooks 02 (the reverse step, the exact $\varepsilon^*$), 03 (training an MLP on 2-D data)
# and 04 (the MNIST U-Net, DDIM, classifier-free guidance); Section 5.2 borrows notebook 05's butterflies.
#
# **Run time.** No image network is trained: the image bugs run on the network notebook 04 trained
# (`weights/04_mnist_ema.safetensors`), the training bugs on small MLPs in the plane. The `quick` profile trains
# fewer steps and draws fewer points.
#
# | machine | `DDPM_PROFILE=quick` | `DDPM_PROFILE=full` |
# | --- | --- | --- |
# | CPU, 2 cores | ≈ 1 min (estimate) | 185 s (measured, last cell) |
# | Colab (estimate) | about the CPU time (everything runs on the CPU) | about the CPU time |
#
# **Papers.** Ho, Jain & Abbeel (2020), *Denoising Diffusion Probabilistic Models*
# ([arXiv:2006.11239](https://arxiv.org/abs/2006.11239)): equation numbers refer to it unless another paper is named.
# Song, Meng & Ermon (2021) for DDIM ([arXiv:2010.02502](https://arxiv.org/abs/2010.02502)), Ho & Salimans (2022)
# for classifier-free guidance ([arXiv:2207.12598](https://arxiv.org/abs/2207.12598)), Salimans & Ho (2022) for
# $v$-prediction ([arXiv:2202.00512](https://arxiv.org/abs/2202.00512)). The full list is in
# [`papers/README.md`](https://github.com/ddpm-from-scratch/ddpm-from-scratch/blob/main/papers/README.md).
#
# **Timestep convention.** As in every notebook: code index `t` runs from 0 to $T-1$ and is the paper's step $t+1$
# (`diffusion.alpha_bar[t]` is $\bar\alpha_{t+1}$). This convention is itself the source of the first bug below.

# %%
# The helper package: inside a clone of the repository, the clone's own ddpm_helpers (no network needed); elsewhere
# (e.g. Colab) installed from the repository. Address and version as in pyproject.toml.
import os
import subprocess
import sys
from pathlib import Path

HELPERS_SOURCE = "git+https://github.com/ddpm-from-scratch/ddpm-from-scratch"  # [project.urls] Source
HELPERS_VERSION = "0.9.2"  # the ddpm_helpers.__version__ this notebook was written for
HELPERS_REF = "d4a94f7b04cb37a6f002461887c2f39b90154e35"  # a commit that installs it

clone = Path.cwd().parent  # a notebook opened from a clone runs in the clone's notebooks/ folder
pyproject = clone / "pyproject.toml"
if (clone / "ddpm_helpers").is_dir() and pyproject.is_file() and 'name = "ddpm-from-scratch"' in pyproject.read_text():
    sys.path.insert(0, str(clone))
else:
    try:
        import ddpm_helpers
    except ImportError:
        pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", HELPERS_SOURCE], capture_output=True,
                             text=True, env=dict(os.environ, GIT_TERMINAL_PROMPT="0"))  # never ask for a password
        if pip.returncode:
            not_found = "prompts disabled" in pip.stderr or "Repository not found" in pip.stderr
            cause = ("GitHub found no repository at this address" if not_found else "there is no network connection"
                     if "unable to access" in pip.stderr else (pip.stderr.strip().splitlines() or ["pip failed"])[-1])

            class HelpersUnavailable(Exception):
                def _render_traceback_(self):  # Jupyter shows the message alone, without a traceback
                    return [str(self)]

            raise HelpersUnavailable(
                f"Could not install ddpm_helpers from {HELPERS_SOURCE}: {cause}. Connect to the internet and rerun "
                "this cell, or clone the repository and open this notebook from the clone's notebooks/ folder (its own "
                "helpers need no network). If the repository has moved, pip install the helpers from its new address."
            ) from None
import ddpm_helpers

if ddpm_helpers.__version__ != HELPERS_VERSION:
    print(f"This notebook was written for ddpm_helpers {HELPERS_VERSION}, but {ddpm_helpers.__version__} is imported: "
          f"pip install --force-reinstall {HELPERS_SOURCE}@{HELPERS_REF} (in a clone: git checkout {HELPERS_REF}), "
          "then restart the kernel.")

# %%
# NBVAL_IGNORE_OUTPUT
import copy
import textwrap
import time
from functools import partial

import matplotlib.pyplot as plt
import torch
from torch import nn

from ddpm_helpers import config
from ddpm_helpers.analytic import optimal_eps
from ddpm_helpers.datasets import butterfly_images, mnist_images
from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.evaluation import mnist_eval
from ddpm_helpers.evaluation.doctor import (
    check_data,
    check_ema,
    check_network,
    check_sampler,
    check_schedule,
    describe,
    reference_mixture,
    sample_statistics,
)
from ddpm_helpers.guidance import ClassifierFreeGuidance
from ddpm_helpers.losses import draw_training_noise
from ddpm_helpers.nn.mlp import MLP
from ddpm_helpers.plotting import scatter_2d, show_images
from ddpm_helpers.samplers import StepResult, ddim_timesteps, sample_loop
from ddpm_helpers.samplers.ddim import _ddim_step
from ddpm_helpers.samplers.ddpm import _ddpm_step
from ddpm_helpers.training import TrainConfig
from ddpm_helpers.training.ema import EMA
from ddpm_helpers.training.loop import train_step
from ddpm_helpers.training.precision import MixedPrecision
from ddpm_helpers.training.pretrained import load_pretrained

notebook_start = time.perf_counter()
config.seed_everything(0)
torch.set_num_threads(1)  # the tensors are small
outputs = config.outputs_dir("06_debugging")

# Sizes of everything that costs time: the quick profile draws fewer points and trains fewer steps.
N_POINTS = config.pick(quick=500, full=2000)  # points per 2-D sample
TRAIN_STEPS = config.pick(quick=150, full=1500)  # Adam steps of each 2-D network (Section 4)
N_DIGITS = config.pick(quick=10, full=20)  # MNIST samples per run, the digits 0-9 in turn (Section 3)
DIGIT_STEPS = config.pick(quick=10, full=20)  # DDIM steps per MNIST sample
print(f"profile {config.profile()}, torch {torch.__version__}")

# %% [markdown]
# ## 1. Two instruments
#
# A DDPM has three parts that can each be wrong: the **data** the network learns from, the **network** that
# predicts the noise, and the **sampler** that turns those predictions into samples. When the samples are bad,
# the first question is which part to blame, and a trained network cannot answer it: its errors and the sampler's
# look alike.
#
# The way out is a denoiser that is *known* to be right. For data drawn from a Gaussian mixture the best possible
# noise prediction $\varepsilon^*(x_t, t) = \mathbb E[\varepsilon\mid x_t]$ is a formula (notebook 02,
# `analytic.optimal_eps`). Feed it to a sampler and every flaw in the samples is the sampler's. Our test data is
# the doctor's reference mixture: three round modes in the plane with unequal shares, 0.5, 0.3 and 0.2, so a sampler
# that loses a mode, blurs the modes or gets their shares wrong shows it in three numbers: the distance of the
# sample mean from the true mean, the spread per axis against the true spread, and the share of points near each
# mode.
#
# Every bug below is a small, visible change to the helpers' own code: a wrapper around the step bodies
# (`samplers.ddpm._ddpm_step`, `samplers.ddim._ddim_step`), a wrapper around the network, a table of the `Diffusion`
# replaced by a wrong one, a flag in the training loop. The correct code runs beside it from the same $x_T$.

# %%
mixture = reference_mixture()
diffusion = Diffusion.from_schedule("linear", 1000)
eps_star = optimal_eps(mixture, diffusion)  # the exact ε*(x_t, t): no network, no training
x_T = torch.randn(N_POINTS, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
truth = mixture.sample(N_POINTS, torch.Generator().manual_seed(1)).double()
print(f"the mixture: shares {mixture.weights.tolist()}, std {mixture.variances[0].sqrt():.2f} per mode")


def ddpm_body(seed=1, **options):
    """The helpers' DDPM step body (Algorithm 2) with its options bound and its own noise generator."""
    options = {"prediction": "eps", "variance": "beta_tilde", "clip_x0": None, **options}
    return partial(_ddpm_step, generator=torch.Generator().manual_seed(seed), **options)


def ddim_body(**options):
    """The helpers' DDIM step body at η = 0 (Song et al. 2021, Eq. 12)."""
    options = {"eta": 0.0, "prediction": "eps", "clip_x0": None, **options}
    return partial(_ddim_step, generator=None, **options)


def sample_points(step, on=diffusion, timesteps=None):
    """Run ``step`` with the exact ε* from x_T; ``on``: the Diffusion the step reads its tables from."""
    timesteps = range(diffusion.T - 1, -1, -1) if timesteps is None else timesteps
    return sample_loop(eps_star, on, step, timesteps, x_T=x_T).x


def planted(diffusion, **tables):
    """A copy of ``diffusion`` with some of its tables replaced: a wrong formula, in one visible line."""
    wrong = copy.copy(diffusion)
    wrong._tables = {}  # the converted-table cache of the copy starts empty
    for name, table in tables.items():
        setattr(wrong, name, table)
    return wrong


def show_clouds(panels, title, cause):
    """Point clouds side by side, each titled with its numbers against the mixture; the cause underneath."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6))
    for ax, (name, x) in zip(axes, panels.items()):
        finite = x[torch.isfinite(x).all(1)]
        stats = sample_statistics(finite, mixture) if len(finite) > 1 else None
        numbers = "not finite" if stats is None else (
            f"spread × {max(stats['std_ratio']):.2f}, near a mode {100 * stats['near']:.0f} %\n"
            f"shares {' / '.join(f'{s:.2f}' for s in stats['shares'])}")
        lim = max(3.0, float(finite.abs().max())) if len(finite) else 3.0  # widen the window for far-off samples
        window = f" (window ±{lim:.0f})" if lim > 3.0 else ""
        scatter_2d(finite.float(), ax=ax, lim=lim, title=f"{name}{window}\n{numbers}")
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
        if lim > 3.0:  # far-off samples: five ticks per axis instead of one per unit
            ax.set_xticks(torch.linspace(-lim, lim, 5).round().tolist())
            ax.set_yticks(torch.linspace(-lim, lim, 5).round().tolist())
        print(f"{name:>12}: {'not finite' if stats is None else describe(stats)}")
    fig.suptitle(title, fontweight="bold", y=1.0, va="bottom")  # above the panel titles
    fig.text(0.5, -0.02, f"cause: {cause}", ha="center", va="top", wrap=True)
    plt.show()


correct_points = sample_points(ddpm_body())

# %% [markdown]
# ## 2. Sampler bugs, seen through the exact denoiser
#
# The reference: DDPM ancestral sampling (Algorithm 2) with $\varepsilon^*$ over $T = 1000$ steps lands on the
# mixture, shares and spread included (printed with each figure; "shares" counts the points within three standard
# deviations of each mode).
#
# ### 2.1 The $\bar\alpha$ index off by one
#
# The paper counts steps from 1, Python from 0. Code that reads `alpha_bar[t - 1]` where the paper writes
# $\bar\alpha_t$ uses, at every step, the table of the step before, and at the very last step ($t = 0$) reads
# `alpha_bar[-1]`: Python's negative index wraps round to $\bar\alpha_T \approx 0$, the pure-noise end of the chain.
# The plant: the step body receives `t - 1` wrapped the way Python wraps it, while the network still sees `t`.

# %%
# NBVAL_IGNORE_OUTPUT
def off_by_one(body):
    """The bug: the tables are read at t − 1 (Python's table[-1] is the last entry, ᾱ_T, at t = 0)."""
    return lambda d, out, x, t, t_next, tt, prev: body(d, out, x, (t - 1) % d.T, t_next, (tt - 1) % d.T, prev)


def off_by_one_ddim(body):
    """The same bug in a strided sampler: t and t_next both read one index early (and wrap at t = 0)."""
    def step(d, out, x, t, t_next, tt, prev):
        t_next = None if t_next is None else (t_next - 1) % d.T
        return body(d, out, x, (t - 1) % d.T, t_next, (tt - 1) % d.T, prev)
    return step


ddim_steps = ddim_timesteps(diffusion.T, 50)  # DDIM: 50 of the 1000 steps
wrapped_ddim = sample_points(off_by_one_ddim(ddim_body()), timesteps=ddim_steps)
show_clouds({"correct": correct_points, "DDPM, alpha_bar[t - 1]": sample_points(off_by_one(ddpm_body())),
             "DDIM-50, alpha_bar[t - 1]": wrapped_ddim},
            "Bug 1: the ᾱ index off by one",
            "a 0-based t converted once more: alpha_bar[t − 1]; at t = 0, table[-1] wraps to ᾱ_T")
print(f"1/√ᾱ_T = {diffusion.alpha_bar[-1].rsqrt():.0f}: the factor of DDIM's last step after the wrap")
wrapped_std = wrapped_ddim.std(0)  # absolute std per axis
print(f"std per axis: mixture {', '.join(f'{s:.2f}' for s in mixture.covariance().diagonal().sqrt())}; "
      f"DDIM sample {', '.join(f'{s:.0f}' for s in wrapped_std)}; "
      f"× √ᾱ_T (the noise before the last step) "
      f"{', '.join(f'{s:.2f}' for s in wrapped_std * diffusion.alpha_bar[-1].sqrt())}")

# %% [markdown]
# Off by one step in the middle of a thousand steps barely matters, and in DDPM not even the wrapped last step
# does: by then $x$ is already clean, and the step read at $\bar\alpha_T$ passes it through almost unchanged. The
# DDPM cloud looks right; the bug is there all the same, and the doctor finds it (Section 6). DDIM breaks in two
# steps: the jump to `t_next = 0` reads index $-1$, i.e. $\bar\alpha_T$, so it throws $x$ back to almost pure
# noise, $x \approx \hat\varepsilon$; the last step then divides that noise by $\sqrt{\bar\alpha_T}$. The
# sample is one round blob of noise, its std about equal on both axes (printed above; note the window of the right
# panel): the noise before the last step (its std printed, below 1) times $1/\sqrt{\bar\alpha_T}$. In
# your own code: index every table with the same 0-based `t` the network was called with, and keep
# $\bar\alpha_0 = 1$ in a separate `alpha_bar_prev` table.
#
# ### 2.2 The variance used as a standard deviation
#
# Algorithm 2 adds $\sigma_t z$ with $\sigma_t^2 = \tilde\beta_t$. Code that multiplies $z$ by the table
# `posterior_variance` itself adds $\tilde\beta_t z$: noise with the variance $\tilde\beta_t^2$, far too little.
# The plant replaces the variance table by its square, so that the helpers' step takes $\sqrt{\tilde\beta_t^2}$.

# %%
# NBVAL_IGNORE_OUTPUT
no_sqrt = planted(diffusion, posterior_variance=diffusion.posterior_variance**2)  # z scaled by β̃, not √β̃
show_clouds({"correct": correct_points, "β̃ z": sample_points(ddpm_body(), on=no_sqrt)},
            "Bug 2: σ² used where σ belongs", "x_prev = mean + posterior_variance[t] * z (the square root is missing)")

# %% [markdown]
# With almost no noise injected, the steps keep only their mean, and a chain of means is not a sampler: it
# contracts. The points collapse onto tight dots, on a single mode, and the spread ratio drops
# close to 0. Samples that look *too clean* (digits all alike, one mode like a pin-head) point to missing noise.
#
# ### 2.3 A coefficient of $\hat x_0$
#
# The step's mean is $\tilde\mu_t(x_t, \hat x_0)$ (Eq. 7), with $\hat x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,
# \varepsilon)/\sqrt{\bar\alpha_t}$ (Eq. 15). Drop one square root, writing $(1/\bar\alpha_t - 1)$ where
# $\sqrt{1/\bar\alpha_t - 1}$ belongs, and $\hat x_0$ is wrong at every step, most of all at high noise, where the
# factor is large.

# %%
# NBVAL_IGNORE_OUTPUT
x0_no_sqrt = planted(diffusion, sqrt_recipm1_alpha_bar=1 / diffusion.alpha_bar - 1)  # √(1/ᾱ − 1) lost its root
no_root_points = sample_points(ddpm_body(), on=x0_no_sqrt)
show_clouds({"correct": correct_points, "1/ᾱ − 1": no_root_points},
            "Bug 3: a wrong coefficient in x̂0 (Eq. 15)", "(1/ᾱ_t − 1) ε where √(1/ᾱ_t − 1) ε belongs")
r = diffusion.sqrt_recipm1_alpha_bar  # √(1/ᾱ_t − 1)
kick = diffusion.posterior_mean_coef_x0 * (r**2 - r)  # extra ε̂ in μ̃: c_x0 ((1/ᾱ − 1) − √(1/ᾱ − 1))
print("extra ε̂ in the step mean: " + ", ".join(f"{kick[t]:.2f} ε̂ at t = {t}" for t in (999, 950, 900, 850, 800, 500)))
stats = sample_statistics(no_root_points, mixture)
print("shares among the points near a mode: " + ", ".join(f"{s / stats['near']:.2f}" for s in stats["shares"]))

# %% [markdown]
# The wrong coefficient matters where $1/\bar\alpha_t - 1$ is large: each of the first hundred-odd steps adds more
# than one extra $\hat\varepsilon$ to the mean and pushes the points across the plane, while at $t = T/2$ the extra
# term is small. The chain cannot recover from those early steps: most points end off the modes, though those that
# land on one still split roughly as the mixture does. Whenever the samples are off in a way the noise level cannot explain, write out Eqs. 7, 11 and 15
# beside your code and compare them symbol by symbol.
#
# ### 2.4 Noise added at the last step
#
# Algorithm 2 adds no noise when it produces $x_0$ (line 3: $z = 0$ if $t = 1$). With $\sigma_t^2 = \tilde\beta_t$
# a loop that forgets this adds nothing, since $\tilde\beta_1 = 0$; with $\sigma_t^2 = \beta_t$ (or Ho et al.'s
# clipped $\tilde\beta$) it leaves a film of noise on every sample. The plant adds that noise, $\sqrt{\beta_1}\,
# z$, after the helpers' last step.

# %%
# NBVAL_IGNORE_OUTPUT
def noisy_last_step(body, seed=2):
    """The bug: σ z added after the last step too (with σ² = β_1, the paper's first β)."""
    generator = torch.Generator().manual_seed(seed)

    def step(d, out, x, t, t_next, tt, prev):
        result = body(d, out, x, t, t_next, tt, prev)
        if t_next is not None:
            return result
        z = torch.randn(x.shape, dtype=x.dtype, generator=generator)
        return StepResult(result.x_prev + d.betas[0].sqrt() * z, result.x0_hat)  # + √β_1 z at the end
    return step


last_noise = sample_points(noisy_last_step(ddpm_body()))
show_clouds({"correct": correct_points, "+ σ z at t = 0": last_noise},
            "Bug 4: noise added at the last step", "the step at t = 0 must return the mean, without σ z")
print(f"largest difference from the correct samples: {(last_noise - correct_points).abs().max():.4f} "
      f"(√β_1 = {diffusion.betas[0].sqrt():.4f})")

# %% [markdown]
# This one is invisible in the picture: with $T = 1000$ the last $\sigma$ is $\sqrt{\beta_1} = 0.01$. It shows in images as a faint grain on what should be flat background, and it shows to the
# doctor (Section 6), which runs your last step twice with different noise and asks whether the results differ.
# A bug the eye cannot see is still a bug: with fewer steps, or data with fine detail, the film thickens.
#
# ### 2.5 DDIM with the wrong $\bar\alpha_\text{prev}$
#
# DDIM jumps along a sub-sequence of the steps, from $t$ to the next step $s$ of that sequence (here 50 of the 1000),
# with $x_s = \sqrt{\bar\alpha_s}\,\hat x_0 + \sqrt{1-\bar\alpha_s}\,\hat\varepsilon$ (Song et al. 2021, Eq. 12).
# Code copied from a DDPM sampler often keeps `alpha_bar_prev[t]`, which is $\bar\alpha$ at $t - 1$: each jump then
# removes the noise of one step instead of twenty.

# %%
# NBVAL_IGNORE_OUTPUT
def ddim_prev_of_ddpm(body):
    """The bug: DDIM jumps to ᾱ at t − 1 (the DDPM table alpha_bar_prev) instead of ᾱ at the next step t_next."""
    return lambda d, out, x, t, t_next, tt, prev: body(d, out, x, t, None if t_next is None else t - 1, tt, prev)


show_clouds({"correct DDIM": sample_points(ddim_body(), timesteps=ddim_steps),
             "ᾱ at t − 1": sample_points(ddim_prev_of_ddpm(ddim_body()), timesteps=ddim_steps)},
            "Bug 5: DDIM with the wrong ᾱ_prev", "alpha_bar_prev[t] (the step t − 1) where ᾱ at t_next belongs")

# %% [markdown]
# Each jump keeps almost all of its noise, so the chain arrives at $t = 0$ still noisy, and the final
# $\hat x_0$ (which DDIM returns as the sample) is a one-shot guess from a noisy $x$: few points land on a mode. When DDIM with few steps gives noise but DDPM with all steps
# works, look at $\bar\alpha_\text{prev}$ first.
# %% [markdown]
# ## 3. Sampler bugs on real digits
#
# The same kind of slips on notebook 04's network, trained on MNIST with labels (it predicts $v$, Salimans & Ho 2022,
# and is guided by its labels with $w = 0.25$, Ho & Salimans 2022): we ask for the digits 0–9 in turn and sample with
# DDIM from one fixed $x_T$. The number that gives a bug away here is the judge's (notebook 04, the classifier in
# `weights/mnist_judge.safetensors`): the share of samples it reads with confidence as the digit we asked for.
# (The network's 50 classes are the 10 digits and the 40 clusters of notebook 04, Section 4; we ask for digits.)

# %%
# NBVAL_IGNORE_OUTPUT
weights = load_pretrained("04_mnist_ema")  # SHA-256 checked before use
unet = weights.network("cpu")
digit_diffusion = Diffusion.from_schedule(weights.metadata["schedule"], T=int(weights.metadata["T"]))
labels = torch.arange(N_DIGITS) % 10
judge = mnist_eval.load_judge()
digit_x_T = torch.randn(N_DIGITS, 1, 28, 28, generator=torch.Generator().manual_seed(0))
digit_steps = ddim_timesteps(digit_diffusion.T, DIGIT_STEPS)
print(f"loaded {weights.source}: predicts {weights.prediction}, T = {digit_diffusion.T}, "
      f"{weights.metadata['unet_config'].get('num_classes')} classes; {N_DIGITS} samples per run")


def sample_digits(step, model=None, timesteps=None):
    """DDIM from the fixed x_T with the guided network (or ``model``)."""
    model = ClassifierFreeGuidance(unet, labels, 0.25) if model is None else model
    return sample_loop(model, digit_diffusion, step, timesteps or digit_steps, x_T=digit_x_T).x


def judged(images):
    """The judge's verdict: the share read with confidence ≥ 0.9 as the digit asked for."""
    logits = mnist_eval.predict_logits(judge, images.clamp(-1, 1))
    return mnist_eval.label_agreement(logits, labels)


def show_digits(panels, title, cause):
    """Sample grids side by side, each titled with the judge's verdict; the cause underneath."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 2.6))
    for ax, (name, images) in zip(axes, panels.items()):
        outside = float((images.abs() > 1.05).double().mean())
        show_images(images.clamp(-1, 1), nrow=10, ax=ax,
                    title=f"{name}\nread as asked {100 * judged(images):.0f} %, pixels with |x| > 1.05 "
                          f"{100 * outside:.0f} %")
        print(f"{name:>14}: read as the digit asked for {100 * judged(images):.0f} %, "
              f"pixels with |x| > 1.05 {100 * outside:.1f} % (shown clipped), pixel mean {images.mean():+.2f}")
    fig.suptitle(title, fontweight="bold", y=1.0, va="bottom")  # above the panel titles
    fig.text(0.5, -0.02, f"cause: {cause}", ha="center", va="top")
    plt.show()


digit_body = ddim_body(prediction="v", clip_x0=1.0)
correct_digits = sample_digits(digit_body)

# %% [markdown]
# ### 3.1 The off-by-one index, on images
#
# The DDIM wrapper of Section 2.1: the network is asked at $t$, the step reads its tables at $t - 1$, and at the last
# step at $\bar\alpha_T$.

# %%
# NBVAL_IGNORE_OUTPUT
show_digits({"correct": correct_digits, "alpha_bar[t - 1]": sample_digits(off_by_one_ddim(digit_body))},
            "Bug 1 again: the ᾱ index off by one, on digits", "a 0-based t converted once more: alpha_bar[t − 1]")

# %% [markdown]
# As in Section 2.1, the jump to `t_next = 0` reads $\bar\alpha_T$ and throws the image back to noise, and the last
# step blows that noise up, clipped to $\pm1$ (`clip_x0=1.0`, hence no pixel outside the range): speckle. Noise that
# appears only at the very end of an otherwise sound chain is the signature.
#
# ### 3.2 DDIM's $\bar\alpha_\text{prev}$, on images

# %%
# NBVAL_IGNORE_OUTPUT
show_digits({"correct": correct_digits, "ᾱ at t − 1": sample_digits(ddim_prev_of_ddpm(digit_body))},
            "Bug 5 again: DDIM with the wrong ᾱ_prev, on digits", "alpha_bar_prev[t] where ᾱ at t_next belongs")

# %% [markdown]
# As on the points, every jump keeps nearly all its noise, and the last $\hat x_0$ is a guess from a noisy image:
# the judge reads almost none of them as the digit asked for. With the few samples of this run each one moves the
# share by several percent, so read these shares as "most" or "almost none", not to the digit.

# %% [markdown]
# ### 3.3 The guidance sign flipped
#
# Classifier-free guidance extrapolates *away* from the unconditional prediction and towards the conditional one:
# $(1+w)\,f(x_t, y) - w\,f(x_t, \varnothing)$ (Ho & Salimans 2022, Eq. 6). Swap the two, and the sampler is steered
# away from the label. The plant is a wrapper around the network that swaps the conditional and unconditional halves
# of the batch that `ClassifierFreeGuidance` asks for.

# %%
# NBVAL_IGNORE_OUTPUT
class SwappedGuidance(nn.Module):
    """The bug: the conditional and unconditional halves swapped, so guidance reads (1 + w) f(∅) − w f(y)."""

    def __init__(self, net):
        super().__init__()
        self.net, self.num_classes = net, net.num_classes

    def forward(self, x, t, y):
        conditional, unconditional = self.net(x, t, y).chunk(2)
        return torch.cat([unconditional, conditional])


show_digits({"correct": correct_digits,
             "sign flipped": sample_digits(digit_body, ClassifierFreeGuidance(SwappedGuidance(unet), labels, 0.25))},
            "Bug 6: classifier-free guidance with the sign flipped", "(1 + w) f(∅) − w f(y): pushed away from y")

# %% [markdown]
# The samples are no longer the digits asked for: the judge's agreement collapses. The same symptom, digits that
# ignore their labels, has a second classic cause that this network cannot show because it was trained correctly: the null label
# $\varnothing$ never dropped in during training (`p_uncond = 0`), so $f(x_t, \varnothing)$ is an untrained output
# and guidance adds its garbage.
#
# ### 3.4 $\hat x_0$ not clipped
#
# Image pixels live in $[-1, 1]$, and samplers that jump far (DDIM with few steps) usually clip $\hat x_0$ to that
# range before using it (`clip_x0=1.0`). Leave the clip out and the early, poor guesses of $\hat x_0$ go into the
# update unchecked.

# %%
# NBVAL_IGNORE_OUTPUT
show_digits({"correct (clipped)": correct_digits,
             "not clipped": sample_digits(ddim_body(prediction="v", clip_x0=None))},
            "Bug 7: x̂0 not clipped where the sampler relies on it", "clip_x0=None in a few-step DDIM on images")

# %% [markdown]
# On this network the damage is modest: a few pixels spill outside $[-1, 1]$ (the grid shows them clipped), while the
# judge's verdict is unchanged. Clipping matters more the fewer the steps and the worse the early $\hat x_0$; it is a cheap guard worth
# keeping for images (and wrong for data that is not bounded, such as the points of Section 2).
# %% [markdown]
# ## 4. Training bugs, on points in the plane
#
# Now the network is the suspect. Each run below trains the MLP of notebook 03 on the same mixture with the
# helpers' `train_step` (one step of Algorithm 1: loss, backward, clipping, Adam, EMA), and samples from its EMA with
# the correct DDPM sampler ($T = 200$). Since the sampler is now known to be right, whatever goes wrong is training's.

# %%
# NBVAL_IGNORE_OUTPUT
train_diffusion = Diffusion.from_schedule("linear", 200)
train_config = TrainConfig(steps=TRAIN_STEPS, batch_size=256, lr=3e-3, ema_decay=0.99)
train_x_T = torch.randn(N_POINTS, 2, generator=torch.Generator().manual_seed(3))
held_out = mixture.sample(1000, torch.Generator().manual_seed(4))  # fresh points for the doctor (Section 6)


class TimeBlind(nn.Module):
    """The bug: the network is called with t = 0 whatever the step (t never reaches it)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, t):
        return self.net(x, torch.zeros_like(t))


class TimeScaled(TimeBlind):
    """The bug: t / T in [0, 1) fed to an embedding made for integer steps 0 … T − 1."""

    def forward(self, x, t):
        return self.net(x, t.float() / train_diffusion.T)


class FrozenEMA(EMA):
    """The bug: the EMA copy is never updated (ema.update forgotten after the optimizer step)."""

    def update(self, model):
        pass


def train_points(bug=None, lr=train_config.lr):
    """Algorithm 1 with the helpers' train_step on the mixture; returns (EMA network, raw network, losses)."""
    torch.manual_seed(0)
    model = MLP(hidden=128, num_blocks=3, time_dim=32, fourier_octaves=2)
    wrap = {"time_blind": TimeBlind, "time_scaled": TimeScaled}.get(bug, lambda net: net)
    ema = (FrozenEMA if bug == "ema_frozen" else EMA)(model, decay=train_config.ema_decay)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    precision = MixedPrecision("off", torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(TRAIN_STEPS):
        x0 = mixture.sample(train_config.batch_size, generator)
        if bug == "unit_range":
            x0 = x0 / 4 + 0.5  # the bug: data squeezed into [0, 1] (here: its box [−2, 2]² mapped there)
        t, eps, _ = draw_training_noise(train_diffusion, x0, generator)  # t ~ U{0, …, T−1}, ε ~ N(0, I)
        if bug == "t_range":
            t = t % (train_diffusion.T // 2)  # the bug: only t < T/2 is ever drawn
        loss = train_step(model, wrap(model), ema, optimizer, precision, train_diffusion, x0, t, eps, None, lr,
                          train_config)
        losses.append(float(loss))
    return wrap(ema.model), wrap(model), losses


def sample_trained(net):
    return sample_loop(net, train_diffusion, ddpm_body(), range(train_diffusion.T - 1, -1, -1), x_T=train_x_T).x


good_net, good_raw, good_losses = train_points()
good_points = sample_trained(good_net)
print(f"trained {TRAIN_STEPS} steps; loss over the last 50 steps {sum(good_losses[-50:]) / 50:.3f}")

# %% [markdown]
# ### 4.1 The timestep never reaches the network
#
# A denoiser must know how much noise it is looking at: the same $x_t$ calls for a small correction at low noise
# and a large one at high noise (notebook 03, Section 2.1). Forget to pass $t$ (here: the wrapper always passes 0)
# and the network can only learn one average answer for all noise levels.

# %%
# NBVAL_IGNORE_OUTPUT
blind_net, blind_raw, blind_losses = train_points("time_blind")
show_clouds({"correct": good_points, "t never seen": sample_trained(blind_net)},
            "Bug 8: the timestep does not reach the network", "model(x_t, 0) instead of model(x_t, t)")
print(f"loss over the last 50 steps: correct {sum(good_losses[-50:]) / 50:.3f}, "
      f"t never seen {sum(blind_losses[-50:]) / 50:.3f}")

# %% [markdown]
# The loss is higher than the correct run's, but nothing about it says why, which is how this bug survives for a
# while: the loss averages over all $t$, and at high noise the best answer barely depends on $t$. The samples tell the truth:
# the modes are blurred, and points land between them.
#
# ### 4.2 The timestep scaled wrongly
#
# A subtler version: the timestep arrives, but as $t/T\in[0, 1)$ instead of the integer $t$, into a sinusoidal
# embedding whose frequencies were chosen for integers up to $T$ (notebook 03, Section 2.2). Only its fastest
# frequencies still vary, as a smooth code of $t/T$: the time resolution drops.

# %%
# NBVAL_IGNORE_OUTPUT
scaled_net, _, _ = train_points("time_scaled")
show_clouds({"correct": good_points, "t / T embedded": sample_trained(scaled_net)},
            "Bug 9: the timestep embedded at the wrong scale",
            "sinusoidal_embedding(t / T) in an embedding made for integer t")

# %% [markdown]
# Neighbouring noise levels now get nearly the same embedding. That is not always a bug: continuous-time
# implementations feed $t/T$ on purpose, with an embedding made for it. Here the samples are as good as the correct
# run's (compare the numbers printed with the figure): in this run it is a slip, not a cause of broken samples.
#
# ### 4.3 A range of $t$ never trained, but sampled from
#
# Training draws $t\sim\mathcal U\{0,\dots,T-1\}$ and the sampler visits every one of them. If training draws from
# a narrower range (a `randint` with the wrong bound, or a training $T$ smaller than the sampling $T$), the sampler
# starts in territory the network has never seen. The plant keeps only $t < T/2$.

# %%
# NBVAL_IGNORE_OUTPUT
half_net, _, _ = train_points("t_range")
show_clouds({"correct": good_points, "t < T/2 only": sample_trained(half_net)},
            "Bug 10: the sampler visits t the training never drew", "t drawn from {0, …, T/2 − 1}, sampled from T − 1")

# %% [markdown]
# The first half of the chain, at high noise, is now driven by the network's extrapolation of what it learnt at
# lower noise, and that half decides which mode each point heads for. How much that costs depends on how well the
# embedding carries over, so the cloud may look only a little off (compare the shares printed with the figure); the loss
# per $t$, measured against the exact denoiser, shows where the network leaves the floor (Section 6; from the few
# $t$ it probes, the doctor estimates the boundary near, not exactly at, $T/2$).
#
# ### 4.4 A learning rate that diverges
#
# Adam with a learning rate of 0.3 instead of $3\cdot10^{-3}$: every step overshoots. The loss curve is the first
# place to look: a jump, then a loss that does not come back below about 1, the loss of a network that predicts
# $\varepsilon = 0$ whatever it is shown (both printed with the figure). The run has died, and its samples look
# like those of Bug 12 below.

# %%
# NBVAL_IGNORE_OUTPUT
wild_net, _, wild_losses = train_points(lr=0.3)
show_clouds({"correct": good_points, "lr = 0.3": sample_trained(wild_net)},
            "Bug 11: a learning rate that diverges", "Adam at lr 0.3: each step overshoots (this run's: 3e-3)")
fig, ax = plt.subplots(figsize=(6, 3))
for losses, name, color in ((good_losses, "lr = 3e-3", "C0"), (wild_losses, "lr = 0.3", "C3")):
    ax.plot(torch.tensor(losses).numpy(), color=color, alpha=0.7, lw=0.8, label=name)  # per step, unsmoothed
ax.set(yscale="log", xlabel="training step", ylabel="loss", title="training loss")
ax.legend()
plt.show()
print(f"lr = 0.3: largest loss {max(wild_losses):.3g}, mean of the last 50 steps {sum(wild_losses[-50:]) / 50:.3f}")

# %% [markdown]
# ### 4.5 The EMA never updated
#
# Samples come from the exponential moving average of the weights (notebook 03, Section 3.1), not from the raw
# weights. If
# `ema.update(model)` is never called, the EMA stays at the weights the training started from: the sampler is then
# driven by an untrained network, here one whose output layer starts at zero (it predicts $\varepsilon = 0$).

# %%
# NBVAL_IGNORE_OUTPUT
frozen_net, frozen_raw, _ = train_points("ema_frozen")
show_clouds({"correct": good_points, "EMA never updated": sample_trained(frozen_net),
             "its raw weights": sample_trained(frozen_raw)},
            "Bug 12: the EMA never updated",
            "ema.update(model) missing after optimizer.step(): sampling an untrained net")

# %% [markdown]
# A network that always predicts $\varepsilon = 0$ claims that $x_t$ holds no noise at all, so its $\hat x_0 =
# x_t/\sqrt{\bar\alpha_t}$ is enormous at high noise, and the chain is thrown far off the data (the window of the
# middle panel had to grow to show the points). The raw weights of the same run sample fine (right panel), which is
# the clue: when the raw weights sample well and the EMA does not, the EMA is not being updated.
#
# ### 4.6 Data in $[0, 1]$ instead of $[-1, 1]$
#
# The forward process ends at $\mathcal N(0, I)$ and assumes data of about unit scale, centred: images scaled to
# $[-1, 1]$. Leave them in $[0, 1]$ (here: the mixture's box mapped into $[0, 1]^2$) and the data occupies a corner
# of a space the noise fills evenly; its signal is a quarter as large, so the same network errors count four times
# as much once the samples are mapped back. How much that costs depends on how good the network is (compare the
# numbers printed with the figure). The doctor's data check (Section 6) does not depend on training:
# it reads the batch.

# %%
# NBVAL_IGNORE_OUTPUT
unit_net, _, _ = train_points("unit_range")
unit_points = (sample_trained(unit_net) - 0.5) * 4  # mapped back from [0, 1] for the comparison
show_clouds({"correct": good_points, "trained in [0, 1]": unit_points},
            "Bug 13: data in [0, 1] instead of [−1, 1]", "x/255 without the −1: data small and off-centre")

# %% [markdown]
# ## 5. Data-format bugs
#
# Two slips happen before the model sees anything, in the line that turns files into tensors.
#
# ### 5.1 uint8 pixels given as numbers from 0 to 255
#
# MNIST comes as `uint8`. Convert with `.float()` and forget to rescale, and the "images" have values up to 255: the
# forward process, built for data of unit scale, no longer ends in noise, since $\sqrt{\bar\alpha_T}\cdot 255$ is
# larger than the noise's standard deviation. The network then never learns to start from $\mathcal N(0, I)$.

# %%
# NBVAL_IGNORE_OUTPUT
digits, _ = mnist_images(train=False)  # float32 in [−1, 1]
raw_digits = ((digits[:10] + 1) * 127.5).round()  # the bug: the uint8 values as floats, 0 … 255
last = torch.full((10,), digit_diffusion.T - 1, dtype=torch.long)
noise = torch.randn(10, 1, 28, 28, generator=torch.Generator().manual_seed(5))
fig, axes = plt.subplots(1, 2, figsize=(10.4, 1.9))
for ax, (name, x0) in zip(axes, {"[−1, 1]": digits[:10], "0 … 255": raw_digits}.items()):
    x_T_seen = digit_diffusion.q_sample(x0, last, noise)
    show_images(x_T_seen / x_T_seen.abs().max(), nrow=10, ax=ax,
                title=f"x_T of data in {name}: std {x_T_seen.std():.1f}")
    print(f"data in {name}: x_T has mean {x_T_seen.mean():+.2f} and std {x_T_seen.std():.2f} (should be 0 and 1)")
print(f"√ᾱ_T · 255 = {digit_diffusion.alpha_bar[-1].sqrt() * 255:.2f}: the signal a white pixel keeps at t = T")
fig.suptitle("Bug 14: pixels left in 0 … 255", fontweight="bold")
plt.show()

# %% [markdown]
# With data in $[-1, 1]$ the last step of the forward process is pure noise; with data up to 255 the digits are still
# there at $t = T$, their strokes standing out of the noise, and $x_T$ is not the $\mathcal N(0, I)$ that sampling
# starts from. The check costs one line: print `x.dtype, x.min(), x.max()` of a training batch.
#
# ### 5.2 The channel order
#
# Image libraries hand out arrays of shape (H, W, C), height, width, channels; PyTorch wants (C, H, W). The right
# conversion is `permute(2, 0, 1)`, which moves the axis; the classic slip is `view(3, H, W)` (or `reshape`), which
# keeps the numbers in memory order and cuts them into three "channels" that each hold a jumble of all three.

# %%
# NBVAL_IGNORE_OUTPUT
butterflies = butterfly_images(image_size=32)
photo_hwc = butterflies.images[:4].permute(0, 2, 3, 1)  # (B, H, W, C), as an image library gives it
right = photo_hwc.permute(0, 3, 1, 2)  # (B, C, H, W)
wrong = photo_hwc.reshape(4, 3, 32, 32)  # the bug: the same numbers cut in memory order
fig, axes = plt.subplots(1, 2, figsize=(8, 2.6))
for ax, (name, x) in zip(axes, {"permute(0, 3, 1, 2)": right, "reshape(B, 3, 32, 32)": wrong}.items()):
    report = check_data(x)
    show_images(x, nrow=4, ax=ax, title=name)
    print(f"{name}: {'; '.join(f.detail for f in report.findings if 'stripes' in f.name)}")
fig.suptitle("Bug 15: channels moved with reshape instead of permute", fontweight="bold")
plt.show()

# %% [markdown]
# Along a row the scrambled batch holds R G B R G B …: values three apart (one colour, neighbouring pixels) are more
# alike than values two or four apart (two colours), a peak that correct images do not have in practice.
# %% [markdown]
# ## 6. The doctor
#
# Looking at samples tells you *that* something is wrong; the bugs above show how much alike different causes can
# look (Bugs 5 and 8 both leave most points off the modes). `ddpm_helpers.evaluation.doctor` asks sharper questions of each piece
# of your own code, with the tools of this notebook:
#
# - `check_schedule(betas, alpha_bar)`: β in $(0, 1)$; $\bar\alpha$ the running product of $1-\beta$ *at the same
#   index* (an `alpha_bar` that starts with 1 is the off-by-one of Bug 1); decreasing; $\bar\alpha_T$ small enough
#   that $x_T$ is noise;
# - `check_data(batch)`: floating point; images in $[-1, 1]$, points centred with a scale about 1, and neither in
#   $[0, 1]$ nor $[0, 255]$; channels first, and no colour stripes along the rows (the R G B R G B … of Bug 15);
# - `check_sampler(step)`: your step function, with the exact $\varepsilon^*$ of the reference mixture. It probes
#   single steps (their mean and variance over many draws from one $x_t$, next to the correct ones and next to the
#   correct ones read one index off), then runs the whole chain and compares mean, spread and mode shares;
# - `check_network(model, diffusion, held_out)`: per $t$, does the output depend on $t$, is the loss close to the
#   exact denoiser's (the floor no network can beat), are the $\varepsilon$ predictions centred and of variance at
#   most 1, did the loss history settle;
# - `check_ema(ema_model, model)`: does the EMA differ from the raw weights, did it move from its start, does it
#   predict as well as the raw weights.
#
# Each returns a report: a list of findings with `name`, `passed`, `cause` and `fix`, printed in plain words. The
# first failed finding is the most likely cause, since each check runs its most specific tests first. The doctor sees
# only your objects; it is never told which bug was planted. A step in your own code needs the helpers' signature
# `step(diffusion, model_output, xt, t, t_next, generator=None)`, returning $x$ at `t_next` (`None` is the clean
# end); the adapter below turns the step bodies of this notebook into that form.

# %%
# NBVAL_IGNORE_OUTPUT
def as_step(body, on=None):
    """A step body (with its wrappers) as a reader's step function; ``on``: the planted Diffusion, if any."""
    def step(d, out, x, t, t_next, generator=None):
        return body(on or d, out, x, t, t_next, torch.full((len(x),), t, dtype=torch.long), None)
    return step


print(check_sampler(as_step(ddpm_body())))  # the correct DDPM step: no alarm

# %% [markdown]
# The correct step passes every check. Now the doctor on each bug of the zoo that it can see, with the most likely
# cause it names. The sampler bugs go through `check_sampler`, the training bugs through `check_network` or
# `check_ema` on the networks of Section 4 and fresh points of the mixture, the data bugs through `check_data` and
# the off-by-one once more through `check_schedule`, as a table that starts with $\bar\alpha_0 = 1$.

# %%
# NBVAL_IGNORE_OUTPUT
alpha_bar_from_1 = torch.cat([torch.ones(1, dtype=torch.float64), diffusion.alpha_bar[:-1]])  # ᾱ_0 = 1 at index 0
zoo = {
    "1 ᾱ index off by one (step)": lambda: check_sampler(as_step(off_by_one(ddpm_body()))),
    "1 ᾱ index off by one (DDIM step)": lambda: check_sampler(as_step(off_by_one_ddim(ddim_body())), kind="ddim"),
    "1 ᾱ index off by one (table)": lambda: check_schedule(diffusion.betas, alpha_bar_from_1),
    "2 σ² used for σ": lambda: check_sampler(as_step(ddpm_body(), on=no_sqrt)),
    "3 wrong coefficient in x̂0": lambda: check_sampler(as_step(ddpm_body(), on=x0_no_sqrt)),
    "4 noise at the last step": lambda: check_sampler(as_step(noisy_last_step(ddpm_body()))),
    "5 DDIM ᾱ_prev": lambda: check_sampler(as_step(ddim_prev_of_ddpm(ddim_body())), kind="ddim"),
    "8 t not reaching the net": lambda: check_network(blind_net, train_diffusion, held_out, mixture=mixture),
    "9 t embedded at t / T": lambda: check_network(scaled_net, train_diffusion, held_out, mixture=mixture),
    "10 t < T/2 trained": lambda: check_network(half_net, train_diffusion, held_out, mixture=mixture),
    "11 diverging lr": lambda: check_network(wild_net, train_diffusion, held_out, mixture=mixture,
                                             losses=wild_losses),
    "12 EMA never updated": lambda: check_ema(frozen_net, frozen_raw, diffusion=train_diffusion, data=held_out),
    "13 data in [0, 1]": lambda: check_data(held_out / 4 + 0.5),
    "14 pixels in 0 … 255": lambda: check_data(raw_digits),
    "15 reshape for permute": lambda: check_data(wrong),
}
correct = {
    "DDPM step": lambda: check_sampler(as_step(ddpm_body())),
    "DDIM step": lambda: check_sampler(as_step(ddim_body()), kind="ddim"),
    "schedule": lambda: check_schedule(diffusion.betas, diffusion.alpha_bar),
    "network": lambda: check_network(good_net, train_diffusion, held_out, mixture=mixture, losses=good_losses),
    "EMA": lambda: check_ema(good_net, good_raw, diffusion=train_diffusion, data=held_out),
    "data (digits)": lambda: check_data(digits[:64]),
    "data (points)": lambda: check_data(held_out),
}
print("planted bug: the doctor's most likely cause")
for bug, run in zoo.items():
    finding = run().most_likely
    verdict = "no alarm" if finding is None else f"{finding.name}: {finding.cause}"
    print(textwrap.fill(f"{bug}: {verdict}", 118, subsequent_indent="    "))
print(f"\n{'correct piece':32s} alarms")
for piece, run in correct.items():
    print(f"{piece:32s} {run().names(passed=False) or 'none'}")

# %% [markdown]
# Read the table row by row against the bugs' causes above. Bug 9 is flagged only when it costs something, when the
# loss at low noise stays off the floor, which depends on the training budget. The doctor cannot see Bugs 6 and 7:
# guidance and clipping only exist for labelled images in a bounded range, and the mixture has neither; for those, the judge of
# Section 3 is the instrument. Its network checks need held-out data and, for the loss floor, the data's exact
# distribution: on your own images it still reports whether $t$ reaches the network, the $\varepsilon$ statistics
# and the loss history, but not how far the loss is from the best possible.
#
# Here is one full report, the doctor's view of Bug 8:

# %%
# NBVAL_IGNORE_OUTPUT
print(check_network(blind_net, train_diffusion, held_out, mixture=mixture, losses=blind_losses))

# %% [markdown]
# ## 7. Symptom → cause
#
# A table to keep beside your own code. "Check" is what to run or print; the doctor runs most of these for you.
# Symptoms marked *expected* were not shown above.
#
# | what you see | most likely causes | check |
# | --- | --- | --- |
# | DDPM: nothing visible; DDIM: the last sample blown up into noise (a huge blob of points, speckled digits) | $\bar\alpha$ index off by one (`alpha_bar[-1]` at the last step) | `check_schedule`, `check_sampler` (both kinds); print `t` and the table index at the last step |
# | samples too clean: points on one mode like a pin-head (*expected*: digits all alike) | σ² used where σ belongs (*expected*: no noise added at all) | `check_sampler` (step variance) |
# | most points off the data, those near a mode in about the right shares | a coefficient of Eq. 7, 11 or 15 wrong | `check_sampler` (step mean); write the equations beside the code |
# | nothing visible with σ² = β̃ (*expected* with σ² = β: faint grain on flat background) | noise added at the last step | `check_sampler` (last step twice) |
# | DDPM works, DDIM leaves most points off the modes and digits unreadable | DDIM reads $\bar\alpha$ at $t-1$ instead of at the next step | `check_sampler(kind="ddim")` |
# | digits that ignore their labels | guidance sign flipped (*expected*: null label never trained, `p_uncond = 0`) | the judge's agreement at $w = 0$ and $w > 0$ |
# | few-step image samples with a few pixels outside $[-1, 1]$ (*expected* with a weaker network: washed out or over-saturated) | $\hat x_0$ not clipped | pixels outside $[-1, 1]$ |
# | blurred modes, a loss that does not say why | $t$ not reaching the network (with little training, *expected*: $t/T$ embedded) | `check_network` (output depends on $t$) |
# | modes a little off after training (*expected*: modes missing) | a range of $t$ never trained (wrong bound, or another $T$) | `check_network` (loss per $t$ against the floor) |
# | loss that jumps and does not come back (*expected* at higher rates: NaN) | learning rate too high | `check_network(losses=…)`; lower lr, keep clipping and warmup |
# | points thrown far off the data, while the raw weights sample fine | EMA never updated | `check_ema` |
# | often nothing after long training; *expected*: blur after short training | data in $[0, 1]$, not $[-1, 1]$ | `check_data` |
# | $x_T$ still shows the data; *expected*: samples of the wrong brightness | uint8 pixels converted without rescaling | `check_data`; print dtype, min, max |
# | colour images in stripes or tiles | channels moved with `view`/`reshape` instead of `permute` | `check_data` (colour stripes) |
#
# ## 8. Exercise: a broken step
#
# The step below is a reader's own DDPM step, written from the paper in the helpers' signature, with **two or three
# bugs** we do not name. The cell after it shows that it fails: its samples do not reproduce the mixture. Write a
# fixed copy, `my_step`, and run the check: it passes only when your step's samples, driven by the exact denoiser,
# match the mixture's mean, spread and mode shares (and its single steps match the correct ones). The doctor's
# report names what is still wrong; try first without it.

# %%
def broken_step(diffusion, eps, xt, t, t_next, generator=None):
    """One reverse step x_t → x_{t−1} (Ho et al. 2020, Algorithm 2, with σ² = β), written from the paper."""
    betas = diffusion.betas.to(xt.dtype)
    alpha_bar = torch.cumprod(1 - betas, dim=0)  # ᾱ_t
    alpha_bar_prev = torch.cat([torch.ones(1, dtype=xt.dtype), alpha_bar[:-1]])  # ᾱ_{t−1}
    beta, ab, ab_prev = betas[t - 1], alpha_bar[t - 1], alpha_bar_prev[t - 1]
    x0_hat = (xt - (1 - ab).sqrt() * eps) / ab.sqrt()  # Eq. 15
    mean = ab_prev.sqrt() * beta / (1 - ab) * x0_hat + (1 - beta).sqrt() * (1 - ab_prev) / (1 - ab) * xt  # Eq. 7
    variance = beta  # σ_t² = β_t
    z = torch.randn(xt.shape, dtype=xt.dtype, generator=generator)
    return mean + variance * z


exercise_diffusion = Diffusion.from_schedule("linear", 200)


def check_exercise(step):
    """Run the doctor on ``step``; the check passes when every finding does (step and chain)."""
    return check_sampler(step, diffusion=exercise_diffusion)


# %%
# NBVAL_IGNORE_OUTPUT
broken_report = check_exercise(broken_step)
chain = broken_report.findings[-1]  # the whole chain against the mixture (the step findings would name the bugs)
print(f"broken_step: {chain.name}: {'passed' if chain.passed else 'FAILED'} ({chain.detail})")
assert not broken_report.passed, "the broken step must fail the check"

# %%
my_step = None  # your fixed copy of broken_step here


# %%
def check_my_step(step):
    if step is None:
        print("Exercise: not attempted yet")
        return
    report = check_exercise(step)
    assert report.passed, (f"not yet: {report.most_likely.name} failed ({report.most_likely.detail}). "
                           f"Full report:\n{report}")
    print("Exercise: correct, the samples reproduce the mixture's mean, spread and mode shares")


check_my_step(my_step)

# %% [markdown]
# ## Summary
#
# - Split the suspects first: drive your sampler with the exact $\varepsilon^*$ of a Gaussian mixture. If the
#   samples are right, the sampler is; then the network and the data are to blame.
# - Most sampler bugs live in one index or one square root: the $\bar\alpha$ table read at $t-1$, σ² where σ
#   belongs, a root missing in Eq. 7, 11 or 15, noise at the last step, DDIM reading $\bar\alpha$ at $t-1$.
# - Training bugs hide behind a loss that looks fine: check that the output depends on $t$, that the loss per $t$
#   is near the floor at *every* $t$, and that the EMA moves.
# - Data bugs are one print away: dtype, min, max, shape of a training batch.
# - `ddpm_helpers.evaluation.doctor` runs these checks on your own pieces and names the most likely cause.
#
# ## Solution
#
# Three bugs: the tables are read at `t - 1` (and at the last step `t - 1 = -1` wraps round to $\bar\alpha_T$); the
# noise is scaled by the variance instead of its square root; and noise is added at the last step too. With
# $\sigma_t^2 = \tilde\beta_t$ the third would be harmless ($\tilde\beta_1 = 0$); with $\sigma_t^2 = \beta_t$ it is not,
# and the check catches it once the first two are fixed:

# %%
def step_with(last_step_noise):
    """The fixed step; ``last_step_noise=True`` keeps the third bug (σ z added at t = 0 too)."""
    def step(diffusion, eps, xt, t, t_next, generator=None):
        betas = diffusion.betas.to(xt.dtype)
        alpha_bar = torch.cumprod(1 - betas, dim=0)  # ᾱ_t
        alpha_bar_prev = torch.cat([torch.ones(1, dtype=xt.dtype), alpha_bar[:-1]])  # ᾱ_{t−1}
        beta, ab, ab_prev = betas[t], alpha_bar[t], alpha_bar_prev[t]  # the 0-based t the model was called with
        x0_hat = (xt - (1 - ab).sqrt() * eps) / ab.sqrt()  # Eq. 15
        mean = ab_prev.sqrt() * beta / (1 - ab) * x0_hat + (1 - beta).sqrt() * (1 - ab_prev) / (1 - ab) * xt  # Eq. 7
        if t_next is None and not last_step_noise:
            return mean  # the last step returns the mean (Algorithm 2: z = 0 at t = 1)
        z = torch.randn(xt.shape, dtype=xt.dtype, generator=generator)
        return mean + beta.sqrt() * z  # σ_t z with σ_t = √β_t
    return step


two_fixed = check_exercise(step_with(last_step_noise=True))  # two bugs fixed, the third left in
print(f"two of three fixed: {'passed' if two_fixed.passed else 'FAILED'}, most likely: {two_fixed.most_likely.cause}")
assert not two_fixed.passed, "the check must fail while noise is still added at the last step"
my_step = step_with(last_step_noise=False)
check_my_step(my_step)

# %%
# NBVAL_IGNORE_OUTPUT
print(f"notebook run time: {time.perf_counter() - notebook_start:.0f} s (profile: {config.profile()}, "
      f"torch threads: {torch.get_num_threads()})")

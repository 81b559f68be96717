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
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 — The forward process: noise schedules and the marginal q(x_t | x_0)
#
# A diffusion model learns to generate data by learning to **undo noise**. Before it can
# learn anything we need the thing it undoes: a fixed recipe that turns any image, slowly,
# into pure Gaussian noise. This notebook builds that recipe — the *forward process* of
# Ho et al. (2020) — from one line of arithmetic, derives its closed form, checks every
# formula numerically, and shows why the choice of noise schedule matters.
#
# **You will learn**
# - what one forward step $q(x_t \mid x_{t-1})$ does, and why it shrinks $x_{t-1}$ by $\sqrt{1-\beta_t}$ before adding noise;
# - how to jump from $x_0$ to any $x_t$ in one step with $q(x_t \mid x_0)$, derived step by step and checked by Monte Carlo;
# - why noise erases fine detail first and coarse shape last, read off the image's power spectrum;
# - how the linear, cosine and sigmoid schedules differ ($\bar\alpha_t$, signal-to-noise ratio, what they do to a digit, a butterfly and a 2-D point cloud);
# - why $T$ and $\beta_{\max}$ must make $\bar\alpha_T \approx 0$, measured by the prior term $L_T$ of the variational bound (Eq. 5).
#
# **You should know** basic probability (Gaussian distributions, mean and variance of a
# sum of independent variables) and enough PyTorch to read tensor code. Apart from the
# trained networks that draw the opening grid, no neural network appears in this notebook.
#
# **Run time.** Both profiles run the same small computations, on the CPU; the GPU is not used.
#
# | machine | `DDPM_PROFILE=quick` or `full` |
# | --- | --- |
# | CPU | 16.5 s (measured, last cell; both profiles run the same cells) |
#
# **Papers.** Equation numbers refer to Ho, Jain & Abbeel (2020), *Denoising Diffusion
# Probabilistic Models* ([arXiv:2006.11239](https://arxiv.org/abs/2006.11239)) unless another
# paper is named. Also used:
# Sohl-Dickstein et al. (2015) on small Gaussian steps ([arXiv:1503.03585](https://arxiv.org/abs/1503.03585)),
# Nichol & Dhariwal (2021) for the cosine schedule, Eq. 17 ([arXiv:2102.09672](https://arxiv.org/abs/2102.09672)),
# Jabri et al. (2023) and Chen (2023) for the sigmoid schedule
# ([arXiv:2212.11972](https://arxiv.org/abs/2212.11972), [arXiv:2301.10972](https://arxiv.org/abs/2301.10972)),
# Kingma et al. (2021) for the signal-to-noise ratio ([arXiv:2107.00630](https://arxiv.org/abs/2107.00630)),
# Song & Ermon (2019) and Song et al. (2021) for variance-exploding noise
# ([arXiv:1907.05600](https://arxiv.org/abs/1907.05600), [arXiv:2011.13456](https://arxiv.org/abs/2011.13456)),
# Hoogeboom et al. (2023) on schedules and image size ([arXiv:2301.11093](https://arxiv.org/abs/2301.11093)),
# and Lin et al. (2024) on chains that do not end in noise ([arXiv:2305.08891](https://arxiv.org/abs/2305.08891)).
# The full list is in
# [`papers/README.md`](https://github.com/ddpm-from-scratch/ddpm-from-scratch/blob/main/papers/README.md);
# every symbol is in [`papers/notation.md`](https://github.com/ddpm-from-scratch/ddpm-from-scratch/blob/main/papers/notation.md).

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
import inspect
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from ddpm_helpers import config, schedules
from ddpm_helpers.datasets import butterfly_images, mnist_images, sample_toy
from ddpm_helpers.diffusion import Diffusion, extract
from ddpm_helpers.elbo import bits_per_dim, prior_kl
from ddpm_helpers.plotting import show_images
from ddpm_helpers.training.pretrained import draw_samples, load_pretrained

notebook_start = time.perf_counter()
config.seed_everything(0)
torch.set_num_threads(1)  # the tensors here are small: one CPU thread is enough

# %% [markdown]
# ## Where the series ends
#
# First, a look at the goal. Every picture below started as pure Gaussian noise, which a
# trained network removed step by step in a few seconds on a CPU (a shortcut sampler from
# notebook 04 visits 20 of the 1000 steps): sixteen 64×64 butterflies from a 2.4-hour CPU run
# that notebook 05 samples, and each digit 0–9, asked for by its label, from the network of
# notebook 04. By notebook 05 you will have trained both kinds of network yourself. This notebook builds
# the first piece: the process that turns a picture into noise, which the networks learn to
# run backwards.

# %%
# NBVAL_IGNORE_OUTPUT
# How this works: notebooks 02–05.
num_steps = 20  # the shortcut sampler's steps
start = time.perf_counter()
drawn_butterflies = draw_samples("05_butterflies64_ema", 16, num_steps=num_steps)  # 16 butterflies, notebook 05's
drawn_digits = draw_samples("04_mnist_ema", labels=range(10), num_steps=num_steps)  # the digits 0–9, notebook 04's
seconds = time.perf_counter() - start
chain_T = {load_pretrained(name).metadata.get("T", 1000) for name in ["05_butterflies64_ema", "04_mnist_ema"]}  # trained T
fig, axes = plt.subplots(1, 2, figsize=(11, 2.9), gridspec_kw=dict(width_ratios=[8, 5]))
show_images(drawn_butterflies, nrow=8, ax=axes[0], title="notebook 05: butterflies, 64×64")
show_images(drawn_digits, nrow=5, ax=axes[1], title="notebook 04: the digits 0–9, 28×28")
fig.suptitle("Drawn from pure noise by the trained networks of notebooks 04 and 05")
plt.tight_layout()
plt.show()
print(f"two networks loaded and 26 images drawn in {seconds:.1f} s on the CPU, "
      f"each with {num_steps} of the chain's T = {' and '.join(map(str, sorted(chain_T)))} steps")

# %% [markdown]
# ## 1. Intuition: destroy structure slowly, then learn to undo it
#
# Take a picture and repeat two things many times: **shrink it a little towards zero, then
# add a little Gaussian noise.** Each step changes the picture only slightly, yet after a few
# hundred steps nothing of it is left: what remains looks like a draw from a standard
# Gaussian, whichever picture we started from.
#
# Generating data means running this film **backwards**: start from pure noise and remove a
# little noise at a time until a picture appears. Removing a *small* amount of noise is a
# much easier job than producing a picture in one shot, and it is the only job the network
# of a diffusion model has (notebooks 02–03). Sohl-Dickstein et al. (2015) observed that
# when each forward step adds only a little Gaussian noise, each backward step is close to a
# Gaussian too, so it can be learned by predicting a mean.
#
# Let us watch it happen with the simplest possible rule: shrink by $\sqrt{0.98}$, add
# noise of variance $0.02$, repeat.

# %%
digits, digit_labels = mnist_images(train=False)  # (10000, 1, 28, 28) in [-1, 1]
butterflies = butterfly_images(image_size=64).images  # (N, 3, 64, 64) in [-1, 1]
digit, butterfly = digits[:1], butterflies[2:3]  # one test digit, one butterfly


def to_display(x):
    """One image (1, C, H, W) in [-1, 1] → an (H, W, C) array in [0, 1] for imshow (values outside are clipped)."""
    return ((x[0].clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()


def show_image(ax, x, title=None):
    """Draw one image tensor on an axis without ticks."""
    image = to_display(x)
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=9)


beta = 0.02
show_after = [0, 10, 25, 50, 100, 200, 500]
generator = torch.Generator().manual_seed(0)
fig, axes = plt.subplots(2, len(show_after), figsize=(1.6 * len(show_after), 3.7))
for row, x in enumerate([digit, butterfly]):
    for step in range(show_after[-1] + 1):
        if step in show_after:
            show_image(axes[row, show_after.index(step)], x, f"{step} steps" if row == 0 else None)
        eps = torch.randn(x.shape, generator=generator)
        x = math.sqrt(1 - beta) * x + math.sqrt(beta) * eps  # shrink a little, add a little noise
    axes[row, 0].set_ylabel(["MNIST digit", "butterfly"][row])
fig.suptitle("Repeat: shrink by √0.98, add N(0, 0.02) noise")
plt.tight_layout()
plt.show()

# %% [markdown]
# Three things to notice, each made precise below:
#
# 1. **Fine detail goes first, coarse shape last.** After 10 steps the butterfly's orange
#    bands and white spots are still clearly visible; after 50 they are hard to make out, while the
#    digit's stroke is still there and the butterfly's silhouette can be made out even
#    after 100. Section 6.1 measures this with the image's power spectrum.
# 2. **The end point forgets the start.** After 500 steps both panels are the same kind of
#    noise. That is what lets generation *start* from noise.
# 3. **The pixel values stay in the same range.** The shrinking step keeps the noise from
#    piling up; section 3.1 shows why exactly $\sqrt{1-\beta}$.
#
# *Image credits:* MNIST (LeCun, Cortes & Burges); the butterfly photos' credit and licence
# are printed above the figure.

# %% [markdown]
# ## 2. Notation
#
# | symbol | meaning | in code (0-based) |
# | --- | --- | --- |
# | $x_0$ | a data point (an image scaled to $[-1, 1]$, Ho et al. §3.3) | `x0` |
# | $x_1, \dots, x_T$ | progressively noisier versions of $x_0$, same shape | `xt` |
# | $T$ | number of noising steps (Ho et al. use $T = 1000$) | `T` |
# | $\beta_t \in (0, 1)$ | variance of the noise added at step $t$: the **noise schedule** | `betas[t-1]` |
# | $\alpha_t = 1 - \beta_t$ | fraction of the variance kept at step $t$ | `alphas[t-1]` |
# | $\bar\alpha_t = \prod_{s=1}^{t} \alpha_s$ | fraction kept after $t$ steps | `alpha_bar[t-1]` |
# | $\varepsilon \sim \mathcal N(0, I)$ | standard Gaussian noise, same shape as $x_0$ | `eps` |
# | $\mathcal N(x; \mu, \sigma^2 I)$ | Gaussian density of $x$ with mean $\mu$ and variance $\sigma^2$ per dimension | — |
#
# **One timestep convention.** Equations use the paper's steps $t = 1, \dots, T$. Python
# indexes from 0, so the paper's step $t$ lives at index $t - 1$: `betas[0]` is $\beta_1$.
# Every code `t` in this series is such a 0-based index: `alpha_bar[t]` is
# $\bar\alpha_{t+1}$, and the helper call `q_sample(x0, t)` returns the paper's $x_{t+1}$.

# %% [markdown]
# ## 3. One forward step
#
# The forward process is a Markov chain that adds Gaussian noise according to the
# schedule $\beta_1, \dots, \beta_T$ (Ho et al. 2020, **Eq. 2**):
#
# $$
# q(x_{1:T} \mid x_0) = \prod_{t=1}^{T} q(x_t \mid x_{t-1}), \qquad
# q(x_t \mid x_{t-1}) = \mathcal N\!\left(x_t;\ \sqrt{1-\beta_t}\, x_{t-1},\ \beta_t I\right).
# $$
#
# To *sample* from it we use the reparameterization $z = \mu + \sigma \varepsilon$ of a
# Gaussian $\mathcal N(\mu, \sigma^2)$:
#
# $$
# x_t = \sqrt{\alpha_t}\, x_{t-1} + \sqrt{1-\alpha_t}\, \varepsilon_t, \qquad \varepsilon_t \sim \mathcal N(0, I),
# $$
#
# the rule of section 1 with a step-dependent $\beta_t$. Note the square roots: $\beta_t$
# is a **variance**, so the noise is scaled by its standard deviation $\sqrt{\beta_t}$.
#
# Ho et al. (§4) use $T = 1000$ and $\beta_t$ increasing linearly from $\beta_1 = 10^{-4}$
# to $\beta_T = 0.02$. We build the tables by hand first:

# %%
T = 1000
betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)  # β_1 … β_T linear (Ho et al. 2020, §4)
alphas = 1.0 - betas  # α_t = 1 − β_t
alpha_bar = torch.cumprod(alphas, dim=0)  # ᾱ_t = ∏_{s=1}^t α_s


def forward_step(x_prev, beta_t, eps):
    """One draw from q(x_t | x_{t-1}) (Ho et al. 2020, Eq. 2): x_t = √(1 − β_t) x_{t−1} + √β_t ε."""
    return torch.sqrt(1 - beta_t) * x_prev + torch.sqrt(beta_t) * eps


print(f"β_1 = {betas[0]:.4f}, β_T = {betas[-1]:.4f}")
for t in [0, 9, 99, 499, 999]:  # 0-based code index t: the paper's step t + 1
    print(f"ᾱ_{t + 1:<4d} = alpha_bar[{t:3d}] = {alpha_bar[t]:.6f}")

# %% [markdown]
# The helper package computes the same tables once, in float64, inside a small
# `Diffusion` object (one schedule, named tables, short methods named after what they
# compute). Let us check its tables against the definitions, computed another way:
# $\beta_t$ from the straight line through $\beta_1$ and $\beta_T$ at the paper's
# $t = 1, \dots, T$, and $\bar\alpha_t$ as the exponential of a sum of logarithms
# instead of a product. An index shifted by one or a wrong end point would fail it.
# Then we read the helper's source, so that formula and code sit side by side.

# %%
diffusion = Diffusion.from_schedule("linear", T=1000)
print(diffusion)
paper_steps = torch.arange(1, T + 1, dtype=torch.float64)  # the paper's t = 1 … T
beta_line = 1e-4 + (0.02 - 1e-4) * (paper_steps - 1) / (T - 1)  # β_t = β_1 + (β_T − β_1)(t − 1)/(T − 1)
alpha_bar_by_logs = torch.exp(torch.cumsum(torch.log1p(-beta_line), dim=0))  # ᾱ_t = exp Σ_{s≤t} log(1 − β_s)
print("helper's β_t = β_1 + (β_T − β_1)(t − 1)/(T − 1) for t = 1 … T:", torch.allclose(diffusion.betas, beta_line, rtol=1e-12, atol=0))
print("helper's ᾱ_t = exp Σ_{s≤t} log(1 − β_s) for t = 1 … T:        ", torch.allclose(diffusion.alpha_bar, alpha_bar_by_logs, rtol=1e-10, atol=0))

# %%
# NBVAL_IGNORE_OUTPUT
print(inspect.getsource(schedules.linear_beta_schedule))

# %% [markdown]
# The helper rescales the end points by $1000/T$ so that other values of $T$ destroy the
# data about as much as $T = 1000$ does; section 7 shows what goes wrong without it.
#
# ### 3.1 Why shrink by $\sqrt{1-\beta_t}$? The variance is preserved
#
# Take one coordinate of $x_{t-1}$ with variance $v_{t-1}$. The noise $\varepsilon_t$ is
# independent of $x_{t-1}$, and variances of independent terms add, so
#
# $$
# v_t = \operatorname{Var}\!\left(\sqrt{1-\beta_t}\, x_{t-1} + \sqrt{\beta_t}\,\varepsilon_t\right)
#     = (1-\beta_t)\, v_{t-1} + \beta_t .
# $$
#
# If $v_{t-1} = 1$ then $v_t = (1-\beta_t) + \beta_t = 1$: **data with unit variance keeps
# unit variance at every step.** More generally $v_t - 1 = (1-\beta_t)(v_{t-1} - 1)$, so
# any starting variance is pulled towards 1 geometrically:
# $v_t = 1 + \bar\alpha_t\,(v_0 - 1)$. Without the shrinking factor ("just add noise")
# the variance would grow to $v_0 + \sum_s \beta_s$ and the end point would depend on $T$
# and on the schedule. (That *variance-exploding* alternative is a valid model too: the
# score-based models of Song & Ermon (2019) add noise this way, and Song et al. (2021) gave
# the two families their names, variance-exploding and variance-preserving. DDPM is the
# variance-preserving one.)
#
# We run 100 000 independent chains with data $x_0 = \pm 1$ (mean 0, variance 1) or
# $x_0 = \pm\tfrac12$ (variance $\tfrac14$), the same noise for all three rules, and compare
# the variance of $x_t$ with these formulas. The last line gives the largest gap in Monte Carlo
# standard errors.

# %%
n_chains = 100_000
generator = torch.Generator().manual_seed(1)
signs = torch.randint(0, 2, (n_chains,), generator=generator).float() * 2 - 1  # x0 = ±1: mean 0, variance 1
chains = {
    "shrink + noise, Var(x0) = 1": signs.clone(),
    "shrink + noise, Var(x0) = 1/4": 0.5 * signs,
    "noise only,     Var(x0) = 1": signs.clone(),
}
variance_paths = {name: [x.double().var().item()] for name, x in chains.items()}  # statistics in float64
shown_steps = [0, 10, 100, 500, 1000]  # the paper's t (0: x0 itself)
standard_errors = {name: {} for name in chains}  # paper t → standard error of the variance, from the chains
for t in range(T):  # 0-based t: this step draws the paper's x_{t+1} from x_t, with β_{t+1} = betas[t]
    eps = torch.randn(n_chains, generator=generator)  # one ε shared by the three rules
    for name, x in chains.items():
        if name.startswith("noise only"):
            chains[name] = x + torch.sqrt(betas[t]) * eps  # x_{t+1} = x_t + √β_{t+1} ε: variance explodes
        else:
            chains[name] = forward_step(x, betas[t], eps)  # Eq. 2
        variance_paths[name].append(chains[name].double().var().item())  # entry k: after k steps, paper x_k
        if t + 1 in shown_steps:  # √((m4 − v²)/n), m4 = mean of (x − x̄)⁴: valid for any distribution of x
            centred = chains[name].double() - chains[name].double().mean()
            m4 = centred.pow(4).mean().item()
            standard_errors[name][t + 1] = math.sqrt((m4 - variance_paths[name][-1] ** 2) / n_chains)

predicted = {  # exact variances: v_t = 1 + ᾱ_t (v_0 − 1) with shrinking, v_0 + Σ_{s≤t} β_s without
    "shrink + noise, Var(x0) = 1": torch.ones(T + 1, dtype=torch.float64),
    "shrink + noise, Var(x0) = 1/4": 1 - 0.75 * torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar]),
    "noise only,     Var(x0) = 1": 1 + torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(betas, 0)]),
}
print(f"{'rule':31s}" + "".join(f"{'t=' + str(step):>16s}" for step in shown_steps))
for name in chains:
    cells = [f"{variance_paths[name][step]:.3f} ({predicted[name][step]:.3f})" for step in shown_steps]
    print(f"{name:31s}" + "".join(f"{c:>16s}" for c in cells))
gaps = [abs(variance_paths[name][step] - predicted[name][step].item()) / standard_errors[name][step]
        for name in chains for step in shown_steps[1:]]  # t = 0 left out: x0 itself, exact by construction
all_se = [se for by_step in standard_errors.values() for se in by_step.values()]
print(f"(Monte Carlo variance, exact value in brackets; standard errors {min(all_se):.4f} to {max(all_se):.4f})")
print(f"largest gap for t ≥ 10: {max(gaps):.1f} standard errors (of {len(gaps)}); all within 4: {max(gaps) < 4}")

# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
steps = np.arange(T + 1)
for (name, path), color in zip(variance_paths.items(), ["C0", "C1", "C3"]):
    ax.plot(steps, path, color=color, label=f"{name} (Monte Carlo)")
    ax.plot(steps, predicted[name].numpy(), color="k", lw=0.8, ls="--")
ax.plot([], [], color="k", lw=0.8, ls="--", label="exact")
ax.set_xlabel("paper timestep t")
ax.set_yscale("log")
ax.set_yticks([0.25, 0.5, 1, 2, 5, 10], labels=["0.25", "0.5", "1", "2", "5", "10"])
ax.set_yticks([], minor=True)
ax.set_ylabel("Var(x_t) (log scale)")
ax.set_title("Shrinking by √(1−β_t) keeps the variance at 1 (linear schedule, T = 1000)")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# With the shrinking factor, unit-variance data stays at variance 1 and data of variance
# $\tfrac14$ climbs to 1; without it the variance keeps growing (to $1 + \sum_t \beta_t
# \approx 11$ here). This is why images are scaled to $[-1, 1]$: pixel values of the same
# order as the $\mathcal N(0, I)$ noise the chain ends in.
#
# (A note on the standard errors: $v\sqrt{2/n}$ holds only for Gaussian $x$, and these $x_t$
# are not — at $t = 0$ they are two spikes — so the cell estimates each from the chains as
# $\sqrt{(m_4 - v^2)/n}$, with $m_4$ the mean of $(x - \bar x)^4$. The largest gap leaves out
# $t = 0$, where the chains hold $x_0$ itself.)
#
# ## 4. Jumping to any $t$ in one step: $q(x_t \mid x_0)$
#
# Training (notebooks 02–03) needs noisy versions $x_t$ at random $t$, millions of times.
# Running $t$ steps of the chain each time would be slow; fortunately a chain of Gaussian
# steps collapses into a single Gaussian (Ho et al. 2020, **Eq. 4**):
#
# $$
# q(x_t \mid x_0) = \mathcal N\!\left(x_t;\ \sqrt{\bar\alpha_t}\, x_0,\ (1-\bar\alpha_t)\, I\right),
# \qquad\text{i.e.}\qquad x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1-\bar\alpha_t}\;\varepsilon,\quad \varepsilon \sim \mathcal N(0, I).
# $$
#
# **Derivation.** We use one fact: if $a \sim \mathcal N(0, \sigma_a^2 I)$ and
# $b \sim \mathcal N(0, \sigma_b^2 I)$ are independent, then
# $a + b \sim \mathcal N(0, (\sigma_a^2 + \sigma_b^2) I)$ — variances of independent
# Gaussians add, and the sum is again Gaussian.
#
# *Two steps.* Write two steps with the reparameterization of Eq. 2, using independent
# $\varepsilon_{t-1}, \varepsilon_t \sim \mathcal N(0, I)$:
#
# $$
# \begin{aligned}
# x_t &= \sqrt{\alpha_t}\, x_{t-1} + \sqrt{1-\alpha_t}\,\varepsilon_t \\
#     &= \sqrt{\alpha_t}\left(\sqrt{\alpha_{t-1}}\, x_{t-2} + \sqrt{1-\alpha_{t-1}}\,\varepsilon_{t-1}\right) + \sqrt{1-\alpha_t}\,\varepsilon_t \\
#     &= \sqrt{\alpha_t \alpha_{t-1}}\; x_{t-2} + \underbrace{\sqrt{\alpha_t (1-\alpha_{t-1})}\,\varepsilon_{t-1} + \sqrt{1-\alpha_t}\,\varepsilon_t}_{\text{two independent zero-mean Gaussians}} .
# \end{aligned}
# $$
#
# The two noise terms have variances $\alpha_t(1-\alpha_{t-1})$ and $1-\alpha_t$, so their
# sum has variance $\alpha_t - \alpha_t\alpha_{t-1} + 1 - \alpha_t = 1 - \alpha_t\alpha_{t-1}$:
#
# $$
# x_t = \sqrt{\alpha_t\alpha_{t-1}}\; x_{t-2} + \sqrt{1-\alpha_t\alpha_{t-1}}\;\bar\varepsilon, \qquad \bar\varepsilon \sim \mathcal N(0, I).
# $$
#
# Two steps behave like one step with $\alpha = \alpha_t\alpha_{t-1}$.
#
# *Induction.* Suppose $x_{t-1} = \sqrt{\bar\alpha_{t-1}}\, x_0 + \sqrt{1-\bar\alpha_{t-1}}\,\bar\varepsilon_{t-1}$,
# with $\bar\varepsilon_{t-1}$ the combined noise of the first $t - 1$ steps
# (true for $t - 1 = 1$, where $\bar\alpha_1 = \alpha_1$ and this is Eq. 2). One more step adds
# $\varepsilon_t$. Since $\bar\varepsilon_{t-1}$ depends only on $\varepsilon_1, \dots, \varepsilon_{t-1}$, it is
# independent of $\varepsilon_t$, so their variances add:
#
# $$
# x_t = \sqrt{\alpha_t}\sqrt{\bar\alpha_{t-1}}\; x_0 +
#     \underbrace{\sqrt{\alpha_t(1-\bar\alpha_{t-1})}\;\bar\varepsilon_{t-1} + \sqrt{1-\alpha_t}\;\varepsilon_t}_{\text{variance } \alpha_t - \alpha_t\bar\alpha_{t-1} + 1 - \alpha_t \;=\; 1 - \bar\alpha_t}
#     = \sqrt{\bar\alpha_t}\; x_0 + \sqrt{1-\bar\alpha_t}\;\varepsilon ,
# $$
#
# because $\alpha_t\bar\alpha_{t-1} = \bar\alpha_t$. That is Eq. 4 for every $t$. $\square$
#
# Mind the square roots once more: the **mean** is scaled by $\sqrt{\bar\alpha_t}$, the
# **variance** is $1-\bar\alpha_t$ and the **standard deviation** multiplying $\varepsilon$ is
# $\sqrt{1-\bar\alpha_t}$. Written inline, with the 0-based index used in code:

# %%
def q_mean_variance_inline(x0, t):
    """Mean and variance of q(x_{t+1} | x0) at the 0-based index t (an int), i.e. paper step t + 1: Eq. 4."""
    mean = alpha_bar[t].sqrt() * x0  # √ᾱ x0, where alpha_bar[t] is the paper's ᾱ_{t+1}
    variance = 1 - alpha_bar[t]  # 1 − ᾱ
    return mean, variance


def q_sample_inline(x0, t, eps):
    """The paper's x_{t+1} = √ᾱ_{t+1} x0 + √(1 − ᾱ_{t+1}) ε at the 0-based index t (an int): Eq. 4 reparameterized."""
    mean, variance = q_mean_variance_inline(x0, t)
    return mean + variance.sqrt() * eps  # √ᾱ x0 + √(1 − ᾱ) ε


# %% [markdown]
# ### 4.1 Check: iterate the chain, compare with the closed form
#
# We start 100 000 chains at the same $x_0 = (1, -\tfrac12)$, run Eq. 2 step by step, and
# compare the empirical mean and variance of $x_t$ with Eq. 4 as computed by the helper's
# `Diffusion.q_mean_variance`. Each gap is measured in Monte Carlo standard errors:
# $\sqrt{v/n}$ for a mean and $v\sqrt{2/n}$ for a variance $v$, from $n$ chains.

# %%
x0_pair = torch.tensor([1.0, -0.5], dtype=torch.float64)
check_steps = [1, 10, 100, 250, 500, 1000]  # the paper's t
generator = torch.Generator().manual_seed(2)
x = x0_pair.float().expand(n_chains, 2).clone()
empirical = {}  # paper t → (mean, variance) of the chains' x_t
for t in range(T):  # 0-based t: this step draws the paper's x_{t+1}
    x = forward_step(x, betas[t], torch.randn(x.shape, generator=generator))  # Eq. 2
    if t + 1 in check_steps:
        empirical[t + 1] = (x.double().mean(0), x.double().var(0))  # statistics in float64
helper_mean, helper_var = diffusion.q_mean_variance(
    x0_pair.expand(len(check_steps), 2), torch.tensor(check_steps) - 1  # 0-based t = paper t − 1
)
print("        x0 = 1                                | x0 = -0.5")
print("paper t mean MC / Eq.4    var MC / Eq.4       | mean MC / Eq.4    var MC / Eq.4")
gaps = []  # |Monte Carlo − Eq. 4| in standard errors: √(v/n) for a mean, v·√(2/n) for a variance v
for row, step in enumerate(check_steps):
    mc_mean, mc_var = empirical[step]
    v = helper_var[row, 0].item()
    gaps += [abs(mc_mean[d] - helper_mean[row, d]).item() / math.sqrt(v / n_chains) for d in range(2)]
    gaps += [abs(mc_var[d].item() - v) / (v * math.sqrt(2 / n_chains)) for d in range(2)]
    cells = [
        f"{mc_mean[d]:+.3f} / {helper_mean[row, d]:+.3f}   {mc_var[d]:.3f} / {helper_var[row, 0]:.3f}" for d in range(2)
    ]
    print(f"{step:<7d} {cells[0]}      | {cells[1]}")
print(f"standard errors at variance 1: {math.sqrt(1 / n_chains):.4f} on a mean, {math.sqrt(2 / n_chains):.4f} on a variance")
print(f"largest gap: {max(gaps):.1f} standard errors (of {len(gaps)} comparisons); all within 4: {max(gaps) < 4}")

# %% [markdown]
# The chain and the closed form agree within the Monte Carlo error at every $t$: the largest of
# the 24 gaps is 2.3 standard errors (a standard error is 0.0032 on a mean and 0.0045 on a variance
# near 1, from 100,000 chains). Agreement of
# mean and variance would not be enough if the chain's $x_t$ were not Gaussian, so let us
# also compare the whole distribution at $t = 100$: the chain above against samples drawn
# in one step with `Diffusion.q_sample`.

# %%
hist_step = 100  # the paper's t
generator = torch.Generator().manual_seed(3)
x = torch.ones(n_chains)  # x0 = 1
for t in range(hist_step):  # 0-based t: draws the paper's x_{t+1}; after the loop x is x_100
    x = forward_step(x, betas[t], torch.randn(n_chains, generator=generator))
one_shot = diffusion.q_sample(
    torch.ones(n_chains, 1), torch.full((n_chains,), hist_step - 1), generator=generator  # 0-based t = 99
).squeeze(1)
mean, variance = q_mean_variance_inline(torch.tensor(1.0, dtype=torch.float64), hist_step - 1)
grid = torch.linspace(-1.5, 2.5, 400, dtype=torch.float64)
density = torch.exp(-((grid - mean) ** 2) / (2 * variance)) / torch.sqrt(2 * math.pi * variance)

fig, ax = plt.subplots(figsize=(7, 3.5))
bins = np.linspace(-1.5, 2.5, 81)
ax.hist(x.numpy(), bins=bins, density=True, alpha=0.5, label=f"{hist_step} steps of the chain (Eq. 2)")
ax.hist(one_shot.numpy(), bins=bins, density=True, histtype="step", lw=1.5, label="one step with q_sample (Eq. 4)")
ax.plot(grid.numpy(), density.numpy(), "k--", lw=1, label=f"N(√ᾱ_t·x0, 1−ᾱ_t) = N({mean:.3f}, {variance:.3f})")
ax.set_xlabel(f"x_t for x0 = 1, paper t = {hist_step}")
ax.set_ylabel("density")
ax.set_title("The chain and the closed form give the same distribution")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
qs = torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95])
print("quantiles 5/25/50/75/95 %")
print("  chain     :", " ".join(f"{q:+.3f}" for q in torch.quantile(x, qs)))
print("  q_sample  :", " ".join(f"{q:+.3f}" for q in torch.quantile(one_shot, qs)))
print("  exact     :", " ".join(f"{q:+.3f}" for q in mean + variance.sqrt() * math.sqrt(2) * torch.erfinv(2 * qs.double() - 1)))

# %% [markdown]
# Finally, the helper's `q_sample` must compute exactly our inline formula when given the
# same noise $\varepsilon$. Here is its source, and the check on a batch of MNIST digits at
# several timesteps. In the helper package all indexing by $t$ happens in one function, `extract`, which picks
# `table[t]` for every example in the batch and reshapes it to `(B, 1, 1, 1)` so that it
# broadcasts against images.

# %%
# NBVAL_IGNORE_OUTPUT
print(inspect.getsource(Diffusion.q_mean_variance))
print(inspect.getsource(Diffusion.q_sample))
print(inspect.getsource(extract))

# %%
generator = torch.Generator().manual_seed(4)
x0_batch = digits[:4].double()
t_batch = torch.tensor([0, 99, 499, 999])  # 0-based: the paper's x_1, x_100, x_500, x_1000
eps_batch = torch.randn(x0_batch.shape, generator=generator, dtype=torch.float64)
from_helper = diffusion.q_sample(x0_batch, t_batch, eps=eps_batch)
by_hand = torch.stack([q_sample_inline(x0_batch[i], int(t_batch[i]), eps_batch[i]) for i in range(4)])
print("extract(alpha_bar, t, x0).shape =", tuple(extract(diffusion.alpha_bar, t_batch, x0_batch).shape))
print("q_sample matches Eq. 4 by hand: ", torch.allclose(from_helper, by_hand, rtol=0, atol=1e-12))

# %% [markdown]
# ## 5. Noise schedules side by side
#
# The schedule $\beta_1, \dots, \beta_T$ is the only free choice in the forward process.
# Three are in common use; all live in `ddpm_helpers.schedules`:
#
# - **linear** (Ho et al. 2020, §4): $\beta_t$ rises linearly from $10^{-4}$ to $0.02$ for
#   $T = 1000$ (both ends multiplied by $1000/T$ for other $T$).
# - **cosine** (Nichol & Dhariwal 2021, **Eq. 17**): defined through $\bar\alpha_t$ itself,
#
#   $$\bar\alpha_t = \frac{f(t)}{f(0)}, \qquad f(t) = \cos^2\!\left(\frac{t/T + s}{1+s}\cdot\frac{\pi}{2}\right), \qquad s = 0.008,$$
#   with $\beta_t = 1 - \bar\alpha_t / \bar\alpha_{t-1}$ clipped to at most $0.999$ (their §3.2).
#   Nichol & Dhariwal found that the linear schedule destroys small images too early: its
#   last few hundred steps are almost pure noise and teach the model little.
# - **sigmoid** (Jabri et al. 2023; Chen 2023, Algorithm 1): also defined through
#   $\bar\alpha$, with the logistic function $\sigma$ and $u = t/T$:
#
#   $$\bar\alpha(u) = \frac{\sigma(3) - \sigma(6u - 3)}{\sigma(3) - \sigma(-3)}$$
#   (start $=-3$, end $=3$, temperature $\tau = 1$), again turned into $\beta_t$ by ratios.
#
# A handy single number for "how noisy is $x_t$" is the **signal-to-noise ratio**
# (Kingma et al. 2021): the variance of the signal part $\sqrt{\bar\alpha_t}\,x_0$ (for
# unit-variance data) over the variance of the noise part,
#
# $$
# \mathrm{SNR}(t) = \frac{\bar\alpha_t}{1-\bar\alpha_t}, \qquad \log\mathrm{SNR}(t) = \log\bar\alpha_t - \log(1-\bar\alpha_t).
# $$
#
# Signal and noise have equal power where $\mathrm{SNR} = 1$, i.e. $\log\mathrm{SNR} = 0$.

# %%
diffusions = {name: Diffusion.from_schedule(name, T=1000) for name in schedules.SCHEDULES}
paper_t = np.arange(1, T + 1)  # x-axis: the paper's t = 1 … T
fig, axes = plt.subplots(2, 2, figsize=(10, 6.5))
for name, d in diffusions.items():
    axes[0, 0].semilogy(paper_t, d.betas.numpy(), label=name)
    axes[0, 1].plot(paper_t, d.alpha_bar.numpy(), label=name)
    (line,) = axes[1, 0].plot(paper_t, d.sqrt_alpha_bar.numpy(), label=name)
    axes[1, 0].plot(paper_t, d.sqrt_one_minus_alpha_bar.numpy(), ls="--", color=line.get_color())
    axes[1, 1].plot(paper_t, d.log_snr.numpy(), label=name)
axes[1, 0].plot([], [], color="k", label="√ᾱ_t (signal)")
axes[1, 0].plot([], [], color="k", ls="--", label="√(1−ᾱ_t) (noise)")
axes[1, 1].axhline(0, color="gray", lw=0.8, ls=":")
titles = ["β_t (log scale)", "ᾱ_t", "signal and noise coefficients of Eq. 4", "log SNR(t) = log ᾱ_t − log(1−ᾱ_t)"]
for ax, title in zip(axes.flat, titles):
    ax.set_title(title)
    ax.set_xlabel("paper timestep t")
    ax.legend(fontsize=8, loc="center right" if ax is axes[1, 0] else "best")
axes[0, 0].set_ylabel("β_t")
axes[0, 1].set_ylabel("ᾱ_t")
axes[1, 0].set_ylabel("coefficient")
axes[1, 1].set_ylabel("log SNR (natural log)")
fig.suptitle("Three noise schedules, T = 1000")
plt.tight_layout()
plt.show()

# %%
print(f"{'schedule':9s} {'β_1':>9s} {'β_T':>7s} {'ᾱ_250':>7s} {'ᾱ_500':>7s} {'ᾱ_750':>7s} {'ᾱ_T':>9s} {'logSNR_1':>9s} {'logSNR_T':>9s}")
for name, d in diffusions.items():
    print(
        f"{name:9s} {d.betas[0]:9.2e} {d.betas[-1]:7.4f} {d.alpha_bar[249]:7.4f} {d.alpha_bar[499]:7.4f} "
        f"{d.alpha_bar[749]:7.4f} {d.alpha_bar[-1]:9.2e} {d.log_snr[0]:9.2f} {d.log_snr[-1]:9.2f}"
    )

# The numbers quoted below the table:
first_below = int((diffusions["linear"].log_snr < -2.5).nonzero()[0]) + 1  # the paper's t = 0-based t + 1
gap = (diffusions["cosine"].alpha_bar - diffusions["sigmoid"].alpha_bar).abs().max()
print(f"linear: ᾱ_600 = {diffusions['linear'].alpha_bar[599]:.4f}; "
      f"log SNR < −2.5 (SNR < {math.exp(-2.5):.3f}) first at paper t = {first_below}")
print(f"cosine vs sigmoid: max_t |ᾱ_t(cosine) − ᾱ_t(sigmoid)| = {gap:.4f}; "
      f"ᾱ_T(sigmoid) / ᾱ_T(cosine) = {diffusions['sigmoid'].alpha_bar[-1] / diffusions['cosine'].alpha_bar[-1]:.0f}")

# A check of the helper's cosine and sigmoid tables: the formulas above, evaluated directly at u = t/T.
u = torch.arange(1, T + 1, dtype=torch.float64) / T  # u = t/T at the paper's t = 1 … T
cosine_s = 0.008  # Nichol & Dhariwal's offset s
logistic_3 = torch.sigmoid(torch.tensor([3.0, -3.0], dtype=torch.float64))  # σ(3), σ(−3)
by_formula = {
    "cosine": (torch.cos((u + cosine_s) / (1 + cosine_s) * math.pi / 2) ** 2  # f(t)/f(0), Eq. 17
               / math.cos(cosine_s / (1 + cosine_s) * math.pi / 2) ** 2),
    "sigmoid": (logistic_3[0] - torch.sigmoid(6 * u - 3)) / (logistic_3[0] - logistic_3[1]),  # (σ(3) − σ(6u − 3))/(σ(3) − σ(−3))
}
for name, alpha_bar_formula in by_formula.items():
    d = diffusions[name]
    kept = int((d.betas < 0.999).long().cumprod(0).sum())  # steps before the first β_t clipped to 0.999
    agree = torch.allclose(d.alpha_bar[:kept], alpha_bar_formula[:kept], rtol=1e-12, atol=0)
    print(f"{name}: helper's ᾱ_t = the formula at t = 1 … {kept} (β_t clipped from t = {kept + 1} on): {agree}")

# %% [markdown]
# How to read these curves:
#
# - The **linear** schedule drives $\bar\alpha_t$ to almost 0 by $t \approx 600$
#   ($\bar\alpha_{600} \approx 0.026$); from there on $x_t$ is nearly pure noise. The
#   **cosine** schedule lowers $\bar\alpha_t$ almost linearly in the middle and spends
#   many more steps at moderate noise levels.
# - The **sigmoid** schedule with start $-3$, end $3$, $\tau = 1$ is almost the same curve
#   as the cosine one: $\bar\alpha_t$ differs by at most 0.016. It departs from it only at
#   the two ends: a larger $\beta_1$ ($3\cdot10^{-4}$ against $4\cdot10^{-5}$, so its log-SNR starts lower,
#   8.1 against 10.1) and a *smaller* fall of log-SNR at the very end (it stops at $-15$, the cosine
#   schedule at $-20$: the sigmoid's $\bar\alpha_T$ is 124 times larger, though still negligible). Its
#   parameters are what make it useful: Chen (2023) moves start, end and $\tau$ to put
#   more or fewer steps at high noise, which matters most for large images.
# - In log-SNR the differences are clearest. The cosine schedule's log-SNR is close to a
#   straight line in the middle ($\log\mathrm{SNR} \approx -2\log\tan(\frac{\pi}{2}\cdot\frac{t/T+s}{1+s})$,
#   since $f(0) \approx 1$); the linear one crosses 0 — equal signal and noise — much
#   earlier and drops below $-2.5$ (an SNR below 0.082: nearly pure noise) at $t = 504$.
#   Since every $\beta_t > 0$, $\bar\alpha_t$ and with it log-SNR fall at every step, so it
#   stays below for almost the whole second half.
# - All three start with a small $\beta_1$ (high SNR: $x_1$ is almost $x_0$) and end at
#   $\bar\alpha_T \approx 0$. The cosine and sigmoid schedules hit $\beta_T = 0.999$, the
#   clipping value, so their $\bar\alpha_T$ is essentially zero. Before that last step the
#   helper's tables are the formulas above: the last two lines check them.
#
# ## 6. The forward process on real data
#
# Now the closed form applied to a digit, a butterfly and a 2-D point cloud, at the same
# timesteps under each schedule. Within a figure every row uses **the same noise** $\varepsilon$,
# so the rows differ only by the schedule's coefficients $\sqrt{\bar\alpha_t}$ and
# $\sqrt{1-\bar\alpha_t}$. (Reusing one $\varepsilon$ for all $t$ is fine for a picture of the
# *marginals* $q(x_t \mid x_0)$; a single run of the chain would use fresh noise at each step
# but has the same marginal at each $t$ — that is Eq. 4.) Displayed images are clipped to
# $[-1, 1]$.

# %%
show_steps = [0, 50, 100, 200, 300, 500, 700, 1000]  # the paper's t; 0 means x0 itself


def noised(d, x0, step, eps):
    """x_t at the paper's t = step (x0 itself for step 0), via the helper's q_sample at the 0-based t = step − 1."""
    if step == 0:
        return x0
    return d.q_sample(x0, torch.full((x0.shape[0],), step - 1), eps=eps)


def show_forward_images(x0, title, seed):
    """Grid: one row per schedule, one column per paper t in show_steps, one shared ε."""
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    fig, axes = plt.subplots(len(diffusions), len(show_steps), figsize=(1.45 * len(show_steps), 1.6 * len(diffusions)))
    for row, (name, d) in enumerate(diffusions.items()):
        for col, step in enumerate(show_steps):
            show_image(axes[row, col], noised(d, x0, step, eps), f"t = {step}" if row == 0 else None)
        axes[row, 0].set_ylabel(name)
    fig.suptitle(title)
    plt.tight_layout()
    plt.show()


show_forward_images(digit, f"q(x_t | x0) for an MNIST test digit (label {digit_labels[0].item()})", seed=5)
show_forward_images(butterfly, "q(x_t | x0) for a butterfly (NHM London, CC BY 4.0)", seed=6)

# %% [markdown]
# For the point cloud we draw 2000 points of "two moons" with the series' toy-data helper
# (`ddpm_helpers.datasets.toy2d`, scikit-learn's `make_moons` recipe, standardized to mean 0 and
# variance 1 per coordinate — the scale of the noise). Each point is its own
# $x_0 \in \mathbb R^2$ with its own noise. A point's colour is the first coordinate of its
# starting point $x_0$ (blue: left, red: right), so you can watch the two ends of the cloud mix.

# %%
moons = sample_toy("two_moons", 2000, generator=torch.Generator().manual_seed(0))  # (2000, 2), standardized
eps_moons = torch.randn(moons.shape, generator=torch.Generator().manual_seed(7))
fig, axes = plt.subplots(len(diffusions), len(show_steps), figsize=(1.45 * len(show_steps), 1.6 * len(diffusions)),
                         sharex=True, sharey=True)
for row, (name, d) in enumerate(diffusions.items()):
    for col, step in enumerate(show_steps):
        ax = axes[row, col]
        points = noised(d, moons, step, eps_moons).numpy()
        dots = ax.scatter(points[:, 0], points[:, 1], s=0.5, alpha=0.5, c=moons[:, 0].numpy(), cmap="coolwarm")
        ax.set_xlim(-3.5, 3.5)
        ax.set_ylim(-3.5, 3.5)
        ax.set_xticks([])
        ax.set_yticks([])
        if row == 0:
            ax.set_title(f"t = {step}", fontsize=9)
    axes[row, 0].set_ylabel(name)
fig.suptitle("q(x_t | x0) for a 2-D point cloud (two moons, standardized); axes span [−3.5, 3.5]")
plt.tight_layout()
fig.colorbar(dots, ax=axes, fraction=0.015, pad=0.01, label="first coordinate of the start x0")
plt.show()
print("ᾱ_t at the figures' columns:" + "".join(f"{'t = ' + str(step):>9s}" for step in show_steps[1:]))
for name, d in diffusions.items():
    print(f"{name:28s}" + "".join(f"{d.alpha_bar[step - 1]:9.4f}" for step in show_steps[1:]))
for step in [300, 500]:
    a = diffusions["linear"].alpha_bar[step - 1]  # 0-based t = step − 1
    later = {name: int((diffusions[name].alpha_bar <= a).nonzero()[0]) + 1 for name in ["cosine", "sigmoid"]}
    print(f"linear ᾱ_{step} = {a:.3f} is reached by cosine at t = {later['cosine']}, by sigmoid at t = {later['sigmoid']}: "
          f"{later['cosine'] - step} and {later['sigmoid'] - step} steps later")

# %% [markdown]
# The same story in three kinds of data. Read by eye from the figures: under the linear
# schedule the moons have merged by $t \approx 300$, and the digit and the butterfly fade out
# between $t \approx 300$ and $500$; under the cosine and sigmoid schedules the same happens
# later. The printed lines say how much later: they reach the linear schedule's
# $\bar\alpha_{300} = 0.396$ at $t = 563$ and $564$, and its $\bar\alpha_{500} = 0.079$ at
# $t = 818$ and $835$, 263 to 335 steps later. A schedule that keeps more steps at informative
# noise levels gives the network more useful training examples (Nichol & Dhariwal 2021, §3.2).
# At $t = 700$ only the linear row is nearly pure noise ($\bar\alpha_{700} = 0.007$; cosine
# and sigmoid keep $0.20$). In the last column, $t = 1000$, every $\bar\alpha_T$ is below
# $10^{-4}$ (section 5's table): what you see is the shared noise $\varepsilon$ itself, the
# same pattern in every row.
#
# ### 6.1 Why fine detail goes first: the power spectrum
#
# Section 1 promised to make "fine detail first, coarse shape last" precise. Write an image
# as a sum of waves, its 2-D Fourier transform. Its **power spectrum** $P(f)$ is the squared
# amplitude of the waves of frequency $f$ (in cycles per image width), averaged over
# directions and colour channels. For natural images $P(f)$ falls steeply with $f$: most of
# the variation is in coarse waves, little in fine ones.
#
# Noise is different. Each Fourier coefficient is a weighted sum of the pixels,
# $F_k = \sum_n u_{kn}\,\varepsilon_n$, and the orthonormal transform's weights have
# $\sum_n |u_{kn}|^2 = 1$. For independent pixels of variance $\sigma^2$ the cross terms
# average to zero, so $\mathbb E|F_k|^2 = \sum_n |u_{kn}|^2\,\sigma^2 = \sigma^2$: every wave
# has the same average power $\sigma^2$, and the spectrum of $\varepsilon$ is flat, "white".
# $P(f)$ is defined with the same orthonormal transform. The transform is linear and
# $\varepsilon$ is independent of $x_0$ with mean zero, so the cross term between signal and
# noise averages out too and, on average over $\varepsilon$,
#
# $$
# P_{x_t}(f) = \bar\alpha_t\,P(f) + (1-\bar\alpha_t).
# $$
#
# As a rule of thumb, a wave stays visible while its signal power beats the noise,
# $\bar\alpha_t P(f) > 1-\bar\alpha_t$, i.e. $\mathrm{SNR}(t)\,P(f) > 1$ with the
# $\mathrm{SNR}(t)$ of section 5: the image's spectrum turns the schedule's one SNR into one
# per frequency. As $t$ grows the SNR falls, and the frequency where signal and noise cross
# moves down: the fine waves drown first, the coarse ones last. The left panel shows this for
# the butterfly under the linear schedule at $t = 50$, $100$, $200$, $300$ and $500$, five
# columns of its figure in section 6. The right panel checks the formula: the power of $x_t$
# itself, measured over 64 draws of the noise, against $\bar\alpha_t P(f) + 1 - \bar\alpha_t$.

# %%
def radial_power(x):
    """Power spectrum of images x (B, C, S, S): |FFT|² (orthonormal), averaged over the channels and over each ring
    of frequencies |f| ≈ k, k = 1 … S/2 cycles per image width. Returns k (K,) and each image's power (B, K)."""
    size = x.shape[-1]
    power = torch.fft.fft2(x, norm="ortho").abs().square().mean(dim=1)  # (B, S, S); white noise of variance σ² → σ²
    f = torch.fft.fftfreq(size, d=1 / size)  # the integer frequencies −S/2 … S/2 − 1
    ring = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2).round().long()  # (S, S): the ring of each frequency
    k = torch.arange(1, size // 2 + 1)
    return k, torch.stack([power[:, ring == r].mean(dim=1) for r in k], dim=1)


def highest_surviving(freqs, power, alpha_bar_t):
    """The highest of the frequencies ``freqs`` up to which the signal beats the noise everywhere, ᾱ_t P(f) > 1 − ᾱ_t."""
    loses = alpha_bar_t * power <= 1 - alpha_bar_t
    return int(freqs[loses][0]) - 1 if loses.any() else int(freqs[-1])


x0_spectrum = butterfly.double()  # the butterfly of sections 1 and 6, 64×64
freqs, P = radial_power(x0_spectrum)
P = P[0]
spectrum_steps = [50, 100, 200, 300, 500]  # the paper's t, linear schedule
draws = 64
generator = torch.Generator().manual_seed(9)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
print("paper t    ᾱ_t    SNR(t)   signal beats noise up to f =   (wavelength)")
z_max = 0.0
for step, color in zip(spectrum_steps, ["C0", "C1", "C2", "C3", "C4"]):
    a = diffusion.alpha_bar[step - 1]  # 0-based t = step − 1
    f_star = highest_surviving(freqs, P, a)
    print(f"{step:7d} {a:7.4f} {a / (1 - a):8.3f}   {f_star:26d}   ({64 / f_star:4.1f} px)")
    axes[0].loglog(freqs, a * P, color=color, label=f"t = {step}")
    axes[0].axhline(1 - a, color=color, ls="--", lw=1)
    axes[0].plot([f_star], [1 - a], "v", color=color, ms=6)  # where the signal stops beating the noise
    xt = diffusion.q_sample(x0_spectrum.expand(draws, -1, -1, -1), torch.full((draws,), step - 1), generator=generator)
    _, measured = radial_power(xt)  # (draws, K)
    predicted_power = a * P + (1 - a)
    standard_error = measured.std(dim=0) / math.sqrt(draws)
    z_max = max(z_max, ((measured.mean(dim=0) - predicted_power) / standard_error).abs().max().item())
    axes[1].loglog(freqs, measured.mean(dim=0), "o", ms=3, color=color, label=f"t = {step}, measured")
    axes[1].loglog(freqs, predicted_power, color=color, lw=1)
axes[0].plot([], [], "k--", lw=1, label="noise 1 − ᾱ_t (flat)")
axes[0].plot([], [], "kv", label="highest f where signal wins")
axes[0].set_title("signal ᾱ_t P(f) (solid) against noise 1 − ᾱ_t (dashed)", fontsize=10)
axes[1].set_title("power of x_t: 64 draws (dots), ᾱ_t P(f) + 1 − ᾱ_t (lines)", fontsize=10)
axes[0].set_ylabel("power")
for ax in axes:
    ax.set_xlabel("frequency f (cycles per image width)")
    ax.legend(fontsize=7)
plt.tight_layout()
plt.show()
rule_of_section_1 = {n: highest_surviving(freqs, P, torch.tensor(0.98**n, dtype=torch.float64)) for n in show_after[1:]}
print("section 1's rule (ᾱ = 0.98^n after n steps), signal beats noise up to f =",
      ", ".join(f"{f} ({64 / f:.1f} px) after {n}" if f else f"none after {n}" for n, f in rule_of_section_1.items()))
print(f"measured against predicted power of x_t: largest gap {z_max:.1f} standard errors "
      f"(of {len(spectrum_steps) * len(freqs)}); all within 4: {z_max < 4}")

# %% [markdown]
# The crossing frequency falls from 22 cycles per image width at $t = 50$ (waves of about
# 3 pixels still beat the noise) to 5 at $t = 300$ (about 13 pixels) and 2 at $t = 500$
# (32 pixels, half the image). The wing pattern, a few pixels across (read by eye from the
# figure of section 1), drowns long before the outline, which spans most of the image.
# Section 1's rule, with $\bar\alpha = 0.98^n$ after $n$ steps, tells the same story about its
# figure: after 10 steps waves down to about 6 pixels survive, after 50 only those of about
# 13 pixels and more, after 100 only the outline's 32 pixels. The measured spectra match the formula: the largest of the 160 gaps
# is 2.9 standard errors.
#
# The spectrum also explains why the best schedule depends on the image size: Chen (2023) and
# Hoogeboom et al. (2023) find that it shifts towards more noise as the resolution grows.
# Draw the same butterfly with four times as many pixels (each pixel a 2×2 block): its coarse
# waves carry four times the power (the cell below measures ratios close to 4), while the
# noise still has power $1-\bar\alpha_t$ per wave. So at the same $\bar\alpha_t$ the coarse
# waves stay above the noise longer (at $t = 300$ up to $f = 9$ instead of $5$), and a larger
# image needs more noise to hide them.

# %%
upsampled = torch.nn.functional.interpolate(x0_spectrum, scale_factor=2, mode="nearest")  # 128×128, 2×2 blocks
freqs_upsampled, P_upsampled = radial_power(upsampled)
ratio = P_upsampled[0, :4] / P[:4]  # the same frequencies f = 1 … 4 cycles per image width
print("power at 128×128 / power at 64×64, f = 1 … 4:", " ".join(f"{r:.2f}" for r in ratio))
a = diffusion.alpha_bar[299]  # paper t = 300, linear schedule
print(f"t = 300: the signal beats the noise up to f = {highest_surviving(freqs, P, a)} at 64×64, "
      f"up to f = {highest_surviving(freqs_upsampled, P_upsampled[0], a)} at 128×128")

# %% [markdown]
# ## 7. Why $T$ and $\beta_{\max}$ matter: the prior term $L_T$
#
# Sampling (notebook 02) starts from $x_T \sim \mathcal N(0, I)$. That is only right if the
# forward process really ends there, i.e. if $q(x_T \mid x_0) \approx \mathcal N(0, I)$ for
# every $x_0$. To measure "approximately" we need a distance between distributions.
#
# **The KL divergence.** The Kullback–Leibler divergence of $q$ from $p$ is the average,
# over samples of $q$, of the log-ratio $\log q(x) - \log p(x)$:
#
# $$
# D_{\mathrm{KL}}(q\,\|\,p) = \mathbb E_{x\sim q}\big[\log q(x) - \log p(x)\big].
# $$
#
# It is never negative and is zero only when $q = p$. For two Gaussians it has a closed
# form. Take one dimension, $q = \mathcal N(\mu, \sigma^2)$ and $p = \mathcal N(0, 1)$, so
# $\log q(x) = -\tfrac12\log(2\pi\sigma^2) - \frac{(x-\mu)^2}{2\sigma^2}$ and
# $\log p(x) = -\tfrac12\log(2\pi) - \frac{x^2}{2}$. Under $q$,
# $\mathbb E[(x-\mu)^2] = \sigma^2$ and $\mathbb E[x^2] = \sigma^2 + \mu^2$, hence
#
# $$
# D_{\mathrm{KL}}\!\left(\mathcal N(\mu, \sigma^2)\,\middle\|\,\mathcal N(0, 1)\right)
# = \mathbb E_q\!\left[-\tfrac12\log\sigma^2 - \frac{(x-\mu)^2}{2\sigma^2} + \frac{x^2}{2}\right]
# = \tfrac12\left(\sigma^2 + \mu^2 - 1 - \log\sigma^2\right).
# $$
#
# For independent dimensions the divergences add. A Monte Carlo check, averaging
# $\log q - \log p$ over a million samples of $q$:

# %%
generator = torch.Generator().manual_seed(11)
n_kl = 1_000_000
for mu, var in [(0.5, 0.3), (-1.2, 2.0)]:
    x = mu + math.sqrt(var) * torch.randn(n_kl, generator=generator, dtype=torch.float64)  # samples of q
    log_ratio = (-0.5 * math.log(2 * math.pi * var) - (x - mu) ** 2 / (2 * var)) - (-0.5 * math.log(2 * math.pi) - x**2 / 2)
    estimate, standard_error = log_ratio.mean().item(), log_ratio.std().item() / math.sqrt(n_kl)
    closed_form = 0.5 * (var + mu**2 - 1 - math.log(var))
    print(f"μ = {mu:+.1f}, σ² = {var:.1f}: Monte Carlo {estimate:.4f} ± {standard_error:.4f}, closed form {closed_form:.4f}, "
          f"within 4 standard errors: {abs(estimate - closed_form) < 4 * standard_error}")

# %% [markdown]
# **The prior term.** The variational bound on the likelihood (Ho et al. 2020, **Eq. 5**)
# measures the mismatch at the end of the chain with this divergence, in its first term, the
# **prior term**:
#
# $$
# L_T = D_{\mathrm{KL}}\!\left(q(x_T \mid x_0)\,\middle\|\,p(x_T)\right), \qquad p(x_T) = \mathcal N(0, I).
# $$
#
# It has no learnable parameters: it depends only on the schedule and the data. Per dimension, with
# $\mu = \sqrt{\bar\alpha_T}\,x_0$ and $\sigma^2 = 1-\bar\alpha_T$,
#
# $$
# L_T = \tfrac12\left(\bar\alpha_T\,(x_0^2 - 1) - \log(1-\bar\alpha_T)\right).
# $$
#
# **How large is it?** Average over the data and expand $-\log(1-\bar\alpha_T) = \bar\alpha_T + \tfrac12\bar\alpha_T^2 + \dots$:
#
# $$
# \mathbb E[L_T] = \tfrac12\left(\bar\alpha_T\,\mathbb E[x_0^2] - \bar\alpha_T + \bar\alpha_T + \tfrac12\bar\alpha_T^2 + \dots\right)
# \approx \tfrac12\,\bar\alpha_T\,\mathbb E[x_0^2]
# $$
#
# nats per dimension, with a relative error of about $\bar\alpha_T / (2\,\mathbb E[x_0^2])$. For
# "unit data", $\mathbb E[x_0^2] = 1$, the exact value is $-\tfrac12\log(1-\bar\alpha_T)$.
# Dividing by $\log 2$ gives bits per dimension, the unit in which likelihoods of image
# models are reported: on CIFAR-10 the whole bound comes to 3.70 bits/dim for Ho et al. 2020
# (their Table 1, the model trained on the bound itself; the $L_\text{simple}$ model this
# series rebuilds has 3.75) and 2.65 for Kingma et al. 2021.
#
# We compare Ho et al.'s schedule with shorter or gentler ones. The two "unrescaled"
# rows keep $\beta_1 = 10^{-4}$ and $\beta_T = 0.02$ while cutting $T$ — a common mistake
# when one wants a faster chain. For MNIST we also evaluate $L_T$ exactly on 1000 test
# digits with `ddpm_helpers.elbo.prior_kl`. MNIST pixels are mostly exactly $-1$ or $+1$,
# with some grey at the stroke edges, so $\mathbb E[x_0^2]$ is a little below 1, and by the
# approximation above MNIST's $L_T$ is smaller than unit data's by that factor.

# %%
def linear_betas(T, beta_max, beta_min=1e-4):
    """β_t linear from beta_min to beta_max in T steps, without the 1000/T rescaling."""
    return torch.linspace(beta_min, beta_max, T, dtype=torch.float64)


choices = [  # (schedule, T, β_max as a label, Diffusion)
    ("linear (Ho et al.)", 1000, "0.02", diffusion),
    ("linear", 1000, "0.01", Diffusion(linear_betas(1000, 0.01))),
    ("linear", 1000, "0.005", Diffusion(linear_betas(1000, 0.005))),
    ("linear, rescaled", 100, "0.2", Diffusion.from_schedule("linear", T=100)),
    ("linear, unrescaled", 100, "0.02", Diffusion(linear_betas(100, 0.02))),
    ("linear, unrescaled", 50, "0.02", Diffusion(linear_betas(50, 0.02))),
    ("cosine", 1000, "0.999", diffusions["cosine"]),
    ("cosine", 100, "0.999", Diffusion.from_schedule("cosine", T=100)),
    ("sigmoid", 1000, "0.999", diffusions["sigmoid"]),
    ("sigmoid", 100, "0.999", Diffusion.from_schedule("sigmoid", T=100)),
]
mnist_x0 = digits[:1000].double()
num_dims = mnist_x0[0].numel()  # 784
mean_square = (mnist_x0**2).mean()  # E[x0²] of MNIST
rows = [f"{'schedule':19s} {'T':>5s} {'β_max':>6s} {'ᾱ_T':>9s} {'unit nats/dim':>13s} {'unit bits/dim':>13s} "
        f"{'MNIST bits/dim':>14s} {'MNIST/approx':>12s}"]
approximation_holds = True
ratios = {}  # (schedule, T, β_max) → exact / approximate L_T on MNIST
for label, T_choice, beta_max, d in choices:
    alpha_bar_T = d.alpha_bar[-1]
    unit_nats = -0.5 * torch.log1p(-alpha_bar_T)  # L_T = −½ log(1 − ᾱ_T) per dim for E[x0²] = 1
    mnist_nats = prior_kl(d, mnist_x0).mean() / num_dims  # exact L_T on MNIST, nats per dimension
    ratio = mnist_nats / (0.5 * alpha_bar_T * mean_square)  # exact / (½ ᾱ_T E[x0²])
    ratios[(label, T_choice, beta_max)] = ratio
    if alpha_bar_T <= 0.1:  # small ᾱ_T: the neglected terms are a relative ≈ ᾱ_T / (2 E[x0²])
        approximation_holds &= bool(abs(ratio - 1) <= alpha_bar_T)
    rows.append(
        f"{label:19s} {T_choice:5d} {beta_max:>6s} {alpha_bar_T:9.2e} {unit_nats:13.2e} "
        f"{unit_nats / math.log(2):13.2e} {bits_per_dim(prior_kl(d, mnist_x0).mean(), num_dims):14.2e} {ratio:12.4f}"
    )
print("\n".join(rows))
print(f"MNIST: E[x0²] = {mean_square:.3f}; MNIST/approx = exact L_T / (½ ᾱ_T E[x0²])")
print(f"½ ᾱ_T E[x0²] within a relative ᾱ_T of the exact L_T wherever ᾱ_T ≤ 0.1: {approximation_holds}")
alpha_bar_T = choices[2][3].alpha_bar[-1]  # linear, T = 1000, β_max = 0.005
print(f"at ᾱ_T = {alpha_bar_T:.3f}: MNIST/approx = {ratios[('linear', 1000, '0.005')]:.4f}, "
      f"predicted 1 + ᾱ_T/(2 E[x0²]) = {1 + alpha_bar_T / (2 * mean_square):.4f}")
L_T_bits = {(label, T_choice, beta_max): bits_per_dim(prior_kl(d, mnist_x0).mean(), num_dims)
            for label, T_choice, beta_max, d in choices}
ho_bits = L_T_bits[("linear (Ho et al.)", 1000, "0.02")]
for key in [("linear", 1000, "0.01"), ("linear", 1000, "0.005"), ("linear, unrescaled", 100, "0.02")]:
    print(f"MNIST L_T of {key[0]}, T = {key[1]}, β_max = {key[2]}: {L_T_bits[key] / ho_bits:,.0f} × Ho et al.'s")

# %% [markdown]
# The table's MNIST column comes from the helper `prior_kl`. Our formula for $L_T$ must give
# the same number; a check on the bad choice, on the same 1000 digits:

# %%
bad = choices[4][3]  # linear, unrescaled, T = 100
alpha_bar_T = bad.alpha_bar[-1]
by_formula = 0.5 * (alpha_bar_T * (mnist_x0**2 - 1) - torch.log1p(-alpha_bar_T))  # ½(ᾱ_T (x0² − 1) − log(1 − ᾱ_T))
by_helper = prior_kl(bad, mnist_x0)  # nats per image
print(f"L_T by formula:  {by_formula.sum(dim=(1, 2, 3)).mean():.4f} nats per image")
print(f"L_T by prior_kl: {by_helper.mean():.4f} nats per image")
print("equal for every digit:", torch.allclose(by_formula.sum(dim=(1, 2, 3)), by_helper, rtol=1e-10, atol=0))

# %% [markdown]
# The last column divides the exact MNIST $L_T$ by $\tfrac12\bar\alpha_T\,\mathbb E[x_0^2]$,
# with $\mathbb E[x_0^2] = 0.927$: the ratio is 1.0000 wherever $\bar\alpha_T$ is tiny and
# 1.0443 at $\bar\alpha_T = 0.078$, close to the predicted $1 + \bar\alpha_T/(2\,\mathbb E[x_0^2]) = 1.0419$.
# Only the unrescaled short chains, whose $\bar\alpha_T$ is not small, depart from it.
# So MNIST's $L_T$ is 0.927 times that of unit data: $2.70 \cdot 10^{-5}$ against $2.91 \cdot 10^{-5}$ bits/dim
# for Ho et al.'s schedule.
#
# Ho et al.'s choice leaves $L_T \approx 3 \cdot 10^{-5}$ bits/dim — negligible (their §4
# quotes $L_T \approx 10^{-5}$ bits/dim on CIFAR-10, whose colour photos, mostly far from
# $\pm 1$, have a smaller $\mathbb E[x_0^2]$). On MNIST, halving $\beta_{\max}$ raises it about 160-fold,
# halving it twice about 2000-fold; shortening the chain to $T = 100$ without rescaling
# raises it about 11 400-fold, to a third of a bit per dimension. There $\bar\alpha_T \approx 0.36$,
# and **the digit is still there at $t = T$**.
# A model trained on that chain never sees pure noise during training, but sampling hands
# it pure noise at its first step — the train/test mismatch Lin et al. (2024) found in
# widely used text-to-image schedules. Let us look at the marginal distribution of pixel
# values at $t = T$ for the good and the bad chain.

# %%
generator = torch.Generator().manual_seed(8)
x0_hist = digits[:1000]
for_hist = {
    "Ho et al.: linear, T = 1000": diffusion,
    "unrescaled linear, T = 100": bad,
}
x_T = {
    name: d.q_sample(x0_hist, torch.full((len(x0_hist),), d.T - 1), generator=generator) for name, d in for_hist.items()
}
pure_noise = torch.randn(x0_hist[:8].shape, generator=generator)

fig, axes = plt.subplots(1, 2, figsize=(10, 3.3))
grid = np.linspace(-4, 4, 200)
for ax, (name, x) in zip(axes, x_T.items()):
    ax.hist(x.flatten().numpy(), bins=np.linspace(-4, 4, 81), density=True, alpha=0.6, label="pixels of x_T")
    ax.plot(grid, np.exp(-(grid**2) / 2) / np.sqrt(2 * np.pi), "k--", label="N(0, 1)")
    ax.set_title(f"{name}: ᾱ_T = {for_hist[name].alpha_bar[-1]:.2g}", fontsize=10)
    ax.set_xlabel("pixel value of x_T")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
fig.suptitle("Pixel values at t = T over 1000 MNIST test digits")
plt.tight_layout()
plt.show()

fig, axes = plt.subplots(2, 1, figsize=(9, 3.4))
show_images(x_T["unrescaled linear, T = 100"][:8], ax=axes[0], title="x_T of the unrescaled T = 100 chain: the digits are still there")
show_images(pure_noise, ax=axes[1], title="x_T ~ N(0, I): what sampling starts from")
plt.tight_layout()
plt.show()
for name, x in x_T.items():
    print(f"{name:28s} pixels of x_T: mean {x.double().mean():+.3f}, std {x.double().std():.3f}   (N(0, 1): mean 0, std 1)")
print(f"a background pixel (x0 = −1) of the unrescaled T = 100 chain ends near −√ᾱ_T = {-bad.alpha_bar[-1].sqrt():.2f}")

# %% [markdown]
# With Ho et al.'s schedule the pixels of $x_T$ are indistinguishable from $\mathcal N(0, 1)$.
# With the bad chain they peak near $\sqrt{\bar\alpha_T}\cdot(-1) \approx -0.60$ (the black
# background), are skewed to the right by the white strokes and are too narrow: the
# digits are still visible at $t = T$, while sampling would start from the structureless
# noise of the bottom row.
#
# **Rules of thumb, and the trade-off between them.** Check $\bar\alpha_T$ (or $L_T$) whenever
# you change $T$ or the schedule. Keep each $\beta_t$ small (Ho et al. use at most $0.02$ for
# $T = 1000$), since the reverse steps are only close to Gaussian when the forward steps are
# small (Sohl-Dickstein et al. 2015; notebook 02 §1 measures it). For a *short* chain these two
# rules pull against each other: since $\bar\alpha_T \approx e^{-\sum_t\beta_t}$, reaching Ho et al.'s
# $\bar\alpha_T \approx 4\cdot10^{-5}$ needs a total $\sum_t\beta_t$ of about 10 whatever $T$ is, so
# fewer steps must be larger steps. Rescaling by
# $1000/T$, as `linear_beta_schedule` does, keeps $\bar\alpha_T \approx 0$ and makes the steps
# larger in proportion:

# %%
for T_short in [1000, 200, 100, 50]:
    d = Diffusion.from_schedule("linear", T=T_short)
    print(f"rescaled linear, T = {T_short:4d}: β_T = {d.betas[-1]:.3f}, mean β = {d.betas.mean():.4f}, "
          f"Σβ = {d.betas.sum():.2f}, ᾱ_T = {d.alpha_bar[-1]:.1e}")
d50 = Diffusion.from_schedule("linear", T=50)
for step in [13, 20, 25, 50]:  # the paper's t; 0-based t = step − 1
    print(f"rescaled linear, T = 50, t = {step:2d}: β_t = {d50.betas[step - 1]:.3f}, "
          f"the step starts from ᾱ_(t−1) = {d50.alpha_bar_prev[step - 1]:.2g}")
for name in ["cosine", "sigmoid"]:
    d = diffusions[name]
    large = d.betas > 0.1
    print(f"{name}, T = 1000: β_t > 0.1 in the last {int(large.sum())} steps, where ᾱ_t ≤ {d.alpha_bar[large].max():.4f}")

# %% [markdown]
# What matters is where the large steps fall. A large $\beta_t$ costs nothing where $x_{t-1}$ is
# already pure noise: there $q(x_{t-1})$ is close to $\mathcal N(0, I)$ and the reverse step is
# close to Gaussian whatever $\beta_t$ is. So the last step of the $T = 50$ chain, with
# $\beta_T = 0.4$, twenty times Ho et al.'s largest step, is harmless ($\bar\alpha_{T-1} = 1.3\cdot10^{-5}$).
# The steps that hurt are the middle ones: $\beta_t$ is about 0.1 at $t = 13$, where
# $\bar\alpha_{t-1} = 0.56$, and about 0.2 at $t = 25$, where $\bar\alpha_{t-1} = 0.086$ and $x_t$ still
# carries structure. Those reverse steps are far from Gaussian, and a model with Gaussian
# reverse steps pays for it (notebook 02 §11 shows the error with a perfect noise
# predictor; notebook 03 §6 trains with $T = 50$). The prior term is fine, yet short chains are
# a compromise, not a free speed-up; samplers that skip steps of a long chain (DDIM, notebook 04)
# are the usual way out. The cosine and sigmoid schedules raise $\beta_t$ above 0.1 only in
# their last 10–20 steps, where $x_t$ is already essentially pure noise ($\bar\alpha_t < 0.003$),
# so their large final steps cost nothing.

# %% [markdown]
# ## 8. Exercises
#
# Each exercise has a cell for your answer (it starts as `None`, "not attempted") and a
# cell that checks it. Worked solutions are in the **Solutions** section at the end of the
# notebook — try first!
#
# **Exercise 1 — `q_sample` from the table.** Using only the table `alpha_bar` built in
# section 3 (0-based: `alpha_bar[t]` is $\bar\alpha_{t+1}$), write `my_q_sample(x0, t, eps)`
# for a batch `x0` of shape `(B, C, H, W)`, a LongTensor `t` of shape `(B,)` and noise `eps`
# shaped like `x0`. For each example's own 0-based `t` it must return the paper's
# $x_{t+1} = \sqrt{\bar\alpha_{t+1}}\,x_0 + \sqrt{1-\bar\alpha_{t+1}}\,\varepsilon$ (Eq. 4).
# *Hint:* index, then reshape to `(B, 1, 1, 1)`.

# %%
def my_q_sample(x0, t, eps):
    """Your answer to exercise 1: x_t from Eq. 4 for a batch with per-example 0-based t."""
    return None  # TODO: replace with your implementation


# %%
def check_exercise_1(q_sample_fn):
    """Compare q_sample_fn with the helper's Diffusion.q_sample on random inputs."""
    generator = torch.Generator().manual_seed(10)
    x0 = torch.randn(4, 1, 8, 8, generator=generator)
    eps = torch.randn(4, 1, 8, 8, generator=generator)
    t = torch.tensor([0, 9, 499, 999])
    answer = q_sample_fn(x0, t, eps)
    if answer is None:
        print("Exercise 1: not attempted yet — fill in my_q_sample above and run this cell again.")
        return
    expected = diffusion.q_sample(x0, t, eps=eps)
    assert answer.shape == expected.shape, (
        f"my_q_sample returned shape {tuple(answer.shape)}, expected {tuple(expected.shape)}: "
        "reshape the per-example coefficients to (B, 1, 1, 1) so they broadcast against x0."
    )
    assert torch.allclose(answer.to(expected.dtype), expected, atol=1e-5), (
        "my_q_sample gives the wrong values. Check: (1) alpha_bar[t] is already ᾱ for the 0-based t "
        "(no t − 1 in code); (2) the noise is scaled by the standard deviation √(1 − ᾱ_t), not the variance; "
        "(3) x0 is scaled by √ᾱ_t, not ᾱ_t."
    )
    print("Exercise 1: correct!")


check_exercise_1(my_q_sample)

# %% [markdown]
# **Exercise 2 — where signal and noise are equal.** For each schedule with $T = 1000$,
# find the first **paper** timestep $t$ at which $\mathrm{SNR}(t) = \bar\alpha_t / (1-\bar\alpha_t)$
# drops below 1 (equivalently $\bar\alpha_t < \tfrac12$). The sigmoid's SNR is exactly 1 at
# $t = T/2$ in exact arithmetic, so for it both $T/2$ and the step after count. Fill in a dict
# `{"linear": ..., "cosine": ..., "sigmoid": ...}` of integers. *Hint:* the tables are in
# `diffusions[name].alpha_bar` or `.snr`; remember paper $t$ = code index + 1.

# %%
equal_snr_step = None  # TODO: e.g. {"linear": ..., "cosine": ..., "sigmoid": ...}


# %%
def check_exercise_2(answer):
    """Check the first paper t with SNR(t) < 1 for each schedule."""
    if answer is None:
        print("Exercise 2: not attempted yet — fill in equal_snr_step above and run this cell again.")
        return
    assert set(answer) == set(schedules.SCHEDULES), f"expected the keys {schedules.SCHEDULES}, got {sorted(answer)}"
    for name, step in answer.items():  # step: the paper's t; the 0-based t is step − 1
        snr = diffusions[name].snr
        assert 1 <= step <= T, f"{name}: t = {step} is not a paper timestep in 1 … {T}"
        tol = 1e-9  # rounding: the sigmoid's SNR(T/2) is exactly 1, and 1.0000000000000004 in float64
        assert snr[step - 1] < 1 + tol and (step == 1 or snr[step - 2] >= 1 - tol), (
            f"{name}: at paper t = {step} the SNR is {snr[step - 1]:.4f} and at t − 1 it is "
            f"{snr[step - 2]:.4f}; find the first t where it drops below 1 (did you forget the +1 "
            "between the code index and the paper's t?)"
        )
    print("Exercise 2: correct!", answer)


check_exercise_2(equal_snr_step)

# %% [markdown]
# **Exercise 3 — repair the short chain.** Keep $T = 100$ and the linear schedule from
# $\beta_1 = 10^{-4}$ (without the automatic rescaling; use `linear_betas(100, beta_max)`
# from section 7). Choose a $\beta_{\max} \le 0.3$ for which the prior term for unit data,
# $L_T = -\tfrac12\log(1-\bar\alpha_T)$, is at most $10^{-4}$ nats per dimension. For a
# bonus, find the smallest such $\beta_{\max}$ to two decimals and compare it with the
# rescaled schedule's $\beta_T = 0.02 \cdot 1000/100 = 0.2$ (which also raises $\beta_1$ to $10^{-3}$). *Hint:* $\log\bar\alpha_T = \sum_t \log(1-\beta_t)$.

# %%
short_chain_beta_max = None  # TODO: a float in (0, 0.3]


# %%
def check_exercise_3(beta_max):
    """Check that linear_betas(100, beta_max) ends close enough to N(0, I)."""
    if beta_max is None:
        print("Exercise 3: not attempted yet — fill in short_chain_beta_max above and run this cell again.")
        return
    assert 1e-4 < beta_max <= 0.3, (
        f"β_max = {beta_max} is outside (1e-4, 0.3]; large steps make the reverse steps far from Gaussian"
    )
    alpha_bar_T = torch.prod(1 - linear_betas(100, beta_max))  # ᾱ_T = ∏ (1 − β_t)
    L_T = -0.5 * torch.log1p(-alpha_bar_T)  # nats per dimension for unit data
    assert L_T <= 1e-4, (
        f"with β_max = {beta_max}: ᾱ_T = {alpha_bar_T:.2e} and L_T = {L_T:.2e} nats/dim > 1e-4; "
        "increase β_max (you need ᾱ_T ≤ 2e-4)"
    )
    print(f"Exercise 3: correct! β_max = {beta_max}: ᾱ_T = {alpha_bar_T:.2e}, L_T = {L_T:.2e} nats/dim")


check_exercise_3(short_chain_beta_max)

# %% [markdown]
# ## Summary
#
# - One forward step shrinks and adds noise, $x_t = \sqrt{1-\beta_t}\,x_{t-1} + \sqrt{\beta_t}\,\varepsilon$
#   (Eq. 2); the shrinking keeps unit-variance data at unit variance.
# - Gaussian steps compose: $q(x_t \mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}\,x_0, (1-\bar\alpha_t) I)$
#   (Eq. 4), so any $x_t$ is one line of code — `Diffusion.q_sample`. We checked it against
#   100 000 runs of the chain.
# - Noise drowns an image's fine waves first: their power $\bar\alpha_t P(f)$ is small, and the
#   noise's power $1-\bar\alpha_t$ is the same at every frequency.
# - The schedule decides how fast structure disappears: linear (Ho et al.) is fast, cosine
#   (Nichol & Dhariwal Eq. 17) and sigmoid (Chen 2023) keep more steps at useful noise
#   levels; log-SNR is the clearest way to compare them.
# - $T$ and $\beta_{\max}$ must make $\bar\alpha_T \approx 0$, or sampling from pure noise
#   starts somewhere the model never saw; the prior term $L_T$ of Eq. 5, about
#   $\tfrac12\bar\alpha_T\,\mathbb E[x_0^2]$ nats per dimension, measures this.
#
# **Next — notebook 02, the reverse process.** We turn the film around: the posterior
# $q(x_{t-1} \mid x_t, x_0)$ is again Gaussian (Eqs. 6–7), which tells us what a reverse
# step $p_\theta(x_{t-1} \mid x_t)$ should look like and why predicting the noise
# $\varepsilon$ is enough to parameterize it.

# %%
# NBVAL_IGNORE_OUTPUT
print(f"profile {config.profile()}: notebook ran in {time.perf_counter() - notebook_start:.1f} s")

# %% [markdown]
# ## Solutions
#
# Scroll past this point only after trying the exercises. Each solution is checked by the
# same cell as your answer.
#
# **Exercise 1.** Index the table with the per-example `t`, reshape so it broadcasts over
# the channel and pixel dimensions, and take square roots — $\sqrt{\bar\alpha_t}$ for the
# signal and $\sqrt{1-\bar\alpha_t}$ (a standard deviation) for the noise. This is what
# `extract` and `Diffusion.q_sample` do.

# %%
def my_q_sample_solution(x0, t, eps):
    """Eq. 4 with a per-example 0-based t: the paper's x_{t+1} = √ᾱ_{t+1} x0 + √(1 − ᾱ_{t+1}) ε (Ho et al. 2020)."""
    a = alpha_bar[t].to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))  # ᾱ_{t+1} (paper index) as (B, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * eps  # √ᾱ x0 + √(1 − ᾱ) ε


check_exercise_1(my_q_sample_solution)

# %% [markdown]
# **Exercise 2.** `snr < 1` is a boolean table; the index of its first `True` is the
# 0-based code index, and the paper's step is one more.

# %%
equal_snr_step_solution = {name: int((d.snr < 1).nonzero()[0]) + 1 for name, d in diffusions.items()}
check_exercise_2(equal_snr_step_solution)

# %% [markdown]
# The linear schedule reaches equal signal and noise about twice as early as the
# cosine schedule — the "destroys information too early" of Nichol & Dhariwal (2021).
#
# **Exercise 3.** $\bar\alpha_T$ decreases as $\beta_{\max}$ grows, so scan $\beta_{\max}$
# upwards in steps of 0.01 and stop at the first value that passes. Since
# $\log\bar\alpha_T = \sum_t\log(1-\beta_t) \approx -\sum_t\beta_t \approx -T\,\frac{\beta_1+\beta_{\max}}{2}$,
# and $L_T \le 10^{-4}$ needs $\bar\alpha_T \lesssim 2\cdot10^{-4}$, we need
# $50\,\beta_{\max} \gtrsim \log\big(1/(2\cdot 10^{-4})\big) = \log 5000 \approx 8.5$, i.e. $\beta_{\max} \approx 0.17$
# — the exact scan (which accounts for $\log(1-\beta) < -\beta$) lands close to that.

# %%
candidates = np.round(np.arange(0.01, 0.31, 0.01), 2)
short_chain_beta_max_solution = next(
    float(b) for b in candidates if -0.5 * torch.log1p(-torch.prod(1 - linear_betas(100, float(b)))) <= 1e-4
)
check_exercise_3(short_chain_beta_max_solution)
print(f"β from 1e-4 to 0.2 (the rescaled β_T, unrescaled β_1) gives ᾱ_T = {torch.prod(1 - linear_betas(100, 0.2)):.2e}; "
      f"the rescaled schedule (β from 1e-3 to 0.2, section 7's table) {Diffusion.from_schedule('linear', T=100).alpha_bar[-1]:.2e}")

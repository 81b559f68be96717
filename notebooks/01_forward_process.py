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
# - how the linear, cosine and sigmoid schedules differ ($\bar\alpha_t$, signal-to-noise ratio, what they do to a digit, a butterfly and a 2-D point cloud);
# - why $T$ and $\beta_{\max}$ must make $\bar\alpha_T \approx 0$, measured by the prior term $L_T$ of the training objective.
#
# **You should know** basic probability (Gaussian distributions, mean and variance of a
# sum of independent variables) and enough PyTorch to read tensor code. No neural network
# appears in this notebook.
#
# **Run time.** Everything here is small closed-form arithmetic, so the notebook runs on the
# CPU on every machine (a GPU would not make it faster) and does the same work in the
# `quick` and `full` profiles.
#
# | machine | `DDPM_PROFILE=quick` | `DDPM_PROFILE=full` |
# | --- | --- | --- |
# | CPU, 2 cores (measured: 6.4 s inside the kernel in the committed run, see the last cell, 13 s with the kernel's start; up to 70 s when the cores were shared with other jobs) | ≈ 15 s | ≈ 15 s |
# | Colab with a GPU runtime | the same: the GPU is not used | the same |
#
# **Papers.** Equation numbers refer to Ho, Jain & Abbeel (2020), *Denoising Diffusion
# Probabilistic Models* ([arXiv:2006.11239](https://arxiv.org/abs/2006.11239)) unless another
# paper is named. The full list is in
# [`papers/README.md`](https://github.com/ddpm-from-scratch/ddpm-from-scratch/blob/main/papers/README.md);
# every symbol is in [`papers/notation.md`](https://github.com/ddpm-from-scratch/ddpm-from-scratch/blob/main/papers/notation.md).

# %%
# The helper package: inside a clone of the repository, the clone's own ddpm_helpers (no network needed); elsewhere
# (e.g. Colab) installed from the repository. Address and version as in pyproject.toml (tests/test_links.py checks).
import os
import subprocess
import sys
from pathlib import Path

HELPERS_SOURCE = "git+https://github.com/ddpm-from-scratch/ddpm-from-scratch"  # [project.urls] Source
HELPERS_VERSION = "0.3.0"  # the ddpm_helpers.__version__ this notebook was written for
HELPERS_REF = "e18b76d6d8241f38de63148eaf0a11a229ec52d3"  # a commit that installs it

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
            private = "prompts disabled" in pip.stderr or "Repository not found" in pip.stderr
            cause = ("the repository is private or has moved" if private else "there is no network connection"
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

notebook_start = time.perf_counter()
config.seed_everything(0)
torch.set_num_threads(1)  # the tensors here are small: one CPU thread is enough, and it stays fast on a busy machine

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
show_after = [0, 10, 50, 100, 200, 500]
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
# 1. **Fine detail goes first, coarse shape last.** After 10 steps the butterfly's wing
#    pattern is already hard to see, but its silhouette (and the digit's stroke) survives
#    for about 50–100 steps.
# 2. **The end point forgets the start.** After 500 steps both panels are the same kind of
#    noise. That is what lets generation *start* from noise.
# 3. **The pixel values stay in the same range.** The shrinking step keeps the noise from
#    piling up; section 3.1 shows why exactly $\sqrt{1-\beta}$.
#
# *Image credits:* MNIST (LeCun, Cortes & Burges). Butterfly specimen images © The Trustees
# of the Natural History Museum, London, licensed under
# [CC BY 4.0](https://creativecommons.org/licenses/by/4.0/); source: "Representative images
# of Lepidoptera from the Natural History Museum", Zenodo,
# <https://zenodo.org/record/4307612>; background removed by the authors of
# github.com/JVP15/butterfly-gan, padded to a square and resized by this project. (Without
# the offline folder, `butterfly_images` downloads these same 128 photos from their pinned
# public source and checks every file's SHA-256.)

# %% [markdown]
# ## 2. Notation
#
# | symbol | meaning | in code |
# | --- | --- | --- |
# | $x_0$ | a data point (an image scaled to $[-1, 1]$, Ho et al. §3.3) | `x0` |
# | $x_1, \dots, x_T$ | progressively noisier versions of $x_0$, same shape | `xt` |
# | $T$ | number of noising steps (Ho et al. use $T = 1000$) | `T` |
# | $\beta_t \in (0, 1)$ | variance of the noise added at step $t$: the **noise schedule** | `betas[t - 1]` |
# | $\alpha_t = 1 - \beta_t$ | fraction of the variance kept at step $t$ | `alphas[t - 1]` |
# | $\bar\alpha_t = \prod_{s=1}^{t} \alpha_s$ | fraction kept after $t$ steps | `alpha_bar[t - 1]` |
# | $\epsilon \sim \mathcal N(0, I)$ | standard Gaussian noise, same shape as $x_0$ | `eps` |
# | $\mathcal N(x; \mu, \sigma^2 I)$ | Gaussian density of $x$ with mean $\mu$ and variance $\sigma^2$ per dimension | — |
#
# **One timestep convention.** Equations use the paper's steps $t = 1, \dots, T$. Python
# indexes from 0, so in code the paper's step $t$ lives at index `t - 1`: `betas[0]` is
# $\beta_1$, `alpha_bar[t]` is $\bar\alpha_{t+1}$, and the helper call `q_sample(x0, t)`
# returns the paper's $x_{t+1}$. Every code `t` in this series is such a 0-based index.

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
# To *sample* from it we use the reparameterization $z = \mu + \sigma \epsilon$ of a
# Gaussian $\mathcal N(\mu, \sigma^2)$:
#
# $$
# x_t = \sqrt{\alpha_t}\, x_{t-1} + \sqrt{1-\alpha_t}\, \epsilon_t, \qquad \epsilon_t \sim \mathcal N(0, I),
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
for t in [1, 10, 100, 500, 1000]:  # paper steps; code index t - 1
    print(f"ᾱ_{t:<4d} = alpha_bar[{t - 1:3d}] = {alpha_bar[t - 1]:.6f}")

# %% [markdown]
# The helper package computes the same tables once, in float64, inside a small
# `Diffusion` object (one schedule, named tables, short methods named after what they
# compute). Let us check that it agrees with our hand-built tables, and read its source so
# that formula and code sit side by side.

# %%
diffusion = Diffusion.from_schedule("linear", T=1000)
print(diffusion)
print("betas match:    ", torch.allclose(diffusion.betas, betas, rtol=1e-12, atol=0))
print("alpha_bar match:", torch.allclose(diffusion.alpha_bar, alpha_bar, rtol=1e-12, atol=0))

# %%
# NBVAL_IGNORE_OUTPUT
# (prints the helper's current source, which its maintainers may edit)
print(inspect.getsource(schedules.linear_beta_schedule))

# %% [markdown]
# The helper rescales the end points by $1000/T$ so that other values of $T$ destroy the
# data about as much as $T = 1000$ does; section 7 shows what goes wrong without it.
#
# ### 3.1 Why shrink by $\sqrt{1-\beta_t}$? The variance is preserved
#
# Take one coordinate of $x_{t-1}$ with variance $v_{t-1}$. The noise $\epsilon_t$ is
# independent of $x_{t-1}$, and variances of independent terms add, so
#
# $$
# v_t = \operatorname{Var}\!\left(\sqrt{1-\beta_t}\, x_{t-1} + \sqrt{\beta_t}\,\epsilon_t\right)
#     = (1-\beta_t)\, v_{t-1} + \beta_t .
# $$
#
# If $v_{t-1} = 1$ then $v_t = (1-\beta_t) + \beta_t = 1$: **data with unit variance keeps
# unit variance at every step.** More generally $v_t - 1 = (1-\beta_t)(v_{t-1} - 1)$, so
# any starting variance is pulled towards 1 geometrically:
# $v_t = 1 + \bar\alpha_t\,(v_0 - 1)$. Without the shrinking factor ("just add noise")
# the variance would grow to $v_0 + \sum_s \beta_s$ and the end point would depend on $T$
# and on the schedule. (That *variance-exploding* alternative is a valid model too — see
# Karras et al. 2022 — but it is not the DDPM one.)
#
# Numerically, with 100 000 independent chains and data $x_0 = \pm 1$ (mean 0, variance 1)
# or $x_0 = \pm\tfrac12$ (variance $\tfrac14$), the same noise for all three rules. (Monte
# Carlo error on a variance near 1 is about $\pm 0.005$ here.)

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
for t in range(1, T + 1):  # paper steps 1 … T
    eps = torch.randn(n_chains, generator=generator)  # one ε_t shared by the three rules
    for name, x in chains.items():
        if name.startswith("noise only"):
            chains[name] = x + torch.sqrt(betas[t - 1]) * eps  # x_t = x_{t−1} + √β_t ε: variance explodes
        else:
            chains[name] = forward_step(x, betas[t - 1], eps)  # Eq. 2
        variance_paths[name].append(chains[name].double().var().item())

predicted = {  # exact variances: v_t = 1 + ᾱ_t (v_0 − 1) with shrinking, v_0 + Σ_{s≤t} β_s without
    "shrink + noise, Var(x0) = 1": torch.ones(T + 1, dtype=torch.float64),
    "shrink + noise, Var(x0) = 1/4": 1 - 0.75 * torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar]),
    "noise only,     Var(x0) = 1": 1 + torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(betas, 0)]),
}
print(f"{'rule':31s}" + "".join(f"{'t=' + str(t):>16s}" for t in [0, 10, 100, 500, 1000]))
for name in chains:
    cells = [f"{variance_paths[name][t]:.3f} ({predicted[name][t]:.3f})" for t in [0, 10, 100, 500, 1000]]
    print(f"{name:31s}" + "".join(f"{c:>16s}" for c in cells))
print("(Monte Carlo variance, exact value in brackets)")

# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
steps = np.arange(T + 1)
for (name, path), color in zip(variance_paths.items(), ["C0", "C1", "C3"]):
    ax.plot(steps, path, color=color, label=f"{name} (Monte Carlo)")
    ax.plot(steps, predicted[name].numpy(), color="k", lw=0.8, ls="--")
ax.plot([], [], color="k", lw=0.8, ls="--", label="exact")
ax.set_xlabel("paper timestep t")
ax.set_ylabel("Var(x_t)")
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
# ## 4. Jumping to any $t$ in one step: $q(x_t \mid x_0)$
#
# Training (notebook 03) needs noisy versions $x_t$ at random $t$, millions of times.
# Running $t$ steps of the chain each time would be slow; fortunately a chain of Gaussian
# steps collapses into a single Gaussian (Ho et al. 2020, **Eq. 4**):
#
# $$
# q(x_t \mid x_0) = \mathcal N\!\left(x_t;\ \sqrt{\bar\alpha_t}\, x_0,\ (1-\bar\alpha_t)\, I\right),
# \qquad\text{i.e.}\qquad x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1-\bar\alpha_t}\;\epsilon,\quad \epsilon \sim \mathcal N(0, I).
# $$
#
# **Derivation.** We use one fact: if $a \sim \mathcal N(0, \sigma_a^2 I)$ and
# $b \sim \mathcal N(0, \sigma_b^2 I)$ are independent, then
# $a + b \sim \mathcal N(0, (\sigma_a^2 + \sigma_b^2) I)$ — variances of independent
# Gaussians add, and the sum is again Gaussian.
#
# *Two steps.* Write two steps with the reparameterization of Eq. 2, using independent
# $\epsilon_{t-1}, \epsilon_t \sim \mathcal N(0, I)$:
#
# $$
# \begin{aligned}
# x_t &= \sqrt{\alpha_t}\, x_{t-1} + \sqrt{1-\alpha_t}\,\epsilon_t \\
#     &= \sqrt{\alpha_t}\left(\sqrt{\alpha_{t-1}}\, x_{t-2} + \sqrt{1-\alpha_{t-1}}\,\epsilon_{t-1}\right) + \sqrt{1-\alpha_t}\,\epsilon_t \\
#     &= \sqrt{\alpha_t \alpha_{t-1}}\; x_{t-2} + \underbrace{\sqrt{\alpha_t (1-\alpha_{t-1})}\,\epsilon_{t-1} + \sqrt{1-\alpha_t}\,\epsilon_t}_{\text{two independent zero-mean Gaussians}} .
# \end{aligned}
# $$
#
# The two noise terms have variances $\alpha_t(1-\alpha_{t-1})$ and $1-\alpha_t$, so their
# sum has variance $\alpha_t - \alpha_t\alpha_{t-1} + 1 - \alpha_t = 1 - \alpha_t\alpha_{t-1}$:
#
# $$
# x_t = \sqrt{\alpha_t\alpha_{t-1}}\; x_{t-2} + \sqrt{1-\alpha_t\alpha_{t-1}}\;\bar\epsilon, \qquad \bar\epsilon \sim \mathcal N(0, I).
# $$
#
# Two steps behave like one step with $\alpha = \alpha_t\alpha_{t-1}$.
#
# *Induction.* Suppose $x_{t-1} = \sqrt{\bar\alpha_{t-1}}\, x_0 + \sqrt{1-\bar\alpha_{t-1}}\,\bar\epsilon$
# (true for $t - 1 = 1$, where $\bar\alpha_1 = \alpha_1$ and this is Eq. 2). One more step gives
#
# $$
# x_t = \sqrt{\alpha_t}\sqrt{\bar\alpha_{t-1}}\; x_0 +
#     \underbrace{\sqrt{\alpha_t(1-\bar\alpha_{t-1})}\;\bar\epsilon + \sqrt{1-\alpha_t}\;\epsilon_t}_{\text{variance } \alpha_t - \alpha_t\bar\alpha_{t-1} + 1 - \alpha_t \;=\; 1 - \bar\alpha_t}
#     = \sqrt{\bar\alpha_t}\; x_0 + \sqrt{1-\bar\alpha_t}\;\epsilon ,
# $$
#
# because $\alpha_t\bar\alpha_{t-1} = \bar\alpha_t$. That is Eq. 4 for every $t$. $\square$
#
# Mind the square roots once more: the **mean** is scaled by $\sqrt{\bar\alpha_t}$, the
# **variance** is $1-\bar\alpha_t$ and the **standard deviation** multiplying $\epsilon$ is
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
# `Diffusion.q_mean_variance`. Monte Carlo error is about $\pm 0.005$ here.

# %%
x0_pair = torch.tensor([1.0, -0.5], dtype=torch.float64)
check_at = [1, 10, 100, 250, 500, 1000]  # paper steps
generator = torch.Generator().manual_seed(2)
x = x0_pair.float().expand(n_chains, 2).clone()
empirical = {}
for t in range(1, T + 1):
    x = forward_step(x, betas[t - 1], torch.randn(x.shape, generator=generator))  # Eq. 2
    if t in check_at:
        empirical[t] = (x.double().mean(0), x.double().var(0))  # statistics in float64
helper_mean, helper_var = diffusion.q_mean_variance(
    x0_pair.expand(len(check_at), 2), torch.tensor(check_at) - 1  # 0-based index = paper t − 1
)
print("        x0 = 1                                | x0 = -0.5")
print("t       mean MC / Eq.4    var MC / Eq.4       | mean MC / Eq.4    var MC / Eq.4")
for row, t in enumerate(check_at):
    mc_mean, mc_var = empirical[t]
    cells = [
        f"{mc_mean[d]:+.3f} / {helper_mean[row, d]:+.3f}   {mc_var[d]:.3f} / {helper_var[row, 0]:.3f}" for d in range(2)
    ]
    print(f"{t:<7d} {cells[0]}      | {cells[1]}")

# %% [markdown]
# The chain and the closed form agree within about two Monte Carlo standard errors at every $t$ (about 0.003
# on a mean and 0.005 on a variance near 1, from 20,000 chains). Agreement of
# mean and variance would not be enough if the chain's $x_t$ were not Gaussian, so let us
# also compare the whole distribution at $t = 100$: the chain above against samples drawn
# in one step with `Diffusion.q_sample`.

# %%
t_hist = 100
generator = torch.Generator().manual_seed(3)
x = torch.ones(n_chains)  # x0 = 1
for t in range(1, t_hist + 1):
    x = forward_step(x, betas[t - 1], torch.randn(n_chains, generator=generator))
one_shot = diffusion.q_sample(
    torch.ones(n_chains, 1), torch.full((n_chains,), t_hist - 1), generator=generator
).squeeze(1)
mean, variance = q_mean_variance_inline(torch.tensor(1.0, dtype=torch.float64), t_hist - 1)
grid = torch.linspace(-1.5, 2.5, 400, dtype=torch.float64)
density = torch.exp(-((grid - mean) ** 2) / (2 * variance)) / torch.sqrt(2 * math.pi * variance)

fig, ax = plt.subplots(figsize=(7, 3.5))
bins = np.linspace(-1.5, 2.5, 81)
ax.hist(x.numpy(), bins=bins, density=True, alpha=0.5, label=f"{t_hist} steps of the chain (Eq. 2)")
ax.hist(one_shot.numpy(), bins=bins, density=True, histtype="step", lw=1.5, label="one step with q_sample (Eq. 4)")
ax.plot(grid.numpy(), density.numpy(), "k--", lw=1, label=f"N(√ᾱ_t·x0, 1−ᾱ_t) = N({mean:.3f}, {variance:.3f})")
ax.set_xlabel(f"x_t for x0 = 1, t = {t_hist}")
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
# same noise $\epsilon$. Here is its source, and the check on a batch of MNIST digits at
# several timesteps. All indexing by $t$ happens in one helper, `extract`, which picks
# `table[t]` for every example in the batch and reshapes it to `(B, 1, 1, 1)` so that it
# broadcasts against images.

# %%
# NBVAL_IGNORE_OUTPUT
# (prints the helper's current source, which its maintainers may edit)
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
axes[1, 1].set_ylabel("log SNR (nats)")
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
linear_log_snr = diffusions["linear"].log_snr
below = int((linear_log_snr < -2.5).nonzero()[0]) + 1  # first paper t with log SNR < −2.5
gap = (diffusions["cosine"].alpha_bar - diffusions["sigmoid"].alpha_bar).abs().max()
print(f"linear: ᾱ_600 = {diffusions['linear'].alpha_bar[599]:.4f}; log SNR < −2.5 from paper t = {below} on: "
      f"{bool((linear_log_snr[below - 1:] < -2.5).all())}")
print(f"cosine vs sigmoid: max_t |ᾱ_t(cosine) − ᾱ_t(sigmoid)| = {gap:.4f}")

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
#   schedule at $-20$: the sigmoid's $\bar\alpha_T$ is about 120 times larger, though still negligible). Its
#   parameters are what make it useful: Chen (2023) moves start, end and $\tau$ to put
#   more or fewer steps at high noise, which matters most for large images.
# - In log-SNR the differences are clearest. The cosine schedule's log-SNR is close to a
#   straight line in the middle ($\log\mathrm{SNR} \approx -2\log\tan(\frac{\pi}{2}\cdot\frac{t/T+s}{1+s})$,
#   since $f(0) \approx 1$); the linear one crosses 0 — equal signal and noise — much
#   earlier and stays below $-2.5$ from $t = 504$ on, almost the whole second half.
# - All three start with a small $\beta_1$ (high SNR: $x_1$ is almost $x_0$) and end at
#   $\bar\alpha_T \approx 0$. The cosine and sigmoid schedules hit $\beta_T = 0.999$, the
#   clipping value, so their $\bar\alpha_T$ is essentially zero.
#
# ## 6. The forward process on real data
#
# Now the closed form applied to a digit, a butterfly and a 2-D point cloud, at the same
# timesteps under each schedule. Within a figure every row uses **the same noise** $\epsilon$,
# so the rows differ only by the schedule's coefficients $\sqrt{\bar\alpha_t}$ and
# $\sqrt{1-\bar\alpha_t}$. (Reusing one $\epsilon$ for all $t$ is fine for a picture of the
# *marginals* $q(x_t \mid x_0)$; a single run of the chain would use fresh noise at each step
# but has the same marginal at each $t$ — that is Eq. 4.) Displayed images are clipped to
# $[-1, 1]$.

# %%
show_t = [0, 50, 100, 200, 300, 500, 700, 1000]  # paper steps; 0 means x0 itself


def noised(d, x0, t, eps):
    """x_t for the paper step t (x0 itself for t = 0), via the helper's q_sample at index t − 1."""
    if t == 0:
        return x0
    return d.q_sample(x0, torch.full((x0.shape[0],), t - 1), eps=eps)


def show_forward_images(x0, title, seed):
    """Grid: one row per schedule, one column per timestep in show_t, one shared ε."""
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    fig, axes = plt.subplots(len(diffusions), len(show_t), figsize=(1.45 * len(show_t), 1.6 * len(diffusions)))
    for row, (name, d) in enumerate(diffusions.items()):
        for col, t in enumerate(show_t):
            show_image(axes[row, col], noised(d, x0, t, eps), f"t = {t}" if row == 0 else None)
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
# $x_0 \in \mathbb R^2$ with its own noise; colours mark where each point started, so you can
# see the two moons mix.

# %%
moons = sample_toy("two_moons", 2000, generator=torch.Generator().manual_seed(0))  # (2000, 2), standardized
eps_moons = torch.randn(moons.shape, generator=torch.Generator().manual_seed(7))
fig, axes = plt.subplots(len(diffusions), len(show_t), figsize=(1.45 * len(show_t), 1.6 * len(diffusions)), sharex=True, sharey=True)
for row, (name, d) in enumerate(diffusions.items()):
    for col, t in enumerate(show_t):
        ax = axes[row, col]
        points = noised(d, moons, t, eps_moons).numpy()
        ax.scatter(points[:, 0], points[:, 1], s=0.5, alpha=0.5, c=moons[:, 0].numpy(), cmap="coolwarm")
        ax.set_xlim(-3.5, 3.5)
        ax.set_ylim(-3.5, 3.5)
        ax.set_xticks([])
        ax.set_yticks([])
        if row == 0:
            ax.set_title(f"t = {t}", fontsize=9)
    axes[row, 0].set_ylabel(name)
fig.suptitle("q(x_t | x0) for a 2-D point cloud (two moons, standardized); axes span [−3.5, 3.5]")
plt.tight_layout()
plt.show()

# %% [markdown]
# The same story in three kinds of data. Under the linear schedule the moons have merged
# by $t \approx 300$ and the digit and the butterfly fade out between $t \approx 300$ and
# $500$; under the cosine and sigmoid schedules the same happens roughly 250–300 steps later. A
# schedule that keeps more steps at informative noise levels gives the network more useful
# training examples (Nichol & Dhariwal 2021, §3.2). In the last columns what you see is
# the shared noise $\epsilon$ itself — it is the same pattern in every row.
#
# How much noise hides an image also depends on its size: neighbouring pixels of a large
# image are highly redundant, so the same $\bar\alpha_t$ destroys less of its structure.
# Chen (2023) shows that the best schedule shifts towards more noise as the resolution
# grows.
#
# ## 7. Why $T$ and $\beta_{\max}$ matter: the prior term $L_T$
#
# Sampling (notebook 02) starts from $x_T \sim \mathcal N(0, I)$. That is only right if the
# forward process really ends there, i.e. if $q(x_T \mid x_0) \approx \mathcal N(0, I)$ for
# every $x_0$. The training objective measures the mismatch in its first term, the
# **prior term** (Ho et al. 2020, **Eq. 5**):
#
# $$
# L_T = D_{\mathrm{KL}}\!\left(q(x_T \mid x_0)\,\middle\|\,p(x_T)\right), \qquad p(x_T) = \mathcal N(0, I).
# $$
#
# It has no learnable parameters — it depends only on the schedule — and the KL divergence
# between two Gaussians has a closed form. Per dimension, with
# $\mu = \sqrt{\bar\alpha_T}\,x_0$ and $\sigma^2 = 1-\bar\alpha_T$:
#
# $$
# D_{\mathrm{KL}}\!\left(\mathcal N(\mu, \sigma^2)\,\middle\|\,\mathcal N(0, 1)\right) = \tfrac12\left(\sigma^2 + \mu^2 - 1 - \log\sigma^2\right)
# = \tfrac12\left(\bar\alpha_T\,(x_0^2 - 1) - \log(1-\bar\alpha_T)\right).
# $$
#
# For data with $\mathbb E[x_0^2] = 1$ ("unit data") the first part averages to zero and
# $L_T = -\tfrac12\log(1-\bar\alpha_T) \approx \tfrac12\bar\alpha_T$ nats per dimension;
# dividing by $\log 2$ gives bits per dimension, the unit in which likelihoods of image
# models are reported (good CIFAR-10 models reach about 3 bits/dim in total).
#
# We compare Ho et al.'s schedule with shorter or gentler ones. The two "unrescaled"
# rows keep $\beta_1 = 10^{-4}$ and $\beta_T = 0.02$ while cutting $T$ — a common mistake
# when one wants a faster chain. For MNIST we also evaluate $L_T$ exactly on 1000 test
# digits with `ddpm_helpers.elbo.prior_kl` (MNIST pixels are mostly exactly $-1$ or $+1$,
# with some grey at the stroke edges, so $\mathbb E[x_0^2] \approx 0.93$, not quite 1).

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
rows = [f"{'schedule':19s} {'T':>5s} {'β_max':>6s} {'ᾱ_T':>9s} {'L_T nats/dim':>13s} {'L_T bits/dim':>13s} {'MNIST bits/dim':>15s}"]
for label, T_choice, beta_max, d in choices:
    alpha_bar_T = d.alpha_bar[-1]
    unit_nats = -0.5 * torch.log1p(-alpha_bar_T)  # L_T = −½ log(1 − ᾱ_T) per dim for E[x0²] = 1
    mnist_bits = bits_per_dim(prior_kl(d, mnist_x0).mean(), num_dims)  # exact L_T on MNIST: nats / (D ln 2)
    rows.append(
        f"{label:19s} {T_choice:5d} {beta_max:>6s} {alpha_bar_T:9.2e} {unit_nats:13.2e} "
        f"{unit_nats / math.log(2):13.2e} {mnist_bits:15.2e}"
    )
print("\n".join(rows))
print(f"MNIST: E[x0²] = {(mnist_x0**2).mean():.3f}")
L_T_bits = {(label, T_choice, beta_max): bits_per_dim(prior_kl(d, mnist_x0).mean(), num_dims)
            for label, T_choice, beta_max, d in choices}
ho_bits = L_T_bits[("linear (Ho et al.)", 1000, "0.02")]
for key in [("linear", 1000, "0.01"), ("linear", 1000, "0.005"), ("linear, unrescaled", 100, "0.02")]:
    print(f"MNIST L_T of {key[0]}, T = {key[1]}, β_max = {key[2]}: {L_T_bits[key] / ho_bits:,.0f} × Ho et al.'s")

# %% [markdown]
# The KL formula above and the helper agree term by term; a quick check on the bad choice
# (our formula evaluated on the same 1000 digits):

# %%
bad = choices[4][3]  # linear, unrescaled, T = 100
alpha_bar_T = bad.alpha_bar[-1]
by_formula = 0.5 * (alpha_bar_T * (mnist_x0**2 - 1) - torch.log1p(-alpha_bar_T))  # ½(ᾱ_T (x0² − 1) − log(1 − ᾱ_T))
print(f"L_T by formula:  {by_formula.sum(dim=(1, 2, 3)).mean():.4f} nats per image")
print(f"L_T by prior_kl: {prior_kl(bad, mnist_x0).mean():.4f} nats per image")

# %% [markdown]
# Ho et al.'s choice leaves $L_T \approx 3 \cdot 10^{-5}$ bits/dim — negligible (their §4
# quotes $L_T \approx 10^{-5}$ bits/dim). On MNIST, halving $\beta_{\max}$ raises it about 160-fold,
# halving it twice about 2000-fold; shortening the chain to $T = 100$ without rescaling
# raises it 11 000-fold, to a third of a bit per dimension. There $\bar\alpha_T \approx 0.36$,
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

# %% [markdown]
# With Ho et al.'s schedule the pixels of $x_T$ are indistinguishable from $\mathcal N(0, 1)$.
# With the bad chain they peak near $\sqrt{\bar\alpha_T}\cdot(-1) \approx -0.6$ (the black
# background), are skewed to the right by the white strokes and are too narrow: the
# digits are still visible at $t = T$, while sampling would start from the structureless
# noise of the bottom row.
#
# **Rules of thumb, and the trade-off between them.** Check $\bar\alpha_T$ (or $L_T$) whenever
# you change $T$ or the schedule. Keep each $\beta_t$ small (Ho et al. use at most $0.02$ for
# $T = 1000$), since the reverse steps are only close to Gaussian when the forward steps are
# small (Sohl-Dickstein et al. 2015; notebook 02 §1 measures it). For a *short* chain these two
# rules pull against each other: $\bar\alpha_T \approx e^{-\sum_t\beta_t}$ needs a total
# $\sum_t\beta_t$ of about 10 whatever $T$ is, so fewer steps must be larger steps. Rescaling by
# $1000/T$, as `linear_beta_schedule` does, keeps $\bar\alpha_T \approx 0$ and makes the steps
# larger in proportion:

# %%
for T_short in [1000, 200, 100, 50]:
    d = Diffusion.from_schedule("linear", T=T_short)
    print(f"rescaled linear, T = {T_short:4d}: β_T = {d.betas[-1]:.3f}, mean β = {d.betas.mean():.4f}, "
          f"Σβ = {d.betas.sum():.2f}, ᾱ_T = {d.alpha_bar[-1]:.1e}")
for name in ["cosine", "sigmoid"]:
    d = diffusions[name]
    large = d.betas > 0.1
    print(f"{name}: β_t > 0.1 in the last {int(large.sum())} steps, where ᾱ_t ≤ {d.alpha_bar[large].max():.4f}")

# %% [markdown]
# At $T = 50$ the last step has $\beta_T = 0.4$, twenty times Ho et al.'s largest step: the
# prior term is fine, but the last reverse steps are far from Gaussian, and a model with
# Gaussian reverse steps pays for it (notebook 02 §11 shows the error with a perfect noise
# predictor; notebook 03 §6 trains with $T = 50$). Short chains are a compromise, not a
# free speed-up; samplers that skip steps of a long chain (DDIM, notebook 04) are the usual way
# out. The cosine and sigmoid schedules raise $\beta_t$ above 0.1 only in their last 10–20
# steps, where $x_t$ is already essentially pure noise ($\bar\alpha_t < 0.003$), so their
# large final steps cost nothing.

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
# shaped like `x0`. It must return $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon$
# (Eq. 4) for each example's own `t`. *Hint:* index, then reshape to `(B, 1, 1, 1)`.

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
# drops below 1 (equivalently $\bar\alpha_t < \tfrac12$). Fill in a dict
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
    for name, t in answer.items():
        snr = diffusions[name].snr
        assert 1 <= t <= T, f"{name}: t = {t} is not a paper timestep in 1 … {T}"
        assert snr[t - 1] < 1 and (t == 1 or snr[t - 2] >= 1), (
            f"{name}: at paper t = {t} the SNR is {snr[t - 1]:.4f} and at t − 1 it is "
            f"{snr[t - 2]:.4f}; find the first t where it drops below 1 (did you forget the +1 "
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
# rescaled value $0.02 \cdot 1000/100 = 0.2$. *Hint:* $\log\bar\alpha_T = \sum_t \log(1-\beta_t)$.

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
# - One forward step shrinks and adds noise, $x_t = \sqrt{1-\beta_t}\,x_{t-1} + \sqrt{\beta_t}\,\epsilon$
#   (Eq. 2); the shrinking keeps unit-variance data at unit variance.
# - Gaussian steps compose: $q(x_t \mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}\,x_0, (1-\bar\alpha_t) I)$
#   (Eq. 4), so any $x_t$ is one line of code — `Diffusion.q_sample`. We checked it against
#   100 000 runs of the chain.
# - The schedule decides how fast structure disappears: linear (Ho et al.) is fast, cosine
#   (Nichol & Dhariwal Eq. 17) and sigmoid (Chen 2023) keep more steps at useful noise
#   levels; log-SNR is the clearest way to compare them.
# - $T$ and $\beta_{\max}$ must make $\bar\alpha_T \approx 0$, or sampling from pure noise
#   starts somewhere the model never saw; the prior term $L_T$ of Eq. 5 measures this.
#
# **Next — notebook 02, the reverse process.** We turn the film around: the posterior
# $q(x_{t-1} \mid x_t, x_0)$ is again Gaussian (Eqs. 6–7), which tells us what a reverse
# step $p_\theta(x_{t-1} \mid x_t)$ should look like and why predicting the noise
# $\epsilon$ is enough to parameterize it.

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
print(f"rescaled choice 0.2 gives ᾱ_T = {torch.prod(1 - linear_betas(100, 0.2)):.2e}")

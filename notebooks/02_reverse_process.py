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
# # 02 — The reverse process and the training objective
#
# Notebook 01 built the **forward process**: a fixed Markov chain that adds a little Gaussian noise at each of
# $T$ steps until the data is indistinguishable from $\mathcal N(0, I)$. This notebook runs the chain
# **backwards**, which is how a diffusion model generates data, and derives the loss that teaches a network to do it.
#
# **You will learn**
# - when the reverse of a noising step is nearly Gaussian, and why conditioning on $x_0$ makes it exactly Gaussian:
#   the posterior of Ho et al. 2020, Eqs. 6–7;
# - the variational bound (Eq. 3) split into $L_T$, $L_{t-1}$, $L_0$ (Eq. 5), and how it turns into mean matching
#   (Eq. 8), noise prediction (Eqs. 9–12) and $L_\text{simple}$ (Eq. 14);
# - Tweedie's formula: the best noise predictor is the score of the noised data, and it gives the exact reverse mean;
# - the $x_0$- and $v$-parameterizations (Salimans & Ho 2022) and the weighting over $t$ each one implies;
# - Algorithms 1 and 2, written from the derivation and compared with `ddpm_helpers`;
# - what the sampler does with a perfect, and with a slightly wrong, noise predictor on data whose optimal denoiser
#   is known in closed form. Sections 10–12 are an optional lab.
#
# **You should know** notebook 01 (noise schedules, the closed form $q(x_t\mid x_0)$, the prior term $L_T$), and
# basic probability: Gaussians, Bayes' rule, the KL divergence. No neural network appears in this notebook.
#
# **Run time.** Nothing is trained: both profiles do the same work, on the CPU in float64.
#
# | machine | `DDPM_PROFILE=quick` | `DDPM_PROFILE=full` |
# | --- | --- | --- |
# | any (runs on the CPU, one thread) | the full time (same work) | 32 s (measured, last cell) |
#
# **Papers.** Equation numbers refer to Ho, Jain & Abbeel (2020), *Denoising Diffusion Probabilistic Models*
# ([arXiv:2006.11239](https://arxiv.org/abs/2006.11239)) unless another paper is named: Sohl-Dickstein et al. (2015),
# *Deep Unsupervised Learning using Nonequilibrium Thermodynamics* ([arXiv:1503.03585](https://arxiv.org/abs/1503.03585)),
# Salimans & Ho (2022), *Progressive Distillation for Fast Sampling of Diffusion Models*
# ([arXiv:2202.00512](https://arxiv.org/abs/2202.00512)), and Kingma et al. (2021), *Variational Diffusion Models*
# ([arXiv:2107.00630](https://arxiv.org/abs/2107.00630)). Also cited: Feller (1949), Efron (2011), *Tweedie's Formula
# and Selection Bias*, and Székely & Rizzo (2013), *Energy Statistics*. The full list is in
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

# %% [markdown]
# **Timestep convention.** The paper counts $t = 1,\dots,T$; code counts from 0. Code index `t` is the paper's step
# $t+1$: `diffusion.betas[t]` is $\beta_{t+1}$, `diffusion.alpha_bar[t]` is $\bar\alpha_{t+1}$ and
# `diffusion.alpha_bar_prev[t]` is $\bar\alpha_t$ with $\bar\alpha_0 = 1$. Sampling runs `t = T-1, …, 0`. The prose
# uses the paper's numbering; in code a 0-based step is called `t_code` or `t`, and comments always write the paper's
# indices: `betas[t]` is commented $\beta_t$.

# %%
import math
import time

import matplotlib.pyplot as plt
import torch

from ddpm_helpers import config
from ddpm_helpers.analytic import GaussianMixture, optimal_eps
from ddpm_helpers.diffusion import Diffusion, extract
from ddpm_helpers.elbo import discretized_gaussian_log_likelihood, elbo_terms, gaussian_log_likelihood, normal_kl
from ddpm_helpers.evaluation.metrics2d import energy_distance
from ddpm_helpers.losses import diffusion_loss, training_target
from ddpm_helpers.samplers import ddpm_sample

notebook_start = time.perf_counter()
config.seed_everything(0)
# Everything below is closed-form arithmetic on at most a few thousand points. We run it on the CPU in float64,
# so that the numerical checks agree to ~1e-12.
torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)  # small tensors: one thread is enough

diffusion = Diffusion.from_schedule("linear", T=1000)  # Ho et al. 2020, §4: β_1 = 1e-4 … β_T = 0.02, T = 1000
T = diffusion.T
print(diffusion)


def timesteps(t, batch_size):
    """The 0-based timestep ``t`` repeated ``batch_size`` times: the LongTensor (B,) that models receive."""
    return torch.full((batch_size,), t, dtype=torch.long)


# %% [markdown]
# ## 1. Intuition: running the noising backwards
#
# Each forward step (Ho et al. 2020, Eq. 2) shrinks the current point a little and adds a little noise:
#
# $$q(x_t\mid x_{t-1}) = \mathcal N\big(x_t;\ \sqrt{1-\beta_t}\,x_{t-1},\ \beta_t I\big),\qquad \alpha_t := 1-\beta_t .$$
# To *generate* data we would like to run this backwards: draw $x_T\sim\mathcal N(0, I)$, then repeatedly draw
# $x_{t-1}\sim q(x_{t-1}\mid x_t)$ until we reach $x_0$. Bayes' rule tells us what that reverse step is,
#
# $$q(x_{t-1}\mid x_t) = \frac{q(x_t\mid x_{t-1})\,q(x_{t-1})}{q(x_t)},$$
# and three observations shape the rest of the notebook:
#
# 1. **It is intractable.** $q(x_{t-1})$ is the data distribution blurred with noise, an average over all the data.
#    That is what a neural network will have to learn.
# 2. **For a small step it is almost Gaussian.** As a function of $x_{t-1}$, the likelihood is
#    $q(x_t\mid x_{t-1}) \propto \exp\big(-\|x_t-\sqrt{\alpha_t}x_{t-1}\|^2/2\beta_t\big)
#    = \exp\big(-\|x_{t-1}-\xi\|^2/(2\beta_t/\alpha_t)\big)$ with $\xi := x_t/\sqrt{\alpha_t}$: a narrow Gaussian bump
#    of width $\sqrt{\beta_t/\alpha_t}$ around $\xi$. Over such a narrow window the smooth log-density of the
#    **previous step's marginal** is close to its second-order Taylor polynomial at $\xi$ (one coordinate, for brevity):
#
#    $$\log q(x_{t-1}) \approx \text{const} + g\,(x_{t-1}-\xi) - \tfrac12\kappa\,(x_{t-1}-\xi)^2,\qquad
#    g := \frac{d\log q(x_{t-1})}{dx_{t-1}}\Big|_{\xi},\qquad \kappa := -\frac{d^2\log q(x_{t-1})}{dx_{t-1}^2}\Big|_{\xi}.$$
#    Where this holds over the whole window (higher derivatives small there), the step is a Gaussian times the
#    exponential of a quadratic: **a Gaussian**. The precisions add, so its variance is
#    $(\alpha_t/\beta_t+\kappa)^{-1} = \beta_t/(\alpha_t+\beta_t\kappa)$. Where $\kappa > 0$ we call $\ell^2 := 1/\kappa$
#    the **local variance** of $q(x_{t-1})$ (for a Gaussian, its variance), and the step's variance is **close to
#    $\beta_t$** only if also $\beta_t\ll\ell^2$. The mean needs no expansion:
#    differentiating $q(x_t) = \int\mathcal N(x_t; \sqrt{\alpha_t}x_{t-1}, \beta_t I)\,q(x_{t-1})\,dx_{t-1}$ under the
#    integral gives, with Bayes' rule,
#
#    $$\nabla\log q(x_t) = \int -\frac{x_t-\sqrt{\alpha_t}x_{t-1}}{\beta_t}\,\frac{\mathcal N(x_t;\sqrt{\alpha_t}x_{t-1},\beta_t I)\,q(x_{t-1})}{q(x_t)}\,dx_{t-1}
#    = \frac{\sqrt{\alpha_t}\,\mathbb E[x_{t-1}\mid x_t]-x_t}{\beta_t}\quad\text{for any }\beta_t.\ \text{So}$$
#
#    $$q(x_{t-1}\mid x_t)\approx\mathcal N\Big(x_{t-1};\ \tfrac{1}{\sqrt{\alpha_t}}\big(x_t+\beta_t\nabla\log q(x_t)\big),\ \beta_t I\Big),$$
#    where $\nabla\log q(x_t)$ is the score of the marginal of $x_t$, the noised data distribution at step $t$: the
#    mean is exact, the shape and the variance are approximations. The reverse of a small Gaussian step has the same
#    functional form as the forward step (Feller 1949; Sohl-Dickstein et al. 2015, §2.2). A large $T$ makes most steps
#    small, so Gaussian reverse steps fit most of the chain; the first few steps, though, are not small against
#    $\ell^2$, whatever $T$ (Section 11.1), and there the step's variance needs care. Where $\log q(x_{t-1})$ is convex
#    ($\kappa < 0$, between two modes) the precision $\alpha_t/\beta_t+\kappa$ can even be negative: no Gaussian fits,
#    and the step splits in two.
# 3. **Conditioning on $x_0$ makes it exact.** If we also know where the chain started, then
#    $q(x_{t-1}\mid x_t, x_0)\propto q(x_t\mid x_{t-1})\,q(x_{t-1}\mid x_0)$ is a product of two Gaussians in
#    $x_{t-1}$: exactly Gaussian for *any* $\beta_t$ (Section 2). We cannot sample with it ($x_0$ is what we are
#    looking for) but it gives the training targets.
#
# Observation 2 in pictures. A bimodal 1-D distribution stands in for $q(x_{t-1})$ (grey): modes at $\pm1$ with
# standard deviation 0.15, so near a mode $\ell^2 = 0.15^2 = 0.0225$. For a value of $x_t$ and a step size $\beta$ we
# compute the exact reverse step on a fine grid (prior × likelihood) and overlay the Gaussian with the same mean and
# variance (dashed) and the formula above (dotted; $q(x_t)$, the bimodal after one step, has a closed-form score). The
# total variation (TV) between the exact step and the matched Gaussian runs from 0 (Gaussian) to 1 (disjoint).

# %%
bimodal = GaussianMixture(weights=[0.5, 0.5], means=[[-1.0], [1.0]], variances=[0.15**2, 0.15**2])  # q(x_{t−1})
bimodal_grid = torch.linspace(-2.5, 2.5, 10001)  # values of x_{t−1}
bimodal_dx = float(bimodal_grid[1] - bimodal_grid[0])
bimodal_log_prior = bimodal.log_prob(bimodal_grid[:, None])  # log q(x_{t−1})


def reverse_step(x_t, beta):
    """The exact q(x_{t−1} | x_t) on the grid, one row per value of ``x_t``; its mean and variance; the Gaussian with
    the same mean and variance; the total variation between the two."""
    x_t = torch.as_tensor(x_t, dtype=bimodal_grid.dtype).reshape(-1, 1)
    log_lik = -0.5 * (x_t - math.sqrt(1 - beta) * bimodal_grid) ** 2 / beta  # log q(x_t | x_{t−1}) + const (Eq. 2)
    density = torch.softmax(log_lik + bimodal_log_prior, dim=1) / bimodal_dx  # ∝ likelihood × prior (Bayes), a density
    mean = (bimodal_grid * density).sum(1, keepdim=True) * bimodal_dx  # E[x_{t−1} | x_t]
    var = ((bimodal_grid - mean) ** 2 * density).sum(1, keepdim=True) * bimodal_dx  # Var[x_{t−1} | x_t]
    matched = torch.exp(-0.5 * (bimodal_grid - mean) ** 2 / var) / torch.sqrt(2 * math.pi * var)
    tv = 0.5 * (density - matched).abs().sum(1) * bimodal_dx  # total variation, in [0, 1]
    return density, mean.squeeze(1), var.squeeze(1), matched, tv


def formula_mean(x_t, beta):
    """The mean of the small-step formula, (x_t + β ∇log q(x_t))/√α; its variance is β."""
    x_t = torch.as_tensor(x_t, dtype=bimodal_grid.dtype).reshape(-1, 1)
    score = bimodal.noised(1 - beta).score(x_t)  # ∇log q(x_t): q(x_t) is the bimodal after one step, a mixture
    return ((x_t + beta * score) / math.sqrt(1 - beta)).squeeze(1)


def curvature(x, h=1e-4):
    """κ = −∂² log q(x_{t−1}) of the bimodal at x, by central differences (ℓ² = 1/κ where κ > 0)."""
    x = torch.as_tensor(x, dtype=bimodal_grid.dtype).reshape(-1, 1)
    return -(bimodal.log_prob(x + h) - 2 * bimodal.log_prob(x) + bimodal.log_prob(x - h)) / h**2


print(f"linear schedule, T = 1000: mean step beta = {diffusion.betas.mean():.4f}, largest beta_T = {diffusion.betas[-1]:.2f}")
for x in [0.4, 0.0]:
    kappa = float(curvature(x))
    print(f"at x_(t-1) = {x}: kappa = {kappa:+7.1f}, " + (f"local variance l^2 = 1/kappa = {1 / kappa:.4f}"
          if kappa > 0 else f"convex: a Gaussian step needs beta << 1/|kappa| = {-1 / kappa:.1e}"))

panels = [(0.4, 0.01), (0.0, 0.01), (0.0, 1e-4)]  # (x_t, β)
print(f"{'x_t':>5}{'beta':>8}{'beta*kappa':>12}{'exact mean':>12}{'formula mean':>14}{'exact var / beta':>18}"
      f"{'beta/(alpha+beta*kappa) / beta':>32}{'TV':>7}")
fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
for ax, (x_t, beta) in zip(axes, panels):
    density, mean, var, matched, tv = (v[0] for v in reverse_step(x_t, beta))
    kappa_c = float(curvature(x_t / math.sqrt(1 - beta)))  # κ at ξ = x_t/√α
    precision = (1 - beta) / beta + kappa_c  # α/β + κ(ξ)
    quadratic = f"{1 / precision / beta:32.3f}" if precision > 0 else f"{'none (convex)':>32}"
    f_mean = float(formula_mean(x_t, beta)[0])
    print(f"{x_t:5}{beta:8g}{beta * kappa_c:+12.2f}{mean:+12.4f}{f_mean:+14.4f}{var / beta:18.3f}{quadratic}{tv:7.3f}")
    window = (bimodal_grid - mean).abs() < 6 * var.sqrt()  # where the step has its mass
    g = bimodal_grid[window]
    prior_in_window = bimodal_log_prior.exp()[window]
    ax.fill_between(g, prior_in_window * float(density.max()) / float(prior_in_window.max()), color="0.85",
                    label=r"$q(x_{t-1})$ (rescaled in each panel)")
    ax.plot(g, density[window], "C0", lw=2, label=r"exact $q(x_{t-1}\mid x_t)$")
    ax.plot(g, matched[window], "C1--", lw=1.5, label="Gaussian, same mean and variance")
    ax.plot(g, torch.exp(-0.5 * (g - f_mean) ** 2 / beta) / math.sqrt(2 * math.pi * beta), "C3:", lw=1.5,
            label=r"formula: mean $(x_t+\beta\nabla\log q(x_t))/\sqrt{\alpha}$, variance $\beta$")
    ax.set_title(rf"$x_t = {x_t}$, $\beta = {beta:g}$: TV = {tv:.3f}")
    ax.set_xlabel(r"$x_{t-1}$")
axes[0].set_ylabel("density")
axes[0].legend(fontsize=7, loc="upper left")
fig.suptitle(r"The reverse step is Gaussian where $\log q(x_{t-1})$ is close to quadratic over the step; "
             r"its variance is $\beta$ only where $\beta\ll\ell^2$", y=1.02)
fig.tight_layout()
plt.show()

# %% [markdown]
# At $x_t = 0.4$ only the right mode contributes: $\log q(x_{t-1})$ is a parabola there with $\ell^2 = 0.0225$, and
# the step is Gaussian (TV 0.000). But $\beta = 0.01$ is not small against $\ell^2$ ($\beta\kappa = 0.44$): the exact
# variance is $\beta/(\alpha+\beta\kappa) = 0.697\,\beta$, well below the formula's $\beta$, while the formula's
# mean is exact. At $x_t = 0$, between the modes, $\log q$ is convex ($\kappa = -1931$) and the same step splits in two
# (TV 0.489). A step small against $1/|\kappa| = 5.2\cdot10^{-4}$, such as $\beta = 10^{-4}$, is Gaussian again
# (TV 0.004), but with variance $1.19\,\beta$: $\beta|\kappa| = 0.19$ is not negligible, and even the quadratic
# prediction ($1.24\,\beta$) is only approximate.

# %% [markdown]
# ## 2. The forward-process posterior $q(x_{t-1}\mid x_t, x_0)$ (Eqs. 6–7)
#
# ### 2.1 Completing the square
#
# By Bayes' rule, and because the forward chain is Markov ($q(x_t\mid x_{t-1}, x_0) = q(x_t\mid x_{t-1})$),
#
# $$q(x_{t-1}\mid x_t, x_0) = \frac{q(x_t\mid x_{t-1})\;q(x_{t-1}\mid x_0)}{q(x_t\mid x_0)} .$$
# Both factors in the numerator are Gaussians we know: $q(x_t\mid x_{t-1}) = \mathcal N(\sqrt{\alpha_t}\,x_{t-1}, \beta_t I)$
# (Eq. 2) and $q(x_{t-1}\mid x_0) = \mathcal N(\sqrt{\bar\alpha_{t-1}}\,x_0, (1-\bar\alpha_{t-1}) I)$ (Eq. 4). The
# denominator does not depend on $x_{t-1}$. All covariances are multiples of $I$, so every coordinate is
# independent and we can work with one coordinate. Collect powers of $x_{t-1}$ in the log-density:
#
# $$
# \begin{aligned}
# \log q(x_{t-1}\mid x_t,x_0)
# &= -\frac{(x_t-\sqrt{\alpha_t}\,x_{t-1})^2}{2\beta_t}-\frac{(x_{t-1}-\sqrt{\bar\alpha_{t-1}}\,x_0)^2}{2(1-\bar\alpha_{t-1})}+C(x_t,x_0)\\
# &= -\frac12\Big[\underbrace{\Big(\frac{\alpha_t}{\beta_t}+\frac{1}{1-\bar\alpha_{t-1}}\Big)}_{=:\,P}\,x_{t-1}^2
#    -2\underbrace{\Big(\frac{\sqrt{\alpha_t}}{\beta_t}\,x_t+\frac{\sqrt{\bar\alpha_{t-1}}}{1-\bar\alpha_{t-1}}\,x_0\Big)}_{=:\,h}\,x_{t-1}\Big]+C'(x_t,x_0)\\
# &= -\frac{P}{2}\Big(x_{t-1}-\frac{h}{P}\Big)^2+C''(x_t,x_0).
# \end{aligned}
# $$
# A log-density that is quadratic in $x_{t-1}$ is a Gaussian with variance $1/P$ and mean $h/P$ (Eq. 6):
# $q(x_{t-1}\mid x_t,x_0)=\mathcal N\big(x_{t-1};\ \tilde\mu_t(x_t,x_0),\ \tilde\beta_t I\big)$.
#
# *Variance.* Over a common denominator, $P = \frac{\alpha_t(1-\bar\alpha_{t-1})+\beta_t}{\beta_t(1-\bar\alpha_{t-1})}$, and
# the numerator simplifies with $\bar\alpha_t = \alpha_t\bar\alpha_{t-1}$ and $\beta_t = 1-\alpha_t$:
# $\alpha_t-\bar\alpha_t+1-\alpha_t = 1-\bar\alpha_t$. Hence
#
# $$\tilde\beta_t = \frac1P = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\,\beta_t \qquad\text{(Eq. 7)}$$
# *Mean.*
#
# $$\tilde\mu_t(x_t,x_0)=\frac hP=\tilde\beta_t\,h
# =\frac{(1-\bar\alpha_{t-1})\beta_t}{1-\bar\alpha_t}\Big(\frac{\sqrt{\alpha_t}}{\beta_t}x_t+\frac{\sqrt{\bar\alpha_{t-1}}}{1-\bar\alpha_{t-1}}x_0\Big)
# =\frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}\,x_0+\frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}\,x_t \qquad\text{(Eq. 7)}$$
#
# Two things to notice. The mean is a weighted combination of the clean $x_0$ and the noisy $x_t$. And at the first
# step ($t = 1$, $\bar\alpha_0 = 1$) we get $\tilde\beta_1 = 0$ and $\tilde\mu_1 = x_0$: knowing $x_0$ leaves no
# uncertainty about $x_0$.
#
# Here is Eq. 7 as code, compared with `Diffusion.q_posterior` on random inputs at random timesteps.

# %%
def posterior_mean_variance(diffusion, x0, xt, t):
    """Mean and variance of the posterior q(x_{t−1} | x_t, x0) (Eqs. 6-7) at the 0-based ``t`` (paper step t)."""
    beta = extract(diffusion.betas, t, xt)  # β_t
    alpha = extract(diffusion.alphas, t, xt)  # α_t = 1 − β_t
    alpha_bar = extract(diffusion.alpha_bar, t, xt)  # ᾱ_t
    alpha_bar_prev = extract(diffusion.alpha_bar_prev, t, xt)  # ᾱ_{t−1} (ᾱ_0 = 1 at the first step)
    beta_tilde = (1 - alpha_bar_prev) / (1 - alpha_bar) * beta  # β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t) β_t
    mean = (alpha_bar_prev.sqrt() * beta / (1 - alpha_bar) * x0  # √ᾱ_{t−1} β_t/(1 − ᾱ_t) x0
            + alpha.sqrt() * (1 - alpha_bar_prev) / (1 - alpha_bar) * xt)  # + √α_t (1 − ᾱ_{t−1})/(1 − ᾱ_t) x_t
    return mean, beta_tilde


gen = torch.Generator().manual_seed(1)
x0 = torch.randn(512, 2, generator=gen)
t = diffusion.sample_timesteps(512, generator=gen)
xt = diffusion.q_sample(x0, t, generator=gen)
mean, var = posterior_mean_variance(diffusion, x0, xt, t)
helper_mean, helper_var, _ = diffusion.q_posterior(x0, xt, t)
print("mean matches Diffusion.q_posterior:    ", torch.allclose(mean, helper_mean, rtol=0, atol=1e-12))
print("variance matches Diffusion.q_posterior:", torch.allclose(var, helper_var, rtol=1e-12, atol=0))

# %% [markdown]
# ### 2.2 Check 1: Bayes' rule on a grid
#
# The algebra above can hide a slip, so we check it against Bayes' rule evaluated by brute force: fix $x_0$, draw
# $x_t$, evaluate prior × likelihood on a fine grid of $x_{t-1}$ values, normalize, and compute the mean and variance
# numerically. Paper step $t = 100$ (code index 99).

# %%
t_code = 99  # paper step t = 100
beta, alpha = diffusion.betas[t_code], diffusion.alphas[t_code]
alpha_bar_prev = diffusion.alpha_bar_prev[t_code]
x0_value = torch.tensor([[0.7]])
xt_value = diffusion.q_sample(x0_value, timesteps(t_code, 1), generator=torch.Generator().manual_seed(2))

grid = torch.linspace(-1.0, 2.0, 30001)  # candidate values of x_{t−1}
log_likelihood = -0.5 * (xt_value.item() - alpha.sqrt() * grid) ** 2 / beta  # log q(x_t | x_{t−1}) + const, Eq. 2
log_prior = -0.5 * (grid - alpha_bar_prev.sqrt() * x0_value.item()) ** 2 / (1 - alpha_bar_prev)  # log q(x_{t−1} | x0), Eq. 4
weights = torch.softmax(log_likelihood + log_prior, dim=0)  # normalized posterior on the grid
grid_mean = (weights * grid).sum()
grid_var = (weights * (grid - grid_mean) ** 2).sum()
eq7_mean, eq7_var = posterior_mean_variance(diffusion, x0_value, xt_value, timesteps(t_code, 1))

print(f"x0 = {x0_value.item():.4f}, x_t = {xt_value.item():.4f}")
print(f"Bayes' rule on a grid: mean = {grid_mean:.6f}, variance = {grid_var:.6e}")
print(f"Eq. 7:                 mean = {eq7_mean.item():.6f}, variance = {eq7_var.item():.6e}")
print("agree to 1e-9:", bool(abs(grid_mean - eq7_mean) < 1e-9 and abs(grid_var - eq7_var) < 1e-9))

# %% [markdown]
# ### 2.3 Check 2: conditioning a joint Gaussian, for every $t$
#
# A second, independent route. Given $x_0$, the pair $(x_{t-1}, x_t)$ is jointly Gaussian: $x_{t-1} = \sqrt{\bar\alpha_{t-1}}x_0 + \sqrt{1-\bar\alpha_{t-1}}\,\varepsilon'$
# and $x_t = \sqrt{\alpha_t}\,x_{t-1} + \sqrt{\beta_t}\,\varepsilon''$, so
#
# $$\operatorname{Var}(x_{t-1}) = 1-\bar\alpha_{t-1},\qquad \operatorname{Cov}(x_{t-1},x_t) = \sqrt{\alpha_t}\,(1-\bar\alpha_{t-1}),\qquad \operatorname{Var}(x_t) = 1-\bar\alpha_t .$$
# The textbook conditioning formula for a bivariate Gaussian gives
# $\mathbb E[x_{t-1}\mid x_t] = \mathbb E[x_{t-1}] + \frac{\operatorname{Cov}}{\operatorname{Var}(x_t)}(x_t-\mathbb E[x_t])$
# and $\operatorname{Var}(x_{t-1}\mid x_t) = \operatorname{Var}(x_{t-1}) - \frac{\operatorname{Cov}^2}{\operatorname{Var}(x_t)}$.
# We evaluate it for all $T$ steps at once and compare with the helper's tables. `posterior_mean_coef_x0` multiplies
# $x_0$ and `posterior_mean_coef_xt` multiplies $x_t$ (Ho et al.'s code calls them `posterior_mean_coef1/2`).

# %%
ab, ab_prev, alphas = diffusion.alpha_bar, diffusion.alpha_bar_prev, diffusion.alphas
var_prev = 1 - ab_prev  # Var(x_{t−1} | x0)
cov = alphas.sqrt() * (1 - ab_prev)  # Cov(x_{t−1}, x_t | x0)
var_t = 1 - ab  # Var(x_t | x0)
cond_var = var_prev - cov**2 / var_t  # Var(x_{t−1} | x_t, x0)
coef_xt = cov / var_t  # E[x_{t−1} | x_t, x0] = √ᾱ_{t−1} x0 + coef_xt (x_t − √ᾱ_t x0)
coef_x0 = ab_prev.sqrt() - coef_xt * ab.sqrt()
print("beta_tilde   :", torch.allclose(cond_var, diffusion.posterior_variance, rtol=1e-9, atol=1e-15))
print("coef of x0   :", torch.allclose(coef_x0, diffusion.posterior_mean_coef_x0, rtol=1e-9, atol=1e-15))
print("coef of x_t  :", torch.allclose(coef_xt, diffusion.posterior_mean_coef_xt, rtol=1e-9, atol=1e-15))

ratio = diffusion.posterior_variance / diffusion.betas  # β̃_t / β_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t)
for paper_t in [1, 2, 10, 100, 1000]:
    print(f"paper t = {paper_t:4d}: beta_tilde / beta = {ratio[paper_t - 1]:.4f}")

paper_steps = torch.arange(1, T + 1)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
axes[0].plot(paper_steps, diffusion.betas, label=r"$\beta_t$ (forward step variance)")
axes[0].plot(paper_steps, diffusion.posterior_variance, "--", label=r"$\tilde\beta_t$ (posterior variance)")
axes[0].set_xscale("log")
axes[0].set_yscale("log")
axes[0].set_xlabel("paper step $t$ (log scale)")
axes[0].set_ylabel("variance")
axes[0].set_title(r"$\beta_t$ and $\tilde\beta_t$ (linear schedule)")
axes[0].legend()
axes[1].plot(paper_steps, ratio, "C2")
axes[1].set_xscale("log")
axes[1].set_xlabel("paper step $t$ (log scale)")
axes[1].set_ylabel(r"$\tilde\beta_t / \beta_t$")
axes[1].set_title(r"$\tilde\beta_t/\beta_t = (1-\bar\alpha_{t-1})/(1-\bar\alpha_t)$")
fig.tight_layout()
plt.show()

# %% [markdown]
# $\tilde\beta_t < \beta_t$ at every step, since $\tilde\beta_t/\beta_t = (1-\bar\alpha_{t-1})/(1-\bar\alpha_t) < 1$. The two
# are close except in the first few dozen steps, where $1-\bar\alpha_{t-1}$ and $1-\bar\alpha_t$ are both small and
# differ by a large factor: the steps that Section 1 found too large for a variance of $\beta_t$. Both reappear as the
# two natural choices of the reverse-process variance (Section 7.2); Section 11 compares them with the true one.

# %% [markdown]
# ## 3. The reverse model $p_\theta$ and the variational bound (Eqs. 1, 3, 5)
#
# Section 1 showed that small reverse steps are nearly Gaussian, so the model is a Markov chain of Gaussians running
# from noise to data (Ho et al. 2020, Eq. 1):
#
# $$p_\theta(x_{0:T}) = p(x_T)\prod_{t=1}^{T}p_\theta(x_{t-1}\mid x_t),\qquad p(x_T) = \mathcal N(x_T; 0, I),\qquad
# p_\theta(x_{t-1}\mid x_t) = \mathcal N\big(x_{t-1};\ \mu_\theta(x_t,t),\ \Sigma_\theta(x_t,t)\big).$$
# Ho et al. fix $\Sigma_\theta(x_t,t) = \sigma_t^2 I$ with untrained constants $\sigma_t^2$ (§3.2); only the mean
# $\mu_\theta$ is learned.
#
# We would like to maximize the likelihood $p_\theta(x_0) = \int p_\theta(x_{0:T})\,dx_{1:T}$, an intractable
# integral over all paths. The trick of Sohl-Dickstein et al. 2015 (§§2.3–2.4, App. B): use the forward process as an
# importance-sampling proposal and move the log inside the expectation with Jensen's inequality,
#
# $$-\log p_\theta(x_0) = -\log\mathbb E_{q(x_{1:T}\mid x_0)}\Big[\frac{p_\theta(x_{0:T})}{q(x_{1:T}\mid x_0)}\Big]
# \le \mathbb E_q\Big[-\log\frac{p_\theta(x_{0:T})}{q(x_{1:T}\mid x_0)}\Big]
# = \mathbb E_q\Big[-\log p(x_T) - \sum_{t\ge1}\log\frac{p_\theta(x_{t-1}\mid x_t)}{q(x_t\mid x_{t-1})}\Big] =: L \qquad\text{(Eq. 3)}$$
#
# ### 3.1 Rewriting the bound as a sum of KL divergences (Eq. 5)
#
# Ho et al. (Appendix A, Eqs. 17–22, following Sohl-Dickstein et al. 2015) rewrite Eq. 3 so that every term
# compares two Gaussians in closed form, with no simulated trajectory:
#
# *Step 1, split off $t=1$.* Step 2 will rewrite each forward factor $q(x_t\mid x_{t-1})$ with Bayes' rule as a
# posterior $q(x_{t-1}\mid x_t,x_0)$. For $t = 1$ that posterior would be $q(x_0\mid x_1, x_0)$, a point mass at $x_0$
# ($\tilde\beta_1 = 0$, Section 2.1), and its KL with the Gaussian $p_\theta(x_0\mid x_1)$ is infinite. So the
# $t = 1$ factor is kept aside; it becomes the decoder term $L_0$:
#
# $$L = \mathbb E_q\Big[-\log p(x_T) - \sum_{t>1}\log\frac{p_\theta(x_{t-1}\mid x_t)}{q(x_t\mid x_{t-1})} - \log\frac{p_\theta(x_0\mid x_1)}{q(x_1\mid x_0)}\Big]$$
# *Step 2, turn each forward step around with Bayes' rule* (Section 2): for $t > 1$,
# $q(x_t\mid x_{t-1}) = q(x_t\mid x_{t-1},x_0) = \dfrac{q(x_{t-1}\mid x_t,x_0)\,q(x_t\mid x_0)}{q(x_{t-1}\mid x_0)}$, so
#
# $$L = \mathbb E_q\Big[-\log p(x_T) - \sum_{t>1}\log\frac{p_\theta(x_{t-1}\mid x_t)}{q(x_{t-1}\mid x_t,x_0)} - \sum_{t>1}\log\frac{q(x_{t-1}\mid x_0)}{q(x_t\mid x_0)} - \log\frac{p_\theta(x_0\mid x_1)}{q(x_1\mid x_0)}\Big]$$
# *Step 3, the middle sum telescopes:* $\sum_{t=2}^{T}\log\frac{q(x_{t-1}\mid x_0)}{q(x_t\mid x_0)} = \log q(x_1\mid x_0) - \log q(x_T\mid x_0)$,
# and its $\log q(x_1\mid x_0)$ cancels the denominator of the last term:
#
# $$L = \mathbb E_q\Big[-\log\frac{p(x_T)}{q(x_T\mid x_0)} - \sum_{t>1}\log\frac{p_\theta(x_{t-1}\mid x_t)}{q(x_{t-1}\mid x_t,x_0)} - \log p_\theta(x_0\mid x_1)\Big]$$
# *Step 4, recognize KL divergences.* The expectation is over the whole forward trajectory $x_{1:T}\sim q(x_{1:T}\mid x_0)$.
# The $t$-th term depends only on $(x_{t-1}, x_t)$, so the other variables integrate out, and we may split the
# joint law of the pair as $q(x_t\mid x_0)\,q(x_{t-1}\mid x_t, x_0)$:
#
# $$\mathbb E_{q(x_{1:T}\mid x_0)}\Big[\log\frac{q(x_{t-1}\mid x_t,x_0)}{p_\theta(x_{t-1}\mid x_t)}\Big]
# = \mathbb E_{q(x_t\mid x_0)}\Big[\int q(x_{t-1}\mid x_t,x_0)\log\frac{q(x_{t-1}\mid x_t,x_0)}{p_\theta(x_{t-1}\mid x_t)}\,dx_{t-1}\Big]
# = \mathbb E_{q(x_t\mid x_0)}\Big[D_\mathrm{KL}\big(q(x_{t-1}\mid x_t,x_0)\,\|\,p_\theta(x_{t-1}\mid x_t)\big)\Big],$$
# and likewise the first term, which depends on $x_T$ only, is $D_\mathrm{KL}(q(x_T\mid x_0)\,\|\,p(x_T))$. So
#
# $$L = \mathbb E_q\Big[\underbrace{D_\mathrm{KL}\big(q(x_T\mid x_0)\,\|\,p(x_T)\big)}_{L_T} +
# \sum_{t>1}\underbrace{D_\mathrm{KL}\big(q(x_{t-1}\mid x_t,x_0)\,\|\,p_\theta(x_{t-1}\mid x_t)\big)}_{L_{t-1}}
# \ \underbrace{-\log p_\theta(x_0\mid x_1)}_{L_0}\Big] \qquad\text{(Eq. 5)}$$
#
# - $L_T$ has no parameters: notebook 01 showed it is tiny when $\bar\alpha_T\approx 0$.
# - $L_0$ is the *decoder* from $x_1$ to the data. For images Ho et al. use a discretized Gaussian (Eq. 13); for the
#   continuous toy data of this notebook we use the Gaussian density itself.
# - $L_{t-1}$ compares the model's reverse step with the posterior of Section 2: a KL between two Gaussians, in
#   closed form.
#
# In code the KL term of the 0-based step `t` (for `t = 1, …, T-1`) compares `p_mean_variance` at `t` with
# `q_posterior` at `t`, and the decoder is the step `t = 0`. The optional Section 12 checks that Eqs. 3 and 5 agree.

# %% [markdown]
# ## 4. From KL divergences to mean matching (Eq. 8)
#
# For two Gaussians with isotropic covariances in $D$ dimensions,
#
# $$D_\mathrm{KL}\big(\mathcal N(\tilde\mu,\tilde\beta_t I)\,\|\,\mathcal N(\mu_\theta,\sigma_t^2 I)\big)
# = \frac{\|\tilde\mu-\mu_\theta\|^2}{2\sigma_t^2} + \underbrace{\frac D2\Big(\frac{\tilde\beta_t}{\sigma_t^2}-1-\log\frac{\tilde\beta_t}{\sigma_t^2}\Big)}_{=:\,C\ \ge\ 0,\ \text{independent of }\theta} .$$
# With the variance fixed, the only learnable part of $L_{t-1}$ is a squared distance between means (Eq. 8):
#
# $$L_{t-1} = \mathbb E_q\Big[\frac{1}{2\sigma_t^2}\big\|\tilde\mu_t(x_t,x_0)-\mu_\theta(x_t,t)\big\|^2\Big] + C .$$
# $C$ vanishes when $\sigma_t^2 = \tilde\beta_t$ and is positive otherwise (since $u - 1 - \log u \ge 0$). The most
# direct parameterization would let a network predict $\tilde\mu_t$. Check of the identity with the helper's
# `normal_kl`, for $\sigma_t^2 = \beta_t$ and paper steps $t\ge2$ (where $\tilde\beta_t > 0$):

# %%
gen = torch.Generator().manual_seed(3)
B, D = 256, 2
t = torch.randint(1, T, (B,), generator=gen)  # 0-based t ≥ 1: paper t ≥ 2, where β̃_t > 0
mu_tilde = torch.randn(B, D, generator=gen)
mu_theta = mu_tilde + 0.1 * torch.randn(B, D, generator=gen)  # some imperfect model mean
beta_tilde = extract(diffusion.posterior_variance, t, mu_tilde)  # β̃_t, (B, 1)
sigma2 = extract(diffusion.betas, t, mu_tilde)  # σ_t² = β_t
kl = normal_kl(mu_tilde, beta_tilde.log(), mu_theta, sigma2.log()).sum(dim=1)  # KL per example, summed over dims
C = D / 2 * (beta_tilde / sigma2 - 1 - torch.log(beta_tilde / sigma2)).squeeze(1)  # constant of Eq. 8
mean_matching = ((mu_tilde - mu_theta) ** 2).sum(dim=1) / (2 * sigma2.squeeze(1))  # ‖μ̃ − μ_θ‖² / (2σ_t²)
print("KL = mean matching + C:", torch.allclose(kl, mean_matching + C, rtol=1e-10, atol=0))

# %% [markdown]
# ## 5. Predicting the noise: the $\varepsilon$-parameterization (Eqs. 9–12) and $L_\text{simple}$ (Eq. 14)
#
# Ho et al.'s key step: write $x_t$ through the noise that produced it, $x_t(x_0,\varepsilon) = \sqrt{\bar\alpha_t}\,x_0+\sqrt{1-\bar\alpha_t}\,\varepsilon$
# (Eq. 4), i.e. $x_0 = \frac{1}{\sqrt{\bar\alpha_t}}\big(x_t-\sqrt{1-\bar\alpha_t}\,\varepsilon\big)$, and put this
# $x_0$ into $\tilde\mu_t$ (Eq. 9). Using $\sqrt{\bar\alpha_{t-1}}/\sqrt{\bar\alpha_t} = 1/\sqrt{\alpha_t}$:
#
# $$
# \begin{aligned}
# \tilde\mu_t &= \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}\cdot\frac{x_t-\sqrt{1-\bar\alpha_t}\,\varepsilon}{\sqrt{\bar\alpha_t}}+\frac{\sqrt{\alpha_t}(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}\,x_t\\
# &= \frac{\beta_t+\alpha_t(1-\bar\alpha_{t-1})}{\sqrt{\alpha_t}\,(1-\bar\alpha_t)}\,x_t-\frac{\beta_t}{\sqrt{\alpha_t}\sqrt{1-\bar\alpha_t}}\,\varepsilon
# = \frac{1}{\sqrt{\alpha_t}}\Big(x_t-\frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\varepsilon\Big)
# \end{aligned}
# $$
# (the numerator $\beta_t+\alpha_t-\bar\alpha_t = 1-\bar\alpha_t$ once more). Put into Eq. 8, this identity gives
# the loss of Ho et al.'s Eq. 10,
# $L_{t-1}-C = \mathbb E_{x_0,\varepsilon}\Big[\frac{1}{2\sigma_t^2}\Big\|\frac{1}{\sqrt{\alpha_t}}\Big(x_t-\frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\varepsilon\Big)-\mu_\theta(x_t,t)\Big\|^2\Big]$
# with $x_t = x_t(x_0,\varepsilon)$. Given $x_t$, the only unknown in the target mean is the noise $\varepsilon$. So let the network predict the noise, $\varepsilon_\theta(x_t,t)$, and
# build the mean from it in the same form (Eq. 11):
#
# $$\mu_\theta(x_t,t) = \frac{1}{\sqrt{\alpha_t}}\Big(x_t-\frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\varepsilon_\theta(x_t,t)\Big).$$
# Then the means differ only through the noises, and Eq. 8 becomes (Eq. 12)
#
# $$L_{t-1}-C = \mathbb E_{x_0,\varepsilon}\Big[\underbrace{\frac{\beta_t^2}{2\sigma_t^2\,\alpha_t\,(1-\bar\alpha_t)}}_{=:\,\lambda_t}\big\|\varepsilon-\varepsilon_\theta\big(\sqrt{\bar\alpha_t}x_0+\sqrt{1-\bar\alpha_t}\,\varepsilon,\ t\big)\big\|^2\Big].$$
# Ho et al. then **drop the weight** $\lambda_t$ and sample $t$ uniformly (Eq. 14):
#
# $$L_\text{simple}(\theta) = \mathbb E_{t,x_0,\varepsilon}\Big[\big\|\varepsilon-\varepsilon_\theta\big(\sqrt{\bar\alpha_t}x_0+\sqrt{1-\bar\alpha_t}\,\varepsilon,\ t\big)\big\|^2\Big],\qquad t\sim\mathcal U\{1,\dots,T\}.$$
# Its $t>1$ terms are Eq. 12 without $\lambda_t$. Its $t=1$ term stands in for the decoder $L_0$ (Ho et al. §3.4): the
# decoder's probability of the pixel bin around $x_0$ (Eq. 13, bins of width $\Delta = 2/255$ in $D$ coordinates) is
# replaced by the density times the bin width, and then, with Eq. 11 at $t = 1$,
#
# $$
# \begin{aligned}
# L_0 = -\log\int_{\text{bin}(x_0)}\mathcal N\big(y;\mu_\theta(x_1,1),\sigma_1^2 I\big)\,dy
# &\approx -\log\Big(\mathcal N\big(x_0;\mu_\theta(x_1,1),\sigma_1^2 I\big)\,\Delta^D\Big)
# && \text{(density × bin width)}\\
# &= \frac{\|x_0-\mu_\theta(x_1,1)\|^2}{2\sigma_1^2}+\text{const}
# && \text{(log of a Gaussian density)}\\
# &= \frac{\beta_1^2}{2\sigma_1^2\alpha_1(1-\bar\alpha_1)}\big\|\varepsilon-\varepsilon_\theta(x_1,1)\big\|^2+\text{const}
# && \big(x_0-\mu_\theta = \tfrac{\beta_1}{\sqrt{\alpha_1}\sqrt{1-\bar\alpha_1}}(\varepsilon_\theta-\varepsilon)\big),
# \end{aligned}
# $$
# the last line because $x_0 = (x_1-\sqrt{1-\bar\alpha_1}\,\varepsilon)/\sqrt{\alpha_1}$ (Eq. 4, $\bar\alpha_1 = \alpha_1$)
# and $\beta_1 = 1-\bar\alpha_1$. That is $\lambda_1\|\varepsilon-\varepsilon_\theta\|^2$, Eq. 12's form at $t = 1$, whose
# weight $L_\text{simple}$ drops like the others. Checks: the $\tilde\mu_t$ identity inside Eq. 10 against
# `q_posterior`, Eq. 11 against `p_mean_variance`, Eq. 12 against `normal_kl`, the last line above, and the first line
# against the exact bin probability (`discretized_gaussian_log_likelihood`, with $\sigma_1^2 = \beta_1$, at
# $x_0 = 0$): at offsets 0, 1 and $2\sigma_1$ they differ by at most 0.073 nats, since $\sigma_1 = 0.01$ is about
# one bin wide.

# %%
def mean_from_eps(diffusion, xt, t, eps):
    """Eq. 11 of Ho et al. 2020 at the 0-based ``t`` (paper step t): μ_θ = (x_t − β_t/√(1 − ᾱ_t) · ε) / √α_t."""
    beta = extract(diffusion.betas, t, xt)  # β_t
    alpha = extract(diffusion.alphas, t, xt)  # α_t
    alpha_bar = extract(diffusion.alpha_bar, t, xt)  # ᾱ_t
    return (xt - beta / (1 - alpha_bar).sqrt() * eps) / alpha.sqrt()  # (x_t − β_t/√(1 − ᾱ_t) ε)/√α_t


gen = torch.Generator().manual_seed(4)
x0 = torch.randn(B, D, generator=gen)
eps = torch.randn(B, D, generator=gen)
t = torch.randint(1, T, (B,), generator=gen)  # paper t ≥ 2
xt = diffusion.q_sample(x0, t, eps)  # x_t(x0, ε), Eq. 4
eps_theta = eps + 0.1 * torch.randn(B, D, generator=gen)  # an imperfect noise prediction

mu_tilde, beta_tilde, log_beta_tilde = diffusion.q_posterior(x0, xt, t)
print("Eq. 10: mu_tilde(x_t, x0) = mean_from_eps(x_t, true eps):",
      torch.allclose(mu_tilde, mean_from_eps(diffusion, xt, t, eps), rtol=0, atol=1e-10))
helper = diffusion.p_mean_variance(eps_theta, xt, t, prediction="eps", variance="beta")
print("Eq. 11: mean_from_eps = p_mean_variance(...)['mean']:      ",
      torch.allclose(mean_from_eps(diffusion, xt, t, eps_theta), helper.mean, rtol=0, atol=1e-10))

sigma2 = extract(diffusion.betas, t, xt)  # σ_t² = β_t
kl = normal_kl(mu_tilde, log_beta_tilde, helper.mean, sigma2.log()).sum(dim=1)
C = D / 2 * (beta_tilde / sigma2 - 1 - torch.log(beta_tilde / sigma2)).squeeze(1)
lam = (extract(diffusion.betas, t, xt) ** 2  # λ_t = β_t² / (2σ_t² α_t (1 − ᾱ_t))
       / (2 * sigma2 * extract(diffusion.alphas, t, xt) * (1 - extract(diffusion.alpha_bar, t, xt)))).squeeze(1)
print("Eq. 12: KL - C = lambda_t * |eps - eps_theta|^2:            ",
      torch.allclose(kl - C, lam * ((eps - eps_theta) ** 2).sum(dim=1), rtol=1e-8, atol=1e-12))

t_first = timesteps(0, B)  # code t = 0: paper t = 1
x1 = diffusion.q_sample(x0, t_first, eps)  # x_1(x0, ε)
sigma2_1 = diffusion.betas[0]  # σ_1² = β_1
lam_1 = diffusion.betas[0] ** 2 / (2 * sigma2_1 * diffusion.alphas[0] * (1 - diffusion.alpha_bar[0]))  # λ_1
print("L_0: |x0 - mu_theta(x_1, 1)|^2 / (2 sigma_1^2) = lambda_1 |eps - eps_theta|^2:",
      torch.allclose(((x0 - mean_from_eps(diffusion, x1, t_first, eps_theta)) ** 2).sum(dim=1) / (2 * sigma2_1),
                     lam_1 * ((eps - eps_theta) ** 2).sum(dim=1), rtol=1e-8, atol=1e-12))
offsets = torch.tensor([0.0, 1.0, 2.0])  # x0 − μ_θ in units of σ_1, for x0 = 0 (a value inside [−1, 1])
pixel, means = torch.zeros(3), offsets * sigma2_1.sqrt()
bin_nll = -discretized_gaussian_log_likelihood(pixel, means, 0.5 * sigma2_1.log().expand(3))  # −log ∫_bin N (Eq. 13)
density_nll = -gaussian_log_likelihood(pixel, means, sigma2_1.log()) - math.log(2 / 255)  # −log(density × Δ)
for offset, exact, approx in zip(offsets, bin_nll, density_nll):
    print(f"x0 - mu = {offset:.0f} sigma_1: -log(bin probability) = {exact:.3f}, -log(density x bin width) = {approx:.3f}")
print(f"largest difference: {(bin_nll - density_nll).abs().max():.3f} nats")

# %% [markdown]
# ### 5.1 The weight $\lambda_t$ that $L_\text{simple}$ drops
#
# With $\sigma_t^2=\beta_t$ the weight is $\lambda_t = \frac{\beta_t}{2\alpha_t(1-\bar\alpha_t)}$; with
# $\sigma_t^2=\tilde\beta_t$ it simplifies to $\lambda_t = \frac{\beta_t}{2\alpha_t(1-\bar\alpha_{t-1})}$ (infinite at
# $t=1$, where $\tilde\beta_1 = 0$, so we plot it from $t = 2$). Only the *shape* over $t$ matters: a constant factor
# just rescales the learning rate.

# %%
betas, alpha_bar, alpha_bar_prev = diffusion.betas, diffusion.alpha_bar, diffusion.alpha_bar_prev
lambda_beta = betas**2 / (2 * betas * alphas * (1 - alpha_bar))  # λ_t with σ_t² = β_t
lambda_tilde = betas[1:] ** 2 / (2 * diffusion.posterior_variance[1:] * alphas[1:] * (1 - alpha_bar[1:]))  # σ_t² = β̃_t, t ≥ 2
print(f"sigma^2 = beta      : lambda_1 / lambda_T = {lambda_beta[0] / lambda_beta[-1]:.1f}")
print(f"sigma^2 = beta_tilde: lambda_2 / lambda_T = {lambda_tilde[0] / lambda_tilde[-1]:.1f}")
print(f"sigma^2 = beta      : lambda_1 / min_t lambda_t = {lambda_beta[0] / lambda_beta.min():.0f}, "
      f"the minimum at paper t = {int(lambda_beta.argmin()) + 1}")

fig, ax = plt.subplots(figsize=(6.5, 3.6))
ax.plot(paper_steps, lambda_beta / lambda_beta.mean(), label=r"$\lambda_t$ with $\sigma_t^2=\beta_t$ (mean 1)")
ax.plot(paper_steps[1:], lambda_tilde / lambda_tilde.mean(), "--",
        label=r"$\lambda_t$ with $\sigma_t^2=\tilde\beta_t$ ($t\geq 2$, mean 1)")
ax.axhline(1.0, color="k", lw=1, ls=":", label=r"$L_\mathrm{simple}$: the same weight for every $t$")
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("paper step $t$ (log scale)")
ax.set_ylabel(r"weight on $\|\varepsilon-\varepsilon_\theta\|^2$ (mean over $t$: 1)")
ax.set_title(r"Eq. 12 weight $\lambda_t=\beta_t^2/(2\sigma_t^2\alpha_t(1-\bar\alpha_t))$ vs $L_\mathrm{simple}$")
ax.legend()
plt.show()

# %% [markdown]
# The bound weights the first steps about 50 times more than the last ones, and about 100 times more than the
# middle (the minimum is at $t$ = 349). Those first steps ask the network to remove a tiny amount of noise, an easy task.
# $L_\text{simple}$ weights all steps equally: it *down-weights* the small-$t$ terms relative to the bound, so the
# network spends its capacity on the harder denoising at larger $t$. Ho et al. (§3.4, §4.2) found that this gives
# better samples, at the price of a worse likelihood.

# %% [markdown]
# ### 5.2 The best noise predictor: Tweedie's formula and the exact reverse mean
#
# Which $\varepsilon_\theta$ minimizes Eq. 12, or $L_\text{simple}$? For each $(x_t, t)$ the loss is a mean squared
# error, and a mean squared error is minimized by the conditional mean: $\varepsilon^*(x_t,t) = \mathbb E[\varepsilon\mid x_t]$.
# It has a second meaning. The marginal of $x_t$ is $q(x_t) = \int q(x_t\mid x_0)\,q(x_0)\,dx_0$ with
# $q(x_t\mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}x_0, (1-\bar\alpha_t)I)$ (Eq. 4). Write
# $\varepsilon(x_0, x_t) := (x_t-\sqrt{\bar\alpha_t}x_0)/\sqrt{1-\bar\alpha_t}$ for the noise that turns $x_0$ into $x_t$.
# Then, in three lines:
#
# $$
# \begin{aligned}
# \nabla_{x_t} q(x_t\mid x_0) &= -\frac{x_t-\sqrt{\bar\alpha_t}x_0}{1-\bar\alpha_t}\,q(x_t\mid x_0) = -\frac{\varepsilon(x_0,x_t)}{\sqrt{1-\bar\alpha_t}}\,q(x_t\mid x_0)
# && \text{(gradient of a Gaussian)}\\
# \nabla q(x_t) &= -\frac{1}{\sqrt{1-\bar\alpha_t}}\int \varepsilon(x_0,x_t)\,q(x_t\mid x_0)\,q(x_0)\,dx_0
# && \text{(differentiate under the integral)}\\
# \nabla\log q(x_t) = \frac{\nabla q(x_t)}{q(x_t)} &= -\frac{1}{\sqrt{1-\bar\alpha_t}}\int \varepsilon(x_0,x_t)\,q(x_0\mid x_t)\,dx_0
# = -\frac{\mathbb E[\varepsilon\mid x_t]}{\sqrt{1-\bar\alpha_t}}
# && \text{(Bayes: } q(x_t\mid x_0)q(x_0)/q(x_t) = q(x_0\mid x_t)\text{)}
# \end{aligned}
# $$
# So $\mathbb E[\varepsilon\mid x_t] = -\sqrt{1-\bar\alpha_t}\,\nabla\log q(x_t)$, or, solving Eq. 4 for $x_0$,
# $\mathbb E[x_0\mid x_t] = \big(x_t + (1-\bar\alpha_t)\nabla\log q(x_t)\big)/\sqrt{\bar\alpha_t}$: Tweedie's formula
# (Efron 2011). Nothing about the data was assumed. Predicting noise is estimating the score.
#
# **The exact reverse mean.** Given $x_t$, $\tilde\mu_t(x_t,x_0)$ is linear in $x_0$ (Eq. 7), so the average over
# $x_0$ passes inside it:
#
# $$\mathbb E[x_{t-1}\mid x_t] = \mathbb E\big[\tilde\mu_t(x_t,x_0)\,\big|\,x_t\big]
# = \frac{1}{\sqrt{\alpha_t}}\Big(x_t-\frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\mathbb E[\varepsilon\mid x_t]\Big)
# = \frac{1}{\sqrt{\alpha_t}}\big(x_t+\beta_t\nabla\log q(x_t)\big).$$
# The first step averages $\mathbb E[x_{t-1}\mid x_t,x_0] = \tilde\mu_t$ over $q(x_0\mid x_t)$, the second averages the
# identity inside Eq. 10, the third is Tweedie's formula (Section 1 reached the same mean in one step). So Eq. 11
# with $\varepsilon^*$ gives the **exact** mean of the true reverse step, for any step size: a sampler with the exact
# $\varepsilon^*$ can err only through the variance and the Gaussian shape of its steps (Sections 8, 9, 11, 12).
#
# **Check by Monte Carlo**, on a 2-D Gaussian mixture (defined here, reused in Section 9) at paper step $t = 100$.
# The left sides are posterior means, estimated without any formula. By Bayes' rule $\mathbb E[\varepsilon\mid x_t]$
# is $\int\varepsilon(x_0,x_t)\,q(x_t\mid x_0)\,q(x_0)\,dx_0$ divided by $\int q(x_t\mid x_0)\,q(x_0)\,dx_0$, so
# 400 000 draws $x_0^{(i)}$ from the data, weighted by $q(x_t\mid x_0^{(i)})$ normalized to sum 1, average the
# noises $\varepsilon(x_0^{(i)}, x_t)$ into an estimate (*self-normalized importance sampling*, with standard errors).
# Likewise 400 000 draws $x_{t-1}^{(i)}\sim q(x_{t-1})$, weighted by $q(x_t\mid x_{t-1}^{(i)})$ (Eq. 2), give
# $\mathbb E[x_{t-1}\mid x_t]$. The right sides: the autograd
# gradient of `mixture.noised(ᾱ_t).log_prob`, which `optimal_eps` must match, and Eq. 11 with `optimal_eps`.

# %%
mixture = GaussianMixture(weights=[0.5, 0.3, 0.2],
                          means=[[-1.0, -0.5], [1.0, -0.5], [0.0, 1.0]],
                          variances=[0.15**2, 0.10**2, 0.25**2])  # stds 0.15, 0.10, 0.25
t_code = 99  # paper step t = 100
ab = diffusion.alpha_bar[t_code]  # ᾱ_100
gen = torch.Generator().manual_seed(21)
x_t_points = diffusion.q_sample(mixture.sample(4, generator=gen), timesteps(t_code, 4), generator=gen)  # 4 x_t ~ q(x_t)
x0_draws = mixture.sample(400_000, generator=gen)  # x0^(i) ~ q(x0)
eps_i = (x_t_points[:, None, :] - ab.sqrt() * x0_draws[None]) / (1 - ab).sqrt()  # ε(x0^(i), x_t), (4, M, 2)
weights = torch.softmax(-0.5 * (eps_i**2).sum(dim=-1), dim=1)  # ∝ q(x_t | x0^(i)) = N(x_t; √ᾱ x0^(i), (1−ᾱ) I)
posterior_mean = (weights[..., None] * eps_i).sum(dim=1)  # E[ε | x_t] ≈ Σ_i w_i ε_i
standard_error = (weights[..., None] ** 2 * (eps_i - posterior_mean[:, None]) ** 2).sum(dim=1).sqrt()
x = x_t_points.clone().requires_grad_(True)
(score,) = torch.autograd.grad(mixture.noised(ab).log_prob(x).sum(), x)  # ∇ log q(x_t), by autograd
tweedie = -(1 - ab).sqrt() * score  # −√(1 − ᾱ_t) ∇ log q(x_t)
print("x_t                 E[eps | x_t] by Monte Carlo        -sqrt(1 - ab) grad log q(x_t)")
for point, mc, se, tw in zip(x_t_points, posterior_mean, standard_error, tweedie):
    print(f"({point[0]:+.3f}, {point[1]:+.3f})   ({mc[0]:+.4f}, {mc[1]:+.4f}) ± {se.max():.4f}"
          f"        ({tw[0]:+.4f}, {tw[1]:+.4f})")
z = ((posterior_mean - tweedie).abs() / standard_error).max()
print(f"largest difference: {z:.1f} standard errors")
eps_at_points = optimal_eps(mixture, diffusion)(x_t_points, timesteps(t_code, 4))
print("optimal_eps = -sqrt(1 - ab) grad log q:", torch.allclose(eps_at_points, tweedie, rtol=0, atol=1e-9))
assert z < 4, "Monte Carlo and Tweedie's formula disagree"

x_prev_draws = diffusion.q_sample(mixture.sample(400_000, generator=gen), timesteps(t_code - 1, 400_000),
                                  generator=gen)  # x_{t−1}^(i) ~ q(x_{t−1}), paper step 99
beta_100, alpha_100 = diffusion.betas[t_code], diffusion.alphas[t_code]
step_noise = (x_t_points[:, None, :] - alpha_100.sqrt() * x_prev_draws[None]) / beta_100.sqrt()  # (4, M, 2)
weights = torch.softmax(-0.5 * (step_noise**2).sum(dim=-1), dim=1)  # ∝ q(x_t | x_{t−1}^(i)), Eq. 2
reverse_mean = (weights[..., None] * x_prev_draws[None]).sum(dim=1)  # E[x_{t−1} | x_t] ≈ Σ_i w_i x_{t−1}^(i)
reverse_se = (weights[..., None] ** 2 * (x_prev_draws[None] - reverse_mean[:, None]) ** 2).sum(dim=1).sqrt()
eq11 = mean_from_eps(diffusion, x_t_points, timesteps(t_code, 4), eps_at_points)  # μ_θ with ε*, Eq. 11
z_mean = ((reverse_mean - eq11).abs() / reverse_se).max()
z_no_score = ((reverse_mean - x_t_points / alpha_100.sqrt()).abs() / reverse_se).max()
print(f"E[x_(t-1) | x_t] by Monte Carlo vs Eq. 11 with optimal_eps: largest difference {z_mean:.1f} standard errors"
      f" (x_t / sqrt(alpha_t), without the score term, would be {z_no_score:.0f} standard errors off)")
assert z_mean < 4, "Monte Carlo and the exact reverse mean disagree"

# %% [markdown]
# ## 6. Predicting $x_0$ or $v$ instead (Salimans & Ho 2022)
#
# The network may just as well output an estimate of $x_0$, or of the *velocity*
# $v := \sqrt{\bar\alpha_t}\,\varepsilon-\sqrt{1-\bar\alpha_t}\,x_0$ (Salimans & Ho 2022, §4 and App. D). Writing
# $\sqrt{\bar\alpha_t} = \cos\phi_t$ and $\sqrt{1-\bar\alpha_t} = \sin\phi_t$ shows why the three are
# interchangeable: $(x_t, v)$ is the pair $(x_0,\varepsilon)$ rotated by the angle $\phi_t$,
#
# $$\begin{pmatrix}x_t\\ v\end{pmatrix}=\begin{pmatrix}\cos\phi_t&\sin\phi_t\\-\sin\phi_t&\cos\phi_t\end{pmatrix}\begin{pmatrix}x_0\\ \varepsilon\end{pmatrix},
# \qquad\text{so}\qquad x_0 = \sqrt{\bar\alpha_t}\,x_t-\sqrt{1-\bar\alpha_t}\,v,\quad \varepsilon = \sqrt{1-\bar\alpha_t}\,x_t+\sqrt{\bar\alpha_t}\,v,$$
# and $v = \frac{d x_t}{d\phi_t}$ (differentiate $x_t = \cos\phi_t\,x_0 + \sin\phi_t\,\varepsilon$). A rotation keeps
# lengths, so $\|x_t\|^2+\|v\|^2 = \|x_0\|^2+\|\varepsilon\|^2$ for every example. From $\varepsilon$ alone, $\hat x_0 = \frac{1}{\sqrt{\bar\alpha_t}}(x_t-\sqrt{1-\bar\alpha_t}\,\hat\varepsilon)$
# (Ho et al. 2020, Eq. 15). Given $x_t$, any one of $\hat\varepsilon$, $\hat x_0$, $\hat v$ determines the other two,
# and the reverse mean is always $\mu_\theta = \tilde\mu_t(x_t, \hat x_0)$. Checks: the helper's $v$ against
# $(\varepsilon-\sqrt{1-\bar\alpha_t}\,x_t)/\sqrt{\bar\alpha_t}$ with $x_t$ from `q_sample`, and its conversions
# against the $x_0$ and $\varepsilon$ that made $x_t$. The rotation identities hold by construction, so they are
# printed as an illustration.

# %%
gen = torch.Generator().manual_seed(5)
x0 = torch.randn(B, D, generator=gen)
eps = torch.randn(B, D, generator=gen)
t = diffusion.sample_timesteps(B, generator=gen)
xt = diffusion.q_sample(x0, t, eps)
v = diffusion.v_from_x0_eps(x0, t, eps)  # the helper's v


def close(a, b):
    return torch.allclose(a, b, rtol=0, atol=1e-9)


cos_phi = extract(diffusion.sqrt_alpha_bar, t, x0)  # cos φ_t = √ᾱ_t
sin_phi = extract(diffusion.sqrt_one_minus_alpha_bar, t, x0)  # sin φ_t = √(1 − ᾱ_t)
v_from_xt = (eps - sin_phi * xt) / cos_phi  # v = (ε − √(1 − ᾱ_t) x_t)/√ᾱ_t, the rotation solved for v
phi = torch.atan2(sin_phi, cos_phi)  # φ_t
h = 1e-5
dxt_dphi = ((phi + h).cos() * x0 + (phi + h).sin() * eps
            - (phi - h).cos() * x0 - (phi - h).sin() * eps) / (2 * h)  # (x_t(φ + h) − x_t(φ − h)) / 2h
checks = {
    "v = (eps - sqrt(1 - ab) x_t) / sqrt(ab), x_t by q_sample": close(v, v_from_xt),
    "training_target(..., 'v') is that v                     ": close(training_target(diffusion, x0, t, eps, "v"),
                                                                     v_from_xt),
}
for name, ok in checks.items():
    print(f"check        {name}: {ok}")
assert all(checks.values()), "the helper's v disagrees with x_t and eps"
illustrations = {
    "x_t = cos(phi) x0 + sin(phi) eps                        ": close(xt, phi.cos() * x0 + phi.sin() * eps),
    "|x_t|^2 + |v|^2 = |x0|^2 + |eps|^2 (rotation)           ": close((xt**2 + v**2).sum(1), (x0**2 + eps**2).sum(1)),
    "dx_t/dphi = v (central differences, h = 1e-5)           ": torch.allclose(dxt_dphi, v, rtol=0, atol=1e-8),
}
for name, ok in illustrations.items():
    print(f"illustration {name}: {ok}")
print("eps from x0      :", close(diffusion.predict_eps_from_x0(xt, t, x0), eps))
print("x0 from eps      :", close(diffusion.predict_x0_from_eps(xt, t, eps), x0))
print("x0 from v        :", close(diffusion.predict_x0_from_v(xt, t, v), x0))
print("eps from v       :", close(diffusion.predict_eps_from_v(xt, t, v), eps))
print("targets eps, x0  :", all(close(training_target(diffusion, x0, t, eps, p), target)
                                for p, target in [("eps", eps), ("x0", x0)]))
for prediction, output in [("eps", eps), ("x0", x0), ("v", v)]:
    eps_hat, x0_hat = diffusion.model_predictions(output, xt, t, prediction=prediction)
    mean = diffusion.p_mean_variance(output, xt, t, prediction=prediction).mean
    print(f"model_predictions(prediction={prediction!r:5}) recovers (eps, x0) and the same mean:",
          close(eps_hat, eps) and close(x0_hat, x0) and close(mean, diffusion.q_posterior(x0, xt, t)[0]))

# %% [markdown]
# The choice still matters for training, because the *same* error is weighted differently. If $\hat\varepsilon$ is
# off by $\delta$, then $\hat x_0$ is off by $-\sqrt{(1-\bar\alpha_t)/\bar\alpha_t}\,\delta$ and $\hat v$ by
# $\delta/\sqrt{\bar\alpha_t}$. With $\mathrm{SNR}(t) = \bar\alpha_t/(1-\bar\alpha_t)$:
#
# $$\|x_0-\hat x_0\|^2 = \frac{\|\varepsilon-\hat\varepsilon\|^2}{\mathrm{SNR}(t)},\qquad
# \|v-\hat v\|^2 = \Big(1+\frac{1}{\mathrm{SNR}(t)}\Big)\|\varepsilon-\hat\varepsilon\|^2 .$$
# An MSE on $x_0$ or on $v$ is an MSE on $\varepsilon$ with a different weighting over $t$.
#
# The bound's own weighting is simplest in these terms (Kingma et al. 2021, §4). Take $\sigma_t^2 = \tilde\beta_t$, so
# $C = 0$ in Eq. 8, and $\mu_\theta = \tilde\mu_t(x_t,\hat x_0)$: the two means differ only through the $x_0$
# coefficient of Eq. 7, and with $\tilde\beta_t$ from Eq. 7,
#
# $$L_{t-1} = \mathbb E_q\Big[\frac{1}{2\tilde\beta_t}\,\frac{\bar\alpha_{t-1}\beta_t^2}{(1-\bar\alpha_t)^2}\,\|x_0-\hat x_0\|^2\Big]
# = \mathbb E_q\Big[\frac{\bar\alpha_{t-1}\beta_t}{2(1-\bar\alpha_{t-1})(1-\bar\alpha_t)}\,\|x_0-\hat x_0\|^2\Big]
# = \mathbb E_q\Big[\tfrac12\big(\mathrm{SNR}(t-1)-\mathrm{SNR}(t)\big)\,\|x_0-\hat x_0\|^2\Big],$$
# since $\mathrm{SNR}(t-1)-\mathrm{SNR}(t) = \frac{\bar\alpha_{t-1}(1-\bar\alpha_t)-\bar\alpha_t(1-\bar\alpha_{t-1})}{(1-\bar\alpha_{t-1})(1-\bar\alpha_t)}
# = \frac{\bar\alpha_{t-1}-\bar\alpha_t}{(1-\bar\alpha_{t-1})(1-\bar\alpha_t)}$ and $\bar\alpha_{t-1}-\bar\alpha_t = \bar\alpha_{t-1}\beta_t$.
# With $\sigma_t^2=\tilde\beta_t$, each step weighs the $x_0$ error by the signal-to-noise ratio it removes. In
# $\varepsilon$ terms (divide by $\mathrm{SNR}(t)$) the weight is $\lambda_t = \frac12\big(\mathrm{SNR}(t-1)/\mathrm{SNR}(t)-1\big)$,
# Section 5.1's $\lambda_t$ for $\sigma_t^2 = \tilde\beta_t$. The first two relations are illustrations (they restate
# the conversions checked above); the bound's form is checked against `normal_kl`:

# %%
delta = 0.1 * torch.randn(B, D, generator=gen)  # an error in the noise prediction
eps_err = (delta**2).sum(dim=1)
x0_err = ((diffusion.predict_x0_from_eps(xt, t, eps + delta) - x0) ** 2).sum(dim=1)
eps_hat = eps + delta
v_hat = (eps_hat - extract(diffusion.sqrt_one_minus_alpha_bar, t, xt) * xt) / extract(diffusion.sqrt_alpha_bar, t, xt)  # from ε = √(1−ᾱ) x_t + √ᾱ v
v_err = ((v_hat - v) ** 2).sum(dim=1)
snr = extract(diffusion.snr, t, xt).squeeze(1)
print("illustration |x0 error|^2 = |eps error|^2 / SNR      :",
      torch.allclose(x0_err, eps_err / snr, rtol=1e-8, atol=1e-12))
print("illustration |v error|^2  = |eps error|^2 (1 + 1/SNR):",
      torch.allclose(v_err, eps_err * (1 + 1 / snr), rtol=1e-8, atol=1e-12))

t = torch.randint(1, T, (B,), generator=gen)  # 0-based t ≥ 1: paper t ≥ 2, where β̃_t > 0
xt = diffusion.q_sample(x0, t, eps)
x0_hat = x0 + 0.1 * torch.randn(B, D, generator=gen)  # an imperfect x0 prediction
mu_tilde, _, log_beta_tilde = diffusion.q_posterior(x0, xt, t)  # μ̃_t(x_t, x0), log β̃_t
mu_theta = diffusion.q_posterior(x0_hat, xt, t)[0]  # μ_θ = μ̃_t(x_t, x̂0)
kl = normal_kl(mu_tilde, log_beta_tilde, mu_theta, log_beta_tilde).sum(dim=1)  # L_{t−1} with σ_t² = β̃_t
snr_now = extract(diffusion.snr, t, xt).squeeze(1)  # SNR(t)
snr_prev = extract(diffusion.alpha_bar_prev / (1 - diffusion.alpha_bar_prev), t, xt).squeeze(1)  # SNR(t−1)
print("check L_(t-1) = (SNR(t-1) - SNR(t)) |x0 - x0_hat|^2 / 2           :",
      torch.allclose(kl, 0.5 * (snr_prev - snr_now) * ((x0 - x0_hat) ** 2).sum(dim=1), rtol=1e-8, atol=1e-12))
snr_table = diffusion.snr  # SNR(t) for paper t = 1..T
print("check lambda_t (sigma^2 = beta_tilde) = (SNR(t-1)/SNR(t) - 1) / 2  :",
      torch.allclose(lambda_tilde, 0.5 * (snr_table[:-1] / snr_table[1:] - 1), rtol=1e-9, atol=0))

fig, ax = plt.subplots(figsize=(7.5, 4.0))
ax.plot(paper_steps, lambda_beta / lambda_beta.mean(), label=r"variational bound, $\sigma_t^2=\beta_t$ (Eq. 12, mean 1)")
ax.plot(paper_steps[1:], lambda_tilde / lambda_tilde.mean(), "-.",
        label=r"variational bound, $\sigma_t^2=\tilde\beta_t$: $\frac{1}{2}(\frac{\mathrm{SNR}(t-1)}{\mathrm{SNR}(t)}-1)$ (mean 1)")
ax.axhline(1.0, color="k", lw=1, ls=":", label=r"$L_\mathrm{simple}$ ($\varepsilon$-MSE)")
ax.plot(paper_steps, 1 / diffusion.snr, label=r"$x_0$-MSE: $1/\mathrm{SNR}$")
ax.plot(paper_steps, 1 + 1 / diffusion.snr, "--", label=r"$v$-MSE: $1+1/\mathrm{SNR}$")
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("paper step $t$ (log scale)")
ax.set_ylabel(r"implied weight on $\|\varepsilon-\hat\varepsilon\|^2$")
ax.set_title("Each parameterization is an ε-loss with its own weighting over t")
ax.legend(fontsize=7.5, loc="upper center")
plt.show()

# %% [markdown]
# ## 7. Algorithms 1 and 2, written from the derivation
#
# ### 7.1 Algorithm 1: training
#
# > **Algorithm 1** (Ho et al. 2020). Repeat: $x_0\sim q(x_0)$; $t\sim\mathcal U\{1,\dots,T\}$;
# > $\varepsilon\sim\mathcal N(0,I)$; take a gradient step on
# > $\nabla_\theta\big\|\varepsilon-\varepsilon_\theta(\sqrt{\bar\alpha_t}x_0+\sqrt{1-\bar\alpha_t}\,\varepsilon,t)\big\|^2$; until converged.
#
# One evaluation of the loss is four lines. To compare it with `ddpm_helpers.losses.diffusion_loss` we need *some*
# noise predictor. For standard normal data, $x_0\sim\mathcal N(0,I)$, the best one is easy to find: $x_0$ and
# $\varepsilon$ are independent standard normals and $x_t = \sqrt{\bar\alpha_t}x_0+\sqrt{1-\bar\alpha_t}\,\varepsilon$
# has unit variance, so $\mathbb E[\varepsilon\mid x_t] = \operatorname{Cov}(\varepsilon,x_t)\,x_t = \sqrt{1-\bar\alpha_t}\,x_t$.
# (Section 8 derives the general Gaussian case.)

# %%
def l_simple(eps_model, diffusion, x0, generator=None):
    """One Monte-Carlo estimate of L_simple (Ho et al. 2020, Eq. 14): the loss of Algorithm 1."""
    t = torch.randint(0, diffusion.T, (x0.shape[0],), generator=generator)  # t ~ U{1..T} (0-based: 0..T−1)
    eps = torch.randn(x0.shape, generator=generator)  # ε ~ N(0, I)
    xt = extract(diffusion.sqrt_alpha_bar, t, x0) * x0 + extract(diffusion.sqrt_one_minus_alpha_bar, t, x0) * eps  # Eq. 4
    return ((eps - eps_model(xt, t)) ** 2).mean()  # ‖ε − ε_θ(x_t, t)‖², averaged over batch and dimensions


def standard_normal_eps(xt, t):
    """E[ε | x_t] = √(1 − ᾱ_t) x_t, the optimal noise prediction when x0 ~ N(0, I)."""
    return extract(diffusion.sqrt_one_minus_alpha_bar, t, xt) * xt


x0 = torch.randn(4096, 2, generator=torch.Generator().manual_seed(6))
ours = l_simple(standard_normal_eps, diffusion, x0, generator=torch.Generator().manual_seed(7))
helper = diffusion_loss(standard_normal_eps, diffusion, x0, generator=torch.Generator().manual_seed(7))
print(f"L_simple, our Algorithm 1: {ours:.6f}")
print(f"L_simple, diffusion_loss:  {helper:.6f}")
print("identical:", torch.allclose(ours, helper, rtol=1e-12, atol=0))

# %% [markdown]
# Even the *best* predictor has a loss well above 0: given $x_t$ the noise is uncertain. For this data the minimum
# is $\mathbb E\operatorname{Var}(\varepsilon\mid x_t) = \frac1T\sum_t \bar\alpha_t$ per coordinate, since
# $\operatorname{Var}(\varepsilon\mid x_t) = 1-\operatorname{Cov}(\varepsilon,x_t)^2 = \bar\alpha_t$. The estimate above
# (4096 examples, each with its own random $t$) lies 1.3 standard errors from it. Keep this floor in mind when
# reading training curves in notebook 03: a loss does not go to 0.

# %%
g = torch.Generator().manual_seed(7)  # the draws of l_simple above, repeated to get one loss per example
t = torch.randint(0, T, (x0.shape[0],), generator=g)
eps = torch.randn(x0.shape, generator=g)
xt = diffusion.q_sample(x0, t, eps)
per_example = ((eps - standard_normal_eps(xt, t)) ** 2).mean(dim=1)
se = per_example.std() / math.sqrt(len(per_example))
print(f"estimate above: {per_example.mean():.4f} ± {se:.4f}; exact minimum of L_simple for N(0, I) data, the mean "
      f"over t of alpha_bar_t: {diffusion.alpha_bar.mean():.4f} ({abs(per_example.mean() - diffusion.alpha_bar.mean()) / se:.1f} "
      "standard errors apart)")

# %% [markdown]
# ### 7.2 Algorithm 2: sampling
#
# > **Algorithm 2** (Ho et al. 2020). $x_T\sim\mathcal N(0,I)$. For $t = T,\dots,1$: $z\sim\mathcal N(0,I)$ if $t>1$,
# > else $z = 0$; $\ x_{t-1} = \frac{1}{\sqrt{\alpha_t}}\Big(x_t-\frac{1-\alpha_t}{\sqrt{1-\bar\alpha_t}}\,\varepsilon_\theta(x_t,t)\Big)+\sigma_t z$. Return $x_0$.
#
# Line 4 is simply "draw from $p_\theta(x_{t-1}\mid x_t) = \mathcal N(\mu_\theta(x_t,t),\sigma_t^2 I)$" with the mean
# of Eq. 11 ($1-\alpha_t = \beta_t$). Two choices remain.
#
# **The variance $\sigma_t^2$.** Ho et al. (§3.2) try $\sigma_t^2=\beta_t$ and $\sigma_t^2=\tilde\beta_t$, call them
# the two extremes, and find similar sample quality; Section 11 shows what each is exact for.
#
# **No noise at the last step.** The step from $t = 1$ is the decoder $L_0 = -\log p_\theta(x_0\mid x_1)$, and Ho et al.
# display its mean $\mu_\theta(x_1,1)$ noiselessly (§3.3). Adding $\sigma_1 z$ would add noise the data does not have
# (with $\sigma_1^2=\beta_1$ a blur of standard deviation 0.01, enough to move pixels off their 256 levels). With
# $\tilde\beta_t$, Ho et al.'s code uses $\sigma_1^2 = \tilde\beta_2$ (the *clipped* $\tilde\beta$): $\tilde\beta_1 = 0$
# would make the decoder's density, and $L_0$, infinite. Either way the sampler adds no noise at $t = 1$.
#
# Our version, with the 0-based loop `t = T-1, …, 0`:

# %%
@torch.no_grad()
def algorithm2(eps_model, diffusion, x_T, variance="beta", generator=None):
    """Ancestral sampling, Ho et al. 2020, Algorithm 2; σ_t² = β_t ("beta") or β̃_t ("beta_tilde")."""
    x = x_T
    for t_code in range(diffusion.T - 1, -1, -1):  # paper t = T, …, 1
        t = timesteps(t_code, x.shape[0])
        mean = mean_from_eps(diffusion, x, t, eps_model(x, t))  # μ_θ(x_t, t), Eq. 11
        if t_code > 0:
            sigma2 = extract(diffusion.betas if variance == "beta" else diffusion.posterior_variance, t, x)  # σ_t²
            x = mean + sigma2.sqrt() * torch.randn(x.shape, generator=generator)  # x_{t−1} = μ_θ + σ_t z
        else:
            x = mean  # paper t = 1: return the mean, no noise
    return x


x_T = torch.randn(1000, 2, generator=torch.Generator().manual_seed(8))
for variance in ["beta", "beta_tilde"]:
    ours = algorithm2(standard_normal_eps, diffusion, x_T, variance, generator=torch.Generator().manual_seed(9))
    helper = ddpm_sample(standard_normal_eps, diffusion, None, x_T=x_T, variance=variance,
                         generator=torch.Generator().manual_seed(9)).x
    print(f"variance={variance!r:12}: our Algorithm 2 = ddpm_sample: {torch.allclose(ours, helper, rtol=0, atol=1e-9)};"
          f"  sample mean {ours.mean():+.3f}, sample std {ours.std():.3f} (data: 0, 1)")

# %% [markdown]
# Same noise, same result: the helper is the algorithm we derived, and a perfect predictor turns noise back into
# $\mathcal N(0, I)$. That data looks like the noise, though; the next sections use data that does not.

# %% [markdown]
# ## 8. Sampling with a perfect denoiser: Gaussian data
#
# The best noise predictor is $\varepsilon^*(x_t,t) = \mathbb E[\varepsilon\mid x_t]$ (Section 5.2). For Gaussian data $x_0\sim\mathcal N(\mu, s^2 I)$ everything is jointly Gaussian:
# $x_t\sim\mathcal N\big(\sqrt{\bar\alpha_t}\mu,\ \nu_t I\big)$ with $\nu_t := \bar\alpha_t s^2+1-\bar\alpha_t$, and
# $\operatorname{Cov}(\varepsilon, x_t) = \sqrt{1-\bar\alpha_t}\,I$, so
#
# $$\varepsilon^*(x_t,t) = \frac{\sqrt{1-\bar\alpha_t}}{\bar\alpha_t s^2+1-\bar\alpha_t}\big(x_t-\sqrt{\bar\alpha_t}\,\mu\big) = -\sqrt{1-\bar\alpha_t}\,\nabla\log q(x_t).$$
# The second form is Tweedie's formula (Section 5.2); `optimal_eps` evaluates it for Gaussian mixtures, whose noised
# score is known in closed form. With this $\varepsilon^*$ every step of the sampler is affine in $x_t$ plus Gaussian noise, so its output is Gaussian too, and its exact mean and variance
# follow from two recursions: $x_{t-1} = a_t x_t + b_t + \sigma_t z$ gives $m_{t-1} = a_t m_t + b_t$ and
# $V_{t-1} = a_t^2 V_t+\sigma_t^2$, started from $m_T = 0$, $V_T = 1$: exact numbers to compare samples with, here
# and for a slightly wrong $\varepsilon$ in Section 10.

# %%
def gaussian_eps(diffusion, mu, s2):
    """E[ε | x_t] for data x0 ~ N(mu, s2 I): √(1 − ᾱ_t)(x_t − √ᾱ_t mu) / (ᾱ_t s2 + 1 − ᾱ_t)."""
    def model(xt, t):
        ab = extract(diffusion.alpha_bar, t, xt)  # ᾱ_t
        return (1 - ab).sqrt() * (xt - ab.sqrt() * mu) / (ab * s2 + 1 - ab)  # √(1 − ᾱ)(x − √ᾱ mu)/(ᾱ s2 + 1 − ᾱ)
    return model


def sampler_moments(diffusion, mu, s2, scale=1.0, bias=0.0, variance="beta"):
    """Exact mean and std of Algorithm 2's output for 1-D data N(mu, s2) and ε_θ = scale · E[ε | x_t] + bias.

    ``s2`` may be a tensor of data variances (one result per entry)."""
    s2 = torch.as_tensor(s2)
    m, V = torch.zeros_like(s2), torch.ones_like(s2)  # x_T ~ N(0, 1)
    for t_code in range(diffusion.T - 1, -1, -1):  # paper t = t_code + 1 = T, …, 1; comments use the paper's t
        ab, alpha, beta = diffusion.alpha_bar[t_code], diffusion.alphas[t_code], diffusion.betas[t_code]
        k = scale * (1 - ab).sqrt() / (ab * s2 + 1 - ab)  # ε_θ = k (x_t − √ᾱ_t mu) + bias
        coef_eps = beta / (1 - ab).sqrt()  # μ_θ = (x_t − coef_eps ε_θ)/√α_t  (Eq. 11)
        a = (1 - coef_eps * k) / alpha.sqrt()  # x_{t−1} = a x_t + b + σ_t z
        b = (coef_eps * k * ab.sqrt() * mu - coef_eps * bias) / alpha.sqrt()
        sigma2 = 0.0 if t_code == 0 else (beta if variance == "beta" else diffusion.posterior_variance[t_code])
        m, V = a * m + b, a**2 * V + sigma2
    return m, V.sqrt()


mu, s = 1.0, 0.5  # data: N(1, 0.5²)
gaussian = GaussianMixture(weights=[1.0], means=[[mu]], variances=[s**2])  # a 1-component "mixture"
eps_star = gaussian_eps(diffusion, mu, s**2)
gen = torch.Generator().manual_seed(9)
t = diffusion.sample_timesteps(1000, generator=gen)
xt = diffusion.q_sample(gaussian.sample(1000, generator=gen), t, generator=gen)
print("our eps* = optimal_eps:", close(eps_star(xt, t), optimal_eps(gaussian, diffusion)(xt, t)))

N = 10_000  # samples
x_T_1d = torch.randn(N, 1, generator=torch.Generator().manual_seed(10))
samples = algorithm2(eps_star, diffusion, x_T_1d, "beta", generator=torch.Generator().manual_seed(11))
exact_mean, exact_std = sampler_moments(diffusion, mu, s**2)
print(f"{'':24}{'mean':>8}{'std':>8}")
print(f"{'data N(1, 0.5^2)':24}{mu:8.4f}{s:8.4f}")
print(f"{'sampler, exact moments':24}{exact_mean.item():8.4f}{exact_std.item():8.4f}")
print(f"{f'sampler, {N} samples':24}{samples.mean():8.4f}{samples.std():8.4f}"
      f"   (Monte-Carlo errors: mean ±{s / math.sqrt(N):.4f}, std ±{s / math.sqrt(2 * N):.4f})")  # s/√N, s/√(2N)
print(f"exact sampler std / data std - 1 = {100 * (exact_std.item() / s - 1):+.1f} %; "
      f"Monte-Carlo error of a {N}-sample std: ±{100 / math.sqrt(2 * N):.1f} %")

grid_1d = torch.linspace(-1.5, 3.0, 400)
fig, ax = plt.subplots(figsize=(6.5, 3.6))
ax.hist(samples.squeeze(1), bins=60, density=True, alpha=0.5, label=f"{N} samples, Algorithm 2 with exact ε")
ax.plot(grid_1d, gaussian.log_prob(grid_1d[:, None]).exp(), "k", label=r"data density $\mathcal{N}(1, 0.5^2)$")
ax.set_xlabel("$x_0$")
ax.set_ylabel("density")
ax.set_title("A perfect noise predictor turns N(0, 1) noise into the data distribution")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# The sampler is not *exactly* right even with the perfect $\varepsilon^*$: its output standard deviation is
# 0.5008 instead of 0.5: its steps' means are exact (Section 5.2), their fixed variance $\beta_t$ is not (Section 11).
# With $T = 1000$ small steps the error is 0.2 %, below the Monte-Carlo error of a 10 000-sample std (0.7 %).

# %% [markdown]
# ## 9. A perfect denoiser for a 2-D Gaussian mixture
#
# A single Gaussian is too easy: its reverse steps are exactly linear. A mixture has several modes of different
# sizes, and the sampler must put the right share of samples into each. `GaussianMixture` holds the data
# distribution (Section 5.2); `optimal_eps` turns it into the exact noise predictor (Tweedie's formula), which
# we plug into `ddpm_sample` (our Algorithm 2, shown identical above). We record the state at a few steps to watch the
# reverse chain. The tables give each mode's share and standard deviation (points assigned to their most
# responsible component) and the **energy distance** to a fresh data sample,
# $2\mathbb E\|X-Y\|-\mathbb E\|X-X'\|-\mathbb E\|Y-Y'\|$ (Székely & Rizzo 2013), zero in expectation for identical
# distributions.

# %%
eps_mixture = optimal_eps(mixture, diffusion)
N2 = 2000  # fixed sample size for every 2-D experiment
x_T_2d = torch.randn(N2, 2, generator=torch.Generator().manual_seed(12))
record = (999, 400, 200, 100, 40)  # 0-based steps whose incoming x_t is kept
result = ddpm_sample(eps_mixture, diffusion, None, x_T=x_T_2d, variance="beta", record=record,
                     generator=torch.Generator().manual_seed(13))
reference = mixture.sample(N2, generator=torch.Generator().manual_seed(14))  # fresh data: what a perfect sampler gives


def assign(x, mixture):
    """The most responsible component of each point."""
    d2 = torch.cdist(x, mixture.means) ** 2  # ‖x − μ_k‖²
    log_r = mixture.weights.log() - x.shape[1] / 2 * mixture.variances.log() - d2 / (2 * mixture.variances)
    return log_r.argmax(dim=1)


def mode_stats(x, mixture):
    """Share of points, and their std per axis, for each component (points assigned by largest responsibility)."""
    k = assign(x, mixture)
    shares = torch.stack([(k == j).double().mean() for j in range(len(mixture.weights))])
    stds = torch.stack([(x[k == j] - x[k == j].mean(0)).pow(2).mean().sqrt() for j in range(len(mixture.weights))])
    return shares, stds


def print_mode_table(rows, mixture):
    """One line per sample set: share and std of each component, and the energy distance to fresh data."""
    K = len(mixture.weights)
    print(f"{'':22}" + "".join(f"{f'mode {j}: share':>15}{'std':>7}" for j in range(K)) + f"{'energy dist.':>14}")
    print(f"{'data (exact)':22}" + "".join(f"{mixture.weights[j]:15.3f}{mixture.variances[j].sqrt():7.3f}"
                                            for j in range(K)))
    share_se = (mixture.weights * (1 - mixture.weights) / N2).sqrt()  # standard error of a share of N2 samples
    print(f"{f'± 1 SE at N={N2}':22}" + "".join(f"{share_se[j]:15.3f}{'':7}" for j in range(K)))
    for name, x in rows.items():
        shares, stds = mode_stats(x, mixture)
        print(f"{name:22}" + "".join(f"{shares[j]:15.3f}{stds[j]:7.3f}" for j in range(K))
              + f"{energy_distance(x, reference):14.4f}")


def print_share_changes(rows, baseline, mixture):
    """Each mode's share minus its share in ``baseline``, ± the paired standard error: every row shares x_T and the
    noise draws with the baseline, so sample i is compared with sample i (a per-sample change of −1, 0 or +1)."""
    k_base = assign(baseline, mixture)
    print(f"{'share change vs exact':22}" + "".join(f"{f'mode {j}':>17}" for j in range(len(mixture.weights))))
    for name, x in rows.items():
        k = assign(x, mixture)
        changes = [(k == j).double() - (k_base == j).double() for j in range(len(mixture.weights))]
        print(f"{name:22}" + "".join(f"{c.mean():+9.3f} ± {c.std() / math.sqrt(len(c)):.3f}" for c in changes))


fresh_2000 = mixture.sample(N2, generator=torch.Generator().manual_seed(15))
print_mode_table({f"fresh data, N={N2}": fresh_2000, "sampler, exact eps": result.x}, mixture)
for name, x in [("fresh data", fresh_2000), ("sampler", result.x)]:
    share_error = (mode_stats(x, mixture)[0] - mixture.weights).abs()  # |share − w| per mode
    print(f"{name}: largest |share - w| = {share_error.max():.3f} (mode {int(share_error.argmax())})")
null_energy = torch.tensor([energy_distance(mixture.sample(N2, generator=torch.Generator().manual_seed(100 + k)),
                                            reference) for k in range(20)])  # same distribution: pure noise
print(f"energy distance of 20 more fresh data sets (N={N2}): mean {null_energy.mean():+.4f}, "
      f"std {null_energy.std():.4f}, largest {null_energy.max():.4f}")

# %% [markdown]
# At $N = 2000$ a share has a standard error of about 0.01, and the sampler's shares differ from the truth by up to
# 0.027 (mode 1), those of fresh data by up to 0.019: too noisy to tell a small bias of the sampler from chance.
# Fresh data sets' energy distances scatter by 0.0005 (standard deviation; up to 0.0012), so the sampler's 0.0008
# is noise too. Ten times more samples settle the shares, with standard errors $\sqrt{w(1-w)/N}$:

# %%
N_shares = 20_000
many_x_T = torch.randn(N_shares, 2, generator=torch.Generator().manual_seed(22))
many_samples = ddpm_sample(eps_mixture, diffusion, None, x_T=many_x_T, variance="beta",
                           generator=torch.Generator().manual_seed(23)).x
many_fresh = mixture.sample(N_shares, generator=torch.Generator().manual_seed(24))
print(f"{'':26}" + "".join(f"{f'mode {j}':>18}" for j in range(3)))
print(f"{'data (exact): share':26}" + "".join(f"{w:9.4f}{'':9}" for w in mixture.weights))
print(f"{'              std':26}" + "".join(f"{sd:9.4f}{'':9}" for sd in mixture.variances.sqrt()))
for name, x in [(f"fresh data, N={N_shares}", many_fresh), (f"sampler, N={N_shares}", many_samples)]:
    shares, stds = mode_stats(x, mixture)
    se = (shares * (1 - shares) / N_shares).sqrt()  # √(w(1 − w)/N)
    z = (shares - mixture.weights) / se
    std_se = stds / (4 * shares * N_shares).sqrt()  # std over 2 n_k pooled coordinates: ≈ std/√(2 · 2 n_k)
    z_std = (stds - mixture.variances.sqrt()) / std_se
    print(f"{name + ': share':26}" + "".join(f"{w:9.4f} ± {e:.4f}" for w, e in zip(shares, se))
          + f"   largest |share − w| = {z.abs().max():.1f} SE")
    print(f"{'  std':26}" + "".join(f"{sd:9.4f} ± {e:.4f}" for sd, e in zip(stds, std_se))
          + f"   largest |std − s|   = {z_std.abs().max():.1f} SE")
    assert z.abs().max() < 4, f"{name}: a share is more than 4 standard errors from the truth"

# %% [markdown]
# With 20 000 samples the sampler's shares, like those of fresh data, lie within 1.3 standard errors of the truth:
# the exact-$\varepsilon$ sampler puts the right mass into each mode. Its mode widths are off by at most 3.0
# standard errors (fresh data's by 2.6); Section 11 finds that $\sigma_t^2=\beta_t$ widens such modes by up to 1 %.
# The snapshots show how
# the chain gets there: at every step the cloud of $x_t$ follows the noised data distribution $q(x_t)$ (contours,
# from `mixture.noised(ᾱ_t)`).

# %%
def density_contours(ax, mixture, lim=3.0):
    """Contours of a 2-D mixture density enclosing 50 %, 90 % and 99 % of its mass, on [−lim, lim]²."""
    u = torch.linspace(-lim, lim, 200)
    X, Y = torch.meshgrid(u, u, indexing="xy")
    log_density = mixture.log_prob(torch.stack([X.flatten(), Y.flatten()], dim=1)).reshape(X.shape)
    # The region {log p > c} holds a mass m when c is the (1 − m)-quantile of log p(x) over samples x ~ p.
    log_p_samples = mixture.log_prob(mixture.sample(20_000, generator=torch.Generator().manual_seed(0)))
    levels = torch.quantile(log_p_samples, torch.tensor([0.01, 0.10, 0.50]))  # 99 %, 90 %, 50 % of the mass
    ax.contour(X, Y, log_density, levels=levels.tolist(), colors="k", linewidths=0.8, linestyles="solid")


fig, axes = plt.subplots(1, len(record) + 1, figsize=(3 * (len(record) + 1), 3.2))
for ax, t_code, xt in zip(axes, result.timesteps, result.xs):
    ax.scatter(xt[:, 0], xt[:, 1], s=2, alpha=0.4)
    density_contours(ax, mixture.noised(diffusion.alpha_bar[t_code]))
    ax.set_title(f"$x_{{{t_code + 1}}}$ (code t = {t_code})")
axes[-1].scatter(result.x[:, 0], result.x[:, 1], s=2, alpha=0.4)
density_contours(axes[-1], mixture)
axes[-1].set_title("$x_0$: the samples")
for ax in axes:
    ax.set_xlim(-3, 3)
    ax.set_ylim(-3, 3)
    ax.set_aspect("equal")
    ax.set_xlabel("$x^{(1)}$")
axes[0].set_ylabel("$x^{(2)}$")
fig.suptitle(r"Reverse chain with the exact $\varepsilon^*$: points $x_t$; contours: 50/90/99 % of the mass of $q(x_t)$",
             y=1.02)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Optional lab: Sections 10–12
#
# Sections 10–12 go deeper; notebook 03 uses only their conclusions (in the summary), so a first reading can skip
# to the exercises (Section 13).
#
# ## 10. What a slightly wrong $\varepsilon$ does
#
# A trained network is never exact. We perturb $\varepsilon^*$ in three ways: scaled by 0.9 (under-confident
# denoising), by 1.1 (over-confident), or shifted by 0.05. First on the Gaussian, where Section 8's recursion predicts
# the result exactly.

# %%
perturbations = {"exact eps": (1.0, 0.0), "eps x 0.9": (0.9, 0.0), "eps x 1.1": (1.1, 0.0), "eps + 0.05": (1.0, 0.05)}
print(f"{'':12}{'exact mean':>12}{'exact std':>11}{'sample mean':>13}{'sample std':>12}    (data: mean 1, std 0.5)")
for name, (scale, bias) in perturbations.items():
    def wrong_eps(xt, t, scale=scale, bias=bias):
        return scale * eps_star(xt, t) + bias
    x = algorithm2(wrong_eps, diffusion, x_T_1d, "beta", generator=torch.Generator().manual_seed(11))
    m, sd = sampler_moments(diffusion, mu, s**2, scale=scale, bias=bias)
    print(f"{name:12}{m.item():12.4f}{sd.item():11.4f}{x.mean():13.4f}{x.std():12.4f}"
          f"   exact std {100 * (sd.item() / s - 1):+4.0f} % off")
pushes = -0.05 * diffusion.betas / (diffusion.alphas.sqrt() * diffusion.sqrt_one_minus_alpha_bar)  # per step, Eq. 11
offset_mean, _ = sampler_moments(diffusion, mu, s**2, bias=0.05)
print(f"eps + 0.05: the pushes of all {T} steps sum to {pushes.sum():+.3f}; the mean moves by {offset_mean.item() - mu:+.4f}")

# %% [markdown]
# A 10 % error in $\varepsilon$ becomes a 9–12 % error in the spread: too little denoising ($\times0.9$) leaves the
# samples too spread out, too much ($\times1.1$) too concentrated. The offset moves the whole distribution by
# $-0.077$: each step pushes the mean by $-\frac{\beta_t}{\sqrt{\alpha_t}\sqrt{1-\bar\alpha_t}}\times0.05$ (Eq. 11),
# and the chain forgets most of it: undamped, the pushes would add up to $-0.574$, but every step contracts towards
# the mean ($a_t = (1-\beta_t/\nu_t)/\sqrt{\alpha_t}\le\sqrt{\alpha_t}$ for $s\le1$, Section 8), so a push made at
# large $t$ is shrunk by all the steps after it. On the mixture, errors can also move mass between modes:

# %%
def perturbed(model, scale=1.0, bias=0.0, when=None):
    """ε_θ = scale · model + bias, applied only at the 0-based steps where ``when(t)`` is True (default: all)."""
    def wrong(xt, t):
        eps = model(xt, t)
        active = torch.ones_like(t, dtype=torch.bool) if when is None else when(t)
        return torch.where(active[:, None], scale * eps + bias, eps)
    return wrong


def sample_2d(model, variance="beta", diffusion=diffusion):
    """DDPM samples of the 2-D mixture, always from the same x_T and the same noise draws."""
    x_T = x_T_2d if diffusion.T == T else torch.randn(N2, 2, generator=torch.Generator().manual_seed(12))
    return ddpm_sample(model, diffusion, None, x_T=x_T, variance=variance,
                       generator=torch.Generator().manual_seed(13)).x


wrong_samples = {
    "exact eps": result.x,
    "eps x 0.9": sample_2d(perturbed(eps_mixture, scale=0.9)),
    "eps x 1.1": sample_2d(perturbed(eps_mixture, scale=1.1)),
    "eps + (0.05, 0)": sample_2d(perturbed(eps_mixture, bias=torch.tensor([0.05, 0.0]))),
}
print_mode_table(wrong_samples, mixture)
print_share_changes({name: x for name, x in wrong_samples.items() if name != "exact eps"}, result.x, mixture)

fig, axes = plt.subplots(1, 4, figsize=(13, 3.4))
for ax, (name, x) in zip(axes, wrong_samples.items()):
    ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.4)
    density_contours(ax, mixture)
    ax.set_xlim(-2.5, 2.5)
    ax.set_ylim(-2.2, 2.2)
    ax.set_aspect("equal")
    ax.set_title(name.replace("eps", "ε"))
    ax.set_xlabel("$x^{(1)}$")
axes[0].set_ylabel("$x^{(2)}$")
fig.suptitle("Samples (dots) with a perturbed ε; contours hold 50/90/99 % of the data distribution", y=1.02)
fig.tight_layout()
plt.show()

# %% [markdown]
# As all runs share $x_T$ and the noise draws, the share changes have paired standard errors of about 0.004, not
# the 0.01 of a share. Scaling $\varepsilon$ by 0.9 widens every mode and moves mass from the big mode to the
# smallest ($\pm0.013$); scaling by 1.1 narrows the modes and lets the big mode grow ($+0.026$) at the others' expense:
# the first step towards *mode collapse*. The offset moves 0.05 of the mass from the right mode to the left one.
# **When** does the error matter? Apply $\times1.1$ only at small $t$ (paper $t \le 100$, little noise left) or only
# at large $t$:

# %%
timing_samples = {
    "eps x1.1, paper t<=100": sample_2d(perturbed(eps_mixture, scale=1.1, when=lambda t: t < 100)),  # 0-based t
    "eps x1.1, paper t>100": sample_2d(perturbed(eps_mixture, scale=1.1, when=lambda t: t >= 100)),
}
print_mode_table(timing_samples, mixture)
print_share_changes(timing_samples, result.x, mixture)
print(f"noise std at paper t = 100: sqrt(1 - alpha_bar_100) = {diffusion.sqrt_one_minus_alpha_bar[99]:.2f}")

# %% [markdown]
# Errors at **small $t$** (little noise) change the *shape within each mode* and leave the shares as in the exact
# run (to within 0.001). Errors at **large $t$** decide *which mode* a sample goes to: they change the shares and leave
# the two narrow modes' widths alone (the widest mode, std 0.25, is about as wide as the noise at $t = 100$, 0.32,
# and feels both). A network good at small $t$ but poor at large $t$ gives crisp samples in the wrong proportions, and vice
# versa; notebook 03 looks for this in a trained MLP.

# %% [markdown]
# ## 11. $\sigma_t^2 = \beta_t$ versus $\tilde\beta_t$ with the exact $\varepsilon$
#
# For Gaussian data $\mathcal N(\mu, s^2)$ the *true* reverse step is Gaussian with a variance we can write down. As in
# Section 2.3, $(x_{t-1}, x_t)$ is jointly Gaussian, now with $\operatorname{Var}(x_t) = \nu_t = \bar\alpha_t s^2+1-\bar\alpha_t$ and
# $\operatorname{Cov}(x_{t-1},x_t) = \sqrt{\alpha_t}\,\nu_{t-1}$, so
#
# $$\operatorname{Var}(x_{t-1}\mid x_t) = \nu_{t-1}-\frac{\alpha_t \nu_{t-1}^2}{\nu_t} = \beta_t\,\frac{\nu_{t-1}}{\nu_t}
# \qquad\text{(using } \nu_t-\alpha_t \nu_{t-1} = \beta_t\text{)}.$$
# For $s = 1$ ($\mathcal N(0, I)$ data): $\nu_t = 1$ and the variance is $\beta_t$. For $s = 0$ (a single point):
# $\nu_t = 1-\bar\alpha_t$ and it is $\tilde\beta_t$. For $s \le 1$, $\nu_{t-1}\le \nu_t$ (as
# $\nu_t - \nu_{t-1} = \bar\alpha_{t-1}\beta_t(1-s^2)$), so the truth lies between $\tilde\beta_t$ and $\beta_t$: Ho et al.'s
# two extremes (§3.2), for data of unit variance per coordinate. For any data $\tilde\beta_t$ is a lower bound, by the
# law of total variance (knowing $x_0$ as well can only reduce the uncertainty about $x_{t-1}$):
#
# $$\operatorname{Var}(x_{t-1}\mid x_t) = \mathbb E[\operatorname{Var}(x_{t-1}\mid x_t,x_0)\mid x_t] +
# \operatorname{Var}(\mathbb E[x_{t-1}\mid x_t,x_0]\mid x_t) \ge \tilde\beta_t .$$
# $\beta_t$ is no upper bound in general: Gaussian data with $s > 1$ exceeds it, and between the modes of multimodal
# data a step may jump to either side (Section 1: $10\,\beta$ at $x_t = 0$). Where between the extremes? Since
# $\nu_{t-1}(1-\bar\alpha_t)-\nu_t(1-\bar\alpha_{t-1}) = s^2(\bar\alpha_{t-1}-\bar\alpha_t)$ and
# $\beta_t-\tilde\beta_t = \beta_t(\bar\alpha_{t-1}-\bar\alpha_t)/(1-\bar\alpha_t)$ (Eq. 7),
#
# $$\frac{\operatorname{Var}(x_{t-1}\mid x_t)-\tilde\beta_t}{\beta_t-\tilde\beta_t}
# = \frac{\beta_t\big(\nu_{t-1}(1-\bar\alpha_t)-\nu_t(1-\bar\alpha_{t-1})\big)/\big(\nu_t(1-\bar\alpha_t)\big)}{\beta_t(\bar\alpha_{t-1}-\bar\alpha_t)/(1-\bar\alpha_t)}
# = \frac{s^2}{\nu_t}:$$
# 1 while the data's spread dominates ($\nu_t\approx s^2$), falling to $s^2$ once the noise dominates ($\nu_t\to1$).

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
for data_std in [0.05, 0.2, 0.5, 1.0]:
    nu = alpha_bar * data_std**2 + 1 - alpha_bar  # ν_t = Var(x_t)
    nu_prev = alpha_bar_prev * data_std**2 + 1 - alpha_bar_prev  # ν_{t−1}
    true_var = betas * nu_prev / nu  # Var(x_{t−1} | x_t)
    position = (true_var[1:] - diffusion.posterior_variance[1:]) / (betas[1:] - diffusion.posterior_variance[1:])
    matches = torch.allclose(position, data_std**2 / nu[1:], rtol=1e-6)
    assert matches, "the position is not s^2 / nu_t"
    print(f"s = {data_std:4}: position = s^2 / nu_t for every t: {matches}; at paper t = 10: {position[8]:.3f}, "
          f"t = 1000: {position[-1]:.4f} (s^2 = {data_std**2:.4f})")
    axes[0].plot(paper_steps[1:], position, label=f"data std s = {data_std}")
for paper_t in [10, 30]:
    print(f"paper t = {paper_t}: beta_tilde / beta = {diffusion.posterior_variance[paper_t - 1] / betas[paper_t - 1]:.2f}, "
          f"noise std sqrt(1 - alpha_bar_t) = {diffusion.sqrt_one_minus_alpha_bar[paper_t - 1]:.3f}")
axes[0].set_xscale("log")
axes[0].set_xlabel("paper step $t$ (log scale)")
axes[0].set_ylabel(r"$(\mathrm{Var}(x_{t-1}|x_t)-\tilde\beta_t)\,/\,(\beta_t-\tilde\beta_t)$")
axes[0].set_title(r"True reverse variance: 0 = $\tilde\beta_t$, 1 = $\beta_t$")
axes[0].legend(fontsize=8)

data_stds = torch.logspace(-2, 0.3, 60)  # s from 0.01 to 2 (no grid point at s = 1)
below_1, above_1 = (data_stds >= 0.05) & (data_stds < 1), data_stds > 1
std_ratio_summary = []
for T_steps, style in [(1000, "-"), (50, "--")]:
    d = Diffusion.from_schedule("linear", T=T_steps)
    for variance, color in [("beta", "C0"), ("beta_tilde", "C1")]:
        _, out_std = sampler_moments(d, 0.0, data_stds**2, variance=variance)
        ratio = out_std / data_stds  # sample std / data std, exact
        worst = 100 * (ratio[below_1] - 1).abs().max()  # largest error in %, 0.05 ≤ s < 1
        std_ratio_summary.append(f"T = {T_steps:4d}, sigma^2 = {variance:10}: sample std / data std in "
                                 f"[{ratio[below_1].min():.3f}, {ratio[below_1].max():.3f}] for 0.05 <= s < 1 "
                                 f"(off by up to {worst:.0f} %), [{ratio[above_1].min():.3f}, "
                                 f"{ratio[above_1].max():.3f}] for s > 1, {ratio[0]:.3f} at s = {data_stds[0]:.2f}")
        label = (r"$\sigma_t^2=\beta_t$" if variance == "beta" else r"$\sigma_t^2=\tilde\beta_t$") + f", T = {T_steps}"
        axes[1].plot(data_stds, out_std / data_stds, style, color=color, label=label)
axes[1].axhline(1.0, color="k", lw=0.8, ls=":")
axes[1].set_xscale("log")
axes[1].set_xlabel("data std $s$ (log scale)")
axes[1].set_ylabel("sample std / data std (exact)")
axes[1].set_title(r"Algorithm 2 with the exact $\varepsilon^*$ on $\mathcal{N}(0, s^2)$")
axes[1].legend(fontsize=8)
fig.tight_layout()
plt.show()
print("\n".join(std_ratio_summary))

# %% [markdown]
# Left: while the accumulated noise is much smaller than the data's spread $s$, the data looks wide and the true
# reverse variance is $\beta_t$ (position 1). Once the noise exceeds $s$ the position falls, the sooner the narrower
# the data, and levels off at $s^2$ (printed). There, though, $\tilde\beta_t\approx\beta_t$ anyway (Section 2.3).
# Where they differ ($\tilde\beta_t/\beta_t$ = 0.85 at $t = 10$, 0.94 at $t = 30$), the truth is nearer
# $\tilde\beta_t$ only for data narrower than the noise, $s^2\lesssim1-\bar\alpha_t$: $s$ below about 0.04–0.11 (the
# noise std at $t$ = 10–30); even at $s = 0.05$ the position is 0.57 at $t = 10$.
#
# Right, and the printed ranges: the exact spread of the samples. With $T = 1000$ and $0.05\le s<1$,
# $\sigma_t^2=\beta_t$ is within 1 % and $\tilde\beta_t$ up to 7 % too narrow. Narrower data is shrunk by both (at
# $s = 0.01$ to 0.84 and 0.66 of its width): the last step returns a mean and so drops the spread of order
# $\sqrt{\beta_1} = 0.01$ it should add. With $T = 50$ the choice matters: for $0.05\le s<1$, $\beta_t$
# over-disperses by up to 26 % and $\tilde\beta_t$ under-disperses by up to 40 %. For $s>1$ the truth exceeds
# $\beta_t$ (above), so both under-disperse. The same on the mixture, whose modes are narrow ($s$ = 0.10–0.25):

# %%
diffusion_50 = Diffusion.from_schedule("linear", T=50)
variance_samples = {
    "T=1000, sigma2=beta": result.x,
    "T=1000, sigma2=b_tilde": sample_2d(eps_mixture, "beta_tilde"),
    "T=50, sigma2=beta": sample_2d(optimal_eps(mixture, diffusion_50), "beta", diffusion_50),
    "T=50, sigma2=b_tilde": sample_2d(optimal_eps(mixture, diffusion_50), "beta_tilde", diffusion_50),
}
print_mode_table(variance_samples, mixture)
for name in ["T=50, sigma2=beta", "T=50, sigma2=b_tilde"]:
    width_ratio = mode_stats(variance_samples[name], mixture)[1] / mixture.variances.sqrt()  # mode std / data std
    print(f"{name}: mode std / data std - 1 = " + ", ".join(f"{100 * (r - 1):+.0f} %" for r in width_ratio))

fig, axes = plt.subplots(1, 2, figsize=(7, 3.4))
for ax, name in zip(axes, ["T=50, sigma2=beta", "T=50, sigma2=b_tilde"]):
    ax.scatter(variance_samples[name][:, 0], variance_samples[name][:, 1], s=2, alpha=0.4)
    density_contours(ax, mixture)
    ax.set_xlim(-2.5, 2.5)
    ax.set_ylim(-2.2, 2.2)
    ax.set_aspect("equal")
    ax.set_title(name.replace("sigma2", "σ²").replace("b_tilde", "β̃").replace("beta", "β"))
    ax.set_xlabel("$x^{(1)}$")
axes[0].set_ylabel("$x^{(2)}$")
fig.suptitle("Exact ε, only 50 steps: the variance choice matters", y=1.02)
fig.tight_layout()
plt.show()

# %% [markdown]
# With 50 steps, $\beta_t$ makes the modes 12–22 % too wide and $\tilde\beta_t$ 11–27 % too narrow. Yet the too-wide
# set has the smallest energy distance ($-0.0002$): at $N = 2000$ it cannot see such errors (Section 9); read the
# mode widths.

# %% [markdown]
# ### 11.1 Beyond Gaussian data: how wide can a step be?
#
# Back to Section 1's bimodal, now against every $x_t$: how far from Gaussian the exact reverse step is, and its
# variance against $\beta$.

# %%
x_values = torch.linspace(-2.0, 2.0, 401)  # x_values[200] = 0, x_values[240] = 0.4
wide = torch.linspace(-3.0, 3.0, 1201)  # holds q(x_t), for the average over x_t ~ q(x_t)
fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
print(f"{'beta':>8}{'TV at x_t = 0':>15}{'TV at x_t = 0.4':>17}{'largest TV':>12}{'mean TV over x_t ~ q(x_t)':>28}")
for i, beta in enumerate([1e-4, 1e-3, 1e-2, 0.05, 0.5]):
    _, _, var, _, tv = reverse_step(x_values, beta)
    axes[0].plot(x_values, tv, color=f"C{i}", label=rf"$\beta = {beta:g}$")
    axes[1].plot(x_values, var / beta, color=f"C{i}", label=rf"$\beta = {beta:g}$")
    if beta < 0.5:  # the quadratic prediction of the variance, where it exists
        precision = (1 - beta) / beta + curvature(x_values / math.sqrt(1 - beta))  # α/β + κ(ξ)
        axes[1].plot(x_values, torch.where(precision > 0, 1 / precision / beta, torch.nan), ":", color=f"C{i}", lw=1.5)
    weight = bimodal.noised(1 - beta).log_prob(wide[:, None]).softmax(0)  # q(x_t) on the grid, normalized
    mean_tv = float((weight * reverse_step(wide, beta)[4]).sum())
    print(f"{beta:8g}{float(tv[200]):15.3f}{float(tv[240]):17.3f}{float(tv.max()):12.3f}{mean_tv:28.1e}")
axes[1].plot([], [], ":", color="0.4", lw=1.5, label=r"dotted: $\beta/(\alpha+\beta\kappa)$, quadratic $\log q$")
axes[0].set_ylabel("TV from the matched Gaussian")
axes[0].set_title("How far from Gaussian the exact reverse step is")
axes[1].set_yscale("log")
axes[1].set_ylabel(r"$\mathrm{Var}(x_{t-1}\mid x_t)\,/\,\beta$ (formula: 1)")
axes[1].set_title(r"Its variance, against the formula's $\beta$")
for ax in axes:
    ax.set_xlabel("$x_t$")
    ax.legend(fontsize=7)
fig.tight_layout()
plt.show()

largest_kappa = float(curvature(bimodal_grid).max())
print(f"largest kappa of the bimodal on the grid: {largest_kappa:.2f}; "
      f"bound 1/0.15^2 = {1 / 0.15**2:.2f} (two points blurred with variance 0.15^2)")
assert largest_kappa <= (1 + 1e-6) / 0.15**2, "a Gaussian blur of variance 0.15^2 has kappa above 1/0.15^2"
print(f"linear schedule, T = 1000: beta_t = 0.01 near paper t = {int((diffusion.betas - 0.01).abs().argmin()) + 1}, "
      f"where 1 - alpha_bar_(t-1) = {1 - diffusion.alpha_bar_prev[(diffusion.betas - 0.01).abs().argmin()]:.2f}")
for T_steps in [1000, 4000]:
    d = Diffusion.from_schedule("linear", T=T_steps)  # β rescaled by 1000/T
    worst = d.betas[1:] / (1 - d.alpha_bar_prev[1:])  # β_t/(1 − ᾱ_{t−1}) for paper t ≥ 2: the largest β_t κ
    print(f"T = {T_steps}: beta_t / (1 - alpha_bar_(t-1)) at paper t = 2, 3, 5, 10: "
          + ", ".join(f"{worst[paper_t - 2]:.2f}" for paper_t in [2, 3, 5, 10]))

# %% [markdown]
# Left: only the valley between the modes is far from Gaussian, and the smaller $\beta$, the narrower it is; $q(x_t)$
# is so small there that the TV averaged over $x_t\sim q(x_t)$ stays below $10^{-7}$ up to $\beta = 0.01$. With
# $\beta = 0.5$ one step can jump to either mode from almost anywhere. Right: the exact variance (solid) is close to
# the quadratic prediction (dotted, same colour) where $\beta|\kappa|$ is small, and it approaches the formula's
# $\beta$ only for $\beta\ll\ell^2$.
#
# The bimodal is a picture, not a step of the chain: there $\beta_t$ reaches 0.01 only near $t = 498$, where
# $q(x_{t-1})$ is blurred by noise of variance 0.92. A blur caps the curvature. Let $x = y+n$, with $y\sim p$ for any
# density $p$ and independent Gaussian noise $n$ of variance $\tau^2$. Section 1's computation gives the score
# $\partial\log q(x) = (\mathbb E[y\mid x]-x)/\tau^2$. The posterior weight of each $y$,
# $\mathcal N(x;y,\tau^2)\,p(y)/q(x)$, has log-derivative in $x$ equal to $(y-x)/\tau^2$ minus its posterior mean, so
# $\partial\,\mathbb E[y\mid x] = \operatorname{Cov}\big(y,(y-x)/\tau^2\mid x\big) = \operatorname{Var}(y\mid x)/\tau^2$ and
#
# $$\kappa = -\partial^2\log q(x) = \frac{1}{\tau^2}-\frac{\operatorname{Var}(y\mid x)}{\tau^4}\le\frac{1}{\tau^2}.$$
# In the chain $y = \sqrt{\bar\alpha_{t-1}}x_0$ and $\tau^2 = 1-\bar\alpha_{t-1}$, so $\ell^2\ge1-\bar\alpha_{t-1}$
# wherever $\kappa>0$ (the bimodal attains its bound, printed). Equality holds for a single data point, where
# $\beta_t/(\alpha_t+\beta_t\kappa)$ is exactly Eq. 7's $\tilde\beta_t$. The worst-case $\beta_t\kappa$,
# $\beta_t/(1-\bar\alpha_{t-1})$, is small for most of the chain but 1.20, 0.64, 0.35, 0.17 at $t$ = 2, 3, 5, 10, and
# hardly falls as $T$ grows: however large $T$, the first steps' variance may be far from $\beta_t$.

# %% [markdown]
# ## 12. The ELBO terms of the exact-$\varepsilon$ model
#
# `ddpm_helpers.elbo.elbo_terms` evaluates every term of Eq. 5 per example: $L_T$, the
# $T-1$ terms $L_{t-1}$ and the decoder $L_0$ (here a Gaussian density, since the data is continuous). Averaged over
# the data it bounds $-\log p_\theta(x_0)$ as a density, which no model can push below the data's differential
# entropy, $H = \frac12\log(2\pi e s^2)$ per dimension. We evaluate it for the exact-$\varepsilon$ model on standard
# normal data, whose reverse steps are exact with $\sigma_t^2 = \beta_t$ (Section 11); "±" is the standard error
# over 2000 examples.
#
# For Gaussian data the bound also has a **closed form**, which checks `elbo_terms` without Monte-Carlo noise. Take 1-D data $\mathcal N(0, s^2)$ and the exact $\varepsilon^*(x_t) = k_t x_t$,
# $k_t = \sqrt{1-\bar\alpha_t}/\nu_t$ (Section 8). Then $\mu_\theta(x_t) = a_t x_t$ with
# $a_t = (1-\beta_t k_t/\sqrt{1-\bar\alpha_t})/\sqrt{\alpha_t}$ (Eq. 11), and with $x_t = \sqrt{\bar\alpha_t}x_0 +
# \sqrt{1-\bar\alpha_t}\varepsilon$ the mean error of Eq. 8 is $\tilde\mu_t - \mu_\theta = u_t x_0 + r_t\varepsilon$ with
# $u_t = c_{1,t} + (c_{2,t}-a_t)\sqrt{\bar\alpha_t}$, $r_t = (c_{2,t}-a_t)\sqrt{1-\bar\alpha_t}$ ($c_1, c_2$ the
# coefficients of $x_0$ and $x_t$ in $\tilde\mu_t$, Eq. 7). Averaging over $x_0$ and $\varepsilon$:
#
# $$L_{t-1} = \tfrac12\Big(\frac{\tilde\beta_t}{\sigma_t^2}-1-\log\frac{\tilde\beta_t}{\sigma_t^2}\Big) + \frac{u_t^2 s^2 + r_t^2}{2\sigma_t^2},\qquad
# L_0 = \tfrac12\log(2\pi\sigma_1^2) + \frac{(1-a_1\sqrt{\bar\alpha_1})^2 s^2 + a_1^2(1-\bar\alpha_1)}{2\sigma_1^2},$$
# $L_T = \tfrac12\big(\bar\alpha_T s^2 - \bar\alpha_T - \log(1-\bar\alpha_T)\big)$, where $\sigma_1^2$ is the decoder's
# variance ($\beta_1$, or $\tilde\beta_2$ for the clipped $\tilde\beta$ of Section 7.2, as in `elbo_terms`). With $x_0^2$ in
# place of $s^2$ it is the exact bound *given* each example's $x_0$; subtracted from `elbo_terms`, it leaves only the
# noise of the random $x_t$ draws.

# %%
unit_gaussian = GaussianMixture(weights=[1.0], means=[[0.0]], variances=[1.0])
x0 = unit_gaussian.sample(2000, generator=torch.Generator().manual_seed(16))
entropy = 0.5 * math.log(2 * math.pi * math.e)  # H[N(0, 1)]
elbo_by_variance = {}
for variance in ["beta", "beta_tilde"]:
    terms = elbo_terms(optimal_eps(unit_gaussian, diffusion), diffusion, x0, variance=variance, decoder="gaussian",
                       generator=torch.Generator().manual_seed(17))
    elbo_by_variance[variance] = terms
    total = terms["total"]
    print(f"sigma^2 = {variance:10}: L_T = {terms['prior'].mean():.4f}, sum L_(t-1) = {terms['kl'].sum(dim=1).mean():.3f}, "
          f"L_0 = {terms['decoder_nll'].mean():.3f}, L = {total.mean():.3f} ± {total.std() / math.sqrt(len(total)):.3f} nats")
print(f"entropy of the data: H = {entropy:.3f} nats")


def exact_bound_terms(diffusion, s2, variance, x0_squared=None):
    """Closed-form L_T, the L_{t-1} for paper t = 2..T, and L_0 of the exact-ε model on 1-D data N(0, s2).

    With ``x0_squared`` (a tensor (B,)) each term is the expectation given that example's x0 instead."""
    ab, alphas_, betas_ = diffusion.alpha_bar, diffusion.alphas, diffusion.betas  # whole tables, paper t = 1..T
    m2 = torch.tensor(s2) if x0_squared is None else x0_squared[:, None]  # E[x0²], or x0² per example
    k = (1 - ab).sqrt() / (ab * s2 + 1 - ab)  # ε* = k_t x_t, k_t = √(1 − ᾱ_t)/ν_t
    a = (1 - betas_ / (1 - ab).sqrt() * k) / alphas_.sqrt()  # μ_θ = a_t x_t  (Eq. 11)
    c1, c2 = diffusion.posterior_mean_coef_x0, diffusion.posterior_mean_coef_xt  # μ̃_t = c1 x0 + c2 x_t  (Eq. 7)
    u = c1 + (c2 - a) * ab.sqrt()  # μ̃_t − μ_θ = u_t x0 + r_t ε
    r = (c2 - a) * (1 - ab).sqrt()
    sigma2 = betas_ if variance == "beta" else diffusion.posterior_log_variance_clipped.exp()  # σ_t², β̃ clipped
    ratio = diffusion.posterior_variance[1:] / sigma2[1:]  # β̃_t/σ_t², paper t ≥ 2
    kl = 0.5 * (ratio - 1 - ratio.log()) + (u[1:] ** 2 * m2 + r[1:] ** 2) / (2 * sigma2[1:])  # L_{t−1}, Eq. 8
    decoder = (0.5 * torch.log(2 * math.pi * sigma2[0])
               + ((1 - a[0] * ab[0].sqrt()) ** 2 * m2 + a[0] ** 2 * (1 - ab[0])) / (2 * sigma2[0]))  # L_0
    prior = 0.5 * (ab[-1] * m2 - ab[-1] - torch.log1p(-ab[-1]))  # L_T = ½(ᾱ_T x0² − ᾱ_T − log(1 − ᾱ_T))
    return {"prior": prior.squeeze(-1), "kl": kl, "decoder_nll": decoder.squeeze(-1)}


print(f"{'':20}{'closed form':>12}{'elbo_terms':>12}{'elbo_terms - exact given x0':>30}")
exact_by_variance = {}
for variance, terms in elbo_by_variance.items():
    exact = exact_bound_terms(diffusion, 1.0, variance)
    exact_by_variance[variance] = exact
    exact_total = exact["prior"] + exact["kl"].sum() + exact["decoder_nll"]
    given_x0 = exact_bound_terms(diffusion, 1.0, variance, x0_squared=x0[:, 0] ** 2)
    residual = terms["total"] - (given_x0["prior"] + given_x0["kl"].sum(dim=1) + given_x0["decoder_nll"])
    residual_se = residual.std() / math.sqrt(len(residual))
    print(f"L, sigma^2 = {variance:8}{exact_total:12.4f}{terms['total'].mean():12.4f}"
          f"{residual.mean():+20.4f} ± {residual_se:.4f}")
    assert abs(residual.mean()) < 4 * residual_se, f"elbo_terms disagrees with the closed form ({variance})"
exact_beta, exact_tilde = exact_by_variance["beta"], exact_by_variance["beta_tilde"]
tight = float(exact_beta["prior"] + exact_beta["kl"].sum() + exact_beta["decoder_nll"])
print(f"closed form with sigma^2 = beta equals the entropy to 1e-10 (the bound is tight): "
      f"{abs(tight - entropy) < 1e-10}")
assert abs(tight - entropy) < 1e-10, "the closed-form bound with sigma^2 = beta is not the entropy"

fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
for variance, style in [("beta", "-"), ("beta_tilde", "--")]:
    label = r"$\sigma_t^2=\beta_t$" if variance == "beta" else r"$\sigma_t^2=\tilde\beta_t$"
    kl_mean = elbo_by_variance[variance]["kl"].mean(dim=0)  # L_{t−1} for paper t = 2, …, T
    axes[0].plot(paper_steps[1:], kl_mean, style, label=label)
    axes[1].plot(paper_steps[1:], kl_mean.cumsum(dim=0), style, label=label)
axes[0].set_yscale("log")
axes[0].set_ylabel("$L_{t-1}$ (nats, mean over examples)")
axes[0].set_title(r"KL terms of Eq. 5, exact-$\varepsilon$ model, data $\mathcal{N}(0, 1)$")
axes[1].set_ylabel(r"$L_1 + \dots + L_{t-1}$ (nats)")
axes[1].set_title("Running sum: where the bound is decided")
for ax in axes:
    ax.set_xscale("log")
    ax.set_xlabel("paper step $t$ (log scale)")
    ax.legend()
fig.tight_layout()
plt.show()


def kl_between(kl, first, last):
    """Sum of the closed-form L_{t−1} over paper steps first ≤ t ≤ last (column j holds paper t = j + 2)."""
    return float(kl[first - 2:last - 1].sum())


kl_beta = exact_beta["kl"]
print(f"closed form, sigma^2 = beta: sum of L_(t-1) over paper t = 2-9: {kl_between(kl_beta, 2, 9):.2f}, "
      f"10-99: {kl_between(kl_beta, 10, 99):.2f}, 100-999: {kl_between(kl_beta, 100, 999):.2f}, "
      f"300-1000: {kl_between(kl_beta, 300, 1000):.2f} nats   (alpha_bar_300 = {diffusion.alpha_bar[299]:.2f})")
gap_kl = exact_tilde["kl"] - exact_beta["kl"]
gap_decoder = float(exact_tilde["decoder_nll"] - exact_beta["decoder_nll"])
gap_total = float(gap_kl.sum()) + gap_decoder
print(f"gap between beta_tilde and beta: {gap_total:.3f} nats = L_0 {gap_decoder:.3f}"
      f" + t = 2-10 {kl_between(gap_kl, 2, 10):.3f} + t = 11-100 {kl_between(gap_kl, 11, 100):.3f}"
      f" + t = 101-1000 {kl_between(gap_kl, 101, 1000):.3f}")

# %% [markdown]
# With $\sigma_t^2=\beta_t$ the bound equals the entropy: exactly in closed form, and within the Monte-Carlo error for
# `elbo_terms`, which agrees with the closed form for both variances. The model's reverse chain *is* the true one, so
# nothing is lost. The $L_{t-1}$ are not zero (they compare with $q(x_{t-1}\mid x_t, x_0)$, which knows $x_0$); the
# large negative $L_0$ of a very sharp decoder balances them. Each KL term is largest at small $t$, yet each of the
# ranges $t$ = 2–9, 10–99 and 100–999 adds more than 1 nat (printed): every noise level contributes, and only 0.25
# nats come after $t = 300$ ($\bar\alpha_{300} = 0.40$). With $\tilde\beta_t$
# the steps are too narrow at small $t$ (Section 11) and the bound is 0.579 nats worse, all of it early in the chain:
# 0.114 nats in $L_0$, 0.395 in $t$ = 2–10, 0.065 in $t$ = 11–100 and 0.005 in the remaining 900 steps.
#
# **Eq. 3 equals Eq. 5.** Section 3.1 changed the *estimator*, not the value. Estimate Eq. 3 directly from whole
# simulated forward trajectories $x_0\to x_1\to\dots\to x_T$, and compare with `elbo_terms`, on Section 8's data
# $\mathcal N(1, 0.5^2)$ with $\sigma_t^2 = \beta_t$ and, to keep 20 000 trajectories cheap, $T = 50$:

# %%
@torch.no_grad()
def bound_eq3(eps_model, diffusion, x0, variance, generator):
    """Monte-Carlo estimate of Eq. 3, −log p_θ(x_{0:T}) + log q(x_{1:T} | x0), one forward trajectory per example."""
    log_ratio = torch.zeros(x0.shape[0])
    x_prev = x0
    for t_code in range(diffusion.T):  # forward: x_t ~ q(x_t | x_{t−1}), paper t = t_code + 1
        t = timesteps(t_code, x0.shape[0])
        beta = extract(diffusion.betas, t, x_prev)
        x = (1 - beta).sqrt() * x_prev + beta.sqrt() * torch.randn(x0.shape, generator=generator)  # Eq. 2
        p = diffusion.p_mean_variance(eps_model(x, t), x, t, variance=variance)  # p_θ(x_{t−1} | x_t)
        log_q = gaussian_log_likelihood(x, (1 - beta).sqrt() * x_prev, beta.log())  # log q(x_t | x_{t−1})
        log_p = gaussian_log_likelihood(x_prev, p.mean, p.log_variance)  # log p_θ(x_{t−1} | x_t)
        log_ratio += (log_q - log_p).sum(dim=1)
        x_prev = x
    log_ratio -= gaussian_log_likelihood(x_prev, torch.zeros(()), torch.zeros(())).sum(dim=1)  # − log p(x_T)
    return log_ratio


x0 = gaussian.sample(20_000, generator=torch.Generator().manual_seed(18))  # N(1, 0.5²), Section 8
eps_50 = optimal_eps(gaussian, diffusion_50)
eq3 = bound_eq3(eps_50, diffusion_50, x0, "beta", torch.Generator().manual_seed(19))
eq5 = elbo_terms(eps_50, diffusion_50, x0, variance="beta", decoder="gaussian",
                 generator=torch.Generator().manual_seed(20))["total"]
print(f"Eq. 3 (whole trajectories): L = {eq3.mean():.4f} ± {eq3.std() / math.sqrt(len(eq3)):.4f} nats")
print(f"Eq. 5 (KL terms):           L = {eq5.mean():.4f} ± {eq5.std() / math.sqrt(len(eq5)):.4f} nats")
print(f"data entropy:               H = {0.5 * math.log(2 * math.pi * math.e * s**2):.4f} nats")
difference = eq3 - eq5  # per example: both estimates share x0, so their errors are correlated
z_eq = abs(difference.mean()) / (difference.std() / math.sqrt(len(difference)))
print(f"Eq. 3 - Eq. 5 = {difference.mean():+.4f} nats, {z_eq:.1f} standard errors from 0")
assert z_eq < 4, "Eq. 3 and Eq. 5 estimate different values"

# %% [markdown]
# The two agree within their Monte-Carlo errors (printed) and lie above the entropy: with 50 steps the reverse
# variances are off (Section 11). Eq. 5 integrates each KL term over $x_{t-1}$ in closed form, yet here it is the
# noisier. Its real gain is that each
# term needs a single draw $x_t\sim q(x_t\mid x_0)$ (Eq. 4), so one random $t$ per example gives an unbiased estimate
# of the whole bound: the same trick Algorithm 1 uses on $L_\text{simple}$, the bound without its weights.

# %% [markdown]
# ## 13. Exercises
#
# Each exercise has a cell for your answer (it holds `None` until you fill it in) and a cell that checks it. The
# solutions are at the end of the notebook.
#
# **Exercise 1 (posterior variance).** Write `beta_tilde_from_betas(betas)` that takes a 0-based table of $\beta$s
# (a float64 tensor of length $T$) and returns $\tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t$
# for every step, with $\bar\alpha_0 = 1$ (so the first entry is 0). Use only `torch.cumprod`, `torch.cat` and arithmetic.

# %%
beta_tilde_from_betas = None  # your function here


# %%
def check_exercise_1(fn):
    """Compare the reader's β̃ with Diffusion.posterior_variance for three schedules."""
    if fn is None:
        print("Exercise 1: not attempted yet")
        return
    for name in ["linear", "cosine", "sigmoid"]:
        reference = Diffusion.from_schedule(name, T=1000)
        got = fn(reference.betas.clone())
        assert isinstance(got, torch.Tensor) and got.shape == reference.betas.shape, (
            f"expected a tensor of shape {tuple(reference.betas.shape)}, got {getattr(got, 'shape', type(got))}")
        assert abs(float(got[0])) < 1e-12, (
            f"the first entry must be 0 (alpha_bar_0 = 1, the last reverse step is deterministic), got {float(got[0])}")
        bad = ~torch.isclose(got, reference.posterior_variance, rtol=1e-9, atol=1e-15)
        assert not bad.any(), (
            f"{name} schedule: wrong value at 0-based t = {int(bad.nonzero()[0])}: got {float(got[bad][0]):.6g}, "
            f"expected {float(reference.posterior_variance[bad][0]):.6g}. Hint: alpha_bar_prev is alpha_bar shifted "
            f"right by one, with a 1 in front.")
    print("Exercise 1: correct")


check_exercise_1(beta_tilde_from_betas)

# %% [markdown]
# **Exercise 2 (from $v$ to $\varepsilon$).** A network predicts $v$. Write `eps_from_v(xt, alpha_bar, v)` that
# returns the implied noise $\hat\varepsilon$ (Section 6); `alpha_bar` is a tensor of $\bar\alpha_t$ values that
# broadcasts against `xt`.

# %%
eps_from_v = None  # your function here


# %%
def check_exercise_2(fn):
    """Compare the reader's conversion with Diffusion.predict_eps_from_v on random inputs."""
    if fn is None:
        print("Exercise 2: not attempted yet")
        return
    g = torch.Generator().manual_seed(20)
    xt, v = torch.randn(64, 2, generator=g), torch.randn(64, 2, generator=g)
    t = diffusion.sample_timesteps(64, generator=g)
    got = fn(xt, extract(diffusion.alpha_bar, t, xt), v)
    expected = diffusion.predict_eps_from_v(xt, t, v)
    assert isinstance(got, torch.Tensor) and got.shape == expected.shape, (
        f"expected a tensor of shape {tuple(expected.shape)}, got {getattr(got, 'shape', type(got))}")
    assert torch.allclose(got, expected, rtol=1e-9, atol=1e-12), (
        "wrong value. Hint: (x_t, v) is (x0, eps) rotated by phi_t with cos(phi_t) = sqrt(alpha_bar); "
        "rotate back and read off the eps component.")
    print("Exercise 2: correct")


check_exercise_2(eps_from_v)

# %% [markdown]
# **Exercise 3 (which variance is exact?).** Data is $\mathcal N(0, s^2)$ with $s = 0.3$, the noise predictor is the
# exact $\varepsilon^*$, and $T = 1000$. Using Section 11's formula $\operatorname{Var}(x_{t-1}\mid x_t) = \beta_t \nu_{t-1}/\nu_t$,
# compute the true reverse variance at paper step $t = 5$ (code index 4) as a float `true_var_t5`. Is it closer to
# $\beta_5$ or to $\tilde\beta_5$? Answer with `closer_to = "beta"` or `closer_to = "beta_tilde"`.

# %%
true_var_t5 = None  # your number here
closer_to = None  # "beta" or "beta_tilde"


# %%
def check_exercise_3(value, closer_to):
    """Compare the reader's Var(x_4 | x_5) with Gaussian conditioning of the pair (x_4, x_5), and the reader's choice
    of the closer of β_5 and β̃_5 with the one closer to that reference."""
    if value is None:
        print("Exercise 3: not attempted yet")
        return
    t_code, s2 = 4, 0.3**2  # paper t = 5; data N(0, 0.3²)
    ab, ab_prev, alpha = diffusion.alpha_bar[t_code], diffusion.alpha_bar_prev[t_code], diffusion.alphas[t_code]
    var_prev = ab_prev * s2 + 1 - ab_prev  # Var(x_4)
    cov = alpha.sqrt() * var_prev  # Cov(x_4, x_5), since x_5 = √α_5 x_4 + √β_5 z
    var_now = ab * s2 + 1 - ab  # Var(x_5)
    expected = float(var_prev - cov**2 / var_now)  # Var(x_4 | x_5), a second route to the same number
    assert isinstance(value, float), f"true_var_t5 should be a float, got {type(value).__name__}"
    assert abs(value - expected) < 1e-6 * expected, (
        f"got {value:.6g}, expected {expected:.6g}. Hint: nu_t = alpha_bar_t s^2 + 1 - alpha_bar_t, with alpha_bar_t at "
        f"code index t_code and alpha_bar_(t-1) at code index t_code - 1.")
    beta_5, beta_tilde_5 = float(diffusion.betas[t_code]), float(diffusion.posterior_variance[t_code])
    answer = "beta" if abs(expected - beta_5) < abs(expected - beta_tilde_5) else "beta_tilde"
    assert closer_to in ("beta", "beta_tilde"), f'closer_to should be "beta" or "beta_tilde", got {closer_to!r}'
    assert closer_to == answer, (
        f"Var = {value:.4e} is correct, but compare it with beta_5 = {beta_5:.4e} and beta_tilde_5 = {beta_tilde_5:.4e}: "
        f"which is nearer? Hint: at t = 5 the noise added so far, 1 - alpha_bar_5 = {1 - float(ab):.1e}, is far below "
        f"the data's variance s^2 = {s2}.")
    print(f"Exercise 3: correct. Var = {value:.4e}, beta_5 = {beta_5:.4e}, beta_tilde_5 = {beta_tilde_5:.4e}: "
          f"closer to {answer}: at small t the noise is much smaller than the data's spread, so the data looks wide.")


check_exercise_3(true_var_t5, closer_to)

# %% [markdown]
# ## 14. Summary and what comes next
#
# - A small reverse noising step is nearly Gaussian, and its mean follows exactly from the score (Section 1). So the
#   model is a chain of Gaussians $p_\theta(x_{t-1}\mid x_t) = \mathcal N(\mu_\theta(x_t,t), \sigma_t^2 I)$ (Eq. 1).
# - Conditioned on $x_0$ the reverse step is exactly Gaussian: $q(x_{t-1}\mid x_t,x_0) = \mathcal N(\tilde\mu_t,\tilde\beta_t I)$
#   (Eqs. 6–7).
# - The variational bound splits into $L_T + \sum_{t>1} L_{t-1} + L_0$ (Eq. 5), each $L_{t-1}$ a KL between Gaussians
#   that reduces to matching means (Eq. 8). Writing the mean through the noise gives Eqs. 10–12; dropping the weight
#   $\lambda_t$ gives $L_\text{simple} = \mathbb E\|\varepsilon-\varepsilon_\theta(x_t,t)\|^2$ (Eq. 14), which
#   down-weights the easy small-$t$ steps.
# - The best noise predictor is $\mathbb E[\varepsilon\mid x_t] = -\sqrt{1-\bar\alpha_t}\,\nabla\log q(x_t)$ (Tweedie),
#   and with it Eq. 11 gives the exact reverse mean.
# - $\varepsilon$, $x_0$ and $v$ predictions are interchangeable given $x_t$ (a rotation); as losses they differ
#   by a weighting over $t$. With $\sigma_t^2=\tilde\beta_t$ the bound's weighting is $\frac12(\mathrm{SNR}(t-1)-\mathrm{SNR}(t))$
#   on $\|x_0-\hat x_0\|^2$.
# - Algorithms 1 and 2 follow; no noise is added at the last step. As $\sigma_t^2$, $\beta_t$ is exact for
#   $\mathcal N(0, I)$ data, $\tilde\beta_t$ for a single point; for Gaussian data with $s \le 1$ the truth lies
#   between them.
# - With the exact noise predictor, Algorithm 2 reproduces a Gaussian and a Gaussian mixture as well as fresh data
#   does, and the bound reaches the entropy for $\mathcal N(0, 1)$ data. A 10 % error in $\varepsilon$ changes the
#   spread by about 10 %; errors at large $t$ move mass between modes, errors at small $t$ reshape the modes.
#
# **Next, notebook 03:** we drop the closed-form $\varepsilon^*$ and *learn* it: a small MLP trained with Algorithm 1
# on 2-D toy data, sampled with Algorithm 2, and compared with what we now know a perfect denoiser does.

# %% [markdown]
# ## Solutions
#
# Try the exercises first. Running these cells fills in the answers and runs the same checks.

# %%
def beta_tilde_from_betas(betas):
    alpha_bar = torch.cumprod(1 - betas, dim=0)  # ᾱ_t
    alpha_bar_prev = torch.cat([torch.ones(1), alpha_bar[:-1]])  # ᾱ_{t−1}, ᾱ_0 = 1
    return (1 - alpha_bar_prev) / (1 - alpha_bar) * betas  # Eq. 7


def eps_from_v(xt, alpha_bar, v):
    return (1 - alpha_bar).sqrt() * xt + alpha_bar.sqrt() * v  # ε = √(1 − ᾱ) x_t + √ᾱ v


def reverse_variance(t_code, data_std):
    """Var(x_{t−1} | x_t) = β_t ν_{t−1}/ν_t for data N(0, s²), 0-based t."""
    nu = diffusion.alpha_bar[t_code] * data_std**2 + 1 - diffusion.alpha_bar[t_code]  # ν_t
    nu_prev = diffusion.alpha_bar_prev[t_code] * data_std**2 + 1 - diffusion.alpha_bar_prev[t_code]  # ν_{t−1}
    return float(diffusion.betas[t_code] * nu_prev / nu)


true_var_t5 = reverse_variance(4, 0.3)
closer_to = "beta"

check_exercise_1(beta_tilde_from_betas)
check_exercise_2(eps_from_v)
check_exercise_3(true_var_t5, closer_to)
for wrong in [(float(diffusion.betas[4]), "beta"), (true_var_t5, "beta_tilde")]:  # the checks can fail
    try:
        check_exercise_3(*wrong)
        raise RuntimeError(f"exercise 3 accepted {wrong}")
    except AssertionError as rejection:
        print(f"Exercise 3 with {wrong[0]:.4e}, {wrong[1]!r} instead: rejected ({rejection})")

# %%
# NBVAL_IGNORE_OUTPUT
print(f"notebook run time: {time.perf_counter() - notebook_start:.0f} s (profile: {config.profile()})")

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
# # 03 — Diffusion on 2-D toy data with an MLP
#
# Notebooks 01 and 02 built the forward process, the reverse process and the training objective, and sampled with a
# *perfect* noise predictor computed in closed form. Here we replace that oracle by a **neural network trained from
# samples**, on point clouds in the plane, where every step of the method can be seen.
#
# **You will learn**
# - how to hand the timestep $t$ to a network, and why a 2-D denoiser must have it: the sinusoidal embedding
#   (Vaswani et al. 2017; Ho et al. 2020, Appendix B), plus Fourier features of the input that let a small MLP draw
#   sharp shapes;
# - Algorithm 1 of Ho et al. 2020 as a training loop you can read in full, and what
#   `ddpm_helpers.training.train` (used again by notebooks 04 and 05) adds to it: a learning-rate schedule,
#   checkpoints and exact resume;
# - Algorithm 2 written out, then in pictures: $x_t$ and the predicted $\hat x_0$, trajectories, an animation, and
#   the learned $\varepsilon$ field next to the exact one;
# - how to *measure* a generative model when the true density is known: the exact log-likelihood of samples, the share
#   of modes covered, an energy distance, and the ELBO of held-out points next to their true negative log-likelihood;
# - what the number of steps $T$, the reverse variance $\sigma_t^2$, the noise schedule and the prediction target
#   ($\varepsilon$, $x_0$ or $v$) change at an equal training budget.
#
# **You should know** notebooks 01 (forward process, schedules) and 02 (reverse process, $L_\text{simple}$,
# $\varepsilon$/$x_0$/$v$ parameterizations, Algorithm 2 with the exact $\varepsilon^*$), and how to train a small
# network in PyTorch.
#
# **Run time.** Every network is a small MLP (≤ 175 k parameters) trained for at most a thousand Adam steps; Section 6
# trains 23 of them. The `quick` profile trains less and draws fewer points.
#
# | machine | `DDPM_PROFILE=quick` | `DDPM_PROFILE=full` |
# | --- | --- | --- |
# | CPU (1 thread) | ≈ 50 s (estimate) | 201 s (measured, last cell) |
# | Colab GPU (estimate) | ≈ 30 s | ≈ 1–2 min |
#
# **Papers.** Equation and algorithm numbers refer to Ho, Jain & Abbeel (2020), *Denoising Diffusion Probabilistic
# Models* ([arXiv:2006.11239](https://arxiv.org/abs/2006.11239)) unless another paper is named. Also used:
# Vaswani et al. (2017) for the sinusoidal embedding ([arXiv:1706.03762](https://arxiv.org/abs/1706.03762)),
# Rahaman et al. (2019) on spectral bias ([arXiv:1806.08734](https://arxiv.org/abs/1806.08734)),
# Mildenhall et al. (2020) and Tancik et al. (2020) for Fourier features
# ([arXiv:2003.08934](https://arxiv.org/abs/2003.08934), [arXiv:2006.10739](https://arxiv.org/abs/2006.10739)),
# Nichol & Dhariwal (2021) for the cosine schedule ([arXiv:2102.09672](https://arxiv.org/abs/2102.09672)),
# Chen (2023) and Jabri et al. (2023) for the sigmoid schedule ([arXiv:2301.10972](https://arxiv.org/abs/2301.10972),
# [arXiv:2212.11972](https://arxiv.org/abs/2212.11972)),
# Salimans & Ho (2022) for $v$-prediction ([arXiv:2202.00512](https://arxiv.org/abs/2202.00512)), Székely & Rizzo
# (2013) for the energy distance, and Sun et al. (2025) on image denoisers that are not told $t$
# ([arXiv:2502.13129](https://arxiv.org/abs/2502.13129)). The full list is in
# [`papers/README.md`](https://github.com/ddpm-from-scratch/ddpm-from-scratch/blob/main/papers/README.md).
#
# **Timestep convention.** As in notebooks 01–02: the paper counts $t = 1,\dots,T$, code counts from 0, and code index
# `t` is the paper's step $t+1$ (`diffusion.alpha_bar[t]` is $\bar\alpha_{t+1}$). Titles of figures use the paper's
# numbering; code comments say which one they mean.

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
import inspect
import time

import matplotlib.pyplot as plt
import torch
from matplotlib.collections import LineCollection
from matplotlib.colors import LogNorm

from ddpm_helpers import config
from ddpm_helpers.analytic import GaussianMixture, optimal_eps
from ddpm_helpers.checkpoint import load_checkpoint
from ddpm_helpers.datasets import DATASETS, ring_mixture, sample_toy
from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.elbo import elbo_terms
from ddpm_helpers.evaluation.metrics2d import energy_distance, mode_coverage
from ddpm_helpers.losses import diffusion_loss
from ddpm_helpers.nn.embeddings import sinusoidal_embedding
from ddpm_helpers.nn.mlp import MLP, ResidualBlock, fourier_features
from ddpm_helpers.plotting import plot_loss_curve, quiver_2d, save_animation, scatter_2d, scatter_grid
from ddpm_helpers.samplers import ddpm_sample
from ddpm_helpers.training import TrainConfig, lr_at_step, train
from ddpm_helpers.training.ema import EMA
from ddpm_helpers.utils import count_parameters

notebook_start = time.perf_counter()
config.seed_everything(0)
torch.set_num_threads(1)  # one CPU thread, as in the header's run-time table
device = config.get_device()
outputs = config.outputs_dir("03_toy_2d")

# Sizes of everything that costs time: the quick profile trains less and draws fewer points.
BARE_STEPS = config.pick(quick=50, full=400)  # Adam steps of the bare training loop (Section 3.1)
SWISS_STEPS = config.pick(quick=100, full=1000)  # Adam steps of the swiss-roll model trained by `train` (Section 3.2)
SMALL_STEPS = config.pick(quick=60, full=500)  # steps of the Gaussian-mixture model and of each ablation
N_SAMPLES = config.pick(quick=500, full=2000)  # points drawn from the main model
T = 200  # diffusion steps of the main models (the ablation in Section 6 also tries 50 and 1000)
print(f"profile {config.profile()}, device {device}, torch {torch.__version__}")

# %% [markdown]
# ## 1. Data: point clouds in the plane
#
# Each data point $x_0$ is a vector in $\mathbb R^2$, so a data set is a scatter plot and a generative model is good
# when its scatter plot looks like the data's. `ddpm_helpers.datasets.toy2d` generates five distributions in code, each
# from a seeded `torch.Generator`:
#
# - **two moons** and the **swiss roll**: thin curved manifolds, the classic toy sets;
# - the **ring of Gaussians**: 8 equal-weight isotropic Gaussians $\mathcal N(\mu_k, 0.1^2 I)$ on a circle. It is a
#   `GaussianMixture` (notebook 02), so its density $p(x)$ is known *exactly*; Section 5 uses it to measure the model;
# - a **checkerboard**: uniform density with sharp edges;
# - the word **DDPM**: points along pen strokes, the hardest of the five for a small network.
#
# All of them are **standardized**: shifted to mean 0 and scaled so that $\mathbb E\|x_0\|^2 = 2$ (variance 1 per
# axis on average, one scale for both axes so shapes keep their proportions). The scale matters: the forward process
# ends at $\mathcal N(0, I)$ (Eq. 4 with $\bar\alpha_T\approx 0$), so data of variance about 1 makes every step
# of the chain move the points by a similar relative amount, as for images scaled to $[-1, 1]$.

# %%
toy_generator = torch.Generator().manual_seed(0)
toy_sets = {name: sample_toy(name, 2000, toy_generator) for name in DATASETS}
fig = scatter_grid(toy_sets, ncols=5, size=2.6)
fig.suptitle("2000 points of each toy distribution (standardized)", y=1.0, va="bottom")  # above the panel titles
plt.show()
for name, x in toy_sets.items():
    print(f"{name:18s} mean ({x[:, 0].mean():+.2f}, {x[:, 1].mean():+.2f})   E|x|² = {x.pow(2).sum(1).mean():.2f}")

# %% [markdown]
# Our main data set is the **swiss roll**: one thin spiral arm that a blurry model cannot fake. We draw a fixed
# training set of 20 000 points, as a real data set would be.

# %%
swiss_train = sample_toy("swiss_roll", 20_000, torch.Generator().manual_seed(1))
diffusion = Diffusion.from_schedule("linear", T)
print(diffusion)
print(f"alpha_bar_T = {diffusion.alpha_bar[-1]:.2e}, sqrt(alpha_bar_T) = {diffusion.sqrt_alpha_bar[-1]:.4f}; "
      f"with T = 1000: alpha_bar_T = {Diffusion.from_schedule('linear', 1000).alpha_bar[-1]:.2e}")

# %% [markdown]
# $T = 200$ instead of the paper's 1000: `linear_beta_schedule` rescales the paper's $\beta_1 = 10^{-4}$ …
# $\beta_T = 0.02$ by $1000/T$ (as Nichol & Dhariwal's code does), so $\bar\alpha_t$ follows almost the same curve in $t/T$ and
# $\bar\alpha_T = 3.0\cdot10^{-5}$ ($4.0\cdot10^{-5}$ for $T = 1000$, both printed above): the chain still ends at pure
# noise. A sample then takes 200 network calls instead of 1000; Section 6 measures what that costs in quality.
#
# ## 2. The denoiser: an MLP that is told the timestep
#
# ### 2.1 Why a 2-D denoiser must be told $t$
#
# Training (Eq. 14) asks one network $\varepsilon_\theta(x_t, t)$ to predict the noise $\varepsilon$ in
# $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon$ (Eq. 4) at *every* noise level. The best
# possible answer is the posterior mean $\varepsilon^*(x_t, t) = \mathbb E[\varepsilon\mid x_t]$ (notebook 02), and it
# depends on $t$ as much as on $x_t$. Take one point and ask the exact $\varepsilon^*$ of the ring of Gaussians at
# different steps:

# %%
ring = ring_mixture()  # the 8-Gaussian ring as an exact GaussianMixture
eps_star = optimal_eps(ring, diffusion)
point = ring.means[0:1].float() + torch.tensor([[0.15, 0.0]])  # 0.15 to the right of the first mode's centre
print(f"x = ({point[0, 0]:.3f}, {point[0, 1]:.3f}); by symmetry eps* = (e, 0), we print e")
answers = {}  # paper t → e
for t in [0, 20, 100, 199]:  # 0-based: paper steps 1, 21, 101, 200
    e = answers[t + 1] = float(eps_star(point, torch.tensor([t]))[0, 0])
    print(f"paper t = {t + 1:3d}: sqrt(1 - alpha_bar) = {diffusion.sqrt_one_minus_alpha_bar[t]:.3f}   e = {e:+.3f}")
print(f"e at paper t = 200 over e at paper t = 1: {answers[200] / answers[1]:.1f}")

# %% [markdown]
# At $t=1$ the noise is tiny ($\sqrt{1-\bar\alpha_1}\approx 0.02$), so the 0.15 offset from the mode centre is mostly
# the data's own spread: the network should predict a small $\varepsilon$. At $t = 200$ the point is almost pure
# noise, $x_t\approx\varepsilon$, and the right answer is $x_t$ itself. Same input $x$, answers about five times
# apart (last line): a network that does not know $t$ could only predict an average over all noise levels, and every reverse step
# of Algorithm 2 would use the wrong one. That is a property of low-dimensional data: one point in the plane cannot
# show how much noise it carries. An image can, through its thousands of pixels, and many image denoisers lose little
# when they are not told $t$ (Sun et al. 2025). Every network of
# this series is told $t$.
#
# ### 2.2 The sinusoidal time embedding
#
# The code's integer $t\in\{0,\dots,T-1\}$ is a poor network input: one number whose scale is unrelated to the data.
# Following the Transformer's positional encoding (Vaswani et al. 2017, §3.5), as Ho et al. do for $t$ (Appendix B),
# we map it to $d$ sines and cosines at geometrically spaced frequencies:
#
# $$e(t)_i = \sin(\omega_i t),\qquad e(t)_{d/2+i} = \cos(\omega_i t),\qquad \omega_i = 10000^{-i/(d/2)},\quad i = 0,\dots,d/2-1.$$
# The sines and cosines sit in two blocks, as in Ho et al.'s code (Vaswani et al. interleave them; the order of the
# columns does not matter to a network), and $\omega_i$ is Vaswani's (Ho et al.'s code divides by $d/2-1$). Nearby
# steps get nearby vectors; the network passes $e(t)$ through a small MLP of its own. `sinusoidal_embedding(t, dim)`
# computes it:

# %%
emb = sinusoidal_embedding(torch.arange(T), 32)  # (T, 32)
fig, axes = plt.subplots(1, 3, figsize=(15, 3.2), gridspec_kw={"width_ratios": [2, 1.1, 1.4]})
image = axes[0].imshow(emb.T, aspect="auto", cmap="RdBu", vmin=-1, vmax=1, origin="lower")
axes[0].set(xlabel="0-based timestep t", ylabel="embedding dimension", title="e(t): sines (0–15), cosines (16–31)")
fig.colorbar(image, ax=axes[0], label="value of the column")
similarity = emb @ emb.T / 16  # cosine similarity: every e(t) has squared norm 16 = d/2
similarity_image = axes[1].imshow(similarity, cmap="viridis", origin="lower")
axes[1].set(xlabel="0-based t", ylabel="0-based t'", title="e(t)·e(t') / (d/2)")
fig.colorbar(similarity_image, ax=axes[1], label="cosine similarity")
axes[2].plot(similarity[0], lw=1)  # row t = 0: the similarity against the lag t' − t
axes[2].set(xlabel="lag t' − t (steps)", ylabel="e(t)·e(t') / (d/2)", title="one row of the middle panel", ylim=(0, 1.02))
plt.tight_layout()
plt.show()

omega = 10_000 ** (-torch.arange(16) / 16)  # ω_i, i = 0 … d/2 − 1
lags = torch.arange(T)[:, None] - torch.arange(T)[None, :]  # t − t'
formula = torch.cos(lags[..., None] * omega).mean(-1)  # (2/d) Σ_i cos(ω_i (t − t'))
row = similarity[0]
print(f"largest |similarity − (2/d) Σ cos(ω_i (t − t'))| over all pairs: {(similarity - formula).abs().max():.1e}")
print(f"similarity at lag 1: {row[1]:.2f}, lag 3: {row[3]:.2f}; over lags 5–199 it stays between {row[5:].min():.2f} "
      f"and {row[5:].max():.2f}; period of the fastest column, 2π/ω_0 = {2 * torch.pi / omega[0]:.1f} steps")
slow = [i for i in range(16) if omega[i] * (T - 1) < 0.4]  # the columns whose phase ω_i (T − 1) stays below 0.4 rad
print(f"columns that turn through less than 0.4 rad over the {T - 1} steps: sines {slow[0]}–{slow[-1]}, cosines "
      f"{slow[0] + 16}–{slow[-1] + 16}; the fastest of them, ω_{slow[0]} = {omega[slow[0]]:.5f}, turns through "
      f"{omega[slow[0]] * (T - 1):.2f} rad")

# %% [markdown]
# The right panels show what the network receives. The similarity of two embeddings depends only on the lag
# $t - t'$, so the middle panel is made of stripes parallel to the diagonal: by $\sin a\sin b + \cos a\cos b =
# \cos(a-b)$,
#
# $$\frac{e(t)\cdot e(t')}{d/2} = \frac{2}{d}\sum_{i=0}^{d/2-1}\cos\big(\omega_i (t-t')\big),$$
#
# which the first printed line checks. It falls from 1 to 0.77 within three steps and then *oscillates* (right
# panel) instead of decaying to 0: the fastest column ($\omega_0 = 1$) repeats every $2\pi\approx 6.3$ steps, the
# slower ones add wider swings, and the slowest stay nearly equal for all $t$, which keeps every similarity positive:
# far-apart steps are not orthogonal. The fast
# columns tell neighbouring steps apart but repeat; the middle
# ones, whose periods are comparable with $T$, separate far-apart steps. The slowest (dimensions 11–15 and 27–31, at most 0.35 rad of phase, last line)
# barely move: they were designed for positions up to 10 000, and some implementations rescale $t$ to $[0, 1000)$ to
# use more of them.
#
# ### 2.3 Fourier features of the input
#
# The input $x_t$ is only two numbers. A plain MLP on two numbers learns smooth functions first ("spectral bias",
# Rahaman et al. 2019), and the swiss roll's thin arm or the tight modes of the ring need a sharp one near the data.
# The cure (Tancik et al. 2020) is the same trick as for $t$: feed sines and cosines of the coordinates too,
#
# $$\gamma(x) = \big(x,\ \sin(\omega_k x),\ \cos(\omega_k x)\big)_{k=0}^{K-1},\qquad \omega_k = 2^k\,\tfrac{\pi}{2},$$
# applied to each coordinate — a variant of NeRF's positional encoding (Mildenhall et al. 2020, Eq. 4, which uses $\omega_k = 2^k\pi$; here half
# that, and $x$ itself kept). With $K=6$ octaves the
# wavelengths run from 4 (the size of the data) down to 0.125 (printed below). Section 6 trains the same model without them.
#
# ### 2.4 Residual blocks
#
# The network is a stack of pre-norm residual blocks, each told the time embedding:
#
# $$h \leftarrow h + W_2\,\mathrm{SiLU}\big(W_1\,\mathrm{LayerNorm}(h) + U\,\mathrm{MLP}(e(t))\big),$$
# between an input layer $h = W_\text{in}\gamma(x_t)$ and an output layer $\varepsilon_\theta = W_\text{out}\,
# \mathrm{SiLU}(h)$ that starts at zero. The skip connections keep the signal and its gradient flowing, LayerNorm keeps
# the input of each block's branch at a fixed scale (the stream $h$ itself is not normalized), and adding the time signal inside *every* block lets each layer behave
# differently at each noise level. Here is the whole network, as `ddpm_helpers.nn` defines it, embedding included
# (the `check_*` calls and the tests in `forward` only turn bad input into clear errors):

# %%
for part in (sinusoidal_embedding, fourier_features, ResidualBlock, MLP):
    print(inspect.getsource(part))

# %%
torch.manual_seed(0)
swiss_model = MLP(data_dim=2, hidden=128, num_blocks=3, time_dim=32, fourier_octaves=6)  # the swiss roll's network
wavelengths = 2 * torch.pi / (2.0 ** torch.arange(6) * torch.pi / 2)  # 2π/ω_k, k = 0 … 5
print(f"{count_parameters(swiss_model):,} parameters; "
      f"input features per point: {fourier_features(swiss_train[:1], 6).shape[1]}; "
      f"Fourier wavelengths 2π/ω_k from {wavelengths[0]:.3f} (k = 0) to {wavelengths[-1]:.3f} (k = 5)")

# %% [markdown]
# **Exercise 1 (the time embedding).** Write `my_time_embedding(t, dim)` that returns the $(B, d)$ matrix $e(t)$ of
# Section 2.2 for a LongTensor `t` of shape $(B,)$ and an even `dim`, using only `torch.arange`, `torch.exp` (or
# `**`), `torch.sin`, `torch.cos` and `torch.cat`.

# %%
my_time_embedding = None  # your function here


# %%
def check_exercise_1(fn):
    """Compare the reader's embedding with sinusoidal_embedding for two sizes."""
    if fn is None:
        print("Exercise 1: not attempted yet")
        return
    t = torch.arange(T)
    for dim in (8, 32):
        got, expected = fn(t, dim), sinusoidal_embedding(t, dim)
        assert isinstance(got, torch.Tensor) and got.shape == expected.shape, (
            f"expected shape {tuple(expected.shape)}, got {getattr(got, 'shape', type(got))}")
        assert torch.allclose(got.float(), expected, atol=1e-4), (
            f"dim={dim}: values differ, e.g. row t=1 is {got[1, :4].tolist()} instead of {expected[1, :4].tolist()}. "
            "Hint: sines in the first half of the columns, cosines in the second, ω_i = 10000**(-i / (dim // 2)).")
    print("Exercise 1: correct")


check_exercise_1(my_time_embedding)

# %% [markdown]
# ## 3. Training: Algorithm 1
#
# Algorithm 1 repeats one step until it converges: draw $x_0$ from the data, $t\sim\mathcal U\{1,\dots,T\}$ and
# $\varepsilon\sim\mathcal N(0, I)$, and take a gradient step on
#
# $$L_\text{simple}(\theta) = \mathbb E_{t,x_0,\varepsilon}\Big[\big\|\varepsilon-\varepsilon_\theta\big(\sqrt{\bar\alpha_t}\,x_0+\sqrt{1-\bar\alpha_t}\,\varepsilon,\ t\big)\big\|^2\Big]\qquad\text{(Eq. 14)}.$$
#
# ### 3.1 The bare loop
#
# A training loop puts three things around that step: an optimizer (Adam); gradient clipping, which rescales every
# gradient of norm above 1 to norm 1 (the loop prints how often that happens); and an exponential moving average (EMA) of the weights, which averages out the noise of
# the last steps and is what we sample with. Update $n$ of the EMA is
#
# $$\theta_\text{ema}\leftarrow d_n\,\theta_\text{ema} + (1-d_n)\,\theta,\qquad d_n = \min\Big(d,\ \frac{1+n}{10+n}\Big):$$
# the small early $d_n$ forget the random initial weights fast, then $d_n$ settles at $d$ (Ho et al. use
# $d = 0.9999$, Appendix B; for our short runs we take 0.995). Here is all of it, on a fresh copy of the network of
# Section 2.4, at a constant learning rate for `BARE_STEPS` steps (400 in the full profile). The lines from `t` to
# `loss` are Algorithm 1's draws and loss, with the code's 0-based `t`:

# %%
# NBVAL_IGNORE_OUTPUT
torch.manual_seed(0)
bare_model = MLP(hidden=128, num_blocks=3, time_dim=32, fourier_octaves=6)
bare_ema = copy.deepcopy(bare_model).requires_grad_(False)  # θ_ema: the weights we sample with
optimizer = torch.optim.Adam(bare_model.parameters(), lr=2e-3)
generator = torch.Generator().manual_seed(0)
start, bare_losses, clipped = time.perf_counter(), [], 0
for n in range(1, BARE_STEPS + 1):
    x0 = swiss_train[torch.randint(len(swiss_train), (512,), generator=generator)]  # a batch x_0 ~ q(x_0)
    draws = generator.get_state()  # (kept for the check after the loop)
    t = torch.randint(0, diffusion.T, (512,), generator=generator)  # code t; the paper's t + 1 ~ U{1, …, T}
    eps = torch.randn(x0.shape, generator=generator)  # ε ~ N(0, I)
    alpha_bar = diffusion.alpha_bar[t].float()[:, None]  # ᾱ at code t (the paper's ᾱ_{t+1}), shape (512, 1)
    xt = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps  # the paper's x_{t+1}, Eq. 4
    loss = (bare_model(xt, t) - eps).pow(2).mean()  # L_simple, Eq. 14
    if n == BARE_STEPS:  # once: the helper that `train` uses, given the same draws
        helper_loss = diffusion_loss(bare_model, diffusion, x0, generator=torch.Generator().set_state(draws))
    optimizer.zero_grad()
    loss.backward()  # ∇_θ L_simple
    grad_norm = torch.nn.utils.clip_grad_norm_(bare_model.parameters(), max_norm=1.0)  # g ← g · min(1, 1/‖g‖)
    clipped += int(grad_norm > 1.0)  # ‖g‖ before the rescaling
    optimizer.step()  # Adam updates θ
    decay = min(0.995, (1 + n) / (10 + n))  # d_n
    with torch.no_grad():
        for p_ema, p in zip(bare_ema.parameters(), bare_model.parameters()):
            p_ema.lerp_(p, 1 - decay)  # θ_ema ← d_n θ_ema + (1 − d_n) θ
    bare_losses.append(loss.item())
print(f"{BARE_STEPS} steps in {time.perf_counter() - start:.1f} s; "
      f"mean loss over the last 50 steps: {sum(bare_losses[-50:]) / 50:.4f}")
print(f"last step: this loop's loss {loss.item():.6f}, diffusion_loss with the same draws {helper_loss.item():.6f}")
print(f"steps whose gradient norm exceeded 1 and was rescaled: {clipped} of {BARE_STEPS}")

# %% [markdown]
# Sampling is Algorithm 2: start from $x_T\sim\mathcal N(0, I)$ and apply, for paper $t = T, \dots, 1$,
#
# $$x_{t-1} = \frac{1}{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\varepsilon_\theta(x_t, t)\Big) + \sigma_t z,
# \qquad z\sim\mathcal N(0, I),$$
# the mean of Eq. 11 plus noise, with no noise at the last step ($z = 0$ for $t = 1$). For $\sigma_t^2$ we take
# $\tilde\beta_t$, one of Ho et al.'s two choices (§3.2); they found that both give similar samples, and Section 6
# compares them on our data. In code, with the 0-based `t`:

# %%
@torch.no_grad()
def algorithm2(model, diffusion, n, generator):
    """Ho et al. 2020, Algorithm 2 for n points in the plane, σ_t² = β̃_t. Code t = T−1, …, 0 is paper t = T, …, 1;
    the comments use paper indices, so code ``t`` is the paper's t + 1."""
    x = torch.randn(n, 2, generator=generator)  # x_T ~ N(0, I)
    for t in range(diffusion.T - 1, -1, -1):
        eps = model(x, torch.full((n,), t))  # ε_θ(x_{t+1}, t+1): the network and the tables take the code t
        alpha, beta = float(diffusion.alphas[t]), float(diffusion.betas[t])  # α_{t+1}, β_{t+1}
        mean = (x - beta / float(diffusion.sqrt_one_minus_alpha_bar[t]) * eps) / alpha**0.5  # μ_θ(x_{t+1}, t+1), Eq. 11
        if t > 0:
            sigma = float(diffusion.posterior_variance[t]) ** 0.5  # σ_{t+1} = √β̃_{t+1}
            x = mean + sigma * torch.randn(n, 2, generator=generator)  # x_t = μ_θ + σ_{t+1} z
        else:
            x = mean  # paper step 1: x_0 = μ_θ(x_1, 1), no noise
    return x


bare_samples = algorithm2(bare_ema, diffusion, N_SAMPLES, torch.Generator().manual_seed(2))
helper_samples = ddpm_sample(bare_ema, diffusion, (N_SAMPLES, 2), generator=torch.Generator().manual_seed(2)).x
print(f"the same noise gives the same points as ddpm_sample: {torch.allclose(bare_samples, helper_samples, atol=1e-4)}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(6.8, 3.6))
scatter_2d(bare_samples, ax=axes[0], title=f"Algorithm 2, bare loop ({N_SAMPLES} points)", s=1)
scatter_2d(swiss_train[:N_SAMPLES], ax=axes[1], title="data", s=1, color="k")
plt.tight_layout()
plt.show()

# %% [markdown]
# That is Algorithms 1 and 2 in full; on the same draws the loop's loss equals that of `diffusion_loss`, which `train`
# uses (second line under the loop). After 400 steps at a constant learning rate the spiral is already there, a
# little blurred across the arm, with a few points between its turns; Section 4 measures how close it is.
#
# ### 3.2 What `train` adds
#
# `ddpm_helpers.training.train` runs the same step and adds what a real run needs:
#
# | `TrainConfig` field | what it adds |
# | --- | --- |
# | `steps`, `batch_size`, `lr` | random minibatches of a tensor, a callable or a DataLoader |
# | `warmup_steps`, `lr_schedule` | a learning rate rising linearly from 0, then constant or cosine-decayed to 0 |
# | `grad_clip`, `ema_decay` | the clipping norm and the EMA decay of the loop above |
# | `prediction` | the target: `"eps"`, `"x0"` or `"v"` (Section 6) |
# | `checkpoint_every` | atomic checkpoints in `out_dir`; an interrupted run resumes exactly |
# | `time_budget_s` | a budget in seconds; the steps are planned to fit it (notebooks 04, 05) |
# | `seed`, `time_limit_s` | the same seed gives the same weights; a hard stop for one call |
#
# It also stops a run whose loss becomes NaN or infinite. We ask for the EMA of Section 3.1 with $d = 0.995$, and the
# bare loop's learning rate, reached after a linear warmup and brought down to 0 by the cosine schedule (plotted
# below). Within 1000 updates $d_n$ never reaches 0.995, so the average is over roughly the last
# hundred steps, not the $1/(1-d) = 200$ that a fixed $d$ suggests. The cell below follows the weight of every update
# in the average, for the full profile's 1000 steps:

# %%
ema_probe = EMA(torch.nn.Linear(1, 1), decay=0.995)  # the rule of ddpm_helpers.training.ema, followed on a dummy model
share_of_initial, shares = 1.0, []  # weight of θ_0, and of each update's θ_n, in the average
for n in range(1, 1001):
    d_n = ema_probe.current_decay()  # d_n = min(0.995, (1 + n)/(10 + n))
    shares = [w * d_n for w in shares] + [1 - d_n]  # θ_ema ← d_n θ_ema + (1 − d_n) θ_n
    share_of_initial *= d_n
    ema_probe.num_updates += 1
mean_age = sum(w * (1000 - n) for n, w in enumerate(shares, start=1))  # Σ_n w_n (1000 − n), in steps
print(f"after 1000 updates: decay d_1000 = {d_n:.4f}; mean age of the averaged weights = {mean_age:.0f} steps; "
      f"weight left on the initialization = {share_of_initial:.1e}")
print(f"the decay first reaches 0.995 at update {min(n for n in range(1, 10_000) if (1 + n) / (10 + n) >= 0.995)}; "
      f"a fixed d = 0.995 would average over about 1/(1 - d) = {1 / (1 - 0.995):.0f} steps")

# %%
swiss_config = TrainConfig(steps=SWISS_STEPS, batch_size=512, lr=2e-3, warmup_steps=100, lr_schedule="cosine",
                          ema_decay=0.995, prediction="eps", seed=0)
fig, ax = plt.subplots(figsize=(6, 2.5))
ax.plot([lr_at_step(s, swiss_config) for s in range(swiss_config.steps)])
ax.set(xlabel="step", ylabel="learning rate", title="warmup, then cosine decay")
plt.show()

# %%
# NBVAL_IGNORE_OUTPUT
swiss_run = train(swiss_model, diffusion, swiss_train, swiss_config, device=device)
print(f"{swiss_run.steps} steps in {swiss_run.seconds:.1f} s; "
      f"mean loss over the last 100 steps: {sum(swiss_run.losses[-100:]) / 100:.4f}")
plot_loss_curve(swiss_run.losses, window=50, title="L_simple on the swiss roll");

# %% [markdown]
# The loss falls fast and then flattens well above 0: that is expected. $L_\text{simple}$ cannot reach 0, because at
# large $t$ the noise cannot be recovered from $x_t$ (many $x_0$ could have produced it); the floor is the loss of the
# exact $\varepsilon^*$, which Section 5 computes for the ring of Gaussians. The per-step loss is noisy because each
# step sees different $t$'s. The loss curve says little about sample quality: the pictures of Section 4 do.
#
# **Checkpoints and resume.** Given an `out_dir`, `train` saves the whole training state (model, EMA, Adam's moments,
# step, losses, random-generator states) every `checkpoint_every` steps, at the end and on Ctrl-C, *atomically*: to a
# temporary file that then replaces the old one, so a crash never leaves half a checkpoint. Below, a 100-step run with
# warmup and cosine decay crashes at step 60; called again with the same `TrainConfig`, it resumes from step 50 and
# ends with *bit-for-bit* the weights of a run that never stopped:

# %%
def tiny_run(out_dir=None, resume=True, crash_at=None):
    """100 steps of a small model on the swiss roll, warmup and cosine decay, a checkpoint every 25 steps (with
    ``out_dir``), and an error at step ``crash_at`` as a crash would raise; the same seed every time."""
    torch.manual_seed(0)
    model = MLP(hidden=32, num_blocks=1)
    run_config = TrainConfig(steps=100, batch_size=128, lr=2e-3, warmup_steps=20, lr_schedule="cosine",
                             checkpoint_every=25, seed=0)

    def batches(step, generator):  # random minibatches of swiss_train
        if step == crash_at:
            raise RuntimeError(f"simulated crash at step {step}")
        return swiss_train[torch.randint(len(swiss_train), (run_config.batch_size,), generator=generator)]

    return train(model, diffusion, batches, run_config, device=device, out_dir=out_dir, resume=resume, progress=False)


resume_dir = outputs / "resume_demo"
try:
    tiny_run(out_dir=resume_dir, resume=False, crash_at=60)  # starts afresh, crashes after 60 steps
except RuntimeError as error:
    print(f"first call: {error}; the checkpoint on disk holds step "
          f"{load_checkpoint(resume_dir / 'checkpoint.pt')['step']}")
resumed = tiny_run(out_dir=resume_dir)  # the same TrainConfig: picks up checkpoint.pt
straight = tiny_run()  # one run that never stopped
same = all(torch.equal(a, b) for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values()))
print(f"second call ended at step {resumed.steps}")
print(f"resumed weights identical to the uninterrupted run: {same}; loss histories identical: "
      f"{resumed.losses == straight.losses}")

# %% [markdown]
# **Exercise 2 (the $v$ target).** Change the loss of the loop in Section 3.1 to $v$-prediction (notebook 02; Section
# 6 trains with it): write `my_v_loss(model, diffusion, x0, generator)` that draws `t`, **then** `eps`, as the loop
# does, builds $x_t$ with Eq. 4 and returns the mean squared error of `model(xt, t)` against
# $v = \sqrt{\bar\alpha_t}\,\varepsilon - \sqrt{1-\bar\alpha_t}\,x_0$. With the same generator state it must equal
# `diffusion_loss(..., prediction="v")`.

# %%
my_v_loss = None  # your function here


# %%
def check_exercise_2(fn):
    """Compare the reader's v loss with diffusion_loss(prediction="v") on the trained model, same random draws."""
    if fn is None:
        print("Exercise 2: not attempted yet")
        return
    model = copy.deepcopy(swiss_run.ema.model).cpu()
    x0 = swiss_train[:256]
    expected = diffusion_loss(model, diffusion, x0, prediction="v", generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        got = fn(model, diffusion, x0, torch.Generator().manual_seed(7))
    assert isinstance(got, torch.Tensor) and got.numel() == 1, f"expected a scalar tensor, got {got!r}"
    assert abs(float(got) - float(expected)) < 1e-5, (
        f"got {float(got):.6f}, expected {float(expected):.6f}. Hints: draw t before eps; "
        "alpha_bar = diffusion.alpha_bar[t] in x0's dtype with shape (B, 1); v = sqrt(alpha_bar) eps - "
        "sqrt(1 - alpha_bar) x0; the loss is the mean over batch and coordinates.")
    print("Exercise 2: correct")


check_exercise_2(my_v_loss)

# %% [markdown]
# ## 4. Sampling: Algorithm 2 in pictures
#
# From here on the swiss-roll model is the one `train` trained for `SWISS_STEPS` steps. `ddpm_sample` runs
# `algorithm2` of Section 3.1 with its EMA weights (the same noise gives the same points, as checked there) and records, at the
# steps we ask for, the incoming $x_t$ and the model's current guess of the clean point,
# $\hat x_0 = \big(x_t - \sqrt{1-\bar\alpha_t}\,\varepsilon_\theta(x_t,t)\big)/\sqrt{\bar\alpha_t}$ (Eq. 15, which
# is Eq. 4 solved for $x_0$). We record every step, for the trajectories and the animation:

# %%
swiss_samples = ddpm_sample(swiss_run.ema.model, diffusion, (N_SAMPLES, 2), record=range(T), device=device,
                           generator=torch.Generator().manual_seed(2))
trajectory = torch.cat([swiss_samples.xs, swiss_samples.x.cpu()[None]])  # (T + 1, N, 2): x_T, …, x_1, then x_0
print(f"recorded {len(swiss_samples.timesteps)} steps; each point's trajectory holds {len(trajectory)} states x_T, …, x_0")

# %%
shown = [199, 120, 60, 30, 10, 2]  # 0-based steps, i.e. paper t = 200, 121, 61, 31, 11, 3
fig, axes = plt.subplots(2, len(shown) + 1, figsize=(2.3 * (len(shown) + 1), 4.8))
for column, t in enumerate(shown):
    k = swiss_samples.timesteps.index(t)
    scatter_2d(swiss_samples.xs[k], ax=axes[0, column], title=f"x_t, t = {t + 1}", s=1)
    scatter_2d(swiss_samples.x0_preds[k], ax=axes[1, column], title=f"x̂0 from t = {t + 1}", s=1, color="C1")
scatter_2d(swiss_samples.x.cpu(), ax=axes[0, -1], title="x_0 (sample)", s=1, color="C2")
scatter_2d(swiss_train[:N_SAMPLES], ax=axes[1, -1], title="data", s=1, color="k")
for ax in axes.flat:
    ax.label_outer()  # coordinates named on the left column and the bottom row
fig.suptitle("Reverse process: the state x_t (top) and the model's guess x̂0 of the clean point (bottom)")
plt.tight_layout()
plt.show()

# %% [markdown]
# Read the bottom row from left to right. At $t = 200$ the guesses are scattered far outside the window:
# $\hat x_0$ divides by $\sqrt{\bar\alpha_{200}}\approx 0.0055$, so an error of 0.01 in $\varepsilon_\theta$ moves
# $\hat x_0$ by about 2. Predicting $\varepsilon$ is a poor way to predict $x_0$ at the highest noise levels, one
# motivation for $v$-prediction (Section 6); the sampler does not suffer, since it uses $\varepsilon_\theta$ and
# divides by $\sqrt{\alpha_t}$ only. From $t\approx 120$ on the guesses sit at the *mean* of the data, the best guess
# when the signal is almost gone, and as noise is removed they spread onto the spiral, first to the right region, then
# to the thin arm, long before the state $x_t$ itself (top row) looks like anything. The final samples (top right) and
# the data (bottom right) should be hard to tell apart.
#
# **Trajectories.** Following single points shows the two halves of each reverse step, the drift of the mean of Eq. 11
# and the injected noise $\sigma_t z$:

# %%
picked = torch.randperm(N_SAMPLES, generator=torch.Generator().manual_seed(3))[:8]
fig, axes = plt.subplots(1, 2, figsize=(11, 5.2))
panels = [(axes[0], 0, 5, "8 trajectories, every 5th step"), (axes[1], T - 30, 1, "the same, last 30 steps")]
for ax, first, stride, title in panels:
    scatter_2d(swiss_train[:3000], ax=ax, color="0.8", s=1, lim=3.2, title=title)
    for index in picked:
        path = trajectory[first::stride, index]
        segments = torch.stack([path[:-1], path[1:]], dim=1).numpy()  # one segment per reverse step
        lines = LineCollection(segments, cmap="viridis", linewidths=0.9)
        lines.set_array(torch.linspace(first / T, 1, len(segments)).numpy())  # colour = progress t = T → 0
        lines.set_clim(0, 1)
        ax.add_collection(lines)
        ax.plot(*path[0], "o", color="0.3", markersize=3)  # where this panel starts
        ax.plot(*path[-1], "*", color="C3", markersize=9)  # the sample x_0
fig.colorbar(lines, ax=axes, label="progress of sampling: 0 = x_T (noise), 1 = x_0", shrink=0.8)
plt.show()

# %% [markdown]
# Each segment on the left spans 5 reverse steps. The paths wander like random walks at first (large $\sigma_t$, weak
# drift), then get pulled onto the spiral and finish with tiny steps (right): $\tilde\beta_t$ shrinks towards 0, so the last steps only polish the position
# across the arm. (The right panel uses only the top of the colour bar.)
#
# **The whole process as an animation** (saved as a GIF in `outputs/03_toy_2d/`):

# %%
# NBVAL_IGNORE_OUTPUT
frame_every = config.pick(quick=20, full=5)
frame_index = list(range(0, T, frame_every)) + [T] * 5  # every few steps, then hold the final sample
frames = [trajectory[k] for k in frame_index]
titles = [f"x_t, t = {T - k}" if k < T else "x_0: samples" for k in frame_index]
save_animation(frames, outputs / "reverse_process.gif", titles=titles, fps=8, size=3.2, s=1.5)

# %% [markdown]
# How close are the samples to the data? The **energy distance** (Székely & Rizzo 2013, Eq. 1) between two samples,
#
# $$\mathcal E^2(X, Y) = 2\,\mathbb E\|X-Y\| - \mathbb E\|X-X'\| - \mathbb E\|Y-Y'\|,$$
# is 0 exactly when the two distributions are equal and positive otherwise; `metrics2d.energy_distance` estimates it
# without bias, so it scatters around 0 for two samples of one distribution. We print it for the samples of both
# swiss-roll models and, as the yardstick, for three fresh samples of the data of the same size:

# %%
# NBVAL_IGNORE_OUTPUT
swiss_reference = sample_toy("swiss_roll", N_SAMPLES, torch.Generator().manual_seed(4))
fresh_energies = torch.tensor([energy_distance(sample_toy("swiss_roll", N_SAMPLES, torch.Generator().manual_seed(seed)),
                                               swiss_reference) for seed in (5, 15, 25)])  # three fresh data samples
print("energy distance to fresh data:")
for name, points in [(f"bare loop, {BARE_STEPS} steps (Section 3.1)", bare_samples),
                     (f"train, {swiss_run.steps} steps (Section 3.2)", swiss_samples.x.cpu())]:
    print(f"  {name:36s}{energy_distance(points, swiss_reference):9.5f}")
print(f"  {'fresh true samples (3 draws)':36s}{fresh_energies.mean():9.5f} ± {fresh_energies.std():.5f} (sd)")

# %% [markdown]
# Both models come close to the data: 0.00247 after the bare loop's 400 steps, 0.00210 after `train`'s 1000, where
# three fresh samples of the data score $0.00096 \pm 0.00230$. Both lie within the scatter of fresh data, so these
# numbers cannot rank the two.
#
# ## 5. Measuring the model where the truth is known: the ring of Gaussians
#
# For the swiss roll we can only compare samples with samples. For the ring of Gaussians we know the density
# $p(x)=\sum_k w_k\,\mathcal N(x;\mu_k, s^2 I)$ exactly, so we can ask sharper questions. We train a smaller MLP
# (64 wide, 3 blocks) for `SMALL_STEPS` steps; the same recipe is the baseline of the ablation in Section 6. Its
# samples are drawn with one change to Algorithm 2 (Section 6 shows why): the mean goes through $\hat x_0$ (Eq. 15),
# clipped to $[-3, 3]$ as Ho et al.'s code clips images to $[-1, 1]$ (the data lies well inside). With $\hat x_0$ in
# place of $x_0$, the mean of the forward posterior $q(x_{t-1}\mid x_t, x_0)$ (Eq. 7) is
#
# $$\tilde\mu_t = c_1\hat x_0 + c_2x_t,\qquad c_1 = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t},\qquad c_2 = \frac{\sqrt{\alpha_t}\,(1-\bar\alpha_{t-1})}{1-\bar\alpha_t},$$
#
# and without the clip it is Eq. 11: insert Eq. 15 and use $\sqrt{\bar\alpha_t} = \sqrt{\bar\alpha_{t-1}}\sqrt{\alpha_t}$.
# The coefficient of $x_t$ becomes $c_2 + c_1/\sqrt{\bar\alpha_t} = \big(\alpha_t(1-\bar\alpha_{t-1}) + \beta_t\big)/\big(\sqrt{\alpha_t}\,(1-\bar\alpha_t)\big) = 1/\sqrt{\alpha_t}$,
# and that of $\varepsilon_\theta$ becomes $-c_1\sqrt{1-\bar\alpha_t}/\sqrt{\bar\alpha_t} = -\beta_t/\big(\sqrt{\alpha_t}\sqrt{1-\bar\alpha_t}\big)$.

# %%
ring_train = ring.sample(20_000, generator=torch.Generator().manual_seed(6))
N_EVAL = config.pick(quick=200, full=1000)  # samples per model for the numbers and the ablation grid
CLIP_X0 = 3.0  # x̂0 is clipped to [−3, 3] when sampling: the data lies well inside (see Section 6)


def train_ring_model(steps=SMALL_STEPS, T=200, schedule="linear", prediction="eps", fourier_octaves=6, seed=0):
    """Train the small MLP on ring_train and draw N_EVAL samples; the same budget for every run, seeded by ``seed``
    (initial weights, minibatches and sampler noise)."""
    run_diffusion = Diffusion.from_schedule(schedule, T)
    torch.manual_seed(seed)
    model = MLP(hidden=64, num_blocks=3, fourier_octaves=fourier_octaves)
    run_config = TrainConfig(steps=steps, batch_size=512, lr=4e-3, warmup_steps=50, lr_schedule="cosine",
                             ema_decay=0.995, prediction=prediction, seed=seed)
    result = train(model, run_diffusion, ring_train, run_config, device=device, progress=False)
    start = time.perf_counter()
    samples = ddpm_sample(result.ema.model, run_diffusion, (N_EVAL, 2), prediction=prediction, clip_x0=CLIP_X0,
                          device=device, generator=torch.Generator().manual_seed(7 + seed)).x.cpu()
    return {"result": result, "diffusion": run_diffusion, "samples": samples,
            "sample_seconds": time.perf_counter() - start}


# %%
# NBVAL_IGNORE_OUTPUT
baseline = train_ring_model()
ring_model, ring_diffusion = baseline["result"].ema.model, baseline["diffusion"]
print(f"{baseline['result'].steps} steps in {baseline['result'].seconds:.1f} s, "
      f"{N_EVAL} samples in {baseline['sample_seconds']:.1f} s")

floor_generator = torch.Generator().manual_seed(14)  # one draw of t and ε per training point, shared by both models
t = torch.randint(0, ring_diffusion.T, (len(ring_train),), generator=floor_generator)
eps = torch.randn(ring_train.shape, generator=floor_generator)
xt = ring_diffusion.q_sample(ring_train, t, eps)
with torch.no_grad():
    per_point = {name: (model(xt.to(device), t.to(device)).cpu() - eps).pow(2).mean(1)
                 for name, model in [("trained", ring_model), ("exact", optimal_eps(ring, ring_diffusion))]}
above = per_point["trained"] - per_point["exact"]
print(f"L_simple on the {len(ring_train)} training points: trained {per_point['trained'].mean():.4f}, exact eps* "
      f"{per_point['exact'].mean():.4f} (the floor); difference {above.mean():.4f} ± {above.std() / len(above)**0.5:.4f}")

# %% [markdown]
# The clipped step in code, checked against the helper on the same noise:

# %%
@torch.no_grad()
def algorithm2_clipped(model, diffusion, n, generator, clip=CLIP_X0):
    """Algorithm 2 with the mean c1 x̂0 + c2 x_t of Eq. 7 and x̂0 (Eq. 15) clipped to [−clip, clip]; σ_t² = β̃_t.
    Comments use paper indices: code ``t`` is the paper's t + 1."""
    x = torch.randn(n, 2, generator=generator)  # x_T ~ N(0, I)
    for t in range(diffusion.T - 1, -1, -1):
        eps = model(x, torch.full((n,), t))  # ε_θ(x_{t+1}, t+1)
        root_ab = float(diffusion.sqrt_alpha_bar[t])  # √ᾱ_{t+1}
        root_1m_ab = float(diffusion.sqrt_one_minus_alpha_bar[t])  # √(1 − ᾱ_{t+1})
        x0_hat = ((x - root_1m_ab * eps) / root_ab).clamp(-clip, clip)  # x̂0 = (x_{t+1} − √(1−ᾱ) ε_θ)/√ᾱ, clipped
        c1, c2 = float(diffusion.posterior_mean_coef_x0[t]), float(diffusion.posterior_mean_coef_xt[t])  # Eq. 7's c1, c2
        mean = c1 * x0_hat + c2 * x  # μ̃_{t+1} = c1 x̂0 + c2 x_{t+1}, Eq. 7
        if t > 0:
            sigma = float(diffusion.posterior_variance[t]) ** 0.5  # σ_{t+1} = √β̃_{t+1}
            x = mean + sigma * torch.randn(n, 2, generator=generator)  # x_t = μ̃_{t+1} + σ_{t+1} z
        else:
            x = mean  # paper step 1: x_0 is the mean, no noise
    return x


cpu_model = copy.deepcopy(ring_model).cpu()  # this loop, like algorithm2, runs on the CPU
clipped_samples = algorithm2_clipped(cpu_model, ring_diffusion, N_EVAL, torch.Generator().manual_seed(7))
helper_clipped = ddpm_sample(cpu_model, ring_diffusion, (N_EVAL, 2), clip_x0=CLIP_X0,
                             generator=torch.Generator().manual_seed(7)).x
print(f"the same noise gives the same points as ddpm_sample(..., clip_x0={CLIP_X0}): "
      f"{torch.allclose(clipped_samples, helper_clipped, atol=1e-4)}")

# %% [markdown]
# Five numbers, each printed next to its value for fresh samples of the true mixture (same size), which is what a
# perfect sampler would score:
#
# - **log-likelihood** $\frac1N\sum_i\log p(x_i)$ of the samples under the *true* density: too low when samples land
#   between the modes, *higher* than the true value when they crowd into the mode centres. A sampler that draws too
#   narrow modes is rewarded here, so read it with the others;
# - **modes covered**: a mode counts when at least a quarter of its expected share of samples lies within $3s$ of its
#   centre (a coarse test: a thin ring through all eight centres passes it); **near a mode**: the share of samples
#   within $3s$ of some centre (stray points lower it);
# - **mode width**: the spread of the near samples around their centre, $\sqrt{\overline{\|x-\mu_k\|^2}/2}$ per
#   coordinate ($s = 0.1$ for the data, a little less after the $3s$ cut): too small when the samples crowd into the
#   centres, too large when they blur them;
# - **energy distance** to a fresh true sample, as for the swiss roll.

# %%
ring_reference = ring.sample(N_EVAL, generator=torch.Generator().manual_seed(8))
ring_fresh = ring.sample(N_EVAL, generator=torch.Generator().manual_seed(9))


def ring_metrics(x):
    """log-likelihood under the true mixture, mode coverage, mode width, energy distance to ring_reference."""
    coverage = mode_coverage(x, ring)
    distance = torch.cdist(x.double(), ring.means).min(dim=1).values  # to the nearest centre μ_k
    near = distance < 3 * ring.variances.sqrt().max()  # within 3s, as in mode_coverage
    return {"log p": ring.log_prob(x.double()).mean().item(), "modes": coverage["covered"],
            "near": coverage["near"], "width": (distance[near].pow(2).mean() / 2).sqrt().item(),
            "energy": energy_distance(x, ring_reference)}


true_metrics = ring_metrics(ring_fresh)

# %%
# NBVAL_IGNORE_OUTPUT
model_metrics = ring_metrics(baseline["samples"])
print(f"{'':32s}{'model':>10s}{'true samples':>14s}")
print(f"{'mean log p(x) (nats)':32s}{model_metrics['log p']:10.3f}{true_metrics['log p']:14.3f}")
print(f"{'modes covered (of 8)':32s}{model_metrics['modes'] * 8:10.0f}{true_metrics['modes'] * 8:14.0f}")
print(f"{'samples near a mode':32s}{model_metrics['near']:10.1%}{true_metrics['near']:14.1%}")
print(f"{'mode width':32s}{model_metrics['width']:10.4f}{true_metrics['width']:14.4f}")
print(f"{'energy distance to fresh data':32s}{model_metrics['energy']:10.5f}{true_metrics['energy']:14.5f}")
fig = scatter_grid({"true samples": ring_fresh, f"model, {SMALL_STEPS} steps": baseline["samples"]}, ncols=2,
                   size=3.2)
plt.show()

# %% [markdown]
# The model puts 93.8 % of its samples near a mode, fresh data 98.4 %: the rest lie between the modes, and
# they pull its log-likelihood down ($-0.635$ against $-0.349$ nats) although its modes are a little narrow
# (width 0.0911 against 0.0983), which pushes it up. As for the swiss roll, the energy distance cannot separate the
# two. The loss of
# Section 3.2 has its floor here too: on the same draws, the exact $\varepsilon^*$ scores 0.1923 and the trained
# model $0.0056 \pm 0.0008$ more (printed under the training cell).
#
# **Likelihood bound of held-out points.** The model also defines a density, $p_\theta(x_0)$, the marginal of the
# reverse chain. It is intractable, but notebook 02 derived its variational bound (Eq. 5), for each $x_0$ an
# expectation over the forward chain:
#
# $$-\log p_\theta(x_0) \le \underbrace{D_\text{KL}\big(q(x_T\mid x_0)\,\|\,p(x_T)\big)}_{L_T} +
# \sum_{t>1}\underbrace{\mathbb E_{q(x_t\mid x_0)}\Big[D_\text{KL}\big(q(x_{t-1}\mid x_t,x_0)\,\|\,p_\theta(x_{t-1}\mid x_t)\big)\Big]}_{L_{t-1}}
# +\underbrace{\mathbb E_{q(x_1\mid x_0)}\big[-\log p_\theta(x_0\mid x_1)\big]}_{L_0}.$$
# `elbo_terms` draws one $x_t$ per step and point, so each point's $-\text{ELBO}(x_0)$ is a one-sample, unbiased
# Monte-Carlo estimate of the bound. For continuous 2-D data the decoder is
# a Gaussian density (`decoder="gaussian"`) rather than the discretized one of Eq. 13. The reverse variance
# $\sigma_t^2$ enters the bound, so we try both fixed choices of Ho et al. (§3.2), $\tilde\beta_t$ and $\beta_t$; the
# decoder's variance is then $\tilde\beta_2$ ($\tilde\beta_1 = 0$ would make $L_0$ infinite, notebook 02, Section 7.2)
# or $\beta_1$. The bound's chain does not clip $\hat x_0$, so it bounds the unclipped sampler, while our samples come
# from the clipped one. We evaluate it, in nats per point, on fresh points (1000 in the full profile), for the trained
# MLP and the exact $\varepsilon^*$, against the true $-\log p(x_0)$:

# %%
# NBVAL_IGNORE_OUTPUT
heldout = ring.sample(config.pick(quick=300, full=1000), generator=torch.Generator().manual_seed(10))
true_nll_per_point = -ring.log_prob(heldout.double())  # −log p(x0) of each held-out point
n_heldout = len(heldout)
print(f"true NLL  -E log p(x0) = {true_nll_per_point.mean():.3f} ± {true_nll_per_point.std() / n_heldout**0.5:.3f} "
      f"nats per point ({n_heldout} held-out points; ± one standard error)")
print(f"{'model':12s}{'sigma_t^2':>11s}{'-ELBO':>7s}{'-ELBO - true NLL':>18s}{'L_T':>7s}{'sum L_t-1':>10s}{'L_0':>8s}"
      f"{'L_1..L_5':>9s}")
bounds = {}  # (model, variance) → per-point terms; the same x_t draws for both models (same generator seed)
for name, model in [("exact eps*", optimal_eps(ring, ring_diffusion)), ("trained MLP", ring_model)]:
    for variance in ["beta_tilde", "beta"]:
        terms = elbo_terms(model, ring_diffusion, heldout.to(device), variance=variance, decoder="gaussian",
                           generator=torch.Generator().manual_seed(11))
        terms = bounds[name, variance] = {key: value.double().cpu() for key, value in terms.items()}
        mean = {key: value.mean(0) for key, value in terms.items()}  # average over the points
        gap = terms["total"] - true_nll_per_point  # per point: −ELBO(x0) + log p(x0)
        print(f"{name:12s}{variance:>11s}{mean['total']:7.3f}{gap.mean():11.3f} ± {gap.std() / n_heldout**0.5:.3f}"
              f"{mean['prior']:7.4f}{mean['kl'].sum():10.3f}{mean['decoder_nll']:8.3f}{mean['kl'][:5].sum():9.3f}")
for variance in ["beta_tilde", "beta"]:
    trained, exact = bounds["trained MLP", variance], bounds["exact eps*", variance]
    extra = [trained["total"] - exact["total"], trained["kl"].sum(1) - exact["kl"].sum(1),
             trained["decoder_nll"] - exact["decoder_nll"]]  # per point, paired
    extra = [f"{x.mean():+.3f} ± {x.std() / n_heldout**0.5:.3f}" for x in extra]
    print(f"trained MLP minus exact eps*, {variance}: -ELBO {extra[0]}, of which sum L_t-1 {extra[1]}, L_0 {extra[2]}")
print(f"paper t = 2–6: sqrt(1 - alpha_bar_t) from {ring_diffusion.sqrt_one_minus_alpha_bar[1]:.3f} to "
      f"{ring_diffusion.sqrt_one_minus_alpha_bar[5]:.3f}; beta_tilde / beta at paper t = 2: "
      f"{ring_diffusion.posterior_variance[1] / ring_diffusion.betas[1]:.2f}")

# %% [markdown]
# What the bound bounds: for every point, the exact $-\text{ELBO}(x_0)\ge-\log p_\theta(x_0)$, the model's *own* density.
# Nothing orders $p_\theta(x_0)$ and the true $p(x_0)$ point by point: a model may put more density on some
# points than the data does. Only on average is the true NLL a floor, because for any model
#
# $$\mathbb E_{p}\big[-\log p_\theta(x_0)\big] = \mathbb E_{p}\big[-\log p(x_0)\big] + D_\text{KL}\big(p\,\|\,p_\theta\big)
# \ge \mathbb E_{p}\big[-\log p(x_0)\big]$$
#
# (notebook 02, Section 12). So the averages over held-out points must lie at or above the true NLL, up to their
# standard errors, and the column "$-$ELBO $-$ true NLL" measures how far. With
# $\sigma_t^2=\tilde\beta_t$ even the *exact* $\varepsilon^*$ stays about a nat above the true NLL; with
# $\sigma_t^2=\beta_t$ it comes within about 0.1 nat. The difference sits in the first few steps (last column). There
# the noise, $\sqrt{1-\bar\alpha_t}$ = 0.039 to 0.102 for paper $t$ = 2–6 (last printed line), is comparable to or
# smaller than the width $s = 0.1$ of the modes: seen at that resolution the data is a smooth, wide density, and the
# true reverse step $q(x_{t-1}\mid x_t)$ has a variance close to $\beta_t$ (notebook 02: $\beta_t$ is exact for
# $\mathcal N(0, I)$ data and nearly right for data wide compared with the noise, $\tilde\beta_t$ for a single point), while $\tilde\beta_t$ is much smaller there:
# 0.33 of $\beta_t$ at $t = 2$. The fixed variance is a real limitation of the bound; Nichol & Dhariwal (2021) *learn*
# $\sigma_t^2$ to close this gap. The trained model adds its own error on top, 0.283 and 0.214 nats, almost all of it
# in $\sum L_{t-1}$ (the two paired lines). $L_T$ is tiny because
# $\bar\alpha_T\approx 0$ makes $q(x_T\mid x_0)$ almost exactly $\mathcal N(0, I)$.
#
# **The learned field.** Since $x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\varepsilon$, the vector
# $-\varepsilon_\theta(x_t,t)$ points from $x_t$ back towards the data: $-\varepsilon^*$ is proportional to the score,
# $\nabla\log p_t(x_t) = -\varepsilon^*(x_t,t)/\sqrt{1-\bar\alpha_t}$ (notebook 02), and $-\varepsilon_\theta$
# approximates it. Arrows of $-\varepsilon$ on a grid,
# learned (top) and exact (bottom), over a sample of $q(x_t)$ in grey. The lengths run from below 0.01 to about 10
# (printed), so every arrow has the same length and shows the *direction* of $-\varepsilon$; its colour shows the
# length $\|\varepsilon\|$ (log scale from 0.1, one colour bar for all panels: the shorter arrows, near the origin and
# the mode centres, all get its darkest colour).

# %%
# NBVAL_IGNORE_OUTPUT
grid_1d = torch.linspace(-2.4, 2.4, 17)
grid = torch.cartesian_prod(grid_1d, grid_1d)  # (289, 2)
field_steps = [150, 40, 5]  # 0-based: paper t = 151, 41, 6
field_models = {"learned": ring_model, "exact": optimal_eps(ring, ring_diffusion)}
with torch.no_grad():
    fields = {(name, t): model(grid.to(device), torch.full((len(grid),), t, device=device)).cpu()
              for name, model in field_models.items() for t in field_steps}  # ε on the grid, per model and step
norm = LogNorm(vmin=0.1, vmax=max(float(eps.norm(dim=1).max()) for eps in fields.values()))
fig, axes = plt.subplots(2, len(field_steps), figsize=(3.4 * len(field_steps) + 1, 7.2), layout="constrained")
for column, t in enumerate(field_steps):
    noisy = ring_diffusion.q_sample(ring_fresh, torch.full((len(ring_fresh),), t),
                                    generator=torch.Generator().manual_seed(12))  # a sample of q(x_t)
    for row, name in enumerate(field_models):
        eps = fields[name, t]
        length = eps.norm(dim=1)
        ax = axes[row, column]
        scatter_2d(noisy, ax=ax, color="0.6", s=2, lim=2.6)
        quiver_2d(grid, -0.22 * eps / length[:, None].clamp(min=1e-12), ax=ax, lim=2.6, values=length, cmap="plasma", norm=norm,
                  title=f"{name} −ε, t = {t + 1}")  # direction of −ε at a fixed length; colour = ‖ε‖
        ax.label_outer()
        where = grid[length.argmax()]
        print(f"{name:8s} paper t = {t + 1:3d}: |eps| on the grid from {length.min():.2f} to {length.max():.3f}, "
              f"largest at ({where[0]:+.1f}, {where[1]:+.1f})")
fig.colorbar(axes[0, 0].collections[-1], ax=axes, label="‖ε‖ (colour of the arrows)", shrink=0.8)
plt.show()

# %% [markdown]
# At large $t$ (left) both fields point towards the centre: $q(x_t)$ is nearly $\mathcal N(0, I)$ and
# $\varepsilon^*\approx x_t$, so $\|\varepsilon\|$ grows with the distance from the origin (at most 3.389 on the grid
# for the exact field, in a corner). At small $t$ (right) the exact field is a set of sharp sinks, one per mode, with a
# watershed between neighbours, and far from the modes $\|\varepsilon^*\|$ is large (up to 10.021 at $t = 6$): a point
# that far from every mode can only be explained by a large noise draw. The learned field reproduces the sinks where
# there is data to learn from; far away, where training points at that noise level never go, its arrows point the
# right way but are too short (at most 4.826).

# %% [markdown]
# **Exercise 3 (the exact ε for a Gaussian).** If the data were a single Gaussian $\mathcal N(0, s^2 I)$, then $x_t\sim
# \mathcal N\big(0, (\bar\alpha_t s^2 + 1 - \bar\alpha_t) I\big)$ (Eq. 4). Write `eps_star_gaussian(xt, alpha_bar, s)`
# that returns $\mathbb E[\varepsilon\mid x_t]$, using $\mathbb E[\varepsilon\mid x_t] = -\sqrt{1-\bar\alpha_t}\,
# \nabla\log p_t(x_t)$. (`alpha_bar` is a tensor that broadcasts against `xt`.) Which way does $-\varepsilon^*$ point,
# and how does its length change with $t$?

# %%
eps_star_gaussian = None  # your function here


# %%
def check_exercise_3(fn):
    """Compare with optimal_eps of a one-component GaussianMixture."""
    if fn is None:
        print("Exercise 3: not attempted yet")
        return
    s = 0.5
    gaussian = GaussianMixture(torch.ones(1), torch.zeros(1, 2), torch.tensor([s**2]))
    exact = optimal_eps(gaussian, diffusion)
    xt = torch.randn(64, 2, generator=torch.Generator().manual_seed(13), dtype=torch.float64)
    for t in (0, 50, 199):
        tt = torch.full((64,), t)
        alpha_bar = diffusion.alpha_bar[t]
        got = fn(xt, alpha_bar, s)
        assert isinstance(got, torch.Tensor) and got.shape == xt.shape, f"expected shape {tuple(xt.shape)}"
        assert torch.allclose(got, exact(xt, tt), atol=1e-8), (
            f"paper t = {t + 1}: got {got[0].tolist()}, expected {exact(xt, tt)[0].tolist()}. Hint: the score of "
            "N(0, v I) is -x / v with v = alpha_bar s² + 1 - alpha_bar.")
    print("Exercise 3: correct")


check_exercise_3(eps_star_gaussian)

# %% [markdown]
# ## 6. Ablations at an equal budget
#
# Three design choices of a diffusion model, changed one at a time from the baseline of Section 5 ($T = 200$, linear
# schedule, $\varepsilon$-prediction, Fourier features), each run with the same network and the same `SMALL_STEPS` Adam
# steps of 512 points:
#
# - **$T$** (50, 200, 1000): more steps means smaller Gaussian reverse steps, which are closer to exact (notebook 02,
#   Sections 1 and 11), but the same number of training steps is spread over more noise levels, and a sample costs $T$
#   network calls. Notebook 02 (Section 11) found that at small $T$ the reverse variance $\sigma_t^2 = \tilde\beta_t$
#   makes the samples too narrow and $\beta_t$ too wide, so comparing values of $T$ with one variance mixes two
#   effects: we sample the same trained models with both;
# - **the schedule**: linear (Ho et al.), cosine (Nichol & Dhariwal 2021, Eq. 17) and sigmoid (Chen 2023; Jabri et al. 2023),
#   which place the noise levels differently along $t$ (notebook 01);
# - **the prediction target**: the network outputs $\varepsilon$, $x_0$, or $v = \sqrt{\bar\alpha_t}\,\varepsilon -
#   \sqrt{1-\bar\alpha_t}\,x_0$ (Salimans & Ho 2022), each trained with a plain MSE on its own target. Given $x_t$ the
#   three are interchangeable (notebook 02), and converting the errors shows how differently the losses weight the
#   noise levels. At fixed $x_t$, Eq. 4 gives $\hat x_0 - x_0 = -\sqrt{(1-\bar\alpha_t)/\bar\alpha_t}\,(\hat\varepsilon-\varepsilon)$
#   and $\hat v - v = (\hat\varepsilon-\varepsilon)/\sqrt{\bar\alpha_t}$, and $1/\bar\alpha_t = 1 + 1/\mathrm{SNR}(t)$
#   with $\mathrm{SNR}(t) = \bar\alpha_t/(1-\bar\alpha_t)$, so
#
#   $$\|\hat x_0 - x_0\|^2 = \frac{\|\hat\varepsilon-\varepsilon\|^2}{\mathrm{SNR}(t)},\qquad
#   \|\hat v - v\|^2 = \Big(1 + \frac{1}{\mathrm{SNR}(t)}\Big)\|\hat\varepsilon-\varepsilon\|^2;$$
# - and, to close Section 2, the same baseline **without Fourier features**.
#
# One training run is one draw: its initial weights, minibatches and sampler noise are random. So every variant is
# trained with **3 seeds** (seed 0 of the baseline is the model of Section 5), and the tables show the mean ± the
# standard deviation over the seeds. The column "log p − base" compares each seed with the baseline of the *same*
# seed, which removes part of the seed-to-seed noise. "True samples" are three fresh samples of the mixture, of the same size.

# %%
# NBVAL_IGNORE_OUTPUT
SEEDS = (0, 1, 2)
BASELINE = "baseline"  # T = 200, linear schedule, ε-prediction, Fourier features: the model of Section 5
ablations = {
    BASELINE: {}, "T = 50": dict(T=50), "T = 1000": dict(T=1000),
    "cosine schedule": dict(schedule="cosine"), "sigmoid schedule": dict(schedule="sigmoid"),
    "x0-prediction": dict(prediction="x0"), "v-prediction": dict(prediction="v"),
    "no Fourier features": dict(fourier_octaves=0),
}
runs = {name: [baseline if not changes and seed == 0 else train_ring_model(**changes, seed=seed) for seed in SEEDS]
        for name, changes in ablations.items()}
metrics = {name: [ring_metrics(run["samples"]) for run in seeded] for name, seeded in runs.items()}
metrics["true samples"] = [true_metrics] + [
    ring_metrics(ring.sample(N_EVAL, generator=torch.Generator().manual_seed(9 + 100 * k))) for k in (1, 2)]


def mean_sd(values, fmt):
    """'mean ± sd' of a list of numbers over the seeds (sample standard deviation)."""
    values = torch.tensor(values, dtype=torch.float64)
    return f"{values.mean():{fmt}} ± {values.std():{fmt.lstrip('+')}}"


def row(name, seeded, versus=None):
    """One table row: log p, near, mode width, log p against ``versus`` seed by seed, energy ×10³; mean ± sd over
    the seeds."""
    diff = "" if versus is None else mean_sd([m["log p"] - b["log p"] for m, b in zip(seeded, versus)], "+.3f")
    return (f"{name:19s}{mean_sd([m['log p'] for m in seeded], '.3f'):>16s}"
            f"{mean_sd([100 * m['near'] for m in seeded], '.1f'):>12s}{mean_sd([m['width'] for m in seeded], '.3f'):>14s}"
            f"{diff:>17s}{mean_sd([1000 * m['energy'] for m in seeded], '+.2f'):>15s}")


HEADER = f"{'run':19s}{'log p':>16s}{'near %':>12s}{'mode width':>14s}{'log p − base':>17s}{'energy ×10³':>15s}"
trained = sum(run is not baseline for seeded in runs.values() for run in seeded)
print(f"{len(SEEDS)} seeds each ({trained} models trained here): mean ± standard deviation over the seeds")
print(HEADER)
for name, seeded in metrics.items():
    if not name.startswith("T ="):  # the values of T are in the next table
        print(row(name, seeded, None if name in (BASELINE, "true samples") else metrics[BASELINE]))


def sample_ring(model, run_diffusion, variance, seed):
    """N_EVAL samples of a ring model with the reverse variance ``variance``, and the seconds they took."""
    start = time.perf_counter()
    x = ddpm_sample(model, run_diffusion, (N_EVAL, 2), variance=variance, clip_x0=CLIP_X0, device=device,
                    generator=torch.Generator().manual_seed(7 + seed)).x.cpu()
    return x, time.perf_counter() - start


by_T = {}  # (T, variance) → (metrics per seed, sampling seconds per seed, seed-0 samples)
for T_run, name in [(50, "T = 50"), (200, BASELINE), (1000, "T = 1000")]:
    by_T[T_run, "beta_tilde"] = metrics[name], [run["sample_seconds"] for run in runs[name]], runs[name][0]["samples"]
    drawn = [sample_ring(run["result"].ema.model, run["diffusion"], "beta", seed)  # the same models, σ_t² = β_t
             for seed, run in zip(SEEDS, runs[name])]
    by_T[T_run, "beta"] = [ring_metrics(x) for x, _ in drawn], [seconds for _, seconds in drawn], drawn[0][0]
exact_by_variance = {variance: [ring_metrics(sample_ring(optimal_eps(ring, ring_diffusion), ring_diffusion, variance,
                                                         seed)[0]) for seed in SEEDS]
                     for variance in ("beta_tilde", "beta")}  # no network error: what the variance alone does
print("\nT and the reverse variance sigma_t^2: the same trained models, sampled both ways (base: 200, beta_tilde)")
print(HEADER + f"{'sample s':>10s}")
for (T_run, variance), (seeded, seconds, _) in by_T.items():
    print(row(f"{T_run}, {variance}", seeded, metrics[BASELINE]) + f"{sum(seconds) / len(seconds):10.2f}")
for variance, seeded in exact_by_variance.items():
    print(row(f"eps*, {variance}", seeded))  # the exact ε* at T = 200
print(row("true samples", metrics["true samples"]))
covered = [m["modes"] * 8 for seeded in [*metrics.values(), *(by_T[key][0] for key in by_T),
                                         *exact_by_variance.values()] for m in seeded]
print(f"modes covered (of 8), over every row and seed of both tables: {min(covered):.0f} to {max(covered):.0f}")
gaps = [mean_sd([a["log p"] - b["log p"] for a, b in zip(by_T[T_run, "beta_tilde"][0], by_T[T_run, "beta"][0])],
                "+.3f") for T_run in (50, 200, 1000)]
print(f"log p with beta_tilde minus with beta, seed by seed: T = 50 {gaps[0]}, T = 200 {gaps[1]}, T = 1000 {gaps[2]}")
print("share within 3s of the centre for one Gaussian mode of width 0.95 s, s, 1.05 s: "
      + ", ".join(f"{1 - torch.exp(torch.tensor(-4.5 / k**2)):.1%}" for k in (0.95, 1.0, 1.05)))
seconds_200, seconds_1000 = (sum(by_T[T_run, "beta_tilde"][1]) for T_run in (200, 1000))
print(f"T = 1000 against T = 200 (beta_tilde, 3 seeds): {1000 / 200:.0f}x the network calls (by construction), "
      f"{seconds_1000 / seconds_200:.2f}x the sampling time")

print(f"\nseed-0 models, {N_EVAL} samples: points farther than 4 from the origin, and the farthest |x_t|")
print(f"{'schedule, x̂0':22s}{'> 4 after step 1':>18s}{'> 4 at the end':>16s}{'max after step 1':>18s}{'max ever':>10s}")
for name in ["cosine schedule", "sigmoid schedule"]:  # the seed-0 models again, every step recorded
    run = runs[name][0]
    for clip in (None, CLIP_X0):
        chain = ddpm_sample(run["result"].ema.model, run["diffusion"], (N_EVAL, 2), clip_x0=clip, record=range(T),
                            device=device, generator=torch.Generator().manual_seed(7))
        norms = chain.xs.norm(dim=2)  # |x_t| of every point; row 0 is x_T, row 1 the state after the first step
        label = f"{name.split()[0]}, {'not clipped' if clip is None else 'clipped'}"
        print(f"{label:22s}{int((norms[1] > 4).sum()):18d}{int((chain.x.norm(dim=1) > 4).sum()):16d}"
              f"{norms[1].max():18.1f}{norms.max():10.1f}")
for name in ["cosine schedule", "sigmoid schedule"]:
    d_run = runs[name][0]["diffusion"]
    print(f"{name}, first step (paper t = T): 1/sqrt(alpha_T) = {d_run.alphas[-1] ** -0.5:.1f}; posterior mean "
          f"c1 x̂0 + c2 x_T with c1 = {d_run.posterior_mean_coef_x0[-1]:.4f}, c2 = {d_run.posterior_mean_coef_xt[-1]:.4f}")
print(f"a 2-D eps ~ N(0, I) has P(|eps| > 6) = exp(-6^2/2) = {torch.exp(torch.tensor(-18.0)):.1e}")

# %%
shown_runs = [name for name in runs if not name.startswith("T =")]  # the runs of the first table
fig, axes = plt.subplots(2, 4, figsize=(11.2, 5.8))
for ax, name in zip(axes.flat, shown_runs):
    scatter_2d(runs[name][0]["samples"], ax=ax, title=name, s=2, lim=2.4)
scatter_2d(ring_fresh, ax=axes.flat[len(shown_runs)], title="true samples", s=2, lim=2.4, color="k")
axes.flat[-1].set_axis_off()
for ax in axes.flat:
    ax.label_outer()
fig.suptitle(f"Ring of Gaussians, {SMALL_STEPS} training steps each (seed 0)", y=1.0, va="bottom")
plt.tight_layout()
plt.show()

fig, axes = plt.subplots(2, 3, figsize=(8.4, 5.8))
for column, T_run in enumerate((50, 200, 1000)):
    for line, (variance, symbol) in enumerate([("beta_tilde", r"\tilde\beta_t"), ("beta", r"\beta_t")]):
        scatter_2d(by_T[T_run, variance][2], ax=axes[line, column], title=f"T = {T_run}, $\\sigma_t^2 = {symbol}$",
                   s=2, lim=2.4)
        axes[line, column].label_outer()
fig.suptitle("The same trained models (seed 0) sampled with both reverse variances", y=1.0, va="bottom")
plt.tight_layout()
plt.show()

# %% [markdown]
# What to look for in the tables and the grids (which show $[-2.4, 2.4]^2$ only, so far strays are cut off). Every
# run of both tables covers 8 of 8 modes, so read the other columns. The energy distance separates only the runs far
# from the data ($x_0$-prediction, no Fourier features).
#
# - **Fourier features** matter most at this budget: without them the small MLP draws a smooth, wide ring. Only
#   54.8 % of its samples lie near a mode, its modes are blurred (width 0.131 against the data's 0.097), and the
#   log-likelihood drops by 3.806 ± 0.052 nats.
# - **The schedule** is the next clearest effect: cosine and sigmoid raise the log-likelihood over the linear
#   schedule by 0.275 ± 0.013 and 0.364 ± 0.030 nats, and leave fewer samples between the modes (96.4 and 96.5 % near
#   a mode against 93.4 %). A likely reason: the linear schedule spends many of its steps on almost pure noise
#   (notebook 01), while cosine and sigmoid spend more at the intermediate and low noise levels where the modes take
#   shape. The sigmoid's log-likelihood ($-0.341$) even lies within the spread of fresh true samples
#   ($-0.308 \pm 0.044$), helped by its narrow modes (0.088 against 0.097); the share near a mode, 96.5 % against
#   98.8 %, shows what is left.
# - **The target**: $x_0$-prediction puts its weight on the noisy steps ($1/\mathrm{SNR}$ is large there), where
#   guessing $x_0$ means guessing the mean, and almost none on the low-noise steps that place a point *inside* its
#   mode. In the seed-0 picture its samples find the circle but spread along it; the table shows the cost (86.6 % near
#   a mode, $-0.515 \pm 0.250$ nats against the baseline). $v$ behaves like $\varepsilon$ at low noise and like $x_0$
#   at high noise, and does at least as well as $\varepsilon$ here ($+0.095 \pm 0.076$ nats: about one standard
#   deviation, not a clear gain). The training losses of the three are not comparable: each measures a different
#   target.
# - **$T$ and $\sigma_t^2$** (second table and grid). With $\tilde\beta_t$ the log-likelihoods of $T$ = 50, 200 and
#   1000 differ by less than their seed-to-seed spread ($-0.052 \pm 0.094$ and $+0.024 \pm 0.069$ nats against the
#   baseline), but the mode width shows what coarse steps cost: 0.085, 0.092 and 0.097 against the data's 0.097, too
#   narrow at small $T$ (notebook 02, Section 11), and the share near a mode (91.7, 93.4, 94.3 %) grows with $T$. With
#   $\beta_t$ the modes come out too wide (0.116 at $T = 50$) and more samples fall between them (81.6, 90.4, 93.7 %
#   near a mode). The two variances converge as $T$ grows, but slowly: $\tilde\beta_t$'s log-likelihood lead over
#   $\beta_t$, seed by seed, shrinks from $+1.352$ nats at $T = 50$ to $+0.083$ at $T = 1000$.
#
#   Which variance is right at $T = 200$? Without the network's errors (the exact $\varepsilon^*$ rows) it is
#   $\beta_t$: modes 0.100 wide, against 0.088 with $\tilde\beta_t$ and the data's 0.097, as the bound of Section 5
#   said. A trained network's errors widen the modes and scatter samples between them, and $\tilde\beta_t$'s
#   narrowing partly offsets them: the trained widths miss the data's on both sides (0.092 and 0.102), and $\beta_t$
#   leaves more strays, 90.4 against 93.4 % near a mode, where a mode 5 % too wide would lose only 0.6 points (98.3
#   against 98.9 %, printed). So the other runs sample with $\tilde\beta_t$. The price of more steps: $T = 1000$
#   makes 5× the network calls of $T = 200$ (by construction) and took 5.32× the time.
# - **Clipping $\hat x_0$.** The cosine and sigmoid schedules end with $\beta_T$ clipped to 0.999 (Nichol & Dhariwal
#   2021, §3.2), so the first reverse step divides by $\sqrt{\alpha_T} = \sqrt{0.001}$: by Eq. 11, an error of 0.1 in
#   $\varepsilon_\theta$ moves the point by about 3. The third table follows the seed-0 models without clipping.
#   After the first step 69 (cosine) and 75 (sigmoid) of the 1000 points lie farther than 4 from the origin, the
#   farthest near 40. No training point $x_t$ comes near there ($\|x_t\|^2\le\|x_0\|^2+\|\varepsilon\|^2$, and a 2-D
#   $\|\varepsilon\|$ beyond 6 has probability $e^{-6^2/2} = e^{-18}$, printed), so the network's $\varepsilon$ there
#   is an extrapolation, and the next steps, whose $\beta_t$ are still large, amplify its errors: the farthest points
#   reach 638.5 and 190.4, and 11 and 10 still end farther than 4. In the mean $c_1\hat x_0 + c_2 x_t$ of Section 5
#   the network enters only through $\hat x_0$; clipped to $[-3, 3]$, it moves the mean by at most $3c_1$ per
#   coordinate, and at the first step $c_1$ = 0.0078 (cosine) or 0.0389 (sigmoid) and $c_2 = 0.0316$: $x_{T-1}$ stays
#   almost pure noise $\sigma_T z$. With clipping no point gets farther than 5.2 from the origin and none ends beyond 4.

# %% [markdown]
# ## 7. Summary and what comes next
#
# - A 2-D denoiser must know $t$: at a fixed $x$ the exact $\varepsilon^*(x, t)$ changes about fivefold with $t$. The
#   sinusoidal embedding turns $t$ into a vector
#   whose similarities depend on the lag only; every residual block receives it. Fourier features of $x$ let a small
#   MLP draw sharp structure.
# - Algorithm 1 is a short loop: batch, draws of $t$ and $\varepsilon$, $x_t$, the squared error,
#   backward, clipping, Adam step, EMA update; Algorithm 2 is another, over $t$.
#   `ddpm_helpers.training.train` runs the same step and adds a learning-rate schedule, NaN detection and checkpoints that resume bit-for-bit;
#   notebooks 04 and 05 use it unchanged.
# - The predicted $\hat x_0$ finds the data long before $x_t$ does, and the trajectories are random walks that the
#   drift pulls onto the data.
# - On the ring of Gaussians, exact numbers show what pictures hide: log-likelihood under the true density, mode
#   coverage, stray samples, mode width, an energy distance, and the ELBO, which bounds the model's own NLL point by
#   point and the true NLL on average; with the fixed variance $\tilde\beta_t$ it stays a nat loose even for the exact
#   $\varepsilon^*$, with $\beta_t$ it is nearly tight.
# - At an equal budget and over 3 seeds, the input features, the schedule and the target change the samples clearly.
#   The number of steps $T$ matters too, but $\sigma_t^2 = \tilde\beta_t$ hides it in the log-likelihood by drawing
#   narrower modes at small $T$; $\beta_t$ shows it. At $T = 200$, $\beta_t$ is the closer variance for the exact
#   $\varepsilon^*$, $\tilde\beta_t$ for our trained models, whose errors it partly offsets. Cosine and sigmoid
#   schedules need the predicted $\hat x_0$ clipped when sampling.
#
# **Next, notebook 04:** images. The MLP becomes a U-Net, the points become 28×28 MNIST digits, and the same
# `train` function does the work.
#
# If your samples look wrong, see [notebook 06](https://github.com/ddpm-from-scratch/ddpm-from-scratch/blob/main/notebooks/06_debugging.ipynb).

# %% [markdown]
# ## Solutions
#
# Try the exercises first. Running these cells fills in the answers and runs the same checks.

# %%
def my_time_embedding(t, dim):
    half = dim // 2
    freqs = 10_000 ** (-torch.arange(half) / half)  # ω_i = 10000^(−i/half)
    angles = t[:, None].float() * freqs[None, :]  # ω_i t
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def my_v_loss(model, diffusion, x0, generator):
    t = torch.randint(0, diffusion.T, (x0.shape[0],), generator=generator)  # code t; the paper's t + 1
    eps = torch.randn(x0.shape, generator=generator)  # ε ~ N(0, I)
    alpha_bar = diffusion.alpha_bar[t].to(x0.dtype)[:, None]  # ᾱ at code t, shape (B, 1)
    xt = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps  # Eq. 4
    v = alpha_bar.sqrt() * eps - (1 - alpha_bar).sqrt() * x0  # the v target (Salimans & Ho 2022)
    return (model(xt, t) - v).pow(2).mean()


def eps_star_gaussian(xt, alpha_bar, s):
    variance = alpha_bar * s**2 + 1 - alpha_bar  # Var of x_t per coordinate
    return (1 - alpha_bar).sqrt() * xt / variance  # −√(1−ᾱ) · (−x_t / variance)


check_exercise_1(my_time_embedding)
check_exercise_2(my_v_loss)
check_exercise_3(eps_star_gaussian)

s_demo = 0.5  # the length of ε* over that of x_t, at every step, against the formula derived below
factor = eps_star_gaussian(torch.ones(T, dtype=torch.float64), diffusion.alpha_bar, s_demo)
k = int(factor.argmax())
print(f"s = {s_demo}: |eps*| / |x_t| peaks at {factor[k]:.3f} at paper t = {k + 1} (1 - alpha_bar = "
      f"{1 - diffusion.alpha_bar[k]:.3f}); formula: peak 1 / (2 s sqrt(1 - s^2)) = "
      f"{1 / (2 * s_demo * (1 - s_demo**2) ** 0.5):.3f} at 1 - alpha_bar = s^2 / (1 - s^2) = "
      f"{s_demo**2 / (1 - s_demo**2):.3f}; at paper t = 1 and T: {factor[0]:.3f}, {factor[-1]:.3f}")

# %% [markdown]
# Exercise 3: $-\varepsilon^*$ points straight at the origin, the data's mean, with length
# $\sqrt{1-\bar\alpha_t}\,\|x_t\|/(\bar\alpha_t s^2 + 1-\bar\alpha_t)$. Write $u = 1-\bar\alpha_t\in(0, 1]$: the
# factor $\sqrt u/(s^2 + u(1-s^2))$ is near 0 at small $t$, where most of $x_t$ is signal, and 1 at $u = 1$. Its
# derivative vanishes at $u = s^2/(1-s^2)$ (about $s^2$ for small $s$), inside the range only for $s\le 1/\sqrt2$:
# there the length is not monotone in $t$, peaks at $1/(2s\sqrt{1-s^2})\ge 1$ times $\|x_t\|$ and falls back to
# $\|x_t\|$ at large $t$, where $x_t\approx\varepsilon$ (printed above for $s = 0.5$); for $1/\sqrt2 < s < 1$ it
# rises monotonically to $\|x_t\|$.

# %%
# NBVAL_IGNORE_OUTPUT
print(f"notebook run time: {time.perf_counter() - notebook_start:.0f} s (profile: {config.profile()}, "
      f"{torch.get_num_threads()} CPU threads)")

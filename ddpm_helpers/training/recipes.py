"""The U-Net and training configurations of notebooks 04 (MNIST) and 05 (butterflies), in one place.

The notebooks and the command line (``python -m ddpm_helpers.train_cli``) build their networks and
``TrainConfig`` objects from here, so a run from a shell trains exactly what the notebook trains.
Each recipe is named ``<data>-<kind>``: ``quick`` (CI, seconds), ``cpu`` (the committed full-profile
runs) and ``gpu`` (sized for a T4-class GPU). The GPU recipes use a *calibrated step budget*
(``TrainConfig.time_budget_s``): the loop times its first steps, plans (and re-plans) how many steps fit
into the budget, so the cosine learning-rate schedule always ends inside the stated time on any GPU.
How many steps that is on a T4 is estimated from the FLOPs of a step in notebooks 04 and 05.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ddpm_helpers.training.train_config import TrainConfig


@dataclass(frozen=True)
class Recipe:
    """A network (``UNet(**unet)``) and how to train it (``train_config()`` returns a fresh TrainConfig)."""

    name: str
    data: str  # "mnist" or "butterflies"
    unet: dict
    train: dict = field(repr=False)
    clusters: int = 0  # k-means clusters as classes after the labels (datasets.clusters.labels_and_clusters)

    def train_config(self, **changes) -> TrainConfig:
        """A new ``TrainConfig`` of this recipe, with ``changes`` (e.g. ``steps=...``) applied."""
        return TrainConfig(**{**self.train, **changes})

    @property
    def image_size(self) -> int:
        return self.unet["image_size"]


# ---------------------------------------------------------------- notebook 04: MNIST, class-conditional

# 10 labels and 40 k-means clusters of the digits (no label used): every digit is trained once with its label and
# once with its cluster, so one network draws digits on request (guided by the label) and without a label (guided
# by a cluster drawn in proportion to the clusters' sizes). Issue 23's measurements are in the experiment log.
_MNIST_CLUSTERS = 40
_MNIST_CLASSES = 10 + _MNIST_CLUSTERS
LABEL_FREE_GUIDANCE = 1.0  # w of classifier-free guidance over the clusters (w = 1: the lowest Fréchet distance)

_MNIST_TRAIN = dict(lr=2e-3, lr_schedule="cosine", ema_decay=0.995, prediction="v", weighting="min_snr",
                    log_every=25, p_uncond=0.1)  # p_uncond: classes dropped 10 % of the time (guidance)

MNIST = {
    "quick": Recipe("mnist-quick", "mnist",
                    dict(in_channels=1, image_size=28, base_channels=8, channel_mults=(1, 2),
                         num_classes=_MNIST_CLASSES),
                    dict(_MNIST_TRAIN, steps=30, batch_size=32, warmup_steps=5), clusters=_MNIST_CLUSTERS),
    # 2 CPU cores: the narrowest network of 04's measurements, as many steps as fit a 10-minute calibrated budget
    "cpu": Recipe("mnist-cpu", "mnist",
                  dict(in_channels=1, image_size=28, base_channels=16, channel_mults=(1, 2, 2),
                       num_classes=_MNIST_CLASSES),
                  dict(_MNIST_TRAIN, steps=None, time_budget_s=10 * 60, batch_size=32, warmup_steps=100,
                       calibration_steps=200,  # 150 timed steps: 20 left the run ~6 % too long
                       channels_last=True,  # about 1.25× the steps per minute (benchmarks/cpu_throughput.py)
                       mixed_precision="auto"),  # bfloat16 where the CPU computes it natively (AMX, AVX-512-BF16)
                  clusters=_MNIST_CLUSTERS),
    # a T4-class GPU: twice as wide, two blocks per level, attention at 7×7; a 4-minute calibrated budget
    "gpu": Recipe("mnist-gpu", "mnist",
                  dict(in_channels=1, image_size=28, base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=2,
                       attention_resolutions=(7,), num_classes=_MNIST_CLASSES),
                  dict(_MNIST_TRAIN, steps=None, time_budget_s=4 * 60, batch_size=128, lr=1e-3, warmup_steps=200,
                       ema_decay=0.999, log_every=100, mixed_precision="auto"), clusters=_MNIST_CLUSTERS),
}

# ---------------------------------------------------------------- notebook 05: butterflies, unconditional

_BUTTERFLY_TRAIN = dict(lr_schedule="cosine", prediction="v", weighting="min_snr", seed=0)
_UNET_64 = dict(in_channels=3, base_channels=64, channel_mults=(1, 2, 2, 2), num_res_blocks=2,
                attention_resolutions=(16, 8), dropout=0.1, image_size=64)

BUTTERFLIES = {
    "quick": Recipe("butterflies-quick", "butterflies",
                    dict(in_channels=3, base_channels=16, channel_mults=(1, 2), num_res_blocks=1,
                         attention_resolutions=(8,), dropout=0.1, image_size=16),
                    dict(_BUTTERFLY_TRAIN, steps=30, batch_size=8, lr=1e-3, warmup_steps=5, ema_decay=0.9,
                         log_every=10)),
    # the CPU model explained in 05's section 2; as many steps as fit a 30-minute calibrated budget
    "cpu": Recipe("butterflies-cpu", "butterflies",
                  dict(in_channels=3, base_channels=24, channel_mults=(1, 2, 2), num_res_blocks=1,
                       attention_resolutions=(8,), dropout=0.1, image_size=32),
                  dict(_BUTTERFLY_TRAIN, steps=None, time_budget_s=30 * 60, batch_size=32, lr=1e-3, warmup_steps=100,
                       ema_decay=0.999, log_every=50, calibration_steps=200)),  # 20 left the run ~19 % short
    # 64×64 on 2 CPU cores (issue 24): 05's CPU network, a little wider, behind a 2×2 patch stem (its levels run at
    # 32, 16 and 8 pixels); a fixed step count, about two hours at the 0.47 s a step measured on an idle 2-core Intel
    # Xeon (benchmarks/butterflies64_log.md), trained from the command line and resumable
    "cpu64": Recipe("butterflies64-cpu", "butterflies",
                    dict(in_channels=3, base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1,
                         attention_resolutions=(8,), dropout=0.1, image_size=64, patch_size=2),
                    dict(_BUTTERFLY_TRAIN, steps=15_000, batch_size=32, lr=1e-3, warmup_steps=200, ema_decay=0.999,
                         log_every=50, channels_last=True)),
    # 64×64 on a T4-class GPU: a 40-minute calibrated budget
    "gpu": Recipe("butterflies-gpu", "butterflies", _UNET_64,
                  dict(_BUTTERFLY_TRAIN, steps=None, time_budget_s=40 * 60, batch_size=64, lr=2e-4, warmup_steps=100,
                       ema_decay=0.999, log_every=50, mixed_precision="auto")),
    # 128×128: the 64×64 network behind a 2×2 patch stem (Hoogeboom et al. 2023), so it costs about the same
    "gpu128": Recipe("butterflies128-gpu", "butterflies",
                     dict(_UNET_64, image_size=128, patch_size=2, attention_resolutions=(16,)),
                     dict(_BUTTERFLY_TRAIN, steps=None, time_budget_s=40 * 60, batch_size=64, lr=2e-4,
                          warmup_steps=100, ema_decay=0.999, log_every=50, mixed_precision="auto")),
}

RECIPES = {recipe.name: recipe for recipe in (*MNIST.values(), *BUTTERFLIES.values())}


def mnist(profile: str, gpu: bool) -> Recipe:
    """Notebook 04's recipe for ``profile`` ("quick" or "full") on a GPU or a CPU."""
    return MNIST["quick" if profile == "quick" else ("gpu" if gpu else "cpu")]


def butterflies(profile: str, gpu: bool) -> Recipe:
    """Notebook 05's recipe for ``profile`` ("quick" or "full") on a GPU or a CPU (the GPU one at 64×64)."""
    return BUTTERFLIES["quick" if profile == "quick" else ("gpu" if gpu else "cpu")]


def get(name: str) -> Recipe:
    """The recipe called ``name`` (one of ``RECIPES``)."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {sorted(RECIPES)}")
    return RECIPES[name]


# ---------------------------------------------------------------- what a GPU recipe costs (estimates)

# A T4 (Colab's free GPU) peaks at 65 TFLOP/s in float16 on its tensor cores and 8.1 in float32. A small U-Net
# step reaches a fraction of the peak (GroupNorm, SiLU, adds and the optimizer are memory-bound); we *assume*
# 16 TFLOP/s under autocast (a quarter of the peak) and at least 20 ms per step (kernel launches of ~1000 small
# kernels). Neither is measured: they only predict how many steps a calibrated budget will buy.
T4_ASSUMED_FLOPS = 16e12
T4_ASSUMED_MIN_STEP_S = 0.020


def training_step_flops(recipe: Recipe) -> float:
    """FLOPs of one training step of ``recipe`` (forward and backward of its U-Net at its batch size), counted
    by ``torch.utils.flop_counter.FlopCounterMode`` on one image on the CPU (a multiply-add counts 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    from ddpm_helpers.nn.unet import UNet

    model = UNet(**recipe.unet)
    x = torch.zeros(1, recipe.unet["in_channels"], recipe.image_size, recipe.image_size)
    labels = torch.zeros(1, dtype=torch.long) if recipe.unet.get("num_classes") else None
    with FlopCounterMode(display=False) as counter:
        model(x, torch.zeros(1, dtype=torch.long), labels).square().mean().backward()
    return counter.get_total_flops() * recipe.train_config().batch_size  # FLOPs grow linearly with the batch


def t4_estimate(recipe: Recipe) -> dict:
    """Estimated seconds per step and steps in the budget on a T4 (from FLOPs and the assumptions above)."""
    flops = training_step_flops(recipe)
    seconds = max(flops / T4_ASSUMED_FLOPS, T4_ASSUMED_MIN_STEP_S)
    budget = recipe.train.get("time_budget_s")
    return {"flops_per_step": flops, "seconds_per_step": seconds,
            "steps_in_budget": int(budget / seconds) if budget else None}

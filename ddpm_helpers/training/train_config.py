"""The hyper-parameters of a training run and its learning-rate schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ddpm_helpers.checks import check_int, check_name, check_number
from ddpm_helpers.diffusion import PREDICTIONS
from ddpm_helpers.losses import WEIGHTINGS
from ddpm_helpers.training.precision import MIXED_PRECISIONS

LR_SCHEDULES = ("constant", "cosine", "wsd")


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train`.

    **How long.** ``steps`` is the number of optimizer steps and the length of the LR schedule. With
    ``time_budget_s`` (a *calibrated budget*: the same wall-clock time on any machine) the run times its
    first ``calibration_steps`` steps (the first quarter of them warm up, untimed), plans the number of steps
    that fits into ``time_budget_s`` seconds of training in total (resumed calls included), at most ``steps``
    (``steps=None``: no cap), and re-plans halfway through what is left of each plan from the step time
    measured since (``training.plan``), so that a machine busy for a while neither cuts the run short nor
    lets it overrun. The plans are stored in the checkpoint, so a resumed run continues them; the LR
    schedule follows the progress through them and ends at its floor at the last step; the last plan is
    ``TrainResult.planned_steps``. Until the first plan the LR after the warmup is held at ``lr``. Keep
    fixed ``steps`` where a run must be reproducible step for step (tests, the quick profile).
    ``time_limit_s`` is a hard stop of one call after that many wall-clock seconds, ``stop_at_step`` one at that
    step (``TrainResult.stopped_early``); neither changes the schedule, and the next call trains on.

    **Learning rate.** A linear warmup over ``warmup_steps``, then ``lr_schedule``: "constant", "cosine" (decay to 0
    at the last step) or "wsd" (warmup–stable–decay: constant, then a linear cool-down to 0 over the last
    ``cooldown`` fraction of the run). Under "wsd" a run of N steps is, up to :func:`branch_step` of N, the same run
    as any longer one: its checkpoint there can be resumed with ``steps=N`` (a *branch*), so runs of many lengths
    share one trunk (``benchmarks/mnist_curve.py``).

    **Checkpoints** (when ``train`` is given ``out_dir``): every ``checkpoint_every`` steps when it is set
    (``0``: only at the end and when stopped), otherwise every ``checkpoint_interval_s`` seconds of
    wall-clock time, whatever the step time.

    ``batch_size`` sizes the random minibatches drawn when ``batches`` is a Tensor or an
    ``(images, labels)`` pair of Tensors (a callable or DataLoader sets its own). ``grad_clip=None``
    disables clipping. ``p_uncond=None`` trains an unconditional ``model(x_t, t)`` (labels in the
    batches are ignored); a value in [0, 1) trains ``model(x_t, t, y)`` on ``(x, y)`` batches, each
    label replaced by "no label" with that probability. ``mixed_precision``: one of ``MIXED_PRECISIONS``
    ("auto": bf16 or fp16 with loss scaling on CUDA, bf16 on a CPU that computes it natively, else off).
    ``channels_last``: the network's weights (and so its activations) in the channels-last memory format, which
    makes the convolutions of a small U-Net about a quarter faster on a CPU (``benchmarks/cpu_throughput.py``);
    the numbers change only by rounding. Under torchrun ``batch_size`` is per rank: the effective batch is world
    size × ``batch_size``. Every field is checked here (ValueError naming it).
    """

    steps: int | None
    batch_size: int
    lr: float = 1e-3
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    grad_clip: float | None = 1.0
    ema_decay: float = 0.999
    prediction: str = "eps"
    weighting: str = "none"
    min_snr_gamma: float = 5.0
    checkpoint_every: int | None = None
    log_every: int = 50
    seed: int = 0
    time_limit_s: float | None = None
    p_uncond: float | None = None
    time_budget_s: float | None = None
    calibration_steps: int = 20
    checkpoint_interval_s: float = 120.0
    mixed_precision: str = "off"
    channels_last: bool = False
    cooldown: float = 0.2
    stop_at_step: int | None = None

    def __post_init__(self):
        self.validate()

    def validate(self) -> TrainConfig:
        """Check (and normalise) every field: ValueError naming the first bad one. Run at construction and again by
        ``train``, so a field changed after construction is checked too; returns the config."""

        def positive(name):  # a finite number > 0, normalised to float
            setattr(self, name, check_number(getattr(self, name), name, low=0, low_open=True))

        if self.steps is None and self.time_budget_s is None:
            raise ValueError("steps=None needs a calibrated budget: give steps, or time_budget_s (and steps=None)")
        if self.steps is not None:
            self.steps = check_int(self.steps, "steps")
        self.batch_size = check_int(self.batch_size, "batch_size")
        self.log_every = check_int(self.log_every, "log_every")
        self.warmup_steps = check_int(self.warmup_steps, "warmup_steps", low=0)
        self.calibration_steps = check_int(self.calibration_steps, "calibration_steps", low=2)
        self.seed = check_int(self.seed, "seed", low=0, high=2**32 - 2)  # seed + 1 seeds the noise generator
        self.cooldown = check_number(self.cooldown, "cooldown", 0.0, 1.0, low_open=True)
        if self.stop_at_step is not None:
            self.stop_at_step = check_int(self.stop_at_step, "stop_at_step", low=0)
        if self.checkpoint_every is not None:
            self.checkpoint_every = check_int(self.checkpoint_every, "checkpoint_every", low=0)
        for name in ("lr", "min_snr_gamma", "checkpoint_interval_s") + tuple(
                name for name in ("grad_clip", "time_limit_s", "time_budget_s") if getattr(self, name) is not None):
            positive(name)
        self.ema_decay = check_number(self.ema_decay, "ema_decay", 0.0, 1.0, high_open=True)
        if self.p_uncond is not None:
            self.p_uncond = check_number(self.p_uncond, "p_uncond", 0.0, 1.0, high_open=True)
        check_name(self.lr_schedule, LR_SCHEDULES, "lr_schedule")
        check_name(self.prediction, PREDICTIONS, "prediction")
        check_name(self.weighting, WEIGHTINGS, "weighting")
        check_name(self.mixed_precision, MIXED_PRECISIONS, "mixed_precision")
        if not isinstance(self.channels_last, bool):
            raise ValueError(f"channels_last must be True or False, got {self.channels_last!r}")
        if self.time_budget_s is None and self.warmup_steps > self.steps:  # a fixed number of steps
            raise ValueError(f"warmup_steps={self.warmup_steps} is more than steps={self.steps}: the learning rate "
                             "would never leave its warm-up; use warmup_steps <= steps")
        return self


def lr_at_step(step: int, config: TrainConfig, total_steps: int | None = None) -> float:
    """Learning rate of 0-based ``step`` for one plan of ``total_steps`` steps: linear warmup to ``lr``, then constant
    or cosine decay to 0 (:func:`scheduled_lr` at progress p = (step − warmup)/(total − warmup)).

    ``total_steps`` is ``config.steps``; without it a budget's LR after the warmup is ``lr``. A calibrated budget
    (``config.time_budget_s``) follows its plans instead: ``scheduled_lr(step, config, plan.progress(step))`` with
    the ``training.plan.StepPlan`` stored in its checkpoint (``StepPlan.from_checkpoint``).
    """
    if total_steps is None and config.time_budget_s is None:
        total_steps = config.steps
    progress = None if total_steps is None else (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
    return scheduled_lr(step, config, progress)


def scheduled_lr(step: int, config: TrainConfig, progress: float | None) -> float:
    """Learning rate of 0-based ``step`` at ``progress`` p ∈ [0, 1] through the run's plan (None: not planned yet).

    warmup: lr·(step+1)/warmup_steps; cosine: lr·½(1 + cos(π·p)) (Loshchilov & Hutter 2017, without restarts);
    wsd: lr·min(1, (1 − p)/c) with c = ``cooldown`` (a constant rate, then a linear cool-down; Hägele et al. 2024).
    """
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps  # linear warmup
    if config.lr_schedule == "constant" or progress is None:
        return config.lr
    if config.lr_schedule == "wsd":
        return config.lr * min(1.0, (1.0 - min(progress, 1.0)) / config.cooldown)  # lr·min(1, (1 − p)/c)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))  # cosine decay


def branch_step(steps: int, config: TrainConfig) -> int:
    """The last step at which a "wsd" run of ``steps`` steps still trains at the full rate: up to here it is the same
    run as any longer one of ``config`` (same seed, data and rate), so a longer run's checkpoint at this step,
    resumed with ``steps``, trains exactly this run. Step w + ⌊(1 − c)(N − w)⌋ (w: warmup steps, c: ``cooldown``)."""
    if config.lr_schedule != "wsd":
        raise ValueError(f"runs branch off a longer one only under lr_schedule='wsd', not {config.lr_schedule!r}")
    steps = check_int(steps, "steps", low=config.warmup_steps + 1)
    return config.warmup_steps + math.floor((1.0 - config.cooldown) * (steps - config.warmup_steps))

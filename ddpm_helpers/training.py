"""The training loop shared by every notebook: Algorithm 1 of Ho et al. 2020, made robust.

One step: draw a batch x₀, draw t ~ U{0,…,T−1} and ε ~ N(0, I), minimise the simple loss
‖target − model(x_t, t)‖² (Ho et al. 2020, Algorithm 1 / Eq. 14, see ``losses.diffusion_loss``)
with Adam (for a class-conditional network, ``model(x_t, t, y)`` with the label dropped at rate
``p_uncond``: classifier-free guidance training, Ho & Salimans 2022, Algorithm 1). Around that
step: linear LR warmup then a constant or cosine LR, gradient-norm clipping, an EMA of the
weights, a tqdm bar, a per-step loss history, a FloatingPointError naming the step where the
loss stops being finite, an optional calibrated step budget and an optional hard time limit, and
atomic checkpoints in ``out_dir`` (every two minutes by default, on Ctrl-C or SIGTERM, at the end)
from which an interrupted run resumes bit-for-bit (model, EMA, optimizer, step, planned steps,
random generator states, loss history). The LR is a pure function of the step
(:func:`lr_at_step`), so the step *is* the scheduler state.

Randomness comes from two generators seeded by ``TrainConfig.seed``: ``data`` (CPU, handed to
a ``batches`` callable and used for random minibatch indices) and ``noise`` (on the training
device, for t and ε). The same seed on the same device gives the same weights.

Under ``torchrun`` (see ``ddpm_helpers.distributed``) every rank trains a
``DistributedDataParallel`` replica on its own minibatch of ``batch_size`` with generators
seeded for its rank; rank 0 decides when to stop, checkpoint and how many steps a budget buys,
and alone writes the checkpoint. With ``mixed_precision`` (see ``ddpm_helpers.precision``) the
forward pass runs under autocast.
"""

import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn
from tqdm import tqdm

from . import distributed
from .checkpoint import CheckpointError, load_checkpoint, remove_stale_temporaries, save_checkpoint
from .checks import check_int, check_name, check_number
from .datasets import random_batches
from .diffusion import PREDICTIONS, Diffusion
from .ema import EMA
from .losses import WEIGHTINGS, diffusion_loss
from .precision import MIXED_PRECISIONS, MixedPrecision, deliberate_sync

CHECKPOINT_NAME = "checkpoint.pt"
LR_SCHEDULES = ("constant", "cosine")
# Fields that must agree between a checkpoint and the config that resumes from it.
_RESUME_FIELDS = ("batch_size", "lr", "warmup_steps", "lr_schedule", "grad_clip", "ema_decay",
                  "prediction", "weighting", "min_snr_gamma", "seed", "p_uncond", "time_budget_s")
# What a checkpoint of train() holds (besides "planned_steps", absent in checkpoints of older versions).
_CHECKPOINT_KEYS = ("model", "ema", "optimizer", "step", "losses", "seconds", "rng", "config", "betas")


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train`.

    **How long.** ``steps`` is the number of optimizer steps and the length of the LR schedule. With
    ``time_budget_s`` (a *calibrated budget*: the same wall-clock time on any machine) the run times its
    first ``calibration_steps`` steps (the first quarter of them warm up, untimed), then fixes, once, the
    number of steps that fits into ``time_budget_s`` seconds of training in total (resumed calls included),
    at most ``steps`` (``steps=None``: no cap). That number is stored in the checkpoint, so a resumed run
    trains exactly to it, it is the length of the LR schedule (a cosine decay ends inside the budget) and
    ``TrainResult.planned_steps`` reports it. Until it is fixed the LR after the warmup is held at ``lr``, so
    with ``warmup_steps >= calibration_steps`` the run equals a fixed-``steps`` run of the chosen length.
    Keep fixed ``steps`` where a run must be reproducible step for step (tests, the quick profile).
    ``time_limit_s`` is a hard stop of one call after that many wall-clock seconds
    (``TrainResult.stopped_early``); it changes no schedule, and the next call trains on.

    **Checkpoints** (when ``train`` is given ``out_dir``): every ``checkpoint_every`` steps when it is set
    (``0``: only at the end and when stopped), otherwise every ``checkpoint_interval_s`` seconds of
    wall-clock time, whatever the step time.

    ``batch_size`` sizes the random minibatches drawn when ``batches`` is a Tensor or an
    ``(images, labels)`` pair of Tensors (a callable or DataLoader sets its own). ``grad_clip=None``
    disables clipping. ``p_uncond=None`` trains an unconditional ``model(x_t, t)`` (labels in the
    batches are ignored); a value in [0, 1) trains ``model(x_t, t, y)`` on ``(x, y)`` batches, each
    label replaced by "no label" with that probability. ``mixed_precision``: one of ``MIXED_PRECISIONS``
    ("auto": bf16 or fp16 with loss scaling on CUDA, off on a CPU). Under torchrun ``batch_size`` is per
    rank: the effective batch is world size × ``batch_size``. Every field is checked here (ValueError naming it).
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

    def __post_init__(self):
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


@dataclass
class TrainResult:
    """What :func:`train` returns. ``losses[i]`` is the loss of step ``i`` (0-based), over all resumed calls;
    ``seconds`` is the training wall-clock time summed over them; ``planned_steps`` is the step count a
    calibrated budget fixed (None without ``time_budget_s``, or before the calibration ended)."""

    model: nn.Module
    ema: EMA
    losses: list[float]
    steps: int
    seconds: float
    stopped_early: bool = False
    checkpoint_path: Path | None = field(default=None)
    planned_steps: int | None = None


def lr_at_step(step: int, config: TrainConfig, total_steps: int | None = None) -> float:
    """Learning rate of 0-based ``step``: linear warmup to ``lr``, then constant or cosine decay to 0.

    warmup: lr·(step+1)/warmup_steps; cosine: lr·½(1 + cos(π·p)), p = (step − warmup)/(total − warmup)
    (Loshchilov & Hutter 2017, without restarts). ``total_steps`` is ``config.steps``, or for a calibrated
    budget (``config.time_budget_s``) the planned steps; before they are fixed the LR after the warmup is ``lr``.
    """
    if total_steps is None and config.time_budget_s is None:
        total_steps = config.steps
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps  # linear warmup
    if config.lr_schedule == "constant" or total_steps is None:
        return config.lr
    progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))  # cosine decay


class _StepPlan:
    """How many steps the run trains: ``config.steps``, or for a calibrated budget a count fixed once from the
    step time measured over the first ``calibration_steps`` steps of a call (after a quarter of them as warm-up).

    ``total`` is the length of the LR schedule (None until a budget's count is fixed); ``end`` the step at
    which this call stops (``total`` capped by ``config.steps``; infinite while unknown and uncapped).
    """

    def __init__(self, config: TrainConfig, planned: int | None, first_step: int, seconds_before: float, start: float):
        self.config, self._seconds_before, self._start = config, seconds_before, start
        self.total = config.steps if config.time_budget_s is None else planned
        self._timed_from = first_step + max(1, config.calibration_steps // 4)  # steps before this one warm up
        self._timed_to = first_step + config.calibration_steps
        self._clock = 0.0
        if self.total is None and config.steps is not None and config.steps <= self._timed_to:
            self.total = config.steps  # the cap ends the run before the calibration would: nothing to measure

    @property
    def planned(self) -> int | None:
        """The step count a calibrated budget fixed (stored in checkpoints); None without a budget."""
        return self.total if self.config.time_budget_s is not None else None

    @property
    def end(self) -> float:
        cap = math.inf if self.config.steps is None else self.config.steps
        return cap if self.total is None else min(self.total, cap)

    def after_step(self, step: int, device: torch.device) -> bool:
        """Time the calibration window (two device syncs in a whole run); True when the count was just fixed."""
        if self.total is not None or step not in (self._timed_from, self._timed_to):
            return False
        _synchronize(device)
        now = time.perf_counter()
        if step == self._timed_from:
            self._clock = now
            return False
        step_seconds = (now - self._clock) / (self._timed_to - self._timed_from)
        seconds_left = self.config.time_budget_s - (self._seconds_before + now - self._start)
        affordable = self._timed_to + max(0, math.floor(seconds_left / step_seconds))  # steps that fit the budget
        self.total = int(min(affordable, self.end))
        return True


def _synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (so that the host clock measures it)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _checkpoint_due(config: TrainConfig, step: int, seconds_since_save: float) -> bool:
    """Every ``checkpoint_every`` steps when set (0: never in between), else every ``checkpoint_interval_s`` seconds."""
    if config.checkpoint_every is not None:
        return config.checkpoint_every > 0 and step % config.checkpoint_every == 0
    return seconds_since_save >= config.checkpoint_interval_s


def _batch_source(batches, batch_size: int) -> Callable[[int, torch.Generator], Any]:
    """Turn a Tensor, an (images, labels) pair of Tensors, a callable (step, generator) -> batch,
    or an iterable (cycled) into one callable."""
    if isinstance(batches, Tensor):
        return random_batches(batches, batch_size)
    if isinstance(batches, tuple) and len(batches) == 2 and all(isinstance(b, Tensor) for b in batches):
        return random_batches(batches[0], batch_size, labels=batches[1])
    if callable(batches):
        return batches
    if isinstance(batches, Iterable):
        state = {"it": iter(batches)}

        def cycle(step: int, generator: torch.Generator):
            try:
                return next(state["it"])
            except StopIteration:  # start the next pass over the data
                state["it"] = iter(batches)
                try:
                    return next(state["it"])
                except StopIteration:
                    raise ValueError("batches is an empty iterable: it yielded no batch") from None

        return cycle
    raise ValueError(f"batches must be a Tensor, a callable (step, generator) -> Tensor, or an iterable; "
                     f"got {type(batches).__name__}")


def _as_x0_and_labels(batch, step: int, device: torch.device, conditional: bool) -> tuple[Tensor, Tensor | None]:
    """x₀ of a batch (the first item of an (x, label) pair) and, for conditional training, the labels; on ``device``."""
    labels = None
    if isinstance(batch, (tuple, list)):
        batch, labels = batch[0], (batch[1] if len(batch) > 1 else None)
    if not isinstance(batch, Tensor) or not batch.is_floating_point() or batch.ndim < 2 or len(batch) == 0:
        raise ValueError(f"step {step}: a batch must be a non-empty floating-point Tensor (B, ...), "
                         f"got {type(batch).__name__} {tuple(getattr(batch, 'shape', ()))}")
    if not conditional:
        return batch.to(device, non_blocking=True), None
    if not isinstance(labels, Tensor):
        raise ValueError(f"step {step}: p_uncond is set (conditional training), so a batch must be an (x, labels) pair "
                         "of Tensors; pass (images, labels) or a DataLoader of pairs")
    return batch.to(device, non_blocking=True), labels.to(device, non_blocking=True)


class _DeferredStop:
    """While active, a first SIGINT (Ctrl-C, "interrupt kernel") or SIGTERM (``kill``, a job scheduler) is held
    until the current step has finished, so that a consistent checkpoint can be written; a second one
    interrupts at once. On exit the previous handlers are restored; :meth:`propagate` then passes the
    signal on: KeyboardInterrupt for SIGINT, the previous SIGTERM handler (by default: terminate) for SIGTERM."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __enter__(self):
        if self.enabled:
            try:
                for signum in self.SIGNALS:
                    if signal.getsignal(signum) not in (signal.SIG_IGN, None):  # an ignored signal stays ignored
                        self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not in the main thread: signals cannot be caught here
                self.__exit__()
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()
        return False

    def propagate(self, message: str) -> None:
        """After exit: raise KeyboardInterrupt(message) for SIGINT, re-deliver SIGTERM to the previous handler."""
        if self.signum == signal.SIGINT:
            raise KeyboardInterrupt(message)
        if self.signum == signal.SIGTERM:
            signal.raise_signal(signal.SIGTERM)


def _rng_states(data_gen: torch.Generator, noise_gen: torch.Generator, device: torch.device) -> dict[str, Tensor]:
    states = {"data": data_gen.get_state(), "noise": noise_gen.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def _set_rng_states(states: dict[str, Tensor], data_gen, noise_gen, device: torch.device) -> None:
    states = {name: state.cpu() for name, state in states.items()}  # generator states are CPU byte tensors
    data_gen.set_state(states["data"])
    noise_gen.set_state(states["noise"])
    torch.set_rng_state(states["torch"])
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)


def _check_inputs(model, diffusion, config: TrainConfig, resume) -> None:
    """ValueErrors for arguments of :func:`train` that :class:`TrainConfig` cannot check alone."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(diffusion, Diffusion):
        raise ValueError(f"diffusion must be a ddpm_helpers.diffusion.Diffusion, got {type(diffusion).__name__}")
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    if not isinstance(resume, bool):
        raise ValueError(f"resume must be True or False, got resume={resume!r}")
    num_classes = getattr(model, "num_classes", None)
    if num_classes is not None and config.p_uncond is None:
        raise ValueError(
            f"the model is class-conditional (num_classes={num_classes}) but p_uncond=None would train it without "
            "ever showing it a label: pass (images, labels) batches with p_uncond=0.1 (labels dropped 10 % of the "
            "time, for classifier-free guidance) or p_uncond=0.0, or build the model with num_classes=None")
    if config.p_uncond is not None and hasattr(model, "num_classes") and num_classes is None:
        raise ValueError(f"p_uncond={config.p_uncond} trains on labels but the model is unconditional "
                         "(num_classes=None): build it with num_classes=..., or pass p_uncond=None")


def _as_device(device) -> torch.device:
    """``device`` as a torch.device that exists here; ValueError naming it otherwise."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be a torch.device or a string such as 'cpu' or 'cuda', got {device!r}") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"device={str(device)!r} but {torch.cuda.device_count()} CUDA device(s) are available; "
                         "use config.get_device() to pick one that exists")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device='mps' but MPS is not available; use config.get_device() to pick one that exists")
    return device


def _checkpoint_path(out_dir) -> Path | None:
    """``out_dir / checkpoint.pt`` with ``out_dir`` created and writable, stale temporary files of an interrupted
    save removed; None without ``out_dir``. ValueError naming the folder when it cannot hold checkpoints."""
    if out_dir is None:
        return None
    if not isinstance(out_dir, (str, os.PathLike)):
        raise ValueError(f"out_dir must be a folder path (str or Path) or None, got {type(out_dir).__name__}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir={str(out_dir)!r} is a file, not a folder: pass the folder to hold {CHECKPOINT_NAME}")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"cannot create out_dir={str(out_dir)!r} ({error.strerror}): pass a folder you can write to")
    if not os.access(out_dir, os.W_OK):
        raise ValueError(f"out_dir={str(out_dir)!r} is not writable: pass a folder you can write to")
    path = out_dir / CHECKPOINT_NAME
    if path.exists() and not path.is_file():
        raise ValueError(f"{path} is a folder, not a checkpoint file: remove it or pass another out_dir")
    remove_stale_temporaries(path)
    return path


def _load_training_state(path: Path, config: TrainConfig, diffusion: Diffusion, device: torch.device,
                         world_size: int) -> dict:
    """The checkpoint at ``path``, checked to be a checkpoint of :func:`train` of this run and to fit ``config``."""
    state = load_checkpoint(path, map_location=device)
    missing = [key for key in _CHECKPOINT_KEYS if key not in state]
    if missing or not isinstance(state["config"], dict) or not isinstance(state["step"], int):
        raise CheckpointError(f"{path} is not a training checkpoint of train() (missing or malformed: "
                              f"{missing or ['config', 'step']}); pass resume=False to train afresh and overwrite it")
    _check_resumable(state, config, diffusion, path, world_size)
    if config.steps is not None and state["step"] > config.steps:
        raise ValueError(
            f"cannot resume from {path}: it holds {state['step']} trained steps, more than steps={config.steps}; "
            f"pass steps >= {state['step']} to continue it (steps={state['step']} returns it as it is), "
            "or resume=False / another out_dir to train a shorter run afresh")
    return state


def _check_resumable(state: dict, config: TrainConfig, diffusion: Diffusion, path: Path, world_size: int) -> None:
    """ValueError naming what differs when a checkpoint was written by another run."""
    saved = state["config"]
    differ = [f"{k}: checkpoint {saved.get(k)!r} vs now {getattr(config, k)!r}"
              for k in _RESUME_FIELDS if saved.get(k) != getattr(config, k)]
    if state.get("world_size", 1) != world_size:  # the effective batch is world size × batch_size
        differ.append(f"processes: checkpoint {state.get('world_size', 1)} vs now {world_size}")
    betas = state["betas"].to(diffusion.betas.device, diffusion.betas.dtype)
    if betas.shape != diffusion.betas.shape or not torch.allclose(betas, diffusion.betas):
        differ.append(f"noise schedule: checkpoint T={len(betas)} vs now T={diffusion.T} (or different betas)")
    if differ:
        raise ValueError(f"cannot resume from {path}, it was written by a different run ({'; '.join(differ)}); "
                         "pass resume=False or another out_dir")


def _main_reads_state(path: Path, config: TrainConfig, diffusion: Diffusion, device: torch.device,
                      ranks: distributed.Context) -> dict:
    """The checkpoint, read and checked by rank 0 and sent to every rank (its error raised on every rank)."""
    state = None
    if ranks.is_main:
        try:
            where = "cpu" if ranks.enabled else device  # sent through the CPU group, then restored onto each device
            state = _load_training_state(path, config, diffusion, where, ranks.world_size)
        except ValueError as error:  # CheckpointError included
            if not ranks.enabled:
                raise
            state = error
    state = distributed.broadcast_object(state, ranks)
    if isinstance(state, ValueError):
        raise state
    return state


def _restore(state: dict, path: Path, model: nn.Module, ema: EMA, optimizer, generators, device) -> None:
    """Load weights, EMA, optimizer and generator states; CheckpointError when they do not fit this model."""
    try:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        _set_rng_states(state["rng"], *generators, device)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as error:
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"cannot resume from {path}: it does not fit this model or optimizer ({reason}); "
                              "pass resume=False or another out_dir") from None


def _train_step(model: nn.Module, net: nn.Module, ema: EMA, optimizer, precision: MixedPrecision,
                diffusion: Diffusion, x0: Tensor, labels: Tensor | None, lr: float, noise_gen: torch.Generator,
                config: TrainConfig) -> Tensor:
    """One step of Algorithm 1 (loss, backward, clipping, Adam, EMA); the loss, detached, still on the device.
    ``net`` is ``model`` or its DistributedDataParallel wrapper."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with precision.autocast():
        loss = diffusion_loss(net, diffusion, x0, prediction=config.prediction, weighting=config.weighting,
                              min_snr_gamma=config.min_snr_gamma, generator=noise_gen,
                              labels=labels, p_uncond=config.p_uncond or 0.0)
    optimizer.zero_grad(set_to_none=True)
    precision.backward(loss)  # under DDP the gradients are averaged over the ranks here
    if config.grad_clip is not None:
        precision.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)  # rescale g if ‖g‖ > grad_clip
    precision.step(optimizer)
    ema.update(model)  # θ_ema ← d·θ_ema + (1 − d)·θ
    return loss.detach()


def train(model: nn.Module, diffusion: Diffusion, batches, config: TrainConfig, *,
          device: torch.device | str, out_dir: str | Path | None = None, resume: bool = True,
          progress: bool = True) -> TrainResult:
    """Train ``model`` to predict ``config.prediction`` from x_t (Ho et al. 2020, Algorithm 1).

    ``batches``: a Tensor of training examples (random minibatches of ``config.batch_size``), a pair
    ``(images, labels)`` of Tensors (random minibatches of both, for ``config.p_uncond``),
    a callable ``(step, generator) -> x0`` (use ``generator`` for any randomness), or an iterable
    such as a DataLoader (cycled; of an ``(x, label)`` pair only ``x`` is used unless ``config.p_uncond``
    is set). Batches are moved to ``device``. A class-conditional model (``model.num_classes`` set) needs
    ``config.p_uncond``.
    ``out_dir``: where ``checkpoint.pt`` is written periodically (see :class:`TrainConfig`), at the end,
    and when the run is interrupted (Ctrl-C or SIGTERM finish the current step first); stale temporary
    files of an interrupted save are removed at the start. With ``resume=True`` an existing checkpoint
    there is loaded and training continues from its step; a callable or Tensor ``batches`` then gives
    exactly the weights of an uninterrupted run (a DataLoader restarts its pass over the data). An
    unreadable checkpoint, or one of another run, raises a ValueError naming it. Raises FloatingPointError
    naming the first step whose loss is NaN/inf.
    """
    _check_inputs(model, diffusion, config, resume)
    device = _as_device(device)
    ckpt_path = _checkpoint_path(out_dir)
    next_batch = _batch_source(batches, config.batch_size)
    model.to(device)
    ema = EMA(model, decay=config.ema_decay)
    precision = MixedPrecision(config.mixed_precision, device)
    optimizer = precision.optimizer(model.parameters(), lr=config.lr)
    ranks = distributed.current()  # a single rank without torchrun
    seed = distributed.rank_seed(config.seed, ranks.rank)  # = config.seed on rank 0
    data_gen = torch.Generator().manual_seed(seed)  # minibatches (CPU)
    noise_gen = torch.Generator(device=device).manual_seed(seed + 1)  # t and ε (training device)
    step, losses, seconds_before, planned = 0, [], 0.0, None

    if distributed.broadcast_from_main([ckpt_path is not None and resume and ckpt_path.is_file()], ranks)[0]:
        state = _main_reads_state(ckpt_path, config, diffusion, device, ranks)
        _restore({**state, "rng": state["rng_ranks"][ranks.rank]} if ranks.enabled else state,
                 ckpt_path, model, ema, optimizer, (data_gen, noise_gen), device)
        precision.load_state_dict(state.get("grad_scaler", {}))
        step, losses, seconds_before = state["step"], list(state["losses"]), state["seconds"]
        planned = state.get("planned_steps")
    net = distributed.wrap(model, device, ranks)  # DistributedDataParallel under torchrun (from rank 0's weights)
    if ranks.enabled and step == 0:
        ema.model.load_state_dict(model.state_dict())  # the EMA starts from rank 0's weights on every rank, too

    start = time.perf_counter()
    plan = _StepPlan(config, planned, step, seconds_before, start)
    saved = {"step": step, "time": start}  # the last checkpoint written

    def checkpoint() -> None:
        rng_ranks = distributed.gather_to_main(_rng_states(data_gen, noise_gen, device), ranks)  # every rank calls
        if ranks.is_main:  # only rank 0 writes
            with deliberate_sync():
                state = {
                    "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                    "step": step, "losses": losses, "seconds": seconds_before + time.perf_counter() - start,
                    "rng": rng_ranks[0], "config": asdict(config), "betas": diffusion.betas.detach().cpu(),
                    "planned_steps": plan.planned,
                }
                if ranks.enabled:
                    state.update(world_size=ranks.world_size, rng_ranks=rng_ranks)
                if precision.scaler is not None:
                    state["grad_scaler"] = precision.state_dict()
                save_checkpoint(ckpt_path, state)
        saved.update(step=step, time=time.perf_counter())

    pending: list[Tensor] = []  # losses still on the device (fetched every log_every steps: fewer syncs)

    def flush() -> None:
        if not pending:
            return
        with deliberate_sync():  # the one intended sync, every log_every steps
            values = distributed.mean_over_ranks(torch.stack(pending).float(), ranks).cpu().tolist()
        first = len(losses)
        pending.clear()
        for i, value in enumerate(values):
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"loss is {value} at step {first + i}: lower the learning rate, check the data "
                    f"(finite, roughly unit scale) or keep gradient clipping on (grad_clip={config.grad_clip})")
        losses.extend(values)
        bar.update(len(values))
        bar.set_postfix(loss=f"{sum(values) / len(values):.4f}", lr=f"{lr:.2e}")

    stopped_early = False
    lr = lr_at_step(step, config, plan.total)
    model.train()
    with tqdm(total=plan.end if plan.end < math.inf else None, initial=step, disable=not progress or not ranks.is_main,
              desc="training") as bar, _DeferredStop(enabled=ckpt_path is not None) as stop:
        while step < plan.end:
            x0, labels = _as_x0_and_labels(next_batch(step, data_gen), step, device, config.p_uncond is not None)
            lr = lr_at_step(step, config, plan.total)
            pending.append(_train_step(model, net, ema, optimizer, precision, diffusion, x0, labels, lr, noise_gen,
                                       config))
            step += 1

            if plan.after_step(step, device):  # a calibrated budget has just fixed the step count
                if ranks.enabled:  # the same step on every rank; rank 0's count holds
                    plan.total = int(distributed.broadcast_from_main([plan.total], ranks)[0])
                bar.total = plan.end
                bar.refresh()
            now = time.perf_counter()  # host clock only: no device sync
            due = ckpt_path is not None and _checkpoint_due(config, step, now - saved["time"])
            out_of_time = config.time_limit_s is not None and now - start >= config.time_limit_s
            if ranks.enabled:  # rank 0's clock and signals decide for every rank, so that none waits for the others
                due, out_of_time, signum = distributed.broadcast_from_main([due, out_of_time, stop.signum or 0], ranks)
                due, out_of_time, stop.signum = bool(due), bool(out_of_time), int(signum) or None
            stopped_early = step < plan.end and (stop.requested or out_of_time)
            if step % config.log_every == 0 or due or stopped_early or step >= plan.end:
                flush()
            if ckpt_path is not None and (due or stopped_early):
                checkpoint()
            if stopped_early:
                break
        flush()
    if ckpt_path is not None and saved["step"] != step:  # the final checkpoint, unless just written
        checkpoint()
    stop.propagate(f"training interrupted after step {step}; checkpoint written to {ckpt_path}")
    model.eval()
    return TrainResult(model=model, ema=ema, losses=losses, steps=step,
                       seconds=seconds_before + time.perf_counter() - start, stopped_early=stopped_early,
                       checkpoint_path=ckpt_path, planned_steps=plan.planned)

"""The training loop shared by every notebook: Algorithm 1 of Ho et al. 2020, made robust.

One step: draw a batch x₀, draw t ~ U{0,…,T−1} and ε ~ N(0, I), minimise the simple loss
‖target − model(x_t, t)‖² (Ho et al. 2020, Algorithm 1 / Eq. 14, see ``losses.diffusion_loss``)
with Adam (for a class-conditional network, ``model(x_t, t, y)`` with the label dropped at rate
``p_uncond``: classifier-free guidance training, Ho & Salimans 2022, Algorithm 1). Around that
step: linear LR warmup then a constant or cosine LR, gradient-norm clipping, an EMA of the
weights, a tqdm bar, a per-step loss history, a FloatingPointError naming the step where the
loss stops being finite, an optional wall-clock budget, and atomic
checkpoints in ``out_dir`` from which an interrupted run resumes bit-for-bit (model, EMA,
optimizer, step, random generator states, loss history). The LR is a pure function of the
step (:func:`lr_at_step`), so the step *is* the scheduler state.

Randomness comes from two generators seeded by ``TrainConfig.seed``: ``data`` (CPU, handed to
a ``batches`` callable and used for random minibatch indices) and ``noise`` (on the training
device, for t and ε). The same seed on the same device gives the same weights.

Under ``torchrun`` (see ``ddpm_helpers.distributed``) every rank trains a
``DistributedDataParallel`` replica on its own minibatch of ``batch_size`` with generators
seeded for its rank; rank 0 decides when to stop and alone writes the checkpoint. With
``mixed_precision`` (see ``ddpm_helpers.precision``) the forward pass runs under autocast.
"""

import math
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn
from tqdm import tqdm

from . import distributed
from .checkpoint import load_checkpoint, save_checkpoint
from .datasets import random_batches
from .diffusion import Diffusion
from .ema import EMA
from .losses import diffusion_loss
from .precision import MIXED_PRECISIONS, MixedPrecision, deliberate_sync

CHECKPOINT_NAME = "checkpoint.pt"
LR_SCHEDULES = ("constant", "cosine")
# Fields that must agree between a checkpoint and the config that resumes from it.
_RESUME_FIELDS = ("batch_size", "lr", "warmup_steps", "lr_schedule", "grad_clip", "ema_decay",
                  "prediction", "weighting", "min_snr_gamma", "seed", "p_uncond")


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train`.

    ``batch_size`` sizes the random minibatches drawn when ``batches`` is a Tensor or an
    ``(images, labels)`` pair of Tensors (a callable or DataLoader sets its own). ``grad_clip=None`` disables clipping; ``checkpoint_every=0``
    writes a checkpoint only at the end (when ``out_dir`` is given); ``time_limit_s`` stops this
    call after that many wall-clock seconds (``TrainResult.stopped_early``). ``p_uncond=None``
    trains an unconditional ``model(x_t, t)`` (labels in the batches are ignored); a value in
    [0, 1) trains ``model(x_t, t, y)`` on ``(x, y)`` batches, each label replaced by "no label"
    with that probability. ``mixed_precision``: one of ``MIXED_PRECISIONS`` ("auto": bf16 or fp16 on
    CUDA, off on a CPU). Under torchrun ``batch_size`` is per rank: the effective batch is
    world size × ``batch_size``.
    """

    steps: int
    batch_size: int
    lr: float = 1e-3
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    grad_clip: float | None = 1.0
    ema_decay: float = 0.999
    prediction: str = "eps"
    weighting: str = "none"
    min_snr_gamma: float = 5.0
    checkpoint_every: int = 0
    log_every: int = 50
    seed: int = 0
    time_limit_s: float | None = None
    p_uncond: float | None = None
    mixed_precision: str = "off"

    def __post_init__(self):
        positive = {"steps": self.steps, "batch_size": self.batch_size, "log_every": self.log_every}
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("warmup_steps", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise ValueError(f"time_limit_s must be > 0 or None, got {self.time_limit_s!r}")
        if self.p_uncond is not None and not 0.0 <= self.p_uncond < 1.0:
            raise ValueError(f"p_uncond must be in [0, 1) or None, got {self.p_uncond!r}")
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISIONS}, got {self.mixed_precision!r}")


@dataclass
class TrainResult:
    """What :func:`train` returns. ``losses[i]`` is the loss of step ``i`` (0-based), over all resumed calls;
    ``seconds`` is the training wall-clock time summed over them."""

    model: nn.Module
    ema: EMA
    losses: list[float]
    steps: int
    seconds: float
    stopped_early: bool = False
    checkpoint_path: Path | None = field(default=None)


def lr_at_step(step: int, config: TrainConfig) -> float:
    """Learning rate of 0-based ``step``: linear warmup to ``lr``, then constant or cosine decay to 0.

    warmup: lr·(step+1)/warmup_steps; cosine: lr·½(1 + cos(π·p)), p = (step − warmup)/(steps − warmup)
    (Loshchilov & Hutter 2017, without restarts).
    """
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps  # linear warmup
    if config.lr_schedule == "constant":
        return config.lr
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))  # cosine decay


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


class _DeferredInterrupt:
    """While active, a first Ctrl-C / kernel interrupt is held until the current step has finished,
    so that a consistent checkpoint can be written; a second one interrupts at once."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.requested = False
        self._previous = None

    def __enter__(self):
        if self.enabled:
            try:
                self._previous = signal.signal(signal.SIGINT, self._handle)
            except ValueError:  # not in the main thread: signals cannot be caught here
                self.enabled = False
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self.enabled:
            signal.signal(signal.SIGINT, self._previous)
        return False


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


def train(model: nn.Module, diffusion: Diffusion, batches, config: TrainConfig, *,
          device: torch.device | str, out_dir: str | Path | None = None, resume: bool = True,
          progress: bool = True) -> TrainResult:
    """Train ``model`` to predict ``config.prediction`` from x_t (Ho et al. 2020, Algorithm 1).

    ``batches``: a Tensor of training examples (random minibatches of ``config.batch_size``), a pair
    ``(images, labels)`` of Tensors (random minibatches of both, for ``config.p_uncond``),
    a callable ``(step, generator) -> x0`` (use ``generator`` for any randomness), or an iterable
    such as a DataLoader (cycled; of an ``(x, label)`` pair only ``x`` is used unless ``config.p_uncond``
    is set). Batches are moved to ``device``.
    ``out_dir``: where ``checkpoint.pt`` is written every ``checkpoint_every`` steps, at the end,
    and when the run is interrupted (Ctrl-C finishes the current step first). With ``resume=True``
    an existing checkpoint there is loaded and training continues from its step; a callable or
    Tensor ``batches`` then gives exactly the weights of an uninterrupted run (a DataLoader restarts
    its pass over the data). Raises FloatingPointError naming the first step whose loss is NaN/inf.
    """
    device = torch.device(device)
    model.to(device)
    ckpt_path = Path(out_dir) / CHECKPOINT_NAME if out_dir is not None else None
    ema = EMA(model, decay=config.ema_decay)
    precision = MixedPrecision(config.mixed_precision, device)
    optimizer = precision.optimizer(model.parameters(), lr=config.lr)
    ranks = distributed.current()  # one rank without torchrun (ddpm_helpers.distributed)
    seed = distributed.rank_seed(config.seed, ranks.rank)  # = config.seed on rank 0
    data_gen = torch.Generator().manual_seed(seed)  # minibatches (CPU)
    noise_gen = torch.Generator(device=device).manual_seed(seed + 1)  # t and ε (training device)
    next_batch = _batch_source(batches, config.batch_size)
    step, losses, seconds_before = 0, [], 0.0

    found = distributed.broadcast_from_main([ckpt_path is not None and resume and ckpt_path.is_file()], ranks)[0]
    if found:
        state = load_checkpoint(ckpt_path, map_location=device) if ranks.is_main else None
        state = distributed.broadcast_object(state, ranks)  # rank 0 reads the file, every rank resumes from it
        _check_resumable(state, config, diffusion, ckpt_path, ranks.world_size)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        precision.load_state_dict(state.get("grad_scaler", {}))
        _set_rng_states(state["rng_ranks"][ranks.rank] if ranks.enabled else state["rng"], data_gen, noise_gen, device)
        step, losses, seconds_before = state["step"], list(state["losses"]), state["seconds"]
    net = distributed.wrap(model, device, ranks)  # DistributedDataParallel under torchrun, else model

    def checkpoint() -> None:
        rng_ranks = distributed.gather_to_main(_rng_states(data_gen, noise_gen, device), ranks)  # all ranks call this
        if not ranks.is_main:
            return  # only rank 0 writes
        with deliberate_sync():
            state = {
                "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                "step": step, "losses": losses, "seconds": seconds_before + time.perf_counter() - start,
                "rng": rng_ranks[0], "config": asdict(config), "betas": diffusion.betas.detach().cpu(),
            }
            if ranks.enabled:
                state.update(world_size=ranks.world_size, rng_ranks=rng_ranks)
            if precision.scaler is not None:
                state["grad_scaler"] = precision.state_dict()
            save_checkpoint(ckpt_path, state)

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

    start = time.perf_counter()
    first_step, stopped_early = step, False
    lr = lr_at_step(step, config)
    model.train()
    with tqdm(total=config.steps, initial=step, disable=not progress or not ranks.is_main, desc="training") as bar, \
            _DeferredInterrupt(enabled=ckpt_path is not None) as interrupt:
        while step < config.steps:
            x0, labels = _as_x0_and_labels(next_batch(step, data_gen), step, device, config.p_uncond is not None)
            lr = lr_at_step(step, config)
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
            pending.append(loss.detach())
            step += 1

            due = config.checkpoint_every and step % config.checkpoint_every == 0
            out_of_time = config.time_limit_s is not None and time.perf_counter() - start >= config.time_limit_s
            if ranks.enabled:  # rank 0's clock and signals decide for every rank
                out_of_time, interrupt.requested = map(bool, distributed.broadcast_from_main(
                    [out_of_time, interrupt.requested], ranks))
            if step % config.log_every == 0 or due or out_of_time or interrupt.requested or step == config.steps:
                flush()
            if ckpt_path is not None and (due or interrupt.requested or (out_of_time and step < config.steps)):
                checkpoint()
            if interrupt.requested:
                raise KeyboardInterrupt(f"training interrupted after step {step}; checkpoint written to {ckpt_path}")
            if out_of_time and step < config.steps:
                stopped_early = True
                break
        flush()
    if ckpt_path is not None and not stopped_early and step > first_step:
        checkpoint()
    model.eval()
    return TrainResult(model=model, ema=ema, losses=losses, steps=step,
                       seconds=seconds_before + time.perf_counter() - start,
                       stopped_early=stopped_early, checkpoint_path=ckpt_path)


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

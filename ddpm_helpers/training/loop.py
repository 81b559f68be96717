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

Under ``torchrun`` (see ``ddpm_helpers.training.distributed``) every rank trains a
``DistributedDataParallel`` replica on its own minibatch of ``batch_size`` with generators
seeded for its rank; rank 0 decides when to stop, checkpoint and how many steps a budget buys,
and alone writes the checkpoint. With ``mixed_precision`` (see ``ddpm_helpers.training.precision``) the
forward pass runs under autocast.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn
from tqdm import tqdm

from ddpm_helpers.checkpoint import save_checkpoint
from ddpm_helpers.datasets.images import random_batches
from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.losses import diffusion_loss
from ddpm_helpers.training import distributed
from ddpm_helpers.training.ema import EMA
from ddpm_helpers.training.plan import _StepPlan
from ddpm_helpers.training.precision import MixedPrecision, deliberate_sync
from ddpm_helpers.training.resume import (
    _checkpoint_due,
    _checkpoint_path,
    _DeferredStop,
    _main_reads_state,
    _restore,
    _rng_states,
)
from ddpm_helpers.training.train_config import TrainConfig, lr_at_step


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

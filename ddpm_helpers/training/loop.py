"""The training loop shared by every notebook: Algorithm 1 of Ho et al. 2020, made robust.

Start with :func:`train_step`, one step of Algorithm 1 for a batch x₀ and the draws t ~ U{0,…,T−1},
ε ~ N(0, I): minimise the simple loss ‖target − model(x_t, t)‖² (Ho et al. 2020, Eq. 14, see
``losses.loss_from_noise``) with Adam (for a class-conditional network ``model(x_t, t, y)`` with the label
dropped at rate ``p_uncond``: classifier-free guidance training, Ho & Salimans 2022, Algorithm 1), clip
the gradient norm and update the EMA of the weights. :func:`train` repeats it and adds what a real run
needs: linear LR warmup then a constant or cosine LR, a tqdm bar, a per-step loss history, a
FloatingPointError naming the step where the loss stops being finite, an optional time budget
(``plan.py``) and hard time limit, and atomic checkpoints in ``out_dir`` (every two minutes by default,
on Ctrl-C or SIGTERM, at the end) from which an interrupted run resumes bit-for-bit (``resume.py``:
model, EMA, optimizer, step, plans, random generator states, loss history). The LR is a pure function of
the step and the plans, so they *are* the scheduler state.

Randomness comes from two generators seeded by ``TrainConfig.seed``: ``data`` (CPU, handed to
a ``batches`` callable and used for random minibatch indices) and ``noise`` (on the training
device, for t, ε and the dropped labels). The same seed on the same device gives the same weights.

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
from ddpm_helpers.checks import check_labels
from ddpm_helpers.datasets.images import random_batches
from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.guidance import NULL_LABEL
from ddpm_helpers.losses import draw_training_noise, loss_from_noise
from ddpm_helpers.training import distributed
from ddpm_helpers.training.ema import EMA
from ddpm_helpers.training.plan import StepPlan
from ddpm_helpers.training.precision import MixedPrecision, deliberate_sync
from ddpm_helpers.training.resume import (
    DeferredStop,
    checkpoint_due,
    checkpoint_file,
    read_state_on_main,
    restore,
    rng_states,
)
from ddpm_helpers.training.train_config import TrainConfig, scheduled_lr


def train_step(model: nn.Module, net: nn.Module, ema: EMA, optimizer: torch.optim.Optimizer,
               precision: MixedPrecision, diffusion: Diffusion, x0: Tensor, t: Tensor, eps: Tensor,
               labels: Tensor | None, lr: float, config: TrainConfig) -> Tensor:
    """One step of Algorithm 1 (Ho et al. 2020) for the batch ``x0`` and its draws ``t``, ``eps`` (and ``labels``,
    already dropped to NULL_LABEL where guidance training drops them): loss, backward, clipping, Adam, EMA.

    ``net`` is ``model`` or its DistributedDataParallel wrapper. Returns the loss, detached and still on the
    device: nothing here waits for the device.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    with precision.autocast():
        # L = w(t) ‖target − f_θ(√ᾱ_t x0 + √(1 − ᾱ_t) ε, t)‖²  (Eq. 14)
        loss = loss_from_noise(net, diffusion, x0, t, eps, labels, config.prediction, config.weighting,
                               config.min_snr_gamma)
    optimizer.zero_grad(set_to_none=True)
    precision.backward(loss)  # ∇_θ L; under DDP the gradients are averaged over the ranks here
    if config.grad_clip is not None:
        precision.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)  # g ← g · min(1, grad_clip/‖g‖)
    precision.step(optimizer)  # Adam
    ema.update(model)  # θ_ema ← d·θ_ema + (1 − d)·θ
    return loss.detach()


@dataclass
class TrainResult:
    """What :func:`train` returns. ``losses[i]`` is the loss of step ``i`` (0-based), over all resumed calls;
    ``seconds`` is the training wall-clock time summed over them; ``planned_steps`` is the step count of a
    calibrated budget's last plan (None without ``time_budget_s``, or before the calibration ended)."""

    model: nn.Module
    ema: EMA
    losses: list[float]
    steps: int
    seconds: float
    stopped_early: bool = False
    checkpoint_path: Path | None = field(default=None)
    planned_steps: int | None = None


@dataclass
class _Run:
    """What changes while :func:`train` runs (``step``, ``losses`` and the seconds go into checkpoints)."""

    step: int
    losses: list[float]
    seconds_before: float  # training seconds of earlier calls
    start: float  # the clock when this call started training
    saved_step: int  # the step of the last checkpoint
    saved_at: float  # the clock when it was written
    lr: float = 0.0
    pending: list[Tensor] = field(default_factory=list)  # losses still on the device (fetched every log_every)

    def seconds(self, now: float) -> float:
        """Training seconds over all calls, at clock reading ``now``."""
        return self.seconds_before + now - self.start


def train(model: nn.Module, diffusion: Diffusion, batches, config: TrainConfig, *,
          device: torch.device | str, out_dir: str | Path | None = None, resume: bool = True,
          progress: bool = True, clock: Callable[[], float] = time.perf_counter) -> TrainResult:
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
    naming the first step whose loss is NaN/inf. ``clock``: the wall clock in seconds, for budgets, time
    limits and checkpoint intervals (tests inject one). With a budget, each plan is printed (``progress``).
    """
    _check_inputs(model, diffusion, config, resume, progress)
    device = _as_device(device)
    ckpt_path = checkpoint_file(out_dir)
    next_batch = _batch_source(batches, config.batch_size)
    model.to(device, memory_format=torch.channels_last if config.channels_last else torch.preserve_format)
    ema = EMA(model, decay=config.ema_decay)
    precision = MixedPrecision(config.mixed_precision, device)
    optimizer = precision.optimizer(model.parameters(), lr=config.lr)
    ranks = distributed.current()  # a single rank without torchrun
    seed = distributed.rank_seed(config.seed, ranks.rank)  # = config.seed on rank 0
    data_gen = torch.Generator().manual_seed(seed)  # minibatches (CPU)
    noise_gen = torch.Generator(device=device).manual_seed(seed + 1)  # t, ε and dropped labels (training device)
    state: dict[str, Any] = {}

    if distributed.broadcast_from_main([ckpt_path is not None and resume and ckpt_path.is_file()], ranks)[0]:
        state = read_state_on_main(ckpt_path, config, diffusion, device, ranks)
        restore({**state, "rng": state["rng_ranks"][ranks.rank]} if ranks.enabled else state,
                ckpt_path, model, ema, optimizer, (data_gen, noise_gen), device)
        precision.load_state_dict(state.get("grad_scaler", {}))
    net = distributed.wrap(model, device, ranks)  # DistributedDataParallel under torchrun (from rank 0's weights)
    if ranks.enabled and state.get("step", 0) == 0:
        ema.model.load_state_dict(model.state_dict())  # the EMA starts from rank 0's weights on every rank, too

    start = clock()
    step = state.get("step", 0)
    run = _Run(step=step, losses=list(state.get("losses", [])), seconds_before=state.get("seconds", 0.0),
               start=start, saved_step=step, saved_at=start)
    plan = StepPlan.from_checkpoint(config, state, step)
    show = progress and ranks.is_main

    def checkpoint() -> None:
        rng_ranks = distributed.gather_to_main(rng_states(data_gen, noise_gen, device), ranks)  # every rank calls
        if ranks.is_main:  # only rank 0 writes
            with deliberate_sync():
                saved = {
                    "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
                    "step": run.step, "losses": run.losses, "seconds": run.seconds(clock()),
                    "rng": rng_ranks[0], "config": asdict(config), "betas": diffusion.betas.detach().cpu(),
                    "planned_steps": plan.planned, "plan": plan.state_dict(),
                }
                if ranks.enabled:
                    saved.update(world_size=ranks.world_size, rng_ranks=rng_ranks)
                if precision.scaler is not None:
                    saved["grad_scaler"] = precision.state_dict()
                save_checkpoint(ckpt_path, saved)
        run.saved_step, run.saved_at = run.step, clock()

    def flush() -> None:
        if not run.pending:
            return
        with deliberate_sync():  # the one intended sync, every log_every steps
            values = distributed.mean_over_ranks(torch.stack(run.pending).float(), ranks).cpu().tolist()
        first = len(run.losses)
        run.pending.clear()
        for i, value in enumerate(values):
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"loss is {value} at step {first + i}: lower the learning rate, check the data "
                    f"(finite, roughly unit scale) or keep gradient clipping on (grad_clip={config.grad_clip})")
        run.losses.extend(values)
        bar.update(len(values))
        bar.set_postfix(loss=f"{sum(values) / len(values):.4f}", lr=f"{run.lr:.2e}")

    def replan() -> None:  # measure the recent step time (rank 0's holds) and plan anew
        _synchronize(device)
        made = plan.update(run.step, run.seconds(clock()))
        if ranks.enabled:
            plan.load_state_dict(distributed.broadcast_object(plan.state_dict(), ranks))
        if made is not None:
            bar.total = plan.end
            bar.refresh()
            if show:
                bar.write(plan.describe(run.step, run.seconds(clock())))

    stopped_early = False
    # the weights' dtype, which every batch must have (mixed precision keeps float32 weights and float32 batches)
    weights_dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    model.train()
    with tqdm(total=plan.end if plan.end < math.inf else None, initial=step, disable=not show,
              desc="training") as bar, DeferredStop(enabled=ckpt_path is not None) as stop:
        stop_at = math.inf if config.stop_at_step is None else config.stop_at_step
        while run.step < min(plan.end, stop_at):
            x0, labels = _as_x0_and_labels(next_batch(run.step, data_gen), run.step, device,
                                           config.p_uncond is not None, getattr(model, "num_classes", None),
                                           weights_dtype)
            t, eps, labels = draw_training_noise(diffusion, x0, noise_gen, labels, config.p_uncond or 0.0)
            run.lr = scheduled_lr(run.step, config, plan.progress(run.step))
            run.pending.append(train_step(model, net, ema, optimizer, precision, diffusion, x0, t, eps, labels,
                                          run.lr, config))
            run.step += 1
            now = clock()  # host clock only: no device sync
            replan_due = plan.due(run.step, run.seconds(now))
            due = ckpt_path is not None and checkpoint_due(config, run.step, now - run.saved_at)
            out_of_time = config.time_limit_s is not None and now - run.start >= config.time_limit_s
            if ranks.enabled:  # rank 0's clock and signals decide for every rank, so that none waits for the others
                decisions = [due, out_of_time, stop.signum or 0, replan_due]
                due, out_of_time, signum, replan_due = distributed.broadcast_from_main(decisions, ranks)
                due, out_of_time, stop.signum = bool(due), bool(out_of_time), int(signum) or None
            if replan_due:
                replan()
            stopped_early = run.step < plan.end and (stop.requested or out_of_time or run.step >= stop_at)
            if run.step % config.log_every == 0 or due or stopped_early or run.step >= plan.end:
                flush()
            if ckpt_path is not None and (due or stopped_early):
                checkpoint()
            if stopped_early:
                break
        flush()
    stopped_early = run.step < plan.end  # a signal, a time limit or stop_at_step ended this call before the plan
    if ckpt_path is not None and run.saved_step != run.step:  # the final checkpoint, unless just written
        checkpoint()
    stop.propagate(f"training interrupted after step {run.step}; checkpoint written to {ckpt_path}")
    model.eval()
    return TrainResult(model=model, ema=ema, losses=run.losses, steps=run.step, seconds=run.seconds(clock()),
                       stopped_early=stopped_early, checkpoint_path=ckpt_path, planned_steps=plan.planned)


def _synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (so that the host clock measures it)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


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


def _as_x0_and_labels(batch, step: int, device: torch.device, conditional: bool,
                      num_classes: int | None, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor | None]:
    """x₀ of a batch (the first item of an (x, label) pair) and, for conditional training, the labels (their values
    checked while on the CPU: the network reads none); on ``device``."""
    labels = None
    if isinstance(batch, (tuple, list)):
        batch, labels = batch[0], (batch[1] if len(batch) > 1 else None)
    if not isinstance(batch, Tensor) or not batch.is_floating_point() or batch.ndim < 2 or len(batch) == 0:
        raise ValueError(f"step {step}: a batch must be a non-empty floating-point Tensor (B, ...), "
                         f"got {type(batch).__name__} {tuple(getattr(batch, 'shape', ()))}")
    if dtype is not None and batch.dtype != dtype:  # metadata only
        raise ValueError(f"step {step}: the batch is {batch.dtype} but the model's weights are {dtype}: convert one "
                         f"of them (x.to({dtype}) or model.to({batch.dtype}))")
    if not conditional:
        return batch.to(device, non_blocking=True), None
    if not isinstance(labels, Tensor):
        raise ValueError(f"step {step}: p_uncond is set (conditional training), so a batch must be an (x, labels) pair "
                         "of Tensors; pass (images, labels) or a DataLoader of pairs")
    check_labels(labels, num_classes, NULL_LABEL, batch=len(batch), name=f"labels of step {step}")
    return batch.to(device, non_blocking=True), labels.to(device, non_blocking=True)


def _check_inputs(model, diffusion, config: TrainConfig, resume, progress=True) -> None:
    """ValueErrors for arguments of :func:`train` that :class:`TrainConfig` cannot check alone."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(diffusion, Diffusion):
        raise ValueError(f"diffusion must be a ddpm_helpers.diffusion.Diffusion, got {type(diffusion).__name__}")
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    config.validate()  # again: a field may have been changed since construction
    if not isinstance(resume, bool):
        raise ValueError(f"resume must be True or False, got resume={resume!r}")
    if not isinstance(progress, bool):  # the string 'no' would count as true
        raise ValueError(f"progress must be True or False, got progress={progress!r}")
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
    if device.type == "meta":
        raise ValueError("device='meta' holds shapes but no values, so nothing can be trained on it: use 'cpu' or "
                         "'cuda' (config.get_device())")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device='mps' but MPS is not available; use config.get_device() to pick one that exists")
    return device

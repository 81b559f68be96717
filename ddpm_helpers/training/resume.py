"""What lets an interrupted run continue bit for bit: checkpoints of the whole training state, checked before they
are restored, the random generators' states, and Ctrl-C / SIGTERM held until a step has finished."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ddpm_helpers.checkpoint import CheckpointError, load_checkpoint, remove_stale_temporaries
from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.training import distributed
from ddpm_helpers.training.ema import EMA
from ddpm_helpers.training.train_config import TrainConfig

CHECKPOINT_NAME = "checkpoint.pt"
# Fields that must agree between a checkpoint and the config that resumes from it.
_RESUME_FIELDS = ("batch_size", "lr", "warmup_steps", "lr_schedule", "grad_clip", "ema_decay", "prediction",
                  "weighting", "min_snr_gamma", "seed", "p_uncond", "time_budget_s", "calibration_steps", "cooldown")
# What a checkpoint of train() holds (besides "planned_steps", absent in checkpoints of older versions).
_CHECKPOINT_KEYS = ("model", "ema", "optimizer", "step", "losses", "seconds", "rng", "config", "betas")


def checkpoint_due(config: TrainConfig, step: int, seconds_since_save: float) -> bool:
    """Every ``checkpoint_every`` steps when set (0: never in between), else every ``checkpoint_interval_s`` seconds."""
    if config.checkpoint_every is not None:
        return config.checkpoint_every > 0 and step % config.checkpoint_every == 0
    return seconds_since_save >= config.checkpoint_interval_s


class DeferredStop:
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


def rng_states(data_gen: torch.Generator, noise_gen: torch.Generator, device: torch.device) -> dict[str, Tensor]:
    states = {"data": data_gen.get_state(), "noise": noise_gen.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def set_rng_states(states: dict[str, Tensor], data_gen, noise_gen, device: torch.device) -> None:
    states = {name: state.cpu() for name, state in states.items()}  # generator states are CPU byte tensors
    data_gen.set_state(states["data"])
    noise_gen.set_state(states["noise"])
    torch.set_rng_state(states["torch"])
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)


def checkpoint_file(out_dir) -> Path | None:
    """``out_dir / checkpoint.pt`` with ``out_dir`` created and writable, stale temporary files of an interrupted
    save removed; None without ``out_dir``. ValueError naming the folder when it cannot hold checkpoints."""
    if out_dir is None:
        return None
    if not isinstance(out_dir, (str, os.PathLike)):
        raise ValueError(f"out_dir must be a folder path (str or Path) or None, got {type(out_dir).__name__}")
    if not str(os.fspath(out_dir)).strip():  # Path('') is '.': the working directory, never what was meant
        raise ValueError(f"out_dir={os.fspath(out_dir)!r} is empty: pass a folder, or out_dir=None for no checkpoints")
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
        kind = "a folder" if path.is_dir() else "not a regular file (a FIFO, a socket or a device)"
        raise ValueError(f"{path} is {kind}, not a checkpoint file: remove it or pass another out_dir")
    remove_stale_temporaries(path)
    return path


def load_training_state(path: Path, config: TrainConfig, diffusion: Diffusion, device: torch.device,
                         world_size: int) -> dict:
    """The checkpoint at ``path``, checked to be a checkpoint of :func:`train` of this run and to fit ``config``."""
    state = load_checkpoint(path, map_location=device)
    missing = [key for key in _CHECKPOINT_KEYS if key not in state]
    if missing or not isinstance(state["config"], dict) or not isinstance(state["step"], int):
        raise CheckpointError(f"{path} is not a training checkpoint of train() (missing or malformed: "
                              f"{missing or ['config', 'step']}); pass resume=False to train afresh and overwrite it")
    losses = state["losses"]
    if not isinstance(losses, list) or len(losses) != state["step"]:
        count = len(losses) if isinstance(losses, list) else type(losses).__name__
        raise CheckpointError(f"{path} holds step={state['step']} but {count} losses (one per step is written): a "
                              "damaged or hand-made checkpoint; pass resume=False to train afresh and overwrite it")
    check_resumable(state, config, diffusion, path, world_size)
    if config.steps is not None and state["step"] > config.steps:
        raise ValueError(
            f"cannot resume from {path}: it holds {state['step']} trained steps, more than steps={config.steps}; "
            f"pass steps >= {state['step']} to continue it (steps={state['step']} returns it as it is), "
            "or resume=False / another out_dir to train a shorter run afresh")
    return state


def check_resumable(state: dict, config: TrainConfig, diffusion: Diffusion, path: Path, world_size: int) -> None:
    """ValueError naming what differs when a checkpoint was written by another run."""
    saved = state["config"]
    fields = TrainConfig.__dataclass_fields__  # a field newer than the checkpoint: its default
    differ = [f"{k}: checkpoint {saved.get(k, fields[k].default)!r} vs now {getattr(config, k)!r}"
              for k in _RESUME_FIELDS if saved.get(k, fields[k].default) != getattr(config, k)]
    if state.get("world_size", 1) != world_size:  # the effective batch is world size × batch_size
        differ.append(f"processes: checkpoint {state.get('world_size', 1)} vs now {world_size}")
    betas = state["betas"].to(diffusion.betas.device, diffusion.betas.dtype)
    if betas.shape != diffusion.betas.shape or not torch.allclose(betas, diffusion.betas):
        differ.append(f"noise schedule: checkpoint T={len(betas)} vs now T={diffusion.T} (or different betas)")
    if differ:
        raise ValueError(f"cannot resume from {path}, it was written by a different run ({'; '.join(differ)}); "
                         "pass resume=False or another out_dir")


def read_state_on_main(path: Path, config: TrainConfig, diffusion: Diffusion, device: torch.device,
                      ranks: distributed.Context) -> dict:
    """The checkpoint, read and checked by rank 0 and sent to every rank (its error raised on every rank)."""
    state = None
    if ranks.is_main:
        try:
            where = "cpu" if ranks.enabled else device  # sent through the CPU group, then restored onto each device
            state = load_training_state(path, config, diffusion, where, ranks.world_size)
        except ValueError as error:  # CheckpointError included
            if not ranks.enabled:
                raise
            state = error
    state = distributed.broadcast_object(state, ranks)
    if isinstance(state, ValueError):
        raise state
    return state


def restore(state: dict, path: Path, model: nn.Module, ema: EMA, optimizer, generators, device) -> None:
    """Load weights, EMA, optimizer and generator states; CheckpointError when they do not fit this model."""
    try:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_states(state["rng"], *generators, device)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as error:
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"cannot resume from {path}: it does not fit this model or optimizer ({reason}); "
                              "pass resume=False or another out_dir") from None

"""Atomic, safe-to-load checkpoints: plain dicts of tensors and Python primitives.

Saving writes a temporary file beside the target and renames it over the target with
``os.replace`` (atomic on POSIX and Windows), so an interrupted save never leaves a
half-written checkpoint. Loading uses ``torch.load(weights_only=True)``, which refuses
to unpickle arbitrary objects, so a downloaded checkpoint cannot run code.
"""

import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors, numbers, strings, lists, tuples, dicts) to ``path`` atomically."""
    if not isinstance(state, dict):
        raise ValueError(f"state must be a dict, got {type(state).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)  # atomic: readers see the old file or the new one, never a partial one
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path}: train first (ddpm_helpers.training.train with out_dir=...) "
            "or pass the path of an existing checkpoint.pt"
        )
    return torch.load(path, map_location=map_location, weights_only=True)

"""Atomic, verified, safe-to-load checkpoints: plain dicts of tensors and Python primitives.

Saving writes a temporary file beside the target and renames it over the target with
``os.replace`` (atomic on POSIX and Windows), so an interrupted save never leaves a
half-written checkpoint. Each checkpoint carries a SHA-256 checksum of its content (every
tensor's dtype, shape and bytes and every primitive value, in insertion order), verified on
load: a flipped byte in a weight is an error, not a silent change. Loading uses
``torch.load(weights_only=True)``, which refuses to unpickle arbitrary objects, so a
downloaded checkpoint cannot run code; :func:`save_checkpoint` refuses, by their key path, the
values that such a load would refuse.

Every unreadable file (empty, truncated, not a checkpoint, checksum mismatch, unsafe objects)
raises :class:`CheckpointError`, a ``ValueError`` naming the path.
"""

import errno
import hashlib
import os
import pickle
import re
import shutil
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from ddpm_helpers.utils import write_atomic

CHECKSUM_KEY = "_sha256"  # reserved top-level key holding the checksum
# Values torch.load(weights_only=True) accepts besides tensors and containers.
_PRIMITIVES = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device)
_CONTAINERS = (dict, OrderedDict, list, tuple, torch.Size)


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and what to do."""


class UnsafeCheckpointError(CheckpointError, pickle.UnpicklingError):
    """A file holding objects other than tensors and plain values (unpickling them could run code)."""


def _check_savable(value: Any, where: str) -> None:
    """Raise CheckpointError naming the key path of the first value a weights-only load would refuse."""
    if isinstance(value, torch.Tensor) or type(value) in _PRIMITIVES:
        return
    if type(value) in (dict, OrderedDict):
        for key, item in value.items():
            if type(key) not in _PRIMITIVES:
                raise CheckpointError(f"cannot save the key {key!r} of {where}: a {type(key).__name__} key; "
                                      "use str or int keys")
            _check_savable(item, f"{where}[{key!r}]")
        return
    if type(value) in _CONTAINERS:
        for index, item in enumerate(value):
            _check_savable(item, f"{where}[{index}]")
        return
    raise CheckpointError(
        f"cannot save {where}: a {type(value).__module__}.{type(value).__qualname__}, which "
        "load_checkpoint (torch.load(weights_only=True)) would refuse; store tensors and plain Python "
        "values (int, float, str, list, tuple, dict), e.g. int(...), float(...), str(path), dataclasses.asdict(...)")


def _digest(value: Any, hasher) -> None:
    """Feed a canonical byte encoding of ``value`` (type, shape, bytes / repr) into ``hasher``."""
    hasher.update(type(value).__name__.encode() + b"\0")
    if isinstance(value, torch.Tensor):
        data = value.detach().cpu().contiguous()
        hasher.update(f"{data.dtype}{tuple(data.shape)}\0".encode())
        hasher.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())  # the raw bytes of every element
    elif isinstance(value, dict):
        for key, item in value.items():
            hasher.update(repr(key).encode() + b"\0")
            _digest(item, hasher)
    elif isinstance(value, (list, tuple)):
        hasher.update(f"{len(value)}\0".encode())
        for item in value:
            _digest(item, hasher)
    else:
        hasher.update(repr(value).encode() + b"\0")


def checksum(state: dict[str, Any]) -> str:
    """SHA-256 (hex) of a checkpoint's content, the same before saving and after loading."""
    hasher = hashlib.sha256()
    _digest({key: value for key, value in state.items() if key != CHECKSUM_KEY}, hasher)
    return hasher.hexdigest()


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors, numbers, strings, lists, tuples, dicts) to ``path`` atomically, with its checksum."""
    if not isinstance(state, dict):
        raise CheckpointError(f"state must be a dict, got {type(state).__name__}")
    if CHECKSUM_KEY in state:
        raise CheckpointError(f"state must not use the reserved key {CHECKSUM_KEY!r}")
    _check_savable(state, "state")
    if not isinstance(path, (str, os.PathLike)):
        raise CheckpointError(f"path must be a file path (str or Path), got {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"cannot save a checkpoint to {path}: it is a folder; pass a file path such as "
                              f"{path / 'checkpoint.pt'}")
    if path.exists() and not path.is_file():
        raise CheckpointError(f"cannot save a checkpoint to {path}: it is not a regular file (a FIFO, a socket or a "
                              "device); remove it or pass another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**state, CHECKSUM_KEY: checksum(state)}

    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            torch.save(payload, f)

    try:
        return write_atomic(path, write)  # never a half-written checkpoint
    except (OSError, RuntimeError) as error:  # a full disk: torch.save says "[enforce fail at …] file write failed"
        if (errno.ENOSPC if isinstance(error, RuntimeError) and "write failed" in str(error) else
                getattr(error, "errno", None)) != errno.ENOSPC:
            raise
        free = shutil.disk_usage(path.parent).free
        kept = "the previous checkpoint there is intact" if path.is_file() else "nothing was written"
        raise OSError(errno.ENOSPC, f"no space left on device while writing the checkpoint {path} "
                                    f"({free / 2**20:.1f} MiB free there; {kept}): free some space or pass another "
                                    "out_dir, then resume") from error


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the ``.<name>.*.tmp`` files an interrupted :func:`save_checkpoint` of ``path`` left behind."""
    path = Path(path)
    stale = sorted(path.parent.glob(f".{path.name}.*.tmp")) if path.parent.is_dir() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def _check_map_location(map_location, path) -> None:
    """ValueError naming ``map_location`` when it is no device, or a CUDA device on a machine without CUDA (torch
    would report that as a damaged file)."""
    if map_location is None or callable(map_location) or isinstance(map_location, dict):
        return
    try:
        device = torch.device(map_location)
    except (RuntimeError, TypeError):
        raise ValueError(f"map_location={map_location!r} is not a device (e.g. 'cpu', 'cuda:0')") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"map_location={map_location!r} but this machine has no CUDA device: load {path} with "
                         "map_location='cpu' (the file itself is fine)")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Read and verify a checkpoint written by :func:`save_checkpoint` without unpickling arbitrary objects.

    Raises FileNotFoundError when ``path`` is missing and :class:`CheckpointError` (a ValueError naming
    the file) when it is unreadable or its checksum does not match. A checkpoint of an older version
    (no checksum) loads with a warning.
    """
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():  # never open a FIFO: it would block
        raise CheckpointError(f"{path} is not a regular file (a FIFO, a socket or a device), not a checkpoint")
    _check_map_location(map_location, path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path}: train first (ddpm_helpers.training.train with out_dir=...) "
            "or pass the path of an existing checkpoint.pt"
        )
    advice = "delete or replace the file, or pass resume=False to train(...) to start afresh and overwrite it"
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        unsupported = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if unsupported is None:  # a text file or a damaged pickle, not a refused object
            raise CheckpointError(f"{path} is not a checkpoint (unreadable pickle data); {advice}") from None
        raise UnsafeCheckpointError(
            f"{path} holds an object of type {unsupported.group(1)}, which load_checkpoint refuses to "
            f"unpickle (it could run code): it was not written by save_checkpoint; {advice}") from None
    except RuntimeError as error:
        if "CUDA" in str(error) or "cuda" in str(error):  # tensors saved on a GPU, loaded where there is none
            raise CheckpointError(f"{path} holds tensors saved on a CUDA device and this machine has none: pass "
                                  "map_location='cpu' (the file itself is fine; do not delete it)") from None
        raise CheckpointError(f"{path} is not a readable checkpoint (torch.load failed with {type(error).__name__}): "
                              f"it is empty, truncated or not a torch checkpoint; {advice}") from None
    except Exception as error:  # EOFError, RuntimeError (zip), KeyError, OSError, …: all mean a damaged file
        raise CheckpointError(f"{path} is not a readable checkpoint (torch.load failed with {type(error).__name__}): "
                              f"it is empty, truncated or not a torch checkpoint; {advice}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a checkpoint dict; {advice}")
    stored = state.pop(CHECKSUM_KEY, None)
    if stored is None:
        warnings.warn(f"{path} has no checksum (written before checkpoints carried one): loaded unverified",
                      stacklevel=2)
    elif stored != checksum(state):
        raise CheckpointError(f"{path} is corrupt: its content does not match the checksum stored with it "
                              f"(a damaged copy or a modified file); {advice}")
    return state

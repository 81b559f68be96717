"""Run settings for the notebooks and helpers: the only module that reads the environment.

Environment variables (all optional):

``DDPM_PROFILE``
    ``"quick"`` or ``"full"`` (default ``"full"``). The quick profile shrinks every
    training run, sample count and figure so a notebook runs in seconds on a laptop CPU;
    CI runs it. The full profile is the one the committed notebooks show.
``DDPM_DATA_DIR``
    Folder holding the datasets (``MNIST/raw/…``, ``butterflies/*.png``).
    Default: ``<repo>/data``.
``DDPM_OUTPUT_DIR``
    Folder for everything the notebooks write (checkpoints, figures, animations), one
    sub-folder per notebook. Default: ``<repo>/outputs``.
``DDPM_DEVICE``
    Force a device: ``cpu``, ``cuda``, ``cuda:N`` or ``mps``. Default: the first of
    cuda, mps, cpu that is available.
``DDPM_BUTTERFLY_URL``
    Base URL of the 128 NHM source JPEGs (``<url>/butterfly0.jpg`` …), e.g. a mirror or a
    local test server. Default: the pinned commit of JVP15/butterfly-gan in
    ``ddpm_helpers.datasets.butterflies``. Every file is checked against its SHA-256 whatever the URL.
``DDPM_PRETRAINED``
    ``1`` to make notebooks 04 and 05 load the committed weights (``weights/``) instead of training
    (their ``USE_PRETRAINED`` switch); default ``0``.
``DDPM_WEIGHTS_URL``
    Base URL of the pretrained weights folder (``<url>/SHA256SUMS``, ``<url>/<name>.safetensors``).
    Default: the repository's ``weights/`` folder on GitHub (``ddpm_helpers.training.pretrained``).

``<repo>`` is the checkout that holds this package when it has a ``notebooks/`` folder
(an editable install or a clone); otherwise (e.g. installed from GitHub in Colab) it is
the current working directory. Relative paths in ``DDPM_DATA_DIR`` and
``DDPM_OUTPUT_DIR`` are taken relative to ``<repo>``, so they mean the same thing from a
shell at the repository root and from a kernel running in ``notebooks/``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from ddpm_helpers.checks import check_int

PROFILES = ("quick", "full")
DEVICE_TYPES = ("cpu", "cuda", "mps")

_CHECKOUT = Path(__file__).resolve().parent.parent


def profile() -> str:
    """The active profile, ``"quick"`` or ``"full"``, from ``DDPM_PROFILE`` (default ``"full"``)."""
    value = os.environ.get("DDPM_PROFILE", "").strip() or "full"
    if value not in PROFILES:
        raise ValueError(f"DDPM_PROFILE={value!r} is not a profile; use one of {PROFILES}")
    return value


def pick(*, quick, full):
    """Return ``quick`` in the quick profile and ``full`` in the full profile."""
    return quick if profile() == "quick" else full


def use_pretrained() -> bool:
    """Whether the notebooks load the committed weights instead of training: ``DDPM_PRETRAINED`` = 1 (or true,
    yes), default 0."""
    value = os.environ.get("DDPM_PRETRAINED", "").strip().lower() or "0"
    if value not in ("0", "1", "false", "true", "no", "yes"):
        raise ValueError(f"DDPM_PRETRAINED={value!r} is not a switch; use 1 (load the committed weights) or 0 (train)")
    return value in ("1", "true", "yes")


def package_checkout() -> Path:
    """The folder that holds the ``ddpm_helpers`` package: the clone, in an editable install (the one place that
    finds it)."""
    return _CHECKOUT


def _repo_dir() -> Path:
    """The checkout holding this package if it has ``notebooks/``, else the working directory."""
    return _CHECKOUT if (_CHECKOUT / "notebooks").is_dir() else Path.cwd()


def _dir_from_env(variable: str, default: str) -> Path:
    value = os.environ.get(variable, "").strip()
    path = Path(value).expanduser() if value else Path(default)
    return path if path.is_absolute() else _repo_dir() / path


def data_dir() -> Path:
    """Dataset folder: ``DDPM_DATA_DIR``, default ``<repo>/data`` (not created here)."""
    return _dir_from_env("DDPM_DATA_DIR", "data")


def outputs_dir(name: str) -> Path:
    """``<DDPM_OUTPUT_DIR or <repo>/outputs>/<name>``, created if missing."""
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ValueError(f"outputs_dir name must be a single folder name, got {name!r}")
    path = _dir_from_env("DDPM_OUTPUT_DIR", "outputs") / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def butterfly_url() -> str | None:
    """``DDPM_BUTTERFLY_URL`` if set, else ``None`` (the caller's pinned default)."""
    return os.environ.get("DDPM_BUTTERFLY_URL", "").strip() or None


def weights_url() -> str | None:
    """``DDPM_WEIGHTS_URL`` if set, else ``None`` (the caller's default: the repository on GitHub)."""
    return os.environ.get("DDPM_WEIGHTS_URL", "").strip() or None


def _requested_device(value: str) -> torch.device:
    try:
        device = torch.device(value)
    except RuntimeError:  # not a device string at all, e.g. "gpu"
        device = None
    if device is None or device.type not in DEVICE_TYPES:
        raise ValueError(f"DDPM_DEVICE={value!r} is not a device; use cpu, cuda, cuda:N or mps")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"DDPM_DEVICE={value!r} but CUDA is not available")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"DDPM_DEVICE={value!r} but only {count} CUDA device(s) exist")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"DDPM_DEVICE={value!r} but MPS is not available")
    return device


def get_device() -> torch.device:
    """``DDPM_DEVICE`` if set (checked to exist), else cuda, then mps, then cpu."""
    value = os.environ.get("DDPM_DEVICE", "").strip()
    if value:
        return _requested_device(value)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> int:
    """Seed ``random``, NumPy and torch (CPU and every GPU) with ``seed``; return it."""
    seed = check_int(seed, "seed", low=0, high=2**32 - 1)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA/MPS device
    return seed

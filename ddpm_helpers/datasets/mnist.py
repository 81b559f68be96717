"""MNIST (LeCun et al. 1998) through ``torchvision.datasets.MNIST`` under ``config.data_dir()``, checked and
scaled to [-1, 1].

Nothing is ever faked: missing files raise ``FileNotFoundError`` saying how to get them, damaged
ones a ``ValueError`` naming the file.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import torch

from ddpm_helpers import config
from ddpm_helpers.datasets.images import to_unit_range

# MNIST's four IDX files and their array shapes (LeCun et al. 1998).
MNIST_FILES = {"train-images-idx3-ubyte": (60_000, 28, 28), "train-labels-idx1-ubyte": (60_000,),
               "t10k-images-idx3-ubyte": (10_000, 28, 28), "t10k-labels-idx1-ubyte": (10_000,)}


def mnist_dataset(train: bool = True, root: str | Path | None = None):
    """The torchvision MNIST dataset under ``root`` (default ``config.data_dir()``).

    Uses the files in ``<root>/MNIST/raw`` when present (checked first: a damaged file raises a
    ValueError saying it is corrupt and how to fetch it again), otherwise tries to download them;
    offline and missing, raises ``FileNotFoundError`` explaining where to put them.
    """
    import torchvision

    root = Path(root) if root is not None else config.data_dir()
    raw = root / "MNIST" / "raw"
    if all((raw / name).is_file() for name in MNIST_FILES):
        for name in _mnist_split_files(train):
            _check_mnist_file(raw / name)
        try:
            return torchvision.datasets.MNIST(root=str(root), train=train, download=False)
        except (AssertionError, RuntimeError, ValueError, OSError) as error:
            raise ValueError(f"the MNIST files in {raw} are corrupt ({type(error).__name__}: {error}); "
                             f"{_mnist_refetch(raw)}") from None
    try:
        return torchvision.datasets.MNIST(root=str(root), train=train, download=True)
    except Exception as error:  # network errors come in many types
        archives = sorted(p.name for p in raw.glob("*.gz")) if raw.is_dir() else []
        if archives:  # the archives are there, so they failed their checksum or could not be extracted
            raise ValueError(f"the MNIST archives in {raw} ({', '.join(archives)}) are corrupt or incomplete and a "
                             f"fresh copy could not be downloaded ({type(error).__name__}: {error}); "
                             f"{_mnist_refetch(raw)}") from error
        raise FileNotFoundError(
            f"MNIST was not found under {raw} and could not be downloaded "
            f"({type(error).__name__}: {error}). Either connect to the internet and rerun, or copy "
            "the four files train-images-idx3-ubyte, train-labels-idx1-ubyte, "
            "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte into that folder, or point the "
            "DDPM_DATA_DIR environment variable at a folder that contains MNIST/raw/."
        ) from error


def _mnist_split_files(train: bool) -> tuple[str, str]:
    prefix = "train" if train else "t10k"
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _mnist_refetch(raw: Path) -> str:
    return (f"delete the damaged files in {raw} (with their .gz archives) and rerun with internet access to "
            "download them again, or copy intact train-/t10k-images-idx3-ubyte and train-/t10k-labels-idx1-ubyte "
            "files there")


def _check_mnist_file(path: Path) -> None:
    """ValueError saying ``path`` is corrupt unless it is an IDX file of unsigned bytes of MNIST's shape.

    IDX: two zero bytes, type 0x08 (unsigned byte), the number of dimensions, each dimension as a
    big-endian uint32, then the bytes; the labels must lie in 0…9.
    """
    shape = MNIST_FILES[path.name]
    header_size = 4 + 4 * len(shape)
    with open(path, "rb") as handle:
        header = handle.read(header_size)
    problem = None
    if len(header) < header_size or header[:4] != bytes([0, 0, 0x08, len(shape)]):
        problem = f"its header is not that of an IDX file of {len(shape)}-d unsigned bytes"
    elif (found := struct.unpack(f">{len(shape)}I", header[4:])) != shape:
        problem = f"its header announces shape {found}, expected {shape}"
    elif (size := path.stat().st_size) != header_size + math.prod(shape):
        problem = f"it has {size:,} bytes, expected {header_size + math.prod(shape):,} (a truncated copy?)"
    elif len(shape) == 1 and (top := int(np.fromfile(path, np.uint8, offset=header_size).max())) > 9:
        problem = f"it holds the label {top}, not a digit 0-9"
    if problem is not None:
        raise ValueError(f"the MNIST file {path} is corrupt: {problem}; {_mnist_refetch(path.parent)}")


def mnist_images(train: bool = True, root: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All MNIST digits as ``(images, labels)``: float32 ``(N, 1, 28, 28)`` in [-1, 1], int64 ``(N,)``."""
    dataset = mnist_dataset(train=train, root=root)
    images = to_unit_range(dataset.data.unsqueeze(1))  # (N, 28, 28) uint8 → (N, 1, 28, 28)
    return images, dataset.targets.clone()

"""Real image datasets for the notebooks, as tensors scaled to [-1, 1].

- MNIST through ``torchvision.datasets.MNIST`` under ``config.data_dir()``.
- Butterflies from the image folder ``config.data_dir() / "butterflies"``; without it, the
  lesson's 128 NHM photos (CC BY 4.0), downloaded, checked and processed once into that folder
  by ``ddpm_helpers.butterfly_source``. On request only, the CC0 Smithsonian subset on the
  Hugging Face hub (``huggan/smithsonian_butterflies_subset`` at a pinned revision, needs the
  ``datasets`` package), cached in ``config.data_dir() / "smithsonian_butterflies"``.

Nothing is ever faked: a missing dataset raises ``FileNotFoundError`` saying how to get it.
Pixels are mapped from {0, …, 255} to [-1, 1] by x ↦ x / 127.5 − 1 (Ho et al. 2020, §3.3),
so that the data has the same scale as the N(0, I) prior.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import config
from .checks import check_int, check_positive_int

HUB_BUTTERFLIES = "huggan/smithsonian_butterflies_subset"
HUB_REVISION = "3cdedf844922ab40393d46d4c7f81c596e1c6d45"  # the hub dataset's commit "Create README.md", Apr 2022
BUTTERFLY_SOURCES = ("auto", "folder", "nhm", "smithsonian")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MAX_IMAGE_PIXELS = 50_000_000  # larger images are refused: a decompression bomb, or far more than a training image
_SIXTEEN_BIT_GREY = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # PIL modes of 16-bit greyscale PNGs
# MNIST's four IDX files and their array shapes (LeCun et al. 1998).
MNIST_FILES = {"train-images-idx3-ubyte": (60_000, 28, 28), "train-labels-idx1-ubyte": (60_000,),
               "t10k-images-idx3-ubyte": (10_000, 28, 28), "t10k-labels-idx1-ubyte": (10_000,)}


def to_unit_range(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels in {0, …, 255} → float32 in [-1, 1]:  x = p / 127.5 − 1."""
    return pixels.float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Inverse of ``to_unit_range``: float in [-1, 1] → uint8 pixels, clamped and rounded."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


# ---------------------------------------------------------------- MNIST


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


# ---------------------------------------------------------------- butterflies


@dataclass
class ImageSet:
    """Images as a float32 tensor ``(N, C, H, W)`` in [-1, 1], with where they came from.

    ``source`` names the folder relative to ``config.data_dir()`` so that printing it
    leaves no local path in a notebook.
    """

    images: torch.Tensor
    source: str

    def __len__(self) -> int:
        return len(self.images)


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _rgb_on_white(image):
    """An 8-bit RGB copy of a PIL image: 16-bit grey scaled to 8 bits, transparent pixels composited on white."""
    from PIL import Image

    if image.mode in _SIXTEEN_BIT_GREY:
        grey = np.asarray(image, dtype=np.float64) / 257.0  # p ↦ p · 255/65535
        image = Image.fromarray(np.clip(np.round(grey), 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")  # α·colour + (1 − α)·white
    return image.convert("RGB")


def _square_on_white(image, image_size: int):
    """Pad a PIL image to a white square (keeping wing tips), then resize with Lanczos."""
    from PIL import Image

    image = _rgb_on_white(image)
    side = max(image.size)
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return canvas.resize((image_size, image_size), Image.LANCZOS)


def _read_image(path: Path, image_size: int) -> np.ndarray:
    """One image file as a (image_size, image_size, 3) uint8 array; ValueError naming the file when unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise ValueError(f"image {path} is {image.width}×{image.height} pixels, more than the "
                                 f"{MAX_IMAGE_PIXELS:,} this loader reads: shrink it or remove it from the folder")
            return np.asarray(_square_on_white(image, image_size))
    except Image.DecompressionBombError as error:
        raise ValueError(f"image {path} is oversized ({error}): shrink it or remove it from the folder") from None
    except (OSError, SyntaxError, EOFError) as error:  # PIL's errors for truncated, damaged or non-image files
        raise ValueError(f"cannot read image {path} ({type(error).__name__}: {error}): the file is truncated, "
                         "damaged or not an image; replace it or remove it from the folder") from None


def load_image_folder(folder: str | Path, image_size: int) -> torch.Tensor:
    """Every image in ``folder`` as float32 ``(N, 3, image_size, image_size)`` in [-1, 1].

    Transparent pixels are composited on white; 16-bit images are scaled to 8 bits.
    """
    image_size = check_int(image_size, "image_size", low=8)  # pixels
    files = _image_files(Path(folder))
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    pixels = torch.from_numpy(np.stack([_read_image(path, image_size) for path in files]))
    return to_unit_range(pixels.permute(0, 3, 1, 2))  # (N, H, W, 3) → (N, 3, H, W)


def download_hub_butterflies(target: Path, image_size: int = 128, revision: str = HUB_REVISION) -> Path:
    """Download the CC0 Smithsonian butterflies (hub dataset at ``revision``) once, as PNG files."""
    try:
        from datasets import load_dataset
    except ImportError as error:
        raise ImportError(
            "source='smithsonian' needs the Hugging Face `datasets` package: pip install datasets "
            "(or use the default source, the 128 NHM butterflies, which needs nothing extra)"
        ) from error
    dataset = load_dataset(HUB_BUTTERFLIES, split="train", revision=revision)
    partial = target.with_name(target.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    for index, row in enumerate(dataset):
        _square_on_white(row["image"], image_size).save(partial / f"{index:04d}.png")
    partial.rename(target)  # only a complete download takes the final name
    return target


def butterfly_images(image_size: int = 32, root: str | Path | None = None, source: str = "auto") -> ImageSet:
    """Butterfly photos as an ``ImageSet`` of ``(N, 3, image_size, image_size)`` in [-1, 1].

    ``source``: ``"auto"`` (default: the folder ``<root>/butterflies`` when it holds images, else the
    128 NHM photos downloaded into it), ``"folder"`` (that folder only), ``"nhm"`` (the NHM photos,
    downloaded when the folder lacks them) or ``"smithsonian"`` (the hub set, needs ``datasets``).
    Prints the credit line of the NHM photos (CC BY 4.0) when it loads them.
    """
    from . import butterfly_source

    if source not in BUTTERFLY_SOURCES:
        raise ValueError(f"unknown butterfly source {source!r}; use one of {BUTTERFLY_SOURCES}")
    root = Path(root) if root is not None else config.data_dir()
    folder, hub_cache = root / "butterflies", root / "smithsonian_butterflies"
    if source == "smithsonian":
        if not _image_files(hub_cache):
            download_hub_butterflies(hub_cache)
        source_text = (f"Hugging Face hub {HUB_BUTTERFLIES}@{HUB_REVISION[:7]}, "
                       "cached in <data dir>/smithsonian_butterflies")
        return ImageSet(load_image_folder(hub_cache, image_size), source_text)
    if source in ("auto", "folder") and _image_files(folder):
        if (folder / "SOURCE.md").is_file():  # the NHM set (offline copy or download) carries its SOURCE.md
            print(butterfly_source.ATTRIBUTION)
        return ImageSet(load_image_folder(folder, image_size), "image folder <data dir>/butterflies")
    if source == "folder":
        raise FileNotFoundError(f"no butterfly images in {folder}: put .png/.jpg files there")
    try:
        butterfly_source.download_nhm_butterflies(folder)
    except butterfly_source.DownloadError as error:
        raise FileNotFoundError(
            f"no butterfly images: {folder} is empty or missing and the 128 NHM butterflies could not be "
            f"downloaded ({error}). Either go online and rerun (set DDPM_BUTTERFLY_URL to use a mirror), "
            f"or copy the 128 PNGs into {folder}, or point DDPM_DATA_DIR at a folder that has a "
            "butterflies/ subfolder, or pass source='smithsonian' for the Hugging Face set."
        ) from error
    print(butterfly_source.ATTRIBUTION)
    return ImageSet(load_image_folder(folder, image_size), "NHM butterflies (checked) in <data dir>/butterflies")


# ---------------------------------------------------------------- batches and augmentation


def flip_and_crop(x: torch.Tensor, generator: torch.Generator | None = None, min_scale: float = 0.85) -> torch.Tensor:
    """Random horizontal flips and light random crops (side ≥ ``min_scale``), resized back.

    Works on a batch ``(B, C, H, W)``; each image gets its own flip and crop.
    """
    if x.ndim != 4:
        raise ValueError(f"expected a batch of shape (B, C, H, W), got shape {tuple(x.shape)}")
    if not 0 < min_scale <= 1:
        raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
    batch, _, height, width = x.shape
    device = x.device
    rand = torch.rand(batch, 4, generator=generator).to(device)  # drawn on the CPU: reproducible anywhere
    x = torch.where((rand[:, 0] < 0.5).view(-1, 1, 1, 1), x.flip(-1), x)
    # A crop is an affine map of the sampling grid: scale s ≤ 1, shift within the free margin.
    scale = min_scale + (1 - min_scale) * rand[:, 1]
    shift = (1 - scale).unsqueeze(1) * (2 * rand[:, 2:] - 1)
    theta = torch.zeros(batch, 2, 3, device=device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 1, 1] = scale, scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_batches(
    data: torch.Tensor,
    batch_size: int,
    transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    labels: torch.Tensor | None = None,
) -> Callable[[int, torch.Generator], torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
    """A ``batches(step, generator)`` callable drawing random rows of an in-memory tensor.

    Faster than a DataLoader for small datasets held in memory; the generator makes the
    draws reproducible (and resumable) for a seed. With ``labels`` (one per row) each batch is
    an ``(x, y)`` pair drawn with the same rows.
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    if data.ndim < 1 or len(data) == 0:
        raise ValueError(f"data must be a non-empty tensor, got shape {tuple(data.shape)}")
    if labels is not None and labels.shape != data.shape[:1]:
        raise ValueError(f"labels must have shape ({len(data)},) to match data, got {tuple(labels.shape)}")

    def batches(step: int, generator: torch.Generator):
        index = torch.randint(len(data), (batch_size,), generator=generator)  # uniform, with replacement
        batch = data[index.to(data.device)]
        batch = transform(batch, generator) if transform is not None else batch
        return batch if labels is None else (batch, labels[index.to(labels.device)])

    return batches

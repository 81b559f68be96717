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

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import config

HUB_BUTTERFLIES = "huggan/smithsonian_butterflies_subset"
HUB_REVISION = "3cdedf844922ab40393d46d4c7f81c596e1c6d45"  # the hub dataset's commit "Create README.md", Apr 2022
BUTTERFLY_SOURCES = ("auto", "folder", "nhm", "smithsonian")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def to_unit_range(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels in {0, …, 255} → float32 in [-1, 1]:  x = p / 127.5 − 1."""
    return pixels.float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Inverse of ``to_unit_range``: float in [-1, 1] → uint8 pixels, clamped and rounded."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


# ---------------------------------------------------------------- MNIST


def mnist_dataset(train: bool = True, root: str | Path | None = None):
    """The torchvision MNIST dataset under ``root`` (default ``config.data_dir()``).

    Uses the files when present, otherwise tries to download them; offline and missing,
    raises ``FileNotFoundError`` explaining where to put them.
    """
    import torchvision

    root = Path(root) if root is not None else config.data_dir()
    try:
        return torchvision.datasets.MNIST(root=str(root), train=train, download=False)
    except RuntimeError:
        pass
    try:
        return torchvision.datasets.MNIST(root=str(root), train=train, download=True)
    except Exception as error:  # network errors come in many types
        raise FileNotFoundError(
            f"MNIST was not found under {root / 'MNIST' / 'raw'} and could not be downloaded "
            f"({type(error).__name__}: {error}). Either connect to the internet and rerun, or copy "
            "the four files train-images-idx3-ubyte, train-labels-idx1-ubyte, "
            "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte into that folder, or point the "
            "DDPM_DATA_DIR environment variable at a folder that contains MNIST/raw/."
        ) from error


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


def _square_on_white(image, image_size: int):
    """Pad a PIL image to a white square (keeping wing tips), then resize with Lanczos."""
    from PIL import Image

    image = image.convert("RGB")
    side = max(image.size)
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return canvas.resize((image_size, image_size), Image.LANCZOS)


def load_image_folder(folder: str | Path, image_size: int) -> torch.Tensor:
    """Every image in ``folder`` as float32 ``(N, 3, image_size, image_size)`` in [-1, 1]."""
    from PIL import Image

    if image_size < 8:
        raise ValueError(f"image_size must be at least 8 pixels, got {image_size}")
    files = _image_files(Path(folder))
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    arrays = []
    for path in files:
        with Image.open(path) as image:
            arrays.append(np.asarray(_square_on_white(image, image_size)))
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)  # (N, H, W, 3) → (N, 3, H, W)
    return to_unit_range(pixels)


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
        source_text = f"Hugging Face hub {HUB_BUTTERFLIES}@{HUB_REVISION[:7]}, cached in <data dir>/smithsonian_butterflies"
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
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
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

"""Image tensors for the notebooks: pixels scaled to [-1, 1], image folders read and padded, random batches
and the augmentation of notebook 05.

Pixels are mapped from {0, …, 255} to [-1, 1] by x ↦ x / 127.5 − 1 (Ho et al. 2020, §3.3),
so that the data has the same scale as the N(0, I) prior.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ddpm_helpers.checks import check_int, check_positive_int

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MAX_IMAGE_PIXELS = 50_000_000  # larger images are refused: a decompression bomb, or far more than a training image
_EXIF_ORIENTATION = 0x0112  # the EXIF tag a camera sets when the photo is stored rotated or mirrored
_SIXTEEN_BIT_GREY = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # PIL modes of 16-bit greyscale PNGs


def to_unit_range(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels in {0, …, 255} → float32 in [-1, 1]:  x = p / 127.5 − 1.

    Any other dtype is refused (float data may already be in [-1, 1] or [0, 1]: rescaling it again is silently wrong).
    """
    if not torch.is_tensor(pixels) or pixels.dtype != torch.uint8:
        got = f"dtype {pixels.dtype}" if torch.is_tensor(pixels) else type(pixels).__name__
        raise ValueError(f"to_unit_range takes uint8 pixels in {{0, …, 255}}, got {got}: float data may already be "
                         "in [-1, 1] (use it as it is) or in [0, 1] (use 2 * x - 1)")
    return pixels.float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Inverse of ``to_unit_range``: float in [-1, 1] → uint8 pixels, clamped and rounded."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


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
    """The image files of ``folder``, sorted; anything with an image name that is not a regular file (a FIFO, whose
    ``open`` blocks forever, a socket, a device, a folder) is skipped with a warning naming it."""
    if not folder.is_dir():
        return []
    named = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    files = [p for p in named if p.is_file()]  # is_file: a regular file (or a link to one), never a FIFO
    skipped = [p.name for p in named if not p.is_file()]
    if skipped:
        warnings.warn(f"skipped {skipped} in {folder}: not regular files (a folder, a FIFO, a socket or a device)",
                      stacklevel=3)
    return files


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
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise ValueError(f"image {path} is {image.width}×{image.height} pixels, more than the "
                                 f"{MAX_IMAGE_PIXELS:,} this loader reads: shrink it or remove it from the folder")
            if max(image.width, image.height) < image_size:
                raise ValueError(f"image {path} is {image.width}×{image.height} pixels, smaller than the "
                                 f"{image_size}×{image_size} asked for (it would be blown up): remove it from the "
                                 "folder or ask for a smaller image_size")
            if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:  # a phone photo stored on its side
                image = ImageOps.exif_transpose(image)
            return np.asarray(_square_on_white(image, image_size))
    except Image.DecompressionBombError as error:
        raise ValueError(f"image {path} is oversized ({error}): shrink it or remove it from the folder") from None
    except (OSError, SyntaxError, EOFError) as error:  # PIL's errors for truncated, damaged or non-image files
        raise ValueError(f"cannot read image {path} ({type(error).__name__}: {error}): the file is truncated, "
                         "damaged or not an image; replace it or remove it from the folder") from None


def load_image_folder(folder: str | Path, image_size: int) -> torch.Tensor:
    """Every image in ``folder`` as float32 ``(N, 3, image_size, image_size)`` in [-1, 1].

    Transparent pixels are composited on white; 16-bit images are scaled to 8 bits; a photo's EXIF orientation
    is applied (phone photos stand upright). An image smaller than ``image_size`` on both sides is refused by name.
    """
    image_size = check_int(image_size, "image_size", low=8)  # pixels
    files = _image_files(Path(folder))
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    pixels = torch.from_numpy(np.stack([_read_image(path, image_size) for path in files]))
    return to_unit_range(pixels.permute(0, 3, 1, 2))  # (N, H, W, 3) → (N, 3, H, W)


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

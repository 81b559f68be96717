"""Butterfly photos for notebook 05, as tensors in [-1, 1].

- From the image folder ``config.data_dir() / "butterflies"``; without it, the lesson's 128 NHM photos
  (CC BY 4.0), downloaded, checked and processed once into that folder (:func:`download_nhm_butterflies`).
- On request only, the CC0 Smithsonian subset on the Hugging Face hub
  (``huggan/smithsonian_butterflies_subset`` at a pinned revision, needs the ``datasets`` package),
  cached in ``config.data_dir() / "smithsonian_butterflies"``.

**The NHM download.** The 128 source JPEGs are files of the public GitHub repository JVP15/butterfly-gan at a
pinned commit. The package data ``data/nhm_butterflies.csv`` lists, for each, the PNG it becomes, its
URL, size, MD5 and SHA-256. :func:`download_nhm_butterflies` fetches each file (no credentials,
a timeout per request), checks its size and SHA-256 (a truncated or corrupted download is fetched
once more, then reported with the file named, never used), processes it exactly as the offline
copy was made (RGB, centred on a white square of side max(w, h), Lanczos to 128×128, PNG) and
caches the PNGs with a ``SOURCE.md`` that carries the attribution.

Images © The Trustees of the Natural History Museum, London, CC BY 4.0: keep :data:`ATTRIBUTION`
wherever they are shown. Nothing is ever faked: a missing dataset raises ``FileNotFoundError`` saying
how to get it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ddpm_helpers import config
from ddpm_helpers.checks import check_number
from ddpm_helpers.datasets.images import ImageSet, _image_files, _square_on_white, load_image_folder
from ddpm_helpers.utils import DownloadError, download

HUB_BUTTERFLIES = "huggan/smithsonian_butterflies_subset"
HUB_REVISION = "3cdedf844922ab40393d46d4c7f81c596e1c6d45"  # the hub dataset's commit "Create README.md", Apr 2022
BUTTERFLY_SOURCES = ("auto", "folder", "nhm", "smithsonian")
PINNED_REPOSITORY = "JVP15/butterfly-gan"
PINNED_COMMIT = "afd437b6b7b878ffbfce8b0cb16837e548747ea7"
DEFAULT_BASE_URL = f"https://raw.githubusercontent.com/{PINNED_REPOSITORY}/{PINNED_COMMIT}/butterflies"
IMAGE_SIZE = 128
TIMEOUT_S = 60.0
ATTRIBUTION = (
    "Butterfly specimen images © The Trustees of the Natural History Museum, London, licensed under "
    "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/). Source: \"Representative images of "
    "Lepidoptera from the Natural History Museum\", Zenodo, https://zenodo.org/record/4307612. "
    "Modified: background removed (by the authors of github.com/JVP15/butterfly-gan), padded to a "
    "square, resized to 128x128 px and converted to PNG. The NHM does not endorse this project."
)


@dataclass(frozen=True)
class SourceFile:
    """One row of the manifest: the source JPEG, where it is published, its size and checksums."""

    png: str
    source_file: str
    url: str
    bytes: int
    md5: str
    sha256: str


_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _check_entry(entry: SourceFile) -> SourceFile:
    """``entry`` if its PNG and source file are plain file names (nothing written or read outside the folder)."""
    for field in ("png", "source_file"):
        value = getattr(entry, field)
        if not isinstance(value, str) or not _PLAIN_NAME.fullmatch(value) or ".." in value:
            raise ValueError(f"manifest row {field}={value!r} must be a plain file name (no folders, no '..')")
    if not entry.png.endswith(".png"):
        raise ValueError(f"manifest row png={entry.png!r} must name a .png file")
    return entry


def manifest() -> list[SourceFile]:
    """The 128 rows of the packaged manifest, in PNG order (``0000.png`` … ``0127.png``)."""
    text = resources.files("ddpm_helpers").joinpath("data/nhm_butterflies.csv").read_text(encoding="utf-8")
    rows = csv.DictReader(io.StringIO(text))
    return [_check_entry(SourceFile(**{**row, "bytes": int(row["bytes"])})) for row in rows]


def _problem(data: bytes, entry: SourceFile) -> str | None:
    """Why ``data`` is not ``entry``'s file, or ``None`` when its size and SHA-256 match."""
    if len(data) != entry.bytes:
        return f"got {len(data):,} bytes instead of {entry.bytes:,} (truncated or incomplete download)"
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.sha256:
        return f"SHA-256 {digest} is not the manifest's {entry.sha256} (corrupted or changed file)"
    return None


def fetch_verified(entry: SourceFile, base_url: str, timeout: float = TIMEOUT_S, attempts: int = 2) -> bytes:
    """The bytes of ``entry`` from ``<base_url>/<source_file>``, checked; a bad download is retried.

    Raises :class:`DownloadError` naming the file when every attempt failed or mismatched.
    """
    url = f"{base_url.rstrip('/')}/{_check_entry(entry).source_file}"
    try:
        return download(url, timeout, check=lambda data: _problem(data, entry), attempts=attempts,
                        max_bytes=entry.bytes)  # never read more than the manifest's size
    except DownloadError as error:
        raise DownloadError(f"{entry.source_file} from {error}, file not used") from None


def process(data: bytes):
    """A source JPEG's bytes → the 128×128 RGB PIL image of the offline copy.

    RGB, centred on a white square of side max(w, h) at offset ((side − w) // 2, (side − h) // 2),
    resized with Lanczos — the loader's own padding (``datasets.images._square_on_white``).
    """
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return _square_on_white(image, IMAGE_SIZE)


def _source_note(base_url: str) -> str:
    return (
        "# Butterfly images: where they come from\n\n"
        f"Downloaded by `ddpm_helpers.datasets.butterflies` from {base_url}\n"
        f"(published in github.com/{PINNED_REPOSITORY} at commit {PINNED_COMMIT}); every file's size and\n"
        "SHA-256 matched the packaged manifest `ddpm_helpers/data/nhm_butterflies.csv`. Each JPEG was\n"
        "converted to RGB, centred on a white square, resized to 128x128 with Lanczos and saved as PNG.\n\n"
        f"{ATTRIBUTION}\n"
    )


def _has_all(folder: Path, entries: list[SourceFile]) -> bool:
    return all((folder / entry.png).is_file() for entry in entries)


def download_nhm_butterflies(target: str | Path | None = None, base_url: str | None = None,
                             entries: list[SourceFile] | None = None, timeout: float = TIMEOUT_S,
                             progress: bool = True) -> Path:
    """Download, verify and process the NHM butterflies into ``target`` (default ``<data dir>/butterflies``).

    ``base_url`` defaults to ``DDPM_BUTTERFLY_URL`` (``config.butterfly_url``), else the pinned commit;
    ``entries`` defaults to all 128 rows of :func:`manifest`. A folder that already holds every PNG is
    returned as it is. Work goes into ``<target>.partial`` (each PNG written whole, so an interrupted
    download resumes) and takes the final name only when complete.
    """
    from tqdm import tqdm

    target = Path(target) if target is not None else config.data_dir() / "butterflies"
    base_url = base_url or config.butterfly_url() or DEFAULT_BASE_URL
    entries = manifest() if entries is None else [_check_entry(entry) for entry in entries]
    timeout = check_number(timeout, "timeout", low=0, low_open=True)  # seconds per request
    if _has_all(target, entries):
        return target
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} holds other files than the NHM butterflies; move them or pick another folder")
    partial = target.with_name(target.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    for entry in tqdm(entries, desc="NHM butterflies", unit="image", disable=not progress):
        png = partial / entry.png
        if png.is_file():
            continue  # written whole by an earlier, interrupted call
        image = process(fetch_verified(entry, base_url, timeout))
        scratch = png.with_name(png.name + ".tmp")
        image.save(scratch, format="PNG", optimize=True)
        os.replace(scratch, png)
    (partial / "SOURCE.md").write_text(_source_note(base_url), encoding="utf-8")
    if target.exists():
        target.rmdir()  # empty (checked above)
    partial.rename(target)  # only a complete download takes the final name
    return target


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
            print(ATTRIBUTION)
        return ImageSet(load_image_folder(folder, image_size), "image folder <data dir>/butterflies")
    if source == "folder":
        raise FileNotFoundError(f"no butterfly images in {folder}: put .png/.jpg files there")
    try:
        download_nhm_butterflies(folder)
    except DownloadError as error:
        raise FileNotFoundError(
            f"no butterfly images: {folder} is empty or missing and the 128 NHM butterflies could not be "
            f"downloaded ({error}). Either go online and rerun (set DDPM_BUTTERFLY_URL to use a mirror), "
            f"or copy the 128 PNGs into {folder}, or point DDPM_DATA_DIR at a folder that has a "
            "butterflies/ subfolder, or pass source='smithsonian' for the Hugging Face set."
        ) from error
    print(ATTRIBUTION)
    return ImageSet(load_image_folder(folder, image_size), "NHM butterflies (checked) in <data dir>/butterflies")

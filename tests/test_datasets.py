"""Tests of the real-data loaders against the offline copies in ../shared/data."""

import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm_helpers import datasets

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not beside the checkout")


def test_unit_range_round_trip():
    pixels = torch.arange(256, dtype=torch.uint8)
    x = datasets.to_unit_range(pixels)
    assert x.min() == -1 and x.max() == 1
    assert torch.equal(datasets.to_uint8(x), pixels)


@needs_shared
def test_mnist_images_are_scaled_digits():
    images, labels = datasets.mnist_images(train=False, root=SHARED_DATA)
    assert images.shape == (10_000, 1, 28, 28) and images.dtype == torch.float32
    assert images.min() == -1 and images.max() == 1
    assert torch.bincount(labels).tolist()[:3] == [980, 1135, 1032]  # the official test-set counts


def test_missing_mnist_says_how_to_get_it(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        if kwargs.get("download"):
            raise OSError("no network")
        raise RuntimeError("Dataset not found")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(FileNotFoundError, match="DDPM_DATA_DIR") as error:
        datasets.mnist_dataset(root=tmp_path)
    assert str(tmp_path) in str(error.value)


@needs_shared
def test_butterflies_from_the_folder():
    data = datasets.butterfly_images(image_size=32, root=SHARED_DATA)
    assert data.images.shape == (128, 3, 32, 32)
    assert "image folder" in data.source
    assert -1 <= data.images.min() and data.images.max() <= 1
    corner = data.images[:, :, 0, 0]  # specimens are photographed on white
    assert (corner > 0.9).float().mean() > 0.9


def test_non_square_images_are_padded_with_white(tmp_path):
    (tmp_path / "butterflies").mkdir()
    Image.new("RGB", (40, 20), (0, 0, 0)).save(tmp_path / "butterflies" / "a.png")
    x = datasets.butterfly_images(image_size=16, root=tmp_path, source="folder").images[0]
    assert x[:, 0, :].min() == 1  # top row is padding
    assert x[:, 8, 8].max() == -1  # centre is the black photo


def test_missing_butterflies_explain_the_options(tmp_path, monkeypatch):
    from ddpm_helpers.datasets import butterflies

    def offline(target):
        raise butterflies.DownloadError("butterfly0.jpg from https://…: URLError: offline")

    monkeypatch.setattr(butterflies, "download_nhm_butterflies", offline)  # never the network in tests
    with pytest.raises(FileNotFoundError, match="butterflies") as error:
        datasets.butterfly_images(root=tmp_path)
    assert "DDPM_BUTTERFLY_URL" in str(error.value) and "source='smithsonian'" in str(error.value)
    with pytest.raises(FileNotFoundError, match="no butterfly images in"):
        datasets.butterfly_images(root=tmp_path, source="folder")


def test_bad_arguments_name_the_value(tmp_path):
    with pytest.raises(ValueError, match="'web'"):
        datasets.butterfly_images(root=tmp_path, source="web")
    with pytest.raises(ValueError, match="image_size=4"):
        datasets.load_image_folder(tmp_path, image_size=4)
    with pytest.raises(ValueError, match="batch_size=0"):
        datasets.random_batches(torch.zeros(3, 2), batch_size=0)
    with pytest.raises(ValueError, match=r"\(3, 2\)"):
        datasets.flip_and_crop(torch.zeros(3, 2))


def test_flip_and_crop_keeps_shape_and_flips_about_half():
    x = torch.linspace(-1, 1, 8).expand(1000, 1, 8, 8).contiguous()  # a horizontal ramp
    y = datasets.flip_and_crop(x, torch.Generator().manual_seed(0), min_scale=1.0)
    assert y.shape == x.shape
    flipped = (y[:, 0, 0, 0] > 0).float().mean().item()  # a flipped ramp starts high
    assert 0.45 < flipped < 0.55
    assert torch.allclose(y[y[:, 0, 0, 0] < 0], x[: int((y[:, 0, 0, 0] < 0).sum())], atol=1e-5)


def test_random_batches_are_reproducible_rows():
    data = torch.arange(100.0).view(50, 2)
    batches = datasets.random_batches(data, batch_size=7)
    a = batches(0, torch.Generator().manual_seed(3))
    b = batches(0, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (7, 2)
    assert all(row.tolist() in data.tolist() for row in a)


# ---------------------------------------------------------------- image files that must not load wrongly


def _folder_with(tmp_path, name, save):
    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    save(folder / name)
    return folder


def test_transparent_pixels_are_composited_on_white(tmp_path):
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[4:12, 4:12] = (0, 0, 255, 255)  # an opaque blue square on a fully transparent (black) background
    rgba[0, :8] = (0, 0, 0, 128)  # half-transparent black: mid grey on white
    folder = _folder_with(tmp_path, "a.png", lambda p: Image.fromarray(rgba, "RGBA").save(p))
    x = datasets.load_image_folder(folder, image_size=16)[0]
    assert torch.equal(x[:, 15, 15], torch.ones(3))  # transparent → white, not black
    assert torch.equal(x[:, 8, 8], torch.tensor([-1.0, -1.0, 1.0]))  # opaque pixels keep their colour
    assert x[:, 0, 2].sub(0.0).abs().max() < 0.02  # α = ½: halfway between black and white


def test_palette_and_grey_alpha_transparency_is_white_too(tmp_path):
    folder = _folder_with(tmp_path, "p.png", lambda p: Image.new("RGBA", (8, 8), (0, 0, 0, 0)).convert("P").save(p))
    _folder_with(tmp_path, "la.png", lambda p: Image.new("LA", (8, 8), (0, 0)).save(p))
    x = datasets.load_image_folder(folder, image_size=8)
    assert torch.equal(x, torch.ones_like(x))


def test_sixteen_bit_png_is_scaled_not_saturated(tmp_path):
    ramp = (np.arange(16 * 16, dtype=np.uint32).reshape(16, 16) * 257).astype(np.uint16)  # 0, 257, …: p ↦ p/257
    folder = _folder_with(tmp_path, "g16.png", lambda p: Image.fromarray(ramp).save(p))
    with Image.open(folder / "g16.png") as image:
        assert image.mode.startswith("I")  # PIL reads it as 16-bit grey
    x = datasets.load_image_folder(folder, image_size=16)[0]
    expected = datasets.to_unit_range(torch.arange(256, dtype=torch.uint8).view(16, 16))
    assert torch.allclose(x[0], expected, atol=1 / 127.5 + 1e-6)  # Lanczos at the same size: ±1 level
    assert x.min() < -0.9 and x.mean().abs() < 0.05  # not saturated to white


@pytest.mark.parametrize("damage", ["truncated png", "truncated jpg", "empty", "text", "oversized", "bomb"])
def test_unreadable_images_name_the_file(tmp_path, damage):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (20, 20), (10, 200, 30)).save(folder / "good.png")
    photo = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    if damage.startswith("truncated"):
        suffix = damage.split()[1]
        Image.fromarray(photo).save(tmp_path / f"full.{suffix}")
        data = (tmp_path / f"full.{suffix}").read_bytes()
        (folder / f"bad.{suffix}").write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        (folder / "bad.png").write_bytes(b"")
    elif damage == "text":
        (folder / "bad.png").write_text("not an image")
    else:  # a PNG header announcing a huge image: refused before any pixel is decoded
        side = 8000 if damage == "oversized" else 30_000
        (folder / "bad.png").write_bytes(_png_header(side, side))
    with pytest.raises(ValueError, match=r"bad\.(png|jpg)"):
        datasets.load_image_folder(folder, image_size=16)


def _png_header(width, height):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IEND", b""))


# ---------------------------------------------------------------- damaged MNIST files


@pytest.fixture
def mnist_copy(tmp_path):
    """A writable copy of the shared MNIST test files (the training files linked, read-only)."""
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip("../shared/data is not beside the checkout")
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in datasets.MNIST_FILES:
        source = SHARED_DATA / "MNIST" / "raw" / name
        if name.startswith("t10k"):
            shutil.copyfile(source, raw / name)
        else:
            (raw / name).symlink_to(source)
    return raw


@pytest.mark.parametrize("damage", ["truncated", "empty", "header", "shape", "label", "text"])
def test_damaged_mnist_says_corrupt_names_the_file_and_how_to_refetch(mnist_copy, damage):
    images, labels = mnist_copy / "t10k-images-idx3-ubyte", mnist_copy / "t10k-labels-idx1-ubyte"
    target = labels if damage == "label" else images
    data = bytearray(target.read_bytes())
    if damage == "truncated":
        data = data[: len(data) - 784 * 10]
    elif damage == "empty":
        data = bytearray()
    elif damage == "header":
        data[2] = 0x0D  # float32 instead of unsigned bytes
    elif damage == "shape":
        data[11] ^= 0x01  # 28 rows become 29
    elif damage == "label":
        data[100] = 77
    else:
        data = bytearray(b"<html>404 not found</html>")
    target.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt") as error:
        datasets.mnist_images(train=False, root=mnist_copy.parents[1])
    message = str(error.value)
    assert str(target) in message and "download them again" in message
    assert "was not found" not in message


def test_intact_mnist_copy_loads(mnist_copy):
    images, labels = datasets.mnist_images(train=False, root=mnist_copy.parents[1])
    assert images.shape == (10_000, 1, 28, 28) and labels.max() == 9


def test_corrupt_mnist_archives_are_not_reported_missing(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise RuntimeError("File not found or corrupted.")

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b damaged")
    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(ValueError, match="corrupt") as error:
        datasets.mnist_dataset(train=False, root=tmp_path)
    assert "t10k-images-idx3-ubyte.gz" in str(error.value)


def test_a_fifo_named_like_an_image_is_skipped_by_name_not_waited_on(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (16, 16), (10, 200, 30)).save(folder / "good.png")
    fifo = folder / "f.png"
    os.mkfifo(fifo)

    def unblock():  # before the fix, Image.open(f.png) waits for a writer forever: open one to end the test
        for _ in range(100):
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                return
            except OSError:  # ENXIO: nobody reads it (yet)
                time.sleep(0.1)

    threading.Thread(target=unblock, daemon=True).start()
    with pytest.warns(UserWarning, match=r"skipped \['f.png'\].*not regular files"):
        x = datasets.load_image_folder(folder, image_size=16)
    assert x.shape == (1, 3, 16, 16)


def test_exif_orientation_is_applied(tmp_path):
    """A phone photo stored on its side with EXIF orientation 6 (rotate 90° clockwise to view) stands upright."""
    stored = np.zeros((16, 32, 3), np.uint8)  # 32 wide, 16 high, as the sensor stored it
    stored[:, :6] = (255, 0, 0)  # a red band on the stored image's left edge: the top of the upright photo
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6
    folder = _folder_with(tmp_path, "phone.jpg", lambda p: image.save(p, exif=exif, quality=100))
    x = datasets.load_image_folder(folder, image_size=32)[0]  # upright: 16 wide, 32 high, padded to 32×32

    def red(row, col):
        return x[0, row, col] > 0.8 and x[1, row, col] < -0.8 and x[2, row, col] < -0.8

    assert red(2, 16) and not red(16, 2)  # the band is along the top, not the left side
    assert x[:, 16, 2].min() > 0.9 and x[:, 16, 16].max() < -0.8  # white padding at the sides, black inside


def test_an_image_smaller_than_the_target_is_refused_by_name(tmp_path):
    folder = _folder_with(tmp_path, "dot.png", lambda p: Image.new("RGB", (1, 1), (0, 0, 0)).save(p))
    with pytest.raises(ValueError, match=r"dot.png is 1×1 pixels, smaller than the 32×32"):
        datasets.load_image_folder(folder, image_size=32)

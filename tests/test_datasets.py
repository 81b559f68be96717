"""Tests of the real-data loaders against the offline copies in ../shared/data."""

from pathlib import Path

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
    from ddpm_helpers import butterfly_source

    def offline(target):
        raise butterfly_source.DownloadError("butterfly0.jpg from https://…: URLError: offline")

    monkeypatch.setattr(butterfly_source, "download_nhm_butterflies", offline)  # never the network in tests
    with pytest.raises(FileNotFoundError, match="butterflies") as error:
        datasets.butterfly_images(root=tmp_path)
    assert "DDPM_BUTTERFLY_URL" in str(error.value) and "source='smithsonian'" in str(error.value)
    with pytest.raises(FileNotFoundError, match="no butterfly images in"):
        datasets.butterfly_images(root=tmp_path, source="folder")


def test_bad_arguments_name_the_value(tmp_path):
    with pytest.raises(ValueError, match="'web'"):
        datasets.butterfly_images(root=tmp_path, source="web")
    with pytest.raises(ValueError, match="got 4"):
        datasets.load_image_folder(tmp_path, image_size=4)
    with pytest.raises(ValueError, match="got 0"):
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

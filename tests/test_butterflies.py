"""The NHM butterflies online: download from a local HTTP server, verify, process, compare with the offline copy."""

import csv
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from local_server import Raw, serve
from PIL import Image

from ddpm_helpers import config, datasets
from ddpm_helpers.datasets import butterflies
from ddpm_helpers.utils import DownloadError, download

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SOURCES, PNGS = SHARED_DATA / "butterflies-source", SHARED_DATA / "butterflies"
needs_sources = pytest.mark.skipif(not (SOURCES / "manifest.csv").is_file() or not PNGS.is_dir(),
                                   reason="../shared/data/butterflies-source is not beside the checkout")


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_packaged_manifest_lists_128_pinned_files():
    entries = butterflies.manifest()
    assert [e.png for e in entries] == [f"{i:04d}.png" for i in range(128)]
    assert all(e.url == f"{butterflies.DEFAULT_BASE_URL}/{e.source_file}" for e in entries)
    assert all(len(e.sha256) == 64 and len(e.md5) == 32 and e.bytes > 0 for e in entries)
    assert len({e.sha256 for e in entries}) == 128


@needs_sources
def test_packaged_manifest_is_the_shared_one():
    with open(SOURCES / "manifest.csv", newline="") as f:
        shared = list(csv.DictReader(f))
    assert [dict(vars(e), bytes=str(e.bytes)) for e in butterflies.manifest()] == shared


@needs_sources
def test_download_and_process_gives_the_offline_images(tmp_path, monkeypatch):
    with serve(SOURCES) as url:
        monkeypatch.setenv("DDPM_BUTTERFLY_URL", url)  # the override goes through config
        assert config.butterfly_url() == url
        folder = butterflies.download_nhm_butterflies(tmp_path / "butterflies", progress=False)
    made = sorted(folder.glob("*.png"))
    assert [p.name for p in made] == sorted(p.name for p in PNGS.glob("*.png"))
    different = [p.name for p in made if not np.array_equal(pixels(p), pixels(PNGS / p.name))]
    assert different == []
    assert "CC BY 4.0" in (folder / "SOURCE.md").read_text() and url in (folder / "SOURCE.md").read_text()
    assert not (tmp_path / "butterflies.partial").exists()


@needs_sources
def test_a_truncated_download_is_fetched_again(tmp_path):
    entries = butterflies.manifest()[:3]
    whole = (SOURCES / entries[1].source_file).read_bytes()
    tampered = {entries[1].source_file: [whole[: len(whole) // 2]]}  # first answer cut off, second whole
    with serve(SOURCES, tampered) as url:
        folder = butterflies.download_nhm_butterflies(tmp_path / "b", url, entries, progress=False)
    assert tampered[entries[1].source_file] == []  # the bad body was served, then the file again
    assert np.array_equal(pixels(folder / entries[1].png), pixels(PNGS / entries[1].png))


@needs_sources
@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_a_download_that_stays_bad_is_reported_by_name_and_not_used(tmp_path, damage):
    entries = butterflies.manifest()[:3]
    bad = entries[2]
    whole = bytearray((SOURCES / bad.source_file).read_bytes())
    if damage == "truncated":
        body = bytes(whole[:-100])
    else:
        whole[len(whole) // 2] ^= 0xFF  # one flipped byte: same size, different SHA-256
        body = bytes(whole)
    assert hashlib.sha256(body).hexdigest() != bad.sha256
    with serve(SOURCES, {bad.source_file: [body, body]}) as url, \
            pytest.raises(butterflies.DownloadError, match=bad.source_file) as error:
        butterflies.download_nhm_butterflies(tmp_path / "b", url, entries, progress=False)
    assert ("bytes instead of" if damage == "truncated" else "SHA-256") in str(error.value)
    assert not (tmp_path / "b").exists()  # nothing takes the final name
    assert sorted(p.name for p in (tmp_path / "b.partial").glob("*.png")) == [e.png for e in entries[:2]]


@needs_sources
def test_butterfly_images_downloads_by_default_and_credits_the_nhm(tmp_path, monkeypatch, capsys):
    entries = butterflies.manifest()[:4]
    monkeypatch.setattr(butterflies, "manifest", lambda: entries)  # 4 files keep the test fast
    with serve(SOURCES) as url:
        monkeypatch.setenv("DDPM_BUTTERFLY_URL", url)
        data = datasets.butterfly_images(image_size=16, root=tmp_path)
    assert data.images.shape == (4, 3, 16, 16) and "NHM" in data.source
    assert "Natural History Museum" in capsys.readouterr().out
    again = datasets.butterfly_images(image_size=16, root=tmp_path, source="nhm")  # cached: no server needed
    assert "CC BY 4.0" in capsys.readouterr().out
    assert np.array_equal(again.images.numpy(), data.images.numpy())


def test_offline_without_images_says_how_to_get_them(tmp_path, monkeypatch):
    with serve(tmp_path / "empty-mirror") as url:  # a server that has none of the files: 404 for each
        monkeypatch.setenv("DDPM_BUTTERFLY_URL", url)
        with pytest.raises(FileNotFoundError, match="butterfly0.jpg") as error:
            datasets.butterfly_images(root=tmp_path)
    assert "DDPM_DATA_DIR" in str(error.value) and "smithsonian" in str(error.value)


def test_smithsonian_needs_datasets(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError("No module named 'datasets'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(ImportError, match="pip install datasets"):
        datasets.butterfly_images(root=tmp_path, source="smithsonian")


def test_a_manifest_row_cannot_write_or_read_outside_its_folder(tmp_path):
    entry = butterflies.manifest()[0]
    for field, value in [("png", "../x.png"), ("png", "/tmp/x.png"), ("source_file", "../../secret.jpg"),
                         ("png", "sub/x.png"), ("png", "x.jpg")]:
        bad = butterflies.SourceFile(**{**vars(entry), field: value})
        with pytest.raises(ValueError, match=f"{field}={value!r}"):
            butterflies.download_nhm_butterflies(tmp_path / "b", "http://127.0.0.1:9", [bad], progress=False)
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "b.partial").exists()


def test_download_bounds_what_it_reads(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"0123456789" * 10)
    announced = Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 3000000000\r\n\r\n" + b"x" * 100)
    unannounced = Raw(b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 1000)  # no Content-Length: read until it closes
    with serve(tmp_path, {"f.bin": [announced, unannounced]}) as url:
        with pytest.raises(DownloadError, match=r"f.bin: the server sent more than the expected 100 bytes"):
            download(f"{url}/f.bin", 5, max_bytes=100)  # the first answer announces 3 GB: refused unread
        assert download(f"{url}/f.bin", 5, max_bytes=100) == b"0123456789" * 10


def test_download_names_a_captive_portal_a_garbage_status_and_a_cut_body(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"data")
    page = b"<!DOCTYPE html>\n<html><title>Welcome to the airport Wi-Fi</title></html>"
    garbage = Raw(b"SPAM SPAM SPAM\r\n\r\n")
    cut = Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\ndat")
    with serve(tmp_path, {"f.bin": [page, page, garbage, garbage, cut, cut]}) as url:
        with pytest.raises(DownloadError, match=r"/f.bin: an HTML page came instead of the file \(a captive portal"):
            download(f"{url}/f.bin", 5)
        with pytest.raises(DownloadError, match=r"/f.bin: BadStatusLine"):
            download(f"{url}/f.bin", 5)
        with pytest.raises(DownloadError, match=r"/f.bin: the connection closed after 3 of 10 bytes"):
            download(f"{url}/f.bin", 5, max_bytes=100)
        assert download(f"{url}/f.bin", 5) == b"data"


@pytest.mark.parametrize("url, timeout, fragment", [("http://127.0.0.1:9/f", 0, "timeout=0.0"),
                                                    ("http://127.0.0.1:9/f", "60", "timeout='60'"),
                                                    ("http://127.0.0.1:9/f", -1, "timeout=-1"),
                                                    (b"http://x", 5, "url=b'http://x'"),
                                                    ("ftp.example.org/f", 5, "url='ftp.example.org/f'")])
def test_download_names_a_bad_timeout_or_address(url, timeout, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        download(url, timeout)

"""ddpm_helpers.config: every setting, its default, and the errors for bad values."""

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from ddpm_helpers import config

VARIABLES = ("DDPM_PROFILE", "DDPM_DATA_DIR", "DDPM_OUTPUT_DIR", "DDPM_DEVICE", "DDPM_PRETRAINED")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for variable in VARIABLES:
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A fake checkout (with notebooks/) that config treats as the repository."""
    root = tmp_path / "checkout"
    (root / "notebooks").mkdir(parents=True)
    monkeypatch.setattr(config, "_CHECKOUT", root)
    return root


def test_profile_defaults_to_full():
    assert config.profile() == "full"


@pytest.mark.parametrize("value", ["quick", "full", " quick "])
def test_profile_reads_environment(monkeypatch, value):
    monkeypatch.setenv("DDPM_PROFILE", value)
    assert config.profile() == value.strip()


@pytest.mark.parametrize(("value", "expected"),
                         [("", False), ("0", False), ("1", True), (" True ", True), ("no", False)])
def test_use_pretrained_reads_environment(monkeypatch, value, expected):
    monkeypatch.setenv("DDPM_PRETRAINED", value)
    assert config.use_pretrained() is expected


def test_unknown_pretrained_switch_is_rejected_by_name(monkeypatch):
    monkeypatch.setenv("DDPM_PRETRAINED", "maybe")
    with pytest.raises(ValueError, match="'maybe'"):
        config.use_pretrained()


@pytest.mark.parametrize("value", ["fast", "Quick", "FULL"])
def test_unknown_profile_is_rejected_by_name(monkeypatch, value):
    monkeypatch.setenv("DDPM_PROFILE", value)
    with pytest.raises(ValueError, match=repr(value)):
        config.profile()
    with pytest.raises(ValueError, match=repr(value)):
        config.pick(quick=1, full=2)


def test_pick_follows_profile(monkeypatch):
    sentinel_quick, sentinel_full = object(), object()
    assert config.pick(quick=sentinel_quick, full=sentinel_full) is sentinel_full
    monkeypatch.setenv("DDPM_PROFILE", "quick")
    assert config.pick(quick=sentinel_quick, full=sentinel_full) is sentinel_quick


def test_pick_takes_keywords_only():
    with pytest.raises(TypeError):
        config.pick(1, 2)


def test_data_dir_defaults_to_checkout(checkout, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config.data_dir() == checkout / "data"
    assert not (checkout / "data").exists()  # data_dir() only names the folder


def test_data_dir_outside_a_checkout_is_under_cwd(tmp_path, monkeypatch):
    installed = tmp_path / "site-packages"  # no notebooks/ beside the package
    installed.mkdir()
    monkeypatch.setattr(config, "_CHECKOUT", installed)
    work = tmp_path / "content"
    work.mkdir()
    monkeypatch.chdir(work)
    assert config.data_dir() == work / "data"


def test_data_dir_from_environment(checkout, tmp_path, monkeypatch):
    monkeypatch.setenv("DDPM_DATA_DIR", str(tmp_path / "datasets"))
    assert config.data_dir() == tmp_path / "datasets"
    monkeypatch.setenv("DDPM_DATA_DIR", "../shared/data")
    assert config.data_dir() == checkout / "../shared/data"
    monkeypatch.setenv("DDPM_DATA_DIR", "~/datasets")
    assert config.data_dir() == Path.home() / "datasets"


def test_outputs_dir_default_is_created(checkout):
    path = config.outputs_dir("01_forward_process")
    assert path == checkout / "outputs" / "01_forward_process"
    assert path.is_dir()


def test_outputs_dir_from_environment(checkout, tmp_path, monkeypatch):
    monkeypatch.setenv("DDPM_OUTPUT_DIR", str(tmp_path / "elsewhere"))
    path = config.outputs_dir("run")
    assert path == tmp_path / "elsewhere" / "run" and path.is_dir()
    monkeypatch.setenv("DDPM_OUTPUT_DIR", "relative/out")
    assert config.outputs_dir("run") == checkout / "relative" / "out" / "run"
    assert config.outputs_dir("run") == config.outputs_dir("run")  # existing folder is fine


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b"])
def test_outputs_dir_rejects_paths_by_name(checkout, name):
    with pytest.raises(ValueError, match=repr(name).replace("\\", "\\\\")):
        config.outputs_dir(name)


@pytest.fixture
def no_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_device_falls_back_to_cpu(no_accelerator):
    assert config.get_device() == torch.device("cpu")


def test_device_prefers_cuda_then_mps(monkeypatch, no_accelerator):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert config.get_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert config.get_device() == torch.device("cuda")


@pytest.mark.parametrize(
    "value, expected", [("cpu", "cpu"), (" cpu ", "cpu"), ("cuda", "cuda"), ("cuda:1", "cuda:1"), ("mps", "mps")]
)
def test_device_override(monkeypatch, value, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setenv("DDPM_DEVICE", value)
    assert config.get_device() == torch.device(expected)


def test_device_override_beats_detection(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("DDPM_DEVICE", "cpu")
    assert config.get_device() == torch.device("cpu")


@pytest.mark.parametrize("value", ["gpu", "tpu", "meta", "xpu", "cuda:x"])
def test_unknown_device_is_rejected_by_name(monkeypatch, value):
    monkeypatch.setenv("DDPM_DEVICE", value)
    with pytest.raises(ValueError, match=repr(value)):
        config.get_device()


@pytest.mark.parametrize("value", ["cuda", "cuda:0", "mps"])
def test_unavailable_device_is_rejected_by_name(monkeypatch, no_accelerator, value):
    monkeypatch.setenv("DDPM_DEVICE", value)
    with pytest.raises(ValueError, match=repr(value)):
        config.get_device()


def test_missing_cuda_index_is_rejected(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("DDPM_DEVICE", "cuda:2")
    with pytest.raises(ValueError, match="'cuda:2'.*2 CUDA"):
        config.get_device()


def _draws():
    return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()


def test_seed_everything_makes_every_generator_repeat():
    assert config.seed_everything(123) == 123
    first = _draws()
    config.seed_everything(123)
    assert _draws() == first
    config.seed_everything(124)
    assert _draws() != first


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, "0", True, None])
def test_seed_everything_rejects_bad_seeds_by_value(seed):
    with pytest.raises(ValueError, match=repr(seed).replace("(", r"\(")):
        config.seed_everything(seed)

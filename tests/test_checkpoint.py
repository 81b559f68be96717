"""Tests of atomic checkpoint saving and safe loading."""

import errno
import os
import pickle
import re
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from ddpm_helpers.checkpoint import (
    CHECKSUM_KEY,
    CheckpointError,
    checksum,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from ddpm_helpers.training import TrainConfig


def test_round_trip(tmp_path):
    state = {"w": torch.arange(6.0).reshape(2, 3), "step": 7, "losses": [0.5, 0.25],
             "nested": {"name": "x", "t": (1, 2)}}
    path = save_checkpoint(tmp_path / "sub" / "ckpt.pt", state)
    loaded = load_checkpoint(path)
    torch.testing.assert_close(loaded["w"], state["w"])
    assert loaded["step"] == 7 and loaded["losses"] == [0.5, 0.25] and loaded["nested"] == {"name": "x", "t": (1, 2)}


def test_failed_save_leaves_old_checkpoint_and_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"step": 1})

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"partial bytes")  # a crash halfway through writing
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path) == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")


class _Payload:
    def __reduce__(self):
        return (print, ("this would run on load",))


def test_loading_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": _Payload()}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(path)


def test_state_must_be_a_dict(tmp_path):
    with pytest.raises(ValueError, match="list"):
        save_checkpoint(tmp_path / "c.pt", [1, 2])


def test_unsafe_objects_raise_a_value_error_without_torch_advice(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": _Payload()}, path)
    with pytest.raises(ValueError, match="evil.pt") as error:
        load_checkpoint(path)
    assert "weights_only=False" not in str(error.value) and "print" in str(error.value)


def _damaged_files(tmp_path):
    good = save_checkpoint(tmp_path / "good.pt", {"w": torch.randn(100), "step": 3})
    data = good.read_bytes()
    files = {"empty": b"", "truncated": data[: len(data) // 2], "text": b"step: 3\nloss: 0.5\n",
             "zeros": bytes(len(data)), "random": torch.randint(0, 256, (2000,), dtype=torch.uint8).numpy().tobytes()}
    for name, content in files.items():
        (tmp_path / f"{name}.pt").write_bytes(content)
    return [tmp_path / f"{name}.pt" for name in files]


def test_damaged_files_give_one_value_error_naming_the_path(tmp_path):
    for path in _damaged_files(tmp_path):
        with pytest.raises(CheckpointError, match=path.name) as error:
            load_checkpoint(path)
        assert isinstance(error.value, ValueError) and "resume=False" in str(error.value), path.name
        assert "weights_only" not in str(error.value)


def test_wrong_structure_names_the_type(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="list.pt.*holds a list"):
        load_checkpoint(tmp_path / "list.pt")


def test_flipped_bytes_in_a_weight_fail_the_checksum(tmp_path):
    weights = torch.linspace(-1, 1, 4096)
    path = save_checkpoint(tmp_path / "ckpt.pt", {"w": weights, "step": 5})
    data = bytearray(path.read_bytes())
    offset = data.find(weights.numpy().tobytes()[:64])  # the tensor's bytes are stored uncompressed
    assert offset > 0
    data[offset + 1000] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="ckpt.pt is corrupt.*checksum"):
        load_checkpoint(path)


def test_checksum_is_stable_and_sees_every_value():
    state = {"w": torch.arange(4.0), "step": 2, "nested": {"x": [1.5, "a"]}}
    assert checksum(state) == checksum({"w": torch.arange(4.0), "step": 2, "nested": {"x": [1.5, "a"]}})
    assert checksum(state) != checksum({**state, "step": 3})
    assert checksum(state) != checksum({**state, "w": torch.arange(4.0).double()})  # dtype counts
    assert checksum(state) != checksum({**state, "nested": {"x": (1.5, "a")}})  # tuple vs list counts


def test_a_checkpoint_without_checksum_loads_with_a_warning(tmp_path):
    torch.save({"w": torch.ones(3), "step": 1}, tmp_path / "old.pt")  # as written by older versions
    with pytest.warns(UserWarning, match="no checksum"):
        state = load_checkpoint(tmp_path / "old.pt")
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))


@pytest.mark.parametrize("value, where", [
    (Path("/tmp/x"), "state['config']['out']"),
    (np.float64(1.0), "state['config']['out']"),
    (np.int64(3), "state['config']['out']"),
    (np.zeros(2), "state['config']['out']"),
    (TrainConfig(steps=1, batch_size=1), "state['config']['out']"),
    ({1, 2}, "state['config']['out']"),
    (lambda: 0, "state['config']['out']"),
])
def test_save_refuses_what_loading_would_refuse(tmp_path, value, where):
    with pytest.raises(ValueError, match=re.escape(where)):
        save_checkpoint(tmp_path / "c.pt", {"config": {"out": value}})
    assert not list(tmp_path.iterdir())  # nothing written


def test_save_refuses_the_reserved_key_and_odd_keys(tmp_path):
    with pytest.raises(ValueError, match=CHECKSUM_KEY):
        save_checkpoint(tmp_path / "c.pt", {CHECKSUM_KEY: 1})
    with pytest.raises(ValueError, match="key"):
        save_checkpoint(tmp_path / "c.pt", {"d": {Path("a"): 1}})


def test_everything_a_training_checkpoint_holds_round_trips(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "dtype": torch.float32,
             "device": torch.device("cpu"), "shape": torch.Size([2, 3]), "none": None, "flag": True}
    loaded = load_checkpoint(save_checkpoint(tmp_path / "c.pt", state))
    assert loaded["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]
    assert loaded["shape"] == torch.Size([2, 3]) and loaded["dtype"] is torch.float32


def test_stale_temporaries_are_removed(tmp_path):
    path = tmp_path / "ckpt.pt"
    for name in (".ckpt.pt.abc123.tmp", ".ckpt.pt.x.tmp", ".other.pt.y.tmp", "ckpt.pt"):
        (tmp_path / name).write_bytes(b"")
    removed = remove_stale_temporaries(path)
    assert sorted(p.name for p in removed) == [".ckpt.pt.abc123.tmp", ".ckpt.pt.x.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.pt.y.tmp", "ckpt.pt"]


def test_save_refuses_a_folder_or_a_non_path(tmp_path):
    with pytest.raises(ValueError, match="it is a folder"):
        save_checkpoint(tmp_path, {"step": 1})
    with pytest.raises(ValueError, match="NoneType"):
        save_checkpoint(None, {"step": 1})


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_map_location_cuda_without_cuda_is_named_not_called_a_damaged_file(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"w": torch.ones(2)})
    with pytest.raises(ValueError, match=r"map_location='cuda' but this machine has no CUDA device") as error:
        load_checkpoint(path, map_location="cuda")
    assert "delete" not in str(error.value) and path.is_file()
    with pytest.raises(ValueError, match=r"map_location='gpu' is not a device"):
        load_checkpoint(path, map_location="gpu")


def test_a_fifo_is_not_opened_as_a_checkpoint(tmp_path):
    os.mkfifo(tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=r"checkpoint.pt is not a regular file \(a FIFO"):
        load_checkpoint(tmp_path / "checkpoint.pt")  # before: "no checkpoint at …" (a FileNotFoundError)
    with pytest.raises(CheckpointError, match=r"checkpoint.pt: it is not a regular file"):
        save_checkpoint(tmp_path / "checkpoint.pt", {"w": torch.ones(2)})


def test_a_full_disk_says_so_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "checkpoint.pt", {"step": 1})
    import ddpm_helpers.checkpoint as checkpoint_module

    def full_disk(obj, f):  # what torch.save raises when the disk fills up mid-write
        f.write(b"PK\x03\x04partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    monkeypatch.setattr(checkpoint_module.torch, "save", full_disk)
    with pytest.raises(OSError, match=r"no space left on device while writing the checkpoint .*checkpoint.pt .*"
                                      r"the previous checkpoint there is intact") as error:
        save_checkpoint(path, {"step": 2})
    assert error.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert load_checkpoint(path) == {"step": 1} and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_checkpoints_and_exported_weights_respect_the_umask(tmp_path, umask, mode):
    from ddpm_helpers.nn.mlp import MLP
    from ddpm_helpers.training import pretrained

    old = os.umask(umask)
    try:
        path = save_checkpoint(tmp_path / "checkpoint.pt", {"w": torch.ones(2)})
        weights = pretrained.export_weights(MLP(hidden=8, num_blocks=1), tmp_path / "w.safetensors")
    finally:
        os.umask(old)
    for written in (path, weights, tmp_path / "SHA256SUMS"):
        assert stat.S_IMODE(written.stat().st_mode) == mode, written.name

"""Tests of atomic checkpoint saving and safe loading."""

import pickle

import pytest
import torch

from ddpm_helpers.checkpoint import load_checkpoint, save_checkpoint


def test_round_trip(tmp_path):
    state = {"w": torch.arange(6.0).reshape(2, 3), "step": 7, "losses": [0.5, 0.25], "nested": {"name": "x", "t": (1, 2)}}
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

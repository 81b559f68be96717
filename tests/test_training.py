"""Tests of the shared training loop: learning, determinism, resume, NaN detection, budgets."""

import os
import signal
import time

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ddpm_helpers.checkpoint import load_checkpoint
from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.nn.mlp import MLP
from ddpm_helpers.datasets import random_batches
from ddpm_helpers.training import TrainConfig, lr_at_step, train

DIFFUSION = Diffusion.from_schedule("linear", 100)
DATA = torch.cat([torch.randn(256, 2, generator=torch.Generator().manual_seed(0)) * 0.1 + 1.0,
                  torch.randn(256, 2, generator=torch.Generator().manual_seed(1)) * 0.1 - 1.0])


def _model(seed=0):
    torch.manual_seed(seed)
    return MLP(hidden=16, num_blocks=1, time_dim=8)


def _config(**kwargs):
    defaults = dict(steps=12, batch_size=32, lr=1e-2, log_every=5)
    defaults.update(kwargs)
    return TrainConfig(**defaults)


def _run(config, out_dir=None, batches=DATA, **kwargs):
    return train(_model(), DIFFUSION, batches, config, device="cpu", out_dir=out_dir, progress=False, **kwargs)


def _assert_same_weights(a, b):
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name


def test_training_lowers_the_loss():
    result = _run(_config(steps=150, batch_size=64, lr=1e-2))
    assert len(result.losses) == 150 and result.steps == 150
    first, last = sum(result.losses[:30]) / 30, sum(result.losses[-30:]) / 30
    assert last < 0.8 * first
    assert not result.model.training


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = _run(_config()), _run(_config()), _run(_config(seed=1))
    _assert_same_weights(a.model, b.model)
    _assert_same_weights(a.ema.model, b.ema.model)
    assert a.losses == b.losses
    assert a.losses != c.losses


def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    full = _run(_config(steps=20))
    first = _run(_config(steps=10), out_dir=tmp_path)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 10
    resumed = _run(_config(steps=20), out_dir=tmp_path)
    assert first.steps == 10 and resumed.steps == 20
    _assert_same_weights(full.model, resumed.model)
    _assert_same_weights(full.ema.model, resumed.ema.model)
    assert resumed.losses == full.losses


def test_interrupt_writes_a_checkpoint_and_resume_matches(tmp_path):
    config = _config(steps=16, lr_schedule="cosine", warmup_steps=3, checkpoint_every=100)
    full = _run(config)
    draw = random_batches(DATA, config.batch_size)

    def interrupted_at_step_6(step, generator):
        if step == 6:
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C / "interrupt kernel" would
        return draw(step, generator)

    with pytest.raises(KeyboardInterrupt, match="after step 7"):
        _run(config, out_dir=tmp_path, batches=interrupted_at_step_6)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 7  # the step in progress was finished
    resumed = _run(config, out_dir=tmp_path)
    _assert_same_weights(full.model, resumed.model)
    assert resumed.losses == full.losses


def test_time_limit_stops_early_and_resume_finishes(tmp_path):
    config = _config(steps=40, time_limit_s=0.2)
    draw = random_batches(DATA, config.batch_size)

    def slow(step, generator):
        time.sleep(0.02)
        return draw(step, generator)

    stopped = _run(config, out_dir=tmp_path, batches=slow)
    assert stopped.stopped_early and 0 < stopped.steps < 40 and len(stopped.losses) == stopped.steps
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == stopped.steps
    finished = _run(_config(steps=40), out_dir=tmp_path)
    assert not finished.stopped_early and finished.steps == 40
    _assert_same_weights(finished.model, _run(_config(steps=40)).model)


def test_nan_loss_names_the_step_and_is_never_checkpointed(tmp_path):
    draw = random_batches(DATA, 32)

    def poisoned(step, generator):
        x = draw(step, generator)
        return x * float("nan") if step == 3 else x

    with pytest.raises(FloatingPointError, match="step 3"):
        _run(_config(checkpoint_every=1), out_dir=tmp_path, batches=poisoned)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 3
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path):
    _run(_config(steps=4), out_dir=tmp_path)
    with pytest.raises(ValueError, match="prediction"):
        _run(_config(steps=8, prediction="v"), out_dir=tmp_path)
    with pytest.raises(ValueError, match="T=100"):
        train(_model(), Diffusion.from_schedule("linear", 50), DATA, _config(steps=8), device="cpu",
              out_dir=tmp_path, progress=False)
    fresh = _run(_config(steps=8, prediction="v"), out_dir=tmp_path, resume=False)
    assert fresh.steps == 8


def test_dataloader_is_cycled_and_labels_are_dropped():
    loader = DataLoader(TensorDataset(DATA[:64], torch.zeros(64)), batch_size=16, shuffle=True)
    result = _run(_config(steps=10), batches=loader)  # 10 steps > 4 batches per pass
    assert result.steps == 10 and len(result.losses) == 10


def test_bad_batches_and_config_raise_value_errors():
    with pytest.raises(ValueError, match="str"):
        _run(_config(), batches=lambda step, g: "not a tensor")
    with pytest.raises(ValueError, match="int"):
        _run(_config(), batches=5)
    with pytest.raises(ValueError, match="lr_schedule"):
        _config(lr_schedule="step")
    with pytest.raises(ValueError, match="steps"):
        _config(steps=0)
    with pytest.raises(ValueError, match="ema_decay"):
        _config(ema_decay=1.0)


def test_lr_warmup_then_cosine():
    config = TrainConfig(steps=110, batch_size=1, lr=1.0, warmup_steps=10, lr_schedule="cosine")
    assert lr_at_step(0, config) == pytest.approx(0.1)
    assert lr_at_step(9, config) == pytest.approx(1.0)
    assert lr_at_step(10, config) == pytest.approx(1.0)
    assert lr_at_step(60, config) == pytest.approx(0.5)
    assert lr_at_step(109, config) < 0.01
    assert lr_at_step(50, TrainConfig(steps=110, batch_size=1, lr=2.0)) == 2.0

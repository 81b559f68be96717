"""Tests of the shared training loop: learning, determinism, resume, NaN detection, budgets."""

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_clock import SCENARIOS, FakeClock
from torch.utils.data import DataLoader, TensorDataset

from ddpm_helpers import training
from ddpm_helpers.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ddpm_helpers.datasets import random_batches
from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.nn.mlp import MLP
from ddpm_helpers.nn.unet import UNet
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


def _run(config, out_dir=None, batches=DATA, progress=False, **kwargs):
    return train(_model(), DIFFUSION, batches, config, device="cpu", out_dir=out_dir, progress=progress, **kwargs)


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


@pytest.fixture
def sigint_raises():
    """Ctrl-C's default handler for the test: a shell's background job (as CI may be) starts with SIGINT ignored,
    and ``train`` rightly leaves an ignored signal ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_interrupt_writes_a_checkpoint_and_resume_matches(tmp_path, sigint_raises):
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



def test_lr_warmup_then_stable_then_linear_cooldown():
    config = TrainConfig(steps=110, batch_size=1, lr=1.0, warmup_steps=10, lr_schedule="wsd", cooldown=0.2)
    assert lr_at_step(9, config) == pytest.approx(1.0)
    assert lr_at_step(89, config) == pytest.approx(1.0)  # p = 0.79: still the full rate
    assert lr_at_step(100, config) == pytest.approx(0.5)  # p = 0.9: half-way through the cool-down
    assert 0 < lr_at_step(109, config) < 0.06
    assert training.branch_step(110, config) == 90  # w + ⌊0.8·(110 − 10)⌋
    with pytest.raises(ValueError, match="wsd"):
        training.branch_step(110, replace(config, lr_schedule="cosine"))
    with pytest.raises(ValueError, match="steps"):
        training.branch_step(10, config)


def test_a_short_wsd_run_branches_off_a_longer_one(tmp_path):
    config = _config(steps=40, warmup_steps=4, lr_schedule="wsd", cooldown=0.25, checkpoint_every=0)
    short = _run(replace(config, steps=20))  # trained on its own
    fork = training.branch_step(20, config)
    trunk = _run(replace(config, stop_at_step=fork), out_dir=tmp_path / "trunk")  # the 40-step run, stopped
    assert trunk.stopped_early and trunk.steps == fork
    (tmp_path / "branch").mkdir()
    (tmp_path / "branch" / "checkpoint.pt").write_bytes((tmp_path / "trunk" / "checkpoint.pt").read_bytes())
    branch = _run(replace(config, steps=20), out_dir=tmp_path / "branch")
    _assert_same_weights(short.model, branch.model)
    _assert_same_weights(short.ema.model, branch.ema.model)
    finished = _run(config, out_dir=tmp_path / "trunk")  # the trunk trains on to its own end
    assert not finished.stopped_early and finished.steps == 40
    _assert_same_weights(finished.model, _run(config).model)
    late = tmp_path / "late"  # a fork 3 steps too late: the trunk's full rate ran where the branch cools down
    _run(replace(config, stop_at_step=fork + 3), out_dir=late)
    late_branch = _run(replace(config, steps=20), out_dir=late)
    assert late_branch.steps == 20
    assert not torch.equal(next(iter(late_branch.model.parameters())), next(iter(short.model.parameters())))


def test_stop_at_step_on_a_resumed_run_trains_nothing_more(tmp_path):
    config = _config(steps=20, checkpoint_every=0)
    _run(replace(config, stop_at_step=8), out_dir=tmp_path)
    again = _run(replace(config, stop_at_step=5), out_dir=tmp_path)
    assert again.stopped_early and again.steps == 8 and load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 8


def test_a_checkpoint_older_than_the_cooldown_field_resumes(tmp_path):
    config = _config(steps=10, checkpoint_every=0)
    _run(replace(config, stop_at_step=5), out_dir=tmp_path)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    del state["config"]["cooldown"]
    save_checkpoint(tmp_path / "checkpoint.pt", state)
    assert _run(config, out_dir=tmp_path).steps == 10
    with pytest.raises(ValueError, match="cooldown"):
        _run(replace(config, steps=12, cooldown=0.5), out_dir=tmp_path)


# ---------------------------------------------------------------- bad configs and inputs, refused up front


@pytest.mark.parametrize("fields, pattern", [
    (dict(steps=True), "steps"), (dict(batch_size=True), "batch_size"), (dict(warmup_steps=False), "warmup_steps"),
    (dict(checkpoint_every=True), "checkpoint_every"), (dict(log_every=True), "log_every"), (dict(seed=True), "seed"),
    (dict(steps=2.0), "steps"), (dict(steps="10"), "steps"), (dict(steps=None), "time_budget_s"),
    (dict(lr=float("inf")), "lr=inf"), (dict(lr=float("nan")), "lr=nan"), (dict(lr="1e-3"), "lr='1e-3'"),
    (dict(lr=0.0), "lr=0.0"), (dict(lr=-1e-3), "lr"), (dict(lr=None), "lr=None"), (dict(lr=True), "lr=True"),
    (dict(prediction="epsilon"), "'epsilon'"), (dict(weighting="snr"), "'snr'"), (dict(prediction=None), "None"),
    (dict(seed=-1), "seed=-1"), (dict(seed=1.5), "seed=1.5"), (dict(seed=2**40), "seed"),
    (dict(grad_clip=float("inf")), "grad_clip"), (dict(grad_clip=0), "grad_clip"), (dict(ema_decay=-0.1), "ema_decay"),
    (dict(min_snr_gamma=0), "min_snr_gamma"), (dict(p_uncond=1.0), "p_uncond"), (dict(p_uncond="0.1"), "p_uncond"),
    (dict(time_limit_s=0), "time_limit_s"), (dict(time_budget_s=float("inf")), "time_budget_s"),
    (dict(time_budget_s=-5), "time_budget_s"), (dict(calibration_steps=1), "calibration_steps"),
    (dict(checkpoint_every=-1), "checkpoint_every"), (dict(checkpoint_interval_s=0), "checkpoint_interval_s"),
    (dict(cooldown=0.0), "cooldown=0.0"), (dict(cooldown=1.5), "cooldown=1.5"), (dict(stop_at_step=-1), "stop_at_step"),
    (dict(stop_at_step=2.5), "stop_at_step"),
])
def test_bad_config_fields_are_refused_in_the_constructor(fields, pattern):
    with pytest.raises(ValueError, match=re.escape(pattern)):
        _config(**fields)


def test_numpy_numbers_are_accepted_and_stored_as_python_numbers(tmp_path):
    config = _config(steps=np.int64(3), lr=np.float64(1e-2), seed=np.int32(0))
    assert type(config.steps) is int and type(config.lr) is float and type(config.seed) is int
    _run(config, out_dir=tmp_path)  # the config goes into the checkpoint: it must be savable
    assert load_checkpoint(tmp_path / "checkpoint.pt")["config"]["lr"] == 1e-2


def _unet(num_classes):
    torch.manual_seed(0)
    return UNet(1, base_channels=8, channel_mults=(1,), image_size=8, num_classes=num_classes)


def test_a_class_conditional_model_needs_p_uncond():
    images, labels = torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"class-conditional \(num_classes=10\).*p_uncond"):
        train(_unet(10), DIFFUSION, (images, labels), _config(steps=1, batch_size=2), device="cpu", progress=False)
    with pytest.raises(ValueError, match="unconditional"):
        train(_unet(None), DIFFUSION, (images, labels), _config(steps=1, batch_size=2, p_uncond=0.1), device="cpu",
              progress=False)
    result = train(_unet(10), DIFFUSION, (images, labels), _config(steps=2, batch_size=2, p_uncond=0.1),
                   device="cpu", progress=False)
    assert result.steps == 2
    with pytest.raises(ValueError, match=r"labels of step 0 must be in \[0, 10\).*got 10"):  # before the network
        train(_unet(10), DIFFUSION, (images, labels + 10), _config(steps=2, batch_size=2, p_uncond=0.1),
              device="cpu", progress=False)


def _never_called(step, generator):
    raise AssertionError("training started although the input was bad")


def test_bad_train_arguments_are_refused_before_the_first_step(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(ValueError, match="a_file.*is a file"):
        _run(_config(), out_dir=tmp_path / "a_file", batches=_never_called)
    with pytest.raises(ValueError, match="cannot create"):
        _run(_config(), out_dir=tmp_path / "a_file" / "sub", batches=_never_called)
    (tmp_path / "run" / "checkpoint.pt").mkdir(parents=True)
    with pytest.raises(ValueError, match="is a folder"):
        _run(_config(), out_dir=tmp_path / "run", batches=_never_called)
    with pytest.raises(ValueError, match="out_dir"):
        _run(_config(), out_dir=3, batches=_never_called)
    with pytest.raises(ValueError, match="'gpu0'"):
        train(_model(), DIFFUSION, _never_called, _config(), device="gpu0")
    with pytest.raises(ValueError, match="'cuda:99'.*CUDA device"):
        train(_model(), DIFFUSION, _never_called, _config(), device="cuda:99")
    with pytest.raises(ValueError, match="resume"):
        _run(_config(), out_dir=tmp_path, batches=_never_called, resume="yes")
    with pytest.raises(ValueError, match="TrainConfig"):
        train(_model(), DIFFUSION, _never_called, {"steps": 3}, device="cpu")
    with pytest.raises(ValueError, match="Diffusion"):
        train(_model(), "linear", _never_called, _config(), device="cpu")


# ---------------------------------------------------------------- damaged or foreign checkpoints


def test_resuming_with_fewer_steps_than_the_checkpoint_holds_is_refused(tmp_path):
    _run(_config(steps=10), out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"holds 10 trained steps.*steps=6.*steps >= 10.*resume=False"):
        _run(_config(steps=6), out_dir=tmp_path)
    assert _run(_config(steps=10), out_dir=tmp_path).steps == 10  # as many: returned as it is
    assert _run(_config(steps=6), out_dir=tmp_path, resume=False).steps == 6


@pytest.mark.parametrize("damage", ["empty", "truncated", "text", "flipped", "list", "no config", "other model"])
def test_a_damaged_checkpoint_names_the_file_and_offers_resume_false(tmp_path, damage):
    _run(_config(steps=4), out_dir=tmp_path)
    path = tmp_path / "checkpoint.pt"
    data = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 3])
    elif damage == "text":
        path.write_text("this is not a checkpoint\n")
    elif damage == "flipped":
        weight = max(load_checkpoint(path)["model"].values(), key=torch.numel).numpy().tobytes()
        offset = data.find(weight)
        assert offset > 0
        path.write_bytes(data[:offset] + bytes([data[offset] ^ 0x40]) + data[offset + 1:])
    elif damage == "list":
        torch.save([1, 2], path)
    elif damage == "no config":
        save_checkpoint(path, {"model": {}, "step": 4})
    else:  # a checkpoint of a network of another size
        train(MLP(hidden=8, num_blocks=1, time_dim=8), DIFFUSION, DATA, _config(steps=4), device="cpu",
              out_dir=tmp_path, progress=False, resume=False)
    with pytest.raises(ValueError, match="checkpoint.pt") as error:
        _run(_config(steps=8), out_dir=tmp_path, batches=_never_called)
    assert "resume=False" in str(error.value) and "weights_only" not in str(error.value)
    assert _run(_config(steps=8), out_dir=tmp_path, resume=False).steps == 8


# ---------------------------------------------------------------- no lost work


def _slow(seconds):
    draw = random_batches(DATA, 32)

    def batches(step, generator):
        time.sleep(seconds)
        return draw(step, generator)

    return batches


def test_checkpoints_are_written_by_wall_clock_time_by_default(tmp_path):
    assert TrainConfig(steps=1, batch_size=1).checkpoint_every is None  # the default: by time
    seen = []
    slow = _slow(0.01)

    def watching(step, generator):
        if step == 20:
            seen.append(load_checkpoint(tmp_path / "checkpoint.pt")["step"])  # as a SIGKILL now would leave it
        return slow(step, generator)

    _run(_config(steps=24, checkpoint_interval_s=0.03), out_dir=tmp_path, batches=watching)
    assert len(seen) == 1 and 1 <= seen[0] <= 20


def test_the_final_checkpoint_is_written_once(tmp_path, monkeypatch):
    writes = []
    monkeypatch.setattr(training.loop, "save_checkpoint", lambda path, state: writes.append(state["step"]))
    _run(_config(steps=10, checkpoint_every=5), out_dir=tmp_path / "a")
    assert writes == [5, 10]
    writes.clear()
    _run(_config(steps=10, checkpoint_every=0), out_dir=tmp_path / "b")
    assert writes == [10]


def test_stale_temporary_files_are_removed_when_a_run_starts(tmp_path):
    (tmp_path / ".checkpoint.pt.k3j2.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / "notes.txt").write_text("keep me")
    _run(_config(steps=2), out_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "notes.txt"]


def test_sigterm_writes_a_checkpoint_stops_and_passes_the_signal_on(tmp_path):
    config = _config(steps=16, lr_schedule="cosine", warmup_steps=3, checkpoint_every=0)
    full = _run(config)
    draw = random_batches(DATA, config.batch_size)
    received = []

    def terminated_at_step_6(step, generator):
        if step == 6:
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill` or a job scheduler would
        return draw(step, generator)

    def previous_handler(signum, frame):
        received.append(signum)

    old = signal.signal(signal.SIGTERM, previous_handler)
    try:
        stopped = _run(config, out_dir=tmp_path, batches=terminated_at_step_6)
        assert signal.getsignal(signal.SIGTERM) is previous_handler  # restored
    finally:
        signal.signal(signal.SIGTERM, old)
    assert received == [signal.SIGTERM]  # passed on once, after the checkpoint
    assert stopped.stopped_early and stopped.steps == 7
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 7
    resumed = _run(config, out_dir=tmp_path)
    _assert_same_weights(full.model, resumed.model)
    assert resumed.losses == full.losses


def test_sigint_handler_is_restored_after_training(tmp_path):
    before = signal.getsignal(signal.SIGINT)
    _run(_config(steps=2), out_dir=tmp_path)
    assert signal.getsignal(signal.SIGINT) is before


# ---------------------------------------------------------------- calibrated step budget


def _budget(**kwargs):
    defaults = dict(steps=None, time_budget_s=0.5, calibration_steps=8, warmup_steps=8, lr_schedule="cosine")
    defaults.update(kwargs)
    return _config(**defaults)


def _clocked(config, clock, **kwargs):
    return _run(config, batches=clock.batches, clock=clock, **kwargs)


def test_a_budget_plans_stores_its_plans_and_anneals_the_lr(tmp_path):
    config = _budget(time_budget_s=0.8)
    result = _clocked(config, FakeClock(lambda step, elapsed: 0.01, DATA), out_dir=tmp_path)
    plan = result.planned_steps
    assert plan == result.steps == len(result.losses) == 80 and not result.stopped_early  # 10 ms a step
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["planned_steps"] == plan and state["step"] == plan and state["plan"]["plans"][-1][2] == plan
    last_lr = state["optimizer"]["param_groups"][0]["lr"]
    assert last_lr < 0.02 * config.lr  # the cosine ran to its end


def _lrs(config, result, tmp_path):
    """The learning rate of every step of a finished budget run, from the plans in its checkpoint."""
    from ddpm_helpers.training.plan import StepPlan
    from ddpm_helpers.training.train_config import scheduled_lr

    plan = StepPlan.from_checkpoint(config, load_checkpoint(tmp_path / "checkpoint.pt"), result.steps)
    return [scheduled_lr(step, config, plan.progress(step)) for step in range(result.steps)], plan


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_re_planning_keeps_the_budget_when_the_machine_changes_speed(scenario, tmp_path, capsys):
    config = _budget(time_budget_s=100.0, calibration_steps=40, warmup_steps=10, log_every=100)
    result = _clocked(config, FakeClock(SCENARIOS[scenario], DATA), out_dir=tmp_path, progress=True)
    lrs, plan = _lrs(config, result, tmp_path)
    first, last = plan.plans[0].total, plan.plans[-1].total
    print(f"{scenario}: first plan {first}, {len(plan.plans) - 1} re-plans, last plan {last} steps, "
          f"{result.seconds:.1f} s of 100 s, last LR {lrs[-1] / config.lr:.1e} x lr")
    assert 95.0 <= result.seconds <= 105.0 and result.steps == last == result.planned_steps
    assert lrs[-1] == min(lrs) and lrs[-1] < 1e-2 * config.lr  # the cosine reached its floor at the last step
    for before, after in zip(plan.plans, plan.plans[1:]):  # each plan starts where the one before it had got to
        assert after.progress == pytest.approx(before.progress_at(after.step), abs=1e-12)
    printed = capsys.readouterr()
    assert "plan at step 40" in printed.err + printed.out and "re-plan at step" in printed.err + printed.out


def test_a_resumed_budget_run_equals_the_uninterrupted_run_under_the_same_clock(tmp_path):
    config = _budget(time_budget_s=100.0, calibration_steps=40, warmup_steps=10, log_every=100)
    speed = SCENARIOS["1.5x slower from 70 % of the budget"]
    whole = _clocked(config, FakeClock(speed, DATA), out_dir=tmp_path / "whole")
    clock = FakeClock(speed, DATA)
    for limit in (10.0, 50.0):  # two interruptions: inside the calibration window and between re-plans
        stopped = _clocked(replace(config, time_limit_s=limit), clock, out_dir=tmp_path / "resumed")
        assert stopped.stopped_early
    resumed = _clocked(config, clock, out_dir=tmp_path / "resumed")
    _assert_same_weights(whole.model, resumed.model)
    _assert_same_weights(whole.ema.model, resumed.ema.model)
    assert whole.losses == resumed.losses and whole.steps == resumed.steps
    assert load_checkpoint(tmp_path / "whole/checkpoint.pt")["plan"] == \
        load_checkpoint(tmp_path / "resumed/checkpoint.pt")["plan"]


def test_a_checkpoint_of_version_0_2_resumes_with_its_one_plan(tmp_path):
    config = _budget(time_budget_s=100.0)
    clock = FakeClock(lambda step, elapsed: 0.01, DATA)
    stopped = _clocked(replace(config, time_limit_s=0.05), clock, out_dir=tmp_path)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    del state["plan"]  # what 0.2 wrote: the planned steps alone
    state["planned_steps"] = 30
    save_checkpoint(tmp_path / "checkpoint.pt", state)
    resumed = _run(config, out_dir=tmp_path)
    assert stopped.steps < 30 and resumed.steps == resumed.planned_steps == 30
    fixed = _run(_config(steps=30, warmup_steps=8, lr_schedule="cosine"))
    _assert_same_weights(fixed.model, resumed.model)


def test_budget_edge_cases():
    spent = _clocked(_budget(time_budget_s=0.05), FakeClock(lambda step, elapsed: 0.01, DATA))  # calibration: 80 ms
    assert spent.planned_steps == spent.steps == 8
    capped = _run(_budget(steps=12, time_budget_s=100.0))
    assert capped.planned_steps == capped.steps == 12
    short = _run(_budget(steps=5, time_budget_s=100.0))  # shorter than the calibration: nothing to measure
    assert short.planned_steps == short.steps == 5
    assert _run(_config(steps=3)).planned_steps is None


def test_lr_before_the_plan_is_fixed_is_held_after_warmup():
    config = _budget(warmup_steps=2)
    assert lr_at_step(0, config) == pytest.approx(config.lr / 2)
    assert lr_at_step(5, config) == config.lr
    assert lr_at_step(5, config, 10) < config.lr


_SIGTERM_SCRIPT = """
import os, signal, sys, torch
from ddpm_helpers.datasets import random_batches
from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.nn.mlp import MLP
from ddpm_helpers.training import TrainConfig, train
draw = random_batches(torch.randn(64, 2), 16)
def batches(step, generator):
    if step == 5:
        os.kill(os.getpid(), signal.SIGTERM)
    return draw(step, generator)
train(MLP(hidden=8, num_blocks=1, time_dim=8), Diffusion.from_schedule("linear", 100), batches,
      TrainConfig(steps=50, batch_size=16), device="cpu", out_dir=sys.argv[1], progress=False)
print("not reached")
"""


def test_sigterm_with_the_default_handler_terminates_after_the_checkpoint(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", _SIGTERM_SCRIPT, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == -signal.SIGTERM, done.stderr  # terminated by the signal, as without train()
    assert "not reached" not in done.stdout
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 6


@pytest.mark.parametrize("conditional", [False, True])
def test_a_training_step_reads_no_value_on_the_host(conditional):
    """train_step on the meta device, where every tensor has a shape but no values: reading one (a host sync on a
    GPU: .item(), `if tensor.any()`, torch.unique) raises, so passing shows the step never waits for the device."""
    from ddpm_helpers.guidance import NULL_LABEL
    from ddpm_helpers.training.ema import EMA
    from ddpm_helpers.training.loop import train_step
    from ddpm_helpers.training.precision import MixedPrecision

    meta = torch.device("meta")
    config = TrainConfig(steps=1, batch_size=4, prediction="v", weighting="min_snr",
                         p_uncond=0.1 if conditional else None)
    model = UNet(1, base_channels=8, channel_mults=(1, 2), image_size=8, num_classes=10 if conditional else None)
    model.to(meta)
    ema, precision = EMA(model, decay=0.9), MixedPrecision("off", meta)
    optimizer = precision.optimizer(model.parameters(), lr=1e-3)
    x0 = torch.empty(4, 1, 8, 8, device=meta)
    t, eps = torch.empty(4, dtype=torch.long, device=meta), torch.empty_like(x0)
    labels = torch.full((4,), NULL_LABEL, device=meta) if conditional else None
    loss = train_step(model, model, ema, optimizer, precision, DIFFUSION, x0, t, eps, labels, 1e-3, config)
    assert loss.device == meta and loss.shape == ()
    with pytest.raises((RuntimeError, NotImplementedError)):
        loss.item()  # the meta device really refuses to read a value


def test_a_checkpoint_with_fewer_losses_than_steps_is_not_resumed(tmp_path):
    _run(_config(steps=4), out_dir=tmp_path)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    save_checkpoint(tmp_path / "checkpoint.pt", {**state, "losses": state["losses"][:2]})  # crafted: 2 losses, step 4
    with pytest.raises(CheckpointError, match=r"holds step=4 but 2 losses"):
        _run(_config(steps=8), out_dir=tmp_path)


def test_a_fifo_named_checkpoint_pt_is_named_as_such(tmp_path):
    os.mkfifo(tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"checkpoint.pt is not a regular file \(a FIFO"):
        _run(_config(steps=2), out_dir=tmp_path)

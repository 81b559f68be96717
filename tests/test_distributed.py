"""Data-parallel training: 2 CPU processes under torchrun (gloo) against a single-process reference.

Run as a script by torchrun (see ``_torchrun``), this file is the worker: it trains a small MLP
on 2-D points with ``ddpm_helpers.training.train`` and lets rank 0 write the checkpoint.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from fake_clock import FakeClock

from ddpm_helpers.checkpoint import load_checkpoint
from ddpm_helpers.datasets.toy2d import sample_toy
from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.nn.mlp import MLP
from ddpm_helpers.training import TrainConfig, distributed, lr_at_step, train
from ddpm_helpers.training.ema import EMA

STEPS, BATCH, WORLD = 8, 16, 2
REPO = Path(__file__).resolve().parent.parent


def _setup():
    """The data, diffusion, model and config every rank and the reference share."""
    data = sample_toy("two_moons", 256, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = MLP(hidden=32, num_blocks=2, time_dim=16, fourier_octaves=2)
    config = TrainConfig(steps=STEPS, batch_size=BATCH, lr=3e-3, warmup_steps=2, lr_schedule="cosine", grad_clip=0.5,
                         ema_decay=0.9, log_every=3, checkpoint_every=0, seed=7)
    return data, Diffusion.from_schedule("linear", T=100), model, config


def _worker(out_dir: str, mode: str) -> None:
    """One rank. ``mode``: "run" (train to the end, or resume), "interrupt" (rank 0 gets SIGINT
    while drawing the batch of step 2), "time_limit" (a time limit on rank 0 only), "budget" (a time budget
    under injected clocks: rank 0's runs twice as fast after 1.5 s, so it re-plans; rank 1's alone would plan
    no step beyond the calibration)."""
    torch.set_num_threads(1)
    context, device = distributed.init("cpu")
    data, diffusion, model, config = _setup()
    if not context.is_main:  # another initialization: training starts every rank from rank 0's weights
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(1.0)
    if mode == "time_limit" and context.is_main:
        config.time_limit_s = 1e-9  # rank 0 runs out of time after its next step; rank 1 has no limit
    clock = time.perf_counter
    if mode == "budget":
        config = _budget_config(config)
        clock = FakeClock(_rank_0_speed if context.is_main else lambda step, elapsed: 10.0, data, config.batch_size)

    def batches(step, generator):
        if mode == "interrupt" and context.is_main and step == 2:
            signal.raise_signal(signal.SIGINT)  # like Ctrl-C: held until step 2 has finished
        return data[torch.randint(len(data), (config.batch_size,), generator=generator)]

    try:
        result = train(model, diffusion, clock.batches if mode == "budget" else batches, config, device=device,
                       out_dir=out_dir, progress=False, clock=clock)
        print(f"rank {context.rank}: stopped at step {result.steps}, early {result.stopped_early}")
    except KeyboardInterrupt as interrupt:
        print(f"rank {context.rank}: {interrupt}")
    distributed.shutdown()


def _budget_config(config: TrainConfig) -> TrainConfig:
    return replace(config, steps=None, calibration_steps=4, time_budget_s=3.0)


def _rank_0_speed(step: int, elapsed: float) -> float:
    """Seconds per step of rank 0 in the budget test: 0.1 s, then 0.05 s from 1.5 s on."""
    return 0.05 if elapsed >= 1.5 else 0.1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun(out_dir: Path, mode: str) -> str:
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={WORLD}", "--nnodes=1",
               "--master_addr=127.0.0.1", f"--master_port={_free_port()}", __file__, str(out_dir), mode]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _reference(steps: int) -> tuple[dict, dict]:
    """One process trained on the two ranks' batches, t and ε concatenated (rank r's seeds: rank_seed)."""
    data, diffusion, model, config = _setup()
    ema = EMA(model, decay=config.ema_decay)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, foreach=True)
    generators = []
    for rank in range(WORLD):
        seed = distributed.rank_seed(config.seed, rank)
        generators.append((torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)))
    for step in range(steps):
        x0, t, eps = [], [], []
        for data_gen, noise_gen in generators:  # the draws of each rank, in the order train() makes them
            x0.append(data[torch.randint(len(data), (config.batch_size,), generator=data_gen)])
            t.append(torch.randint(0, diffusion.T, (config.batch_size,), generator=noise_gen))
            eps.append(torch.randn(x0[-1].shape, generator=noise_gen))
        x0, t, eps = torch.cat(x0), torch.cat(t), torch.cat(eps)
        for group in optimizer.param_groups:
            group["lr"] = lr_at_step(step, config)
        loss = (model(diffusion.q_sample(x0, t, eps), t) - eps).pow(2).mean()  # L_simple on the whole batch
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        ema.update(model)
    return model.state_dict(), ema.model.state_dict()


def _assert_close(actual: dict, expected: dict) -> None:
    for name, value in expected.items():
        error = (actual[name] - value).norm() / value.norm().clamp_min(1e-12)
        assert error <= 1e-5, f"{name}: relative difference {error:.2e}"


def _state(out_dir: Path) -> dict:
    assert sorted(p.name for p in out_dir.iterdir()) == ["checkpoint.pt"], "rank 0 alone writes, one file"
    return load_checkpoint(out_dir / "checkpoint.pt")


def test_distributed_matches_concatenated_single_process_and_resumes(tmp_path):
    full = tmp_path / "full"
    _torchrun(full, "run")
    state = _state(full)
    assert state["step"] == STEPS and state["world_size"] == WORLD and len(state["rng_ranks"]) == WORLD
    model, ema = _reference(STEPS)
    _assert_close(state["model"], model)
    _assert_close(state["ema"]["model"], ema)

    # Stopped twice by rank 0 (a SIGINT, then its own time limit), resumed each time: the same weights.
    stopped = tmp_path / "stopped"
    assert "training interrupted after step 3" in _torchrun(stopped, "interrupt")
    assert _state(stopped)["step"] == 3
    _torchrun(stopped, "time_limit")
    assert _state(stopped)["step"] == 4  # rank 1 stopped too, at rank 0's step: the run did not hang
    _torchrun(stopped, "run")
    resumed = _state(stopped)
    assert resumed["step"] == STEPS
    for name, value in state["model"].items():
        assert torch.equal(resumed["model"][name], value), f"{name} differs after interrupt and resume"
    assert resumed["losses"] == state["losses"]


def test_distributed_budget_is_planned_and_re_planned_by_rank_0(tmp_path):
    out = _torchrun(tmp_path, "budget")  # with rank 1's own plans the ranks would stop apart: a hang
    data, diffusion, model, config = _setup()
    alone = FakeClock(_rank_0_speed, data, BATCH)  # rank 0's clock in a single process: the plans to expect
    expected = train(model, diffusion, alone.batches, _budget_config(config), device="cpu", progress=False,
                     clock=alone, out_dir=tmp_path.parent / f"{tmp_path.name}-alone")
    assert f"rank 1: stopped at step {expected.steps}" in out and f"rank 0: stopped at step {expected.steps}" in out
    state = _state(tmp_path)
    assert state["plan"] == load_checkpoint(tmp_path.parent / f"{tmp_path.name}-alone" / "checkpoint.pt")["plan"]
    assert len(state["plan"]["plans"]) > 1 and state["planned_steps"] == expected.steps  # re-planned


def test_distributed_rank_seeds_keep_rank_0_and_differ():
    seeds = [distributed.rank_seed(2**32 - 1, rank) for rank in range(8)]
    assert seeds[0] == 2**32 - 1
    assert len({seed % 2**32 for seed in seeds}) == 8  # distinct even where a generator keeps 32 bits


def test_distributed_single_process_context_is_a_no_op(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    context = distributed.env_context()
    assert (context.rank, context.world_size, context.is_main, context.enabled) == (0, 1, True, False)
    assert distributed.broadcast_from_main([1.5, True], context) == [1.5, True]
    assert distributed.gather_to_main("x", context) == ["x"]
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="RANK=2"):
        distributed.env_context()


def test_a_leftover_world_size_without_torchrun_is_named_within_seconds(tmp_path):
    """A single process with WORLD_SIZE=2 left in its environment (no torchrun) would wait for rank 1 forever."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("TORCHELASTIC")}
    env.update(WORLD_SIZE="2", RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT="29517", PYTHONPATH=str(REPO),
               OMP_NUM_THREADS="1")
    code = "from ddpm_helpers.training import distributed; distributed.init('cpu', timeout_s=600)"
    start = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("distributed.init waited for a rank that never comes")
    assert time.monotonic() - start < 60 and done.returncode != 0
    assert "ValueError: WORLD_SIZE='2', RANK='0'" in done.stderr and "not started by torchrun" in done.stderr


if __name__ == "__main__":
    _worker(*sys.argv[1:])

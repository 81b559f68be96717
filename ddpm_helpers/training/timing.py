"""Fair timing of training steps, for the cost tables of the notebooks and benchmarks, and the name of the CPU
that a time was measured on."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from ddpm_helpers.checks import check_positive_int
from ddpm_helpers.losses import diffusion_loss


def fastest_training_steps(models: list[nn.Module], diffusion, x0: Tensor, repeats: int = 3) -> list[float]:
    """For each model, the fastest of ``repeats`` timed training steps, in seconds.

    A step is one Monte-Carlo loss (Algorithm 1, L_simple), its backward pass and an Adam
    update, on the batch ``x0`` (the models must sit on its device). After one warm-up step
    each, the models take turns, so a burst of load on a shared machine hits all of them
    alike; the fastest step is the least disturbed measurement.
    """
    if len(models) == 0:
        raise ValueError("models must hold at least one model to time")
    check_positive_int(repeats, "repeats")
    optimizers = [torch.optim.Adam(model.parameters(), lr=1e-4) for model in models]
    fastest = [float("inf")] * len(models)
    for repeat in range(repeats + 1):
        for index, (model, optimizer) in enumerate(zip(models, optimizers)):
            start = time.perf_counter()
            loss = diffusion_loss(model, diffusion, x0, generator=torch.Generator().manual_seed(1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if x0.is_cuda:
                torch.cuda.synchronize(x0.device)  # wait for the GPU before reading the clock
            if repeat > 0:  # the first round is the warm-up
                fastest[index] = min(fastest[index], time.perf_counter() - start)
    return fastest


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere): step times are only comparable
    on the same kind of CPU."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"

"""How many steps a run trains: a fixed count, or a calibrated budget fitted to the measured step time."""

from __future__ import annotations

import math
import time

import torch

from ddpm_helpers.training.train_config import TrainConfig


class _StepPlan:
    """How many steps the run trains: ``config.steps``, or for a calibrated budget a count fixed once from the
    step time measured over the first ``calibration_steps`` steps of a call (after a quarter of them as warm-up).

    ``total`` is the length of the LR schedule (None until a budget's count is fixed); ``end`` the step at
    which this call stops (``total`` capped by ``config.steps``; infinite while unknown and uncapped).
    """

    def __init__(self, config: TrainConfig, planned: int | None, first_step: int, seconds_before: float, start: float):
        self.config, self._seconds_before, self._start = config, seconds_before, start
        self.total = config.steps if config.time_budget_s is None else planned
        self._timed_from = first_step + max(1, config.calibration_steps // 4)  # steps before this one warm up
        self._timed_to = first_step + config.calibration_steps
        self._clock = 0.0
        if self.total is None and config.steps is not None and config.steps <= self._timed_to:
            self.total = config.steps  # the cap ends the run before the calibration would: nothing to measure

    @property
    def planned(self) -> int | None:
        """The step count a calibrated budget fixed (stored in checkpoints); None without a budget."""
        return self.total if self.config.time_budget_s is not None else None

    @property
    def end(self) -> float:
        cap = math.inf if self.config.steps is None else self.config.steps
        return cap if self.total is None else min(self.total, cap)

    def after_step(self, step: int, device: torch.device) -> bool:
        """Time the calibration window (two device syncs in a whole run); True when the count was just fixed."""
        if self.total is not None or step not in (self._timed_from, self._timed_to):
            return False
        _synchronize(device)
        now = time.perf_counter()
        if step == self._timed_from:
            self._clock = now
            return False
        step_seconds = (now - self._clock) / (self._timed_to - self._timed_from)
        seconds_left = self.config.time_budget_s - (self._seconds_before + now - self._start)
        affordable = self._timed_to + max(0, math.floor(seconds_left / step_seconds))  # steps that fit the budget
        self.total = int(min(affordable, self.end))
        return True


def _synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (so that the host clock measures it)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()

"""How many steps a run trains: a fixed count, or a time budget planned from the measured step time and re-planned
as the run goes.

With ``TrainConfig.time_budget_s`` the first plan comes from the calibration window of a call (its steps
``calibration_steps // 4`` to ``calibration_steps``, the first quarter untimed: allocations and caches warm up).
Each plan is then checked halfway through what it has left, in steps or in seconds, whichever comes first: the
step time measured since the last plan gives a new plan, so a machine that was busy while the run started, or
that becomes busy later, still ends the run at its budget. Re-planning stops when fewer steps are left than a
calibration window times; a plan whose budget is already spent ends the run at once (the budget wins over the
schedule).

The learning-rate schedule follows the *progress* through the plans, from 0 at the first plan to 1 at the last
step: each plan continues from the progress it starts at, linearly in the step to 1 at its total, so the
learning rate is continuous across re-plans and a cosine decay reaches its floor at the last step whatever
the re-plans did. Every plan is stored in the checkpoint; a resumed run continues them, and its measuring
window, exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ddpm_helpers.training.train_config import TrainConfig


@dataclass(frozen=True)
class Plan:
    """From ``step`` on, where the schedule's progress was ``progress``, train to ``total`` steps."""

    step: int
    progress: float
    total: int

    def progress_at(self, step: int) -> float:
        """p = p₀ + (1 − p₀)(step − s₀)/(total − s₀): linear from this plan's start to 1 at its total."""
        return self.progress + (1.0 - self.progress) * (step - self.step) / max(1, self.total - self.step)


@dataclass(frozen=True)
class Window:
    """The measuring window: it started at ``step``, after ``seconds`` of training in total."""

    step: int
    seconds: float


class StepPlan:
    """The plans of a run and when to make the next one.

    ``plans`` is empty until a budget's first plan is made (the learning rate is then held at ``lr`` after the
    warmup); without a budget it holds one plan of ``config.steps`` from the warmup on. ``window`` is where the
    current step-time measurement started (None before the calibration window opens); ``next_check`` the step
    and ``next_seconds`` the training seconds at which the next plan is made, whichever comes first (None: no
    more re-planning).
    """

    def __init__(self, config: TrainConfig, plans: list[Plan], window: Window | None, next_check: int | None,
                 first_step: int, next_seconds: float | None = None):
        self.config, self.plans, self.window, self.next_check = config, list(plans), window, next_check
        self.next_seconds = next_seconds
        self.min_window = config.calibration_steps - max(1, config.calibration_steps // 4)  # steps a window times
        self.step_seconds = math.nan  # the step time the last plan was made from
        if config.time_budget_s is None:
            self.plans = [Plan(config.warmup_steps, 0.0, config.steps)]
        elif not self.plans and window is None and next_check is None:  # a fresh calibration in this call
            self.next_check = first_step + max(1, config.calibration_steps // 4)  # the window opens here
            if config.steps is not None and config.steps <= first_step + config.calibration_steps:
                self.plans = [Plan(config.warmup_steps, 0.0, config.steps)]  # the cap ends the run first
                self.next_check = None

    @classmethod
    def from_checkpoint(cls, config: TrainConfig, state: dict, first_step: int) -> StepPlan:
        """The plans stored in a checkpoint (one of version 0.2 holds only ``planned_steps``: its one plan)."""
        if config.time_budget_s is None:
            return cls(config, [], None, None, first_step)
        stored = state.get("plan")
        if stored is None:
            planned = state.get("planned_steps")
            plans = [] if planned is None else [Plan(config.warmup_steps, 0.0, int(planned))]
            return cls(config, plans, None, None, first_step)  # no plan yet: a fresh calibration
        window = None if stored["window"] is None else Window(int(stored["window"][0]), float(stored["window"][1]))
        plans = [Plan(int(step), float(progress), int(total)) for step, progress, total in stored["plans"]]
        return cls(config, plans, window, stored["next_check"], first_step, stored.get("next_seconds"))

    def state_dict(self) -> dict:
        """Lists and numbers only (checkpoints load with ``weights_only=True``)."""
        return {"plans": [[p.step, p.progress, p.total] for p in self.plans],
                "window": None if self.window is None else [self.window.step, self.window.seconds],
                "next_check": self.next_check, "next_seconds": self.next_seconds}

    def load_state_dict(self, state: dict) -> None:
        """Take over the plans of :meth:`state_dict` (rank 0's, under torchrun)."""
        restored = StepPlan.from_checkpoint(self.config, {"plan": state}, 0)
        self.plans, self.window, self.next_check = restored.plans, restored.window, restored.next_check
        self.next_seconds = restored.next_seconds

    @property
    def total(self) -> int | None:
        """The planned number of steps (None until a budget's first plan)."""
        return self.plans[-1].total if self.plans else None

    @property
    def planned(self) -> int | None:
        """The step count a budget planned (stored in checkpoints and reported); None without a budget."""
        return self.total if self.config.time_budget_s is not None else None

    @property
    def end(self) -> float:
        """The step at which the run stops: the plan, capped by ``config.steps`` (infinite while both are unknown)."""
        cap = math.inf if self.config.steps is None else self.config.steps
        return cap if self.total is None else min(self.total, cap)

    def progress(self, step: int) -> float | None:
        """Progress through the plans at ``step`` (0 → 1); None before the first plan."""
        plan = next((p for p in reversed(self.plans) if p.step <= step), self.plans[0] if self.plans else None)
        return None if plan is None else max(0.0, plan.progress_at(step))

    def due(self, step: int, seconds: float) -> bool:
        """Whether a measurement or a new plan is due after ``step`` steps and ``seconds`` of training in total."""
        if self.next_check is None:
            return False
        by_time = self.next_seconds is not None and seconds >= self.next_seconds and step - self.window.step >= 2
        return step >= self.next_check or by_time

    def update(self, step: int, seconds: float) -> Plan | None:
        """After ``step`` steps and ``seconds`` of training in total (when :meth:`due`): open the window, or plan
        from the step time measured over it. Returns the new plan, or None."""
        if self.window is None:  # the calibration window opens
            self.window, self.next_check = Window(step, seconds), step + self.min_window
            return None
        step_seconds = (seconds - self.window.seconds) / max(1, step - self.window.step)  # recent time per step
        affordable = step + max(0, math.floor((self.config.time_budget_s - seconds) / max(step_seconds, 1e-12)))
        total = affordable if self.config.steps is None else min(affordable, self.config.steps)
        self.window, self.step_seconds = Window(step, seconds), step_seconds
        left = total - step
        more = left // 2 >= self.min_window  # another check halfway through what is left, or none
        self.next_check = step + left // 2 if more else None
        self.next_seconds = seconds + (self.config.time_budget_s - seconds) / 2 if more else None
        if self.plans and total == self.total:
            return None  # the plan holds
        start = max(step, self.config.warmup_steps)
        plan = Plan(start, self.progress(start) if self.plans else 0.0, total)
        self.plans.append(plan)
        return plan

    def describe(self, step: int, seconds: float) -> str:
        """One line for the log: the plan just made and what it was measured from."""
        verb = "plan" if len(self.plans) == 1 else "re-plan"
        return (f"{verb} at step {step:,}: {self.total:,} steps ({1000 * self.step_seconds:.1f} ms per step measured; "
                f"{seconds:.0f} s of the {self.config.time_budget_s:.0f} s budget used)")

"""Print what a time budget does when the machine changes speed: the re-planned run against the single plan.

    python benchmarks/replanning.py

Runs ``train`` on the tests' 2-D data under the injected clock of ``tests/fake_clock.py`` (a step normally costs
0.1 s, the budget is 100 s) in the three scenarios the budget tests check: 3x slower during the calibration
window; 2x faster from 30 % of the budget; 1.5x slower from 70 %. For each: the first plan, the number of
re-plans, the last plan, the seconds used, what the first plan alone would have used (the behaviour of version
0.2, which planned once), and the learning rate at the last step. Prints, never asserts.
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fake_clock import SCENARIOS, FakeClock  # noqa: E402

from ddpm_helpers.checkpoint import load_checkpoint  # noqa: E402
from ddpm_helpers.diffusion import Diffusion  # noqa: E402
from ddpm_helpers.nn.mlp import MLP  # noqa: E402
from ddpm_helpers.training import TrainConfig, train  # noqa: E402
from ddpm_helpers.training.plan import StepPlan  # noqa: E402
from ddpm_helpers.training.train_config import scheduled_lr  # noqa: E402


def main(out_dir: Path) -> None:
    data = torch.randn(512, 2, generator=torch.Generator().manual_seed(0))
    config = TrainConfig(steps=None, time_budget_s=100.0, batch_size=32, lr=1e-2, warmup_steps=10,
                         calibration_steps=40, lr_schedule="cosine", log_every=100)
    print("| scenario | first plan | re-plans | last plan | seconds used (budget 100) | first plan alone | "
          "last LR / lr |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, speed in SCENARIOS.items():
        clock = FakeClock(speed, data)
        torch.manual_seed(0)
        folder = out_dir / name.split()[0]
        result = train(MLP(hidden=16, num_blocks=1, time_dim=8), Diffusion.from_schedule("linear", 100),
                       clock.batches, config, device="cpu", out_dir=folder, progress=False, clock=clock)
        plan = StepPlan.from_checkpoint(config, load_checkpoint(folder / "checkpoint.pt"), result.steps)
        last_lr = scheduled_lr(result.steps - 1, config, plan.progress(result.steps - 1))
        first = plan.plans[0].total
        print(f"| {name} | {first:,} | {len(plan.plans) - 1} | {result.steps:,} | {result.seconds:.1f} | "
              f"{clock.seconds_of(first):.1f} | {last_lr / config.lr:.1e} |")


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        main(Path(folder))

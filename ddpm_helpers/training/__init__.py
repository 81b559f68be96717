"""Training: Algorithm 1 of Ho et al. 2020 as a loop that loses no work.

Start with ``loop.py``: :func:`train` and the one step it repeats. Around it: ``train_config.py`` (the
hyper-parameters and the learning-rate schedule), ``plan.py`` (how many steps a run trains: fixed, or fitted
to a time budget), ``resume.py`` (checkpoints, resuming, signals), ``ema.py``, ``precision.py`` (mixed
precision), ``distributed.py`` (torchrun), ``recipes.py`` (the configurations of notebooks 04 and 05),
``cli.py`` (the command line, ``python -m ddpm_helpers.train_cli``), ``pretrained.py`` (the committed
weights) and ``timing.py`` (fair step timings).
"""

from ddpm_helpers.training.loop import TrainResult, train
from ddpm_helpers.training.resume import CHECKPOINT_NAME
from ddpm_helpers.training.train_config import LR_SCHEDULES, TrainConfig, branch_step, lr_at_step

__all__ = ["CHECKPOINT_NAME", "LR_SCHEDULES", "TrainConfig", "TrainResult", "branch_step", "lr_at_step", "train"]

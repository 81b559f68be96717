"""Samplers: DDPM ancestral sampling (Ho et al. 2020, Algorithm 2), DDIM (Song, Meng & Ermon 2021) and
DPM-Solver++(2M) (Lu et al. 2022).

One file per sampler, each with its one-step function (diffusers' ``scheduler.step``, lucidrains'
``p_sample``) and the loop over it; ``loop.py`` holds the loop they share and the result types.
"""

from ddpm_helpers import utils
from ddpm_helpers.samplers.ddim import ddim_sample, ddim_step, ddim_timesteps
from ddpm_helpers.samplers.ddpm import ddpm_sample, ddpm_step
from ddpm_helpers.samplers.dpm_solver import dpm_solver_sample, dpm_solver_step
from ddpm_helpers.samplers.loop import SampleResult, StepResult
from ddpm_helpers.utils import moved_names

__all__ = ["SampleResult", "StepResult", "ddim_sample", "ddim_step", "ddim_timesteps", "ddpm_sample", "ddpm_step",
           "dpm_solver_sample", "dpm_solver_step"]

__getattr__ = moved_names(__name__, {"eval_no_grad": (utils.eval_no_grad, "ddpm_helpers.utils.eval_no_grad")})

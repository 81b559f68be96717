"""Samplers: DDPM ancestral sampling (Ho et al. 2020, Algorithm 2), DDIM (Song, Meng & Ermon 2021) and
DPM-Solver++(2M) (Lu et al. 2022).

One file per sampler, each with its one-step function (diffusers' ``scheduler.step``, lucidrains'
``p_sample``) and the loop over it; ``loop.py`` holds the loop they share, :func:`sample_loop`, and the result
types; ``named.py`` finds a sampler by the name notebook 04's sampler table gives it. Every step has one
signature, ``step(diffusion, model_output, xt, t, t_next, *, options, generator=None) -> StepResult(x_prev,
x0_hat)`` (see ``loop.py``). Adding a sampler: one file here and one line in ``tests/test_sampler_contract.py``.
"""

from ddpm_helpers.samplers.ddim import ddim_sample, ddim_step, ddim_timesteps
from ddpm_helpers.samplers.ddpm import ddpm_sample, ddpm_step
from ddpm_helpers.samplers.dpm_solver import dpm_solver_sample, dpm_solver_step
from ddpm_helpers.samplers.loop import PreviousStep, SampleResult, StepResult, sample_loop
from ddpm_helpers.samplers.named import by_name, network_calls

__all__ = ["PreviousStep", "SampleResult", "StepResult", "by_name", "ddim_sample", "ddim_step", "ddim_timesteps",
           "ddpm_sample", "ddpm_step", "dpm_solver_sample", "dpm_solver_step", "network_calls", "sample_loop"]

"""The doctor: checks a reader's own DDPM pieces and names the most likely cause of what fails (notebook 06).

``tables.py`` (schedule tables and a data batch), ``sampler.py`` (a reverse step run against the exact denoiser of
a known Gaussian mixture), ``network.py`` (a trained network per t against the exact denoiser's floor; its EMA),
``report.py`` (the findings). Each check returns a :class:`Report`: a list of :class:`Finding` (``name``,
``passed``, ``detail``, ``cause``, ``fix``), printed as plain text; the first failed finding is the most likely
cause. :func:`examine` runs the checks for whichever pieces it is given and prints the report.
"""

from ddpm_helpers.evaluation.doctor.network import check_ema, check_network
from ddpm_helpers.evaluation.doctor.report import Finding, Report
from ddpm_helpers.evaluation.doctor.sampler import check_sampler, describe, reference_mixture, sample_statistics
from ddpm_helpers.evaluation.doctor.tables import check_data, check_schedule

__all__ = ["Finding", "Report", "check_data", "check_ema", "check_network", "check_sampler", "check_schedule",
           "describe", "examine", "reference_mixture", "sample_statistics"]


def examine(*, betas=None, alpha_bar=None, data=None, step=None, kind="ddpm", model=None, diffusion=None,
            held_out=None, mixture=None, prediction="eps", losses=None, ema_model=None, initial=None,
            show=True) -> Report:
    """Run every check whose pieces are given and print the report (``show``): ``betas``/``alpha_bar`` →
    :func:`check_schedule`; ``data`` → :func:`check_data`; ``step`` → :func:`check_sampler`; ``model`` with
    ``diffusion`` and ``held_out`` → :func:`check_network`; ``ema_model`` with ``model`` → :func:`check_ema`."""
    report = Report()
    if betas is not None:
        report += check_schedule(betas, alpha_bar)
    if data is not None:
        report += check_data(data)
    if step is not None:
        report += check_sampler(step, kind=kind, diffusion=diffusion, mixture=mixture)
    if model is not None and diffusion is not None and held_out is not None:
        report += check_network(model, diffusion, held_out, mixture=mixture, prediction=prediction, losses=losses)
    if ema_model is not None and model is not None:
        report += check_ema(ema_model, model, initial=initial, diffusion=diffusion, data=held_out,
                            prediction=prediction)
    if show:
        print(report)
    return report

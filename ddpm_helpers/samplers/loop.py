"""The sampling loop shared by every sampler, :func:`sample_loop`, and the types it returns.

One reverse step is a function of its own module (``ddpm.py``, ``ddim.py``, ``dpm_solver.py``), and every step
has one signature::

    step(diffusion, model_output, xt, t, t_next, *, <sampler options>, generator=None) -> StepResult(x_prev, x0_hat)

``t`` is the 0-based current step (an int shared by the batch ``xt``), ``t_next`` the 0-based step it goes to
(``t_next < t``), or ``None`` for the clean end of the chain (ᾱ = 1, the paper's x_0). ``model_output`` is the
network's output at ``(xt, t)``. A public step validates its arguments, then calls its check-free body; the body
takes ``(diffusion, model_output, xt, t, t_next, tt, previous)``: ``tt`` is the LongTensor ``(B,)`` of ``t`` that
the model received, ``previous`` the :class:`PreviousStep` before it (None at the first). Every sampler
validates its own arguments once and calls :func:`sample_loop` with its body (options bound with
``functools.partial``); the loop calls only bodies.

A sampler starts from x_T ~ N(0, I) (or a given ``x_T``), calls ``model(x_t, t)`` with ``t`` as a LongTensor of
shape ``(B,)``, and returns a :class:`SampleResult`. The model is called under ``torch.no_grad()`` and in eval
mode; a model that was training is put back in training mode afterwards. No noise is added at the last step
(code ``t = 0``, paper step 1).

``record``: 0-based timesteps whose *incoming* state x_t (the input of the model call at
that ``t``) and the x̂0 predicted from it are kept, in sampling order (descending ``t``), on the
CPU. The final sample is ``SampleResult.x``.
"""

import numbers
from dataclasses import dataclass
from typing import NamedTuple

import torch
from tqdm import tqdm

from ddpm_helpers import utils
from ddpm_helpers.checks import check_floating, check_int, check_model_output, check_positive_int, check_same_shape


@dataclass
class SampleResult:
    """Output of a sampler.

    ``x``: the final sample (paper's x_0); ``timesteps``: the recorded 0-based timesteps in
    sampling order; ``xs``/``x0_preds``: tensors ``(K, B, …)`` holding x_t and x̂0 at those
    timesteps (K = len(timesteps), on the CPU).
    """

    x: torch.Tensor
    timesteps: list
    xs: torch.Tensor
    x0_preds: torch.Tensor


class PreviousStep(NamedTuple):
    """What a step body is told of the step before it (None at the first): its 0-based ``t`` and its x̂0. A multistep
    solver (DPM-Solver++(2M)) extrapolates from it; single-step samplers ignore it."""

    t: int  # t_prev > t: where the previous network call was
    x0_hat: torch.Tensor  # x̂0_prev, the data prediction there


class StepResult(NamedTuple):
    """Output of one reverse step: the next state and the x̂0 estimated on the way."""

    x_prev: torch.Tensor  # the state after the step, at `t_next` (x_{t−1} for DDPM; x_0 after the last step)
    x0_hat: torch.Tensor  # x̂0 predicted from the incoming x_t


def _timestep_tensor(t, x):
    """The 0-based step ``t`` for every example of ``x``: a LongTensor of shape ``(B,)`` on ``x``'s device."""
    return torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)


def check_step(diffusion, model_output, xt, t, t_next):
    """Validate the arguments every public step shares; return ``(t, t_next, tt)``.

    ``t``: an int in [0, T); ``t_next``: None or an int in [0, t); ``model_output`` and ``xt``: floating-point
    tensors of one shape ``(B, …)``. ``tt`` is ``t`` as a LongTensor ``(B,)`` on ``xt``'s device.
    """
    t = check_int(t, "t", low=0, high=diffusion.T - 1)
    if t_next is not None:
        t_next = check_int(t_next, "t_next", low=0, high=t - 1)  # None: the clean end of the chain
    for name, x in (("xt", xt), ("model_output", model_output)):
        check_floating(x, name)
        if x.ndim == 0:
            raise ValueError(f"{name} must have a batch dimension (B, ...), got a 0-d tensor")
    check_same_shape(xt=xt, model_output=model_output)
    return t, t_next, _timestep_tensor(t, xt)


def check_step_sequence(timesteps, T):
    """A sampler's 0-based timesteps as a list of ints: non-empty, strictly descending, in [0, T)."""
    bad = isinstance(timesteps, (str, bytes))
    steps = []
    for a in () if bad else timesteps:
        if type(a) is not int and (isinstance(a, bool) or not isinstance(a, numbers.Integral)):  # bools refused
            bad = True
            break
        steps.append(int(a))
    if bad or not steps:
        raise ValueError(f"timesteps must be a non-empty sequence of ints, got {timesteps!r}")
    if not 0 <= min(steps) <= max(steps) < T:
        raise ValueError(f"timesteps {steps} out of range [0, {T})")
    for a, b in zip(steps, steps[1:]):
        if a <= b:
            raise ValueError(f"timesteps must be strictly descending, got {steps}")
    return steps


def _model_device(model):
    """Device of the model's first parameter, or None for parameter-free callables."""
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return None


def _initial_state(shape, x_T, generator, device):
    """x_T as given, or x_T ~ N(0, I) of ``shape`` on ``device``."""
    if x_T is not None:
        check_floating(x_T, "x_T")
        if shape is not None and tuple(shape) != tuple(x_T.shape):
            raise ValueError(f"shape {tuple(shape)} does not match x_T shape {tuple(x_T.shape)}")
        return x_T.to(device).clone()
    if shape is None or isinstance(shape, (str, bytes)) or len(shape) == 0:
        raise ValueError(f"shape must be a non-empty tuple of positive ints, got shape={shape!r}")
    for n in shape:
        check_positive_int(n, f"every entry of shape={tuple(shape)!r}")
    return utils.noise_like(torch.empty(tuple(shape), device=device), generator)  # x_T ~ N(0, I)


def _resolve_device(model, x_T, device):
    """The device to sample on: ``device``, else x_T's, else the model's, else the CPU."""
    if device is not None:
        return torch.device(device)
    if x_T is not None:
        return x_T.device
    return _model_device(model) or torch.device("cpu")


def _record_set(record, T):
    """The set of 0-based timesteps to record; ValueError naming any outside [0, T)."""
    if isinstance(record, (str, bytes)) or not hasattr(record, "__iter__"):
        raise ValueError(f"record must be a collection of 0-based timesteps (e.g. range(T) or [999, 500, 0]), "
                         f"got record={record!r}")
    steps = set()
    for t in record:
        try:
            steps.add(check_int(t, "t", low=0, high=T - 1))
        except ValueError:
            raise ValueError(f"record timestep {t!r} out of range [0, {T}) (record takes ints)") from None
    return steps


def _result(x, recorded):
    """Pack the final sample and the recorded (t, x_t, x̂0) triples into a SampleResult."""
    timesteps = [t for t, _, _ in recorded]
    if recorded:
        xs = torch.stack([xt for _, xt, _ in recorded])
        x0_preds = torch.stack([x0 for _, _, x0 in recorded])
    else:
        xs = x0_preds = torch.empty((0, *x.shape), dtype=x.dtype)
    return SampleResult(x=x, timesteps=timesteps, xs=xs, x0_preds=x0_preds)


def sample_loop(model, diffusion, step, timesteps, *, shape=None, x_T=None, generator=None, device=None, record=(),
                progress=False, desc="sampling"):
    """Run ``step`` along ``timesteps``: x ← ``step(diffusion, model(x, tt), x, t, t_next, tt, previous).x_prev``.

    ``timesteps``: the 0-based steps at which the model is called, strictly descending, in [0, T); each step goes
    to the next one, the last to the clean end (``t_next = None``). ``step``: a check-free step body (see the
    module docstring), called as ``step(diffusion, model_output, x, t, t_next, tt, previous)`` with ``tt`` the
    LongTensor ``(B,)`` of ``t``, built once per step and given to the model too; bind options with
    ``functools.partial``.
    It is not validated per step: to loop over a public step, wrap it
    (``lambda d, out, x, t, t_next, tt, previous: ddim_step(d, out, x, t, t_next, eta=0.5)``); ``previous``
    (:class:`PreviousStep`: the step before's ``t`` and x̂0) is what a multistep solver extrapolates from.
    ``x_T``: the start; when None, x_T ~ N(0, I) of ``shape`` is drawn with ``generator`` (``shape``, if given
    with ``x_T``, must match it). The loop itself draws only x_T; a step that draws noise holds its own
    generator (the samplers bind the same one to their step). ``device``: where to sample (default: x_T's, else
    the model's, else the CPU).
    ``record``: see the module docstring; ``progress``: a tqdm bar titled ``desc``.
    Returns a :class:`SampleResult`; a sample holding NaN or ±inf raises FloatingPointError (checked once, at the
    end) naming the first recorded step where it showed.
    """
    if not callable(step):
        raise ValueError(f"step must be a callable step body, got {step!r}")
    if not callable(model):
        raise ValueError(f"model must be a network or a callable model(x_t, t), got {type(model).__name__}")
    steps = check_step_sequence(timesteps, diffusion.T)
    if not isinstance(progress, bool):  # the string 'no' would count as true
        raise ValueError(f"progress must be True or False, got progress={progress!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got generator={generator!r} "
                         "(e.g. torch.Generator().manual_seed(0))")
    if x_T is not None:
        check_floating(x_T, "x_T")
    device = _resolve_device(model, x_T, device)
    if device.type == "meta":
        raise ValueError("device='meta' holds shapes but no values, so nothing can be sampled on it: use 'cpu' or "
                         "'cuda'")
    weights_dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None) \
        if isinstance(model, torch.nn.Module) else None
    record = _record_set(record, diffusion.T)
    x = _initial_state(shape, x_T, generator, device)
    pairs = zip(steps, steps[1:] + [None])  # (t, t_next); None: the clean end of the chain (ᾱ = 1)
    if progress:
        pairs = tqdm(pairs, total=len(steps), desc=desc)
    recorded, previous = [], None
    with utils.eval_no_grad(model):
        for t, t_next in pairs:
            tt = _timestep_tensor(t, x)  # t for every example, (B,)
            try:
                output = check_model_output(model(x, tt), x)
            except RuntimeError as error:  # torch's "mat1 and mat2 must have the same dtype": name the argument
                if weights_dtype is None or weights_dtype == x.dtype or "type" not in str(error):
                    raise
                raise ValueError(f"the model's weights are {weights_dtype} but x_t is {x.dtype} ({error}): pass x_T "
                                 f"of dtype {weights_dtype} or convert the model (model.to({x.dtype}))") from error
            x_prev, x0_hat = step(diffusion, output, x, t, t_next, tt, previous)
            previous = PreviousStep(t, x0_hat)
            if t in record:
                recorded.append((t, x.cpu(), x0_hat.cpu()))
            x = x_prev
    _check_finite(x, recorded, desc)  # once per call, after the loop: one read at the end, none per step
    return _result(x, recorded)


def _check_finite(x, recorded, desc):
    """FloatingPointError naming the non-finite values of the final sample and the first recorded step that had any
    (a network that returned NaN, or a step that diverged), instead of handing back a NaN sample."""
    if x.device.type == "meta" or bool(torch.isfinite(x).all()):
        return
    bad = int((~torch.isfinite(x)).sum())
    first = next((t for t, xt, x0 in recorded if not (torch.isfinite(xt).all() and torch.isfinite(x0).all())), None)
    where = (f"the first recorded step with a non-finite x_t or x̂0 is t={first}" if first is not None else
             "pass record=range(diffusion.T) to see the first step whose output was not finite")
    raise FloatingPointError(f"{desc}: the sample holds {bad} non-finite values (NaN or ±inf) of {x.numel()}: the "
                             f"model returned NaN/inf or a step diverged; {where}")

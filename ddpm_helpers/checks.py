"""Argument checks shared by the public entry points: each raises ValueError naming the bad value.

Call them once where a value enters the package (constructors, samplers, losses, the public
``q_*``/predict methods, ``train``); the math below an entry point runs without guards. Checks
that need a tensor's values (the range of ``t``) look only when the tensor lives on the CPU, so
they never force a device-to-host sync.
"""

import math
import numbers

import torch

INDEX_DTYPES = (torch.int32, torch.int64)


def check_int(value, name, low=1, high=None):
    """``value`` as an int in [low, high] (``high=None``: no upper bound); bools are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {name}={value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {bounds}, got {name}={value!r}")
    return value


def check_positive_int(value, name):
    """``value`` as an int >= 1; bools are refused."""
    return check_int(value, name, low=1)


def check_number(value, name, low=None, high=None, *, low_open=False, high_open=False):
    """``value`` as a finite float within the given bounds (open bounds exclude the end point).

    Bools, strings, NaN and ±inf are refused.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {name}={value!r}")
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or too_low or too_high:
        lo = "(-inf" if low is None else f"{'(' if low_open else '['}{low:g}"
        hi = "inf)" if high is None else f"{high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a finite number in {lo}, {hi}, got {name}={value!r}")
    return value


def check_name(value, allowed, what):
    """Raise ValueError naming ``value`` unless it is one of ``allowed``."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {tuple(allowed)}")
    return value


def check_floating(x, name):
    """Raise ValueError naming the type or dtype unless ``x`` is a floating-point tensor."""
    if not torch.is_tensor(x):
        raise ValueError(f"{name} must be a floating-point torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype} (convert with {name}.float())")
    return x


def _check_index_vector(x, name, what, batch):
    """ValueError unless ``x`` is an int64/int32 tensor of shape ``(batch,)`` (any length when ``batch`` is None)."""
    if not torch.is_tensor(x) or x.dtype not in INDEX_DTYPES:
        got = f"dtype {x.dtype}" if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"{name} must be an int64 (or int32) tensor of {what}, got {got}")
    if x.ndim != 1 or (batch is not None and x.shape[0] != batch):
        want = "(B,)" if batch is None else f"({batch},)"
        raise ValueError(f"{name} must have shape {want}, got shape {tuple(x.shape)}")


def check_timesteps(t, T, batch=None):
    """Raise ValueError unless ``t`` is an int32/int64 tensor of shape ``(batch,)`` with values in [0, T).

    The range is checked only for a CPU tensor (reading a GPU tensor's values would force a sync).
    """
    _check_index_vector(t, "t", "timesteps", batch)
    if t.device.type == "cpu" and t.numel() > 0:
        low, high = torch.aminmax(t)
        if int(low) < 0 or int(high) >= T:
            bad = (t < 0) | (t >= T)
            raise ValueError(f"timestep t={t[bad].tolist()[:10]} out of range [0, {T})")
    return t


def check_labels(labels, num_classes, null_label, batch=None, name="labels"):
    """Raise ValueError unless ``labels`` is an int64 (or int32) tensor of shape ``(batch,)`` of class labels.

    A label is in [0, num_classes) (``num_classes=None``: any label >= 0) or equals ``null_label``. Like
    :func:`check_timesteps`, the values are read only for a CPU tensor (reading a GPU tensor's values would
    force a sync), so call it where labels enter, while they are still on the CPU.
    """
    _check_index_vector(labels, name, "class labels", batch)
    if labels.device.type == "cpu" and labels.numel() > 0:
        outside = (labels < 0) if num_classes is None else (labels < 0) | (labels >= num_classes)
        bad = outside & (labels != null_label)
        if bad.any():
            classes = "[0, ∞)" if num_classes is None else f"[0, {num_classes})"
            raise ValueError(f"class {name} must be in {classes} or NULL_LABEL={null_label}, "
                             f"got {labels[bad][0].item()}")
    return labels


def check_same_shape(**tensors):
    """Raise ValueError naming the shapes unless all ``tensors`` (given by name) share one shape."""
    shapes = {name: tuple(x.shape) for name, x in tensors.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"shape mismatch: {shapes}")


def check_model_output(output, x, name="x_t"):
    """Raise ValueError unless the network's ``output`` is a tensor shaped like its input ``x`` (called ``name``)."""
    if not torch.is_tensor(output):
        raise ValueError(f"the model must return a tensor shaped like {name}, got {type(output).__name__}")
    if output.shape != x.shape:
        raise ValueError(f"model output shape {tuple(output.shape)} does not match {name} shape {tuple(x.shape)}")
    return output

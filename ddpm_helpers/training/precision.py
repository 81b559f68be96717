"""Mixed-precision training steps (autocast + gradient scaling) and the deliberate host–device syncs.

Under ``torch.autocast`` convolutions and matrix products run in a 16-bit float type while the
weights, the optimizer state and the loss reduction stay in float32 (Micikevicius et al. 2018,
"Mixed Precision Training"). bfloat16 has float32's exponent range, so its gradients need no
scaling; float16 has 5 exponent bits, so small gradients underflow to 0 unless the loss is first
multiplied by a scale S (the gradients by S too) and the gradients divided by S before the
update — ``torch.amp.GradScaler``, which also skips a step whose scaled gradients overflowed and
lowers S. ``"auto"`` picks bfloat16 on GPUs that compute in it natively (compute capability ≥ 8,
e.g. A100, H100, RTX 30xx), float16 + scaling on older ones (T4, V100), bfloat16 on a CPU that
computes it natively (AMX or AVX-512-BF16: :func:`cpu_computes_bf16`) and no mixed precision on other
CPUs, where bfloat16 is emulated and slower than float32 (``benchmarks/cpu_throughput.py``).

The training loop must not wait for the GPU at every step: that would stall the queue of kernels
the CPU runs ahead with. With float16 the optimizer is Adam with ``fused=True``, which reads the
scaler's overflow flag on the GPU instead of asking the host (``GradScaler.step`` would otherwise
call ``.item()``). The few places that must read a GPU value (logging the losses every
``log_every`` steps, checkpoints) are marked with :func:`deliberate_sync`, so that a test under
``torch.cuda.set_sync_debug_mode("error")`` finds every other sync.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

MIXED_PRECISIONS = ("off", "auto", "bf16", "fp16")


def cpu_computes_bf16() -> bool:
    """Whether this CPU has bfloat16 arithmetic in hardware: the ``amx_bf16`` or ``avx512_bf16`` flag of Linux's
    /proc/cpuinfo (elsewhere PyTorch's own probe of AVX-512-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)  # private; absent in some builds
        return bool(probe and probe())
    return "amx_bf16" in flags or "avx512_bf16" in flags


def autocast_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The 16-bit type autocast computes in for ``mode`` on ``device`` (``None``: full float32)."""
    if mode not in MIXED_PRECISIONS:
        raise ValueError(f"mixed_precision must be one of {MIXED_PRECISIONS}, got {mode!r}")
    if mode == "auto" and device.type == "cpu":
        return torch.bfloat16 if cpu_computes_bf16() else None
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if mode == "fp16" and device.type != "cuda":
        raise ValueError(f"mixed_precision='fp16' needs a CUDA device, got {device.type!r}; use 'bf16' or 'off'")
    if mode == "auto":
        native_bf16 = torch.cuda.get_device_capability(device)[0] >= 8  # bf16 tensor cores from Ampere on
        return torch.bfloat16 if native_bf16 else torch.float16
    return torch.bfloat16 if mode == "bf16" else torch.float16


class MixedPrecision:
    """Autocast context, loss scaling and the matching optimizer for one training run.

    Usage in a step: ``with mp.autocast(): loss = ...``; ``mp.backward(loss)``; ``mp.unscale_(opt)``
    (before gradient clipping); ``mp.step(opt)``. With ``mode="off"`` every call is the plain
    float32 one, so the step is exactly the usual one.
    """

    def __init__(self, mode: str, device: torch.device | str):
        self.device = torch.device(device)
        self.dtype = autocast_dtype(mode, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.dtype == torch.float16 else None  # (torch >= 2.3)

    def optimizer(self, parameters, lr: float) -> torch.optim.Adam:
        """Adam; fused on CUDA when gradients are scaled (no host sync per step), else foreach."""
        if self.scaler is not None:
            return torch.optim.Adam(parameters, lr=lr, fused=True)
        # foreach: one batched update of all tensors (PyTorch's default on GPUs; also faster on CPUs)
        return torch.optim.Adam(parameters, lr=lr, foreach=self.device.type in ("cpu", "cuda") or None)

    def autocast(self):
        """``torch.autocast`` in the chosen type, or a context that changes nothing."""
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        """∇(S·loss) with float16 (S: the current loss scale), else ∇loss."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide the gradients by S in place (so that clipping sees the true gradient norm)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimizer step (skipped on the GPU when a gradient overflowed), then the scale update."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict:
        """The loss scaler's state (empty without float16), for checkpoints."""
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


@contextmanager
def deliberate_sync():
    """Mark a host–device sync as intended: ``torch.cuda.set_sync_debug_mode`` is lifted inside."""
    if not torch.cuda.is_available():
        yield
        return
    mode = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(0)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(mode)

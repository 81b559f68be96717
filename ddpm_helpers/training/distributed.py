"""Data-parallel training under ``torchrun``: the few pieces :func:`ddpm_helpers.training.train` needs.

``torchrun --nproc_per_node=N script.py`` starts N copies of a script with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and a rendezvous address in their environment. :func:`init`
joins them into one process group (gloo on CPUs, nccl on CUDA GPUs); the training loop then
wraps the model in ``DistributedDataParallel``, which averages the gradients of all ranks after
every backward pass. Each rank draws its own minibatch and its own t and ε from generators
seeded by :func:`rank_seed`, so N ranks of batch B train exactly like one process on the
concatenated batch of N·B: the gradient of the mean loss over N·B examples is the mean of the
N per-rank gradients (equal shard sizes).

Decisions that depend on one machine's clock or signals (time limit, Ctrl-C/SIGTERM, the
calibrated step budget) are taken by rank 0 and sent to every rank with
:func:`broadcast_from_main`, so all ranks stop at the same step and none waits forever in a
collective. These small messages go through a CPU (gloo) group, so they never synchronize a
GPU. Only rank 0 writes (checkpoints, logs, progress bars).

Without torchrun (no ``WORLD_SIZE`` in the environment) everything here is a no-op: world size
1, rank 0, and rank 0's seeds are the run's seed, so a single-process run is unchanged.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

SEED_STRIDE = 0x9E3779B9  # odd (the golden-ratio constant): seed + r·stride differs mod 2³² for every rank r
_LAUNCH_VARIABLES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
_control = {"group": None}  # the CPU process group for rank 0's decisions (gloo), made by control_group()


@dataclass(frozen=True)
class Context:
    """Where this process stands: ``rank`` of ``world_size`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that writes files and logs."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not value.isdigit():
        raise ValueError(f"{name}={value!r} must be a non-negative integer (torchrun sets it)")
    return int(value)


def env_context() -> Context:
    """Rank, world size and local rank from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)."""
    context = Context(rank=_env_int("RANK", 0), world_size=_env_int("WORLD_SIZE", 1),
                      local_rank=_env_int("LOCAL_RANK", 0))
    if context.world_size < 1 or not 0 <= context.rank < context.world_size:
        raise ValueError(f"RANK={context.rank} must lie in [0, WORLD_SIZE={context.world_size})")
    return context


def init(device: torch.device | str | None = None, timeout_s: float = 600.0) -> tuple[Context, torch.device]:
    """Join torchrun's process group and return ``(context, device of this rank)``.

    ``device`` is the device type to train on (default: cuda when available, else cpu); on CUDA
    each rank takes GPU ``LOCAL_RANK`` and the backend is nccl, on a CPU it is gloo. A single
    process (no torchrun) joins nothing. Calling it again returns the group already joined.
    """
    context = env_context()
    if context.enabled and not dist.is_initialized() and not os.environ.get("TORCHELASTIC_RUN_ID"):
        # A leftover WORLD_SIZE (an export in the shell, a copied job script) would wait `timeout_s` for ranks that
        # never come; torchrun always sets TORCHELASTIC_RUN_ID beside it.
        found = ", ".join(f"{name}={os.environ[name]!r}" for name in _LAUNCH_VARIABLES if name in os.environ)
        raise ValueError(
            f"{found} say this is one of {context.world_size} processes, but it was not started by torchrun "
            "(TORCHELASTIC_RUN_ID is not set), so the other ranks would never come: for one process, unset "
            f"{', '.join(_LAUNCH_VARIABLES)}; for {context.world_size}, start it with "
            f"torchrun --nproc_per_node={context.world_size} (another launcher: set TORCHELASTIC_RUN_ID as "
            "torchrun does)")
    device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        device = torch.device("cuda", context.local_rank if context.enabled else (device.index or 0))
        torch.cuda.set_device(device)
    if context.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return current(), device


def current() -> Context:
    """The context of the process group joined (by :func:`init` or by the caller), else a single process."""
    if not (dist.is_available() and dist.is_initialized()):
        return Context()
    return Context(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=_env_int("LOCAL_RANK", 0))


def shutdown() -> None:
    """Leave the process group (at the end of a torchrun script)."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()  # free DistributedDataParallel wrappers (reference cycles) while their group still exists
        dist.barrier(group=control_group())  # no rank leaves while another still talks to it
        dist.destroy_process_group()
        _control["group"] = None


def rank_seed(seed: int, rank: int) -> int:
    """The seed of ``rank``'s generators: seed + rank·0x9E3779B9 (mod 2⁶⁴), so rank 0 keeps the run's seed."""
    return (seed + rank * SEED_STRIDE) % 2**64


def control_group():
    """A gloo group over all ranks for small CPU messages (the default group when it is gloo already).

    Every rank must call it the first time at the same point (it is a collective); later calls reuse it.
    """
    if _control["group"] is None:
        _control["group"] = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else dist.group.WORLD
    return _control["group"]


def broadcast_from_main(values: list[float], context: Context) -> list[float]:
    """Rank 0's ``values`` (numbers or booleans) on every rank; unchanged for a single process.

    Float64 on the CPU: integers below 2⁵³ and booleans (as 0/1) come back exactly.
    """
    if not context.enabled:
        return list(values)
    message = torch.tensor([float(v) for v in values], dtype=torch.float64)
    dist.broadcast(message, src=0, group=control_group())
    return message.tolist()


def gather_to_main(obj: Any, context: Context) -> list[Any] | None:
    """Every rank's ``obj`` as a list on rank 0 (``None`` on the other ranks); ``[obj]`` for a single process.

    Objects travel pickled between the ranks of this run only (nothing is read from a file).
    """
    if not context.enabled:
        return [obj]
    gathered = [None] * context.world_size if context.is_main else None
    dist.gather_object(obj, gathered, dst=0, group=control_group())
    return gathered


def broadcast_object(obj: Any, context: Context) -> Any:
    """Rank 0's ``obj`` on every rank (pickled between the ranks of this run); ``obj`` for a single process."""
    if not context.enabled:
        return obj
    box = [obj if context.is_main else None]
    dist.broadcast_object_list(box, src=0, group=control_group())
    return box[0]


def mean_over_ranks(values: torch.Tensor, context: Context) -> torch.Tensor:
    """The element-wise mean of ``values`` over all ranks (in the main group, on ``values``' device)."""
    if not context.enabled:
        return values
    total = values.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total / context.world_size  # mean over ranks = the loss of the concatenated batch


def wrap(model: torch.nn.Module, device: torch.device, context: Context) -> torch.nn.Module:
    """``model`` in ``DistributedDataParallel`` when several ranks train (it starts from rank 0's weights
    and averages the gradients over ranks in every backward pass); ``model`` itself for one process."""
    if not context.enabled:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def barrier(context: Context) -> None:
    """Wait until every rank gets here (e.g. while rank 0 downloads a data set); nothing for one process."""
    if context.enabled:
        dist.barrier(group=control_group())

"""Time one EMA update of notebook 04's and 05's CPU U-Nets: the old per-tensor loop beside the foreach update.

    python benchmarks/ema_update.py                  # 1 thread, 9 rounds of 50 updates
    python benchmarks/ema_update.py --threads 2 --rounds 15

``EMA.update`` (``ddpm_helpers.training.ema``) runs θ_ema ← d θ_ema + (1 − d) θ as one
``torch._foreach_lerp_`` over lists made at the first update (as diffusers' ``EMAModel(foreach=True)``).
:func:`reference_loop_update` below is the implementation it replaced, copied unchanged: two state dicts
rebuilt and one ``lerp_`` per tensor at every update. Both run on ``UNet(**recipes.MNIST["cpu"].unet)``
and ``UNet(**recipes.BUTTERFLIES["cpu"].unet)``, interleaved (the one that goes first alternates), for
``--rounds`` rounds of ``--updates`` updates each; the table shows the median round in ms per update and
the ratio old / new, and whether both averages came out bit for bit equal. Prints, never asserts.
"""

import argparse
import statistics
import time

import torch
from common import cpu_name

from ddpm_helpers.nn.unet import UNet
from ddpm_helpers.training import recipes
from ddpm_helpers.training.ema import EMA


@torch.no_grad()
def reference_loop_update(ema: EMA, model: torch.nn.Module) -> None:
    """REFERENCE ONLY: ``EMA.update`` before the foreach version (two state dicts, one lerp_ per tensor)."""
    d = ema.current_decay()
    ema_state = ema.model.state_dict()
    state = model.state_dict()
    if ema_state.keys() != state.keys():
        missing = sorted(set(ema_state) ^ set(state))[:5]
        raise ValueError(f"model does not match the EMA copy; differing entries: {missing}")
    for name, ema_value in ema_state.items():
        value = state[name].detach().to(ema_value.device)
        if ema_value.dtype.is_floating_point:
            ema_value.lerp_(value.to(ema_value.dtype), 1.0 - d)  # θ_ema + (1 − d)(θ − θ_ema) = d θ_ema + (1 − d) θ
        else:
            ema_value.copy_(value)
    ema.num_updates += 1


def seconds_per_update(update, ema: EMA, model: torch.nn.Module, updates: int) -> float:
    start = time.perf_counter()
    for _ in range(updates):
        update(ema, model)
    return (time.perf_counter() - start) / updates


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--updates", type=int, default=50, help="updates per round and implementation")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    implementations = {"old: state dicts + loop": reference_loop_update, "new: foreach": EMA.update}
    print(f"ms per EMA update, median of {args.rounds} interleaved rounds of {args.updates} updates; "
          f"torch {torch.__version__}, {args.threads} CPU thread(s), {cpu_name()}")
    print("| model | parameters (tensors) | old loop, ms | new foreach, ms | old / new | same weights |")
    print("| --- | --- | --- | --- | --- | --- |")
    for recipe in (recipes.MNIST["cpu"], recipes.BUTTERFLIES["cpu"]):
        torch.manual_seed(0)
        model = UNet(**recipe.unet)
        emas = {name: EMA(model, decay=0.999) for name in implementations}
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01 * torch.randn_like(p))  # the weights a training step would have moved
        for name, update in implementations.items():
            update(emas[name], model)  # warm-up (the foreach version makes its lists here)
        times = {name: [] for name in implementations}
        for round_ in range(args.rounds):
            order = list(implementations) if round_ % 2 == 0 else list(reversed(implementations))
            for name in order:
                times[name].append(seconds_per_update(implementations[name], emas[name], model, args.updates))
        old, new = (1e3 * statistics.median(times[name]) for name in implementations)
        a, b = (emas[name].model.state_dict() for name in implementations)
        same = all(torch.equal(a[key], b[key]) for key in a)
        tensors = len(list(model.parameters()))
        parameters = sum(p.numel() for p in model.parameters())
        print(f"| {recipe.name} | {parameters:,} ({tensors}) | {old:.3f} | {new:.3f} | {old / new:.1f}× | {same} |")


if __name__ == "__main__":
    main()

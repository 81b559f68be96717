"""Sinusoidal timestep embedding: how the network is told which noise level it sees.

The denoiser is one network shared by all T noise levels, so the timestep must be an
input. A raw integer is a poor input (one scalar, large range), so it is mapped to a
vector of sines and cosines at geometrically spaced frequencies, the positional
encoding of Vaswani et al. 2017 (§3.5) that Ho et al. 2020 (Appendix B) use for t.
"""

import math

import torch
from torch import Tensor

from ddpm_helpers.checks import check_int


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Embed timesteps ``t`` of shape ``(B,)`` as ``(B, dim)`` sines and cosines.

    Vaswani et al. 2017, §3.5 (as used for t by Ho et al. 2020, Appendix B):
    ``emb[:, i] = sin(t · ω_i)``, ``emb[:, half + i] = cos(t · ω_i)`` with
    ``ω_i = max_period^(-i / half)``, ``i = 0 … half−1``, ``half = dim // 2``: sines and cosines in
    two blocks, as in Ho et al.'s code (Vaswani et al. interleave them; Ho et al.'s code spaces the
    exponents as ``i / (half − 1)``). Close timesteps get close vectors; the fast columns tell
    neighbouring steps apart, the slower ones distant steps.
    ``t`` may be integer (0-based timesteps) or float; an odd ``dim`` gets a final zero column.
    """
    check_int(dim, "dim", low=2)
    if t.ndim != 1:
        raise ValueError(f"t must have shape (B,), got shape {tuple(t.shape)}")
    if t.dtype == torch.bool or t.is_complex():  # dtype only: a bool t would be taken as steps 0 and 1
        raise ValueError(f"t must hold timesteps (an integer or float tensor), got dtype {t.dtype}")
    half = dim // 2
    # ω_i = max_period^(−i/half), i = 0 … half−1
    exponent = torch.arange(half, device=t.device, dtype=torch.float32) / half
    freqs = torch.exp(-math.log(max_period) * exponent)
    # angle[b, i] = t_b · ω_i
    angles = t.to(torch.float32)[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2 == 1:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb

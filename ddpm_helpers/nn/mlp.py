"""A small residual MLP denoiser for low-dimensional (e.g. 2-D toy) data."""

import math

import torch
from torch import Tensor, nn

from ddpm_helpers.checks import check_int, check_positive_int
from ddpm_helpers.nn.embeddings import sinusoidal_embedding


class ResidualBlock(nn.Module):
    """``h + W₂ SiLU(W₁ LayerNorm(h) + U e_t)``: a pre-norm residual block told the timestep.

    The time embedding ``e_t`` is added inside every block, so each layer can
    behave differently at each noise level.
    """

    def __init__(self, hidden: int, emb_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.time_proj = nn.Linear(emb_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.act = nn.SiLU()

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        return h + self.fc2(self.act(self.fc1(self.norm(h)) + self.time_proj(emb)))  # h + W₂ SiLU(W₁ LN(h) + U e_t)


def fourier_features(x: Tensor, octaves: int) -> Tensor:
    """``[x, sin(ω_k x), cos(ω_k x)]`` with ω_k = 2^k·π/2, k = 0 … octaves−1, per coordinate: (B, D(1 + 2·octaves)).

    A positional encoding of the input (Mildenhall et al. 2020, Eq. 4; Tancik et al. 2020):
    a plain MLP learns smooth functions first ("spectral bias"), so sharp features of the
    data (thin strokes, tight modes) need these higher frequencies at the input.
    """
    freqs = (2.0 ** torch.arange(octaves, device=x.device, dtype=x.dtype)) * (math.pi / 2)  # ω_k
    angles = (x[:, :, None] * freqs).flatten(1)  # ω_k x_d for every coordinate d
    return torch.cat([x, torch.sin(angles), torch.cos(angles)], dim=1)


class MLP(nn.Module):
    """ε_θ(x_t, t) (or x₀/v prediction) for vectors: ``forward(x, t)`` → same shape as ``x``.

    ``x``: ``(B, data_dim)`` noisy points; ``t``: ``(B,)`` 0-based timesteps (LongTensor).
    ``x`` enters through :func:`fourier_features` with ``fourier_octaves`` frequencies (0: raw x).
    The timestep enters through ``sinusoidal_embedding(t, time_dim)`` (Vaswani et al. 2017
    §3.5, as in Ho et al. 2020 Appendix B), passed through a small MLP and added in every
    residual block. The output layer starts at zero, so the untrained model predicts 0.
    """

    def __init__(self, data_dim: int = 2, hidden: int = 128, num_blocks: int = 3, time_dim: int = 32,
                 fourier_octaves: int = 6):
        super().__init__()
        for name, value in [("data_dim", data_dim), ("hidden", hidden), ("num_blocks", num_blocks)]:
            check_positive_int(value, name)
        check_int(time_dim, "time_dim", low=2)
        check_int(fourier_octaves, "fourier_octaves", low=0)
        self.data_dim = data_dim
        self.time_dim = time_dim
        self.fourier_octaves = fourier_octaves
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.input_proj = nn.Linear(data_dim * (1 + 2 * fourier_octaves), hidden)
        self.blocks = nn.ModuleList(ResidualBlock(hidden, hidden) for _ in range(num_blocks))
        self.output = nn.Sequential(nn.SiLU(), nn.Linear(hidden, data_dim))
        nn.init.zeros_(self.output[-1].weight)
        nn.init.zeros_(self.output[-1].bias)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        if y is not None:  # a clear error instead of "forward() takes 3 positional arguments"
            raise ValueError("the MLP is unconditional: call it as model(x, t), with no class labels y")
        if x.ndim != 2 or x.shape[1] != self.data_dim:
            raise ValueError(f"x must have shape (B, {self.data_dim}), got {tuple(x.shape)}")
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must have shape ({x.shape[0]},), got {tuple(t.shape)}")
        emb = self.time_mlp(sinusoidal_embedding(t, self.time_dim).to(x.dtype))  # e_t = MLP(sinusoidal(t)), (B, hidden)
        h = self.input_proj(fourier_features(x, self.fourier_octaves) if self.fourier_octaves else x)
        for block in self.blocks:
            h = block(h, emb)
        return self.output(h)

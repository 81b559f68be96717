"""A configurable U-Net denoiser ε_θ(x_t, t) for images (Ho et al. 2020, Appendix B).

The layout follows the DDPM network (itself PixelCNN++'s backbone), trimmed to what pays
on a small budget:

- optionally a patch stem (Hoogeboom et al. 2023, "simple diffusion", §3.1; the patches of
  ViT and DiT): ``patch_size = p`` folds each p×p block of pixels into channels
  (pixel-unshuffle) before the stem and unfolds the output again (pixel-shuffle), so every
  layer runs at 1/p of the resolution and costs about 1/p² as much;
- a stem convolution, then ``len(channel_mults)`` resolution levels on the way down, each
  with ``num_res_blocks`` residual blocks and a stride-2 convolution to the next level;
- a middle of two residual blocks at the lowest resolution;
- the mirror image on the way up, where every block first concatenates the activation the
  down path saved at the same resolution (the skip connection), then nearest-neighbour
  upsampling followed by a convolution;
- residual blocks of GroupNorm → SiLU → 3×3 conv, with the timestep embedding projected to
  the block's width and *added* to the feature maps in every block;
- optional single-head self-attention at the resolutions listed in ``attention_resolutions``
  (the DDPM paper uses 16×16); the middle gets attention when the lowest resolution is listed;
- optionally a class label (``num_classes``): a learned embedding of the label is added to the
  timestep embedding, so every block sees both; the label ``NULL_LABEL`` (−1) means "no label",
  which is what classifier-free guidance needs (Ho & Salimans 2022, §3.2; see ``guidance``).

Configured, not copied: notebook 04 uses it for 28×28 MNIST, notebook 05 for 32/64 px RGB
butterflies with attention and dropout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ddpm_helpers.checks import check_number, check_positive_int
from ddpm_helpers.guidance import NULL_LABEL
from ddpm_helpers.nn.embeddings import sinusoidal_embedding


def _check_groups(channels: int, num_groups: int) -> None:
    if channels % num_groups != 0:
        raise ValueError(
            f"num_groups={num_groups} must divide every channel count, but {channels} channels do not split"
        )


class ResBlock(nn.Module):
    """h = conv(SiLU(GN(x))) + W·emb(t);  out = skip(x) + conv(dropout(SiLU(GN(h)))).

    The second convolution starts at zero, so a fresh block is the identity on its skip path
    (as in Ho et al.'s reference code and Nichol & Dhariwal 2021).
    """

    def __init__(self, in_channels: int, out_channels: int, time_dim: int, dropout: float, num_groups: int):
        super().__init__()
        _check_groups(in_channels, num_groups)
        _check_groups(out_channels, num_groups)
        self.norm1 = nn.GroupNorm(num_groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_proj = nn.Linear(time_dim, out_channels)
        self.norm2 = nn.GroupNorm(num_groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_proj(emb)[:, :, None, None]  # the timestep, added to every channel map
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Single-head self-attention over the H·W positions: out = x + W_o · softmax(QKᵀ/√C) V."""

    def __init__(self, channels: int, num_groups: int):
        super().__init__()
        _check_groups(channels, num_groups)
        self.norm = nn.GroupNorm(num_groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        batch, channels, height, width = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(batch, 3, channels, height * width).transpose(-1, -2).unbind(1)
        h = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]  # (B, HW, C)
        return x + self.out(h.transpose(-1, -2).reshape(batch, channels, height, width))


class Downsample(nn.Module):
    """Halve the resolution with a stride-2 3×3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour upsampling, then a 3×3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """U-Net ``model(x_t, t)`` (or ``model(x_t, t, y)``) → a tensor shaped like ``x_t`` (ε, x̂_0 or v, as trained).

    Arguments:
        in_channels: image channels (1 for MNIST, 3 for RGB); the output has as many.
        base_channels: width of the first level; level ``i`` has ``base_channels * channel_mults[i]``.
        channel_mults: one entry per resolution level; the image is halved between levels, so
            ``image_size`` must be divisible by ``2 ** (len(channel_mults) - 1)``.
        num_res_blocks: residual blocks per level on the way down (the way up has one more,
            taking the extra skip saved by each downsampling).
        attention_resolutions: spatial sizes (e.g. ``(7,)`` or ``(16, 8)``) that get self-attention.
        dropout: dropout inside every residual block (Ho et al. use 0.1 on CIFAR-10).
        image_size: height = width of the inputs, checked in ``forward``.
        patch_size: fold p×p pixel blocks into channels first (1: no folding); the levels then
            run at ``image_size // patch_size`` and below.
        time_dim: width of the timestep embedding MLP (default ``4 * base_channels``).
        num_groups: GroupNorm groups; must divide every channel count.
        num_classes: ``None`` for an unconditional model; else the number of class labels
            ``y ∈ {0, …, num_classes − 1}`` passed as ``model(x_t, t, y)``, where ``y = NULL_LABEL``
            (or ``y=None`` for the whole batch) asks for the unconditional prediction.
    """

    def __init__(
        self,
        in_channels: int,
        base_channels: int = 32,
        channel_mults: tuple[int, ...] = (1, 2, 2),
        num_res_blocks: int = 1,
        attention_resolutions: tuple[int, ...] = (),
        dropout: float = 0.0,
        image_size: int = 28,
        time_dim: int | None = None,
        num_groups: int = 8,
        patch_size: int = 1,
        num_classes: int | None = None,
    ):
        super().__init__()
        self._check_config(in_channels, base_channels, channel_mults, num_res_blocks, attention_resolutions, dropout,
                           image_size, time_dim, num_groups, patch_size)
        if num_classes is not None:
            check_positive_int(num_classes, "num_classes (or None)")
        self.num_classes = num_classes
        channel_mults = tuple(channel_mults)
        self.in_channels, self.image_size, self.patch_size = in_channels, image_size, patch_size
        self.base_channels = base_channels
        time_dim = time_dim or 4 * base_channels
        resolutions = [image_size // patch_size // 2**level for level in range(len(channel_mults))]
        self.resolutions = tuple(resolutions)
        self.attention_resolutions = tuple(attention_resolutions)

        # t ↦ sinusoidal features ↦ MLP: a learned embedding of the noise level.
        self.time_mlp = nn.Sequential(nn.Linear(base_channels, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        # y ↦ a learned vector added to the time embedding; row num_classes stands for NULL_LABEL.
        self.label_embedding = nn.Embedding(num_classes + 1, time_dim) if num_classes is not None else None
        self.stem = nn.Conv2d(in_channels * patch_size**2, base_channels, 3, padding=1)

        # Down path: remember the width of every activation saved for a skip connection.
        self.down = nn.ModuleList()
        skip_channels = [base_channels]
        channels = base_channels
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                block = [ResBlock(channels, base_channels * mult, time_dim, dropout, num_groups)]
                channels = base_channels * mult
                if resolutions[level] in attention_resolutions:
                    block.append(SelfAttention(channels, num_groups))
                self.down.append(nn.ModuleList(block))
                skip_channels.append(channels)
            if level < len(channel_mults) - 1:
                self.down.append(nn.ModuleList([Downsample(channels)]))
                skip_channels.append(channels)

        mid_attention = resolutions[-1] in attention_resolutions
        self.middle = nn.ModuleList(
            [ResBlock(channels, channels, time_dim, dropout, num_groups)]
            + ([SelfAttention(channels, num_groups)] if mid_attention else [])
            + [ResBlock(channels, channels, time_dim, dropout, num_groups)]
        )

        # Up path: each block consumes one saved activation (concatenated on channels).
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for index in range(num_res_blocks + 1):
                block = [ResBlock(channels + skip_channels.pop(), base_channels * mult, time_dim, dropout, num_groups)]
                channels = base_channels * mult
                if resolutions[level] in attention_resolutions:
                    block.append(SelfAttention(channels, num_groups))
                if level > 0 and index == num_res_blocks:
                    block.append(Upsample(channels))
                self.up.append(nn.ModuleList(block))

        self.head = nn.Sequential(nn.GroupNorm(num_groups, channels), nn.SiLU(),
                                  nn.Conv2d(channels, in_channels * patch_size**2, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    @staticmethod
    def _check_config(in_channels, base_channels, channel_mults, num_res_blocks, attention_resolutions, dropout,
                      image_size, time_dim, num_groups, patch_size):
        for name, value in (("in_channels", in_channels), ("base_channels", base_channels),
                            ("num_res_blocks", num_res_blocks), ("image_size", image_size),
                            ("num_groups", num_groups), ("patch_size", patch_size)):
            check_positive_int(value, name)
        if image_size % patch_size != 0:
            raise ValueError(f"image_size={image_size} must be divisible by patch_size={patch_size}")
        if time_dim is not None:
            check_positive_int(time_dim, "time_dim (or None)")
        if isinstance(channel_mults, (str, bytes)) or len(channel_mults) == 0:
            raise ValueError(f"channel_mults must be a non-empty sequence of positive ints, got {channel_mults!r}")
        for mult in channel_mults:
            check_positive_int(mult, f"every entry of channel_mults={tuple(channel_mults)!r}")
        top = image_size // patch_size  # the resolution the first level works at
        factor = 2 ** (len(channel_mults) - 1)
        if top % factor != 0:
            raise ValueError(
                f"image_size={image_size} / patch_size={patch_size} = {top} cannot be halved "
                f"{len(channel_mults) - 1} times "
                f"(channel_mults={tuple(channel_mults)}): it must be divisible by {factor}"
            )
        resolutions = {top // 2**level for level in range(len(channel_mults))}
        unknown = sorted(set(attention_resolutions) - resolutions)
        if unknown:
            raise ValueError(f"attention_resolutions {unknown} are not among the U-Net's resolutions "
                             f"{sorted(resolutions, reverse=True)}")
        check_number(dropout, "dropout", 0.0, 1.0, high_open=True)
        for mult in channel_mults:
            _check_groups(base_channels * mult, num_groups)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"expected input of shape (B, {self.in_channels}, {self.image_size}, {self.image_size}), "
                f"got {tuple(x.shape)}"
            )
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must have shape ({x.shape[0]},), got {tuple(t.shape)}")
        emb = self.time_mlp(sinusoidal_embedding(t, self.base_channels).to(x.dtype))
        if self.label_embedding is not None:
            emb = emb + self.label_embedding(self._label_index(y, x.shape[0], x.device))
        elif y is not None:
            raise ValueError("this U-Net is unconditional (num_classes=None) but was given class labels y")
        h = self.stem(F.pixel_unshuffle(x, self.patch_size))  # (B, C, H, W) → (B, C·p², H/p, W/p)
        skips = [h]
        for block in self.down:
            for layer in block:
                h = layer(h, emb)
            skips.append(h)
        for layer in self.middle:
            h = layer(h, emb)
        for block in self.up:
            h = torch.cat([h, skips.pop()], dim=1)
            for layer in block:
                h = layer(h, emb)
        return F.pixel_shuffle(self.head(h), self.patch_size)  # back to (B, C, H, W)

    def _label_index(self, y: Tensor | None, batch: int, device: torch.device) -> Tensor:
        """Row of the label embedding for each example: y itself, or num_classes for NULL_LABEL / y=None.

        Reads no label values, so a GPU never waits here: the values are checked where labels enter, on the CPU
        (``ClassifierFreeGuidance``, ``diffusion_loss``). A label outside [0, num_classes) that is not NULL_LABEL
        maps to row num_classes + 1, which does not exist, so the embedding refuses it (IndexError on a CPU, a
        device-side assert on a GPU) rather than reading the null row.
        """
        if y is None:
            return torch.full((batch,), self.num_classes, dtype=torch.long, device=device)
        if y.shape != (batch,) or y.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"y must be an integer tensor of shape ({batch},), got {y.dtype} {tuple(y.shape)}")
        index = torch.where((y >= 0) & (y < self.num_classes), y, self.num_classes + 1)  # a class is its own row
        return torch.where(y == NULL_LABEL, self.num_classes, index).long()  # NULL_LABEL ↦ row num_classes


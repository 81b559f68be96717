"""A drawing of the ``ddpm_helpers.nn.unet.UNet``: its layers as boxes in a U, with the skip connections."""

import matplotlib.pyplot as plt

_UNET_COLOURS = {"conv": "#8fbf8f", "ResBlock": "#7aa6d6", "SelfAttention": "#f0a04b", "Downsample": "#bbbbbb",
                 "Upsample": "#bbbbbb"}


def _unet_layers(model):
    """Layers of a ``ddpm_helpers.nn.unet.UNet`` in forward order as (kind, channels, resolution), and
    the skip connections as (source layer, consuming layer) index pairs."""
    res, layers, saved, skips = model.image_size, [], [], []

    def add(kind, channels):
        layers.append((kind, channels, res))

    add("conv", model.stem.out_channels)  # stem
    saved.append(0)
    for block in model.down:
        for layer in block:
            kind = type(layer).__name__
            res = res // 2 if kind == "Downsample" else res
            add(kind, layer.conv.out_channels if kind == "Downsample" else
                layer.conv1.out_channels if kind == "ResBlock" else layer.out.out_channels)
        saved.append(len(layers) - 1)
    for layer in model.middle:
        add(type(layer).__name__, layer.conv1.out_channels if hasattr(layer, "conv1") else layer.out.out_channels)
    for block in model.up:
        skips.append((saved.pop(), len(layers)))
        for layer in block:
            kind = type(layer).__name__
            res = res * 2 if kind == "Upsample" else res
            add(kind, layer.conv.out_channels if kind == "Upsample" else
                layer.conv1.out_channels if kind == "ResBlock" else layer.out.out_channels)
    add("conv", model.head[-1].out_channels)  # head
    return layers, skips


def plot_unet(model, ax=None, title: str | None = None):
    """Draw a ``ddpm_helpers`` U-Net as a U: one box per layer at the height of its output resolution,
    box height ∝ channels (the number inside), dashed arcs for the skip connections; returns the Figure."""
    from matplotlib.patches import Patch, Rectangle

    layers, skips = _unet_layers(model)
    levels = sorted({res for _, _, res in layers}, reverse=True)
    widest = max(channels for _, channels, _ in layers)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(8.0, 0.42 * len(layers)), 1.5 + 1.3 * len(levels)))
    tops = []
    for x, (kind, channels, res) in enumerate(layers):
        y = -levels.index(res)
        height = 0.2 + 0.5 * channels / widest
        ax.add_patch(Rectangle((x - 0.4, y - height / 2), 0.8, height,
                               facecolor=_UNET_COLOURS[kind], edgecolor="k", lw=0.6))
        ax.text(x, y, str(channels), ha="center", va="center", fontsize=7, rotation=90)
        tops.append(y + height / 2)
        if x:
            ax.plot([x - 0.6, x - 0.4], [-levels.index(layers[x - 1][2]), y], color="k", lw=0.8)
    for source, target in skips:
        y = tops[source]
        ax.annotate("", xy=(target, tops[target]), xytext=(source, y),
                    arrowprops=dict(arrowstyle="->", ls="--", color="0.4", lw=0.8,
                                    connectionstyle=f"arc3,rad={-0.4 * min(1.0, 8 / (target - source)):.3f}"))
    ax.set_yticks([-i for i in range(len(levels))], [f"{res}×{res}" for res in levels])
    ax.set_xticks([])
    ax.set_xlim(-1, len(layers))
    ax.set_ylim(-len(levels) + 0.4, 1.4)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    names = {"conv": "3×3 conv (stem, head)", "ResBlock": "residual block", "SelfAttention": "self-attention",
             "Downsample": "down/up-sample"}
    ax.legend(handles=[Patch(facecolor=_UNET_COLOURS[k], edgecolor="k", label=v) for k, v in names.items()],
              loc="upper center", ncol=4, fontsize=8, frameon=False, bbox_to_anchor=(0.5, 0.0))
    if title:
        ax.set_title(title)
    return ax.figure

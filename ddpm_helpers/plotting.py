"""Shared matplotlib helpers: image grids, 2-D scatter plots, vector fields, loss curves, animations.

Images are tensors in [−1, 1] (the data range of the notebooks), shaped ``(B, C, H, W)``.
Functions that draw return the matplotlib Figure (or Axes when given one), so a notebook can
save or tweak it; the notebook's inline backend shows it.
"""

import base64
import html
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import torch
import torchvision
from matplotlib import animation
from torch import Tensor

from ddpm_helpers.checks import check_positive_int


def make_grid(x: Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 1.0) -> Tensor:
    """Tile images ``(B, C, H, W)`` in [−1, 1] into one image ``(C, H', W')`` in [0, 1], ``nrow`` per row.

    ``torchvision.utils.make_grid`` on the images mapped to [0, 1], keeping the input's channels
    (torchvision repeats a single channel three times).
    """
    if not isinstance(x, Tensor) or x.ndim != 4 or len(x) == 0:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be a non-empty Tensor (B, C, H, W), got {got}")
    check_positive_int(nrow, "nrow")
    images = ((x.detach().float().cpu() + 1) / 2).clamp(0, 1)  # [−1, 1] → [0, 1]
    grid = torchvision.utils.make_grid(images, nrow=nrow, padding=padding, pad_value=pad_value)
    return grid[: x.shape[1]]


def _imshow_grid(ax, grid: Tensor):
    if grid.shape[0] == 1:
        artist = ax.imshow(grid[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        artist = ax.imshow(grid.permute(1, 2, 0).numpy())
    ax.set_axis_off()
    return artist


def show_images(x: Tensor, nrow: int = 8, title: str | None = None, ax=None, scale: float = 0.9):
    """Show images ``(B, C, H, W)`` in [−1, 1] as one grid; ``scale`` inches per image when creating the figure."""
    grid = make_grid(x, nrow=nrow)
    if ax is None:
        cols = min(nrow, len(x))
        rows = -(-len(x) // cols)
        fig, ax = plt.subplots(figsize=(scale * cols, scale * rows + (0.4 if title else 0)))
    _imshow_grid(ax, grid)
    if title:
        ax.set_title(title)
    return ax.figure


COORDINATE_LABELS = ("$x^{(1)}$", "$x^{(2)}$")  # the two coordinates of a 2-D point (notebooks 02 and 03)


def _square_window(ax, lim: float, title: str | None):
    """Show ``[−lim, lim]²`` at equal scale, its axes labelled with the coordinates and ticked at the integers,
    with an optional title; returns the Axes."""
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ticks = list(range(-int(lim), int(lim) + 1))
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.tick_params(labelsize=7, length=2, pad=1)
    ax.set_xlabel(COORDINATE_LABELS[0], fontsize=8, labelpad=1)
    ax.set_ylabel(COORDINATE_LABELS[1], fontsize=8, labelpad=1)
    if title:
        ax.set_title(title)
    return ax


def scatter_2d(x: Tensor, ax=None, title: str | None = None, lim: float = 3.0, s: float = 2.0,
               alpha: float = 0.5, color: str = "C0", **kwargs):
    """Scatter plot of points ``(N, 2)`` on a square ``[−lim, lim]²`` window; returns the Axes."""
    if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[1] != 2:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be a Tensor of shape (N, 2), got {got}")
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    points = x.detach().float().cpu().numpy()
    ax.scatter(points[:, 0], points[:, 1], s=s, alpha=alpha, color=color, linewidths=0, **kwargs)
    return _square_window(ax, lim, title)


def scatter_grid(panels: dict[str, Tensor], ncols: int = 4, lim: float = 3.0, size: float = 2.6, **kwargs):
    """One :func:`scatter_2d` panel per ``{title: points}`` entry, ``ncols`` per row, the coordinates named
    on the outer panels only; returns the Figure."""
    if not panels:
        raise ValueError("panels must hold at least one {title: points} entry")
    ncols = min(ncols, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax, (title, points) in zip(axes.flat, panels.items()):
        scatter_2d(points, ax=ax, title=title, lim=lim, **kwargs)
        ax.label_outer()  # coordinate names and tick labels on the left column and the bottom row
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def quiver_2d(xy: Tensor, uv: Tensor, ax=None, title: str | None = None, lim: float = 3.0, color=None,
              values: Tensor | None = None, **kwargs):
    """Arrows ``uv`` (N, 2) drawn at points ``xy`` (N, 2), e.g. a learned ε or score field; returns the Axes.

    Arrow length is in data units (``scale=1``) unless ``scale`` is passed. ``values`` (N,) colours the
    arrows through ``cmap``/``norm`` (e.g. by the length of the vectors the arrows stand for, when the
    arrows show only directions); the arrows are then ``ax.collections[-1]``, ready for a colour bar.
    """
    if xy.shape != uv.shape or xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"xy and uv must both have shape (N, 2), got {tuple(xy.shape)} and {tuple(uv.shape)}")
    if values is not None and tuple(values.shape) != (xy.shape[0],):
        raise ValueError(f"values must have shape ({xy.shape[0]},), got {tuple(values.shape)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    p, v = xy.detach().float().cpu().numpy(), uv.detach().float().cpu().numpy()
    kwargs.setdefault("scale", 1.0)
    kwargs.setdefault("scale_units", "xy")
    kwargs.setdefault("angles", "xy")
    kwargs.setdefault("width", 0.004)
    colour = () if values is None else (values.detach().float().cpu().numpy(),)  # quiver's C is positional only
    ax.quiver(p[:, 0], p[:, 1], v[:, 0], v[:, 1], *colour, color=color, **kwargs)
    return _square_window(ax, lim, title)


def plot_loss_curve(losses: Sequence[float], ax=None, window: int = 100, title: str = "training loss",
                    log: bool = True):
    """Per-step losses (light) and their running mean over ``window`` steps (dark); returns the Axes."""
    if len(losses) == 0:
        raise ValueError("losses is empty: nothing to plot")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    values = torch.as_tensor(list(losses), dtype=torch.float64)
    window = max(1, min(window, len(values)))
    smooth = values.cumsum(0)
    smooth[window:] = smooth[window:] - smooth[:-window].clone()
    smooth = smooth / torch.arange(1, len(values) + 1).clamp(max=window)  # mean of the last ≤ window losses
    steps = range(len(values))
    ax.plot(steps, values.numpy(), color="C0", alpha=0.25, linewidth=0.8, label="per step")
    ax.plot(steps, smooth.numpy(), color="C0", linewidth=1.8, label=f"mean of last {window}")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(loc="upper right")
    return ax


def gif_html(path: str | Path, alt: str = "animation"):
    """``IPython.display.HTML`` showing the GIF at ``path`` as ``<img src="data:image/gif;base64,…">``.

    An ``<img>`` renders everywhere a notebook is shown: Jupyter, Colab, GitHub (which strips scripts)
    and nbconvert/nbviewer (which have no ``image/gif`` output type).
    """
    from IPython.display import HTML

    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"path must end in .gif, got {path}")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return HTML(f'<img src="data:image/gif;base64,{data}" alt="{html.escape(alt)}">')


def save_animation(frames: Sequence[Tensor] | Tensor, path: str | Path, titles: Sequence[str] | None = None,
                   fps: int = 10, lim: float = 3.0, size: float = 3.5, dpi: int = 72, nrow: int = 8, s: float = 2.0):
    """Animate ``frames`` (each ``(N, 2)`` points or ``(B, C, H, W)`` images in [−1, 1]), save a GIF at ``path``
    and return it as :func:`gif_html`, an ``<img>`` that a notebook shows inline."""
    frames = list(frames)
    if not frames:
        raise ValueError("frames is empty: nothing to animate")
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"path must end in .gif, got {path}")
    if titles is not None and len(titles) != len(frames):
        raise ValueError(f"got {len(titles)} titles for {len(frames)} frames")
    points = frames[0].ndim == 2
    fig, ax = plt.subplots(figsize=(size, size), dpi=dpi)
    if points:
        scatter_2d(frames[0], ax=ax, lim=lim, s=s)
        artist = ax.collections[0]
    else:
        artist = _imshow_grid(ax, make_grid(frames[0], nrow=nrow))
    fig.tight_layout()

    def draw(i):
        if points:
            artist.set_offsets(frames[i].detach().float().cpu().numpy())
        else:
            grid = make_grid(frames[i], nrow=nrow)
            artist.set_data(grid[0].numpy() if grid.shape[0] == 1 else grid.permute(1, 2, 0).numpy())
        if titles is not None:
            ax.set_title(titles[i])
        return (artist,)

    anim = animation.FuncAnimation(fig, draw, frames=len(frames), interval=1000 / fps, blit=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    anim.save(path, writer=animation.PillowWriter(fps=fps))
    plt.close(fig)
    return gif_html(path, alt=path.stem.replace("_", " "))


# ---------------------------------------------------------------- nearest neighbours (notebook 05)


def show_neighbours(queries: Tensor, references: Tensor, neighbours, names: Sequence[str] | None = None,
                    size: float = 1.25):
    """One row per query: the query, then its nearest references (mirrored when the mirror image was the
    match), titled with their distance; ``neighbours`` is a ``ddpm_helpers.evaluation.neighbours.Neighbours``."""
    count, k = neighbours.indices.shape
    if len(queries) != count:
        raise ValueError(f"got {len(queries)} queries but neighbours for {count}")
    fig, axes = plt.subplots(count, k + 1, figsize=(size * (k + 1), size * count + 0.3), squeeze=False)
    for row in range(count):
        _imshow_grid(axes[row, 0], make_grid(queries[row:row + 1], padding=0))
        axes[row, 0].set_title(names[row] if names else "sample", fontsize=8)
        for j in range(k):
            image = references[neighbours.indices[row, j]].unsqueeze(0)
            flipped = bool(neighbours.flipped[row, j])
            _imshow_grid(axes[row, j + 1], make_grid(image.flip(-1) if flipped else image, padding=0))
            label = f"#{int(neighbours.indices[row, j])}{' ⇋' if flipped else ''}"
            axes[row, j + 1].set_title(f"{label}  d={float(neighbours.distances[row, j]):.3f}", fontsize=8)
    fig.tight_layout()
    return fig

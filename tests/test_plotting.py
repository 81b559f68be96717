"""Tests of the shared plotting helpers."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from ddpm_helpers.plotting import (  # noqa: E402
    COORDINATE_LABELS,
    make_grid,
    plot_loss_curve,
    quiver_2d,
    save_animation,
    scatter_2d,
    scatter_grid,
    show_images,
)


def test_make_grid_maps_range_and_tiles():
    x = torch.stack([torch.full((1, 3, 4), -1.0), torch.full((1, 3, 4), 1.0), torch.zeros(1, 3, 4)])
    grid = make_grid(x, nrow=2, padding=1, pad_value=0.5)
    assert grid.shape == (1, 1 + 2 * (3 + 1), 1 + 2 * (4 + 1))
    assert torch.all(grid[0, 1:4, 1:5] == 0.0)  # −1 → black
    assert torch.all(grid[0, 1:4, 6:10] == 1.0)  # +1 → white
    assert torch.all(grid[0, 5:8, 1:5] == 0.5)  # 0 → grey
    assert grid[0, 0, 0] == 0.5 and torch.all(grid[0, 5:8, 6:10] == 0.5)  # padding and the empty slot
    with pytest.raises(ValueError, match="nrow"):
        make_grid(x, nrow=0)
    with pytest.raises(ValueError, match=r"\(3, 4\)"):
        make_grid(torch.zeros(3, 4))


def test_show_images_and_scatter_helpers_return_figures():
    fig = show_images(torch.rand(6, 3, 8, 8) * 2 - 1, nrow=3, title="six")
    assert fig.axes[0].get_title() == "six"
    ax = scatter_2d(torch.randn(50, 2), title="pts", lim=2)
    assert ax.get_xlim() == (-2, 2) and len(ax.collections[0].get_offsets()) == 50
    assert (ax.get_xlabel(), ax.get_ylabel()) == COORDINATE_LABELS and list(ax.get_xticks()) == [-2, -1, 0, 1, 2]
    fig = scatter_grid({"a": torch.randn(10, 2), "b": torch.randn(10, 2), "c": torch.randn(10, 2)}, ncols=2)
    assert [a.get_title() for a in fig.axes[:3]] == ["a", "b", "c"]
    # the coordinates are named on the outer panels only: the left column and the bottom row (here "c")
    assert [(a.get_xlabel(), a.get_ylabel()) for a in fig.axes[:3]] == [
        ("", COORDINATE_LABELS[1]), ("", ""), COORDINATE_LABELS]
    with pytest.raises(ValueError, match=r"\(5, 3\)"):
        scatter_2d(torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        quiver_2d(torch.zeros(4, 2), torch.zeros(3, 2))
    plt.close("all")


def test_quiver_colours_arrows_by_values():
    xy, uv = torch.randn(5, 2), torch.randn(5, 2)
    ax = quiver_2d(xy, uv, values=uv.norm(dim=1), cmap="viridis")
    arrows = ax.collections[-1]
    assert arrows.get_array().tolist() == pytest.approx(uv.norm(dim=1).tolist())
    assert (ax.get_xlabel(), ax.get_ylabel()) == COORDINATE_LABELS
    with pytest.raises(ValueError, match=r"values must have shape \(5,\)"):
        quiver_2d(xy, uv, values=torch.ones(4))
    plt.close("all")


def test_loss_curve_running_mean():
    ax = plot_loss_curve([4.0, 2.0, 6.0, 8.0], window=2)
    raw, smooth = ax.lines[0].get_ydata(), ax.lines[1].get_ydata()
    assert list(raw) == [4.0, 2.0, 6.0, 8.0]
    assert list(smooth) == [4.0, 3.0, 4.0, 7.0]
    with pytest.raises(ValueError, match="empty"):
        plot_loss_curve([])
    plt.close("all")


def test_save_animation_writes_gif_and_returns_it_as_an_img(tmp_path):
    frames = [torch.randn(30, 2) * (1 + i) for i in range(4)]
    html = save_animation(frames, tmp_path / "points.gif", titles=[f"t={i}" for i in range(4)])
    assert html.data.startswith('<img src="data:image/gif;base64,') and "<script" not in html.data
    with Image.open(tmp_path / "points.gif") as gif:
        assert gif.n_frames == 4
    images = torch.rand(3, 5, 1, 8, 8) * 2 - 1
    save_animation(images, tmp_path / "images.gif", nrow=5)
    with Image.open(tmp_path / "images.gif") as gif:
        assert gif.n_frames == 3
    with pytest.raises(ValueError, match="gif"):
        save_animation(frames, tmp_path / "x.mp4")
    with pytest.raises(ValueError, match="titles"):
        save_animation(frames, tmp_path / "y.gif", titles=["one"])


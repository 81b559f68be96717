"""Animations render everywhere: an <img> with the GIF as a data URI survives `jupyter nbconvert --to html`."""

import base64
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from PIL import Image

from ddpm_helpers.plotting import gif_html, save_animation

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
IMG = re.compile(r'<img\b[^>]*\bsrc="data:image/gif;base64,([A-Za-z0-9+/=]+)"')  # any attribute order


def two_animations(folder: Path) -> list[Path]:
    points = save_animation([torch.randn(20, 2) * (1 + i) for i in range(3)], folder / "points.gif")
    images = save_animation(torch.rand(3, 4, 3, 8, 8) * 2 - 1, folder / "images.gif", nrow=2)
    assert points.data.startswith("<img") and images.data.startswith("<img")
    return [folder / "points.gif", folder / "images.gif"]


def animation_notebook(gifs: list[Path]) -> nbformat.NotebookNode:
    """A notebook whose cells show each GIF the way notebooks 03 and 05 do (output of save_animation)."""
    nb = nbformat.v4.new_notebook()
    for i, gif in enumerate(gifs):
        html = gif_html(gif)
        output = nbformat.v4.new_output("execute_result", data={"text/html": html.data, "text/plain": repr(html)},
                                        execution_count=i + 1)
        nb.cells.append(nbformat.v4.new_code_cell(f"# NBVAL_IGNORE_OUTPUT\nsave_animation(frames, '{gif.name}')",
                                                  outputs=[output], execution_count=i + 1))
    nbformat.validate(nb)
    return nb


def embedded_gifs(text: str) -> list[bytes]:
    return [base64.b64decode(match) for match in IMG.findall(text)]


def test_gif_html_embeds_the_file_itself(tmp_path):
    gifs = two_animations(tmp_path)
    for gif in gifs:
        assert embedded_gifs(gif_html(gif).data) == [gif.read_bytes()]
        with Image.open(gif) as image:
            assert image.format == "GIF" and image.n_frames == 3
    with pytest.raises(ValueError, match="x.png"):
        gif_html(tmp_path / "x.png")


@pytest.mark.skipif(importlib.util.find_spec("nbconvert") is None, reason="nbconvert is not installed")
def test_nbconvert_html_shows_each_animation_as_an_img(tmp_path):
    gifs = two_animations(tmp_path)
    notebook = tmp_path / "animations.ipynb"
    nbformat.write(animation_notebook(gifs), notebook)
    subprocess.run([sys.executable, "-m", "nbconvert", "--to", "html", str(notebook)], check=True,
                   capture_output=True, timeout=120)
    html = (tmp_path / "animations.html").read_text(encoding="utf-8")
    assert embedded_gifs(html) == [gif.read_bytes() for gif in gifs]


def check_animation_outputs(notebook: Path) -> None:
    """Each animation cell of ``notebook`` outputs an <img> (which GitHub and nbconvert show), never a
    JavaScript player or an image/gif output, and nbval ignores that output (its base64 differs per run)."""
    cells = [c for c in json.loads(notebook.read_text(encoding="utf-8"))["cells"]
             if c["cell_type"] == "code" and "save_animation(" in "".join(c["source"])]
    assert cells, f"{notebook.name} has no animation cell"
    for cell in cells:
        assert "".join(cell["source"]).startswith("# NBVAL_IGNORE_OUTPUT"), notebook.name
        data = [output.get("data", {}) for output in cell["outputs"]]
        assert not any("image/gif" in d or "<script" in "".join(d.get("text/html", "")) for d in data), notebook.name
        assert any(IMG.search("".join(d.get("text/html", ""))) for d in data), notebook.name


@pytest.mark.parametrize("name", ["03_toy_2d.ipynb", "05_butterflies.ipynb"])
def test_the_committed_notebooks_show_animations_as_img(name):
    check_animation_outputs(NOTEBOOKS / name)

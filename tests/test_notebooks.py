"""Notebook pairing and hygiene: what `pytest --nbval` (which re-runs them) does not check.

For every committed notebooks/NN_name.ipynb:
- its percent-format twin NN_name.py exists and holds the same cells (jupytext pairing);
- it looks like a clean top-to-bottom run: execution counts 1..N, no error outputs,
  kernel ``python3``, no absolute local paths in sources or outputs.
The checkers themselves are tested on small in-memory notebooks, so this file tests
something even before the first notebook lands.
"""

import re
from pathlib import Path

import jupytext
import nbformat
import pytest
from jupytext.config import load_jupytext_config
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from nbval.plugin import get_sanitize_patterns

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
NAME = re.compile(r"\d\d_[a-z0-9]+(?:_[a-z0-9]+)*")
# /work/…, /root/…, /home/…, /Users/…, /tmp/… (not inside URLs) and Windows drives (C:\…)
LOCAL_PATH = re.compile(r"(?<![\w.:/])/(?:work|root|home|Users|tmp)/|(?<![A-Za-z])[A-Z]:\\\w")

CONTROL_CHARACTER = re.compile(r"[\x00-\x09\x0b-\x1f]")  # tab, backspace, form feed…: \times typed as "\t" + "imes"


def cells_of(path: Path) -> list[tuple[str, str]]:
    """(cell type, source) of every cell, read with jupytext whatever the format."""
    return [(cell.cell_type, cell.source) for cell in jupytext.read(path).cells]


def pairing_problems(notebook: Path) -> list[str]:
    twin = notebook.with_suffix(".py")
    if not twin.exists():
        return [f"{twin.name} is missing: jupytext --set-formats ipynb,py:percent {notebook.name}"]
    ours, theirs = cells_of(notebook), cells_of(twin)
    for index, (cell, twin_cell) in enumerate(zip(ours, theirs)):
        if cell != twin_cell:
            return [f"cell {index} differs:\n  .ipynb: {cell!r}\n  .py:    {twin_cell!r}\n(jupytext --sync)"]
    if len(ours) != len(theirs):
        return [f"{notebook.name} has {len(ours)} cells, {twin.name} has {len(theirs)} (jupytext --sync)"]
    return []


def _output_texts(output):
    if "text" in output:
        yield output["text"]
    for mime, value in output.get("data", {}).items():
        if not mime.startswith("image/") and isinstance(value, str):
            yield value
    yield from output.get("traceback", [])


def hygiene_problems(nb) -> list[str]:
    problems = []
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    if kernel != "python3":
        problems.append(f"kernelspec name is {kernel!r}, expected 'python3'")
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    counts = [cell.execution_count for cell in code if cell.source.strip()]
    if counts != list(range(1, len(counts) + 1)):
        shown = f"{counts[:10]}"[:-1] + (", …]" if len(counts) > 10 else "]")
        problems.append(f"execution counts are {shown}, expected 1..{len(counts)}: run top to bottom in a fresh kernel")
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and CONTROL_CHARACTER.search(cell.source):
            problems.append(f"markdown cell {index} holds a control character "
                            "(a LaTeX \\t or \\b typed into a Python string?)")
        texts = [cell.source]
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                problems.append(f"cell {index} has an error output: {output.ename}: {output.evalue}")
            texts.extend(_output_texts(output))
        for text in texts:
            match = LOCAL_PATH.search(text)
            if match:
                line = text[text.rfind("\n", 0, match.start()) + 1 :].split("\n", 1)[0]
                problems.append(f"cell {index} holds an absolute local path: {line.strip()[:120]!r}")
    return problems


# --- the committed notebooks --------------------------------------------------------


def test_pairing_is_configured_for_notebooks():
    notebook = str(NOTEBOOKS_DIR / "00_any.ipynb")
    config = load_jupytext_config(notebook)
    assert config is not None, "jupytext.toml not found from notebooks/"
    assert config.default_formats(notebook) == "ipynb,py:percent"


def test_notebook_names_follow_convention():
    files = sorted(NOTEBOOKS_DIR.glob("*.ipynb")) + sorted(NOTEBOOKS_DIR.glob("*.py"))
    assert [p.name for p in files if not NAME.fullmatch(p.stem)] == []


def test_every_twin_has_its_notebook():
    orphans = [p.name for p in sorted(NOTEBOOKS_DIR.glob("*.py")) if not p.with_suffix(".ipynb").exists()]
    assert orphans == [], "a .py twin without its .ipynb: jupytext --sync creates it"


def test_readme_links_every_notebook():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in NOTEBOOKS if f"notebooks/{p.name}" not in readme]
    assert missing == [], "add these notebooks to the README's table"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_twin_matches_notebook(notebook):
    problems = pairing_problems(notebook)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_a_clean_committed_run(notebook):
    problems = hygiene_problems(nbformat.read(notebook, as_version=4))
    assert not problems, "\n".join(problems)


# --- the checkers, on small notebooks -----------------------------------------------


def executed_notebook():
    nb = new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        new_markdown_cell("# Title\n\nData live under `config.data_dir()`; see https://example.org/home/x."),
        new_code_cell("x = 1\nprint(x)", execution_count=1, outputs=[new_output("stream", name="stdout", text="1\n")]),
        new_code_cell("", execution_count=None),
        new_code_cell(
            "x", execution_count=2, outputs=[new_output("execute_result", {"text/plain": "1"}, execution_count=2)]
        ),
    ]
    return nb


def test_hygiene_accepts_a_clean_run():
    assert hygiene_problems(executed_notebook()) == []


@pytest.mark.parametrize(
    "spoil, problem",
    [
        (lambda nb: nb.metadata.kernelspec.update(name="conda-env-ddpm"), "kernelspec name is 'conda-env-ddpm'"),
        (lambda nb: nb.metadata.pop("kernelspec"), "kernelspec name is None"),
        (lambda nb: setattr(nb.cells[3], "execution_count", 5), "execution counts are [1, 5]"),
        (lambda nb: setattr(nb.cells[1], "execution_count", None), "execution counts are [None, 2]"),
        (lambda nb: nb.cells.reverse(), "execution counts are [2, 1]"),
        (
            lambda nb: nb.cells[3].outputs.append(
                new_output("error", ename="ValueError", evalue="bad t", traceback=[])
            ),
            "cell 3 has an error output: ValueError: bad t",
        ),
        (
            lambda nb: nb.cells[1].outputs[0].update(text="saved /work/main/outputs/a.png\n"),
            "cell 1 holds an absolute local path",
        ),
        (lambda nb: nb.cells[3].outputs[0].data.update({"text/html": "<p>/Users/me/x</p>"}), "cell 3 holds"),
        (lambda nb: setattr(nb.cells[1], "source", 'root = "/home/me/data"'), "cell 1 holds"),
        (lambda nb: setattr(nb.cells[0], "source", "Put it in C:\\Users\\me"), "cell 0 holds"),
        (
            lambda nb: nb.cells[1].outputs.append(
                new_output("stream", name="stderr", text="/tmp/ipykernel_1/2.py:3: Warn\n")
            ),
            "cell 1 holds",
        ),
        (lambda nb: setattr(nb.cells[0], "source", "a $7\times7$ grid"), "markdown cell 0 holds a control character"),
    ],
)
def test_hygiene_names_each_problem(spoil, problem):
    nb = executed_notebook()
    spoil(nb)
    problems = hygiene_problems(nb)
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_hygiene_ignores_image_payloads():
    nb = executed_notebook()
    data = {"image/png": "AAAA/tmp/BBBB", "text/plain": "<Figure size 640x480 with 1 Axes>"}
    nb.cells[3].outputs.append(new_output("display_data", data))
    assert hygiene_problems(nb) == []


@pytest.fixture
def pair(tmp_path):
    notebook = tmp_path / "01_demo.ipynb"
    nbformat.write(executed_notebook(), notebook)
    jupytext.write(jupytext.read(notebook), notebook.with_suffix(".py"), fmt="py:percent")
    return notebook


def test_pairing_accepts_a_synced_pair(pair):
    assert pairing_problems(pair) == []


def test_pairing_reports_a_missing_twin(pair):
    pair.with_suffix(".py").unlink()
    assert pairing_problems(pair)[0].startswith("01_demo.py is missing")


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda text: text.replace("x = 1", "x = 2"), "cell 1 differs"),
        (lambda text: text.replace("# %% [markdown]", "# %%"), "cell 0 differs"),
        (lambda text: text + "\n# %%\nprint('new')\n", "01_demo.ipynb has 4 cells, 01_demo.py has 5"),
    ],
)
def test_pairing_reports_a_stale_twin(pair, edit, problem):
    twin = pair.with_suffix(".py")
    twin.write_text(edit(twin.read_text()))
    problems = pairing_problems(pair)
    assert len(problems) == 1 and problems[0].startswith(problem), problems


# --- nbval sanitizing ------------------------------------------------------------------


def sanitize(text: str) -> str:
    patterns = get_sanitize_patterns((ROOT / "tests" / "nbval_sanitize.cfg").read_text())
    for regex, replacement in patterns:
        text = re.sub(regex, replacement, text)
    return text


@pytest.mark.parametrize(
    "quick, full",
    [
        (
            "train: 100%|██████████| 200/200 [00:01<00:00, 150.31it/s]\n",
            "train: 100%|██████████| 5000/5000 [03:02<00:00, 27.40it/s]\n",
        ),
        (
            "sampling:  50%|█████     | 5/10 [00:05<00:05,  1.01s/it]",
            "sampling:  50%|█████     | 50/100 [01:00<01:00,  1.20s/it]",
        ),
        ("[<matplotlib.lines.Line2D at 0x7f3a5c2d0e50>]", "[<matplotlib.lines.Line2D at 0x7fad6f1e2d90>]"),
        ("/tmp/ipykernel_3650/1197041947.py:3: UserWarning: hello", "/tmp/ipykernel_812/77.py:3: UserWarning: hello"),
        (
            "trained in 1.2 s (12ms per step), wall time 3.5 seconds",
            "trained in 301.9 s (150ms per step), wall time 12 seconds",
        ),
    ],
)
def test_sanitizing_equates_volatile_text(quick, full):
    assert sanitize(quick) == sanitize(full)


@pytest.mark.parametrize(
    "text",
    [
        "loss 0.1234 after 1000 steps\n",
        "alpha_bar[T-1] = 4.0358e-05, x_t shape torch.Size([64, 1, 28, 28])\n",
        "<Figure size 640x480 with 3 Axes>",
        "0x1F is 31; 25% of the samples | 3 samples/s is not a bar\n",
        "see https://example.org/home/page and data/MNIST/raw\n",
    ],
)
def test_sanitizing_keeps_results(text):
    assert sanitize(text) == text


# --- the header's run time is the one this run printed -----------------------------------

RUN_TIME = re.compile(r"(?:ran in|run time:)\s*(\d+(?:\.\d+)?) (s|min)\b")


def run_time_problems(nb) -> list[str]:
    """The run time the last cells print must be quoted in the first markdown cell (the header's table)."""
    printed = [m for cell in nb.cells if cell.cell_type == "code" for output in cell.get("outputs", [])
               for m in RUN_TIME.finditer(output.get("text", "") if output.get("output_type") == "stream" else "")]
    if not printed:
        return ["no cell prints the notebook's run time ('ran in …' / 'run time: …')"]
    value, unit = printed[-1].groups()
    header = next(cell.source for cell in nb.cells if cell.cell_type == "markdown")
    if f"{value} {unit}" not in header:
        return [f"the run printed {value} {unit}, which the header's run-time table does not quote"]
    return []


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_header_quotes_the_printed_run_time(notebook):
    problems = run_time_problems(nbformat.read(notebook, as_version=4))
    assert not problems, "\n".join(problems)


def test_run_time_check_catches_a_stale_header():
    nb = new_notebook(cells=[new_markdown_cell("| CPU | 20 s |"),
                             new_code_cell("print(...)", outputs=[new_output("stream", name="stdout",
                                                                             text="notebook ran in 6.4 s\n")])])
    assert run_time_problems(nb) == ["the run printed 6.4 s, which the header's run-time table does not quote"]
    nb.cells[0].source = "| CPU | 6.4 s (measured) |"
    assert run_time_problems(nb) == []

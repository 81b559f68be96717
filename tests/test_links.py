"""One address and one version: everything that names the repository or the helpers' version agrees with
pyproject.toml ([project.urls] Source) and ddpm_helpers.__version__, and every link works outside a clone.

- Every GitHub, Colab, Binder and raw address of this project, in any file of the checkout, is the one address.
- Links to files of the repository (README, documents, notebooks) use the right ref and name files that exist;
  the notebooks have no relative links (they break in Colab) and every notebook has a Colab badge.
- The first code cell is the same in every notebook, installs from the one address and expects this version;
  it is run here: inside a clone, outside one when installing fails, and with a mismatched version.
"""

import io
import re
import subprocess
import sys
import tomllib
from contextlib import redirect_stdout
from pathlib import Path

import jupytext
import pytest

import ddpm_helpers

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT_TEXT = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
PROJECT = tomllib.loads(PYPROJECT_TEXT)["project"]
SOURCE = PROJECT["urls"]["Source"]
REPOSITORY, _, PINNED_REF = SOURCE.partition("/tree/")  # <address> or <address>/tree/<tag or commit>
SLUG = REPOSITORY.removeprefix("https://github.com/")
LINK_REF = PINNED_REF or "main"  # the ref that links and badges use: the pinned one, else the default branch
INSTALL_SPEC = f"git+{REPOSITORY}" + (f"@{PINNED_REF}" if PINNED_REF else "")
TWINS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
VERSION = ddpm_helpers.__version__
HELPERS_REF = re.search(r'^HELPERS_REF = "([0-9a-f]{40})"', TWINS[0].read_text(encoding="utf-8"), re.M).group(1)
SKIPPED_DIRS = {".git", ".venv", "outputs", "data", "build", "dist", "__pycache__", ".ipynb_checkpoints"}
TEXT_SUFFIXES = {".md", ".py", ".toml", ".txt", ".yml", ".yaml", ".cfg", ".ipynb", ""}
# owner/name after each host that addresses a GitHub repository
ADDRESS = re.compile(r"(?:github\.com|raw\.githubusercontent\.com|colab\.research\.google\.com/github"
                     r"|mybinder\.org/v2/gh)"
                     r"/([\w.-]+)/([\w.-]+?)(?:\.git)?(?=[/@\s)\]\"'?#]|$)")
FILE_LINK = re.compile(rf"(?:{re.escape(REPOSITORY)}|colab\.research\.google\.com/github/{re.escape(SLUG)})"
                       r"/(?:blob|tree)/([^/\s)]+)/([^\s)\]\"'#?]+)")
BINDER_LINK = re.compile(rf"mybinder\.org/v2/gh/{re.escape(SLUG)}/([^/?\s)]+)")
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)|(?:href|src)=[\"']([^\"']+)")
ABSOLUTE = ("https://", "http://", "mailto:", "#", "data:", "attachment:")


def checkout_files():
    for path in sorted(ROOT.rglob("*")):
        parts = set(path.relative_to(ROOT).parts[:-1])
        if path.is_file() and not parts & SKIPPED_DIRS and path.suffix in TEXT_SUFFIXES and path.stat().st_size < 5e6:
            yield path


def documents():
    """What readers follow links in: the Markdown files and the notebooks' twins."""
    return [p for p in checkout_files() if p.suffix == ".md"] + TWINS


def first_code_cell(twin: Path) -> str:
    return next(cell.source for cell in jupytext.read(twin).cells if cell.cell_type == "code")


def test_the_one_address_is_a_github_repository():
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", REPOSITORY), SOURCE
    assert re.fullmatch(r"[\w.-]*", PINNED_REF), f"Source {SOURCE!r}: write a pinned ref as <address>/tree/<ref>"


def test_every_address_of_the_project_is_the_one_in_pyproject():
    wrong = [
        f"{path.relative_to(ROOT)}: {owner}/{name}"
        for path in checkout_files()
        for owner, name in ADDRESS.findall(path.read_text(encoding="utf-8", errors="replace"))
        if "ddpm" in f"{owner}/{name}".lower() and f"{owner}/{name}" != SLUG
    ]
    assert wrong == [], f"these addresses disagree with [project.urls] Source = {SOURCE}"


@pytest.mark.parametrize("document", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_links_into_the_repository_use_its_ref_and_existing_files(document):
    text = document.read_text(encoding="utf-8")
    links = FILE_LINK.findall(text)
    problems = [f"{ref}/{path}" for ref, path in links if ref != LINK_REF or not (ROOT / path).exists()]
    problems += [f"Binder at {ref}" for ref in BINDER_LINK.findall(text) if ref != LINK_REF]
    assert problems == [], f"links must use ref {LINK_REF!r} and name files of this checkout"


@pytest.mark.parametrize("twin", TWINS, ids=lambda p: p.name)
def test_notebooks_have_no_relative_links(twin):
    markdown = "\n".join(cell.source for cell in jupytext.read(twin).cells if cell.cell_type == "markdown")
    targets = [target for match in MARKDOWN_LINK.findall(markdown) for target in match if target]
    relative = [target for target in targets if not target.startswith(ABSOLUTE)]
    assert relative == [], f"relative links break in Colab: write {REPOSITORY}/blob/{LINK_REF}/<path>"


def test_readme_has_a_colab_badge_for_every_notebook_and_only_for_existing_ones():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    badge = rf"colab\.research\.google\.com/github/{re.escape(SLUG)}/blob/{re.escape(LINK_REF)}/notebooks/([\w.-]+)"
    badged = re.findall(badge, readme)
    assert sorted(badged) == sorted(twin.with_suffix(".ipynb").name for twin in TWINS)


def test_readme_has_a_binder_badge():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"mybinder.org/v2/gh/{SLUG}/{LINK_REF}" in readme and "mybinder.org/badge_logo.svg" in readme


@pytest.mark.parametrize("twin", TWINS, ids=lambda p: p.name)
def test_notebooks_that_train_image_models_ask_colab_for_a_gpu(twin):
    notebook = jupytext.read(twin)
    trains_images = any("UNet(" in cell.source for cell in notebook.cells if cell.cell_type == "code")
    metadata = {key: notebook.metadata.get(key) for key in ("accelerator", "colab")}
    gpu = {"accelerator": "GPU", "colab": {"gpuType": "T4"}}
    assert metadata == (gpu if trains_images else {"accelerator": None, "colab": None})


# --- the version ------------------------------------------------------------------------


def test_version_is_read_from_the_package_and_has_a_changelog_entry():
    assert "version" in PROJECT["dynamic"] and "ddpm_helpers.__version__" in PYPROJECT_TEXT
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.findall(r"^## (\S+)", changelog, re.M)[0] == VERSION, "the newest CHANGELOG entry"


# --- the first code cell ----------------------------------------------------------------


def test_first_code_cell_is_the_same_in_every_notebook():
    cells = {twin.name: first_code_cell(twin) for twin in TWINS}
    assert len(set(cells.values())) == 1, f"first code cells differ: {sorted(cells)}"


def test_first_code_cell_installs_from_the_one_address_and_expects_this_version():
    cell = first_code_cell(TWINS[0])
    assert f'HELPERS_SOURCE = "{INSTALL_SPEC}"' in cell
    assert f'HELPERS_VERSION = "{VERSION}"' in cell
    clone_mark = f'name = "{PROJECT["name"]}"'  # how the cell recognizes a clone
    assert f"'{clone_mark}'" in cell and f"\n{clone_mark}\n" in PYPROJECT_TEXT
    assert 'GIT_TERMINAL_PROMPT="0"' in cell


def run_first_cell(cwd: Path, monkeypatch) -> tuple[dict, str]:
    """Execute the first code cell with ``cwd`` as working directory; return its namespace and what it printed."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "path", list(sys.path))
    namespace, printed = {}, io.StringIO()
    with redirect_stdout(printed):
        exec(first_code_cell(TWINS[0]), namespace)
    return namespace, printed.getvalue()


def test_first_code_cell_uses_the_clone_and_prints_nothing(monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("a clone needs no pip install"))
    namespace, printed = run_first_cell(ROOT / "notebooks", monkeypatch)
    assert printed == ""  # the same output on every machine and in both profiles (nbval compares it)
    assert sys.path[0] == str(ROOT)
    assert Path(namespace["ddpm_helpers"].__file__).resolve().parent == ROOT / "ddpm_helpers"


def test_first_code_cell_says_how_to_get_the_matching_version(monkeypatch):
    monkeypatch.setattr(ddpm_helpers, "__version__", "0.0.1")
    _, printed = run_first_cell(ROOT / "notebooks", monkeypatch)
    assert f"written for ddpm_helpers {VERSION}, but 0.0.1 is imported" in printed
    assert f"pip install --force-reinstall {INSTALL_SPEC}@{HELPERS_REF}" in printed


def test_the_ref_in_the_first_code_cell_installs_the_version_the_notebooks_expect():
    """HELPERS_REF is a commit of this repository whose helpers are HELPERS_VERSION (skipped outside a full clone)."""
    shallow = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=ROOT, capture_output=True, text=True)
    if shallow.returncode != 0 or shallow.stdout.strip() != "false":
        pytest.skip("needs a full git clone")
    shown = subprocess.run(["git", "show", f"{HELPERS_REF}:ddpm_helpers/__init__.py"], cwd=ROOT, capture_output=True,
                           text=True)
    assert shown.returncode == 0, f"HELPERS_REF {HELPERS_REF} is not a commit of this repository: {shown.stderr}"
    assert f'__version__ = "{VERSION}"' in shown.stdout


@pytest.mark.parametrize(
    "pip_error, cause",
    [
        ("fatal: could not read Username for 'https://github.com': terminal prompts disabled",
         "no repository at this address"),
        ("remote: Repository not found.", "no repository at this address"),
        ("fatal: unable to access 'https://github.com/x/y/': Could not resolve host: github.com", "no network"),
        ("ERROR: No matching distribution found for torch>=2.5", "No matching distribution found for torch>=2.5"),
    ],
)
def test_first_code_cell_outside_a_clone_explains_a_failed_install(tmp_path, monkeypatch, pip_error, cause):
    calls = []

    def failing_pip(command, **kwargs):
        calls.append((command, kwargs["env"].get("GIT_TERMINAL_PROMPT")))
        stderr = f"  error: subprocess-exited-with-error\n{pip_error}\n"
        return subprocess.CompletedProcess(command, 1, stdout="", stderr=stderr)

    monkeypatch.setattr(subprocess, "run", failing_pip)
    monkeypatch.setitem(sys.modules, "ddpm_helpers", None)  # not installed: import raises ImportError
    (tmp_path / "content").mkdir()
    with pytest.raises(Exception) as error:
        run_first_cell(tmp_path / "content", monkeypatch)
    assert calls == [([sys.executable, "-m", "pip", "install", "--quiet", INSTALL_SPEC], "0")]
    message = error.value._render_traceback_()  # what Jupyter shows instead of a traceback
    assert len(message) == 1 and message[0].startswith(f"Could not install ddpm_helpers from {INSTALL_SPEC}: ")
    assert cause in message[0] and "clone the repository" in message[0]
    assert error.value.__cause__ is None and error.value.__suppress_context__

#!/usr/bin/env python3
"""The three commands of the README (standard library only; any Python >= 3.10).

    python tasks.py series [--profile quick|full] [--only 01 03] [--in-place] [--pinned]
        Set up .venv, run every notebook headless in order, print where the executed
        copies (outputs/executed/) and the artifacts (outputs/<notebook>/) are.
    python tasks.py test [-- PYTEST_ARGS...]
        Set up .venv with the exact versions of constraints/ci.txt, then run the unit tests
        and every notebook in the quick profile under nbval (what CI runs).
    python tasks.py book [--output DIR]
        Build the web book (Sphinx, MyST-NB, sphinx-book-theme) into outputs/book/ from the
        committed notebooks as they are: nothing is executed, so it needs neither torch nor
        the helpers. Preview: python -m http.server -d outputs/book

series and test create .venv with the Python that runs this file and install the project into
it in editable mode; book installs only the book extra's packages (pinned, Python >= 3.11).
Installs are skipped while pyproject.toml (and the constraints, when used) are unchanged.
``--no-venv`` uses the running Python as it is instead (e.g. inside the conda environment of
environment.yml).

Data: DDPM_DATA_DIR if you set it, else ../shared/data when that folder exists beside the
checkout (the offline copies used in development and CI), else the helpers' default.
A bare ``pytest --nbval`` from the repository root runs the same checks as ``test``: conftest.py
applies ``check_environment`` below before any kernel starts and adds notebooks/ to the paths.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
NOTEBOOKS = ROOT / "notebooks"
CONSTRAINTS = ROOT / "constraints" / "ci.txt"
SHARED_DATA = ROOT.parent / "shared" / "data"
TEST_OUTPUTS = ROOT / "outputs" / "tests"  # what the notebooks write while `test` runs them
INSTALL_STAMP = VENV / "ddpm-installed.txt"
KERNEL_BACKEND = "module://matplotlib_inline.backend_inline"


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_env(extra: str, pinned: bool, use_current: bool, packages: list[str] | None = None) -> str:
    """Return the Python to run, after installing ``.[extra]`` into .venv when needed (``packages`` instead of the
    project and its dependencies when given: the book needs its extra's packages only)."""
    if use_current:
        return sys.executable
    python = venv_python()
    if not python.exists():
        print(f"Creating {VENV.name}/ with Python {sys.version.split()[0]} ...", flush=True)
        venv.create(VENV, with_pip=True)
    recipe = (ROOT / "pyproject.toml").read_bytes() + (CONSTRAINTS.read_bytes() if pinned else b"")
    key = f"{extra} {'pinned' if pinned else 'ranges'} {hashlib.sha256(recipe).hexdigest()}"
    done = INSTALL_STAMP.read_text().splitlines() if INSTALL_STAMP.exists() else []
    if key not in done:
        command = [str(python), "-m", "pip", "install", "--disable-pip-version-check",
                   *(packages if packages is not None else ["-e", f".[{extra}]"])]
        if pinned:
            command += ["-c", str(CONSTRAINTS.relative_to(ROOT))]
        print("$", " ".join(command), flush=True)
        started = time.monotonic()
        subprocess.run(command, cwd=ROOT, check=True)
        print(f"Environment ready in {time.monotonic() - started:.0f} s", flush=True)
        INSTALL_STAMP.write_text("\n".join([*done, key]) + "\n")
    return str(python)


def kernel_environment(environ: dict[str, str], **defaults: str) -> dict[str, str]:
    """``environ`` for notebook kernels (they inherit it): ``defaults`` for the variables it leaves unset or empty,
    ../shared/data as ``DDPM_DATA_DIR`` when that folder exists, a fixed hash seed and the inline plot backend."""
    if SHARED_DATA.is_dir():
        defaults.setdefault("DDPM_DATA_DIR", str(SHARED_DATA))
    unset = {name: value for name, value in defaults.items() if not environ.get(name, "").strip()}
    return dict(environ, **unset, MPLBACKEND=KERNEL_BACKEND, PYTHONHASHSEED="0")


def check_environment(environ: dict[str, str]) -> dict[str, str]:
    """The settings of the notebook checks, for `test` and for a bare `pytest --nbval` (conftest.py): the quick
    profile, outputs/tests/ (so a test run never overwrites a full run's artifacts), the offline data; an
    explicit DDPM_PROFILE, DDPM_OUTPUT_DIR or DDPM_DATA_DIR wins."""
    return kernel_environment(environ, DDPM_PROFILE="quick", DDPM_OUTPUT_DIR=str(TEST_OUTPUTS))


def output_root() -> Path:
    """Same rule as ddpm_helpers.config.outputs_dir: DDPM_OUTPUT_DIR (relative to here) or outputs/."""
    return ROOT / Path(os.environ.get("DDPM_OUTPUT_DIR", "").strip() or "outputs").expanduser()


def test(args) -> int:
    python = ensure_env("test", pinned=True, use_current=args.no_venv)
    command = [python, "-m", "pytest", "--nbval", *args.pytest_args]  # conftest.py adds notebooks/ to tests/
    env = check_environment(dict(os.environ))
    print(f"$ DDPM_PROFILE={env['DDPM_PROFILE']} DDPM_DATA_DIR={env.get('DDPM_DATA_DIR', '(default)')} "
          f"DDPM_OUTPUT_DIR={shown(Path(env['DDPM_OUTPUT_DIR']))}", " ".join(command[1:]), flush=True)
    return subprocess.run(command, cwd=ROOT, env=env).returncode


def shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def select_notebooks(only: list[str]) -> list[Path]:
    """notebooks/NN_name.ipynb for every notebook or .py twin (a new lesson may exist as .py only)."""
    stems = {path.stem for pattern in ("[0-9][0-9]_*.ipynb", "[0-9][0-9]_*.py") for path in NOTEBOOKS.glob(pattern)}
    notebooks = [NOTEBOOKS / f"{stem}.ipynb" for stem in sorted(stems)]
    if not only:
        return notebooks
    chosen = [nb for nb in notebooks if any(nb.stem == key or nb.stem.startswith(f"{key}_") for key in only)]
    unknown = [key for key in only if not any(nb.stem == key or nb.stem.startswith(f"{key}_") for nb in chosen)]
    if unknown:
        names = ", ".join(nb.stem for nb in notebooks) or "none"
        raise SystemExit(f"--only {' '.join(unknown)}: no such notebook (have: {names})")
    return chosen


def series(args) -> int:
    if args.profile not in ("quick", "full"):
        raise SystemExit(f"profile {args.profile!r} is not 'quick' or 'full'")
    if args.in_place and args.profile != "full":
        raise SystemExit("--in-place writes the committed notebooks, which carry full-profile outputs: use --profile full")
    notebooks = select_notebooks(args.only)
    if not notebooks:
        raise SystemExit(f"No notebooks in {NOTEBOOKS}")
    python = ensure_env("notebooks", pinned=args.pinned, use_current=args.no_venv)
    command = [python, __file__, "_execute", *(["--in-place"] if args.in_place else []), *map(str, notebooks)]
    env = kernel_environment(dict(os.environ, DDPM_PROFILE=args.profile))
    return subprocess.run(command, cwd=ROOT, env=env).returncode


def quiet_kernel_manager(manager):
    """``manager`` with CurveZMQ-encrypted kernel channels where jupyter_client and pyzmq support them: ipykernel
    warns "Kernel is running over TCP without encryption" at every start of an unencrypted TCP kernel."""
    import zmq

    if manager.has_trait("transport_encryption") and zmq.has("curve"):
        manager.transport_encryption = "auto"  # keys for kernels whose spec declares curve support (ipykernel does)
    return manager


def _execute(args) -> int:
    """Run notebooks with nbclient in this (the environment's) Python; internal."""
    import ipykernel.kernelspec
    import jupytext
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import KernelManager
    from jupytext.cli import jupytext as jupytext_cli
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    class ThisPython(KernelSpecManager):
        """Every kernel name means this interpreter (like nbval --nbval-current-env)."""

        def get_kernel_spec(self, kernel_name):
            return KernelSpec(resource_dir=ipykernel.kernelspec.RESOURCES, **ipykernel.kernelspec.get_kernel_dict())

    executed_dir = output_root() / "executed"
    executed_dir.mkdir(parents=True, exist_ok=True)
    interactive = sys.stdout.isatty()
    print(f"Profile {os.environ['DDPM_PROFILE']}, data {os.environ.get('DDPM_DATA_DIR', '(default)')}", flush=True)
    timings, failed = [], []
    for number, path in enumerate(map(Path, args.notebooks), 1):
        pair = [p for p in (path, path.with_suffix(".py")) if p.exists()]
        source = max(pair, key=lambda p: p.stat().st_mtime)  # the newer of the pair holds the latest edits
        nb = jupytext.read(source)
        code_cells = sum(cell.cell_type == "code" for cell in nb.cells)
        print(f"[{number}/{len(args.notebooks)}] {path.name} ({code_cells} code cells, from {source.name})", flush=True)
        started = time.monotonic()

        def progress(cell, cell_index, **_):
            if cell.cell_type != "code":
                return
            done = sum(c.cell_type == "code" for c in nb.cells[: cell_index + 1])
            line = f"  cell {done}/{code_cells} done, {time.monotonic() - started:.1f} s elapsed"
            print(f"\r{line}" if interactive else line, end="" if interactive else "\n", flush=True)

        client = NotebookClient(
            nb,
            km=quiet_kernel_manager(KernelManager(kernel_name="python3", kernel_spec_manager=ThisPython())),
            timeout=None,
            record_timing=False,
            coalesce_streams=True,  # keep only the final state of progress bars
            on_cell_executed=progress,
            resources={"metadata": {"path": str(path.parent)}},
        )
        try:
            client.execute(cleanup_kc=True)  # shut the kernel down even though we made its manager
        except (CellExecutionError, DeadKernelError) as error:
            failed.append(path.name)
            print(f"\n  FAILED: {str(error).strip().splitlines()[-1]}", flush=True)
        seconds = time.monotonic() - started
        target = path if args.in_place and path.name not in failed else executed_dir / path.name
        jupytext.write(nb, target)
        if target == path:
            jupytext_cli(["--sync", "--quiet", str(path)])
        timings.append((path.name, seconds, target))
        print(f"{chr(10) if interactive else ''}  done in {seconds:.1f} s -> {shown(target)}", flush=True)

    print("\nnotebook                              seconds  written to")
    for name, seconds, target in timings:
        print(f"{name:36s} {seconds:8.1f}  {shown(target)}")
    print(f"Artifacts (checkpoints, figures): {shown(output_root())}/<notebook>/")
    if failed:
        print(f"Failed: {', '.join(failed)} (their partial runs are in {shown(executed_dir)}/)")
    return 1 if failed else 0


# --- the web book -----------------------------------------------------------------------------------------------

BOOK_CONFIG = ROOT / "book"  # conf.py and its static files; the sources are staged from the repository at build time
BOOK_OUTPUT = ROOT / "outputs" / "book"
PAPERS = ROOT / "papers"
LICENCES = ("LICENSE", "LICENSE-docs")
BADGE = re.compile(r"\[!\[([^\]]*)\]\((?:https?:)?//[^)]*\)\]\(([^)]*)\)")  # [![alt](external image)](link)
LINK = re.compile(r"(\]\()([^)\s#]+)(#[^)\s]*)?(\))")


def book_requirements() -> list[str]:
    """The book extra's requirement strings, read from pyproject.toml."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        raise SystemExit("python tasks.py book needs Python >= 3.11 (tomllib; the pins of constraints/ci.txt too)")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return project["optional-dependencies"]["book"]


def repository_address() -> str:
    import tomllib

    source = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["urls"]["Source"]
    address, _, ref = source.partition("/tree/")
    return f"{address}/blob/{ref or 'main'}/"


def book_notebooks() -> list[Path]:
    """Every notebook of notebooks/, in number order: the book's table of contents."""
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def book_links(text: str, origin: Path, staged: dict[Path, str], here: str) -> str:
    """``text`` (Markdown from ``origin``) with badges as plain links and each repository-relative link pointing at
    the book's page of that file (``staged``: repository path -> book path) or else at the file in the repository.
    ``here``: the folder of the page in the book."""
    text = BADGE.sub(r"[\1](\2)", text)

    def relink(match):
        target = match[2]
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("/"):
            return match[0]
        path = (origin.parent / target).resolve()
        if not path.is_relative_to(ROOT):
            return match[0]
        if path in staged:
            new = os.path.relpath(staged[path], here or ".").replace(os.sep, "/")
        else:
            new = repository_address() + path.relative_to(ROOT).as_posix()
        return f"{match[1]}{new}{match[3] or ''}{match[4]}"

    text = LINK.sub(relink, text)
    for path, page in staged.items():  # the notebooks link the repository's files by address (they must work in Colab)
        address = repository_address() + path.relative_to(ROOT).as_posix()
        local = os.path.relpath(page, here or ".").replace(os.sep, "/")
        text = re.sub(rf"\]\({re.escape(address)}(?=[)#])", f"]({local}", text)
    return text


def stage_book(staging: Path) -> list[str]:
    """Write the book's sources into ``staging``; return the notebook pages in order."""
    import json
    import shutil

    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    notebooks = book_notebooks()
    staged = {nb.resolve(): nb.name for nb in notebooks}
    staged |= {md.resolve(): f"papers/{md.name}" for md in sorted(PAPERS.glob("*.md"))}
    staged |= {(ROOT / name).resolve(): "licences.md" for name in LICENCES}
    staged[(ROOT / "README.md").resolve()] = "index.md"
    for nb_path in notebooks:
        nb = json.loads(nb_path.read_text(encoding="utf-8"))
        first_code = next(cell for cell in nb["cells"] if cell["cell_type"] == "code")
        tags = first_code.setdefault("metadata", {}).setdefault("tags", [])
        tags.append("remove-input")  # the setup cell (the same in every notebook) is hidden in the book
        for cell in nb["cells"]:
            if cell["cell_type"] == "markdown":
                source = "".join(cell["source"])
                cell["source"] = book_links(source, nb_path, staged, "")
        (staging / nb_path.name).write_text(json.dumps(nb, ensure_ascii=False, indent=1), encoding="utf-8")
    (staging / "papers").mkdir()
    for md in sorted(PAPERS.glob("*.md")):
        text = md.read_text(encoding="utf-8")
        (staging / "papers" / md.name).write_text(book_links(text, md, staged, "papers"), encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    toc = ["", "```{toctree}", ":caption: The notebooks", ":maxdepth: 1", "", *(nb.stem for nb in notebooks), "```",
           "", "```{toctree}", ":caption: Papers", ":maxdepth: 1", "",
           *(f"papers/{md.stem}" for md in sorted(PAPERS.glob("*.md"), key=lambda p: (p.stem != "README", p.stem))),
           "```", "", "```{toctree}", ":caption: About", ":maxdepth: 1", "", "licences", "```", ""]
    (staging / "index.md").write_text(book_links(readme, ROOT / "README.md", staged, "") + "\n".join(toc),
                                      encoding="utf-8")
    licence_section = re.search(r"^## License\n(.*?)(?=^## |\Z)", readme, re.M | re.S)
    data_section = re.search(r"^## Data\n(.*?)(?=^## |\Z)", readme, re.M | re.S)
    parts = ["# Licences", "", licence_section[1].strip() if licence_section else "", "",
             "## The datasets", "", data_section[1].strip() if data_section else ""]
    for name in LICENCES:
        parts += ["", f"## {name}", "", "```text", (ROOT / name).read_text(encoding="utf-8").strip(), "```"]
    licences = "\n".join(parts).replace("## Data\n", "")
    (staging / "licences.md").write_text(book_links(licences, ROOT / "README.md", staged, "") + "\n", encoding="utf-8")
    return [nb.stem for nb in notebooks]


def book(args) -> int:
    if args.no_venv:
        python = sys.executable
    else:
        python = ensure_env("book", pinned=True, use_current=False,
                            packages=[*book_requirements(), "-c", str(CONSTRAINTS.relative_to(ROOT))])
    output = Path(args.output).resolve() if args.output else BOOK_OUTPUT
    staging = output.parent / f"{output.name}-source"
    started = time.monotonic()
    pages = stage_book(staging)
    command = [python, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", "-j", "1", "-c", str(BOOK_CONFIG),
               "-d", str(staging / ".doctrees"), str(staging), str(output)]
    print("$", " ".join(shown(Path(part)).as_posix() if part.startswith("/") else part for part in command), flush=True)
    code = subprocess.run(command, cwd=ROOT).returncode
    if code == 0:
        print(f"Book of {len(pages)} notebooks built in {time.monotonic() - started:.0f} s: {shown(output)}/index.html"
              f" (preview: python -m http.server -d {shown(output)})", flush=True)
    return code


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{series,test,book}")

    run_series = commands.add_parser("series", help="run every notebook headless, in order")
    run_series.add_argument("--profile", default=os.environ.get("DDPM_PROFILE") or "full", help="quick or full (default: DDPM_PROFILE, else full)")
    run_series.add_argument("--only", nargs="+", default=[], metavar="NN", help="notebook numbers, e.g. --only 01 03")
    run_series.add_argument("--in-place", action="store_true", help="update the committed notebooks and their .py twins (maintainers)")
    run_series.add_argument("--pinned", action="store_true", help="install the exact versions of constraints/ci.txt")
    run_series.add_argument("--no-venv", action="store_true", help="use this Python as it is, install nothing")
    run_series.set_defaults(run=series)

    run_test = commands.add_parser("test", help="unit tests + notebooks under nbval, quick profile (what CI runs)")
    run_test.add_argument("--no-venv", action="store_true", help="use this Python as it is, install nothing")
    run_test.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    run_test.set_defaults(run=test)

    run_book = commands.add_parser("book", help="build the web book into outputs/book/ (nothing executed)")
    run_book.add_argument("--output", help="folder for the site (default: outputs/book)")
    run_book.add_argument("--no-venv", action="store_true", help="use this Python as it is, install nothing")
    run_book.set_defaults(run=book)

    execute = commands.add_parser("_execute")  # internal: runs inside the environment
    execute.add_argument("--in-place", action="store_true")
    execute.add_argument("notebooks", nargs="+")
    execute.set_defaults(run=_execute)

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

"""pyproject.toml, environment.yml, constraints/ci.txt, tasks.py, conftest.py and .ci/run agree, and the declared
dependencies match the imports of the code."""

import ast
import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import tasks

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
ENVIRONMENT = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
# conda-forge package name -> PyPI distribution name, where they differ
CONDA_TO_PYPI = {"pytorch": "torch"}
SELF = canonicalize_name(PROJECT["name"])
CI_EXTRA = "test"  # what `python tasks.py test`, CI and environment.yml install: .[test]


def requirements(*extras: str) -> dict[str, Requirement]:
    """The dependencies plus the given extras of pyproject.toml, following the project's own extras."""
    lines = PROJECT["dependencies"] + [line for extra in extras for line in PROJECT["optional-dependencies"][extra]]
    found = {}
    for requirement in map(Requirement, lines):
        if canonicalize_name(requirement.name) == SELF:
            found.update(requirements(*requirement.extras))
        else:
            found[canonicalize_name(requirement.name)] = requirement
    return found


def direct_requirements() -> dict[str, Requirement]:
    """What .[test] installs: the dependencies, the test extra and the notebooks extra it includes."""
    return requirements(CI_EXTRA)


def environment_requirements() -> tuple[dict[str, str], list[str]]:
    """(name -> specifier of every conda and pip package, pip lines that install the project)."""
    specs, project_lines = {}, []
    for entry in ENVIRONMENT["dependencies"]:
        if isinstance(entry, dict):  # the pip: section
            for line in entry["pip"]:
                if line.startswith(("-e ", "--editable ")):
                    project_lines.append(line)
                else:
                    requirement = Requirement(line)
                    specs[canonicalize_name(requirement.name)] = str(requirement.specifier)
        else:
            requirement = Requirement(entry)
            name = CONDA_TO_PYPI.get(requirement.name, requirement.name)
            specs[canonicalize_name(name)] = str(requirement.specifier)
    return specs, project_lines


def constraint_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints" / "ci.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            match = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!_-]+)", line.strip())
            assert match, f"constraints/ci.txt: {line!r} is not an exact pin name==version"
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def test_environment_lists_the_same_packages_and_ranges_as_pyproject():
    specs, _ = environment_requirements()
    python = specs.pop("python")
    specs.pop("pip")
    expected = {name: str(r.specifier) for name, r in direct_requirements().items()}
    assert specs == expected
    assert python == PROJECT["requires-python"]


def test_environment_installs_the_project_with_its_test_extra():
    _, project_lines = environment_requirements()
    assert project_lines == ["--editable .[test]"]
    assert "test" in PROJECT["optional-dependencies"]
    assert ENVIRONMENT["channels"] == ["conda-forge"]


def test_test_extra_includes_the_notebooks_and_book_extras():
    test_extra = [Requirement(line) for line in PROJECT["optional-dependencies"]["test"]]
    assert any(r.name == PROJECT["name"] and r.extras == {"notebooks"} for r in test_extra)
    assert any(r.name == PROJECT["name"] and r.extras == {"book"} for r in test_extra)  # tests/test_book.py


def test_the_book_extra_needs_neither_torch_nor_the_helpers():
    names = {canonicalize_name(Requirement(line).name) for line in PROJECT["optional-dependencies"]["book"]}
    assert SELF not in names and not names & set(requirements())


def test_pyproject_keeps_ranges_not_pins():
    every_extra = requirements(*PROJECT["optional-dependencies"]).values()
    pinned = [str(r) for r in every_extra if any(s.operator in ("==", "===") for s in r.specifier)]
    assert pinned == [], "exact versions belong in constraints/ci.txt"


@pytest.mark.parametrize("name", sorted(direct_requirements()))
def test_constraints_pin_each_direct_dependency_inside_its_range(name):
    pins = constraint_pins()
    assert name in pins, f"constraints/ci.txt does not pin {name}"
    assert direct_requirements()[name].specifier.contains(pins[name], prereleases=True), (
        f"constraints/ci.txt pins {name}=={pins[name]}, outside pyproject's {direct_requirements()[name]}"
    )


def test_constraints_do_not_pin_the_project_itself():
    assert canonicalize_name(PROJECT["name"]) not in constraint_pins()


def test_tasks_py_imports_only_the_standard_library_at_top_level():
    tree = ast.parse((ROOT / "tasks.py").read_text(encoding="utf-8"))
    modules = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules.add(node.module.split(".")[0])
    assert sorted(modules - sys.stdlib_module_names - {"__future__"}) == []


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line.strip() for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert "set -euo pipefail" in commands
    assert commands[-1] == "python3 tasks.py test"
    assert "python tasks.py test" in (ROOT / "README.md").read_text(encoding="utf-8")


# --- declared dependencies match the imports ---------------------------------------------


def imported_distributions(paths) -> dict[str, set[str]]:
    """Distribution (canonical name) -> files importing it, for every third-party import in ``paths``, lazy ones too."""
    local = {"ddpm_helpers", "tasks", "conftest"} | {path.stem for path in (ROOT / "tests").glob("*.py")}
    by_module = packages_distributions()
    found = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module]
            else:
                continue
            for top in {module.split(".")[0] for module in modules} - set(sys.stdlib_module_names) - local:
                for distribution in by_module.get(top, [top]):  # a module not installed here: its own name
                    found.setdefault(canonicalize_name(distribution), set()).add(str(path.relative_to(ROOT)))
    return found


PACKAGE_FILES = sorted((ROOT / "ddpm_helpers").rglob("*.py"))
TOOL_FILES = sorted((ROOT / "tests").glob("*.py")) + [
    ROOT / "conftest.py", ROOT / "tasks.py", ROOT / "book" / "conf.py"
]


def sphinx_configuration_uses() -> set[str]:
    """Distributions that book/conf.py uses by name (its extensions and theme), which an import would not show."""
    tree = ast.parse((ROOT / "book" / "conf.py").read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        targets = {getattr(target, "id", "") for target in getattr(node, "targets", [])}
        if isinstance(node, ast.Assign) and targets & {"extensions", "html_theme"}:
            names |= {c.value.split(".")[0] for c in ast.walk(node.value) if isinstance(c, ast.Constant)}
    by_module = packages_distributions()
    return {canonicalize_name(d) for name in names for d in by_module.get(name, [name])}


def test_every_import_of_the_package_is_declared():
    declared = requirements(*PROJECT["optional-dependencies"])
    undeclared = {name: files for name, files in imported_distributions(PACKAGE_FILES).items() if name not in declared}
    assert undeclared == {}, "add these to the dependencies or an extra of pyproject.toml"


def test_every_dependency_is_imported_by_the_package():
    unused = sorted(set(requirements()) - set(imported_distributions(PACKAGE_FILES)))
    assert unused == [], "declared in [project] dependencies but imported nowhere in ddpm_helpers/"


def test_every_import_of_the_tests_and_tools_is_in_what_ci_installs():
    imported = imported_distributions(TOOL_FILES)
    undeclared = {name: files for name, files in imported.items() if name not in direct_requirements()}
    assert undeclared == {}, f"add these to the {CI_EXTRA} extra (or the notebooks extra it includes)"


def test_every_extra_dependency_is_imported_or_run():
    plugins = {"nbval", "nbconvert"}  # pytest --nbval; `python -m nbconvert` in tests/test_animation_html.py
    used = set(imported_distributions(PACKAGE_FILES + TOOL_FILES)) | plugins | sphinx_configuration_uses()
    extras = set(requirements(*PROJECT["optional-dependencies"])) - set(requirements())
    assert sorted(extras - used) == []


def test_the_hub_extra_is_optional_and_not_installed_by_ci():
    assert "datasets" in requirements("hub") and "datasets" not in direct_requirements()


# --- a bare `pytest --nbval` runs what `python tasks.py test` runs -----------------------


def test_check_environment_defaults_and_explicit_values_win(tmp_path):
    env = tasks.check_environment({"PATH": "/bin"})
    assert env["DDPM_PROFILE"] == "quick" and env["DDPM_OUTPUT_DIR"] == str(ROOT / "outputs" / "tests")
    assert env["PYTHONHASHSEED"] == "0" and env["MPLBACKEND"] == tasks.KERNEL_BACKEND and env["PATH"] == "/bin"
    shared = ROOT.parent / "shared" / "data"
    assert env.get("DDPM_DATA_DIR") == (str(shared) if shared.is_dir() else None)
    mine = {"DDPM_PROFILE": "full", "DDPM_OUTPUT_DIR": str(tmp_path), "DDPM_DATA_DIR": "~/datasets"}
    assert tasks.check_environment(mine).items() >= mine.items()
    assert tasks.check_environment({"DDPM_PROFILE": " "})["DDPM_PROFILE"] == "quick"  # empty means unset


class PytestConfig:
    """What conftest.pytest_configure reads of pytest's Config."""

    ArgsSource = pytest.Config.ArgsSource

    def __init__(self, options: dict, args: list[str], args_source):
        self.options, self.args, self.args_source = options, args, args_source

    def getoption(self, name, default=None):
        return self.options.get(name, default)


@pytest.mark.parametrize(
    "options, args, source, collected",
    [
        ({"nbval": True}, ["tests"], "TESTPATHS", ["tests", str(tasks.NOTEBOOKS)]),  # bare `pytest --nbval`
        ({"nbval_lax": True}, ["tests"], "TESTPATHS", ["tests", str(tasks.NOTEBOOKS)]),
        ({}, ["tests"], "TESTPATHS", ["tests"]),  # plain `pytest`: the unit tests only
        ({"nbval": True}, ["notebooks/04_mnist.ipynb"], "ARGS", ["notebooks/04_mnist.ipynb"]),
    ],
)
def test_root_conftest_adds_the_notebooks_only_to_a_bare_nbval_run(monkeypatch, options, args, source, collected):
    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")  # not tests/conftest.py
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    for name in ("DDPM_PROFILE", "DDPM_OUTPUT_DIR", "DDPM_DATA_DIR", "PYTHONHASHSEED"):
        monkeypatch.delenv(name, raising=False)
    config = PytestConfig(options, list(args), pytest.Config.ArgsSource[source])
    conftest.pytest_configure(config)
    assert config.args == collected
    assert os.environ["DDPM_PROFILE"] == "quick" and os.environ["PYTHONHASHSEED"] == "0"  # set before kernels start


def test_pytest_nbval_with_a_notebook_collects_just_that_notebook():
    notebook = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))[0].relative_to(ROOT).as_posix()
    env = {key: value for key, value in os.environ.items() if not key.startswith("DDPM_")}
    command = [sys.executable, "-m", "pytest", "--nbval", "--collect-only", "-q", "-p", "no:cacheprovider", notebook]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {line.split("::")[0] for line in result.stdout.splitlines() if "::" in line} == {notebook}


# --- Binder ------------------------------------------------------------------------------------


def binder_requirements() -> tuple[list[str], dict[str, str]]:
    """(option and editable lines, name -> exact version) of .binder/requirements.txt."""
    lines = [line.strip() for line in (ROOT / ".binder" / "requirements.txt").read_text(encoding="utf-8").splitlines()]
    options = [line for line in lines if line.startswith("-")]
    pins = {}
    for line in lines:
        if line and not line.startswith(("#", "-")):
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f".binder/requirements.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(requirement.name)] = specifier.version
    return options, pins


def test_binder_uses_the_python_of_ci():
    runtime = (ROOT / ".binder" / "runtime.txt").read_text(encoding="utf-8").strip()
    ci_python = re.search(r"^# Python (3\.\d+)", (ROOT / "constraints" / "ci.txt").read_text(encoding="utf-8"), re.M)[1]
    assert runtime == f"python-{ci_python}"
    assert Requirement(f"python{PROJECT['requires-python']}").specifier.contains(ci_python)


def test_binder_installs_cpu_only_torch_at_the_ci_versions_and_the_package_without_test_tools():
    options, pins = binder_requirements()
    assert options == ["--extra-index-url https://download.pytorch.org/whl/cpu", "-c ../constraints/ci.txt", "-e ."]
    ci = constraint_pins()
    assert pins == {name: f"{ci[name]}+cpu" for name in ("torch", "torchvision")}


def profile_under_binder_start(**variables: str) -> str:
    show_profile = "import os; print(os.environ['DDPM_PROFILE'])"
    command = ["bash", str(ROOT / ".binder" / "start"), sys.executable, "-c", show_profile]
    env = {key: value for key, value in os.environ.items() if key != "DDPM_PROFILE"} | variables
    return subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout.strip()


def test_binder_starts_in_the_quick_profile_unless_told_otherwise():
    assert os.access(ROOT / ".binder" / "start", os.X_OK), "chmod +x .binder/start (git keeps the mode)"
    assert profile_under_binder_start() == "quick"
    assert profile_under_binder_start(DDPM_PROFILE="full") == "full"


# --- the package's layout: lesson math flat, the machinery in four folders ---------------------------------------

LESSON_MODULES = {"__init__", "config", "checks", "utils", "checkpoint", "schedules", "diffusion", "losses", "elbo",
                  "guidance", "analytic", "plotting", "train_cli"}
FOLDERS = {
    "nn": {"__init__", "embeddings", "mlp", "unet", "unet_diagram"},
    "samplers": {"__init__", "loop", "ddpm", "ddim", "dpm_solver", "named"},
    "datasets": {"__init__", "images", "mnist", "butterflies", "toy2d", "clusters"},
    "training": {"__init__", "loop", "train_config", "plan", "resume", "ema", "precision", "distributed", "recipes",
                 "cli", "pretrained", "timing"},
    "evaluation": {"__init__", "metrics2d", "mnist_eval", "neighbours", "copies", "intervals", "color_stats",
                   "reference_results"},
}
SUBFOLDERS = {  # one purpose grown past one module: a folder inside a folder
    "evaluation/doctor": {"__init__", "report", "tables", "sampler", "network"},
}


def test_the_top_level_holds_the_lesson_math_and_the_folders_the_machinery():
    package = ROOT / "ddpm_helpers"
    top = {path.stem for path in package.glob("*.py")}
    assert top == LESSON_MODULES and len(top) <= 15, "a new top-level module: is it lesson math, or machinery?"
    folders = {path.name for path in package.iterdir() if (path / "__init__.py").is_file()}
    assert folders == set(FOLDERS)
    for folder, modules in FOLDERS.items():
        assert {path.stem for path in (package / folder).glob("*.py")} == modules, folder
    assert {str(path.parent.relative_to(package)) for path in package.glob("*/*/__init__.py")} == set(SUBFOLDERS)
    for folder, modules in SUBFOLDERS.items():
        assert {path.stem for path in (package / folder).glob("*.py")} == modules, folder


def test_the_folders_export_what_the_notebooks_import():
    from ddpm_helpers.datasets import butterfly_images, mnist_images, sample_toy  # noqa: F401
    from ddpm_helpers.samplers import ddim_sample, ddpm_sample, dpm_solver_sample, sample_loop  # noqa: F401
    from ddpm_helpers.training import TrainConfig, lr_at_step, train  # noqa: F401

    done = subprocess.run([sys.executable, "-m", "ddpm_helpers.train_cli", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "python -m ddpm_helpers.train_cli" in done.stdout


def test_the_checkout_is_found_in_config_alone():
    texts = {str(path.relative_to(ROOT)): path.read_text(encoding="utf-8")
             for path in ROOT.glob("ddpm_helpers/**/*.py")}
    finders = [name for name, text in texts.items() if "parent.parent" in text or "parents[1]" in text]
    assert finders == ["ddpm_helpers/config.py"]

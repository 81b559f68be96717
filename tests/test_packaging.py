"""pyproject.toml, environment.yml, constraints/ci.txt, tasks.py and .ci/run agree."""

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
ENVIRONMENT = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
# conda-forge package name -> PyPI distribution name, where they differ
CONDA_TO_PYPI = {"pytorch": "torch"}


def direct_requirements() -> dict[str, Requirement]:
    """Dependencies and every extra of pyproject.toml, without the project's own extras."""
    lines = PROJECT["dependencies"] + [line for extra in PROJECT["optional-dependencies"].values() for line in extra]
    requirements = [Requirement(line) for line in lines]
    return {canonicalize_name(r.name): r for r in requirements if canonicalize_name(r.name) != canonicalize_name(PROJECT["name"])}


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


def test_test_extra_includes_the_notebooks_extra():
    test_extra = [Requirement(line) for line in PROJECT["optional-dependencies"]["test"]]
    assert any(r.name == PROJECT["name"] and r.extras == {"notebooks"} for r in test_extra)


def test_pyproject_keeps_ranges_not_pins():
    pinned = [str(r) for r in direct_requirements().values() if any(s.operator in ("==", "===") for s in r.specifier)]
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

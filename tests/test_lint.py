"""The linter passes: `ruff check` with the configuration in pyproject.toml (line length 120; E, F, W, I)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["ddpm_helpers", "tests", "benchmarks"]


def test_ruff_check_passes():
    try:
        import ruff  # noqa: F401
    except ImportError:
        if shutil.which("ruff") is None:
            pytest.fail("ruff is not installed: pip install -c constraints/ci.txt -e '.[test]'")
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *PATHS], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, f"ruff check {' '.join(PATHS)} failed:\n{result.stdout}{result.stderr}"

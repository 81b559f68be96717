"""Benchmark results shipped with the helpers (package data ``ddpm_helpers/data/<name>.json``), for notebooks to
read and show.

``benchmarks/mnist_samplers.py`` measures the samplers of notebook 04 (n = 1000 per few-step sampler,
n = 500 for DDPM-1000, two seeds, equal batches), writes ``ddpm_helpers/data/mnist_samplers.json`` and prints
it with :func:`sampler_table`; installed with the package, the file reaches a notebook in Colab as well.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from statistics import mean

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def results_path(name: str):
    """Where the results called ``name`` are stored (inside the installed package); ``name`` is a plain name like
    ``"mnist_samplers"`` (no folders), so nothing outside the package's ``data/`` folder is ever read."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"results name must be a plain name like 'mnist_samplers' (letters, digits, _ and -), "
                         f"got name={name!r}")
    return resources.files("ddpm_helpers") / "data" / f"{name}.json"


def load_results(name: str) -> dict:
    """The committed results ``name`` (e.g. ``"mnist_samplers"``); FileNotFoundError says how to make them."""
    path = results_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"no benchmark results {name!r} at {path}: run benchmarks/{name}.py to measure them")
    return json.loads(path.read_text())


def _spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    """``mean ± half-range`` of the per-seed values."""
    half_range = (max(values) - min(values)) / 2
    return f"{scale * mean(values):.{digits}f} ± {scale * half_range:.{digits}f}"


def sampler_table(results: dict) -> str:
    """The rows of ``results["rows"]`` as a text table: mean ± half-range over the seeds. ``@n_ddpm`` is the
    Fréchet distance of a sampler's first ``n_ddpm`` samples (they start from DDPM-1000's noise), and ``÷ DDPM``
    its ratio to DDPM-1000's: the comparison at equal n."""
    n_ddpm = results["n_ddpm"]
    ddpm = mean(results["rows"][0][f"frechet_distance_{n_ddpm}"])
    lines = [f"{'sampler':26s} {'calls':>5s} {'n':>5s} {'s/sample':>8s} {'Fréchet':>13s} {'× floor':>7s} "
             f"{'@' + str(n_ddpm):>13s} {'÷ DDPM':>6s} {'confident %':>11s} {'class gap pts':>13s}"]
    for row in results["rows"]:
        floor = results["real_floor"][str(row["n"])]["frechet_distance"]
        same_n = row[f"frechet_distance_{n_ddpm}"]
        lines.append(f"{row['sampler']:26s} {row['calls']:5d} {row['n']:5d} {mean(row['seconds_per_sample']):8.4f} "
                     f"{_spread(row['frechet_distance']):>13s} {mean(row['frechet_distance']) / floor:7.2f} "
                     f"{_spread(same_n):>13s} {mean(same_n) / ddpm:6.2f} "
                     f"{_spread(row['confident_share'], 100, 1):>11s} {_spread(row['class_share_gap'], 100, 1):>13s}")
    return "\n".join(lines)

"""Benchmark results shipped with the helpers (package data ``ddpm_helpers/data/<name>.json``), for notebooks to
read and show.

``benchmarks/mnist_samplers.py`` measures the samplers of notebook 04 on its label-free and guided sets (n = 1000
per few-step sampler, n = 500 for DDPM-1000, two seeds, equal batches), writes
``ddpm_helpers/data/mnist_samplers.json`` and prints it with :func:`sampler_table`; installed with the package,
the file reaches a notebook in Colab as well.
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


def sampler_table(results: dict, set_name: str = "label-free") -> str:
    """The rows of ``results["rows"]`` for ``set_name`` ("label-free" or "guided") as a text table, one line per
    sampler: mean ± half-range over the seeds, and the Fréchet distance's 95 % confidence interval (the seeds'
    bounds averaged). ``× floor``: the Fréchet distance over real digits' at the same n; ``@n`` and ``÷ DDPM``: the
    Fréchet distance of a sampler's first ``n_ddpm`` samples (they start from DDPM-1000's noise) and its ratio to
    DDPM-1000's, the comparison at equal n."""
    rows = [row for row in results["rows"] if row["set"] == set_name]
    if not rows:
        raise ValueError(f"no rows of the set {set_name!r} in these results; sets: "
                         f"{sorted({row['set'] for row in results['rows']})}")
    n_ddpm = results["n_ddpm"]
    by_sampler: dict[str, list[dict]] = {}
    for row in rows:
        by_sampler.setdefault(row["sampler"], []).append(row)
    ddpm_rows = [row[f"frechet_distance_{n_ddpm}"] for row in rows if row["calls"] == 1000]
    ddpm = mean(ddpm_rows) if ddpm_rows else None
    agreement = set_name == "guided"
    lines = [f"{'sampler':28s} {'calls':>5s} {'n':>5s} {'s/sample':>8s} {'Fréchet':>13s} {'95 % CI':>14s} "
             f"{'× floor':>7s} {'@' + str(n_ddpm):>13s} {'÷ DDPM':>6s} {'confident %':>11s} {'gap pts':>9s}"
             + (f" {'agreement %':>11s}" if agreement else "")]
    for name, runs in by_sampler.items():
        def get(key, runs=runs):  # one value per seed
            return [run[key] for run in runs]

        n = runs[0]["n"]
        floor = results["real_floor"][str(n)]["frechet_distance"]
        low = mean(run["intervals"]["frechet_distance"][0] for run in runs)
        high = mean(run["intervals"]["frechet_distance"][1] for run in runs)
        same_n = get(f"frechet_distance_{n_ddpm}")
        ratio = f"{mean(same_n) / ddpm:6.2f}" if ddpm else f"{'–':>6s}"
        lines.append(f"{name:28s} {runs[0]['calls']:5d} {n:5d} {mean(get('seconds_per_sample')):8.4f} "
                     f"{_spread(get('frechet_distance')):>13s} {f'[{low:.1f}, {high:.1f}]':>14s} "
                     f"{mean(get('frechet_distance')) / floor:7.2f} {_spread(same_n):>13s} {ratio} "
                     f"{_spread(get('confident_share'), 100, 1):>11s} {_spread(get('class_share_gap'), 100, 1):>9s}"
                     + (f" {_spread(get('label_agreement'), 100, 1):>11s}" if agreement else ""))
    seeds = sorted({row["seed"] for row in rows})
    lines.append(f"mean ± half-range over seeds {seeds}; real digits' Fréchet distance (the floor): "
                 + ", ".join(f"{v['frechet_distance']:.2f} at n = {k}" for k, v in sorted(
                     results["real_floor"].items(), key=lambda item: int(item[0]))))
    return "\n".join(lines)

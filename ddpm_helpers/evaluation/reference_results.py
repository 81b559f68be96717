"""Benchmark results shipped with the helpers (package data ``ddpm_helpers/data/<name>.json``), for notebooks to
read and show.

``benchmarks/mnist_samplers.py`` measures the samplers of notebook 04 on its label-free and guided sets (n = 1000
per few-step sampler, n = 500 for DDPM-1000, two seeds, equal batches), writes
``ddpm_helpers/data/mnist_samplers.json`` and prints it with :func:`sampler_table`; installed with the package,
the file reaches a notebook in Colab as well. ``benchmarks/mnist_curve.py`` measures both sets against training
minutes (``mnist_curve.json``), drawn by :func:`curve_figure`.
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
    sampler: its network calls, mean ± half-range over the seeds, and the Fréchet distance's 95 % confidence interval
    (the seeds' bounds averaged); the cost of a call, measured once on an idle machine, closes the table (the
    CPU's name stays in the results file).
    ``× floor``: the Fréchet distance over real digits' at the same n; ``@n`` and ``÷ DDPM``: the Fréchet distance of
    a sampler's first ``n_ddpm`` samples (they start from DDPM-1000's noise) and its ratio to DDPM-1000's, the
    comparison at equal n. ``gap pts`` (label-free sets): the largest class-share gap; a guided set shows the label
    agreement instead (the labels asked for set its class shares)."""
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
    lines = [f"{'sampler':28s} {'calls':>5s} {'n':>5s} {'Fréchet':>13s} {'95 % CI':>14s} "
             f"{'× floor':>7s} {'@' + str(n_ddpm):>13s} {'÷ DDPM':>6s} {'confident %':>11s} "
             + (f"{'agreement %':>11s}" if agreement else f"{'gap pts':>9s}")]
    for name, runs in by_sampler.items():
        def get(key, runs=runs):  # one value per seed
            return [run[key] for run in runs]

        n = runs[0]["n"]
        floor = results["real_floor"][str(n)]["frechet_distance"]
        low = mean(run["intervals"]["frechet_distance"][0] for run in runs)
        high = mean(run["intervals"]["frechet_distance"][1] for run in runs)
        same_n = get(f"frechet_distance_{n_ddpm}")
        ratio = f"{mean(same_n) / ddpm:6.2f}" if ddpm else f"{'–':>6s}"
        lines.append(f"{name:28s} {runs[0]['calls']:5d} {n:5d} "
                     f"{_spread(get('frechet_distance')):>13s} {f'[{low:.1f}, {high:.1f}]':>14s} "
                     f"{mean(get('frechet_distance')) / floor:7.2f} {_spread(same_n):>13s} {ratio} "
                     f"{_spread(get('confident_share'), 100, 1):>11s} "
                     + (f"{_spread(get('label_agreement'), 100, 1):>11s}" if agreement
                        else f"{_spread(get('class_share_gap'), 100, 1):>9s}"))
    seeds = sorted({row["seed"] for row in rows})
    lines.append(f"mean ± half-range over seeds {seeds}; real digits' Fréchet distance (the floor): "
                 + ", ".join(f"{v['frechet_distance']:.2f} at n = {k}" for k, v in sorted(
                     results["real_floor"].items(), key=lambda item: int(item[0]))))
    if set_name in results.get("seconds_per_call", {}):
        lines.append(f"one network call on a batch of {results['batch']}: "
                     f"{results['seconds_per_call'][set_name]:.3f} s ({results['machine']['threads']} CPU threads, "
                     "an idle machine)")
    return "\n".join(lines)


def best_sampler(results: dict, set_name: str = "label-free", max_calls: int = 20) -> str:
    """The sampler of ``set_name`` with the lowest Fréchet distance, averaged over the seeds, among those with at most
    ``max_calls`` network calls per sample."""
    scores: dict[str, list[float]] = {}
    for row in results["rows"]:
        if row["set"] == set_name and row["calls"] <= max_calls:
            scores.setdefault(row["sampler"], []).append(row["frechet_distance"])
    if not scores:
        raise ValueError(f"no sampler of the set {set_name!r} with at most max_calls={max_calls} network calls")
    return min(scores, key=lambda name: mean(scores[name]))


def curve_points(results: dict, set_name: str, schedule: str = "wsd") -> dict[str, list[float]]:
    """The points of ``results["rows"]`` (``benchmarks/mnist_curve.py``) of one set and schedule, in order of
    training minutes: ``minutes``, ``ratio`` (Fréchet distance over the real digits' floor) with its 95 % interval
    (``ratio_low``, ``ratio_high``), and ``confident`` (the confidently read share, %) with its interval."""
    rows = sorted((row for row in results["rows"] if row["schedule"] == schedule), key=lambda row: row["minutes"])
    if not rows:
        raise ValueError(f"no rows of the schedule {schedule!r}; schedules: "
                         f"{sorted({row['schedule'] for row in results['rows']})}")
    floor = results["real_floor"]["frechet_distance"]
    found = [row[set_name] for row in rows]
    return {"minutes": [row["minutes"] for row in rows],
            "ratio": [f["frechet_distance"] / floor for f in found],
            "ratio_low": [f["intervals"]["frechet_distance"][0] / floor for f in found],
            "ratio_high": [f["intervals"]["frechet_distance"][1] / floor for f in found],
            "confident": [100 * f["confident_share"] for f in found],
            "confident_low": [100 * f["intervals"]["confident_share"][0] for f in found],
            "confident_high": [100 * f["intervals"]["confident_share"][1] for f in found]}


def curve_table(results: dict) -> str:
    """The rows of ``results["rows"]`` (``benchmarks/mnist_curve.py``) as a text table, one line per run in order of
    schedule and training minutes: its steps, and for each set the Fréchet distance over the real digits' floor and
    the confident share, each with its 95 % interval; the step time and the CPU close the table."""
    columns = f"{'× floor [95 % CI]':>22s} {'confident % [95 % CI]':>20s}"
    lines = [f"{'':24s}   {'label-free':<43s}   guided", f"{'run':17s} {'steps':>6s}   {columns}   {columns}"]
    for schedule in [s for s in ("wsd", "cosine") if any(row["schedule"] == s for row in results["rows"])]:
        points = {set_name: curve_points(results, set_name, schedule) for set_name in ("label-free", "guided")}
        steps = sorted(row["steps"] for row in results["rows"] if row["schedule"] == schedule)
        for i, minutes in enumerate(points["guided"]["minutes"]):
            cells = "   ".join(f"{p['ratio'][i]:7.2f} [{p['ratio_low'][i]:5.2f}, {p['ratio_high'][i]:5.2f}] "
                               f"{p['confident'][i]:6.1f} [{p['confident_low'][i]:4.1f}, {p['confident_high'][i]:5.1f}]"
                               for p in points.values())
            lines.append(f"{schedule + f', {minutes:g} min':17s} {steps[i]:6,d}   {cells}")
    machine = results["machine"]
    lines.append(f"one step: {results['step_seconds']:.3f} s on {machine['threads']} threads of {machine['cpu']}")
    return "\n".join(lines)


def curve_figure(results: dict):
    """Fréchet distance (× the real digits' floor) and confident share against training minutes, label-free and
    guided, with 95 % intervals: the runs of one trunk and its branches (``wsd``) and, where measured, runs of
    their own length with the cosine schedule. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    schedules = [s for s in ("wsd", "cosine") if any(row["schedule"] == s for row in results["rows"])]
    for set_name, color in (("label-free", "C0"), ("guided", "C1")):
        for schedule in schedules:
            points = curve_points(results, set_name, schedule)
            style = dict(color=color, marker="o" if schedule == "wsd" else "s", capsize=3,
                         linestyle="-" if schedule == "wsd" else "none",
                         label=set_name + (" (one run, its branches)" if schedule == "wsd" else " (cosine, own run)"))
            for ax, key in zip(axes, ("ratio", "confident")):
                low = [max(0.0, v - lo) for v, lo in zip(points[key], points[key + "_low"])]  # a bias-corrected
                high = [max(0.0, hi - v) for v, hi in zip(points[key], points[key + "_high"])]  # interval may miss v
                ax.errorbar(points["minutes"], points[key], yerr=[low, high], **style)
    axes[0].set(xscale="log", yscale="log", xlabel="training minutes (steps × step time, 2 CPU cores)",
                ylabel="Fréchet distance ÷ real digits'", title="distance to the data (lower is better)")
    axes[0].yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
    axes[0].yaxis.set_major_formatter(FormatStrFormatter("%g"))
    axes[1].set(xscale="log", xlabel="training minutes (steps × step time, 2 CPU cores)", ylabel="confidently read (%)",
                title="digits the judge reads (higher is better)")
    minutes = sorted({row["minutes"] for row in results["rows"]})
    for ax in axes:
        ax.set_xticks(minutes, [f"{m:g}" for m in minutes])  # the measured points, in plain numbers
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig

"""Reading committed benchmark results: the table a notebook shows, and the error for missing results."""

import re

import pytest

from ddpm_helpers.evaluation.reference_results import (
    best_sampler,
    curve_figure,
    curve_points,
    curve_table,
    load_results,
    sampler_table,
)


def _row(set_name, sampler, calls, seed, frechet, same_n, confident, gap, agreement=None):
    row = {"set": set_name, "sampler": sampler, "calls": calls, "seed": seed, "n": 10, "seconds_per_sample": 0.2,
           "frechet_distance": frechet, "frechet_distance_4": same_n, "confident_share": confident,
           "class_share_gap": gap, "intervals": {"frechet_distance": [frechet - 1, frechet + 1]}}
    return row if agreement is None else {**row, "label_agreement": agreement}


def test_sampler_table_shows_mean_and_spread_per_set():
    results = {"real_floor": {"10": {"frechet_distance": 2.0}}, "n_ddpm": 4, "rows": [
        _row("label-free", "ddpm", 1000, 0, 3.0, 8.0, 0.5, 0.01),
        _row("label-free", "ddpm", 1000, 1, 5.0, 8.0, 0.7, 0.03),
        _row("label-free", "s", 5, 0, 3.0, 5.0, 0.5, 0.01), _row("label-free", "s", 5, 1, 5.0, 7.0, 0.7, 0.03),
        _row("guided", "s", 5, 0, 1.0, 1.0, 0.9, 0.01, 0.8)]}
    row = sampler_table(results, "label-free").splitlines()[2].split()
    assert row == ["s", "5", "10", "4.00", "±", "1.00", "[3.0,", "5.0]", "2.00", "6.00", "±", "1.00",
                   "0.75", "60.0", "±", "10.0", "2.0", "±", "1.0"]
    assert "network call" not in sampler_table(results, "label-free")
    timed = {**results, "batch": 250, "seconds_per_call": {"label-free": 0.1234}, "machine": {"cpu": "X", "threads": 2}}
    assert sampler_table(timed, "label-free").splitlines()[-1] == ("one network call on a batch of 250: 0.123 s (2 CPU "
                                                                  "threads, an idle machine)")
    guided = sampler_table(results, "guided").splitlines()
    assert guided[0].split()[-2:] == ["agreement", "%"] and guided[1].split()[-3:] == ["80.0", "±", "0.0"]
    assert "–" in guided[1]  # no DDPM-1000 row in this set: no ratio to it
    assert "gap" not in guided[0] and len(guided[1].split()) == len(row)  # agreement in place of the gap
    with pytest.raises(ValueError, match="no rows of the set 'both'"):
        sampler_table(results, "both")


def test_best_sampler_ranks_by_mean_frechet_distance_within_the_calls():
    rows = [("ddpm", 1000, 0, 1.0), ("a", 20, 0, 3.0), ("a", 20, 1, 6.0), ("b", 10, 0, 5.0), ("b", 10, 1, 3.0)]
    results = {"rows": [_row("label-free", name, calls, seed, f, f, 0.9, 0.0) for name, calls, seed, f in rows]
               + [_row("guided", "a", 20, 0, 0.5, 0.5, 0.9, 0.0, 0.9)]}
    assert best_sampler(results, "label-free") == "b"  # mean 4.0 against a's 4.5; DDPM-1000 is out of reach
    assert best_sampler(results, "label-free", max_calls=1000) == "ddpm"
    assert best_sampler(results, "guided") == "a"
    with pytest.raises(ValueError, match="max_calls=5"):
        best_sampler(results, "label-free", max_calls=5)


def _curve_row(schedule, minutes, frechet, confident):
    found = {"frechet_distance": frechet, "confident_share": confident,
             "intervals": {"frechet_distance": [frechet - 1, frechet + 2], "confident_share": [confident - 0.1,
                                                                                              confident + 0.05]}}
    return {"schedule": schedule, "minutes": minutes, "label-free": found, "guided": {**found, "frechet_distance":
                                                                                      frechet + 1}}


def test_curve_points_and_figure_read_the_rows():
    results = {"real_floor": {"frechet_distance": 2.0}, "rows": [
        _curve_row("wsd", 10, 8.0, 0.9), _curve_row("wsd", 2.5, 20.0, 0.5), _curve_row("cosine", 2.5, 18.0, 0.6)]}
    points = curve_points(results, "label-free")
    assert points["minutes"] == [2.5, 10] and points["ratio"] == [10.0, 4.0] and points["ratio_high"] == [11.0, 5.0]
    assert points["confident"] == pytest.approx([50.0, 90.0]) and points["confident_low"] == pytest.approx([40, 80])
    assert curve_points(results, "guided", "cosine")["ratio"] == [9.5]
    with pytest.raises(ValueError, match="no rows of the schedule 'constant'"):
        curve_points(results, "guided", "constant")
    figure = curve_figure(results)
    drawn = {tuple(line.get_ydata()) for ax in figure.axes for line in ax.get_lines() if len(line.get_ydata()) > 1}
    assert (10.0, 4.0) in drawn and (50.0, 90.0) in drawn  # the label-free ratios and shares, as plotted


def test_curve_table_has_a_line_per_run_in_order_with_its_steps_and_both_sets():
    rows = [_curve_row("wsd", 10, 8.0, 0.9), _curve_row("cosine", 2.5, 18.0, 0.6), _curve_row("wsd", 2.5, 20.0, 0.5)]
    for row, steps in zip(rows, (1000, 260, 250)):
        row["steps"] = steps
    results = {"real_floor": {"frechet_distance": 2.0}, "rows": rows, "step_seconds": 0.1188,
               "machine": {"cpu": "Some CPU", "threads": 2}}
    lines = curve_table(results).splitlines()
    assert [line.split()[:4] for line in lines[2:5]] == [["wsd,", "2.5", "min", "250"], ["wsd,", "10", "min", "1,000"],
                                                        ["cosine,", "2.5", "min", "260"]]
    assert re.findall(r"\d+\.\d+", lines[3]) == ["4.00", "3.50", "5.00", "90.0", "80.0", "95.0",  # label-free
                                                "4.50", "3.50", "5.00", "90.0", "80.0", "95.0"]  # guided: Fréchet + 1
    assert lines[-1] == "one step: 0.119 s on 2 threads of Some CPU"


def test_missing_results_name_the_benchmark():
    with pytest.raises(FileNotFoundError, match="benchmarks/no_such_results.py"):
        load_results("no_such_results")


@pytest.mark.parametrize("name", ["../../../etc/passwd", "../data/mnist_samplers", "/etc/hosts", "", 3])
def test_a_results_name_cannot_leave_the_package_folder(name):
    with pytest.raises(ValueError, match=re.escape(f"name={name!r}")):
        load_results(name)


def test_notebook_04_shows_the_committed_sampler_table():
    """The tables in 04's committed outputs, and the label-free sampler it picks, are those the committed results
    file gives: rerun 04 after committing new results."""
    import json
    from pathlib import Path

    notebook = json.loads((Path(__file__).resolve().parents[1] / "notebooks" / "04_mnist.ipynb").read_text())
    cell = next(c for c in notebook["cells"] if c["cell_type"] == "code" and 'load_results("mnist_samplers")' in
                "".join(c["source"]))
    printed = "".join("".join(o.get("text", "")) for o in cell["outputs"] if o.get("output_type") == "stream")
    results = load_results("mnist_samplers")
    expected = "".join(f"{name}:\n{sampler_table(results, name)}\n\n" for name in ("label-free", "guided"))
    expected += f"lowest Fréchet distance at ≤ 20 network calls, label-free: {best_sampler(results, 'label-free')}\n"
    assert printed == expected


def test_notebook_04_shows_the_committed_curve():
    """The curve table in 04's committed outputs is the one the committed results file gives: rerun 04 after
    committing new results."""
    import json
    from pathlib import Path

    notebook = json.loads((Path(__file__).resolve().parents[1] / "notebooks" / "04_mnist.ipynb").read_text())
    cell = next(c for c in notebook["cells"] if c["cell_type"] == "code" and 'load_results("mnist_curve")' in
                "".join(c["source"]))
    printed = "".join("".join(o.get("text", "")) for o in cell["outputs"] if o.get("output_type") == "stream")
    assert printed == curve_table(load_results("mnist_curve")) + "\n"

"""Reading committed benchmark results: the table a notebook shows, and the error for missing results."""

import re

import pytest

from ddpm_helpers.evaluation.reference_results import load_results, sampler_table


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
    assert row == ["s", "5", "10", "0.2000", "4.00", "±", "1.00", "[3.0,", "5.0]", "2.00", "6.00", "±", "1.00",
                   "0.75", "60.0", "±", "10.0", "2.0", "±", "1.0"]
    guided = sampler_table(results, "guided").splitlines()
    assert guided[0].split()[-2:] == ["agreement", "%"] and guided[1].split()[-3:] == ["80.0", "±", "0.0"]
    assert "–" in guided[1]  # no DDPM-1000 row in this set: no ratio to it
    with pytest.raises(ValueError, match="no rows of the set 'both'"):
        sampler_table(results, "both")


def test_missing_results_name_the_benchmark():
    with pytest.raises(FileNotFoundError, match="benchmarks/no_such_results.py"):
        load_results("no_such_results")


@pytest.mark.parametrize("name", ["../../../etc/passwd", "../data/mnist_samplers", "/etc/hosts", "", 3])
def test_a_results_name_cannot_leave_the_package_folder(name):
    with pytest.raises(ValueError, match=re.escape(f"name={name!r}")):
        load_results(name)


def test_notebook_04_shows_the_committed_sampler_table():
    """The table in 04's committed outputs is the one the committed results file gives (or, with no file yet, the
    line saying so): rerun 04 after committing new results."""
    import json
    from pathlib import Path

    from ddpm_helpers.evaluation.reference_results import results_path

    notebook = json.loads((Path(__file__).resolve().parents[1] / "notebooks" / "04_mnist.ipynb").read_text())
    cell = next(c for c in notebook["cells"] if c["cell_type"] == "code" and 'results_path("mnist_samplers")' in
                "".join(c["source"]))
    printed = "".join("".join(o.get("text", "")) for o in cell["outputs"] if o.get("output_type") == "stream")
    if results_path("mnist_samplers").is_file():
        results = load_results("mnist_samplers")
        expected = "".join(f"{name}:\n{sampler_table(results, name)}\n\n" for name in ("label-free", "guided"))
    else:
        expected = ("The sampler table is produced by benchmarks/mnist_samplers.py (its results are not committed "
                    "yet).\n")
    assert printed == expected

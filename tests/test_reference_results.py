"""Reading committed benchmark results: the table a notebook shows, and the error for missing results."""

import re

import pytest

from ddpm_helpers.evaluation.reference_results import load_results, sampler_table


def test_sampler_table_shows_mean_and_spread():
    results = {"real_floor": {"10": {"frechet_distance": 2.0}}, "n_ddpm": 4, "rows": [
        {"sampler": "ddpm", "calls": 50, "n": 10, "frechet_distance": [3.0, 5.0], "frechet_distance_4": [8.0, 8.0],
         "confident_share": [0.5, 0.7], "class_share_gap": [0.01, 0.03], "seconds_per_sample": [0.1, 0.3]},
        {"sampler": "s", "calls": 5, "n": 10, "frechet_distance": [3.0, 5.0], "frechet_distance_4": [5.0, 7.0],
         "confident_share": [0.5, 0.7], "class_share_gap": [0.01, 0.03], "seconds_per_sample": [0.1, 0.3]}]}
    row = sampler_table(results).splitlines()[2].split()
    assert row[1:] == ["5", "10", "0.2000", "4.00", "±", "1.00", "2.00", "6.00", "±", "1.00", "0.75",
                       "60.0", "±", "10.0", "2.0", "±", "1.0"]


def test_missing_results_name_the_benchmark():
    with pytest.raises(FileNotFoundError, match="benchmarks/no_such_results.py"):
        load_results("no_such_results")


@pytest.mark.parametrize("name", ["../../../etc/passwd", "../data/mnist_samplers", "/etc/hosts", "", 3])
def test_a_results_name_cannot_leave_the_package_folder(name):
    with pytest.raises(ValueError, match=re.escape(f"name={name!r}")):
        load_results(name)

"""Notebook 05's copy test, run again on the samples its full-profile run saved (issue 24).

    DDPM_DATA_DIR=../shared/data python benchmarks/butterfly_copies.py         # outputs/05_butterflies of the last run
    python benchmarks/butterfly_copies.py --outputs /path/to/outputs/05_butterflies

Reads ``samples.pt`` (section 4: the notebook's own run) and ``samples_64.pt`` (section 6: the committed 64×64
run), and for each set runs section 5's shift-aware test at the set's size (``evaluation.copies.copy_test``:
every training image under both flips and a grid of the augmentation's crops): the copy line (the closest any
training image comes to a view of *another* one), the share of samples below it beside the share of as many fresh
augmented views of real butterflies (measured to the other images), the share of planted augmented copies it
catches, and the ratio of the medians of the nearest-view distances (samples over fresh views), with 95 % Wilson
intervals. The set **passes** when the two shares' intervals overlap (the samples fall below the line no more often
than new butterflies do, up to chance) and the ratio of the medians is at least 0.9 (the samples are not
systematically nearer the training set than new butterflies). Prints, never asserts.
"""

import argparse
from pathlib import Path

import torch
from common import cpu_name

from ddpm_helpers import config
from ddpm_helpers.checkpoint import load_checkpoint
from ddpm_helpers.datasets import butterfly_images, to_unit_range
from ddpm_helpers.evaluation.copies import copy_test
from ddpm_helpers.evaluation.intervals import wilson_interval

FILES = {"samples.pt": "section 4 (the notebook's run)", "samples_64.pt": "section 6 (the 64×64 run)"}
MIN_MEDIAN_RATIO = 0.9


def share(k: int, n: int) -> tuple[int, int, float, float]:
    """(count, n, 95 % Wilson interval)."""
    return (k, n, *wilson_interval(k, n))


def describe(counted: tuple[int, int, float, float]) -> str:
    k, n, low, high = counted
    return f"{k} of {n} ({k / n:.1%}; 95 % interval {low:.1%}–{high:.1%})"


def report(samples: torch.Tensor, train: torch.Tensor) -> None:
    """Section 5's test at the samples' size, printed with its verdict."""
    test = copy_test(samples, train)
    below = test.below_line()
    flagged, new = share(*below["samples"]), share(*below["fresh"])
    ratio = test.median_ratio()
    print(f"  copy line {test.copy_line:.3f}; planted copies caught: {describe(share(*below['planted']))}")
    print(f"  samples below the line:     {describe(flagged)}")
    print(f"  fresh views below the line: {describe(new)}")
    print(f"  median nearest-view distance: samples {test.samples.median():.3f}, fresh views "
          f"{test.fresh.median():.3f} (ratio {ratio:.2f}, pass ≥ {MIN_MEDIAN_RATIO})")
    overlap = flagged[2] <= new[3] and new[2] <= flagged[3]
    passed = overlap and ratio >= MIN_MEDIAN_RATIO
    print(f"  verdict: {'passes' if passed else 'FAILS'} (shares' intervals "
          f"{'overlap' if overlap else 'do not overlap'}, ratio {ratio:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outputs", type=Path, default=None,
                        help="05's outputs folder (default: outputs/05_butterflies)")
    args = parser.parse_args()
    folder = args.outputs or config.outputs_dir("05_butterflies")
    found = [file for file in FILES if (folder / file).is_file()]
    if not found:
        raise SystemExit(f"no samples.pt or samples_64.pt in {folder}: run notebook 05 in the full profile first")
    print(f"# notebook 05's copy test: {folder}; on {cpu_name()}")
    for file in found:
        samples = to_unit_range(load_checkpoint(folder / file)["samples"])
        size = samples.shape[-1]
        print(f"{FILES[file]}: {len(samples)} samples at {size}×{size} ({file})")
        report(samples, butterfly_images(size).images)


if __name__ == "__main__":
    main()

"""Notebook 04's targets, checked on the samples its full-profile run saved (issues 23 and 24).

    DDPM_DATA_DIR=../shared/data python benchmarks/mnist_targets.py            # outputs/04_mnist of the last run
    python benchmarks/mnist_targets.py --outputs /path/to/outputs/04_mnist

Reads what notebook 04 writes to its outputs folder — ``samples.pt`` and ``sample_labels.pt`` (the guided set),
``samples_unconditional.pt`` (the label-free set), ``samples_unconditional_long.pt`` when present (the long run's
label-free set) and ``metrics.json`` (the training's steps and seconds) — scores each set with the shipped judge
(``mnist_eval``: 95 % intervals, Wilson for shares, the jackknife for distances) beside as many real training
digits, and prints every target with the measured value, its interval and whether the value meets it:

- guided: ≥ 95 % confidently read, ≥ 95 % label agreement, Fréchet distance ≤ 2× the real digits';
- label-free: ≥ 85 % confident, every digit's share within 3 points of the data's, Fréchet ≤ 5× (stretch 3×);
- the long run's label-free set: ≥ 90 % confident, Fréchet ≤ 2.5×;
- training ≤ 600 s.

Prints, never asserts: the verdicts are for the note of whoever ran the notebook.
"""

import argparse
import json
from pathlib import Path

import torch
from common import cpu_name, score

from ddpm_helpers import config
from ddpm_helpers.evaluation import mnist_eval

SETS = {  # file: (name, labels file or None, targets: (metric, "≥" or "≤", value, in units of the floor?[, note]))
    "samples.pt": ("guided", "sample_labels.pt", [("confident_share", "≥", 0.95, False),
                                                  ("label_agreement", "≥", 0.95, False),
                                                  ("frechet_distance", "≤", 2.0, True)]),
    "samples_unconditional.pt": ("label-free", None, [("confident_share", "≥", 0.85, False),
                                                      ("class_share_gap", "≤", 0.03, False),
                                                      ("frechet_distance", "≤", 5.0, True),
                                                      ("frechet_distance", "≤", 3.0, True, " (stretch)")]),
    "samples_unconditional_long.pt": ("label-free, long run", None, [("confident_share", "≥", 0.90, False),
                                                                     ("frechet_distance", "≤", 2.5, True)]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outputs", type=Path, default=None, help="04's outputs folder (default: outputs/04_mnist)")
    args = parser.parse_args()
    folder = args.outputs or config.outputs_dir("04_mnist")
    if not (folder / "samples.pt").is_file():
        raise SystemExit(f"no samples.pt in {folder}: run notebook 04 in the full profile first")
    summary = json.loads((folder / "metrics.json").read_text())
    print(f"# notebook 04's targets: {folder} ({summary['profile']} profile, {summary['device']}); judged on "
          f"{cpu_name()}")
    minutes = round(summary["train_seconds"] / 60, 1)  # a calibrated budget ends a fraction of a second after it
    verdict = "met" if minutes <= 10 else "missed"
    print(f"training: {summary['steps']} steps in {summary['train_seconds']:.1f} s = {minutes} min; target ≤ 10 min: "
          f"{verdict}")
    evaluator = mnist_eval.DigitEvaluator()
    for file, (name, labels_file, targets) in SETS.items():
        if not (folder / file).is_file():
            print(f"{name}: no {file}")
            continue
        samples = torch.load(folder / file, weights_only=True)  # uint8 pixels: no unpickling of arbitrary objects
        asked = torch.load(folder / labels_file, weights_only=True) if labels_file else None
        found = score(evaluator, samples, asked)
        floor = evaluator.real_floor(len(samples)).frechet_distance
        print(f"\n{name}, n = {len(samples)} (real digits' Fréchet distance at this n: {floor:.2f})")
        for metric, sense, target, of_floor, *stretch in targets:
            value, (low, high) = found[metric], found["intervals"][metric]
            scale, unit = (1 / floor, "× the real digits'") if of_floor else (100, "%" if "share" in metric
                                                                               or "agreement" in metric else "")
            if metric == "class_share_gap":
                unit = "points"
            measured = value / floor if of_floor else value  # the target's units
            met = measured >= target if sense == "≥" else measured <= target
            shown_target = target if of_floor else 100 * target
            print(f"  {metric:18s} {scale * value:7.2f} [{scale * low:.2f}, {scale * high:.2f}] {unit:20s} "
                  f"target {sense} {shown_target:g}{''.join(stretch)}: {'met' if met else 'missed'}")


if __name__ == "__main__":
    main()

"""What more compute buys on MNIST: label-free and guided quality against training minutes, and the long run
(issue 24). Resumable: run the same command again after an interruption.

    DDPM_DATA_DIR=../shared/data python benchmarks/mnist_curve.py --export weights/04_mnist_long_ema.safetensors
    python benchmarks/mnist_curve.py --points 0.5,1 --long-min 2 --cosine 0.5 --out /tmp/try.json   # a quick look

Notebook 04's recipe (``mnist-cpu``: the U-Net trained on the labels and on 40 k-means clusters, v-prediction,
min-SNR, EMA) with a warmup–stable–decay learning rate (``--lr-schedule wsd``: constant, then a linear cool-down
over the last 20 % of a run; Hägele et al. 2024) instead of the cosine. A point of ``m`` minutes is a run of
N = m·60 / s steps, s the step time measured at the start on this machine (steps 100–300; on an idle machine, once:
``--out`` keeps it; those 300 steps are the trunk's first). One trunk trains the longest run (``--long-min``) at
the full rate; each shorter run branches off it at ``training.branch_step(N)``, the last step it shares with every
longer run, and trains its own cool-down from a copy of the trunk's checkpoint. So the curve costs the long run
plus the cool-downs, not the sum of its points. Every run is a command of the command line:

    python -m ddpm_helpers.train_cli mnist-cpu --steps N --lr-schedule wsd --out-dir D [--stop-at B]

``--cosine`` trains some points separately with 04's cosine schedule, to show that a branch reaches what a run of
its own length reaches. Each point is judged like notebook 04: 1000 label-free digits (clusters drawn in proportion
to their sizes, guidance w = 1, the sampler the committed sampler table ranks best at ≤ 20 calls) and 1000 guided
digits (0–9 in turn, w = 0.25, DDIM with 20 steps and η = 1), the shipped judge with 95 % intervals, beside real
digits at the same n. The trunk's end is the long run, exported to
``--export`` as safetensors. Rows go to ``--out`` (default ``ddpm_helpers/data/mnist_curve.json``, which notebook
04 plots through ``reference_results.curve_figure``) as they finish; finished points are skipped when rerun.
Prints, never asserts.
"""

import argparse
import json
import shutil
import time
from pathlib import Path

import torch
from common import GUIDED_SAMPLER, SETS, conditions, cpu_name, draw, score, write_json

from ddpm_helpers import config
from ddpm_helpers.checkpoint import load_checkpoint
from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.evaluation import mnist_eval
from ddpm_helpers.evaluation.reference_results import best_sampler, load_results, results_path
from ddpm_helpers.nn.unet import UNet
from ddpm_helpers.samplers import by_name
from ddpm_helpers.training import branch_step, cli, recipes
from ddpm_helpers.training.pretrained import export_weights

RECIPE = recipes.MNIST["cpu"]


def minutes(text: str) -> list[float]:
    return [float(m) for m in text.split(",") if m.strip()]


def train(folder: Path, steps: int, schedule: str, stop_at: int | None = None, log: Path | None = None) -> None:
    """One call of the command line (it resumes from ``folder``'s checkpoint; ``log``: its training log)."""
    argv = ["mnist-cpu", "--steps", str(steps), "--lr-schedule", schedule, "--out-dir", str(folder), "--no-progress"]
    argv += [] if stop_at is None else ["--stop-at", str(stop_at)]
    cli.main(argv + ([] if log is None else ["--log", str(log)]))


def trained_steps(folder: Path) -> int:
    path = folder / "checkpoint.pt"
    return load_checkpoint(path)["step"] if path.is_file() else 0


def trunk_to(trunk: Path, long_steps: int, step: int, log: Path | None) -> None:
    """Train the trunk (the long run) on to ``step``, unless it is there already."""
    if trained_steps(trunk) < step:
        train(trunk, long_steps, "wsd", stop_at=None if step >= long_steps else step, log=log)


def ema_network(folder: Path) -> tuple[dict, UNet]:
    """``folder``'s ``ema.pt`` (train_cli's EMA weights and settings) and the U-Net rebuilt from it."""
    saved = load_checkpoint(folder / "ema.pt")
    network = UNet(**saved["unet_config"])
    network.load_state_dict(saved["model"])
    return saved, network


def judge(folder: Path, evaluator, args) -> dict:
    """Both sets of notebook 04 from ``folder``'s EMA weights, scored with intervals."""
    saved, network = ema_network(folder)
    network = network.eval().to(memory_format=torch.channels_last)
    diffusion = Diffusion.from_schedule(saved["schedule"], T=saved["T"])
    x_T = torch.randn(args.n, 1, 28, 28, generator=torch.Generator().manual_seed(1000))
    found = {"steps": saved["steps"]}
    for set_name in SETS:
        classes, scale = conditions(saved, set_name, args.n, seed=0)
        name = GUIDED_SAMPLER if set_name == "guided" else best_sampler(load_results("mnist_samplers"), "label-free")
        sampler, kwargs = by_name(name)  # notebook 04's samplers
        samples, seconds = draw(sampler, network, diffusion, x_T, classes, scale, saved["prediction"], 0, 250, **kwargs)
        found[set_name] = {"guidance": scale, "sampler": name, "sample_seconds": round(seconds, 1),
                           **score(evaluator, samples, classes if set_name == "guided" else None)}
        print(f"  {set_name}: Fréchet {found[set_name]['frechet_distance']:.2f}, confident "
              f"{100 * found[set_name]['confident_share']:.1f} %", flush=True)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=minutes, default=[2.5, 5, 10, 20, 40], help="training minutes of the curve")
    parser.add_argument("--long-min", type=float, default=60.0, help="minutes of the long run (the trunk)")
    parser.add_argument("--cosine", type=minutes, default=[2.5, 5], help="points also trained on their own, "
                        "with the recipe's cosine schedule")
    parser.add_argument("--n", type=int, default=1000, help="samples per set")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=Path, default=None, help="where the runs' folders go (default: "
                        "<DDPM_OUTPUT_DIR>/curve)")
    parser.add_argument("--export", type=Path, default=None, help="write the long run's EMA weights here "
                        "(.safetensors), e.g. weights/04_mnist_long_ema.safetensors")
    parser.add_argument("--out", type=Path, default=Path(str(results_path("mnist_curve"))))
    parser.add_argument("--log", type=Path, default=None, help="the long run's training log: one JSON line per "
                        "call that trains the trunk (train_cli --log)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    runs = args.runs or config.outputs_dir("curve")
    trunk = runs / "trunk"
    results = json.loads(args.out.read_text()) if args.out.is_file() else {
        "benchmark": "benchmarks/mnist_curve.py", "recipe": RECIPE.name, "lr_schedule": "wsd",
        "cooldown": RECIPE.train_config(lr_schedule="wsd").cooldown, "n": args.n,
        "machine": {"cpu": cpu_name(), "threads": args.threads, "torch": torch.__version__}, "rows": []}
    if "step_seconds" not in results:  # the trunk's steps 100–300 fix every step count of the curve, once
        calibration = runs / "calibration"
        if trunk.exists() or calibration.exists():
            raise SystemExit(f"{runs} holds runs but {args.out} no step time: remove them, or pass that --out")
        train(calibration, 10**6, "wsd", stop_at=100, log=args.log)
        before = load_checkpoint(calibration / "checkpoint.pt")["seconds"]
        train(calibration, 10**6, "wsd", stop_at=300, log=args.log)
        results["step_seconds"] = round((load_checkpoint(calibration / "checkpoint.pt")["seconds"] - before) / 200, 5)
        calibration.rename(trunk)  # at the full rate until the first fork: these 300 steps are the trunk's too
        results["plan"] = {"points_min": args.points, "long_min": args.long_min, "cosine_min": args.cosine}
        write_json(args.out, results)
    seconds = results["step_seconds"]
    plan = results["plan"]
    to_steps = {m: int(round(m * 60 / seconds)) for m in (*plan["points_min"], plan["long_min"], *plan["cosine_min"])}
    long_steps = to_steps[plan["long_min"]]
    print(f"{1000 * seconds:.1f} ms per step on {results['machine']['cpu']}: " +
          ", ".join(f"{m:g} min = {n:,} steps" for m, n in sorted(to_steps.items())), flush=True)
    wsd = RECIPE.train_config(lr_schedule="wsd")
    early = [m for m in plan["points_min"] if to_steps[m] < long_steps and branch_step(to_steps[m], wsd) < 300]
    if early:  # the trunk has trained 300 steps (the calibration): a point must fork after them
        shortest = wsd.warmup_steps + (300 - wsd.warmup_steps) / (1 - wsd.cooldown) + 1  # its fork at step 300
        raise SystemExit(f"points {early} (minutes) would branch off before step 300, where the trunk already is: "
                         f"give points of at least {shortest * seconds / 60:.2f} minutes")
    done = {(row["schedule"], row["steps"]) for row in results["rows"]}
    evaluator = mnist_eval.DigitEvaluator()
    if "real_floor" not in results:
        real, real_labels = mnist_eval.real_digits(args.n)
        results["real_floor"] = {**{k: v for k, v in evaluator.evaluate(real).as_dict().items()
                                    if isinstance(v, float)},
                                 "intervals": {k: list(v) for k, v in evaluator.intervals(real, real_labels).items()}}

    def finish(folder: Path, schedule: str, m: float, steps: int) -> None:
        started = time.perf_counter()
        print(f"{schedule} {m:g} min ({steps:,} steps):", flush=True)
        row = {"schedule": schedule, "minutes": m, "steps": steps,
               "train_seconds": round(load_checkpoint(folder / "checkpoint.pt")["seconds"], 1),
               **judge(folder, evaluator, args)}
        row["judge_seconds"] = round(time.perf_counter() - started, 1)
        results["rows"].append(row)
        write_json(args.out, results)

    for m in sorted(plan["points_min"]):  # the branches, shortest first, as the trunk passes their fork
        steps = to_steps[m]
        if ("wsd", steps) in done or steps >= long_steps:
            continue
        branch = runs / f"wsd-{steps}"
        if trained_steps(branch) < steps:
            if not (branch / "checkpoint.pt").is_file():
                trunk_to(trunk, long_steps, branch_step(steps, wsd), args.log)
                branch.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(trunk / "checkpoint.pt", branch / "checkpoint.pt")
            train(branch, steps, "wsd")
        finish(branch, "wsd", m, steps)
    trunk_to(trunk, long_steps, long_steps, args.log)
    if ("wsd", long_steps) not in done:
        finish(trunk, "wsd", plan["long_min"], long_steps)
    if args.export is not None:
        saved, network = ema_network(trunk)
        state = load_checkpoint(trunk / "checkpoint.pt")  # the run's seconds and per-step losses, for the header
        export_weights(network, args.export, **{k: v for k, v in saved.items() if k != "model"},
                       seconds=round(state["seconds"], 1), losses=state["losses"],
                       train_config=vars(RECIPE.train_config(steps=long_steps, lr_schedule="wsd", time_budget_s=None)))
        print(f"the long run's EMA weights: {args.export}")
    for m in sorted(plan["cosine_min"]):  # the same points trained on their own, cosine: does a branch match?
        steps = to_steps[m]
        if ("cosine", steps) not in done:
            train(runs / f"cosine-{steps}", steps, "cosine")
            finish(runs / f"cosine-{steps}", "cosine", m, steps)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()

"""Train the U-Net of notebook 04 or 05 from a shell, on one process or many (``torchrun``).

    python -m ddpm_helpers.train_cli butterflies-gpu                      # one GPU (or the CPU)
    torchrun --nproc_per_node=4 -m ddpm_helpers.train_cli butterflies-gpu  # 4 GPUs of one machine
    python -m ddpm_helpers.train_cli butterflies128-gpu --image-folder ~/my_butterflies --budget-min 120

The recipes (``ddpm_helpers.training.recipes``) are the configurations the notebooks use. Settings come from
``ddpm_helpers.config`` (``DDPM_DATA_DIR``, ``DDPM_OUTPUT_DIR``, ``DDPM_DEVICE``). Under torchrun
each rank trains on its own random minibatches of ``--batch-size`` (effective batch: world size ×
batch size) and rank 0 writes ``<out>/checkpoint.pt`` (the training state: run the same command
again to resume), ``<out>/ema.pt`` (the EMA weights and the settings to rebuild the U-Net) and,
with ``--samples``, ``<out>/samples.png``. ``--export`` writes the EMA weights as safetensors for ``weights/``
(with the settings, the per-step losses and a ``SHA256SUMS`` line beside them); ``--log`` appends one JSON line per
call (the steps it trained, its minutes, the CPU), the training log of a run trained in several sittings.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ddpm_helpers import config, datasets, schedules
from ddpm_helpers.checkpoint import load_checkpoint, save_checkpoint
from ddpm_helpers.datasets.clusters import labels_and_clusters
from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.nn.unet import UNet
from ddpm_helpers.training import distributed, recipes
from ddpm_helpers.training.loop import train
from ddpm_helpers.training.precision import MIXED_PRECISIONS
from ddpm_helpers.training.pretrained import export_weights
from ddpm_helpers.training.timing import cpu_name
from ddpm_helpers.training.train_config import LR_SCHEDULES
from ddpm_helpers.utils import count_parameters


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ddpm_helpers.train_cli", description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", choices=sorted(recipes.RECIPES),
                        help="the configuration (see ddpm_helpers.training.recipes)")
    parser.add_argument("--image-folder", type=Path, help="train on these images (.png/.jpg) instead of the "
                        "butterflies of DDPM_DATA_DIR (or the 128 NHM butterflies, downloaded and checked)")
    parser.add_argument("--steps", type=int, help="number of steps (with a budget: the most it may plan)")
    parser.add_argument("--budget-min", type=float, help="calibrated training budget in minutes (steps fitted to it)")
    parser.add_argument("--time-limit-min", type=float, help="hard stop of this call after so many minutes")
    parser.add_argument("--stop-at", type=int, help="hard stop of this call at this step (the next call trains on)")
    parser.add_argument("--lr-schedule", choices=LR_SCHEDULES, help="instead of the recipe's (wsd: runs of many "
                        "lengths branch off one trunk, see TrainConfig)")
    parser.add_argument("--batch-size", type=int, help="minibatch per process")
    parser.add_argument("--mixed-precision", choices=MIXED_PRECISIONS)
    parser.add_argument("--out-dir", type=_folder, help="default: <DDPM_OUTPUT_DIR>/train/<recipe>")
    parser.add_argument("--no-resume", action="store_true", help="train afresh even if out-dir holds a checkpoint")
    parser.add_argument("--samples", type=_count, default=0, help="DDIM samples (50 steps) drawn with the EMA weights")
    parser.add_argument("--export", type=Path, help="also write the EMA weights here as safetensors (e.g. "
                        "weights/05_butterflies64_ema.safetensors), with SHA256SUMS beside them")
    parser.add_argument("--log", type=Path, help="append a JSON line per call: steps trained, minutes, CPU")
    parser.add_argument("--schedule", choices=schedules.SCHEDULES, default="linear",
                        help="the noise schedule (see ddpm_helpers.schedules), T = 1000 steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.image_folder is not None and recipes.get(args.recipe).data != "butterflies":
        parser.error("--image-folder is for the butterfly recipes (RGB images)")
    return args


def _folder(text: str) -> Path:
    """A --out-dir value: a non-empty folder path (Path('') would be the working directory)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is empty: give a folder, or leave --out-dir out for the default")
    return Path(text)


def _count(text: str) -> int:
    """A --samples value: an integer >= 0."""
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return int(text)


def _changes(args: argparse.Namespace) -> dict:
    """The TrainConfig fields the command line overrides."""
    changes = {"seed": args.seed}
    if args.budget_min is not None:
        changes.update(time_budget_s=60 * args.budget_min, steps=args.steps)  # steps: a cap, or None
    elif args.steps is not None:
        changes.update(steps=args.steps, time_budget_s=None)  # a fixed number of steps
    for field, value in (("time_limit_s", args.time_limit_min and 60 * args.time_limit_min),
                         ("stop_at_step", args.stop_at), ("lr_schedule", args.lr_schedule),
                         ("batch_size", args.batch_size), ("mixed_precision", args.mixed_precision)):
        if value is not None:
            changes[field] = value
    return changes


def load_batches(recipe: recipes.Recipe, batch_size: int, image_folder: Path | None, ranks: distributed.Context):
    """The training data as ``train``'s ``batches`` (rank 0 loads, or downloads, first; then the others)."""
    for turn in (True, False):  # rank 0's turn, then everyone else's
        if ranks.is_main == turn:
            if recipe.data == "mnist":
                data = datasets.mnist_images(train=True)
            elif image_folder is not None:
                data = datasets.load_image_folder(image_folder, recipe.image_size)
            else:
                data = datasets.butterfly_images(recipe.image_size).images
        distributed.barrier(ranks)
    if recipe.data == "mnist" and recipe.clusters:  # each digit with its label and with its k-means cluster
        images, classes, shares = labels_and_clusters(*data, recipe.clusters)
        return (images, classes), len(data[0]), shares
    if recipe.data == "mnist":
        return data, len(data[0]), None  # (images, labels): random minibatches of both
    return datasets.random_batches(data, batch_size, transform=datasets.flip_and_crop), len(data), None


def label_free_metadata(shares) -> dict:
    """What a network trained on labels and clusters records for drawing label-free samples: the first cluster's
    class, the clusters' shares and the guidance scale over them (``{}`` for other networks)."""
    if shares is None:
        return {}
    return {"label_free": {"class_offset": 10, "shares": shares.tolist(), "guidance": recipes.LABEL_FREE_GUIDANCE}}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    recipe = recipes.get(args.recipe)
    ranks, device = distributed.init(config.get_device().type)
    train_config = recipe.train_config(**_changes(args))
    out_dir = args.out_dir or config.outputs_dir("train") / recipe.name
    batches, num_images, shares = load_batches(recipe, train_config.batch_size, args.image_folder, ranks)

    config.seed_everything(args.seed)
    model = UNet(**recipe.unet)
    diffusion = Diffusion.from_schedule(args.schedule, T=1000)
    resumed = out_dir / "checkpoint.pt"
    first_step = load_checkpoint(resumed)["step"] if resumed.is_file() and not args.no_resume else 0
    if ranks.is_main:
        print(f"{recipe.name}: {count_parameters(model):,} parameters, {num_images} training images, "
              f"{ranks.world_size} process(es) × batch {train_config.batch_size} on {device.type}\n{train_config}")
    started = time.perf_counter()
    result = train(model, diffusion, batches, train_config, device=device, out_dir=out_dir,
                   resume=not args.no_resume, progress=not args.no_progress)
    if ranks.is_main:
        seconds_per_step = result.seconds / max(result.steps, 1)
        print(f"{result.steps} steps in {result.seconds / 60:.1f} min: {seconds_per_step:.3f} s/step, "
              f"{ranks.world_size * train_config.batch_size / seconds_per_step:.1f} images/s"
              f"{' (stopped early)' if result.stopped_early else ''}")
        settings = {"unet_config": recipe.unet, "recipe": recipe.name, "schedule": args.schedule,
                    "prediction": train_config.prediction, "T": diffusion.T, **label_free_metadata(shares)}
        save_checkpoint(out_dir / "ema.pt", {"model": result.ema.model.state_dict(), "steps": result.steps, **settings})
        if args.export is not None:
            export_weights(result.ema.model, args.export, result=result, train_config=vars(train_config), **settings)
            print(f"EMA weights exported to {args.export}")
        if args.log is not None:
            _log_call(args.log, recipe.name, first_step, result, time.perf_counter() - started)
        if args.samples > 0:
            _save_samples(result.ema.model, diffusion, recipe, train_config.prediction, args.samples, device,
                          out_dir / "samples.png")
    distributed.shutdown()


def _log_call(path: Path, recipe: str, first_step: int, result, seconds: float) -> None:
    """Append this call's segment of the run to the JSON-lines file ``path``."""
    losses = result.losses[first_step:]
    line = {"recipe": recipe, "from_step": first_step, "to_step": result.steps, "minutes": round(seconds / 60, 2),
            "run_minutes": round(result.seconds / 60, 2), "stopped_early": result.stopped_early,
            "mean_loss": round(sum(losses) / len(losses), 5) if losses else None, "cpu": cpu_name(),
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as log:
        log.write(json.dumps(line) + "\n")


def _save_samples(model, diffusion, recipe, prediction: str, count: int, device, path: Path) -> None:
    """``count`` DDIM samples (50 steps, η = 0) as one PNG grid (class-conditional models: unguided, y = ∅)."""
    from PIL import Image

    from ddpm_helpers.plotting import make_grid
    from ddpm_helpers.samplers import ddim_sample

    shape = (count, recipe.unet["in_channels"], recipe.image_size, recipe.image_size)
    x = ddim_sample(model, diffusion, shape, num_steps=50, prediction=prediction, device=device,
                    generator=torch.Generator(device=device).manual_seed(0)).x
    grid = (make_grid(x, nrow=min(count, 8)) * 255).round().to(torch.uint8)  # (C, H, W) in [0, 255]
    Image.fromarray(grid.permute(1, 2, 0).squeeze(-1).numpy()).save(path)
    print(f"{count} samples written to {path}")


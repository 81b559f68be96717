"""Label-free MNIST within notebook 04's budget: which lever makes ten CPU-minutes count (issue 23).

    DDPM_DATA_DIR=shared/data python benchmarks/mnist_label_free.py --condition labels   # 04's network, null label
    python benchmarks/mnist_label_free.py --condition none                # a dedicated label-free network
    python benchmarks/mnist_label_free.py --condition clusters --clusters 40 --guidance 0,1,2

Trains notebook 04's CPU recipe (``recipes.MNIST["cpu"]``: the same U-Net, v-prediction, min-SNR, cosine LR,
EMA) on a calibrated budget of ``--minutes`` of wall-clock time, with one of three conditions:

- ``labels``: the digit labels, dropped 10 % of the time (04's guided network); its label-free samples come from
  the null label ∅, as in 04;
- ``none``: no condition at all (a dedicated label-free network of the same size);
- ``clusters``: k-means clusters of a cheap feature of the training digits (7×7 area-averaged pixels; no label
  is used), dropped 10 % of the time like the labels; sampled with cluster ids drawn in proportion to the
  clusters' sizes and classifier-free guidance scale w over them (Ho & Salimans 2022, Eq. 6);
- ``both``: one network for both sets: every training digit appears twice, once with its label (classes 0–9) and
  once with its cluster (classes 10, 11, …), each dropped 10 % of the time; the label-free set is sampled from the
  clusters as above, the guided set from the labels.

With labels (``labels``, ``both``) the guided set is scored too: 1000 digits asked for 0–9 in turn, guidance
``--label-guidance`` (04's 0.25), DDIM with 20 steps and η = 1 (04's final sampler), with the label agreement.

Then 1000 (``--samples``) label-free samples per sampler are scored by the shipped judge beside as many real
training digits, with 95 % intervals (Wilson for shares, jackknife over 20 groups for the distances), and the
largest gap between a class's share among the confidently read samples and its share in the training labels.
Each result is appended as one JSON line to ``--out`` (default ``benchmarks/results/mnist_label_free.jsonl``)
with the CPU it ran on. Prints, never asserts.
"""

import argparse
import json
import time
from pathlib import Path

import torch
from common import cpu_name

from ddpm_helpers import config
from ddpm_helpers.datasets import mnist_images
from ddpm_helpers.datasets.clusters import image_clusters
from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.evaluation import mnist_eval
from ddpm_helpers.guidance import NULL_LABEL, ClassifierFreeGuidance
from ddpm_helpers.nn.unet import UNet
from ddpm_helpers.samplers import ddim_sample
from ddpm_helpers.samplers.dpm_solver import dpm_solver_sample
from ddpm_helpers.training import recipes, train

OUT = Path(__file__).resolve().parent / "results" / "mnist_label_free.jsonl"


def clustered_run(args) -> bool:
    return args.condition in ("clusters", "both")


class AutoGuidance(torch.nn.Module):
    """strong + w·(strong − weak) with the same condition for both (Karras et al. 2024, Eq. 2)."""

    def __init__(self, strong, weak, scale, labels=None):
        super().__init__()
        self.strong, self.weak, self.scale, self.labels = strong, weak, scale, labels

    def forward(self, x, t):
        extra = () if self.labels is None else (self.labels,)
        strong = self.strong(x, t, *extra)
        return strong + self.scale * (strong - self.weak(x, t, *extra))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--condition", choices=("labels", "none", "clusters", "both"), required=True)
    parser.add_argument("--clusters", type=int, default=40, help="k of k-means (--condition clusters)")
    parser.add_argument("--minutes", type=float, default=10.0, help="calibrated training budget")
    parser.add_argument("--steps", type=int, default=None, help="a fixed step count instead of the budget (what the "
                        "budget buys on an idle machine: the result no longer depends on the load)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--guidance", default="0", help="guidance scales over the clusters, e.g. 0,1,2")
    parser.add_argument("--samplers", default="dpmpp2m-20,ddim1-20", help="dpmpp2m-N (DPM-Solver++(2M)) or "
                        "ddimE-N (DDIM with eta E, N steps)")
    parser.add_argument("--batch-size", type=int, default=None, help="batch (default: the recipe's)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the recipe's)")
    parser.add_argument("--label-guidance", type=float, default=0.25, help="w of the guided set (labels, both)")
    parser.add_argument("--autoguidance", type=float, default=None, help="also sample the label-free set "
                        "autoguided (Karras et al. 2024, Eq. 2) by this run's EMA at this fraction of its steps")
    parser.add_argument("--autoguidance-scales", default="0.5,1", help="w of strong + w·(strong − weak)")
    parser.add_argument("--label-copies", type=int, default=1, help="both: each digit this many times with its label "
                        "(and once with its cluster)")
    parser.add_argument("--save", type=Path, default=None, help="export the EMA network here (.safetensors)")
    parser.add_argument("--note", default="", help="free text stored with the result")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    config.seed_everything(args.seed)
    recipe = recipes.MNIST["cpu"]
    images, labels = mnist_images(train=True)
    minutes = args.minutes if args.steps is None else None  # recorded with each result
    changes = {"time_budget_s": 60 * args.minutes, "seed": args.seed} if args.steps is None else \
        {"steps": args.steps, "time_budget_s": None, "seed": args.seed}
    changes.update({k: v for k, v in (("batch_size", args.batch_size), ("lr", args.lr)) if v is not None})
    unet = dict(recipe.unet)
    if args.condition == "labels":
        condition, num_classes = labels, 10
    elif args.condition in ("clusters", "both"):
        start = time.perf_counter()  # k-means on 7×7 area-averaged pixels: 49 numbers per digit
        condition = cluster_ids = image_clusters(images, args.clusters, seed=args.seed)
        print(f"k-means, k = {args.clusters}: {time.perf_counter() - start:.1f} s; cluster sizes "
              f"{torch.bincount(condition).min().item()}–{torch.bincount(condition).max().item()}")
        num_classes = args.clusters
        if args.condition == "both":  # each digit twice: with its label, and with its cluster (10, 11, …)
            copies = args.label_copies + 1
            images, condition, num_classes = images.repeat(copies, 1, 1, 1), torch.cat(
                [labels] * args.label_copies + [10 + condition]), 10 + args.clusters
    else:
        condition, num_classes = None, None
        changes["p_uncond"] = None
    unet["num_classes"] = num_classes
    model = UNet(**unet)
    diffusion = Diffusion.from_schedule("linear", T=1000)
    train_config = recipe.train_config(**changes)
    data = images if condition is None else (images, condition)
    snapshot_dir = None
    if args.autoguidance is not None:  # the EMA at a fraction of the run: a checkpoint there, copied before the next
        import shutil
        import tempfile

        from ddpm_helpers.datasets.images import random_batches
        snapshot_dir = Path(tempfile.mkdtemp())
        snapshot_step = int(args.autoguidance * train_config.steps)
        train_config.checkpoint_every = snapshot_step
        draw = random_batches(data, train_config.batch_size) if condition is None else \
            random_batches(data[0], train_config.batch_size, labels=data[1])

        def batches(step, generator):
            if step == snapshot_step + 1:
                shutil.copy(snapshot_dir / "checkpoint.pt", snapshot_dir / "snapshot.pt")
            return draw(step, generator)
    result = train(model, diffusion, data if snapshot_dir is None else batches, train_config, device="cpu",
                   progress=False, out_dir=snapshot_dir)
    print(f"{args.condition}: {result.steps} steps of {train_config.batch_size} in {result.seconds:.0f} s")

    if args.save is not None:
        from ddpm_helpers.datasets.clusters import cluster_shares
        from ddpm_helpers.training.pretrained import export_weights
        extra = {} if not clustered_run(args) else {"label_free": {
            "class_offset": 10 if args.condition == "both" else 0, "guidance": 1.0,
            "shares": cluster_shares(cluster_ids, args.clusters).tolist()}}
        export_weights(result.ema.model, args.save, result=result, unet_config=unet,
                       train_config=vars(train_config), schedule="linear", T=1000, **extra)
    evaluator = mnist_eval.DigitEvaluator()
    real, _ = mnist_eval.real_digits(args.samples)
    data_share = torch.bincount(labels, minlength=10).float() / len(labels)
    real_metrics = {k: round(v, 4) for k, v in evaluator.evaluate(real).as_dict().items() if isinstance(v, float)}
    net = result.ema.model.eval()
    clustered = args.condition in ("clusters", "both")
    if args.condition in ("labels", "both"):
        asked = torch.arange(args.samples) % 10
        generator = torch.Generator().manual_seed(args.seed + 7)
        start = time.perf_counter()
        x = ddim_sample(ClassifierFreeGuidance(net, asked, args.label_guidance), diffusion, (args.samples, 1, 28, 28),
                        num_steps=20, eta=1.0, prediction=train_config.prediction, clip_x0=1.0,
                        generator=generator).x
        seconds = time.perf_counter() - start
        metrics, found = evaluator.evaluate(x), evaluator.intervals(x, asked)
        agreement = mnist_eval.label_agreement(mnist_eval.predict_logits(evaluator.classifier, x), asked)
        row = {"condition": args.condition, "set": "guided", "guidance": args.label_guidance, "sampler": "ddim1-20",
               "seed": args.seed, "minutes": minutes, "steps": result.steps,
               "train_seconds": round(result.seconds, 1),
               "sample_seconds": round(seconds, 1), "label_agreement": round(agreement, 4),
               **{k: round(v, 4) for k, v in metrics.as_dict().items() if isinstance(v, float)},
               "intervals": {k: [round(a, 4), round(b, 4)] for k, (a, b) in found.items()},
               "real": real_metrics, "n": args.samples, "cpu": cpu_name(), "note": args.note}
        print(f"guided w={args.label_guidance}: Fréchet {row['frechet_distance']:.2f} {found['frechet_distance']}, "
              f"confident {100 * row['confident_share']:.1f} %, label agreement {100 * agreement:.1f} %", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
    weak = None
    if snapshot_dir is not None:
        import copy

        from ddpm_helpers.checkpoint import load_checkpoint
        weak = copy.deepcopy(net)
        ema_state = load_checkpoint(snapshot_dir / "snapshot.pt")["ema"]
        weak.load_state_dict(ema_state["model"] if "model" in ema_state else ema_state)
        weak.eval()
    settings = [(w, None) for w in ([float(v) for v in args.guidance.split(",")] if clustered else [None])]
    if weak is not None:
        settings += [(None, a) for a in (float(v) for v in args.autoguidance_scales.split(","))]
    for w, auto in settings:
        for sampler in args.samplers.split(","):
            kind, steps = sampler.split("-")
            generator = torch.Generator().manual_seed(args.seed + 7)
            if clustered:  # cluster ids in proportion to the clusters' sizes
                drawn = cluster_ids[torch.randint(len(cluster_ids), (args.samples,), generator=generator)]
                drawn = drawn + (10 if args.condition == "both" else 0)
                model_fn = ClassifierFreeGuidance(net, drawn, w) if auto is None else \
                    AutoGuidance(net, weak, auto, drawn)
            elif args.condition == "labels":  # 04's label-free set: the null label
                model_fn = ClassifierFreeGuidance(net, torch.full((args.samples,), NULL_LABEL), 0.0)  # ∅
            else:
                model_fn = net if auto is None else AutoGuidance(net, weak, auto)
            start = time.perf_counter()
            common = dict(prediction=train_config.prediction, clip_x0=1.0, generator=generator)
            if kind == "dpmpp2m":
                x = dpm_solver_sample(model_fn, diffusion, (args.samples, 1, 28, 28), num_steps=int(steps), **common).x
            else:
                x = ddim_sample(model_fn, diffusion, (args.samples, 1, 28, 28), num_steps=int(steps),
                                eta=float(kind[4:]), **common).x
            seconds = time.perf_counter() - start
            metrics, found = evaluator.evaluate(x), evaluator.intervals(x)
            histogram = torch.tensor(metrics.class_histogram, dtype=torch.float)
            gap = (histogram / histogram.sum() - data_share).abs().max().item()
            row = {"condition": args.condition, "set": "label-free", "clusters": args.clusters if clustered else None,
                   "guidance": w, "autoguidance": None if auto is None else [args.autoguidance, auto],
                   "sampler": sampler, "channels_last": train_config.channels_last, "seed": args.seed,
                   "minutes": minutes,
                   "steps": result.steps, "batch_size": train_config.batch_size, "lr": train_config.lr,
                   "label_copies": args.label_copies,
                   "train_seconds": round(result.seconds, 1), "sample_seconds": round(seconds, 1),
                   **{k: round(v, 4) for k, v in metrics.as_dict().items() if isinstance(v, float)},
                   "intervals": {k: [round(a, 4), round(b, 4)] for k, (a, b) in found.items()},
                   "max_class_gap": round(gap, 4), "real": real_metrics,
                   "n": args.samples, "cpu": cpu_name(), "threads": torch.get_num_threads(), "note": args.note}
            print(f"w={w} auto={auto} {sampler}: Fréchet {row['frechet_distance']:.2f} {found['frechet_distance']} "
                  f"(real {row['real']['frechet_distance']:.2f}, ratio "
                  f"{row['frechet_distance'] / row['real']['frechet_distance']:.2f}), confident "
                  f"{100 * row['confident_share']:.1f} % {found['confident_share']}, class gap {100 * gap:.1f} pts, "
                  f"{seconds:.0f} s", flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()

"""The sampler table of notebook 04: quality and time of each sampler on the notebook's CPU network.

    DDPM_DATA_DIR=../shared/data python benchmarks/mnist_samplers.py --weights weights/04_mnist_ema.safetensors
    python benchmarks/mnist_samplers.py --n 200 --n-ddpm 50 --seeds 0 --out /tmp/try.json   # a quick look

Trains the network of ``recipes.mnist("full")`` on the CPU with its calibrated budget (or loads
``--weights``, a file exported by notebook 04), then draws samples *without a label* (the unconditional
DDPM) with each sampler — DDPM-1000, DDIM with 100/50/20/10 steps, DPM-Solver++(2M) with 20/10 — from the
same starting noise per seed, in batches of equal size, and scores them with ``mnist_eval``'s judge:
Fréchet distance (beside real digits at the same n, the floor), confident share and the largest gap
between a class's share of the samples and of the data; the few-step samplers also on their first
``--n-ddpm`` samples (DDPM-1000's starting noise), for a comparison with DDPM at equal n. Every seed's value
is stored; the notebook shows mean ± half-range. Writes ``ddpm_helpers/data/mnist_samplers.json`` (read by
notebook 04). Prints, never asserts. With no ``--weights`` it trains for the recipe's 10 minutes first.
"""

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from ddpm_helpers.datasets import mnist_images
from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.evaluation import mnist_eval
from ddpm_helpers.evaluation.reference_results import results_path, sampler_table
from ddpm_helpers.nn.unet import UNet
from ddpm_helpers.samplers import ddim_sample, ddpm_sample
from ddpm_helpers.samplers.dpm_solver import dpm_solver_sample
from ddpm_helpers.training import recipes, train
from ddpm_helpers.training.pretrained import read_weights

SAMPLERS = {  # name: (sampler, network calls, keyword arguments)
    "DDPM, 1000 steps": (ddpm_sample, 1000, {}),
    "DDIM, 100 steps": (ddim_sample, 100, {"num_steps": 100}),
    "DDIM, 50 steps": (ddim_sample, 50, {"num_steps": 50}),
    "DDIM, 20 steps": (ddim_sample, 20, {"num_steps": 20}),
    "DDIM, 10 steps": (ddim_sample, 10, {"num_steps": 10}),
    "DPM-Solver++(2M), 20 steps": (dpm_solver_sample, 20, {"num_steps": 20}),
    "DPM-Solver++(2M), 10 steps": (dpm_solver_sample, 10, {"num_steps": 10}),
}


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def draw(sampler, model, diffusion, x_T: torch.Tensor, seed: int, batch: int, **kwargs) -> tuple[torch.Tensor, float]:
    """Samples from ``x_T`` in chunks of ``batch`` (the same chunks for every sampler); return them and the seconds."""
    generator = torch.Generator().manual_seed(seed)  # DDPM's fresh noise at each step (DDIM η = 0 and DPM++ need none)
    start, chunks = time.perf_counter(), []
    for chunk in x_T.split(batch):
        chunks.append(sampler(model, diffusion, None, x_T=chunk, prediction="v", clip_x0=1.0, generator=generator,
                              **kwargs).x)
    return torch.cat(chunks), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", type=Path, default=None, help="an exported .safetensors instead of training")
    parser.add_argument("--n", type=int, default=1000, help="samples per few-step sampler and seed")
    parser.add_argument("--n-ddpm", type=int, default=500, help="samples of DDPM-1000 per seed")
    parser.add_argument("--batch", type=int, default=250, help="batch size of every sampler")
    parser.add_argument("--seeds", type=lambda text: [int(s) for s in text.split(",")], default=[0, 1])
    parser.add_argument("--out", type=Path, default=Path(str(results_path("mnist_samplers"))))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    recipe = recipes.mnist("full", gpu=False)
    diffusion = Diffusion.from_schedule("linear", T=1000)
    if args.weights is None:
        torch.manual_seed(0)
        model = UNet(**recipe.unet)
        result = train(model, diffusion, mnist_images(train=True), recipe.train_config(), device="cpu", progress=False)
        network, training = result.ema.model, {"steps": result.steps, "seconds": round(result.seconds, 1)}
    else:
        weights = read_weights(args.weights)
        network = UNet(**weights.metadata["unet_config"])
        network.load_state_dict(weights.state_dict)
        training = {"steps": weights.metadata.get("steps"), "seconds": weights.metadata.get("seconds"),
                    "weights": str(args.weights)}
    network.eval()
    print(f"network: {recipe.name}, {training}", flush=True)

    evaluator = mnist_eval.DigitEvaluator(mnist_eval.load_classifier(progress=False))
    _, train_labels = mnist_images(train=True)
    data_share = torch.bincount(train_labels, minlength=10).float() / len(train_labels)
    sizes = {name: args.n_ddpm if calls == 1000 else args.n for name, (_, calls, _) in SAMPLERS.items()}
    floors = {n: evaluator.real_floor(n).as_dict() for n in set(sizes.values())}
    rows = []
    for name, (sampler, calls, kwargs) in SAMPLERS.items():
        row = {"sampler": name, "calls": calls, "n": sizes[name], "frechet_distance": [], "confident_share": [],
               "class_share_gap": [], "seconds_per_sample": [], f"frechet_distance_{args.n_ddpm}": []}
        for seed in args.seeds:
            x_T = torch.randn(args.n, 1, 28, 28, generator=torch.Generator().manual_seed(1000 + seed))[:sizes[name]]
            samples, seconds = draw(sampler, network, diffusion, x_T, seed, args.batch, **kwargs)
            metrics = evaluator.evaluate(samples)
            predicted = mnist_eval.predict_logits(evaluator.classifier, samples).argmax(-1)
            share = torch.bincount(predicted, minlength=10).float() / len(predicted)
            row["frechet_distance"].append(round(metrics.frechet_distance, 3))
            row["confident_share"].append(round(metrics.confident_share, 4))
            row["class_share_gap"].append(round((share - data_share).abs().max().item(), 4))
            row["seconds_per_sample"].append(round(seconds / len(samples), 5))
            # the first n_ddpm samples start from DDPM-1000's noise: the same-n comparison with it
            same_n = evaluator.evaluate(samples[:args.n_ddpm]).frechet_distance
            row[f"frechet_distance_{args.n_ddpm}"].append(round(same_n, 3))
            print(f"{name:28s} seed {seed}: {metrics} | {seconds:.0f} s", flush=True)
        rows.append(row)
    results = {"benchmark": "benchmarks/mnist_samplers.py", "recipe": recipe.name, "training": training,
               "machine": {"cpu": cpu_name(), "threads": args.threads, "torch": torch.__version__},
               "samples": "no label (the unconditional DDPM), clip x0, the same x_T per seed for every sampler",
               "batch": args.batch, "seeds": args.seeds, "n_ddpm": args.n_ddpm,
               "real_floor": {str(n): floor for n, floor in sorted(floors.items())}, "rows": rows}
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(sampler_table(results))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()

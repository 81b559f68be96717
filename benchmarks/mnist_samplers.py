"""The sampler table of notebook 04: quality and time of each sampler on the notebook's network (issue 23).

    DDPM_DATA_DIR=../shared/data python benchmarks/mnist_samplers.py --weights weights/04_mnist_ema.safetensors
    python benchmarks/mnist_samplers.py --weights … --n 200 --n-ddpm 50 --seeds 0 --out /tmp/try.json   # a quick look

Draws two sets with each sampler — DDPM-1000, DDIM with 100/50/20/10 steps at η = 0 and η = 1, DPM-Solver++(2M)
with 20/10 — from a network exported by notebook 04:

- **label-free**: no digit asked for; the network's recorded label-free condition (its metadata's ``label_free``:
  cluster ids drawn in proportion to the clusters' sizes, guided with its scale) or, without one, the null label;
- **guided**: the digits 0–9 in turn, classifier-free guidance with the recorded ``guidance_scale`` (0.25).

Per seed, every sampler starts from the same noise x_T, in batches of equal size (``--batch``); DDPM-1000 draws the
first ``--n-ddpm`` of them, the others ``--n``. Each set is scored by the shipped judge (``mnist_eval``): Fréchet
and kernel distances, confident share, largest class-share gap, label agreement (guided), each with its 95 %
confidence interval, and the Fréchet distance of the first ``--n-ddpm`` samples (DDPM-1000's noise: the comparison
at equal n). The real digits' floor at each n is stored beside them, and the seconds of one network call on a batch
(20 DDIM steps timed; run with ``--retime`` on an idle machine: the table quotes it, since the rows' own seconds
depend on what else the machine did while they ran).

Each (set, sampler, seed) row is written to ``--out`` (default ``ddpm_helpers/data/mnist_samplers.json``, read by
notebook 04 through ``reference_results``) as soon as it finishes; a rerun with the same weights skips the rows the
file holds, so a long run (DDPM-1000 at n = 500 takes tens of minutes a seed on a 2-core CPU) can be stopped and
continued. Other weights: the file is refused unless ``--fresh``. Prints, never asserts.
"""

import argparse
import json
from pathlib import Path

import torch
from common import SETS, conditions, cpu_name, draw, score, write_json

from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.evaluation import mnist_eval
from ddpm_helpers.evaluation.reference_results import results_path, sampler_table
from ddpm_helpers.samplers import ddim_sample
from ddpm_helpers.samplers.named import DDPM_CALLS, NAMED, network_calls
from ddpm_helpers.training.pretrained import read_weights, sha256_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=Path("weights/04_mnist_ema.safetensors"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n", type=int, default=1000, help="samples per few-step sampler, set and seed")
    parser.add_argument("--n-ddpm", type=int, default=500, help="samples of DDPM-1000 per set and seed")
    parser.add_argument("--batch", type=int, default=250, help="batch size of every sampler")
    parser.add_argument("--seeds", type=lambda text: [int(s) for s in text.split(",")], default=[0, 1])
    parser.add_argument("--sets", type=lambda text: text.split(","), default=list(SETS))
    parser.add_argument("--out", type=Path, default=Path(str(results_path("mnist_samplers"))))
    parser.add_argument("--fresh", action="store_true", help="start a new file even if --out holds other weights'")
    parser.add_argument("--retime", action="store_true", help="measure the cost of a network call again (on an idle "
                        "machine: the rows' own seconds are kept but the table quotes this one)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    weights = read_weights(args.weights)
    network = weights.network("cpu").eval().to(memory_format=torch.channels_last)  # faster convolutions on a CPU
    metadata, digest = weights.metadata, sha256_of(args.weights)
    diffusion = Diffusion.from_schedule(metadata.get("schedule", "linear"), T=int(metadata.get("T", 1000)))
    results = json.loads(args.out.read_text()) if args.out.is_file() else None
    if results is not None and results.get("weights_sha256") != digest and not args.fresh:
        raise SystemExit(f"{args.out} holds results of other weights ({results.get('weights_sha256')}); pass --fresh "
                         "to replace them")
    if results is None or results.get("weights_sha256") != digest:
        results = {"benchmark": "benchmarks/mnist_samplers.py", "weights": str(args.weights),
                   "weights_sha256": digest, "training": {k: metadata.get(k) for k in ("steps", "seconds")},
                   "machine": {"cpu": cpu_name(), "threads": args.threads, "torch": torch.__version__},
                   "batch": args.batch, "n_ddpm": args.n_ddpm, "real_floor": {}, "rows": []}
    done = {(row["set"], row["sampler"], row["seed"]) for row in results["rows"]}
    if args.retime:
        results.pop("seconds_per_call", None)

    evaluator = mnist_eval.DigitEvaluator()
    for n in sorted({args.n, args.n_ddpm}):
        if str(n) not in results["real_floor"]:
            real, real_labels = mnist_eval.real_digits(n)
            found = evaluator.intervals(real, real_labels)
            results["real_floor"][str(n)] = {**{k: v for k, v in evaluator.evaluate(real).as_dict().items()
                                                if isinstance(v, float)},
                                             "intervals": {k: list(v) for k, v in found.items()}}
    for set_name in args.sets:  # the cost of one network call (guided: the conditional and unconditional halves)
        if set_name not in results.setdefault("seconds_per_call", {}):
            classes, scale = conditions(metadata, set_name, args.batch, 0)
            x_T = torch.randn(args.batch, 1, 28, 28, generator=torch.Generator().manual_seed(0))
            draw(ddim_sample, network, diffusion, x_T, classes, scale, weights.prediction, 0, args.batch,
                 num_steps=5)  # warm-up
            _, seconds = draw(ddim_sample, network, diffusion, x_T, classes, scale, weights.prediction, 0, args.batch,
                              num_steps=20)
            results["seconds_per_call"][set_name] = round(seconds / 20, 4)
            write_json(args.out, results)
    for set_name in args.sets:
        for seed in args.seeds:
            x_T = torch.randn(args.n, 1, 28, 28, generator=torch.Generator().manual_seed(1000 + seed))
            classes, scale = conditions(metadata, set_name, args.n, seed)
            for name, (sampler, kwargs) in NAMED.items():
                calls = network_calls(name)
                if (set_name, name, seed) in done:
                    continue
                n = args.n_ddpm if calls == DDPM_CALLS else args.n
                samples, seconds = draw(sampler, network, diffusion, x_T[:n], classes[:n], scale, weights.prediction,
                                        seed, args.batch, **kwargs)
                asked = classes[:n] if set_name == "guided" else None
                row = {"set": set_name, "sampler": name, "calls": calls, "seed": seed, "n": n, "guidance": scale,
                       "seconds_per_sample": round(seconds / n, 5), **score(evaluator, samples, asked),
                       f"frechet_distance_{args.n_ddpm}": round(evaluator.evaluate(samples[:args.n_ddpm])
                                                                .frechet_distance, 3)}
                results["rows"].append(row)
                write_json(args.out, results)  # every row as soon as it is measured
                print(f"{set_name:10s} {name:28s} seed {seed}: Fréchet {row['frechet_distance']:.2f}, confident "
                      f"{100 * row['confident_share']:.1f} % | {seconds:.0f} s", flush=True)
    for set_name in args.sets:
        print(f"\n{set_name}:\n{sampler_table(results, set_name)}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()

"""What several benchmark scripts share: the machine's name, atomic result files, and the two MNIST sets of
notebook 04 (label-free and guided) and its samplers, drawn and scored the same way everywhere.

Imported by the scripts beside it (``python benchmarks/<script>.py`` puts this folder on ``sys.path``).
"""

import json
import os
import time
from pathlib import Path

import torch

from ddpm_helpers.datasets.clusters import draw_clusters
from ddpm_helpers.evaluation import mnist_eval
from ddpm_helpers.guidance import NULL_LABEL, ClassifierFreeGuidance
from ddpm_helpers.training.timing import cpu_name  # noqa: F401  (the scripts import it from here)

SETS = ("label-free", "guided")
GUIDED_SAMPLER = "DDIM, 20 steps, η = 1"  # notebook 04's guided set (the label-free one: the table's best_sampler)


def write_json(path: Path, results: dict) -> None:
    """Write ``results`` atomically (a temporary file renamed over the old one)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, path)


def conditions(metadata: dict, set_name: str, n: int, seed: int) -> tuple[torch.Tensor, float]:
    """The classes asked for and the guidance scale of ``set_name`` for ``n`` samples of a network with ``metadata``:
    guided: the digits 0–9 in turn at its ``guidance_scale`` (04's 0.25); label-free: clusters drawn in proportion
    to their sizes at the scale its ``label_free`` record gives, or the null label ∅ without one (seeded draws)."""
    if set_name == "guided":
        return torch.arange(n) % 10, float(metadata.get("guidance_scale", 0.25))
    label_free = metadata.get("label_free")
    if label_free is None:  # the null label ∅: the network's own label-free mode
        return torch.full((n,), NULL_LABEL), 0.0
    drawn = draw_clusters(torch.tensor(label_free["shares"]), n, torch.Generator().manual_seed(2000 + seed))
    return label_free["class_offset"] + drawn, float(label_free["guidance"])


def draw(sampler, model, diffusion, x_T, classes, scale, prediction, seed, batch, **kwargs):
    """Samples from ``x_T`` in chunks of ``batch`` (the same chunks for every sampler); return them and the seconds."""
    generator = torch.Generator().manual_seed(seed)  # the fresh noise of DDPM and of DDIM with η > 0
    start, chunks = time.perf_counter(), []
    for chunk, asked in zip(x_T.split(batch), classes.split(batch)):
        guided = ClassifierFreeGuidance(model, asked, scale)
        chunks.append(sampler(guided, diffusion, None, x_T=chunk, prediction=prediction, clip_x0=1.0,
                              generator=generator, **kwargs).x)
    return torch.cat(chunks), time.perf_counter() - start


def score(evaluator: mnist_eval.DigitEvaluator, samples: torch.Tensor, asked: torch.Tensor | None) -> dict:
    """The shipped judge's numbers for one set, each with its 95 % interval: Fréchet and kernel distances, confident
    share, largest class-share gap and, when digits were ``asked`` for, the label agreement."""
    metrics = evaluator.evaluate(samples)
    found = evaluator.intervals(samples, asked)
    logits = mnist_eval.predict_logits(evaluator.classifier, samples)
    row = {**{k: round(v, 4) for k, v in metrics.as_dict().items() if isinstance(v, float)},
           "class_share_gap": round(mnist_eval.class_share_gap(logits, evaluator.data_shares), 4),
           "intervals": {k: [round(a, 4), round(b, 4)] for k, (a, b) in found.items()}}
    if asked is not None:
        row["label_agreement"] = round(mnist_eval.label_agreement(logits, asked), 4)
    return row

"""Judging generated MNIST digits with a small classifier trained on the real ones.

Four numbers (five for class-conditional samples), all computed with one fixed CNN trained on the MNIST training set:

- **Fréchet distance** (Heusel et al. 2017, Eq. 6, the "FID" recipe with this classifier
  in place of Inception): fit a Gaussian N(μ, Σ) to the classifier's penultimate features
  of each set and compute ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½). Lower is better; it sees
  both quality and variety. Its estimate from n images is biased upwards, by more the smaller n is.
- **Kernel distance** (Bińkowski et al. 2018, the "KID" recipe with this classifier): the unbiased
  estimate of the squared maximum mean discrepancy between the same features, with the cubic
  polynomial kernel k(x, y) = (xᵀy/d + 1)³. Its expectation is 0 when the two sets come from one
  distribution, whatever n, so single estimates scatter around 0 and can be negative; it is the number
  to compare at small n.
- **Confident share**: the fraction of samples whose largest softmax probability is at
  least ``CONFIDENCE_THRESHOLD`` (0.9): a digit a classifier reads without hesitation.
- **Label agreement** (for samples asked to show a given digit): the fraction classified with
  that confidence *and* as the digit asked for.
- **Class coverage**: how many of the ten classes occur among the confident samples, with
  the class histogram; a generator that draws only ones covers one class.

The judge is one classifier for every machine: trained once (``train_classifier``, by
``benchmarks/train_judge.py``) and shipped as ``weights/mnist_judge.safetensors``, which :func:`load_judge` reads
with its SHA-256 checked. :func:`load_classifier` trains and caches a classifier of your own under
``config.outputs_dir("mnist_classifier")`` instead.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ddpm_helpers import config
from ddpm_helpers.checkpoint import load_checkpoint, save_checkpoint
from ddpm_helpers.checks import check_floating, check_int, check_number
from ddpm_helpers.datasets import mnist_images
from ddpm_helpers.evaluation.intervals import jackknife_interval, wilson_interval

CONFIDENCE_THRESHOLD = 0.9
NUM_CLASSES = 10
FEATURE_DIM = 128
DEFAULT_CLASSIFIER_STEPS = 2 * (60_000 // 128)  # two epochs of batches of 128
KERNEL_REFERENCE_SIZE = 2000  # test digits the kernel distance compares with: the cost grows with their square
JUDGE_WEIGHTS = "mnist_judge"  # the shipped judge: weights/mnist_judge.safetensors (benchmarks/train_judge.py)


class MNISTClassifier(nn.Module):
    """A small CNN (≈99 % test accuracy): two conv stages, then a 128-d feature layer."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 28 → 14
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 14 → 7
            nn.Flatten(), nn.Linear(64 * 7 * 7, FEATURE_DIM), nn.ReLU(),
        )
        self.classify = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations (B, 128) used for the Fréchet distance."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.classify(self.features(x))


_RANGE_SLACK = 2.0  # float images beyond ±2 are on another scale (0…255), not samples a little outside [-1, 1]


def _as_unit_range(images: Tensor) -> Tensor:
    """Accept uint8 pixels or floats in [-1, 1]; return float32 (B, 1, 28, 28) in [-1, 1]."""
    if images.ndim != 4 or images.shape[1:] != (1, 28, 28):
        raise ValueError(f"expected MNIST images of shape (N, 1, 28, 28), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float() / 127.5 - 1.0
    check_floating(images, "images")
    if images.numel() and images.device.type != "meta":  # an evaluation entry point: the values are read anyway
        low, high = (float(v) for v in torch.aminmax(images.detach().float()))
        if not (math.isfinite(low) and math.isfinite(high)) or low < -_RANGE_SLACK or high > _RANGE_SLACK:
            raise ValueError(f"float images must lie in [-1, 1] (samples a little outside are clamped), got values in "
                             f"[{low:.4g}, {high:.4g}]: pixels in 0…255 should be uint8 (or x / 127.5 - 1), and "
                             "NaN/inf samples cannot be judged")
    return images.float().clamp(-1, 1)


def train_classifier(steps: int = DEFAULT_CLASSIFIER_STEPS, batch_size: int = 128, seed: int = 0,
                     progress: bool = True) -> tuple[MNISTClassifier, float]:
    """Train the CNN on the MNIST training set for ``steps`` Adam steps; return it and its test accuracy."""
    from tqdm import tqdm

    steps = check_int(steps, "steps", low=1)  # bools refused
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    images, labels = mnist_images(train=True)
    model = MNISTClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps)
    model.train()
    for _ in tqdm(range(steps), desc="classifier", disable=not progress):
        index = torch.randint(len(images), (batch_size,), generator=generator)
        x = images[index]
        shift = torch.randint(-2, 3, (2,), generator=generator).tolist()  # light translation augmentation
        x = torch.roll(x, shifts=shift, dims=(2, 3))
        loss = F.cross_entropy(model(x), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    test_images, test_labels = mnist_images(train=False)
    accuracy = (predict_logits(model, test_images).argmax(1) == test_labels).float().mean().item()
    return model, accuracy


def classifier_path(steps: int = DEFAULT_CLASSIFIER_STEPS, cache_dir: str | Path | None = None) -> Path:
    """Where the classifier trained for ``steps`` steps is cached."""
    cache_dir = Path(cache_dir) if cache_dir is not None else config.outputs_dir("mnist_classifier")
    return cache_dir / f"classifier_{steps}steps.pt"


def load_classifier(steps: int = DEFAULT_CLASSIFIER_STEPS, cache_dir: str | Path | None = None,
                    progress: bool = True) -> MNISTClassifier:
    """The classifier trained for ``steps`` steps, cached in ``cache_dir`` (default: the mnist_classifier outputs).

    Trains and saves it the first time (``checkpoint.save_checkpoint``: atomic, with a checksum), with its
    test accuracy beside it in a JSON file; afterwards loads the weights only (``checkpoint.load_checkpoint``:
    ``torch.load(weights_only=True)``, checksum verified; a damaged file raises a ValueError naming it).
    """
    path = classifier_path(steps, cache_dir)
    model = MNISTClassifier()
    if path.exists():
        model.load_state_dict(load_checkpoint(path))
    else:
        model, accuracy = train_classifier(steps=steps, progress=progress)
        save_checkpoint(path, model.state_dict())
        path.with_suffix(".json").write_text(json.dumps({"steps": steps, "test_accuracy": accuracy}, indent=2))
    return model.eval()


def load_judge(device: str | torch.device = "cpu") -> MNISTClassifier:
    """The shipped judge, ``weights/mnist_judge.safetensors`` (trained once by ``benchmarks/train_judge.py``): read
    from the clone, or downloaded outside one, its SHA-256 checked (``training.pretrained``). Every machine and
    profile scores with this one classifier, so a floor or a score means the same everywhere."""
    from ddpm_helpers.training.pretrained import load_pretrained

    model = MNISTClassifier()
    model.load_state_dict(load_pretrained(JUDGE_WEIGHTS, device).state_dict)
    return model.to(device).eval()


def judge_test_accuracy() -> float:
    """The shipped judge's accuracy on the 10,000 MNIST test digits, recorded when it was trained."""
    from ddpm_helpers.training.pretrained import load_pretrained

    return float(load_pretrained(JUDGE_WEIGHTS).metadata["test_accuracy"])


def classifier_accuracy(steps: int = DEFAULT_CLASSIFIER_STEPS, cache_dir: str | Path | None = None) -> float | None:
    """Test accuracy recorded when the cached classifier was trained (None when unknown)."""
    info = classifier_path(steps, cache_dir).with_suffix(".json")
    return json.loads(info.read_text())["test_accuracy"] if info.exists() else None


@torch.no_grad()
def predict_logits(model: MNISTClassifier, images: Tensor, batch_size: int = 1000) -> Tensor:
    """Classifier logits (N, 10) for uint8 or [-1, 1] images (N, 1, 28, 28)."""
    images = _as_unit_range(images)
    model.eval()
    return torch.cat([model(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


@torch.no_grad()
def extract_features(model: MNISTClassifier, images: Tensor, batch_size: int = 1000) -> Tensor:
    """Penultimate features (N, 128) for uint8 or [-1, 1] images (N, 1, 28, 28)."""
    images = _as_unit_range(images)
    model.eval()
    return torch.cat([model.features(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½)  (Heusel et al. 2017, Eq. 6; Dowson & Landau 1982)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"mismatched shapes: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}")
    for name, value in (("mu1", mu1), ("mu2", mu2), ("sigma1", sigma1), ("sigma2", sigma2)):
        if not np.isfinite(value).all():
            raise ValueError(f"{name} holds NaN or infinite values")
    for name, sigma in (("sigma1", sigma1), ("sigma2", sigma2)):  # a covariance: symmetric, eigenvalues >= 0
        scale = max(float(np.abs(sigma).max()), 1e-300)
        lowest = float(np.linalg.eigvalsh((sigma + sigma.T) / 2).min())
        if not np.allclose(sigma, sigma.T, rtol=1e-6, atol=1e-9 * scale) or lowest < -1e-6 * scale:
            raise ValueError(f"{name} is not a covariance matrix (symmetric, positive semi-definite): smallest "
                             f"eigenvalue {lowest:.3g}, largest entry {scale:.3g}")
    # Tr (Σ₁Σ₂)^½ = Σ_i √λ_i, λ_i the eigenvalues of Σ₁Σ₂: real and ≥ 0 because Σ₁Σ₂ is similar to
    # the positive semi-definite Σ₁^½ Σ₂ Σ₁^½; clipping removes round-off below zero.
    eigenvalues = np.linalg.eigvals(sigma1 @ sigma2).real.clip(min=0)
    trace_covmean = np.sqrt(eigenvalues).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_covmean)


def feature_statistics(features: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64."""
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need features of shape (N >= 2, D), got {tuple(features.shape)}")
    array = features.double().cpu().numpy()
    return array.mean(0), np.cov(array, rowvar=False)


def _polynomial_kernel_sum(x: Tensor, y: Tensor, block: int = 1024) -> float:
    """Σ_i Σ_j k(x_i, y_j) for k(x, y) = (xᵀy/d + 1)³, in blocks of rows of ``x`` (bounded memory)."""
    dim = x.shape[1]
    return sum(((x[i : i + block] @ y.T / dim + 1) ** 3).sum().item() for i in range(0, len(x), block))


def kernel_distance(features_a: Tensor, features_b: Tensor) -> float:
    """Unbiased squared MMD with the kernel k(x, y) = (xᵀy/d + 1)³ (the "KID" of Bińkowski et al. 2018), in float64:

    1/(m(m−1)) Σ_{i≠j} k(a_i, a_j) + 1/(n(n−1)) Σ_{i≠j} k(b_i, b_j) − 2/(mn) Σ_{i,j} k(a_i, b_j),
    the U-statistic of Gretton et al. 2012 (Lemma 6): the diagonal terms k(a_i, a_i) are left out, so the
    expectation is exactly 0 when both sets are drawn from one distribution. ``features_*`` are (m, d) and (n, d).
    """
    features = {"features_a": features_a, "features_b": features_b}
    for name, x in features.items():
        check_floating(x, name)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"{name} must have shape (N >= 2, d), got shape {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} holds NaN or infinite values")
    if features_a.shape[1] != features_b.shape[1]:
        raise ValueError(f"features_a and features_b must have the same feature dimension d, got "
                         f"{features_a.shape[1]} and {features_b.shape[1]}")
    a, b = features_a.detach().double().cpu(), features_b.detach().double().cpu()
    dim, m, n = a.shape[1], len(a), len(b)
    within_a = _polynomial_kernel_sum(a, a) - ((a * a).sum(1) / dim + 1).pow(3).sum().item()  # i ≠ j only
    within_b = _polynomial_kernel_sum(b, b) - ((b * b).sum(1) / dim + 1).pow(3).sum().item()
    return within_a / (m * (m - 1)) + within_b / (n * (n - 1)) - 2 * _polynomial_kernel_sum(a, b) / (m * n)


def _kernel_distance_of_subsets(features_a: Tensor, features_b: Tensor):
    """``kernel_distance(features_a[index], features_b)`` as a function of ``index`` (distinct rows), from kernel
    sums computed once: the jackknife asks for dozens of subsets of one set."""
    a, b = features_a.detach().double().cpu(), features_b.detach().double().cpu()
    dim, n = a.shape[1], len(b)
    within_a = (a @ a.T / dim + 1) ** 3  # k(a_i, a_j)
    within_a.fill_diagonal_(0.0)  # i ≠ j only
    across = ((a @ b.T / dim + 1) ** 3).sum(1)  # Σ_j k(a_i, b_j) for each i
    within_b = _polynomial_kernel_sum(b, b) - ((b * b).sum(1) / dim + 1).pow(3).sum().item()

    def distance(index: Tensor) -> float:
        m = len(index)
        return (within_a[index][:, index].sum().item() / (m * (m - 1)) + within_b / (n * (n - 1))
                - 2 * across[index].sum().item() / (m * n))

    return distance


def _check_logits(logits: Tensor, threshold: float) -> float:
    """The threshold as a float in (0, 1); ValueError unless ``logits`` is a (N, classes) tensor."""
    if not torch.is_tensor(logits) or logits.ndim != 2:
        got = f"shape {tuple(logits.shape)}" if torch.is_tensor(logits) else type(logits).__name__
        raise ValueError(f"logits must be a tensor of shape (N, classes), got {got}")
    if logits.device.type != "meta" and not bool(torch.isfinite(logits).all()):
        raise ValueError(f"logits hold {int((~torch.isfinite(logits)).sum())} NaN or infinite values: the "
                         "classifier's input was not finite")
    return check_number(threshold, "threshold", 0.0, 1.0, low_open=True, high_open=True)


def confident_share(logits: Tensor, threshold: float = CONFIDENCE_THRESHOLD) -> float:
    """Fraction of rows whose largest softmax probability is ≥ ``threshold``."""
    threshold = _check_logits(logits, threshold)
    return (logits.softmax(-1).max(-1).values >= threshold).float().mean().item()


def label_agreement(logits: Tensor, labels: Tensor, threshold: float = CONFIDENCE_THRESHOLD) -> float:
    """Fraction of rows classified with confidence ≥ ``threshold`` *as* their ``labels`` (the digits asked for):
    mean over rows of [max softmax ≥ threshold and argmax = label]."""
    threshold = _check_logits(logits, threshold)
    if not torch.is_tensor(labels) or labels.dtype.is_floating_point or labels.shape != logits.shape[:1]:
        got = f"{labels.dtype} {tuple(labels.shape)}" if torch.is_tensor(labels) else type(labels).__name__
        raise ValueError(f"labels must be an integer tensor of shape ({len(logits)},), one per row of logits; "
                         f"got {got}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]):
        raise ValueError(f"labels must be classes in [0, {logits.shape[1]}), got labels in "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    probs = logits.softmax(-1)
    confident_and_right = (probs.max(-1).values >= threshold) & (probs.argmax(-1) == labels.to(logits.device))
    return confident_and_right.float().mean().item()


def class_histogram(logits: Tensor, threshold: float = CONFIDENCE_THRESHOLD) -> list[int]:
    """Counts of each predicted class among the rows classified with confidence ≥ ``threshold``."""
    threshold = _check_logits(logits, threshold)
    probs = logits.softmax(-1)
    confident = probs.max(-1).values >= threshold
    return torch.bincount(probs.argmax(-1)[confident], minlength=logits.shape[-1]).tolist()


def class_share_gap(logits: Tensor, shares: Tensor, threshold: float = CONFIDENCE_THRESHOLD) -> float:
    """The largest difference, over the classes, between a class's share among the rows classified with confidence
    ≥ ``threshold`` and its share ``shares`` (classes,) of the data: max_c |n_c / Σ n − p_c| (a fraction)."""
    counts = torch.tensor(class_histogram(logits, threshold), dtype=torch.double)
    shares = torch.as_tensor(shares, dtype=torch.double)
    if shares.shape != counts.shape:
        raise ValueError(f"shares must hold one share per class ({len(counts)}), got shape {tuple(shares.shape)}")
    return (counts / counts.sum().clamp(min=1) - shares).abs().max().item()


def training_class_shares() -> Tensor:
    """Each digit's share of the 60,000 MNIST training labels (10,)."""
    _, labels = mnist_images(train=True)
    return torch.bincount(labels, minlength=NUM_CLASSES).double() / len(labels)


def class_coverage(logits: Tensor, threshold: float = CONFIDENCE_THRESHOLD) -> int:
    """Number of classes that occur at least once among the confidently classified rows."""
    return sum(count > 0 for count in class_histogram(logits, threshold))


@dataclass
class DigitMetrics:
    """The numbers for one set of images (Fréchet, kernel distance, confidence, coverage) and the class histogram."""

    frechet_distance: float
    kernel_distance: float
    confident_share: float
    class_coverage: int
    class_histogram: list[int]
    num_images: int

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"Fréchet distance {self.frechet_distance:7.2f} | kernel distance {self.kernel_distance:7.2f} | confident "
            f"(p ≥ {CONFIDENCE_THRESHOLD}) {100 * self.confident_share:5.1f} % | classes {self.class_coverage}/10 | "
            f"n = {self.num_images}"
        )


class DigitEvaluator:
    """Holds the classifier (by default the shipped judge, :func:`load_judge`) and the test-set features; scores
    image sets against them.

    The Fréchet distance compares with the statistics of all 10,000 test digits; the kernel distance with the
    features of ``KERNEL_REFERENCE_SIZE`` of them, a fixed random subset (seed 0), which keeps it well under a
    second for 1000 images on a CPU (its cost grows with the square of the reference size).
    """

    def __init__(self, classifier: MNISTClassifier | None = None):
        self.classifier = classifier if classifier is not None else load_judge()
        test_images, _ = mnist_images(train=False)
        features = extract_features(self.classifier, test_images)
        self.reference = feature_statistics(features)
        subset = torch.randperm(len(features), generator=torch.Generator().manual_seed(0))[:KERNEL_REFERENCE_SIZE]
        self.kernel_reference = features[subset]
        self.data_shares = training_class_shares()  # for the class-share gap

    def evaluate(self, images: Tensor) -> DigitMetrics:
        """Metrics of ``images`` (uint8 or [-1, 1], shape (N, 1, 28, 28)) against the test set."""
        logits = predict_logits(self.classifier, images)
        features = extract_features(self.classifier, images)
        return DigitMetrics(
            frechet_distance=frechet_distance(*feature_statistics(features), *self.reference),
            kernel_distance=kernel_distance(features, self.kernel_reference),
            confident_share=confident_share(logits),
            class_coverage=class_coverage(logits),
            class_histogram=class_histogram(logits),
            num_images=len(images),
        )

    def intervals(self, images: Tensor, labels: Tensor | None = None, level: float = 0.95, groups: int = 20,
                  seed: int = 0) -> dict[str, tuple[float, float]]:
        """``level`` intervals of the scores ``images``' model gets on average at this n (``intervals``):
        Wilson for the confident share (and, with the ``labels`` asked for, the label agreement), the jackknife
        over ``groups`` groups of the images for the Fréchet and kernel distances. The judge and the references
        stay fixed. The class-share gap's interval is cut at 0 below."""
        logits = predict_logits(self.classifier, images)
        features = extract_features(self.classifier, images)
        n = len(images)
        result = {
            "frechet_distance": jackknife_interval(
                lambda index: frechet_distance(*feature_statistics(features[index]), *self.reference), n,
                min(groups, n // 2), level, seed),
            "kernel_distance": jackknife_interval(_kernel_distance_of_subsets(features, self.kernel_reference), n,
                                                  min(groups, n // 2), level, seed),
            "confident_share": wilson_interval(round(confident_share(logits) * n), n, level),  # successes of n
            "class_share_gap": _not_below_zero(jackknife_interval(  # a gap is never negative
                lambda index: class_share_gap(logits[index], self.data_shares), n, min(groups, n // 2), level, seed)),
        }
        if labels is not None:
            result["label_agreement"] = wilson_interval(round(label_agreement(logits, labels) * n), n, level)
        return result

    def real_floor(self, num_images: int, seed: int = 0) -> DigitMetrics:
        """The same metrics for ``num_images`` random *training* digits: what real digits score at this n (a
        generator's samples can land below it by chance: the floor is a yardstick, not a bound)."""
        num_images = check_int(num_images, "num_images", low=2)
        return self.evaluate(real_digits(num_images, seed)[0])

    def yardstick(self, images: Tensor, labels: Tensor | None = None, level: float = 0.95, groups: int = 20,
                  seed: int = 0) -> str:
        """A table of the metrics of ``images`` beside those of as many real training digits (:func:`real_digits`,
        their own labels), each with its ``level`` interval (:meth:`intervals`): what the notebooks print instead of
        pass/fail verdicts. With the ``labels`` asked for, the label agreement replaces the class-share gap (the
        labels asked for, not the network, set a guided set's class shares)."""
        real, real_labels = real_digits(len(images), seed)
        rows = []
        real_asked = None if labels is None else real_labels  # real digits "asked for" their own labels
        for name, pixels, asked in (("samples", images, labels), ("real digits", real, real_asked)):
            metrics = self.evaluate(pixels)
            found = self.intervals(pixels, asked, level, groups, seed)
            values = {**metrics.as_dict()}
            logits = predict_logits(self.classifier, pixels)
            if asked is None:
                values["class_share_gap"] = class_share_gap(logits, self.data_shares)
            else:
                values["label_agreement"] = label_agreement(logits, asked)
            rows.append((name, values, found))
        percent = {"confident_share", "label_agreement", "class_share_gap"}
        lines = [f"{'':26s}" + "".join(f"{name:>28s}" for name, _, _ in rows)]
        for key in ("frechet_distance", "kernel_distance", "confident_share", "label_agreement", "class_share_gap"):
            if key not in rows[0][1]:
                continue
            cells = []
            for _, values, found in rows:
                scale = 100 if key in percent else 1
                low, high = found[key]
                cells.append(f"{scale * values[key]:8.2f} [{scale * low:7.2f}, {scale * high:7.2f}]")
            label = {"class_share_gap": "largest class gap (pts)"}.get(key, key.replace("_", " ") + (
                " (%)" if key in percent else ""))
            lines.append(f"{label:26s}" + "".join(f"{cell:>28s}" for cell in cells))
        gap = ("; class gap: the largest difference between a digit's share of the confident samples and of the "
               "training labels") if labels is None else ""
        lines.append(f"n = {len(images)} each; [{100 * level:g} % confidence intervals]{gap}")
        return "\n".join(lines)


def _not_below_zero(interval: tuple[float, float]) -> tuple[float, float]:
    """An interval of a quantity that cannot be negative, cut at 0."""
    return max(0.0, interval[0]), max(0.0, interval[1])


def real_digits(num_images: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``num_images`` random MNIST training digits (a seeded draw without replacement) and their labels."""
    images, labels = mnist_images(train=True)
    index = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:num_images]
    return images[index], labels[index]

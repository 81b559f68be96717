"""Weights of the committed full-profile runs, so a reader can skip training.

The repository keeps, in ``weights/``, one safetensors file per image notebook (the EMA weights,
e.g. ``04_mnist_ema.safetensors``) and ``SHA256SUMS`` (``sha256sum`` format) beside them.
:func:`export_weights` writes such a file and records its SHA-256; :func:`load_pretrained` reads
it from the clone's ``weights/`` folder (checked against the clone's ``SHA256SUMS``), or downloads it from the
repository on GitHub — or from ``DDPM_WEIGHTS_URL`` when set — and checks it against :data:`PINNED`, the
SHA-256 and size this installed package carries for each committed file (never a list from the server, which
a mirror could serve along with other weights). :func:`load_network` goes one step further and returns the
U-Net the file records, with its weights loaded, ready to sample from, and :func:`draw_samples` draws images
with it in one call. Safetensors
holds tensors and a string header only, so loading a file never runs code.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ddpm_helpers import config
from ddpm_helpers.checks import check_number
from ddpm_helpers.utils import download, write_atomic

SUMS_FILE = "SHA256SUMS"
SUFFIX = ".safetensors"
TIMEOUT_S = 60.0
_METADATA_KEY = "ddpm_helpers"  # safetensors metadata is str → str: ours is one JSON document
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# The committed weights/ files: name → (SHA-256, bytes). tests/test_pretrained.py keeps it equal to weights/SHA256SUMS.
PINNED: dict[str, tuple[str, int]] = {
    "04_mnist_ema.safetensors": ("dc3b00aef111d0e0669852e329767f88b248a1caaf82680871005dd618301a34", 1128180),
    "04_mnist_long_ema.safetensors": ("138770b646ddc3b4e60292ab1e94399e75507300d4e007772996a210f2d21ee5", 1380220),
    "05_butterflies64_ema.safetensors": ("3bd012f454bb40d6a57ad0edc8855829bbc72c21cbeef0fda8985d84b67810b1", 4652504),
    "05_butterflies_ema.safetensors": ("dcc0d2a11185e529338846b585e5213f4e7f6d018fd75031578cf0b47de86d85", 2583900),
    "mnist_judge.safetensors": ("57c913f1d8c62cc1cee32542a3f1d7a3d4e449ebaaf21173566be8998b6f7c2e", 1687344),
}


@dataclass
class PretrainedWeights:
    """A verified weights file: its tensors, its metadata (JSON values) and where it came from."""

    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, Any]
    source: str

    @property
    def prediction(self) -> str:
        """What the network predicts (``"eps"``, ``"x0"`` or ``"v"``): recorded beside the network or in its
        ``train_config``; ``"eps"`` (Ho et al. 2020, Eq. 11) when neither says."""
        return self.metadata.get("prediction") or self.metadata.get("train_config", {}).get("prediction") or "eps"

    def network(self, device: str | torch.device = "cpu") -> nn.Module:
        """``UNet(**unet_config)`` of the recorded run with these weights loaded, in eval mode on ``device``."""
        from ddpm_helpers.nn.unet import UNet

        unet_config = self.metadata.get("unet_config")
        if not isinstance(unet_config, dict):
            raise ValueError(f"{self.source} records no unet_config, so it holds no U-Net of the series to build "
                             "(a classifier such as mnist_judge is loaded by its own module)")
        model = UNet(**unet_config)
        model.load_state_dict(self.state_dict)
        return model.to(device).eval()

    def label_free_network(self, num_images: int, seed: int = 0, device: str | torch.device = "cpu") -> nn.Module:
        """The network asked for no digit, for ``num_images`` samples: a network trained on labels and clusters
        (its metadata's ``label_free``, notebook 04) guided towards a cluster per image, drawn in proportion to the
        clusters' sizes (seeded by ``seed``), with the recorded guidance scale; any other network as it is."""
        model = self.network(device)
        label_free = self.metadata.get("label_free")
        if label_free is None:
            return model
        from ddpm_helpers.datasets.clusters import draw_clusters
        from ddpm_helpers.guidance import ClassifierFreeGuidance

        drawn = draw_clusters(torch.tensor(label_free["shares"]), num_images, torch.Generator().manual_seed(seed))
        return ClassifierFreeGuidance(model, label_free["class_offset"] + drawn, label_free["guidance"])

    def train_result(self, model: nn.Module):
        """Load the weights into ``model`` and return a ``training.TrainResult`` of the recorded run (its steps,
        planned steps, seconds and losses), whose ``.model`` and ``.ema.model`` both hold these weights; the EMA
        has the run's decay and one update per step, so ``ema.current_decay()`` is the run's."""
        from ddpm_helpers.training.ema import EMA
        from ddpm_helpers.training.loop import TrainResult

        model.load_state_dict(self.state_dict)
        steps = int(self.metadata.get("steps", 0))
        ema = EMA(model, decay=self.metadata.get("train_config", {}).get("ema_decay", 0.999))
        ema.num_updates = steps
        return TrainResult(model=model, ema=ema, losses=list(self.metadata.get("losses", [])), steps=steps,
                           seconds=float(self.metadata.get("seconds", 0.0)),
                           stopped_early=bool(self.metadata.get("stopped_early", False)),
                           planned_steps=self.metadata.get("planned_steps"))


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_sums(path: Path) -> dict[str, str]:
    """``{file name: sha256}`` from a ``sha256sum``-format file (``<hex>  <name>`` per line)."""
    sums = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*")] = digest.lower()
    return sums


def export_weights(model: nn.Module, path: str | Path, result=None, **metadata) -> Path:
    """Write ``model``'s weights to the safetensors file ``path`` and its SHA-256 into ``SHA256SUMS`` beside it.

    ``metadata`` (JSON-serializable: e.g. ``unet_config``, ``prediction``) is stored in the file's
    header; with a ``training.TrainResult`` as ``result``, its steps, seconds and per-step losses too. Losses are
    kept to 5 significant digits.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != SUFFIX or not _NAME.fullmatch(path.name):
        raise ValueError(f"path must name a file like 05_butterflies_ema{SUFFIX}, got {path}")
    if result is not None:
        metadata.update(steps=result.steps, planned_steps=result.planned_steps, seconds=round(result.seconds, 1),
                        stopped_early=result.stopped_early, losses=result.losses)
    if "losses" in metadata:
        metadata["losses"] = [float(f"{loss:.5g}") for loss in metadata["losses"]]
    header = {_METADATA_KEY: json.dumps(metadata)}  # raises TypeError for values JSON cannot hold
    tensors = {name: value.detach().cpu().contiguous() for name, value in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))
    sums_path = path.parent / SUMS_FILE
    sums = _read_sums(sums_path) if sums_path.is_file() else {}
    sums[path.name] = sha256_of(path)
    lines = "".join(f"{sums[n]}  {n}\n" for n in sorted(sums))  # sha256sum format: `sha256sum -c` checks it
    write_atomic(sums_path, lambda tmp: tmp.write_text(lines, encoding="utf-8"))
    return path


def repository_url() -> str:
    """The project's address, ``[project.urls] Source``: from ``pyproject.toml`` in a clone, else the
    installed package's metadata."""
    pyproject = config.package_checkout() / "pyproject.toml"
    if pyproject.is_file():
        try:
            import tomllib  # Python ≥ 3.11
        except ImportError:
            tomllib = None
        if tomllib is not None:
            return tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["urls"]["Source"]
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        entries = metadata("ddpm-from-scratch").get_all("Project-URL") or []
    except PackageNotFoundError:
        entries = []
    for entry in entries:
        label, _, url = entry.partition(",")
        if label.strip() == "Source":
            return url.strip()
    raise LookupError("the project's Source address is not known: install the package (pip install -e .)")


def weights_base_url() -> str:
    """``DDPM_WEIGHTS_URL`` if set, else the raw-file address of ``weights/`` on the repository's default branch."""
    override = config.weights_url()
    if override:
        return override.rstrip("/")
    url = repository_url().rstrip("/").removesuffix(".git")
    prefix = "https://github.com/"
    if not url.startswith(prefix):
        raise ValueError(f"the Source address {url!r} is not a github.com repository; set DDPM_WEIGHTS_URL")
    return f"https://raw.githubusercontent.com/{url[len(prefix):]}/HEAD/weights"


def _pinned_problem(data: bytes, file_name: str) -> str | None:
    """Why ``data`` is not the committed ``file_name`` (size, then SHA-256 from :data:`PINNED`), or ``None``."""
    digest, size = PINNED[file_name]
    if len(data) != size:
        return f"got {len(data):,} bytes instead of {size:,} (truncated, incomplete or other weights)"
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest:
        return f"SHA-256 {actual} is not the pinned {digest} (damaged or other weights)"
    return None


def _verified(path: Path, sums_path: Path, origin: str) -> Path:
    """``path`` if its SHA-256 is the one ``sums_path`` lists for it; otherwise a ValueError."""
    expected = _read_sums(sums_path).get(path.name) if sums_path.is_file() else None
    if expected is None:
        raise ValueError(f"{sums_path} ({origin}) lists no SHA-256 for {path.name}: not loading it")
    actual = sha256_of(path)
    if actual != expected:
        raise ValueError(f"{path.name} ({origin}) has SHA-256 {actual}, not the listed {expected}: "
                         "the file is damaged or was changed, so it is not loaded")
    return path


def _fetch(name: str, timeout: float) -> tuple[Path, str]:
    """The verified local path of ``<name>.safetensors`` and a description of where it came from."""
    file_name = name + SUFFIX
    local = config.package_checkout() / "weights"
    if config.weights_url() is None and (local / file_name).is_file():  # inside a clone: no network
        path = _verified(local / file_name, local / SUMS_FILE, "this clone's weights/")
        return path, f"weights/{file_name} in this clone"
    if file_name not in PINNED:
        raise FileNotFoundError(
            f"the pretrained weights {file_name} are not in a local weights/ folder, and this version of "
            f"ddpm_helpers pins no SHA-256 for them (it pins {', '.join(sorted(PINNED))}), so a download could not "
            "be verified and is not tried. Clone the repository (its weights/ folder has them), check the name, "
            "or set USE_PRETRAINED = False to train instead.")
    base = weights_base_url()
    cache = config.outputs_dir("pretrained")
    cached = cache / file_name
    if cached.is_file():
        if cached.stat().st_size == PINNED[file_name][1] and _pinned_problem(cached.read_bytes(), file_name) is None:
            return cached, f"{base}/{file_name} (cached)"
        cached.unlink()  # a damaged or foreign cached copy is fetched again
    try:  # only the file: its SHA-256 is the package's, never a list from the server
        data = download(f"{base}/{file_name}", timeout, check=lambda body: _pinned_problem(body, file_name),
                        max_bytes=PINNED[file_name][1])
    except OSError as error:  # DownloadError (failed connection, HTML page, wrong size or SHA-256): an OSError
        raise FileNotFoundError(
            f"the pretrained weights {file_name} are not in a local weights/ folder and could not be downloaded "
            f"from {base} ({type(error).__name__}: {error}). Go online and rerun, or clone the repository "
            "(its weights/ folder has them), or set USE_PRETRAINED = False to train instead."
        ) from error
    write_atomic(cached, lambda tmp: tmp.write_bytes(data))
    return cached, f"{base}/{file_name}"


def load_pretrained(name: str, device: str | torch.device = "cpu", timeout: float = TIMEOUT_S) -> PretrainedWeights:
    """The verified weights ``<name>.safetensors`` (e.g. ``"05_butterflies_ema"``), with their metadata.

    Taken from the clone's ``weights/`` when there (and ``DDPM_WEIGHTS_URL`` is unset; checked against its
    ``SHA256SUMS``), else downloaded once into ``<outputs>/pretrained/`` and checked against the SHA-256 and size
    the package pins (:data:`PINNED`) before loading.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.endswith(SUFFIX):
        raise ValueError(f"name must be a file name without {SUFFIX}, e.g. '04_mnist_ema', got {name!r}")
    timeout = check_number(timeout, "timeout", low=0, low_open=True)  # seconds per request
    path, source = _fetch(name, timeout)
    return read_weights(path, device, source)


def load_network(name: str, device: str | torch.device = "cpu", timeout: float = TIMEOUT_S) -> nn.Module:
    """The committed network ``<name>`` (e.g. ``"05_butterflies_ema"``), ready to sample from.

    A ``UNet`` built from the ``unet_config`` its file records (the recipe it was trained with), with the
    weights :func:`load_pretrained` verified, in eval mode on ``device``. What it predicts (ε as in Ho et al.
    2020 Eq. 11, x₀, or v of Salimans & Ho 2022) is :attr:`PretrainedWeights.prediction` of
    ``load_pretrained(name)``; both committed image networks predict ``"v"``.
    """
    return load_pretrained(name, "cpu", timeout).network(device)


def draw_samples(name: str, num_images: int | None = None, *, labels=None, guidance_scale: float = 0.25,
                 num_steps: int = 20, seed: int = 0, device: str | torch.device = "cpu",
                 timeout: float = TIMEOUT_S) -> torch.Tensor:
    """Images drawn from pure noise by the committed network ``name``: a tensor ``(B, C, H, W)`` in [-1, 1].

    DDIM with η = 0 (Song, Meng & Ermon 2021, Eq. 12) on ``num_steps`` of the T steps of the forward process the
    network was trained with (its recorded ``schedule`` and ``T``; Ho et al. 2020, Eq. 4), with x̂₀ clipped to
    [-1, 1] and the network's output read as what it predicts (:attr:`PretrainedWeights.prediction`). With
    ``labels`` (one class per image, e.g. ``range(10)``), a class-conditional network is steered towards them by
    classifier-free guidance of scale ``guidance_scale`` (Ho & Salimans 2022, Eq. 6; 0.25 is notebook 04's
    choice); ``num_images`` then
    defaults to ``len(labels)``, else to 16. Without labels, a network trained on labels and k-means clusters
    (its metadata's ``label_free``, notebook 04) is guided by clusters drawn in proportion to their sizes. ``seed``
    fixes the noise: the same call draws the same images.
    """
    from ddpm_helpers.diffusion import Diffusion
    from ddpm_helpers.guidance import ClassifierFreeGuidance
    from ddpm_helpers.samplers import ddim_sample

    weights = load_pretrained(name, "cpu", timeout)
    if labels is not None:
        labels = list(labels)
        if num_images is not None and num_images != len(labels):
            raise ValueError(f"num_images={num_images} but {len(labels)} labels: give one label per image")
        model = weights.network(device)
        if not getattr(model, "num_classes", None):
            raise ValueError(f"{name} is not class-conditional: draw from it without labels")
        model = ClassifierFreeGuidance(model, labels, guidance_scale)
        num_images = len(labels)
    else:
        num_images = 16 if num_images is None else num_images
        model = weights.label_free_network(num_images, seed, device)
    unet_config, metadata = weights.metadata["unet_config"], weights.metadata
    shape = (num_images, unet_config.get("in_channels", 3), unet_config["image_size"], unet_config["image_size"])
    diffusion = Diffusion.from_schedule(metadata.get("schedule", "linear"), T=int(metadata.get("T", 1000)))
    return ddim_sample(model, diffusion, shape, num_steps=num_steps, prediction=weights.prediction, clip_x0=1.0,
                       generator=torch.Generator().manual_seed(seed), device=device).x


def read_weights(path: str | Path, device: str | torch.device = "cpu", source: str | None = None) -> PretrainedWeights:
    """The weights and metadata of a local file written by :func:`export_weights` (no checksum: your own file)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        state_dict = load_file(str(path), device=str(device))
    except Exception as error:  # SafetensorError (damaged header or data), OSError, RuntimeError (device)
        raise ValueError(f"{path} is not a readable safetensors weights file ({type(error).__name__}: "
                         f"{str(error).strip()[:200]}): it is damaged or was not written by export_weights") from None
    try:
        metadata = json.loads(header.get(_METADATA_KEY, "{}"))
    except json.JSONDecodeError as error:
        raise ValueError(f"the metadata of {path} is not valid JSON ({error}): the file was not written by "
                         "export_weights or was changed") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"the metadata of {path} is a {type(metadata).__name__}, not a JSON object: the file was "
                         "not written by export_weights")
    return PretrainedWeights(state_dict, metadata, source or str(path))

"""Probe the public API with bad inputs (issue 27) and classify what each one does; print the counts.

Each case calls one public function with one bad input and names a fragment the error message must contain (the
bad value, or what is wrong). The outcome is

- ``clear``: an exception of a documented kind (ValueError, FileNotFoundError, OSError, FloatingPointError,
  SystemExit of argparse) whose message contains the fragment, or, for an input that is skipped, a warning that
  names it;
- ``obscure``: any other exception, or a message that does not name the fragment;
- ``silent``: the call returned (a wrong answer, or a file written where it should not be);
- ``hang``: the call had not returned after ``--timeout`` seconds (it is left running in a daemon thread).

Offline: downloads go to a local HTTP server on 127.0.0.1; the butterfly source photo and MNIST come from
``../shared/data`` beside the checkout (cases that need them are skipped without it). To probe another version of
the helpers, put its checkout first on the path::

    PYTHONPATH=/path/to/other/checkout python benchmarks/probe_bad_inputs.py
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import socket
import sys
import tempfile
import threading
import time
import warnings
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import torch

import ddpm_helpers
from ddpm_helpers import analytic, guidance
from ddpm_helpers.checkpoint import load_checkpoint, save_checkpoint
from ddpm_helpers.datasets import butterflies, images
from ddpm_helpers.diffusion import Diffusion, extract
from ddpm_helpers.evaluation import color_stats, mnist_eval, neighbours, reference_results
from ddpm_helpers.nn.mlp import MLP
from ddpm_helpers.nn.unet import UNet
from ddpm_helpers.samplers import ddim_sample, ddpm_sample
from ddpm_helpers.training import TrainConfig, cli, distributed, pretrained, train
from ddpm_helpers.training.ema import EMA
from ddpm_helpers.utils import download

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CLEAR_TYPES = (ValueError, FileNotFoundError, OSError, FloatingPointError, SystemExit)
D = Diffusion.from_schedule("linear", 50)
NAN = float("nan")


class _Handler(SimpleHTTPRequestHandler):
    """Serves a folder; ``bodies[name]`` is a list of raw answers (status line and headers included), served first."""

    def __init__(self, *args, bodies, **kwargs):
        self.bodies = bodies
        super().__init__(*args, **kwargs)

    def do_GET(self):
        queue = self.bodies.get(self.path.lstrip("/"))
        if queue:
            self.wfile.write(queue.pop(0) if len(queue) > 1 else queue[0])
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(folder: Path, bodies: dict[str, list[bytes]]):
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(folder), bodies=bodies))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def http(body: bytes, content_type: str = "application/octet-stream", length: int | None = None) -> bytes:
    length = len(body) if length is None else length
    return (f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n").encode() + body


@contextlib.contextmanager
def environ(**values):
    old = {name: os.environ.get(name) for name in values}
    os.environ.update({name: str(value) for name, value in values.items()})
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_tiny(config=None, out_dir=None, model=None, data=None, **kwargs):
    config = config or TrainConfig(steps=2, batch_size=4, log_every=1)
    return train(model or MLP(hidden=8, num_blocks=1), D, torch.randn(16, 2) if data is None else data, config,
                 device=kwargs.pop("device", "cpu"), out_dir=out_dir, progress=kwargs.pop("progress", False), **kwargs)


def mutated_config(**changes):
    config = TrainConfig(steps=2, batch_size=4, log_every=1)
    for name, value in changes.items():
        setattr(config, name, value)
    return config


def cases(tmp: Path, url: str):
    """(name, call, fragment) for every bad input."""
    (tmp / "fifo_folder").mkdir()
    Image = __import__("PIL.Image", fromlist=["Image"])
    Image.new("RGB", (16, 16)).save(tmp / "fifo_folder" / "a.png")
    os.mkfifo(tmp / "fifo_folder" / "f.png")
    (tmp / "tiny").mkdir()
    Image.new("RGB", (1, 1)).save(tmp / "tiny" / "dot.png")
    os.mkfifo(tmp / "checkpoint_fifo.pt")
    (tmp / "ckpt_fifo_dir").mkdir()
    os.mkfifo(tmp / "ckpt_fifo_dir" / "checkpoint.pt")
    (tmp / "garbage.safetensors").write_bytes(b"\xff" * 64)
    from safetensors.torch import save_file

    save_file({"w": torch.ones(2)}, str(tmp / "badjson.safetensors"), metadata={"ddpm_helpers": "{not json"})
    outside = tmp / "outside.json"
    outside.write_text(json.dumps({"secret": 1}))
    data_dir = Path(str(reference_results.resources.files("ddpm_helpers") / "data"))
    escape = os.path.relpath(outside.with_suffix(""), data_dir)
    entry = butterflies.manifest()[0]
    short = tmp / "short_losses"
    train_tiny(TrainConfig(steps=4, batch_size=4, log_every=1), out_dir=short)
    state = load_checkpoint(short / "checkpoint.pt")
    save_checkpoint(short / "checkpoint.pt", {**state, "losses": state["losses"][:2]})
    saved = save_checkpoint(tmp / "good.pt", {"w": torch.ones(2)})
    mixture = analytic.GaussianMixture([1.0], [[0.0, 0.0]], 1.0)
    x = torch.randn(2, 2)

    def nan_net(x, t):
        return torch.full_like(x, NAN)

    def mirror():
        with environ(DDPM_WEIGHTS_URL=url, DDPM_OUTPUT_DIR=tmp / "outputs"):
            return pretrained.load_pretrained("04_mnist_ema")

    def leftover_world_size():
        with environ(WORLD_SIZE=2, RANK=0, LOCAL_RANK=0, MASTER_ADDR="127.0.0.1", MASTER_PORT=free_port()):
            os.environ.pop("TORCHELASTIC_RUN_ID", None)
            return distributed.init("cpu", timeout_s=600)

    def out_dir_empty():
        cwd = os.getcwd()
        (tmp / "cwd").mkdir(exist_ok=True)
        os.chdir(tmp / "cwd")
        try:
            return train_tiny(out_dir="")
        finally:
            os.chdir(cwd)

    def manifest_escape():
        bad = butterflies.SourceFile(**{**vars(entry), "png": "../escaped.png"})
        return butterflies.download_nhm_butterflies(tmp / "nhm" / "b", url, [bad], progress=False)

    return [
        # 1. downloads
        ("captive portal page", lambda: download(f"{url}/portal.bin", 5), "HTML"),
        ("garbage status line", lambda: download(f"{url}/garbage.bin", 5), "garbage.bin"),
        ("connection cut halfway", lambda: download(f"{url}/cut.bin", 5), "cut.bin"),
        ("timeout 0", lambda: download(f"{url}/a.bin", 0), "timeout"),
        ("timeout as a string", lambda: download(f"{url}/a.bin", "60"), "timeout"),
        ("load_pretrained timeout=-1", lambda: pretrained.load_pretrained("04_mnist_ema", timeout=-1), "timeout"),
        ("mirror with other weights and matching sums", mirror, "04_mnist_ema"),
        ("manifest png='../escaped.png'", manifest_escape, "../escaped.png"),
        ("results name leaving its folder", lambda: reference_results.load_results(escape), escape),
        # 2. hangs
        ("leftover WORLD_SIZE=2 without torchrun", leftover_world_size, "WORLD_SIZE"),
        ("FIFO named f.png in an image folder", lambda: images.load_image_folder(tmp / "fifo_folder", 16), "f.png"),
        ("FIFO passed to load_checkpoint", lambda: load_checkpoint(tmp / "checkpoint_fifo.pt"), "regular file"),
        ("FIFO named checkpoint.pt in out_dir", lambda: train_tiny(out_dir=tmp / "ckpt_fifo_dir"), "regular file"),
        # 3. silent wrong answers
        ("Diffusion.at negative t", lambda: D.at("alpha_bar", torch.tensor([-1, 0]), x), "-1"),
        ("extract negative t", lambda: extract(D.betas, torch.tensor([0, -2]), x), "-2"),
        ("extract t of another batch", lambda: extract(D.betas, torch.tensor([1, 2, 3]), x), "(3,)"),
        ("exact denoiser negative t", lambda: analytic.optimal_eps(mixture, D)(x, torch.tensor([0, -1])), "-1"),
        ("UNet bool t", lambda: UNet(1, base_channels=8, channel_mults=(1,), image_size=4, num_groups=4)(
            torch.zeros(2, 1, 4, 4), torch.tensor([True, False])), "bool"),
        ("MLP bool t", lambda: MLP()(x, torch.tensor([True, False])), "bool"),
        ("float labels to drop_labels", lambda: guidance.drop_labels(torch.tensor([1.0, 2.0]), 0.5), "float"),
        ("complex betas", lambda: Diffusion([0.1 + 0.5j, 0.2]), "complex"),
        ("network returning NaN", lambda: ddim_sample(nan_net, D, (2, 2), num_steps=3), "non-finite"),
        ("warmup_steps > steps", lambda: TrainConfig(steps=10, batch_size=2, warmup_steps=11), "warmup_steps=11"),
        ("TrainConfig lr changed to -1", lambda: train_tiny(mutated_config(lr=-1.0)), "lr=-1.0"),
        ("out_dir=''", out_dir_empty, "out_dir=''"),
        ("--out-dir ''", lambda: cli.parse_args(["mnist-quick", "--out-dir", ""]), "SystemExit"),
        ("--samples -3", lambda: cli.parse_args(["mnist-quick", "--samples", "-3"]), "SystemExit"),
        ("train progress='no'", lambda: train_tiny(progress="no"), "progress='no'"),
        ("EMA warmup='no'", lambda: EMA(MLP(), warmup="no"), "warmup='no'"),
        ("1x1 image for size 32", lambda: images.load_image_folder(tmp / "tiny", 32), "dot.png"),
        ("to_unit_range of [-1, 1] data", lambda: images.to_unit_range(torch.rand(2, 3) * 2 - 1), "float32"),
        ("judge float images in 0..255", lambda: mnist_eval.predict_logits(mnist_eval.MNISTClassifier(),
                                                                           torch.full((2, 1, 28, 28), 255.0)), "255"),
        ("NaN logits", lambda: mnist_eval.confident_share(torch.tensor([[NAN, 0.0], [0.0, 1.0]])), "NaN"),
        ("label 15 of 10 classes", lambda: mnist_eval.label_agreement(torch.zeros(2, 10), torch.tensor([1, 15])),
         "15"),
        ("1-D logits", lambda: mnist_eval.class_histogram(torch.zeros(10)), "(10,)"),
        ("threshold NaN", lambda: mnist_eval.class_coverage(torch.zeros(2, 10), NAN), "nan"),
        ("threshold 2", lambda: mnist_eval.class_histogram(torch.zeros(2, 10), 2.0), "2.0"),
        ("covariance not PSD", lambda: mnist_eval.frechet_distance(np.zeros(2), -np.eye(2), np.zeros(2), np.eye(2)),
         "sigma1"),
        ("hue band beyond 360", lambda: color_stats.band_shares(torch.zeros(1, 3, 4, 4), {"x": (300, 400)}), "400"),
        ("unnormalised histogram", lambda: color_stats.total_variation(torch.tensor([3.0, 1.0]),
                                                                       torch.tensor([0.5, 0.5])), "sum 4"),
        ("negative distances", lambda: neighbours.distance_statistics(torch.tensor([-1.0, 2.0]), torch.ones(3), 0.1),
         "-1"),
        ("map_location='cuda' without CUDA", lambda: load_checkpoint(saved, map_location="cuda"), "map_location"),
        ("checkpoint with fewer losses than steps", lambda: train_tiny(TrainConfig(steps=8, batch_size=4, log_every=1),
                                                                       out_dir=short), "losses"),
        # 4. obscure errors
        ("an int as generator", lambda: ddim_sample(MLP(), D, (2, 2), num_steps=3, generator=5), "generator=5"),
        ("record=5", lambda: ddim_sample(MLP(), D, (2, 2), num_steps=3, record=5), "record=5"),
        ("a list as x_T", lambda: ddpm_sample(MLP(), D, None, x_T=[[0.0, 0.0]]), "x_T"),
        ("float64 model, float32 x", lambda: ddim_sample(MLP().double(), D, (2, 2), num_steps=3), "float64"),
        ("float64 model, float32 data", lambda: train_tiny(model=MLP(hidden=8, num_blocks=1).double()), "float64"),
        ("MLP given labels", lambda: MLP()(x, torch.tensor([1, 2]), torch.tensor([0, 1])), "labels"),
        ("sampling on meta", lambda: ddim_sample(MLP(), D, (2, 2), num_steps=3, device="meta"), "meta"),
        ("training on meta", lambda: train_tiny(device="meta"), "meta"),
        ("damaged safetensors", lambda: pretrained.read_weights(tmp / "garbage.safetensors"), "garbage.safetensors"),
        ("bad weights metadata", lambda: pretrained.read_weights(tmp / "badjson.safetensors"), "badjson"),
        # already clear before issue 27 (regression guard)
        ("unknown schedule", lambda: Diffusion.from_schedule("foo", 10), "foo"),
        ("q_sample of a list", lambda: D.q_sample([[0.0, 0.0]], torch.tensor([1])), "list"),
        ("ddim num_steps=0", lambda: ddim_sample(MLP(), D, (2, 2), num_steps=0), "num_steps"),
        ("t out of range", lambda: D.q_sample(x, torch.tensor([0, 50])), "50"),
    ]


def classify(call, fragment, timeout):
    box = {}

    def run():
        with warnings.catch_warnings(record=True) as caught:  # the main thread only waits meanwhile
            warnings.simplefilter("always")
            try:
                box["value"] = call()
            except BaseException as error:  # noqa: BLE001 (SystemExit of argparse included)
                box["error"] = error
        box["warnings"] = [str(w.message) for w in caught]

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return "hang", f"no answer after {timeout:g} s"
    if "error" not in box:
        named = [text for text in box.get("warnings", []) if fragment in text]
        return ("clear", f"warning: {named[0]}") if named else ("silent", "returned")
    error = box["error"]
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, CLEAR_TYPES) and (fragment in text or fragment == type(error).__name__):
        return "clear", text
    return "obscure", text


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds before a call counts as a hang")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every message")
    args = parser.parse_args()
    print(f"ddpm_helpers {ddpm_helpers.__version__} from {Path(ddpm_helpers.__file__).parent}")
    counts = {"clear": 0, "obscure": 0, "silent": 0, "hang": 0}
    with tempfile.TemporaryDirectory() as folder, contextlib.redirect_stderr(open(os.devnull, "w")):
        tmp = Path(folder)
        served = tmp / "served"
        served.mkdir()
        (served / "a.bin").write_bytes(b"data")
        weights = MLP(hidden=8, num_blocks=1)
        pretrained.export_weights(weights, served / "04_mnist_ema.safetensors")  # other weights, their own sums
        source = SHARED / "butterflies-source" / butterflies.manifest()[0].source_file
        if source.is_file():
            (served / source.name).write_bytes(source.read_bytes())
        bodies = {"portal.bin": [http(b"<!DOCTYPE html><html>Log in to the Wi-Fi</html>", "text/html")],
                  "garbage.bin": [b"SPAM SPAM\r\n\r\n"], "cut.bin": [http(b"abc", length=1000)]}
        with serve(served, bodies) as url, environ(DDPM_DATA_DIR=SHARED, DDPM_OUTPUT_DIR=tmp / "outputs"):
            for name, call, fragment in cases(tmp, url):
                if name.startswith("map_location") and torch.cuda.is_available():
                    continue
                if name.startswith("manifest") and not source.is_file():
                    continue
                start = time.perf_counter()
                outcome, text = classify(call, fragment, args.timeout)
                counts[outcome] += 1
                line = f"{outcome:8s} {name:45s} {time.perf_counter() - start:5.1f} s"
                print(line + (f"  {text[:160]!r}" if args.verbose or outcome != "clear" else ""), file=sys.stdout)
    print("counts: " + ", ".join(f"{outcome} {count}" for outcome, count in counts.items()) +
          f" (of {sum(counts.values())})")
    sys.stdout.flush()
    os._exit(0)  # hung calls are left in daemon threads


if __name__ == "__main__":
    main()

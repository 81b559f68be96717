"""Recipes (the notebooks' configurations), the command-line entry point and mixed precision."""

import json

import pytest
import torch

from ddpm_helpers.checkpoint import load_checkpoint
from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.guidance import NULL_LABEL, ClassifierFreeGuidance
from ddpm_helpers.losses import diffusion_loss
from ddpm_helpers.nn.mlp import MLP
from ddpm_helpers.nn.unet import UNet
from ddpm_helpers.samplers import ddim_sample
from ddpm_helpers.training import TrainConfig, cli, precision, recipes, train
from ddpm_helpers.training.ema import EMA
from ddpm_helpers.training.precision import MixedPrecision, autocast_dtype
from ddpm_helpers.training.pretrained import read_weights


@pytest.mark.parametrize("name", sorted(recipes.RECIPES))
def test_every_recipe_builds_its_unet_and_config(name):
    recipe = recipes.get(name)
    model = UNet(**recipe.unet)
    x = torch.zeros(1, recipe.unet["in_channels"], recipe.image_size, recipe.image_size)
    assert model.image_size == recipe.image_size and x.shape[-1] == recipe.image_size
    config = recipe.train_config()
    # the notebooks' full-profile runs fit a calibrated budget; the quick ones (deterministic tests) and the long
    # command-line runs (defined by their step count, issue 24) keep fixed steps
    assert (config.time_budget_s is not None) == (not name.endswith("quick") and name not in {"butterflies64-cpu"})
    # the quick profile (tests, nbval) stays float32 on every CPU, so CI's outputs do not depend on the CPU kind
    assert config.mixed_precision == ("auto" if name.endswith("gpu") or name == "mnist-cpu" else "off")
    assert recipe.train_config() is not config  # a fresh config each time


def test_notebook_lookups_and_unknown_names():
    assert recipes.butterflies("full", gpu=False).image_size == 32
    assert recipes.butterflies("full", gpu=True).image_size == 64
    assert recipes.mnist("quick", gpu=True).name == "mnist-quick"
    with pytest.raises(ValueError, match="unknown recipe 'nope'"):
        recipes.get("nope")


def test_cli_trains_a_recipe_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DDPM_DATA_DIR", "../shared/data")
    monkeypatch.setenv("DDPM_DEVICE", "cpu")
    args = ["butterflies-quick", "--steps", "5", "--batch-size", "2", "--out-dir", str(tmp_path), "--no-progress"]
    cli.main(args)  # 5 steps: the recipe warms up for 5 (fewer would never leave the warm-up)
    first = load_checkpoint(tmp_path / "checkpoint.pt")
    assert first["step"] == 5 and load_checkpoint(tmp_path / "ema.pt")["recipe"] == "butterflies-quick"
    log, weights = tmp_path / "log.jsonl", tmp_path / "weights" / "butterflies_quick_ema.safetensors"
    cli.main(args[:2] + ["7"] + args[3:] + ["--log", str(log), "--export", str(weights)])  # more steps: resumes
    assert load_checkpoint(tmp_path / "checkpoint.pt")["losses"][:5] == first["losses"]
    assert "7 steps" in capsys.readouterr().out
    segment = json.loads(log.read_text())  # one line: this call trained steps 5 → 7
    assert (segment["from_step"], segment["to_step"], segment["recipe"]) == (5, 7, "butterflies-quick")
    assert segment["cpu"] and segment["minutes"] >= 0
    exported = read_weights(weights)
    assert exported.metadata["steps"] == 7 and len(exported.metadata["losses"]) == 7
    assert exported.metadata["unet_config"]["image_size"] == 16 and (weights.parent / "SHA256SUMS").is_file()
    assert load_checkpoint(tmp_path / "ema.pt")["schedule"] == "linear"
    with pytest.raises(ValueError, match="noise schedule"):  # another schedule cannot resume this run
        cli.main(args[:2] + ["9"] + args[3:] + ["--schedule", "cosine"])
    cli.main(args[:2] + ["5"] + args[3:5] + ["--out-dir", str(tmp_path / "cosine"), "--no-progress",
                                               "--schedule", "cosine"])
    assert load_checkpoint(tmp_path / "cosine" / "ema.pt")["schedule"] == "cosine"


def test_cli_trains_mnist_on_labels_and_clusters(tmp_path, monkeypatch):
    """The MNIST recipes train one network on the labels and on k-means clusters (classes 10 …); the EMA file
    records the clusters' shares for label-free sampling."""
    monkeypatch.setenv("DDPM_DATA_DIR", "../shared/data")
    monkeypatch.setenv("DDPM_DEVICE", "cpu")
    cli.main(["mnist-quick", "--steps", "5", "--batch-size", "2", "--out-dir", str(tmp_path), "--no-progress"])
    saved = load_checkpoint(tmp_path / "ema.pt")
    recipe = recipes.get("mnist-quick")
    assert recipe.unet["num_classes"] == 10 + recipe.clusters == 50
    label_free = saved["label_free"]
    assert label_free["class_offset"] == 10 and len(label_free["shares"]) == recipe.clusters
    assert abs(sum(label_free["shares"]) - 1) < 1e-9 and min(label_free["shares"]) > 0.005  # 40 real clusters


def test_cli_refuses_an_empty_out_dir_and_a_negative_sample_count(capsys):
    for flag, value in (("--out-dir", ""), ("--out-dir", "  "), ("--samples", "-3"), ("--samples", "x")):
        with pytest.raises(SystemExit):
            cli.parse_args(["mnist-quick", flag, value])
        assert f"argument {flag}: {value!r} is" in capsys.readouterr().err


def test_cli_stop_at_and_lr_schedule_reach_the_config():
    args = cli.parse_args(["mnist-quick", "--steps", "40", "--stop-at", "12", "--lr-schedule", "wsd"])
    config = recipes.get("mnist-quick").train_config(**cli._changes(args))
    assert (config.steps, config.stop_at_step, config.lr_schedule, config.time_budget_s) == (40, 12, "wsd", None)
    assert recipes.get("mnist-quick").train_config(**cli._changes(cli.parse_args(["mnist-quick"]))).lr_schedule == \
        "cosine"  # the recipe's own without the flag


def test_cli_rejects_an_image_folder_for_mnist():
    with pytest.raises(SystemExit):
        cli.parse_args(["mnist-quick", "--image-folder", "somewhere"])


def test_mixed_precision_auto_on_a_cpu_is_bf16_only_where_computed_natively(monkeypatch):
    cpu = torch.device("cpu")
    for native, expected in ((True, torch.bfloat16), (False, None)):
        monkeypatch.setattr(precision, "cpu_computes_bf16", lambda native=native: native)
        assert autocast_dtype("auto", cpu) is expected and MixedPrecision("auto", cpu).dtype is expected
    assert autocast_dtype("off", cpu) is None


def test_cpu_bf16_is_read_from_the_cpu_flags(monkeypatch):
    for text, expected in (("flags : fpu avx512f amx_bf16 amx_tile\n", True), ("flags : avx512_bf16\n", True),
                           ("flags : fpu avx2 avx512f avx512_vnni\n", False)):
        monkeypatch.setattr(precision.Path, "read_text", lambda self, text=text: text)
        assert precision.cpu_computes_bf16() is expected


def test_mixed_precision_off_on_a_cpu_and_bad_modes(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_computes_bf16", lambda: False)
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("bf16", cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="'fp16' needs a CUDA device"):
        autocast_dtype("fp16", cpu)
    with pytest.raises(ValueError, match="mixed_precision"):
        TrainConfig(steps=1, batch_size=1, mixed_precision="half")
    assert MixedPrecision("auto", cpu).scaler is None


def test_bf16_autocast_trains_on_a_cpu():
    data = torch.randn(16, 1, 8, 8)
    torch.manual_seed(0)
    model = UNet(1, base_channels=8, channel_mults=(1, 2), image_size=8)
    config = TrainConfig(steps=3, batch_size=4, mixed_precision="bf16", log_every=1)
    result = train(model, Diffusion.from_schedule("linear", T=50), data, config, device="cpu", progress=False)
    assert len(result.losses) == 3 and all(torch.isfinite(torch.tensor(result.losses)))
    assert next(model.parameters()).dtype == torch.float32  # the weights stay float32


def _conditional_pieces(device):
    """The conditional U-Net (and the MLP, the EMA) built on ``device``, and a function that runs their per-step
    work: a guided training step's forward and backward with labels and NULL_LABEL, guided DDIM sampling, the
    label-free call, the MLP, the EMA update. Building copies the labels to the device (a sync), so it comes first."""
    torch.manual_seed(0)
    unet = UNet(1, base_channels=8, channel_mults=(1, 2), attention_resolutions=(7,), image_size=14,
                num_classes=10).to(device)
    guided = ClassifierFreeGuidance(unet, [0, 3, NULL_LABEL, 9], 2.0)  # labels checked on the CPU, then moved
    mlp, ema = MLP(hidden=32, num_blocks=2).to(device), EMA(unet)
    diffusion = Diffusion.from_schedule("linear", T=100)
    x0, labels = torch.randn(8, 1, 14, 14, device=device), torch.arange(8, device=device) % 10
    generator = torch.Generator(device=device).manual_seed(0)

    def run():
        loss = diffusion_loss(unet, diffusion, x0, prediction="v", labels=labels, p_uncond=0.5, generator=generator)
        loss.backward()  # through the label embedding, too
        ema.update(unet)
        null = unet(x0, torch.zeros(8, dtype=torch.long, device=device), torch.full_like(labels, NULL_LABEL))
        unlabelled = unet(x0, torch.zeros(8, dtype=torch.long, device=device))
        samples = ddim_sample(guided, diffusion, (4, 1, 14, 14), num_steps=3, prediction="v", device=device,
                              generator=generator).x
        points = mlp(torch.randn(16, 2, device=device), torch.randint(0, 100, (16,), device=device))
        return [loss, null, unlabelled, samples, points]

    return run


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("mode", ["off", "auto", "fp16"])
def test_gpu_training_and_sampling_steps_never_sync_the_device(mode):
    device = torch.device("cuda")
    data = torch.randn(64, 3, 16, 16, device=device)
    diffusion = Diffusion.from_schedule("linear", T=100)
    model = UNet(3, base_channels=16, channel_mults=(1, 2), attention_resolutions=(8,), image_size=16)
    config = TrainConfig(steps=6, batch_size=8, log_every=3, prediction="v", weighting="min_snr", mixed_precision=mode)
    conditional = _conditional_pieces(device)
    torch.cuda.set_sync_debug_mode("error")  # any implicit host-device sync raises
    try:
        result = train(model, diffusion, lambda step, generator: data[:8], config, device=device, progress=False)
        samples = ddim_sample(result.ema.model, diffusion, (4, 3, 16, 16), num_steps=5, prediction="v",
                              device=device, generator=torch.Generator(device=device).manual_seed(0)).x
        outputs = conditional()  # the conditional U-Net with labels, NULL_LABEL and none; the MLP; the EMA
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert len(result.losses) == 6 and samples.shape == (4, 3, 16, 16) and torch.isfinite(samples).all()
    assert all(torch.isfinite(output).all() for output in outputs)


def test_channels_last_changes_the_memory_format_not_the_training():
    data = torch.randn(16, 1, 8, 8)
    weights = {}
    for channels_last in (False, True):
        torch.manual_seed(0)
        model = UNet(1, base_channels=8, channel_mults=(1, 2), image_size=8)
        config = TrainConfig(steps=4, batch_size=4, log_every=1, channels_last=channels_last)
        result = train(model, Diffusion.from_schedule("linear", T=50), data, config, device="cpu", progress=False)
        conv = next(p for p in result.ema.model.parameters() if p.ndim == 4 and p.shape[1] > 1 and p.shape[2] > 1)
        assert conv.is_contiguous(memory_format=torch.channels_last) == channels_last
        weights[channels_last] = (torch.tensor(result.losses),
                                  torch.cat([p.detach().flatten() for p in result.ema.model.parameters()]))
    torch.testing.assert_close(weights[True][0], weights[False][0], rtol=1e-4, atol=0)  # the same losses
    # the same weights but for rounding, which Adam's normalised steps (≈ lr = 1e-3 each) can amplify
    torch.testing.assert_close(weights[True][1], weights[False][1], rtol=0, atol=5e-4)
    with pytest.raises(ValueError, match="channels_last must be True or False, got 'yes'"):
        TrainConfig(steps=1, batch_size=1, channels_last="yes")


def test_only_the_cpu_recipes_that_gain_train_channels_last():
    channels_last = [name for name, recipe in recipes.RECIPES.items() if recipe.train_config().channels_last]
    assert channels_last == ["mnist-cpu", "butterflies64-cpu"]

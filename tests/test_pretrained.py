"""Pretrained weights: export with a SHA-256, load through a local HTTP server or a clone, refuse a changed file."""

import tomllib
from pathlib import Path

import pytest
import torch
from local_server import Raw, serve

from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.guidance import ClassifierFreeGuidance
from ddpm_helpers.nn.unet import UNet
from ddpm_helpers.samplers import ddim_sample
from ddpm_helpers.training import TrainConfig, pretrained, train

TINY = dict(in_channels=3, base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(4,),
            image_size=8)
NAME = "test_tiny_ema"  # never the name of a committed file


@pytest.fixture
def weights_folder(tmp_path):
    """A weights folder like the repository's: a tiny U-Net trained 3 steps (placeholder, in tmp only)."""
    torch.manual_seed(0)
    model = UNet(**TINY)
    train_config = TrainConfig(steps=3, batch_size=4, prediction="v", seed=0, log_every=10, checkpoint_every=0,
                               ema_decay=0.99)
    result = train(model, Diffusion.from_schedule("linear", T=50), lambda step, g: torch.randn(4, 3, 8, 8, generator=g),
                   train_config, device="cpu", progress=False)
    folder = tmp_path / "weights"
    pretrained.export_weights(result.ema.model, folder / f"{NAME}.safetensors", result=result, unet_config=TINY,
                              prediction="v", T=50, train_config=vars(train_config))
    return folder, result


def pin(monkeypatch, folder, name=NAME):
    """Let the package pin ``name``'s SHA-256 and size, as it pins the committed files (tests only)."""
    path = folder / f"{name}.safetensors"
    monkeypatch.setitem(pretrained.PINNED, path.name, (pretrained.sha256_of(path), path.stat().st_size))


def sample(model):
    return ddim_sample(model, Diffusion.from_schedule("linear", T=50), (2, 3, 8, 8), num_steps=3, prediction="v",
                       clip_x0=1.0, generator=torch.Generator().manual_seed(1)).x


def test_export_writes_safetensors_and_its_sha256(weights_folder):
    folder, result = weights_folder
    line = (folder / "SHA256SUMS").read_text()
    digest = pretrained.sha256_of(folder / f"{NAME}.safetensors")
    assert line == f"{digest}  {NAME}.safetensors\n"  # the format `sha256sum -c` reads
    from safetensors.torch import load_file

    tensors = load_file(folder / f"{NAME}.safetensors")  # plain tensors, no pickle
    reference = result.ema.model.state_dict()
    assert tensors.keys() == reference.keys() and all(torch.equal(tensors[k], reference[k]) for k in reference)


def test_download_verifies_and_sampling_from_the_weights_runs(weights_folder, monkeypatch):
    folder, result = weights_folder
    pin(monkeypatch, folder)
    with serve(folder) as url:
        monkeypatch.setenv("DDPM_WEIGHTS_URL", url)
        weights = pretrained.load_pretrained(NAME)
    assert weights.source == f"{url}/{NAME}.safetensors"
    assert weights.metadata["unet_config"]["channel_mults"] == [1, 2] and weights.metadata["steps"] == 3
    assert len(weights.metadata["losses"]) == 3
    model = UNet(**weights.metadata["unet_config"])
    loaded = weights.train_result(model)
    assert loaded.steps == 3 and loaded.losses == pytest.approx(result.losses, rel=1e-4)
    assert loaded.planned_steps == result.planned_steps
    assert (loaded.ema.decay, loaded.ema.num_updates) == (result.ema.decay, result.ema.num_updates) == (0.99, 3)
    x = sample(loaded.ema.model)
    assert x.shape == (2, 3, 8, 8) and torch.isfinite(x).all()
    assert torch.equal(x, sample(result.ema.model))  # the same weights give the same samples
    again = pretrained.load_pretrained(NAME)  # the server is gone: the verified cached copy is used
    assert again.source.endswith("(cached)")


def test_a_changed_file_is_refused_and_not_kept(weights_folder, monkeypatch):
    folder, _ = weights_folder
    pin(monkeypatch, folder)
    data = bytearray((folder / f"{NAME}.safetensors").read_bytes())
    data[-1] ^= 0x01  # one bit of one weight
    (folder / f"{NAME}.safetensors").write_bytes(bytes(data))
    with serve(folder) as url:
        monkeypatch.setenv("DDPM_WEIGHTS_URL", url)
        with pytest.raises(FileNotFoundError, match="SHA-256 .* is not the pinned"):
            pretrained.load_pretrained(NAME)
    assert not list(Path(pretrained.config.outputs_dir("pretrained")).glob("*.safetensors"))


def test_inside_a_clone_the_local_file_is_used_and_checked(weights_folder, monkeypatch):
    folder, _ = weights_folder
    monkeypatch.setattr(pretrained.config, "_CHECKOUT", folder.parent)
    monkeypatch.delenv("DDPM_WEIGHTS_URL", raising=False)
    assert pretrained.load_pretrained(NAME).source == f"weights/{NAME}.safetensors in this clone"
    (folder / "SHA256SUMS").write_text("0" * 64 + f"  {NAME}.safetensors\n")
    with pytest.raises(ValueError, match="not loaded"):
        pretrained.load_pretrained(NAME)


def test_load_network_builds_the_recorded_unet_with_the_verified_weights(weights_folder, monkeypatch):
    folder, result = weights_folder
    monkeypatch.setattr(pretrained.config, "_CHECKOUT", folder.parent)
    monkeypatch.delenv("DDPM_WEIGHTS_URL", raising=False)
    model = pretrained.load_network(NAME)
    assert isinstance(model, UNet) and not model.training and model.image_size == TINY["image_size"]
    reference = result.ema.model.state_dict()
    assert all(torch.equal(model.state_dict()[k], reference[k]) for k in reference)
    assert torch.equal(sample(model), sample(result.ema.model.eval()))  # ready to sample: the same samples
    assert pretrained.load_pretrained(NAME).prediction == "v"
    (folder / "SHA256SUMS").write_text("0" * 64 + f"  {NAME}.safetensors\n")
    with pytest.raises(ValueError, match="not loaded"):  # verified like load_pretrained
        pretrained.load_network(NAME)


def test_load_network_refuses_a_file_without_a_unet(tmp_path, monkeypatch):
    path = pretrained.export_weights(torch.nn.Linear(2, 2), tmp_path / "weights" / f"{NAME}.safetensors", seed=0)
    monkeypatch.setattr(pretrained.config, "_CHECKOUT", tmp_path)
    monkeypatch.delenv("DDPM_WEIGHTS_URL", raising=False)
    weights = pretrained.read_weights(path)
    assert weights.prediction == "eps"  # nothing recorded: Ho et al.'s ε
    with pytest.raises(ValueError, match="no unet_config"):
        pretrained.load_network(NAME)


def test_absent_weights_without_network_say_what_to_do(tmp_path, monkeypatch):
    with serve(tmp_path / "nothing-here") as url:  # every file: 404
        monkeypatch.setenv("DDPM_WEIGHTS_URL", url)
        with pytest.raises(FileNotFoundError, match="USE_PRETRAINED = False"):
            pretrained.load_pretrained("05_butterflies_ema")
        with pytest.raises(FileNotFoundError, match="pins no SHA-256.*USE_PRETRAINED = False"):
            pretrained.load_pretrained("05_butterflies_ema_absent")  # nothing to verify a download against


def test_default_address_comes_from_the_project_urls(monkeypatch):
    monkeypatch.delenv("DDPM_WEIGHTS_URL", raising=False)
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    source = tomllib.loads(pyproject.read_text())["project"]["urls"]["Source"]
    assert pretrained.repository_url() == source
    owner_repo = source.removeprefix("https://github.com/")
    assert pretrained.weights_base_url() == f"https://raw.githubusercontent.com/{owner_repo}/HEAD/weights"


def test_bad_names_are_refused(tmp_path):
    for name in ("../secrets", "a/b", "x.safetensors", ""):
        with pytest.raises(ValueError, match="name must be"):
            pretrained.load_pretrained(name)
    with pytest.raises(ValueError, match="must name a file"):
        pretrained.export_weights(UNet(**TINY), tmp_path / "model.pt")


COMMITTED = Path(__file__).resolve().parent.parent / "weights"


@pytest.mark.parametrize("name, channels, size", [("04_mnist_ema", 1, 28), ("04_mnist_long_ema", 1, 28),
                                                 ("05_butterflies_ema", 3, 32), ("05_butterflies64_ema", 3, 64)])
def test_the_committed_weights_download_verify_and_sample(name, channels, size, monkeypatch):
    """The repository's weights/ (the committed full-profile runs), served over HTTP like GitHub would serve them."""
    sums = pretrained._read_sums(COMMITTED / "SHA256SUMS")
    assert pretrained.sha256_of(COMMITTED / f"{name}.safetensors") == sums[f"{name}.safetensors"]
    with serve(COMMITTED) as url:
        monkeypatch.setenv("DDPM_WEIGHTS_URL", url)
        weights = pretrained.load_pretrained(name)
    assert weights.source == f"{url}/{name}.safetensors"
    config = weights.metadata["unet_config"]
    model = weights.train_result(UNet(**config)).ema.model.eval()
    assert weights.metadata["steps"] == len(weights.metadata["losses"]) > 100  # a real run, not a placeholder
    labels = {"y": torch.zeros(2, dtype=torch.long)} if config.get("num_classes") else {}
    with torch.no_grad():
        out = model(torch.randn(2, channels, size, size), torch.full((2,), 500), **labels)
    assert out.shape == (2, channels, size, size) and torch.isfinite(out).all()
    x = ddim_sample(model, Diffusion.from_schedule("linear", T=1000), (2, channels, size, size), num_steps=3,
                    prediction="v", clip_x0=1.0, generator=torch.Generator().manual_seed(0)).x
    assert torch.isfinite(x).all() and x.abs().max() <= 1.0 + 1e-6


@pytest.mark.parametrize("name, size, num_classes", [
    ("04_mnist_ema", 28, 50), ("04_mnist_long_ema", 28, 50), ("05_butterflies_ema", 32, None),
    ("05_butterflies64_ema", 64, None)])
def test_load_network_gives_the_committed_networks_ready_to_sample(name, size, num_classes, monkeypatch):
    """What notebook 01's opening grid uses: the committed networks, built from their own metadata, in eval mode."""
    monkeypatch.delenv("DDPM_WEIGHTS_URL", raising=False)
    model = pretrained.load_network(name)
    assert isinstance(model, UNet) and not model.training
    assert (model.image_size, model.num_classes) == (size, num_classes)
    assert pretrained.load_pretrained(name).prediction == "v"  # 04 records it in train_config, 05 beside unet_config


def test_draw_samples_is_a_seeded_ddim_run_of_the_committed_network(monkeypatch):
    """What notebook 01's opening grid draws: DDIM (η = 0, x̂₀ clipped) with the recorded prediction and schedule."""
    monkeypatch.delenv("DDPM_WEIGHTS_URL", raising=False)
    drawn = pretrained.draw_samples("05_butterflies_ema", 2, num_steps=3, seed=1)
    assert drawn.shape == (2, 3, 32, 32) and drawn.abs().max() <= 1.0 + 1e-6
    assert torch.equal(drawn, pretrained.draw_samples("05_butterflies_ema", 2, num_steps=3, seed=1))
    by_hand = ddim_sample(pretrained.load_network("05_butterflies_ema"), Diffusion.from_schedule("linear", T=1000),
                          (2, 3, 32, 32), num_steps=3, prediction="v", clip_x0=1.0,
                          generator=torch.Generator().manual_seed(1)).x
    assert torch.equal(drawn, by_hand)


def test_draw_samples_with_labels_guides_towards_them(monkeypatch):
    """One image per label, through classifier-free guidance; a label for an unconditional network is refused."""
    monkeypatch.delenv("DDPM_WEIGHTS_URL", raising=False)
    drawn = pretrained.draw_samples("04_mnist_ema", labels=[3, 7], num_steps=2)
    guided = ClassifierFreeGuidance(pretrained.load_network("04_mnist_ema"), [3, 7], 0.25)
    by_hand = ddim_sample(guided, Diffusion.from_schedule("linear", T=1000), (2, 1, 28, 28), num_steps=2,
                          prediction="v", clip_x0=1.0, generator=torch.Generator().manual_seed(0)).x
    assert drawn.shape == (2, 1, 28, 28) and torch.equal(drawn, by_hand)
    with pytest.raises(ValueError, match="one label per image"):
        pretrained.draw_samples("04_mnist_ema", 3, labels=[3, 7], num_steps=2)
    with pytest.raises(ValueError, match="not class-conditional"):
        pretrained.draw_samples("05_butterflies_ema", labels=[0], num_steps=2)


def test_draw_samples_without_labels_draws_the_recorded_clusters(tmp_path, monkeypatch):
    """A network trained on labels and clusters (notebook 04) records how to draw label-free samples: clusters in
    proportion to their shares, guided with its scale; draw_samples follows it."""
    torch.manual_seed(0)
    unet = dict(TINY, in_channels=1, num_classes=5)
    model = UNet(**unet).eval()
    label_free = {"class_offset": 2, "shares": [0.0, 0.25, 0.75], "guidance": 1.0}
    folder = tmp_path / "weights"
    pretrained.export_weights(model, folder / f"{NAME}.safetensors", unet_config=unet, prediction="v", T=50,
                              label_free=label_free)
    pin(monkeypatch, folder)
    monkeypatch.setattr(pretrained.config, "_CHECKOUT", folder.parent)
    monkeypatch.delenv("DDPM_WEIGHTS_URL", raising=False)
    drawn = pretrained.draw_samples(NAME, 6, num_steps=2, seed=3)
    classes = 2 + torch.multinomial(torch.tensor([0.0, 0.25, 0.75], dtype=torch.double), 6, replacement=True,
                                    generator=torch.Generator().manual_seed(3))
    assert set(classes.tolist()) <= {3, 4}  # never the empty cluster
    guided = ClassifierFreeGuidance(model, classes, 1.0)
    by_hand = ddim_sample(guided, Diffusion.from_schedule("linear", T=50), (6, 1, 8, 8), num_steps=2, prediction="v",
                          clip_x0=1.0, generator=torch.Generator().manual_seed(3)).x
    assert torch.equal(drawn, by_hand)
    network = pretrained.load_pretrained(NAME).label_free_network(6, seed=3)  # the same network, for any sampler
    assert isinstance(network, ClassifierFreeGuidance) and torch.equal(network.labels, classes)
    assert network.scale == 1.0


def test_the_pinned_sha256_are_the_committed_sums():
    """The package's own SHA-256 and sizes (what downloads are checked against) equal weights/SHA256SUMS."""
    sums = pretrained._read_sums(COMMITTED / "SHA256SUMS")
    assert {name: digest for name, (digest, _) in pretrained.PINNED.items()} == sums
    assert all((COMMITTED / name).stat().st_size == size for name, (_, size) in pretrained.PINNED.items())


def test_a_mirror_serving_other_weights_with_their_own_sums_is_refused(weights_folder, monkeypatch):
    """The server's SHA256SUMS is never trusted: other weights under a committed name fail the pinned SHA-256."""
    folder, _ = weights_folder
    (folder / f"{NAME}.safetensors").rename(folder / "04_mnist_ema.safetensors")
    digest = pretrained.sha256_of(folder / "04_mnist_ema.safetensors")
    (folder / "SHA256SUMS").write_text(f"{digest}  04_mnist_ema.safetensors\n")  # a list that matches them
    with serve(folder) as url:
        monkeypatch.setenv("DDPM_WEIGHTS_URL", url)
        with pytest.raises(FileNotFoundError, match="04_mnist_ema.safetensors.*(bytes instead|not the pinned)"):
            pretrained.load_pretrained("04_mnist_ema")
    assert not (pretrained.config.outputs_dir("pretrained") / "04_mnist_ema.safetensors").exists()


def test_a_connection_cut_halfway_is_fetched_again(monkeypatch):
    whole = (COMMITTED / "04_mnist_ema.safetensors").read_bytes()
    cut = Raw(f"HTTP/1.1 200 OK\r\nContent-Length: {len(whole)}\r\n\r\n".encode() + whole[:1000])
    tampered = {"04_mnist_ema.safetensors": [cut]}
    with serve(COMMITTED, tampered) as url:
        monkeypatch.setenv("DDPM_WEIGHTS_URL", url)
        weights = pretrained.load_pretrained("04_mnist_ema")
    assert tampered["04_mnist_ema.safetensors"] == [] and weights.metadata["steps"] > 100


def test_a_captive_portal_page_is_named(monkeypatch):
    page = b"<!DOCTYPE html><html><body>Log in to the hotel Wi-Fi</body></html>"
    with serve(COMMITTED, {"04_mnist_ema.safetensors": [page, page]}) as url:
        monkeypatch.setenv("DDPM_WEIGHTS_URL", url)
        with pytest.raises(FileNotFoundError, match=r"04_mnist_ema.safetensors.*HTML page.*captive portal"):
            pretrained.load_pretrained("04_mnist_ema")


@pytest.mark.parametrize("timeout", [0, -1, "60", float("nan"), True])
def test_a_bad_timeout_is_named(timeout):
    with pytest.raises(ValueError, match="timeout"):
        pretrained.load_pretrained("04_mnist_ema", timeout=timeout)


def test_a_damaged_weights_file_or_its_metadata_is_named(weights_folder, tmp_path):
    folder, _ = weights_folder
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match=r"garbage.safetensors is not a readable safetensors weights file"):
        pretrained.read_weights(garbage)
    from safetensors.torch import save_file

    bad_json = tmp_path / "bad_json.safetensors"
    save_file({"w": torch.ones(2)}, str(bad_json), metadata={"ddpm_helpers": "{not json"})
    with pytest.raises(ValueError, match=r"metadata of .*bad_json.safetensors is not valid JSON"):
        pretrained.read_weights(bad_json)

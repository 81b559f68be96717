"""Classifier-free guidance: label dropout, the guided combination (Ho & Salimans 2022, Eq. 6),
the conditional U-Net, and conditional training through the shared loop."""

from contextlib import nullcontext

import pytest
import torch

from ddpm_helpers import guidance
from ddpm_helpers.datasets import random_batches
from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.guidance import ClassifierFreeGuidance, drop_labels
from ddpm_helpers.losses import diffusion_loss
from ddpm_helpers.nn.unet import NULL_LABEL, UNet
from ddpm_helpers.samplers import ddim_sample
from ddpm_helpers.training import TrainConfig, train


class LabelToyModel(torch.nn.Module):
    """f(x, t, y) = x + y for a label y, and x − 100 for NULL_LABEL: easy to check combinations of."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, t, y):
        self.calls.append(y.clone())
        shift = torch.where(y == NULL_LABEL, torch.full_like(y, -100), y).to(x.dtype)
        return x + shift.view(-1, *([1] * (x.ndim - 1)))


def _randomized_unet(**kwargs):
    torch.manual_seed(0)
    model = UNet(1, base_channels=8, channel_mults=(1, 2), **kwargs)
    with torch.no_grad():  # the zero-initialised output layers would make every output 0
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def test_drop_labels_rate_and_values():
    labels = torch.arange(20_000) % 10
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(drop_labels(labels, 0.0, generator), labels)
    dropped = drop_labels(labels, 0.3, generator)
    is_null = dropped == NULL_LABEL
    assert abs(is_null.float().mean().item() - 0.3) < 0.02
    assert torch.equal(dropped[~is_null], labels[~is_null])  # kept labels are unchanged
    for p in (-0.1, 1.0):
        with pytest.raises(ValueError, match="p_uncond"):
            drop_labels(labels, p)


@pytest.mark.parametrize("scale", [0.0, 0.5, 3.0])
def test_guidance_combines_conditional_and_unconditional(scale):
    toy, labels = LabelToyModel(), torch.tensor([0, 3, 7])
    x, t = torch.randn(3, 1, 2, 2), torch.tensor([5, 5, 5])
    out = ClassifierFreeGuidance(toy, labels, scale)(x, t)
    conditional, unconditional = toy(x, t, labels), toy(x, t, torch.full_like(labels, NULL_LABEL))
    torch.testing.assert_close(out, (1 + scale) * conditional - scale * unconditional)  # Eq. 6
    assert len(toy.calls) == 3  # the guided output took one call (a doubled batch when w > 0), then our two


def test_guidance_rejects_bad_input():
    toy = LabelToyModel()
    with pytest.raises(ValueError, match="scale"):
        ClassifierFreeGuidance(toy, torch.tensor([1]), -1.0)
    with pytest.raises(ValueError, match="labels must have shape"):
        ClassifierFreeGuidance(toy, torch.tensor([[1]]), 1.0)
    with pytest.raises(ValueError, match="batch of 2 samples but 3 labels"):
        guided = ClassifierFreeGuidance(toy, torch.tensor([1, 2, 3]), 1.0)
        guided(torch.zeros(2, 1, 2, 2), torch.zeros(2, dtype=torch.long))


def test_conditional_unet_uses_the_label():
    model = _randomized_unet(num_classes=10)
    x, t = torch.randn(4, 1, 28, 28), torch.tensor([10, 200, 500, 900])
    three, seven = model(x, t, torch.full((4,), 3)), model(x, t, torch.full((4,), 7))
    assert three.shape == x.shape and not torch.allclose(three, seven)
    torch.testing.assert_close(model(x, t), model(x, t, torch.full((4,), NULL_LABEL)))  # y=None means "no label"
    mixed = model(x, t, torch.tensor([3, 7, NULL_LABEL, 3]))
    torch.testing.assert_close(mixed[:2], torch.stack([three[0], seven[1]]))  # per-example labels


def test_unet_label_errors_name_the_value():
    conditional, unconditional = _randomized_unet(num_classes=10), _randomized_unet()
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([1, 2])
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        conditional(x, t, torch.tensor([1]))
    with pytest.raises(ValueError, match="integer tensor"):
        conditional(x, t, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="unconditional"):
        unconditional(x, t, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="num_classes"):
        UNet(1, base_channels=8, channel_mults=(1, 2), num_classes=0)


@pytest.mark.parametrize("bad", [10, 11, -2])
def test_bad_label_values_raise_at_the_entry_points_and_never_reach_the_null_row(bad):
    """The forward pass reads no label values (no GPU sync); the entry points check them on the CPU."""
    model, diffusion = _randomized_unet(num_classes=10), Diffusion.from_schedule("linear", 50)
    labels = torch.tensor([0, bad])
    with pytest.raises(ValueError, match=rf"\[0, 10\) or NULL_LABEL=-1, got {bad}"):
        ClassifierFreeGuidance(model, labels, 2.0)
    with pytest.raises(ValueError, match=rf"\[0, 10\) or NULL_LABEL=-1, got {bad}"):
        ClassifierFreeGuidance(model, [0, bad], 0.0)
    with pytest.raises(ValueError, match=rf"\[0, 10\) or NULL_LABEL=-1, got {bad}"):
        diffusion_loss(model, diffusion, torch.randn(2, 1, 28, 28), labels=labels, p_uncond=0.1)
    with pytest.raises(ValueError, match=rf"\[0, ∞\) or NULL_LABEL=-1, got {bad}") if bad < 0 else nullcontext():
        ClassifierFreeGuidance(LabelToyModel(), labels, 1.0)  # no num_classes: only the sign is known
    # straight into the network, a bad label is refused by the embedding (label 10 is not the null row, 10)
    with pytest.raises(IndexError):
        model(torch.randn(2, 1, 28, 28), torch.tensor([1, 2]), labels)
    guided = ClassifierFreeGuidance(model, [0, NULL_LABEL, 9], 1.0)  # NULL_LABEL and the last class are fine
    assert guided(torch.randn(3, 1, 28, 28), torch.tensor([1, 2, 3])).shape == (3, 1, 28, 28)


def test_guided_unet_samples_through_ddim():
    model, diffusion = _randomized_unet(num_classes=10), Diffusion.from_schedule("linear", 50)
    guided = ClassifierFreeGuidance(model, torch.arange(6) % 10, 2.0)
    out = ddim_sample(guided, diffusion, (6, 1, 28, 28), num_steps=5, prediction="v", clip_x0=1.0,
                      generator=torch.Generator().manual_seed(0)).x
    assert out.shape == (6, 1, 28, 28) and torch.isfinite(out).all()


def test_loss_passes_labels_with_dropout():
    toy, diffusion = LabelToyModel(), Diffusion.from_schedule("linear", 50)
    x0, labels = torch.randn(4000, 1, 1, 1), torch.arange(4000) % 10
    diffusion_loss(toy, diffusion, x0, labels=labels, p_uncond=0.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(toy.calls[-1], labels)
    diffusion_loss(toy, diffusion, x0, labels=labels, p_uncond=0.25, generator=torch.Generator().manual_seed(0))
    assert abs((toy.calls[-1] == NULL_LABEL).float().mean().item() - 0.25) < 0.03
    with pytest.raises(ValueError, match="labels must have shape"):
        diffusion_loss(toy, diffusion, x0, labels=labels[:10])


def test_random_batches_keep_images_and_labels_paired():
    data = torch.arange(100.0)[:, None, None, None].expand(100, 1, 2, 2).clone()
    x, y = random_batches(data, 16, labels=torch.arange(100))(0, torch.Generator().manual_seed(0))
    assert torch.equal(x[:, 0, 0, 0].long(), y)
    with pytest.raises(ValueError, match="labels must have shape"):
        random_batches(data, 16, labels=torch.arange(99))


def test_conditional_training_runs_resumes_and_needs_labels(tmp_path):
    images = torch.rand(64, 1, 28, 28) * 2 - 1
    labels = torch.arange(64) % 10
    diffusion = Diffusion.from_schedule("linear", 100)

    def run(steps, out_dir=None, data=(images, labels), p_uncond=0.2):
        torch.manual_seed(0)
        model = UNet(1, base_channels=8, channel_mults=(1, 2), num_classes=10)
        config = TrainConfig(steps=steps, batch_size=8, lr=1e-3, log_every=2, p_uncond=p_uncond)
        return train(model, diffusion, data, config, device="cpu", out_dir=out_dir, progress=False)

    full = run(6)
    assert full.steps == 6 and all(torch.isfinite(torch.tensor(full.losses)))
    run(3, out_dir=tmp_path)
    resumed = run(6, out_dir=tmp_path)
    for p, q in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="p_uncond"):
        run(6, out_dir=tmp_path, p_uncond=0.1)  # a checkpoint of another dropout rate is not resumed
    with pytest.raises(ValueError, match=r"\(x, labels\) pair"):
        run(2, data=images)
    with pytest.raises(ValueError, match="p_uncond"):
        TrainConfig(steps=1, batch_size=1, p_uncond=1.0)


def test_null_label_lives_in_guidance_and_losses_do_not_import_the_unet():
    import ddpm_helpers.nn.unet as unet

    assert guidance.NULL_LABEL == unet.NULL_LABEL == -1
    import subprocess
    import sys

    code = "import sys, ddpm_helpers.losses, ddpm_helpers.guidance; print('ddpm_helpers.nn.unet' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_guidance_rejects_float_labels_and_non_finite_scales():
    toy = LabelToyModel()
    for labels in (torch.tensor([0.7, 2.9]), [0.7, 2.9], [True, False], torch.tensor([True]), "01"):
        with pytest.raises(ValueError, match="labels must be"):
            ClassifierFreeGuidance(toy, labels, 1.0)
    for scale in (float("inf"), float("nan"), "2", None):
        with pytest.raises(ValueError, match="guidance scale"):
            ClassifierFreeGuidance(toy, torch.tensor([1]), scale)


def test_guidance_accepts_a_list_of_ints():
    toy, x, t = LabelToyModel(), torch.randn(3, 1, 2, 2), torch.tensor([5, 5, 5])
    from_list = ClassifierFreeGuidance(toy, [0, 3, 7], 2.0)
    assert from_list.labels.dtype == torch.long
    torch.testing.assert_close(from_list(x, t), ClassifierFreeGuidance(toy, torch.tensor([0, 3, 7]), 2.0)(x, t))


def test_guidance_labels_are_a_buffer_on_the_model_device():
    model = UNet(1, base_channels=8, channel_mults=(1,), image_size=4, num_groups=4, num_classes=10).to("meta")
    wrapped = ClassifierFreeGuidance(model, [1, 2], 1.0)
    assert wrapped.labels.device.type == "meta"  # placed on the model's device once, not moved per call
    with pytest.raises(ValueError, match=r"move the guidance wrapper with \.to\('cpu'\)"):
        wrapped(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long))

"""The U-Net of ddpm_helpers.nn.unet: shapes, configuration checks, and that t matters."""

import pytest
import torch

from ddpm_helpers.nn.unet import SelfAttention, UNet
from ddpm_helpers.utils import count_parameters


def _randomize_zero_inits(model: torch.nn.Module, seed: int = 0) -> None:
    """Zero-initialised output layers make a fresh U-Net output exactly 0: perturb every weight."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))


@pytest.mark.parametrize(
    "in_channels, image_size, kwargs",
    [
        (1, 28, dict(base_channels=16, channel_mults=(1, 2, 2))),
        (1, 28, dict(base_channels=8, channel_mults=(1, 2, 2), attention_resolutions=(7,))),
        (3, 32, dict(base_channels=16, channel_mults=(1, 2, 2, 2), attention_resolutions=(8,), dropout=0.1)),
        (3, 64, dict(base_channels=8, channel_mults=(1, 1, 2, 2), num_res_blocks=2, attention_resolutions=(16, 8))),
        (1, 28, dict(base_channels=8, channel_mults=(1,), time_dim=20, num_groups=4)),
        (1, 28, dict(base_channels=8, channel_mults=(1, 2), attention_resolutions=(7,), patch_size=2)),
        (3, 32, dict(base_channels=8, channel_mults=(1, 2), patch_size=4)),
    ],
)
def test_output_has_input_shape(in_channels, image_size, kwargs):
    model = UNet(in_channels, image_size=image_size, **kwargs)
    x = torch.randn(2, in_channels, image_size, image_size)
    out = model(x, torch.tensor([0, 999]))
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_attention_blocks_sit_at_requested_resolutions():
    plain = UNet(3, base_channels=8, channel_mults=(1, 2, 2), image_size=32)
    attn = UNet(3, base_channels=8, channel_mults=(1, 2, 2), image_size=32, attention_resolutions=(16,))
    assert not any(isinstance(m, SelfAttention) for m in plain.modules())
    # down path: 1 block at 16x16; up path: 2 blocks at 16x16; the middle (8x8) has none
    assert sum(isinstance(m, SelfAttention) for m in attn.modules()) == 3
    middle = UNet(3, base_channels=8, channel_mults=(1, 2, 2), image_size=32, attention_resolutions=(8,))
    assert any(isinstance(m, SelfAttention) for m in middle.middle)
    assert count_parameters(attn) > count_parameters(plain)


def test_patch_stem_runs_the_levels_at_a_fraction_of_the_resolution():
    """patch_size=2 folds 2×2 pixel blocks into channels: 28×28×1 enters the stem as 14×14×4."""
    torch.manual_seed(0)
    model = UNet(1, base_channels=8, channel_mults=(1, 2), image_size=28, patch_size=2, attention_resolutions=(7,))
    assert model.resolutions == (14, 7)
    seen = []
    model.stem.register_forward_hook(lambda module, args, out: seen.append((tuple(args[0].shape), tuple(out.shape))))
    _randomize_zero_inits(model)
    x = torch.randn(2, 1, 28, 28)
    out = model(x, torch.tensor([3, 700]))
    assert seen == [((2, 4, 14, 14), (2, 8, 14, 14))]
    assert out.shape == x.shape
    out.pow(2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_patch_unfolding_puts_each_output_pixel_back_in_place():
    """With the head predicting its input patch channels, the output is the input: no pixel moves."""
    model = UNet(3, base_channels=8, channel_mults=(1,), image_size=8, patch_size=2)
    x = torch.randn(1, 3, 8, 8)
    folded = torch.nn.functional.pixel_unshuffle(x, 2)  # what the stem receives
    unfolded = torch.nn.functional.pixel_shuffle(folded, 2)  # what the head's output goes through
    assert torch.equal(unfolded, x)
    assert folded.shape == (1, 12, 4, 4) and torch.equal(folded[0, :4, 0, 0], x[0, 0, :2, :2].flatten())
    assert model.stem.in_channels == 12 and model.head[-1].out_channels == 12


def test_attention_is_used_in_the_forward_pass():
    torch.manual_seed(0)
    model = UNet(1, base_channels=8, channel_mults=(1, 2), image_size=28, attention_resolutions=(14,))
    _randomize_zero_inits(model)
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([10, 500])
    before = model(x, t)
    for m in model.modules():
        if isinstance(m, SelfAttention):
            torch.nn.init.zeros_(m.out.weight)
            torch.nn.init.zeros_(m.out.bias)
    assert not torch.allclose(before, model(x, t), atol=1e-6)


def test_time_embedding_changes_the_output():
    torch.manual_seed(0)
    model = UNet(1, base_channels=8, channel_mults=(1, 2, 2), image_size=28)
    _randomize_zero_inits(model)
    x = torch.randn(1, 1, 28, 28).repeat(2, 1, 1, 1)
    out = model(x, torch.tensor([5, 900]))
    assert (out[0] - out[1]).abs().max() > 1e-3, "the same image at two timesteps gave the same output"


def test_fresh_model_predicts_zero():
    """The final conv is zero-initialised, so training starts from the output 0 (a sensible ε guess)."""
    model = UNet(1, base_channels=8, channel_mults=(1, 2), image_size=28)
    assert torch.count_nonzero(model(torch.randn(2, 1, 28, 28), torch.tensor([1, 2]))) == 0


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = UNet(1, base_channels=8, channel_mults=(1, 2), image_size=28, attention_resolutions=(14,))
    _randomize_zero_inits(model)
    model(torch.randn(2, 1, 28, 28), torch.tensor([3, 700])).pow(2).mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(image_size=28, channel_mults=(1, 2, 2, 2)), "image_size=28"),
        (dict(attention_resolutions=(5,)), "[5]"),
        (dict(base_channels=12, num_groups=8), "num_groups=8"),
        (dict(channel_mults=()), "channel_mults"),
        (dict(channel_mults=(1, 0)), "(1, 0)"),
        (dict(dropout=1.5), "1.5"),
        (dict(base_channels=0), "base_channels"),
        (dict(num_res_blocks=0), "num_res_blocks"),
        (dict(time_dim=-3), "-3"),
        (dict(patch_size=3), "patch_size=3"),
        (dict(patch_size=2, channel_mults=(1, 2, 2)), "= 14 cannot be halved 2 times"),
        (dict(patch_size=2, channel_mults=(1, 2), attention_resolutions=(28,)), "[28]"),
    ],
)
def test_bad_config_raises_value_error_naming_it(kwargs, fragment):
    with pytest.raises(ValueError) as info:
        UNet(1, **{"base_channels": 16, **kwargs})
    assert fragment in str(info.value)


def test_bad_input_shapes_raise_value_error():
    model = UNet(1, base_channels=8, channel_mults=(1, 2), image_size=28)
    with pytest.raises(ValueError, match=r"\(2, 3, 28, 28\)"):
        model(torch.randn(2, 3, 28, 28), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"\(2, 1, 32, 32\)"):
        model(torch.randn(2, 1, 32, 32), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"\(3,\)"):
        model(torch.randn(2, 1, 28, 28), torch.tensor([0, 1, 2]))

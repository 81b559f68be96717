"""ddpm_helpers.training.timing: every model is timed and really trained; bad arguments are named."""

import pytest
import torch

from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.nn.unet import UNet
from ddpm_helpers.training.timing import fastest_training_steps


def test_each_model_gets_a_positive_time_and_its_adam_steps():
    torch.manual_seed(0)
    models = [UNet(1, base_channels=8, channel_mults=(1,), image_size=8),
              UNet(1, base_channels=8, channel_mults=(1, 2), image_size=8)]
    before = [[p.detach().clone() for p in m.parameters()] for m in models]
    x0 = torch.rand(2, 1, 8, 8) * 2 - 1
    seconds = fastest_training_steps(models, Diffusion.from_schedule("linear", T=50), x0, repeats=2)
    assert len(seconds) == 2 and all(0 < s < float("inf") for s in seconds)
    for model, old in zip(models, before):  # warm-up + 2 timed steps changed the weights
        assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), old))


@pytest.mark.parametrize(
    "models, repeats, fragment", [([], 1, "at least one"), (None, 0, "repeats=0"), (None, 1.5, "1.5")]
)
def test_bad_arguments_raise_value_error_naming_them(models, repeats, fragment):
    models = [UNet(1, base_channels=8, channel_mults=(1,), image_size=8)] if models is None else models
    with pytest.raises(ValueError) as info:
        fastest_training_steps(models, Diffusion.from_schedule("linear", T=50), torch.zeros(1, 1, 8, 8),
                               repeats=repeats)
    assert fragment in str(info.value)

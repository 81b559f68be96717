"""No host syncs on the per-step paths, checked without a GPU: the forward passes run on the ``meta`` device.

A meta tensor has a shape and a dtype but no values, so anything that reads a value on the host
(``.any()`` in an ``if``, ``.item()``, ``torch.unique``, ``.tolist()``) raises there; a forward pass that
runs on meta therefore cannot make a GPU wait for the device. The CUDA sync-debug test in
``test_recipes.py`` covers the same pieces on a real GPU when one is present.
"""

import pytest
import torch

from ddpm_helpers.guidance import NULL_LABEL, ClassifierFreeGuidance
from ddpm_helpers.nn.mlp import MLP
from ddpm_helpers.nn.unet import UNet
from ddpm_helpers.training.ema import EMA

META = torch.device("meta")
UNET = dict(in_channels=1, base_channels=8, channel_mults=(1, 2), attention_resolutions=(7,), dropout=0.1,
            image_size=14, num_classes=10)


def _conditional_unet():
    with META:
        return UNet(**UNET)


def test_meta_tensors_refuse_to_be_read():
    """The premise: reading a value on meta raises, so a pass below that finishes read none."""
    labels = torch.tensor([1, 2], device=META)
    reads = (lambda: bool(labels.any()), lambda: labels.tolist(), lambda: torch.unique(labels, return_inverse=True))
    for read in reads:
        with pytest.raises((RuntimeError, NotImplementedError)):
            read()


@pytest.mark.parametrize("labels", ["classes", "null", "mixed", "none"])
def test_conditional_unet_forward_reads_no_values(labels):
    model = _conditional_unet().train()  # dropout on, as in training
    assert next(model.parameters()).device == META
    x, t = torch.randn(4, 1, 14, 14, device=META), torch.randint(0, 1000, (4,), device=META)
    y = {"classes": torch.tensor([0, 3, 7, 9]), "null": torch.full((4,), NULL_LABEL),
         "mixed": torch.tensor([0, NULL_LABEL, 9, NULL_LABEL]), "none": None}[labels]
    out = model(x, t, None if y is None else y.to(META))
    assert out.shape == x.shape and out.device == META


def test_unet_label_index_reads_no_values():
    index = _conditional_unet()._label_index(torch.tensor([0, NULL_LABEL, 12], device=META), 3, META)
    assert index.shape == (3,) and index.dtype == torch.long and index.device == META


def test_guided_unet_forward_reads_no_values():
    model = _conditional_unet().eval()
    guided = ClassifierFreeGuidance(model, [1, 2, NULL_LABEL], 3.0)  # labels checked on the CPU, then moved
    assert guided.labels.device == META
    x, t = torch.randn(3, 1, 14, 14, device=META), torch.full((3,), 500, device=META)
    assert guided(x, t).shape == x.shape
    assert ClassifierFreeGuidance(model, [4, 5, 6], 0.0)(x, t).shape == x.shape  # w = 0: the conditional half only


@pytest.mark.parametrize("fourier_octaves", [0, 6])
def test_mlp_forward_reads_no_values(fourier_octaves):
    with META:
        model = MLP(data_dim=2, hidden=32, num_blocks=2, time_dim=16, fourier_octaves=fourier_octaves)
    x = torch.randn(5, 2, device=META)
    for t in (torch.randint(0, 1000, (5,), device=META), torch.full((5,), 999, device=META)):  # training, sampling
        assert model(x, t).shape == (5, 2)


@pytest.mark.parametrize("make", [_conditional_unet, lambda: MLP().to(META),
                                  lambda: torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).to(META)],
                         ids=["unet", "mlp", "batchnorm"])
def test_ema_update_reads_no_values(make):
    model = make()
    ema = EMA(model, decay=0.999)
    for _ in range(3):  # the first update makes the lists, the next ones reuse them
        ema.update(model)
    assert ema.num_updates == 3 and next(ema.model.parameters()).device == META


def test_bad_labels_still_get_a_clear_error_where_they_enter():
    """What the forward pass no longer checks, the entry points do, on the CPU."""
    model = _conditional_unet()
    with pytest.raises(ValueError, match=r"class labels must be in \[0, 10\) or NULL_LABEL=-1, got 10"):
        ClassifierFreeGuidance(model, [3, 10], 2.0)
    with pytest.raises(ValueError, match=r"got -5"):
        ClassifierFreeGuidance(model, torch.tensor([-5, 1]), 2.0)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):  # the forward pass still checks shape and dtype
        model(torch.randn(4, 1, 14, 14, device=META), torch.zeros(4, dtype=torch.long, device=META),
              torch.zeros(3, dtype=torch.long, device=META))


@pytest.mark.parametrize("step", ["ddim", "ddim-eta", "ddpm", "dpm-solver"])
def test_a_guided_sampler_step_body_reads_no_values(step):
    """One step of each sampler as the loop runs it (the check-free body) on the guided U-Net's meta output."""
    from ddpm_helpers.diffusion import Diffusion
    from ddpm_helpers.samplers.ddim import _ddim_step
    from ddpm_helpers.samplers.ddpm import _ddpm_step
    from ddpm_helpers.samplers.dpm_solver import _dpm_solver_step

    diffusion = Diffusion.from_schedule("linear", T=1000)
    guided = ClassifierFreeGuidance(_conditional_unet().eval(), [1, 2, NULL_LABEL], 2.0)
    x = torch.randn(3, 1, 14, 14, device=META)
    t, t_next = 500, 449
    tt = torch.full((3,), t, device=META)
    output = guided(x, tt)
    generator = None  # the noise of the stochastic steps comes from the default generator
    bodies = {
        "ddim": lambda: _ddim_step(diffusion, output, x, t, t_next, tt, eta=0.0, prediction="v", clip_x0=1.0,
                                   generator=generator),
        "ddim-eta": lambda: _ddim_step(diffusion, output, x, t, t_next, tt, eta=1.0, prediction="eps", clip_x0=None,
                                       generator=generator),
        "ddpm": lambda: _ddpm_step(diffusion, output, x, t, t - 1, tt, prediction="eps", variance="beta_tilde",
                                   clip_x0=1.0, generator=generator),
        "dpm-solver": lambda: _dpm_solver_step(diffusion, output, x, t, t_next, tt, previous=None, prediction="v",
                                               clip_x0=1.0),
    }
    x_prev, x0_hat = bodies[step]()
    assert x_prev.device == META and x_prev.shape == x.shape and x0_hat.shape == x.shape

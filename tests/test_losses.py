"""Training loss: zero for a perfect model, min-SNR weights by definition, the weights' equivalence across targets."""

import math

import pytest
import torch

from ddpm_helpers.diffusion import Diffusion
from ddpm_helpers.losses import diffusion_loss, snr_loss_weight, training_target


@pytest.fixture(scope="module")
def diffusion():
    return Diffusion.from_schedule("cosine", T=100)


def _alpha_bar(d, t):
    """ᾱ_t by an explicit product of the one-step factors."""
    return math.prod(1.0 - b for b in d.betas[: t + 1].tolist())


class Recorder:
    """A model that returns a given function of (x_t, t) and remembers its inputs."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __call__(self, xt, t):
        self.calls.append((xt, t))
        return self.fn(xt, t)


def _oracle(d, x0, prediction):
    """Return the true target from (x_t, t) using x0: ε = (x_t − √ᾱ x0)/√(1−ᾱ), v = cos φ ε − sin φ x0."""

    def fn(xt, t):
        abar = torch.tensor([_alpha_bar(d, ti) for ti in t.tolist()], dtype=xt.dtype).reshape(-1, 1)
        eps = (xt - abar.sqrt() * x0) / (1 - abar).sqrt()
        phi = torch.atan2((1 - abar).sqrt(), abar.sqrt())
        return {"eps": eps, "x0": x0, "v": torch.cos(phi) * eps - torch.sin(phi) * x0}[prediction]

    return fn


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
@pytest.mark.parametrize("weighting", ["none", "min_snr"])
def test_loss_is_zero_for_the_true_target(diffusion, prediction, weighting):
    x0 = torch.randn(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    loss = diffusion_loss(Recorder(_oracle(diffusion, x0, prediction)), diffusion, x0, prediction=prediction,
                          weighting=weighting, generator=torch.Generator().manual_seed(1))
    assert loss.item() < 1e-20
    wrong = diffusion_loss(Recorder(lambda xt, t: _oracle(diffusion, x0, prediction)(xt, t) + 0.1), diffusion, x0,
                           prediction=prediction, weighting=weighting, generator=torch.Generator().manual_seed(1))
    assert wrong.item() > 1e-4


def _min_snr_definition(abar, prediction, gamma):
    snr = abar / (1 - abar)
    return {"eps": min(snr, gamma) / snr, "x0": min(snr, gamma), "v": min(snr, gamma) / (snr + 1)}[prediction]


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_min_snr_weights_match_definition(diffusion, prediction):
    t = torch.tensor([0, 10, 50, 90, 99])
    w = snr_loss_weight(diffusion, t, prediction, "min_snr", min_snr_gamma=5.0)
    assert w.shape == (5,) and w.dtype == torch.get_default_dtype()
    expected = [_min_snr_definition(_alpha_bar(diffusion, ti), prediction, 5.0) for ti in t.tolist()]
    assert w.tolist() == pytest.approx(expected, rel=1e-6)
    assert snr_loss_weight(diffusion, t, prediction, "none").tolist() == [1.0] * 5


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_loss_is_weighted_mean_of_per_example_mse(diffusion, prediction):
    """A model off by c everywhere has MSE c², so the loss is c² · mean_b w(t_b) for the t it saw."""
    x0 = torch.randn(32, 2, dtype=torch.float64)
    model = Recorder(lambda xt, t: _oracle(diffusion, x0, prediction)(xt, t) + 0.5)
    loss = diffusion_loss(model, diffusion, x0, prediction=prediction, weighting="min_snr", min_snr_gamma=2.0)
    (_, t), = model.calls
    w = [_min_snr_definition(_alpha_bar(diffusion, ti), prediction, 2.0) for ti in t.tolist()]
    assert loss.item() == pytest.approx(0.25 * sum(w) / len(w), rel=1e-5)


def test_min_snr_losses_agree_across_parameterizations(diffusion):
    """Hang et al. 2023: with min-SNR weights, ε-, x0- and v-losses of one prediction are the same number,
    because ‖ε̂ − ε‖² = SNR ‖x̂0 − x0‖² and ‖v̂ − v‖² = (SNR + 1) ‖x̂0 − x0‖²."""
    x0 = torch.randn(128, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    eps_model = lambda xt, t: torch.tanh(xt) * 0.7  # noqa: E731  an arbitrary imperfect ε-predictor
    as_x0 = lambda xt, t: diffusion.predict_x0_from_eps(xt, t, eps_model(xt, t))  # noqa: E731
    as_v = lambda xt, t: diffusion.v_from_x0_eps(as_x0(xt, t), t, eps_model(xt, t))  # noqa: E731
    losses = [
        diffusion_loss(model, diffusion, x0, prediction=p, weighting="min_snr", min_snr_gamma=5.0,
                       generator=torch.Generator().manual_seed(6)).item()
        for model, p in [(eps_model, "eps"), (as_x0, "x0"), (as_v, "v")]
    ]
    assert losses[1] == pytest.approx(losses[0], rel=1e-6)
    assert losses[2] == pytest.approx(losses[0], rel=1e-6)


def test_training_target(diffusion):
    x0, eps = torch.randn(4, 2), torch.randn(4, 2)
    t = torch.tensor([0, 1, 2, 3])
    assert training_target(diffusion, x0, t, eps, "eps") is eps
    assert training_target(diffusion, x0, t, eps, "x0") is x0
    torch.testing.assert_close(training_target(diffusion, x0, t, eps, "v"), diffusion.v_from_x0_eps(x0, t, eps))


def test_loss_backpropagates_and_is_reproducible(diffusion):
    model = torch.nn.Linear(2, 2)
    x0 = torch.randn(16, 2)
    wrapped = lambda xt, t: model(xt)  # noqa: E731
    a = diffusion_loss(wrapped, diffusion, x0, generator=torch.Generator().manual_seed(0))
    b = diffusion_loss(wrapped, diffusion, x0, generator=torch.Generator().manual_seed(0))
    assert a.item() == b.item()
    a.backward()
    assert model.weight.grad is not None and model.weight.grad.abs().sum() > 0


def test_bad_inputs_raise(diffusion):
    x0 = torch.randn(4, 2)
    identity = lambda xt, t: xt  # noqa: E731
    t = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="'score'"):
        diffusion_loss(identity, diffusion, x0, prediction="score")
    with pytest.raises(ValueError, match="'p2'"):
        diffusion_loss(identity, diffusion, x0, weighting="p2")
    with pytest.raises(ValueError, match="min_snr_gamma=0"):
        snr_loss_weight(diffusion, t, "eps", "min_snr", min_snr_gamma=0)
    with pytest.raises(ValueError, match=r"\(4, 1\)"):
        diffusion_loss(lambda xt, t: xt[:, :1], diffusion, x0)
    with pytest.raises(ValueError, match=r"\(4,\)"):
        diffusion_loss(identity, diffusion, torch.randn(4))


def test_weight_table_is_built_once(diffusion):
    from ddpm_helpers.losses import _weight_table

    like = torch.zeros(3)
    first = _weight_table(diffusion, "eps", "min_snr", 5.0, like)
    assert _weight_table(diffusion, "eps", "min_snr", 5.0, torch.ones(7)) is first
    assert _weight_table(diffusion, "eps", "min_snr", 2.0, like) is not first


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64])
def test_integer_data_raises_naming_the_dtype(diffusion, dtype):
    """Integer images used to give a loss against zeros (tables cast to the integer dtype)."""
    identity = lambda xt, t: xt  # noqa: E731
    with pytest.raises(ValueError, match=rf"x0 must be a floating-point tensor, got dtype {dtype}"):
        diffusion_loss(identity, diffusion, torch.ones(4, 2, dtype=dtype))


def test_bad_gamma_and_labels_raise(diffusion):
    x0 = torch.randn(4, 2)
    identity = lambda xt, t, y=None: xt  # noqa: E731
    for gamma in (float("inf"), float("nan"), "5", True, -1.0):
        with pytest.raises(ValueError, match="min_snr_gamma"):
            diffusion_loss(identity, diffusion, x0, weighting="min_snr", min_snr_gamma=gamma)
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\) \(a tensor of class indices\), got list"):
        diffusion_loss(identity, diffusion, x0, labels=[0, 1, 2, 3], p_uncond=0.1)
    with pytest.raises(ValueError, match="x0 must be a floating-point torch.Tensor, got list"):
        diffusion_loss(identity, diffusion, [[0.0, 1.0]])
    with pytest.raises(ValueError, match="int64"):
        snr_loss_weight(diffusion, torch.tensor([1.0, 2.0]), "eps")

"""Bad inputs to the math API: every one raises a ValueError whose message names what is wrong.

Each case is (what, call, fragment): ``call()`` must raise ValueError with ``fragment`` in the message.
"""

import numpy as np
import pytest
import torch

from ddpm_helpers import analytic, elbo, guidance, losses, samplers, schedules
from ddpm_helpers.datasets import to_unit_range
from ddpm_helpers.diffusion import Diffusion, extract
from ddpm_helpers.evaluation import color_stats, mnist_eval, neighbours
from ddpm_helpers.nn.embeddings import sinusoidal_embedding
from ddpm_helpers.nn.mlp import MLP
from ddpm_helpers.nn.unet import UNet
from ddpm_helpers.training import TrainConfig, train
from ddpm_helpers.training.ema import EMA

D = Diffusion.from_schedule("linear", 50)
X = torch.randn(2, 3)
T2 = torch.tensor([1, 2])
NAN, INF = float("nan"), float("inf")


def ident(x, t, y=None):
    return x


def half(x, t):
    return x[:, :2]


def unet(**kwargs):
    return UNet(1, **{"base_channels": 8, "channel_mults": (1,), "image_size": 4, "num_groups": 4, **kwargs})


def _train_with(out_dir=None, **changes):
    """train() a tiny MLP 2 steps, with ``changes`` set on its TrainConfig after construction."""
    config = TrainConfig(steps=2, batch_size=4, log_every=1)
    for name, value in changes.items():
        setattr(config, name, value)
    return train(MLP(hidden=8, num_blocks=1), D, torch.randn(16, 2), config, device="cpu", out_dir=out_dir,
                 progress=False)


def cfg(labels, scale=1.0):
    return guidance.ClassifierFreeGuidance(unet(num_classes=3), labels, scale)


CASES = [
    # Diffusion construction and schedules
    ("betas of length 1", lambda: Diffusion([0.1]), "(1,)"),
    ("NaN beta", lambda: Diffusion([0.1, NAN]), "nan"),
    ("betas so small that alpha_bar is 1", lambda: Diffusion([1e-17, 1e-17, 0.1]), "too small"),
    ("betas given as a string", lambda: Diffusion("0.1"), "'0.1'"),
    ("T=True", lambda: Diffusion.from_schedule("cosine", T=True), "T=True"),
    ("T=1.5", lambda: Diffusion.from_schedule("linear", T=1.5), "T=1.5"),
    ("schedule None", lambda: Diffusion.from_schedule(None), "None"),
    ("linear T=10 (rescaled beta_end > 1)", lambda: schedules.linear_beta_schedule(10), "T=10"),
    ("cosine s=-1", lambda: schedules.cosine_beta_schedule(10, s=-1), "s=-1"),
    ("cosine s=nan", lambda: schedules.cosine_beta_schedule(10, s=NAN), "s=nan"),
    ("cosine max_beta=1", lambda: schedules.cosine_beta_schedule(10, max_beta=1), "max_beta=1"),
    ("sigmoid tau=0", lambda: schedules.sigmoid_beta_schedule(10, tau=0), "tau=0"),
    ("sigmoid start > end", lambda: schedules.sigmoid_beta_schedule(10, start=3, end=-3), "end > start"),
    ("linear beta_start string", lambda: schedules.linear_beta_schedule(1000, beta_start="1e-4"), "'1e-4'"),
    ("sample_timesteps(True)", lambda: D.sample_timesteps(True), "batch_size=True"),
    ("sample_timesteps(2.0)", lambda: D.sample_timesteps(2.0), "batch_size=2.0"),
    # forward process: data and timesteps
    ("uint8 x0", lambda: D.q_sample(torch.ones(2, 3, dtype=torch.uint8), T2), "torch.uint8"),
    ("int64 x0", lambda: D.q_sample(torch.ones(2, 3, dtype=torch.long), T2), "torch.int64"),
    ("numpy x0", lambda: D.q_sample(np.ones((2, 3)), T2), "ndarray"),
    ("0-d x0", lambda: D.q_sample(torch.tensor(1.0), T2), "0-d"),
    ("float t", lambda: D.q_sample(X, torch.tensor([1.0, 2.0])), "torch.float32"),
    ("uint8 t", lambda: D.q_sample(X, torch.tensor([1, 2], dtype=torch.uint8)), "torch.uint8"),
    ("bool t", lambda: D.q_sample(X, torch.tensor([True, False])), "torch.bool"),
    ("t = T", lambda: D.q_sample(X, torch.tensor([1, 50])), "t=[50]"),
    ("negative t", lambda: D.q_sample(X, torch.tensor([-3, 2])), "t=[-3]"),
    ("t of the wrong batch size", lambda: D.q_sample(X, torch.tensor([1, 2, 3])), "(3,)"),
    ("2-D t", lambda: D.q_sample(X, T2[:, None]), "(2, 1)"),
    ("t as a list", lambda: D.q_sample(X, [1, 2]), "list"),
    ("t as an int", lambda: D.q_sample(X, 5), "int"),
    ("eps of the wrong shape", lambda: D.q_sample(X, T2, torch.zeros(2, 4)), "(2, 4)"),
    ("int eps", lambda: D.q_sample(X, T2, torch.zeros(2, 3, dtype=torch.long)), "eps"),
    ("q_mean_variance int x0", lambda: D.q_mean_variance(torch.ones(2, 3, dtype=torch.int32), T2), "torch.int32"),
    ("q_posterior shapes differ", lambda: D.q_posterior(X, torch.zeros(2, 4), T2), "(2, 4)"),
    ("q_posterior uint8 xt", lambda: D.q_posterior(X, torch.zeros(2, 3, dtype=torch.uint8), T2), "xt"),
    ("predict_x0_from_eps int eps", lambda: D.predict_x0_from_eps(X, T2, torch.zeros(2, 3, dtype=torch.long)), "eps"),
    ("predict_x0_from_v t = T", lambda: D.predict_x0_from_v(X, torch.tensor([0, 99]), X), "t=[99]"),
    ("v_from_x0_eps shapes differ", lambda: D.v_from_x0_eps(X, T2, X[:, :1]), "(2, 1)"),
    # parameterizations
    ("prediction 'epsilon'", lambda: D.model_predictions(X, X, T2, "epsilon"), "'epsilon'"),
    ("clip_x0=0", lambda: D.model_predictions(X, X, T2, clip_x0=0), "clip_x0=0"),
    ("clip_x0=nan", lambda: D.model_predictions(X, X, T2, clip_x0=NAN), "clip_x0=nan"),
    ("clip_x0 string", lambda: D.model_predictions(X, X, T2, clip_x0="1"), "clip_x0='1'"),
    ("variance 'fixed_small'", lambda: D.p_mean_variance(X, X, T2, variance="fixed_small"), "'fixed_small'"),
    ("model output of the wrong shape", lambda: D.p_mean_variance(X[:, :2], X, T2), "(2, 2)"),
    ("p_mean_variance float t", lambda: D.p_mean_variance(X, X, T2.float()), "torch.float32"),
    # samplers
    ("shape with a 0", lambda: samplers.ddpm_sample(ident, D, (2, 0)), "shape=(2, 0)"),
    ("shape with a bool", lambda: samplers.ddpm_sample(ident, D, (2, True)), "shape=(2, True)"),
    ("shape as a string", lambda: samplers.ddpm_sample(ident, D, "23"), "'23'"),
    ("neither shape nor x_T", lambda: samplers.ddpm_sample(ident, D, None), "shape=None"),
    ("int x_T", lambda: samplers.ddpm_sample(ident, D, None, x_T=torch.zeros(2, 3, dtype=torch.long)), "x_T"),
    ("shape and x_T disagree", lambda: samplers.ddpm_sample(ident, D, (2, 4), x_T=X), "(2, 4)"),
    ("record=[50]", lambda: samplers.ddpm_sample(ident, D, (2, 3), record=[50]), "50"),
    ("record=['5']", lambda: samplers.ddpm_sample(ident, D, (2, 3), record=["5"]), "'5'"),
    ("record=[1.5]", lambda: samplers.ddpm_sample(ident, D, (2, 3), record=[1.5]), "1.5"),
    ("model output of the wrong shape (DDPM)", lambda: samplers.ddpm_sample(half, D, (2, 3)), "(2, 2)"),
    ("model returns numpy", lambda: samplers.ddim_sample(lambda x, t: x.numpy(), D, (2, 3)), "ndarray"),
    ("model returns a tuple", lambda: samplers.ddim_sample(lambda x, t: (x,), D, (2, 3)), "tuple"),
    ("variance 'huge'", lambda: samplers.ddpm_sample(ident, D, (2, 3), variance="huge"), "'huge'"),
    ("eta=2", lambda: samplers.ddim_sample(ident, D, (2, 3), eta=2), "eta=2"),
    ("eta=nan", lambda: samplers.ddim_sample(ident, D, (2, 3), eta=NAN), "eta=nan"),
    ("eta string", lambda: samplers.ddim_sample(ident, D, (2, 3), eta="0"), "eta='0'"),
    ("num_steps=0", lambda: samplers.ddim_sample(ident, D, (2, 3), num_steps=0), "num_steps=0"),
    ("num_steps=True", lambda: samplers.ddim_sample(ident, D, (2, 3), num_steps=True), "num_steps=True"),
    ("ascending timesteps", lambda: samplers.ddim_sample(ident, D, (2, 3), timesteps=[10, 20]), "[10, 20]"),
    ("empty timesteps", lambda: samplers.ddim_sample(ident, D, (2, 3), timesteps=[]), "[]"),
    ("fractional timesteps", lambda: samplers.ddim_sample(ident, D, (2, 3), timesteps=[5.5, 1]), "5.5"),
    ("timesteps out of range", lambda: samplers.ddim_sample(ident, D, (2, 3), timesteps=[60, 0]), "[60, 0]"),
    ("ddim_timesteps T=0", lambda: samplers.ddim_timesteps(0, 1), "T=0"),
    ("ddim_timesteps num_steps=2.0", lambda: samplers.ddim_timesteps(1000, 2.0), "num_steps=2.0"),
    ("ddpm_step t = T", lambda: samplers.ddpm_step(D, X, X, 50, 49), "t=50"),
    ("ddpm_step t=1.0", lambda: samplers.ddpm_step(D, X, X, 1.0, 0), "t=1.0"),
    ("ddpm_step t_next = t − 2", lambda: samplers.ddpm_step(D, X, X, 10, 8), "t_next=8"),
    ("ddpm_step int model output", lambda: samplers.ddpm_step(D, torch.zeros(2, 3, dtype=torch.long), X, 3, 2),
     "model_output"),
    ("ddim_step t_next = t", lambda: samplers.ddim_step(D, X, X, 10, 10), "t_next=10"),
    ("ddim_step t_next > t", lambda: samplers.ddim_step(D, X, X, 10, 20), "t_next=20"),
    ("ddim_step eta=inf", lambda: samplers.ddim_step(D, X, X, 10, 5, eta=INF), "eta=inf"),
    # losses
    ("loss prediction 'epsilon'", lambda: losses.diffusion_loss(ident, D, X, prediction="epsilon"), "'epsilon'"),
    ("loss weighting 'snr'", lambda: losses.diffusion_loss(ident, D, X, weighting="snr"), "'snr'"),
    ("min_snr_gamma=inf", lambda: losses.diffusion_loss(ident, D, X, weighting="min_snr", min_snr_gamma=INF),
     "min_snr_gamma=inf"),
    ("min_snr_gamma=0", lambda: losses.diffusion_loss(ident, D, X, weighting="min_snr", min_snr_gamma=0),
     "min_snr_gamma=0"),
    ("loss uint8 x0", lambda: losses.diffusion_loss(ident, D, torch.ones(2, 3, dtype=torch.uint8)), "torch.uint8"),
    ("loss 1-D x0", lambda: losses.diffusion_loss(ident, D, torch.zeros(3)), "(3,)"),
    ("loss x0 as a list", lambda: losses.diffusion_loss(ident, D, [[0.0, 1.0]]), "list"),
    ("labels of the wrong shape", lambda: losses.diffusion_loss(ident, D, X, labels=torch.zeros(3, dtype=torch.long)),
     "(3,)"),
    ("labels as a list", lambda: losses.diffusion_loss(ident, D, X, labels=[0, 1]), "list"),
    ("p_uncond=1", lambda: losses.diffusion_loss(ident, D, X, labels=torch.zeros(2, dtype=torch.long), p_uncond=1.0),
     "p_uncond=1"),
    ("p_uncond=nan", lambda: guidance.drop_labels(torch.zeros(2, dtype=torch.long), NAN), "p_uncond=nan"),
    ("p_uncond=-0.1", lambda: guidance.drop_labels(torch.zeros(2, dtype=torch.long), -0.1), "p_uncond=-0.1"),
    ("loss model output of the wrong shape", lambda: losses.diffusion_loss(half, D, X), "(2, 2)"),
    ("snr_loss_weight float t", lambda: losses.snr_loss_weight(D, T2.float(), "eps"), "torch.float32"),
    ("snr_loss_weight t = T", lambda: losses.snr_loss_weight(D, torch.tensor([50]), "eps"), "t=[50]"),
    ("training_target prediction 'score'", lambda: losses.training_target(D, X, T2, X, "score"), "'score'"),
    # ELBO
    ("decoder 'bernoulli'", lambda: elbo.elbo_terms(ident, D, X, decoder="bernoulli"), "'bernoulli'"),
    ("discretized decoder, data outside [-1, 1]", lambda: elbo.elbo_terms(ident, D, X * 0 + 3), "3"),
    ("elbo uint8 x0", lambda: elbo.elbo_terms(ident, D, torch.zeros(2, 3, dtype=torch.uint8)), "torch.uint8"),
    ("elbo model output of the wrong shape", lambda: elbo.elbo_terms(half, D, X.clamp(-1, 1)), "(2, 2)"),
    ("bits_per_dim num_dims=0", lambda: elbo.bits_per_dim(1.0, 0), "num_dims=0"),
    ("bits_per_dim num_dims=True", lambda: elbo.bits_per_dim(1.0, True), "num_dims=True"),
    ("bits_per_dim num_dims=2.5", lambda: elbo.bits_per_dim(1.0, 2.5), "num_dims=2.5"),
    # classifier-free guidance
    ("float label tensor", lambda: cfg(torch.tensor([0.7, 2.9])), "torch.float32"),
    ("float label list", lambda: cfg([0.7, 2.9]), "0.7"),
    ("bool labels", lambda: cfg([True, False]), "True"),
    ("2-D labels", lambda: cfg(torch.zeros(2, 1, dtype=torch.long)), "(2, 1)"),
    ("scale=inf", lambda: cfg([0, 1], INF), "inf"),
    ("scale=nan", lambda: cfg([0, 1], NAN), "nan"),
    ("scale=-1", lambda: cfg([0, 1], -1.0), "-1"),
    ("scale string", lambda: cfg([0, 1], "2"), "'2'"),
    ("batch and labels disagree", lambda: cfg([0, 1, 2])(torch.zeros(2, 1, 4, 4), T2), "3 labels"),
    # networks
    ("UNet in_channels=True", lambda: UNet(True), "in_channels=True"),
    ("UNet base_channels=0", lambda: unet(base_channels=0), "base_channels=0"),
    ("UNet channel_mults with a float", lambda: unet(channel_mults=(1, 2.5)), "2.5"),
    ("UNet num_classes=True", lambda: unet(num_classes=True), "num_classes"),
    ("UNet time_dim=True", lambda: unet(time_dim=True), "time_dim"),
    ("UNet input of the wrong shape", lambda: unet()(torch.zeros(2, 1, 5, 5), T2), "(2, 1, 5, 5)"),
    ("UNet float labels", lambda: unet(num_classes=3)(torch.zeros(2, 1, 4, 4), T2, torch.zeros(2)), "float32"),
    # label values are checked where they enter, on the CPU (the U-Net's forward pass reads none: no GPU sync)
    ("guidance label out of range", lambda: cfg([0, 3]), "got 3"),
    ("guidance label below NULL_LABEL", lambda: cfg(torch.tensor([-2, 1])), "got -2"),
    ("loss label out of range", lambda: losses.diffusion_loss(unet(num_classes=3), D, torch.zeros(2, 1, 4, 4),
                                                              labels=torch.tensor([0, 3]), p_uncond=0.1), "got 3"),
    ("MLP hidden=True", lambda: MLP(hidden=True), "hidden=True"),
    ("MLP fourier_octaves=-1", lambda: MLP(fourier_octaves=-1), "fourier_octaves=-1"),
    ("MLP time_dim=1", lambda: MLP(time_dim=1), "time_dim=1"),
    ("sinusoidal_embedding dim=1", lambda: sinusoidal_embedding(T2, 1), "dim=1"),
    ("sinusoidal_embedding dim=True", lambda: sinusoidal_embedding(T2, True), "dim=True"),
    # exact denoisers
    ("mixture with a negative weight", lambda: analytic.GaussianMixture([-1.0, 2.0], [[0.0], [1.0]], 1.0), "-1.0"),
    ("mixture with 1-D means", lambda: analytic.GaussianMixture([1.0], [0.0], 1.0), "(1,)"),
    ("mixture sample(n=True)", lambda: analytic.GaussianMixture([1.0], [[0.0]], 1.0).sample(True), "n=True"),
    ("mixture noised(alpha_bar=0)", lambda: analytic.GaussianMixture([1.0], [[0.0]], 1.0).noised(0.0), "alpha_bar=0"),
    # hardening (issue 27): values that used to give a silent wrong answer
    ("Diffusion.at with a negative t", lambda: D.at("alpha_bar", torch.tensor([-1, 0]), X), "t=[-1]"),
    ("extract with a negative t", lambda: extract(D.betas, torch.tensor([3, -2]), X), "t=[-2]"),
    ("extract with t of another batch", lambda: extract(D.betas, torch.tensor([1, 2, 3]), X), "shape (3,)"),
    ("exact denoiser with a negative t", lambda: analytic.optimal_eps(
        analytic.GaussianMixture([1.0], [[0.0, 0.0, 0.0]], 1.0), D)(X, torch.tensor([0, -1])), "t=[-1]"),
    ("UNet bool t", lambda: unet()(torch.zeros(2, 1, 4, 4), torch.tensor([True, False])), "torch.bool"),
    ("MLP bool t", lambda: MLP()(torch.zeros(2, 2), torch.tensor([True, False])), "torch.bool"),
    ("to_unit_range of data already in [-1, 1]", lambda: to_unit_range(torch.rand(2, 3) * 2 - 1), "float32"),
    ("TrainConfig warmup_steps > steps", lambda: TrainConfig(steps=10, batch_size=2, warmup_steps=11),
     "warmup_steps=11"),
    ("a TrainConfig field changed after construction", lambda: _train_with(lr=-1.0), "lr=-1.0"),
    ("a TrainConfig warmup changed after construction", lambda: _train_with(warmup_steps=99), "warmup_steps=99"),
    ("train(out_dir='')", lambda: _train_with(out_dir=""), "out_dir=''"),
    # evaluation: numbers returned today for inputs that cannot be judged
    ("judge float images in 0…255", lambda: mnist_eval.predict_logits(None, torch.full((2, 1, 28, 28), 255.0)),
     "[255, 255]"),
    ("judge NaN images", lambda: mnist_eval.predict_logits(None, torch.full((2, 1, 28, 28), NAN)), "NaN"),
    ("NaN logits", lambda: mnist_eval.confident_share(torch.tensor([[NAN, 0.0], [0.0, 1.0]])), "1 NaN"),
    ("label 15 for 10 classes", lambda: mnist_eval.label_agreement(torch.zeros(2, 10), torch.tensor([1, 15])),
     "[1, 15]"),
    ("1-D logits to class_histogram", lambda: mnist_eval.class_histogram(torch.zeros(10)), "shape (10,)"),
    ("threshold NaN", lambda: mnist_eval.class_coverage(torch.zeros(2, 10), NAN), "threshold=nan"),
    ("threshold 2", lambda: mnist_eval.class_histogram(torch.zeros(2, 10), 2.0), "threshold=2.0"),
    ("real_floor(num_images=-5)", lambda: mnist_eval.DigitEvaluator.real_floor(None, -5), "num_images=-5"),
    ("train_classifier(steps=True)", lambda: mnist_eval.train_classifier(steps=True), "steps=True"),
    ("covariance not PSD", lambda: mnist_eval.frechet_distance(np.zeros(2), -np.eye(2), np.zeros(2), np.eye(2)),
     "sigma1 is not a covariance"),
    ("hue band beyond 360°", lambda: color_stats.band_shares(torch.zeros(1, 3, 4, 4), {"x": (300, 400)}),
     "bound=400"),
    ("unnormalised histogram", lambda: color_stats.total_variation(torch.tensor([3.0, 1.0]), torch.tensor([0.5, 0.5])),
     "sum 4"),
    ("negative distances", lambda: neighbours.distance_statistics(torch.tensor([-1.0, 2.0]), torch.ones(3), 0.1),
     "[-1, 2]"),
    # obscure errors from deep inside, now named at the entry point (issue 27, item 4)
    ("an int where a Generator goes", lambda: samplers.ddim_sample(MLP(), D, (2, 2), num_steps=3, generator=5),
     "generator=5"),
    ("record=5", lambda: samplers.ddim_sample(MLP(), D, (2, 2), num_steps=3, record=5), "record=5"),
    ("a list as x_T", lambda: samplers.ddpm_sample(MLP(), D, None, x_T=[[0.0, 0.0]]), "x_T must be"),
    ("a float64 model sampling float32", lambda: samplers.ddim_sample(MLP().double(), D, (2, 2), num_steps=3),
     "weights are torch.float64 but x_t is torch.float32"),
    ("a float64 model trained on float32 data", lambda: train(MLP(hidden=8, num_blocks=1).double(), D,
                                                              torch.randn(8, 2), TrainConfig(steps=1, batch_size=2),
                                                              device="cpu", progress=False), "torch.float64"),
    ("an MLP given labels", lambda: MLP()(torch.zeros(2, 2), T2, torch.tensor([0, 1])), "no class labels"),
    ("sampling on device='meta'", lambda: samplers.ddim_sample(MLP(), D, (2, 2), num_steps=3, device="meta"),
     "device='meta'"),
    ("float labels to drop_labels", lambda: guidance.drop_labels(torch.tensor([1.0, 2.0]), 0.5), "torch.float32"),
    ("complex betas", lambda: Diffusion([0.1 + 0.5j, 0.2]), "complex"),
    ("complex betas (NumPy)", lambda: Diffusion(np.array([0.1 + 0.5j, 0.2])), "complex"),
    ("train(progress='no')", lambda: train(MLP(), D, torch.randn(8, 2), TrainConfig(steps=1, batch_size=2),
                                           device="cpu", progress="no"), "progress='no'"),
    ("ddim_sample(progress='no')", lambda: samplers.ddim_sample(MLP(), D, (2, 2), num_steps=3, progress="no"),
     "progress='no'"),
    ("EMA(warmup='no')", lambda: EMA(MLP(), warmup="no"), "warmup='no'"),
    ("training on device='meta'", lambda: train(MLP(), D, torch.randn(8, 2), TrainConfig(steps=1, batch_size=2),
                                                device="meta", progress=False), "device='meta'"),
]


@pytest.mark.parametrize("what, call, fragment", CASES, ids=[case[0] for case in CASES])
def test_bad_input_gives_a_clear_value_error(what, call, fragment):
    with pytest.raises(ValueError) as error:
        call()
    assert fragment in str(error.value), f"{what}: message {str(error.value)!r} does not name {fragment!r}"


def test_the_cases_are_distinct():
    assert len({case[0] for case in CASES}) == len(CASES)

"""Tests of the sinusoidal time embedding and the residual MLP denoiser."""

import math

import pytest
import torch

from ddpm_helpers.nn.embeddings import sinusoidal_embedding
from ddpm_helpers.nn.mlp import MLP, fourier_features


def test_embedding_matches_the_formula():
    t = torch.tensor([0, 1, 7, 999])
    emb = sinusoidal_embedding(t, 8)
    assert emb.shape == (4, 8)
    freqs = [10_000 ** (-i / 4) for i in range(4)]  # ω_i = 10000^(−i/half)
    expected = torch.tensor([[math.sin(s * w) for w in freqs] + [math.cos(s * w) for w in freqs] for s in t.tolist()])
    torch.testing.assert_close(emb, expected, rtol=1e-5, atol=1e-5)


def test_embedding_odd_dim_pads_one_zero_column_and_accepts_float_t():
    emb = sinusoidal_embedding(torch.tensor([0.5, 3.0]), 7)
    assert emb.shape == (2, 7)
    assert torch.all(emb[:, -1] == 0)


def test_embedding_is_smooth_in_t():
    emb = sinusoidal_embedding(torch.arange(0, 1000), 64)
    near = (emb[500] - emb[501]).norm()
    far = (emb[500] - emb[900]).norm()
    assert near < far


@pytest.mark.parametrize("dim", [1, 0, 2.5])
def test_embedding_rejects_bad_dim(dim):
    with pytest.raises(ValueError, match="dim"):
        sinusoidal_embedding(torch.tensor([1]), dim)


def test_embedding_rejects_bad_t_shape():
    with pytest.raises(ValueError, match=r"\(2, 1\)"):
        sinusoidal_embedding(torch.zeros(2, 1), 8)


def _randomized_mlp(**kwargs):
    torch.manual_seed(0)
    model = MLP(**kwargs)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))  # move the zero-initialized output layer off zero
    return model


def test_untrained_mlp_predicts_zero():
    model = MLP(hidden=16, num_blocks=2, time_dim=8)
    out = model(torch.randn(5, 2), torch.randint(0, 100, (5,)))
    assert out.shape == (5, 2)
    assert torch.all(out == 0)


def test_mlp_output_depends_on_t():
    model = _randomized_mlp(hidden=16, num_blocks=2, time_dim=8)
    x = torch.randn(1, 2).repeat(2, 1)
    out = model(x, torch.tensor([0, 500]))
    assert not torch.allclose(out[0], out[1])


def test_mlp_batch_with_repeated_t_equals_rows_one_by_one():
    model = _randomized_mlp(data_dim=3, hidden=16, num_blocks=2, time_dim=8)
    x = torch.randn(6, 3)
    t = torch.tensor([4, 1, 4, 9, 1, 4])
    batched = model(x, t)
    single = torch.cat([model(x[i:i + 1], t[i:i + 1]) for i in range(6)])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-6)


def test_mlp_rejects_bad_shapes_and_sizes():
    model = MLP()
    with pytest.raises(ValueError, match=r"\(4, 3\)"):
        model(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(3,\)"):
        model(torch.randn(4, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="hidden"):
        MLP(hidden=0)


def test_fourier_features_values():
    x = torch.tensor([[0.5, -1.0]])
    f = fourier_features(x, 2)  # ω = π/2, π
    expected = [0.5, -1.0, math.sin(math.pi / 4), math.sin(math.pi / 2), math.sin(-math.pi / 2), math.sin(-math.pi),
                math.cos(math.pi / 4), math.cos(math.pi / 2), math.cos(-math.pi / 2), math.cos(-math.pi)]
    torch.testing.assert_close(f, torch.tensor([expected]), rtol=1e-6, atol=1e-6)


def test_mlp_without_fourier_features():
    model = _randomized_mlp(hidden=8, num_blocks=1, time_dim=4, fourier_octaves=0)
    assert model.input_proj.in_features == 2
    assert model(torch.randn(3, 2), torch.tensor([0, 1, 2])).shape == (3, 2)
    with pytest.raises(ValueError, match="fourier_octaves"):
        MLP(fourier_octaves=-1)

"""Tests of the nearest-neighbour search used to tell created samples from memorized ones."""

import math

import pytest
import torch

from ddpm_helpers.evaluation.neighbours import (
    distance_statistics,
    leave_one_out_distances,
    nearest_neighbours,
    pairwise_rms_distances,
    rms_distance,
)


def images(n, seed=0, size=6):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def brute_force(a, b):
    """d(a, b) = ‖a − b‖₂/√D by an explicit loop."""
    rows = [[math.sqrt(((x.double() - y.double()) ** 2).mean().item()) for y in b] for x in a]
    return torch.tensor(rows, dtype=torch.float64)


def test_rms_distance_has_pixel_units():
    a = images(4)
    assert torch.allclose(rms_distance(a, a), torch.zeros(4))
    white, black = torch.ones(2, 3, 5, 5), -torch.ones(2, 3, 5, 5)
    assert torch.allclose(rms_distance(white, black), torch.full((2,), 2.0))  # the largest possible distance
    half = white.clone()
    half[:, :, :, :2] = -1  # 2 of 5 columns differ by 2: sqrt(4 · 2/5)
    assert torch.allclose(rms_distance(half, white), torch.full((2,), math.sqrt(4 * 2 / 5)))


def test_rms_distance_with_flips_finds_mirror_images():
    a = images(3, seed=1)
    assert torch.allclose(rms_distance(a, a.flip(-1), flips=True), torch.zeros(3))
    assert (rms_distance(a, a.flip(-1)) > 0.1).all()


def test_pairwise_distances_match_a_loop_despite_large_norms():
    a, b = images(5, seed=2), images(7, seed=3)
    assert torch.allclose(pairwise_rms_distances(a, b), brute_force(a, b).float(), atol=1e-6)
    offset = torch.full((1, 3, 6, 6), 1000.0)  # ‖q‖² ≫ ‖q − r‖²: the expanded form must not cancel away
    assert torch.allclose(pairwise_rms_distances(a + offset, b + offset), brute_force(a, b).float(), atol=1e-4)


def test_nearest_neighbours_agree_with_sorting_all_distances():
    queries, references = images(6, seed=4), images(20, seed=5)
    found = nearest_neighbours(queries, references, k=3, flips=False)
    expected = brute_force(queries, references).sort(dim=1)
    assert torch.equal(found.indices, expected.indices[:, :3])
    assert torch.allclose(found.distances.double(), expected.values[:, :3], atol=1e-6)
    assert not found.flipped.any()


def test_nearest_neighbours_report_mirrored_copies():
    references = images(10, seed=6)
    queries = torch.stack([references[3].flip(-1), references[7]])
    found = nearest_neighbours(queries, references, k=2, flips=True)
    assert found.indices[:, 0].tolist() == [3, 7]
    assert found.flipped[:, 0].tolist() == [True, False]
    assert torch.allclose(found.distances[:, 0], torch.zeros(2), atol=1e-6)
    assert (found.distances[:, 1] > found.distances[:, 0]).all()
    unflipped = nearest_neighbours(queries[:1], references, k=1, flips=False)
    assert unflipped.distances[0, 0] > 0.1  # without flips the mirrored copy is not found


def test_leave_one_out_excludes_the_image_itself_and_its_mirror():
    x = images(8, seed=7)
    x[5] = x[2].flip(-1)  # a mirrored duplicate: distance 0 to image 2
    distances = leave_one_out_distances(x)
    expected = brute_force(x, x)
    expected = torch.minimum(expected, brute_force(x, x.flip(-1)))
    expected.fill_diagonal_(float("inf"))
    assert torch.allclose(distances.double(), expected.min(1).values, atol=1e-6)
    assert distances[2] == pytest.approx(0, abs=1e-6) and distances[5] == pytest.approx(0, abs=1e-6)
    assert (distances[[0, 1, 3, 4, 6, 7]] > 0.1).all()
    symmetric = images(4, seed=8)
    symmetric = torch.cat([symmetric, symmetric.flip(-1)], dim=-1)  # each image is its own mirror
    assert (leave_one_out_distances(symmetric) > 0.1).all()


def test_exclude_measures_each_query_to_the_nearest_other_reference():
    x = images(8, seed=9)
    x[6] = x[1].flip(-1)  # a mirrored duplicate of image 1
    own = torch.arange(8)
    found = nearest_neighbours(x, x, k=2, exclude=own)
    torch.testing.assert_close(found.distances[:, 0], leave_one_out_distances(x))  # leave-one-out, query by query
    assert found.indices[1, 0] == 6 and found.indices[6, 0] == 1 and (found.indices != own[:, None]).all()
    queries = torch.stack([x[3], x[3]])  # the same image, excluded from one search only
    both = nearest_neighbours(queries, x, exclude=torch.tensor([3, 0]))
    assert both.indices[:, 0].tolist()[1] == 3 and both.distances[1, 0] == pytest.approx(0, abs=1e-6)
    assert both.indices[0, 0] != 3 and both.distances[0, 0] > 0.1


def test_distance_statistics():
    samples = torch.tensor([0.01, 0.02, 0.30, 0.40])
    train = torch.tensor([0.2, 0.3, 0.4])
    stats = distance_statistics(samples, train, copy_threshold=0.05)
    assert stats["sample_median"] == pytest.approx(0.16)  # midway between 0.02 and 0.30
    assert stats["train_median"] == pytest.approx(0.3)
    assert stats["ratio"] == pytest.approx(0.16 / 0.3)
    assert stats["copy_fraction"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: rms_distance(images(2), images(3)), "same number of images"),
        (lambda: rms_distance(images(2), images(2, size=4)), "differ in shape"),
        (lambda: pairwise_rms_distances(torch.zeros(3, 4), images(2)), r"\(3, 4\)"),
        (lambda: nearest_neighbours(images(2), images(3), k=4), "k=4"),
        (lambda: nearest_neighbours(images(2), images(3), k=0), "k=0"),
        (lambda: leave_one_out_distances(images(1)), "at least 2"),
        (lambda: nearest_neighbours(images(2), images(3), exclude=torch.tensor([0])), r"shape \(2,\)"),
        (lambda: nearest_neighbours(images(2), images(3), exclude=torch.tensor([0, 3])), r"got values in \[0, 3\]"),
        (lambda: nearest_neighbours(images(2), images(3), exclude=torch.tensor([0.0, 1.0])), "integer Tensor"),
        (lambda: nearest_neighbours(images(2), images(3), k=3, exclude=torch.tensor([0, 1])), "k=3"),
        (lambda: distance_statistics(torch.tensor([]), torch.ones(2), 0.1), "sample_distances"),
        (lambda: distance_statistics(torch.ones(2), torch.ones(2), -1.0), "-1.0"),
    ],
)
def test_bad_input_names_the_bad_value(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------- the figures of notebook 05


def test_show_neighbours_draws_one_row_per_query():
    import matplotlib.pyplot as plt

    from ddpm_helpers.plotting import show_neighbours

    references = images(10, seed=9)
    found = nearest_neighbours(references[[4, 2]].flip(-1), references, k=3)
    fig = show_neighbours(references[[4, 2]].flip(-1), references, found)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(fig.axes) == 2 * 4
    assert titles[1].startswith("#4 ⇋") and titles[5].startswith("#2 ⇋")  # mirrored matches are marked
    plt.close(fig)
    with pytest.raises(ValueError, match="3 queries"):
        show_neighbours(references[:3], references, found)


@pytest.mark.parametrize("image_size, mults, blocks", [(32, (1, 2, 2), 1), (16, (1, 2), 2)])
def test_unet_diagram_matches_the_forward_pass(image_size, mults, blocks):
    from ddpm_helpers.nn.unet import UNet
    from ddpm_helpers.nn.unet_diagram import _unet_layers

    lowest = image_size // 2 ** (len(mults) - 1)
    model = UNet(3, base_channels=16, channel_mults=mults, num_res_blocks=blocks,
                 attention_resolutions=(lowest,), image_size=image_size)
    layers, skips = _unet_layers(model)
    assert len(skips) == len(model.up)  # every up block consumes one saved activation
    for source, target in skips:
        assert layers[source][2] == layers[target][2]  # a skip joins activations of the same resolution
    assert layers[0] == ("conv", 16, image_size) and layers[-1] == ("conv", 3, image_size)
    assert min(res for _, _, res in layers) == lowest
    attention = [res for kind, _, res in layers if kind == "SelfAttention"]
    assert attention == [lowest] * (blocks + 1 + blocks + 1)  # down blocks, middle, up blocks (one more)

"""Colour statistics of image sets: hue bins of known colours, the mask, distances, the split-half floor, bands."""

import pytest
import torch

from ddpm_helpers.evaluation import color_stats
from ddpm_helpers.evaluation.color_stats import (
    band_shares,
    hue_histogram,
    pixel_hues,
    resampled_distances,
    split_half_distances,
    total_variation,
)

WHITE = (1.0, 1.0, 1.0)


def _image(colours, size=4):
    """A (3, size, size) image in [-1, 1] whose pixels, row-major, take the RGB ``colours`` (in [0, 1]) in turn,
    then white."""
    pixels = torch.tensor([WHITE] * size * size)
    pixels[: len(colours)] = torch.tensor(colours).reshape(-1, 3)
    return pixels.T.reshape(3, size, size) * 2 - 1


@pytest.mark.parametrize("rgb, degrees, bin_index", [
    ((1, 0, 0), 0, 0), ((1, 0.5, 0), 30, 1), ((1, 1, 0), 60, 2), ((0, 1, 0), 120, 4), ((0, 1, 1), 180, 6),
    ((0, 0, 1), 240, 8), ((0.5, 0, 1), 270, 9), ((1, 0, 1), 300, 10), ((1, 0, 0.5), 330, 11),
    ((1, 0, 1 / 6), 350, 0),  # 350° is red again: bin 0 covers [-15°, 15°)
])
def test_known_colours_land_in_their_hue_bins(rgb, degrees, bin_index):
    images = _image([rgb] * 16)[None]
    hue, mask = pixel_hues(images)
    assert hue[0, 0].item() == pytest.approx(degrees, abs=1e-3) and mask.all()
    expected = torch.zeros(color_stats.NUM_BINS)
    expected[bin_index] = 1
    torch.testing.assert_close(hue_histogram(images), expected)


def test_grey_white_and_dark_pixels_do_not_count_and_every_image_counts_once():
    red, green = (1, 0, 0), (0, 1, 0)
    greys = [(0.5, 0.5, 0.5), (0.05, 0.0, 0.0), (0.9, 0.8, 0.8)]  # grey; too dark; too pale (saturation 0.11)
    images = torch.stack([_image([red] * 12 + greys), _image([green])])  # one green pixel, the rest white
    hue, mask = pixel_hues(images)
    assert mask.sum(1).tolist() == [12, 1]
    histogram = hue_histogram(images)
    assert histogram[0].item() == pytest.approx(0.5) and histogram[4].item() == pytest.approx(0.5)
    assert hue_histogram(_image([])[None]).sum().item() == 0  # no coloured pixel at all
    assert pixel_hues(images, min_saturation=0.05)[1].sum().item() == 14  # a lower threshold admits the pale pixel


def test_uint8_pixels_give_the_same_histogram_as_floats():
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    pixels = ((images + 1) * 127.5).round().to(torch.uint8)
    torch.testing.assert_close(hue_histogram(pixels), hue_histogram(pixels.float() / 127.5 - 1))


def test_total_variation_of_identical_and_disjoint_sets():
    images = torch.rand(10, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    assert total_variation(hue_histogram(images), hue_histogram(images.clone())) == 0
    reds, blues = _image([(1, 0, 0)] * 16)[None], _image([(0, 0, 1)] * 16)[None]
    assert total_variation(hue_histogram(reds), hue_histogram(blues)) == pytest.approx(1.0)
    assert total_variation(torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.5, 0.0, 0.5])) == pytest.approx(0.5)


def test_split_half_floor_is_computed_on_the_given_images():
    reds, greens = _image([(1, 0, 0)] * 16), _image([(0, 1, 0)] * 16)
    same = torch.stack([reds] * 6)
    assert split_half_distances(same, num_splits=5).tolist() == [0.0] * 5
    is_red = torch.tensor([1.0, 1, 0, 0, 1, 0, 1])
    mixed = torch.stack([reds if red else greens for red in is_red])  # 7 images: halves of 3, one left out
    distances = split_half_distances(mixed, num_splits=8, seed=4)
    generator = torch.Generator().manual_seed(4)  # the same splits, by hand
    for distance in distances:
        order = torch.randperm(7, generator=generator)
        reds_first, reds_second = is_red[order[:3]].sum().item(), is_red[order[3:6]].sum().item()
        assert distance.item() == pytest.approx(abs(reds_first - reds_second) / 3)
    assert distances.shape == (8,) and distances.max() > 0


def test_resampled_distances_draw_with_replacement_and_apply_the_transform():
    reds, greens = _image([(1, 0, 0)] * 16), _image([(0, 1, 0)] * 16)
    is_red = torch.tensor([1.0, 1, 0, 0, 1])
    mixed = torch.stack([reds if red else greens for red in is_red])
    target = hue_histogram(mixed)  # 3/5 red, 2/5 green
    distances = resampled_distances(mixed, target, n=4, num_draws=6, seed=3)
    generator = torch.Generator().manual_seed(3)  # the same draws, by hand
    for distance in distances:
        drawn = torch.randint(5, (4,), generator=generator)
        assert distance.item() == pytest.approx(abs(is_red[drawn].mean().item() - 0.6))
    assert resampled_distances(torch.stack([reds] * 3), hue_histogram(reds[None]), n=5).tolist() == [0.0] * 20
    seen = []

    def to_green(batch, generator):
        seen.append(generator)
        return greens.expand_as(batch).clone()

    assert resampled_distances(mixed, hue_histogram(reds[None]), n=3, num_draws=2, transform=to_green).tolist() == [
        pytest.approx(1.0)] * 2
    assert len(seen) == 2 and all(isinstance(g, torch.Generator) for g in seen)
    with pytest.raises(ValueError, match="n=0"):
        resampled_distances(mixed, target, n=0)
    with pytest.raises(ValueError, match="num_draws=0"):
        resampled_distances(mixed, target, n=3, num_draws=0)


def test_band_shares_count_images_whose_band_covers_enough_pixels():
    pink, red = (1, 0, 0.5), (1, 0, 0.05)  # 330°: pink/magenta; 357°: red
    images = torch.stack([_image([pink] * 2, size=8), _image([red] * 8, size=8), _image([], size=8)])
    shares = band_shares(images, min_cover=0.03)  # 2 of 64 pixels = 3.1 %, 8 of 64 = 12.5 %
    assert set(shares) == set(color_stats.BANDS)
    assert shares["pink/magenta"] == pytest.approx(1 / 3) and shares["red"] == pytest.approx(1 / 3)
    assert shares["green"] == 0
    assert band_shares(images, min_cover=0.05)["pink/magenta"] == 0
    assert band_shares(images, bands={"all": (0, 360)}, min_cover=0.1) == {"all": pytest.approx(1 / 3)}


@pytest.mark.parametrize("images, pattern", [
    (torch.zeros(2, 1, 4, 4), r"RGB images .* got shape \(2, 1, 4, 4\)"),
    (torch.zeros(0, 3, 4, 4), r"got shape \(0, 3, 4, 4\)"),
    ([[0.0]], "got list"),
    (torch.zeros(2, 3, 4, 4, dtype=torch.int64), "uint8 pixels or floats in \\[-1, 1\\], got dtype torch.int64"),
    (torch.full((2, 3, 4, 4), 2.0), r"float images must lie in \[-1, 1\], got values in \[2, 2\]"),
])
def test_bad_images_are_refused(images, pattern):
    with pytest.raises(ValueError, match=pattern):
        hue_histogram(images)


def test_bad_arguments_are_refused():
    images = torch.zeros(4, 3, 4, 4)
    with pytest.raises(ValueError, match="num_bins"):
        hue_histogram(images, num_bins=1)
    with pytest.raises(ValueError, match="min_saturation=1.5"):
        pixel_hues(images, min_saturation=1.5)
    with pytest.raises(ValueError, match=r"same length, got \(3,\) and \(4,\)"):
        total_variation(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="at least 2 images"):
        split_half_distances(images[:1])
    with pytest.raises(ValueError, match="num_splits=0"):
        split_half_distances(images, num_splits=0)
    with pytest.raises(ValueError, match="min_cover=0"):
        band_shares(images, min_cover=0)

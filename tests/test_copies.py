"""The copy test that sees flipped, shifted and zoomed copies (evaluation.copies)."""

from pathlib import Path

import pytest
import torch

from ddpm_helpers.datasets import butterfly_images, flip_and_crop
from ddpm_helpers.evaluation.copies import copy_test, crop_grid, crop_views, nearest_views
from ddpm_helpers.evaluation.neighbours import leave_one_out_distances, nearest_neighbours

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def butterflies():
    return butterfly_images(image_size=32, root=SHARED_DATA).images


def test_the_grid_spans_the_augmentation_in_whole_pixels():
    grid = crop_grid(32)
    assert (1.0, 0, 0) in grid and (0.85, -2, 2) in grid and (0.85, 3, 0) not in grid  # 0.15·32/2 = 2.4 px
    assert len(grid) == 25 + 9 + 1 + 1  # 5×5 shifts at 0.85, 3×3 at 0.90, 1 at 0.95 (0.8 px) and at 1
    with pytest.raises(ValueError, match="1.2"):
        crop_grid(32, scales=(1.2,))


def test_a_view_on_the_grid_is_the_augmentation_itself(butterflies):
    image = butterflies[:1]
    views = crop_views(image, [(1.0, 0, 0), (0.9, 1, -1)])
    torch.testing.assert_close(views[0, 0], image[0], atol=1e-6, rtol=0)  # the identity crop
    # flip_and_crop draws (flip, scale, shift) from four uniforms: pick those that give scale 0.9, shift (1, −1) px
    draws = torch.tensor([[0.9, (0.9 - 0.85) / 0.15, 0.5 + (2 / 32) / (2 * 0.1), 0.5 - (2 / 32) / (2 * 0.1)]])
    generator = torch.Generator()
    generator.set_state(torch.Generator().manual_seed(0).get_state())
    original = torch.rand
    try:
        torch.rand = lambda *args, **kwargs: draws.clone()
        augmented = flip_and_crop(image, generator)
    finally:
        torch.rand = original
    torch.testing.assert_close(views[0, 1], augmented[0], atol=1e-5, rtol=0)


def test_a_planted_shifted_copy_is_caught_and_an_unseen_image_is_not(butterflies):
    references, unseen = butterflies[:24], butterflies[24:28]
    generator = torch.Generator().manual_seed(3)
    planted = flip_and_crop(references[[5, 11, 17]], generator)  # views off the grid: any scale and shift
    plain = nearest_neighbours(planted, references, flips=True).distances[:, 0]
    found = nearest_views(torch.cat([planted, unseen]), references, chunk=7)
    floor = leave_one_out_distances(references).median()  # how far apart different butterflies are
    assert found.indices[:3].tolist() == [5, 11, 17]
    assert (found.distances[:3] < 0.3 * floor).all() and (found.distances[:3] <= plain).all()
    assert (plain > 0.9 * floor).sum() >= 1  # the plain search calls a shifted copy a different butterfly
    assert (found.distances[3:] > 0.5 * floor).all()  # an image the references do not hold is no copy


def test_exclude_leaves_out_every_view_of_the_querys_own_source():
    references = torch.rand(7, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    queries = flip_and_crop(references[[2, 5, 5]], torch.Generator().manual_seed(2))
    exclude = torch.tensor([2, 5, 0])
    found = nearest_views(queries, references, chunk=3, exclude=exclude)  # the excluded rows cross chunk borders
    assert found.indices[2] == 5 and found.distances[2] < 0.2  # a view of image 5, searched with image 0 left out
    for q in range(2):
        others = [r for r in range(7) if r != exclude[q]]
        alone = nearest_views(queries[q:q + 1], references[others])
        assert found.indices[q] == others[alone.indices[0]] and found.indices[q] != exclude[q]
        torch.testing.assert_close(found.distances[q], alone.distances[0])
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        nearest_views(queries, references, exclude=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="at least 2 references"):
        nearest_views(queries[:1], references[:1], exclude=torch.tensor([0]))


def test_copy_test_flags_augmented_copies_and_not_unseen_butterflies(butterflies):
    train, unseen = butterflies[:24], butterflies[24:32]
    copies = flip_and_crop(train[:8], torch.Generator().manual_seed(9))  # what a memorizing model would draw
    copied, new = copy_test(copies, train), copy_test(unseen, train)
    assert copied.copy_line == new.copy_line == pytest.approx(
        nearest_views(train, train, exclude=torch.arange(24)).distances.min().item())
    assert copied.below_line()["samples"][0] >= 6 and new.below_line()["samples"] == (0, 8)
    assert copied.below_line()["planted"][0] >= 18  # the yardstick copies are caught too (24 of them)
    assert copied.median_ratio() < 0.5 < 0.8 < new.median_ratio()
    torch.testing.assert_close(new.fresh, copied.fresh)  # the same seeded views, whatever the samples
    assert copied.nearest.distances is copied.samples and new.nearest.indices.shape == (8,)
    assert (copied.nearest.indices[copied.samples < copied.copy_line] < 8).all()  # a copy's nearest: its source
    assert copied.median_ratio() == pytest.approx((copied.samples.quantile(0.5) / copied.fresh.quantile(0.5)).item())
    low, high = new.median_ratio_interval()
    assert low < new.median_ratio() < high  # the bootstrap interval lies around the ratio
    with pytest.raises(ValueError, match="samples"):
        copy_test(unseen[:, :1], train)

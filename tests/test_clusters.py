"""k-means clusters as classes without labels (ddpm_helpers.datasets.clusters)."""

import pytest
import torch

from ddpm_helpers.datasets.clusters import (
    cluster_shares,
    draw_clusters,
    image_clusters,
    kmeans,
    labels_and_clusters,
    pooled_features,
)


def test_kmeans_finds_separated_blobs_whatever_their_order():
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    truth = torch.arange(4).repeat_interleave(50)
    x = centres[truth] + 0.5 * torch.randn(200, 2, generator=generator)
    ids = kmeans(x, 4, seed=1)
    # the same partition up to renaming: every true blob maps to exactly one cluster, and back
    pairs = set(zip(truth.tolist(), ids.tolist()))
    assert len(pairs) == 4 and len({a for a, _ in pairs}) == 4 and len({b for _, b in pairs}) == 4
    assert torch.equal(kmeans(x, 4, seed=1), ids)  # seeded


def test_kmeans_refuses_bad_inputs():
    with pytest.raises(ValueError, match="1 <= k <= N; got x of shape \\(3, 2\\).*k=5"):
        kmeans(torch.zeros(3, 2), 5)
    with pytest.raises(ValueError, match="shape \\(6,\\)"):
        kmeans(torch.zeros(6), 2)


def test_pooled_features_average_areas():
    images = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert torch.allclose(pooled_features(images, 2), torch.tensor([[2.5, 4.5, 10.5, 12.5]]))
    with pytest.raises(ValueError, match="\\(N, C, H, W\\), got \\(4, 4\\)"):
        pooled_features(torch.zeros(4, 4))


def test_image_clusters_split_bright_from_dark_and_draws_follow_the_shares():
    images = torch.cat([torch.full((30, 1, 8, 8), -1.0), torch.full((10, 1, 8, 8), 1.0)])
    images = images + 0.05 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    ids = image_clusters(images, 2)
    assert len(set(ids[:30].tolist())) == 1 and len(set(ids[30:].tolist())) == 1 and ids[0] != ids[-1]
    shares = cluster_shares(ids, 2)
    assert sorted(shares.tolist()) == [0.25, 0.75]
    drawn = draw_clusters(shares, 20_000, torch.Generator().manual_seed(0))
    share = (drawn == ids[0]).double().mean().item()  # the dark cluster's share of the draws
    assert abs(share - 0.75) < 4 * (0.75 * 0.25 / 20_000) ** 0.5


def test_labels_and_clusters_doubles_the_set_with_label_and_cluster_classes():
    images = torch.cat([torch.full((30, 1, 8, 8), -1.0), torch.full((10, 1, 8, 8), 1.0)])
    labels = torch.arange(40) % 3  # classes 0, 1, 2
    twice, classes, shares = labels_and_clusters(images, labels, k=2)
    assert torch.equal(twice, torch.cat([images, images])) and torch.equal(classes[:40], labels)
    assert set(classes[40:].tolist()) == {3, 4} and classes[40] != classes[-1]  # clusters after the labels
    assert sorted(shares.tolist()) == [0.25, 0.75]
    with pytest.raises(ValueError, match="one per image \\(40\\), got torch.float32 \\(40,\\)"):
        labels_and_clusters(images, labels.float(), k=2)

"""Datasets of the notebooks: 2-D toy distributions (``toy2d``), MNIST (``mnist``) and butterfly photos
(``butterflies``), with the image tools they share (``images``). Real data is never faked: a missing
dataset raises ``FileNotFoundError`` saying how to get it.
"""

from ddpm_helpers.datasets.butterflies import (
    BUTTERFLY_SOURCES,
    HUB_BUTTERFLIES,
    HUB_REVISION,
    butterfly_images,
    download_hub_butterflies,
    download_nhm_butterflies,
)
from ddpm_helpers.datasets.images import (
    IMAGE_SUFFIXES,
    MAX_IMAGE_PIXELS,
    ImageSet,
    flip_and_crop,
    load_image_folder,
    random_batches,
    to_uint8,
    to_unit_range,
)
from ddpm_helpers.datasets.mnist import MNIST_FILES, mnist_dataset, mnist_images
from ddpm_helpers.datasets.toy2d import DATASETS, ring_mixture, sample_toy

__all__ = ["BUTTERFLY_SOURCES", "DATASETS", "HUB_BUTTERFLIES", "HUB_REVISION", "IMAGE_SUFFIXES", "ImageSet",
           "MAX_IMAGE_PIXELS", "MNIST_FILES", "butterfly_images", "download_hub_butterflies",
           "download_nhm_butterflies", "flip_and_crop", "load_image_folder", "mnist_dataset", "mnist_images",
           "random_batches", "ring_mixture", "sample_toy", "to_uint8", "to_unit_range"]

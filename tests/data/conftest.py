"""Shared fixtures of the input pipeline tests: prepared digits and miniature ImageNet."""

import pytest

from fat_jax import data

# Small enough to prepare in about a second, large enough for several batches and
# for a validation split that two hosts share unevenly.
MINIATURE_IMAGENET = {"num_classes": 4, "train_per_class": 6, "num_val": 21}


@pytest.fixture(scope="session")
def miniature_imagenet_sizes() -> dict[str, int]:
    """Keyword arguments of `write_miniature_imagenet` behind `miniature_imagenet`."""
    return dict(MINIATURE_IMAGENET)


@pytest.fixture(scope="session")
def digits_data_dir(tmp_path_factory) -> str:
    """TFDS data directory with the digits dataset prepared."""
    data_dir = str(tmp_path_factory.mktemp("digits_tfds"))
    data.num_examples("digits", "train", data_dir=data_dir)  # Prepares on first use.
    return data_dir


@pytest.fixture(scope="session")
def miniature_imagenet(tmp_path_factory, miniature_imagenet_sizes) -> tuple[str, str]:
    """`(data_dir, manual_dir)` of miniature ImageNet archives prepared by the real TFDS builder."""
    return data.prepare_miniature_imagenet(
        tmp_path_factory.mktemp("imagenet"), **miniature_imagenet_sizes)

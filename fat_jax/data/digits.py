"""TFDS builder for scikit-learn's bundled handwritten digits (1,797 images, 8x8).

Importing this module registers the builder under the TFDS name "digits", so
`tfds.builder("digits")` works once `fat_jax.data` is imported. The data ships
with scikit-learn, so preparing the dataset needs no download.
"""

from __future__ import annotations

import numpy as np
from sklearn import datasets as sklearn_datasets
from sklearn import model_selection
import tensorflow_datasets as tfds

NUM_EXAMPLES = 1797
TEST_FRACTION = 0.2
SPLIT_RANDOM_STATE = 0
"""`random_state` of the stratified train/test split; changing it changes the splits."""

_MAX_PIXEL = 16
"""Largest value in scikit-learn's digit images (ink counts of a 4x4 block, 0 to 16)."""


def split_indices() -> dict[str, np.ndarray]:
    """Return the indices into `sklearn.datasets.load_digits()` of each split.

    The split is stratified by label with a fixed `random_state`, so it is the same
    on every machine and scikit-learn version that keeps `train_test_split` stable.
    """
    target = sklearn_datasets.load_digits().target
    train, test = model_selection.train_test_split(
        np.arange(len(target)),
        test_size=TEST_FRACTION,
        stratify=target,
        random_state=SPLIT_RANDOM_STATE,
    )
    return {"train": np.sort(train), "test": np.sort(test)}


def images_uint8() -> np.ndarray:
    """Return all 1,797 digit images as uint8 (N, 8, 8, 1), scaled from 0..16 to 0..255."""
    images = sklearn_datasets.load_digits().images
    scaled = np.round(images * (255.0 / _MAX_PIXEL)).astype(np.uint8)
    return scaled[..., np.newaxis]


class Digits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn's handwritten digits with a fixed, stratified 80/20 split."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "The 1,797 8x8 handwritten digits bundled with scikit-learn (a copy of"
                " the UCI optical recognition of handwritten digits test set), scaled"
                " to 0..255 and split 80/20, stratified by label."
            ),
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(8, 8, 1), encoding_format="png"),
                "label": tfds.features.ClassLabel(num_classes=10),
                # Row of the image in `sklearn.datasets.load_digits()`.
                "index": np.int64,
            }),
            supervised_keys=("image", "label"),
            homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # The data is bundled with scikit-learn.
        return {
            split: self._generate_examples(indices)
            for split, indices in split_indices().items()
        }

    def _generate_examples(self, indices: np.ndarray):
        images = images_uint8()
        labels = sklearn_datasets.load_digits().target
        for index in indices:
            yield int(index), {
                "image": images[index],
                "label": int(labels[index]),
                "index": int(index),
            }

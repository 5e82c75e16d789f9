"""Input pipelines: digits, CIFAR-10 and ImageNet 2012 through TFDS and tf.data.

Importing this package registers the "digits" TFDS builder and hides the GPUs
from TensorFlow, which only runs the input pipelines.
"""

from fat_jax.data.digits import Digits
from fat_jax.data.imagenet import (
    MissingImageNetArchivesError,
    prepare_miniature_imagenet,
    write_miniature_imagenet,
)
from fat_jax.data.pipeline import (
    eval_iterator,
    num_examples,
    steps_per_epoch,
    train_iterator,
)
from fat_jax.data.specs import DATASET_NAMES, DatasetSpec, get_spec

__all__ = [
    "DATASET_NAMES",
    "DatasetSpec",
    "Digits",
    "MissingImageNetArchivesError",
    "eval_iterator",
    "get_spec",
    "num_examples",
    "prepare_miniature_imagenet",
    "steps_per_epoch",
    "train_iterator",
    "write_miniature_imagenet",
]

"""Input pipelines: digits, CIFAR-10 and ImageNet 2012 through TFDS and tf.data.

The dataset specs (`DATASET_NAMES`, `DatasetSpec`, `get_spec`) load without
TensorFlow, so that configs can be validated in a second. Every other name is
imported on first access, which imports TensorFlow, registers the "digits" TFDS
builder and hides the GPUs from TensorFlow, which only runs the input pipelines.
"""

import importlib

from fat_jax.data.specs import DATASET_NAMES, DatasetSpec, get_spec

# Public name -> submodule that defines it; these submodules import TensorFlow.
_LAZY_NAMES = {
    "DatasetDownloadError": "loading",
    "Digits": "digits",
    "MissingImageNetArchivesError": "imagenet",
    "prepare_miniature_imagenet": "imagenet",
    "write_miniature_imagenet": "imagenet",
    "eval_iterator": "pipeline",
    "num_examples": "pipeline",
    "steps_per_epoch": "pipeline",
    "train_iterator": "pipeline",
}

__all__ = sorted(["DATASET_NAMES", "DatasetSpec", "get_spec", *_LAZY_NAMES])


def __getattr__(name: str):
    if name not in _LAZY_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # The pipeline module hides the GPUs from TensorFlow and, through `loading`,
    # registers the digits builder, so load it first whichever name is requested.
    importlib.import_module(f"{__name__}.pipeline")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY_NAMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_NAMES))

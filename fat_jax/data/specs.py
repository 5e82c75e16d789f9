"""Static facts about each supported dataset: classes, resolution, splits, statistics."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """Properties of one supported dataset that the trainer and pipelines share."""

    # Dataset name, also the TFDS builder name.
    name: str
    num_classes: int
    # Native training resolution in pixels (square images).
    image_size: int
    # TFDS split names (slicing such as "train[:90%]" is allowed).
    train_split: str
    eval_split: str
    # Per-channel normalisation of RGB values in [0, 1].
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


_DIGITS_MEAN = 0.3054
_DIGITS_STD = 0.3236

_SPECS = {
    spec.name: spec
    for spec in (
        # Statistics of the digits training split (1,437 images) after the bilinear
        # resize from 8x8 to 32x32 that the pipeline applies, so that normalised
        # images at the default resolution have mean 0 and std 1. Upsampling
        # smooths the images, so the std of the 8x8 originals is higher (0.3760).
        DatasetSpec(
            name="digits",
            num_classes=10,
            image_size=32,
            train_split="train",
            eval_split="test",
            mean=(_DIGITS_MEAN,) * 3,
            std=(_DIGITS_STD,) * 3,
        ),
        # The statistics that the CIFAR-10 recipe of the FAT reference normalises with.
        DatasetSpec(
            name="cifar10",
            num_classes=10,
            image_size=32,
            train_split="train",
            eval_split="test",
            mean=(0.4914, 0.4822, 0.4465),
            std=(0.2023, 0.1994, 0.2010),
        ),
        # The torchvision ImageNet statistics.
        DatasetSpec(
            name="imagenet2012",
            num_classes=1000,
            image_size=224,
            train_split="train",
            eval_split="validation",
            mean=(0.485, 0.456, 0.406),
            std=(0.229, 0.224, 0.225),
        ),
    )
}

DATASET_NAMES = tuple(_SPECS)
"""Names of the supported datasets."""


def get_spec(name: str) -> DatasetSpec:
    """Return the spec of dataset `name`.

    Raises:
        ValueError: `name` is not a supported dataset.
    """
    try:
        return _SPECS[name]
    except KeyError:
        raise ValueError(
            f"Unknown dataset {name!r}: expected one of {', '.join(DATASET_NAMES)}."
        ) from None

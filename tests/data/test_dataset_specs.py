"""Tests of the dataset specs and the package-level setup of fat_jax.data."""

import dataclasses

import pytest
import tensorflow as tf

from fat_jax import data


@pytest.mark.parametrize(
    "name, num_classes, image_size, train_split, eval_split",
    [
        ("digits", 10, 32, "train", "test"),
        ("cifar10", 10, 32, "train", "test"),
        ("imagenet2012", 1000, 224, "train", "validation"),
    ],
)
def test_spec_values(name, num_classes, image_size, train_split, eval_split):
    spec = data.get_spec(name)
    assert spec.name == name
    assert spec.num_classes == num_classes
    assert spec.image_size == image_size
    assert spec.train_split == train_split
    assert spec.eval_split == eval_split
    assert len(spec.mean) == 3
    assert len(spec.std) == 3
    assert all(s > 0 for s in spec.std)


def test_spec_normalisation_constants():
    assert data.get_spec("cifar10").mean == (0.4914, 0.4822, 0.4465)
    assert data.get_spec("cifar10").std == (0.2023, 0.1994, 0.2010)
    assert data.get_spec("imagenet2012").mean == (0.485, 0.456, 0.406)
    assert data.get_spec("imagenet2012").std == (0.229, 0.224, 0.225)


def test_spec_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.get_spec("digits").image_size = 64


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError) as error:
        data.get_spec("mnist")
    message = str(error.value)
    assert "mnist" in message
    for name in ("digits", "cifar10", "imagenet2012"):
        assert name in message


def test_tensorflow_sees_no_gpu():
    assert tf.config.get_visible_devices("GPU") == []

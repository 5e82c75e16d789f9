"""Tests of the digits TFDS builder and of the train/eval pipelines on it."""

import collections
import itertools

import numpy as np
import pytest
from sklearn import datasets as sklearn_datasets
import tensorflow as tf
import tensorflow_datasets as tfds

from fat_jax import data
from fat_jax.data import digits
from fat_jax.data import preprocessing

NUM_TRAIN = 1437
NUM_TEST = 360


def _split_arrays(data_dir, split):
    builder = tfds.builder("digits", data_dir=data_dir)
    return tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))


def _image_key(image):
    """Hashable identity of a float image, robust to last-bit differences."""
    return np.round(image, 4).tobytes()


def _reference_images(split, image_size=32):
    """Evaluation-preprocessed images of `split`, built from scikit-learn's arrays."""
    spec = data.get_spec("digits")
    images = digits.images_uint8()[digits.split_indices()[split]]
    dataset = tf.data.Dataset.from_tensor_slices(images).map(
        lambda image: preprocessing.digits_eval(
            tf.io.encode_png(image), image_size=image_size, spec=spec))
    return next(dataset.batch(len(images)).as_numpy_iterator())


@pytest.fixture(scope="module")
def eval_references():
    return collections.Counter(_image_key(image) for image in _reference_images("test"))


@pytest.fixture(scope="module")
def train_references():
    return collections.Counter(_image_key(image) for image in _reference_images("train"))


def _train(data_dir, **kwargs):
    defaults = {"global_batch_size": 64, "seed": 0, "process_index": 0, "process_count": 1}
    return data.train_iterator("digits", data_dir=data_dir, **{**defaults, **kwargs})


def _eval(data_dir, **kwargs):
    defaults = {"global_batch_size": 100, "process_index": 0, "process_count": 1}
    return list(data.eval_iterator("digits", data_dir=data_dir, **{**defaults, **kwargs}))


def _take(iterator, count):
    return list(itertools.islice(iterator, count))


def _shift(image, dy, dx, fill):
    """Return `image` moved so that out[y, x] = image[y + dy, x + dx], `fill` outside."""
    height, width = image.shape[:2]
    out = np.full_like(image, fill)
    out[max(0, -dy):min(height, height - dy), max(0, -dx):min(width, width - dx)] = (
        image[max(0, dy):min(height, height + dy), max(0, dx):min(width, width + dx)])
    return out


# The builder.


def test_builder_registered_and_prepared(digits_data_dir):
    builder = tfds.builder("digits", data_dir=digits_data_dir)
    assert builder.is_prepared()
    assert builder.info.splits["train"].num_examples == NUM_TRAIN
    assert builder.info.splits["test"].num_examples == NUM_TEST
    assert NUM_TRAIN + NUM_TEST == 1797


def test_num_examples(digits_data_dir):
    assert data.num_examples("digits", "train", data_dir=digits_data_dir) == NUM_TRAIN
    assert data.num_examples("digits", "test", data_dir=digits_data_dir) == NUM_TEST
    assert data.num_examples("digits", "train[:10%]", data_dir=digits_data_dir) == 144


def test_unknown_split_rejected(digits_data_dir):
    with pytest.raises(ValueError, match="validation"):
        data.num_examples("digits", "validation", data_dir=digits_data_dir)


def test_splits_disjoint_and_complete(digits_data_dir):
    train = _split_arrays(digits_data_dir, "train")["index"]
    test = _split_arrays(digits_data_dir, "test")["index"]
    assert len(set(train)) == NUM_TRAIN
    assert len(set(test)) == NUM_TEST
    assert not set(train) & set(test)
    assert set(train) | set(test) == set(range(1797))


def test_split_stratified(digits_data_dir):
    all_counts = np.bincount(sklearn_datasets.load_digits().target, minlength=10)
    train_counts = np.bincount(_split_arrays(digits_data_dir, "train")["label"], minlength=10)
    test_counts = np.bincount(_split_arrays(digits_data_dir, "test")["label"], minlength=10)
    np.testing.assert_array_equal(train_counts + test_counts, all_counts)
    assert np.all(np.abs(test_counts - 0.2 * all_counts) <= 1), test_counts
    # Balanced labels: every class is 9% to 11% of each split.
    assert np.all(np.abs(train_counts / NUM_TRAIN - 0.1) < 0.01), train_counts
    assert np.all(np.abs(test_counts / NUM_TEST - 0.1) < 0.01), test_counts


def test_stored_images_are_scaled_sklearn_digits(digits_data_dir):
    arrays = _split_arrays(digits_data_dir, "train")
    images = arrays["image"]
    assert images.dtype == np.uint8
    assert images.shape == (NUM_TRAIN, 8, 8, 1)
    sklearn_digits = sklearn_datasets.load_digits()
    expected = np.round(sklearn_digits.images[arrays["index"]] * 255 / 16)
    np.testing.assert_array_equal(images[..., 0], expected.astype(np.uint8))
    np.testing.assert_array_equal(arrays["label"], sklearn_digits.target[arrays["index"]])
    assert images.max() == 255
    flat = images.reshape(NUM_TRAIN, -1)
    per_image_range = flat.max(axis=1) - flat.min(axis=1)
    assert np.all(per_image_range > 0)


# The training pipeline.


def test_train_batch_shapes_and_dtypes(digits_data_dir):
    batch = next(_train(digits_data_dir))
    assert set(batch) == {"image", "label"}
    assert batch["image"].shape == (64, 32, 32, 3)
    assert batch["image"].dtype == np.float32
    assert batch["label"].shape == (64,)
    assert batch["label"].dtype == np.int32
    assert batch["label"].min() >= 0
    assert batch["label"].max() < 10


def test_train_channels_repeat_grayscale(digits_data_dir):
    image = next(_train(digits_data_dir))["image"]
    np.testing.assert_array_equal(image[..., 0], image[..., 1])
    np.testing.assert_array_equal(image[..., 0], image[..., 2])


def test_train_image_size_option(digits_data_dir):
    batch = next(_train(digits_data_dir, image_size=16, global_batch_size=8))
    assert batch["image"].shape == (8, 16, 16, 3)


def test_train_normalised_at_default_size(digits_data_dir):
    # augment=False over exactly one epoch (3 x 479 = 1,437) gives the training split.
    batches = _take(_train(digits_data_dir, global_batch_size=479, augment=False), 3)
    images = np.concatenate([batch["image"] for batch in batches])
    assert abs(float(images.mean())) < 0.01
    assert abs(float(images.std()) - 1.0) < 0.01


def test_train_same_seed_same_batches(digits_data_dir):
    first = _take(_train(digits_data_dir, seed=7), 3)
    second = _take(_train(digits_data_dir, seed=7), 3)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])


def test_train_seed_changes_order(digits_data_dir):
    first = next(_train(digits_data_dir, seed=0))
    second = next(_train(digits_data_dir, seed=1))
    assert not np.array_equal(first["label"], second["label"])


def test_train_epochs_are_permutations(digits_data_dir, train_references):
    batches = _take(_train(digits_data_dir, global_batch_size=479, augment=False), 6)
    epochs = [np.concatenate([b["image"] for b in batches[i:i + 3]]) for i in (0, 3)]
    for images in epochs:
        assert collections.Counter(_image_key(image) for image in images) == train_references
    assert not np.array_equal(epochs[0], epochs[1])


def test_train_resume_matches_uninterrupted(digits_data_dir):
    # 1,437 / 64 = 22.5 steps per epoch: step 22 spans the boundary, step 23 is in epoch 1.
    uninterrupted = _take(_train(digits_data_dir, seed=3), 26)
    for start_step in (1, 22, 23):
        resumed = _take(_train(digits_data_dir, seed=3, start_step=start_step), 3)
        for expected, actual in zip(uninterrupted[start_step:], resumed):
            np.testing.assert_array_equal(actual["label"], expected["label"])
            np.testing.assert_array_equal(actual["image"], expected["image"])


def test_train_augmentation_is_small_shift(digits_data_dir):
    augmented = next(_train(digits_data_dir, seed=5))["image"]
    plain = next(_train(digits_data_dir, seed=5, augment=False))["image"]
    spec = data.get_spec("digits")
    fill = np.float32((0.0 - spec.mean[0]) / spec.std[0])
    shifts = []
    for aug, ref in zip(augmented, plain):
        matches = [
            (dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
            if np.allclose(aug, _shift(ref, dy, dx, fill), atol=1e-5)
        ]
        assert matches, "augmented image is not a shift of at most 2 pixels"
        shifts.append(matches[0])
    assert any(shift != (0, 0) for shift in shifts)


def test_steps_per_epoch_rounds_up(digits_data_dir):
    assert data.steps_per_epoch("digits", 64, data_dir=digits_data_dir) == 23
    assert data.steps_per_epoch("digits", 479, data_dir=digits_data_dir) == 3


def test_train_rejects_invalid_arguments(digits_data_dir):
    with pytest.raises(ValueError, match="divisible"):
        _train(digits_data_dir, global_batch_size=65, process_count=2)
    with pytest.raises(ValueError, match="start_step"):
        _train(digits_data_dir, start_step=-1)
    with pytest.raises(ValueError, match="process_index"):
        _train(digits_data_dir, process_index=2, process_count=2)
    with pytest.raises(ValueError, match="image_size"):
        _train(digits_data_dir, image_size=0)
    with pytest.raises(ValueError, match="global_batch_size"):
        _eval(digits_data_dir, global_batch_size=0)


def test_train_hosts_read_disjoint_slices(digits_data_dir, train_references):
    # 1,437 // 2 = 718 examples per host and epoch = 2 local batches of 359.
    host_images = []
    for process_index in (0, 1):
        batches = _take(
            _train(digits_data_dir, global_batch_size=718, augment=False,
                   process_index=process_index, process_count=2), 2)
        host_images.append(
            collections.Counter(_image_key(image) for batch in batches for image in batch["image"]))
    assert sum(host_images[0].values()) == 718
    assert sum(host_images[1].values()) == 718
    assert not set(host_images[0]) & set(host_images[1])
    union = host_images[0] + host_images[1]
    assert sum(union.values()) == NUM_TRAIN - 1  # The remainder example is dropped.
    assert not union - train_references


# The evaluation pipeline.


def test_eval_covers_split_once_with_padding(digits_data_dir, eval_references):
    batches = _eval(digits_data_dir, global_batch_size=100)
    assert len(batches) == 4
    for batch in batches:
        assert batch["image"].shape == (100, 32, 32, 3)
        assert batch["image"].dtype == np.float32
        assert batch["label"].dtype == np.int32
        assert batch["mask"].dtype == np.bool_
    assert [int(batch["mask"].sum()) for batch in batches] == [100, 100, 100, 60]
    last = batches[-1]
    assert np.all(last["mask"][:60])
    assert np.all(last["image"][60:] == 0)
    assert np.all(last["label"][60:] == 0)
    seen = collections.Counter(
        _image_key(image) for batch in batches for image in batch["image"][batch["mask"]])
    assert seen == eval_references


def test_eval_labels_match_split(digits_data_dir):
    batches = _eval(digits_data_dir, global_batch_size=100)
    labels = np.concatenate([batch["label"][batch["mask"]] for batch in batches])
    expected = _split_arrays(digits_data_dir, "test")["label"]
    np.testing.assert_array_equal(np.sort(labels), np.sort(expected))


def test_eval_normalised(digits_data_dir):
    batches = _eval(digits_data_dir, global_batch_size=NUM_TEST)
    assert len(batches) == 1
    images = batches[0]["image"]
    assert abs(float(images.mean())) < 0.05
    assert abs(float(images.std()) - 1.0) < 0.05


@pytest.mark.parametrize("process_count, local_batch, num_batches", [(2, 50, 4), (7, 10, 6)])
def test_eval_hosts_cover_split(
        digits_data_dir, eval_references, process_count, local_batch, num_batches):
    # 360 / 7 leaves hosts 0 to 2 with 52 examples and the others with 51.
    counters = []
    for process_index in range(process_count):
        batches = _eval(
            digits_data_dir, global_batch_size=local_batch * process_count,
            process_index=process_index, process_count=process_count)
        assert len(batches) == num_batches
        assert all(batch["image"].shape[0] == local_batch for batch in batches)
        counters.append(collections.Counter(
            _image_key(image) for batch in batches for image in batch["image"][batch["mask"]]))
    for first, second in itertools.combinations(counters, 2):
        assert not set(first) & set(second)
    assert sum(counters, collections.Counter()) == eval_references

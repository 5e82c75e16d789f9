"""Tests of the CIFAR-10 pipelines on the real TFDS cifar10 builder with mocked records.

`tfds.testing.mock_data` is the only mock in the data tests, and it replaces only
the reading of records: the builder, its features (PNG images, 10 labels), the
split metadata and all of fat_jax.data run for real. The split sizes come from a
dataset_info.json written below, because the real files would need the 160 MB
download. The mock yields the same `NUM_EXAMPLES` examples for every split and
sub-split, so these tests use a single host.
"""

import itertools
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from fat_jax import data

NUM_EXAMPLES = 40


def _take(iterator, count):
    return list(itertools.islice(iterator, count))


@pytest.fixture(scope="module")
def cifar_data_dir(tmp_path_factory):
    """Data directory containing only cifar10 metadata that lists NUM_EXAMPLES per split."""
    data_dir = tmp_path_factory.mktemp("cifar10_metadata")
    builder = tfds.builder("cifar10", data_dir=str(data_dir))
    os.makedirs(builder.data_dir)
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=split, shard_lengths=[NUM_EXAMPLES], num_bytes=0)
        for split in ("train", "test")
    ]))
    builder.info.write_to_directory(builder.data_dir)
    return str(data_dir)


@pytest.fixture
def mocked_cifar(cifar_data_dir):
    with tfds.testing.mock_data(
            num_examples=NUM_EXAMPLES, policy=tfds.testing.MockPolicy.USE_FILES,
            data_dir=cifar_data_dir):
        yield cifar_data_dir


def _raw_examples(data_dir):
    """The mocked records in stored order: uint8 images (N, 32, 32, 3) and labels."""
    builder = tfds.builder("cifar10", data_dir=data_dir)
    records = builder.as_dataset(split="train", decoders={"image": tfds.decode.SkipDecoding()})
    images, labels = [], []
    for example in records:
        images.append(tf.io.decode_png(example["image"], channels=3).numpy())
        labels.append(int(example["label"]))
    return np.stack(images), np.array(labels)


def _normalise(images01):
    spec = data.get_spec("cifar10")
    return (images01 - np.array(spec.mean, np.float32)) / np.array(spec.std, np.float32)


def _train(data_dir, **kwargs):
    defaults = {"global_batch_size": 16, "seed": 0, "process_index": 0, "process_count": 1}
    return data.train_iterator("cifar10", data_dir=data_dir, **{**defaults, **kwargs})


@pytest.mark.parametrize("image_size", [32, 24])
def test_train_batch_shapes(mocked_cifar, image_size):
    batches = _take(_train(mocked_cifar, image_size=image_size), 3)
    for batch in batches:
        assert batch["image"].shape == (16, image_size, image_size, 3)
        assert batch["image"].dtype == np.float32
        assert batch["label"].shape == (16,)
        assert batch["label"].dtype == np.int32
        assert batch["label"].min() >= 0
        assert batch["label"].max() < 10


def test_eval_normalisation_exact(mocked_cifar):
    images, labels = _raw_examples(mocked_cifar)
    batches = list(data.eval_iterator(
        "cifar10", global_batch_size=16, data_dir=mocked_cifar, process_index=0, process_count=1))
    assert len(batches) == 3  # 40 examples in batches of 16, the last one padded.
    assert [int(batch["mask"].sum()) for batch in batches] == [16, 16, 8]
    output = np.concatenate([batch["image"][batch["mask"]] for batch in batches])
    output_labels = np.concatenate([batch["label"][batch["mask"]] for batch in batches])
    np.testing.assert_allclose(output, _normalise(images.astype(np.float32) / 255), atol=1e-5)
    np.testing.assert_array_equal(output_labels, labels)


def test_train_augmentation_is_padded_crop_and_flip(mocked_cifar):
    images, labels = _raw_examples(mocked_cifar)
    padded = np.pad(images.astype(np.float32) / 255, [(0, 0), (4, 4), (4, 4), (0, 0)])
    candidates = {}
    for top, left, flip in itertools.product(range(9), range(9), (False, True)):
        crops = padded[:, top:top + 32, left:left + 32]
        candidates[top, left, flip] = _normalise(crops[:, :, ::-1] if flip else crops)

    transforms = []
    for batch in _take(_train(mocked_cifar, seed=4), 2):
        for image, label in zip(batch["image"], batch["label"]):
            same_label = labels == label
            found = [
                transform
                for transform, crops in candidates.items()
                if np.any(np.abs(crops[same_label] - image).max(axis=(1, 2, 3)) < 1e-5)
            ]
            assert found, "augmented image is no padded crop or flip of an example with its label"
            transforms.append(found[0])
    assert any(flip for _, _, flip in transforms)
    assert any((top, left) != (4, 4) for top, left, _ in transforms)


def test_train_resume_matches_uninterrupted(mocked_cifar):
    # 40 examples per epoch and 16 per step: step 2 spans epochs 0 and 1.
    uninterrupted = _take(_train(mocked_cifar, seed=9), 5)
    resumed = _take(_train(mocked_cifar, seed=9, start_step=2), 3)
    for expected, actual in zip(uninterrupted[2:], resumed):
        np.testing.assert_array_equal(actual["label"], expected["label"])
        np.testing.assert_array_equal(actual["image"], expected["image"])


def test_steps_per_epoch(mocked_cifar):
    assert data.steps_per_epoch("cifar10", 16, data_dir=mocked_cifar) == 3


def test_failed_download_names_fix(tmp_path, monkeypatch):
    # A mock of the network: this machine cannot reach the CIFAR-10 server.
    def offline(self, *args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", offline)
    monkeypatch.setattr(tfds.download.DownloadManager, "download", offline)
    data_dir = tmp_path / "tfds"
    with pytest.raises(data.DatasetDownloadError) as raised:
        data.num_examples("cifar10", "train", data_dir=str(data_dir))
    message = str(raised.value)
    assert f"Downloading and preparing cifar10 in {data_dir}" in message
    assert "ConnectionError: Name or service not known" in message
    assert "tfds build cifar10 --data_dir=DIR" in message
    assert "--config.dataset.data_dir=DIR" in message
    assert not tfds.builder("cifar10", data_dir=str(data_dir)).is_prepared()

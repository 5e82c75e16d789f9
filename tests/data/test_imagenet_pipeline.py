"""Tests of the ImageNet archives handling and of the pipelines on the real TFDS builder."""

import collections
import io
import itertools
import os
import tarfile

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from fat_jax import data
from fat_jax.data import imagenet
from fat_jax.data import preprocessing

LABEL_NAMES = tfds.core.tfds_path("datasets/imagenet2012/labels.txt").read_text().split()


def _take(iterator, count):
    return list(itertools.islice(iterator, count))


def _jpeg(height, width, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


# Missing archives.


def test_missing_archives_error_message(tmp_path, monkeypatch):
    monkeypatch.delenv(imagenet.MANUAL_DIR_ENV, raising=False)
    with pytest.raises(data.MissingImageNetArchivesError) as error:
        data.train_iterator("imagenet2012", global_batch_size=8, seed=0, data_dir=tmp_path,
                            process_index=0, process_count=1)
    message = str(error.value)
    assert "ILSVRC2012_img_train.tar" in message
    assert "ILSVRC2012_img_val.tar" in message
    assert str(tmp_path / "downloads" / "manual") in message
    assert "dataset.manual_dir" in message
    assert "FAT_JAX_IMAGENET_DIR" in message
    assert isinstance(error.value, FileNotFoundError)


def test_missing_archives_raised_before_preparing(tmp_path, monkeypatch):
    monkeypatch.delenv(imagenet.MANUAL_DIR_ENV, raising=False)
    with pytest.raises(data.MissingImageNetArchivesError):
        data.eval_iterator("imagenet2012", global_batch_size=8, data_dir=tmp_path,
                           process_index=0, process_count=1)
    assert not (tmp_path / "imagenet2012").exists()


def test_missing_archives_uses_env_directory(tmp_path, monkeypatch):
    archive_dir = tmp_path / "archives"
    archive_dir.mkdir()
    (archive_dir / "ILSVRC2012_img_val.tar").write_bytes(b"")
    monkeypatch.setenv(imagenet.MANUAL_DIR_ENV, str(archive_dir))
    with pytest.raises(data.MissingImageNetArchivesError) as error:
        data.num_examples("imagenet2012", "train", data_dir=tmp_path / "tfds")
    assert str(archive_dir) in str(error.value)
    assert error.value.missing == ["ILSVRC2012_img_train.tar"]


def test_explicit_manual_dir_wins_over_env(tmp_path, monkeypatch):
    monkeypatch.setenv(imagenet.MANUAL_DIR_ENV, str(tmp_path / "from_env"))
    with pytest.raises(data.MissingImageNetArchivesError) as error:
        data.num_examples("imagenet2012", "train", data_dir=tmp_path / "tfds",
                          manual_dir=tmp_path / "explicit")
    assert error.value.manual_dir == str(tmp_path / "explicit")


# The miniature archives.


def test_miniature_archive_layout(tmp_path):
    data.write_miniature_imagenet(tmp_path, num_classes=2, train_per_class=3, num_val=4, seed=1)
    with tarfile.open(tmp_path / "ILSVRC2012_img_train.tar") as train_archive:
        assert train_archive.getnames() == [f"{wnid}.tar" for wnid in LABEL_NAMES[:2]]
        inner = train_archive.extractfile(f"{LABEL_NAMES[1]}.tar")
        with tarfile.open(fileobj=io.BytesIO(inner.read())) as synset_archive:
            names = synset_archive.getnames()
            assert names == [f"{LABEL_NAMES[1]}_{n}.JPEG" for n in (1, 2, 3)]
            photo = Image.open(synset_archive.extractfile(names[0]))
            assert photo.format == "JPEG"
    with tarfile.open(tmp_path / "ILSVRC2012_img_val.tar") as val_archive:
        names = val_archive.getnames()
        assert names == [f"ILSVRC2012_val_{n:08d}.JPEG" for n in (1, 2, 3, 4)]
        sizes = {Image.open(val_archive.extractfile(name)).size for name in names}
    assert len(sizes) > 1


def test_miniature_archives_deterministic(tmp_path):
    for name in ("a", "b"):
        data.write_miniature_imagenet(tmp_path / name, num_classes=1, train_per_class=2, num_val=2)
    for archive in imagenet.REQUIRED_ARCHIVES:
        assert (tmp_path / "a" / archive).read_bytes() == (tmp_path / "b" / archive).read_bytes()


def test_miniature_rejects_invalid_sizes(tmp_path):
    with pytest.raises(ValueError, match="num_classes"):
        data.write_miniature_imagenet(tmp_path, num_classes=1001)
    with pytest.raises(ValueError, match="num_val"):
        data.write_miniature_imagenet(tmp_path, num_val=0)


# The real builder on the miniature archives.


def test_prepared_split_sizes(miniature_imagenet, miniature_imagenet_sizes):
    data_dir, manual_dir = miniature_imagenet
    sizes = miniature_imagenet_sizes
    train = data.num_examples("imagenet2012", "train", data_dir=data_dir, manual_dir=manual_dir)
    val = data.num_examples("imagenet2012", "validation", data_dir=data_dir, manual_dir=manual_dir)
    assert train == sizes["num_classes"] * sizes["train_per_class"]
    assert val == sizes["num_val"]


def test_prepare_miniature_reuses_directory(miniature_imagenet):
    data_dir, _ = miniature_imagenet
    root = os.path.dirname(data_dir)
    assert data.prepare_miniature_imagenet(root) == miniature_imagenet


@pytest.mark.parametrize("image_size", [224, 64])
def test_train_batches(miniature_imagenet, miniature_imagenet_sizes, image_size):
    data_dir, manual_dir = miniature_imagenet
    batches = _take(data.train_iterator(
        "imagenet2012", global_batch_size=8, seed=0, image_size=image_size, data_dir=data_dir,
        manual_dir=manual_dir, process_index=0, process_count=1), 4)
    for batch in batches:
        assert set(batch) == {"image", "label"}
        assert batch["image"].shape == (8, image_size, image_size, 3)
        assert batch["image"].dtype == np.float32
        assert batch["label"].dtype == np.int32
        assert np.all(np.isfinite(batch["image"]))
        assert batch["label"].min() >= 0
        assert batch["label"].max() < miniature_imagenet_sizes["num_classes"]
    # Pixels in [0, 1] normalise to [-mean / std, (1 - mean) / std].
    images = np.concatenate([batch["image"] for batch in batches])
    assert images.min() >= -2.2
    assert images.max() <= 2.7
    assert images.std() > 0.3


def test_train_resume_matches_uninterrupted(miniature_imagenet):
    data_dir, manual_dir = miniature_imagenet
    kwargs = {"global_batch_size": 5, "seed": 2, "image_size": 64, "data_dir": data_dir,
              "manual_dir": manual_dir, "process_index": 0, "process_count": 1}
    # 24 examples per epoch: step 4 covers examples 20 to 24, spanning epochs 0 and 1.
    uninterrupted = _take(data.train_iterator("imagenet2012", **kwargs), 7)
    resumed = _take(data.train_iterator("imagenet2012", start_step=4, **kwargs), 3)
    for expected, actual in zip(uninterrupted[4:], resumed):
        np.testing.assert_array_equal(actual["label"], expected["label"])
        np.testing.assert_array_equal(actual["image"], expected["image"])


@pytest.mark.parametrize("image_size", [224, 64])
def test_eval_covers_validation_once(miniature_imagenet, miniature_imagenet_sizes, image_size):
    data_dir, manual_dir = miniature_imagenet
    num_val = miniature_imagenet_sizes["num_val"]
    batches = list(data.eval_iterator(
        "imagenet2012", global_batch_size=8, image_size=image_size, data_dir=data_dir,
        manual_dir=manual_dir, process_index=0, process_count=1))
    assert len(batches) == -(-num_val // 8)
    for batch in batches:
        assert batch["image"].shape == (8, image_size, image_size, 3)
        assert batch["mask"].dtype == np.bool_
    assert sum(int(batch["mask"].sum()) for batch in batches) == num_val
    labels = np.concatenate([batch["label"][batch["mask"]] for batch in batches])
    expected = [LABEL_NAMES.index(wnid) for wnid in imagenet.miniature_validation_labels(num_val)]
    assert collections.Counter(labels.tolist()) == collections.Counter(expected)
    images = np.concatenate([batch["image"][batch["mask"]] for batch in batches])
    assert len({image.tobytes() for image in images}) == num_val


def test_eval_hosts_cover_validation(miniature_imagenet, miniature_imagenet_sizes):
    data_dir, manual_dir = miniature_imagenet
    num_val = miniature_imagenet_sizes["num_val"]  # 21: hosts get 11 and 10 examples.
    images = []
    for process_index in (0, 1):
        batches = list(data.eval_iterator(
            "imagenet2012", global_batch_size=8, image_size=32, data_dir=data_dir,
            manual_dir=manual_dir, process_index=process_index, process_count=2))
        assert len(batches) == 3
        for batch in batches:
            images.extend(image.tobytes() for image in batch["image"][batch["mask"]])
    assert len(images) == num_val
    assert len(set(images)) == num_val


# The JPEG crops.


def test_train_crop_falls_back_to_centre_crop():
    # No box with 8% of a 12x600 image's area has an aspect ratio in [3/4, 4/3].
    image_bytes = tf.constant(_jpeg(12, 600))
    spec = data.get_spec("imagenet2012")
    centre = preprocessing.imagenet_eval(image_bytes, image_size=32, spec=spec).numpy()
    for seed in range(4):
        key = tf.constant([seed, 0], tf.int64)
        image = preprocessing.imagenet_train(image_bytes, key, image_size=32, spec=spec).numpy()
        assert np.allclose(image, centre) or np.allclose(image, centre[:, ::-1])


def test_train_crop_varies_with_key():
    image_bytes = tf.constant(_jpeg(300, 400))
    spec = data.get_spec("imagenet2012")
    images = [
        preprocessing.imagenet_train(image_bytes, tf.constant([seed, 0], tf.int64), image_size=32,
                                     spec=spec).numpy()
        for seed in range(3)
    ]
    assert not np.allclose(images[0], images[1])
    assert not np.allclose(images[1], images[2])
    again = preprocessing.imagenet_train(
        image_bytes, tf.constant([0, 0], tf.int64), image_size=32, spec=spec)
    np.testing.assert_array_equal(again.numpy(), images[0])


def test_eval_crop_is_central():
    # A white square on black: the central 224/256 crop of 256x256 contains it at the centre.
    pixels = np.zeros((256, 256, 3), np.uint8)
    pixels[96:160, 96:160] = 255
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=100)
    spec = data.get_spec("imagenet2012")
    image_bytes = tf.constant(buffer.getvalue())
    image = preprocessing.imagenet_eval(image_bytes, image_size=224, spec=spec).numpy()
    unnormalised = image * np.array(spec.std) + np.array(spec.mean)
    # The crop starts at (256 - 224) / 2 = 16, so the square spans 80 to 144.
    assert unnormalised[112, 112].min() > 0.9
    assert unnormalised[84, 84].min() > 0.9
    assert unnormalised[76, 76].max() < 0.1
    assert unnormalised[148, 148].max() < 0.1

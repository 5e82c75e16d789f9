"""Construction and automatic preparation of the TFDS builders behind each dataset."""

from __future__ import annotations

import os

from absl import logging
import tensorflow as tf
import tensorflow_datasets as tfds

from fat_jax.data import digits  # noqa: F401  (registers the "digits" TFDS builder)
from fat_jax.data import imagenet
from fat_jax.data import specs


class DatasetDownloadError(RuntimeError):
    """TFDS failed to download or prepare a dataset that it fetches from the web."""

    def __init__(self, name: str, data_dir: str, error: BaseException):
        cause = " ".join(str(error).split())[:300]
        super().__init__(
            f"Downloading and preparing {name} in {data_dir} failed"
            f" ({type(error).__name__}: {cause}). Without network access, prepare it on"
            f" another machine with `tfds build {name} --data_dir=DIR`, copy DIR here and"
            " pass --config.dataset.data_dir=DIR.")


def hide_accelerators_from_tensorflow() -> None:
    """Keep TensorFlow (used only for tf.data) off the GPUs, which belong to JAX.

    Must run before TensorFlow initialises its devices. When it is too late, the
    function logs a warning and leaves the devices as they are.
    """
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError as error:
        logging.warning(
            "Could not hide GPUs from TensorFlow, which is already initialised: %s", error)


def load_builder(
    name: str,
    *,
    data_dir: os.PathLike | str | None = None,
    manual_dir: os.PathLike | str | None = None,
) -> tfds.core.DatasetBuilder:
    """Return the TFDS builder of dataset `name`, preparing the dataset on first use.

    digits prepares from scikit-learn's bundled data and cifar10 downloads through
    TFDS. imagenet2012 prepares from the manual archives, which takes hours for the
    full dataset (an estimate).

    Args:
        name: A supported dataset name.
        data_dir: TFDS data directory; None selects the TFDS default
            (`$TFDS_DATA_DIR` or ~/tensorflow_datasets).
        manual_dir: Directory holding the ImageNet archives; None selects
            `$FAT_JAX_IMAGENET_DIR`, else `<data_dir>/downloads/manual`. Only
            imagenet2012 reads it.

    Raises:
        ValueError: `name` is not a supported dataset.
        MissingImageNetArchivesError: imagenet2012 is not prepared and its archives
            are missing; raised before any preparation starts.
        DatasetDownloadError: cifar10 is not prepared and TFDS failed to download
            or prepare it (for example without network access).
    """
    specs.get_spec(name)  # Rejects unknown names with the list of known ones.
    data_dir = os.fspath(data_dir) if data_dir is not None else None
    builder = tfds.builder(name, data_dir=data_dir)
    if builder.is_prepared():
        return builder

    # NOTE: hosts that share one data_dir should prepare it once before a
    # multi-host run, because concurrent preparations of one dataset can collide.
    if name == "imagenet2012":
        archive_dir = imagenet.resolve_manual_dir(manual_dir, builder.data_dir_root)
        missing = imagenet.missing_archives(archive_dir)
        if missing:
            raise imagenet.MissingImageNetArchivesError(archive_dir, missing)
        logging.info(
            "Preparing imagenet2012 in %s from the archives in %s.", builder.data_dir, archive_dir)
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(archive_dir)))
    elif name == "digits":
        logging.info("Preparing %s in %s.", name, builder.data_dir)
        builder.download_and_prepare()
    else:
        logging.info("Downloading and preparing %s in %s.", name, builder.data_dir)
        try:
            builder.download_and_prepare()
        except Exception as error:  # noqa: BLE001 - network errors differ by TFDS backend.
            raise DatasetDownloadError(name, builder.data_dir, error) from error
    return builder


def check_split(builder: tfds.core.DatasetBuilder, split: str) -> None:
    """Raise a ValueError naming the prepared splits when `split` is not one of them."""
    base_names = {part.split("[", 1)[0].strip() for part in split.split("+")}
    available = sorted(builder.info.splits.keys())
    if not base_names <= set(available):
        raise ValueError(
            f"Split {split!r} not found in the prepared {builder.name} dataset at"
            f" {builder.data_dir}: available splits are {available}. For imagenet2012,"
            f" put both {imagenet.TRAIN_ARCHIVE} and {imagenet.VAL_ARCHIVE} in the manual"
            " directory and prepare again.")

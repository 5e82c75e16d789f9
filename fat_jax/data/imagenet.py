"""ImageNet 2012 manual archives: locating them, the missing-archives error, miniature copies.

The TFDS `imagenet2012` builder (tensorflow-datasets 4.9) prepares the dataset from
archives that the user downloads by hand into its manual directory:
ILSVRC2012_img_train.tar (one inner tar per synset, `<wnid>.tar`, holding
`<wnid>_<n>.JPEG` files) and ILSVRC2012_img_val.tar (`ILSVRC2012_val_<8 digits>.JPEG`).
The builder also accepts ILSVRC2012_img_test.tar, but training needs only the first two.
It labels the validation images by zipping their sorted file names with the lines of
its bundled `validation_labels.txt`, so image k of the archive gets line k.
"""

from __future__ import annotations

import io
import os
import pathlib
import tarfile

from absl import logging
import numpy as np
from PIL import Image
from sklearn import datasets as sklearn_datasets
import tensorflow_datasets as tfds

TRAIN_ARCHIVE = "ILSVRC2012_img_train.tar"
VAL_ARCHIVE = "ILSVRC2012_img_val.tar"
REQUIRED_ARCHIVES = (TRAIN_ARCHIVE, VAL_ARCHIVE)

MANUAL_DIR_ENV = "FAT_JAX_IMAGENET_DIR"
"""Environment variable that sets the directory containing the ImageNet archives."""

MANUAL_DIR_CONFIG_FIELD = "dataset.manual_dir"
"""Config field that sets the directory containing the ImageNet archives."""

_NUM_SYNSETS = 1000
_NUM_VAL_IMAGES = 50_000
_LABELS_FILE = "datasets/imagenet2012/labels.txt"
_VALIDATION_LABELS_FILE = "datasets/imagenet2012/validation_labels.txt"

# Output sizes of the miniature images, in pixels per side. The range includes sizes
# below 224 so that pipelines must upsample some images, as real ImageNet requires.
_MIN_SIDE = 48
_MAX_SIDE = 400
_JPEG_QUALITY = 90


class MissingImageNetArchivesError(FileNotFoundError):
    """The ImageNet 2012 archives are missing and the dataset is not prepared."""

    def __init__(self, manual_dir: os.PathLike | str, missing: list[str]):
        self.manual_dir = str(manual_dir)
        self.missing = list(missing)
        message = (
            f"ImageNet 2012 is not prepared and its archives {TRAIN_ARCHIVE} and"
            f" {VAL_ARCHIVE} were not found in the directory {self.manual_dir}"
            f" (missing: {', '.join(self.missing)}). Download both archives from"
            " https://image-net.org/download-images (registration required) into that"
            f" directory, or set the directory that contains them with the config field"
            f" `{MANUAL_DIR_CONFIG_FIELD}` or the environment variable {MANUAL_DIR_ENV}."
        )
        super().__init__(message)


def resolve_manual_dir(
        manual_dir: os.PathLike | str | None, data_dir_root: os.PathLike | str) -> pathlib.Path:
    """Return the directory to search for the ImageNet archives.

    Args:
        manual_dir: Explicit directory; wins when set.
        data_dir_root: TFDS data directory root; its `downloads/manual` folder is the
            TFDS default manual directory, used when neither `manual_dir` nor the
            environment variable FAT_JAX_IMAGENET_DIR is set.
    """
    if manual_dir:
        return pathlib.Path(manual_dir).expanduser()
    from_env = os.environ.get(MANUAL_DIR_ENV)
    if from_env:
        return pathlib.Path(from_env).expanduser()
    return pathlib.Path(data_dir_root) / "downloads" / "manual"


def missing_archives(manual_dir: os.PathLike | str) -> list[str]:
    """Return the names of the required archives that are not files in `manual_dir`."""
    return [name for name in REQUIRED_ARCHIVES if not (pathlib.Path(manual_dir) / name).is_file()]


def _read_tfds_lines(relative_path: str) -> list[str]:
    return tfds.core.tfds_path(relative_path).read_text().strip().splitlines()


def _jpeg_photo_crop(rng: np.random.Generator, photos: list[np.ndarray]) -> bytes:
    """Return a JPEG of a random crop of one photograph, resized to a random size."""
    photo = photos[rng.integers(len(photos))]
    photo_height, photo_width = photo.shape[:2]

    out_height = int(rng.integers(_MIN_SIDE, _MAX_SIDE + 1))
    aspect = float(rng.uniform(0.6, 1.7))  # width / height
    out_width = int(np.clip(round(out_height * aspect), _MIN_SIDE, _MAX_SIDE))

    # The largest crop of the output aspect ratio that fits the photo, scaled down.
    aspect = out_width / out_height
    max_crop_height = min(photo_height, photo_width / aspect)
    scale = float(rng.uniform(0.3, 1.0))
    crop_height = max(8, int(max_crop_height * scale))
    crop_width = max(8, min(photo_width, int(crop_height * aspect)))
    top = int(rng.integers(photo_height - crop_height + 1))
    left = int(rng.integers(photo_width - crop_width + 1))

    crop = Image.fromarray(photo[top:top + crop_height, left:left + crop_width])
    crop = crop.resize((out_width, out_height), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    crop.save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    return buffer.getvalue()


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def _write_atomically(path: pathlib.Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file, so a crash leaves no partial archive."""
    temporary = path.with_name(path.name + ".incomplete")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def write_miniature_imagenet(
    manual_dir: os.PathLike | str,
    *,
    num_classes: int = 10,
    train_per_class: int = 8,
    num_val: int = 50,
    seed: int = 0,
) -> None:
    """Write miniature ImageNet 2012 archives in the real layout into `manual_dir`.

    The images are random crops of scikit-learn's two sample photographs (china.jpg
    and flower.jpg), resized to sizes between 48 and 400 pixels per side and
    JPEG-encoded, so the TFDS `imagenet2012` builder and the JPEG pipelines run on
    real photographic content. The training archive contains the first `num_classes`
    synsets of the TFDS label list. The validation images take their labels from
    the TFDS validation label file, which spans all 1,000 classes, so most
    validation labels are classes without training images.

    Args:
        manual_dir: Directory to write ILSVRC2012_img_train.tar and
            ILSVRC2012_img_val.tar into; created if missing. Existing archives of
            those names are replaced.
        num_classes: Number of synsets in the training archive, 1 to 1000.
        train_per_class: Training images per synset, at least 1.
        num_val: Validation images, 1 to 50,000.
        seed: Seed of the crops and sizes; the same seed writes the same archives.
    """
    if not 1 <= num_classes <= _NUM_SYNSETS:
        raise ValueError(f"Invalid num_classes={num_classes!r}: expected 1 to {_NUM_SYNSETS}.")
    if train_per_class < 1:
        raise ValueError(f"Invalid train_per_class={train_per_class!r}: expected at least 1.")
    if not 1 <= num_val <= _NUM_VAL_IMAGES:
        raise ValueError(f"Invalid num_val={num_val!r}: expected 1 to {_NUM_VAL_IMAGES}.")

    manual_dir = pathlib.Path(manual_dir)
    manual_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    photos = list(sklearn_datasets.load_sample_images().images)
    synsets = _read_tfds_lines(_LABELS_FILE)[:num_classes]

    train_buffer = io.BytesIO()
    with tarfile.open(fileobj=train_buffer, mode="w") as train_archive:
        for wnid in synsets:
            synset_buffer = io.BytesIO()
            with tarfile.open(fileobj=synset_buffer, mode="w") as synset_archive:
                for number in range(1, train_per_class + 1):
                    jpeg = _jpeg_photo_crop(rng, photos)
                    _add_bytes(synset_archive, f"{wnid}_{number}.JPEG", jpeg)
            _add_bytes(train_archive, f"{wnid}.tar", synset_buffer.getvalue())
    _write_atomically(manual_dir / TRAIN_ARCHIVE, train_buffer.getvalue())

    val_buffer = io.BytesIO()
    with tarfile.open(fileobj=val_buffer, mode="w") as val_archive:
        for number in range(1, num_val + 1):
            jpeg = _jpeg_photo_crop(rng, photos)
            _add_bytes(val_archive, f"ILSVRC2012_val_{number:08d}.JPEG", jpeg)
    _write_atomically(manual_dir / VAL_ARCHIVE, val_buffer.getvalue())

    logging.info(
        "Wrote miniature ImageNet archives to %s: %d synsets x %d training images,"
        " %d validation images.",
        manual_dir, num_classes, train_per_class, num_val)


def miniature_validation_labels(num_val: int) -> list[str]:
    """Return the synset ids that TFDS assigns to the first `num_val` validation images."""
    return _read_tfds_lines(_VALIDATION_LABELS_FILE)[:num_val]


def prepare_miniature_imagenet(tmp_dir: os.PathLike | str, **miniature_kwargs) -> tuple[str, str]:
    """Write miniature archives under `tmp_dir` and prepare them with the real TFDS builder.

    Reuses the archives and the prepared dataset when an earlier call left them in
    `tmp_dir`, so tests can share one preparation. The keyword arguments only take
    effect on the first call for a directory.

    Args:
        tmp_dir: Scratch directory; receives `manual/` (the archives) and `tfds/` (the
            TFDS data directory).
        **miniature_kwargs: Passed to `write_miniature_imagenet`.

    Returns:
        `(data_dir, manual_dir)` to pass to the pipeline functions.
    """
    root = pathlib.Path(tmp_dir)
    manual_dir = root / "manual"
    data_dir = root / "tfds"
    if missing_archives(manual_dir):
        write_miniature_imagenet(manual_dir, **miniature_kwargs)
    builder = tfds.builder("imagenet2012", data_dir=os.fspath(data_dir))
    if not builder.is_prepared():
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir)))
    return os.fspath(data_dir), os.fspath(manual_dir)

"""Per-example decoding, augmentation and normalisation in TensorFlow ops.

Every function takes the encoded image bytes as stored by TFDS, so that the
pipelines can skip examples before paying for decoding. Random augmentation uses
only stateless ops driven by an explicit `key` (a shape-[2] integer seed), so the
same key always gives the same augmented image.

Augmentation per dataset:
  * digits: random shift of up to image_size // 16 pixels in each direction (2 at
    32x32, half a pixel of the 8x8 original) by zero-padding and random cropping.
    No flips or rotations, because mirrored or turned digits change meaning (2/5,
    6/9).
  * cifar10: random crop with 4-pixel zero padding at 32x32 (scaled with
    image_size) and random horizontal flip, the reference CIFAR-10 recipe.
  * imagenet2012: random-resized crop (area 8% to 100%, aspect 3/4 to 4/3) decoded
    directly from the JPEG, resize, random horizontal flip. Evaluation takes the
    central crop that "resize the shorter side to image_size * 256 / 224, crop
    image_size" selects.
"""

from __future__ import annotations

import tensorflow as tf

from fat_jax.data import specs

_PHILOX = "philox"
"""Explicit stateless RNG algorithm, so augmentation does not depend on the device."""

_CIFAR_PADDING = 4
"""Zero padding of the CIFAR-10 random crop at 32x32, in pixels."""

_IMAGENET_AREA_RANGE = (0.08, 1.0)
_IMAGENET_ASPECT_RANGE = (3.0 / 4.0, 4.0 / 3.0)
_IMAGENET_CROP_ATTEMPTS = 10
_IMAGENET_EVAL_CROP_FRACTION = 224.0 / 256.0
"""Shorter side of the evaluation crop over the shorter side of the image."""


def split_key(key: tf.Tensor, num: int) -> tf.Tensor:
    """Return `num` independent keys, shape (num, 2), derived from `key`."""
    return tf.random.experimental.stateless_split(key, num=num, alg=_PHILOX)


def fold_in(key: tf.Tensor, data: tf.Tensor) -> tf.Tensor:
    """Return the key derived from `key` and the integer `data`."""
    return tf.random.experimental.stateless_fold_in(key, tf.cast(data, tf.int64), alg=_PHILOX)


def normalize(image: tf.Tensor, spec: specs.DatasetSpec) -> tf.Tensor:
    """Map RGB values in [0, 1] to `(image - mean) / std` per channel."""
    mean = tf.constant(spec.mean, tf.float32)
    std = tf.constant(spec.std, tf.float32)
    return (image - mean) / std


def _resize(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """Resize to image_size x image_size, bilinear with antialiasing (as PIL does)."""
    resized = tf.image.resize(image, [image_size, image_size], method="bilinear", antialias=True)
    return tf.ensure_shape(resized, [image_size, image_size, image.shape[-1]])


def _pad_and_random_crop(image: tf.Tensor, padding: int, key: tf.Tensor) -> tf.Tensor:
    """Zero-pad each side by `padding` pixels and crop back to the input size at random."""
    if padding <= 0:
        return image
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    return tf.image.stateless_random_crop(padded, size=tf.shape(image), seed=key)


def _decode_png(image_bytes: tf.Tensor, channels: int) -> tf.Tensor:
    """Decode a PNG to float32 values in [0, 1]."""
    image = tf.io.decode_png(image_bytes, channels=channels)
    return tf.cast(image, tf.float32) / 255.0


# digits: 8x8 grayscale PNGs.


def _digits_base(image_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
    image = _decode_png(image_bytes, channels=1)
    image = tf.ensure_shape(image, [8, 8, 1])
    return _resize(image, image_size)


def digits_train(image_bytes, key, *, image_size, spec):
    """Augment a digit with a random shift (no flips) and return it as normalised RGB."""
    image = _digits_base(image_bytes, image_size)
    image = _pad_and_random_crop(image, max(1, image_size // 16), key)
    return normalize(tf.image.grayscale_to_rgb(image), spec)


def digits_eval(image_bytes, *, image_size, spec):
    """Resize a digit and return it as normalised RGB."""
    image = _digits_base(image_bytes, image_size)
    return normalize(tf.image.grayscale_to_rgb(image), spec)


# cifar10: 32x32 RGB PNGs.


def _cifar_base(image_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
    image = _decode_png(image_bytes, channels=3)
    image = tf.ensure_shape(image, [32, 32, 3])
    if image_size != 32:
        image = _resize(image, image_size)
    return image


def cifar_train(image_bytes, key, *, image_size, spec):
    """Random crop with zero padding and random horizontal flip, then normalise."""
    crop_key, flip_key = tf.unstack(split_key(key, 2))
    image = _cifar_base(image_bytes, image_size)
    padding = max(1, round(_CIFAR_PADDING * image_size / 32))
    image = _pad_and_random_crop(image, padding, crop_key)
    image = tf.image.stateless_random_flip_left_right(image, seed=flip_key)
    return normalize(image, spec)


def cifar_eval(image_bytes, *, image_size, spec):
    """Normalise (and resize when image_size is not 32)."""
    return normalize(_cifar_base(image_bytes, image_size), spec)


# imagenet2012: JPEGs of any size.


def _central_crop_window(jpeg_shape: tf.Tensor) -> tf.Tensor:
    """Return [top, left, height, width] of the central evaluation crop."""
    height, width = jpeg_shape[0], jpeg_shape[1]
    crop = tf.cast(
        _IMAGENET_EVAL_CROP_FRACTION * tf.cast(tf.minimum(height, width), tf.float32), tf.int32)
    crop = tf.maximum(crop, 1)
    top = (height - crop + 1) // 2
    left = (width - crop + 1) // 2
    return tf.stack([top, left, crop, crop])


def _decode_jpeg_window(image_bytes: tf.Tensor, window: tf.Tensor, image_size: int) -> tf.Tensor:
    image = tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)
    image = tf.cast(image, tf.float32) / 255.0
    return _resize(tf.ensure_shape(image, [None, None, 3]), image_size)


def imagenet_train(image_bytes, key, *, image_size, spec):
    """Random-resized crop decoded straight from the JPEG, random flip, normalise.

    The crop follows torchvision's RandomResizedCrop(scale=(0.08, 1)): up to 10
    attempts at a box with 8% to 100% of the image area and aspect ratio 3/4 to
    4/3. When every attempt fails, sample_distorted_bounding_box returns the whole
    image, and like the TensorFlow TPU ResNet pipeline (resnet_preprocessing.py)
    this function then takes the evaluation centre crop instead. The area range
    alone bounds the box (min_object_covered=0), matching torchvision, where the
    TPU pipeline also requires 10% of the image.
    """
    box_key, flip_key = tf.unstack(split_key(key, 2))
    jpeg_shape = tf.image.extract_jpeg_shape(image_bytes)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        jpeg_shape,
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, shape=[1, 1, 4]),
        seed=box_key,
        min_object_covered=0.0,
        aspect_ratio_range=_IMAGENET_ASPECT_RANGE,
        area_range=_IMAGENET_AREA_RANGE,
        max_attempts=_IMAGENET_CROP_ATTEMPTS,
        use_image_if_no_bounding_boxes=True)
    random_window = tf.stack([begin[0], begin[1], size[0], size[1]])
    whole_image = tf.reduce_all(tf.equal(size[:2], jpeg_shape[:2]))
    window = tf.where(whole_image, _central_crop_window(jpeg_shape), random_window)

    image = _decode_jpeg_window(image_bytes, window, image_size)
    image = tf.image.stateless_random_flip_left_right(image, seed=flip_key)
    return normalize(image, spec)


def imagenet_eval(image_bytes, *, image_size, spec):
    """Central crop (224/256 of the shorter side) decoded from the JPEG, resize, normalise."""
    jpeg_shape = tf.image.extract_jpeg_shape(image_bytes)
    image = _decode_jpeg_window(image_bytes, _central_crop_window(jpeg_shape), image_size)
    return normalize(image, spec)


TRAIN_FUNCTIONS = {"digits": digits_train, "cifar10": cifar_train, "imagenet2012": imagenet_train}
"""Per dataset: fn(image_bytes, key, *, image_size, spec) -> normalised float32 (H, W, 3)."""

EVAL_FUNCTIONS = {"digits": digits_eval, "cifar10": cifar_eval, "imagenet2012": imagenet_eval}
"""Per dataset: fn(image_bytes, *, image_size, spec) -> normalised float32 (H, W, 3)."""

"""Training and evaluation iterators over the supported datasets (tf.data, per host).

Training stream, per host: the host reads its slice of the training split
(`tfds.split_for_jax_process` with drop_remainder=True, so every host reads
`N // process_count` examples per epoch). Epoch e is that slice shuffled with a
seed derived from (seed, process_index, e). The epochs are chained, so a batch can
span an epoch boundary. Example p of epoch e is augmented with a key derived from
(seed, process_index, e, p). Both orders and augmentations are therefore functions
of the step alone. `start_step=s` rebuilds the stream at epoch
`s * local_batch // N_host`, skips the first `s * local_batch % N_host` examples
of that epoch before any image is decoded, and so yields exactly what an
uninterrupted iterator yields from step s on. Resuming requires the same seed, global batch size and process count.
"""

from __future__ import annotations

import math
import os
from typing import Iterator

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from fat_jax.data import loading
from fat_jax.data import preprocessing
from fat_jax.data import specs

# Runs at import, before this process uses TensorFlow, because it has no effect
# once TensorFlow has initialised its devices.
loading.hide_accelerators_from_tensorflow()

IMAGENET_SHUFFLE_BUFFER = 16_384
"""Shuffle buffer of imagenet2012, in encoded examples.

The full buffer contains about 1.8 GB of JPEG bytes (an estimate from a mean JPEG
size of about 110 KB). digits and cifar10 shuffle their whole host slice (cifar10:
50,000 PNGs of about 2.5 KB each), so each of their epochs is a uniform permutation.
"""

_SKIP_IMAGE_DECODING = {"image": tfds.decode.SkipDecoding()}


def _resolve_processes(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    if process_index is None:
        process_index = jax.process_index()
    if process_count is None:
        process_count = jax.process_count()
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(
            f"Invalid process_index={process_index!r} for process_count={process_count!r}:"
            " expected 0 <= process_index < process_count.")
    return process_index, process_count


def _resolve_image_size(image_size: int | None, spec: specs.DatasetSpec) -> int:
    if image_size is None:
        return spec.image_size
    if image_size < 1:
        raise ValueError(f"Invalid image_size={image_size!r}: expected a positive integer or None.")
    return image_size


def _local_batch_size(global_batch_size: int, process_count: int) -> int:
    if global_batch_size < 1:
        raise ValueError(
            f"Invalid global_batch_size={global_batch_size!r}: expected a positive integer.")
    if global_batch_size % process_count:
        raise ValueError(
            f"global_batch_size={global_batch_size} is not divisible by process_count="
            f"{process_count}: every host must get the same number of examples per batch.")
    return global_batch_size // process_count


def _dataset_options() -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True
    return options


def _read_encoded(builder: tfds.core.DatasetBuilder, split) -> tf.data.Dataset:
    """Read (image bytes, label) pairs of `split` in the stored order, without decoding."""
    records = builder.as_dataset(
        split=split,
        shuffle_files=False,
        decoders=_SKIP_IMAGE_DECODING,
        read_config=tfds.ReadConfig(options=_dataset_options()),
    )
    return records.map(lambda example: (example["image"], example["label"]))


def num_examples(
    name: str,
    split: str,
    *,
    data_dir: os.PathLike | str | None = None,
    manual_dir: os.PathLike | str | None = None,
) -> int:
    """Return the number of examples in `split` of dataset `name`, preparing it if needed.

    Raises:
        ValueError: `name` is unknown, or `split` is not a prepared split.
        MissingImageNetArchivesError: see `loading.load_builder`.
    """
    builder = loading.load_builder(name, data_dir=data_dir, manual_dir=manual_dir)
    loading.check_split(builder, split)
    return builder.info.splits[split].num_examples


def steps_per_epoch(
    name: str,
    global_batch_size: int,
    *,
    data_dir: os.PathLike | str | None = None,
    manual_dir: os.PathLike | str | None = None,
) -> int:
    """Return ceil(training examples / global_batch_size), the optimizer steps of one epoch.

    Rounding up matches a PyTorch DataLoader without drop_last, as in the
    reference recipes (196 steps per CIFAR-10 epoch at batch 256). The training
    stream is continuous across epochs, so every step gets a full batch. A
    "trainer epoch" of this many steps therefore reads up to one batch more than
    the split, and the data epochs of the hosts omit up to process_count - 1
    remainder examples.
    """
    if global_batch_size < 1:
        raise ValueError(
            f"Invalid global_batch_size={global_batch_size!r}: expected a positive integer.")
    spec = specs.get_spec(name)
    total = num_examples(name, spec.train_split, data_dir=data_dir, manual_dir=manual_dir)
    return math.ceil(total / global_batch_size)


def train_iterator(
    name: str,
    *,
    global_batch_size: int,
    seed: int,
    start_step: int = 0,
    image_size: int | None = None,
    data_dir: os.PathLike | str | None = None,
    manual_dir: os.PathLike | str | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    augment: bool = True,
) -> Iterator[dict[str, np.ndarray]]:
    """Return an infinite iterator over this host's slice of each global training batch.

    Each batch is {"image": float32 (local_batch, H, W, 3) normalised, "label":
    int32 (local_batch,)} with local_batch = global_batch_size // process_count.
    See the module docstring for the order, the augmentation keys and how
    `start_step` resumes.

    Args:
        name: A supported dataset name.
        global_batch_size: Examples per step over all hosts.
        seed: Seed of the shuffling and augmentation (an int64).
        start_step: First step to yield; the batches equal those that an
            uninterrupted iterator yields from this step on.
        image_size: Output height and width; None selects the dataset's native size.
        data_dir: TFDS data directory; None selects the TFDS default.
        manual_dir: ImageNet archive directory; see `loading.load_builder`.
        process_index: This host's index; None selects jax.process_index().
        process_count: Number of hosts; None selects jax.process_count().
        augment: False replaces the random augmentation by the evaluation
            preprocessing (order stays shuffled), for inspection and tests.

    Raises:
        ValueError: invalid arguments, or a split smaller than process_count.
        MissingImageNetArchivesError: see `loading.load_builder`.
    """
    spec = specs.get_spec(name)
    image_size = _resolve_image_size(image_size, spec)
    process_index, process_count = _resolve_processes(process_index, process_count)
    local_batch = _local_batch_size(global_batch_size, process_count)
    if start_step < 0:
        raise ValueError(f"Invalid start_step={start_step!r}: expected a non-negative integer.")

    builder = loading.load_builder(name, data_dir=data_dir, manual_dir=manual_dir)
    loading.check_split(builder, spec.train_split)
    host_split = tfds.split_for_jax_process(
        spec.train_split, process_index=process_index, process_count=process_count,
        drop_remainder=True)
    examples_per_epoch = builder.info.splits[host_split].num_examples
    if examples_per_epoch == 0:
        raise ValueError(
            f"Split {spec.train_split!r} of {name} has fewer examples than process_count="
            f"{process_count}, so host {process_index} gets none.")
    start_epoch, skip_in_epoch = divmod(start_step * local_batch, examples_per_epoch)

    records = _read_encoded(builder, host_split)
    # NOTE: every epoch reads the records in the same stored order, which TFDS
    # shuffled once at preparation. When the host slice exceeds the buffer
    # (imagenet2012), an epoch is therefore only reshuffled within windows of
    # about IMAGENET_SHUFFLE_BUFFER examples, and each epoch starts by refilling it.
    shuffle_buffer = examples_per_epoch
    if name == "imagenet2012":
        shuffle_buffer = min(examples_per_epoch, IMAGENET_SHUFFLE_BUFFER)
    host_key = tf.constant([seed, process_index], tf.int64)

    def epoch_examples(epoch):
        shuffle_key, augment_key = tf.unstack(
            preprocessing.split_key(preprocessing.fold_in(host_key, epoch), 2))
        shuffle_seed = tf.random.stateless_uniform(
            [], seed=shuffle_key, minval=None, maxval=None, dtype=tf.int64, alg="philox")
        shuffled = records.shuffle(
            shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=False)
        return shuffled.enumerate().map(
            lambda position, example: (*example, preprocessing.fold_in(augment_key, position)))

    train_fn = preprocessing.TRAIN_FUNCTIONS[name]
    eval_fn = preprocessing.EVAL_FUNCTIONS[name]

    # Plain TensorFlow ops: AutoGraph has nothing to convert, and converting a
    # closure rebuilt on every call only logs warnings.
    @tf.autograph.experimental.do_not_convert
    def preprocess(image_bytes, label, key):
        if augment:
            image = train_fn(image_bytes, key, image_size=image_size, spec=spec)
        else:
            image = eval_fn(image_bytes, image_size=image_size, spec=spec)
        return {"image": image, "label": tf.cast(label, tf.int32)}

    stream = tf.data.Dataset.counter(start=start_epoch).flat_map(epoch_examples)
    # Skipping happens on encoded bytes, before the decoding map below.
    stream = stream.skip(skip_in_epoch)
    stream = stream.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    stream = stream.batch(local_batch, drop_remainder=True)
    stream = stream.prefetch(tf.data.AUTOTUNE).with_options(_dataset_options())
    return stream.as_numpy_iterator()


def eval_iterator(
    name: str,
    *,
    global_batch_size: int,
    image_size: int | None = None,
    data_dir: os.PathLike | str | None = None,
    manual_dir: os.PathLike | str | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Return an iterator over one pass of this host's slice of the evaluation split.

    Each batch is {"image": float32 (local_batch, H, W, 3), "label": int32
    (local_batch,), "mask": bool (local_batch,)}. Over all hosts every example
    appears exactly once with mask True, in the stored order. Each host pads its
    last batches with zero images (label 0, mask False) to
    ceil(ceil(N / process_count) / local_batch) batches, so all hosts yield the
    same number of batches and no example is dropped.

    Raises:
        ValueError: invalid arguments or an empty split.
        MissingImageNetArchivesError: see `loading.load_builder`.
    """
    spec = specs.get_spec(name)
    image_size = _resolve_image_size(image_size, spec)
    process_index, process_count = _resolve_processes(process_index, process_count)
    local_batch = _local_batch_size(global_batch_size, process_count)

    builder = loading.load_builder(name, data_dir=data_dir, manual_dir=manual_dir)
    loading.check_split(builder, spec.eval_split)
    total = builder.info.splits[spec.eval_split].num_examples
    if total == 0:
        raise ValueError(f"Split {spec.eval_split!r} of {name} is empty.")
    host_split = tfds.split_for_jax_process(
        spec.eval_split, process_index=process_index, process_count=process_count)
    host_examples = builder.info.splits[host_split].num_examples
    num_batches = math.ceil(math.ceil(total / process_count) / local_batch)

    eval_fn = preprocessing.EVAL_FUNCTIONS[name]

    # Plain TensorFlow ops: AutoGraph has nothing to convert, and converting a
    # closure rebuilt on every call only logs warnings.
    @tf.autograph.experimental.do_not_convert
    def preprocess(image_bytes, label):
        image = eval_fn(image_bytes, image_size=image_size, spec=spec)
        return {"image": image, "label": tf.cast(label, tf.int32), "mask": tf.constant(True)}

    padding = tf.data.Dataset.from_tensors({
        "image": tf.zeros([image_size, image_size, 3], tf.float32),
        "label": tf.constant(0, tf.int32),
        "mask": tf.constant(False),
    }).repeat()
    if host_examples:
        examples = _read_encoded(builder, host_split).map(
            preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        stream = examples.concatenate(padding)
    else:
        stream = padding
    stream = stream.take(num_batches * local_batch).batch(local_batch)
    stream = stream.prefetch(tf.data.AUTOTUNE).with_options(_dataset_options())
    return stream.as_numpy_iterator()

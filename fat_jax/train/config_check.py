"""Validation of a training config before any compilation or data loading.

`validate_fields` checks everything that needs neither devices nor data, so the
command line runs it before it imports TensorFlow or starts JAX's distributed
runtime. `validate_for_devices` checks what depends on the device and process
counts. `validate` runs both.
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

import ml_collections

from fat_jax import quantizers, torch_weights
from fat_jax.quant_config import FLOAT_BITS

BN_STATS = ("global", "per_device")
"""BatchNorm statistics over the global batch, or over each device's slice."""

# Fields that change how long or how verbosely a run goes, not what it computes. A
# workdir's checkpoints may be resumed under a config that differs only in these.
RUN_CONTROL_FIELDS = (
    "num_epochs", "num_train_steps", "log_every_steps", "checkpoint_every_steps",
    "keep_checkpoints", "eval_every_epochs", "eval_batch_size", "dataset.data_dir",
    "dataset.manual_dir", "debug.nan_at_step",
)

STATE_DICT_SUFFIXES = (torch_weights.SAFETENSORS_SUFFIX, *torch_weights.TORCH_SUFFIXES)
"""File suffixes that `init_from` accepts as a PyTorch state dict."""


class ConfigError(ValueError):
    """An invalid config field; the message names the field, the value and the fix."""

    def __init__(self, field: str, value: Any, expected: str):
        self.field = field
        self.value = value
        super().__init__(f"Invalid config.{field}={value!r}: expected {expected}.")


def _get(config: ml_collections.ConfigDict, field: str) -> Any:
    value = config
    for key in field.split("."):
        value = value[key]
    return value


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive(config: ml_collections.ConfigDict, field: str, kind: type = int) -> None:
    value = _get(config, field)
    if kind is int:
        valid = _is_integer(value) and value > 0
    else:
        valid = (isinstance(value, (int, float)) and not isinstance(value, bool)
                 and value > 0 and value != float("inf"))
    if not valid:
        raise ConfigError(field, value, f"a positive {'integer' if kind is int else 'number'}")


def _choice(config: ml_collections.ConfigDict, field: str, choices) -> None:
    value = _get(config, field)
    if value not in choices:
        raise ConfigError(field, value, "one of " + ", ".join(map(str, choices)))


def _check_quant(config: ml_collections.ConfigDict) -> None:
    for field in ("quant.weight_bits", "quant.act_bits"):
        bits = _get(config, field)
        if bits != FLOAT_BITS or not _is_integer(bits):
            try:
                quantizers.check_bits(bits, field)
            except (ValueError, TypeError):
                raise ConfigError(field, bits, f"an integer from {quantizers.MIN_BITS} to"
                                  f" {quantizers.MAX_BITS}, or {FLOAT_BITS} for full"
                                  " precision") from None
    if (config.quant.weight_bits == FLOAT_BITS) != (config.quant.act_bits == FLOAT_BITS):
        raise ConfigError("quant.act_bits", config.quant.act_bits,
                          f"{FLOAT_BITS} together with weight_bits={FLOAT_BITS}, or both 2 to 8")
    _choice(config, "quant.grid", quantizers.GRIDS)
    _choice(config, "quant.act_alpha_grad", quantizers.ALPHA_GRADS)
    _choice(config, "quant.strict", (True, False))
    for field in ("quant.weight_alpha_init", "quant.act_alpha_init",
                  "quant.uniform_act_alpha_init"):
        _positive(config, field, float)


def _check_optimizer(config: ml_collections.ConfigDict) -> None:
    optimizer = config.optimizer
    order = list(optimizer.group_order)
    if sorted(order) != sorted(optimizer.groups.keys()):
        raise ConfigError("optimizer.group_order", tuple(order),
                          "each name of optimizer.groups exactly once: "
                          + ", ".join(sorted(optimizer.groups.keys())))
    for name in order:
        _positive(config, f"optimizer.groups.{name}.lr", float)
        decay = optimizer.groups[name].weight_decay
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not decay >= 0:
            raise ConfigError(f"optimizer.groups.{name}.weight_decay", decay,
                              "a non-negative number")
        try:
            re.compile(optimizer.groups[name].pattern)
        except (re.error, TypeError) as error:
            raise ConfigError(f"optimizer.groups.{name}.pattern",
                              optimizer.groups[name].pattern, f"a valid regex ({error})") from None
    if not 0 <= optimizer.momentum < 1:
        raise ConfigError("optimizer.momentum", optimizer.momentum, "a number in [0, 1)")
    if not 0 < optimizer.decay_factor <= 1:
        raise ConfigError("optimizer.decay_factor", optimizer.decay_factor, "a number in (0, 1]")
    for epoch in optimizer.decay_epochs:
        if isinstance(epoch, bool) or not isinstance(epoch, (int, float)) or not epoch > 0:
            raise ConfigError("optimizer.decay_epochs", tuple(optimizer.decay_epochs),
                              "positive numbers of epochs")


def _check_init_from(path: str) -> None:
    if not path:
        return
    source = pathlib.Path(path)
    if source.is_dir():
        if not (source / "checkpoints").is_dir():
            raise ConfigError("init_from", path,
                              "a run workdir that contains a checkpoints/ directory")
    elif source.is_file():
        if not path.endswith(STATE_DICT_SUFFIXES):
            raise ConfigError("init_from", path, "a state-dict file ending in "
                              + ", ".join(STATE_DICT_SUFFIXES))
    else:
        raise ConfigError("init_from", path,
                          "an existing run workdir or a .safetensors/.pth state-dict file")


def validate_fields(config: ml_collections.ConfigDict, *, architectures, datasets) -> None:
    """Raise ConfigError for the first invalid field that needs no devices or data.

    Args:
      config: the training config.
      architectures: accepted `model.arch` names.
      datasets: accepted `dataset.name` names.
    """
    _choice(config, "model.arch", sorted(architectures))
    _choice(config, "dataset.name", sorted(datasets))
    _check_quant(config)
    _choice(config, "bn_stats", BN_STATS)

    if not _is_integer(config.seed):
        raise ConfigError("seed", config.seed, "an integer")
    for field in ("batch_size", "eval_batch_size", "num_epochs", "log_every_steps",
                  "checkpoint_every_steps", "keep_checkpoints", "eval_every_epochs"):
        _positive(config, field)
    if config.num_train_steps != -1:
        _positive(config, "num_train_steps")
    if config.dataset.image_size:
        _positive(config, "dataset.image_size")
    shards = config.dataset.input_shards
    if not _is_integer(shards) or shards < 0:
        raise ConfigError("dataset.input_shards", shards,
                          "a non-negative integer (0 = one per process)")
    if shards and config.batch_size % shards:
        raise ConfigError("batch_size", config.batch_size,
                          f"a multiple of dataset.input_shards ({shards})")
    nan_at_step = config.debug.nan_at_step
    if not _is_integer(nan_at_step) or (nan_at_step != -1 and nan_at_step < 1):
        raise ConfigError("debug.nan_at_step", nan_at_step, "-1 (off) or a step number >= 1")

    _check_optimizer(config)
    if not 0 <= config.label_smoothing < 1:
        raise ConfigError("label_smoothing", config.label_smoothing, "a number in [0, 1)")
    _check_init_from(config.init_from)


def validate_for_devices(config: ml_collections.ConfigDict, *, device_count: int,
                         process_count: int = 1) -> None:
    """Raise ConfigError when the batches or input shards do not divide over the hardware."""
    for field in ("batch_size", "eval_batch_size"):
        if _get(config, field) % device_count:
            raise ConfigError(field, _get(config, field),
                              f"a multiple of the device count ({device_count})")
    shards = config.dataset.input_shards
    if shards and shards % process_count:
        raise ConfigError("dataset.input_shards", shards,
                          f"0 or a multiple of the process count ({process_count})")


def validate(config: ml_collections.ConfigDict, *, architectures, datasets,
             device_count: int | None = None, process_count: int | None = None) -> None:
    """Raise ConfigError for the first invalid field of a training config.

    Args:
      config: the training config.
      architectures: accepted `model.arch` names.
      datasets: accepted `dataset.name` names.
      device_count: devices the global batch is split over (default: all devices).
      process_count: processes that read the input (default: all processes).
    """
    validate_fields(config, architectures=architectures, datasets=datasets)
    if device_count is None or process_count is None:
        import jax  # Imported here: callers of validate_fields need no JAX backend.
        device_count = device_count or jax.device_count()
        process_count = process_count or jax.process_count()
    validate_for_devices(config, device_count=device_count, process_count=process_count)


def differing_fields(saved: dict[str, Any], current: dict[str, Any],
                     ignore: tuple[str, ...] = RUN_CONTROL_FIELDS) -> list[str]:
    """Return 'field: saved -> current' lines for fields that differ, ignoring run control."""
    def flatten(tree, prefix=""):
        flat = {}
        for key, value in tree.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                flat.update(flatten(value, name + "."))
            else:
                flat[name] = list(value) if isinstance(value, tuple) else value
        return flat

    old, new = flatten(saved), flatten(current)
    lines = []
    for name in sorted(set(old) | set(new)):
        if name in ignore:
            continue
        if old.get(name, "<absent>") != new.get(name, "<absent>"):
            lines.append(f"{name}: {old.get(name, '<absent>')!r} -> {new.get(name, '<absent>')!r}")
    return lines

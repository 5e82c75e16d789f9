"""Validation of a training config before any compilation or data loading."""

from __future__ import annotations

import os
import re
from typing import Any

import jax
import ml_collections

from fat_jax import quantizers
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


class ConfigError(ValueError):
    """An invalid config field; the message names the field, the value and the fix."""

    def __init__(self, field: str, value: Any, expected: str):
        self.field = field
        super().__init__(f"Invalid config.{field}={value!r}: expected {expected}.")


def _positive(config: ml_collections.ConfigDict, field: str, kind: type = int) -> None:
    value = _get(config, field)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or (
            kind is int and int(value) != value):
        raise ConfigError(field, value, f"a positive {'integer' if kind is int else 'number'}")


def _get(config: ml_collections.ConfigDict, field: str) -> Any:
    value = config
    for key in field.split("."):
        value = value[key]
    return value


def _choice(config, field: str, choices) -> None:
    value = _get(config, field)
    if value not in choices:
        raise ConfigError(field, value, "one of " + ", ".join(map(str, choices)))


def validate(config: ml_collections.ConfigDict, *, architectures, datasets,
             device_count: int | None = None) -> None:
    """Raise ConfigError for the first invalid field of a training config.

    Args:
      config: the training config.
      architectures: accepted `model.arch` names.
      datasets: accepted `dataset.name` names.
      device_count: devices the global batch is split over (default: all devices).
    """
    _choice(config, "model.arch", sorted(architectures))
    _choice(config, "dataset.name", sorted(datasets))
    for field in ("quant.weight_bits", "quant.act_bits"):
        bits = _get(config, field)
        if bits != FLOAT_BITS:
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
    _choice(config, "bn_stats", BN_STATS)

    for field in ("batch_size", "eval_batch_size", "num_epochs", "log_every_steps",
                  "checkpoint_every_steps", "keep_checkpoints", "eval_every_epochs"):
        _positive(config, field)
    if config.num_train_steps != -1:
        _positive(config, "num_train_steps")
    if config.dataset.image_size:
        _positive(config, "dataset.image_size")
    device_count = device_count or jax.device_count()
    for field in ("batch_size", "eval_batch_size"):
        if _get(config, field) % device_count:
            raise ConfigError(field, _get(config, field),
                              f"a multiple of the device count ({device_count})")

    optimizer = config.optimizer
    order = list(optimizer.group_order)
    if sorted(order) != sorted(optimizer.groups.keys()):
        raise ConfigError("optimizer.group_order", tuple(order),
                          "each name of optimizer.groups exactly once: "
                          + ", ".join(sorted(optimizer.groups.keys())))
    for name in order:
        _positive(config, f"optimizer.groups.{name}.lr", float)
        decay = optimizer.groups[name].weight_decay
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or decay < 0:
            raise ConfigError(f"optimizer.groups.{name}.weight_decay", decay,
                              "a non-negative number")
        try:
            re.compile(optimizer.groups[name].pattern)
        except re.error as error:
            raise ConfigError(f"optimizer.groups.{name}.pattern",
                              optimizer.groups[name].pattern, f"a valid regex ({error})") from None
    if not 0 <= optimizer.momentum < 1:
        raise ConfigError("optimizer.momentum", optimizer.momentum, "a number in [0, 1)")
    if not 0 < optimizer.decay_factor <= 1:
        raise ConfigError("optimizer.decay_factor", optimizer.decay_factor, "a number in (0, 1]")
    if not 0 <= config.label_smoothing < 1:
        raise ConfigError("label_smoothing", config.label_smoothing, "a number in [0, 1)")

    if config.init_from and not os.path.exists(config.init_from):
        raise ConfigError("init_from", config.init_from,
                          "an existing run workdir or a .safetensors/.pth state-dict file")


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

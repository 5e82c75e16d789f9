"""Shared pieces of the experiment configs: the base config, recipes and ARGS parsing.

Every config file defines `get_config(arg=None)`. `arg` is the text after the colon in
`--config=configs/NAME.py:ARGS`, a comma-separated list of `key=value` items and bare
flags, for example `bits=3,grid=log` or `runlocal`; `parse_arg` reads it against the
defaults that the config file declares.
"""

from __future__ import annotations

import types
from typing import Any

import ml_collections

CIFAR10_EPOCHS = 400
IMAGENET_EPOCHS = 120


def parse_arg(arg: str | None, **defaults: Any) -> types.SimpleNamespace:
    """Parse 'key=value,flag' against `defaults`, converting each value to its default's type.

    A bare word sets a boolean default to True. Unknown keys and unconvertible values
    raise ValueError naming the item and the accepted keys.
    """
    values = dict(defaults)
    for item in filter(None, (part.strip() for part in (arg or "").split(","))):
        key, has_value, text = item.partition("=")
        key = key.strip()
        if key not in defaults:
            raise ValueError(f"Invalid config argument {item!r}: expected keys "
                             f"{', '.join(sorted(defaults))}.")
        default = defaults[key]
        if not has_value:
            if not isinstance(default, bool):
                raise ValueError(f"Invalid config argument {item!r}: {key} needs a value"
                                 f" ({key}=...).")
            values[key] = True
        elif isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"Invalid config argument {item!r}: expected true or false.")
            values[key] = text.lower() in ("true", "1")
        else:
            try:
                values[key] = type(default)(text) if default is not None else text
            except ValueError:
                kind = {int: "an integer", float: "a number"}.get(type(default), "text")
                raise ValueError(f"Invalid config argument {item!r}: expected {kind}.") from None
    return types.SimpleNamespace(**values)


def experiment_name(dataset: str, arch: str, bits: int, grid: str) -> str:
    precision = "fp32" if bits == 32 else f"w{bits}a{bits}_{grid}"
    return f"{dataset}_{arch}_{precision}"


def base_config() -> ml_collections.ConfigDict:
    """Return every field of a training config with neutral defaults."""
    config = ml_collections.ConfigDict()
    # Name of the run; the default workdir is workdirs/<experiment>.
    config.experiment = "run"
    # Seed of parameter init, input order, augmentation and dropout.
    config.seed = 0

    config.dataset = ml_collections.ConfigDict()
    # "digits", "cifar10" or "imagenet2012".
    config.dataset.name = "digits"
    # TFDS data directory ("" = TFDS default, usually ~/tensorflow_datasets).
    config.dataset.data_dir = ""
    # ImageNet archives ("" = $FAT_JAX_IMAGENET_DIR, else <data_dir>/downloads/manual).
    config.dataset.manual_dir = ""
    # Training and evaluation resolution (0 = the dataset's native size).
    config.dataset.image_size = 0
    # Number of slices the training split is read in, each with its own shuffle
    # (0 = one per process). Each process reads input_shards / process_count of them.
    # The input order depends on this number, not on the process or device count, so
    # fix it to compare or resume runs on different numbers of processes.
    config.dataset.input_shards = 0

    config.model = ml_collections.ConfigDict()
    # Architecture name, see fat_jax.models.ARCHITECTURES.
    config.model.arch = "resnet20"

    # Fields of fat_jax.QuantConfig.
    config.quant = ml_collections.ConfigDict()
    config.quant.weight_bits = 4
    config.quant.act_bits = 4
    config.quant.grid = "uniform"
    config.quant.act_alpha_grad = "lsq"
    config.quant.strict = False
    config.quant.weight_alpha_init = 3.0
    config.quant.act_alpha_init = 5.0
    config.quant.uniform_act_alpha_init = 5.0

    # Global batch sizes, split over all devices of all hosts.
    config.batch_size = 256
    config.eval_batch_size = 256
    config.num_epochs = 1
    # Stop after this many steps when positive (short runs and tests); -1 = all epochs.
    config.num_train_steps = -1
    # Cross-entropy target = (1 - eps) * one_hot + eps / num_classes.
    config.label_smoothing = 0.0
    # "global": BatchNorm statistics over the global batch (device-count independent);
    # "per_device": over each device's slice, as the reference's multi-GPU runs.
    config.bn_stats = "global"
    # A run workdir (its best checkpoint) or a torchvision .safetensors/.pth file.
    config.init_from = ""

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.momentum = 0.9
    config.optimizer.nesterov = False
    # The learning rate of every group is multiplied by decay_factor at these epochs.
    config.optimizer.decay_epochs = ()
    config.optimizer.decay_factor = 0.1
    # Parameter groups: a parameter joins the first group in group_order whose regex
    # pattern matches its "/"-joined path, e.g. "layer1_0/conv1/act_alpha".
    config.optimizer.groups = ml_collections.ConfigDict({
        "default": {"pattern": ".*", "lr": 0.1, "weight_decay": 1e-4},
    })
    config.optimizer.group_order = ("default",)

    config.log_every_steps = 50
    config.checkpoint_every_steps = 1000
    # Keep the newest K checkpoints, plus the best one by evaluation top-1.
    config.keep_checkpoints = 3
    config.eval_every_epochs = 1

    config.debug = ml_collections.ConfigDict()
    # Replace the loss of this step (counting from 1, as the logs do) by NaN, to test
    # the divergence check; -1 = off.
    config.debug.nan_at_step = -1
    return config


def set_cifar10_groups(config: ml_collections.ConfigDict, *, base_lr: float = 0.04) -> None:
    """Set the reference's three CIFAR-10 groups: activation alphas, FAT parameters, the rest."""
    config.optimizer.groups = ml_collections.ConfigDict({
        "act_alpha": {"pattern": r"act_alpha$", "lr": 0.1, "weight_decay": 1e-4},
        "fat": {"pattern": r"(weight_alpha|transform)$", "lr": 0.02, "weight_decay": 1e-4},
        "default": {"pattern": r".*", "lr": base_lr, "weight_decay": 5e-4},
    })
    config.optimizer.group_order = ("act_alpha", "fat", "default")


def set_quant(config: ml_collections.ConfigDict, bits: int, grid: str) -> None:
    config.quant.weight_bits = bits
    config.quant.act_bits = bits
    config.quant.grid = grid


def cifar10_config(arch: str, arg: str | None, *, batch_size: int = 256,
                   default_bits: int = 4) -> ml_collections.ConfigDict:
    """Return the reference CIFAR-10 recipe for `arch`, with ARGS bits, grid, runlocal."""
    args = parse_arg(arg, bits=default_bits, grid="uniform", runlocal=False)
    config = base_config()
    config.experiment = experiment_name("cifar10", arch, args.bits, args.grid)
    config.dataset.name = "cifar10"
    config.model.arch = arch
    set_quant(config, args.bits, args.grid)
    config.quant.act_alpha_init = 5.0
    config.quant.act_alpha_grad = "lsq"
    config.batch_size = batch_size
    config.eval_batch_size = 500
    config.num_epochs = CIFAR10_EPOCHS
    config.optimizer.decay_epochs = (150, 225)
    if args.bits == 32:
        # Full-precision pretraining: one learning rate of 0.1 for everything.
        set_cifar10_groups(config, base_lr=0.1)
    else:
        set_cifar10_groups(config)
    if args.runlocal:
        config.batch_size = 32
        config.eval_batch_size = 100
        config.num_train_steps = 20
        config.log_every_steps = 5
    return config


def imagenet_config(arch: str, arg: str | None, *, batch_size: int = 512,
                    default_bits: int = 4) -> ml_collections.ConfigDict:
    """Return the reference ImageNet recipe for `arch`, with ARGS bits, grid, runlocal."""
    args = parse_arg(arg, bits=default_bits, grid="uniform", runlocal=False)
    config = base_config()
    config.experiment = experiment_name("imagenet", arch, args.bits, args.grid)
    config.dataset.name = "imagenet2012"
    config.model.arch = arch
    set_quant(config, args.bits, args.grid)
    config.quant.act_alpha_init = 8.0
    config.quant.uniform_act_alpha_init = 5.0
    config.quant.act_alpha_grad = "pact"
    config.batch_size = batch_size
    config.eval_batch_size = 500
    config.num_epochs = IMAGENET_EPOCHS
    config.label_smoothing = 0.01
    config.optimizer.decay_epochs = (30, 60, 90)
    config.optimizer.groups = ml_collections.ConfigDict({
        "default": {"pattern": r".*", "lr": 0.01, "weight_decay": 1e-4},
    })
    config.optimizer.group_order = ("default",)
    config.log_every_steps = 100
    config.checkpoint_every_steps = 2000
    if args.runlocal:
        config.dataset.image_size = 64
        config.batch_size = 8
        config.eval_batch_size = 8
        config.num_train_steps = 4
        config.log_every_steps = 1
    return config

"""Model zoo: the CIFAR-10 and ImageNet models of FAT with the reference layer placement.

`create(name, num_classes=..., quant=...)` builds a Flax Linen model, called as
`model.apply(variables, images_nhwc, train=bool)`; training needs
`mutable=["batch_stats"]` and, for VGG-small and MobileNetV2, a "dropout" rng.
Every model has an 8-bit first conv and last dense layer, even at full precision.

Submodule names follow the PyTorch module names with `_` for `.` (see each family's
module docstring), which `fat_jax.torch_weights` uses to map state dicts.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import numpy as np

from fat_jax.models.mobilenetv2 import InvertedResidual, MobileNetV2
from fat_jax.models.resnet_blocks import BasicBlock, Bottleneck
from fat_jax.models.resnet_cifar import CifarResNet
from fat_jax.models.resnet_imagenet import ResNet
from fat_jax.models.vgg_small import VGGSmall
from fat_jax.quant_config import QuantConfig

FAMILIES = ("cifar", "imagenet")


@dataclasses.dataclass(frozen=True)
class Architecture:
    """Registry entry of a model.

    Attributes:
        family: "cifar" (CIFAR-10 recipe) or "imagenet" (ImageNet recipe).
        resolution: native input height and width in pixels.
        stem: PyTorch module name of the 8-bit first conv.
        head: PyTorch module name of the 8-bit last dense layer.
    """

    family: str
    resolution: int
    stem: str
    head: str


ARCHITECTURES: dict[str, Architecture] = {
    "resnet20": Architecture("cifar", 32, "conv1", "linear"),
    "resnet32": Architecture("cifar", 32, "conv1", "linear"),
    "resnet44": Architecture("cifar", 32, "conv1", "linear"),
    "resnet56": Architecture("cifar", 32, "conv1", "linear"),
    "resnet110": Architecture("cifar", 32, "conv1", "linear"),
    "vgg_small": Architecture("cifar", 32, "features.conv0", "classifier.linear2"),
    "resnet18": Architecture("imagenet", 224, "conv1", "fc"),
    "resnet34": Architecture("imagenet", 224, "conv1", "fc"),
    "resnet50": Architecture("imagenet", 224, "conv1", "fc"),
    "mobilenetv2": Architecture("imagenet", 224, "features.0.0", "classifier.1"),
}
"""Registered model names and their input resolution, recipe family and 8-bit layers."""

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "resnet20": functools.partial(CifarResNet, depth=20),
    "resnet32": functools.partial(CifarResNet, depth=32),
    "resnet44": functools.partial(CifarResNet, depth=44),
    "resnet56": functools.partial(CifarResNet, depth=56),
    "resnet110": functools.partial(CifarResNet, depth=110),
    "vgg_small": VGGSmall,
    "resnet18": functools.partial(ResNet, depth=18),
    "resnet34": functools.partial(ResNet, depth=34),
    "resnet50": functools.partial(ResNet, depth=50),
    "mobilenetv2": MobileNetV2,
}

# Activation settings of the reference's ImageNet code: PACT-like alpha gradient and
# act_alpha init 8.0 for FAT convs (5.0 for uniform convs, the QuantConfig default).
_IMAGENET_QUANT_DEFAULTS = {"act_alpha_grad": "pact", "act_alpha_init": 8.0}

# Parameter leaves that PyTorch's `model.parameters()` would count: conv and dense
# weights, dense biases, BatchNorm weights (`scale`) and biases.
_FLOAT_PARAM_NAMES = ("kernel", "bias", "scale")


def architecture(name: str) -> Architecture:
    """Return the registry entry of `name`, or raise ValueError listing the known names."""
    if name not in ARCHITECTURES:
        raise ValueError(
            f"Unknown model {name!r}: expected one of {', '.join(ARCHITECTURES)}.")
    return ARCHITECTURES[name]


def create(name: str, *, num_classes: int, quant: QuantConfig, **kwargs: Any) -> nn.Module:
    """Build the registered model `name`.

    Args:
        name: a key of `ARCHITECTURES`.
        num_classes: output logits.
        quant: quantization settings.
        **kwargs: other attributes of the model class (e.g. `dropout_rate`).

    Raises:
        ValueError: for an unknown name.
    """
    architecture(name)
    if not isinstance(quant, QuantConfig):
        raise TypeError(f"Invalid quant={quant!r}: expected a QuantConfig.")
    return _BUILDERS[name](num_classes=num_classes, quant=quant, **kwargs)


def reference_quant_config(name: str, bits: int, grid: str = "uniform",
                           **overrides: Any) -> QuantConfig:
    """Return the WbAb QuantConfig that the reference uses for model `name`.

    CIFAR-10 models use the QuantConfig defaults (LSQ-like activation alpha gradient,
    act_alpha init 5.0). ImageNet models use the PACT-like gradient and act_alpha init
    8.0 for FAT convs. `overrides` replace any of these fields; bits=32 gives full
    precision.
    """
    settings = {}
    if architecture(name).family == "imagenet":
        settings.update(_IMAGENET_QUANT_DEFAULTS)
    settings.update(overrides)
    return QuantConfig.from_bits(bits, grid=grid, **settings)


def count_float_params(params: Mapping[str, Any]) -> int:
    """Count parameters as PyTorch's `sum(p.numel() for p in model.parameters())` would.

    Counts conv and dense weights, dense biases and BatchNorm scales and biases;
    excludes FAT transforms, weight and activation alphas, and BatchNorm statistics.
    Accepts a params tree or a variables dict with a "params" collection, with arrays
    or `jax.ShapeDtypeStruct` leaves (from `jax.eval_shape`).
    """
    if "params" in params and "batch_stats" in params:
        params = params["params"]

    def visit(tree: Mapping[str, Any]) -> int:
        total = 0
        for key, value in tree.items():
            if isinstance(value, Mapping):
                total += visit(value)
            elif key in _FLOAT_PARAM_NAMES:
                total += int(np.prod(value.shape))
        return total

    return visit(params)


__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "BasicBlock",
    "Bottleneck",
    "CifarResNet",
    "FAMILIES",
    "InvertedResidual",
    "MobileNetV2",
    "ResNet",
    "VGGSmall",
    "architecture",
    "count_float_params",
    "create",
    "reference_quant_config",
]

"""Layer factories shared by the model families.

Every model names its submodules after the PyTorch modules of the reference and of
torchvision, with `_` where PyTorch has `.` (`layer1_0` for `layer1.0`), so that
`fat_jax.torch_weights` can map parameter paths to state-dict keys by rule.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from fat_jax import layers
from fat_jax.quant_config import QuantConfig

CONV_KINDS = ("fat", "uniform")
"""Quantized conv types of the blocks: FAT conv or plain uniform quantized conv."""

BN_MOMENTUM = 0.9
"""Flax BatchNorm momentum, the complement of PyTorch's default momentum of 0.1."""

BN_EPSILON = 1e-5


def block_conv(quant: QuantConfig, kind: str, features: int, kernel_size: int, *,
               strides: int = 1, padding: int = 0, feature_group_count: int = 1,
               signed_input: bool = False, name: str) -> nn.Module:
    """Build a conv of a block: FAT or uniform quantized, or float at full precision.

    Args:
        quant: quantization settings of the model; `quant.full_precision` selects a
            plain `FloatConv` whatever `kind` is.
        kind: "fat" or "uniform".
        features: output channels.
        kernel_size: square kernel size.
        strides: square stride.
        padding: symmetric zero padding in pixels, as PyTorch's `padding=int`.
        feature_group_count: conv groups (the input channels for a depthwise conv).
        signed_input: whether the input can be negative; strict mode then quantizes it
            on a signed grid.
        name: submodule name.
    """
    if kind not in CONV_KINDS:
        raise ValueError(f"Invalid conv kind {kind!r}: expected one of {', '.join(CONV_KINDS)}.")
    conv_args = dict(features=features, kernel_size=kernel_size, strides=strides,
                     padding=padding, feature_group_count=feature_group_count, name=name)
    if quant.full_precision:
        return layers.FloatConv(**conv_args)
    if kind == "fat":
        return layers.FATConv(quant=quant, signed_input=signed_input, **conv_args)
    return layers.UniformQuantConv(quant=quant, signed_input=signed_input, **conv_args)


def stem_conv(quant: QuantConfig, features: int, kernel_size: int, *, strides: int,
              padding: int, name: str) -> layers.Int8Conv:
    """Build the 8-bit first conv, which stays 8-bit in full-precision models too."""
    return layers.Int8Conv(features=features, kernel_size=kernel_size, strides=strides,
                           padding=padding, strict=quant.strict, name=name)


def head_dense(quant: QuantConfig, features: int, *, name: str,
               kernel_init=nn.initializers.lecun_normal()) -> layers.Int8Dense:
    """Build the 8-bit last dense layer (float bias), 8-bit in every model."""
    return layers.Int8Dense(features=features, strict=quant.strict, kernel_init=kernel_init,
                            name=name)


def batch_norm(train: bool, name: str) -> nn.BatchNorm:
    """Build a BatchNorm with PyTorch's defaults (momentum 0.1, eps 1e-5).

    NOTE: Flax updates the running variance with the biased batch variance and PyTorch
    with the unbiased one, so in training the running variance tracks a value
    (n - 1) / n times PyTorch's, n = batch x height x width per update.
    """
    return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM,
                        epsilon=BN_EPSILON, name=name)


def global_average_pool(x: jax.Array) -> jax.Array:
    """Average an NHWC activation over height and width, giving (N, C)."""
    return jnp.mean(x, axis=(1, 2))

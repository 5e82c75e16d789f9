"""Flax Linen layers: FAT conv, uniform quantized conv, and 8-bit conv and dense.

All convs take NHWC inputs and an HWIO `kernel`, support strides, explicit or named
padding and feature groups (depthwise), and have no bias: BatchNorm follows them.
Parameter names match across layers so checkpoints and optimizer rules can address
them by path: `kernel`, `transform` (FAT only), `weight_alpha`, `act_alpha`, and `bias`
on the dense layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fat_jax import quantizers, transform
from fat_jax.quant_config import QuantConfig

Padding = str | int | Sequence[tuple[int, int]]

# torchvision's conv init (He normal over fan-out); checkpoints overwrite it.
default_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _pairs(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    value = tuple(value)
    if len(value) != 2:
        raise ValueError(f"Invalid {name}={value!r}: expected an int or a pair of ints.")
    return value


def _padding(padding: Padding) -> str | list[tuple[int, int]]:
    """Convert an int (PyTorch-style symmetric padding) into lax's explicit pairs."""
    if isinstance(padding, str):
        return padding
    if isinstance(padding, int):
        return [(padding, padding), (padding, padding)]
    return [tuple(p) for p in padding]


class _QuantConvBase(nn.Module):
    """Shared attributes and the convolution of the conv layers."""

    features: int
    kernel_size: int | Sequence[int]
    strides: int | Sequence[int] = 1
    padding: Padding = 0
    feature_group_count: int = 1
    kernel_init: Any = default_kernel_init

    def _kernel(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(
                f"{type(self).__name__} expects NHWC input of rank 4, got shape {x.shape}.")
        in_features = x.shape[-1]
        if in_features % self.feature_group_count or self.features % self.feature_group_count:
            raise ValueError(
                f"Invalid feature_group_count={self.feature_group_count}: it must divide the"
                f" input features ({in_features}) and output features ({self.features}).")
        kh, kw = _pairs(self.kernel_size, "kernel_size")
        shape = (kh, kw, in_features // self.feature_group_count, self.features)
        return self.param("kernel", self.kernel_init, shape, jnp.float32)

    def _conv(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
        return jax.lax.conv_general_dilated(
            x,
            kernel.astype(x.dtype),
            window_strides=_pairs(self.strides, "strides"),
            padding=_padding(self.padding),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=self.feature_group_count,
        )


class FATConv(_QuantConvBase):
    """Conv with a FAT weight path and a quantized input activation.

    Weight: standardize, frequency filter (learned `transform`), b-bit quantizer with
    clip `weight_alpha`. Input: b-bit quantizer with clip `act_alpha`. With
    `quant.use_transform=False` the frequency filter and its `transform` parameter are
    left out.
    """

    quant: QuantConfig = QuantConfig()
    # Whether the input can be negative (strict mode then uses a signed grid).
    signed_input: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self._kernel(x)
        transform_matrix = None
        if self.quant.use_transform:
            transform_matrix = self.param(
                "transform", nn.initializers.constant(1.0 / self.features),
                (self.features, self.features), jnp.float32)
        weight_alpha = self.param(
            "weight_alpha", nn.initializers.constant(self.quant.weight_alpha_init), (), jnp.float32)
        act_alpha = self.param(
            "act_alpha", nn.initializers.constant(self.quant.act_alpha_init), (), jnp.float32)

        x = quantize_input(x, act_alpha, self.quant, self.signed_input)
        weight = fat_weight(kernel, transform_matrix, weight_alpha, self.quant)
        return self._conv(x, weight)


class UniformQuantConv(_QuantConvBase):
    """Conv with mean-centred, b-bit weights and a quantized input, no transform."""

    quant: QuantConfig = QuantConfig()
    # Whether the input can be negative (strict mode then uses a signed grid).
    signed_input: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self._kernel(x)
        weight_alpha = self.param(
            "weight_alpha", nn.initializers.constant(self.quant.weight_alpha_init), (), jnp.float32)
        act_alpha = self.param(
            "act_alpha", nn.initializers.constant(self.quant.uniform_act_alpha_init), (),
            jnp.float32)

        x = quantize_input(x, act_alpha, self.quant, self.signed_input)
        weight = quantizers.quantize_weight(
            transform.center(kernel), weight_alpha, self.quant.weight_bits, self.quant.grid)
        return self._conv(x, weight)


class Int8Conv(_QuantConvBase):
    """First conv: 8-bit weights, float input."""

    # Abs-max scale with clipped codes instead of the reference's signed max.
    strict: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self._kernel(x)
        return self._conv(x, quantizers.quantize_int8(kernel, self.strict))


class FloatConv(_QuantConvBase):
    """Plain bias-free conv with the same attributes, for full-precision blocks."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return self._conv(x, self._kernel(x))


class Int8Dense(nn.Module):
    """Last layer: 8-bit weights, float input and float bias."""

    features: int
    # Abs-max scale with clipped codes instead of the reference's signed max.
    strict: bool = False
    kernel_init: Any = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        weight = quantizers.quantize_int8(kernel, self.strict).astype(x.dtype)
        return x @ weight + bias.astype(x.dtype)


def quantize_input(x: jax.Array, act_alpha: jax.Array, quant: QuantConfig,
                   signed_input: bool) -> jax.Array:
    """Quantize the input activation of a FAT or uniform conv."""
    return quantizers.quantize_activation(
        x, act_alpha, quant.act_bits, quant.grid, quant.act_alpha_grad,
        quant.lower_clip(signed_input))


def fat_weight(kernel: jax.Array, transform_matrix: jax.Array | None, weight_alpha: jax.Array,
               quant: QuantConfig) -> jax.Array:
    """Return the quantized weight of a FAT conv from its HWIO kernel.

    A `transform_matrix` of None (the layer under `quant.use_transform=False`) skips
    the frequency filter, so the standardized kernel goes to the quantizer unfiltered.
    """
    weight = transform.standardize(kernel)
    if transform_matrix is not None:
        weight, _ = transform.frequency_transform(weight, transform_matrix, "HWIO")
    return quantizers.quantize_weight(weight, weight_alpha, quant.weight_bits, quant.grid)


# ---------------------------------------------------------------------------
# Statistics for logging
# ---------------------------------------------------------------------------


def layer_stats(params: Mapping[str, Any]) -> dict[str, dict[str, jax.Array]]:
    """Return mask min, mean and max and the alphas of every quantized layer.

    The mask depends only on parameters, so it is recomputed here from `kernel` and
    `transform` rather than stored during the forward pass. Keys are '/'-joined module
    paths; a FAT layer reports `mask_min`, `mask_mean`, `mask_max`, `weight_alpha` and
    `act_alpha`, a uniform conv its two alphas. Works under `jit`.
    """
    stats = {}

    def visit(tree, path):
        if not isinstance(tree, Mapping):
            return
        entry = {}
        if "transform" in tree and "kernel" in tree:
            layout = "HWIO" if tree["kernel"].ndim == 4 else "IO"
            _, mask = transform.frequency_transform(
                transform.standardize(tree["kernel"]), tree["transform"], layout)
            entry.update(mask_min=jnp.min(mask), mask_mean=jnp.mean(mask), mask_max=jnp.max(mask))
        for name in ("weight_alpha", "act_alpha"):
            if name in tree and not isinstance(tree[name], Mapping):
                entry[name] = jnp.asarray(tree[name])
        if entry:
            stats["/".join(path)] = entry
        for key, child in tree.items():
            visit(child, path + (str(key),))

    visit(params, ())
    return stats

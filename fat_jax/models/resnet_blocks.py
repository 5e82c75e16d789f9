"""Residual blocks of the CIFAR and ImageNet ResNets (torchvision structure).

Every block conv and the 1x1 downsample conv are FAT convs (plain float convs at full
precision). Block inputs are post-ReLU, so no conv here needs a signed input grid.
Submodule names follow torchvision: `conv1`, `bn1`, ..., `downsample_0` (conv) and
`downsample_1` (BatchNorm).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from fat_jax.models.common import batch_norm, block_conv
from fat_jax.quant_config import QuantConfig


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection; the first conv carries the stride."""

    features: int
    strides: int
    downsample: bool
    quant: QuantConfig

    expansion = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        residual = x

        y = block_conv(self.quant, "fat", self.features, 3, strides=self.strides, padding=1,
                       name="conv1")(x)
        y = batch_norm(train, "bn1")(y)
        y = nn.relu(y)
        y = block_conv(self.quant, "fat", self.features, 3, padding=1, name="conv2")(y)
        y = batch_norm(train, "bn2")(y)

        if self.downsample:
            residual = block_conv(self.quant, "fat", self.features, 1, strides=self.strides,
                                  name="downsample_0")(x)
            residual = batch_norm(train, "downsample_1")(residual)
        return nn.relu(y + residual)


class Bottleneck(nn.Module):
    """1x1, 3x3 and 1x1 convs with 4x channel expansion; the 3x3 carries the stride (v1.5)."""

    features: int
    strides: int
    downsample: bool
    quant: QuantConfig

    expansion = 4

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        residual = x
        out_features = self.features * self.expansion

        y = block_conv(self.quant, "fat", self.features, 1, name="conv1")(x)
        y = batch_norm(train, "bn1")(y)
        y = nn.relu(y)
        y = block_conv(self.quant, "fat", self.features, 3, strides=self.strides, padding=1,
                       name="conv2")(y)
        y = batch_norm(train, "bn2")(y)
        y = nn.relu(y)
        y = block_conv(self.quant, "fat", out_features, 1, name="conv3")(y)
        y = batch_norm(train, "bn3")(y)

        if self.downsample:
            residual = block_conv(self.quant, "fat", out_features, 1, strides=self.strides,
                                  name="downsample_0")(x)
            residual = batch_norm(train, "downsample_1")(residual)
        return nn.relu(y + residual)


def residual_stage(block: type[nn.Module], x: jax.Array, *, stage: int, num_blocks: int,
                   features: int, strides: int, quant: QuantConfig, train: bool) -> jax.Array:
    """Apply one stage `layer{stage}` of `num_blocks` blocks inside a compact method.

    The first block carries the stride and gets a downsample shortcut when the stride
    or the channel count changes, as in torchvision's `_make_layer`.
    """
    in_features = x.shape[-1]
    for index in range(num_blocks):
        block_strides = strides if index == 0 else 1
        downsample = index == 0 and (
            strides != 1 or in_features != features * block.expansion)
        x = block(features=features, strides=block_strides, downsample=downsample, quant=quant,
                  name=f"layer{stage}_{index}")(x, train)
    return x

"""CIFAR-10 ResNet-20/32/44/56/110 of the FAT reference implementation.

Stem: 8-bit 3x3 conv 3->16, BatchNorm, ReLU. Three stages of n basic blocks with 16,
32 and 64 channels (n = (depth - 2) / 6); stages 2 and 3 start with stride 2 and a
FAT 1x1 conv + BatchNorm shortcut. Head: global average pooling (the reference's 8x8
pool at 32x32 input) and an 8-bit dense layer with bias.

Flax module paths and the reference's PyTorch names:

    conv1, bn1                        -> conv1, bn1
    layer{S}_{B}/conv{1,2}, bn{1,2}   -> layer{S}.{B}.conv{1,2}, bn{1,2}
    layer{S}_0/downsample_{0,1}       -> layer{S}.0.downsample.{0,1}
    linear                            -> linear
"""

from __future__ import annotations

import flax.linen as nn
import jax

from fat_jax.models.common import batch_norm, global_average_pool, head_dense, stem_conv
from fat_jax.models.resnet_blocks import BasicBlock, residual_stage
from fat_jax.quant_config import QuantConfig

STAGE_FEATURES = (16, 32, 64)
DEPTHS = (20, 32, 44, 56, 110)
"""Depths of the registered models; any depth 6n + 2 builds."""


class CifarResNet(nn.Module):
    """CIFAR ResNet of depth 6n + 2 with FAT convs in every block.

    Attributes:
        depth: total number of conv and dense layers on the main path, 6n + 2.
        num_classes: output logits.
        quant: quantization settings; full precision gives float block convs while
            the stem and the head stay 8-bit.
    """

    depth: int
    num_classes: int
    quant: QuantConfig

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.depth < 8 or (self.depth - 2) % 6:
            raise ValueError(f"Invalid depth={self.depth}: expected 6n + 2 with n >= 1 (e.g. 20).")
        num_blocks = (self.depth - 2) // 6

        x = stem_conv(self.quant, STAGE_FEATURES[0], 3, strides=1, padding=1, name="conv1")(x)
        x = batch_norm(train, "bn1")(x)
        x = nn.relu(x)

        for stage, features in enumerate(STAGE_FEATURES, start=1):
            x = residual_stage(BasicBlock, x, stage=stage, num_blocks=num_blocks,
                               features=features, strides=1 if stage == 1 else 2,
                               quant=self.quant, train=train)

        x = global_average_pool(x)
        return head_dense(self.quant, self.num_classes, name="linear")(x)

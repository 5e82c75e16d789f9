"""ImageNet ResNet-18/34/50 with the torchvision topology.

Stem: 8-bit 7x7/2 conv (padding 3), BatchNorm, ReLU, 3x3/2 max pool (padding 1).
Four stages of basic blocks (ResNet-18/34) or bottlenecks (ResNet-50, stride on the
3x3 conv as in torchvision's v1.5) have 64, 128, 256 and 512 base channels. Every
block conv and downsample conv is a FAT conv. Head: global average pooling and an
8-bit dense layer with bias.

Flax module paths and torchvision's names:

    conv1, bn1                        -> conv1, bn1
    layer{S}_{B}/conv{K}, bn{K}       -> layer{S}.{B}.conv{K}, bn{K}
    layer{S}_0/downsample_{0,1}       -> layer{S}.0.downsample.{0,1}
    fc                                -> fc
"""

from __future__ import annotations

import flax.linen as nn
import jax

from fat_jax.models.common import batch_norm, global_average_pool, head_dense, stem_conv
from fat_jax.models.resnet_blocks import BasicBlock, Bottleneck, residual_stage
from fat_jax.quant_config import QuantConfig

STAGE_FEATURES = (64, 128, 256, 512)

CONFIGS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}
"""Block type and blocks per stage of each depth."""


class ResNet(nn.Module):
    """torchvision ResNet with FAT convs in every block.

    Attributes:
        depth: 18, 34 or 50.
        num_classes: output logits.
        quant: quantization settings; full precision gives float block convs while
            the stem and the head stay 8-bit.
    """

    depth: int
    num_classes: int
    quant: QuantConfig

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.depth not in CONFIGS:
            raise ValueError(
                f"Invalid depth={self.depth}: expected one of {', '.join(map(str, CONFIGS))}.")
        block, stage_sizes = CONFIGS[self.depth]

        x = stem_conv(self.quant, STAGE_FEATURES[0], 7, strides=2, padding=3, name="conv1")(x)
        x = batch_norm(train, "bn1")(x)
        x = nn.relu(x)
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))

        for stage, (features, num_blocks) in enumerate(zip(STAGE_FEATURES, stage_sizes),
                                                       start=1):
            x = residual_stage(block, x, stage=stage, num_blocks=num_blocks, features=features,
                               strides=1 if stage == 1 else 2, quant=self.quant, train=train)

        x = global_average_pool(x)
        return head_dense(self.quant, self.num_classes, name="fc")(x)

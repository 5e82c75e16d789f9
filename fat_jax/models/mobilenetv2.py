"""MobileNetV2 (width 1.0) with the torchvision topology and the FAT layer placement.

Stem: 8-bit 3x3/2 conv 3->32, BatchNorm, ReLU6. Seventeen inverted residual blocks
follow. In each, the 1x1 expansion conv (absent when the expansion ratio t is 1) and
the 3x3 depthwise conv are uniform quantized convs, each followed by BatchNorm and
ReLU6. The 1x1 projection is a FAT conv followed by BatchNorm and no activation. A
block adds its input when the stride is 1 and the channel count is unchanged. Last: a
uniform 1x1 conv 320->1280, BatchNorm, ReLU6. Head: global average pooling, dropout
0.2 and an 8-bit dense layer with bias.

The expansion convs and the last 1x1 conv read block outputs that have no activation,
so their inputs can be negative (`signed_input=True`, used by strict mode).

Flax module paths and torchvision's names (block i = 1..17):

    features_0_0, features_0_1        -> features.0.0, features.0.1
    features_{i}/conv_0_0, conv_0_1   -> features.{i}.conv.0.0, .conv.0.1  (expansion)
    features_{i}/conv_1_0, conv_1_1   -> features.{i}.conv.1.0, .conv.1.1  (depthwise)
    features_{i}/conv_2, conv_3       -> features.{i}.conv.2, .conv.3      (projection)
    features_18_0, features_18_1      -> features.18.0, features.18.1
    classifier_1                      -> classifier.1

Block 1 (t = 1) has no expansion conv, so its depthwise conv is `conv_0_*` and its
projection `conv_1` and `conv_2`, as in torchvision.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from fat_jax.models.common import (
    batch_norm, block_conv, global_average_pool, head_dense, stem_conv)
from fat_jax.quant_config import QuantConfig

STEM_FEATURES = 32
LAST_FEATURES = 1280
DROPOUT_RATE = 0.2

INVERTED_RESIDUAL_SETTINGS = (
    # Expansion ratio t, output channels c, blocks n, stride s of the first block.
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    """Expansion (uniform 1x1), depthwise (uniform 3x3), projection (FAT 1x1)."""

    features: int
    strides: int
    expand_ratio: int
    quant: QuantConfig

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        in_features = x.shape[-1]
        hidden = int(round(in_features * self.expand_ratio))
        y = x
        index = 0

        if self.expand_ratio != 1:
            y = block_conv(self.quant, "uniform", hidden, 1, signed_input=True,
                           name="conv_0_0")(y)
            y = batch_norm(train, "conv_0_1")(y)
            y = nn.relu6(y)
            index = 1

        y = block_conv(self.quant, "uniform", hidden, 3, strides=self.strides, padding=1,
                       feature_group_count=hidden, name=f"conv_{index}_0")(y)
        y = batch_norm(train, f"conv_{index}_1")(y)
        y = nn.relu6(y)

        y = block_conv(self.quant, "fat", self.features, 1, name=f"conv_{index + 1}")(y)
        y = batch_norm(train, f"conv_{index + 2}")(y)

        if self.strides == 1 and in_features == self.features:
            y = x + y
        return y


class MobileNetV2(nn.Module):
    """MobileNetV2, width 1.0.

    NOTE: uniform quantized convs clip the mean-centred weight at 3.0 in weight units.
    From the default He-normal init, nearly every depthwise weight therefore rounds to
    zero at 2 to 5 bits (all of them at 4 bits and below), and the expansion convs get
    no gradient until those weights grow. Start quantized training from full-precision
    weights (e.g. torchvision's), as the reference does.

    Attributes:
        num_classes: output logits.
        quant: quantization settings; full precision gives float convs in the blocks
            and the last 1x1 conv, while the stem and the head stay 8-bit.
        dropout_rate: dropout before the dense layer; needs the "dropout" rng in training.
    """

    num_classes: int
    quant: QuantConfig
    dropout_rate: float = DROPOUT_RATE

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = stem_conv(self.quant, STEM_FEATURES, 3, strides=2, padding=1, name="features_0_0")(x)
        x = batch_norm(train, "features_0_1")(x)
        x = nn.relu6(x)

        index = 1
        for expand_ratio, features, num_blocks, strides in INVERTED_RESIDUAL_SETTINGS:
            for block in range(num_blocks):
                x = InvertedResidual(features=features, strides=strides if block == 0 else 1,
                                     expand_ratio=expand_ratio, quant=self.quant,
                                     name=f"features_{index}")(x, train)
                index += 1

        x = block_conv(self.quant, "uniform", LAST_FEATURES, 1, signed_input=True,
                       name=f"features_{index}_0")(x)
        x = batch_norm(train, f"features_{index}_1")(x)
        x = nn.relu6(x)

        x = global_average_pool(x)
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        # torchvision initialises this layer with N(0, 0.01) weights and zero bias.
        return head_dense(self.quant, self.num_classes, name="classifier_1",
                          kernel_init=nn.initializers.normal(0.01))(x)

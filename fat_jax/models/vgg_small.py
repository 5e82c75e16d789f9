"""VGG-small for CIFAR-10, as in the FAT reference implementation.

Six bias-free 3x3 convs with 128, 128, 256, 256, 512 and 512 channels, each followed
by BatchNorm and ReLU, with a 2x2 max pool after the second, fourth and sixth. The
first conv is 8-bit and the other five are FAT convs. Head: 2x2 average pool, flatten
in PyTorch's (C, H, W) order (2048 features at 32x32 input), dropout 0.5 and an 8-bit
dense layer with bias.

NOTE: unlike this model, the reference's own full-precision VGG-small has conv biases
and a plain float first conv. Loading its checkpoints here fails and lists the conv
biases as unexpected keys.

Flax module paths and the reference's PyTorch names (the index counts the reference's
`features` entries, max pools included):

    features_conv{i}, features_norm{i}  -> features.conv{i}, features.norm{i}
                                           for i in 0, 1, 3, 4, 6, 7
    classifier_linear2                  -> classifier.linear2
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from fat_jax.models.common import batch_norm, block_conv, head_dense, stem_conv
from fat_jax.quant_config import QuantConfig

MAX_POOL = "M"
CONFIG = (128, 128, MAX_POOL, 256, 256, MAX_POOL, 512, 512, MAX_POOL)
DROPOUT_RATE = 0.5


class VGGSmall(nn.Module):
    """VGG-small (often called VGG-7) with FAT convs after the first conv.

    Attributes:
        num_classes: output logits.
        quant: quantization settings; full precision gives float convs while the first
            conv and the head stay 8-bit.
        dropout_rate: dropout before the dense layer; needs the "dropout" rng in training.
    """

    num_classes: int
    quant: QuantConfig
    dropout_rate: float = DROPOUT_RATE

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        for index, entry in enumerate(CONFIG):
            if entry == MAX_POOL:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
                continue
            name = f"features_conv{index}"
            if index == 0:
                conv = stem_conv(self.quant, entry, 3, strides=1, padding=1, name=name)
            else:
                conv = block_conv(self.quant, "fat", entry, 3, padding=1, name=name)
            x = conv(x)
            x = batch_norm(train, f"features_norm{index}")(x)
            x = nn.relu(x)

        x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        # Flatten as PyTorch does on NCHW, so the dense weight keeps its column order.
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        return head_dense(self.quant, self.num_classes, name="classifier_linear2")(x)

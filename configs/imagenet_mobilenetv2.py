"""ImageNet MobileNetV2 with FAT, the reference recipe (batch 128), from torchvision.

Run:
  python -m experiments.train --config=configs/imagenet_mobilenetv2.py:bits=5 \
      --config.init_from=/path/to/mobilenet_v2-b0353104.pth
  python -m experiments.train --config=configs/mobilenetv2_w4a4.py \
      --config.init_from=workdirs/imagenet_mobilenetv2_w5a5_uniform
ARGS: bits, grid, runlocal. Only the 1x1 projection convs are FAT; expansion,
depthwise and the last 1x1 conv are uniform quantized convs.

Published top-1: uniform W5A5 69.6, W4A4 69.2, W3A3 62.8; torchvision float 71.88.
Expected wall time: about 3 days for 120 epochs on 4 GPUs (estimate).
"""

from configs import common


def get_config(arg=None):
    return common.imagenet_config("mobilenetv2", arg, batch_size=128)

"""ImageNet ResNet-34 with FAT, the reference recipe, from torchvision's float weights.

Run:
  python -m experiments.train --config=configs/imagenet_resnet34.py:bits=4 \
      --config.init_from=workdirs/imagenet_resnet34_w5a5_uniform
See configs/imagenet_resnet18.py for the 5-bit start from torchvision weights; ARGS
bits, grid and runlocal work the same.

Published top-1: uniform W5A5 74.6, W4A4 74.1, W3A3 73.2; log W4A4 73.3, W3A3 73.2,
W2A2 70.1.
Expected wall time: about 4 days for 120 epochs on 4 GPUs (estimate).
"""

from configs import common


def get_config(arg=None):
    return common.imagenet_config("resnet34", arg)

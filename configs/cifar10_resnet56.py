"""CIFAR-10 ResNet-56 with FAT, the reference recipe.

Run:
  python -m experiments.train --config=configs/cifar10_resnet56.py:bits=4 \
      --config.init_from=workdirs/cifar10_resnet56_w5a5_uniform
See configs/cifar10_resnet20.py for the progressive-initialisation chain; ARGS bits,
grid and runlocal work the same.

Published top-1: uniform W4A4 94.6, W3A3 94.3; log W4A4 93.8, W3A3 93.7, W2A2 93.3.
Expected wall time: about 10 hours for 400 epochs on one GPU (estimate).
"""

from configs import common


def get_config(arg=None):
    return common.cifar10_config("resnet56", arg)

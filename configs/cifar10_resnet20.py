"""CIFAR-10 ResNet-20 with FAT, the reference recipe.

Run (progressive initialisation: float, then 5, 4, 3 and 2 bits, each from the last):
  python -m experiments.train --config=configs/cifar10_fp.py:arch=resnet20
  python -m experiments.train --config=configs/cifar10_resnet20.py:bits=5 \
      --config.init_from=workdirs/cifar10_resnet20_fp32
  python -m experiments.train --config=configs/cifar10_resnet20.py:bits=4 \
      --config.init_from=workdirs/cifar10_resnet20_w5a5_uniform
Log grid: add grid=log, e.g. configs/cifar10_resnet20.py:bits=3,grid=log.
Small local variant: configs/cifar10_resnet20.py:runlocal.

Published top-1: uniform W4A4 93.2, W3A3 92.8; log W4A4 92.0, W3A3 92.2, W2A2 91.1;
full precision 92.69. Expected wall time: about 4 hours for 400 epochs on one GPU
(estimate; no GPU measurement recorded yet).
"""

from configs import common


def get_config(arg=None):
    return common.cifar10_config("resnet20", arg)

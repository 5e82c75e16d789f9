"""ImageNet ResNet-18 with FAT, the reference recipe, from torchvision's float weights.

Run (the torchvision weights as a .safetensors or .pth state dict):
  python -m experiments.train --config=configs/imagenet_resnet18.py:bits=5 \
      --config.init_from=/path/to/resnet18-f37072fd.pth \
      --config.dataset.manual_dir=/path/to/imagenet_archives
  python -m experiments.train --config=configs/imagenet_resnet18.py:bits=4 \
      --config.init_from=workdirs/imagenet_resnet18_w5a5_uniform
ARGS: bits, grid (uniform or log), runlocal (64x64, batch 8, 4 steps).

Published top-1: uniform W5A5 70.8, W4A4 70.5, W3A3 69.0; log W4A4 68.8, W3A3 68.7,
W2A2 64.3; torchvision float 69.76.
Expected wall time: about 2.5 days for 120 epochs on 4 GPUs (estimate).
"""

from configs import common


def get_config(arg=None):
    return common.imagenet_config("resnet18", arg)

"""ImageNet MobileNetV2 W4A4 with FAT: the headline experiment.

Run:
  python -m experiments.train --config=configs/mobilenetv2_w4a4.py \
      --config.init_from=workdirs/imagenet_mobilenetv2_w5a5_uniform \
      --config.dataset.manual_dir=/path/to/imagenet_archives
Small local variant: configs/mobilenetv2_w4a4.py:runlocal. Other bit widths: see
configs/imagenet_mobilenetv2.py.

Published top-1: 69.2 (uniform W4A4).
Expected wall time: about 3 days for 120 epochs on 4 GPUs (estimate).
"""

from configs import imagenet_mobilenetv2


def get_config(arg=None):
    return imagenet_mobilenetv2.get_config(arg)

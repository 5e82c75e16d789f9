"""Full-precision CIFAR-10 pretraining, the start of every progressive chain.

Run:
  python -m experiments.train --config=configs/cifar10_fp.py:arch=resnet20
ARGS: arch (resnet20, resnet32, resnet44, resnet56, resnet110 or vgg_small), runlocal.
Blocks use float convs; the first conv and the last dense layer stay 8-bit, as in the
reference. One learning rate of 0.1, 400 epochs, decays at 150 and 225.

Published top-1: ResNet-20 92.69 (the reference's float checkpoint).
Expected wall time: about 3 hours for ResNet-20 on one GPU (estimate).
"""

from configs import common


def get_config(arg=None):
    args = common.parse_arg(arg, arch="resnet20", runlocal=False)
    batch_size = 128 if args.arch == "vgg_small" else 256
    local = ",runlocal" if args.runlocal else ""
    return common.cifar10_config(args.arch, f"bits=32{local}", batch_size=batch_size)

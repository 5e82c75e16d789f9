"""ResNet-20 (or another CIFAR-size model) with FAT on scikit-learn's handwritten digits.

The embedded dataset: 1,797 real 8x8 digits shipped with scikit-learn, upscaled to
16x16 RGB, so it needs no download. It checks the whole pipeline end to end in minutes
on a laptop CPU.

Run:
  python -m experiments.train --config=configs/digits.py
  python -m experiments.train --config=configs/digits.py:bits=3,grid=log
  python -m experiments.train --config=configs/digits.py:arch=vgg_small

ARGS: arch (a CIFAR model, default resnet20), bits (2-8 or 32, default 4), grid
(uniform or log), runlocal (a few steps only).
Expected: about 98% test top-1 at W4A4 after 8 epochs, about 2 minutes on 2 CPU
cores (see docs/benchmarks.md for the measured figure).
"""

from configs import common


def get_config(arg=None):
    args = common.parse_arg(arg, arch="resnet20", bits=4, grid="uniform", runlocal=False)
    config = common.base_config()
    config.experiment = common.experiment_name("digits", args.arch, args.bits, args.grid)
    config.dataset.name = "digits"
    config.model.arch = args.arch
    common.set_quant(config, args.bits, args.grid)
    # 16x16 keeps the 8x8 digits sharp at a quarter of the cost of 32x32.
    config.dataset.image_size = 16
    config.batch_size = 64
    config.eval_batch_size = 128
    config.num_epochs = 8
    config.optimizer.decay_epochs = (5, 7)
    # The CIFAR-10 groups with a higher base rate: these runs start from scratch.
    common.set_cifar10_groups(config, base_lr=0.1)
    config.log_every_steps = 20
    config.checkpoint_every_steps = 200
    if args.runlocal:
        config.num_train_steps = 10
        config.log_every_steps = 5
    return config

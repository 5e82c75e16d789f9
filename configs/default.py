"""The default run of `python -m experiments.train`: ResNet-20 FAT W4A4 on digits.

Identical to configs/digits.py with no ARGS; see that file for the recipe, the expected
accuracy and wall time.
"""

from configs import digits


def get_config(arg=None):
    return digits.get_config(arg)

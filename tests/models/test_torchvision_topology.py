"""Full-precision models against independent PyTorch forwards of the same state dict.

Each PyTorch forward below follows torchvision's ResNet and MobileNetV2 and the
reference's VGG-small, reads the state dict that `fat_jax.variables_to_state_dict`
writes, and must give the Flax model's logits. This checks strides, padding, pooling,
residual connections, the flatten order and the key mapping together.
"""

import numpy as np
import pytest

import jax
import jax.numpy as jnp
from flax import traverse_util

import fat_jax
from fat_jax import models, torch_weights
from fat_jax.quant_config import QuantConfig

torch = pytest.importorskip("torch", reason="the PyTorch forwards need PyTorch")
F = torch.nn.functional

BATCH = 2
TOLERANCE = 1e-4  # relative to the largest logit magnitude


def random_variables(model, name: str, seed: int = 0):
    """Return He-normal kernels and perturbed BatchNorm parameters and statistics.

    The kernels of the 8-bit first and last layers lie on their own 8-bit grid, so
    quantizing them is exact in both frameworks. XLA and PyTorch round `w / max(w) * 127`
    in different orders, so with other kernels a code at a rounding tie can go to
    different sides.
    """
    info = models.ARCHITECTURES[name]
    images = jnp.zeros((1, info.resolution, info.resolution, 3), jnp.float32)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), images, train=False))
    rng = np.random.default_rng(seed)
    flat = {}
    for path, leaf in traverse_util.flatten_dict(shapes).items():
        leaf_name, shape = path[-1], leaf.shape
        module = torch_weights.torch_module_name(path[1:-1])
        if leaf_name == "kernel":
            fan_out = shape[-1] * int(np.prod(shape[:-2]))
            value = rng.normal(0.0, np.sqrt(2.0 / fan_out), shape)
            if module in (info.stem, info.head):
                value = np.round(value / value.max() * 127) / 127 * value.max()
        elif leaf_name == "scale":
            value = rng.uniform(0.5, 1.5, shape)
        elif leaf_name == "var":
            value = rng.uniform(0.5, 2.0, shape)
        else:
            value = rng.normal(0.0, 0.1, shape)
        flat[path] = jnp.asarray(value, jnp.float32)
    return traverse_util.unflatten_dict(flat)


def int8(weight):
    """The reference's 8-bit weights: signed-max scale, 127 levels, no clipping."""
    scale = weight.max()
    return weight.div(scale).mul(127).round().div(127).mul(scale)


def batch_norm(x, sd, prefix):
    return F.batch_norm(x, sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"],
                        sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], training=False, eps=1e-5)


def conv_bn(x, sd, conv, bn, stride=1, padding=0, groups=1):
    x = F.conv2d(x, sd[f"{conv}.weight"], stride=stride, padding=padding, groups=groups)
    return batch_norm(x, sd, bn)


def torch_resnet(x, sd, depth):
    bottleneck = depth == 50
    blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}[depth]
    x = F.conv2d(x, int8(sd["conv1.weight"]), stride=2, padding=3)
    x = F.relu(batch_norm(x, sd, "bn1"))
    x = F.max_pool2d(x, 3, stride=2, padding=1)
    for stage, num_blocks in enumerate(blocks, start=1):
        for index in range(num_blocks):
            prefix = f"layer{stage}.{index}"
            stride = 2 if stage > 1 and index == 0 else 1
            identity = x
            if bottleneck:
                y = F.relu(conv_bn(x, sd, f"{prefix}.conv1", f"{prefix}.bn1"))
                y = F.relu(conv_bn(y, sd, f"{prefix}.conv2", f"{prefix}.bn2", stride, 1))
                y = conv_bn(y, sd, f"{prefix}.conv3", f"{prefix}.bn3")
            else:
                y = F.relu(conv_bn(x, sd, f"{prefix}.conv1", f"{prefix}.bn1", stride, 1))
                y = conv_bn(y, sd, f"{prefix}.conv2", f"{prefix}.bn2", 1, 1)
            if f"{prefix}.downsample.0.weight" in sd:
                identity = conv_bn(x, sd, f"{prefix}.downsample.0", f"{prefix}.downsample.1",
                                   stride)
            x = F.relu(y + identity)
    x = F.adaptive_avg_pool2d(x, 1).flatten(1)
    return F.linear(x, int8(sd["fc.weight"]), sd["fc.bias"])


def torch_mobilenetv2(x, sd):
    x = F.conv2d(x, int8(sd["features.0.0.weight"]), stride=2, padding=1)
    x = F.relu6(batch_norm(x, sd, "features.0.1"))
    index = 1
    for expand_ratio, channels, num_blocks, first_stride in (
            (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1)):
        for block in range(num_blocks):
            prefix = f"features.{index}.conv"
            stride = first_stride if block == 0 else 1
            y = x
            layer = 0
            if expand_ratio != 1:
                y = F.relu6(conv_bn(y, sd, f"{prefix}.0.0", f"{prefix}.0.1"))
                layer = 1
            hidden = y.shape[1]
            y = F.relu6(conv_bn(y, sd, f"{prefix}.{layer}.0", f"{prefix}.{layer}.1", stride, 1,
                                groups=hidden))
            y = conv_bn(y, sd, f"{prefix}.{layer + 1}", f"{prefix}.{layer + 2}")
            x = x + y if stride == 1 and x.shape[1] == channels else y
            index += 1
    x = F.relu6(conv_bn(x, sd, "features.18.0", "features.18.1"))
    x = F.adaptive_avg_pool2d(x, 1).flatten(1)
    return F.linear(x, int8(sd["classifier.1.weight"]), sd["classifier.1.bias"])


def torch_vgg_small(x, sd):
    for index in (0, 1, 3, 4, 6, 7):
        weight = sd[f"features.conv{index}.weight"]
        x = F.conv2d(x, int8(weight) if index == 0 else weight, padding=1)
        x = F.relu(batch_norm(x, sd, f"features.norm{index}"))
        if index in (1, 4, 7):
            x = F.max_pool2d(x, 2)
    x = F.avg_pool2d(x, 2).flatten(1)
    return F.linear(x, int8(sd["classifier.linear2.weight"]), sd["classifier.linear2.bias"])


TORCH_FORWARDS = {
    "resnet18": lambda x, sd: torch_resnet(x, sd, 18),
    "resnet50": lambda x, sd: torch_resnet(x, sd, 50),
    "mobilenetv2": torch_mobilenetv2,
    "vgg_small": torch_vgg_small,
}
# Inputs smaller than 224 keep the test fast and still leave a 2x2 map before pooling.
RESOLUTIONS = {"resnet18": 64, "resnet50": 64, "mobilenetv2": 64, "vgg_small": 32}


@pytest.mark.parametrize("name", list(TORCH_FORWARDS))
def test_float_model_matches_torch_forward(name):
    info = models.ARCHITECTURES[name]
    num_classes = 10 if info.family == "cifar" else 1000
    model = models.create(name, num_classes=num_classes, quant=QuantConfig.from_bits(32))
    variables = random_variables(model, name)
    resolution = RESOLUTIONS[name]
    images = np.random.default_rng(1).normal(size=(BATCH, resolution, resolution, 3))
    images = images.astype(np.float32)

    logits = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(
        variables, jnp.asarray(images)))
    state_dict = {key: torch.from_numpy(value)
                  for key, value in fat_jax.variables_to_state_dict(variables, name).items()}
    with torch.no_grad():
        expected = TORCH_FORWARDS[name](torch.from_numpy(images).permute(0, 3, 1, 2), state_dict)

    expected = expected.numpy()
    assert logits.shape == expected.shape
    np.testing.assert_allclose(logits, expected, rtol=0,
                               atol=TOLERANCE * np.abs(expected).max())

"""Forward and backward passes of every registered model, float and quantized.

Compilation dominates the cost on CPU, and bits and grid are static, so every
(model, bit width, grid) combination is a separate XLA program. Two things keep the
file to a few minutes on two cores:
- The CIFAR ResNets and the inverted residual block run op by op (no `jit`). Each
  operation compiles once per shape and is reused by the later cases, which run in
  file order. A new depth or bit width then costs seconds once ResNet-20 has run.
- The whole bits x grid matrix (2 to 5 bits, uniform and log) runs on ResNet-20 (FAT
  convs, 8-bit stem and head) and on one MobileNetV2 inverted residual block (uniform,
  depthwise and FAT convs, signed inputs, strict mode). The deeper CIFAR ResNets,
  VGG-small and ResNet-18 run in full precision and at W4 uniform. ResNet-34, ResNet-50
  and MobileNetV2 run in full precision only, because a quantized ResNet-50 or
  MobileNetV2 takes minutes to compile on two CPU cores.
"""

import numpy as np
import optax
import pytest

import jax
import jax.numpy as jnp
from flax import traverse_util

from fat_jax import models
from fat_jax.quant_config import QuantConfig

BATCH = 2
FLOAT = QuantConfig.from_bits(32)
W4_UNIFORM = QuantConfig.from_bits(4)
QUANTIZED_SETTINGS = [
    QuantConfig.from_bits(bits, grid=grid) for bits in (2, 3, 4, 5) for grid in ("uniform", "log")
]

CIFAR_RESNET_CASES = (
    [("resnet20", quant) for quant in [FLOAT, *QUANTIZED_SETTINGS]]
    + [(name, quant) for name in ("resnet32", "resnet44", "resnet56", "resnet110")
       for quant in (FLOAT, W4_UNIFORM)])
JIT_CASES = [
    ("vgg_small", FLOAT), ("vgg_small", W4_UNIFORM),
    ("resnet18", FLOAT), ("resnet18", W4_UNIFORM),
    ("resnet34", FLOAT), ("resnet50", FLOAT), ("mobilenetv2", FLOAT),
]
BLOCK_SETTINGS = [
    *QUANTIZED_SETTINGS,
    QuantConfig.from_bits(3, strict=True),
    QuantConfig.from_bits(2, grid="log", strict=True),
]


def setting_id(quant: QuantConfig) -> str:
    if quant.full_precision:
        return "float"
    strict = "_strict" if quant.strict else ""
    return f"w{quant.weight_bits}a{quant.act_bits}_{quant.grid}{strict}"


def case_id(case) -> str:
    name, quant = case
    return f"{name}-{setting_id(quant)}"


def num_classes_of(name: str) -> int:
    return 10 if models.ARCHITECTURES[name].family == "cifar" else 1000


def random_variables(model, inputs_shape, quant: QuantConfig, seed: int = 0):
    """Return variables of `model` filled from numpy, with no compiled `init`.

    Kernels are He-normal over fan-out, except those of uniform quantized convs. Their
    weights are only mean-centred before the 3.0 clip, so He-normal depthwise kernels
    (std about 0.04) would all quantize to zero. They get a standard normal kernel, the
    scale of pretrained weights. BatchNorm parameters and statistics are perturbed from
    their inits, and the quantizer parameters take their QuantConfig inits.
    """
    shapes = traverse_util.flatten_dict(jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros(inputs_shape, jnp.float32), train=False)))
    rng = np.random.default_rng(seed)
    flat = {}
    for path, leaf in shapes.items():
        name, shape = path[-1], leaf.shape
        module = path[:-1]
        uniform_conv = (*module, "weight_alpha") in shapes and (*module, "transform") not in shapes
        if name == "kernel" and uniform_conv:
            value = rng.normal(0.0, 1.0, shape)
        elif name == "kernel":
            fan_out = shape[-1] * int(np.prod(shape[:-2]))
            value = rng.normal(0.0, np.sqrt(2.0 / fan_out), shape)
        elif name == "scale":
            value = rng.uniform(0.5, 1.5, shape)
        elif name in ("bias", "mean"):
            value = rng.normal(0.0, 0.1, shape)
        elif name == "var":
            value = rng.uniform(0.5, 2.0, shape)
        elif name == "transform":
            value = np.full(shape, 1.0 / shape[0])
        elif name == "weight_alpha":
            value = np.full(shape, quant.weight_alpha_init)
        elif name == "act_alpha":
            value = np.full(shape, quant.act_alpha_init)
        else:
            raise AssertionError(f"unexpected variable {'/'.join(path)}")
        flat[path] = jnp.asarray(value, jnp.float32)
    return traverse_util.unflatten_dict(flat)


def training_step(model, variables, images, labels):
    """Return the loss, the logits, the parameter gradients and the new batch statistics."""

    def loss_fn(params):
        logits, updates = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]}, images, train=True,
            mutable=["batch_stats"], rngs={"dropout": jax.random.key(1)})
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, (logits, updates["batch_stats"])

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        variables["params"])
    return loss, logits, grads, batch_stats


def assert_gradients_usable(grads):
    """Check that every gradient is finite and that only FAT transforms may be all zero.

    At init the mask of a layer with 64 or more weights per filter saturates to exactly
    1.0 in float32, so the sigmoid passes no gradient to the transform.
    """
    flat = {
        "/".join(path): np.asarray(grad)
        for path, grad in traverse_util.flatten_dict(grads).items()
    }
    non_finite = [path for path, grad in flat.items() if not np.all(np.isfinite(grad))]
    assert not non_finite, f"non-finite gradients in {non_finite}"
    all_zero = [path for path, grad in flat.items()
                if not path.endswith("transform") and not np.any(grad)]
    assert not all_zero, f"all-zero gradients in {all_zero}"


def check_training_step(name: str, quant: QuantConfig, use_jit: bool):
    info = models.ARCHITECTURES[name]
    num_classes = num_classes_of(name)
    model = models.create(name, num_classes=num_classes, quant=quant)
    images_shape = (BATCH, info.resolution, info.resolution, 3)
    variables = random_variables(model, images_shape, quant)
    images = jnp.asarray(np.random.default_rng(1).normal(size=images_shape), jnp.float32)
    labels = jnp.arange(BATCH) % num_classes

    step = jax.jit(training_step, static_argnums=0) if use_jit else training_step
    loss, logits, grads, batch_stats = step(model, variables, images, labels)

    assert logits.shape == (BATCH, num_classes)
    assert np.isfinite(float(loss))
    assert_gradients_usable(grads)
    for path, value in traverse_util.flatten_dict(batch_stats).items():
        assert np.all(np.isfinite(np.asarray(value))), "/".join(path)


@pytest.mark.slow
@pytest.mark.parametrize("case", CIFAR_RESNET_CASES, ids=case_id)
def test_cifar_resnet_training_step(case):
    name, quant = case
    check_training_step(name, quant, use_jit=False)


@pytest.mark.slow
@pytest.mark.parametrize("case", JIT_CASES, ids=case_id)
def test_model_training_step(case):
    name, quant = case
    check_training_step(name, quant, use_jit=True)


@pytest.mark.parametrize("quant", BLOCK_SETTINGS, ids=setting_id)
def test_inverted_residual_training_step(quant):
    block = models.InvertedResidual(features=24, strides=1, expand_ratio=6, quant=quant)
    inputs_shape = (BATCH, 8, 8, 24)
    variables = random_variables(block, inputs_shape, quant)
    inputs = jnp.asarray(np.random.default_rng(1).normal(size=inputs_shape), jnp.float32)

    def loss_fn(params):
        out, _ = block.apply({"params": params, "batch_stats": variables["batch_stats"]},
                             inputs, train=True, mutable=["batch_stats"])
        return jnp.mean(out**2), out

    (loss, out), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])

    assert out.shape == inputs_shape
    assert np.isfinite(float(loss))
    assert_gradients_usable(grads)

"""Forward and backward passes of every registered model, float and quantized.

Compilation dominates the cost on CPU: every (model, bit width, grid) combination is
a separate XLA program, because bits and grid are static. The tests therefore cover
every model in full precision and in one quantized setting (W4 uniform), the whole
bits x grid matrix on ResNet-20 (FAT convs, 8-bit stem and head), and the matrix on
one MobileNetV2 inverted residual block (uniform, depthwise and FAT convs, signed
inputs, strict mode). Only ResNet-20, VGG-small and ResNet-18 run quantized as whole
models: the deeper CIFAR ResNets and ResNet-34 stack the same blocks as ResNet-20 and
ResNet-18, and a quantized ResNet-50 or MobileNetV2 takes minutes to compile on two
CPU cores, so those run in full precision only.
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
# The registered models with a quantized run at native resolution (see module docstring).
QUANTIZED_MODELS = ("resnet20", "vgg_small", "resnet18")


def setting_id(quant: QuantConfig) -> str:
    if quant.full_precision:
        return "float"
    return f"w{quant.weight_bits}a{quant.act_bits}_{quant.grid}" + ("_strict" if quant.strict else "")


def num_classes_of(name: str) -> int:
    return 10 if models.ARCHITECTURES[name].family == "cifar" else 1000


def random_variables(model, images_shape, quant: QuantConfig, seed: int = 0):
    """Return variables of `model` filled from numpy, with no compiled `init`.

    Kernels are He-normal over fan-out, BatchNorm statistics are perturbed from their
    inits, and the quantizer parameters take their QuantConfig inits.
    """
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros(images_shape, jnp.float32), train=False))
    rng = np.random.default_rng(seed)
    flat = {}
    for path, leaf in traverse_util.flatten_dict(shapes).items():
        name, shape = path[-1], leaf.shape
        if name == "kernel":
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
    """Return the loss, the parameter gradients and the updated batch statistics."""

    def loss_fn(params):
        logits, updates = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]}, images, train=True,
            mutable=["batch_stats"], rngs={"dropout": jax.random.key(1)})
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, (logits, updates["batch_stats"])

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        variables["params"])
    return loss, logits, grads, batch_stats


def check_training_step(model, quant: QuantConfig, resolution: int, num_classes: int):
    """Run one jitted training step and check shapes and finite, non-zero gradients.

    FAT transforms are exempt from the non-zero check: at init the mask of a layer with
    N >= 64 weights per filter saturates to exactly 1.0 in float32, so the sigmoid
    passes no gradient to the transform.
    """
    images_shape = (BATCH, resolution, resolution, 3)
    variables = random_variables(model, images_shape, quant)
    images = jnp.asarray(np.random.default_rng(1).normal(size=images_shape), jnp.float32)
    labels = jnp.arange(BATCH) % num_classes

    loss, logits, grads, batch_stats = jax.jit(training_step, static_argnums=0)(
        model, variables, images, labels)

    assert logits.shape == (BATCH, num_classes)
    assert np.isfinite(float(loss))
    bad = [
        "/".join(path) for path, grad in traverse_util.flatten_dict(grads).items()
        if not np.all(np.isfinite(np.asarray(grad)))
    ]
    assert not bad, f"non-finite gradients in {bad}"
    zero = [
        "/".join(path) for path, grad in traverse_util.flatten_dict(grads).items()
        if path[-1] != "transform" and not np.any(np.asarray(grad))
    ]
    assert not zero, f"all-zero gradients in {zero}"
    stats = traverse_util.flatten_dict(batch_stats)
    assert all(np.all(np.isfinite(np.asarray(value))) for value in stats.values())


@pytest.mark.slow
@pytest.mark.parametrize("name", list(models.ARCHITECTURES))
def test_float_model_training_step(name):
    info = models.ARCHITECTURES[name]
    model = models.create(name, num_classes=num_classes_of(name), quant=FLOAT)
    check_training_step(model, FLOAT, info.resolution, num_classes_of(name))


@pytest.mark.slow
@pytest.mark.parametrize("name", QUANTIZED_MODELS)
def test_quantized_model_training_step(name):
    info = models.ARCHITECTURES[name]
    model = models.create(name, num_classes=num_classes_of(name), quant=W4_UNIFORM)
    check_training_step(model, W4_UNIFORM, info.resolution, num_classes_of(name))


@pytest.mark.slow
@pytest.mark.parametrize("quant", [q for q in QUANTIZED_SETTINGS if q != W4_UNIFORM],
                         ids=setting_id)
def test_resnet20_training_step_bits_and_grids(quant):
    model = models.create("resnet20", num_classes=10, quant=quant)
    check_training_step(model, quant, 32, 10)


@pytest.mark.parametrize(
    "quant", [*QUANTIZED_SETTINGS, QuantConfig.from_bits(3, strict=True),
              QuantConfig.from_bits(2, grid="log", strict=True)], ids=setting_id)
def test_inverted_residual_training_step(quant):
    block = models.InvertedResidual(features=24, strides=1, expand_ratio=6, quant=quant)
    images_shape = (BATCH, 8, 8, 24)
    variables = random_variables(block, images_shape, quant)
    images = jnp.asarray(np.random.default_rng(1).normal(size=images_shape), jnp.float32)

    def loss_fn(params):
        out, updates = block.apply({"params": params, "batch_stats": variables["batch_stats"]},
                                   images, train=True, mutable=["batch_stats"])
        return jnp.mean(out**2), out

    (loss, out), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(variables["params"])

    assert out.shape == images_shape
    assert np.isfinite(float(loss))
    for path, grad in traverse_util.flatten_dict(grads).items():
        assert np.all(np.isfinite(np.asarray(grad))), "/".join(path)
        if path[-1] != "transform":
            assert np.any(np.asarray(grad)), f"all-zero gradient in {'/'.join(path)}"

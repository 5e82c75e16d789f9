"""Forward and backward passes of every registered model, float and quantized.

Every model runs in full precision and at each of 2, 3, 4 and 5 bits on the uniform
and the log grid, at its native resolution with a batch of 2. Compilation dominates
the cost on CPU, and bits and grid are static, so every (model, bit width, grid)
combination is a separate XLA program:
- The CIFAR ResNets run op by op (no `jit`). Each operation compiles once per shape
  and is reused by the later cases, which run in file order, so a new depth or bit
  width costs seconds once ResNet-20 has run.
- VGG-small and the ImageNet models run under `jit`, 5 to 20 s of compilation per
  case on 2 CPU cores.
The default run keeps to a few minutes: ResNet-20 and one MobileNetV2 inverted
residual block run the whole matrix. The ImageNet models together cover the eight
settings, the log grid on ResNet-18, where it compiles fastest, and the other models
run one or two settings. The other 55 cases are marked `full_matrix`; run them with
`python3 -m pytest -m full_matrix tests/models` (11 minutes on 2 CPU cores).
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
QUANTIZED_SETTINGS = [
    QuantConfig.from_bits(bits, grid=grid) for bits in (2, 3, 4, 5) for grid in ("uniform", "log")
]

QUANTIZED_BY_NAME = {setting_name: quant for quant in QUANTIZED_SETTINGS
                     for setting_name in [f"w{quant.weight_bits}_{quant.grid}"]}
# The quantized settings in the default run; the others are marked full_matrix.
ALL_SETTINGS = tuple(QUANTIZED_BY_NAME)
DEFAULT_CIFAR_RESNET_SETTINGS = {
    "resnet20": ALL_SETTINGS,
    "resnet32": ("w4_uniform", "w2_log"),
    "resnet44": ("w3_uniform", "w5_log"),
    "resnet56": ("w4_uniform", "w3_log"),
    "resnet110": ("w2_uniform", "w4_log"),
}
DEFAULT_JIT_SETTINGS = {
    "vgg_small": ("w4_uniform",),
    "resnet18": ("w4_uniform", "w2_log", "w3_log", "w4_log", "w5_log"),
    "resnet34": ("w3_uniform",),
    "resnet50": ("w2_uniform",),
    "mobilenetv2": ("w5_uniform",),
}


def matrix_cases(default_settings: dict[str, tuple[str, ...]]) -> list:
    """Return pytest params of each model in float and in every quantized setting.

    `default_settings` maps each model name to the quantized settings of the default
    run; the model's other settings are marked `full_matrix`.
    """
    cases = []
    for name, defaults in default_settings.items():
        cases.append(pytest.param(name, FLOAT, id=f"{name}-float"))
        for setting_name, quant in QUANTIZED_BY_NAME.items():
            marks = [] if setting_name in defaults else [pytest.mark.full_matrix]
            cases.append(pytest.param(name, quant, id=f"{name}-{setting_id(quant)}",
                                      marks=marks))
    return cases


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
@pytest.mark.parametrize("name, quant", matrix_cases(DEFAULT_CIFAR_RESNET_SETTINGS))
def test_cifar_resnet_training_step(name, quant):
    check_training_step(name, quant, use_jit=False)


@pytest.mark.slow
@pytest.mark.parametrize("name, quant", matrix_cases(DEFAULT_JIT_SETTINGS))
def test_model_training_step(name, quant):
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

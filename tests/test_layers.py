"""Tests for fat_jax.layers: parameters, convolution settings and the quantized paths.

Each layer's output is compared with `jax.lax.conv_general_dilated` applied to inputs
and weights quantized by hand with the fat_jax functions, which test_transform.py and
test_quantizers.py check against independent NumPy implementations.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fat_jax import layers, quantizers, transform
from fat_jax.quant_config import QuantConfig

BATCH, SIZE, CIN, COUT = 2, 8, 4, 8


def random_input(seed=0, signed=False, shape=(BATCH, SIZE, SIZE, CIN)):
    x = np.random.default_rng(seed).normal(0, 2.0, shape)
    return jnp.asarray(x if signed else np.abs(x), jnp.float32)


def numpy_kernel_init(key, shape, dtype=jnp.float32):
    """Draw a kernel with NumPy, because jax.random sampling takes seconds to compile on CPU."""
    del key
    return jnp.asarray(np.random.default_rng(sum(shape)).normal(0, 0.3, shape), dtype)


def init_params(module, x):
    """Initialize `module` compiled, with the NumPy kernel init where it has one."""
    if "kernel_init" in module.__dataclass_fields__:
        module = module.clone(kernel_init=numpy_kernel_init)
    return jax.jit(module.init)(jax.random.key(0), x)["params"]


def param_shapes(module, x):
    """Trace `init` with the default kernel init, without compiling it."""
    shapes = jax.eval_shape(module.init, jax.random.key(0), x)["params"]
    return jax.tree_util.tree_map(lambda leaf: leaf.shape, shapes)


def make_params(layer_name, kernel_shape, seed=1):
    """Build random parameters of a conv layer, away from their inits, without init."""
    rng = np.random.default_rng(seed)
    cout = kernel_shape[-1]
    params = {"kernel": jnp.asarray(rng.normal(0, 0.3, kernel_shape), jnp.float32)}
    if layer_name == "FATConv":
        params["transform"] = jnp.asarray(rng.normal(0, 0.5 / cout, (cout, cout)), jnp.float32)
    if layer_name in ("FATConv", "UniformQuantConv"):
        params["weight_alpha"] = jnp.float32(2.2)
        params["act_alpha"] = jnp.float32(3.3)
    return params


def lax_conv(x, weight, strides=(1, 1), padding=((1, 1), (1, 1)), groups=1):
    return jax.lax.conv_general_dilated(
        x, weight, window_strides=strides, padding=padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)


@functools.partial(jax.jit, static_argnums=(2, 3))
def fat_by_hand(params, x, quant, signed_input=False):
    """Return (quantized input, quantized weight) of a FAT conv, step by step."""
    xq = quantizers.quantize_activation(
        x, params["act_alpha"], quant.act_bits, quant.grid, quant.act_alpha_grad,
        quant.lower_clip(signed_input))
    filtered, _ = transform.frequency_transform(
        transform.standardize(params["kernel"]), params["transform"], "HWIO")
    wq = quantizers.quantize_weight(filtered, params["weight_alpha"], quant.weight_bits,
                                    quant.grid)
    return xq, wq


@functools.partial(jax.jit, static_argnums=(2, 3))
def uniform_by_hand(params, x, quant, signed_input=False):
    """Return (quantized input, quantized weight) of a uniform conv."""
    xq = quantizers.quantize_activation(
        x, params["act_alpha"], quant.act_bits, quant.grid, quant.act_alpha_grad,
        quant.lower_clip(signed_input))
    wq = quantizers.quantize_weight(transform.center(params["kernel"]), params["weight_alpha"],
                                    quant.weight_bits, quant.grid)
    return xq, wq


@functools.partial(jax.jit, static_argnums=0)
def apply(module, params, x):
    """Apply `module` under jit. Equal modules share one compilation."""
    return module.apply({"params": params}, x)


# ---------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------


def test_fat_conv_params():
    params = init_params(layers.FATConv(COUT, 3, padding=1), random_input())

    assert set(params) == {"kernel", "transform", "weight_alpha", "act_alpha"}
    assert params["kernel"].shape == (3, 3, CIN, COUT)
    assert params["transform"].shape == (COUT, COUT)
    np.testing.assert_array_equal(np.asarray(params["transform"]),
                                  np.full((COUT, COUT), 1 / COUT, np.float32))
    assert params["weight_alpha"].shape == ()
    assert float(params["weight_alpha"]) == 3.0
    assert params["act_alpha"].shape == ()
    assert float(params["act_alpha"]) == 5.0


def test_fat_conv_alpha_inits_from_config():
    quant = QuantConfig(weight_alpha_init=2.5, act_alpha_init=8.0, uniform_act_alpha_init=6.0)

    params = init_params(layers.FATConv(COUT, 1, quant=quant), random_input())

    assert float(params["weight_alpha"]) == 2.5
    assert float(params["act_alpha"]) == 8.0


def test_fat_conv_without_transform_params():
    quant = QuantConfig(use_transform=False)

    shapes = param_shapes(layers.FATConv(COUT, 3, padding=1, quant=quant), random_input())

    assert shapes == {"kernel": (3, 3, CIN, COUT), "weight_alpha": (), "act_alpha": ()}


def test_uniform_conv_params():
    quant = QuantConfig(act_alpha_init=8.0, uniform_act_alpha_init=6.0)

    params = init_params(layers.UniformQuantConv(COUT, 3, quant=quant), random_input())

    assert set(params) == {"kernel", "weight_alpha", "act_alpha"}
    assert params["kernel"].shape == (3, 3, CIN, COUT)
    assert float(params["weight_alpha"]) == 3.0
    assert float(params["act_alpha"]) == 6.0


@pytest.mark.parametrize("layer_type", [layers.Int8Conv, layers.FloatConv])
def test_plain_conv_params(layer_type):
    shapes = param_shapes(layer_type(COUT, (3, 1)), random_input())

    assert shapes == {"kernel": (3, 1, CIN, COUT)}


def test_int8_dense_params():
    params = init_params(layers.Int8Dense(10), np.ones((BATCH, 64), np.float32))

    assert set(params) == {"kernel", "bias"}
    assert params["kernel"].shape == (64, 10)
    np.testing.assert_array_equal(np.asarray(params["bias"]), np.zeros(10, np.float32))


@pytest.mark.parametrize(("layer_type", "groups"), [
    (layers.FATConv, CIN), (layers.UniformQuantConv, CIN), (layers.FATConv, 2),
])
def test_grouped_kernel_shape(layer_type, groups):
    module = layer_type(COUT, 3, padding=1, feature_group_count=groups)

    shapes = param_shapes(module, random_input())

    assert shapes["kernel"] == (3, 3, CIN // groups, COUT)


# ---------------------------------------------------------------------------
# FAT conv against the hand-built weight path
# ---------------------------------------------------------------------------

FAT_CONFIGS = [
    (QuantConfig(), False),
    (QuantConfig.from_bits(3, grid="log"), False),
    (QuantConfig.from_bits(2, act_alpha_grad="pact"), False),
    (QuantConfig(strict=True), True),
]
FAT_IDS = ["w4a4", "log-w3a3", "w2a2-pact", "strict-signed"]


@pytest.mark.parametrize(("quant", "signed_input"), FAT_CONFIGS, ids=FAT_IDS)
def test_fat_conv_matches_by_hand(quant, signed_input):
    x = random_input(signed=signed_input)
    module = layers.FATConv(COUT, 3, padding=1, quant=quant, signed_input=signed_input)
    params = make_params("FATConv", (3, 3, CIN, COUT))

    out = apply(module, params, x)

    xq, wq = fat_by_hand(params, x, quant, signed_input)
    np.testing.assert_allclose(np.asarray(out), np.asarray(lax_conv(xq, wq)),
                               rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("grid", ["uniform", "log"])
def test_fat_conv_without_transform_matches_by_hand(grid):
    quant = QuantConfig(use_transform=False, grid=grid)
    x = random_input()
    module = layers.FATConv(COUT, 3, padding=1, quant=quant)
    params = make_params("FATConv", (3, 3, CIN, COUT))
    del params["transform"]

    out = apply(module, params, x)

    xq = quantizers.quantize_activation(x, params["act_alpha"], 4, grid)
    wq = quantizers.quantize_weight(transform.standardize(params["kernel"]),
                                    params["weight_alpha"], 4, grid)
    np.testing.assert_allclose(np.asarray(out), np.asarray(lax_conv(xq, wq)),
                               rtol=1e-5, atol=1e-4)


def test_fat_conv_without_transform_differs():
    # Guards the test above: dropping the filter changes the output of a trained layer.
    x = random_input()
    params = make_params("FATConv", (3, 3, CIN, COUT))
    with_transform = apply(layers.FATConv(COUT, 3, padding=1), params, x)
    without_params = {k: v for k, v in params.items() if k != "transform"}

    without = apply(layers.FATConv(COUT, 3, padding=1,
                                   quant=QuantConfig(use_transform=False)), without_params, x)

    assert np.max(np.abs(np.asarray(with_transform) - np.asarray(without))) > 0.1


def test_fat_conv_without_transform_grads():
    x = random_input()
    module = layers.FATConv(COUT, 3, padding=1, quant=QuantConfig(use_transform=False))
    params = make_params("FATConv", (3, 3, CIN, COUT))
    del params["transform"]
    g = jnp.asarray(np.random.default_rng(2).normal(size=(BATCH, SIZE, SIZE, COUT)),
                    jnp.float32)

    grads = jax.jit(jax.grad(lambda p: jnp.sum(g * apply(module, p, x))))(params)

    assert set(grads) == {"kernel", "weight_alpha", "act_alpha"}
    for name, grad in grads.items():
        assert np.max(np.abs(np.asarray(grad))) > 0, name


def test_fat_conv_quantizes_input_and_weight():
    # Guards the by-hand comparison: the layer quantizes its input, and its weight is not
    # the raw kernel.
    x = random_input()
    params = make_params("FATConv", (3, 3, CIN, COUT))

    xq, wq = fat_by_hand(params, x, QuantConfig())

    assert np.max(np.abs(np.asarray(xq) - np.asarray(x))) > 0.05
    assert np.max(np.abs(np.asarray(wq) - np.asarray(params["kernel"]))) > 0.05


def test_fat_conv_grads_reach_every_param():
    x = random_input()
    module = layers.FATConv(COUT, 3, padding=1)
    params = make_params("FATConv", (3, 3, CIN, COUT))
    g = jnp.asarray(np.random.default_rng(2).normal(size=(BATCH, SIZE, SIZE, COUT)),
                    jnp.float32)

    grads = jax.jit(jax.grad(lambda p: jnp.sum(g * apply(module, p, x))))(params)

    for name in ("kernel", "transform", "weight_alpha", "act_alpha"):
        assert np.all(np.isfinite(np.asarray(grads[name]))), name
        assert np.max(np.abs(np.asarray(grads[name]))) > 0, name


def test_fat_conv_bfloat16_input():
    x = random_input()
    module = layers.FATConv(COUT, 3, padding=1)
    params = make_params("FATConv", (3, 3, CIN, COUT))

    out = apply(module, params, x.astype(jnp.bfloat16))

    expected = apply(module, params, x)
    assert out.dtype == jnp.bfloat16
    # A few inputs near a rounding boundary land on the next level in bfloat16.
    close = np.isclose(np.asarray(out, np.float32), np.asarray(expected), rtol=0.02, atol=0.2)
    assert close.mean() > 0.95


# ---------------------------------------------------------------------------
# Strides, padding and feature groups
# ---------------------------------------------------------------------------


def by_hand(layer_name, params, x, quant):
    """Return (input, weight) as each layer type feeds them to the convolution."""
    if layer_name == "FATConv":
        return fat_by_hand(params, x, quant)
    if layer_name == "UniformQuantConv":
        return uniform_by_hand(params, x, quant)
    if layer_name == "Int8Conv":
        return x, quantizers.quantize_int8(params["kernel"])
    return x, params["kernel"]


LAYER_NAMES = ["FATConv", "UniformQuantConv", "Int8Conv", "FloatConv"]


@pytest.mark.parametrize("layer_name", LAYER_NAMES)
def test_int_padding_is_pytorch_padding(layer_name):
    # PyTorch padding=1 pads one pixel on every side. With stride 2 on an even input
    # that differs from "SAME", which pads (0, 1).
    x = random_input(3)
    module = getattr(layers, layer_name)(COUT, 3, strides=2, padding=1)
    params = make_params(layer_name, (3, 3, CIN, COUT))

    out = apply(module, params, x)

    xq, wq = by_hand(layer_name, params, x, QuantConfig())
    expected = lax_conv(xq, wq, strides=(2, 2), padding=((1, 1), (1, 1)))
    same = lax_conv(xq, wq, strides=(2, 2), padding="SAME")
    assert out.shape == (BATCH, 4, 4, COUT)
    np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-5, atol=1e-4)
    assert np.max(np.abs(np.asarray(out) - np.asarray(same))) > 1e-2


@pytest.mark.parametrize(("padding", "strides", "out_size"), [
    (0, 1, 6), (0, 2, 3), (2, 1, 10), (((1, 0), (0, 1)), 1, 7), ("SAME", 2, 4),
])
def test_padding_and_strides(padding, strides, out_size):
    # Output size floor((8 + pad_low + pad_high - 3) / stride) + 1, as in PyTorch.
    x = random_input(4)
    module = layers.UniformQuantConv(COUT, 3, strides=strides, padding=padding)
    params = make_params("UniformQuantConv", (3, 3, CIN, COUT))

    out = apply(module, params, x)

    lax_padding = padding if isinstance(padding, (str, tuple)) else ((padding, padding),) * 2
    xq, wq = uniform_by_hand(params, x, QuantConfig())
    expected = lax_conv(xq, wq, strides=(strides, strides), padding=lax_padding)
    assert out.shape == (BATCH, out_size, out_size, COUT)
    np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-5, atol=1e-4)


def test_pair_strides():
    x = random_input(5)
    module = layers.FloatConv(COUT, (3, 1), strides=(2, 1), padding=((1, 1), (0, 0)))
    params = make_params("FloatConv", (3, 1, CIN, COUT))

    out = apply(module, params, x)

    expected = lax_conv(x, params["kernel"], strides=(2, 1), padding=((1, 1), (0, 0)))
    assert out.shape == (BATCH, 4, SIZE, COUT)
    np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("layer_name", "groups"), [
    ("FATConv", CIN), ("UniformQuantConv", CIN), ("FloatConv", 2),
])
def test_feature_groups(layer_name, groups):
    # groups == CIN with COUT = 2 * CIN is a depthwise conv with channel multiplier 2.
    x = random_input(6)
    module = getattr(layers, layer_name)(COUT, 3, padding=1, feature_group_count=groups)
    params = make_params(layer_name, (3, 3, CIN // groups, COUT))

    out = apply(module, params, x)

    xq, wq = by_hand(layer_name, params, x, QuantConfig())
    expected = lax_conv(xq, wq, groups=groups)
    np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-5, atol=1e-4)


def test_bad_feature_groups_rejected():
    module = layers.FATConv(COUT, 3, feature_group_count=3)

    with pytest.raises(ValueError, match=r"feature_group_count=3.*input features \(4\)"):
        param_shapes(module, random_input())


def test_bad_input_rank_rejected():
    module = layers.UniformQuantConv(COUT, 3)

    with pytest.raises(ValueError, match=r"NHWC input of rank 4, got shape \(8, 8, 4\)"):
        param_shapes(module, np.ones((SIZE, SIZE, CIN), np.float32))


def test_bad_kernel_size_rejected():
    module = layers.FloatConv(COUT, (3, 3, 3))

    with pytest.raises(ValueError, match=r"kernel_size=\(3, 3, 3\).*pair of ints"):
        param_shapes(module, random_input())


# ---------------------------------------------------------------------------
# Uniform, 8-bit and float layers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("strict", [False, True])
def test_uniform_conv_matches_by_hand(strict):
    quant = QuantConfig(strict=strict)
    x = random_input(7, signed=True)
    module = layers.UniformQuantConv(COUT, 3, padding=1, quant=quant, signed_input=True)
    params = make_params("UniformQuantConv", (3, 3, CIN, COUT))

    out = apply(module, params, x)

    xq, wq = uniform_by_hand(params, x, quant, signed_input=True)
    np.testing.assert_allclose(np.asarray(out), np.asarray(lax_conv(xq, wq)),
                               rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("strict", [False, True])
def test_int8_conv_matches_by_hand(strict):
    x = random_input(8, signed=True)
    module = layers.Int8Conv(COUT, 3, padding=1, strict=strict)
    params = make_params("Int8Conv", (3, 3, CIN, COUT))

    out = apply(module, params, x)

    expected = lax_conv(x, quantizers.quantize_int8(params["kernel"], strict))
    np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("strict", [False, True])
def test_int8_dense_matches_by_hand(strict):
    rng = np.random.default_rng(9)
    x = jnp.asarray(rng.normal(size=(BATCH, 64)), jnp.float32)
    params = {"kernel": jnp.asarray(rng.normal(0, 0.1, (64, 10)), jnp.float32),
              "bias": jnp.asarray(rng.normal(size=10), jnp.float32)}

    out = apply(layers.Int8Dense(10, strict=strict), params, x)

    weight = quantizers.quantize_int8(params["kernel"], strict)
    expected = x @ weight + params["bias"]
    np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-5, atol=1e-5)


def test_float_conv_matches_lax():
    x = random_input(10, signed=True)
    params = make_params("FloatConv", (3, 3, CIN, COUT))

    out = apply(layers.FloatConv(COUT, 3, padding=1), params, x)

    np.testing.assert_allclose(np.asarray(out), np.asarray(lax_conv(x, params["kernel"])),
                               rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
# layer_stats
# ---------------------------------------------------------------------------


class TinyNet(nn.Module):
    """One layer of each kind, the way the models stack them."""

    @nn.compact
    def __call__(self, x):
        x = layers.Int8Conv(CIN, 3, padding=1)(x)
        x = layers.FATConv(COUT, 3, padding=1)(nn.relu(x))
        x = layers.UniformQuantConv(COUT, 1, name="uniform")(nn.relu(x))
        return layers.Int8Dense(10)(jnp.mean(x, axis=(1, 2)))


def tiny_net_params():
    """Build random TinyNet parameters and check them against the tree that init builds."""
    params = {
        "Int8Conv_0": make_params("Int8Conv", (3, 3, CIN, CIN)),
        "FATConv_0": make_params("FATConv", (3, 3, CIN, COUT), seed=2),
        "uniform": make_params("UniformQuantConv", (1, 1, COUT, COUT), seed=3),
        "Int8Dense_0": {"kernel": np.ones((COUT, 10), np.float32),
                        "bias": np.zeros(10, np.float32)},
    }
    params["uniform"]["weight_alpha"] = jnp.float32(2.9)
    params["uniform"]["act_alpha"] = jnp.float32(4.1)
    shapes = jax.tree_util.tree_map(lambda leaf: leaf.shape, params)
    assert shapes == param_shapes(TinyNet(), random_input())
    return params


def test_layer_stats_entries():
    stats = layers.layer_stats(tiny_net_params())

    assert set(stats) == {"FATConv_0", "uniform"}
    assert set(stats["FATConv_0"]) == {"mask_min", "mask_mean", "mask_max", "weight_alpha",
                                       "act_alpha"}
    assert set(stats["uniform"]) == {"weight_alpha", "act_alpha"}


def test_layer_stats_under_variables_key():
    stats = layers.layer_stats({"params": tiny_net_params()})

    assert set(stats) == {"params/FATConv_0", "params/uniform"}


def test_layer_stats_without_transform():
    params = tiny_net_params()
    del params["FATConv_0"]["transform"]

    stats = layers.layer_stats(params)

    assert set(stats["FATConv_0"]) == {"weight_alpha", "act_alpha"}


def test_layer_stats_values():
    params = tiny_net_params()
    fat = params["FATConv_0"]

    stats = jax.jit(layers.layer_stats)(params)

    _, mask = transform.frequency_transform(
        transform.standardize(fat["kernel"]), fat["transform"], "HWIO")
    fat_stats = stats["FATConv_0"]
    assert float(fat_stats["mask_min"]) == pytest.approx(float(np.min(mask)), abs=1e-6)
    assert float(fat_stats["mask_mean"]) == pytest.approx(float(np.mean(mask)), abs=1e-6)
    assert float(fat_stats["mask_max"]) == pytest.approx(float(np.max(mask)), abs=1e-6)
    assert float(fat_stats["mask_min"]) < float(fat_stats["mask_max"]) - 0.1
    assert float(fat_stats["weight_alpha"]) == pytest.approx(2.2)
    assert float(fat_stats["act_alpha"]) == pytest.approx(3.3)
    assert float(stats["uniform"]["weight_alpha"]) == pytest.approx(2.9)
    assert float(stats["uniform"]["act_alpha"]) == pytest.approx(4.1)

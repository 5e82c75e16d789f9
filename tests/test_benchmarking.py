"""Tests for fat_jax.benchmarking: compile events, peak memory and the FAT ablations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fat_jax import benchmarking, layers, quantizers, transform
from fat_jax.quant_config import QuantConfig

BATCH, SIZE, CIN, COUT = 2, 6, 4, 8


def random_input(seed=0):
    return jnp.asarray(np.abs(np.random.default_rng(seed).normal(0, 2.0, (BATCH, SIZE, SIZE, CIN))),
                       jnp.float32)


def conv_params(with_transform, seed=1):
    rng = np.random.default_rng(seed)
    params = {"kernel": jnp.asarray(rng.normal(0, 0.3, (3, 3, CIN, COUT)), jnp.float32),
              "weight_alpha": jnp.float32(2.2), "act_alpha": jnp.float32(3.3)}
    if with_transform:
        params["transform"] = jnp.asarray(rng.normal(0, 0.5 / COUT, (COUT, COUT)), jnp.float32)
    return params


def lax_conv(x, weight):
    return jax.lax.conv_general_dilated(x, weight, (1, 1), ((1, 1), (1, 1)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def apply_ablated(module, params, x, ablation):
    def run(params, x):
        with benchmarking.ablate_quantized_convs(ablation):
            return module.apply({"params": params}, x)

    return jax.jit(run)(params, x)


# ---------------------------------------------------------------------------
# CompileRecorder
# ---------------------------------------------------------------------------


def test_recorder_sees_first_call_only():
    x = jnp.arange(5.0)
    double = jax.jit(lambda v: v * 2.0 + 1.0)

    with benchmarking.CompileRecorder(label="first") as recorder:
        double(x)
        recorder.label = "second"
        double(x)

    assert len(recorder.select("first", stage="compile")) == 1
    assert len(recorder.select("first", stage="trace")) == 1
    assert recorder.select("second") == []
    assert recorder.seconds("first") > 0


def test_recorder_sees_new_shape():
    double = jax.jit(lambda v: v * 2.0)
    small, large = jnp.zeros(3), jnp.zeros(4)
    double(small)

    with benchmarking.CompileRecorder(label="new shape") as recorder:
        double(large)

    assert len(recorder.select("new shape", stage="compile")) == 1


def test_recorder_stops_on_exit():
    triple = jax.jit(lambda v: v * 3.0)
    x = jnp.zeros(3)

    with benchmarking.CompileRecorder() as recorder:
        pass
    triple(x)

    assert recorder.events == []


# ---------------------------------------------------------------------------
# Peak memory
# ---------------------------------------------------------------------------


def test_peak_memory_reports_result_and_source():
    result, peak, source = benchmarking.run_with_peak_memory(lambda: jnp.ones(1000) * 2)

    np.testing.assert_array_equal(np.asarray(result), np.full(1000, 2.0, np.float32))
    assert peak > 0
    assert source in benchmarking.MEMORY_SOURCES


# ---------------------------------------------------------------------------
# Ablations
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("layer_type", [layers.FATConv, layers.UniformQuantConv])
def test_no_quantizers_is_plain_conv(layer_type):
    x = random_input()
    params = conv_params(with_transform=layer_type is layers.FATConv)
    module = layer_type(COUT, 3, padding=1)

    out = apply_ablated(module, params, x, "no_quantizers")

    np.testing.assert_allclose(np.asarray(out), np.asarray(lax_conv(x, params["kernel"])),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer_type", [layers.FATConv, layers.UniformQuantConv])
def test_no_weight_path_keeps_input_quantizer(layer_type):
    x = random_input()
    params = conv_params(with_transform=layer_type is layers.FATConv)
    module = layer_type(COUT, 3, padding=1)

    out = apply_ablated(module, params, x, "no_weight_path")

    xq = quantizers.quantize_activation(x, params["act_alpha"], 4)
    np.testing.assert_allclose(np.asarray(out), np.asarray(lax_conv(xq, params["kernel"])),
                               rtol=1e-5, atol=1e-5)


def test_ablation_changes_output():
    # Guards the two tests above: the full layer differs from both ablations.
    x = random_input()
    params = conv_params(with_transform=True)
    module = layers.FATConv(COUT, 3, padding=1)
    full = jax.jit(module.apply)({"params": params}, x)

    for ablation in benchmarking.ABLATIONS:
        out = apply_ablated(module, params, x, ablation)
        assert np.max(np.abs(np.asarray(out) - np.asarray(full))) > 0.1, ablation


def test_ablation_keeps_init_params():
    module = layers.FATConv(COUT, 3, padding=1)

    def init(key, x):
        with benchmarking.ablate_quantized_convs("no_quantizers"):
            return module.init(key, x)

    shapes = jax.eval_shape(init, jax.random.key(0), random_input())["params"]

    assert set(shapes) == {"kernel", "transform", "weight_alpha", "act_alpha"}


def test_unknown_ablation_rejected():
    with pytest.raises(ValueError, match=r"ablation='no_bn'.*no_weight_path, no_quantizers"):
        benchmarking.ablate_quantized_convs("no_bn")


# ---------------------------------------------------------------------------
# Weight path alone
# ---------------------------------------------------------------------------


def test_quantized_weights_match_layers():
    quant = QuantConfig()
    params = {"block": {"fat": conv_params(with_transform=True),
                        "uniform": conv_params(with_transform=False, seed=2)},
              "bn": {"scale": jnp.ones(COUT)}}

    fat_weight, uniform_weight = benchmarking.quantized_weights(params, quant)

    fat = params["block"]["fat"]
    uniform = params["block"]["uniform"]
    np.testing.assert_array_equal(
        np.asarray(fat_weight),
        np.asarray(layers.fat_weight(fat["kernel"], fat["transform"], fat["weight_alpha"], quant)))
    np.testing.assert_array_equal(
        np.asarray(uniform_weight),
        np.asarray(quantizers.quantize_weight(transform.center(uniform["kernel"]),
                                              uniform["weight_alpha"], 4)))


def test_time_weight_path_counts_convs():
    params = {"a": conv_params(with_transform=True), "b": conv_params(with_transform=False)}

    seconds, count = benchmarking.time_weight_path(params, QuantConfig(), repeats=2)

    assert count == 2
    assert seconds > 0


def test_time_weight_path_rejects_zero_repeats():
    with pytest.raises(ValueError, match="repeats=0"):
        benchmarking.time_weight_path({}, QuantConfig(), repeats=0)

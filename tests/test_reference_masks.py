"""Tests that fat_jax reproduces the masks of the released ResNet-20 W4A4 checkpoint.

weights.safetensors contains the PyTorch state dict: FAT layer weights in OIHW layout under
`<layer>.weight`, the transform T under `<layer>.weight_quant.transform.weight`, and the
clips under `<layer>.weight_quant.wgt_alpha` and `<layer>.act_alpha`. layers.json contains
the mask max and min that the reference implementation computed from these weights.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file

from fat_jax import transform

# Every FAT conv of CIFAR ResNet-20: two per basic block, and the 1x1 shortcut convs
# where the stage changes width.
FAT_LAYERS = [
    f"layer{stage}.{block}.conv{conv}"
    for stage in (1, 2, 3) for block in (0, 1, 2) for conv in (1, 2)
] + ["layer2.0.downsample.0", "layer3.0.downsample.0"]


@pytest.fixture(scope="module")
def weights(reference_dir):
    return load_file(reference_dir / "weights.safetensors")


@pytest.fixture(scope="module")
def layer_table(reference_dir):
    return json.loads((reference_dir / "layers.json").read_text())["layers"]


@jax.jit
def checkpoint_mask(w, t):
    """Recompute a layer's (Cout, N // 2 + 1) mask with fat_jax from its OIHW weight."""
    return transform.frequency_transform(transform.standardize(w), t, "OIHW")[1]


@pytest.fixture(scope="module")
def masks(weights):
    return {
        layer: np.asarray(checkpoint_mask(
            jnp.asarray(weights[f"{layer}.weight"]),
            jnp.asarray(weights[f"{layer}.weight_quant.transform.weight"])))
        for layer in FAT_LAYERS
    }


def numpy_mask(weights, layer):
    """Recompute a layer's full (Cout, N) mask in float64 with the complex FFT."""
    w = weights[f"{layer}.weight"].astype(np.float64)
    t = weights[f"{layer}.weight_quant.transform.weight"].astype(np.float64)
    rows = ((w - w.mean()) / w.std(ddof=1)).reshape(w.shape[0], -1)
    return 1.0 / (1.0 + np.exp(-(t @ np.abs(np.fft.fft(rows, axis=-1)))))


def test_fat_layers_listed(weights, layer_table):
    # The stem's `conv1.transform.weight` is unused and the dense layer has none.
    transform_keys = {key for key in weights if key.endswith(".weight_quant.transform.weight")}

    assert transform_keys == {f"{layer}.weight_quant.transform.weight" for layer in FAT_LAYERS}
    assert set(layer_table) == set(FAT_LAYERS)


@pytest.mark.parametrize("layer", FAT_LAYERS)
def test_mask_range_matches(masks, layer_table, layer):
    mask = masks[layer]

    assert float(mask.max()) == pytest.approx(layer_table[layer]["mask_max"], abs=1e-3)
    assert float(mask.min()) == pytest.approx(layer_table[layer]["mask_min"], abs=1e-3)


@pytest.mark.parametrize("layer", FAT_LAYERS)
def test_mask_matches_numpy(weights, masks, layer):
    full = numpy_mask(weights, layer)

    mask = masks[layer]

    assert mask.shape == (full.shape[0], full.shape[1] // 2 + 1)
    np.testing.assert_allclose(mask, full[:, : mask.shape[1]], atol=1e-5)


def test_masks_not_all_near_one(masks):
    # Guards the range checks: the trained transforms filter some bins strongly.
    minima = [float(mask.min()) for mask in masks.values()]

    assert min(minima) < 0.01


@pytest.mark.parametrize("layer", FAT_LAYERS)
def test_alphas_match(weights, layer_table, layer):
    weight_alpha = float(weights[f"{layer}.weight_quant.wgt_alpha"])
    act_alpha = float(weights[f"{layer}.act_alpha"])

    assert weight_alpha == pytest.approx(layer_table[layer]["weight_alpha"], rel=1e-6)
    assert act_alpha == pytest.approx(layer_table[layer]["act_alpha"], rel=1e-6)

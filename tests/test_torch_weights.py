"""Import and export of PyTorch state dicts: reference checkpoint, torchvision names."""

import json
import sys

import numpy as np
import pytest
import safetensors.numpy

import jax
import jax.numpy as jnp
from flax import traverse_util

import fat_jax
from fat_jax import models, quantizers, torch_weights
from fat_jax.quant_config import QuantConfig

CIFAR10_MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
CIFAR10_STD = np.array([0.2023, 0.1994, 0.2010], np.float32)
GOLDEN_TOLERANCE = 1e-4
LAYER_STATS_TOLERANCE = 1e-3


def normalize_cifar10(images: np.ndarray) -> jax.Array:
    """Normalize RGB images in [0, 1] as torchvision's Normalize does, in float32."""
    return jnp.asarray((images.astype(np.float32) - CIFAR10_MEAN) / CIFAR10_STD)


def random_variables(model, resolution: int, seed: int = 0):
    """Return variables of `model` with every leaf random (positive BatchNorm variances)."""
    images = jnp.zeros((1, resolution, resolution, 3), jnp.float32)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), images, train=False))
    rng = np.random.default_rng(seed)
    flat = {}
    for path, leaf in traverse_util.flatten_dict(shapes).items():
        if path[-1] == "var":
            value = rng.uniform(0.5, 2.0, leaf.shape)
        elif path[-1] in ("weight_alpha", "act_alpha"):
            value = rng.uniform(1.0, 4.0, leaf.shape)
        else:
            value = rng.normal(0.0, 0.1, leaf.shape)
        flat[path] = jnp.asarray(value, jnp.float32)
    return traverse_util.unflatten_dict(flat)


def assert_trees_equal(actual, expected):
    actual_flat = traverse_util.flatten_dict(actual)
    expected_flat = traverse_util.flatten_dict(expected)
    assert actual_flat.keys() == expected_flat.keys()
    for path, value in expected_flat.items():
        np.testing.assert_array_equal(np.asarray(actual_flat[path]), np.asarray(value),
                                      err_msg="/".join(path))


def create_model(name: str, bits: int):
    info = models.ARCHITECTURES[name]
    num_classes = 10 if info.family == "cifar" else 1000
    return models.create(name, num_classes=num_classes, quant=QuantConfig.from_bits(bits))


@pytest.fixture(scope="module")
def reference_model(reference_dir):
    """ResNet-20 W4A4 with the released reference weights."""
    return fat_jax.load_reference_checkpoint(reference_dir / "weights.safetensors", "resnet20", 4)


@pytest.fixture(scope="module")
def golden(reference_dir):
    with np.load(reference_dir / "golden.npz") as data:
        return {"images": data["images"], "logits": data["logits"]}


# ---------------------------------------------------------------------------
# The released reference checkpoint
# ---------------------------------------------------------------------------


def test_golden_logits_match(reference_model, golden):
    model, variables = reference_model
    logits = model.apply(variables, normalize_cifar10(golden["images"]), train=False)
    np.testing.assert_allclose(np.asarray(logits), golden["logits"], rtol=0,
                               atol=GOLDEN_TOLERANCE)


def test_golden_predictions_match(reference_model, golden):
    model, variables = reference_model
    logits = model.apply(variables, normalize_cifar10(golden["images"]), train=False)
    np.testing.assert_array_equal(np.argmax(logits, axis=1), np.argmax(golden["logits"], axis=1))


def test_reference_layer_stats_match(reference_model, reference_dir):
    _, variables = reference_model
    expected = json.loads((reference_dir / "layers.json").read_text())["layers"]
    stats = {
        torch_weights.torch_module_name(tuple(path.split("/"))): values
        for path, values in fat_jax.layer_stats(variables["params"]).items()
    }
    assert set(stats) == set(expected)
    for layer, values in expected.items():
        for name, value in values.items():
            assert float(stats[layer][name]) == pytest.approx(value, abs=LAYER_STATS_TOLERANCE), (
                f"{layer} {name}")


def test_reference_checkpoint_export_round_trip(reference_model, reference_dir):
    _, variables = reference_model
    original = safetensors.numpy.load_file(str(reference_dir / "weights.safetensors"))
    expected = {key: value for key, value in original.items()
                if not key.endswith(".num_batches_tracked")}

    exported = fat_jax.variables_to_state_dict(variables, "resnet20")

    assert exported.keys() == expected.keys()
    # The unused transforms of the 8-bit stem and head are written at their inits.
    unused = {"conv1.transform.weight", "linear.transform.weight"}
    for key in exported.keys() - unused:
        np.testing.assert_array_equal(exported[key], expected[key], err_msg=key)


def test_reference_checkpoint_pth_matches_safetensors(reference_model, reference_dir, golden):
    pytest.importorskip("torch", reason="reading .pth.tar files needs PyTorch")
    model, variables = fat_jax.load_reference_checkpoint(
        reference_dir / "checkpoint.pth.tar", "resnet20", 4)
    _, expected_variables = reference_model

    assert_trees_equal(variables, expected_variables)
    images = normalize_cifar10(golden["images"])
    np.testing.assert_array_equal(
        np.asarray(model.apply(variables, images, train=False)),
        np.asarray(model.apply(expected_variables, images, train=False)))


def test_reference_checkpoint_infers_config(reference_model):
    model, _ = reference_model
    assert model.num_classes == 10
    assert model.quant == QuantConfig.from_bits(4)


def test_reference_checkpoint_rejects_wrong_bits(reference_dir):
    with pytest.raises(ValueError) as error:
        fat_jax.load_reference_checkpoint(reference_dir / "weights.safetensors", "resnet20", 32)
    message = str(error.value)
    assert "unexpected keys (60)" in message
    assert "layer1.0.conv1.act_alpha ()" in message
    assert "probably of a quantized model" in message


def test_reference_checkpoint_rejects_wrong_arch(reference_dir):
    with pytest.raises(ValueError, match="missing keys") as error:
        fat_jax.load_reference_checkpoint(reference_dir / "weights.safetensors", "resnet32", 4)
    assert "layer1.3.conv1.weight (16, 16, 3, 3)" in str(error.value)


# ---------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------


def test_read_state_dict_strips_module_prefix(tmp_path):
    path = tmp_path / "weights.safetensors"
    safetensors.numpy.save_file({"module.fc.weight": np.ones((2, 3), np.float32),
                                 "fc.bias": np.zeros(2, np.float32)}, str(path))

    state_dict = fat_jax.read_state_dict(path)

    assert sorted(state_dict) == ["fc.bias", "fc.weight"]


def test_read_state_dict_without_torch(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pth.tar"
    path.write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch", None)

    with pytest.raises(ImportError) as error:
        fat_jax.read_state_dict(path)

    message = str(error.value)
    assert "pip install -e '.[torch]'" in message
    assert "safetensors" in message
    assert str(path) in message


def test_read_state_dict_rejects_unknown_suffix(tmp_path):
    path = tmp_path / "weights.npz"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="Unsupported state dict file"):
        fat_jax.read_state_dict(path)


def test_read_state_dict_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        fat_jax.read_state_dict(tmp_path / "absent.safetensors")


def test_read_state_dict_torch_checkpoint(tmp_path):
    torch = pytest.importorskip("torch", reason="writing .pth files needs PyTorch")
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 3, "state_dict": {"module.fc.weight": torch.ones(2, 3),
                                           "module.fc.bias": torch.zeros(2, dtype=torch.bfloat16)}},
               path)

    state_dict = fat_jax.read_state_dict(path)

    assert sorted(state_dict) == ["fc.bias", "fc.weight"]
    assert state_dict["fc.bias"].dtype == np.float32


# ---------------------------------------------------------------------------
# torchvision names
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(models.ARCHITECTURES))
@pytest.mark.parametrize("bits", [32, 4])
def test_state_dict_round_trip_restores_variables(name, bits):
    model = create_model(name, bits)
    variables = random_variables(model, models.ARCHITECTURES[name].resolution)
    template = random_variables(model, models.ARCHITECTURES[name].resolution, seed=1)

    state_dict = fat_jax.variables_to_state_dict(variables, name)
    restored = fat_jax.state_dict_to_variables(state_dict, name, template)

    assert_trees_equal(restored, variables)


def test_state_dict_round_trip_outputs_identical(tmp_path):
    model = create_model("resnet18", 4)
    variables = random_variables(model, 224)
    template = random_variables(model, 224, seed=1)
    path = tmp_path / "resnet18.safetensors"

    fat_jax.save_state_dict(path, variables, "resnet18")
    restored = fat_jax.load_torchvision_weights(path, "resnet18", template)

    images = jnp.asarray(np.random.default_rng(2).normal(size=(2, 64, 64, 3)), jnp.float32)
    apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
    np.testing.assert_array_equal(np.asarray(apply(restored, images)),
                                  np.asarray(apply(variables, images)))


def test_torchvision_names_resnet50():
    model = create_model("resnet50", 32)
    state_dict = fat_jax.variables_to_state_dict(random_variables(model, 224), "resnet50")

    # torchvision's resnet50 state dict has 320 keys, 53 of them num_batches_tracked.
    assert len(state_dict) == 320 - 53
    assert state_dict["conv1.weight"].shape == (64, 3, 7, 7)
    assert state_dict["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert state_dict["layer2.0.conv2.weight"].shape == (128, 128, 3, 3)
    assert state_dict["layer4.2.bn3.running_var"].shape == (2048,)
    assert state_dict["fc.weight"].shape == (1000, 2048)
    assert "conv1.transform.weight" not in state_dict


def test_torchvision_names_mobilenetv2():
    model = create_model("mobilenetv2", 32)
    state_dict = fat_jax.variables_to_state_dict(random_variables(model, 224), "mobilenetv2")

    # torchvision's mobilenet_v2 state dict has 314 keys, 52 of them num_batches_tracked.
    assert len(state_dict) == 314 - 52
    assert state_dict["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert state_dict["features.1.conv.0.0.weight"].shape == (32, 1, 3, 3)
    assert state_dict["features.1.conv.1.weight"].shape == (16, 32, 1, 1)
    assert state_dict["features.1.conv.2.running_mean"].shape == (16,)
    assert state_dict["features.2.conv.0.0.weight"].shape == (96, 16, 1, 1)
    assert state_dict["features.2.conv.1.0.weight"].shape == (96, 1, 3, 3)
    assert state_dict["features.17.conv.2.weight"].shape == (320, 960, 1, 1)
    assert state_dict["features.18.0.weight"].shape == (1280, 320, 1, 1)
    assert state_dict["classifier.1.weight"].shape == (1000, 1280)


def test_quantized_export_uses_reference_names():
    model = create_model("mobilenetv2", 4)
    state_dict = fat_jax.variables_to_state_dict(random_variables(model, 224), "mobilenetv2")

    # Projection (FAT), depthwise and expansion (uniform), last conv (uniform).
    assert state_dict["features.2.conv.2.weight_quant.transform.weight"].shape == (24, 24)
    assert state_dict["features.2.conv.2.weight_quant.wgt_alpha"].shape == ()
    assert state_dict["features.2.conv.1.0.act_alpha"].shape == ()
    assert "features.2.conv.1.0.weight_quant.transform.weight" not in state_dict
    assert state_dict["features.2.conv.0.0.weight_quant.wgt_alpha"].shape == ()
    assert state_dict["features.18.0.act_alpha"].shape == ()
    # The reference's unused transforms of the 8-bit layers, at their 1/C init.
    np.testing.assert_array_equal(state_dict["features.0.0.transform.weight"],
                                  np.full((32, 32), 1 / 32, np.float32))
    assert state_dict["classifier.1.transform.weight"].shape == (1000, 1000)


def test_torchvision_weights_keep_quantizer_inits():
    float_model = create_model("resnet18", 32)
    float_variables = random_variables(float_model, 224)
    state_dict = fat_jax.variables_to_state_dict(float_variables, "resnet18")
    quant_model = create_model("resnet18", 4)
    template = random_variables(quant_model, 224, seed=1)

    loaded = fat_jax.load_torchvision_weights(state_dict, "resnet18", template)

    loaded_flat = traverse_util.flatten_dict(loaded)
    template_flat = traverse_util.flatten_dict(template)
    float_flat = traverse_util.flatten_dict(float_variables)
    for path, value in loaded_flat.items():
        source = template_flat if path[-1] in torch_weights.QUANTIZER_LEAVES else float_flat
        np.testing.assert_array_equal(np.asarray(value), np.asarray(source[path]),
                                      err_msg="/".join(path))


@pytest.fixture(scope="module")
def resnet18_float():
    model = create_model("resnet18", 32)
    variables = random_variables(model, 224)
    return variables, fat_jax.variables_to_state_dict(variables, "resnet18")


def load_error(state_dict, variables, arch="resnet18") -> str:
    with pytest.raises(ValueError) as error:
        fat_jax.load_torchvision_weights(state_dict, arch, variables)
    return str(error.value)


def test_load_ignores_batch_counters_and_unused_transforms(resnet18_float):
    variables, state_dict = resnet18_float
    extended = dict(state_dict)
    extended["bn1.num_batches_tracked"] = np.array(7, np.int64)
    extended["conv1.transform.weight"] = np.zeros((64, 64), np.float32)
    extended["fc.transform.weight"] = np.zeros((1000, 1000), np.float32)

    assert_trees_equal(fat_jax.load_torchvision_weights(extended, "resnet18", variables), variables)


def test_load_rejects_renamed_key(resnet18_float):
    variables, state_dict = resnet18_float
    renamed = dict(state_dict)
    renamed["classifier.weight"] = renamed.pop("fc.weight")

    message = load_error(renamed, variables)

    assert "missing keys (1):\n    fc.weight (1000, 512)" in message
    assert "unexpected keys (1):\n    classifier.weight (1000, 512)" in message


def test_load_rejects_missing_key(resnet18_float):
    variables, state_dict = resnet18_float
    missing = dict(state_dict)
    del missing["layer3.1.bn2.running_var"]

    message = load_error(missing, variables)

    assert "missing keys (1):\n    layer3.1.bn2.running_var (256,)" in message
    assert "unexpected" not in message


def test_load_rejects_mis_shaped_key(resnet18_float):
    variables, state_dict = resnet18_float
    mis_shaped = dict(state_dict)
    mis_shaped["layer1.0.conv1.weight"] = np.zeros((64, 64, 1, 1), np.float32)

    message = load_error(mis_shaped, variables)

    assert ("mis-shaped keys (1):\n    layer1.0.conv1.weight: expected (64, 64, 3, 3),"
            " got (64, 64, 1, 1)") in message


def test_load_rejects_integer_weights(resnet18_float):
    variables, state_dict = resnet18_float
    integer = dict(state_dict)
    integer["fc.bias"] = np.zeros(1000, np.int64)

    message = load_error(integer, variables)

    assert "fc.bias: dtype int64" in message


def test_load_rejects_partial_quantizer_params():
    model = create_model("resnet20", 4)
    variables = random_variables(model, 32)
    state_dict = fat_jax.variables_to_state_dict(variables, "resnet20")
    del state_dict["layer2.0.downsample.0.act_alpha"]

    message = load_error(state_dict, variables, arch="resnet20")

    assert "missing keys (1):\n    layer2.0.downsample.0.act_alpha ()" in message


def test_strict_load_rejects_float_state_dict():
    state_dict = fat_jax.variables_to_state_dict(
        random_variables(create_model("resnet20", 32), 32), "resnet20")
    variables = random_variables(create_model("resnet20", 4), 32)

    with pytest.raises(ValueError) as error:
        fat_jax.state_dict_to_variables(state_dict, "resnet20", variables)

    message = str(error.value)
    assert "missing keys (60)" in message
    assert "probably of a full-precision model" in message


def test_load_rejects_abstract_template():
    model = create_model("resnet20", 4)
    state_dict = fat_jax.variables_to_state_dict(
        random_variables(create_model("resnet20", 32), 32), "resnet20")
    template = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))

    with pytest.raises(ValueError, match="abstract"):
        fat_jax.load_torchvision_weights(state_dict, "resnet20", template)


def test_load_rejects_unknown_arch(resnet18_float):
    variables, state_dict = resnet18_float
    with pytest.raises(ValueError, match="Unknown model 'resnet19'"):
        fat_jax.load_torchvision_weights(state_dict, "resnet19", variables)

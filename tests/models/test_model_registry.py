"""Registry, parameter counts and layer placement of the model zoo."""

import flax.linen as nn
import pytest

import jax
import jax.numpy as jnp

from fat_jax import layers, models
from fat_jax.quant_config import QuantConfig

# PyTorch's `sum(p.numel() for p in model.parameters())` for the same topologies
# (torchvision for the ImageNet models), without FAT transforms and alphas.
FLOAT_PARAM_COUNTS = {
    "resnet20": 272_474,
    "resnet32": 466_906,
    "resnet44": 661_338,
    "resnet56": 855_770,
    "resnet110": 1_730_714,
    "vgg_small": 4_598_666,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "mobilenetv2": 3_504_872,
}

W4 = QuantConfig.from_bits(4)
W4_STRICT = QuantConfig.from_bits(4, strict=True)
FLOAT = QuantConfig.from_bits(32)


def num_classes_of(name: str) -> int:
    return 10 if models.ARCHITECTURES[name].family == "cifar" else 1000


def variable_shapes(model, resolution: int):
    images = jnp.zeros((1, resolution, resolution, 3), jnp.float32)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), images, train=False))


def layer_calls(name: str, quant: QuantConfig) -> dict[str, nn.Module]:
    """Return every conv and dense layer that `name` calls, keyed by '/'-joined path."""
    model = models.create(name, num_classes=num_classes_of(name), quant=quant)
    resolution = models.ARCHITECTURES[name].resolution
    variables = variable_shapes(model, resolution)
    images = jax.ShapeDtypeStruct((1, resolution, resolution, 3), jnp.float32)
    calls = {}

    def record(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name == "__call__" and isinstance(
                module, (layers.FATConv, layers.UniformQuantConv, layers.Int8Conv,
                         layers.FloatConv, layers.Int8Dense)):
            calls["/".join(module.path)] = module
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, images)
    return calls


def test_registry_names():
    assert list(models.ARCHITECTURES) == list(FLOAT_PARAM_COUNTS)


IMAGENET_MODELS = ("resnet18", "resnet34", "resnet50", "mobilenetv2")


@pytest.mark.parametrize("name", list(FLOAT_PARAM_COUNTS))
def test_architecture_resolution_and_family(name):
    info = models.ARCHITECTURES[name]
    expected = ("imagenet", 224) if name in IMAGENET_MODELS else ("cifar", 32)
    assert (info.family, info.resolution) == expected


def test_create_rejects_unknown_name():
    with pytest.raises(ValueError) as error:
        models.create("resnet19", num_classes=10, quant=W4)
    message = str(error.value)
    assert "Unknown model 'resnet19'" in message
    for name in FLOAT_PARAM_COUNTS:
        assert name in message


def test_create_rejects_non_config_quant():
    with pytest.raises(TypeError, match="QuantConfig"):
        models.create("resnet20", num_classes=10, quant=4)


def test_create_passes_model_attributes():
    model = models.create("vgg_small", num_classes=100, quant=W4, dropout_rate=0.1)
    assert (model.num_classes, model.dropout_rate, model.quant) == (100, 0.1, W4)


@pytest.mark.parametrize("name", list(FLOAT_PARAM_COUNTS))
@pytest.mark.parametrize("quant", [FLOAT, W4], ids=["float", "w4a4"])
def test_float_param_count(name, quant):
    model = models.create(name, num_classes=num_classes_of(name), quant=quant)
    variables = variable_shapes(model, models.ARCHITECTURES[name].resolution)

    assert models.count_float_params(variables["params"]) == FLOAT_PARAM_COUNTS[name]
    assert models.count_float_params(variables) == FLOAT_PARAM_COUNTS[name]


def test_cifar_resnet_runs_on_16x16_inputs():
    model = models.create("resnet20", num_classes=10, quant=W4)
    variables = variable_shapes(model, 32)
    images = jax.ShapeDtypeStruct((4, 16, 16, 3), jnp.float32)

    logits = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, images)

    assert logits.shape == (4, 10)


def test_cifar_resnet_rejects_invalid_depth():
    model = models.CifarResNet(depth=21, num_classes=10, quant=W4)
    with pytest.raises(ValueError, match="6n \\+ 2"):
        variable_shapes(model, 32)


def test_reference_quant_config_by_family():
    cifar = models.reference_quant_config("resnet20", 4)
    imagenet = models.reference_quant_config("resnet18", 3, "log")
    overridden = models.reference_quant_config("mobilenetv2", 4, act_alpha_init=6.0)

    assert cifar == QuantConfig.from_bits(4)
    assert imagenet == QuantConfig.from_bits(3, grid="log", act_alpha_grad="pact",
                                             act_alpha_init=8.0)
    assert overridden.act_alpha_init == 6.0
    assert overridden.act_alpha_grad == "pact"
    assert models.reference_quant_config("resnet50", 32).full_precision


# ---------------------------------------------------------------------------
# Layer placement
# ---------------------------------------------------------------------------


def assert_layer(calls, path, layer_type, **attributes):
    assert path in calls, f"{path} not called; called: {sorted(calls)[:10]} ..."
    module = calls[path]
    assert type(module) is layer_type, f"{path} is {type(module).__name__}"
    for attribute, value in attributes.items():
        assert getattr(module, attribute) == value, f"{path}.{attribute}"


def test_cifar_resnet_placement():
    calls = layer_calls("resnet20", W4)

    assert_layer(calls, "conv1", layers.Int8Conv, kernel_size=3, strides=1, padding=1)
    assert_layer(calls, "linear", layers.Int8Dense, features=10)
    assert_layer(calls, "layer1_0/conv1", layers.FATConv, strides=1, padding=1)
    assert_layer(calls, "layer2_0/conv1", layers.FATConv, features=32, strides=2, padding=1)
    assert_layer(calls, "layer2_0/conv2", layers.FATConv, strides=1, padding=1)
    assert_layer(calls, "layer2_0/downsample_0", layers.FATConv, kernel_size=1, strides=2,
                 padding=0)
    assert_layer(calls, "layer3_0/downsample_0", layers.FATConv, features=64, strides=2)
    assert "layer1_0/downsample_0" not in calls
    assert "layer2_1/downsample_0" not in calls
    fat = [path for path, module in calls.items() if isinstance(module, layers.FATConv)]
    assert len(fat) == 20
    assert len(calls) == 22


def test_vgg_small_placement():
    calls = layer_calls("vgg_small", W4)

    assert_layer(calls, "features_conv0", layers.Int8Conv, features=128, padding=1)
    for index, features in ((1, 128), (3, 256), (4, 256), (6, 512), (7, 512)):
        assert_layer(calls, f"features_conv{index}", layers.FATConv, features=features,
                     padding=1)
    assert_layer(calls, "classifier_linear2", layers.Int8Dense, features=10)
    assert len(calls) == 7


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_imagenet_resnet_placement(name):
    calls = layer_calls(name, W4)
    strided_conv = "conv1" if name == "resnet18" else "conv2"

    assert_layer(calls, "conv1", layers.Int8Conv, kernel_size=7, strides=2, padding=3)
    assert_layer(calls, "fc", layers.Int8Dense, features=1000)
    for stage in (2, 3, 4):
        assert_layer(calls, f"layer{stage}_0/{strided_conv}", layers.FATConv, strides=2,
                     padding=1)
        assert_layer(calls, f"layer{stage}_0/downsample_0", layers.FATConv, strides=2)
    if name == "resnet50":
        assert_layer(calls, "layer1_0/conv1", layers.FATConv, kernel_size=1, strides=1)
        assert_layer(calls, "layer1_0/downsample_0", layers.FATConv, features=256, strides=1)
        assert_layer(calls, "layer4_2/conv3", layers.FATConv, features=2048)
    else:
        assert "layer1_0/downsample_0" not in calls
    eight_bit = (layers.Int8Conv, layers.Int8Dense)
    block_convs = [module for module in calls.values() if not isinstance(module, eight_bit)]
    assert all(isinstance(module, layers.FATConv) for module in block_convs)


def test_mobilenetv2_placement_and_signed_inputs():
    calls = layer_calls("mobilenetv2", W4_STRICT)

    assert_layer(calls, "features_0_0", layers.Int8Conv, strides=2, padding=1, strict=True)
    assert_layer(calls, "classifier_1", layers.Int8Dense, features=1000, strict=True)
    # Block 1 (t = 1): depthwise and projection only.
    assert_layer(calls, "features_1/conv_0_0", layers.UniformQuantConv, feature_group_count=32,
                 signed_input=False)
    assert_layer(calls, "features_1/conv_1", layers.FATConv, features=16, signed_input=False)
    for block in range(2, 18):
        assert_layer(calls, f"features_{block}/conv_0_0", layers.UniformQuantConv,
                     kernel_size=1, signed_input=True)
        depthwise = calls[f"features_{block}/conv_1_0"]
        assert_layer(calls, f"features_{block}/conv_1_0", layers.UniformQuantConv,
                     kernel_size=3, padding=1, signed_input=False,
                     feature_group_count=depthwise.features)
        assert_layer(calls, f"features_{block}/conv_2", layers.FATConv, kernel_size=1,
                     signed_input=False)
    for block in (2, 4, 7, 14):
        assert calls[f"features_{block}/conv_1_0"].strides == 2
    assert_layer(calls, "features_18_0", layers.UniformQuantConv, features=1280,
                 signed_input=True)
    assert len(calls) == 1 + 2 + 16 * 3 + 1 + 1


@pytest.mark.parametrize("name", list(FLOAT_PARAM_COUNTS))
def test_full_precision_keeps_8bit_stem_and_head(name):
    calls = layer_calls(name, FLOAT)

    types = [type(module) for module in calls.values()]
    assert types.count(layers.Int8Conv) == 1
    assert types.count(layers.Int8Dense) == 1
    assert set(types) == {layers.Int8Conv, layers.Int8Dense, layers.FloatConv}

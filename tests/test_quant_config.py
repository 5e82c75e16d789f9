"""Tests for fat_jax.quant_config.QuantConfig: defaults, helpers and validation."""

import dataclasses

import numpy as np
import pytest

from fat_jax.quant_config import QuantConfig


def test_defaults():
    config = QuantConfig()

    assert config.weight_bits == 4
    assert config.act_bits == 4
    assert config.grid == "uniform"
    assert config.act_alpha_grad == "lsq"
    assert config.strict is False
    assert config.use_transform is True
    assert config.weight_alpha_init == 3.0
    assert config.act_alpha_init == 5.0
    assert config.uniform_act_alpha_init == 5.0


def test_frozen():
    config = QuantConfig()

    with pytest.raises(dataclasses.FrozenInstanceError):
        config.weight_bits = 3


def test_keyword_only():
    with pytest.raises(TypeError):
        QuantConfig(4, 4)


def test_equal_configs_hash_equal():
    # Flax module attributes must be hashable, and equal settings must compare equal.
    first = QuantConfig(weight_bits=3, act_bits=3, grid="log")
    second = QuantConfig(weight_bits=3, act_bits=3, grid="log")

    assert first == second
    assert hash(first) == hash(second)
    assert first != QuantConfig(weight_bits=3, act_bits=3)


def test_from_bits():
    config = QuantConfig.from_bits(3, grid="log", act_alpha_init=8.0)

    assert config.weight_bits == 3
    assert config.act_bits == 3
    assert config.grid == "log"
    assert config.act_alpha_init == 8.0


def test_use_transform_off_accepted():
    config = QuantConfig(use_transform=False)

    assert config.use_transform is False
    assert config != QuantConfig()


def test_full_precision():
    assert QuantConfig.from_bits(32).full_precision is True
    assert QuantConfig.from_bits(8).full_precision is False


def test_lower_clip_reference():
    config = QuantConfig()

    assert config.lower_clip(signed_input=False) == "none"
    assert config.lower_clip(signed_input=True) == "none"


def test_lower_clip_strict():
    config = QuantConfig(strict=True)

    assert config.lower_clip(signed_input=False) == "zero"
    assert config.lower_clip(signed_input=True) == "signed"


@pytest.mark.parametrize("bits", [2, 5, 8])
def test_valid_bits_accepted(bits):
    config = QuantConfig(weight_bits=bits, act_bits=bits)

    assert config.weight_bits == bits


@pytest.mark.parametrize("name", ["weight_alpha_init", "act_alpha_init",
                                  "uniform_act_alpha_init"])
@pytest.mark.parametrize("value", [0.5, 8, np.float32(2.5)], ids=repr)
def test_positive_alpha_init_accepted(name, value):
    config = QuantConfig(**{name: value})

    assert getattr(config, name) == value


# ---------------------------------------------------------------------------
# Invalid settings
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["weight_bits", "act_bits"])
@pytest.mark.parametrize("bits", [1, 9, 2.5, True, 0, 16, None, "4"], ids=repr)
def test_bad_bits_rejected(name, bits):
    with pytest.raises(ValueError, match=rf"Invalid {name}=.*integer from 2 to 8"):
        QuantConfig(**{name: bits})


@pytest.mark.parametrize("bits", [1, 9, 2.5, True])
def test_bad_bits_message_names_value(bits):
    with pytest.raises(ValueError, match=rf"weight_bits={bits!r}:"):
        QuantConfig(weight_bits=bits)


@pytest.mark.parametrize(("weight_bits", "act_bits"), [(32, 4), (4, 32), (32, 8), (2, 32)])
def test_mixed_float_bits_rejected(weight_bits, act_bits):
    pattern = (rf"weight_bits={weight_bits}, act_bits={act_bits}: use 32 for both"
               r" \(full precision\) or 2 to 8 for both")

    with pytest.raises(ValueError, match=pattern):
        QuantConfig(weight_bits=weight_bits, act_bits=act_bits)


def test_unknown_grid_rejected():
    with pytest.raises(ValueError, match=r"grid='apot'.*uniform, log"):
        QuantConfig(grid="apot")


def test_unknown_alpha_grad_rejected():
    with pytest.raises(ValueError, match=r"act_alpha_grad='ste'.*lsq, pact"):
        QuantConfig(act_alpha_grad="ste")


@pytest.mark.parametrize("name", ["strict", "use_transform"])
@pytest.mark.parametrize("value", [1, "yes", None, np.bool_(True)], ids=repr)
def test_non_bool_flag_rejected(name, value):
    with pytest.raises(ValueError, match=rf"Invalid {name}={value!r}: expected True or False"):
        QuantConfig(**{name: value})


@pytest.mark.parametrize("name", ["weight_alpha_init", "act_alpha_init",
                                  "uniform_act_alpha_init"])
@pytest.mark.parametrize("value", [0, 0.0, -1.0, -5, float("nan"), float("inf"), True, "3.0",
                                   None], ids=repr)
def test_bad_alpha_init_rejected(name, value):
    with pytest.raises(ValueError, match=rf"Invalid {name}=.*positive finite number"):
        QuantConfig(**{name: value})

"""Tests of config validation: each invalid field names itself, its value and the fix."""

import pytest

from configs import common, digits
from fat_jax.train import config_check

ARCHITECTURES = ("resnet20", "mobilenetv2")
DATASETS = ("digits", "cifar10")


def _validate(config, device_count=4):
    config_check.validate(config, architectures=ARCHITECTURES, datasets=DATASETS,
                          device_count=device_count)


def test_default_config_valid():
    _validate(digits.get_config())


@pytest.mark.parametrize("field, value, message", [
    ("model.arch", "resnet99", r"model.arch='resnet99'.*mobilenetv2, resnet20"),
    ("dataset.name", "mnist", r"dataset.name='mnist'.*cifar10, digits"),
    ("quant.grid", "cubic", r"quant.grid='cubic'.*uniform, log"),
    ("quant.act_alpha_grad", "ste", r"quant.act_alpha_grad='ste'.*lsq, pact"),
    ("quant.weight_bits", 1, r"quant.weight_bits=1.*from 2 to 8, or 32"),
    ("quant.act_bits", 9, r"quant.act_bits=9.*from 2 to 8, or 32"),
    ("quant.weight_alpha_init", 0.0, r"quant.weight_alpha_init=0.0.*positive"),
    ("bn_stats", "local", r"bn_stats='local'.*global, per_device"),
    ("batch_size", 0, r"batch_size=0.*positive integer"),
    ("batch_size", 30, r"batch_size=30.*multiple of the device count \(4\)"),
    ("num_epochs", -1, r"num_epochs=-1.*positive integer"),
    ("num_train_steps", 0, r"num_train_steps=0.*positive integer"),
    ("optimizer.groups.default.lr", 0.0, r"optimizer.groups.default.lr=0.0.*positive"),
    ("optimizer.groups.default.weight_decay", -1.0, r"weight_decay=-1.0.*non-negative"),
    ("optimizer.momentum", 1.5, r"optimizer.momentum=1.5.*\[0, 1\)"),
    ("label_smoothing", 1.0, r"label_smoothing=1.0"),
    ("init_from", "/nonexistent/run", r"init_from='/nonexistent/run'.*existing run workdir"),
    ("batch_size", -16, r"batch_size=-16.*positive integer"),
    ("eval_batch_size", 30, r"eval_batch_size=30.*multiple of the device count \(4\)"),
    ("num_epochs", 0, r"num_epochs=0.*positive integer"),
    ("optimizer.groups.default.lr", -0.1, r"lr=-0.1.*positive number"),
    ("optimizer.decay_epochs", (5, 0), r"decay_epochs=\(5, 0\).*positive numbers"),
    ("dataset.input_shards", -1, r"input_shards=-1.*non-negative integer"),
    ("debug.nan_at_step", 0, r"nan_at_step=0.*-1 \(off\) or a step number >= 1"),
])
def test_invalid_field_rejected(field, value, message):
    config = digits.get_config()
    target = config
    *parents, leaf = field.split(".")
    for parent in parents:
        target = target[parent]
    target[leaf] = value
    with pytest.raises(config_check.ConfigError, match=message) as error:
        _validate(config)
    assert error.value.field == field


def test_batch_must_divide_into_input_shards():
    config = digits.get_config()
    config.dataset.input_shards = 3
    with pytest.raises(config_check.ConfigError,
                       match=r"batch_size=64.*multiple of dataset.input_shards \(3\)"):
        _validate(config)


def test_input_shards_must_divide_over_processes():
    config = digits.get_config()
    config.dataset.input_shards = 2
    config_check.validate_for_devices(config, device_count=4, process_count=2)
    with pytest.raises(config_check.ConfigError,
                       match=r"input_shards=2.*multiple of the process count \(4\)"):
        config_check.validate_for_devices(config, device_count=4, process_count=4)


def test_init_from_needs_checkpoints_or_state_dict(tmp_path):
    config = digits.get_config()
    config.init_from = str(tmp_path)
    with pytest.raises(config_check.ConfigError, match=r"a run workdir that contains a"):
        _validate(config)
    weights = tmp_path / "weights.npz"
    weights.write_bytes(b"")
    config.init_from = str(weights)
    with pytest.raises(config_check.ConfigError, match=r"weights.npz.*\.safetensors, \.pth"):
        _validate(config)
    (tmp_path / "checkpoints").mkdir()
    config.init_from = str(tmp_path)
    _validate(config)


def test_mixed_float_bits_rejected():
    config = digits.get_config()
    config.quant.act_bits = 32
    with pytest.raises(config_check.ConfigError, match=r"quant.act_bits=32"):
        _validate(config)


def test_group_order_must_list_groups():
    config = digits.get_config()
    config.optimizer.group_order = ("act_alpha", "default")
    with pytest.raises(config_check.ConfigError, match=r"group_order.*act_alpha, default, fat"):
        _validate(config)


def test_differing_fields_ignores_run_control():
    saved = {"num_train_steps": 3, "quant": {"bits": 4}, "optimizer": {"decay_epochs": [1]}}
    current = {"num_train_steps": 9, "quant": {"bits": 3}, "optimizer": {"decay_epochs": (1,)}}
    assert config_check.differing_fields(saved, current) == ["quant.bits: 4 -> 3"]


@pytest.mark.parametrize("arg, expected", [
    ("bits=3,grid=log", {"bits": 3, "grid": "log", "runlocal": False}),
    ("runlocal", {"bits": 4, "grid": "uniform", "runlocal": True}),
    ("", {"bits": 4, "grid": "uniform", "runlocal": False}),
])
def test_parse_arg(arg, expected):
    assert vars(common.parse_arg(arg, bits=4, grid="uniform", runlocal=False)) == expected


@pytest.mark.parametrize("arg, message", [
    ("bitz=3", r"'bitz=3'.*expected keys bits, grid"),
    ("bits=three", r"'bits=three'.*expected an integer"),
    ("bits", r"'bits'.*needs a value"),
])
def test_parse_arg_rejects(arg, message):
    with pytest.raises(ValueError, match=message):
        common.parse_arg(arg, bits=4, grid="uniform")


def test_init_from_unreadable_checkpoint(tmp_path):
    from fat_jax.train import init_from

    step_dir = tmp_path / "checkpoints" / "7"
    step_dir.mkdir(parents=True)
    (step_dir / "notes.txt").write_text("not a checkpoint\n")
    with pytest.raises(init_from.InitFromError,
                       match=r"Cannot read the checkpoint at step 7 in .*checkpoints"):
        init_from.load(str(tmp_path), {"params": {}, "batch_stats": {}}, arch="resnet20")
    assert (step_dir / "notes.txt").read_text() == "not a checkpoint\n"

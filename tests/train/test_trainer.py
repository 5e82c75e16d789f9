"""End-to-end tests of the trainer on the embedded digits data."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import traverse_util

from configs import digits
from fat_jax.train import checkpoints as checkpoints_lib
from fat_jax.train import trainer

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
SUBPROCESS_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def _short_config(data_dir, **overrides):
    config = digits.get_config()
    config.dataset.data_dir = data_dir
    config.log_every_steps = 1
    for key, value in overrides.items():
        target = config
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    return config


def _final_params(workdir):
    ckpt = checkpoints_lib.Checkpoints(workdir, read_only=True)
    state, meta = ckpt.restore(ckpt.steps()[-1])
    ckpt.close()
    return traverse_util.flatten_dict(state["params"]), meta


@pytest.mark.slow
def test_digits_default_reaches_95(data_dir, tmp_path):
    config = _short_config(data_dir, log_every_steps=20)
    summary = trainer.train_and_evaluate(config, tmp_path)
    assert summary.best_top1 >= 0.95
    assert summary.final_top1 >= 0.95
    assert summary.weight_bits == 4
    assert summary.num_params == 272_474
    assert pathlib.Path(summary.plot).is_file()
    assert any(pathlib.Path(summary.log_dir).iterdir())


@pytest.mark.slow
def test_resume_matches_uninterrupted(data_dir, tmp_path):
    steps = 6
    whole = tmp_path / "whole"
    trainer.train_and_evaluate(_short_config(data_dir, num_train_steps=steps), whole)

    split = tmp_path / "split"
    trainer.train_and_evaluate(_short_config(data_dir, num_train_steps=steps // 2), split)
    trainer.train_and_evaluate(_short_config(data_dir, num_train_steps=steps), split)

    expected, expected_meta = _final_params(whole)
    resumed, resumed_meta = _final_params(split)
    assert expected_meta["step"] == resumed_meta["step"] == steps
    for path, value in expected.items():
        np.testing.assert_array_equal(resumed[path], value, err_msg="/".join(path))
    assert [h["loss"] for h in resumed_meta["history"]["train"]] == [
        h["loss"] for h in expected_meta["history"]["train"]]


def _run_train(workdir, data_dir, device_count, *extra):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={device_count}"
    command = [sys.executable, "-m", "experiments.train", "--config=configs/digits.py",
               f"--workdir={workdir}", f"--config.dataset.data_dir={data_dir}", *extra]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT_S)


@pytest.mark.slow
def test_four_devices_match_one(data_dir, tmp_path):
    losses, params = {}, {}
    for devices in (1, 4):
        workdir = tmp_path / f"devices{devices}"
        result = _run_train(workdir, data_dir, devices, "--config.num_train_steps=3",
                            "--config.log_every_steps=1")
        assert result.returncode == 0, result.stderr[-3000:]
        params[devices], meta = _final_params(workdir)
        losses[devices] = [h["loss"] for h in meta["history"]["train"]]
    assert len(losses[1]) == 3
    np.testing.assert_allclose(losses[4], losses[1], rtol=0, atol=1e-5)
    for path, value in params[1].items():
        np.testing.assert_allclose(params[4][path], value, rtol=1e-4, atol=1e-5,
                                   err_msg="/".join(path))


def test_config_written_to_workdir(data_dir, tmp_path):
    config = _short_config(data_dir, num_train_steps=1)
    trainer.train_and_evaluate(config, tmp_path)
    saved = json.loads((tmp_path / trainer.CONFIG_FILE).read_text())
    assert saved["model"]["arch"] == "resnet20"
    assert saved["quant"]["weight_bits"] == 4


def test_foreign_workdir_rejected(data_dir, tmp_path):
    trainer.train_and_evaluate(_short_config(data_dir, num_train_steps=1), tmp_path)
    other = _short_config(data_dir, num_train_steps=1)
    other.quant.grid = "log"
    with pytest.raises(trainer.WorkdirConflictError, match=r"quant.grid: 'uniform' -> 'log'"):
        trainer.train_and_evaluate(other, tmp_path)


def test_per_device_batchnorm_runs(data_dir, tmp_path):
    config = _short_config(data_dir, num_train_steps=2, bn_stats="per_device")
    summary = trainer.train_and_evaluate(config, tmp_path)
    assert summary.steps == 2
    assert np.isfinite(summary.final_top1)
    assert jax.device_count() == 4

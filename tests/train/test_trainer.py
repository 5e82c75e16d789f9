"""End-to-end tests of the trainer on the embedded digits data."""

import json
import math
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import digits
from fat_jax.train import trainer

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
SUBPROCESS_TIMEOUT_S = 600


@pytest.mark.slow
def test_digits_default_reaches_95(digits_dir, tmp_path):
    config = digits.get_config()
    config.dataset.data_dir = digits_dir
    summary = trainer.train_and_evaluate(config, tmp_path)
    assert summary.best_top1 >= 0.95
    assert summary.final_top1 >= 0.95
    assert summary.weight_bits == 4
    assert summary.num_params == 272_474
    assert pathlib.Path(summary.plot).is_file()
    assert any(pathlib.Path(summary.log_dir).iterdir())


@pytest.mark.slow
def test_resume_matches_uninterrupted(reference_run, small_run, read_checkpoint, tmp_path):
    steps = reference_run.steps
    trainer.train_and_evaluate(small_run.config(num_train_steps=steps // 2), tmp_path)
    trainer.train_and_evaluate(small_run.config(num_train_steps=steps), tmp_path)

    resumed, resumed_meta = read_checkpoint(tmp_path, steps)
    assert resumed_meta["step"] == steps
    for path, value in reference_run.params.items():
        np.testing.assert_array_equal(resumed[path], value, err_msg="/".join(path))
    assert [h["loss"] for h in resumed_meta["history"]["train"]] == reference_run.losses


@pytest.mark.slow
def test_one_device_matches_four(reference_run, small_run, read_checkpoint, tmp_path):
    steps = 3
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
    command = [sys.executable, "-m", "experiments.train",
               *small_run.flags(tmp_path, num_train_steps=steps)]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=SUBPROCESS_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]

    params, meta = read_checkpoint(tmp_path, steps)
    losses = [h["loss"] for h in meta["history"]["train"]]
    np.testing.assert_allclose(losses, reference_run.losses[:steps], rtol=0, atol=1e-5)
    expected, _ = read_checkpoint(reference_run.workdir, steps)
    for path, value in expected.items():
        np.testing.assert_allclose(params[path], value, rtol=1e-4, atol=1e-5,
                                   err_msg="/".join(path))


def test_config_written_to_workdir(reference_run):
    saved = json.loads((reference_run.workdir / trainer.CONFIG_FILE).read_text())
    assert saved["model"]["arch"] == "resnet20"
    assert saved["quant"]["weight_bits"] == 32
    assert saved["dataset"]["input_shards"] == 2


def test_foreign_workdir_rejected(reference_run, small_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(reference_run.workdir, workdir)
    other = small_run.config(num_train_steps=1)
    other.quant.grid = "log"
    with pytest.raises(trainer.WorkdirConflictError, match=r"quant.grid: 'uniform' -> 'log'"):
        trainer.train_and_evaluate(other, workdir)


def test_per_device_batchnorm_runs(small_run, tmp_path):
    config = small_run.config(num_train_steps=2, bn_stats="per_device")
    summary = trainer.train_and_evaluate(config, tmp_path)
    assert summary.steps == 2
    assert np.isfinite(summary.final_top1)
    assert jax.device_count() == 4


def test_summary_without_evaluation():
    summary = trainer.Summary(best_top1=math.nan, final_top1=math.nan, steps=3, weight_bits=4,
                              act_bits=4, num_params=272_474, wall_time_s=75.0,
                              checkpoint_dir="run/checkpoints", log_dir="run/tensorboard",
                              plot="run/curves.png")
    lines = summary.lines()
    assert "best top-1:   not evaluated yet" in lines
    assert "final top-1:  not evaluated yet" in lines
    assert "bits:         W4A4" in lines
    assert "parameters:   272,474" in lines

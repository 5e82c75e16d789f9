"""Failure handling of the trainer: kills, stop signals, damaged checkpoints, divergence.

The runs that involve a signal or a kill run `python -m experiments.train` in a
subprocess and compare its checkpoints with the uninterrupted reference run of
conftest.py (same config, same four host devices, so the same compiled programs).
"""

from __future__ import annotations

import logging
import os
import pathlib
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from fat_jax.train import checkpoints as checkpoints_lib
from fat_jax.train import trainer
from fat_jax.train import workdir as workdir_lib

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
DIVERGENCE_STATUS = 3
USAGE_ERROR_STATUS = 2


def _finished_steps(workdir) -> list[int]:
    directory = workdir / workdir_lib.CHECKPOINT_DIR
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def _assert_params_equal(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for path, value in expected.items():
        np.testing.assert_array_equal(actual[path], value, err_msg="/".join(path))


def test_interrupted_runs_resume_bit_identical(reference_run, small_run, start_trainer,
                                               read_checkpoint, tmp_path):
    """SIGKILL at three random steps and SIGTERM at one; the end equals the reference."""
    steps = reference_run.steps
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    targets = sorted(rng.sample(range(1, steps), 4))
    kinds = ["SIGKILL", "SIGKILL", "SIGKILL", "SIGTERM"]
    rng.shuffle(kinds)
    plan = f"seed {seed}: " + ", ".join(f"{k} at step {t}" for k, t in zip(kinds, targets))
    workdir = tmp_path / "run"
    flags = small_run.flags(workdir, num_train_steps=steps)

    last_step = 0
    for run, (kind, target) in enumerate(zip(kinds, targets)):
        trainer_run = start_trainer(flags, name=f"run{run}")
        trainer_run.wait_for_step(target)
        # The resumed step is at most the last step the previous run logged (a run killed
        # before its first checkpoint leaves nothing, and the next one starts afresh).
        resumed = re.search(r"Resumed from the checkpoint at step (\d+)", trainer_run.stderr)
        first_step = min(int(s) for s in re.findall(r"step (\d+)/", trainer_run.stderr))
        assert first_step == (int(resumed.group(1)) + 1 if resumed else 1), plan
        assert first_step <= last_step + 1, plan
        if kind == "SIGKILL":
            # A random moment after the step's log line: before, during or after its save.
            time.sleep(rng.uniform(0.0, 0.8))
            trainer_run.send(signal.SIGKILL)
            assert trainer_run.wait() == -signal.SIGKILL, plan
            last_step = max(int(s) for s in re.findall(r"step (\d+)/", trainer_run.stderr))
            continue

        trainer_run.send(signal.SIGTERM)
        assert trainer_run.wait() == 0, f"{plan}\n{trainer_run.stderr[-3000:]}"
        stopped = re.search(r"Stopped by SIGTERM after step (\d+); checkpoint saved in (\S+)\.$",
                            trainer_run.stderr, re.MULTILINE)
        assert stopped, f"{plan}\n{trainer_run.stderr[-3000:]}"
        last_step = int(stopped.group(1))
        assert last_step >= target
        assert stopped.group(2) == str(workdir / "checkpoints" / str(last_step))
        assert last_step in _finished_steps(workdir)
        assert "Stopped (checkpoint saved)" in trainer_run.stdout

    final = start_trainer(flags, name="final")
    assert final.wait() == 0, f"{plan}\n{final.stderr[-3000:]}"
    assert "Finished" in final.stdout
    params, meta = read_checkpoint(workdir, steps)
    _assert_params_equal(params, reference_run.params)
    assert [entry["loss"] for entry in meta["history"]["train"]] == reference_run.losses, plan
    assert not (workdir / checkpoints_lib.DAMAGED_DIR).exists(), plan
    leftovers = [p.name for p in (workdir / "checkpoints").iterdir() if not p.name.isdigit()]
    assert leftovers == [], plan


def test_second_signal_terminates_at_once(tmp_path):
    script = (
        "import os, signal, time\n"
        "from fat_jax.train import preemption\n"
        "stop = preemption.StopRequest(lambda step: False)\n"
        "stop.install()\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "time.sleep(0.5)\n"
        "print('requested', stop.requested(1), stop.signal_name, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(30)\n"
        "print('still running', flush=True)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == -signal.SIGTERM, result.stderr[-2000:]
    assert "requested True SIGINT" in result.stdout
    assert "still running" not in result.stdout
    assert "SIGINT received: finishing the current step" in result.stderr


def test_truncated_checkpoint_skipped_and_kept(reference_run, small_run, read_checkpoint,
                                               tmp_path, caplog):
    steps = reference_run.steps
    workdir = tmp_path / "run"
    shutil.copytree(reference_run.workdir, workdir)
    newest = workdir / "checkpoints" / str(steps)
    largest = max((p for p in (newest / "state").rglob("*") if p.is_file()),
                  key=lambda p: p.stat().st_size)
    relative = largest.relative_to(newest)
    largest.write_bytes(largest.read_bytes()[:largest.stat().st_size // 2])
    truncated_size = largest.stat().st_size
    # What a save of the same step, killed before its rename, leaves behind.
    leftover = workdir / "checkpoints" / f"{steps}{checkpoints_lib.TMP_DIR_SUFFIX}"
    shutil.copytree(workdir / "checkpoints" / str(steps - 1) / "state",
                    leftover / "state")

    caplog.set_level(logging.INFO)
    trainer.train_and_evaluate(small_run.config(num_train_steps=steps), workdir)

    damaged = workdir / checkpoints_lib.DAMAGED_DIR / str(steps)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(f"Checkpoint at step {steps} is damaged" in message
               and str(damaged) in message for message in errors), errors
    assert any(f"Resumed from the checkpoint at step {steps - 1}" in r.getMessage()
               for r in caplog.records)
    assert (damaged / relative).stat().st_size == truncated_size
    assert not leftover.exists()
    params, _ = read_checkpoint(workdir, steps)
    _assert_params_equal(params, reference_run.params)


def test_checkpoint_of_other_model_not_moved(reference_run, tmp_path):
    steps = reference_run.steps
    workdir = tmp_path / "run"
    shutil.copytree(reference_run.workdir, workdir)
    ckpt = checkpoints_lib.Checkpoints(workdir)
    try:
        state, _ = ckpt.restore(steps)
        state["params"]["extra_layer"] = {"kernel": np.zeros((3, 3), np.float32)}
        with pytest.raises(checkpoints_lib.CheckpointMismatchError,
                           match=rf"step {steps} .* does not fit this model"):
            ckpt.restore_latest(state)
    finally:
        ckpt.close()
    assert _finished_steps(workdir) == list(range(1, steps + 1))
    assert not (workdir / checkpoints_lib.DAMAGED_DIR).exists()


def test_nan_stops_run_naming_step(small_run, start_trainer, tmp_path):
    workdir = tmp_path / "run"
    run = start_trainer(small_run.flags(workdir, num_train_steps=6,
                                        **{"debug.nan_at_step": 3}))
    assert run.wait() == DIVERGENCE_STATUS, run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.stderr[-3000:]
    assert "Non-finite loss at step 3" in errors[0]
    assert f"last good checkpoint is step 2 in {workdir / 'checkpoints'}" in errors[0]
    assert "Traceback" not in run.stderr
    assert _finished_steps(workdir) == [1, 2]


def test_foreign_workdir_rejected_before_tensorflow(reference_run, small_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(reference_run.workdir, workdir)
    fake_tf = tmp_path / "no_tensorflow" / "tensorflow"
    fake_tf.mkdir(parents=True)
    (fake_tf / "__init__.py").write_text("raise ImportError('TensorFlow imported too early')\n")
    env = {"PYTHONPATH": f"{fake_tf.parent}:{REPO_ROOT}"}

    command = [sys.executable, "-m", "experiments.train",
               *small_run.flags(workdir, **{"quant.grid": "log", "seed": 7})]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120, env={**os.environ, **env})
    assert result.returncode == USAGE_ERROR_STATUS, result.stderr[-3000:]
    assert "error: Workdir" in result.stderr
    assert "quant.grid: 'uniform' -> 'log'" in result.stderr
    assert "seed: 0 -> 7" in result.stderr
    assert "--allow_config_change" in result.stderr
    assert "Traceback" not in result.stderr


def test_changed_config_allowed_with_override(small_run, tmp_path, caplog):
    workdir = tmp_path / "run"
    workdir_lib.write_config(workdir, small_run.config())
    (workdir / workdir_lib.CHECKPOINT_DIR / "1").mkdir(parents=True)
    changed = small_run.config(**{"quant.grid": "log"})
    with pytest.raises(workdir_lib.WorkdirConflictError, match=r"quant.grid: 'uniform' -> 'log'"):
        workdir_lib.check(workdir, changed)
    caplog.set_level(logging.WARNING)
    workdir_lib.check(workdir, changed, allow_config_change=True)
    assert any("quant.grid: 'uniform' -> 'log'" in r.getMessage() for r in caplog.records)


def test_checkpoints_without_config_rejected(small_run, tmp_path):
    (tmp_path / workdir_lib.CHECKPOINT_DIR / "1").mkdir(parents=True)
    with pytest.raises(workdir_lib.WorkdirConflictError, match=r"no readable config.json"):
        workdir_lib.check(tmp_path, small_run.config())
    workdir_lib.check(tmp_path, small_run.config(), allow_config_change=True)


def test_failed_config_change_keeps_saved_config(reference_run, small_run, tmp_path):
    """With --allow_config_change, a checkpoint that does not fit leaves the workdir as it was."""
    steps = reference_run.steps
    workdir = tmp_path / "run"
    shutil.copytree(reference_run.workdir, workdir)
    saved = (workdir / workdir_lib.CONFIG_FILE).read_text()
    # The reference run is full precision; 4 bits adds alphas and transforms.
    changed = small_run.config(num_train_steps=steps + 1,
                               **{"quant.weight_bits": 4, "quant.act_bits": 4})
    with pytest.raises(checkpoints_lib.CheckpointMismatchError,
                       match=rf"step {steps} .* does not fit this model"):
        trainer.train_and_evaluate(changed, workdir, allow_config_change=True)
    assert (workdir / workdir_lib.CONFIG_FILE).read_text() == saved
    assert _finished_steps(workdir) == list(range(1, steps + 1))

"""Shared fixtures of the trainer tests: prepared digits data, one small config, a reference run.

Every trainer run in these tests uses the same small config (full-precision ResNet-20
on 8x8 digits, global batch 16, four host devices), so each XLA program compiles once
per session. Later runs, in this process or in trainer subprocesses, load it from the
persistent compilation cache that tests/conftest.py sets up. Full precision keeps
runs on different device or process counts comparable: at 4 bits the quantizers'
rounding amplifies the last-bit differences of another all-reduce order into losses
that differ by about 1e-2 after one step (measured with this config).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest
from flax import traverse_util

from configs import digits

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
REFERENCE_STEPS = 6
# Generous bounds for a loaded 2-core machine; a healthy run needs a fraction of them.
START_TIMEOUT_S = 300
RUN_TIMEOUT_S = 420

SMALL_OVERRIDES = {
    "quant.weight_bits": 32,
    "quant.act_bits": 32,
    "dataset.image_size": 8,
    # Two input shards, so that one process and two processes read the same batches.
    "dataset.input_shards": 2,
    "batch_size": 16,
    "log_every_steps": 1,
    "checkpoint_every_steps": 1,
    "keep_checkpoints": 20,
}


@dataclasses.dataclass(frozen=True)
class SmallRun:
    """The small config of these tests, as a ConfigDict or as trainer flags."""

    data_dir: str

    def config(self, **overrides):
        config = digits.get_config()
        for field, value in {**SMALL_OVERRIDES, "dataset.data_dir": self.data_dir,
                             **overrides}.items():
            target = config
            *parents, leaf = field.split(".")
            for parent in parents:
                target = target[parent]
            target[leaf] = value
        return config

    def flags(self, workdir, **overrides) -> list[str]:
        fields = {**SMALL_OVERRIDES, "dataset.data_dir": self.data_dir, **overrides}
        return ["--config=configs/digits.py", f"--workdir={workdir}",
                *(f"--config.{field}={value}" for field, value in fields.items())]


class TrainerProcess:
    """`python -m experiments.train` in a subprocess, its output in files for polling."""

    def __init__(self, args: list[str], log_dir: pathlib.Path, *, name: str = "train",
                 env: dict[str, str] | None = None):
        self.stdout_path = log_dir / f"{name}.stdout"
        self.stderr_path = log_dir / f"{name}.stderr"
        full_env = dict(os.environ)
        full_env.update(env or {})
        with open(self.stdout_path, "w") as stdout, open(self.stderr_path, "w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "experiments.train", *args], cwd=REPO_ROOT,
                env=full_env, stdout=stdout, stderr=stderr)

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait_for(self, pattern: str, timeout_s: float = START_TIMEOUT_S) -> re.Match:
        """Return the first match of `pattern` in stderr; fail if the process ends first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = re.search(pattern, self.stderr)
            if match:
                return match
            if self.process.poll() is not None:
                pytest.fail(f"trainer exited with {self.process.returncode} before"
                            f" {pattern!r}:\n{self.stderr[-3000:]}")
            time.sleep(0.1)
        self.kill()
        pytest.fail(f"no {pattern!r} within {timeout_s} s:\n{self.stderr[-3000:]}")

    def wait_for_step(self, step: int, timeout_s: float = START_TIMEOUT_S) -> int:
        """Wait until the log reports step `step` or a later one; return the latest."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.wait_for(r"step \d+/\d+ ", max(deadline - time.monotonic(), 0.1))
            latest = max(int(s) for s in re.findall(r"step (\d+)/\d+ ", self.stderr))
            if latest >= step:
                return latest
            time.sleep(0.1)

    def send(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout_s: float = RUN_TIMEOUT_S) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"trainer still running after {timeout_s} s:\n{self.stderr[-3000:]}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=60)


@pytest.fixture
def start_trainer(tmp_path):
    """Return `start(args, name=..., env=...) -> TrainerProcess`; kills leftovers at teardown."""
    started = []

    def start(args, *, name="train", env=None):
        process = TrainerProcess(args, tmp_path, name=name, env=env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> str:
    """A TFDS data directory with the digits dataset prepared."""
    from fat_jax import data

    data_dir = str(tmp_path_factory.mktemp("digits_tfds"))
    data.num_examples("digits", "train", data_dir=data_dir)  # Prepares on first use.
    return data_dir


@pytest.fixture(scope="session")
def small_run(digits_dir) -> SmallRun:
    return SmallRun(digits_dir)


def _read_checkpoint(workdir, step: int) -> tuple[dict, dict]:
    """Return `(flat params, meta)` of the checkpoint at `step` of a 4-device run."""
    from fat_jax.train import checkpoints as checkpoints_lib

    ckpt = checkpoints_lib.Checkpoints(workdir, read_only=True)
    try:
        state, meta = ckpt.restore(step)
    finally:
        ckpt.close()
    return traverse_util.flatten_dict(state["params"]), meta


@pytest.fixture(scope="session")
def read_checkpoint():
    """Return `read(workdir, step) -> (flat params, meta)` for a 4-device run's checkpoint."""
    return _read_checkpoint


@dataclasses.dataclass(frozen=True)
class Reference:
    """An uninterrupted run of the small config, a checkpoint at every step."""

    workdir: pathlib.Path
    # Steps run, and the step of the last checkpoint.
    steps: int
    # Final parameters, flattened.
    params: dict
    # Training loss of each step, from the final checkpoint's history.
    losses: list[float]


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory, small_run) -> Reference:
    """Run the small config uninterrupted in this process, a checkpoint at every step."""
    from fat_jax.train import trainer

    workdir = tmp_path_factory.mktemp("reference")
    trainer.train_and_evaluate(small_run.config(num_train_steps=REFERENCE_STEPS), workdir)
    params, meta = _read_checkpoint(workdir, REFERENCE_STEPS)
    losses = [entry["loss"] for entry in meta["history"]["train"]]
    assert len(losses) == REFERENCE_STEPS
    return Reference(workdir, REFERENCE_STEPS, params, losses)

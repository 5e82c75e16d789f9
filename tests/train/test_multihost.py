"""Two trainer processes on localhost (jax.distributed, 2 host CPU devices each).

The run must compute what one process with four devices computes, because the
reference run of conftest.py reads the same two input shards. Only process 0 may log
and print, and a SIGINT to process 1 alone must stop both processes at one step.
"""

from __future__ import annotations

import re
import signal
import socket

import numpy as np
from flax import traverse_util

from fat_jax.train import checkpoints as checkpoints_lib

TWO_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
STEP_LINE = r"step (\d+)/\d+ "
COMPARED_STEPS = 3


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def _restore_like(workdir, step: int, reference_workdir) -> tuple[dict, dict]:
    """Restore `step` of a multi-process run into the shardings of a 4-device checkpoint."""
    reference = checkpoints_lib.Checkpoints(reference_workdir, read_only=True)
    ckpt = checkpoints_lib.Checkpoints(workdir, read_only=True)
    try:
        target, _ = reference.restore(step)
        state, meta = ckpt.restore(step, target)
    finally:
        reference.close()
        ckpt.close()
    return traverse_util.flatten_dict(state["params"]), meta


def test_two_processes_match_one_and_stop_together(reference_run, small_run, read_checkpoint,
                                                   start_trainer, tmp_path):
    workdir = tmp_path / "run"
    flags = small_run.flags(workdir, num_train_steps=30)
    distributed = [f"--coordinator_address=localhost:{_free_port()}", "--num_processes=2"]
    processes = [
        start_trainer([*flags, *distributed, f"--process_id={index}"], name=f"process{index}",
                      env=TWO_DEVICES)
        for index in range(2)
    ]

    processes[0].wait_for_step(COMPARED_STEPS)
    processes[1].send(signal.SIGINT)
    for process in processes:
        assert process.wait() == 0, process.stderr[-3000:]

    stops = [re.search(r"Stopped by (.+) after step (\d+); checkpoint saved", p.stderr)
             for p in processes]
    assert all(stops), [p.stderr[-2000:] for p in processes]
    assert stops[0].group(1) == "a SIGTERM to another process"
    assert stops[1].group(1) == "SIGINT"
    stop_step = int(stops[0].group(2))
    assert int(stops[1].group(2)) == stop_step
    assert COMPARED_STEPS < stop_step < 30
    assert "SIGINT received: forwarding it as SIGTERM" in processes[1].stderr

    # Only process 0 logs progress and prints the summary.
    assert re.findall(STEP_LINE, processes[1].stderr) == []
    assert [int(s) for s in re.findall(STEP_LINE, processes[0].stderr)] == list(
        range(1, stop_step + 1))
    assert "Stopped (checkpoint saved)" in processes[0].stdout
    assert "Stopped (checkpoint saved)" not in processes[1].stdout

    # Both processes wrote the checkpoints, and they contain what one process computes.
    params, meta = _restore_like(workdir, COMPARED_STEPS, reference_run.workdir)
    expected_params, _ = read_checkpoint(reference_run.workdir, COMPARED_STEPS)
    losses = [entry["loss"] for entry in meta["history"]["train"]]
    np.testing.assert_allclose(losses, reference_run.losses[:COMPARED_STEPS], rtol=0, atol=1e-5)
    for path, value in expected_params.items():
        np.testing.assert_allclose(params[path], value, rtol=1e-4, atol=1e-5,
                                   err_msg="/".join(path))

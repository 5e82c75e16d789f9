"""Train a FAT model: `python -m experiments.train --config=configs/NAME.py[:ARGS]`.

With no flags it trains ResNet-20 FAT W4A4 on the embedded digits dataset
(configs/default.py). Override any config field with --config.FIELD=VALUE.

Exit statuses (see experiments/cli.py): 0 finished, or stopped by SIGTERM/SIGINT after
saving a checkpoint; 2 an invalid command line, config or workdir, or missing data;
3 a non-finite loss or gradient. The config and the workdir are checked before
TensorFlow is imported and before JAX's distributed runtime starts.
"""

from __future__ import annotations

import gc
import os

from absl import app, flags

from experiments import cli

_CONFIG = cli.define_config_flag(
    "Config file, optionally with :ARGS (e.g. :bits=3,grid=log).")
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory for checkpoints, TensorBoard logs and curves"
    " (default: workdirs/<config.experiment>).")
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False,
    "Resume a workdir whose checkpoints were written under a different config.")


def _check_before_start(config, workdir: str) -> None:
    """Exit with status 2 on an invalid config or a foreign workdir, in the first seconds.

    Imports JAX and Flax, but neither TensorFlow nor orbax, and starts no JAX backend.
    """
    from fat_jax import data, models
    from fat_jax.train import config_check, workdir as workdir_lib

    try:
        config_check.validate_fields(config, architectures=models.ARCHITECTURES,
                                     datasets=data.DATASET_NAMES)
        workdir_lib.check(workdir, config, _ALLOW_CONFIG_CHANGE.value)
    except (config_check.ConfigError, workdir_lib.WorkdirConflictError) as error:
        cli.fail(str(error))


def _check_devices(config) -> None:
    import jax

    from fat_jax.train import config_check

    try:
        config_check.validate_for_devices(config, device_count=jax.device_count(),
                                          process_count=jax.process_count())
    except config_check.ConfigError as error:
        cli.fail(str(error))


def main(argv):
    try:
        _train(argv)
    finally:
        # The interpreter's final garbage collection of the run's objects took 6 to
        # 25 s on 2 busy CPU cores (digits runs of a few steps). The process ends
        # anyway, so leave them to the OS: checkpoints and logs are closed by now,
        # and atexit handlers (log flushing, jax.distributed shutdown) still run.
        gc.freeze()


def _train(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    cli.setup_logging()
    config = cli.config_value(_CONFIG)
    workdir = _WORKDIR.value or os.path.join("workdirs", config.experiment)
    print(f"Workdir: {os.path.abspath(workdir)}", flush=True)
    _check_before_start(config, workdir)
    cli.init_distributed()
    _check_devices(config)

    import jax

    from fat_jax import data
    from fat_jax.train import checkpoints, config_check, init_from, trainer

    try:
        summary = trainer.train_and_evaluate(
            config, workdir, allow_config_change=_ALLOW_CONFIG_CHANGE.value)
    except (config_check.ConfigError, trainer.WorkdirConflictError,
            checkpoints.CheckpointMismatchError, data.MissingImageNetArchivesError,
            data.DatasetDownloadError, init_from.InitFromError) as error:
        cli.fail(str(error))
    except trainer.DivergenceError as error:
        cli.fail(str(error), status=cli.DIVERGENCE_STATUS)
    if jax.process_index() != 0:
        return
    title = "Stopped (checkpoint saved)" if summary.preempted else "Finished"
    print(f"\n{title}: {config.experiment}")
    for line in summary.lines():
        print("  " + line)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)

"""Train a FAT model: `python -m experiments.train --config=configs/NAME.py[:ARGS]`.

With no flags it trains ResNet-20 FAT W4A4 on the embedded digits dataset
(configs/default.py). Override any config field with --config.FIELD=VALUE.
"""

from __future__ import annotations

import os

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import cli

_CONFIG = config_flags.DEFINE_config_file(
    "config", cli.DEFAULT_CONFIG, "Config file, optionally with :ARGS (e.g. :bits=3,grid=log).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory for checkpoints, TensorBoard logs and curves"
    " (default: workdirs/<config.experiment>).")
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False,
    "Resume a workdir whose checkpoints were written under a different config.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    cli.setup()
    from fat_jax import data
    from fat_jax.train import config_check, trainer

    config = _CONFIG.value
    workdir = _WORKDIR.value or os.path.join("workdirs", config.experiment)
    print(f"Workdir: {os.path.abspath(workdir)}", flush=True)
    try:
        summary = trainer.train_and_evaluate(
            config, workdir, allow_config_change=_ALLOW_CONFIG_CHANGE.value)
    except (config_check.ConfigError, data.MissingImageNetArchivesError,
            trainer.WorkdirConflictError) as error:
        cli.fail(str(error))
    except trainer.DivergenceError as error:
        logging.error("%s", error)
        cli.fail(str(error))
    title = "Stopped (checkpoint saved)" if summary.preempted else "Finished"
    print(f"\n{title}: {config.experiment}")
    for line in summary.lines():
        print("  " + line)


if __name__ == "__main__":
    app.run(main)

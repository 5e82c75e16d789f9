"""The run's workdir: its saved config, and the check that it belongs to this run.

A run writes its config to `<workdir>/config.json`. A later run in the same workdir
resumes from its checkpoints only when its config matches that file, ignoring the
run-control fields (see `config_check.RUN_CONTROL_FIELDS`). This module needs
neither TensorFlow nor orbax, so the command line runs the check in its first seconds.
"""

from __future__ import annotations

import json
import pathlib

import ml_collections
from absl import logging

from fat_jax.train import config_check

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
OVERRIDE_FLAG = "--allow_config_change"


class WorkdirConflictError(RuntimeError):
    """The workdir contains checkpoints of a run with a different (or unknown) config."""


def has_checkpoints(workdir: pathlib.Path) -> bool:
    """Return whether the workdir's checkpoint directory has any entry."""
    directory = workdir / CHECKPOINT_DIR
    return directory.is_dir() and any(directory.iterdir())


def _read_saved_config(path: pathlib.Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        logging.warning("Cannot read the saved config %s: %s", path, error)
        return None


def check(workdir: str | pathlib.Path, config: ml_collections.ConfigDict,
          allow_config_change: bool = False) -> None:
    """Raise WorkdirConflictError when the workdir's checkpoints belong to another config.

    With `allow_config_change`, log the differences as a warning instead.
    """
    workdir = pathlib.Path(workdir)
    for path in (workdir / CHECKPOINT_DIR, workdir, *workdir.absolute().parents):
        if path.exists() and not path.is_dir():
            raise WorkdirConflictError(
                f"Workdir path {path} is a file, not a directory. Pass a --workdir that is"
                " a directory or does not exist yet (it is created).")
    if not has_checkpoints(workdir):
        return
    saved_path = workdir / CONFIG_FILE
    saved = _read_saved_config(saved_path)
    if saved is None:
        message = (f"Workdir {workdir} contains checkpoints but no readable {saved_path.name},"
                   " so the config that wrote them is unknown.")
        if not allow_config_change:
            raise WorkdirConflictError(
                f"{message} Use another --workdir, or pass {OVERRIDE_FLAG} to resume anyway.")
        logging.warning("%s Resuming anyway (%s).", message, OVERRIDE_FLAG)
        return

    differences = config_check.differing_fields(saved, json.loads(config.to_json()))
    if not differences:
        return
    if not allow_config_change:
        raise WorkdirConflictError(
            f"Workdir {workdir} contains checkpoints of a run with a different config"
            f" ({len(differences)} fields differ, saved -> requested):\n  "
            + "\n  ".join(differences)
            + f"\nUse another --workdir, or pass {OVERRIDE_FLAG} to resume anyway.")
    logging.warning("Resuming %s under a changed config (%s): %s", workdir, OVERRIDE_FLAG,
                    "; ".join(differences))


def write_config(workdir: str | pathlib.Path, config: ml_collections.ConfigDict, *,
                 is_writer: bool = True) -> None:
    """Write the config to `<workdir>/config.json` atomically (only where `is_writer`)."""
    if not is_writer:
        return
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    saved_path = workdir / CONFIG_FILE
    tmp = saved_path.with_suffix(".json.tmp")
    tmp.write_text(config.to_json(indent=2))
    tmp.replace(saved_path)

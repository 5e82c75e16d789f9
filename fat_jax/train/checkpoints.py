"""Orbax checkpoints of a run: save, keep the latest K and the best, resume.

Each checkpoint holds two items: `state` (the TrainState, restored with its sharding)
and `meta` (JSON: step, epoch, the run's config, and the evaluation metrics when the
checkpoint closes an epoch). Orbax writes every checkpoint to a temporary directory and
renames it when complete, so a killed save never replaces a finished checkpoint.

A finished checkpoint that fails to restore (truncated or missing files) is logged with
its step, moved to `<workdir>/damaged_checkpoints/<step>` so it is kept for inspection
and no later save collides with it, and the previous checkpoint is tried.
"""

from __future__ import annotations

import pathlib
import shutil
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

from fat_jax.train.state import TrainState

CHECKPOINT_DIR = "checkpoints"
DAMAGED_DIR = "damaged_checkpoints"
BEST_METRIC = "top1"


class Checkpoints:
    """The checkpoint directory of one workdir."""

    def __init__(self, workdir: str | pathlib.Path, *, keep: int = 3, read_only: bool = False):
        self.workdir = pathlib.Path(workdir).resolve()
        self.directory = self.workdir / CHECKPOINT_DIR
        policy = ocp.checkpoint_managers.AnyPreservationPolicy([
            ocp.checkpoint_managers.LatestN(n=keep),
            ocp.checkpoint_managers.BestN(
                get_metric_fn=lambda metrics: metrics[BEST_METRIC], reverse=False, n=1,
                keep_checkpoints_without_metrics=False),
        ])
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy, create=not read_only, read_only=read_only)
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta"))

    def steps(self) -> list[int]:
        """Return the steps of the finished checkpoints, oldest first."""
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: TrainState, meta: dict[str, Any],
             metrics: dict[str, float] | None = None) -> None:
        """Start an asynchronous save of `state` at `step` (all processes must call it)."""
        self.manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                    meta=ocp.args.JsonSave(meta)),
            metrics=metrics,
            force=True,
        )

    def wait(self) -> None:
        """Block until pending saves are on disk."""
        self.manager.wait_until_finished()

    def best_step(self) -> int | None:
        return self.manager.best_step()

    def read_meta(self, step: int) -> dict[str, Any]:
        restored = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(restored["meta"])

    def restore(self, step: int, target: TrainState | None = None) -> tuple[Any, dict[str, Any]]:
        """Restore `(state, meta)` at `step`.

        With `target`, the state is restored into its structure and sharding; without
        it, as a nested dict of arrays (enough to read params and batch_stats).
        """
        if target is None:
            state_args = ocp.args.StandardRestore()
        else:
            abstract = jax.tree.map(
                lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), target)
            state_args = ocp.args.StandardRestore(abstract)
        restored = self.manager.restore(
            step, args=ocp.args.Composite(state=state_args, meta=ocp.args.JsonRestore()))
        return restored["state"], dict(restored["meta"])

    def restore_latest(self, target: TrainState) -> tuple[TrainState, dict[str, Any]] | None:
        """Restore the newest checkpoint that loads, skipping damaged ones; None if none."""
        for step in reversed(self.steps()):
            try:
                return self.restore(step, target)
            except Exception as error:  # noqa: BLE001 - any failure means a damaged checkpoint.
                self._quarantine(step, error)
        return None

    def _quarantine(self, step: int, error: Exception) -> None:
        """Move a damaged checkpoint aside (process 0 only) and log why."""
        destination = self.workdir / DAMAGED_DIR / str(step)
        logging.error("Checkpoint at step %d is damaged and is skipped (%s: %s). Moving it to"
                      " %s.", step, type(error).__name__, error, destination)
        if jax.process_index() == 0:
            destination.parent.mkdir(parents=True, exist_ok=True)
            if destination.exists():
                destination = destination.with_name(f"{step}.{len(list(destination.parent.iterdir()))}")
            shutil.move(str(self.directory / str(step)), str(destination))
        ocp.multihost.sync_global_processes(f"quarantine_checkpoint_{step}")
        self.manager.reload()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()

"""Orbax checkpoints of a run: save, keep the latest K and the best, resume.

Each checkpoint contains two items: `state` (the TrainState, restored with its sharding)
and `meta` (JSON: step, epoch, the run's config, the training history and the
metrics of steps not yet logged). Orbax (0.12.8) writes every checkpoint to
`<step>.orbax-checkpoint-tmp` and renames it to `<step>` when complete, so a killed
save never replaces a finished checkpoint. The manager removes such leftover
temporary directories when it starts, and orbax also removes one before it saves
the same step again.

A finished checkpoint that fails to restore (truncated or missing files, unreadable
metadata) is logged with its step and moved to `<workdir>/damaged_checkpoints/<step>`,
so it is kept for inspection and no later save of that step collides with it; then
the previous checkpoint is tried. A checkpoint that is intact but does not fit the
model (another architecture or bit width) raises CheckpointMismatchError instead.
"""

from __future__ import annotations

import collections
import pathlib
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from fat_jax.train.state import TrainState
from fat_jax.train.workdir import CHECKPOINT_DIR

DAMAGED_DIR = "damaged_checkpoints"
BEST_METRIC = "top1"
TMP_DIR_SUFFIX = ".orbax-checkpoint-tmp"
"""Suffix of the directory that orbax writes a checkpoint to before renaming it."""

_MAX_ERROR_CHARS = 300


class CheckpointMismatchError(ValueError):
    """A checkpoint's arrays do not fit the model and optimizer of this run."""


def _short(error: BaseException) -> str:
    """Return the first line of an error message, cut to a loggable length."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if len(text) > _MAX_ERROR_CHARS:
        text = text[:_MAX_ERROR_CHARS] + "..."
    return f"{type(error).__name__}: {text}"


def _all_processes_agree(local_ok: bool) -> bool:
    """Return True only when `local_ok` holds on every process."""
    if jax.process_count() == 1:
        return local_ok
    from jax.experimental import multihost_utils
    return bool(np.all(multihost_utils.process_allgather(np.asarray(local_ok))))


def _shape_counts(tree: Any) -> collections.Counter:
    """Count the (shape, dtype) pairs of a tree's arrays or array metadata."""
    return collections.Counter(
        (tuple(leaf.shape), np.dtype(leaf.dtype).name) for leaf in jax.tree.leaves(tree))


class Checkpoints:
    """The checkpoint directory of one workdir."""

    def __init__(self, workdir: str | pathlib.Path, *, keep: int = 3, read_only: bool = False):
        self.workdir = pathlib.Path(workdir).resolve()
        self.directory = self.workdir / CHECKPOINT_DIR
        if not read_only:
            self._log_leftover_tmp_dirs()
        policy = ocp.checkpoint_managers.AnyPreservationPolicy([
            ocp.checkpoint_managers.LatestN(n=keep),
            ocp.checkpoint_managers.BestN(
                get_metric_fn=lambda metrics: metrics[BEST_METRIC], reverse=False, n=1,
                keep_checkpoints_without_metrics=False),
        ])
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy, create=not read_only, read_only=read_only,
            cleanup_tmp_directories=not read_only)
        self.manager = ocp.CheckpointManager(
            self.directory, options=options,
            item_handlers={"state": ocp.StandardCheckpointHandler(),
                           "meta": ocp.JsonCheckpointHandler()})

    def _log_leftover_tmp_dirs(self) -> None:
        if jax.process_index() != 0 or not self.directory.is_dir():
            return
        leftovers = sorted(p.name for p in self.directory.iterdir() if TMP_DIR_SUFFIX in p.name)
        if leftovers:
            logging.warning("Removing %d incomplete checkpoint(s) of an interrupted save in %s:"
                            " %s", len(leftovers), self.directory, ", ".join(leftovers))

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

    def best_or_latest_step(self) -> int | None:
        """Return the step of the best checkpoint, else of the newest; None if none."""
        steps = self.steps()
        return self.best_step() or (steps[-1] if steps else None)

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

    def restore_unsharded(self, step: int) -> tuple[Any, dict[str, Any]]:
        """Restore `(state as nested dicts, meta)` at `step` for reading, not resuming.

        Raises:
          ValueError: the step's files are not a readable checkpoint; the message
            names the step, the directory and orbax's error.
        """
        try:
            return self.restore(step)
        except Exception as error:  # noqa: BLE001 - orbax raises many types for bad files.
            raise ValueError(f"Cannot read the checkpoint at step {step} in {self.directory}:"
                             f" {_short(error)}. Is it a checkpoint written by fat-jax?"
                             ) from error

    def restore_latest(self, target: TrainState) -> tuple[TrainState, dict[str, Any]] | None:
        """Restore the newest checkpoint that loads, moving damaged ones aside; None if none.

        Raises:
          CheckpointMismatchError: the newest readable checkpoint does not fit `target`.
        """
        for step in reversed(self.steps()):
            error = None
            try:
                self._check_fits(step, target)
                state, meta = self.restore(step, target)
                if meta.get("step") != step or int(state.step) != step:
                    raise ValueError(f"the directory of step {step} contains the state of step"
                                     f" {int(state.step)} and the metadata of step"
                                     f" {meta.get('step')}")
            except CheckpointMismatchError:
                raise
            except Exception as caught:  # noqa: BLE001 - any other failure means damage.
                error = caught
            if _all_processes_agree(error is None):
                return state, meta
            self._quarantine(step, error)
        return None

    def _check_fits(self, step: int, target: TrainState) -> None:
        """Raise CheckpointMismatchError when the saved arrays differ from the target's.

        Compares the multisets of (shape, dtype): a missing or unreadable tree metadata
        file is left for the restore to report as damage.
        """
        try:
            saved = self.manager.item_metadata(step)["state"]
        except Exception:  # noqa: BLE001 - unreadable metadata is damage, reported later.
            return
        if saved is None:
            return
        saved_counts, target_counts = _shape_counts(saved), _shape_counts(target)
        if saved_counts == target_counts:
            return
        missing = sorted((target_counts - saved_counts).items())[:5]
        unexpected = sorted((saved_counts - target_counts).items())[:5]
        raise CheckpointMismatchError(
            f"The checkpoint at step {step} in {self.directory} does not fit this model and"
            f" optimizer: it has {sum(saved_counts.values())} arrays, this run"
            f" {sum(target_counts.values())}; (shape, dtype) only in this run: {missing};"
            f" only in the checkpoint: {unexpected}. Use another workdir for another model.")

    def _quarantine(self, step: int, error: Exception | None) -> None:
        """Move a damaged checkpoint aside (process 0 only) and log why."""
        destination = self.workdir / DAMAGED_DIR / str(step)
        suffix = 1
        while destination.exists():
            destination = self.workdir / DAMAGED_DIR / f"{step}.{suffix}"
            suffix += 1
        reason = _short(error) if error is not None else "it failed to restore on another process"
        logging.error("Checkpoint at step %d is damaged and is skipped (%s). Moving it to %s;"
                      " move it back to retry it.", step, reason, destination)
        if jax.process_index() == 0:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(self.directory / str(step)), str(destination))
        if jax.process_count() > 1:
            ocp.multihost.sync_global_processes(f"quarantine_checkpoint_{step}")
        self.manager.reload()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()

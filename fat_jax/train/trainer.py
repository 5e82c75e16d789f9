"""Train and evaluate a FAT model on one device or many hosts.

`train_and_evaluate(config, workdir)` is the whole run. It validates the config,
checks the workdir, builds the model and the grouped SGD, and resumes from the
workdir's newest good checkpoint (or starts from `init_from`). Then it steps through
the epochs with evaluation, TensorBoard logging and checkpoints, and returns a summary.

Failures:
- SIGTERM or SIGINT: the current step finishes, a checkpoint is saved, and the run
  returns a summary with `preempted=True` (see `preemption` for several processes).
- A non-finite loss or gradient freezes the state. The next log step or checkpoint
  raises DivergenceError naming the step and the quantity; nothing is saved after it.
- A resumed run continues exactly: the input pipeline restarts at the step, dropout
  keys are fold_in(seed, step), and checkpoints store the metrics not yet logged.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from fat_jax import data, layers, models
from fat_jax.quant_config import QuantConfig
from fat_jax.train import checkpoints as checkpoints_lib
from fat_jax.train import config_check, init_from, mesh as mesh_lib, optim, progress, steps
from fat_jax.train import preemption
from fat_jax.train import workdir as workdir_lib
from fat_jax.train.state import NO_STEP, TrainState, nonfinite_name
from fat_jax.train.workdir import CONFIG_FILE, WorkdirConflictError  # noqa: F401 (re-exported)

LOG_DIR = "tensorboard"
PLOT_FILE = "curves.png"


class DivergenceError(RuntimeError):
    """A non-finite loss or gradient; the message names the step and the quantity."""

    def __init__(self, message: str, *, step: int, quantity: str):
        super().__init__(message)
        self.step = step
        self.quantity = quantity


@dataclasses.dataclass(frozen=True, kw_only=True)
class Summary:
    """What a finished (or stopped) run reports."""

    # Best evaluation top-1 over all evaluations, in [0, 1] (NaN when none ran).
    best_top1: float
    # Top-1 of the last evaluation.
    final_top1: float
    # Steps completed.
    steps: int
    # Weight and activation bit widths (32 means full precision).
    weight_bits: int
    act_bits: int
    # Float weights counted as PyTorch counts parameters (no transforms or alphas).
    num_params: int
    # Seconds from start to end, compilation included.
    wall_time_s: float
    checkpoint_dir: str
    log_dir: str
    plot: str
    # True when a SIGTERM or SIGINT stopped the run after a checkpoint.
    preempted: bool = False

    def lines(self) -> list[str]:
        bits = ("float (32-bit)" if self.weight_bits == 32
                else f"W{self.weight_bits}A{self.act_bits}")
        def top1(value: float) -> str:
            return "not evaluated yet" if math.isnan(value) else f"{100 * value:.2f}%"

        return [
            f"best top-1:   {top1(self.best_top1)}",
            f"final top-1:  {top1(self.final_top1)}",
            f"bits:         {bits}",
            f"parameters:   {self.num_params:,}",
            f"steps:        {self.steps}",
            f"wall time:    {progress.format_duration(self.wall_time_s)}",
            f"checkpoints:  {self.checkpoint_dir}",
            f"TensorBoard:  {self.log_dir}",
            f"curves:       {self.plot}",
        ]


def quant_config(config: ml_collections.ConfigDict) -> QuantConfig:
    return QuantConfig(**config.quant.to_dict())


def build_model(config: ml_collections.ConfigDict):
    spec = data.get_spec(config.dataset.name)
    return models.create(config.model.arch, num_classes=spec.num_classes, quant=quant_config(config))


def image_size(config: ml_collections.ConfigDict) -> int:
    return config.dataset.image_size or data.get_spec(config.dataset.name).image_size


def init_variables(model, config: ml_collections.ConfigDict, mesh) -> dict:
    """Initialise the model's variables, replicated over the mesh."""
    size = image_size(config)
    images = jnp.zeros((1, size, size, 3), jnp.float32)
    init = jax.jit(lambda key: model.init(key, images, train=False),
                   out_shardings=mesh_lib.replicated(mesh))
    return init(jax.random.key(config.seed))


def validate_fields(config: ml_collections.ConfigDict) -> None:
    """Check the fields that need no devices or data (see config_check)."""
    config_check.validate_fields(config, architectures=models.ARCHITECTURES,
                                 datasets=data.DATASET_NAMES)


def validate(config: ml_collections.ConfigDict) -> None:
    config_check.validate(config, architectures=models.ARCHITECTURES, datasets=data.DATASET_NAMES)


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def input_shards(config: ml_collections.ConfigDict) -> int:
    """Return the number of shards the training split is read in."""
    return config.dataset.input_shards or jax.process_count()


def train_batches(config: ml_collections.ConfigDict,
                  start_step: int) -> Iterator[dict[str, np.ndarray]]:
    """Return this process's slices of the global training batches from `start_step` on.

    The training split is read in S = `input_shards(config)` shards, each with its own
    shuffle. With P processes, process p reads shards p*S/P to (p+1)*S/P - 1 and
    concatenates their batches in order, so the global batch depends on S but not on
    P or on the device count.
    """
    shards = input_shards(config)
    per_process = shards // jax.process_count()
    first = jax.process_index() * per_process
    iterators = [
        data.train_iterator(
            config.dataset.name, global_batch_size=config.batch_size, seed=config.seed,
            start_step=start_step, image_size=image_size(config),
            data_dir=config.dataset.data_dir or None,
            manual_dir=config.dataset.manual_dir or None,
            process_index=first + offset, process_count=shards)
        for offset in range(per_process)
    ]
    if per_process == 1:
        return iterators[0]
    return ({key: np.concatenate([batch[key] for batch in batches]) for key in batches[0]}
            for batches in zip(*iterators))


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------


def evaluate(eval_step, variables: dict, batches: Iterator[dict[str, np.ndarray]],
             mesh) -> dict[str, float]:
    """Return mean loss, top-1 and top-5 over every example of the evaluation split."""
    totals = None
    for batch in batches:
        sums = eval_step(variables, mesh_lib.global_batch(mesh, batch))
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = {k: float(v) for k, v in jax.device_get(totals).items()}
    count = totals.pop("count")
    return {**{k: v / count for k, v in totals.items()}, "count": int(count)}


def eval_batches(config: ml_collections.ConfigDict):
    return data.eval_iterator(
        config.dataset.name, global_batch_size=config.eval_batch_size,
        image_size=image_size(config), data_dir=config.dataset.data_dir or None,
        manual_dir=config.dataset.manual_dir or None)


def jit_eval_step(model, mesh):
    return jax.jit(steps.make_eval_step(model),
                   in_shardings=(mesh_lib.replicated(mesh), mesh_lib.batch_sharded(mesh)),
                   out_shardings=mesh_lib.replicated(mesh))


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


def _mean_metrics(pending: list[dict[str, Any]]) -> dict[str, float]:
    # float64 means, so that metrics restored from a checkpoint as Python floats
    # average to the same values as the float32 arrays of an uninterrupted run.
    host = jax.device_get(pending)
    return {k: float(np.mean([float(m[k]) for m in host])) for k in host[0]}


def _host_metrics(pending: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Return per-step metrics as JSON-ready floats (for the checkpoint metadata)."""
    return [{k: float(v) for k, v in m.items()} for m in jax.device_get(pending)]


def _check_finite(state: TrainState, ckpt: checkpoints_lib.Checkpoints) -> None:
    """Raise DivergenceError when a step since the last check was not finite."""
    bad_step = int(state.nonfinite_step)
    if bad_step == NO_STEP:
        return
    ckpt.wait()
    saved = ckpt.steps()
    quantity = nonfinite_name(state.params, int(state.nonfinite_index))
    if saved:
        kept = f"The last good checkpoint is step {saved[-1]} in {ckpt.directory}."
    else:
        kept = f"No checkpoint was saved before it in {ckpt.directory}."
    raise DivergenceError(
        f"Non-finite {quantity} at step {bad_step}, so training stopped. {kept} Lower the"
        " learning rates or check the input data, then resume.",
        step=bad_step, quantity=quantity)


@dataclasses.dataclass(frozen=True)
class _CompiledSteps:
    """The programs of the training loop, compiled before the first step."""

    # train(state, global batch, nan_at_step) -> (state, metrics); donates the state.
    train: Any
    # eval(variables, global eval batch) -> sums (see steps.make_eval_step).
    eval: Any
    # layer_stats(params) -> per-layer scalars for TensorBoard.
    layer_stats: Any
    # The debug.nan_at_step hook as a replicated array.
    nan_at_step: jax.Array


def _abstract_eval_batch(config: ml_collections.ConfigDict, mesh) -> dict:
    """Shapes, dtypes and sharding of the batches of `eval_batches` (all of equal size)."""
    size, count = image_size(config), config.eval_batch_size
    sharding = mesh_lib.batch_sharded(mesh)
    return {
        "image": jax.ShapeDtypeStruct((count, size, size, 3), jnp.float32, sharding=sharding),
        "label": jax.ShapeDtypeStruct((count,), jnp.int32, sharding=sharding),
        "mask": jax.ShapeDtypeStruct((count,), jnp.bool_, sharding=sharding),
    }


def _compile_steps(config, model, tx, schedules, mesh, state: TrainState,
                   first_batch: dict[str, jax.Array]) -> _CompiledSteps:
    """Compile the training, evaluation and statistics programs ahead of time.

    With several processes, all of them then wait for each other: on CPU only process
    0 loads its programs from JAX's persistent compilation cache (the cache keys of the
    other processes differ in jax 0.10.2), and a gloo collective that one process
    enters about 30 s before another fails with a timeout.
    """
    start = time.monotonic()
    replicated = mesh_lib.replicated(mesh)
    bn_groups = jax.device_count() if config.bn_stats == "per_device" else 1
    train_step = jax.jit(
        steps.make_train_step(model, tx, schedules=schedules, seed=config.seed,
                              label_smoothing=config.label_smoothing, bn_groups=bn_groups),
        in_shardings=(replicated, mesh_lib.batch_sharded(mesh), replicated),
        out_shardings=(replicated, replicated), donate_argnums=0)
    # An array, so that the test hook does not change the compiled program.
    nan_at_step = jax.make_array_from_process_local_data(
        replicated, np.asarray(config.debug.nan_at_step, np.int32))
    compiled = _CompiledSteps(
        train=train_step.lower(state, first_batch, nan_at_step).compile(),
        eval=jit_eval_step(model, mesh).lower(
            state.variables, _abstract_eval_batch(config, mesh)).compile(),
        layer_stats=jax.jit(layers.layer_stats, out_shardings=replicated).lower(
            state.params).compile(),
        nan_at_step=nan_at_step,
    )
    logging.info("Compiled the training and evaluation steps in %.0f s (including loads from"
                 " the compilation cache).", time.monotonic() - start)
    mesh_lib.wait_for_all_processes("fat_jax_steps_compiled")
    return compiled


def _build_state(config, mesh, steps_per_epoch: int):
    """Return `(model, tx, schedules, state, num_params)` of a fresh (or init_from) run."""
    model = build_model(config)
    variables = init_variables(model, config, mesh)
    if config.init_from:
        variables = init_from.load(config.init_from, variables, arch=config.model.arch)
    num_params = models.count_float_params(variables["params"])
    groups = optim.groups_from_config(
        {name: config.optimizer.groups[name] for name in config.optimizer.group_order})
    tx, schedules = optim.create_optimizer(
        variables["params"], groups, momentum=config.optimizer.momentum,
        nesterov=config.optimizer.nesterov, steps_per_epoch=steps_per_epoch,
        decay_epochs=config.optimizer.decay_epochs, decay_factor=config.optimizer.decay_factor)
    for name, count in optim.count_params_by_group(variables["params"], groups).items():
        logging.info("Optimizer group %s: %d parameter values.", name, count)
    state = jax.jit(lambda v: TrainState.create(v, tx),
                    out_shardings=mesh_lib.replicated(mesh))(variables)
    return model, tx, schedules, state, num_params


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                       allow_config_change: bool = False) -> Summary:
    """Train per `config`, writing checkpoints, logs and curves under `workdir`.

    Raises:
      config_check.ConfigError: an invalid config field.
      WorkdirConflictError: the workdir contains checkpoints of another config.
      checkpoints_lib.CheckpointMismatchError: its checkpoints do not fit this model.
      DivergenceError: a non-finite loss or gradient.
    """
    start_time = time.monotonic()
    workdir = pathlib.Path(workdir).resolve()
    validate(config)
    workdir_lib.check(workdir, config, allow_config_change)

    mesh = mesh_lib.create_mesh()
    spec = data.get_spec(config.dataset.name)
    steps_per_epoch = data.steps_per_epoch(
        config.dataset.name, config.batch_size, data_dir=config.dataset.data_dir or None,
        manual_dir=config.dataset.manual_dir or None)
    total_steps = config.num_epochs * steps_per_epoch
    if config.num_train_steps > 0:
        total_steps = min(total_steps, config.num_train_steps)
    logging.info("Training %s on %s (%d classes) at W%sA%s %s, %d devices in %d processes,"
                 " global batch %d read in %d input shards, %d steps/epoch, %d steps.",
                 config.model.arch, spec.name, spec.num_classes, config.quant.weight_bits,
                 config.quant.act_bits, config.quant.grid, jax.device_count(),
                 jax.process_count(), config.batch_size, input_shards(config),
                 steps_per_epoch, total_steps)

    model, tx, schedules, state, num_params = _build_state(config, mesh, steps_per_epoch)
    # Orbax's first collectives follow; see _compile_steps for why processes wait first.
    mesh_lib.wait_for_all_processes("fat_jax_state_built")

    # Resume.
    ckpt = checkpoints_lib.Checkpoints(workdir, keep=config.keep_checkpoints)
    history = {"train": [], "eval": []}
    pending = []
    restored = ckpt.restore_latest(state)
    if restored is not None:
        state, meta = restored
        history = meta.get("history", history)
        pending = list(meta.get("pending_train_metrics", []))
        logging.info("Resumed from the checkpoint at step %d in %s.", int(state.step),
                     ckpt.directory)
        if meta.get("input_shards", input_shards(config)) != input_shards(config):
            logging.warning(
                "The checkpoint was written by a run that read its input in %s shards, this"
                " run reads %d, so the input order from here on differs from the"
                " interrupted run's. Set config.dataset.input_shards to keep it.",
                meta["input_shards"], input_shards(config))
    # Only now, with any checkpoint restored, does the workdir take this run's config.
    workdir_lib.write_config(workdir, config, is_writer=jax.process_index() == 0)
    start_step = int(state.step)

    reporter = progress.Progress(workdir / LOG_DIR, total_steps=total_steps,
                                 start_step=start_step, steps_per_epoch=steps_per_epoch,
                                 global_batch_size=config.batch_size)
    stop = preemption.StopRequest(ckpt.manager.reached_preemption)
    stop.install()

    def meta(step: int) -> dict[str, Any]:
        return {"step": step, "epoch": step / steps_per_epoch,
                "config": json.loads(config.to_json()), "history": history,
                "pending_train_metrics": _host_metrics(pending),
                "input_shards": input_shards(config)}

    # Main loop.
    preempted = False
    step = start_step
    last_saved = start_step if restored is not None else None
    try:
        if step < total_steps:
            train_iter = train_batches(config, start_step)
            batch = mesh_lib.global_batch(mesh, next(train_iter))
            compiled = _compile_steps(config, model, tx, schedules, mesh, state, batch)
        while step < total_steps:
            state, metrics = compiled.train(state, batch, compiled.nan_at_step)
            pending.append(metrics)
            step += 1
            epoch_end = step % steps_per_epoch == 0
            last = step == total_steps

            if step % config.log_every_steps == 0 or last or epoch_end:
                _check_finite(state, ckpt)
                means = _mean_metrics(pending)
                pending = []
                reporter.train(step, means)
                history["train"].append({"step": step, "epoch": step / steps_per_epoch,
                                         "loss": means["loss"]})
                reporter.layers(step, jax.device_get(compiled.layer_stats(state.params)))

            epoch = step // steps_per_epoch
            eval_metrics = None
            if last or (epoch_end and epoch % config.eval_every_epochs == 0):
                eval_metrics = evaluate(compiled.eval, state.variables, eval_batches(config),
                                        mesh)
                reporter.evaluate(step, epoch, eval_metrics)
                history["eval"].append({"step": step, "epoch": step / steps_per_epoch,
                                        **eval_metrics})
            if eval_metrics is not None or epoch_end or step % config.checkpoint_every_steps == 0:
                _check_finite(state, ckpt)
                best_metric = None if eval_metrics is None else {
                    checkpoints_lib.BEST_METRIC: eval_metrics["top1"]}
                ckpt.save(step, state, meta(step), best_metric)
                last_saved = step

            if stop.requested(step):
                _check_finite(state, ckpt)
                if last_saved != step:
                    ckpt.save(step, state, meta(step))
                    last_saved = step
                ckpt.wait()
                cause = stop.signal_name or "a SIGTERM to another process"
                logging.warning("Stopped by %s after step %d; checkpoint saved in %s/%d.",
                                cause, step, ckpt.directory, step)
                preempted = True
                break
            if step < total_steps:
                batch = mesh_lib.global_batch(mesh, next(train_iter))
        ckpt.wait()
    finally:
        stop.restore()
        reporter.close()
        ckpt.close()

    return _summary(config, workdir, history, step, num_params, start_time, preempted)


def _summary(config, workdir, history, step, num_params, start_time, preempted) -> Summary:
    top1 = [h["top1"] for h in history["eval"]]
    plot_path = workdir / PLOT_FILE
    if jax.process_index() == 0:
        progress.plot_curves(plot_path, history["train"], history["eval"],
                             f"{config.model.arch} on {config.dataset.name},"
                             f" W{config.quant.weight_bits}A{config.quant.act_bits}"
                             f" {config.quant.grid}")
    return Summary(
        best_top1=max(top1) if top1 else math.nan,
        final_top1=top1[-1] if top1 else math.nan,
        steps=step,
        weight_bits=config.quant.weight_bits,
        act_bits=config.quant.act_bits,
        num_params=num_params,
        wall_time_s=time.monotonic() - start_time,
        checkpoint_dir=str(workdir / checkpoints_lib.CHECKPOINT_DIR),
        log_dir=str(workdir / LOG_DIR),
        plot=str(plot_path),
        preempted=preempted,
    )

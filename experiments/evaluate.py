"""Evaluate a checkpoint on the config's evaluation split.

  python -m experiments.evaluate --config=configs/NAME.py[:ARGS] --checkpoint=PATH

PATH is a run workdir (its best checkpoint, else its latest), one step directory of
it (`<workdir>/checkpoints/<step>`), or a reference PyTorch checkpoint (.safetensors,
or .pth/.pth.tar with PyTorch installed) of the config's architecture.
"""

from __future__ import annotations

import pathlib

from absl import app, flags
from ml_collections import config_flags

from experiments import cli

_CONFIG = config_flags.DEFINE_config_file(
    "config", cli.DEFAULT_CONFIG, "Config file, optionally with :ARGS.", lock_config=True)
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Run workdir, checkpoint step directory, or reference"
    " .safetensors/.pth file.", required=True)


def load_variables(config, path: pathlib.Path, model):
    """Return the Flax variables stored at `path` (see the module docstring)."""
    from fat_jax import torch_weights
    from fat_jax.train import checkpoints as checkpoints_lib

    if path.is_file():
        _, variables = torch_weights.load_reference_checkpoint(
            str(path), config.model.arch, config.quant.weight_bits, grid=config.quant.grid)
        return variables
    if path.name.isdigit() and path.parent.name == checkpoints_lib.CHECKPOINT_DIR:
        workdir, step = path.parent.parent, int(path.name)
    else:
        workdir, step = path, None
    if not (workdir / checkpoints_lib.CHECKPOINT_DIR).is_dir():
        cli.fail(f"Invalid --checkpoint={str(path)!r}: not a file, a run workdir or a"
                 " checkpoint step directory. Pass one of those.")
    ckpt = checkpoints_lib.Checkpoints(workdir, read_only=True)
    if step is None:
        step = ckpt.best_step() or (ckpt.steps()[-1] if ckpt.steps() else None)
    if step is None or step not in ckpt.steps():
        cli.fail(f"No checkpoint {'at step ' + str(step) + ' ' if step else ''}in"
                 f" {ckpt.directory}; available steps: {ckpt.steps() or 'none'}.")
    state, _ = ckpt.restore(step)
    ckpt.close()
    print(f"Checkpoint: step {step} of {workdir}")
    return {"params": state["params"], "batch_stats": state["batch_stats"]}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    cli.setup()
    from fat_jax import data
    from fat_jax.train import config_check, mesh as mesh_lib, trainer

    config = _CONFIG.value
    try:
        trainer.validate(config)
        model = trainer.build_model(config)
        mesh = mesh_lib.create_mesh()
        variables = load_variables(config, pathlib.Path(_CHECKPOINT.value), model)
        variables = jax_replicate(variables, mesh)
        metrics = trainer.evaluate(trainer.jit_eval_step(model, mesh), variables,
                                   trainer.eval_batches(config), mesh)
    except (config_check.ConfigError, data.MissingImageNetArchivesError, ValueError,
            FileNotFoundError) as error:
        cli.fail(str(error))
    print(f"{config.model.arch} on {config.dataset.name} ({metrics['count']} examples):"
          f" top-1 {100 * metrics['top1']:.2f}%, top-5 {100 * metrics['top5']:.2f}%,"
          f" loss {metrics['loss']:.4f}")


def jax_replicate(variables, mesh):
    import jax

    from fat_jax.train import mesh as mesh_lib
    return jax.device_put(variables, mesh_lib.replicated(mesh))


if __name__ == "__main__":
    app.run(main)

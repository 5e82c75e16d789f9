"""Evaluate a checkpoint on the config's evaluation split.

  python -m experiments.evaluate --config=configs/NAME.py[:ARGS] --checkpoint=PATH

PATH is a run workdir (its best checkpoint, else its latest), one step directory of
it (`<workdir>/checkpoints/<step>`), or a reference PyTorch checkpoint (.safetensors,
or .pth/.pth.tar with PyTorch installed) of the config's architecture.
"""

from __future__ import annotations

import pathlib

from absl import app, flags

from experiments import cli

_CONFIG = cli.define_config_flag("Config file, optionally with :ARGS.")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Run workdir, checkpoint step directory, or reference"
    " .safetensors/.pth file.", required=True)


def load_variables(config, path: pathlib.Path):
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
    check_run_config(config, workdir)
    ckpt = checkpoints_lib.Checkpoints(workdir, read_only=True)
    try:
        if step is None:
            step = ckpt.best_or_latest_step()
        if step is None or step not in ckpt.steps():
            cli.fail(f"No checkpoint {'at step ' + str(step) + ' ' if step else ''}in"
                     f" {ckpt.directory}; available steps: {ckpt.steps() or 'none'}.")
        state, _ = ckpt.restore_unsharded(step)
    finally:
        ckpt.close()
    print(f"Checkpoint: step {step} of {workdir}")
    return {"params": state["params"], "batch_stats": state["batch_stats"]}


# Quantization fields that change a trained model's outputs (inits and gradient rules do not).
_FORWARD_QUANT_FIELDS = ("weight_bits", "act_bits", "grid", "strict")


def check_run_config(config, workdir: pathlib.Path) -> None:
    """Exit with status 2 when the run's saved model or quantization config differs.

    Bit widths and grids share parameter shapes, so only the saved config distinguishes
    them. A workdir without a readable config.json is not checked.
    """
    import json

    from fat_jax.train import config_check, workdir as workdir_lib

    try:
        saved = json.loads((workdir / workdir_lib.CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return
    requested = json.loads(config.to_json())

    def forward_fields(run: dict) -> dict:
        """Return the config fields that change the evaluated model's outputs."""
        quant = run.get("quant") or {}
        return {"model": run.get("model") or {},
                "quant": {key: quant.get(key) for key in _FORWARD_QUANT_FIELDS}}

    differences = config_check.differing_fields(forward_fields(saved),
                                                forward_fields(requested))
    if differences:
        cli.fail(f"The run in {workdir} was trained with another model or quantization"
                 f" config (saved -> requested): {'; '.join(differences)}. Pass the config"
                 " it was trained with, or these fields as --config.FIELD=VALUE.")


def check_fits(variables, expected, source: str) -> None:
    """Exit with status 2 when `variables` lack, add or reshape arrays of `expected`."""
    from flax import traverse_util

    def shapes(tree):
        return {"/".join(map(str, k)): tuple(v.shape)
                for k, v in traverse_util.flatten_dict(tree).items()}

    found, wanted = shapes(variables), shapes(expected)
    if found == wanted:
        return
    missing = sorted(set(wanted) - set(found))
    unexpected = sorted(set(found) - set(wanted))
    reshaped = sorted(k for k in set(found) & set(wanted) if found[k] != wanted[k])
    parts = [f"{len(missing)} arrays of the model are missing (first: {missing[:3]})"
             if missing else "",
             f"{len(unexpected)} are not in the model (first: {unexpected[:3]})"
             if unexpected else "",
             "shapes differ for " + ", ".join(f"{k} {found[k]} vs {wanted[k]}"
                                              for k in reshaped[:3]) if reshaped else ""]
    cli.fail(f"The checkpoint {source} does not fit the config's model: "
             + "; ".join(p for p in parts if p)
             + ". Pass the config the checkpoint was trained with (a run's is in"
             " <workdir>/config.json), or its architecture and bit width as --config.FIELD.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    config = cli.config_value(_CONFIG)
    cli.setup()
    import jax

    from fat_jax import data
    from fat_jax.train import config_check, mesh as mesh_lib, trainer

    checkpoint = pathlib.Path(_CHECKPOINT.value)
    try:
        trainer.validate(config)
        model = trainer.build_model(config)
        mesh = mesh_lib.create_mesh()
        variables = load_variables(config, checkpoint)
        expected = jax.eval_shape(lambda: trainer.init_variables(model, config, mesh))
        check_fits(variables, expected, str(checkpoint))
        variables = jax.device_put(variables, mesh_lib.replicated(mesh))
        metrics = trainer.evaluate(trainer.jit_eval_step(model, mesh), variables,
                                   trainer.eval_batches(config), mesh)
    except (config_check.ConfigError, data.MissingImageNetArchivesError,
            data.DatasetDownloadError, ValueError, FileNotFoundError) as error:
        cli.fail(str(error))
    print(f"{config.model.arch} on {config.dataset.name} ({metrics['count']} examples):"
          f" top-1 {100 * metrics['top1']:.2f}%, top-5 {100 * metrics['top5']:.2f}%,"
          f" loss {metrics['loss']:.4f}")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)

"""Start a run from another run's weights or from a PyTorch state-dict file.

Progressive initialisation: a b-bit run starts from the (b+1)-bit or float run of the
same architecture. From a run's workdir, its best checkpoint (by evaluation top-1, else
its latest) supplies params and BatchNorm statistics; alphas and transforms are copied
when the source has them and keep their inits when it does not (a float source). A
`.safetensors`/`.pth` file is read as a torchvision state dict.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import numpy as np
from absl import logging
from flax import traverse_util

from fat_jax import torch_weights
from fat_jax.train import checkpoints as checkpoints_lib

# Parameters that a float source lacks; they keep their initial values.
QUANT_ONLY_PARAMS = ("transform", "weight_alpha", "act_alpha")


class InitFromError(ValueError):
    """`init_from` points at weights that cannot start this run; the message says why."""


def load(path: str, variables: dict, *, arch: str) -> dict:
    """Return `variables` with the weights from `path` copied in.

    Raises:
      InitFromError: a damaged or unreadable file, another architecture, no checkpoint,
        or weights that do not fit the model.
    """
    try:
        return _load(path, variables, arch)
    except (ValueError, ImportError, FileNotFoundError) as error:
        raise InitFromError(f"Invalid config.init_from={path!r}: {error}") from error


def _load(path: str, variables: dict, arch: str) -> dict:
    source = pathlib.Path(path)
    if source.is_dir():
        return _from_workdir(source, variables, arch)
    logging.info("Initialising from the torchvision state dict %s.", source)
    return torch_weights.load_torchvision_weights(str(source), arch, variables)


def _from_workdir(workdir: pathlib.Path, variables: dict, arch: str) -> dict:
    config_path = workdir / "config.json"
    if config_path.is_file():
        source_arch = json.loads(config_path.read_text())["model"]["arch"]
        if source_arch != arch:
            raise ValueError(
                f"Invalid init_from={str(workdir)!r}: that run trained {source_arch!r}, this"
                f" one trains {arch!r}. Point init_from at a run of the same architecture.")
    ckpt = checkpoints_lib.Checkpoints(workdir, read_only=True)
    step = ckpt.best_or_latest_step()
    if step is None:
        raise ValueError(
            f"Invalid init_from={str(workdir)!r}: no checkpoint found in"
            f" {ckpt.directory}. Point it at a run that saved at least one checkpoint.")
    try:
        state, _ = ckpt.restore_unsharded(step)
    finally:
        ckpt.close()
    logging.info("Initialising from step %d of %s.", step, workdir)
    return {
        "params": merge(variables["params"], state["params"], "params"),
        "batch_stats": merge(variables.get("batch_stats", {}), state.get("batch_stats", {}),
                             "batch_stats"),
    }


def merge(target: Any, source: Any, collection: str) -> Any:
    """Copy every leaf of `source` into `target` by path, keeping target shardings.

    Raises:
      ValueError: a source leaf has no place in the target, shapes differ, or a target
        leaf other than a transform or alpha is missing from the source.
    """
    flat_target = traverse_util.flatten_dict(target)
    flat_source = traverse_util.flatten_dict(source)
    unexpected = [p for p in flat_source if p not in flat_target]
    missing = [p for p in flat_target if p not in flat_source and p[-1] not in QUANT_ONLY_PARAMS]
    mis_shaped = [p for p in flat_source if p in flat_target
                  and tuple(np.shape(flat_source[p])) != tuple(flat_target[p].shape)]
    problems = []
    if unexpected:
        problems.append("unexpected " + ", ".join("/".join(p) for p in unexpected[:10]))
    if missing:
        problems.append("missing " + ", ".join("/".join(p) for p in missing[:10]))
    if mis_shaped:
        problems.append("mis-shaped " + ", ".join(
            f"{'/'.join(p)} {tuple(np.shape(flat_source[p]))} vs {tuple(flat_target[p].shape)}"
            for p in mis_shaped[:10]))
    if problems:
        raise ValueError(f"init_from {collection} do not fit this model: " + "; ".join(problems))
    kept = [p for p in flat_target if p not in flat_source]
    if kept:
        logging.info("init_from: %d %s keep their initial values (absent in the source).",
                     len(kept), collection)
    merged = {
        path: jax.device_put(np.asarray(flat_source[path], dtype=leaf.dtype), leaf.sharding)
        if path in flat_source else leaf
        for path, leaf in flat_target.items()
    }
    return traverse_util.unflatten_dict(merged)

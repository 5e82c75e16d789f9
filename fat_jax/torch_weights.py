"""PyTorch state dicts: reference FAT checkpoints, torchvision weights, and export.

State-dict keys follow the PyTorch module names of the FAT reference implementation
(CIFAR-10 models) and of torchvision (ImageNet models). The Flax models name their
submodules after them with `_` for `.`, so a Flax variable path maps to a key by rule.
Join the module names with `.`, replace every `_` in a module name by `.`, and append
the PyTorch name of the leaf:

    Flax leaf (collection/module/.../name)   PyTorch key suffix          array
    params .../kernel, rank 4 (conv)          .weight                     HWIO <-> OIHW
    params .../kernel, rank 2 (dense)         .weight                     (in, out) <-> (out, in)
    params .../bias                           .bias                       as is
    params .../scale (BatchNorm)              .weight                     as is
    params .../transform (FAT conv)           .weight_quant.transform.weight   as is
    params .../weight_alpha                   .weight_quant.wgt_alpha     scalar
    params .../act_alpha                      .act_alpha                  scalar
    batch_stats .../mean                      .running_mean               as is
    batch_stats .../var                       .running_var                as is

For example `params/layer2_0/downsample_0/kernel` is `layer2.0.downsample.0.weight`
and `batch_stats/features_3/conv_1_1/var` is `features.3.conv.1.1.running_var`. The
FAT transform keeps its orientation: the PyTorch `transform.weight` is T in
`S = T @ |rfft(rows)|`. Uniform quantized convs (MobileNetV2) have `act_alpha` and
`weight_quant.wgt_alpha` but no transform, as in the reference.

On import, every `num_batches_tracked` key and the reference's unused
`transform.weight` of the 8-bit first conv and last dense layer (e.g.
`conv1.transform.weight`, `linear.transform.weight`) are ignored by name. Any other key
that is missing, unexpected, mis-shaped or not floating point raises a ValueError that
lists the keys with their shapes, so no weight is ever dropped silently. The one
exception is `load_torchvision_weights`, which accepts a state dict without any of the
quantizer parameters (transforms and alphas) and keeps their inits.

Files: `.safetensors` is read with `safetensors.numpy` (no PyTorch needed);
`.pth`, `.pth.tar`, `.pt` and `.bin` are read with `torch.load(weights_only=True)`
when PyTorch is installed. A checkpoint dict's "state_dict" entry is used when present,
and a "module." prefix (from DataParallel) is stripped.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import traverse_util
from safetensors import numpy as safetensors_numpy

from fat_jax import models

StateDict = dict[str, np.ndarray]
PathLike = str | os.PathLike

TORCH_SUFFIXES = (".pth", ".pt", ".tar", ".bin")
"""File suffixes read with `torch.load` (".tar" covers ".pth.tar")."""

SAFETENSORS_SUFFIX = ".safetensors"

IGNORED_SUFFIX = ".num_batches_tracked"
UNUSED_TRANSFORM_SUFFIX = ".transform.weight"

# Leaf name in Flax -> leaf name in PyTorch, per collection.
_PARAM_LEAVES = {
    "bias": "bias",
    "scale": "weight",
    "transform": "weight_quant.transform.weight",
    "weight_alpha": "weight_quant.wgt_alpha",
    "act_alpha": "act_alpha",
}
_BATCH_STATS_LEAVES = {"mean": "running_mean", "var": "running_var"}
QUANTIZER_LEAVES = ("transform", "weight_alpha", "act_alpha")
"""Flax leaves of the quantizer parameters, which torchvision state dicts lack."""

_MAX_LISTED_KEYS = 30

TORCH_MISSING_MESSAGE = (
    "Reading {path} needs PyTorch, which is not installed. Install it with"
    " `pip install -e '.[torch]'` from the fat-jax checkout, or convert the file to safetensors where PyTorch"
    " is installed:\n"
    "  python -c \"import torch, safetensors.torch as st;"
    " c = torch.load('{path}', map_location='cpu', weights_only=True);"
    " sd = c.get('state_dict', c);"
    " st.save_file({{k: v.contiguous() for k, v in sd.items()}}, 'weights.safetensors')\"")


@dataclasses.dataclass(frozen=True)
class _Slot:
    """Location of one state-dict key in the Flax variables, and its layout conversion."""

    collection: str
    path: tuple[str, ...]
    # "conv" (HWIO <-> OIHW), "dense" ((in, out) <-> (out, in)) or "plain".
    layout: str
    flax_shape: tuple[int, ...]

    @property
    def is_quantizer(self) -> bool:
        return self.collection == "params" and self.path[-1] in QUANTIZER_LEAVES

    @property
    def torch_shape(self) -> tuple[int, ...]:
        if self.layout == "conv":
            kh, kw, cin, cout = self.flax_shape
            return (cout, cin, kh, kw)
        if self.layout == "dense":
            return tuple(reversed(self.flax_shape))
        return self.flax_shape

    def to_torch(self, value: np.ndarray) -> np.ndarray:
        if self.layout == "conv":
            return np.transpose(value, (3, 2, 0, 1))
        if self.layout == "dense":
            return np.transpose(value)
        return value

    def to_flax(self, value: np.ndarray) -> np.ndarray:
        if self.layout == "conv":
            return np.transpose(value, (2, 3, 1, 0))
        if self.layout == "dense":
            return np.transpose(value)
        return value


def torch_module_name(module_path: tuple[str, ...]) -> str:
    """Return the PyTorch module name of a Flax module path (`layer1_0`, `conv1`)."""
    return ".".join(name.replace("_", ".") for name in module_path)


def _leaf_key(collection: str, path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[str, str]:
    """Return the state-dict key and layout of one Flax variable."""
    *module_path, leaf = path
    if collection == "params" and leaf == "kernel":
        if len(shape) not in (2, 4):
            raise ValueError(f"Cannot map kernel {'/'.join(path)} of rank {len(shape)} to PyTorch.")
        torch_leaf, layout = "weight", ("conv" if len(shape) == 4 else "dense")
    elif collection == "params" and leaf in _PARAM_LEAVES:
        torch_leaf, layout = _PARAM_LEAVES[leaf], "plain"
    elif collection == "batch_stats" and leaf in _BATCH_STATS_LEAVES:
        torch_leaf, layout = _BATCH_STATS_LEAVES[leaf], "plain"
    else:
        raise ValueError(
            f"No PyTorch name for the Flax variable {collection}/{'/'.join(path)}: expected"
            " params kernel, bias, scale, transform, weight_alpha, act_alpha or batch_stats"
            " mean, var.")
    return f"{torch_module_name(tuple(module_path))}.{torch_leaf}", layout


def _slots(variables: Mapping[str, Any]) -> dict[str, _Slot]:
    """Map every state-dict key of a model to its Flax variable."""
    slots = {}
    flat = traverse_util.flatten_dict(variables)
    for (collection, *path), value in flat.items():
        path = tuple(path)
        shape = tuple(np.shape(value))
        key, layout = _leaf_key(collection, path, shape)
        if key in slots:
            raise ValueError(f"Two Flax variables map to the PyTorch key {key!r}.")
        slots[key] = _Slot(collection, path, layout, shape)
    return slots


def _unused_transform_keys(arch: str) -> tuple[str, str]:
    """Return the keys of the reference's unused transforms of its 8-bit layers."""
    info = models.architecture(arch)
    return (info.stem + UNUSED_TRANSFORM_SUFFIX, info.head + UNUSED_TRANSFORM_SUFFIX)


# ---------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------


def read_state_dict(path: PathLike) -> StateDict:
    """Read a PyTorch state dict from a `.safetensors` or a `torch.save` file.

    Args:
        path: a `.safetensors` file, or a `.pth`, `.pth.tar`, `.pt` or `.bin` file
            (needs PyTorch). A checkpoint dict's "state_dict" entry is used when present.

    Returns:
        The state dict as numpy arrays, with any "module." key prefix removed.

    Raises:
        FileNotFoundError: no file at `path`.
        ImportError: a `torch.save` file and no PyTorch; the message gives the fix.
        ValueError: an unsupported suffix, a damaged or unreadable file, or a file that
            contains no state dict.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"State dict file not found: {path}")
    if path.suffix == SAFETENSORS_SUFFIX:
        try:
            state_dict = safetensors_numpy.load_file(str(path))
        except Exception as error:  # noqa: BLE001 - safetensors raises its own error types.
            raise ValueError(f"Invalid safetensors file {path}: {error}. The file is damaged or"
                             " not a safetensors state dict; export it again.") from error
    elif path.suffix in TORCH_SUFFIXES:
        state_dict = _read_torch_file(path)
    else:
        raise ValueError(
            f"Unsupported state dict file {path}: expected {SAFETENSORS_SUFFIX} or a"
            f" torch.save file ({', '.join(TORCH_SUFFIXES)}).")
    return _strip_module_prefix(state_dict, path)


def _read_torch_file(path: pathlib.Path) -> StateDict:
    try:
        import torch  # pylint: disable=import-outside-toplevel
    except ImportError as error:
        raise ImportError(TORCH_MISSING_MESSAGE.format(path=path)) from error

    try:
        # weights_only=True: loading never runs code stored in the file.
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many error types here.
        raise ValueError(f"Invalid PyTorch checkpoint {path}: torch.load(weights_only=True)"
                         f" failed ({type(error).__name__}: {str(error)[:300]}). The file is"
                         " damaged, not a state dict, or holds objects other than tensors.") from error
    if isinstance(checkpoint, Mapping) and "state_dict" in checkpoint:
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, Mapping):
        raise ValueError(
            f"Invalid checkpoint {path}: it contains a {type(checkpoint).__name__}, not a"
            " state dict or a checkpoint dict with a 'state_dict' entry.")

    state_dict = {}
    not_tensors = []
    for key, value in checkpoint.items():
        if not isinstance(value, torch.Tensor):
            not_tensors.append(f"{key} ({type(value).__name__})")
            continue
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            # numpy has no bfloat16, and float32 represents every bfloat16 value exactly.
            value = value.float()
        state_dict[key] = value.numpy()
    if not_tensors:
        raise ValueError(f"The state dict in {path} has entries that are not tensors: "
                         + ", ".join(not_tensors))
    return state_dict


def _strip_module_prefix(state_dict: Mapping[str, np.ndarray], source: Any) -> StateDict:
    prefix = "module."
    stripped = {}
    for key, value in state_dict.items():
        name = key[len(prefix):] if key.startswith(prefix) else key
        if name in stripped:
            raise ValueError(f"The state dict in {source} has both {name!r} and {prefix + name!r}.")
        stripped[name] = value
    return stripped


# ---------------------------------------------------------------------------
# Import
# ---------------------------------------------------------------------------


def state_dict_to_variables(state_dict: Mapping[str, np.ndarray], arch: str,
                            variables: Mapping[str, Any], *,
                            require_quantizer_params: bool = True) -> dict[str, Any]:
    """Copy a PyTorch state dict into the Flax variables of model `arch`.

    Args:
        state_dict: PyTorch-named arrays (numpy or anything `np.asarray` accepts).
        arch: registry name of the model (see `fat_jax.models.ARCHITECTURES`).
        variables: the model's variables ("params" and "batch_stats"), used as the
            template of names and shapes. Leaves may be `jax.ShapeDtypeStruct` when
            the state dict provides every one of them.
        require_quantizer_params: if False, the state dict may lack all the quantizer
            parameters (FAT transforms, weight and activation alphas), which then keep
            their values in `variables`. A state dict with only some of them is an
            error either way.

    Returns:
        New variables as a nested dict: the state-dict values as float32 jax arrays,
        and any quantizer parameters it lacks as the leaves of `variables`.

    Raises:
        ValueError: missing, unexpected, mis-shaped or non-float keys, all listed.
    """
    slots = _slots(variables)
    ignored = set(_unused_transform_keys(arch))
    provided = {
        key: value for key, value in state_dict.items()
        if not key.endswith(IGNORED_SUFFIX) and key not in ignored
    }

    quantizer_keys = {key for key, slot in slots.items() if slot.is_quantizer}
    required = set(slots)
    if not require_quantizer_params and not quantizer_keys & provided.keys():
        required -= quantizer_keys

    missing = sorted(required - provided.keys())
    unexpected = sorted(provided.keys() - slots.keys())
    mis_shaped = []
    not_float = []
    for key in sorted(provided.keys() & slots.keys()):
        value = np.asarray(provided[key])
        if tuple(value.shape) != slots[key].torch_shape:
            mis_shaped.append(key)
        elif not np.issubdtype(value.dtype, np.floating):
            not_float.append(key)
    if missing or unexpected or mis_shaped or not_float:
        raise ValueError(_mismatch_message(
            arch, slots, provided, missing, unexpected, mis_shaped, not_float,
            has_quantizer_params=bool(quantizer_keys & provided.keys())))

    flat = traverse_util.flatten_dict(variables)
    for key in required:
        slot = slots[key]
        value = slot.to_flax(np.asarray(provided[key], dtype=np.float32))
        flat[(slot.collection,) + slot.path] = jnp.asarray(value)

    abstract = [key for key, slot in slots.items()
                if isinstance(flat[(slot.collection,) + slot.path], jax.ShapeDtypeStruct)]
    if abstract:
        raise ValueError(
            "The template variables are abstract (jax.ShapeDtypeStruct) and the state dict"
            f" does not provide {_list_keys(abstract)}. Pass initialized variables.")
    num_kept = len(set(slots) - required)
    if num_kept:
        logging.info("Kept %d quantizer parameters at their values in the template"
                     " variables because the state dict has none.", num_kept)
    return traverse_util.unflatten_dict(flat)


def _list_keys(keys: list[str], describe=str) -> str:
    lines = [describe(key) for key in keys[:_MAX_LISTED_KEYS]]
    if len(keys) > _MAX_LISTED_KEYS:
        lines.append(f"... and {len(keys) - _MAX_LISTED_KEYS} more")
    return "\n    " + "\n    ".join(lines)


def _is_quantizer_key(key: str) -> bool:
    return key.endswith((".act_alpha", ".weight_quant.wgt_alpha", ".weight_quant.transform.weight"))


def _mismatch_message(arch, slots, provided, missing, unexpected, mis_shaped, not_float, *,
                      has_quantizer_params) -> str:
    def shape_of(key):
        return tuple(np.shape(provided[key]))

    lines = [f"The state dict does not match model {arch!r}:"]
    if missing:
        lines.append(f"  missing keys ({len(missing)}):" + _list_keys(
            missing, lambda key: f"{key} {slots[key].torch_shape}"))
    if unexpected:
        lines.append(f"  unexpected keys ({len(unexpected)}):" + _list_keys(
            unexpected, lambda key: f"{key} {shape_of(key)}"))
    if mis_shaped:
        lines.append(f"  mis-shaped keys ({len(mis_shaped)}):" + _list_keys(
            mis_shaped,
            lambda key: f"{key}: expected {slots[key].torch_shape}, got {shape_of(key)}"))
    if not_float:
        lines.append(f"  keys that are not floating point ({len(not_float)}):" + _list_keys(
            not_float, lambda key: f"{key}: dtype {np.asarray(provided[key]).dtype}"))

    if (missing and not unexpected and not has_quantizer_params
            and all(slots[key].is_quantizer for key in missing)):
        lines.append(
            "The state dict lacks quantizer parameters (alphas, transforms), so it is"
            " probably of a full-precision model: load it into a full-precision model"
            " (bits=32), or with load_torchvision_weights() to keep the quantizer inits.")
    elif unexpected and all(_is_quantizer_key(key) for key in unexpected):
        lines.append(
            "The unexpected keys are quantizer parameters, so the state dict is probably of"
            " a quantized model: load it into a quantized model (bits 2 to 8).")
    return "\n".join(lines)


def load_torchvision_weights(source: PathLike | Mapping[str, np.ndarray], arch: str,
                             variables: Mapping[str, Any]) -> dict[str, Any]:
    """Load full-precision PyTorch weights into a (quantized or float) model.

    Copies conv, BatchNorm and dense weights and the BatchNorm statistics. FAT
    transforms and alphas keep their values in `variables` (their inits), unless the
    state dict provides all of them, e.g. one exported from a quantized model. Meant
    for torchvision ResNet-18/34/50 and MobileNetV2 state dicts, and works as well for a
    full-precision reference checkpoint of a CIFAR-10 model.

    Args:
        source: a state-dict file (see `read_state_dict`) or a mapping of arrays.
        arch: registry name of the model.
        variables: the model's initialized variables.

    Returns:
        New variables as a nested dict (see `state_dict_to_variables`).

    Raises:
        ValueError: missing, unexpected, mis-shaped or non-float keys, all listed.
    """
    state_dict = read_state_dict(source) if isinstance(source, (str, os.PathLike)) else source
    return state_dict_to_variables(state_dict, arch, variables, require_quantizer_params=False)


def load_reference_checkpoint(path: PathLike, arch: str, bits: int, grid: str = "uniform", *,
                              num_classes: int | None = None,
                              **quant_kwargs: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Build model `arch` and load a checkpoint of the FAT reference implementation.

    Every parameter, including the quantizer parameters of a quantized model, must be
    in the checkpoint.

    NOTE: the reference stores neither the bit width nor the grid, and every bit width
    and grid has the same parameter shapes, so a wrong `bits` or `grid` loads without
    an error and gives wrong logits. Pass the values the checkpoint was trained with.

    Args:
        path: a `.safetensors` state dict, or a `.pth` / `.pth.tar` file (needs PyTorch).
        arch: registry name of the model (see `fat_jax.models.ARCHITECTURES`).
        bits: weight and activation bits, 2 to 8, or 32 for full precision.
        grid: "uniform" or "log".
        num_classes: output logits; by default the row count of the last layer's weight.
        **quant_kwargs: other QuantConfig fields. The defaults are the reference's
            settings for the model's family (see `fat_jax.models.reference_quant_config`).

    Returns:
        `(model, variables)`, ready for `model.apply(variables, images, train=False)`.

    Raises:
        ValueError: missing, unexpected, mis-shaped or non-float keys, all listed.
    """
    state_dict = read_state_dict(path)
    info = models.architecture(arch)
    if num_classes is None:
        head_weight = state_dict.get(f"{info.head}.weight")
        num_classes = (np.shape(head_weight)[0] if head_weight is not None
                       else 10 if info.family == "cifar" else 1000)
    quant = models.reference_quant_config(arch, bits, grid, **quant_kwargs)
    model = models.create(arch, num_classes=int(num_classes), quant=quant)

    images = jax.ShapeDtypeStruct((1, info.resolution, info.resolution, 3), jnp.float32)
    template = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0),
                              images)
    variables = state_dict_to_variables(state_dict, arch, template)
    return model, variables


# ---------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------


def variables_to_state_dict(variables: Mapping[str, Any], arch: str, *,
                            unused_transforms: bool | None = None) -> StateDict:
    """Convert Flax variables into a PyTorch-named state dict of float32 numpy arrays.

    Args:
        variables: the model's "params" and "batch_stats".
        arch: registry name of the model.
        unused_transforms: whether to add the reference's unused `transform.weight` of
            the 8-bit first conv and last dense layer (filled with 1/C as the reference
            initialises them), which PyTorch's strict `load_state_dict` into the
            reference model needs. By default they are added for CIFAR-10 models and
            for quantized ImageNet models, and left out for full-precision ImageNet
            models, whose target is torchvision.

    Returns:
        The state dict. It has no `num_batches_tracked` entries: PyTorch's BatchNorm
        (checked with 2.13) loads a state dict without them, strict or not, and keeps
        its own counter.
    """
    slots = _slots(variables)
    flat = traverse_util.flatten_dict(variables)
    state_dict = {}
    for key, slot in slots.items():
        value = np.asarray(flat[(slot.collection,) + slot.path], dtype=np.float32)
        # np.array rather than np.ascontiguousarray, which turns scalars into shape (1,).
        state_dict[key] = np.array(slot.to_torch(value), order="C")

    if unused_transforms is None:
        quantized = any(slot.is_quantizer for slot in slots.values())
        unused_transforms = models.architecture(arch).family == "cifar" or quantized
    if unused_transforms:
        for key in _unused_transform_keys(arch):
            layer = key[:-len(UNUSED_TRANSFORM_SUFFIX)]
            channels = state_dict[f"{layer}.weight"].shape[0]
            state_dict[key] = np.full((channels, channels), 1.0 / channels, np.float32)
    return state_dict


def save_state_dict(path: PathLike, variables: Mapping[str, Any], arch: str, *,
                    unused_transforms: bool | None = None) -> StateDict:
    """Write Flax variables as a PyTorch-named `.safetensors` state dict.

    See `variables_to_state_dict` for the names and `unused_transforms`. In PyTorch,
    `safetensors.torch.load_file(path)` returns a dict for `model.load_state_dict`.

    Returns:
        The state dict that was written.
    """
    state_dict = variables_to_state_dict(variables, arch, unused_transforms=unused_transforms)
    safetensors_numpy.save_file(state_dict, str(path), metadata={"format": "pt", "arch": arch})
    return state_dict

"""SGD with parameter groups chosen by regex rules over parameter paths.

A parameter's path is its keys in the params tree joined by "/", for example
`layer1_0/conv1/act_alpha`. The config lists groups in order, each with a regex
`pattern`, a learning rate `lr` and a `weight_decay`. A parameter joins the first group
whose pattern matches its path (`re.search`). Weight decay is coupled L2, added to the
gradient before momentum as `torch.optim.SGD` does, and momentum follows torch's
(no dampening): `buf = momentum * buf + grad; param -= lr * buf`.

The learning rate of every group is multiplied by `decay_factor` at each epoch in
`decay_epochs`, stepwise as torch's MultiStepLR.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import optax
from flax import traverse_util


@dataclasses.dataclass(frozen=True, kw_only=True)
class ParamGroup:
    """One optimizer group."""

    # Group name, used in logs and metric names.
    name: str
    # Regex searched in the "/"-joined parameter path.
    pattern: str
    # Base learning rate before the step schedule.
    lr: float
    # Coupled L2 coefficient.
    weight_decay: float


def groups_from_config(groups_config: Mapping[str, Mapping[str, Any]]) -> list[ParamGroup]:
    """Build the ordered groups from a `{name: {pattern, lr, weight_decay}}` mapping."""
    groups = []
    for name, group in groups_config.items():
        try:
            re.compile(group["pattern"])
        except re.error as error:
            raise ValueError(
                f"Invalid regex optimizer.groups.{name}.pattern={group['pattern']!r}: {error}."
            ) from error
        groups.append(ParamGroup(name=name, pattern=group["pattern"], lr=float(group["lr"]),
                                 weight_decay=float(group["weight_decay"])))
    if not groups:
        raise ValueError("Invalid optimizer.groups: the config lists no parameter group.")
    return groups


def param_path(path: Sequence[Any]) -> str:
    """Join a params-tree key path into the string the group patterns match."""
    return "/".join(str(key) for key in path)


def assign_groups(params: Mapping[str, Any], groups: Sequence[ParamGroup]) -> dict:
    """Return a tree like `params` whose leaves are group names (first match wins).

    Raises:
      ValueError: a parameter matches no group; the message lists such paths.
    """
    flat = traverse_util.flatten_dict(params)
    labels, unmatched = {}, []
    for path in flat:
        text = param_path(path)
        group = next((g for g in groups if re.search(g.pattern, text)), None)
        if group is None:
            unmatched.append(text)
        else:
            labels[path] = group.name
    if unmatched:
        raise ValueError(
            f"Parameters match no optimizer group: {', '.join(unmatched[:10])}"
            f"{' ...' if len(unmatched) > 10 else ''}. Add a final catch-all group with"
            " pattern '.*'.")
    return traverse_util.unflatten_dict(labels)


def step_schedule(base_lr: float, steps_per_epoch: int, decay_epochs: Sequence[int],
                  decay_factor: float) -> optax.Schedule:
    """Return a schedule that multiplies `base_lr` by `decay_factor` at each decay epoch."""
    boundaries = {int(epoch) * steps_per_epoch: decay_factor for epoch in decay_epochs}
    return optax.piecewise_constant_schedule(base_lr, boundaries)


def create_optimizer(params: Mapping[str, Any], groups: Sequence[ParamGroup], *,
                     momentum: float, nesterov: bool, steps_per_epoch: int,
                     decay_epochs: Sequence[int], decay_factor: float
                     ) -> tuple[optax.GradientTransformation, dict[str, optax.Schedule]]:
    """Return the grouped SGD transformation and each group's learning-rate schedule."""
    labels = assign_groups(params, groups)
    used = set(traverse_util.flatten_dict(labels).values())
    schedules, transforms = {}, {}
    for group in groups:
        schedules[group.name] = step_schedule(group.lr, steps_per_epoch, decay_epochs,
                                              decay_factor)
        if group.name not in used:
            # optax.multi_transform needs a transform per label, even an unused one.
            transforms[group.name] = optax.set_to_zero()
            continue
        transforms[group.name] = optax.chain(
            optax.add_decayed_weights(group.weight_decay),
            optax.sgd(schedules[group.name], momentum=momentum or None, nesterov=nesterov),
        )
    return optax.multi_transform(transforms, labels), schedules


def count_params_by_group(params: Mapping[str, Any], groups: Sequence[ParamGroup]) -> dict[str, int]:
    """Return the number of parameter values in each group, for the startup log."""
    labels = traverse_util.flatten_dict(assign_groups(params, groups))
    counts = {group.name: 0 for group in groups}
    for path, leaf in traverse_util.flatten_dict(params).items():
        counts[labels[path]] += int(jax.numpy.size(leaf))
    return counts

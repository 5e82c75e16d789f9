"""The training state that is stepped, sharded and checkpointed."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

NO_STEP = -1
"""Value of `nonfinite_step` while every loss and gradient has been finite."""


@struct.dataclass
class TrainState:
    """Parameters, BatchNorm statistics, optimizer state and the step counter."""

    # Number of optimizer steps taken.
    step: jax.Array
    # Trainable parameters (kernels, BatchNorm scales and biases, transforms, alphas).
    params: Any
    # BatchNorm running means and variances.
    batch_stats: Any
    # optax state of the grouped SGD.
    opt_state: optax.OptState
    # Number of the first step (counting from 1, as the logs do) whose loss or
    # gradient was not finite, or NO_STEP. Once set, the state stops changing, so it
    # stays the state after the previous step, the last good one.
    nonfinite_step: jax.Array
    # Index of the first non-finite quantity: 0 is the loss, i > 0 the (i-1)-th
    # gradient leaf in `jax.tree_util.tree_flatten_with_path(params)` order.
    nonfinite_index: jax.Array

    @classmethod
    def create(cls, variables: dict, tx: optax.GradientTransformation) -> "TrainState":
        params = variables["params"]
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            batch_stats=variables.get("batch_stats", {}),
            opt_state=tx.init(params),
            nonfinite_step=jnp.full((), NO_STEP, jnp.int32),
            nonfinite_index=jnp.zeros((), jnp.int32),
        )

    @property
    def variables(self) -> dict:
        """The Flax variables for `model.apply`."""
        return {"params": self.params, "batch_stats": self.batch_stats}


def nonfinite_name(params: Any, index: int) -> str:
    """Name the quantity that `TrainState.nonfinite_index` points at."""
    if index == 0:
        return "loss"
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    path, _ = leaves[index - 1]
    return "gradient of " + "/".join(str(getattr(k, "key", k)) for k in path)

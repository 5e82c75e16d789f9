"""The device mesh of data parallelism and the transfer of host batches onto it.

One mesh axis, `data`, spans every device of every process. A global batch is split
along it; parameters and optimizer state are replicated. Each process feeds the slice
of the global batch that its input pipeline read.
"""

from __future__ import annotations

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"
BARRIER_TIMEOUT_S = 3600
"""How long a process waits for the others at a barrier (compilation can take minutes)."""


def create_mesh() -> Mesh:
    """Return a 1-D mesh over all devices of all processes."""
    return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def global_batch(mesh: Mesh, local_batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """Assemble this process's slice of a batch into global arrays split along `data`."""
    sharding = batch_sharded(mesh)
    return {
        key: jax.make_array_from_process_local_data(sharding, value)
        for key, value in local_batch.items()
    }


def wait_for_all_processes(name: str) -> None:
    """Block until every process calls this with `name`; no-op with one process.

    The barrier runs on JAX's coordination service, not on the devices, so it has no
    collective timeout. Each name may be used once per run.
    """
    if jax.process_count() == 1:
        return
    ocp.multihost.sync_global_processes(name, timeout=BARRIER_TIMEOUT_S,
                                        processes=set(range(jax.process_count())))

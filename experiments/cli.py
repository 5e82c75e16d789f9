"""Setup shared by the command-line entry points: quiet library logs, multi-process JAX."""

from __future__ import annotations

import logging as python_logging
import os
import pathlib
import sys

from absl import flags, logging

# Before TensorFlow is imported: keep its C++ INFO lines off the console.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = str(REPO_ROOT / "configs" / "default.py")
USAGE_ERROR_STATUS = 2

_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None,
    "host:port of process 0 for multi-process runs (jax.distributed.initialize). Leave"
    " unset on one host; on TPU pods and SLURM clusters use --distributed instead.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes in all.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Index of this process, 0 to N-1.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False,
    "Call jax.distributed.initialize() with cluster auto-detection (TPU pods, SLURM).")


class _LibraryInfoFilter(python_logging.Filter):
    """Drop INFO lines of orbax and TensorFlow Datasets, which log every file they touch."""

    NOISY = (f"{os.sep}orbax{os.sep}", f"{os.sep}tensorflow_datasets{os.sep}")

    def filter(self, record: python_logging.LogRecord) -> bool:
        return record.levelno > python_logging.INFO or not any(
            part in record.pathname for part in self.NOISY)


def setup() -> None:
    """Configure logging and, when requested, multi-process JAX. Call first in main()."""
    logging.set_verbosity(logging.INFO)
    logging.get_absl_handler().addFilter(_LibraryInfoFilter())
    import jax  # Imported after the environment above is set.

    if _COORDINATOR.value:
        jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    elif _DISTRIBUTED.value:
        jax.distributed.initialize()
    import tensorflow as tf
    # tf.data runs on the host; keep TensorFlow off GPUs and TPUs that JAX uses.
    tf.config.set_visible_devices([], "GPU")


def fail(message: str) -> None:
    """Print an error line for the user and exit with the usage-error status."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(USAGE_ERROR_STATUS)

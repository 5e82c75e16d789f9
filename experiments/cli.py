"""Setup shared by the command-line entry points: flags, logs, multi-process JAX, errors.

Exit statuses: 0 success (or a run stopped by SIGTERM/SIGINT after its checkpoint),
1 an unexpected error with a traceback, 2 an invalid command line, config or workdir
(one `error:` line), 3 a diverged run (one `error:` line).
"""

from __future__ import annotations

import logging as python_logging
import os
import pathlib
import sys

from absl import flags, logging
from ml_collections import config_flags

# Before TensorFlow is imported: keep its C++ INFO lines off the console.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = str(REPO_ROOT / "configs" / "default.py")
USAGE_ERROR_STATUS = 2
DIVERGENCE_STATUS = 3

_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None,
    "host:port of process 0 for multi-process runs (jax.distributed.initialize). Leave"
    " unset on one host; on TPU pods and SLURM clusters use --distributed instead.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes in all.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Index of this process, 0 to N-1.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False,
    "Call jax.distributed.initialize() with cluster auto-detection (TPU pods, SLURM).")

_CONFIG_FILE_ERROR = ": Error whilst parsing config file"
"""Text that ml_collections puts after the flag when a config file's get_config fails."""


class _LibraryInfoFilter(python_logging.Filter):
    """Drop INFO lines of orbax and TensorFlow Datasets, which log every file they touch."""

    NOISY = (f"{os.sep}orbax{os.sep}", f"{os.sep}tensorflow_datasets{os.sep}")

    def filter(self, record: python_logging.LogRecord) -> bool:
        return record.levelno > python_logging.INFO or not any(
            part in record.pathname for part in self.NOISY)


def fail(message: str, status: int = USAGE_ERROR_STATUS) -> None:
    """Print an error line for the user and exit with `status`."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


def flag_error_message(error: Exception) -> str:
    """Return the message of a flag parsing error, with the root cause of a config error.

    ml_collections re-raises an error of a config file's get_config() (for example
    an invalid `:ARGS` item) with the whole traceback in its message, so the message
    of the root exception replaces it.
    """
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    root = _root_cause(error)
    if root is error or _CONFIG_FILE_ERROR not in first_line:
        return first_line
    flag_text = first_line.split(_CONFIG_FILE_ERROR, 1)[0]
    return f"{flag_text}: {_one_line(root)}"


def _root_cause(error: BaseException) -> BaseException:
    """Follow the chain of `raise ... from` and implicit contexts to its first error."""
    while True:
        if error.__cause__ is not None:
            cause = error.__cause__
        else:
            cause = None if error.__suppress_context__ else error.__context__
        if cause is None:
            return error
        error = cause


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


# Exception types that ml_collections raises for a --config.FIELD override of no field.
_OVERRIDE_PATH_ERRORS = (AttributeError, KeyError, TypeError)


def _config_file_error(error: BaseException) -> str:
    root = _root_cause(error)
    return f"cannot load the config file: {type(root).__name__}: {_one_line(root)}"


def _unknown_override(argv: list[str]) -> str | None:
    """Return an error line for the first --config.FIELD whose FIELD the default lacks."""
    from configs import default

    config = default.get_config()
    for arg in argv[1:]:
        if not arg.startswith("--config."):
            continue
        names = arg[len("--config."):].split("=", 1)[0].split(".")
        node = config
        for depth, name in enumerate(names):
            parent = ".".join(["config", *names[:depth]])
            if not hasattr(node, "keys"):
                return (f"Unknown config field in {arg!r}: {parent} is a value"
                        f" ({node!r}), not a group of fields.")
            if name not in node:
                return (f"Unknown config field in {arg!r}: {parent} has no field {name!r}."
                        f" Its fields: {', '.join(sorted(node.keys()))}.")
            node = node[name]
    return None


def define_config_flag(help_text: str) -> flags.FlagHolder:
    """Define --config (a config file, default configs/default.py) and its overrides.

    ml_collections reads the --config.FIELD overrides of sys.argv here, at definition
    time, so an unknown FIELD is reported here as one line with exit status 2.
    """
    try:
        return config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, help_text,
                                               lock_config=True)
    except _OVERRIDE_PATH_ERRORS as error:
        fail(_unknown_override(sys.argv) or _config_file_error(error))


def parse_flags(argv: list[str]) -> list[str]:
    """Parse the flags as absl.app does, but report an error as one line and exit 2.

    Pass it as `app.run(main, flags_parser=parse_flags)`. A config file that cannot be
    executed, or has no get_config(), is a usage error too: whatever it raises is
    reported as one line naming the exception.
    """
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        fail(flag_error_message(error))
    except Exception as error:  # noqa: BLE001 - raised by the user's config file.
        unknown = isinstance(error, _OVERRIDE_PATH_ERRORS) and _unknown_override(argv)
        fail(unknown or _config_file_error(error))


def config_value(config_flag: flags.FlagHolder):
    """Return a config flag's value; a config file that failed to load exits with 2."""
    try:
        # ml_collections defers the error of a missing or unreadable config file to
        # the first access of the value.
        config_flag.value.to_dict()
    except Exception as error:  # noqa: BLE001 - raised by the user's config file.
        fail(_config_file_error(error))
    return config_flag.value


def setup_logging() -> None:
    """Log INFO and above, without the per-file INFO lines of orbax and TFDS."""
    logging.set_verbosity(logging.INFO)
    logging.get_absl_handler().addFilter(_LibraryInfoFilter())


def init_distributed() -> None:
    """Start JAX's distributed runtime when the flags ask for several processes.

    Must run before any JAX computation. Processes other than 0 then log warnings
    and errors only.
    """
    import jax  # Imported after the environment above is set.

    if _COORDINATOR.value:
        jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    elif _DISTRIBUTED.value:
        jax.distributed.initialize()
    if jax.process_index() != 0:
        logging.set_verbosity(logging.WARNING)


def setup() -> None:
    """Configure logging, multi-process JAX and TensorFlow. Call first in main()."""
    setup_logging()
    init_distributed()
    import tensorflow as tf
    # tf.data runs on the host; keep TensorFlow off GPUs and TPUs that JAX uses.
    tf.config.set_visible_devices([], "GPU")

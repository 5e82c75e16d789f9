"""Stop requests: on SIGTERM or SIGINT a run finishes its step, saves and exits.

One process: a Python signal handler records the first SIGTERM or SIGINT and the
training loop polls `requested(step)` after every step. The handler also restores the
default actions, so a second signal terminates the process at once, without a
checkpoint.

Several processes: `jax.distributed.initialize()` starts JAX's preemption service
(on by default), which installs a C++ SIGTERM handler. Its sync manager makes all
processes agree on one step to stop at, even when only one of them received the
signal. `requested(step)` asks it through orbax's `CheckpointManager.reached_preemption`,
which every process must call at every step. A Python SIGTERM handler would replace
JAX's, so none is installed, and a SIGINT is forwarded to the own process as a
SIGTERM. Once the processes agree, both signals get their default actions back.
NOTE: in that mode a second SIGTERM that arrives before the processes agree (about
one to two seconds after the first) is absorbed by JAX's handler and stops nothing.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

import jax
from absl import logging

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def uses_jax_preemption_service() -> bool:
    """Return whether JAX's distributed runtime with its preemption service is running."""
    return jax.distributed.is_initialized() and jax.config.jax_enable_preemption_service


class StopRequest:
    """Records SIGTERM and SIGINT so that the training loop can save and stop."""

    def __init__(self, reached_preemption: Callable[[int], bool]):
        """`reached_preemption(step)`: True at the step all processes agreed to stop at."""
        self._reached_preemption = reached_preemption
        self._jax_service = uses_jax_preemption_service()
        # Name of the first stop signal this process received, or None.
        self.signal_name: str | None = None
        self._previous = {}

    def install(self) -> None:
        """Install the handlers (main thread only; elsewhere signals keep their actions)."""
        if threading.current_thread() is not threading.main_thread():
            logging.warning("Training outside the main thread: SIGTERM and SIGINT stop the"
                            " process without a checkpoint.")
            return
        signals = (signal.SIGINT,) if self._jax_service else STOP_SIGNALS
        for signum in signals:
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        """Put back the handlers that `install` replaced."""
        for signum, handler in self._previous.items():
            # None: the previous handler was not installed from Python.
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous = {}

    def _handle(self, signum: int, frame) -> None:
        del frame
        name = signal.Signals(signum).name
        self.signal_name = self.signal_name or name
        # The next SIGTERM or SIGINT takes the default action: terminate at once.
        signal.signal(signum, signal.SIG_DFL)
        if self._jax_service:
            logging.warning("%s received: forwarding it as SIGTERM to JAX's preemption"
                            " service, which picks the step at which all processes save and"
                            " stop. A second SIGINT stops this process at once.", name)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        for other in STOP_SIGNALS:
            signal.signal(other, signal.SIG_DFL)
        logging.warning("%s received: finishing the current step, then saving a checkpoint"
                        " and stopping. A second SIGTERM or SIGINT stops at once, without a"
                        " checkpoint.", name)

    def requested(self, step: int) -> bool:
        """Return whether the run should save and stop after `step` (all processes agree).

        Call it after every step on every process.
        """
        if not self._jax_service:
            return self.signal_name is not None
        if not self._reached_preemption(step):
            return False
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
        return True
